"""Work-order routes (CONTRACT §11): `GET/POST /api/v1/work-orders`, `GET/PATCH
/api/v1/work-orders/{id}`, CSV with `format=csv`.

Viewers read, operators open and change orders. A token scoped to regions or industries sees
only orders of units inside its scope (`devices.scope`): lists are filtered, anything else is
403. Lists answer `{"items", "next_cursor"}`, newest first; the CSV holds every matching order.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal, Protocol, cast

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from alerting.workorders import store
from alerting.workorders.model import KINDS, STATES, BadTransition, check_transition, default_due, is_overdue
from alerting.workorders.sweep import Sweep
from devices.auth import IndustryFilter, Operator, Principal, Viewer, industry_filter
from devices.cursors import int_cursor
from devices.kinds import DEVICE_ID_RE

router = APIRouter(prefix="/api/v1/work-orders", tags=["work orders"])
Kind = Literal["repair", "reconnect", "battery", "tamper", "false_alarms", "shielded", "hidden_danger"]
State = Literal["open", "assigned", "fixed", "verified", "cancelled"]
assert set(KINDS) == set(Kind.__args__) and set(STATES) == set(State.__args__)  # type: ignore[attr-defined]
CSV_COLUMNS = ("work_order_id", "kind", "state", "overdue", "unit_id", "region", "device_ids", "reason", "assignee",
               "due", "opened_by", "created_at", "updated_at", "closed_at")


class WorkOrderDeps(Protocol):
    """What the work-order routes read of the running service."""

    @property
    def supervision(self) -> Sweep: ...


def _sweep(request: Request) -> Sweep:
    return cast(WorkOrderDeps, request.state.services).supervision


Supervision = Annotated[Sweep, Depends(_sweep)]


class WorkOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind = "hidden_danger"
    unit_id: str | None = Field(None, min_length=1, max_length=64)
    device_ids: list[str] = Field(default_factory=list, max_length=200)
    reason: str = Field(min_length=1, max_length=500)
    assignee: str | None = Field(None, min_length=1, max_length=64)
    due: date | None = None


class WorkOrderPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State | None = None
    assignee: str | None = Field(None, min_length=1, max_length=64)
    due: date | None = None
    reason: str | None = Field(None, min_length=1, max_length=500)


def shown(r: asyncpg.Record, sweep: Sweep, history: list[dict[str, Any]] | None) -> dict[str, Any]:
    out = {k: r[k] for k in ("work_order_id", "kind", "unit_id", "region", "industry", "reason", "assignee", "due",
                             "state", "opened_by", "created_at", "updated_at", "closed_at", "overdue_at")}
    out["device_ids"] = list(r["device_ids"])
    out["overdue"] = is_overdue(r["due"], r["state"], sweep.now(), sweep.tz)
    if history is not None:
        out["history"] = history
    return out


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would take for a formula is quoted with a leading `'`."""
    text = " ".join(value) if isinstance(value, list) else "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(items: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    w.writerows([_cell(i[c]) for c in CSV_COLUMNS] for i in items)
    return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="work-orders.csv"'})


def _forbidden() -> HTTPException:
    return HTTPException(403, "工单不在令牌范围内 / work order outside the token's scope")


@router.get("", response_model=None)
async def list_work_orders(
    principal: Viewer, sweep: Supervision,
    state: Annotated[list[State] | None, Query()] = None, kind: Annotated[list[Kind] | None, Query()] = None,
    unit_id: str | None = None, device_id: str | None = None, assignee: str | None = None,
    overdue: bool | None = None, live: bool | None = Query(None, description="open, assigned or fixed"),
    region: str | None = None, industry: IndustryFilter = None,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
) -> dict[str, Any] | Response:
    """Orders newest first; `overdue=true` is the overdue list, `live=true` the open one."""
    now = sweep.now()
    f = store.Filters(principal.scope(region, industry_filter(industry)), now.astimezone(sweep.tz).date(),
                      state or (), kind or (), unit_id, device_id, assignee, overdue, live)
    if fmt == "csv":
        return _csv([shown(r, sweep, None) for r in await store.page(sweep.pool, f, None, None)])
    rows = await store.page(sweep.pool, f, int_cursor(cursor) if cursor is not None else None, limit)
    histories = await store.history(sweep.pool, [r["work_order_id"] for r in rows])
    items = [shown(r, sweep, histories[r["work_order_id"]]) for r in rows]
    return {"items": items, "next_cursor": str(items[-1]["work_order_id"]) if len(items) == limit else None}


async def _visible(sweep: Sweep, principal: Principal, order_id: int) -> asyncpg.Record:
    r = await store.get(sweep.pool, order_id)
    if r is None:
        raise HTTPException(404, f"没有工单 / no work order {order_id}")
    if not principal.sees(r["region"], r["industry"]):
        raise _forbidden()
    return r


@router.get("/{order_id}")
async def get_work_order(order_id: int, principal: Viewer, sweep: Supervision) -> dict[str, Any]:
    r = await _visible(sweep, principal, order_id)
    out = shown(r, sweep, (await store.history(sweep.pool, [order_id]))[order_id])
    out["notices"] = await store.notices(sweep.pool, order_id)
    return out


async def _unit_of(sweep: Sweep, principal: Principal, body: WorkOrderIn) -> str | None:
    """The order's unit: the body's, else its devices' one; each device known and of that unit."""
    for d in body.device_ids:
        if not DEVICE_ID_RE.fullmatch(d):
            raise HTTPException(422, f"设备编号无效 / invalid device_id {d!r}")
    rows = await sweep.pool.fetch("SELECT device_id, unit_id FROM devices WHERE device_id = ANY($1::text[])",
                                  body.device_ids)
    units = {r["device_id"]: r["unit_id"] for r in rows}
    if missing := [d for d in body.device_ids if d not in units]:
        raise HTTPException(422, f"未知设备 / unknown devices: {', '.join(missing)}")
    unit_id = body.unit_id
    if unit_id is None and units:
        unit_id = next(iter(units.values()))
    if any(u != unit_id for u in units.values()):
        raise HTTPException(422, "设备须属于工单的单位 / every device must belong to the order's unit")
    if unit_id is None:
        if body.device_ids:
            raise HTTPException(422, "设备未归属单位，请给出 unit_id / the devices belong to no unit: give unit_id")
        raise HTTPException(422, "请给出 unit_id 或 device_ids / give unit_id or device_ids")
    unit = await sweep.pool.fetchrow("SELECT region, industry FROM units WHERE unit_id = $1", unit_id)
    if unit is None:
        raise HTTPException(422, f"未知单位 / unknown unit {unit_id!r}")
    if not principal.sees(unit["region"], unit["industry"]):
        raise _forbidden()
    return unit_id


@router.post("", status_code=201)
async def open_work_order(body: WorkOrderIn, principal: Operator, sweep: Supervision) -> dict[str, Any]:
    """Open an order by hand (any kind; `hidden_danger` by default); due defaults to the end of
    the next month. 409 when a device has a live order of this kind."""
    unit_id = await _unit_of(sweep, principal, body)
    now = sweep.now()
    order = store.NewOrder(body.kind, unit_id, list(dict.fromkeys(body.device_ids)), body.reason,
                           body.due or default_due(now, sweep.tz), body.assignee)
    try:
        order_id = await store.open_order(sweep.pool, order, principal.name, now)
    except store.LiveOrderExists as e:
        raise HTTPException(409, str(e)) from None
    except store.UnknownAssignee as e:
        raise HTTPException(422, str(e)) from None
    return await get_work_order(order_id, principal, sweep)


@router.patch("/{order_id}")
async def change_work_order(order_id: int, body: WorkOrderPatch, principal: Operator,
                            sweep: Supervision) -> dict[str, Any]:
    """Assign (an open order becomes `assigned`), mark fixed, cancel, move the due date or edit
    the reason; each change is on the order's history."""
    r = await _visible(sweep, principal, order_id)
    changes = body.model_dump(exclude_unset=True)
    if any(v is None for v in changes.values()):
        raise HTTPException(422, "字段不能为 null / fields cannot be null")
    if "assignee" in changes and r["state"] == "open" and "state" not in changes:
        changes["state"] = "assigned"
    if "state" in changes:
        try:
            check_transition(r["state"], changes["state"], has_devices=bool(r["device_ids"]))
        except BadTransition as e:
            raise HTTPException(409, str(e)) from None
        if changes["state"] == "assigned" and not (changes.get("assignee") or r["assignee"]):
            raise HTTPException(422, "分派须指定处置人 / assigning needs an assignee")
        if changes["state"] == r["state"]:
            del changes["state"]
    try:
        await store.change(sweep.pool, order_id, changes, principal.name, sweep.now())
    except store.UnknownAssignee as e:
        raise HTTPException(422, str(e)) from None
    return await get_work_order(order_id, principal, sweep)
