"""Work orders in PostgreSQL (migration 0016): open, read, list, change, verify, mark overdue.

Every write records a `work_order_events` row (the order's history) in its transaction.
`work_order_devices` holds the (device, kind) pairs of live orders, so a second live order of
one pair fails on its primary key whoever races. Times come from the caller (an injected clock).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

from alerting.response.targets import AlarmFacts, Responder, duty_officers
from alerting.workorders.model import CLOSED
from devices.scope import Scope

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


class UnknownAssignee(ValueError):
    """The assignee is not a current responder (422)."""


class LiveOrderExists(ValueError):
    """A device of the order has a live order of this kind already (409); `work_order_id` is it."""

    def __init__(self, device_id: str, kind: str, work_order_id: int) -> None:
        super().__init__(f"设备 {device_id} 已有未关闭的 {kind} 工单 {work_order_id} / device {device_id} has a live "
                         f"{kind} work order ({work_order_id})")
        self.work_order_id = work_order_id


@dataclass(frozen=True, slots=True)
class NewOrder:
    kind: str
    unit_id: str | None
    device_ids: Sequence[str]
    reason: str
    due: date
    assignee: str | None = None


_COLUMNS = """w.work_order_id, w.kind, w.unit_id, w.region, w.industry, w.device_ids, w.reason, w.assignee,
              w.due, w.state, w.opened_by, w.created_at, w.updated_at, w.closed_at, w.overdue_at"""


async def _event(conn: asyncpg.Connection, order_id: int, at: datetime, action: str, actor: str,
                 detail: Mapping[str, Any] | None = None) -> None:
    await conn.execute(
        "INSERT INTO work_order_events (work_order_id, at, action, actor, detail) VALUES ($1, $2, $3, $4, $5::jsonb)",
        order_id, at, action, actor, json.dumps(dict(detail or {}), ensure_ascii=False, default=str),
    )


async def _check_assignee(conn: asyncpg.Connection, assignee: str) -> None:
    if not await conn.fetchval("SELECT true FROM responders WHERE responder_id = $1 AND deleted_at IS NULL", assignee):
        raise UnknownAssignee(f"未知的处置人 / unknown responder {assignee!r}")


async def _notice(conn: asyncpg.Connection, order_id: int, responder_ids: Sequence[str], reason: str,
                  at: datetime) -> None:
    await conn.executemany(
        "INSERT INTO work_order_notices (work_order_id, responder_id, reason, created_at) VALUES ($1, $2, $3, $4)",
        [(order_id, r, reason, at) for r in dict.fromkeys(responder_ids)],
    )


async def open_order(pool: asyncpg.Pool, order: NewOrder, actor: str, now: datetime) -> int:
    """Open an order (assigned when it names an assignee); answer its id. Raises
    `LiveOrderExists` or `UnknownAssignee`; nothing is written then."""
    async with pool.acquire() as conn, conn.transaction():
        if order.assignee is not None:
            await _check_assignee(conn, order.assignee)
        order_id: int = await conn.fetchval(
            """INSERT INTO work_orders (kind, unit_id, region, industry, device_ids, reason, assignee, due, state,
                                        opened_by, created_at, updated_at)
               SELECT $1, $2, coalesce(u.region, ''), coalesce(u.industry, 'other'), $3, $4, $5, $6, $7, $8, $9, $9
                 FROM (SELECT 1) one LEFT JOIN units u ON u.unit_id = $2
               RETURNING work_order_id""",
            order.kind, order.unit_id, list(order.device_ids), order.reason, order.assignee, order.due,
            "assigned" if order.assignee else "open", actor, now,
        )
        for device_id in order.device_ids:
            taken = await conn.fetchval(
                """INSERT INTO work_order_devices (device_id, kind, work_order_id) VALUES ($1, $2, $3)
                   ON CONFLICT (device_id, kind) DO UPDATE SET device_id = EXCLUDED.device_id
                   RETURNING work_order_id""",
                device_id, order.kind, order_id,
            )
            if taken != order_id:
                raise LiveOrderExists(device_id, order.kind, taken)
        await _event(conn, order_id, now, "opened", actor, {"kind": order.kind, "reason": order.reason})
        if order.assignee is not None:
            await _event(conn, order_id, now, "assigned", actor, {"assignee": order.assignee})
            await _notice(conn, order_id, [order.assignee], "assigned", now)
    return order_id


async def live_pairs(db: Db) -> set[tuple[str, str]]:
    """(device_id, kind) of every live order."""
    return {(r["device_id"], r["kind"]) for r in await db.fetch("SELECT device_id, kind FROM work_order_devices")}


async def get(db: Db, order_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {_COLUMNS} FROM work_orders w WHERE w.work_order_id = $1", order_id)


async def history(db: Db, order_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """Each order's events, oldest first."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in order_ids}
    rows = await db.fetch(
        """SELECT work_order_id, at, action, actor, detail FROM work_order_events
            WHERE work_order_id = ANY($1::bigint[]) ORDER BY id""", list(order_ids))
    for r in rows:
        out[r["work_order_id"]].append(
            {"at": r["at"], "action": r["action"], "actor": r["actor"], "detail": json.loads(r["detail"])})
    return out


@dataclass(frozen=True, slots=True)
class Filters:
    """List filters: each narrows (None: any). `overdue` compares `due` with `today`."""

    scope: Scope
    today: date
    state: Sequence[str] = ()
    kind: Sequence[str] = ()
    unit_id: str | None = None
    device_id: str | None = None
    assignee: str | None = None
    overdue: bool | None = None
    live: bool | None = None


async def page(db: Db, f: Filters, after: int | None, limit: int | None) -> list[asyncpg.Record]:
    """Orders matching `f`, newest first (ids below `after`); all of them when `limit` is None."""
    where, params = f.scope.sql("w.region", "w.industry")
    clauses = [where]

    def arg(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if f.state:
        clauses.append(f"w.state = ANY({arg(list(f.state))}::text[])")
    if f.kind:
        clauses.append(f"w.kind = ANY({arg(list(f.kind))}::text[])")
    if f.unit_id is not None:
        clauses.append(f"w.unit_id = {arg(f.unit_id)}")
    if f.device_id is not None:
        clauses.append(f"{arg(f.device_id)} = ANY(w.device_ids)")
    if f.assignee is not None:
        clauses.append(f"w.assignee = {arg(f.assignee)}")
    closed = "w.state IN (" + ", ".join(f"'{c}'" for c in CLOSED) + ")"
    if f.live is not None:
        clauses.append(f"NOT {closed}" if f.live else closed)
    if f.overdue is not None:
        late = f"(NOT {closed} AND w.due < {arg(f.today)})"
        clauses.append(late if f.overdue else f"NOT {late}")
    if after is not None:
        clauses.append(f"w.work_order_id < {arg(after)}")
    sql = f"SELECT {_COLUMNS} FROM work_orders w WHERE {' AND '.join(clauses)} ORDER BY w.work_order_id DESC"
    if limit is not None:
        sql += f" LIMIT {arg(limit)}"
    return await db.fetch(sql, *params)


async def change(pool: asyncpg.Pool, order_id: int, changes: Mapping[str, Any], actor: str, now: datetime) -> None:
    """Apply a person's `changes` (`assignee`, `state`, `due`, `reason`), each as a history event;
    an assignee is told. The caller checked the transition; a state of `CLOSED` frees the devices.
    A new `due` lets the order become overdue (and people be told) again."""
    async with pool.acquire() as conn, conn.transaction():
        if changes.get("assignee") is not None:
            await _check_assignee(conn, changes["assignee"])
        for column in ("reason", "due", "assignee", "state"):
            if column not in changes:
                continue
            value = changes[column]
            reset = ", overdue_at = NULL" if column == "due" else ""
            await conn.execute(f"UPDATE work_orders SET {column} = $2, updated_at = $3{reset} WHERE work_order_id = $1",
                               order_id, value, now)
            action = {"state": value, "assignee": "assigned"}.get(column, "edited")
            await _event(conn, order_id, now, action, actor, {column: value})
            if column == "assignee" and value is not None:
                await _notice(conn, order_id, [value], "assigned", now)
        if changes.get("state") in CLOSED:
            await _close(conn, order_id, now)


async def _close(conn: asyncpg.Connection, order_id: int, now: datetime) -> None:
    await conn.execute("UPDATE work_orders SET closed_at = $2 WHERE work_order_id = $1", order_id, now)
    await conn.execute("DELETE FROM work_order_devices WHERE work_order_id = $1", order_id)


async def fixed(db: Db) -> list[asyncpg.Record]:
    """Fixed orders with devices and when each was fixed (its latest `fixed` event)."""
    return await db.fetch(
        """SELECT w.work_order_id, w.kind, w.device_ids,
                  (SELECT max(e.at) FROM work_order_events e
                    WHERE e.work_order_id = w.work_order_id AND e.action = 'fixed') AS fixed_at
             FROM work_orders w WHERE w.state = 'fixed' AND cardinality(w.device_ids) > 0""")


async def verify(pool: asyncpg.Pool, order_id: int, now: datetime) -> bool:
    """Mark a fixed order verified (its devices reported healthy); False if it changed meanwhile."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            """UPDATE work_orders SET state = 'verified', updated_at = $2 WHERE work_order_id = $1 AND state = 'fixed'
               RETURNING true""", order_id, now)
        if not done:
            return False
        await _event(conn, order_id, now, "verified", "system", {"why": "devices report healthy"})
        await _close(conn, order_id, now)
    return True


async def mark_overdue(pool: asyncpg.Pool, today: date, now: datetime) -> list[int]:
    """Orders past due for the first time: stamp `overdue_at`, record it, and tell the assignee and
    the region's duty officers (closest scope); answer their ids."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """UPDATE work_orders SET overdue_at = $2
                WHERE overdue_at IS NULL AND due < $1 AND state <> ALL($3::text[])
               RETURNING work_order_id, unit_id, region, assignee""", today, now, list(CLOSED))
        if not rows:
            return []
        officers = [
            Responder(r["responder_id"], r["role"], tuple(r["regions"]), tuple(r["unit_ids"]))
            for r in await conn.fetch(
                """SELECT responder_id, role, regions, unit_ids FROM responders
                    WHERE role = 'duty_officer' AND deleted_at IS NULL""")
        ]
        for r in rows:
            facts = AlarmFacts("work_order", "minor", "none", r["unit_id"], r["region"])
            told = [o.responder_id for o in duty_officers(facts, officers, now)]
            if r["assignee"] is not None:
                told.insert(0, r["assignee"])
            await _event(conn, r["work_order_id"], now, "overdue", "system", {"told": told})
            await _notice(conn, r["work_order_id"], told, "overdue", now)
    return [r["work_order_id"] for r in rows]


async def notices(db: Db, order_id: int) -> list[dict[str, Any]]:
    """Who was to be told about an order, and why; whether it was sent (`state`, `sent_at`, and
    `error_class` of a failure or the cause of a skip)."""
    rows = await db.fetch(
        """SELECT responder_id, reason, created_at, state, sent_at, error_class FROM work_order_notices
            WHERE work_order_id = $1 ORDER BY id""", order_id)
    return [dict(r) for r in rows]
