"""Limits at the HTTP edge, against the real service over loopback sockets: unverified pushes
spend their address's budget, never the source's; body caps per route (413, refused while a
chunked body streams in); import rows with oversized fields or deep nesting rejected per row;
request head and body deadlines (408) with many real dribbling sockets; malformed cursors 400;
browser hardening headers."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from ingest.codecs.generic import hmac_signature
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SECRET = "gen-secret-1"
HEAD_TIMEOUT_S = 1.5
BODY_TIMEOUT_S = 1.5
IMPORT_MAX = 256 * 1024
REPORT = {"device_id": "868120301234567", "kind": "smoke", "ts": 1795341600000, "seq": 1, "event": "report",
          "data": {"battery_pct": 86}}


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(update={
        "http_header_timeout_s": HEAD_TIMEOUT_S, "http_body_timeout_s": BODY_TIMEOUT_S,
        "http_import_max_bytes": IMPORT_MAX, "push_unverified_per_min": 10,
    })


def host_port(svc: RunningService) -> tuple[str, int]:
    host, port = svc.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def read_all(reader: asyncio.StreamReader, timeout: float) -> bytes:
    async with asyncio.timeout(timeout):
        return await reader.read()


# --- push budgets ------------------------------------------------------------------------------
async def test_unsigned_flood_spends_its_address_budget_not_the_sources(limited: Settings) -> None:
    body = json.dumps(REPORT).encode()
    signed = {"content-type": "application/json", "x-miaoxiang-signature": hmac_signature(SECRET, body)}
    bad = {"content-type": "application/json", "x-miaoxiang-signature": "sha256=" + "0" * 64}
    async with running_service(limited) as svc:
        source = {"name": "gen", "platform": "generic", "secret": SECRET, "rate_per_s": 5}
        assert (await svc.http.post("/api/v1/push-sources", json=source, headers=svc.auth())).status_code == 201
        # the attacker comes from another loopback address than the platform
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=svc.base_url, transport=transport, timeout=10) as attacker:
            flood = [(await attacker.post("/api/v1/ingest/push/gen", content=body, headers=bad)).status_code
                     for _ in range(40)]
            unknown = (await attacker.post("/api/v1/ingest/push/nope", content=body, headers=signed)).status_code
            refused = (await attacker.post("/api/v1/ingest/push/gen", content=body, headers=signed)).json()
        platform = [(await svc.http.post("/api/v1/ingest/push/gen", content=body, headers=signed)).status_code
                    for _ in range(5)]
    print("\nPUSH unsigned flood:", {"attacker": dict(Counter(flood)), "platform": platform})
    assert flood[:10] == [401] * 10 and set(flood[10:]) == {429}
    assert unknown == 429 and "too many requests from this address" in refused["detail"]
    assert platform == [200] * 5  # the flood spent none of the source's 5 requests/s


# --- body caps ----------------------------------------------------------------------------------
async def test_body_caps_per_route(limited: Settings) -> None:
    async with running_service(limited) as svc:
        a = svc.auth()
        big_import = "device_id,kind\n" + "".join(f"D{i:07d},smoke\n" for i in range(IMPORT_MAX // 14))
        r = await svc.http.post("/api/v1/devices/import", content=big_import, headers={**a, "content-type": "text/csv"})
        assert r.status_code == 413 and r.json()["detail"].startswith("请求体超过")
        assert f"{IMPORT_MAX}-byte limit" in r.json()["detail"] and r.headers["x-content-type-options"] == "nosniff"

        unit = {"name": "大单位", "contacts": [{"name": "x" * 2000, "phone": "1"}] * 40}
        assert (await svc.http.post("/api/v1/units", json=unit, headers=a)).status_code == 413
        many = {"unit_id": "U1", "name": "单位", "contacts": [{"name": f"c{i}", "phone": "1"} for i in range(51)]}
        assert (await svc.http.post("/api/v1/units", json=many, headers=a)).status_code == 422
        assert (await svc.http.post("/api/v1/units", json={**many, "contacts": many["contacts"][:50]},
                                    headers=a)).status_code == 201

        token = {"name": "t" * 300_000, "role": "viewer"}  # the default cap (256 KiB)
        assert (await svc.http.post("/api/v1/tokens", json=token, headers=a)).status_code == 413

        for device_id, kind in (("S1", "smoke"), ("T1", "uitd")):
            r = await svc.http.post("/api/v1/devices", json={"device_id": device_id, "kind": kind, "unit_id": "U1"},
                                    headers=a)
            assert r.status_code == 201, r.text
        params = {"note": "n" * 200}
        smoke = await svc.http.post("/api/v1/devices/S1/commands", json={"cmd": "reboot", "params": params}, headers=a)
        assert smoke.status_code == 413 and "128" in smoke.json()["detail"], smoke.text
        uitd = await svc.http.post("/api/v1/devices/T1/commands", json={"cmd": "reboot", "params": params}, headers=a)
        assert uitd.status_code == 201, uitd.text
        over = {"cmd": "reboot", "params": {"x": "y" * 20_000}}  # over the route's 4 KiB
        assert (await svc.http.post("/api/v1/devices/T1/commands", json=over, headers=a)).status_code == 413
        # 5 MB declared: refused from the head alone, before a byte of the body is sent
        host, port = host_port(svc)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/v1/devices/T1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-admin-token"
                     b"\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b'limit"}'), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413")
        assert (await svc.http.get("/readyz")).status_code == 200


async def test_chunked_import_over_the_cap_is_refused_while_it_streams(limited: Settings) -> None:
    """No Content-Length: the service counts as the body arrives and answers 413 long before the
    client has sent it all (the client keeps sending until it sees the answer)."""
    async with running_service(limited) as svc:
        host, port = host_port(svc)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/v1/devices/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-admin-token\r\n"
                     b"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"device_id,kind\n" + b"D0000001,smoke\n" * 4000
        sent, total = 0, 40 * 1024 * 1024
        answer = b""
        try:
            while sent < total:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
                try:
                    answer = await asyncio.wait_for(reader.read(4096), 0.01)
                except TimeoutError:
                    continue
                break
        except ConnectionError:
            pass
        if not answer:
            answer = await read_all(reader, 5)
        writer.close()
    print("\nCHUNKED import:", {"sent_before_answer": sent, "would_have_sent": total, "cap": IMPORT_MAX})
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 4 * 1024 * 1024


async def test_import_rows_with_oversized_fields_or_deep_nesting_are_rejected_per_row(limited: Settings) -> None:
    async with running_service(limited) as svc:
        a = svc.auth()
        csv_body = ("device_id,kind,location\nA1,smoke,\nA2,smoke," + "x" * 200_000 + "\nA3,smoke," + "y" * 1001
                    + "\nA4,gas,\n")
        r = await svc.http.post("/api/v1/devices/import", content=csv_body, headers={**a, "content-type": "text/csv"})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["created"], answer["rejected"]) == (2, 2)
        assert [(e["line"], "1000" in e["reason"]) for e in answer["errors"]] == [(3, True), (4, True)]
        deep = {"device_id": "B2", "kind": "smoke", "location": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {}}}}}}}}}
        lines = [json.dumps({"device_id": "B1", "kind": "smoke"}), "[" * 100_000 + "]" * 100_000, json.dumps(deep),
                 json.dumps({"device_id": "B3", "kind": "smoke", "location": "z" * 1001}),
                 json.dumps({"device_id": "B4", "kind": "smoke", "location": {"a": {"b": 1}}})]
        r = await svc.http.post("/api/v1/devices/import", content="\n".join(lines),
                                headers={**a, "content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["created"], answer["rejected"]) == (2, 3)
        reasons = {e["line"]: e["reason"] for e in answer["errors"]}
        assert "8" in reasons[2] and "8" in reasons[3] and "1000" in reasons[4]


# --- head and body deadlines ---------------------------------------------------------------------
async def dribble_head(host: str, port: int, *, after_one_request: bool = False) -> tuple[float, bytes]:
    """Send a request head one byte at a time, never finishing it; answer (seconds until the
    service closed the connection, what it sent)."""
    reader, writer = await asyncio.open_connection(host, port)
    received = b""
    if after_one_request:  # a kept-alive connection dribbling its second request
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = await reader.readuntil(b'{"status":"ok"}')
    started = time.monotonic()
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        async with asyncio.timeout(HEAD_TIMEOUT_S + 5):
            while not reader.at_eof():
                writer.write(b"X")
                try:
                    received += await asyncio.wait_for(reader.read(1024), 0.2)
                except TimeoutError:
                    continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, received


async def test_dribbling_request_heads_are_closed_within_the_bound(limited: Settings) -> None:
    async with running_service(limited) as svc:
        host, port = host_port(svc)
        tasks = [asyncio.create_task(dribble_head(host, port, after_one_request=i % 10 == 0)) for i in range(60)]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        normal = await svc.http.get("/healthz")  # the service still answers while they dribble
        normal_s = time.monotonic() - started
        results = await asyncio.gather(*tasks)
    seconds = [s for s, _ in results]
    print("\nDRIBBLED heads:", {"sockets": len(results), "closed_after_s_max": round(max(seconds), 2),
                                "normal_request_s": round(normal_s, 3)})
    assert normal.status_code == 200 and normal_s < 1.0
    assert all(data.rstrip(b"X").endswith(b"request head not complete within 1.5 s") for _, data in results)
    assert all(b"HTTP/1.1 408" in data for _, data in results)
    assert max(seconds) < HEAD_TIMEOUT_S + 1.0


async def test_a_body_slower_than_the_deadline_is_answered_408(limited: Settings) -> None:
    async with running_service(limited) as svc:
        host, port = host_port(svc)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-admin-token\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        answer = b""
        async with asyncio.timeout(BODY_TIMEOUT_S + 5):
            while not reader.at_eof():
                try:
                    writer.write(b" ")
                    answer += await asyncio.wait_for(reader.read(4096), 0.2)
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
        elapsed = time.monotonic() - started
        writer.close()
        ok = await svc.http.post("/api/v1/tokens", json={"name": "t", "role": "viewer"}, headers=svc.auth())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert "请求体未在" in answer.decode() and elapsed < BODY_TIMEOUT_S + 1.0
    assert ok.status_code == 201


# --- cursors -----------------------------------------------------------------------------------
NOT_IDS = ["²", "١٢٣", "x" * 65, "a b", "\x00", "ü"]
NOT_INTS = [*NOT_IDS, "9" * 40, "-1", "1.5", "garbage", "0x10", "+5", " 5"]
NOT_TIMES = [*NOT_INTS, "999999999999999999:1", "-1:1", "1:²", "²:1", "1:" + "9" * 40]


async def test_malformed_cursors_answer_400_on_every_list_route(limited: Settings) -> None:
    async with running_service(limited) as svc:
        a = svc.auth()
        unit = await svc.http.post("/api/v1/units", json={"unit_id": "U1", "name": "单位"}, headers=a)
        device = await svc.http.post("/api/v1/devices", json={"device_id": "S1", "kind": "smoke", "unit_id": "U1"},
                                     headers=a)
        assert (unit.status_code, device.status_code) == (201, 201)
        routes: dict[str, list[str]] = {
            "/api/v1/devices": [*NOT_IDS, "no-such-device"],
            "/api/v1/units": NOT_IDS,
            "/api/v1/risk/units": NOT_IDS,
            "/api/v1/alarms": NOT_INTS,
            "/api/v1/dead-letters": NOT_INTS,
            "/api/v1/escalation-contacts": NOT_INTS,
            "/api/v1/devices/S1/commands": [*NOT_TIMES, "1:not-a-uuid"],
            "/api/v1/devices/S1/readings": NOT_TIMES,
        }
        answers: dict[str, Any] = {}
        for path, cursors in routes.items():
            for cursor in cursors:
                r = await svc.http.get(path, params={"cursor": cursor}, headers=a)
                answers[f"{path} {cursor[:12]!r}"] = r.status_code
                if r.status_code == 400:
                    assert "next_cursor" in r.json()["detail"]
        for path in routes:  # a page walk still works
            assert (await svc.http.get(path, params={"limit": 1}, headers=a)).status_code == 200, path
    wrong = {k: v for k, v in answers.items() if v != 400}
    assert not wrong, wrong


# --- headers -----------------------------------------------------------------------------------
async def test_html_pages_carry_csp_and_every_response_nosniff(limited: Settings) -> None:
    async with running_service(limited) as svc:
        report = await svc.http.get("/api/v1/risk/report", params={"format": "html"}, headers=svc.auth())
        console = await svc.http.get("/")
        health = await svc.http.get("/healthz")
        missing = await svc.http.get("/api/v1/nothing-here")
        docs = await svc.http.get("/docs")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in report.headers["content-security-policy"]
    assert "script-src" not in report.headers["content-security-policy"]  # default-src 'none': no script runs
    assert report.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in console.headers["content-security-policy"]  # the console keeps its own
    assert console.headers["content-security-policy"].count("frame-ancestors") == 1
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    for r in (report, console, health, missing, docs):
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], r.url
    assert "content-security-policy" not in health.headers


async def test_live_streams_outlast_the_head_deadline(limited: Settings) -> None:
    """The head deadline ends at the head: an SSE stream and a WebSocket stay open beyond it."""
    import websockets

    async with running_service(limited) as svc:
        ws_url = svc.base_url.replace("http://", "ws://") + "/api/v1/alarms/ws?token=test-admin-token"
        async with svc.http.stream("GET", "/api/v1/alarms/stream", headers=svc.auth()) as sse, \
                websockets.connect(ws_url) as ws:
            assert sse.status_code == 200
            lines = sse.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            await asyncio.sleep(HEAD_TIMEOUT_S + 1.0)
            pong = await ws.ping()
            await asyncio.wait_for(pong, 2)  # the WebSocket still answers
            with pytest.raises(TimeoutError):  # the stream is open, waiting for events (no end)
                while True:
                    await asyncio.wait_for(anext(lines), 0.5)
