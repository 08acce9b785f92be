"""The registry in PostgreSQL: regions, units, devices, push sources and dead letters.

`DeviceSpec.parse` and `UnitSpec.parse` are the one validation of what an operator registers
(the API and the bulk importer both use them); the rest is SQL. Region paths such as
`江西省/赣州市/章贡区/南外街道` are stored with every ancestor in `regions`.
JSON columns travel as text (asyncpg's default codec), so values are dumped and loaded here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg

from devices.kinds import DEVICE_ID_RE, Kind
from devices.locations import InvalidLocation, parse_location
from devices.scope import Scope, UnknownIndustry, industry
from devices.thresholds import parse as parse_layer

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection
MAX_REGION_LEVELS = 6
PLATFORMS = ("ctwing", "onenet", "generic")
DEVICE_FIELDS = (
    "device_id", "kind", "unit_id", "location", "heartbeat_s", "thresholds", "profile", "cell_id", "linkage", "hydrant",
)
#: A device's linkage setting (CONTRACT §10): follow the unit's policy, at most offer, never, or (a
#: breaker, so an electrical device) trip automatically when the unit's policy says so too.
LINKAGE_SETTINGS = ("unit", "confirm", "never", "auto")
UNIT_FIELDS = ("unit_id", "name", "address", "region", "industry", "contacts", "location", "thresholds")


class InvalidSpec(ValueError):
    """A registration is malformed; the message names the field and what is wrong."""


class KindConflict(Exception):
    """The device is already registered with another kind."""

    def __init__(self, device_id: str, registered: str, requested: str) -> None:
        super().__init__(f"device {device_id} is registered as {registered}, not {requested}")
        self.device_id, self.registered, self.requested = device_id, registered, requested


class UnknownUnit(Exception):
    def __init__(self, unit_id: str) -> None:
        super().__init__(f"unit {unit_id} is not registered")
        self.unit_id = unit_id


# --- regions ---------------------------------------------------------------------------------
def region_path(raw: str | None) -> str:
    """A normalised region path ('' for none): parts trimmed, empty parts dropped, at most 6 levels."""
    parts = [p.strip() for p in (raw or "").split("/") if p.strip()]
    if len(parts) > MAX_REGION_LEVELS:
        raise InvalidSpec(f"region {raw!r} has {len(parts)} levels; at most {MAX_REGION_LEVELS} are allowed")
    return "/".join(parts)


def region_chain(path: str) -> list[tuple[str, str, str | None, int]]:
    """(path, name, parent, level) of a path and each of its ancestors, root first."""
    parts = path.split("/") if path else []
    return [
        ("/".join(parts[: i + 1]), parts[i], "/".join(parts[:i]) or None, i + 1) for i in range(len(parts))
    ]


async def ensure_regions(db: Db, paths: Iterable[str]) -> None:
    rows = sorted({row for p in paths for row in region_chain(p)}, key=lambda r: r[3])
    if rows:
        await db.executemany(
            "INSERT INTO regions (path, name, parent, level) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", rows
        )


# --- specs -----------------------------------------------------------------------------------
def _text(fields: Mapping[str, Any], name: str, *, max_len: int = 200) -> str | None:
    v = fields.get(name)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise InvalidSpec(f"{name} must be a string")
    v = v.strip()
    if len(v) > max_len:
        raise InvalidSpec(f"{name} is longer than {max_len} characters")
    return v or None


def _identifier(fields: Mapping[str, Any], name: str) -> str | None:
    v = _text(fields, name, max_len=1000)
    if v is not None and not DEVICE_ID_RE.match(v):
        raise InvalidSpec(f"{name} {v!r} must be 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    return v


def _json_field(fields: Mapping[str, Any], name: str) -> Any:
    """A JSON value; a string that looks like JSON (CSV cells) is parsed."""
    v = fields.get(name)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        if s[0] in "{[":
            try:
                return json.loads(s)
            except ValueError:
                raise InvalidSpec(f"{name} is not valid JSON") from None
        return s
    return v


def parse_thresholds(raw: Any) -> dict[str, float]:
    """A device's, unit's or command's thresholds by catalogue name (`devices.thresholds.parse`)."""
    try:
        return parse_layer(raw)
    except ValueError as e:
        raise InvalidSpec(str(e)) from None


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What registering a device states about it (CONTRACT §5 `POST /api/v1/devices`)."""

    device_id: str
    kind: Kind
    unit_id: str | None = None
    location: Any = None
    heartbeat_s: int | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    profile: str | None = None
    cell_id: str | None = None
    linkage: str = "unit"
    hydrant: bool = False

    @classmethod
    def parse(cls, fields: Mapping[str, Any], profiles: Mapping[str, Mapping[str, float]] | None = None) -> DeviceSpec:
        """Validate a JSON object or a CSV row (strings); raise `InvalidSpec` naming the problem.
        `profiles`: the profiles' thresholds (a charger's `port_rated_a` may come from its profile)."""
        unknown = sorted(set(fields) - set(DEVICE_FIELDS))
        if unknown:
            raise InvalidSpec(f"unknown field {unknown[0]!r}")
        device_id = _identifier(fields, "device_id")
        if device_id is None:
            raise InvalidSpec("device_id is missing")
        kind_name = _text(fields, "kind")
        if kind_name is None:
            raise InvalidSpec("kind is missing")
        try:
            kind = Kind.parse(kind_name.lower())
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
        hb = fields.get("heartbeat_s")
        heartbeat: int | None = None
        if hb is not None and hb != "":
            try:
                heartbeat = int(hb.strip()) if isinstance(hb, str) else hb if type(hb) is int else None
            except ValueError:
                heartbeat = None
            if heartbeat is None or not 0 < heartbeat <= 30 * 86_400:
                raise InvalidSpec(f"heartbeat_s must be a whole number of seconds from 1 to {30 * 86_400}, got {hb!r}")
        location = _location(_json_field(fields, "location"))
        thresholds = parse_thresholds(_json_field(fields, "thresholds"))
        profile = _text(fields, "profile", max_len=100)
        if kind is Kind.charger and "port_rated_a" not in {**(profiles or {}).get(profile or "", {}), **thresholds}:
            raise InvalidSpec("充电桩须在 thresholds 或其 profile 中给出端口额定电流 port_rated_a / a charger needs "
                              "port_rated_a (the ports' rated current, A) in thresholds or in its profile's")
        return cls(
            device_id=device_id,
            kind=kind,
            unit_id=_identifier(fields, "unit_id"),
            location=location,
            heartbeat_s=heartbeat,
            thresholds=thresholds,
            profile=profile,
            cell_id=_text(fields, "cell_id", max_len=64),
            linkage=_linkage(fields.get("linkage"), kind),
            hydrant=_hydrant(fields.get("hydrant"), kind),
        )

    def row(self) -> tuple[Any, ...]:
        """The spec as a `devices` row in `DEVICE_FIELDS` order (JSON dumped)."""
        return (
            self.device_id, self.kind.name, self.unit_id,
            None if self.location is None else json.dumps(self.location, ensure_ascii=False),
            self.heartbeat_s, json.dumps(self.thresholds), self.profile, self.cell_id, self.linkage, self.hydrant,
        )


def _linkage(value: Any, kind: Kind) -> str:
    """A device's linkage setting (default `unit`); `auto` only for breakers (electrical devices)."""
    if value is None or value == "":
        return "unit"
    if value not in LINKAGE_SETTINGS:
        raise InvalidSpec(f"linkage 须为 {' / '.join(LINKAGE_SETTINGS)} / linkage must be one of "
                          f"{', '.join(LINKAGE_SETTINGS)}, not {value!r}")
    if value == "auto" and kind is not Kind.electrical:
        raise InvalidSpec("只有断路器（electrical）可设 linkage auto / linkage auto is for breakers (electrical), "
                          f"not {kind.name}")
    return str(value)


def _hydrant(value: Any, kind: Kind) -> bool:
    """Whether a water device is a fire hydrant (true/false, CSV text too); only water devices take it."""
    if value is None or value == "":
        return False
    flag = _FLAGS.get(value.strip().lower()) if isinstance(value, str) else value
    if not isinstance(flag, bool):
        raise InvalidSpec(f"hydrant must be true or false, not {value!r}")
    if flag and kind is not Kind.water:
        raise InvalidSpec(f"hydrant 只适用于 water 设备 / hydrant applies to water devices, not {kind.name}")
    return flag


_FLAGS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """A place: a shop, a flat block, a factory (CONTRACT §5 `POST /api/v1/units`)."""

    unit_id: str
    name: str
    address: str = ""
    region: str = ""
    industry: str = "other"
    contacts: list[dict[str, Any]] = field(default_factory=list)
    location: Any = None
    thresholds: dict[str, float] = field(default_factory=dict)  #: beneath its devices' and their profiles'

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> UnitSpec:
        unknown = sorted(set(fields) - set(UNIT_FIELDS))
        if unknown:
            raise InvalidSpec(f"unknown field {unknown[0]!r}")
        name = _text(fields, "name")
        if name is None:
            raise InvalidSpec("name is missing")
        region = fields.get("region")
        if region is not None and not isinstance(region, str):
            raise InvalidSpec("region must be a path such as 江西省/赣州市/章贡区/南外街道")
        contacts = fields.get("contacts") or []
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise InvalidSpec("contacts must be a list of objects")
        location = _location(fields.get("location"))
        return cls(
            unit_id=_identifier(fields, "unit_id") or f"U{uuid.uuid4().hex[:16]}",
            name=name,
            address=_text(fields, "address", max_len=500) or "",
            region=region_path(region),
            industry=_industry(fields.get("industry")),
            contacts=contacts,
            location=location,
            thresholds=parse_thresholds(_json_field(fields, "thresholds")),
        )


def _location(value: Any) -> dict[str, Any] | str | None:
    try:
        return parse_location(value)
    except InvalidLocation as e:
        raise InvalidSpec(str(e)) from None


def _industry(value: Any) -> str:
    try:
        return "other" if value is None else industry(value)
    except UnknownIndustry as e:
        raise InvalidSpec(str(e)) from None


# --- units -----------------------------------------------------------------------------------
def unit_dict(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "unit_id": r["unit_id"], "name": r["name"], "address": r["address"], "region": r["region"],
        "industry": r["industry"], "industry_detail": r["industry_detail"], "contacts": json.loads(r["contacts"]),
        "location": None if r["location"] is None else json.loads(r["location"]),
        "thresholds": json.loads(r["thresholds"]),
        "maintenance": r["maintenance"], **maintenance_fields(r),
        "created_at": r["created_at"], "updated_at": r["updated_at"],
    }


def maintenance_fields(r: asyncpg.Record) -> dict[str, Any]:
    """Until when, why and by whom a device or unit is in maintenance (None when it is not)."""
    on = r["maintenance"]
    return {f"maintenance_{k}": r[f"maintenance_{k}"] if on else None for k in ("until", "reason", "by")}


async def upsert_unit(conn: asyncpg.Connection, spec: UnitSpec) -> tuple[dict[str, Any], bool]:
    """Create or replace a unit (its maintenance flag is kept); answer (unit, created)."""
    async with conn.transaction():
        await ensure_regions(conn, [spec.region])
        row = await conn.fetchrow(
            """INSERT INTO units (unit_id, name, address, region, industry, contacts, location, thresholds)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (unit_id) DO UPDATE SET name = EXCLUDED.name, address = EXCLUDED.address,
                   region = EXCLUDED.region, industry = EXCLUDED.industry, contacts = EXCLUDED.contacts,
                   location = EXCLUDED.location, thresholds = EXCLUDED.thresholds, updated_at = now()
               RETURNING *, (xmax = 0) AS created""",
            spec.unit_id, spec.name, spec.address, spec.region, spec.industry,
            json.dumps(spec.contacts, ensure_ascii=False),
            None if spec.location is None else json.dumps(spec.location, ensure_ascii=False),
            json.dumps(spec.thresholds),
        )
    return unit_dict(row), bool(row["created"])


async def get_unit(db: Db, unit_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow("SELECT * FROM units WHERE unit_id = $1", unit_id)
    return None if row is None else unit_dict(row)


async def list_units(db: Db, *, scope: Scope, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Units in unit_id order after `after`, within `scope` (a token's, narrowed by filters)."""
    where, params = scope.sql(first=3)
    rows = await db.fetch(
        f"SELECT * FROM units WHERE ($1::text IS NULL OR unit_id > $1) AND {where} ORDER BY unit_id LIMIT $2",
        after, limit, *params,
    )
    return [unit_dict(r) for r in rows]


async def scoped_unit_ids(db: Db, scope: Scope) -> list[str] | None:
    """The units within `scope` when it filters by industry (the fleet in memory knows regions,
    not industries); None when it does not."""
    if not scope.by_industry:
        return None
    where, params = scope.sql()
    return [r["unit_id"] for r in await db.fetch(f"SELECT unit_id FROM units WHERE {where}", *params)]


async def load_units(db: Db) -> list[asyncpg.Record]:
    """Every unit's id, region, maintenance flag and thresholds (JSON text), for the fleet."""
    return await db.fetch("SELECT unit_id, region, maintenance, thresholds FROM units ORDER BY unit_id")


# --- devices ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Registered:
    """The outcome of registering one device."""

    device_id: str
    created: bool
    was_quarantined: bool
    maintenance: bool
    parent_id: str | None


UPSERT_DEVICE = """
    INSERT INTO devices AS d (device_id, kind, unit_id, location, heartbeat_s, thresholds, profile, cell_id, linkage,
                              hydrant)
    {source}
    ON CONFLICT (device_id) DO UPDATE SET unit_id = EXCLUDED.unit_id, location = EXCLUDED.location,
        heartbeat_s = EXCLUDED.heartbeat_s, thresholds = EXCLUDED.thresholds, profile = EXCLUDED.profile,
        cell_id = EXCLUDED.cell_id, linkage = EXCLUDED.linkage, hydrant = EXCLUDED.hydrant, quarantined = false,
        updated_at = now()
    WHERE d.kind = EXCLUDED.kind
    RETURNING d.device_id, (d.xmax = 0) AS created, d.maintenance, d.parent_id,
        (d.xmax <> 0 AND EXISTS (SELECT 1 FROM devices q WHERE q.device_id = d.device_id AND q.quarantined))
            AS was_quarantined
"""


def registered_from_row(r: asyncpg.Record) -> Registered:
    return Registered(r["device_id"], bool(r["created"]), bool(r["was_quarantined"]), r["maintenance"], r["parent_id"])


async def register_device(conn: asyncpg.Connection, spec: DeviceSpec) -> Registered:
    """Create or re-register a device (clearing quarantine; maintenance is kept).
    Raises `KindConflict` or `UnknownUnit`."""
    async with conn.transaction():
        unit_id = spec.unit_id
        if unit_id is not None and not await conn.fetchval("SELECT true FROM units WHERE unit_id = $1", unit_id):
            raise UnknownUnit(unit_id)
        row = await conn.fetchrow(
            UPSERT_DEVICE.format(source="VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"), *spec.row()
        )
        if row is None:
            registered = await conn.fetchval("SELECT kind FROM devices WHERE device_id = $1", spec.device_id)
            raise KindConflict(spec.device_id, registered, spec.kind.name)
    return registered_from_row(row)


DEVICE_SELECT = """
    SELECT d.*, u.region, u.industry, u.name AS unit_name, u.maintenance AS unit_maintenance
    FROM devices d LEFT JOIN units u USING (unit_id)
"""


def device_dict(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "device_id": r["device_id"], "kind": r["kind"], "unit_id": r["unit_id"], "unit_name": r["unit_name"],
        "region": r["region"] or "", "industry": r["industry"],
        "location": None if r["location"] is None else json.loads(r["location"]),
        "heartbeat_s": r["heartbeat_s"], "thresholds": json.loads(r["thresholds"]), "profile": r["profile"],
        "cell_id": r["cell_id"], "linkage": r["linkage"], "hydrant": r["hydrant"],
        "maintenance": r["maintenance"], **maintenance_fields(r),
        "unit_maintenance": bool(r["unit_maintenance"]),
        "quarantined": r["quarantined"], "parent_id": r["parent_id"],
        "created_at": r["created_at"], "updated_at": r["updated_at"],
    }


async def get_device(db: Db, device_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(DEVICE_SELECT + " WHERE d.device_id = $1", device_id)
    return None if row is None else device_dict(row)


async def get_devices(db: Db, device_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await db.fetch(DEVICE_SELECT + " WHERE d.device_id = ANY($1::text[])", device_ids)
    return {r["device_id"]: device_dict(r) for r in rows}


async def merge_thresholds(
    db: Db, device_id: str, thresholds: dict[str, float]
) -> tuple[dict[str, float], str | None, str | None]:
    """Merge thresholds into a device's; answer the device's own thresholds after the merge, its
    profile and its unit (the layers beneath, `devices.thresholds`)."""
    row = await db.fetchrow(
        "UPDATE devices SET thresholds = thresholds || $2::jsonb, updated_at = now() WHERE device_id = $1 "
        "RETURNING thresholds, profile, unit_id",
        device_id, json.dumps(thresholds),
    )
    return ({}, None, None) if row is None else (json.loads(row["thresholds"]), row["profile"], row["unit_id"])


async def unit_devices(db: Db, unit_ids: list[str]) -> list[asyncpg.Record]:
    """device_id, unit_id, own thresholds (JSON text) and profile of every device of these units."""
    return await db.fetch(
        "SELECT device_id, unit_id, thresholds, profile FROM devices WHERE unit_id = ANY($1::text[])", unit_ids
    )


@dataclass(slots=True)
class DeviceColumns:
    """Every registered device as parallel columns (None: absent), for `Fleet.bulk_load`, and of the
    few devices with thresholds of their own or a profile that has some, their own (JSON text) and
    their profile."""

    device_ids: list[str]
    kinds: list[str]
    unit_ids: list[str | None]
    cell_ids: list[str | None]
    heartbeat_s: list[int | None]
    parent_ids: list[str | None]
    maintenance: list[bool]
    quarantined: list[bool]
    hydrant: list[bool]
    thresholds: dict[str, tuple[str, str | None]]


#: The registry as one row of arrays, in device_id order with components after their transmission
#: devices (the subquery's order feeds every aggregate): a million devices decode as a few arrays
#: instead of a million records.
DEVICE_COLUMNS_QUERY = """
SELECT array_agg(device_id), array_agg(kind), array_agg(unit_id), array_agg(cell_id), array_agg(heartbeat_s),
       array_agg(parent_id), array_agg(maintenance), array_agg(quarantined), array_agg(hydrant),
       array_agg(device_id) FILTER (WHERE thresholds <> '{}' OR profile = ANY($1::text[])),
       array_agg(thresholds::text) FILTER (WHERE thresholds <> '{}' OR profile = ANY($1::text[])),
       array_agg(profile) FILTER (WHERE thresholds <> '{}' OR profile = ANY($1::text[]))
FROM (SELECT * FROM devices ORDER BY (parent_id IS NOT NULL), device_id) d"""


async def load_devices(db: Db, layered_profiles: Iterable[str] = ()) -> DeviceColumns:
    """Every device (`DeviceColumns`), for the fleet; `layered_profiles`: the profiles with thresholds."""
    row = await db.fetchrow(DEVICE_COLUMNS_QUERY, list(layered_profiles))
    assert row is not None  # an aggregate without GROUP BY answers one row
    ids, kinds, units, cells, heartbeats, parents, maintenance, quarantined, hydrant, layered, own, profiles = (
        list(c or ()) for c in row
    )
    return DeviceColumns(ids, kinds, units, cells, heartbeats, parents, maintenance, quarantined, hydrant,
                         dict(zip(layered, zip(own, profiles))))


# --- push sources and dead letters -------------------------------------------------------------
#: Settings of a subscription source's `config` that are secrets (every platform's, CONTRACT §3 v2).
SECRET_SETTINGS = frozenset({"token", "access_code", "access_secret", "password"})


def push_source_dict(r: asyncpg.Record) -> dict[str, Any]:
    """A push source as shown to an admin: whether a secret is set, never the secret; a
    subscription's `config` without its secret settings, which `secrets_set` names."""
    config = r["config"]
    config = json.loads(config) if isinstance(config, str) else dict(config or {})
    return {
        "name": r["name"], "platform": r["platform"], "tenant": r["tenant"], "profile": r["profile"],
        "rate_per_s": r["rate_per_s"], "has_secret": r["secret"] is not None, "created_at": r["created_at"],
        "config": {k: v for k, v in config.items() if k not in SECRET_SETTINGS},
        "secrets_set": sorted(k for k in config if k in SECRET_SETTINGS),
    }


async def upsert_push_source(
    db: Db, *, name: str, platform: str, secret: str | None, tenant: str, profile: str | None, rate_per_s: float,
    config: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], bool]:
    row = await db.fetchrow(
        """INSERT INTO push_sources (name, platform, secret, tenant, profile, rate_per_s, config)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
           ON CONFLICT (name) DO UPDATE SET platform = EXCLUDED.platform, secret = EXCLUDED.secret,
               tenant = EXCLUDED.tenant, profile = EXCLUDED.profile, rate_per_s = EXCLUDED.rate_per_s,
               config = EXCLUDED.config
           RETURNING *, (xmax = 0) AS created""",
        name, platform, secret, tenant, profile, rate_per_s, json.dumps(dict(config or {})),
    )
    return push_source_dict(row), bool(row["created"])


async def get_push_source(db: Db, name: str) -> dict[str, Any] | None:
    row = await db.fetchrow("SELECT * FROM push_sources WHERE name = $1", name)
    return None if row is None else push_source_dict(row)


async def delete_push_source(db: Db, name: str) -> bool:
    return await db.fetchval("DELETE FROM push_sources WHERE name = $1 RETURNING true", name) is not None


async def list_push_sources(db: Db) -> list[dict[str, Any]]:
    return [push_source_dict(r) for r in await db.fetch("SELECT * FROM push_sources ORDER BY name")]
