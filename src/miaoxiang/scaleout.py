"""Wiring of one process of a scaled-out deployment (`partitions` > 1; docs/scale-out.md).

- `worker` (`partition_index` k): the uplink through `$share/{group}/`, decode, dedupe, store;
  each batch goes to the `Partitioner`; follows `internal/p/k/{evt,tel}` and correlates them.
  Command answers that reach it are forwarded to the API process.
- `api`: follows every partition (`internal/p/+/{evt,tel}`) to keep the complete fleet state,
  runs the fleet-wide duties (`FleetAlarms`), answers commands, serves the API; its own HTTP push
  and GB/T 26875 input also go through the `Partitioner`.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg

from alerting.partitioned import FleetAlarms, PartitionAlarms
from alerting.service import AlarmService
from devices.commands import CommandService
from devices.fleet import Fleet
from devices.registry_follow import follow_registry
from devices.service import DeviceService
from ingest.partition import Partitioner, PartitionFeed, internal_topic
from ingest.pipeline import Clock, Pipeline
from ingest.transports.internal import Follow, InternalBus
from ingest.transports.mqtt import BrokerConfig, MqttTransport
from miaoxiang.settings import Settings

ACK_TOPIC = "internal/cmd-ack"


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
            jobs += [self.uplink.run(), follow_registry(pool, devices.fleet, self.settings.registry_refresh_s)]
        else:
            jobs.append(devices.run())
        return jobs

    async def forward_command_ack(self, device_id: str, body: dict[str, Any]) -> None:
        """A worker's command answers belong to the API process, which sent the command."""
        payload = json.dumps({"device_id": device_id, "body": body}, ensure_ascii=False).encode()
        await self.bus.publish(self.settings.topic(ACK_TOPIC), payload)


def scale_out(
    settings: Settings, broker: BrokerConfig, *, fleet: Fleet, alarms: AlarmService, commands: CommandService, clock: Clock
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

    own = str(settings.partition_index) if settings.role == "worker" else "+"
    follows = [Follow(f"p{own.replace('+', 'all')}-{lane}", internal_topic(root, own, lane), readings) for lane in ("evt", "tel")]
    if settings.role == "api":
        follows.append(Follow("cmd-ack", settings.topic(ACK_TOPIC), command_ack))
    bus = InternalBus(broker, client_id=f"{settings.session_id()}-int", follows=follows,
                      max_inflight=settings.mqtt_max_inflight)
    return ScaleOut(settings, bus, Partitioner(fleet, settings.partitions, bus.publish, root), feed)
