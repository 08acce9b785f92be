"""Push sources are cached (`SOURCE_TTL_S`), yet a new token, a deletion made by another
PostgreSQL session (another process) and a new source all take effect within the TTL."""

from __future__ import annotations

import asyncio
import base64
import json

import asyncpg

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.mx1 import encode_mx1
from ingest.transports.http_push import SOURCE_TTL_S
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service, wait_for

T0 = 1_795_341_600_000
PUSH = "/api/v1/ingest/push/ctw"


def ctwing(seq: int) -> bytes:
    frame = encode_mx1(Reading("868120301234569", Kind.smoke, Event.heartbeat, T0 + seq, 0, seq, {"battery_pct": 80}))
    return json.dumps({
        "upPacketSN": -1, "upDataSN": -1, "topic": "v1/up/ad", "timestamp": T0 + seq, "tenantId": "1",
        "serviceId": "", "protocol": "tcp", "productId": "1", "messageType": "dataReport", "deviceType": "",
        "deviceId": "x", "IMEI": "868120301234569", "IMSI": "4600",
        "payload": {"APPdata": base64.b64encode(frame).decode()},
    }).encode()  # fmt: skip


async def _status(svc: RunningService, token: str, seq: int) -> int:
    return (await svc.http.post(f"{PUSH}?token={token}", content=ctwing(seq))).status_code


async def _answers(svc: RunningService, token: str, seq: int, status: int) -> bool:
    return await _status(svc, token, seq) == status


async def _configure(svc: RunningService, token: str) -> None:
    r = await svc.http.post("/api/v1/push-sources", json={"name": "ctw", "platform": "ctwing", "token": token},
                            headers=svc.auth())
    assert r.status_code in (200, 201), r.text


async def test_source_changes_reach_the_push_path_within_the_ttl(settings: Settings) -> None:
    async with running_service(settings) as svc:
        assert await _status(svc, "t1", 1) == 404  # not configured, and not remembered as such
        await _configure(svc, "t1")
        assert await _status(svc, "t1", 2) == 200  # found at once
        await _configure(svc, "t2")  # a new token: the old one stops within the TTL
        loop = asyncio.get_running_loop()
        changed = loop.time()
        seq = iter(range(3, 10_000))
        await wait_for(lambda: _answers(svc, "t1", next(seq), 401), timeout=SOURCE_TTL_S + 2, interval=0.05)
        assert loop.time() - changed <= SOURCE_TTL_S + 0.5
        assert await _status(svc, "t2", next(seq)) == 200
        other = await asyncpg.connect(settings.database_url)  # another process deletes it
        try:
            await other.execute("DELETE FROM push_sources WHERE name = 'ctw'")
        finally:
            await other.close()
        deleted = loop.time()
        await wait_for(lambda: _answers(svc, "t2", next(seq), 404), timeout=SOURCE_TTL_S + 2, interval=0.05)
        assert loop.time() - deleted <= SOURCE_TTL_S + 0.5
