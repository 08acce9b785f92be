"""Response-time statistics (CONTRACT §9): `GET /api/v1/stats/response?by=region|industry&from&to`.

Per group, over the alarms raised in [`from`, `to`) (default: the last 30 days) within the
caller's token scope: how many, and the median and 90th percentile (PostgreSQL
`percentile_cont`, nulls left out) of each response time of `alarm_view.RESPONSE_TIMES`, in
seconds from the raise. `by=region` groups by the alarm's region path, cut to its first `depth`
segments when `depth` is given; `by=industry` by the unit's industry (`other` without a unit).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from alerting.api import Alarms
from alerting.response.alarm_view import RESPONSE_TIMES, seconds_sql
from devices.auth import IndustryFilter, RegionFilter, Viewer, list_scope

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])
DEFAULT_SPAN = timedelta(days=30)
MAX_DEPTH = 16


def _key(by: str, depth: int | None) -> str:
    """The grouping expression; a depth is parameter $3."""
    if by == "industry":
        return "coalesce(u.industry, 'other')"
    return "a.region" if depth is None else "array_to_string((string_to_array(a.region, '/'))[1:$3::int], '/')"


def _query(key: str, scope_sql: str) -> str:
    times = ",\n       ".join(f"{seconds_sql(n)} AS {n}" for n in RESPONSE_TIMES)
    stats = ",\n       ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {n}) AS {n}_median, "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {n}) AS {n}_p90, count({n}) AS {n}_count"
        for n in RESPONSE_TIMES
    )
    return f"""
WITH t AS (
SELECT {key} AS key,
       {times}
  FROM alarms a LEFT JOIN units u ON u.unit_id = a.unit_id
 WHERE a.created_at >= $1 AND a.created_at < $2 AND {scope_sql})
SELECT key, count(*) AS alarms,
       {stats}
  FROM t GROUP BY key ORDER BY key
"""


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@router.get("/response")
async def response_stats(
    principal: Viewer,
    alarms: Alarms,
    by: Literal["region", "industry"] = "region",
    from_: Annotated[datetime | None, Query(alias="from", description="raised at or after (default: 30 days ago)")]
    = None,
    to: Annotated[datetime | None, Query(description="raised before (default: now)")] = None,
    depth: Annotated[int | None, Query(ge=1, le=MAX_DEPTH, description="by=region: the first N path segments")]
    = None,
    region: RegionFilter = None,
    industry: IndustryFilter = None,
) -> dict[str, Any]:
    """Median and p90 of notified_s, acked_s, arrived_s, resolved_s by region or industry."""
    end = _utc(to) if to else datetime.now(UTC)
    start = _utc(from_) if from_ else end - DEFAULT_SPAN
    if start >= end:
        raise HTTPException(422, "from 须早于 to / from must be before to")
    args: list[Any] = [start, end] + ([depth] if by == "region" and depth is not None else [])
    scope_sql, scope_args = list_scope(principal, region, industry).sql("a.region", "u.industry", first=len(args) + 1)
    rows = await alarms.pool.fetch(_query(_key(by, depth), scope_sql), *args, *scope_args)
    return {
        "by": by, "from": start.isoformat(), "to": end.isoformat(),
        "items": [
            {
                by: r["key"], "alarms": r["alarms"],
                **{n: {"median": _r(r[f"{n}_median"]), "p90": _r(r[f"{n}_p90"]), "count": r[f"{n}_count"]}
                   for n in RESPONSE_TIMES},
            }
            for r in rows
        ],
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
