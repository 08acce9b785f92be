"""The monthly report (CONTRACT §11, docs/supervision.md "Monthly report"): figures of one local
calendar month (MIAOXIANG_DEVICE_TZ) within a scope, gathered from PostgreSQL, and their CSV.

- alarms raised in the month by type and by classification (`unclassified` until resolved);
- false-alarm rate: of the month's alarms resolved, the share resolved as `false_alarm`;
- response times (CONTRACT §9): median and p90 of notified_s, acked_s, arrived_s, resolved_s;
- online rate (联网率): devices registered by the month's end (transmission devices and
  standalone devices, panel components and quarantined devices left out) less those with an
  `offline` or `network_outage` alarm open at that moment, over the registered; and the mean
  over the month's days of the daily sample (`online_samples`, `reports.online_sample`);
- work orders (when migration 0016 is in): opened in the month, closed in it (verified or
  cancelled), and overdue at its end (open then and past due);
- units per risk colour: the grades now (an override counts as its colour).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from alerting.response.alarm_view import RESPONSE_TIMES, seconds_sql
from devices.scope import Scope

CLASSIFICATIONS = ("fire", "false_alarm", "test", "fault", "other", "unclassified")

_BY_TYPE = """
SELECT a.type, coalesce(a.classification, 'unclassified') AS classification, count(*) AS n
  FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id
 WHERE a.first_seen >= $1 AND a.first_seen < $2 AND {scope}
 GROUP BY 1, 2 ORDER BY 1, 2"""
_RESOLVED = """
SELECT count(*) FILTER (WHERE a.status = 'resolved') AS resolved,
       count(*) FILTER (WHERE a.status = 'resolved' AND a.classification = 'false_alarm') AS false_alarms
  FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id
 WHERE a.first_seen >= $1 AND a.first_seen < $2 AND {scope}"""
_TIMES = "WITH t AS (SELECT {times} FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id " \
         "WHERE a.first_seen >= $1 AND a.first_seen < $2 AND {scope}) SELECT {stats} FROM t"
_ONLINE_AT_END = """
WITH reg AS (SELECT d.device_id FROM devices d JOIN units u ON u.unit_id = d.unit_id
              WHERE d.parent_id IS NULL AND NOT d.quarantined AND d.created_at < $1 AND {scope})
SELECT (SELECT count(*) FROM reg) AS registered,
       (SELECT count(DISTINCT x.id) FROM alarms o CROSS JOIN LATERAL unnest(o.device_ids) AS x (id)
         WHERE o.type IN ('offline', 'network_outage') AND o.first_seen < $1
           AND coalesce(o.cleared_at, o.resolved_at, 'infinity') >= $1
           AND x.id IN (SELECT device_id FROM reg)) AS offline"""
_SAMPLES = """
SELECT day, sum(registered) AS registered, sum(online) AS online FROM online_samples u
 WHERE day >= $1 AND day < $2 AND {scope} GROUP BY day ORDER BY day"""
_WORK_ORDERS = """
SELECT count(*) FILTER (WHERE created_at >= $1 AND created_at < $2) AS opened,
       count(*) FILTER (WHERE closed_at >= $1 AND closed_at < $2) AS closed,
       count(*) FILTER (WHERE created_at < $2 AND due < $3 AND (closed_at IS NULL OR closed_at >= $2)) AS overdue
  FROM work_orders u WHERE {scope}"""


@dataclass(slots=True)
class MonthlyReport:
    month: str  # YYYY-MM
    region: str  # '' for every region in scope
    industry: str  # '' for every industry in scope
    generated: str  # local time of the report
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)  # type -> classification -> alarms
    resolved: int = 0
    false_alarms: int = 0
    response: dict[str, dict[str, float | int | None]] = field(default_factory=dict)  # name -> median, p90, count
    registered_at_end: int = 0
    online_at_end: int = 0
    daily: list[tuple[str, int, int]] = field(default_factory=list)  # (day, registered, online)
    work_orders: dict[str, int] = field(default_factory=dict)  # opened, closed, overdue
    colours: dict[str, int] = field(default_factory=dict)

    @property
    def alarms(self) -> int:
        return sum(n for by in self.by_type.values() for n in by.values())

    @property
    def false_alarm_rate(self) -> float | None:
        return self.false_alarms / self.resolved if self.resolved else None

    @property
    def online_rate_at_end(self) -> float | None:
        return self.online_at_end / self.registered_at_end if self.registered_at_end else None

    @property
    def online_rate_mean(self) -> float | None:
        rates = [o / r for _, r, o in self.daily if r]
        return sum(rates) / len(rates) if rates else None


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime, date, date]:
    """The month's [start, end) as aware instants of `tz` and as local dates; ValueError when malformed."""
    year, _, mm = month.partition("-")
    if len(year) != 4 or len(mm) != 2 or not (year.isascii() and year.isdigit() and mm.isascii() and mm.isdigit()):
        raise ValueError(f"month {month!r} is not YYYY-MM")
    first = date(int(year), int(mm), 1)
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return datetime.combine(first, time(), tz), datetime.combine(nxt, time(), tz), first, nxt


async def gather(
    pool: asyncpg.Pool, month: str, scope: Scope, tz: ZoneInfo, colours: dict[str, int], generated: datetime
) -> MonthlyReport:
    """The report of `month` within `scope` (alarms by their region and unit industry; devices,
    samples and work orders by theirs); `colours` are the units per colour now, in scope."""
    start, end, first, nxt = month_bounds(month, tz)
    rep = MonthlyReport(month, scope.region or "", ",".join(scope.industry), generated.astimezone(tz).isoformat(),
                        colours=colours)
    alarm_scope, args = scope.sql("a.region", "coalesce(u.industry, 'other')", first=3)
    for r in await pool.fetch(_BY_TYPE.format(scope=alarm_scope), start, end, *args):
        rep.by_type.setdefault(r["type"], {})[r["classification"]] = r["n"]
    row = await pool.fetchrow(_RESOLVED.format(scope=alarm_scope), start, end, *args)
    assert row is not None
    rep.resolved, rep.false_alarms = row["resolved"], row["false_alarms"]
    times = ", ".join(f"{seconds_sql(n)} AS {n}" for n in RESPONSE_TIMES)
    stats = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {n}) AS {n}_median, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {n}) AS {n}_p90, count({n}) AS {n}_count"
        for n in RESPONSE_TIMES
    )
    row = await pool.fetchrow(_TIMES.format(times=times, stats=stats, scope=alarm_scope), start, end, *args)
    assert row is not None
    rep.response = {n: {"median": _round(row[f"{n}_median"]), "p90": _round(row[f"{n}_p90"]),
                        "count": row[f"{n}_count"]} for n in RESPONSE_TIMES}
    unit_scope, args = scope.sql("u.region", "u.industry", first=2)
    row = await pool.fetchrow(_ONLINE_AT_END.format(scope=unit_scope), end, *args)
    assert row is not None
    rep.registered_at_end, rep.online_at_end = row["registered"], row["registered"] - row["offline"]
    unit_scope, args = scope.sql("u.region", "u.industry", first=3)
    rep.daily = [(r["day"].isoformat(), r["registered"], r["online"])
                 for r in await pool.fetch(_SAMPLES.format(scope=unit_scope), first, nxt, *args)]
    wo_scope, args = scope.sql("u.region", "u.industry", first=4)
    row = await pool.fetchrow(_WORK_ORDERS.format(scope=wo_scope), start, end, nxt, *args)
    assert row is not None
    rep.work_orders = {k: row[k] for k in ("opened", "closed", "overdue")}
    return rep


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 1)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


#: CSV sections: (section, item, value) rows, column names in Chinese and English.
CSV_HEADER = ("分项 / section", "项目 / item", "数值 / value")


def report_rows(rep: MonthlyReport) -> list[tuple[str, str, Any]]:
    """The report as (section, item, value) rows: the CSV, and the HTML page's tables."""
    rows: list[tuple[str, str, Any]] = [
        ("month", "month", rep.month), ("month", "region", rep.region), ("month", "industry", rep.industry),
        ("month", "generated", rep.generated), ("alarms", "total", rep.alarms),
    ]
    for t, by in sorted(rep.by_type.items()):
        rows.append(("alarms_by_type", t, sum(by.values())))
    for c in CLASSIFICATIONS:
        rows.append(("alarms_by_classification", c, sum(by.get(c, 0) for by in rep.by_type.values())))
    rows += [("false_alarms", "resolved", rep.resolved), ("false_alarms", "false_alarm", rep.false_alarms),
             ("false_alarms", "rate", _pct(rep.false_alarm_rate))]
    for n, s in rep.response.items():
        rows += [("response_times", f"{n}_median", s["median"] if s["median"] is not None else ""),
                 ("response_times", f"{n}_p90", s["p90"] if s["p90"] is not None else ""),
                 ("response_times", f"{n}_count", s["count"])]
    rows += [("online", "registered_at_end", rep.registered_at_end), ("online", "online_at_end", rep.online_at_end),
             ("online", "rate_at_end", _pct(rep.online_rate_at_end)),
             ("online", "daily_samples", len(rep.daily)), ("online", "rate_daily_mean", _pct(rep.online_rate_mean))]
    rows += [("work_orders", k, v) for k, v in rep.work_orders.items()]
    rows += [("risk_colours", c, n) for c, n in rep.colours.items()]
    return rows


def report_csv(rep: MonthlyReport) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    w.writerows(report_rows(rep))
    return out.getvalue()
