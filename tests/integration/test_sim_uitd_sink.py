"""The simulator's `tcp` sink against the real GB/T 26875.3 listener on a loopback port: scenarios'
steps arrive as the scenarios wrote them, the panel's own power status words as power events."""

from __future__ import annotations

from devices.kinds import Event
from devices.reading import Reading
from ingest.transports.gb26875_tcp import GB26875Server
from simulators.clock import SimClock
from simulators.fleet import build_fleet
from simulators.publish import PlayStats, play, route_by_transport
from simulators.scenarios import SCENARIOS, Scenario
from simulators.uitd_sink import BOTH_FAILED, UitdSink

T0 = 1_795_341_600_000


async def _played(name: str) -> tuple[Scenario, PlayStats, list[Reading]]:
    """Scenario `name` (300 devices, seed 7) played through the sink; what the listener submitted."""
    got: list[Reading] = []

    async def submit(readings: list[Reading]) -> None:
        got.extend(readings)

    async def dead_letter(raw: bytes, source: str, reason: str) -> None:
        raise AssertionError(f"dead letter: {reason}")

    server = GB26875Server(submit, dead_letter, host="127.0.0.1", port=0)
    await server.start()
    try:
        fleet = build_fleet(300, 7)
        sc = SCENARIOS[name](fleet, 7, T0)
        async with UitdSink(fleet, "127.0.0.1", server.port) as sink:
            stats = await play(sc.steps, route_by_transport(tcp=sink), clock=SimClock(T0))
    finally:
        await server.close()
    return sc, stats, got


async def test_panel_fire_steps_arrive_as_the_scenario_wrote_them() -> None:
    sc, stats, got = await _played("panel_fire")
    sent = sc.messages()
    assert stats.sent == len(sent) == 3 and stats.failed == 0
    assert [(r.device_id, r.event, r.component, r.ts_ms) for r in got if r.event is not Event.report] == [
        (m.reading.device_id, m.reading.event, m.reading.component, m.at_ms) for m in sent
    ]


async def test_panel_mains_then_backup_failure_arrive_as_power_events() -> None:
    sc, stats, got = await _played("panel_mains_failure")
    assert stats.sent == len(sc.messages()) and stats.failed == 0
    power = [r for r in got if r.event in (Event.power_fail, Event.power_restore)]
    sent = [m for m in sc.messages() if m.reading.event in (Event.power_fail, Event.power_restore)]
    assert [(r.device_id, r.event, r.ts_ms, r.component) for r in power] == [
        (m.reading.device_id, m.reading.event, m.at_ms, None) for m in sent
    ]
    codes = [r.extra.get("alarm_code") for r in power]
    assert codes[1] == BOTH_FAILED and codes[0] != BOTH_FAILED
    assert all(r.extra["system_type"] == 1 for r in power)
