"""Risk colours, aggregates, trend warnings and per-region reports (issue: 四色 grading)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from alerting.risk import COLOURS
from alerting.risk_service import RiskService, report_csv, report_html
from devices.auth import Viewer

router = APIRouter(prefix="/api/v1/risk", tags=["risk"])


def risk_service(request: Request) -> RiskService:
    return request.app.state.risk


Risk = Annotated[RiskService, Depends(risk_service)]


@router.get("/units")
async def unit_colours(
    principal: Viewer,
    risk: Risk,
    colour: Literal["red", "orange", "yellow", "green"] | None = None,
    region: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Units with score and colour, ordered by unit_id; `cursor` is the last unit_id seen."""
    t = await risk.table()
    items = []
    for i, unit_id in enumerate(t.unit_ids):
        if cursor is not None and unit_id <= cursor:
            continue
        if not principal.sees_region(t.regions[i]) or (region and not t.regions[i].startswith(region)):
            continue
        if colour and COLOURS[int(t.colour[i])] != colour:
            continue
        items.append(t.row(i))
        if len(items) == limit:
            break
    return {"items": items, "next_cursor": items[-1]["unit_id"] if len(items) == limit else None}


@router.get("/aggregates")
async def aggregates(principal: Viewer, risk: Risk, by: Literal["region", "industry"] = "region",
                     depth: Annotated[int, Query(ge=1, le=6)] = 3) -> dict[str, Any]:
    """Per region prefix (first `depth` levels) or industry: units per colour and mean score."""
    t = await risk.table()
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"units": 0, "score_sum": 0.0, **{c: 0 for c in COLOURS}})
    for i in range(len(t.unit_ids)):
        if not principal.sees_region(t.regions[i]):
            continue
        key = "/".join(t.regions[i].split("/")[:depth]) if by == "region" else t.industries[i]
        g = groups[key]
        g["units"] += 1
        g["score_sum"] += float(t.score[i])
        g[COLOURS[int(t.colour[i])]] += 1
    items = [{"group": k, **{c: v[c] for c in COLOURS}, "units": v["units"],
              "mean_score": round(v["score_sum"] / v["units"], 1)} for k, v in sorted(groups.items())]
    return {"items": items, "next_cursor": None}


@router.get("/trends")
async def trends(principal: Viewer, risk: Risk, by: Literal["region", "industry"] = "region") -> dict[str, Any]:
    """Groups whose alarms this week are far above their own baseline (severity `warning`)."""
    alerts = [a for a in await risk.trends(by) if by != "region" or principal.sees_region(a.group)]
    return {"items": [{"group": a.group, "severity": "warning", "count": a.count, "baseline": round(a.baseline, 2),
                       "p_value": a.p_value, "why": a.why} for a in alerts], "next_cursor": None}


@router.get("/report", response_model=None)
async def region_report(principal: Viewer, risk: Risk, region: str,
                        format: Literal["csv", "html"] = "csv") -> Response:
    """Weekly alarms, false-alarm rate and offline share for a region: CSV, or HTML with a chart."""
    if not principal.sees_region(region):
        raise HTTPException(403, "region outside your token's scope")
    rows = await risk.region_report(region)
    if format == "html":
        return HTMLResponse(report_html(region, rows))
    return PlainTextResponse(report_csv(rows), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="risk-report.csv"'})
