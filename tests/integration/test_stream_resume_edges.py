"""Resume points of the live alarm streams, served by real uvicorn with a real pool: a
malformed Last-Event-ID (header or query, SSE and WebSocket) is refused, never a 500 or a
stream held open; one ahead of the newest event resumes from now and new alarms follow."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.integration.test_alarm_api import ADMIN, T0, Api, api, read_sse, sse, subscribed

pytestmark = pytest.mark.integration
__all__ = ["api"]  # the fixture, shared with the alarm route tests

MALFORMED = ["²", "١٢٣", "9" * 40, "-1", "1.5", "garbage", "0x10", "1e3"]


async def test_malformed_last_event_id_is_400_on_sse(api: Api) -> None:
    answers = {}
    for bad in MALFORMED:
        header = await api.http.get("/api/v1/alarms/stream", headers={**ADMIN, "Last-Event-ID": bad.encode()})
        query = await api.http.get("/api/v1/alarms/stream", params={"last_event_id": bad}, headers=ADMIN)
        answers[bad] = (header.status_code, query.status_code)
        assert "Last-Event-ID" in header.json()["detail"]
    assert set(answers.values()) == {(400, 400)}, answers
    assert not api.service.hub.subscribers  # nothing held open


async def test_malformed_last_event_id_closes_the_websocket_with_a_policy_violation(api: Api) -> None:
    ws_base = api.base.replace("http://", "ws://") + "/api/v1/alarms/ws"
    token = ADMIN["Authorization"].removeprefix("Bearer ")
    closes = []
    for bad in ["²", "9" * 40, True, {"x": 1}]:
        async with websockets.connect(ws_base) as ws:
            await ws.send(json.dumps({"token": token, "last_event_id": bad}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        closes.append((closed.value.rcvd.code, closed.value.rcvd.reason) if closed.value.rcvd else None)
    async with websockets.connect(f"{ws_base}?token={token}&last_event_id=%C2%B2") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    closes.append((closed.value.rcvd.code, closed.value.rcvd.reason) if closed.value.rcvd else None)
    assert all(c is not None and c[0] == 1008 and "Last-Event-ID" in c[1] for c in closes), closes


async def test_last_event_id_ahead_of_the_newest_resumes_from_now(api: Api) -> None:
    await api.raise_("G1", T0)
    newest = await api.pool.fetchval("SELECT max(event_id) FROM alarm_events")
    for future in (str(newest + 1_000), "999999999999999999"):
        async with sse(api, {**ADMIN, "Last-Event-ID": future}) as stream:
            await subscribed(api, 1)
            await api.raise_(f"G{2 if future.startswith('9') else 3}", T0 + 1)
            [got] = await read_sse(stream, 1)
        await subscribed(api, 0)
        assert got.event == "alarm" and int(got.id or 0) > newest
        newest = int(got.id or 0)
