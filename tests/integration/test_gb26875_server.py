"""The GB/T 26875.3 listener on a real TCP port, driven by the simulated transmission device.

The pipeline is stood in for by in-memory collectors (the composition root wires the real one);
everything else is real: sockets, framing, confirms, denies, requests and timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from devices.kinds import Event
from devices.reading import Reading
from ingest.codecs.gb26875 import Command, Frame, FrameReassembler, encode_frame
from ingest.codecs.gb26875_appdata import AppData, UitdStatus, UitdVersion, decode_app_data, encode_time
from ingest.transports.gb26875_tcp import GB26875Server, NotConnected, RequestTimeout, SessionClosed
from simulators.uitd import FIRE, UitdSimulator

ADDRESS = 889


@dataclass
class Gateway:
    server: GB26875Server = field(init=False)
    readings: list[Reading] = field(default_factory=list)
    dead: list[tuple[bytes, str, str]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def submit(self, readings: list[Reading]) -> None:
        await self.gate.wait()
        self.readings.extend(readings)

    async def dead_letter(self, raw: bytes, source: str, reason: str) -> None:
        self.dead.append((raw, source, reason))

    def events(self) -> list[tuple[Event, str | None]]:
        return [(r.event, r.component) for r in self.readings if r.event is not Event.report]

    def sim(self, address: int = ADDRESS, **kw: object) -> UitdSimulator:
        return UitdSimulator("127.0.0.1", self.server.port, address, centre=88888, seed=7, **kw)  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    gateway = Gateway()
    gateway.server = GB26875Server(gateway.submit, gateway.dead_letter, host="127.0.0.1", port=0)
    gateway.gate.set()
    await gateway.server.start()
    yield gateway
    await gateway.server.close()


async def test_a_played_incident_reaches_submit_and_every_frame_is_confirmed(gw: Gateway) -> None:
    async with gw.sim() as sim:
        truth = await sim.play()
    assert gw.events() == truth
    assert [t[0] for t in truth] == [
        Event.heartbeat, Event.alarm, Event.fault, Event.power_fail, Event.alarm_clear, Event.fault_clear,
        Event.power_restore,
    ]
    assert all(r.device_id == "uitd-889" for r in gw.readings)
    assert [c.serial for c in sim.confirms] == list(range(7))
    assert all((c.source, c.dest, c.command, c.data) == (88888, ADDRESS, Command.confirm, b"") for c in sim.confirms)
    assert gw.server.counters.confirmed == 7 and gw.server.counters.heartbeats == 1


async def test_the_confirm_waits_until_submit_has_taken_the_readings(gw: Gateway) -> None:
    gw.gate.clear()
    async with gw.sim() as sim:
        frame = sim.next_frame(sim.panel.change(0, sim.now(), set_bits=FIRE))
        answer = sim.expect_answer(frame.serial)
        await sim.write(encode_frame(frame))
        await asyncio.sleep(0.3)
        assert not answer.done() and gw.readings == []
        gw.gate.set()
        assert (await asyncio.wait_for(answer, 3)).command == Command.confirm
    assert gw.events() == [(Event.alarm, sim.panel.components[0].id)]


async def test_a_frame_split_in_three_writes_is_reassembled(gw: Gateway) -> None:
    async with gw.sim() as sim:
        answer = await sim.send(sim.panel.change(2, sim.now(), set_bits=FIRE), pieces=3)
    assert answer.command == Command.confirm
    assert gw.events() == [(Event.alarm, sim.panel.components[2].id)]


async def test_two_frames_in_one_write_are_both_confirmed(gw: Gateway) -> None:
    async with gw.sim() as sim:
        first = sim.next_frame(sim.panel.change(0, sim.now(), set_bits=FIRE))
        second = sim.next_frame(None)
        answers = [sim.expect_answer(first.serial), sim.expect_answer(second.serial)]
        await sim.write(b"GET / HTTP/1.0\r\n" + encode_frame(first) + encode_frame(second))
        got = await asyncio.wait_for(asyncio.gather(*answers), 3)
    assert [(a.serial, a.command) for a in got] == [(first.serial, Command.confirm), (second.serial, Command.confirm)]
    assert gw.events() == [(Event.alarm, sim.panel.components[0].id), (Event.heartbeat, None)]
    assert gw.server.counters.skipped_bytes == len(b"GET / HTTP/1.0\r\n")


async def test_a_bad_checksum_is_denied_and_dead_lettered_and_the_stream_stays_in_sync(gw: Gateway) -> None:
    async with gw.sim() as sim:
        frame = sim.next_frame(sim.panel.change(1, sim.now(), set_bits=FIRE))
        raw = bytearray(encode_frame(frame))
        raw[-3] ^= 0x55
        answer = sim.expect_answer(frame.serial)
        await sim.write(bytes(raw))
        deny = await asyncio.wait_for(answer, 3)
        assert (deny.command, deny.source, deny.dest) == (Command.deny, 88888, ADDRESS)
        assert (await sim.heartbeat()).command == Command.confirm
        local = sim._writer.get_extra_info("sockname")  # type: ignore[union-attr]
    [(dead_raw, source, reason)] = gw.dead
    assert dead_raw == bytes(raw) and source == f"tcp:127.0.0.1:{local[1]}" and "checksum" in reason
    assert gw.events() == [(Event.heartbeat, None)]
    assert (gw.server.counters.frames_bad, gw.server.counters.denied) == (1, 1)


async def test_undecodable_application_data_is_denied_and_dead_lettered(gw: Gateway) -> None:
    async with gw.sim() as sim:
        frame = Frame(sim.serial, (1, 0), sim.now(), ADDRESS, 88888, Command.send, b"\x02\x01\x00")
        answer = sim.expect_answer(frame.serial)
        await sim.write(encode_frame(frame))
        assert (await asyncio.wait_for(answer, 3)).command == Command.deny
    [(raw, _, reason)] = gw.dead
    assert raw == encode_frame(frame) and reason.startswith("application data: type 2 declares 1 objects")
    assert gw.readings == []


async def test_centre_requests_are_answered_and_matched_by_serial(gw: Gateway) -> None:
    async with gw.sim() as sim:
        await sim.heartbeat()
        await sim.power_fault(True)
        status, version = await asyncio.gather(
            gw.server.request(ADDRESS, 81, timeout=3), gw.server.request(ADDRESS, 85, timeout=3)
        )
        assert status.command == version.command == Command.response
        assert status.serial != version.serial
        [device_status] = decode_app_data(status.data).objects
        assert isinstance(device_status, UitdStatus) and device_status.status == 0x09  # normal + main power fault
        assert decode_app_data(version.data) == AppData(25, (UitdVersion(1, 2),))
        duty = await gw.server.request(ADDRESS, 91, b"\x0a", timeout=3)
        assert duty.command == Command.confirm and duty.serial == sim.centre_frames[-1].serial
        assert sim.centre_frames[-1].data == bytes.fromhex("5B 01 0A")
        await eventually(lambda: any("duty_check_answer" in r.extra.get("operations", ()) for r in gw.readings))
    assert [f.command for f in sim.centre_frames] == [Command.request, Command.request, Command.control]
    # the device's status response became readings too: its main power is still failed
    assert gw.events().count((Event.power_fail, None)) == 2


async def test_clock_sync_sends_the_centre_time_in_the_device_zone(gw: Gateway) -> None:
    gw.server.clock = lambda: datetime(2024, 5, 1, 4, 0, 0, tzinfo=UTC).timestamp()  # 12:00 in Shanghai
    async with gw.sim(clock=lambda: datetime(2020, 1, 1, 0, 0, 0)) as sim:
        await sim.heartbeat()
        answer = await gw.server.request(ADDRESS, 90, timeout=3)
        assert answer.command == Command.confirm
        sync = sim.centre_frames[-1]
        assert (sync.command, sync.data) == (Command.control, b"\x5a\x01" + encode_time(datetime(2024, 5, 1, 12, 0, 0)))
        assert sim.now() == datetime(2024, 5, 1, 12, 0, 0)


async def test_an_unanswered_request_is_resent_with_its_serial_then_times_out(gw: Gateway) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    heartbeat = Frame(0, (1, 0), None, 4242, 1, Command.send)
    writer.write(encode_frame(heartbeat))
    frames = FrameReassembler()
    first = frames.feed(await reader.read(1024))
    assert first[0].command == Command.confirm  # type: ignore[union-attr]
    with pytest.raises(RequestTimeout) as info:
        await gw.server.request(4242, 81, timeout=0.4, retries=3)
    assert (info.value.attempts, info.value.address, info.value.app_type) == (4, 4242, 81)
    received: list[Frame] = []
    while len(received) < 4:
        received += [f for f in frames.feed(await asyncio.wait_for(reader.read(1024), 2)) if isinstance(f, Frame)]
    assert len({encode_frame(f) for f in received}) == 1 and received[0].command == Command.request
    assert gw.server.counters.request_failures == 1
    writer.close()
    with pytest.raises(NotConnected):
        await gw.server.request(1, 81)


async def test_status_memory_survives_a_reconnect(gw: Gateway) -> None:
    async with gw.sim() as sim:
        await sim.fire(3)
    async with gw.sim() as again:
        assert (await again.clear(3)).command == Command.confirm
    component = sim.panel.components[3].id
    assert gw.events() == [(Event.alarm, component), (Event.alarm_clear, component)]


async def test_idle_timeout_closes_the_session(gw: Gateway) -> None:
    gw.server.idle_timeout_s = 0.3
    async with gw.sim() as sim:
        await sim.heartbeat()
        assert ADDRESS in gw.server.sessions
        await asyncio.wait_for(sim.closed.wait(), 3)
    await eventually(lambda: ADDRESS not in gw.server.sessions)
    assert gw.server.counters.idle_closed == 1


async def test_a_stalled_partial_frame_is_given_up_and_dead_lettered(gw: Gateway) -> None:
    gw.server.partial_timeout_s = 0.2
    async with gw.sim() as sim:
        frame = sim.next_frame(None)
        answer = sim.expect_answer(frame.serial)
        await sim.write(encode_frame(frame)[:20])
        await asyncio.sleep(0.5)
        assert gw.dead and "truncated" in gw.dead[0][2]
        assert not answer.done()  # too short to read its control unit, so nothing to deny
        assert (await sim.heartbeat()).command == Command.confirm



async def test_close_ends_blocked_connections_and_fails_pending_requests(gw: Gateway) -> None:
    _quiet_reader, quiet_writer = await asyncio.open_connection("127.0.0.1", gw.server.port)
    quiet_writer.write(encode_frame(Frame(0, (1, 0), None, 4242, 1, Command.send)))
    await eventually(lambda: 4242 in gw.server.sessions)
    pending = asyncio.create_task(gw.server.request(4242, 81, timeout=30))
    gw.gate.clear()  # the pipeline stops taking readings: the next frame blocks in submit
    async with gw.sim() as sim:
        frame = sim.next_frame(None)
        await sim.write(encode_frame(frame))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(gw.server.close(), 2)
        await asyncio.wait_for(sim.closed.wait(), 2)
    with pytest.raises(SessionClosed):
        await pending
    assert gw.server.sessions == {} and sim.confirms == []
    assert [r.device_id for r in gw.readings] == ["uitd-4242"]  # taken before the gate closed
    quiet_writer.close()
