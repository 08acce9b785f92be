"""The GB/T 26875.3 listener under hostile or broken peers, on real sockets (docs/gb26875.md,
"Hardening"): session hijacks, garbage floods, dribbled frames, idle and surplus connections,
and malformed answers to the centre's requests.

Peers at other addresses connect from other loopback addresses (127.0.0.2, ...), which Linux
routes to the same interface."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator

import pytest

from devices.kinds import Event
from ingest.codecs.gb26875 import Command, Frame, FrameReassembler, encode_frame
from ingest.transports.gb26875_tcp import BadAnswer, GB26875Server
from miaoxiang.settings import Settings
from tests.integration.test_gb26875_server import ADDRESS, Gateway, eventually
from tests.service import running_service, wait_for

CENTRE = 88888


@pytest.fixture
async def gw() -> AsyncIterator[Gateway]:
    gateway = Gateway()
    gateway.server = GB26875Server(gateway.submit, gateway.dead_letter, host="127.0.0.1", port=0)
    gateway.gate.set()
    await gateway.server.start()
    yield gateway
    await gateway.server.close()


class RawPeer:
    """A hand-driven TCP peer from a chosen source address."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames = FrameReassembler()

    @classmethod
    async def connect(cls, port: int, source: str = "127.0.0.1") -> RawPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)))

    @property
    def peer(self) -> str:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return f"tcp:{host}:{port}"

    async def send(self, frame: Frame) -> None:
        self.writer.write(encode_frame(frame))
        await self.writer.drain()

    async def heartbeat(self, address: int = ADDRESS, serial: int = 0) -> Frame:
        await self.send(Frame(serial, (1, 0), None, address, CENTRE, Command.send))
        return await self.next_frame()

    async def next_frame(self, timeout: float = 3.0) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await self.reader.read(4096)
                assert chunk, "the listener closed the connection"
                if frames := [f for f in self.frames.feed(chunk) if isinstance(f, Frame)]:
                    return frames[0]

    async def until_closed(self, timeout: float = 3.0) -> bytes:
        """Everything the listener sends until it closes the connection (fails after `timeout`);
        a close with our bytes unread arrives as a reset."""
        data = b""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionResetError):
                while chunk := await self.reader.read(4096):
                    data += chunk
        return data

    def close(self) -> None:
        self.writer.close()


def tampers(gw: Gateway) -> list[dict[str, object]]:
    return [r.extra for r in gw.readings if r.event is Event.tamper and r.device_id == f"uitd-{ADDRESS}"]


async def test_a_second_peer_claiming_a_live_device_is_refused_and_raises_tamper(gw: Gateway) -> None:
    async with gw.sim() as sim:
        await sim.heartbeat()
        intruder = await RawPeer.connect(gw.server.port, "127.0.0.2")
        await intruder.send(Frame(0, (1, 0), None, ADDRESS, CENTRE, Command.send))
        assert await intruder.until_closed() == b""  # no confirm: the new connection is closed
        assert not sim.closed.is_set()
        status = await gw.server.request(ADDRESS, 81, timeout=3)  # the centre still reaches the real device
        assert status.command == Command.response and sim.centre_frames[-1].data[:1] == b"\x51"
        assert (await sim.heartbeat()).command == Command.confirm
    [tamper] = tampers(gw)
    assert tamper["takeover"] == "refused" and tamper["peer"] == intruder.peer
    assert gw.server.counters.takeovers_refused == 1 and gw.server.counters.takeovers_accepted == 0
    [(raw, source, reason)] = gw.dead
    assert source == intruder.peer and "takeover refused" in reason and raw[:2] == b"@@"


async def test_a_reconnect_from_the_same_address_takes_the_session_over(gw: Gateway) -> None:
    async with gw.sim() as first:
        await first.heartbeat()
        async with gw.sim() as second:
            assert (await second.heartbeat()).command == Command.confirm
            await asyncio.wait_for(first.closed.wait(), 3)
            assert (await gw.server.request(ADDRESS, 81, timeout=3)).command == Command.response
            assert second.centre_frames and not first.centre_frames
    [tamper] = tampers(gw)
    assert tamper["takeover"] == "accepted"
    assert gw.server.counters.takeovers_accepted == 1


async def test_another_address_takes_over_a_session_silent_past_its_allowance(gw: Gateway) -> None:
    gw.server.takeover_silence_s = 0.3
    async with gw.sim() as sim:
        await sim.heartbeat()
        await asyncio.sleep(0.4)
        moved = await RawPeer.connect(gw.server.port, "127.0.0.2")
        assert (await moved.heartbeat()).command == Command.confirm
        await asyncio.wait_for(sim.closed.wait(), 3)
        assert gw.server.sessions[ADDRESS].conn.peer == moved.peer
        moved.close()
    [tamper] = tampers(gw)
    assert tamper["takeover"] == "accepted" and tamper["peer"] == moved.peer


async def test_a_flood_of_at_signs_is_one_dead_letter_per_burst_and_never_denied(gw: Gateway) -> None:
    peer = await RawPeer.connect(gw.server.port)
    peer.writer.write(b"@" * 4096 + encode_frame(Frame(7, (1, 0), None, ADDRESS, CENTRE, Command.send)))
    confirm = await peer.next_frame()
    assert (confirm.command, confirm.serial) == (Command.confirm, 7)  # the stream finds the frame behind it
    peer.writer.write(b"@" * 4096)
    await peer.writer.drain()
    await asyncio.sleep(0.2)
    peer.writer.write_eof()
    rest = await peer.until_closed()
    await eventually(lambda: len(gw.dead) >= 2)
    await asyncio.sleep(0.1)
    assert [f.command for f in peer.frames.feed(rest) if isinstance(f, Frame)] == []  # no deny, nothing else
    assert [(len(raw), reason) for raw, _, reason in gw.dead] == [
        (2048, "4096 bytes that belong to no frame, the first 2048 kept"),
        (2048, "4096 bytes that belong to no frame, the first 2048 kept"),
    ]
    assert gw.server.counters.denied == 0 and gw.server.counters.garbage_bursts == 2


async def test_a_dribbled_frame_is_cut_off_at_the_frame_deadline(gw: Gateway) -> None:
    gw.server.frame_deadline_s = 0.5
    peer = await RawPeer.connect(gw.server.port)
    assert (await peer.heartbeat()).command == Command.confirm
    frame = encode_frame(Frame(1, (1, 0), None, ADDRESS, CENTRE, Command.send))

    async def dribble() -> None:
        for i in range(len(frame)):
            peer.writer.write(frame[i : i + 1])
            await asyncio.sleep(0.05)  # far below the 5 s stall limit, 1.5 s for the whole frame

    dribbler = asyncio.create_task(dribble())
    try:
        assert await peer.until_closed(timeout=1.2) == b""  # closed before the frame completed, no confirm
    finally:
        dribbler.cancel()
    [(raw, _, reason)] = gw.dead
    assert reason.startswith("frame not completed within 0.5 s") and frame.startswith(raw) and len(raw) < len(frame)
    assert gw.server.counters.frame_deadline_closed == 1 and ADDRESS not in gw.server.sessions


async def test_a_connection_without_a_valid_frame_is_closed_at_the_presession_timeout(gw: Gateway) -> None:
    gw.server.presession_timeout_s = 0.3
    async with gw.sim() as sim:
        await sim.heartbeat()
        idle = await RawPeer.connect(gw.server.port, "127.0.0.2")
        assert await idle.until_closed(timeout=1.5) == b""
        assert not sim.closed.is_set()  # a device with a session is not subject to it
        assert (await sim.heartbeat()).command == Command.confirm
    assert gw.server.counters.presession_closed == 1


async def test_connections_of_one_address_without_a_session_are_capped(gw: Gateway) -> None:
    gw.server.max_presession_per_peer = 3
    idle = [await RawPeer.connect(gw.server.port, "127.0.0.3") for _ in range(3)]
    await eventually(lambda: gw.server.counters.connections == 3)
    surplus = await RawPeer.connect(gw.server.port, "127.0.0.3")
    await surplus.send(Frame(0, (1, 0), None, 1003, CENTRE, Command.send))
    assert await surplus.until_closed() == b""
    other = await RawPeer.connect(gw.server.port, "127.0.0.4")  # another address is not affected
    assert (await other.heartbeat(address=1004)).command == Command.confirm
    assert (await idle[0].heartbeat(address=1000)).command == Command.confirm  # a session: no longer counted
    devices = []
    for n in range(10):  # many devices behind one address (NAT), each opening its session in turn
        devices.append(await RawPeer.connect(gw.server.port, "127.0.0.3"))
        assert (await devices[-1].heartbeat(address=1100 + n)).command == Command.confirm
    assert gw.server.counters.refused_peer_cap == 1 and len(gw.server.sessions) == 12
    for p in [*idle, surplus, other, *devices]:
        p.close()


async def test_connections_over_the_global_cap_are_closed_at_accept(gw: Gateway) -> None:
    gw.server.max_connections = 2
    peers = [await RawPeer.connect(gw.server.port, f"127.0.0.{5 + n}") for n in range(2)]
    for n, p in enumerate(peers):
        assert (await p.heartbeat(address=2000 + n)).command == Command.confirm
    surplus = await RawPeer.connect(gw.server.port, "127.0.0.7")
    await surplus.send(Frame(0, (1, 0), None, 2002, CENTRE, Command.send))
    assert await surplus.until_closed() == b""
    assert gw.server.counters.refused_cap == 1
    for p in peers:
        p.close()


async def test_peers_outside_the_allow_list_are_closed_at_accept(gw: Gateway) -> None:
    gw.server.allow_peers = (ipaddress.ip_network("127.0.0.0/31"),)
    outsider = await RawPeer.connect(gw.server.port, "127.0.0.2")
    await outsider.send(Frame(0, (1, 0), None, ADDRESS, CENTRE, Command.send))
    assert await outsider.until_closed() == b""
    insider = await RawPeer.connect(gw.server.port, "127.0.0.1")
    assert (await insider.heartbeat()).command == Command.confirm
    insider.close()
    assert gw.server.counters.refused_not_allowed == 1 and gw.readings[0].device_id == f"uitd-{ADDRESS}"


async def answer_the_next_request_with(peer: RawPeer, data: bytes) -> Frame:
    """Act as a device whose response to the centre's request carries `data`."""
    request = await peer.next_frame()
    assert request.command == Command.request
    await peer.send(Frame(request.serial, (1, 0), None, ADDRESS, request.source, Command.response, data))
    return request


@pytest.mark.parametrize(("data", "problem"), [
    (b"\x15\x02\x01", "does not decode"),  # type 21 declares 2 objects of 7 bytes, carries 1
    (bytes.fromhex("19 01 01 02"), "type 25 instead of 21"),  # a version where the status was asked
])
async def test_a_malformed_answer_to_a_request_fails_it_at_once(gw: Gateway, data: bytes, problem: str) -> None:
    peer = await RawPeer.connect(gw.server.port)
    await peer.heartbeat()
    request = asyncio.create_task(gw.server.request(ADDRESS, 81, timeout=5))
    await answer_the_next_request_with(peer, data)
    with pytest.raises(BadAnswer) as info:
        await asyncio.wait_for(request, 2)  # not after the 5 s of resends
    assert problem in str(info.value) and info.value.address == ADDRESS
    assert gw.server.counters.request_failures == 1
    peer.close()


@pytest.mark.integration
async def test_the_api_answers_502_to_a_malformed_answer(settings: Settings) -> None:
    """Through the running service, whose listener takes its limits from the settings."""
    settings = settings.model_copy(update={"gb26875_max_presession_per_peer": 1})
    async with running_service(settings) as svc:
        listener = svc.app.state.services.gb26875
        peer = await RawPeer.connect(listener.port)
        assert (await peer.heartbeat()).command == Command.confirm
        url = f"/api/v1/uitd/uitd-{ADDRESS}/requests"
        body = {"request": "read_status", "timeout_s": 5}
        call = asyncio.create_task(svc.http.post(url, json=body, headers=svc.auth()))
        await answer_the_next_request_with(peer, b"\x15\x02\x01")
        response = await asyncio.wait_for(call, 4)
        waiting = await RawPeer.connect(listener.port)  # no session yet: the one place for 127.0.0.1
        await wait_for(lambda: listener.counters.connections == 2)
        surplus = await RawPeer.connect(listener.port)
        assert await surplus.until_closed() == b"" and listener.counters.refused_peer_cap == 1
        waiting.close()
        peer.close()
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert detail.startswith("设备的应答无法解读") and "malformed" in detail and "does not decode" in detail


@pytest.mark.integration
async def test_a_refused_hijack_becomes_a_tamper_alarm_of_the_device(settings: Settings) -> None:
    """The takeover's `tamper` reading goes through the pipeline into the alarm lifecycle."""
    async with running_service(settings) as svc:
        device = {"device_id": f"uitd-{ADDRESS}", "kind": "uitd"}
        assert (await svc.http.post("/api/v1/devices", json=device, headers=svc.auth())).status_code in (200, 201)
        port = svc.app.state.services.gb26875.port
        real = await RawPeer.connect(port)
        assert (await real.heartbeat()).command == Command.confirm
        intruder = await RawPeer.connect(port, "127.0.0.2")
        await intruder.send(Frame(0, (1, 0), None, ADDRESS, CENTRE, Command.send))
        assert await intruder.until_closed() == b""

        async def tamper_alarms() -> list[dict[str, object]]:
            items = (await svc.http.get("/api/v1/alarms", headers=svc.auth())).json()["items"]
            return [a for a in items if a["type"] == "tamper" and a["device_ids"] == [f"uitd-{ADDRESS}"]]

        assert await wait_for(tamper_alarms, timeout=5)
        assert (await real.heartbeat(serial=1)).command == Command.confirm  # the real device kept its session
        metrics = (await svc.http.get("/metrics")).text
        real.close()
    assert "mx_gb26875_takeovers_refused_total 1.0" in metrics
