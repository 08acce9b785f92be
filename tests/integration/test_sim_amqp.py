"""`miaoxiang simulate --amqp-url`'s pieces against a second RabbitMQ node and the real service: the
simulator creates an `iotda_amqp` source and waits for its consumer; OneNET smoke detectors' steps
go into the queue as IoTDA reports (other kinds to the fallback sink) and are stored once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devices.kinds import Event, Kind
from devices.reading import Reading
from miaoxiang.settings import Settings
from simulators.publish import AmqpPublisher
from simulators.scenarios import Step
from simulators.session import amqp_stream, configure_amqp_source
from tests.integration.rabbitkit import RabbitNode, iotda_config, rabbit_node
from tests.service import running_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
T0 = 1_795_341_600_000


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RabbitNode]:
    with rabbit_node(tmp_path / "rabbit") as n:
        yield n


class Recorder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def send(self, step: Step) -> int:
        self.steps.append(step)
        return 1

    async def flush(self) -> int:
        return 0


def step(device: str, kind: Kind, seq: int, event: Event = Event.report) -> Step:
    ts = T0 + seq * 1000
    metric = {"battery_pct": 70} if kind is Kind.smoke else {"gas_lel_pct": 1.0}
    return Step(ts, Reading(device, kind, event, ts, ts, metrics=metric), "tel", "http")


async def test_simulated_onenet_smoke_detectors_report_through_an_iotda_amqp_queue(
    settings: Settings, node: RabbitNode, database_url: str
) -> None:
    node.declare_queue("sim")
    async with running_service(settings) as svc:
        svc.http.headers.update(svc.auth())  # as the simulator's client
        await configure_amqp_source(svc.http, "t1", iotda_config(node, "sim"))  # returns once connected
        fallback = Recorder()
        steps = [step(f"8681203000{d:05d}", Kind.smoke, seq, Event.alarm if seq == 5 else Event.report)
                 for seq in range(10) for d in range(20)]
        async with amqp_stream(node.publisher_url("sim")) as stream:
            publisher = AmqpPublisher(stream, fallback)
            sent = [await publisher.send(s) for s in steps]
            gas = step("gas-1", Kind.gas, 1)
            await publisher.send(gas)
            await publisher.flush()
        assert sum(sent) == 200 and fallback.steps == [gas]

        async def stored() -> int:
            conn = await asyncpg.connect(database_url)
            try:
                return int(await conn.fetchval("SELECT count(DISTINCT (device_id, ts)) FROM readings"))
            finally:
                await conn.close()

        await wait_for(lambda: _at_least(stored, 200), timeout=60, interval=0.2)
        await asyncio.sleep(1)
        assert await stored() == 200
        conn = await asyncpg.connect(database_url)
        try:
            alarms = await conn.fetchval("SELECT count(*) FROM readings WHERE event = 'alarm'")
        finally:
            await conn.close()
        assert alarms == 20
    assert node.depth("sim") == (0, 0)


async def _at_least(count, n: int) -> bool:  # type: ignore[no-untyped-def]
    return bool(await count() >= n)
