"""Downlink command lifecycle through the real local Mosquitto and PostgreSQL: simulated devices
(aiomqtt) that answer, refuse or stay silent; retries, timeouts, late answers, side effects."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import asyncpg
import numpy as np
import pytest

from devices.commands import CommandService, InvalidCommand, validate_command
from devices.fleet import Fleet
from devices.kinds import Kind
from devices.registry import DeviceSpec
from devices.service import DeviceService
from tests.service import wait_for

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000


class ManualClock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class SimDevice:
    """A device on the broker: records every command it receives; answers through `answer`."""

    kind: str
    device_id: str
    answer: Callable[[dict[str, Any]], dict[str, Any] | None]
    received: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Broker:
    host: str
    port: int
    root: str
    publish_fails: bool = False



@pytest.fixture
def broker(mqtt_url: str, topic_prefix: str) -> Broker:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    return Broker(host, int(port), f"{topic_prefix}/default")


async def _device_loop(b: Broker, dev: SimDevice, subscribed: asyncio.Event) -> None:
    async with aiomqtt.Client(b.host, b.port) as client:
        await client.subscribe(f"{b.root}/down/{dev.kind}/{dev.device_id}", qos=1)
        subscribed.set()
        async for message in client.messages:
            command = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            dev.received.append(command)
            reply = dev.answer(command)
            if reply is not None:
                await client.publish(f"{b.root}/ack/{dev.kind}/{dev.device_id}", json.dumps(reply), qos=1)


async def _ack_loop(commands: CommandService, client: aiomqtt.Client) -> None:
    """What the MQTT transport does with `ack/{kind}/{device_id}`."""
    async for message in client.messages:
        device_id = str(message.topic).rsplit("/", 1)[1]
        await commands.on_ack(device_id, json.loads(bytes(message.payload)))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(
    b: Broker, pool: asyncpg.Pool, devices: list[SimDevice], clock: Callable[[], int], **kw: Any
) -> AsyncIterator[tuple[CommandService, Fleet]]:
    """A CommandService publishing through a real client, with the simulated devices online."""
    fleet = Fleet()
    async with aiomqtt.Client(b.host, b.port) as service_client, asyncio.TaskGroup() as tg:

        async def publish(topic: str, payload: bytes) -> None:
            if b.publish_fails:
                raise ConnectionError("MQTT broker not connected")
            await service_client.publish(topic, payload, qos=1)

        commands = CommandService(pool, fleet, publish, topic_root=b.root, clock=clock, **kw)
        svc = DeviceService(pool, fleet, commands, clock=clock)
        for dev in devices:
            await svc.register(DeviceSpec.parse({"device_id": dev.device_id, "kind": dev.kind}))
        await service_client.subscribe(f"{b.root}/ack/+/+", qos=1)
        tasks = [tg.create_task(_ack_loop(commands, service_client))]
        for dev in devices:
            ready = asyncio.Event()
            tasks.append(tg.create_task(_device_loop(b, dev, ready)))
            await asyncio.wait_for(ready.wait(), 5)
        try:
            yield commands, fleet
        finally:
            for t in tasks:
                t.cancel()


def ok(detail: str = "done") -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda c: {"cmd_id": c["cmd_id"], "ok": True, "detail": detail}


async def events(pool: asyncpg.Pool, cmd_id: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch("SELECT state, detail FROM command_events WHERE cmd_id = $1 ORDER BY id", cmd_id)
    return [(r["state"], r["detail"]) for r in rows]


async def state_of(pool: asyncpg.Pool, cmd_id: str) -> str:
    return await pool.fetchval("SELECT state FROM commands WHERE cmd_id = $1", cmd_id)


async def test_confirmed_mute_mutes_the_device_from_the_answer_time(pool: asyncpg.Pool, broker: Broker) -> None:
    clock = ManualClock()
    gas = SimDevice("gas", "g1", ok())
    async with running(broker, pool, [gas], clock) as (commands, fleet):
        sent = await commands.send("g1", Kind.gas, "mute", {"duration_s": 120}, timeout_s=None, actor="op1")
        assert (sent["state"], sent["timeout_s"], sent["attempts"], sent["actor"]) == ("sent", 60.0, 1, "op1")
        clock.now += 1500  # the answer comes 1.5 s later
        await wait_for(lambda: _is(state_of(pool, sent["cmd_id"]), "acked"), 5)
        assert gas.received == [{"cmd_id": sent["cmd_id"], "cmd": "mute", "params": {"duration_s": 120}, "ts": T0}]
        assert fleet.mute_until_ms[fleet.slot("g1")] == T0 + 1500 + 120_000
        assert await events(pool, sent["cmd_id"]) == [("sent", "attempt 1 of 3"), ("acked", "done")]
        assert commands.pending == {}
        assert await commands.expire() == 0


async def _is(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def test_confirmed_thresholds_reach_registry_and_fleet(pool: asyncpg.Pool, broker: Broker) -> None:
    clock = ManualClock()
    async with running(broker, pool, [SimDevice("gas", "g1", ok())], clock) as (commands, fleet):
        await pool.execute("""UPDATE devices SET thresholds = '{"gas_lel_critical_pct": 20}' WHERE device_id = 'g1'""")
        sent = await commands.send("g1", Kind.gas, "set_thresholds", {"thresholds": {"gas_lel_pct": 12}},
                                   timeout_s=5, actor="op1")
        await wait_for(lambda: _is(state_of(pool, sent["cmd_id"]), "acked"), 5)
        stored = json.loads(await pool.fetchval("SELECT thresholds FROM devices WHERE device_id = 'g1'"))
        assert stored == {"gas_lel_critical_pct": 20, "gas_lel_pct": 12}
        slot = fleet.slot("g1")
        assert fleet.thresholds["gas_lel_pct"][slot] == 12 and fleet.thresholds["gas_lel_critical_pct"][slot] == 20
        assert np.isnan(fleet.thresholds["arc_faults"][slot])


async def test_refused_command_fails_without_side_effects(pool: asyncpg.Pool, broker: Broker) -> None:
    clock = ManualClock()
    jammed = SimDevice("gas", "g2", lambda c: {"cmd_id": c["cmd_id"], "ok": False, "detail": "valve jammed"})
    async with running(broker, pool, [jammed], clock) as (commands, fleet):
        sent = await commands.send("g2", Kind.gas, "valve_close", {}, timeout_s=5, actor="op1")
        await wait_for(lambda: _is(state_of(pool, sent["cmd_id"]), "failed"), 5)
        assert await events(pool, sent["cmd_id"]) == [("sent", "attempt 1 of 3"), ("failed", "valve jammed")]
        mute = await commands.send("g2", Kind.gas, "mute", {}, timeout_s=5, actor="op1")
        await wait_for(lambda: _is(state_of(pool, mute["cmd_id"]), "failed"), 5)
        assert fleet.mute_until_ms[fleet.slot("g2")] == 0


async def test_silent_device_gets_retries_then_timeout_and_a_late_answer_still_counts(
    pool: asyncpg.Pool, broker: Broker
) -> None:
    clock = ManualClock()
    silent = SimDevice("smoke", "s1", lambda c: None)
    async with running(broker, pool, [silent], clock, timeout_s=60, retries=2) as (commands, fleet):
        sent = await commands.send("s1", Kind.smoke, "mute", {}, timeout_s=None, actor="op1")
        cmd_id = sent["cmd_id"]
        await wait_for(lambda: len(silent.received) == 1, 5)
        clock.now += 59_999
        assert await commands.expire() == 0
        for attempt in (2, 3):
            clock.now += 1
            assert await commands.expire() == 1
            await wait_for(lambda attempt=attempt: len(silent.received) == attempt, 5)
            assert await state_of(pool, cmd_id) == "sent"
            clock.now += 59_999
        clock.now += 1
        assert await commands.expire() == 1
        assert await state_of(pool, cmd_id) == "timeout"
        assert {c["cmd_id"] for c in silent.received} == {cmd_id}
        assert [c["ts"] for c in silent.received] == [T0, T0 + 60_000, T0 + 120_000]
        assert await pool.fetchval("SELECT attempts FROM commands WHERE cmd_id = $1", cmd_id) == 3

        # an NB-IoT device waking from PSM answers long after
        clock.now += 600_000
        late = {"cmd_id": cmd_id, "ok": True, "detail": "muted"}
        await commands.on_ack("s1", late)
        await commands.on_ack("s1", late)  # a QoS 1 redelivery changes nothing
        assert await events(pool, cmd_id) == [
            ("sent", "attempt 1 of 3"),
            ("sent", "no answer; attempt 2 of 3"),
            ("sent", "no answer; attempt 3 of 3"),
            ("timeout", "no answer to 3 attempts"),
            ("acked", "answered after timeout: muted"),
        ]
        assert fleet.mute_until_ms[fleet.slot("s1")] == clock.now + 600_000


async def test_answers_naming_another_device_or_no_command_are_ignored(pool: asyncpg.Pool, broker: Broker) -> None:
    clock = ManualClock()
    async with running(broker, pool, [SimDevice("smoke", "s1", lambda c: None)], clock) as (commands, _):
        sent = await commands.send("s1", Kind.smoke, "self_test", {}, timeout_s=None, actor="op1")
        await commands.on_ack("s2", {"cmd_id": sent["cmd_id"], "ok": True})
        await commands.on_ack("s1", {"cmd_id": "not-a-uuid", "ok": True})
        assert await state_of(pool, sent["cmd_id"]) == "sent"
        await commands.on_ack("s1", {"cmd_id": sent["cmd_id"]})  # no `ok: true` is a failure
        assert await events(pool, sent["cmd_id"]) == [("sent", "attempt 1 of 3"), ("failed", None)]


async def test_unpublished_attempt_is_recorded_and_retried(pool: asyncpg.Pool, broker: Broker) -> None:
    clock = ManualClock()
    gas = SimDevice("gas", "g1", ok())
    async with running(broker, pool, [gas], clock, timeout_s=10) as (commands, _):
        broker.publish_fails = True
        sent = await commands.send("g1", Kind.gas, "reboot", {}, timeout_s=None, actor="op1")
        broker.publish_fails = False
        clock.now += 10_000
        await commands.expire()
        await wait_for(lambda: _is(state_of(pool, sent["cmd_id"]), "acked"), 5)
        assert len(gas.received) == 1
        assert await events(pool, sent["cmd_id"]) == [
            ("sent", "attempt 1 of 3"),
            ("sent", "attempt 1 not published: MQTT broker not connected"),
            ("sent", "no answer; attempt 2 of 3"),
            ("acked", "done"),
        ]


async def test_pending_commands_are_resumed_after_a_restart(pool: asyncpg.Pool, broker: Broker) -> None:
    clock = ManualClock()
    silent = SimDevice("smoke", "s1", lambda c: None)
    async with running(broker, pool, [silent], clock, timeout_s=30, retries=0) as (commands, _):
        sent = await commands.send("s1", Kind.smoke, "reboot", {}, timeout_s=None, actor="op1")
    async with running(broker, pool, [silent], clock, timeout_s=30, retries=0) as (restarted, _):
        assert await restarted.load() == 1
        clock.now += 29_999
        assert await restarted.expire() == 0
        clock.now += 1
        assert await restarted.expire() == 1
        assert await state_of(pool, sent["cmd_id"]) == "timeout"


async def test_run_loop_times_out_with_real_time(pool: asyncpg.Pool, broker: Broker) -> None:
    def wall() -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    silent = SimDevice("smoke", "s1", lambda c: None)
    answering = SimDevice("electrical", "e1", ok("tripped"))
    async with running(broker, pool, [silent, answering], wall, timeout_s=0.2, retries=1) as (commands, fleet):
        svc = DeviceService(pool, fleet, commands, clock=wall, tick_s=0.05)
        loop = asyncio.create_task(svc.run())
        try:
            quiet = await commands.send("s1", Kind.smoke, "self_test", {}, timeout_s=None, actor="op1")
            trip = await commands.send("e1", Kind.electrical, "breaker_trip", {}, timeout_s=None, actor="op1")
            await wait_for(lambda: _is(state_of(pool, quiet["cmd_id"]), "timeout"), 5)
            assert await state_of(pool, trip["cmd_id"]) == "acked"
            assert len(silent.received) == 2
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop


@pytest.mark.parametrize(
    ("cmd", "params", "kind", "message"),
    [
        ("valve_close", {}, Kind.smoke, "valve_close applies to gas devices, not smoke"),
        ("breaker_trip", {}, Kind.gas, "breaker_trip applies to electrical devices, not gas"),
        ("explode", {}, Kind.gas, "unknown command 'explode'; commands are mute, self_test, reboot, set_thresholds, "
                                  "valve_close, valve_open, breaker_trip, breaker_close"),
        ("mute", {"duration_s": 0}, Kind.smoke, "duration_s must be a number of seconds above 0 and at most 86400"),
        ("set_thresholds", {}, Kind.gas,
         "set_thresholds needs params.thresholds, an object of threshold name -> number"),
        ("set_thresholds", {"thresholds": {"x": 1}}, Kind.gas, "unknown threshold 'x'; known: "),
    ],
)
def test_invalid_commands_are_refused(cmd: str, params: dict[str, Any], kind: Kind, message: str) -> None:
    with pytest.raises(InvalidCommand) as e:
        validate_command(cmd, params, kind)
    assert str(e.value).startswith(message)


def test_valid_commands_are_normalised() -> None:
    assert validate_command("mute", {}, Kind.smoke) == {"duration_s": 600}
    assert validate_command("set_thresholds", {"thresholds": {"gas_lel_pct": 9}}, Kind.gas) == {
        "thresholds": {"gas_lel_pct": 9.0}
    }
    assert validate_command("valve_open", {"vendor": 1}, Kind.gas) == {"vendor": 1}
