"""`GET /api/v1/reports/monthly?month=YYYY-MM&region&industry&format=csv|html` (CONTRACT §11),
within the token's scope (a region or industry filter narrows it, never widens it)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from alerting.reports.monthly import gather, month_bounds, report_csv
from alerting.reports.monthly_html import report_html
from alerting.risk import COLOURS
from alerting.risk_api import Risk
from devices.auth import IndustryFilter, RegionFilter, Viewer, list_scope

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
Month = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, a local calendar month")]


@router.get("/monthly", response_model=None)
async def monthly_report(
    principal: Viewer, risk: Risk, month: Month, region: RegionFilter = None, industry: IndustryFilter = None,
    format: Literal["csv", "html"] = "csv",
) -> Response:
    """The month's alarms, false-alarm rate, response times, online rate, work orders and risk colours."""
    scope = list_scope(principal, region, industry)
    try:
        month_bounds(month, risk.tz)
    except ValueError:
        raise HTTPException(422, f"月份无效 / month {month!r} is not a valid YYYY-MM") from None
    t = await risk.table()
    seen = Counter(t.colour(i) for i, u in enumerate(t.units) if scope.sees(u.region, u.industry))
    colours = {c: seen.get(c, 0) for c in reversed(COLOURS)}
    rep = await gather(risk.pool, month, scope, risk.tz, colours, risk.wall())
    stem = f"monthly-report-{month}"
    if format == "html":
        return HTMLResponse(report_html(rep), headers={"Content-Disposition": f'inline; filename="{stem}.html"'})
    return PlainTextResponse(report_csv(rep), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{stem}.csv"'})
