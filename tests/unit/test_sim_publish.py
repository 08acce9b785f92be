"""Rate limiting, the player, push envelopes (checked by the service's own decoders) and the HTTP
push publisher against a small receiver that verifies and decodes with the real codecs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.generic import verify_generic
from ingest.codecs.json_report import decode_json_report
from ingest.codecs.onenet import decode_onenet, verify_onenet
from ingest.codecs.profiles import ProfileRegistry
from simulators.background import background
from simulators.clock import SimClock
from simulators.envelopes import Unencodable, ctwing_request, generic_request, onenet_request, vendor_properties
from simulators.fleet import build_fleet
from simulators.publish import (
    HttpPushPublisher,
    PlayStats,
    PublishError,
    PushTarget,
    TokenBucket,
    play,
    route_by_transport,
)
from simulators.scenarios import SCENARIOS, Step
from simulators.telemetry import make_reading

T0 = 1_795_341_600_000
PROFILES = ProfileRegistry.load()


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(400, 8)


class FakeTime:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s


class Recorder:
    """A sink that records what it is given and when (scenario time), buffering every third step."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.sent: list[tuple[int, Step]] = []
        self.buffer: list[Step] = []
        self.flushes = 0

    async def send(self, step: Step) -> int:
        if len(self.sent) % 3 == 2:
            self.buffer.append(step)
            self.sent.append((self.clock.now_ms(), step))
            return 0
        self.sent.append((self.clock.now_ms(), step))
        return 1

    async def flush(self) -> int:
        self.flushes += 1
        n, self.buffer = len(self.buffer), []
        return n


async def test_token_bucket_holds_its_rate() -> None:
    ft = FakeTime()
    bucket = TokenBucket(50, burst=10, now=ft.now, sleep=ft.sleep)
    taken_at = []
    for _ in range(510):
        await bucket.take()
        taken_at.append(ft.t)
    assert ft.t == pytest.approx(500 / 50, abs=1 / 50)
    for i, t in enumerate(taken_at):  # never more than the burst plus what the rate allows
        assert i + 1 <= 10 + t * 50 + 1e-6
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_token_bucket_on_a_compressed_clock() -> None:
    clock = SimClock(T0, compression=10)
    bucket = TokenBucket.on_clock(clock, real_rate_per_s=100)  # 1000 per scenario second
    for _ in range(2100):
        await bucket.take()
    elapsed_s = (clock.now_ms() - T0) / 1000
    assert elapsed_s == pytest.approx(2.0, abs=0.01)
    assert clock.real_seconds(clock.now_ms() - T0) == pytest.approx(0.2, abs=0.001)


async def test_play_sends_each_step_at_its_time(fleet) -> None:
    sc = SCENARIOS["flapping"](fleet, 8, T0)
    clock = SimClock(T0)
    sink = Recorder(clock)
    seen: list[PlayStats] = []
    stats = await play(sc.steps, route_by_transport(mqtt=sink, http=sink), clock=clock,
                       progress=lambda s: seen.append(PlayStats(s.steps, s.sent)), progress_every=4)
    assert [s for _, s in sink.sent] == sc.messages()
    assert all(at == step.at_ms for at, step in sink.sent)
    assert stats.steps == len(sc.messages()) and stats.sent == stats.steps and stats.failed == 0
    assert stats.max_lag_ms == 0 and sink.flushes >= 1
    assert [p.steps for p in seen] == [4, 8, stats.steps][: len(seen)]


async def test_play_skips_steps_without_a_sink(fleet) -> None:
    sc = SCENARIOS["panel_fire"](fleet, 8, T0)
    clock = SimClock(T0)
    stats = await play(sc.steps, route_by_transport(mqtt=Recorder(clock)), clock=clock)
    assert stats.skipped == len(sc.messages()) and stats.sent == 0  # tcp: the uitd simulator's job


async def test_play_on_compressed_real_time(fleet) -> None:
    ft = FakeTime()
    clock = SimClock(T0, compression=3600, monotonic=ft.now, sleep=ft.sleep)
    sink = Recorder(clock)
    steps = list(background(fleet, 8, T0, T0 + 6 * 3_600_000))
    stats = await play(steps, route_by_transport(mqtt=sink, http=sink), clock=clock,
                       limiter=TokenBucket.on_clock(clock, real_rate_per_s=1000))
    assert stats.steps == len(steps)
    assert all(at >= step.at_ms for at, step in sink.sent)  # never early
    assert ft.t == pytest.approx(6.0, abs=0.1)  # six scenario hours in six (fake) seconds


def test_generic_envelope(fleet) -> None:
    readings = [s.reading for s in SCENARIOS["gas_leak"](fleet, 8, T0).messages()]
    body, headers = generic_request(readings[:1], "s3cret")
    assert verify_generic("s3cret", body, headers["X-Miaoxiang-Signature"])
    assert not verify_generic("other", body, headers["X-Miaoxiang-Signature"])
    assert decode_json_report(body, received_ms=readings[0].received_ms) == readings[0]
    many, _ = generic_request(readings, "s3cret")
    assert many.startswith(b"[") and many.count(b'"device_id"') == len(readings)


def test_ctwing_envelope_carries_mx1(fleet) -> None:
    for step in SCENARIOS["power_cut_reregistration"](fleet, 8, T0).messages():
        r = step.reading
        if r.kind is Kind.uitd or not r.device_id.isdigit():
            with pytest.raises(Unencodable):
                ctwing_request(r, "tok")
            continue
        body, headers = ctwing_request(r, "tok")
        assert headers["X-Miaoxiang-Token"] == "tok"
        (back,) = decode_ctwing(body, received_ms=1, profiles=PROFILES, profile=None).readings
        assert (back.device_id, back.kind, back.event, back.seq) == (r.device_id, r.kind, r.event, r.seq)
        assert back.ts_ms == r.ts_ms // 1000 * 1000  # MX1 keeps whole seconds
        assert back.metrics.keys() == r.metrics.keys()


def test_onenet_envelope_through_the_shipped_profile(fleet) -> None:
    profile = PROFILES.get("ctwing-smoke")
    smoke = [d for d in fleet.devices if d.kind is Kind.smoke and d.uplink == "onenet"]
    assert smoke
    for d in smoke:
        pairs = ((Event.alarm, Event.alarm), (Event.heartbeat, Event.report), (Event.report, Event.report))
        for event, expected in pairs:
            r = make_reading(d, event, T0, {"temperature_c": 31.5})
            body, _ = onenet_request(r, "tok", profile)
            assert verify_onenet("tok", body) and not verify_onenet("nope", body)
            (back,) = decode_onenet(body, received_ms=1, profiles=PROFILES, profile=None).readings
            assert back.event is expected and back.device_id == d.device_id and back.ts_ms == T0
            shared = {k: v for k, v in r.metrics.items() if k in back.metrics}
            assert back.metrics == shared and "temperature_c" in shared and "rsrp_dbm" in shared
    with pytest.raises(Unencodable):
        vendor_properties(profile, make_reading(smoke[0], Event.test, T0))
    gas = next(d for d in fleet.devices if d.kind is Kind.gas)
    with pytest.raises(Unencodable):
        vendor_properties(profile, make_reading(gas, Event.alarm, T0))


def receiver(sources: dict[str, tuple[str, str]], throttle: int = 0) -> tuple[FastAPI, list[Reading]]:
    """A push endpoint that checks signatures and decodes with the service's codecs."""
    app = FastAPI()
    got: list[Reading] = []
    left = {"throttle": throttle}

    @app.post("/api/v1/ingest/push/{source}")
    async def push(source: str, request: Request) -> Any:
        body = await request.body()
        if left["throttle"]:
            left["throttle"] -= 1
            return Response(status_code=429)
        platform, secret = sources[source]
        if platform == "generic":
            if not verify_generic(secret, body, request.headers.get("x-miaoxiang-signature")):
                return Response(status_code=401)
            got.append(decode_json_report(body, received_ms=0))
        elif platform == "ctwing":
            if request.headers.get("x-miaoxiang-token") != secret:
                return Response(status_code=401)
            got.extend(decode_ctwing(body, received_ms=0, profiles=PROFILES, profile=None).readings)
        else:
            if not verify_onenet(secret, body):
                return Response(status_code=401)
            got.extend(decode_onenet(body, received_ms=0, profiles=PROFILES, profile=None).readings)
        return {"accepted": 1}

    return app, got


async def test_http_publisher_routes_by_platform_and_retries(fleet) -> None:
    sources = {"gen": ("generic", "g-secret"), "tel": ("ctwing", "c-token"), "mob": ("onenet", "o-token")}
    app, got = receiver(sources, throttle=2)
    targets = {p: PushTarget(name, p, secret) for name, (p, secret) in sources.items()}  # type: ignore[arg-type]
    steps = [s for s in background(fleet, 8, T0, T0 + 86_400_000) if s.transport_hint == "http"][:60]
    assert {fleet.device(s.reading.device_id).uplink for s in steps} == {"generic", "ctwing", "onenet"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        pub = HttpPushPublisher(client, fleet, targets, backoff_s=0)
        clock = SimClock(T0)
        stats = await play(steps, route_by_transport(http=pub), clock=clock)
    assert stats.sent == len(steps) and stats.failed == 0
    assert [r.device_id for r in got] == [s.reading.device_id for s in steps]


async def test_http_publisher_reports_refusals(fleet) -> None:
    app, got = receiver({"gen": ("generic", "right")})
    step = next(s for s in background(fleet, 8, T0, T0 + 86_400_000)
                if fleet.device(s.reading.device_id).uplink == "generic")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        pub = HttpPushPublisher(client, fleet, {"generic": PushTarget("gen", "generic", "wrong")}, backoff_s=0)
        with pytest.raises(PublishError, match="401"):
            await pub.send(step)
        stats = await play([step], route_by_transport(http=pub), clock=SimClock(T0))
        missing = HttpPushPublisher(client, fleet, {}, backoff_s=0)
        with pytest.raises(PublishError, match="no push source"):
            await missing.send(step)
    assert stats.failed == 1 and "401" in stats.errors[0] and got == []
