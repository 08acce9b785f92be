"""Send-time outbound policy (CONTRACT §9): the notifier (`alerting.response.notifier`, its webhook
channels made from v1 escalation contacts), with real PostgreSQL and real local
HTTP servers, checks the address it connects to on every attempt, after resolution, follows no
redirect, and records each failure as a class, never a socket's error text.

Names other than `localhost` are answered by an injected resolver (the seam the service uses for
`getaddrinfo`): a name that resolves publicly when configured and to loopback when sent is the
DNS rebinding the check must stop, and a name the system cannot resolve that reaches the local
receiver shows the sender connects to the address it checked, never to the name again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import uvicorn

from alerting.lifecycle import AlarmLifecycle
from alerting.model import AlarmType, Decision, Response, Severity
from alerting.response.notifier import Notifier
from alerting.stream import AlarmHub, db_replay
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.outbound import (
    NOT_ALLOWED,
    OutboundPolicy,
    Resolver,
    check_target,
    system_resolver,
)
from miaoxiang.embedded import free_port
from miaoxiang.migrate import migrate
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
from tests.service import wait_for

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000
REGION = "江西省/赣州市/章贡区"


class Clock:
    def __call__(self) -> int:
        return T0


class Receiver:
    """Records (path, Host header) of every request; `/redirect` answers 302 to `location`,
    `/status/NNN` answers NNN, anything else 200."""

    def __init__(self, location: str = "") -> None:
        self.calls: list[tuple[str, str]] = []
        self.location = location

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        host = dict(scope["headers"]).get(b"host", b"").decode()
        self.calls.append((scope["path"], host))
        status, headers = 200, [(b"content-type", b"text/plain")]
        if scope["path"] == "/redirect":
            status, headers = 302, [*headers, (b"location", self.location.encode())]
        elif scope["path"].startswith("/status/"):
            status = int(scope["path"].rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def serving(app: Receiver) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    async with p.acquire() as conn:
        await migrate(conn, DEFAULT_MIGRATIONS_DIR)
    yield p
    await p.close()


def dns(answers: dict[str, list[str]]) -> Resolver:
    """The injected resolver: names in `answers` (which a test may change), else the system's."""
    async def resolve(host: str, port: int) -> list[str]:
        if host in answers:
            return list(answers[host])
        if host.endswith(".example"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await system_resolver(host, port)
    return resolve


async def notify(
    pool: asyncpg.Pool, targets: list[str], *, allow: list[str], answers: dict[str, list[str]] | None = None,
    attempts: int = 3, timeout_s: float = 5.0,
) -> dict[str, list[str]]:
    """Raise one alarm whose level-0 contacts are `targets`, run a notifier under `allow` until
    every notification is done; answer each target's recorded attempt details, in order."""
    await pool.executemany("INSERT INTO region_contacts (region, level, name, webhook) VALUES ($1, 0, $2, $3)",
                           [(REGION, f"c{i}", t) for i, t in enumerate(targets)])
    fleet = Fleet()
    fleet.set_unit("U1", region=REGION)
    fleet.upsert("D1", Kind.smoke, unit_id="U1")
    notifier = Notifier(pool, Clock(), policy=OutboundPolicy.parse(allow), resolve=dns(answers or {}),
                        attempts=attempts, backoff_s=0.02, poll_s=0.05, timeout_s=timeout_s)
    lifecycle = AlarmLifecycle(pool, AlarmHub(db_replay(pool)), fleet, Clock(), notifier=notifier)
    worker = asyncio.create_task(notifier.run())
    try:
        await lifecycle.handle([Decision("raise", "device:D1", AlarmType.smoke, Severity.major, Response.immediate,
                                         "smoke.heat", T0, ["D1"], None, [{"device_id": "D1", "ts_ms": T0}])])
        await wait_for(lambda: _all_done(pool, len(targets)), timeout=30)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    details: dict[str, list[str]] = {t: [] for t in targets}
    for r in await pool.fetch("""SELECT c.config ->> 'url' AS target, coalesce(s.error_class, 'http 2xx') AS detail
                                   FROM notification_sends s JOIN channels c ON c.name = s.channel ORDER BY s.id"""):
        details[r["target"]].append(r["detail"])
    return details


async def _all_done(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM notifications WHERE state <> 'queued'") >= n


async def test_redirects_are_answers_not_followed(pool: asyncpg.Pool) -> None:
    landing = Receiver()
    async with serving(landing) as landing_port:
        bouncer = Receiver(location=f"http://127.0.0.1:{landing_port}/landing")
        async with serving(bouncer) as port:
            details = await notify(pool, [f"http://127.0.0.1:{port}/redirect"], allow=["127.0.0.1"])
    assert details == {f"http://127.0.0.1:{port}/redirect": ["http 3xx"]}  # final: a redirect is not retried
    assert [p for p, _ in bouncer.calls] == ["/redirect"] and landing.calls == []


async def test_a_name_that_now_resolves_to_loopback_is_refused_when_sent(pool: asyncpg.Pool) -> None:
    rx = Receiver()
    answers = {"hooks.example": ["93.184.215.14"]}
    async with serving(rx) as port:
        url = f"http://hooks.example:{port}/ok"
        await check_target(url, OutboundPolicy(), dns(answers))  # configured while it resolved publicly
        answers["hooks.example"] = ["127.0.0.1"]  # then the name was pointed inside
        details = await notify(pool, [url, f"http://localhost:{port}/ok"], allow=[], answers=answers)
    assert details == {url: [NOT_ALLOWED], f"http://localhost:{port}/ok": [NOT_ALLOWED]}  # refused at once, final
    assert rx.calls == []
    states = await pool.fetch("SELECT state, attempts FROM notifications")
    assert {(s["state"], s["attempts"]) for s in states} == {("failed", 1)}


async def test_a_listed_name_reaches_the_address_it_was_checked_at(pool: asyncpg.Pool) -> None:
    rx = Receiver()
    async with serving(rx) as port:
        # the system cannot resolve hooks.example: reaching the receiver proves the sender
        # connected to the address it checked (127.0.0.1), not to the name resolved again
        details = await notify(pool, [f"http://hooks.example:{port}/a", f"http://localhost:{port}/b"],
                               allow=["hooks.example", "localhost"], answers={"hooks.example": ["127.0.0.1"]})
    assert list(details.values()) == [["http 2xx"], ["http 2xx"]]
    assert sorted(rx.calls) == [("/a", f"hooks.example:{port}"), ("/b", f"localhost:{port}")]


async def test_an_allowed_name_resolving_also_inside_connects_only_to_what_is_allowed(pool: asyncpg.Pool) -> None:
    rx = Receiver()
    async with serving(rx) as port:
        # 127.0.0.2 is allowed, 127.0.0.1 (where the receiver listens) is not: only .2 is tried
        details = await notify(pool, [f"http://mixed.example:{port}/x"], allow=["127.0.0.2"],
                               answers={"mixed.example": ["127.0.0.1", "127.0.0.2"]}, attempts=1)
    assert list(details.values()) == [["refused"]] and rx.calls == []


async def test_every_failure_is_recorded_as_its_class(pool: asyncpg.Pool) -> None:
    rx = Receiver()
    silent = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)  # accepts, never answers
    silent_port = silent.sockets[0].getsockname()[1]
    closed = free_port()
    async with silent, serving(rx) as port:
        base = f"http://127.0.0.1:{port}"
        targets = {
            f"{base}/status/200": "http 2xx",
            f"{base}/status/503": "http 5xx",
            f"{base}/status/404": "http 4xx",
            f"http://127.0.0.1:{closed}/": "refused",
            f"http://127.0.0.1:{silent_port}/": "timeout",
            f"https://127.0.0.1:{port}/status/200": "tls",  # TLS to a plain-HTTP server
            f"http://nowhere.example:{port}/": "dns",
            "http://169.254.169.254/latest/meta-data/": NOT_ALLOWED,
            "gopher://127.0.0.1:6379/_INFO": "config",  # no channel type sends there: never connected
        }
        details = await notify(pool, list(targets), allow=["127.0.0.1"], attempts=1, timeout_s=0.5)
    assert details == {t: [cls] for t, cls in targets.items()}
