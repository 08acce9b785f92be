"""Wiring of one process of a scaled-out deployment (`partitions` > 1; docs/scale-out.md).

- `worker` (`partition_index` k): the uplink through `$share/{group}/`, decode, dedupe, store;
  each batch goes to the `Partitioner`; follows `internal/p/k/{evt,tel}` and correlates them.
  Command answers that reach it are forwarded to the API process. It follows `internal/ctl`
  too: what operators change in the API process's fleet and a worker's correlation needs
  (a confirmed mute, a cleared flapping mark) arrives there.
- `api`: follows every partition (`internal/p/+/{evt,tel}`) to keep the complete fleet state,
  runs the fleet-wide duties (`FleetAlarms`), answers commands, serves the API; its own HTTP push
  and GB/T 26875 input also go through the `Partitioner`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg

from alerting.partitioned import FleetAlarms, PartitionAlarms
from alerting.service import AlarmService
from devices.clock import Clock
from devices.commands import CommandService
from devices.fleet import Fleet
from devices.registry_follow import follow_registry
from devices.service import DeviceService
from ingest.partition import Partitioner, PartitionFeed, internal_topic
from ingest.pipeline import Pipeline
from ingest.transports.internal import Follow, InternalBus
from ingest.transports.mqtt import BrokerConfig, MqttTransport
from miaoxiang.settings import Settings

log = logging.getLogger(__name__)

ACK_TOPIC = "internal/cmd-ack"
CONTROL_TOPIC = "internal/ctl"
#: Control messages waiting for the broker; far more than operators can cause between reconnects.
CONTROL_QUEUE = 10_000


class Control:
    """Operator changes to live state that the workers' fleets must learn, sent in order by one
    job (QoS 1, retried through reconnects) and applied by each worker to its own fleet."""

    def __init__(self, fleet: Fleet, alarms: AlarmService) -> None:
        self.fleet = fleet
        self.alarms = alarms
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(CONTROL_QUEUE)

    def muted(self, device_id: str, until_ms: int) -> None:
        self._send({"op": "mute", "device_id": device_id, "until_ms": until_ms})

    def flapping_cleared(self, device_id: str) -> None:
        self._send({"op": "clear_flapping", "device_id": device_id})

    def noted(self, device_id: str, cmd: str, sent_ms: int) -> None:
        """A trip, valve or port command was sent (`Fleet.note_command`, CONTRACT §10)."""
        self._send({"op": "note_command", "device_id": device_id, "cmd": cmd, "sent_ms": sent_ms})

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            log.error("control queue full: %s of %s not passed to the workers", msg["op"], msg["device_id"])

    async def publish_forever(self, bus: InternalBus, topic: str) -> None:
        while True:
            msg = await self.queue.get()
            await bus.publish(topic, json.dumps(msg).encode())

    async def apply(self, _topic: str, payload: bytes) -> None:
        """A worker: the change, on this worker's fleet (a device it has never heard of is skipped)."""
        try:
            msg = json.loads(payload)
            op, slot = msg["op"], self.fleet.slot(str(msg["device_id"]))
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"control message without {e}") from None
        if slot < 0:
            return
        if op == "mute":
            self.fleet.mute(slot, int(msg["until_ms"]))
        elif op == "clear_flapping":
            self.alarms.correlator.clear_flapping(slot, self.fleet)
        elif op == "note_command":
            self.fleet.note_command(slot, str(msg["cmd"]), int(msg["sent_ms"]))
        else:
            raise ValueError(f"unknown control operation {op!r}")


def alarm_service_class(settings: Settings) -> type[AlarmService]:
    if settings.partitions == 1:
        return AlarmService
    return PartitionAlarms if settings.role == "worker" else FleetAlarms


Job = Coroutine[Any, Any, None]


@dataclass
class ScaleOut:
    settings: Settings
    bus: InternalBus
    partitioner: Partitioner
    feed: PartitionFeed
    control: Control
    uplink: MqttTransport | None = None

    @property
    def ready(self) -> bool:
        """The internal links, and the shared uplink of a worker (what `/readyz` shows as broker)."""
        return self.bus.ready and (self.uplink is None or self.uplink.ready)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Downlink commands (sent by the API process)."""
        await self.bus.publish(topic, payload, retry=False)

    def jobs(self, pipeline: Pipeline, alarms: AlarmService, devices: DeviceService, pool: asyncpg.Pool,
             maintenance: Job) -> list[Job]:
        """This role's background jobs. Only the API process checkpoints device state and runs
        command deadlines: its fleet is the complete one."""
        jobs = [pipeline.run(), self.bus.run(), alarms.run(), maintenance]
        if self.uplink is not None:
            jobs += [self.uplink.run(),
                     follow_registry(pool, devices.fleet, self.settings.registry_refresh_s, devices.layers)]
        else:
            jobs += [devices.run(), self.control.publish_forever(self.bus, self.settings.topic(CONTROL_TOPIC))]
        return jobs

    async def forward_command_ack(self, device_id: str, body: dict[str, Any]) -> None:
        """A worker's command answers belong to the API process, which sent the command."""
        payload = json.dumps({"device_id": device_id, "body": body}, ensure_ascii=False).encode()
        await self.bus.publish(self.settings.topic(ACK_TOPIC), payload)


def scale_out(
    settings: Settings,
    broker: BrokerConfig,
    *,
    fleet: Fleet,
    alarms: AlarmService,
    commands: CommandService,
    clock: Clock,
) -> ScaleOut:
    root = settings.topic()
    feed = PartitionFeed(fleet, alarms.on_batch, clock=clock, dedupe_window_s=settings.dedupe_window_s)

    async def readings(_topic: str, payload: bytes) -> None:
        await feed.handle(payload)

    async def command_ack(_topic: str, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
            device_id, body = str(msg["device_id"]), dict(msg["body"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"forwarded command answer without {e}") from None
        await commands.on_ack(device_id, body)

    control = Control(fleet, alarms)
    own = str(settings.partition_index) if settings.role == "worker" else "+"
    follows = [
        Follow(f"p{own.replace('+', 'all')}-{lane}", internal_topic(root, own, lane), readings)
        for lane in ("evt", "tel")
    ]
    if settings.role == "api":
        follows.append(Follow("cmd-ack", settings.topic(ACK_TOPIC), command_ack))
        commands.on_muted, alarms.on_flapping_cleared = control.muted, control.flapping_cleared
        commands.on_noted = control.noted
    else:
        follows.append(Follow("ctl", settings.topic(CONTROL_TOPIC), control.apply))
    bus = InternalBus(broker, client_id=f"{settings.session_id()}-int", follows=follows,
                      max_inflight=settings.mqtt_max_inflight)
    return ScaleOut(settings, bus, Partitioner(fleet, settings.partitions, bus.publish, root), feed, control)
