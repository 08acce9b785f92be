"""Gathers the inputs of `alerting.risk` from the fleet and the alarms table, and renders reports."""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from alerting.model import FIRE_CLASS, Severity
from alerting.risk import COLOURS, TrendAlert, UnitInputs, trend_alerts, unit_scores
from devices.fleet import FAULT, LOW_BATTERY, OFFLINE, ONLINE, TAMPER, Fleet
from devices.fleet_query import live_flags

OPEN = ("active_unack", "active_ack", "cleared_unack")
FIRE_TYPES = [t.name for t in FIRE_CLASS]
SEVERITY_INDEX = {s.name: int(s) for s in Severity}


@dataclass(slots=True)
class RiskTable:
    unit_ids: list[str]
    regions: list[str]
    industries: list[str]
    score: np.ndarray
    colour: np.ndarray
    computed_ms: int

    def row(self, i: int) -> dict[str, Any]:
        return {"unit_id": self.unit_ids[i], "region": self.regions[i], "industry": self.industries[i],
                "score": round(float(self.score[i]), 1), "colour": COLOURS[int(self.colour[i])]}


class RiskService:
    """Recomputes every unit's grade in one vectorized pass, at most every `ttl_s` seconds."""

    def __init__(self, pool: asyncpg.Pool, fleet: Fleet, ttl_s: float = 10.0) -> None:
        self.pool = pool
        self.fleet = fleet
        self.ttl_s = ttl_s
        self._table: RiskTable | None = None
        self._at = 0.0

    async def table(self) -> RiskTable:
        if self._table is None or time.monotonic() - self._at > self.ttl_s:
            self._table = await self._compute()
            self._at = time.monotonic()
        return self._table

    async def _compute(self) -> RiskTable:
        units = await self.pool.fetch("SELECT unit_id, region, industry FROM units ORDER BY unit_id")
        index = {r["unit_id"]: i for i, r in enumerate(units)}
        n = len(units)
        active = np.zeros((n, 4))
        immediate_fire = np.zeros(n)
        fires = np.zeros(n)
        false = np.zeros(n)
        for r in await self.pool.fetch(
            """SELECT unit_id, severity, count(*) AS c,
                      count(*) FILTER (WHERE response = 'immediate' AND type = ANY($2::text[])) AS imm
               FROM alarms WHERE status = ANY($1::text[]) AND unit_id IS NOT NULL GROUP BY unit_id, severity""",
            list(OPEN), FIRE_TYPES,
        ):
            if (i := index.get(r["unit_id"])) is not None:
                active[i, SEVERITY_INDEX[r["severity"]]] += r["c"]
                immediate_fire[i] += r["imm"]
        for r in await self.pool.fetch(
            """SELECT unit_id, count(*) FILTER (WHERE classification = 'fire') AS fires,
                      count(*) FILTER (WHERE classification = 'false_alarm') AS false_alarms
               FROM alarms WHERE first_seen > now() - interval '90 days' AND unit_id IS NOT NULL GROUP BY unit_id"""
        ):
            if (i := index.get(r["unit_id"])) is not None:
                fires[i], false[i] = r["fires"], r["false_alarms"]
        health = self._device_health(units)
        score, colour = unit_scores(UnitInputs(active, immediate_fire, fires, false, **health))
        return RiskTable([r["unit_id"] for r in units], [r["region"] for r in units], [r["industry"] for r in units],
                         score, colour, int(time.time() * 1000))

    def _device_health(self, units: list[asyncpg.Record]) -> dict[str, np.ndarray]:
        """Per registry unit: counts of detectors by state, one bincount per state over the fleet."""
        f = self.fleet
        fleet_unit = f.unit[: f.size]
        flags = live_flags(f, slice(0, f.size))  # panel components share their device's liveness
        has_unit = fleet_unit >= 0
        m = max(len(f.units), 1)

        def per_unit(mask: np.ndarray) -> np.ndarray:
            return np.bincount(fleet_unit[has_unit & mask], minlength=m).astype(np.float64)

        counts = {
            "devices": per_unit(np.ones(f.size, bool)),
            "offline": per_unit((flags & OFFLINE) != 0),
            "faulty": per_unit((flags & FAULT) != 0),
            "low_battery": per_unit((flags & LOW_BATTERY) != 0),
            "tamper_open": per_unit((flags & TAMPER) != 0),
            "working": per_unit(((flags & ONLINE) != 0) & ((flags & FAULT) == 0)),
        }
        to_fleet = np.array([f.units.get(r["unit_id"]) for r in units], np.int64)
        known = to_fleet >= 0
        out = {}
        for name, c in counts.items():
            col = np.zeros(len(units))
            col[known] = c[to_fleet[known]]
            out[name] = col
        return out

    async def trends(self, by: str, weeks: int = 13) -> list[TrendAlert]:
        """Trend warnings per region (`by="region"`, its first three levels) or per industry."""
        group = "array_to_string((string_to_array(a.region, '/'))[1:3], '/')" if by == "region" else "u.industry"
        rows = await self.pool.fetch(
            f"""SELECT {group} AS g, floor(extract(epoch FROM now() - a.first_seen) / 604800)::int AS age, count(*) AS c
                FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id
                WHERE a.first_seen > now() - make_interval(weeks => $1) AND a.type NOT IN ('offline', 'low_battery')
                GROUP BY 1, 2""",
            weeks,
        )
        groups = sorted({r["g"] or "" for r in rows})
        gi = {g: i for i, g in enumerate(groups)}
        weekly = np.zeros((len(groups), weeks))
        for r in rows:
            if 0 <= r["age"] < weeks:
                weekly[gi[r["g"] or ""], weeks - 1 - r["age"]] += r["c"]
        return trend_alerts(groups, weekly)

    async def region_report(self, region: str, weeks: int = 13) -> list[dict[str, Any]]:
        """Weekly alarms, false-alarm rate and offline alarms per device for one region prefix."""
        rows = await self.pool.fetch(
            """SELECT date_trunc('week', first_seen) AS week, count(*) FILTER (WHERE type <> 'offline') AS alarms,
                      count(*) FILTER (WHERE classification = 'false_alarm') AS false_alarms,
                      count(*) FILTER (WHERE classification IS NOT NULL) AS classified,
                      count(*) FILTER (WHERE type = 'offline') AS offline_alarms
               FROM alarms WHERE region LIKE $1 || '%' AND first_seen > now() - make_interval(weeks => $2)
               GROUP BY 1 ORDER BY 1""",
            region, weeks,
        )
        devices = await self.pool.fetchval(
            "SELECT count(*) FROM devices d JOIN units u ON u.unit_id = d.unit_id WHERE u.region LIKE $1 || '%'", region
        )
        return [
            {"week": r["week"].date().isoformat(), "alarms": r["alarms"],
             "false_alarm_rate": round(r["false_alarms"] / r["classified"], 3) if r["classified"] else 0.0,
             "offline_share": round(r["offline_alarms"] / devices, 4) if devices else 0.0}
            for r in rows
        ]


def report_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["week", "alarms", "false_alarm_rate", "offline_share"])
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def report_html(region: str, rows: list[dict[str, Any]]) -> str:
    """A self-contained page with an inline SVG chart (no script, prints as it shows)."""
    width, height, pad = 720, 260, 40
    n = max(len(rows), 1)
    peak = max([r["alarms"] for r in rows] + [1])
    step = (width - 2 * pad) / n
    bars = "".join(
        f'<rect x="{pad + i * step + 2:.1f}" y="{height - pad - (r["alarms"] / peak) * (height - 2 * pad):.1f}" '
        f'width="{step - 4:.1f}" height="{(r["alarms"] / peak) * (height - 2 * pad):.1f}" fill="#c0392b">'
        f'<title>{r["week"]}: {r["alarms"]}</title></rect>'
        for i, r in enumerate(rows)
    )
    line = " ".join(
        f'{pad + (i + 0.5) * step:.1f},{height - pad - r["false_alarm_rate"] * (height - 2 * pad):.1f}' for i, r in enumerate(rows)
    )
    table = "".join(
        f"<tr><td>{r['week']}</td><td>{r['alarms']}</td><td>{r['false_alarm_rate']:.1%}</td><td>{r['offline_share']:.2%}</td></tr>"
        for r in rows
    )
    esc = region.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f"<!doctype html><meta charset=utf-8><title>{esc} 火灾风险周报</title>"
        f"<h1>{esc}: alarms per week (bars) and false-alarm rate (line)</h1>"
        f'<svg width="{width}" height="{height}" role="img" aria-label="weekly alarms">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>{bars}'
        f'<polyline points="{line}" fill="none" stroke="#2c3e50" stroke-width="2"/></svg>'
        f"<table border=1 cellpadding=4><tr><th>week</th><th>alarms</th><th>false-alarm rate</th><th>offline share</th></tr>{table}</table>"
    )
