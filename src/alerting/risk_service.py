"""Risk grading at the I/O edge: gathers the inputs of `alerting.risk` from PostgreSQL and the
fleet, incrementally, and answers trends and region reports (docs/risk.md).

A refresh reads only what changed since the last one:
- units: reloaded only when `units` changed (count or newest `updated_at`);
- alarm inputs: only for units with an `alarm_events` row newer than the watermark (every
  alarm change writes one, under the lifecycle's lock, so ids grow in commit order), plus new units;
- device health: one bincount pass over the in-memory fleet (no database);
then the score is one vectorized pass over all units. Every `full_every_s` (default one hour) a
full pass re-reads every unit's alarms, which also ages alarms out of the 90-day history.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
import numpy as np

from alerting.model import FIRE_CLASS, OPEN_STATUSES, AlarmType, Severity
from alerting.risk import COLOURS, UnitInputs
from alerting.risk_report import ReportRow, report_rows
from alerting.risk_table import RiskTable, UnitRow
from alerting.risk_trend import (
    MIN_BASELINE,
    MIN_COUNT,
    P_MAX,
    TrendAlert,
    group_index,
    region_prefix,
    trend_alerts,
    weekly_matrix,
)
from devices import shielded
from devices.fleet import FAULT, LOW_BATTERY, OFFLINE, ONLINE, QUARANTINED, TAMPER, Fleet
from devices.fleet_query import live_flags
from devices.kinds import Kind
from devices.scope import Scope

FIRE_TYPES = sorted(t.name for t in FIRE_CLASS)
#: Alarm types about the health of devices, not about a hazard: left out of trends and report counts.
HEALTH_TYPES = ("offline", "network_outage", "low_battery", "tamper", "device_fault", "panel_fault")
HAZARD_TYPES = sorted(t.name for t in AlarmType if t.name not in HEALTH_TYPES)
#: Kinds that detect a fire (panels relay their detectors); electrical and water monitors do not.
DETECTOR_KINDS = np.array([Kind.smoke, Kind.gas, Kind.uitd], np.int8)
HISTORY_DAYS = 90
WEEK = timedelta(days=7)

_ALARM_INPUTS_SQL = """
SELECT unit_id,
       count(*) FILTER (WHERE status = ANY($1::text[]) AND severity = 'critical') AS critical,
       count(*) FILTER (WHERE status = ANY($1::text[]) AND severity = 'major') AS major,
       count(*) FILTER (WHERE status = ANY($1::text[]) AND severity = 'minor') AS minor,
       count(*) FILTER (WHERE status = ANY($1::text[]) AND severity = 'warning') AS warning,
       count(*) FILTER (
           WHERE status = ANY($1::text[]) AND response = 'immediate' AND type = ANY($2::text[])) AS immediate,
       count(*) FILTER (WHERE classification = 'fire' AND first_seen > $3) AS fires,
       count(*) FILTER (WHERE classification = 'false_alarm' AND first_seen > $3) AS false_alarms
FROM alarms
WHERE unit_id IS NOT NULL AND ($4::text[] IS NULL OR unit_id = ANY($4::text[]))
  AND (status = ANY($1::text[]) OR (classification IN ('fire', 'false_alarm') AND first_seen > $3))
GROUP BY unit_id"""

_CHANGED_UNITS_SQL = """
SELECT DISTINCT a.unit_id FROM alarm_events e JOIN alarms a ON a.alarm_id = e.alarm_id
WHERE e.event_id > $1 AND e.event_id <= $2 AND a.unit_id IS NOT NULL"""

# Work orders (if migration 0016 is in) and unexpired overrides per unit (shielded points: devices.shielded).
_WORK_ORDERS_SQL = """
SELECT unit_id, count(*) AS open, count(*) FILTER (WHERE due < $1) AS overdue
FROM work_orders WHERE unit_id IS NOT NULL AND state NOT IN ('verified', 'cancelled') GROUP BY unit_id"""
_OVERRIDES_SQL = """
SELECT DISTINCT ON (unit_id) unit_id, colour, until, lifted_at FROM risk_overrides ORDER BY unit_id, id DESC"""

EVERYTHING = Scope()

# Alarms per (region, industry, age in whole weeks before $1), hazards only, tests left out;
# {scope}: a `Scope.sql` predicate from $4.
_TREND_SQL = """
SELECT region, industry, floor(extract(epoch FROM $1 - first_seen) / 604800)::int AS age, count(*) AS c
FROM (SELECT a.region, coalesce(u.industry, '') AS industry, a.first_seen, a.type, a.classification
      FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id) x
WHERE first_seen > $1 - make_interval(weeks => $2) AND first_seen <= $1 AND type = ANY($3::text[])
  AND classification IS DISTINCT FROM 'test' AND {scope}
GROUP BY 1, 2, 3"""

# {alarms}, {offline}, {devices}: `Scope.sql` predicates from $4 over the alarms, the offline
# alarms `o` and the devices' units `u`.
_REPORT_SQL = """
WITH w AS (SELECT generate_series(date_trunc('week', $1 AT TIME ZONE $4::text) - make_interval(weeks => $2 - 1),
                                  date_trunc('week', $1 AT TIME ZONE $4::text), interval '1 week') AS week),
a AS (SELECT date_trunc('week', first_seen AT TIME ZONE $4::text) AS week, count(*) AS alarms,
             count(*) FILTER (WHERE classification = 'false_alarm') AS false_alarms,
             count(*) FILTER (WHERE classification IS NOT NULL) AS classified
      FROM alarms
      WHERE {alarms} AND type = ANY($3::text[]) AND classification IS DISTINCT FROM 'test'
        AND first_seen >= (SELECT min(week) FROM w) AT TIME ZONE $4::text
      GROUP BY 1)
SELECT w.week, coalesce(a.alarms, 0) AS alarms, coalesce(a.false_alarms, 0) AS false_alarms,
       coalesce(a.classified, 0) AS classified,
       (SELECT count(DISTINCT d) FROM alarms o CROSS JOIN LATERAL unnest(o.device_ids) d
        WHERE o.type IN ('offline', 'network_outage') AND {offline}
          AND o.first_seen < (w.week + interval '7 days') AT TIME ZONE $4::text
          AND coalesce(o.cleared_at, o.resolved_at, 'infinity') >= w.week AT TIME ZONE $4::text) AS offline_devices,
       (SELECT count(*) FROM devices d JOIN units u ON u.unit_id = d.unit_id
        WHERE {devices} AND NOT d.quarantined
          AND d.created_at < (w.week + interval '7 days') AT TIME ZONE $4::text) AS devices
FROM w LEFT JOIN a ON a.week = w.week ORDER BY w.week"""


@dataclass(frozen=True, slots=True)
class Refresh:
    """What one refresh did: `full` or incremental, units whose alarm inputs were re-read,
    units whose colour changed, and how long it took."""

    full: bool
    reread: int
    changed: int
    ms: float


class RiskService:
    """Keeps every unit's grade; `table()` refreshes it at most every `ttl_s` seconds."""

    def __init__(
        self, pool: asyncpg.Pool, fleet: Fleet, ttl_s: float = 10.0, *, full_every_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        device_tz: str = "Asia/Shanghai",
    ) -> None:
        self.pool = pool
        self.fleet = fleet
        self.ttl_s = ttl_s
        self.full_every_s = full_every_s
        self.clock = clock
        self.wall = wall
        #: work orders' due dates are local dates in this zone
        self.tz = ZoneInfo(device_tz)
        self._table = RiskTable()
        self._lock = asyncio.Lock()
        self._at: float | None = None
        self._full_at: float | None = None
        self._watermark = 0
        self._units_sig: tuple[Any, ...] | None = None
        self.last: Refresh | None = None

    async def table(self) -> RiskTable:
        async with self._lock:
            if self._at is None or self.clock() - self._at >= self.ttl_s:
                await self._refresh(full=False)
            return self._table

    async def refresh(self, *, full: bool = False) -> Refresh:
        """Refresh now (incrementally unless `full`)."""
        async with self._lock:
            return await self._refresh(full=full)

    async def colours(self, unit_ids: Sequence[str]) -> dict[str, str]:
        """Colour of each known unit (for `GET /api/v1/units`; see `devices.api.UnitRisk`)."""
        t = await self.table()
        return {u: t.colour(i) for u in unit_ids if (i := t.index.get(u)) is not None}

    async def _refresh(self, *, full: bool) -> Refresh:
        started = time.perf_counter()
        now = self.clock()
        full = full or self._full_at is None or now - self._full_at >= self.full_every_s
        t = self._table
        async with self.pool.acquire() as conn:
            sig = tuple(await conn.fetchrow("SELECT count(*), max(updated_at) FROM units"))
            new_units: list[str] = []
            if sig != self._units_sig:
                rows = await conn.fetch("SELECT unit_id, region, industry FROM units ORDER BY unit_id")
                new_units = t.reindex([UnitRow(r["unit_id"], r["region"], r["industry"]) for r in rows])
                self._units_sig = sig
            mark = await conn.fetchval("SELECT coalesce(max(event_id), 0) FROM alarm_events")
            if full:
                dirty = None
            else:
                changed = await conn.fetch(_CHANGED_UNITS_SQL, self._watermark, mark)
                dirty = sorted({r["unit_id"] for r in changed if r["unit_id"] in t.index} | set(new_units))
            if dirty is None or dirty:
                await self._read_alarm_inputs(conn, dirty)
            t.set_supervision(await self._supervision(conn))
        self._watermark = mark
        t.set_health(self._device_health())
        changed_rows = t.rescore(int(self.wall().timestamp() * 1000))
        self._at = now
        if full:
            self._full_at = now
        reread = len(t) if dirty is None else len(dirty)
        self.last = Refresh(full, reread, int(changed_rows.size), (time.perf_counter() - started) * 1000)
        return self.last

    async def _read_alarm_inputs(self, conn: asyncpg.Connection, units: list[str] | None) -> None:
        """Replace the alarm inputs of `units` (all units when None)."""
        t = self._table
        since = self.wall() - timedelta(days=HISTORY_DAYS)
        rows = await conn.fetch(_ALARM_INPUTS_SQL, list(OPEN_STATUSES), FIRE_TYPES, since, units)
        target = np.arange(len(t)) if units is None else np.array([t.index[u] for u in units], np.int64)
        values = UnitInputs.zeros(len(t))  # indexed by table row; rows without alarms stay zero
        severities = [s.name for s in Severity]
        for r in rows:
            if (i := t.index.get(r["unit_id"])) is not None:
                values.active_by_severity[i] = [r[s] for s in severities]
                values.active_immediate_fire[i] = r["immediate"]
                values.fires_90d[i] = r["fires"]
                values.false_alarms_90d[i] = r["false_alarms"]
        t.set_alarm_inputs(target, values.take(target))

    async def _supervision(self, conn: asyncpg.Connection) -> dict[str, np.ndarray]:
        """Per table row: open and overdue work orders, shielded points, the override colour (1 + index)."""
        t = self._table
        out = {name: np.zeros(len(t)) for name in ("work_orders_open", "work_orders_overdue", "shielded_points",
                                                    "override")}
        now = self.wall()
        for r in await conn.fetch(_WORK_ORDERS_SQL, now.astimezone(self.tz).date()):
            if (i := t.index.get(r["unit_id"])) is not None:
                out["work_orders_open"][i], out["work_orders_overdue"][i] = r["open"], r["overdue"]
        for unit_id, points in (await shielded.points_per_unit(conn)).items():
            if (i := t.index.get(unit_id)) is not None:
                out["shielded_points"][i] = points
        for r in await conn.fetch(_OVERRIDES_SQL):
            if (i := t.index.get(r["unit_id"])) is not None and r["lifted_at"] is None and r["until"] > now:
                out["override"][i] = COLOURS.index(r["colour"]) + 1
        return out

    def _device_health(self) -> dict[str, np.ndarray]:
        """Per table row: devices, offline, faulty, low-battery and tampered ones, working detectors."""
        f, t = self.fleet, self._table
        n = len(t)
        unit_row = np.array([t.index.get(name, -1) for name in f.units.names], np.int64)
        flags = live_flags(f, slice(0, f.size))  # panel components share their device's liveness
        slot_unit = f.unit[: f.size]
        row = np.where(slot_unit >= 0, unit_row[np.maximum(slot_unit, 0)] if unit_row.size else -1, -1)
        counted = (row >= 0) & ((flags & QUARANTINED) == 0)

        def per_row(mask: np.ndarray) -> np.ndarray:
            return np.bincount(row[counted & mask], minlength=n).astype(np.float64)[:n]

        detector = np.isin(f.kind[: f.size], DETECTOR_KINDS)
        return {
            "devices": per_row(np.ones(f.size, bool)),
            "offline": per_row((flags & OFFLINE) != 0),
            "faulty": per_row((flags & FAULT) != 0),
            "low_battery": per_row((flags & LOW_BATTERY) != 0),
            "tamper_open": per_row((flags & TAMPER) != 0),
            "working": per_row(detector & ((flags & ONLINE) != 0) & ((flags & FAULT) == 0)),
        }

    async def trends(
        self, by: Literal["region", "industry"], *, depth: int = 3, weeks: int = 13, scope: Scope = EVERYTHING,
        p_max: float = P_MAX, min_count: int = MIN_COUNT, min_baseline: float = MIN_BASELINE,
    ) -> list[TrendAlert]:
        """Trend warnings per region prefix (its first `depth` levels) or per industry, over
        alarms in `scope`; `weeks` includes the current one."""
        where, params = scope.sql(first=4)
        rows = await self.pool.fetch(_TREND_SQL.format(scope=where), self.wall(), weeks, HAZARD_TYPES, *params)
        if by == "region":
            keys = region_prefix([r["region"] or "" for r in rows], depth)
        else:
            keys = [r["industry"] or "" for r in rows]
        if not keys:
            return []
        names, g = group_index(keys)
        ages = np.array([r["age"] for r in rows], np.int64)
        counts = np.array([r["c"] for r in rows], np.float64)
        weekly = weekly_matrix(g, ages, counts, len(names), weeks)
        alerts = trend_alerts(names, weekly, p_max=p_max, min_count=min_count, min_baseline=min_baseline)
        return [a for a in alerts if a.group]  # alarms without a region or unit form no group

    async def region_report(self, scope: Scope, weeks: int = 13) -> list[ReportRow]:
        """Calendar weeks (Monday, in the device time zone), oldest first, the current one last, of what
        is in `scope`."""
        (alarms, params), (offline, _), (devices, _) = (
            scope.sql(region, industry, first=5) for region, industry in (
                ("region", "(SELECT x.industry FROM units x WHERE x.unit_id = alarms.unit_id)"),
                ("o.region", "(SELECT x.industry FROM units x WHERE x.unit_id = o.unit_id)"),
                ("u.region", "u.industry"),
            )
        )
        sql = _REPORT_SQL.format(alarms=alarms, offline=offline, devices=devices)
        rows = await self.pool.fetch(sql, self.wall(), weeks, HAZARD_TYPES, self.tz.key, *params)

        def col(name: str) -> np.ndarray:
            return np.array([r[name] for r in rows], np.float64)

        week_days: list[date] = [r["week"].date() for r in rows]
        return report_rows(week_days, col("alarms"), col("false_alarms"), col("classified"), col("offline_devices"),
                           col("devices"))
