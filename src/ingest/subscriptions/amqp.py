"""AMQP 1.0 consumer of Huawei IoTDA (`iotda_amqp`) and Alibaba Cloud IoT (`aliyun_amqp`)
server-side subscriptions (CONTRACT §3), on Apache Qpid Proton.

Proton's reactor blocks, so each connection runs its `Container` in a thread of its own and
talks to the event loop only through thread-safe hand-overs: a delivery goes to the loop with
`call_soon_threadsafe`, and its outcome comes back through an `EventInjector`, so every Proton
object is touched only by the reactor thread.

- Flow control is credit-based and bounded: the receiver grants `max_unacked` credits at first
  and one more per settled delivery, so at most that many messages are in hand at once.
- A message is settled `accepted` only after `handle` returns (its readings or dead letter are
  committed); when `handle` raises it is settled `released` (the broker redelivers it; never
  `modified` or `rejected`), after a short pause so a database outage does not spin.
- A lost connection is re-established with exponential backoff and fresh credentials (both
  providers sign a timestamp they check against their clock); what was in hand unsettled is
  redelivered by the broker and recognised by the pipeline's dedupe.
- TLS (`amqps`) verifies the broker's certificate and host name against the system CAs or the
  configured `ca_file`. Plain `amqp` is only for a local broker (`"tls": false`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proton import Delivery, Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

from ingest.codecs.aliyun import envelope

from .amqp_auth import aliyun_credentials, iotda_credentials
from .base import ConsumerState, Handle

log = logging.getLogger(__name__)

PLATFORMS = ("iotda_amqp", "aliyun_amqp")
#: The bound of unsettled messages unless `config.max_unacked` says otherwise: the MQTT lanes'
#: default in-flight (`mqtt_max_inflight`).
DEFAULT_MAX_UNACKED = 1000
MAX_UNACKED_LIMIT = 10_000
#: Longest wait, when the consumer is stopped, for the messages in hand to commit and be settled.
DRAIN_S = 30.0
_STRING_KEYS = ("host", "queue", "access_key", "access_code", "access_secret", "instance_id", "client_id",
                "consumer_group_id", "vhost", "ca_file")


class ConfigError(ValueError):
    """A subscription `config` that cannot work; the message says which setting and why (Chinese, then English)."""


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """One subscription's connection settings (the push source's `config`)."""

    platform: str
    host: str
    queue: str  # the receiver link's source address (IoTDA: the queue name; Alibaba: may be empty)
    access_key: str
    secret: str  # IoTDA access_code or Alibaba access_secret
    port: int = 5671
    instance_id: str = ""
    client_id: str = ""  # Alibaba: shown in its console per client; defaults to this host's name
    consumer_group_id: str = ""  # Alibaba, required
    vhost: str | None = None  # IoTDA documents amqp.vhost=default
    tls: bool = True
    ca_file: str | None = None
    idle_timeout_s: float = 60.0  # Alibaba requires 30-300 s
    max_unacked: int = DEFAULT_MAX_UNACKED

    @property
    def label(self) -> str:
        return f"{self.platform}:{self.queue or self.consumer_group_id}"

    @property
    def url(self) -> str:
        return f"{'amqps' if self.tls else 'amqp'}://{self.host}:{self.port}"

    def credentials(self, now_ms: int) -> tuple[str, str]:
        """(SASL PLAIN username, password) signed at `now_ms`."""
        if self.platform == "iotda_amqp":
            return iotda_credentials(self.access_key, self.secret, now_ms, self.instance_id)
        return aliyun_credentials(self.client_id, self.access_key, self.secret, now_ms, self.consumer_group_id,
                                  self.instance_id)


def settings_from_config(platform: str, config: Mapping[str, Any]) -> AmqpSettings:
    """Validate a push source's `config` for an AMQP platform; `ConfigError` names the problem."""
    if platform not in PLATFORMS:
        raise ConfigError(f"不支持的 AMQP 平台 {platform!r} / {platform!r} is not an AMQP platform "
                          f"({', '.join(PLATFORMS)})")
    other = {"access_secret", "client_id", "consumer_group_id"} if platform == "iotda_amqp" else {"access_code"}
    known = {*_STRING_KEYS, "port", "tls", "idle_timeout_s", "max_unacked"} - other
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"config 含未知设置 {unknown} / config has unknown settings {unknown}; "
                          f"known: {sorted(known)}")
    for key in _STRING_KEYS:
        if key in config and not isinstance(config[key], str):
            raise ConfigError(f"config.{key} 必须是字符串 / config.{key} must be a string")
    secret_key = "access_code" if platform == "iotda_amqp" else "access_secret"
    required = ["host", "access_key", secret_key] + (["queue"] if platform == "iotda_amqp" else ["consumer_group_id"])
    for key in required:
        if not config.get(key):
            raise ConfigError(f"config 缺少 {key} / config needs {key} for {platform}")
    port = config.get("port", 5671)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError("config.port 必须是 1-65535 的整数 / config.port must be an integer 1-65535")
    tls = config.get("tls", True)
    if not isinstance(tls, bool):
        raise ConfigError("config.tls 必须是 true 或 false / config.tls must be true or false")
    idle = config.get("idle_timeout_s", 60)
    if not isinstance(idle, (int, float)) or isinstance(idle, bool) or not 30 <= idle <= 300:
        raise ConfigError("config.idle_timeout_s 必须在 30-300 之间 / config.idle_timeout_s must be 30 to 300 seconds")
    max_unacked = config.get("max_unacked", DEFAULT_MAX_UNACKED)
    if not isinstance(max_unacked, int) or isinstance(max_unacked, bool) or not 1 <= max_unacked <= MAX_UNACKED_LIMIT:
        raise ConfigError(f"config.max_unacked 必须是 1-{MAX_UNACKED_LIMIT} 的整数 / config.max_unacked must be an "
                          f"integer 1-{MAX_UNACKED_LIMIT}")
    return AmqpSettings(
        platform=platform,
        host=config["host"],
        port=port,
        queue=config.get("queue", ""),
        access_key=config["access_key"],
        secret=config[secret_key],
        instance_id=config.get("instance_id", ""),
        client_id=config.get("client_id") or socket.gethostname(),
        consumer_group_id=config.get("consumer_group_id", ""),
        vhost=config.get("vhost", "default" if platform == "iotda_amqp" else None),
        tls=tls,
        ca_file=config.get("ca_file"),
        idle_timeout_s=float(idle),
        max_unacked=max_unacked,
    )


def payload_of(platform: str, message: Message) -> bytes:
    """The bytes handed to `handle`: IoTDA's body as delivered; for Alibaba the body with its
    `topic`, `messageId` and `generateTime` application properties (`codecs.aliyun.envelope`)."""
    body = _body_bytes(message.body)
    if platform != "aliyun_amqp":
        return body
    props: dict[str, Any] = message.properties or {}
    topic, message_id = props.get("topic"), props.get("messageId")
    return envelope(None if topic is None else str(topic), None if message_id is None else str(message_id),
                    props.get("generateTime"), body)


def _body_bytes(body: Any) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if body is None:
        return b""
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")  # an AMQP map or list value


def ssl_domain(settings: AmqpSettings) -> SSLDomain | None:
    """The client TLS settings: the broker's certificate and host name are verified."""
    if not settings.tls:
        return None
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    if settings.ca_file:
        domain.set_trusted_ca_db(settings.ca_file)
    domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, settings.ca_file)
    return domain


class AmqpConsumer:
    """One AMQP 1.0 subscription (`base.Consumer`)."""

    def __init__(
        self,
        settings: AmqpSettings,
        label: str | None = None,
        *,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        backoff: tuple[float, float] = (0.5, 30.0),
        release_pause_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.label = label or settings.label
        self.state = ConsumerState()
        self.now_ms = now_ms
        self.backoff = backoff
        self.release_pause_s = release_pause_s

    async def run(self, handle: Handle) -> None:
        """Consume until cancelled, reconnecting with exponential backoff."""
        delay = self.backoff[0]
        while True:
            try:
                await self._connection(handle)
                delay = self.backoff[0]
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of one connection: log it, wait, connect again
                self.state.last_error = _error_class(e)
                log.warning("AMQP subscription %s: %s; reconnecting in %.1f s", self.label,
                            self.state.last_error, delay)
            finally:
                self.state.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    async def _connection(self, handle: Handle) -> None:
        """One connection, until it ends (raises `ConnectionError`) or the task is cancelled."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[_Opened | _Closed | tuple[Delivery, bytes]] = asyncio.Queue()
        user, password = self.settings.credentials(self.now_ms())
        def post(item: _Opened | _Closed | tuple[Delivery, bytes]) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        bridge = _Bridge(self.settings, user, password, post)
        container = Container(bridge)
        container.container_id = f"miaoxiang-{self.settings.client_id or socket.gethostname()}"
        thread = threading.Thread(target=_run_container, args=(container, bridge), name=f"amqp-{self.label}",
                                  daemon=True)
        thread.start()
        in_hand: set[asyncio.Task[None]] = set()
        stopping = False
        try:
            while True:
                item = await inbox.get()
                if isinstance(item, _Closed):
                    raise ConnectionError(item.reason)
                if isinstance(item, _Opened):
                    self.state.connected = True
                    self.state.last_error = None
                    continue
                task = asyncio.create_task(self._one(handle, bridge, *item))
                in_hand.add(task)
                task.add_done_callback(in_hand.discard)
        except asyncio.CancelledError:
            stopping = True
            raise
        finally:
            if stopping and in_hand:  # stopped: let what is in hand commit and be settled first
                await asyncio.wait(set(in_hand), timeout=DRAIN_S)
            for task in in_hand:  # the connection is gone: the broker redelivers these
                task.cancel()
            bridge.request_stop()
            await asyncio.to_thread(thread.join, 10)

    async def _one(self, handle: Handle, bridge: _Bridge, delivery: Delivery, payload: bytes) -> None:
        try:
            await handle(payload, self.label)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # not committed: give it back for redelivery
            self.state.redelivered += 1
            self.state.last_error = _error_class(e)
            log.warning("AMQP subscription %s: message not committed (%s); released", self.label,
                        self.state.last_error)
            await asyncio.sleep(self.release_pause_s)
            bridge.give_outcome(delivery, accepted=False)
            return
        self.state.messages += 1
        bridge.give_outcome(delivery, accepted=True)


def consumer(platform: str, config: Mapping[str, Any], label: str | None = None) -> AmqpConsumer:
    """The consumer of an `iotda_amqp` or `aliyun_amqp` push source; `ConfigError` for a bad config."""
    return AmqpConsumer(settings_from_config(platform, config), label)


def _error_class(e: BaseException) -> str:
    """What `last_error` shows: the kind of failure, never a credential."""
    return type(e).__name__ if not isinstance(e, ConnectionError) else f"ConnectionError: {e}"[:200]


def _run_container(container: Container, bridge: _Bridge) -> None:
    try:
        container.run()
    except Exception as e:  # a handler error ends the reactor; the loop side must hear of it
        log.exception("AMQP reactor of %s stopped", bridge.settings.host)
        bridge.closed(f"reactor stopped: {type(e).__name__}")


@dataclass(frozen=True, slots=True)
class _Opened:
    pass


@dataclass(frozen=True, slots=True)
class _Closed:
    reason: str


class _Bridge(MessagingHandler):
    """The reactor-thread side of one connection. Everything here runs in the container's thread,
    except `give_outcome`, `request_stop` and `closed`, which only queue work for it."""

    def __init__(self, settings: AmqpSettings, user: str, password: str, post: Callable[[Any], None]) -> None:
        super().__init__(prefetch=0, auto_accept=False, auto_settle=False)
        self.settings = settings
        self.user = user
        self.password = password
        self.post = post
        self.injector = EventInjector()
        self.outcomes: list[tuple[Delivery, bool]] = []
        self.outcomes_lock = threading.Lock()
        self.outcomes_due = False  # a settle_outcomes event is on its way: no need for another
        self.receiver: Any = None
        self.container: Any = None
        self.ended = False

    # --- called from the event loop ---
    def give_outcome(self, delivery: Delivery, *, accepted: bool) -> None:
        """Queue a settlement; one wake-up of the reactor carries every outcome queued until it runs."""
        with self.outcomes_lock:
            self.outcomes.append((delivery, accepted))
            if self.outcomes_due:
                return
            self.outcomes_due = True
        with contextlib.suppress(OSError):  # the reactor already stopped: the broker redelivers
            self.injector.trigger(ApplicationEvent("settle_outcomes"))

    def request_stop(self) -> None:
        with contextlib.suppress(OSError):
            self.injector.trigger(ApplicationEvent("stop_request"))

    def closed(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self.post(_Closed(reason))

    # --- reactor thread ---
    def on_start(self, event: Any) -> None:
        self.container = event.container  # injected events carry none
        event.container.selectable(self.injector)
        conn = event.container.connect(
            self.settings.url, user=self.user, password=self.password, allowed_mechs="PLAIN",
            allow_insecure_mechs=not self.settings.tls, ssl_domain=ssl_domain(self.settings), reconnect=False,
            heartbeat=self.settings.idle_timeout_s, virtual_host=self.settings.vhost,
        )
        self.receiver = event.container.create_receiver(conn, self.settings.queue or None)

    def on_link_opened(self, event: Any) -> None:
        if event.receiver is not None:  # the one link of this connection
            self.receiver.flow(self.settings.max_unacked)
            self.post(_Opened())

    def on_message(self, event: Any) -> None:
        self.post((event.delivery, payload_of(self.settings.platform, event.message)))

    def on_settle_outcomes(self, event: Any) -> None:
        with self.outcomes_lock:
            outcomes, self.outcomes, self.outcomes_due = self.outcomes, [], False
        if self.ended:  # the connection is gone: the broker redelivers what it had not settled
            return
        for delivery, accepted in outcomes:
            delivery.update(Delivery.ACCEPTED if accepted else Delivery.RELEASED)
            delivery.settle()
        self.receiver.flow(len(outcomes))

    def on_stop_request(self, event: Any) -> None:
        """Close the connection after the dispositions queued before it; stop the reactor once
        the broker answers, or after 5 s."""
        self.ended = True
        self.injector.close()
        if self.receiver is None:
            self.container.stop()
            return
        self.receiver.connection.close()
        self.container.schedule(5.0, _Stopper())

    def on_connection_closed(self, event: Any) -> None:
        event.container.stop()

    def on_transport_error(self, event: Any) -> None:
        cond = event.transport.condition
        self._end(event, f"transport: {cond.name if cond else 'closed'}")

    def on_connection_remote_close(self, event: Any) -> None:
        cond = event.connection.remote_condition
        self._end(event, f"closed by the broker: {cond.name if cond else 'no condition'}")

    def on_link_remote_close(self, event: Any) -> None:
        cond = event.link.remote_condition
        self._end(event, f"link closed by the broker: {cond.name if cond else 'no condition'}")

    def on_disconnected(self, event: Any) -> None:
        self._end(event, "disconnected")

    def _end(self, event: Any, reason: str) -> None:
        self.closed(reason)
        self.ended = True
        event.container.stop()


class _Stopper:
    """A timer task that stops the reactor."""

    def on_timer_task(self, event: Any) -> None:
        event.container.stop()
