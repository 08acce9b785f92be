"""Risk colours, scores, aggregates, trend warnings and per-region reports (docs/risk.md).

Every route reads the `RiskService` of the app's lifespan and honours the token's region and
industry scope (`devices.scope`): units and alarms outside it are left out, and a trend or
report of a region outside it is 403.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, cast
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from alerting.risk import COLOURS
from alerting.risk_report import report_csv, report_html
from alerting.risk_service import RiskService
from alerting.risk_table import RiskTable
from alerting.risk_trend import TrendAlert, aggregate, region_prefix
from devices.auth import IndustryFilter, Viewer, industry_filter
from devices.cursors import id_cursor
from devices.registry import InvalidSpec, region_path
from devices.scope import Scope

router = APIRouter(prefix="/api/v1/risk", tags=["risk"])
Colour = Literal["red", "orange", "yellow", "green"]
Depth = Annotated[int, Query(ge=1, le=6, description="region levels a group spans (1 province .. 4 street)")]
Weeks = Annotated[int, Query(ge=2, le=104, description="weeks, the current one included")]


class RiskDeps(Protocol):
    """What the risk routes read of the running service."""

    @property
    def risk(self) -> RiskService: ...


def deps(request: Request) -> RiskDeps:
    return cast(RiskDeps, request.state.services)


def risk_service(d: Annotated[RiskDeps, Depends(deps)]) -> RiskService:
    return d.risk


Risk = Annotated[RiskService, Depends(risk_service)]


def _region(raw: str | None) -> str:
    try:
        return region_path(raw)
    except InvalidSpec as e:
        raise HTTPException(422, str(e)) from None


def _visible(scope: Scope, t: RiskTable) -> np.ndarray:
    return np.fromiter((scope.sees(u.region, u.industry) for u in t.units), bool, len(t.units))


@router.get("/units")
async def unit_colours(
    principal: Viewer, risk: Risk, colour: Colour | None = None, region: str | None = None,
    industry: IndustryFilter = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
) -> dict[str, Any]:
    """Units with score and colour in unit_id order; `cursor` is the previous page's `next_cursor`."""
    t = await risk.table()
    keep = _visible(principal.scope(_region(region), industry_filter(industry)), t)
    if colour is not None:
        keep &= t.scores.colour == COLOURS.index(colour)
    after = id_cursor(cursor) if cursor is not None else None
    rows = [i for i in np.flatnonzero(keep) if after is None or t.units[i].unit_id > after][:limit]
    items = [t.row(int(i)) for i in rows]
    return {"items": items, "next_cursor": items[-1]["unit_id"] if len(items) == limit else None,
            "computed_at": datetime.fromtimestamp(t.computed_ms / 1000, UTC)}


@router.get("/units/{unit_id}")
async def unit_risk(unit_id: str, principal: Viewer, risk: Risk) -> dict[str, Any]:
    """One unit's score with its five parts, the inputs behind them and any override."""
    t = await risk.table()
    i = t.index.get(unit_id)
    if i is None:
        raise HTTPException(404, f"unknown unit {unit_id}")
    if not principal.sees(t.units[i].region, t.units[i].industry):
        raise HTTPException(403, f"unit {unit_id} is outside your regions")
    return {**t.row(i, detail=True), "computed_at": datetime.fromtimestamp(t.computed_ms / 1000, UTC)}


@router.get("/aggregates")
async def aggregates(principal: Viewer, risk: Risk, by: Literal["region", "industry"] = "region", depth: Depth = 3,
                     region: str | None = None, industry: IndustryFilter = None) -> dict[str, Any]:
    """Per region prefix (first `depth` levels) or industry: units per colour, mean and max score."""
    t = await risk.table()
    rows = np.flatnonzero(_visible(principal.scope(_region(region), industry_filter(industry)), t))
    if by == "region":
        keys = region_prefix([t.units[i].region for i in rows], depth)
    else:
        keys = [t.units[i].industry for i in rows]
    groups = aggregate(keys, t.scores.score[rows], t.scores.colour[rows])
    items = [{"group": g.group, "units": g.units, **dict(zip(COLOURS, g.by_colour, strict=True)),
              "mean_score": round(g.mean_score, 1), "max_score": round(g.max_score, 1)} for g in groups]
    return {"items": items, "next_cursor": None}


def _alert_out(a: TrendAlert) -> dict[str, Any]:
    return {"group": a.group, "severity": a.severity, "count": a.count, "baseline": round(a.baseline, 2),
            "weeks": a.weeks, "p_value": a.p_value, "why": a.why}


@router.get("/trends")
async def trends(principal: Viewer, risk: Risk, by: Literal["region", "industry"] = "region", depth: Depth = 3,
                 weeks: Weeks = 13, region: str | None = None) -> dict[str, Any]:
    """Groups whose alarms in the last 7 days are far above their own weekly baseline: one
    `warning` each, saying why. Region groups outside the token's scope are left out; industry
    groups count only alarms within it. `region` limits either to one region prefix."""
    prefix = _region(region)
    if prefix and not principal.sees_region(prefix):
        raise HTTPException(403, "region outside your token's scope")
    scope = principal.scope(prefix)
    alerts = await risk.trends(by, depth=depth, weeks=weeks, scope=scope)
    if by == "region":
        alerts = [a for a in alerts if scope.sees_region(a.group)]
    return {"items": [_alert_out(a) for a in alerts], "next_cursor": None}


@router.get("/report", response_model=None)
async def region_report(principal: Viewer, risk: Risk, region: str = "", format: Literal["csv", "html"] = "csv",
                        weeks: Weeks = 13) -> Response:
    """Weekly alarms, false-alarm rate and offline share of a region: CSV, or HTML with charts."""
    path = _region(region)
    if not principal.sees_region(path):
        raise HTTPException(403, "region outside your token's scope")
    rows = await risk.region_report(principal.scope(path), weeks)
    stem = "risk-report-" + (path.replace("/", "-") or "all")
    if format == "html":
        generated = risk.wall().astimezone(risk.tz).strftime(f"%Y-%m-%d %H:%M ({risk.tz.key})")
        page = report_html(path, rows, generated, risk.tz.key)
        return HTMLResponse(page, headers={"Content-Disposition": _disposition(stem + ".html", inline=True)})
    return PlainTextResponse(report_csv(rows, risk.tz.key), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": _disposition(stem + ".csv")})


def _disposition(name: str, *, inline: bool = False) -> str:
    """An ASCII fallback name and the real (UTF-8, RFC 5987) one."""
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"risk-report.{name.rsplit('.', 1)[1]}\"; filename*=UTF-8''{quote(name)}"
