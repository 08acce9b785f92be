"""CTWing AEP MQ消息推送 (CONTRACT §3 v2): the tenant's Pulsar topic, consumed on the official
`pulsar-client`.

`CtwingMqConfig` is a source's `config`, checked; `PulsarConsumer` runs one failover
subscription. pulsar-client is synchronous and threaded: every blocking call (connect, receive
with a short timeout, lookups, close) runs on the consumer's own single thread, so the event loop
never waits on the broker and the client is never used from two of our threads at once. At most
`max_unacked` messages are handed over and not yet settled; one is acknowledged after `Handle`
returns (its readings or dead letter committed), and negatively acknowledged when `Handle` raises.
After such a failure the consumer stops taking messages, lets the ones in flight settle and
subscribes again after a backoff: the broker then redelivers every unacknowledged message
whether or not it implements negative-ack redelivery for failover subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pulsar

from .base import ConsumerState, Handle

log = logging.getLogger(__name__)

#: CTWing's tenant topics live in this Pulsar tenant.
CTWING_PULSAR_TENANT = "aep-msgpush"
RECEIVE_TIMEOUT_MS = 200
#: How often the backlog (`state.lag`) is asked of the broker.
LAG_EVERY_S = 5.0
#: How long a stop waits for messages in flight to be committed (and so acknowledged).
SETTLE_S = 3.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
_SCHEMES = ("pulsar://", "pulsar+ssl://")
_FULL_TOPIC = re.compile(r"(non-)?persistent://[^/\s]+/[^/\s]+/[^/\s]+")
_NAME = re.compile(r"[A-Za-z0-9_.:=-]{1,128}")


class ConfigError(ValueError):
    """A subscription `config` that cannot work; the message says which setting and why."""


def _text(config: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = config.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"config.{key} 必须是非空字符串 / must be a non-empty string")
    return value.strip()


def _int(config: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"config.{key} 必须是 {low}..{high} 的整数 / must be an integer in {low}..{high}")
    return value


@dataclass(frozen=True, slots=True)
class CtwingMqConfig:
    service_url: str  # pulsar+ssl://...:16651 at CTWing
    token: str | None  # the tenant's JWT (required over TLS)
    tenant_id: str
    topic: str  # a short topic name, or a full persistent://... one
    subscription: str
    tls_trust_certs: str | None = None  # a CA bundle path; default: the client's (certifi)
    tls_validate_hostname: bool = True
    max_unacked: int = 200
    nack_redelivery_ms: int = 1000

    KEYS = frozenset({"service_url", "token", "tenant_id", "topic", "subscription", "tls_trust_certs",
                      "tls_validate_hostname", "max_unacked", "nack_redelivery_ms", "commit_timeout_s"})

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> CtwingMqConfig:
        """Check a source's `config`; `ConfigError` names the first setting that is wrong."""
        unknown = sorted(set(config) - cls.KEYS)
        if unknown:
            raise ConfigError(f"config 中有未知设置 / unknown settings: {', '.join(unknown)}")
        url = _text(config, "service_url")
        assert url is not None
        if not url.startswith(_SCHEMES):
            raise ConfigError("config.service_url 须以 pulsar+ssl:// 或 pulsar:// 开头 / must start with "
                              "pulsar+ssl:// or pulsar://")
        token = _text(config, "token", required=url.startswith("pulsar+ssl://"))
        tenant_id, topic, subscription = (_text(config, k) for k in ("tenant_id", "topic", "subscription"))
        assert tenant_id is not None and topic is not None and subscription is not None
        for key, value in (("tenant_id", tenant_id), ("subscription", subscription)):
            if not _NAME.fullmatch(value):
                raise ConfigError(f"config.{key} 含非法字符 / has characters a Pulsar name cannot hold")
        if "://" in topic and not _FULL_TOPIC.fullmatch(topic):
            raise ConfigError("config.topic 须为短名或 persistent://tenant/namespace/topic / must be a short "
                              "name or a full persistent://tenant/namespace/topic")
        if "://" not in topic and not _NAME.fullmatch(topic):
            raise ConfigError("config.topic 含非法字符 / has characters a Pulsar topic cannot hold")
        validate = config.get("tls_validate_hostname", True)
        if not isinstance(validate, bool):
            raise ConfigError("config.tls_validate_hostname 必须是布尔值 / must be true or false")
        return cls(
            service_url=url, token=token, tenant_id=tenant_id, topic=topic, subscription=subscription,
            tls_trust_certs=_text(config, "tls_trust_certs", required=False), tls_validate_hostname=validate,
            max_unacked=_int(config, "max_unacked", 200, 1, 10_000),
            nack_redelivery_ms=_int(config, "nack_redelivery_ms", 1000, 100, 600_000),
        )

    @property
    def topic_name(self) -> str:
        """`persistent://aep-msgpush/{tenant_id}/{topic}`, unless `topic` is a full name."""
        if "://" in self.topic:
            return self.topic
        return f"persistent://{CTWING_PULSAR_TENANT}/{self.tenant_id}/{self.topic}"

    def client_kwargs(self) -> dict[str, Any]:
        """`pulsar.Client` keyword arguments: token authentication and TLS checks (TLS itself
        follows the pulsar+ssl:// scheme)."""
        kwargs: dict[str, Any] = {
            "operation_timeout_seconds": 10, "connection_timeout_ms": 5000,
            "tls_validate_hostname": self.tls_validate_hostname, "tls_allow_insecure_connection": False,
            "logger": logging.getLogger("pulsar"),
        }
        if self.token is not None:
            kwargs["authentication"] = pulsar.AuthenticationToken(self.token)
        if self.tls_trust_certs is not None:
            kwargs["tls_trust_certs_file_path"] = self.tls_trust_certs
        return kwargs

    def subscribe_kwargs(self) -> dict[str, Any]:
        """`Client.subscribe` keyword arguments: a failover subscription (one active consumer,
        a standby takes over) that starts at the earliest message when it is new, prefetching no
        more than may be in flight."""
        return {
            "consumer_type": pulsar.ConsumerType.Failover,
            "initial_position": pulsar.InitialPosition.Earliest,
            "receiver_queue_size": self.max_unacked,
            "negative_ack_redelivery_delay_ms": self.nack_redelivery_ms,
        }


class PulsarConsumer:
    """One CTWing MQ subscription (the `Consumer` of `base`)."""

    def __init__(self, config: CtwingMqConfig, label: str) -> None:
        self.config = config
        self.label = label
        self.state = ConsumerState()
        self._acked: tuple[int, int] | None = None  # the highest (ledger, entry) acknowledged

    async def run(self, handle: Handle) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            acked_before = self.state.messages
            try:
                await self._session(handle)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the broker, the network, a refused token: retried
                self.state.last_error = type(e).__name__
                log.warning("%s: Pulsar session ended (%s: %s); reconnecting", self.label, type(e).__name__, e)
            self.state.connected = False
            if self.state.messages > acked_before:
                backoff = BACKOFF_MIN_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self, handle: Handle) -> None:
        """Subscribe, consume until a message fails (then return) or until cancelled."""
        loop = asyncio.get_running_loop()
        thread = ThreadPoolExecutor(1, thread_name_prefix=f"pulsar-{self.label}"[:30])
        try:
            cfg = self.config
            client = await loop.run_in_executor(thread, lambda: pulsar.Client(cfg.service_url, **cfg.client_kwargs()))
            try:
                consumer = await loop.run_in_executor(
                    thread, lambda: client.subscribe(cfg.topic_name, cfg.subscription, **cfg.subscribe_kwargs())
                )
                self.state.connected = True
                self.state.last_error = None
                await self._consume(loop, thread, consumer, handle)
            finally:
                await _through_cancellation(loop.run_in_executor(thread, client.close))
        finally:
            thread.shutdown(wait=False)

    async def _consume(
        self, loop: asyncio.AbstractEventLoop, thread: ThreadPoolExecutor, consumer: pulsar.Consumer, handle: Handle
    ) -> None:
        slots = asyncio.Semaphore(self.config.max_unacked)
        failed = asyncio.Event()
        inflight: set[asyncio.Task[None]] = set()
        next_lag = loop.time()
        try:
            while not failed.is_set():
                await slots.acquire()
                try:
                    msg = await loop.run_in_executor(thread, _receive, consumer)
                except BaseException:
                    slots.release()
                    raise
                if msg is None:
                    slots.release()
                else:
                    task = asyncio.create_task(self._one(consumer, msg, handle, slots, failed))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                if loop.time() >= next_lag:
                    next_lag = loop.time() + LAG_EVERY_S
                    self.state.connected = consumer.is_connected()
                    last = await loop.run_in_executor(thread, _last_id, consumer)
                    self.state.lag = self._lag(last, idle=msg is None and not inflight)
            await asyncio.gather(*inflight)  # settle the others, then subscribe again
        finally:
            await _settle(inflight)

    async def _one(
        self, consumer: pulsar.Consumer, msg: pulsar.Message, handle: Handle, slots: asyncio.Semaphore,
        failed: asyncio.Event,
    ) -> None:
        try:
            await handle(msg.data(), self.label)
        except Exception as e:
            consumer.negative_acknowledge(msg)
            self.state.redelivered += 1
            self.state.last_error = type(e).__name__
            if not failed.is_set():
                log.warning("%s: message given back for redelivery (%s: %s)", self.label, type(e).__name__, e)
            failed.set()
        else:
            consumer.acknowledge(msg)
            self.state.messages += 1
            mid = msg.message_id()
            self._acked = max(self._acked or (-1, -1), (mid.ledger_id(), mid.entry_id()))
        finally:
            slots.release()

    def _lag(self, last: pulsar.MessageId | None, *, idle: bool) -> int | None:
        """Messages on the topic past the highest one acknowledged, when both are in one ledger."""
        if last is None or last.entry_id() < 0:
            return 0 if idle else None
        if self._acked is None or self._acked[0] != last.ledger_id():
            return None
        return max(0, last.entry_id() - self._acked[1])


def _receive(consumer: pulsar.Consumer) -> pulsar.Message | None:
    try:
        return consumer.receive(RECEIVE_TIMEOUT_MS)
    except pulsar.Timeout:
        return None


def _last_id(consumer: pulsar.Consumer) -> pulsar.MessageId | None:
    try:
        return consumer.get_last_message_id()
    except Exception:  # not every broker answers it; lag is then unknown
        return None


async def _through_cancellation(closing: asyncio.Future[None]) -> None:
    """Wait for the client's close even when cancelled meanwhile (for up to `SETTLE_S` then): it
    sends the acknowledgements the client still groups, which a process exiting first would lose
    (their messages would come back as duplicates)."""
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        await asyncio.wait([closing], timeout=SETTLE_S)
        raise


async def _settle(inflight: set[asyncio.Task[None]]) -> None:
    """On a stop: let the messages in flight commit and be acknowledged for up to `SETTLE_S`, then
    give up on the rest (unacknowledged: the broker redelivers them to the next session)."""
    if not inflight:
        return
    pending = set(inflight)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait(pending, timeout=SETTLE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
