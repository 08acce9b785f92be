"""Hostile input against the real app over loopback HTTP: the push route fuzzed (random,
truncated, oversized, wrong types, invalid UTF-8, huge arrays, deep nesting) for every platform,
correctly signed so it reaches the decoders; every answer is 200/401/404/413/422/429, never a 5xx,
and every rejected input is a dead letter with a reason. Then schemathesis over the OpenAPI
spec, and the per-source rate limit. Figures are printed (run with -s)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import asyncpg
import pytest

from ingest.codecs.generic import hmac_signature
from ingest.codecs.onenet import onenet_signature
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

MAX_BYTES = 16_384
SECRET, CT_TOKEN, ON_TOKEN = "gen-secret-1", "ct-token-1", "on-token-1"
IMEI = "868120301234567"
VALID = {"device_id": IMEI, "kind": "smoke", "ts": 1795341600000, "seq": 1, "event": "alarm",
         "data": {"smoke_obscuration_pct_m": 4.2, "battery_pct": 86}}
CTWING = {"upPacketSN": -1, "upDataSN": -1, "topic": "v1/up/ad", "timestamp": 1795341600000, "tenantId": "1",
          "serviceId": "smoke", "protocol": "lwm2m", "productId": "1", "messageType": "dataReport",
          "deviceType": "", "deviceId": "d1", "IMEI": IMEI, "IMSI": "4600",
          "payload": {"serviceData": {"smoke_state": 1, "battery_value": 80}}}
ONENET_MSG = {"at": 1795341600000, "type": 1, "imei": IMEI, "dev_id": 1, "ds_id": "3200_0_5750", "value": "alarm"}


def hostile_bodies(rng: random.Random, seed: dict[str, Any], count: int) -> list[bytes]:
    """Deterministic hostile bodies around a valid seed document."""
    valid = json.dumps(seed).encode()
    wrong_types: list[Any] = [None, True, 0, -1, 2**70, 1e308, "", "x" * 300, [], {}, [[]], {"": {}}]
    bodies: list[bytes] = [
        b"", b"{", b"[", b"null", b"[]", b"{}", b"\xff\xfe\x00", b'{"a":"\xed\xa0\x80"}', b'"\\ud800"',
        b"[" * 50_000, b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"[" + b"{}," * 4000 + b"{}]", b"[" + b",".join([valid] * 60) + b"]", b"[" + b"1," * 7000 + b"1]",
        valid.replace(b"smoke", b"\xff\xff"), valid + b"\x00garbage", b"\xa5\x01" + bytes(40),
        json.dumps({**seed, "ts": "not a time"}).encode(), json.dumps({**seed, "data": [1, 2]}).encode(),
    ]
    while len(bodies) < count:
        choice = rng.randrange(6)
        if choice == 0:
            bodies.append(rng.randbytes(rng.randrange(1, 400)))
        elif choice == 1:
            bodies.append(valid[: rng.randrange(len(valid))])
        elif choice == 2:
            doc = json.loads(valid)
            key = rng.choice(list(doc))
            doc[key] = rng.choice(wrong_types)
            bodies.append(json.dumps(doc).encode())
        elif choice == 3:
            raw = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            bodies.append(bytes(raw))
        elif choice == 4:
            doc = json.loads(valid)
            nested: Any = rng.choice(wrong_types)
            for _ in range(rng.randrange(1, 200)):
                nested = [nested] if rng.random() < 0.5 else {"k": nested}
            doc[rng.choice(list(doc))] = nested
            bodies.append(json.dumps(doc).encode())
        else:
            bodies.append(json.dumps([rng.choice(wrong_types) for _ in range(rng.randrange(1, 2000))]).encode())
    return bodies


def onenet_wrap(msg: bytes) -> bytes:
    """A OneNET body whose msg_signature signs `msg` as sent (so the decoder sees it)."""
    try:
        text = msg.decode("utf-8")
        signed = json.loads(text)
    except (ValueError, RecursionError):  # not JSON: send it as a string value, which the decoder must reject
        text = json.dumps(msg.decode("utf-8", "replace"))
        signed = json.loads(text)
    sig = onenet_signature(ON_TOKEN, "n0nce", signed if isinstance(signed, str) else text)  # a string msg: its value
    return ('{"msg":' + text + ',"nonce":"n0nce","msg_signature":' + json.dumps(sig) + "}").encode()


async def configure_sources(svc: RunningService) -> None:
    for body in (
        {"name": "gen", "platform": "generic", "secret": SECRET, "rate_per_s": 100_000},
        {"name": "ctw", "platform": "ctwing", "token": CT_TOKEN, "rate_per_s": 100_000},
        {"name": "one", "platform": "onenet", "token": ON_TOKEN, "rate_per_s": 100_000},
        {"name": "slow", "platform": "generic", "secret": SECRET, "rate_per_s": 2},
    ):
        r = await svc.http.post("/api/v1/push-sources", json=body, headers=svc.auth())
        assert r.status_code in (200, 201), r.text


async def push(svc: RunningService, source: str, body: bytes) -> int:
    headers = {"content-type": "application/json"}
    if source in ("gen", "slow"):
        headers["x-miaoxiang-signature"] = hmac_signature(SECRET, body)
    elif source == "ctw":
        headers["x-miaoxiang-token"] = CT_TOKEN
    return (await svc.http.post(f"/api/v1/ingest/push/{source}", content=body, headers=headers)).status_code


@pytest.fixture
def hostile_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"push_max_bytes": MAX_BYTES})


async def test_fuzzed_push_never_5xx_and_every_rejection_is_a_dead_letter(hostile_settings: Settings) -> None:
    rng = random.Random(9)
    started = time.monotonic()
    tried: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    async with running_service(hostile_settings) as svc:
        await configure_sources(svc)
        db = await asyncpg.connect(hostile_settings.database_url)
        try:
            for source, seed in (("gen", VALID), ("ctw", CTWING), ("one", ONENET_MSG)):
                for body in hostile_bodies(rng, seed, 150):
                    if source == "one":
                        body = onenet_wrap(body)
                    before = await db.fetchval("SELECT count(*) FROM dead_letters")
                    status = await push(svc, source, body)
                    tried[source] += 1
                    statuses[status] += 1
                    assert status < 500, f"{source} answered {status} to {body[:200]!r}"
                    if len(body) > MAX_BYTES:
                        assert status == 413, (source, len(body), status)
                        continue
                    assert status in (200, 422), f"{source}: {status} for a correctly signed {body[:120]!r}"
                    added = await db.fetch("SELECT reason FROM dead_letters ORDER BY id OFFSET $1", before)
                    if status == 422:
                        assert added, f"{source}: 422 without a dead letter for {body[:120]!r}"
                    assert all(r["reason"] for r in added)
            # oversized without a Content-Length (chunked): still 413, read no further than the limit
            async def chunks():
                for _ in range(40):
                    yield b"[" * 1024

            r = await svc.http.post(
                "/api/v1/ingest/push/gen", content=chunks(), headers={"x-miaoxiang-signature": "sha256=00"}
            )
            statuses[r.status_code] += 1
            assert r.status_code == 413
            # hostile names and query strings on the other push routes
            for path in (
                "/api/v1/ingest/push/%00",
                "/api/v1/ingest/push/" + "x" * 5000,
                "/api/v1/ingest/push/..%2F..%2Fetc",
                "/api/v1/ingest/push/one?msg=%FF&nonce=&signature=",
                "/api/v1/ingest/push/gen?msg=a&nonce=b&signature=c",
                "/api/v1/ingest/push/one?msg=" + "a" * 10_000 + "&nonce=n&signature=s",
            ):
                r = await svc.http.get(path) if "?" in path else await svc.http.post(path, content=b"{}")
                statuses[r.status_code] += 1
                assert r.status_code in (401, 404, 422), (path[:80], r.status_code)
            dead = await svc.http.get("/api/v1/dead-letters", params={"limit": 5}, headers=svc.auth())
            assert dead.status_code == 200 and all(d["reason"] and "raw" in d for d in dead.json()["items"])
            dead_total = await db.fetchval("SELECT count(*) FROM dead_letters")
            assert svc.app.state.services.background_error is None
        finally:
            await db.close()
    fivexx = sum(n for s, n in statuses.items() if s >= 500)
    print("\nHOSTILE push:", json.dumps({"inputs_tried": sum(tried.values()) + 7, "per_platform": tried,
                                          "statuses": {str(k): v for k, v in sorted(statuses.items())},
                                          "5xx": fivexx, "dead_letters": dead_total,
                                          "seconds": round(time.monotonic() - started, 1)}))
    assert fivexx == 0


async def test_push_rate_limit_is_per_source(hostile_settings: Settings) -> None:
    body = json.dumps(VALID).encode()
    async with running_service(hostile_settings) as svc:
        await configure_sources(svc)
        slow = [await push(svc, "slow", body) for _ in range(6)]
        others = [await push(svc, "gen", body) for _ in range(6)]  # another source is not slowed
        await asyncio.sleep(1.1)
        again = await push(svc, "slow", body)
    print("\nRATE slow source:", slow, "other source:", others, "after 1.1 s:", again)
    assert slow.count(429) >= 3 and slow[0] == 200
    assert set(others) == {200}
    assert again == 200


async def test_schemathesis_finds_no_server_error(hostile_settings: Settings) -> None:
    """Every operation of the app's own OpenAPI spec, bounded examples, admin token: no 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    import anyio
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    started = time.monotonic()
    failures: list[str] = []
    calls = Counter[str]()
    async with running_service(hostile_settings) as svc:
        await configure_sources(svc)
        spec = (await svc.http.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec)
        operations = [op.ok() for op in schema.get_all_operations()]
        skip = {"/api/v1/alarms/stream", "/api/v1/alarms/ws"}  # endless streams

        def check_operation(op: Any) -> None:
            @given(case=op.as_strategy())
            @hsettings(max_examples=15, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                response = case.call(base_url=svc.base_url, headers=svc.auth(), timeout=10)
                calls[op.label] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                    )

            check()

        def run_all() -> None:
            for op in operations:
                if op.path not in skip:
                    check_operation(op)

        await anyio.to_thread.run_sync(run_all)
        assert svc.app.state.services.background_error is None
    print("\nSCHEMATHESIS:", json.dumps({"operations": len(calls), "calls": sum(calls.values()), "5xx": len(failures),
                                         "seconds": round(time.monotonic() - started, 1)}))
    assert len(calls) >= 20
    assert not failures, "\n".join(failures[:20])


#: Values no parameter should turn into a 500: digits `str.isdigit()` takes but `int()` does not
#: (`²`), digits `int()` takes but are not ASCII (Arabic-Indic, fullwidth, mathematical), integers
#: far beyond bigint, signs, exponents, and text that is not a number at all.
HOSTILE_VALUES = ["²", "١٢٣", "\uff11\uff12\uff13", "\U0001d7d9\U0001d7da\U0001d7db", "9" * 40, "-" + "9" * 30,
                  "-1", "1e309", "0x1F", "Ⅻ", "NaN", "1:²", "²:1", "9" * 25 + ":1", "1 ", "", "ü" * 70]


async def test_unicode_digits_and_huge_integers_in_every_parameter_never_5xx(hostile_settings: Settings) -> None:
    """Every query, path and header parameter of every operation of the OpenAPI spec, one at a
    time, set to each hostile value (the others as schemathesis generates them): never a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    import anyio
    import requests
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    started = time.monotonic()
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    seconds: Counter[str] = Counter()
    async with running_service(hostile_settings) as svc:
        await configure_sources(svc)
        spec = (await svc.http.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec)
        operations = [op.ok() for op in schema.get_all_operations()]

        def sweep(op: Any) -> None:
            @given(case=op.as_strategy())
            @hsettings(max_examples=1, deadline=None, database=None, derandomize=True,
                       suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                for location, params in (("query", op.query), ("path_parameters", op.path_parameters),
                                         ("headers", op.headers)):
                    for param in params:
                        for value in HOSTILE_VALUES:
                            if location == "path_parameters" and not value:
                                continue  # an empty path segment is another route
                            mutated = dict(getattr(case, location) or {})
                            mutated[param.name] = value.encode() if location == "headers" else value
                            slow = time.monotonic()
                            changed = case.operation.Case(**{**_case_parts(case), location: mutated})
                            request = changed.as_transport_kwargs(base_url=svc.base_url, headers=svc.auth())
                            with requests.request(**request, timeout=10, stream=True) as response:  # streams unread
                                status = response.status_code
                            statuses[status] += 1
                            seconds[f"{op.label} {param.name}"] += time.monotonic() - slow
                            if status >= 500:
                                failures.append(f"{op.label} {location} {param.name}={value!r} -> {status}")

            check()

        await anyio.to_thread.run_sync(lambda: [sweep(op) for op in operations])
        assert svc.app.state.services.background_error is None
    print("\nHOSTILE parameters:", json.dumps({"operations": len(operations), "calls": sum(statuses.values()),
                                               "statuses": {str(k): v for k, v in sorted(statuses.items())},
                                               "5xx": len(failures), "seconds": round(time.monotonic() - started, 1),
                                               "slowest": seconds.most_common(5)}))
    assert sum(statuses.values()) > 500
    assert not failures, "\n".join(failures[:30])


def _case_parts(case: Any) -> dict[str, Any]:
    return {"method": case.method, "path_parameters": case.path_parameters, "headers": case.headers,
            "query": case.query, "cookies": case.cookies, "body": case.body, "media_type": case.media_type}


async def test_unstorable_values_are_refused_with_422(hostile_settings: Settings) -> None:
    """What PostgreSQL cannot store (NUL in text) or would store wrongly (a rate beyond real's
    range, or one that rounds to 0 and blocks the source for good) is the caller's error."""
    async with running_service(hostile_settings) as svc:
        unit = await svc.http.post("/api/v1/units", json={"name": "单位\x00名"}, headers=svc.auth())
        assert unit.status_code == 422 and "NUL" in unit.json()["detail"]
        for rate in (1e300, 1e-300, 0):
            source = {"name": "rated", "platform": "generic", "secret": "s", "rate_per_s": rate}
            assert (await svc.http.post("/api/v1/push-sources", json=source, headers=svc.auth())).status_code == 422
        token = await svc.http.post("/api/v1/tokens", json={"name": "a\x00b", "role": "viewer"}, headers=svc.auth())
        assert token.status_code == 422
        assert (await svc.http.get("/readyz")).status_code == 200
