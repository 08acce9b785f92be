"""Bulk device import from CSV or JSON lines (CONTRACT §5 `POST /api/v1/devices/import`).

Parsing and validation are pure (`parse_import`): every rejected row keeps its line number and
a reason. A CSV may give a device's place as columns `building`, `floor`, `room`, `lat`, `lon`
beside (or instead of) `location`; they are folded into one location object. Writing is one
transaction: COPY the valid rows into a temporary staging table, reject those naming an unknown
unit or registered with another kind, then one INSERT ... ON CONFLICT upserts the rest (100,000
devices take a few seconds). The fleet is updated afterwards in chunks, yielding to the event
loop between them so ingest never stalls behind an import.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from devices.fleet import Fleet
from devices.registry import (
    DEVICE_FIELDS,
    UPSERT_DEVICE,
    DeviceSpec,
    InvalidSpec,
    Registered,
    registered_from_row,
)
from devices.thresholds import ThresholdLayers

Format = Literal["csv", "ndjson"]
Progress = Callable[[str, int, int], None]
FLEET_CHUNK = 20_000
STAGE_COLUMNS = ("line", *DEVICE_FIELDS)
#: CSV columns folded into the `location` object (`fold_location_columns`).
LOCATION_COLUMNS = ("building", "floor", "room", "lat", "lon")
CSV_COLUMNS = (*DEVICE_FIELDS, *LOCATION_COLUMNS)
_WHOLE = re.compile(r"^[+-]?\d+$")
#: A row with a longer field (CSV cell, JSON text) or deeper JSON nesting is rejected with its reason.
MAX_FIELD_CHARS = 1000
MAX_DEPTH = 8
FIELD_TOO_LONG = f"字段超过 {MAX_FIELD_CHARS} 个字符 / a field is longer than {MAX_FIELD_CHARS} characters"
TOO_DEEP = f"JSON 嵌套超过 {MAX_DEPTH} 层 / JSON nested deeper than {MAX_DEPTH} levels"


class UnusableImport(ValueError):
    """The body as a whole cannot be imported (unknown columns, no header, wrong format)."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    device_id: str | None
    reason: str


@dataclass(slots=True)
class ParsedImport:
    specs: list[tuple[int, DeviceSpec]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        return len(self.errors)

    def as_dict(self, max_errors: int = 1000) -> dict[str, Any]:
        """The API answer: counts and (up to `max_errors`) rejected rows in line order."""
        errors = sorted(self.errors, key=lambda e: e.line)
        return {
            "created": self.created,
            "updated": self.updated,
            "rejected": self.rejected,
            "errors": [{"line": e.line, "device_id": e.device_id, "reason": e.reason} for e in errors[:max_errors]],
            "errors_truncated": len(errors) > max_errors,
            "seconds": round(self.seconds, 3),
        }


def _oversized(value: Any, depth: int = 1) -> str | None:
    """Why a parsed JSON row is refused: nesting deeper than `MAX_DEPTH`, a text (key or value)
    longer than `MAX_FIELD_CHARS`; None when it is not."""
    if isinstance(value, str):
        return FIELD_TOO_LONG if len(value) > MAX_FIELD_CHARS else None
    if isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            return TOO_DEEP
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        return next((why for item in items if (why := _oversized(item, depth + 1))), None)
    return None


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    start = 1
    while True:
        line = start
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # e.g. a field over csv's own limit: the reader goes on at the next line
            start = reader.line_num + 1
            if header is None:
                raise UnusableImport(f"the header row is not valid CSV: {e}") from None
            yield line, RowError(line, None, FIELD_TOO_LONG if "field limit" in str(e) else f"not valid CSV: {e}")
            continue
        start = reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if any(len(c) > MAX_FIELD_CHARS for c in cells):
            yield line, RowError(line, None, FIELD_TOO_LONG)
            continue
        if header is None:
            header = [c.strip().lstrip("\ufeff").lower() for c in cells]
            unknown = [h for h in header if h not in CSV_COLUMNS]
            if unknown:
                raise UnusableImport(f"unknown column(s) {', '.join(unknown)}; columns are {', '.join(CSV_COLUMNS)}")
            if "device_id" not in header or "kind" not in header:
                raise UnusableImport("the header row must name at least device_id and kind")
            continue
        if len(cells) != len(header):
            at = header.index("device_id")
            shown = cells[at].strip() if at < len(cells) else ""
            yield line, RowError(line, shown or None, f"has {len(cells)} fields, the header has {len(header)}")
            continue
        try:
            yield line, fold_location_columns(dict(zip(header, cells)))
        except InvalidSpec as e:
            at = header.index("device_id")
            yield line, RowError(line, cells[at].strip() or None, str(e))
    if header is None:
        raise UnusableImport("no header row; the first line must name the columns, e.g. device_id,kind,unit_id")


def fold_location_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row with its non-empty `building`, `floor`, `room`, `lat`, `lon` cells moved into the
    location object (a `location` text beside them becomes its `text`); whole-number floors and
    the coordinates become numbers. `InvalidSpec` when a coordinate is not a number."""
    given = {k: v.strip() for k in LOCATION_COLUMNS if (v := row.pop(k, "")).strip()}
    if not given:
        return row
    place: dict[str, Any] = dict(given)
    for key in ("lat", "lon"):
        if key in place:
            try:
                place[key] = float(place[key])
            except ValueError:
                raise InvalidSpec(f"{key} must be a number of degrees, got {place[key]!r}") from None
    if _WHOLE.match(place.get("floor", "")):
        place["floor"] = int(place["floor"])
    text = row.get("location", "").strip()
    if text.startswith("{"):
        try:
            base = json.loads(text)
        except ValueError:
            raise InvalidSpec("location is not valid JSON") from None
        if not isinstance(base, dict):
            raise InvalidSpec("location must be an object or a text")
        place = {**base, **place}
    elif text:
        place["text"] = text
    row["location"] = place
    return row


def _ndjson_rows(text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            yield line, RowError(line, None, f"not valid JSON: {e.msg}")
            continue
        except RecursionError:
            yield line, RowError(line, None, TOO_DEEP)
            continue
        if not isinstance(obj, dict):
            yield line, RowError(line, None, "not a JSON object")
            continue
        if why := _oversized(obj):
            yield line, RowError(line, None, why)
            continue
        yield line, obj


def parse_import(text: str, fmt: Format, profiles: Mapping[str, Mapping[str, float]] | None = None) -> ParsedImport:
    """Validate every row (`profiles`: the profiles' thresholds, `DeviceSpec.parse`); a device_id
    given twice is rejected at its repeat."""
    out = ParsedImport()
    first_line: dict[str, int] = {}
    rows = _csv_rows(text) if fmt == "csv" else _ndjson_rows(text)
    for line, row in rows:
        if isinstance(row, RowError):
            out.errors.append(row)
            continue
        raw_id = row.get("device_id")
        shown_id = raw_id.strip() if isinstance(raw_id, str) and raw_id.strip() else None
        try:
            spec = DeviceSpec.parse(row, profiles)
        except InvalidSpec as e:
            out.errors.append(RowError(line, shown_id, str(e)))
            continue
        seen = first_line.setdefault(spec.device_id, line)
        if seen != line:
            out.errors.append(RowError(line, spec.device_id, f"device_id repeats line {seen}"))
            continue
        out.specs.append((line, spec))
    return out


async def write_import(
    conn: asyncpg.Connection, specs: list[tuple[int, DeviceSpec]]
) -> tuple[list[Registered], list[RowError]]:
    """Upsert valid rows in one transaction; answer (registered devices, rows rejected by the database state)."""
    errors: list[RowError] = []
    async with conn.transaction():
        await conn.execute(
            """CREATE TEMP TABLE devices_stage (line integer PRIMARY KEY, device_id text, kind text, unit_id text,
                   location jsonb, heartbeat_s integer, thresholds jsonb, profile text, cell_id text, linkage text,
                   hydrant boolean) ON COMMIT DROP"""
        )
        await conn.copy_records_to_table(
            "devices_stage", records=[(line, *spec.row()) for line, spec in specs], columns=STAGE_COLUMNS
        )
        for r in await conn.fetch(
            """SELECT s.line, s.device_id, s.unit_id FROM devices_stage s
               WHERE s.unit_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM units u WHERE u.unit_id = s.unit_id)"""
        ):
            errors.append(RowError(r["line"], r["device_id"], f"unit {r['unit_id']} is not registered"))
        for r in await conn.fetch(
            "SELECT s.line, s.device_id, s.kind, d.kind AS registered "
            "FROM devices_stage s JOIN devices d USING (device_id) WHERE d.kind <> s.kind"
        ):
            reason = f"device {r['device_id']} is registered as {r['registered']}, not {r['kind']}"
            errors.append(RowError(r["line"], r["device_id"], reason))
        if errors:
            await conn.execute("DELETE FROM devices_stage WHERE line = ANY($1::integer[])", [e.line for e in errors])
        rows = await conn.fetch(
            UPSERT_DEVICE.format(source=f"SELECT {', '.join(DEVICE_FIELDS)} FROM devices_stage ORDER BY device_id")
        )
    return [registered_from_row(r) for r in rows], errors


async def import_devices(
    pool: asyncpg.Pool, fleet: Fleet, text: str, fmt: Format, *, progress: Progress | None = None,
    layers: ThresholdLayers | None = None,
) -> ImportReport:
    """Parse, write and load into the fleet (thresholds merged with `layers`' profiles and units);
    answer counts and rejected rows. Raises `UnusableImport` when the body as a whole is unusable."""
    layers = layers or ThresholdLayers()
    started = time.perf_counter()
    report = ImportReport()
    parsed = await asyncio.to_thread(parse_import, text, fmt, layers.profiles)  # pure and slow: off the event loop
    report.errors = parsed.errors
    total = len(parsed.specs) + len(parsed.errors)
    if progress:
        progress("parsed", len(parsed.specs), total)
    if parsed.specs:
        async with pool.acquire() as conn:
            registered, db_errors = await write_import(conn, parsed.specs)
        report.errors += db_errors
        if progress:
            progress("written", len(registered), total)
        specs = {spec.device_id: spec for _, spec in parsed.specs}
        for i in range(0, len(registered), FLEET_CHUNK):
            chunk = registered[i : i + FLEET_CHUNK]
            load_into_fleet(fleet, [(specs[r.device_id], r) for r in chunk], layers)
            created = sum(r.created for r in chunk)
            report.created += created
            report.updated += len(chunk) - created
            if progress:
                progress("fleet", i + len(chunk), len(registered))
            await asyncio.sleep(0)
    report.seconds = time.perf_counter() - started
    return report


def load_into_fleet(fleet: Fleet, registered: list[tuple[DeviceSpec, Registered]], layers: ThresholdLayers) -> None:
    """Mirror many registrations into the live fleet state in one vectorized load; thresholds are
    set where the device, its profile or its unit has any, or where a re-registration may clear some."""
    fleet.bulk_load(
        [spec.device_id for spec, _ in registered],
        [spec.kind for spec, _ in registered],
        unit_ids=[spec.unit_id for spec, _ in registered],
        cell_ids=[spec.cell_id for spec, _ in registered],
        heartbeat_s=[spec.heartbeat_s for spec, _ in registered],
        parent_ids=[reg.parent_id for _, reg in registered],
        maintenance=[reg.maintenance for _, reg in registered],
        quarantined=[False] * len(registered),
        hydrant=[spec.hydrant for spec, _ in registered],
    )
    for spec, reg in registered:
        if spec.thresholds or not reg.created or layers.layered(spec.profile, spec.unit_id):
            layers.apply(fleet, spec.device_id, spec.thresholds, spec.profile, spec.unit_id)


def register_in_fleet(fleet: Fleet, spec: DeviceSpec, reg: Registered, layers: ThresholdLayers) -> int:
    """Mirror a registration into the live fleet state (thresholds merged with `layers`); answer the slot."""
    slot = fleet.upsert(
        spec.device_id, spec.kind, unit_id=spec.unit_id, cell_id=spec.cell_id, heartbeat_s=spec.heartbeat_s,
        parent_id=reg.parent_id, maintenance=reg.maintenance, quarantined=False, hydrant=spec.hydrant,
    )
    layers.apply(fleet, spec.device_id, spec.thresholds, spec.profile, spec.unit_id)
    return slot


def print_progress(stage: str, done: int, total: int) -> None:
    """A `Progress` callback writing one line per step to stderr."""
    print(f"import {stage}: {done}/{total}", file=sys.stderr, flush=True)
