"""Publish messages to an AMQP 1.0 queue (Qpid Proton), as Huawei IoTDA or Alibaba Cloud IoT would
deliver them to a server-side subscription: durable messages, each confirmed (`accepted`) by the
broker. Used by `miaoxiang simulate --amqp-url` and the AMQP tests and benchmark, which stand a
local broker (RabbitMQ) in for the provider's."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from proton import Message
from proton.handlers import MessagingHandler
from proton.reactor import ApplicationEvent, Container, EventInjector


class AmqpSendError(RuntimeError):
    """The broker refused a message, or the connection failed before every message was confirmed."""


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    body: bytes
    properties: Mapping[str, Any] = field(default_factory=dict)  # application properties (Alibaba's topic, ...)


@dataclass(frozen=True, slots=True)
class AmqpTarget:
    """`amqp://user:password@host:port/address`: the user and password URL-quoted (a signed
    username holds `|`, `=` and `,`), the address the queue's (`/amq/queue/{name}` on RabbitMQ)."""

    url: str

    def parts(self) -> tuple[str, str | None, str | None, str]:
        u = urlsplit(self.url)
        if u.scheme not in ("amqp", "amqps") or not u.hostname or not u.path.strip("/"):
            raise ValueError(f"not an AMQP target amqp[s]://user:password@host:port/address: {self.url!r}")
        host = f"{u.scheme}://{u.hostname}:{u.port or (5671 if u.scheme == 'amqps' else 5672)}"
        user = unquote(u.username) if u.username else None
        password = unquote(u.password) if u.password else None
        return host, user, password, unquote(u.path)


class _Sender(MessagingHandler):
    def __init__(self, target: AmqpTarget, messages: Sequence[AmqpMessage], window: int) -> None:
        super().__init__(auto_settle=True)
        self.host, self.user, self.password, self.address = target.parts()
        self.messages = messages
        self.window = window
        self.sent = 0
        self.confirmed = 0
        self.error: str | None = None

    def on_start(self, event: Any) -> None:
        conn = event.container.connect(self.host, user=self.user, password=self.password, allowed_mechs="PLAIN",
                                       allow_insecure_mechs=True, reconnect=False)
        event.container.create_sender(conn, self.address)
        if not self.messages:
            conn.close()

    def on_sendable(self, event: Any) -> None:
        while event.sender.credit and self.sent < len(self.messages) and self.sent - self.confirmed < self.window:
            m = self.messages[self.sent]
            event.sender.send(Message(body=m.body, durable=True, properties=dict(m.properties) or None))
            self.sent += 1

    def on_accepted(self, event: Any) -> None:
        self.confirmed += 1
        if self.confirmed == len(self.messages):
            event.connection.close()
        else:
            self.on_sendable(event)

    def on_rejected(self, event: Any) -> None:
        self._fail(event, "the broker rejected a message")

    def on_released(self, event: Any) -> None:
        self._fail(event, "the broker released a message")

    def on_transport_error(self, event: Any) -> None:
        cond = event.transport.condition
        self._fail(event, f"transport error: {cond.name if cond else 'closed'}: {cond.description if cond else ''}")

    def on_connection_error(self, event: Any) -> None:
        cond = event.connection.remote_condition
        self._fail(event, f"connection closed by the broker: {cond.name if cond else ''}")

    def on_link_error(self, event: Any) -> None:
        cond = event.link.remote_condition
        self._fail(event, f"link closed by the broker: {cond.name if cond else ''}: {cond.description if cond else ''}")

    def _fail(self, event: Any, reason: str) -> None:
        if self.error is None:
            self.error = reason
        event.container.stop()


def send(target: AmqpTarget | str, messages: Sequence[AmqpMessage], *, window: int = 1000) -> int:
    """Send `messages` and wait until the broker has accepted every one (blocking; run it in a
    thread from async code). At most `window` are unconfirmed at once. Returns the count sent."""
    handler = _Sender(AmqpTarget(target) if isinstance(target, str) else target, messages, window)
    Container(handler).run()
    if handler.error is not None or handler.confirmed != len(messages):
        raise AmqpSendError(f"{handler.error or 'connection ended'} after {handler.confirmed} of {len(messages)} "
                            "messages were confirmed")
    return handler.confirmed




class _Streamer(MessagingHandler):
    """The reactor side of `AmqpStream`: sends what is queued while the link has credit."""

    def __init__(self, stream: AmqpStream) -> None:
        super().__init__(auto_settle=True)
        self.stream = stream
        self.sender: Any = None
        self.container: Any = None

    def on_start(self, event: Any) -> None:
        self.container = event.container
        event.container.selectable(self.stream.injector)
        host, user, password, address = self.stream.target.parts()
        conn = event.container.connect(host, user=user, password=password, allowed_mechs="PLAIN",
                                       allow_insecure_mechs=True, reconnect=False)
        self.sender = event.container.create_sender(conn, address)

    def on_sendable(self, event: Any) -> None:
        self._send()

    def on_more(self, event: Any) -> None:
        self._send()

    def _send(self) -> None:
        if self.sender is None:
            return
        while self.sender.credit:
            with self.stream.cond:
                if not self.stream.queued:
                    return
                body = self.stream.queued.pop(0)
            self.sender.send(Message(body=body.body, durable=True, properties=dict(body.properties) or None))

    def on_accepted(self, event: Any) -> None:
        with self.stream.cond:
            self.stream.confirmed += 1
            self.stream.cond.notify_all()

    def on_rejected(self, event: Any) -> None:
        self.stream.fail("the broker rejected a message")

    def on_released(self, event: Any) -> None:
        self.stream.fail("the broker released a message")

    def on_transport_error(self, event: Any) -> None:
        cond = event.transport.condition
        self.stream.fail(f"transport error: {cond.name if cond else 'closed'}")

    def on_connection_error(self, event: Any) -> None:
        self.stream.fail("connection closed by the broker")

    def on_link_error(self, event: Any) -> None:
        self.stream.fail("link closed by the broker")

    def on_stop(self, event: Any) -> None:
        self.stream.injector.close()
        if self.sender is not None:
            self.sender.connection.close()
        else:
            self.container.stop()

    def on_connection_closed(self, event: Any) -> None:
        self.container.stop()


class AmqpStream:
    """One connection and sender link kept open for a run (`miaoxiang simulate --amqp-url`):
    `put` queues a message from the event loop without waiting, `wait_confirmed` (blocking, in a
    thread) returns once the broker has accepted everything put, or raises `AmqpSendError`."""

    def __init__(self, target: AmqpTarget | str) -> None:
        self.target = AmqpTarget(target) if isinstance(target, str) else target
        self.target.parts()  # a bad URL fails here, not in the reactor
        self.injector = EventInjector()
        self.cond = threading.Condition()
        self.queued: list[AmqpMessage] = []
        self.put_count = 0
        self.confirmed = 0
        self.error: str | None = None
        self.thread = threading.Thread(target=Container(_Streamer(self)).run, name="amqp-sink", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def put(self, message: AmqpMessage) -> None:
        if self.error is not None:
            raise AmqpSendError(self.error)
        with self.cond:
            self.queued.append(message)
            self.put_count += 1
        self.injector.trigger(ApplicationEvent("more"))

    def fail(self, reason: str) -> None:
        with self.cond:
            self.error = self.error or reason
            self.cond.notify_all()

    def wait_confirmed(self, timeout: float = 60) -> int:
        with self.cond:
            if not self.cond.wait_for(lambda: self.error is not None or self.confirmed >= self.put_count, timeout):
                raise AmqpSendError(f"{self.put_count - self.confirmed} messages unconfirmed after {timeout:g} s")
            if self.error is not None:
                raise AmqpSendError(self.error)
            return self.confirmed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.injector.trigger(ApplicationEvent("stop"))
        self.thread.join(10)
