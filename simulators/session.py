"""Play a simulated fleet against a running service and score it (`miaoxiang simulate`, demo, e2e).

`run_session(target, plan)`: register the fleet's units and devices through the HTTP API,
configure the push sources its NB-IoT platforms use (and, with `Plan.responders`, the simulated
responders of `simulators.responders` with their webhook channels to a local `WebhookSink`, which
needs the service's MIAOXIANG_OUTBOUND_ALLOW to list 127.0.0.1), play the chosen scenarios (all cast onto
one fleet, so they run at once) merged with background telemetry, wait out their deadlines,
fetch every alarm and score each scenario with its ground truth (`simulators.score`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pulsar

from devices.kinds import Kind
from ingest.transports.mqtt import BrokerConfig
from simulators.actuators import Actuator, Actuators
from simulators.amqp_sink import AmqpStream
from simulators.background import background, merge_steps
from simulators.clock import SimClock
from simulators.fleet import SimFleet, build_fleet
from simulators.publish import (
    ONENET_PROFILES,
    AmqpPublisher,
    ByUplink,
    HttpPushPublisher,
    MqttPublisher,
    PlayStats,
    PulsarPublisher,
    PushTarget,
    Sink,
    TokenBucket,
    play,
    route_by_transport,
    stderr_progress,
)
from simulators.responders import (
    DEMO_DELAYS,
    Delays,
    SimResponder,
    SimResponders,
    channel_body,
    plan_responders,
    responder_body,
)
from simulators.scenarios import SCENARIOS, Scenario, ScenarioUnavailable, Step
from simulators.score import ScoreRow, score
from simulators.uitd_sink import UitdSink
from simulators.webhook_sink import WebhookSink

Route = Callable[[Step], Sink | None]
#: Background telemetry keeps going this long after the last scenario message (scenario seconds).
BACKGROUND_AFTER_S = 60.0
#: Real seconds a linkage command may take after its alarm: the runner follows the alarm stream in
#: real time, so a compressed run allows this times the compression (`Plan.command_slack_s`).
COMMAND_REAL_S = 5.0


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"sim: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the service listens: HTTP API, MQTT broker and topic root, GB/T 26875 port (None: no tcp)."""

    base_url: str
    token: str
    mqtt_url: str
    topic_root: str = "mx/v1/default"
    gb26875: tuple[str, int] | None = None
    device_tz: str = "Asia/Shanghai"
    mqtt_protocol: str = "3.1.1"
    #: CTWing devices publish through this Pulsar broker (a `ctwing_mq` source) instead of HTTP push
    pulsar_url: str | None = None
    #: OneNET smoke detectors publish Huawei IoTDA reports into this AMQP 1.0 queue
    #: (`amqp[s]://user:password@host:port/address`) instead of HTTP push ...
    amqp_url: str | None = None
    #: ... which the service consumes through an `iotda_amqp` source with this config
    amqp_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to play. `rate`: messages per real second at most. `compression`: scenario seconds
    per real second. `idle_compression`: once every message is out, run the clock this fast to
    the last deadline (only meaningful when the service runs on the same `SimClock`).
    `sweep_slack_s`: how late (scenario seconds) alarms of the offline sweep may be."""

    devices: int = 300
    seed: int = 7
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    rate: float = 500.0
    compression: float = 1.0
    idle_compression: float | None = None
    background: bool = True
    sweep_slack_s: float = 10.0
    #: how late (scenario seconds) linkage commands may be: they follow the alarm stream in real time,
    #: so at compression C a real second of it is C scenario seconds
    command_slack_s: float = 0.0
    responders: bool = False


@dataclass
class SessionResult:
    rows: list[ScoreRow]
    stats: PlayStats
    unavailable: list[str] = field(default_factory=list)
    alarms: int = 0


def scenario_names(given: Sequence[str]) -> tuple[str, ...]:
    """Scenario names from CLI arguments (`all` for the library); ValueError naming an unknown one."""
    if not given or "all" in given:
        return tuple(SCENARIOS)
    unknown = [n for n in given if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; choose from all, {', '.join(SCENARIOS)}")
    return tuple(dict.fromkeys(given))


def build_scenarios(
    fleet: SimFleet, seed: int, names: Sequence[str], start_ms: int
) -> tuple[list[Scenario], list[str]]:
    """The named scenarios cast onto `fleet`, and the names this fleet cannot play (with why)."""
    played, unavailable = [], []
    for name in names:
        try:
            played.append(SCENARIOS[name](fleet, seed, start_ms))
        except ScenarioUnavailable as e:
            unavailable.append(str(e))
    return played, unavailable


async def _check(answer: httpx.Response) -> dict[str, Any]:
    if answer.status_code >= 300:
        request = answer.request
        raise RuntimeError(f"{request.method} {request.url.path}: HTTP {answer.status_code} {answer.text[:300]}")
    body: dict[str, Any] = answer.json()
    return body


#: Devices per bulk import request.
IMPORT_CHUNK = 20_000


async def register_fleet(http: httpx.AsyncClient, fleet: SimFleet, *, parallel: int = 16) -> None:
    """Units one by one (`POST /api/v1/units`, a few at a time), devices in one bulk import."""
    rows = fleet.registry_rows()
    gate = asyncio.Semaphore(parallel)

    async def unit(body: dict[str, Any]) -> None:
        async with gate:
            await _check(await http.post("/api/v1/units", json=body))

    await asyncio.gather(*(unit(u) for u in rows.units))
    for i in range(0, len(rows.devices), IMPORT_CHUNK):  # bodies well under the import cap (8 MiB)
        lines = "\n".join(json.dumps(d, ensure_ascii=False) for d in rows.devices[i : i + IMPORT_CHUNK])
        report = await _check(await http.post(
            "/api/v1/devices/import", content=lines.encode(), headers={"Content-Type": "application/x-ndjson"}
        ))
        if report["rejected"]:
            raise RuntimeError(f"the service rejected {report['rejected']} devices: {report['errors'][:3]}")


async def configure_push_sources(http: httpx.AsyncClient, run_id: str) -> dict[str, PushTarget]:
    """One push source per platform (fresh secrets); the targets `HttpPushPublisher` needs."""
    targets = {}
    for platform in ("generic", "ctwing", "onenet"):
        target = PushTarget(f"sim-{platform}-{run_id}", platform, secrets.token_hex(16))
        body: dict[str, Any] = {"name": target.source, "platform": platform, "rate_per_s": 100_000}
        body["secret" if platform == "generic" else "token"] = target.secret
        if platform == "onenet":  # only smoke detectors report through OneNET
            body["profile"] = ONENET_PROFILES[Kind.smoke]
        await _check(await http.post("/api/v1/push-sources", json=body))
        targets[platform] = target
    return targets


#: The CTWing tenant of `miaoxiang simulate --pulsar-url`'s topic.
SIM_TENANT_ID = "2000001"


async def configure_pulsar_source(http: httpx.AsyncClient, run_id: str, pulsar_url: str) -> str:
    """A `ctwing_mq` source on `pulsar_url` (topic `sim-{run_id}`); answers the topic once the
    service's consumer is subscribed, so nothing published after is missed."""
    topic = f"sim-{run_id}"
    await _check(await http.post("/api/v1/push-sources", json={
        "name": f"sim-ctwing-mq-{run_id}", "platform": "ctwing_mq",
        "config": {"service_url": pulsar_url, "tenant_id": SIM_TENANT_ID, "topic": topic,
                   "subscription": f"miaoxiang-{run_id}"},
    }))
    for _ in range(200):
        state = (await _check(await http.get(f"/api/v1/push-sources/sim-ctwing-mq-{run_id}")))["state"]
        if state is not None and state["connected"]:
            return topic
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the service did not subscribe to {pulsar_url} within 20 s")


async def configure_amqp_source(http: httpx.AsyncClient, run_id: str, config: Mapping[str, Any]) -> None:
    """An `iotda_amqp` source with `config`; returns once the service's consumer is connected."""
    name = f"sim-iotda-{run_id}"
    await _check(await http.post("/api/v1/push-sources", json={"name": name, "platform": "iotda_amqp",
                                                                "config": dict(config)}))
    for _ in range(300):
        state = (await _check(await http.get(f"/api/v1/push-sources/{name}")))["state"]
        if state is not None and state["connected"]:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the service did not connect to the AMQP queue within 30 s: {state}")


@contextlib.asynccontextmanager
async def amqp_stream(url: str) -> AsyncIterator[AmqpStream]:
    """A sender on the run's AMQP queue; what was put is confirmed before it closes."""
    stream = AmqpStream(url)
    stream.start()
    try:
        yield stream
    finally:
        await asyncio.to_thread(stream.close)


@contextlib.asynccontextmanager
async def pulsar_publisher(pulsar_url: str, topic: str) -> AsyncIterator[PulsarPublisher]:
    """A producer on the simulated tenant's topic; flushed and closed at the end."""
    client = await asyncio.to_thread(pulsar.Client, pulsar_url, logger=logging.getLogger("pulsar"))
    try:
        producer = await asyncio.to_thread(
            client.create_producer, f"persistent://aep-msgpush/{SIM_TENANT_ID}/{topic}", batching_enabled=True,
            batching_max_publish_delay_ms=5, block_if_queue_full=True,
        )
        yield PulsarPublisher(producer, tenant_id=SIM_TENANT_ID)
    finally:
        await asyncio.to_thread(client.close)


@contextlib.asynccontextmanager
async def publishers(target: Target, fleet: SimFleet, http: httpx.AsyncClient, targets: dict[str, PushTarget],
                     pulsar_topic: str | None = None) -> AsyncIterator[Route]:
    """A route sending each step through its device's transport: MQTT, HTTP push (CTWing devices
    over Pulsar with `pulsar_topic`) or GB/T 26875."""
    broker = BrokerConfig.from_url(target.mqtt_url, target.mqtt_protocol)
    mqtt = broker.client(f"mxsim-{uuid.uuid4().hex[:8]}", persistent=False, receive_maximum=1000)
    async with mqtt, contextlib.AsyncExitStack() as stack:
        tcp = None
        if target.gb26875 is not None:
            tcp = await stack.enter_async_context(UitdSink(fleet, *target.gb26875, tz=target.device_tz))
        push: Sink = HttpPushPublisher(http, fleet, targets)
        queues: dict[str, Sink] = {}
        if target.pulsar_url is not None and pulsar_topic is not None:
            queues["ctwing"] = await stack.enter_async_context(pulsar_publisher(target.pulsar_url, pulsar_topic))
        if target.amqp_url is not None:
            queues["onenet"] = AmqpPublisher(await stack.enter_async_context(amqp_stream(target.amqp_url)), push)
        if queues:
            push = ByUplink(fleet, push, queues)
        yield route_by_transport(
            mqtt=MqttPublisher(mqtt, fleet, topic_root=target.topic_root),
            http=push,
            tcp=tcp,
        )


async def register_responders(http: httpx.AsyncClient, responders: Sequence[SimResponder], sink_url: str, secret: str,
                              *, parallel: int = 16) -> None:
    """Each responder's webhook channel to the sink, then the responder; one that exists already
    (a demo's persistent database) is brought up to date (`PUT` channel, `PATCH` responder)."""
    gate = asyncio.Semaphore(parallel)

    async def one(r: SimResponder) -> None:
        async with gate:
            channel = channel_body(r, sink_url, secret)
            answer = await http.post("/api/v1/channels", json=channel)
            if answer.status_code == 409:
                answer = await http.put(f"/api/v1/channels/{r.channel}", json={"config": channel["config"]})
            await _check(answer)
            body = responder_body(r)
            answer = await http.post("/api/v1/responders", json=body)
            if answer.status_code == 409:
                body.pop("responder_id")
                answer = await http.patch(f"/api/v1/responders/{r.responder_id}", json=body)
            await _check(answer)

    await asyncio.gather(*(one(r) for r in responders))


@contextlib.asynccontextmanager
async def simulated_responders(http: httpx.AsyncClient, fleet: SimFleet, clock: SimClock, *, seed: int,
                               delays: Delays = DEMO_DELAYS) -> AsyncIterator[SimResponders]:
    """Start the webhook receiver, register the fleet's responders with channels to it, and act
    on the links they receive until the context ends (responses still waiting are cancelled)."""
    responders = plan_responders(fleet)
    secret = secrets.token_hex(16)
    async with httpx.AsyncClient(timeout=30) as page:
        sim = SimResponders(responders, page, clock, {u.unit_id: u.location for u in fleet.units}, seed, delays)
        async with WebhookSink(secret, sim.on_delivery) as sink:
            await register_responders(http, responders, sink.url, secret)
            say(f"registered {len(responders)} simulated responders (webhooks to {sink.url})")
            try:
                yield sim
            finally:
                await sim.aclose()


async def apply_linkage(http: httpx.AsyncClient, played: Sequence[Scenario]) -> None:
    """The unit linkage policies the scenarios need (`PUT /api/v1/units/{unit_id}/linkage`)."""
    for sc in played:
        for unit_id, policy in sc.linkage.items():
            await _check(await http.put(f"/api/v1/units/{unit_id}/linkage", json=dict(policy)))


@contextlib.asynccontextmanager
async def simulated_actuators(target: Target, fleet: SimFleet, played: Sequence[Scenario],
                              clock: SimClock) -> AsyncIterator[None]:
    """The valves, breakers and charging piles the scenarios expect linkage commands for, answering
    on MQTT (`simulators.actuators`) until the context ends."""
    wanted = sorted({d for sc in played for d in sc.commanded()})
    if not wanted:
        yield
        return
    url = urlsplit(target.mqtt_url)
    acts = Actuators(url.hostname or "127.0.0.1", url.port or 1883, target.topic_root,
                     [Actuator(d, fleet.device(d).kind.name) for d in wanted], clock=clock.now_ms)
    task = asyncio.create_task(acts.run())
    try:
        await asyncio.wait_for(acts.ready.wait(), 10)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fetch_commands(http: httpx.AsyncClient, device_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The commands of `device_ids` (`GET /api/v1/devices/{id}/commands`, newest 100 each)."""
    out: list[dict[str, Any]] = []
    for device_id in sorted(set(device_ids)):
        out.extend((await _check(await http.get(f"/api/v1/devices/{device_id}/commands")))["items"])
    return out


async def fetch_alarms(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every alarm, following `next_cursor`."""
    alarms: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor is not None else {})
        page = await _check(await http.get("/api/v1/alarms", params=params))
        alarms.extend(page["items"])
        if page["next_cursor"] is None:
            return alarms
        cursor = str(page["next_cursor"])


async def fast_forward(clock: SimClock, until_ms: int, compression: float, tick_s: float = 0.02) -> None:
    """Run `clock` at `compression` (faster than its own) until it reaches `until_ms`."""
    extra_ms = max(0.0, compression - clock.compression) * tick_s * 1000
    while (left := until_ms - clock.now_ms()) > 0:
        await asyncio.sleep(tick_s)
        clock.advance(max(0, min(round(extra_ms), left)))


def steps_of(fleet: SimFleet, plan: Plan, played: Sequence[Scenario], start_ms: int) -> Any:
    """Scenario steps merged with background telemetry, which lasts until a minute after the
    last scenario message (each device on its own schedule, honouring the scenarios' silences)."""
    streams: list[Any] = [s.steps for s in played]
    if plan.background:
        last = max((m.at_ms for s in played for m in s.messages()), default=start_ms)
        silences = [x for s in played for x in s.silences()]
        until = last + round(BACKGROUND_AFTER_S * 1000)
        streams.append(background(fleet, plan.seed, start_ms, until, silences=silences))
    return merge_steps(*streams)


async def settle(http: httpx.AsyncClient, *, quiet_s: float = 1.0, timeout_s: float = 15.0) -> None:
    """Wait (real time) until the number of alarms has not changed for `quiet_s`."""
    deadline = time.monotonic() + timeout_s
    last = -1
    while time.monotonic() < deadline:
        page = await _check(await http.get("/api/v1/alarms", params={"limit": 1}))
        newest = page["items"][0]["alarm_id"] if page["items"] else 0
        if newest == last:
            return
        last = newest
        await asyncio.sleep(quiet_s)


async def run_session(target: Target, plan: Plan, *, clock: SimClock | None = None) -> SessionResult:
    """Register, play, wait for the deadlines, score. `clock`: the service's own `SimClock` when
    it runs on one (tests, demo); by default a live clock at `plan.compression`."""
    clock = clock or SimClock.live(plan.compression)
    fleet = build_fleet(plan.devices, plan.seed)
    async with httpx.AsyncClient(base_url=target.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {target.token}"}) as http:
        t0 = time.monotonic()
        await register_fleet(http, fleet)
        run_id = uuid.uuid4().hex[:6]
        targets = await configure_push_sources(http, run_id)
        pulsar_topic = None if target.pulsar_url is None else await configure_pulsar_source(http, run_id,
                                                                                             target.pulsar_url)
        if target.amqp_url is not None and target.amqp_config is not None:
            await configure_amqp_source(http, run_id, target.amqp_config)
        say(f"registered {len(fleet.units)} units and {len(fleet.devices)} devices in {time.monotonic() - t0:.1f} s")
        async with contextlib.AsyncExitStack() as stack:  # the simulated responders act until the alarms are fetched
            if plan.responders:
                await stack.enter_async_context(simulated_responders(http, fleet, clock, seed=plan.seed))
            # who plays what does not depend on the start: set up for it first, so that no step is late
            cast_only, unavailable = build_scenarios(fleet, plan.seed, plan.scenarios, clock.now_ms())
            for why in unavailable:
                say(f"skipped: {why}")
            await apply_linkage(http, cast_only)
            async with (simulated_actuators(target, fleet, cast_only, clock),
                        publishers(target, fleet, http, targets, pulsar_topic) as route):
                start_ms = clock.now_ms()
                played, _ = build_scenarios(fleet, plan.seed, plan.scenarios, start_ms)
                say(f"playing {', '.join(s.name for s in played) or 'nothing'} at compression {plan.compression:g}")
                stats = await play(steps_of(fleet, plan, played, start_ms), route, clock=clock,
                                   limiter=TokenBucket.on_clock(clock, plan.rate), progress=stderr_progress,
                                   progress_every=500)
            end_ms = max((s.end_ms for s in played), default=start_ms) + round(plan.sweep_slack_s * 1000)
            if plan.idle_compression:
                hours = (end_ms - clock.now_ms()) / 3.6e6
                say(f"fast-forwarding {hours:.1f} scenario hours at {plan.idle_compression:g}x")
                await fast_forward(clock, end_ms, plan.idle_compression)
            else:
                say(f"waiting {clock.real_seconds(max(0, end_ms - clock.now_ms())):.0f} s for the last deadlines")
                await clock.sleep_until(end_ms)
            await settle(http)
            alarms = await fetch_alarms(http)
            commands = await fetch_commands(http, (d for s in played for d in s.commanded()))
    rows = [row for s in played for row in score(s, alarms, commands=commands, sweep_slack_s=plan.sweep_slack_s,
                                                 command_slack_s=plan.command_slack_s)]
    return SessionResult(rows, stats, unavailable, len(alarms))
