"""The simulator's `tcp` sink against the real GB/T 26875.3 listener on a loopback port."""

from __future__ import annotations

from devices.kinds import Event
from devices.reading import Reading
from ingest.transports.gb26875_tcp import GB26875Server
from simulators.clock import SimClock
from simulators.fleet import build_fleet
from simulators.publish import play, route_by_transport
from simulators.scenarios import SCENARIOS
from simulators.uitd_sink import UitdSink

T0 = 1_795_341_600_000


async def test_panel_fire_steps_arrive_as_the_scenario_wrote_them() -> None:
    got: list[Reading] = []

    async def submit(readings: list[Reading]) -> None:
        got.extend(readings)

    async def dead_letter(raw: bytes, source: str, reason: str) -> None:
        raise AssertionError(f"dead letter: {reason}")

    server = GB26875Server(submit, dead_letter, host="127.0.0.1", port=0)
    await server.start()
    try:
        fleet = build_fleet(300, 7)
        sc = SCENARIOS["panel_fire"](fleet, 7, T0)
        async with UitdSink(fleet, "127.0.0.1", server.port) as sink:
            stats = await play(sc.steps, route_by_transport(tcp=sink), clock=SimClock(T0))
    finally:
        await server.close()
    sent = sc.messages()
    assert stats.sent == len(sent) == 3 and stats.failed == 0
    assert [(r.device_id, r.event, r.component, r.ts_ms) for r in got if r.event is not Event.report] == [
        (m.reading.device_id, m.reading.event, m.reading.component, m.at_ms) for m in sent
    ]
