"""Work-order notices reach people (CONTRACT §11) on real PostgreSQL and a real local webhook
receiver: an assignment sends the assignee one signed message in the work-order shape (no
`notification_id`), an overdue order tells the assignee and the region's duty officer, a 5xx is
retried, an address the outbound policy refuses fails with its class at once, a closed order's
notice is skipped, two senders sharing the table never send a notice twice, and the service
(its composition root) sends an assignment made through the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest

from alerting.response.channels.webhook import SIGNATURE, TIMESTAMP, signature
from alerting.workorders import store
from alerting.workorders.notices import NoticeSender
from devices.outbound import NOT_ALLOWED, OutboundPolicy
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR, Settings
from tests.providers.server import ProviderServer, Reply, Request
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
ZG = "江西省/赣州市/章贡区"
SECRET = "wo-secret"
LOCAL = OutboundPolicy.parse(["127.0.0.1"])


class Hook:
    """Checks the signature, answers 503 to the first `busy` calls of /busy/*, else 204."""

    def __init__(self, busy: int = 0) -> None:
        self.busy = busy
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, req: Request) -> Reply:
        ts = req.headers.get(TIMESTAMP.lower(), "")
        if req.headers.get(SIGNATURE.lower()) != signature(SECRET, ts, req.body):
            return Reply(401, {"error": "bad signature"})
        if req.path.startswith("/busy") and self.busy > 0:
            self.busy -= 1
            return Reply(503, {"error": "busy"})
        self.bodies.append((req.path, json.loads(req.body)))
        return Reply(204, b"")


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    handler = Hook(busy=2)
    with ProviderServer(handler).running() as server:
        yield handler, server.url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
        await conn.execute("INSERT INTO units (unit_id, name, address, region) VALUES "
                           "('u-zg', '章贡小区', '章贡区红旗大道 1 号', $1)", ZG)
        await conn.execute("""INSERT INTO devices (device_id, kind, unit_id, location)
                              VALUES ('d1', 'smoke', 'u-zg', '"3号楼2层东"')""")
    yield p
    await p.close()


async def channel(pool: asyncpg.Pool, name: str, url: str) -> None:
    await pool.execute("INSERT INTO channels (name, type, config) VALUES ($1, 'webhook', $2::jsonb)",
                       name, json.dumps({"url": url, "secret": SECRET}))


async def responder(pool: asyncpg.Pool, rid: str, role: str, channels: list[str], regions: list[str]) -> None:
    await pool.execute(
        "INSERT INTO responders (responder_id, name, role, channels, regions) VALUES ($1, $1, $2, $3, $4)",
        rid, role, channels, regions)


def order(assignee: str | None, due: date = date(2026, 4, 30), devices: tuple[str, ...] = ("d1",)) -> store.NewOrder:
    return store.NewOrder("battery", "u-zg", list(devices), "电量低 / low battery", due, assignee)


@contextlib.asynccontextmanager
async def senders(pool: asyncpg.Pool, n: int = 1, **options: Any) -> AsyncIterator[None]:
    options = {"policy": LOCAL, "attempts": 4, "backoff_s": 0.02, "poll_s": 0.05, **options}
    tasks = [asyncio.create_task(NoticeSender(pool, lambda: int(NOW.timestamp() * 1000), **options).run())
             for _ in range(n)]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def settled(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    await wait_for(lambda: _none_queued(pool), timeout=15)
    return await pool.fetch("SELECT * FROM work_order_notices ORDER BY id")


async def _none_queued(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM work_order_notices WHERE state = 'queued'")


async def test_assignment_sends_one_signed_work_order_message(pool: asyncpg.Pool, hook: tuple[Hook, str]) -> None:
    handler, url = hook
    await channel(pool, "wang-hook", f"{url}/ok/wang")
    await responder(pool, "wang", "maintainer", ["wang-hook"], [ZG])
    order_id = await store.open_order(pool, order("wang"), "op", NOW)
    async with senders(pool):
        [notice] = await settled(pool)
        await asyncio.sleep(0.2)  # nothing more comes
    assert notice["state"] == "sent" and notice["sent_at"] is not None and notice["channel"] == "wang-hook"
    [(path, body)] = handler.bodies
    assert path == "/ok/wang"
    assert set(body) == {"work_order_notice_id", "notice", "contact", "work_order", "text"}
    assert "notification_id" not in body and body["work_order_notice_id"] == str(notice["id"])
    assert body["notice"] == "assigned" and body["contact"] == "wang"
    wo = body["work_order"]
    assert (wo["work_order_id"], wo["kind"], wo["state"], wo["due"], wo["overdue"]) == (
        order_id, "battery", "assigned", "2026-04-30", False)
    assert wo["unit_name"] == "章贡小区" and wo["address"] == "章贡区红旗大道 1 号" and wo["device_ids"] == ["d1"]
    text = body["text"]
    assert text.startswith("【工单分派】更换电池 章贡小区")
    for part in ("章贡区红旗大道 1 号", "d1（3号楼2层东）", "电量低", "整改期限：2026-04-30", "已分派"):
        assert part in text
    assert "/r/" not in text  # no responder link
    sends = await pool.fetch("SELECT channel, attempt, ok FROM work_order_sends")
    assert [tuple(s) for s in sends] == [("wang-hook", 1, True)]


async def test_overdue_tells_assignee_and_duty_officer_and_retries_5xx(
    pool: asyncpg.Pool, hook: tuple[Hook, str]
) -> None:
    handler, url = hook
    await channel(pool, "wang-hook", f"{url}/ok/wang")
    await channel(pool, "duty-hook", f"{url}/busy/duty")  # 503 twice, then 204
    await responder(pool, "wang", "maintainer", ["wang-hook"], [ZG])
    await responder(pool, "duty-zg", "duty_officer", ["duty-hook"], [ZG])
    order_id = await store.open_order(pool, order("wang", due=date(2026, 3, 9)), "op", NOW)
    assert await store.mark_overdue(pool, date(2026, 3, 10), NOW) == [order_id]
    async with senders(pool, language="en"):
        notices = await settled(pool)
    assert [(n["responder_id"], n["reason"], n["state"]) for n in notices] == [
        ("wang", "assigned", "sent"), ("wang", "overdue", "sent"), ("duty-zg", "overdue", "sent")]
    assert notices[2]["attempts"] == 3
    got = sorted((path, b["notice"], b["contact"]) for path, b in handler.bodies)
    assert got == [("/busy/duty", "overdue", "duty-zg"), ("/ok/wang", "assigned", "wang"),
                   ("/ok/wang", "overdue", "wang")]
    duty = next(b for p, b in handler.bodies if p == "/busy/duty")
    assert duty["work_order"]["overdue"] is True
    assert duty["text"].startswith("[work order overdue] battery at 章贡小区")
    assert "Due: 2026-03-09 (overdue)" in duty["text"]
    sends = await pool.fetch("SELECT attempt, ok, error_class FROM work_order_sends WHERE notice_id = $1 ORDER BY id",
                             notices[2]["id"])
    assert [tuple(s) for s in sends] == [(1, False, "http 5xx"), (2, False, "http 5xx"), (3, True, None)]


async def test_refused_address_fails_with_its_class_and_closed_orders_are_skipped(
    pool: asyncpg.Pool, hook: tuple[Hook, str]
) -> None:
    handler, url = hook
    await channel(pool, "inside", "http://10.1.2.3/hook")  # not allowed by MIAOXIANG_OUTBOUND_ALLOW
    await channel(pool, "li-hook", f"{url}/ok/li")
    await responder(pool, "zhao", "maintainer", ["inside"], [ZG])
    await responder(pool, "li", "maintainer", ["li-hook"], [ZG])
    await store.open_order(pool, order("zhao"), "op", NOW)
    closed = await store.open_order(pool, order("li", devices=()), "op", NOW)
    await store.change(pool, closed, {"state": "cancelled"}, "op", NOW)
    async with senders(pool):
        notices = await settled(pool)
    assert [(n["responder_id"], n["state"], n["error_class"]) for n in notices] == [
        ("zhao", "failed", NOT_ALLOWED), ("li", "skipped", "order closed")]
    assert notices[0]["sent_at"] is None and notices[0]["attempts"] == 1  # refused: not retried
    assert handler.bodies == []


async def test_two_senders_never_send_a_notice_twice(pool: asyncpg.Pool, hook: tuple[Hook, str]) -> None:
    handler, url = hook
    await channel(pool, "wang-hook", f"{url}/ok/wang")
    await responder(pool, "wang", "maintainer", ["wang-hook"], [ZG])
    for _ in range(40):
        await store.open_order(pool, order("wang", devices=()), "op", NOW)
    async with senders(pool, n=2, batch=5):
        notices = await settled(pool)
        await asyncio.sleep(0.3)
    assert {n["state"] for n in notices} == {"sent"} and len(notices) == 40
    ids = [b["work_order_notice_id"] for _, b in handler.bodies]
    assert sorted(ids, key=int) == [str(n["id"]) for n in notices]  # each once
    assert await pool.fetchval("SELECT count(*) FROM work_order_sends") == 40


async def test_the_service_sends_an_assignment_made_through_the_api(settings: Settings, hook: tuple[Hook, str]) -> None:
    handler, url = hook
    async with running_service(settings) as svc:
        unit = {"unit_id": "u-zg", "name": "章贡小区", "region": ZG}
        assert (await svc.http.post("/api/v1/units", json=unit, headers=svc.auth())).status_code in (200, 201)
        pool: asyncpg.Pool = svc.app.state.services.pool
        await channel(pool, "wang-hook", f"{url}/ok/wang")
        await responder(pool, "wang", "maintainer", ["wang-hook"], [ZG])
        made = await svc.http.post("/api/v1/work-orders", headers=svc.auth(),
                                   json={"unit_id": "u-zg", "reason": "灭火器过期", "assignee": "wang"})
        assert made.status_code == 201, made.text
        await wait_for(lambda: handler.bodies, timeout=15)
        [(path, body)] = handler.bodies
        assert path == "/ok/wang" and body["notice"] == "assigned"
        assert body["work_order"]["work_order_id"] == made.json()["work_order_id"]
        got = (await svc.http.get(f"/api/v1/work-orders/{made.json()['work_order_id']}", headers=svc.auth())).json()
        [notice] = got["notices"]
        assert notice["state"] == "sent" and notice["sent_at"] is not None and notice["error_class"] is None
