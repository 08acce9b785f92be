"""The internal MQTT links of a scaled-out deployment: one publisher and the followed topics.

`publish` retries until the broker PUBACKs (QoS 1), so a broker outage is backpressure on the
caller (the pipeline stops taking batches, the uplink stops reading), never loss. Each followed
filter gets its own persistent, non-shared session (MQTT 5 session expiry, or clean_session
false), so what is published while a process restarts waits for it in the broker; a message is
acknowledged only after its handler returned, and the MQTT 5 Receive Maximum bounds how many
wait unacknowledged in this process (aiomqtt's own queue is left unbounded: it would drop, not
block). A message its handler cannot read is logged, counted and acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt

from ingest.transports.mqtt import BrokerConfig

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None]]
PUBLISH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Follow:
    """A followed topic filter: its session name (appended to the client id) and its handler."""

    name: str
    topic_filter: str
    handler: Handler


class InternalBus:
    def __init__(
        self, broker: BrokerConfig, *, client_id: str, follows: list[Follow], max_inflight: int = 1000
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.follows = follows
        self.max_inflight = max_inflight
        self.connected: dict[str, bool] = {"out": False} | {f.name: False for f in follows}
        self.unreadable = 0
        self._publisher: aiomqtt.Client | None = None
        self._up = asyncio.Event()

    @property
    def ready(self) -> bool:
        return all(self.connected.values())

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._publish_link())
            for f in self.follows:
                tg.create_task(self._follow(f))

    async def publish(self, topic: str, payload: bytes, *, retry: bool = True) -> None:
        """Publish at QoS 1 and wait for the PUBACK, retrying through reconnects; without
        `retry`, raise ConnectionError at once when the broker is not there (downlink commands)."""
        while True:
            if retry:
                await self._up.wait()
            client = self._publisher
            try:
                if client is None:
                    raise ConnectionError("MQTT broker not connected")
                await client.publish(topic, payload, qos=1, timeout=PUBLISH_TIMEOUT_S)
                return
            except (aiomqtt.MqttError, ConnectionError) as e:
                if not retry:
                    raise ConnectionError(f"not published: {e}") from e
                log.warning("internal publish on %s failed (%s); retrying", topic, e)
                await asyncio.sleep(0.2)

    async def _publish_link(self) -> None:
        async def session(client: aiomqtt.Client) -> None:
            self._publisher = client
            self.connected["out"] = True
            self._up.set()
            try:
                await asyncio.Future()  # until the connection fails or we are cancelled
            finally:
                self._up.clear()
                self._publisher = None

        await self._connected_forever("out", session, persistent=False)

    async def _follow(self, f: Follow) -> None:
        async def session(client: aiomqtt.Client) -> None:
            await client.subscribe(f.topic_filter, qos=1)
            self.connected[f.name] = True
            log.info("following %s", f.topic_filter)
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
                try:
                    await f.handler(str(message.topic), payload)
                except ValueError as e:
                    self.unreadable += 1
                    log.error("unreadable internal message on %s (%s); dropped", message.topic, e)
                if message.qos > 0:
                    try:
                        client._client.ack(message.mid, message.qos)  # see ingest.transports.mqtt
                    except Exception as e:  # a lost connection means the broker redelivers
                        log.debug("ack of mid %d not sent: %s", message.mid, e)

        await self._connected_forever(f.name, session, persistent=True)

    async def _connected_forever(
        self, name: str, session: Callable[[aiomqtt.Client], Awaitable[None]], *, persistent: bool
    ) -> None:
        backoff = 0.5
        while True:
            client = self.broker.client(
                f"{self.client_id}-{name}", persistent=persistent, receive_maximum=self.max_inflight
            )
            client._client.manual_ack_set(True)  # before connecting: a backlog may come at once
            try:
                async with client:
                    backoff = 0.5
                    await session(client)
            except aiomqtt.MqttError as e:
                log.warning("internal MQTT link %s lost (%s); reconnecting in %.1fs", name, e, backoff)
            finally:
                self.connected[name] = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
