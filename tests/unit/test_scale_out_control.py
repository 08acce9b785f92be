"""The scale-out control messages a worker applies to its own fleet: a confirmed mute, a cleared
flapping mark; devices it never heard of are skipped, unreadable messages refused."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from alerting.core import Correlator
from alerting.service import AlarmService
from devices.fleet import FLAPPING, Fleet
from devices.kinds import Kind
from miaoxiang.scaleout import Control


def control() -> tuple[Control, Fleet]:
    fleet = Fleet()
    fleet.upsert("S1", Kind.smoke)
    alarms = AlarmService.create(pool=None, fleet=fleet, correlator=Correlator(), clock=lambda: 0,  # type: ignore[arg-type]
                                 registry=CollectorRegistry())
    return Control(fleet, alarms), fleet


async def test_mute_and_flapping_clear_reach_the_workers_fleet() -> None:
    ctl, fleet = control()
    slot = fleet.slot("S1")
    await ctl.apply("t", json.dumps({"op": "mute", "device_id": "S1", "until_ms": 1_800_000_000_000}).encode())
    assert fleet.mute_until_ms[slot] == 1_800_000_000_000
    fleet.flags[slot] |= FLAPPING
    await ctl.apply("t", json.dumps({"op": "clear_flapping", "device_id": "S1"}).encode())
    assert not int(fleet.flags[slot]) & FLAPPING
    await ctl.apply("t", json.dumps({"op": "mute", "device_id": "elsewhere", "until_ms": 1}).encode())  # not ours


@pytest.mark.parametrize("payload", [b"{}", b"not json", b'{"op": "explode", "device_id": "S1"}'])
async def test_unreadable_control_messages_are_refused(payload: bytes) -> None:
    ctl, _ = control()
    with pytest.raises(ValueError):
        await ctl.apply("t", payload)


async def test_the_api_process_queues_what_it_changed_in_order() -> None:
    ctl, _ = control()
    ctl.muted("S1", 5)
    ctl.flapping_cleared("S1")
    assert [ctl.queue.get_nowait()["op"] for _ in range(2)] == ["mute", "clear_flapping"]
