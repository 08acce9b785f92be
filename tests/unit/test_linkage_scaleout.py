"""Scale-out: a trip, valve or port command the API process sends is noted in the workers' fleets
too (`Fleet.note_command`), so a `breaker_tripped` after a linkage trip raises nothing there."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from alerting.core import Correlator
from alerting.service import AlarmService
from devices.fleet import Fleet
from devices.kinds import Kind
from miaoxiang.scaleout import Control


async def test_noted_commands_reach_the_workers_fleet() -> None:
    fleet = Fleet()
    fleet.upsert("E1", Kind.electrical)
    alarms = AlarmService.create(pool=None, fleet=fleet, correlator=Correlator(), clock=lambda: 0,  # type: ignore[arg-type]
                                 registry=CollectorRegistry())
    ctl = Control(fleet, alarms)
    ctl.noted("E1", "breaker_trip", 1_800_000_000_000)
    message = ctl.queue.get_nowait()
    assert message == {"op": "note_command", "device_id": "E1", "cmd": "breaker_trip", "sent_ms": 1_800_000_000_000}
    await ctl.apply("t", json.dumps(message).encode())
    assert fleet.commanded("breaker_trip")[fleet.slot("E1")] == 1_800_000_000_000
    await ctl.apply("t", json.dumps({**message, "device_id": "elsewhere"}).encode())  # not this worker's
