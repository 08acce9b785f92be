"""Publishers that put scenario and background steps on the wire, and the player that paces them.

- `MqttPublisher`: `evt`/`tel` topics `{root}/evt|tel/{kind}/{device_id}` with QoS 1, JSON or
  MX1 payloads per device, and gateway devices' telemetry as JSON arrays on `{root}/batch/{gw}`.
- `HttpPushPublisher`: `POST /api/v1/ingest/push/{source}` as the device's platform sends it
  (generic with HMAC, CTWing envelope, signed OneNET), retrying 429 and 5xx answers.
- `PulsarPublisher`: CTWing devices' readings as CTWing's MQ消息推送 delivers them, the HTTP push
  envelope on the tenant's Pulsar topic; `ByUplink` sends a platform's devices through such a sink.
- `TokenBucket`: messages per second, on real time or on a compressed `SimClock`.
- `play`: sends steps when scenario time reaches them, through the sink `route` picks.
The uitd (GB/T 26875 TCP) sink lives in `simulators.uitd`; anything with `send` and `flush` fits.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import aiomqtt
import httpx
import pulsar

from devices.kinds import Kind
from devices.reading import Reading
from ingest.codecs.json_report import encode_json_report
from ingest.codecs.mx1 import encode_mx1
from ingest.codecs.profiles import Profile, ProfileRegistry
from simulators.amqp_sink import AmqpMessage, AmqpSendError, AmqpStream
from simulators.clock import SimClock
from simulators.envelopes import Unencodable, ctwing_request, generic_request, iotda_message, onenet_request
from simulators.fleet import SimFleet
from simulators.scenarios import Silence, Step

log = logging.getLogger(__name__)

PushPlatform = Literal["generic", "ctwing", "onenet"]
#: Shipped profiles a OneNET push of each kind is written in ("also usable on OneNET").
ONENET_PROFILES: dict[Kind, str] = {
    Kind.smoke: "ctwing-smoke", Kind.gas: "ctwing-gas", Kind.electrical: "ctwing-electrical-fire",
}


class PublishError(Exception):
    """A message the service or broker did not take."""


class Sink(Protocol):
    async def send(self, step: Step) -> int:
        """Send (or buffer) one step; answer how many wire messages went out."""
        ...

    async def flush(self) -> int:
        """Send anything buffered; answer how many wire messages went out."""
        ...


class TokenBucket:
    """At most `rate_per_s` takes per second on average, bursts of up to `burst` (default: one
    second's worth). `now` gives seconds; `sleep` waits seconds on the same time base."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        self.rate = rate_per_s
        self.burst = max(1.0, rate_per_s if burst is None else burst)
        self.tokens = self.burst
        self._now = now
        self._sleep = sleep
        self._last: float | None = None

    @classmethod
    def on_clock(cls, clock: SimClock, real_rate_per_s: float, burst: float | None = None) -> TokenBucket:
        """A bucket on scenario time holding `real_rate_per_s` per real second: with compression
        C that is C times as many per scenario second (and a manual clock just advances)."""
        return cls(real_rate_per_s * clock.compression, max(1.0, real_rate_per_s if burst is None else burst),
                   now=lambda: clock.now_ms() / 1000.0, sleep=clock.sleep)

    def _refill(self) -> None:
        t = self._now()
        if self._last is not None:
            self.tokens = min(self.burst, self.tokens + (t - self._last) * self.rate)
        self._last = t

    def wait_s(self, n: float = 1.0) -> float:
        """Seconds until `n` tokens are there (0 now)."""
        self._refill()
        missing = n - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate  # tolerance: float time may not move

    async def take(self, n: float = 1.0) -> None:
        while (wait := self.wait_s(n)) > 0:
            await self._sleep(wait)
        self.tokens -= n


class MqttPublisher:
    """Steps to MQTT on an open `aiomqtt.Client`. `encoding`: `device` (each device's own, JSON
    where MX1 cannot carry the reading), `json` or `mx1`. With `gateways`, telemetry of devices
    behind a gateway is gathered and sent as batches on `flush` or every `max_batch` reports."""

    def __init__(
        self,
        client: aiomqtt.Client,
        fleet: SimFleet,
        *,
        topic_root: str = "mx/v1/default",
        encoding: Literal["device", "json", "mx1"] = "device",
        gateways: bool = True,
        qos: int = 1,
        max_batch: int = 200,
    ) -> None:
        self.client = client
        self.fleet = fleet
        self.root = topic_root.rstrip("/")
        self.encoding = encoding
        self.gateways = gateways
        self.qos = qos
        self.max_batch = max_batch
        self._pending: dict[str, list[bytes]] = {}

    def topic(self, step: Step) -> str:
        r = step.reading
        return f"{self.root}/{step.lane}/{r.kind.name}/{r.device_id}"

    def payload(self, r: Reading) -> bytes:
        mode = self.encoding
        if mode == "device":
            mx1 = r.kind is not Kind.uitd and r.device_id.isdigit() and self.fleet.device(r.device_id).encoding == "mx1"
            mode = "mx1" if mx1 else "json"
        try:
            return encode_mx1(r) if mode == "mx1" else encode_json_report(r)
        except ValueError as e:
            raise Unencodable(str(e)) from None

    async def send(self, step: Step) -> int:
        r = step.reading
        gateway = self.fleet.device(r.device_id).gateway_id if self.gateways else None
        if gateway is not None and step.lane == "tel":
            batch = self._pending.setdefault(gateway, [])
            batch.append(encode_json_report(r))
            return await self._send_batch(gateway) if len(batch) >= self.max_batch else 0
        await self._publish(self.topic(step), self.payload(r))
        return 1

    async def flush(self) -> int:
        sent = 0
        for gateway in list(self._pending):
            sent += await self._send_batch(gateway)
        return sent

    async def _send_batch(self, gateway: str) -> int:
        reports = self._pending.pop(gateway, [])
        if not reports:
            return 0
        await self._publish(f"{self.root}/batch/{gateway}", b"[" + b",".join(reports) + b"]")
        return 1

    async def _publish(self, topic: str, payload: bytes) -> None:
        try:
            await self.client.publish(topic, payload, qos=self.qos)
        except aiomqtt.MqttError as e:
            raise PublishError(f"MQTT publish to {topic} failed: {e}") from e


@dataclass(frozen=True, slots=True)
class PushTarget:
    """A push source configured in the service (`POST /api/v1/push-sources`)."""

    source: str
    platform: PushPlatform
    secret: str


class HttpPushPublisher:
    """Steps to the service's HTTP push endpoint, each through the push source of its device's
    platform (`targets` by platform: `generic`, `ctwing`, `onenet`). `client` has the service's
    base URL. OneNET bodies use `profiles` (default: the shipped ones in `ONENET_PROFILES`)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        fleet: SimFleet,
        targets: Mapping[str, PushTarget],
        *,
        profiles: Mapping[Kind, Profile] | None = None,
        retries: int = 5,
        backoff_s: float = 0.2,
    ) -> None:
        self.client = client
        self.fleet = fleet
        self.targets = dict(targets)
        if profiles is None:
            registry = ProfileRegistry.load()
            profiles = {k: p for k, name in ONENET_PROFILES.items() if (p := registry.get(name)) is not None}
        self.profiles = dict(profiles)
        self.retries = retries
        self.backoff_s = backoff_s

    def request(self, r: Reading) -> tuple[PushTarget, bytes, dict[str, str]]:
        """The push source, body and headers for one reading."""
        platform = self.fleet.device(r.device_id).uplink
        target = self.targets.get(platform)
        if target is None:
            raise PublishError(f"device {r.device_id} pushes through {platform}, which has no push source configured")
        if target.platform == "generic":
            body, headers = generic_request([r], target.secret)
        elif target.platform == "ctwing":
            body, headers = ctwing_request(r, target.secret)
        else:
            profile = self.profiles.get(r.kind)
            if profile is None:
                raise Unencodable(f"no OneNET profile for {r.kind.name} devices")
            body, headers = onenet_request(r, target.secret, profile)
        return target, body, headers

    async def send(self, step: Step) -> int:
        target, body, headers = self.request(step.reading)
        url = f"/api/v1/ingest/push/{target.source}"
        for attempt in range(self.retries + 1):
            try:
                answer = await self.client.post(url, content=body, headers=headers)
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if answer.status_code == 200:
                    return 1
                problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
                if answer.status_code != 429 and answer.status_code < 500:
                    break
            if attempt < self.retries:
                await asyncio.sleep(self.backoff_s * 2**attempt)
        raise PublishError(f"push to {target.source} for {step.reading.device_id} failed: {problem}")

    async def flush(self) -> int:
        return 0


class PulsarPublisher:
    """CTWing envelopes of steps on a Pulsar producer (`persistent://aep-msgpush/{tenant_id}/{topic}`).
    Sends are asynchronous; at most `window` are unconfirmed before `flush` waits for the broker."""

    def __init__(self, producer: pulsar.Producer, *, tenant_id: str, window: int = 5000) -> None:
        self.producer = producer
        self.tenant_id = tenant_id
        self.window = window
        self.unconfirmed = 0
        self.failures: list[str] = []

    def _confirmed(self, result: pulsar.Result, _msg_id: pulsar.MessageId) -> None:  # a client thread
        if result != pulsar.Result.Ok:
            self.failures.append(str(result))

    async def send(self, step: Step) -> int:
        body, _ = ctwing_request(step.reading, "", tenant_id=self.tenant_id)
        if self.unconfirmed >= self.window:
            await self.flush()
        self.producer.send_async(body, self._confirmed)
        self.unconfirmed += 1
        return 1

    async def flush(self) -> int:
        await asyncio.to_thread(self.producer.flush)
        self.unconfirmed = 0
        if self.failures:
            failed, self.failures = self.failures, []
            raise PublishError(f"Pulsar refused {len(failed)} messages: {failed[0]}")
        return 0


class AmqpPublisher:
    """Huawei IoTDA property reports of steps into an AMQP 1.0 queue (`AmqpStream`), as IoTDA's
    server-side subscription delivers them; a kind without an IoTDA profile (`iotda_profiles`)
    goes to `fallback` instead. Sends do not wait; `flush` waits for the broker's confirmations."""

    def __init__(self, stream: AmqpStream, fallback: Sink, *, iotda_profiles: Mapping[Kind, Profile] | None = None,
                 product_id: str = "mx-sim") -> None:
        self.stream = stream
        self.fallback = fallback
        if iotda_profiles is None:
            smoke = ProfileRegistry.load().get("iotda-smoke")
            iotda_profiles = {Kind.smoke: smoke} if smoke is not None else {}
        self.profiles = dict(iotda_profiles)
        self.product_id = product_id

    async def send(self, step: Step) -> int:
        profile = self.profiles.get(step.reading.kind)
        if profile is None:
            return await self.fallback.send(step)
        try:
            self.stream.put(AmqpMessage(iotda_message(step.reading, profile, product_id=self.product_id)))
        except AmqpSendError as e:
            raise PublishError(f"AMQP: {e}") from None
        return 1

    async def flush(self) -> int:
        try:
            await asyncio.to_thread(self.stream.wait_confirmed)
        except AmqpSendError as e:
            raise PublishError(f"AMQP: {e}") from None
        return 0


class ByUplink:
    """Steps of devices whose uplink (platform) has a sink in `sinks` go there, the rest to `default`."""

    def __init__(self, fleet: SimFleet, default: Sink, sinks: Mapping[str, Sink]) -> None:
        self.fleet = fleet
        self.default = default
        self.sinks = dict(sinks)

    async def send(self, step: Step) -> int:
        sink = self.sinks.get(self.fleet.device(step.reading.device_id).uplink, self.default)
        return await sink.send(step)

    async def flush(self) -> int:
        return sum([await sink.flush() for sink in (self.default, *self.sinks.values())])


@dataclass
class PlayStats:
    """What `play` did: readings handled, wire messages sent, steps nobody sends (no sink),
    failures (first few kept in `errors`), and the most a message went out after its time."""

    steps: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    max_lag_ms: int = 0
    errors: list[str] = field(default_factory=list)


def route_by_transport(
    *, mqtt: Sink | None = None, http: Sink | None = None, tcp: Sink | None = None
) -> Callable[[Step], Sink | None]:
    """Send each step through the sink of its `transport_hint` (None: skip it)."""
    table = {"mqtt": mqtt, "http": http, "tcp": tcp}
    return lambda step: table[step.transport_hint]


def stderr_progress(stats: PlayStats) -> None:
    print(
        f"sim: {stats.steps} steps, {stats.sent} messages sent, {stats.skipped} skipped, {stats.failed} failed, "
        f"lag up to {stats.max_lag_ms} ms",
        file=sys.stderr,
    )


async def play(
    steps: Iterable[Step | Silence],
    route: Callable[[Step], Sink | None],
    *,
    clock: SimClock,
    limiter: TokenBucket | None = None,
    progress: Callable[[PlayStats], None] | None = None,
    progress_every: int = 1000,
) -> PlayStats:
    """Send every step once scenario time reaches its `at_ms`. Buffered sinks are flushed
    whenever the player is about to wait and at the end. `Silence` marks need no action."""
    stats = PlayStats()
    used: dict[int, Sink] = {}
    for step in steps:
        if isinstance(step, Silence):
            continue
        if step.at_ms > clock.now_ms():
            await _flush(used, stats)
            await clock.sleep_until(step.at_ms)
        sink = route(step)
        stats.steps += 1
        if sink is None:
            stats.skipped += 1
        else:
            used[id(sink)] = sink
            if limiter is not None:
                await limiter.take()
            try:
                stats.sent += await sink.send(step)
            except (PublishError, Unencodable) as e:
                _fail(stats, str(e))
            stats.max_lag_ms = max(stats.max_lag_ms, clock.now_ms() - step.at_ms)
        if progress is not None and stats.steps % progress_every == 0:
            progress(stats)
    await _flush(used, stats)
    if progress is not None:
        progress(stats)
    return stats


async def _flush(sinks: Mapping[int, Sink], stats: PlayStats) -> None:
    for sink in sinks.values():
        try:
            stats.sent += await sink.flush()
        except PublishError as e:
            _fail(stats, str(e))


def _fail(stats: PlayStats, message: str) -> None:
    stats.failed += 1
    if len(stats.errors) < 20:
        stats.errors.append(message)
    log.warning("simulator: %s", message)
