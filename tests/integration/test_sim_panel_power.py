"""The panel mains failure scenario through the simulator's GB/T 26875 sink and the real listener:
the panel's own status words arrive as the power events the scenario's ground truth is about."""

from __future__ import annotations

from devices.kinds import Event
from devices.reading import Reading
from ingest.transports.gb26875_tcp import GB26875Server
from simulators.clock import SimClock
from simulators.fleet import build_fleet
from simulators.publish import play, route_by_transport
from simulators.scenarios import SCENARIOS
from simulators.uitd_sink import BOTH_FAILED, UitdSink

T0 = 1_795_341_600_000


async def test_panel_mains_then_backup_failure_arrive_as_power_events() -> None:
    got: list[Reading] = []

    async def submit(readings: list[Reading]) -> None:
        got.extend(readings)

    async def dead_letter(raw: bytes, source: str, reason: str) -> None:
        raise AssertionError(f"dead letter: {reason}")

    server = GB26875Server(submit, dead_letter, host="127.0.0.1", port=0)
    await server.start()
    try:
        fleet = build_fleet(300, 7)
        sc = SCENARIOS["panel_mains_failure"](fleet, 7, T0)
        async with UitdSink(fleet, "127.0.0.1", server.port) as sink:
            stats = await play(sc.steps, route_by_transport(tcp=sink), clock=SimClock(T0))
    finally:
        await server.close()
    assert stats.sent == len(sc.messages()) and stats.failed == 0
    power = [r for r in got if r.event in (Event.power_fail, Event.power_restore)]
    sent = [m for m in sc.messages() if m.reading.event in (Event.power_fail, Event.power_restore)]
    assert [(r.device_id, r.event, r.ts_ms, r.component) for r in power] == [
        (m.reading.device_id, m.reading.event, m.at_ms, None) for m in sent
    ]
    codes = [r.extra.get("alarm_code") for r in power]
    assert codes[1] == BOTH_FAILED and codes[0] != BOTH_FAILED
    assert all(r.extra["system_type"] == 1 for r in power)
