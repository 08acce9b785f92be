"""`GET /api/v1/stats/overview`: the fleet's counts by status, kind and region, the devices
offline longest, and the active alarms (CONTRACT §5). Here rather than in `devices` because the
alarms are this package's table; the fleet counts come from `devices.fleet_query`."""

from __future__ import annotations

from typing import Annotated, Any, Protocol, cast

import asyncpg
import numpy as np
from fastapi import APIRouter, Depends, Query, Request

from alerting.api import UNIT_INDUSTRY
from alerting.model import ACTIVE_STATUSES
from devices import fleet_query, registry
from devices.api import ms_iso
from devices.auth import IndustryFilter, RegionFilter, Viewer, list_scope
from devices.fleet import Fleet

router = APIRouter(prefix="/api/v1", tags=["devices"])

_ACTIVE_ALARMS_SQL = """SELECT severity, status, count(*) AS n FROM alarms
WHERE status = ANY($1::text[]) AND {scope}
GROUP BY severity, status"""


class OverviewDeps(Protocol):
    """What the overview reads of the running service."""

    @property
    def fleet(self) -> Fleet: ...

    @property
    def pool(self) -> asyncpg.Pool: ...


def deps(request: Request) -> OverviewDeps:
    return cast(OverviewDeps, request.state.services)


@router.get("/stats/overview")
async def overview(
    principal: Viewer,
    d: Annotated[OverviewDeps, Depends(deps)],
    region_depth: Annotated[int, Query(ge=1, le=6, description="region levels to count by (1: province)")] = 1,
    region: RegionFilter = None,
    industry: IndustryFilter = None,
) -> dict[str, Any]:
    """Counts by status, kind and region; the (up to 100) devices offline longest; active alarms;
    within the token's scope and the `region` and `industry` filters."""
    fleet = d.fleet
    scope = list_scope(principal, region, industry)
    unit_ids, regions = await registry.scoped_unit_ids(d.pool, scope), scope.regions or None
    counts = fleet_query.counts(
        fleet, unit_ids=unit_ids, region_prefix=scope.region, scope=regions, region_depth=region_depth
    )
    offline = fleet_query.query(
        fleet, status="offline", unit_ids=unit_ids, region_prefix=scope.region, scope=regions, limit=fleet.size or 1
    )
    longest = offline[np.argsort(fleet.offline_since_ms[offline], kind="stable")[:100]]
    where, params = scope.sql(industry_col=UNIT_INDUSTRY, first=2)
    rows = await d.pool.fetch(_ACTIVE_ALARMS_SQL.format(scope=where), list(ACTIVE_STATUSES), *params)
    return {
        **counts,
        "offline_devices": [
            {"device_id": fleet.device_ids[s], "offline_since": ms_iso(int(fleet.offline_since_ms[s]))}
            for s in longest.tolist()
        ],
        "active_alarms": {
            "total": sum(r["n"] for r in rows),
            "unacknowledged": sum(r["n"] for r in rows if r["status"] == "active_unack"),
            "by_severity": {
                sev: sum(r["n"] for r in rows if r["severity"] == sev)
                for sev in ("critical", "major", "minor", "warning")
            },
        },
    }
