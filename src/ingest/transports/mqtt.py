"""MQTT uplink: one persistent-session client per priority lane, acknowledging after durable writes.

The `evt` client subscribes to `evt/#` only, so an alarm never waits behind telemetry in
the broker, in the client or in the pipeline. The `tel` client takes `tel/#`, gateway
`batch/#` and command `ack/#`, and also publishes downlink commands. The filters are wider than
the contract's topics so that a topic of the wrong shape (a `/` in a device id, an empty id, an
unknown kind) reaches the service and is dead-lettered, not left unread by the broker.

Bounds: a message over `max_payload` bytes (`max_batch_payload` on `batch/`) is dead-lettered
with its first `KEPT_BYTES` bytes and acknowledged: it would never decode, and a message left
unacknowledged is redelivered for ever. The broker's own `message_size_limit` should refuse
larger ones before they reach anybody (docs/deploy.md).

Acknowledgement: paho (under aiomqtt 2.x) would PUBACK on receipt; manual acks are switched on
and a message is acknowledged when the pipeline's future for it resolves, i.e. once its readings
or its dead letter are committed. The number of unacknowledged messages the broker sends us is
bounded by the MQTT 5 Receive Maximum (`mqtt_max_inflight`), which is what bounds memory here:
aiomqtt's own queue is left unbounded because it would drop, not block, when full. MQTT 3.1.1
(the embedded broker) has no Receive Maximum: the broker's `max_inflight_messages` applies.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.kinds import KIND_BY_NAME
from ingest.codecs.errors import DecodeError
from ingest.codecs.registry import TOPICS, UNKNOWN, TopicCodec, topic_codec
from ingest.delivery import deliver
from ingest.metrics import IngestMetrics
from ingest.pipeline import Clock, Pipeline

log = logging.getLogger(__name__)

CommandAckHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
SESSION_EXPIRY_S = 7 * 86_400
KEPT_BYTES = 4096  # of an oversized message, what its dead letter keeps
TOO_LARGE = "too_large"  # `reason` labels of mx_ingest_dead_letters_total (ingest.metrics)
BAD_TOPIC = "bad_topic"
#: Filters of earlier releases, dropped on connect: a persistent session keeps them, and Mosquitto
#: delivers a message once per matching subscription, so each uplink would come twice.
LEGACY_FILTERS = {"evt": ["evt/+/+"], "tel": ["tel/+/+", "batch/+", "ack/+/+"]}


def topic_problem(levels: list[str]) -> str | None:
    """Why a topic (its levels under the root) is not one of the contract's uplink topics; None if it is."""
    codec = TOPICS.get(levels[0]) if levels else None
    if codec is None:
        return f"`{levels[0] if levels else ''}` is none of {', '.join(TOPICS)}"
    if len(levels) == codec.levels and "" not in levels and (codec.levels == 2 or levels[1] in KIND_BY_NAME):
        return None
    shape = "/".join([levels[0], *(["{kind}", "{device_id}"] if codec.levels == 3 else ["{gateway_id}"])])
    if len(levels) != codec.levels:
        return f"{shape} has {codec.levels} levels, this topic {len(levels)} (a '/' in an id?)"
    if "" in levels:
        return f"{shape} has an empty level"
    return f"unknown kind {levels[1][:64]!r}; expected one of {', '.join(KIND_BY_NAME)}"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    protocol: str  # "5" or "3.1.1"

    @classmethod
    def from_url(cls, url: str, protocol: str = "5") -> BrokerConfig:
        u = urlsplit(url)
        tls = u.scheme == "mqtts"
        return cls(
            host=u.hostname or "127.0.0.1",
            port=u.port or (8883 if tls else 1883),
            username=unquote(u.username) if u.username else None,
            password=unquote(u.password) if u.password else None,
            tls=tls,
            protocol=protocol,
        )

    def client(self, identifier: str, *, persistent: bool, receive_maximum: int) -> aiomqtt.Client:
        """A client; call inside the running loop. Persistent sessions survive our restarts."""
        kwargs: dict[str, Any] = {}
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = receive_maximum
            if persistent:
                props.SessionExpiryInterval = SESSION_EXPIRY_S
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V5, properties=props, clean_start=not persistent)
        else:
            kwargs.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=not persistent)
        return aiomqtt.Client(
            self.host,
            self.port,
            identifier=identifier,
            username=self.username,
            password=self.password,
            tls_context=ssl.create_default_context() if self.tls else None,
            keepalive=30,
            max_inflight_messages=receive_maximum,
            **kwargs,
        )


class MqttTransport:
    """Both uplink lanes plus the downlink publisher, each reconnecting with backoff."""

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        pipeline: Pipeline,
        metrics: IngestMetrics,
        topic_root: str,
        client_id: str,
        share_group: str | None = None,
        max_inflight: int = 1000,
        max_payload: int = 65_536,
        max_batch_payload: int = 1_048_576,
        on_command_ack: CommandAckHandler | None = None,
        clock: Clock,
    ) -> None:
        self.broker = broker
        self.pipeline = pipeline
        self.metrics = metrics
        self.root = topic_root.rstrip("/")
        self.client_id = client_id
        self.share = f"$share/{share_group}/" if share_group else ""
        self.max_inflight = max_inflight
        self.max_payload = max_payload
        self.max_batch_payload = max_batch_payload
        self.on_command_ack = on_command_ack
        self.clock = clock
        self.connected: dict[str, bool] = {"evt": False, "tel": False}
        self._publisher: aiomqtt.Client | None = None

    @property
    def ready(self) -> bool:
        return all(self.connected.values())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._lane("evt", ["evt/#"]))
            tg.create_task(self._lane("tel", ["tel/#", "batch/#", "ack/#"]))

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        if self._publisher is None:
            raise ConnectionError("MQTT broker not connected")
        await self._publisher.publish(topic, payload, qos=qos)

    async def _lane(self, name: str, filters: list[str]) -> None:
        backoff = 0.5
        while True:
            client = self.broker.client(f"{self.client_id}-{name}", persistent=True, receive_maximum=self.max_inflight)
            # Before connecting: a persistent session's backlog may arrive right after CONNACK.
            client._client.manual_ack_set(True)  # aiomqtt 2.x exposes no other way
            try:
                async with client:
                    for f in filters:
                        await client.subscribe(f"{self.share}{self.root}/{f}", qos=1)
                    for f in LEGACY_FILTERS[name]:  # after the new ones: no gap in which a message finds none
                        await client.unsubscribe(f"{self.share}{self.root}/{f}")
                    self.connected[name] = True
                    if name == "tel":
                        self._publisher = client
                    backoff = 0.5
                    log.info("MQTT %s lane subscribed on %s:%d", name, self.broker.host, self.broker.port)
                    async for message in client.messages:
                        await self._handle(client, message)
            except aiomqtt.MqttError as e:
                log.warning("MQTT %s lane disconnected (%s); reconnecting in %.1fs", name, e, backoff)
            finally:
                self.connected[name] = False
                if name == "tel":
                    self._publisher = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        source = f"mqtt:{topic}"
        levels = topic[len(self.root) + 1 :].split("/") if topic.startswith(self.root + "/") else []
        codec = topic_codec(levels)  # ingest.codecs.registry.TOPICS
        label = UNKNOWN if codec is None else codec.label(payload)
        self.metrics.codec_received.labels("mqtt", label).inc()
        done: asyncio.Future[Any] | None = None
        limit = self.max_batch_payload if levels[:1] == ["batch"] else self.max_payload
        problem = topic_problem(levels) if topic.startswith(self.root + "/") else f"it is not under {self.root}/"
        if len(payload) > limit:
            reason = (f"消息过大 (payload too large): {len(payload)} bytes, the limit on this topic is {limit}; "
                      f"the first {KEPT_BYTES} bytes are kept")
            done = await self.pipeline.dead_letter(
                "mqtt", source, reason, payload[:KEPT_BYTES], codec=label, cause=TOO_LARGE
            )
        elif problem is not None:
            reason = f"主题不符合约定 (topic does not match the contract): {topic[:200]}: {problem}"
            done = await self.pipeline.dead_letter("mqtt", source, reason, payload, codec=label, cause=BAD_TOPIC)
        else:
            try:
                done = await self._dispatch(levels, codec, payload, source, label)
            except DecodeError as e:
                self.metrics.decode_errors.labels("mqtt", label).inc()
                done = await self.pipeline.dead_letter("mqtt", source, e.reason, payload, codec=label)
        if message.qos > 0:
            ack = _acker(client, message.mid, message.qos)
            if done is None:
                ack(None)
            else:
                done.add_done_callback(ack)

    async def _dispatch(
        self, levels: list[str], codec: TopicCodec | None, payload: bytes, source: str, label: str
    ) -> asyncio.Future[Any] | None:
        """Decode by the topic's codec and deliver; the answer resolves once everything is written
        (a gateway batch: its readings and the dead letters of its bad elements)."""
        if codec is None:
            raise DecodeError(f"topic {source[5:]} is not a Miaoxiang uplink topic")
        result = codec.decode(levels, payload, received_ms=self.clock())
        if not (result.readings or result.errors or result.notices):  # e.g. `[]` on batch/
            raise DecodeError("消息中没有报告 (nothing in the message is a report)")
        # a single-device topic names the device itself: its lane's topics share one origin
        origin = source if codec.levels == 2 else f"mqtt:{self.root}/{levels[0]}/+/+"
        waits = await deliver(
            self.pipeline, self.metrics, result, transport="mqtt", source=source, codec=label, raw=payload,
            lane="evt" if levels[0] == "evt" else None, origin=origin,
        )
        if self.on_command_ack is not None:
            for answer in result.notices:  # `ack/` topics: a device's answer to a command
                await self.on_command_ack(answer.device_id, answer.detail)
        if len(waits) > 1:
            return asyncio.gather(*waits)
        return waits[0] if waits else None


def _acker(client: aiomqtt.Client, mid: int, qos: int) -> Callable[[Any], None]:
    def ack(_: Any) -> None:
        try:
            client._client.ack(mid, qos)
        except Exception as e:  # a lost connection means the broker redelivers
            log.debug("ack of mid %d not sent: %s", mid, e)

    return ack
