"""A simulated user information transmission device (用户信息传输装置) relaying a fire-alarm panel
over GB/T 26875.3 TCP.

`PanelModel` is the pure, seeded panel: components with types, addresses, descriptions and status
words; its methods return the application data a device sends when something changes.
`UitdSimulator` holds the TCP session: it sends that traffic and waits for the centre's confirm,
records every confirm and deny, and answers the centre's requests (status reads, version, clock,
initialisation, clock sync and duty check 查岗) the way the standard describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from zoneinfo import ZoneInfo

from devices.kinds import Event
from ingest.codecs.errors import DecodeError
from ingest.codecs.gb26875 import BadFrame, Command, Frame, FrameReassembler, component_id, encode_frame, reply
from ingest.codecs.gb26875_appdata import (
    DESCRIPTION_LEN,
    DUTY_CHECK,
    AppData,
    ClockSync,
    ComponentRef,
    ComponentStatus,
    DutyCheck,
    SystemRef,
    SystemStatus,
    UitdConfig,
    UitdOperation,
    UitdOperationQuery,
    UitdStatus,
    UitdTime,
    UitdVersion,
    decode_app_data,
    encode_app_data,
)

NORMAL, FIRE, FAULT, POWER_FAULT = 1 << 0, 1 << 1, 1 << 2, 1 << 8
#: A panel's own status (type 1): main and backup power faults (GB/T 26875.3 §8.2.1.1 bits 8, 9).
PANEL_MAIN_POWER_FAULT, PANEL_BACKUP_POWER_FAULT = 1 << 8, 1 << 9
UITD_MAIN_POWER_FAULT = 1 << 3
DUTY_CHECK_ANSWER = 1 << 5
_KINDS = ((42, "光电感烟"), (31, "感温"), (23, "手动报警按钮"), (24, "消火栓按钮"), (85, "输入模块"))
_PLACES = ("大厅", "走廊", "楼梯间", "配电室", "办公室", "库房", "地下车库")
Truth = tuple[Event, str | None]


@dataclass(frozen=True, slots=True)
class PanelComponent:
    system_type: int
    system_addr: int
    component_type: int
    component_addr: int
    description: str

    @property
    def id(self) -> str:
        return component_id(self.system_type, self.system_addr, self.component_addr)


class PanelModel:
    """A fire-alarm panel (system type 1, address 1) with `components` seeded components."""

    def __init__(self, seed: int = 0, components: int = 8) -> None:
        self.rng = random.Random(seed)
        points = self.rng.sample(range(1, 250), components)
        self.components: list[PanelComponent] = []
        for point in points:
            zone = self.rng.randint(1, 9)
            ctype, label = self.rng.choice(_KINDS)
            text = f"{zone}区{self.rng.randint(1, 30)}层{self.rng.choice(_PLACES)}{label}{point}号"
            self.components.append(PanelComponent(1, 1, ctype, zone | point << 16, clip_description(text)))
        self.status = {c.id: NORMAL for c in self.components}
        self.uitd_status = NORMAL
        self.panel_power = 0  # the panel's power fault bits
        self.operations: list[UitdOperation] = []

    def change(self, index: int, at: datetime, *, set_bits: int = 0, clear_bits: int = 0) -> AppData:
        """Set and clear status bits of one component; the type-2 data reporting it."""
        c = self.components[index]
        self.status[c.id] = (self.status[c.id] | set_bits) & ~clear_bits
        return AppData(2, (self.component_status(c, at),))

    def component_status(self, c: PanelComponent, at: datetime) -> ComponentStatus:
        return ComponentStatus(
            c.system_type, c.system_addr, c.component_type, c.component_addr, self.status[c.id], c.description, at
        )

    def system_status(self, at: datetime) -> SystemStatus:
        """The panel's status: normal, its power faults, and the fire and fault bits of any component."""
        bits = self.panel_power
        for status in self.status.values():
            bits |= status & (FIRE | FAULT)
        return SystemStatus(1, 1, NORMAL | bits, at)

    def power(self, at: datetime, *, main_failed: bool, backup_failed: bool) -> AppData:
        """The panel's status (type 1) with its main and backup power failed or restored."""
        self.panel_power = (PANEL_MAIN_POWER_FAULT if main_failed else 0) | (
            PANEL_BACKUP_POWER_FAULT if backup_failed else 0)
        return AppData(1, (self.system_status(at),))

    def device(self, at: datetime, *, main_power_fault: bool) -> AppData:
        """The device's own status (type 21) with its main power failed or restored."""
        self.uitd_status = NORMAL | (UITD_MAIN_POWER_FAULT if main_power_fault else 0)
        return AppData(21, (UitdStatus(self.uitd_status, at),))

    def duty_check_answer(self, at: datetime) -> AppData:
        op = UitdOperation(DUTY_CHECK_ANSWER, 1, at)
        self.operations.append(op)
        return AppData(24, (op,))

    def reset(self) -> None:
        self.status = dict.fromkeys(self.status, NORMAL)
        self.uitd_status = NORMAL
        self.panel_power = 0


def clip_description(text: str) -> str:
    """The longest prefix of `text` that fits the 31-byte GB 18030 description field."""
    while len(text.encode("gb18030")) > DESCRIPTION_LEN:
        text = text[:-1]
    return text


def local_clock(tz: str = "Asia/Shanghai") -> Callable[[], datetime]:
    zone = ZoneInfo(tz)
    return lambda: datetime.now(zone).replace(tzinfo=None, microsecond=0)


class UitdSimulator:
    """One device on one TCP connection. Use `async with UitdSimulator(...) as sim:`."""

    def __init__(
        self,
        host: str,
        port: int,
        address: int,
        *,
        centre: int = 0,
        seed: int = 0,
        components: int = 8,
        clock: Callable[[], datetime] | None = None,
        answer_duty_check: bool = True,
        version: tuple[int, int] = (1, 0),
    ) -> None:
        self.host, self.port, self.address, self.centre = host, port, address, centre
        self.panel = PanelModel(seed, components)
        self.clock = clock or local_clock()
        self.clock_offset = timedelta()
        self.answer_duty_check = answer_duty_check
        self.version = version
        self.serial = 0
        self.confirms: list[Frame] = []
        self.denies: list[Frame] = []
        self.centre_frames: list[Frame] = []  # requests and control commands received
        self._waiters: dict[int, asyncio.Future[Frame]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> UitdSimulator:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def now(self) -> datetime:
        return self.clock() + self.clock_offset

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._task = asyncio.create_task(self._read_centre())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()

    # --- sending -----------------------------------------------------------------------------

    def next_frame(self, app: AppData | None) -> Frame:
        """The next `send` frame (a heartbeat when `app` is None), numbered by this device."""
        data = encode_app_data(app) if app is not None else b""
        frame = Frame(self.serial, self.version, self.now(), self.address, self.centre, Command.send, data)
        self.serial = (self.serial + 1) & 0xFFFF
        return frame

    async def write(self, data: bytes, pieces: int = 1, pause_s: float = 0.05) -> None:
        """Write bytes, in `pieces` writes `pause_s` apart (so the centre reads them separately)."""
        assert self._writer is not None, "connect first"
        step = max(1, -(-len(data) // pieces))
        for i in range(0, len(data), step):
            if i:
                await asyncio.sleep(pause_s)
            self._writer.write(data[i : i + step])
            await self._writer.drain()

    def expect_answer(self, serial: int) -> asyncio.Future[Frame]:
        """A future for the centre's confirm or deny of the frame with `serial`."""
        waiter = self._waiters[serial] = asyncio.get_running_loop().create_future()
        return waiter

    async def send(self, app: AppData | None, *, pieces: int = 1, timeout: float = 5.0) -> Frame:
        """Send one frame and return the centre's answer to it (confirm or deny)."""
        frame = self.next_frame(app)
        answer = self.expect_answer(frame.serial)
        await self.write(encode_frame(frame), pieces)
        return await asyncio.wait_for(answer, timeout)

    async def heartbeat(self) -> Frame:
        return await self.send(None)

    async def fire(self, index: int) -> Frame:
        return await self.send(self.panel.change(index, self.now(), set_bits=FIRE))

    async def fault(self, index: int) -> Frame:
        return await self.send(self.panel.change(index, self.now(), set_bits=FAULT))

    async def clear(self, index: int) -> Frame:
        """The component back to normal (fire, fault and power fault cleared)."""
        return await self.send(self.panel.change(index, self.now(), clear_bits=FIRE | FAULT | POWER_FAULT))

    async def power_fault(self, failed: bool = True) -> Frame:
        """The device's main power failing (or restored)."""
        return await self.send(self.panel.device(self.now(), main_power_fault=failed))

    async def panel_power(self, *, main_failed: bool, backup_failed: bool = False) -> Frame:
        """The fire panel's mains (and backup battery) failing or restored: its system status."""
        return await self.send(self.panel.power(self.now(), main_failed=main_failed, backup_failed=backup_failed))

    async def play(self) -> list[Truth]:
        """A seeded incident: heartbeat, a fire at one component, a fault at another, a main
        power failure, then everything clearing. Returns the canonical events (with their
        component) the centre must derive, in order; raises if the centre denies any frame."""
        fire_at, fault_at = self.panel.rng.sample(range(len(self.panel.components)), 2)
        fire_id, fault_id = self.panel.components[fire_at].id, self.panel.components[fault_at].id
        steps: list[tuple[Callable[[], Awaitable[Frame]], Truth]] = [
            (self.heartbeat, (Event.heartbeat, None)),
            (lambda: self.fire(fire_at), (Event.alarm, fire_id)),
            (lambda: self.fault(fault_at), (Event.fault, fault_id)),
            (lambda: self.power_fault(True), (Event.power_fail, None)),
            (lambda: self.clear(fire_at), (Event.alarm_clear, fire_id)),
            (lambda: self.clear(fault_at), (Event.fault_clear, fault_id)),
            (lambda: self.power_fault(False), (Event.power_restore, None)),
        ]
        truth: list[Truth] = []
        for step, expected in steps:
            answer = await step()
            if answer.command != Command.confirm:
                raise RuntimeError(f"centre answered {answer.command} to {expected}")
            truth.append(expected)
        return truth

    # --- the centre's frames -----------------------------------------------------------------

    async def _read_centre(self) -> None:
        assert self._reader is not None
        frames = FrameReassembler()
        try:
            while chunk := await self._reader.read(65536):
                for item in frames.feed(chunk):
                    if not isinstance(item, BadFrame):
                        await self._on_centre_frame(item)
        except ConnectionError:
            pass
        finally:
            self.closed.set()

    async def _on_centre_frame(self, frame: Frame) -> None:
        if frame.command in (Command.confirm, Command.deny):
            (self.confirms if frame.command == Command.confirm else self.denies).append(frame)
            waiter = self._waiters.pop(frame.serial, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            return
        self.centre_frames.append(frame)
        answer = self._answer(frame)
        await self.write(encode_frame(answer))
        if answer.command == Command.confirm and frame.data[0] == DUTY_CHECK and self.answer_duty_check:
            # The person on duty presses 查岗应答: an operation record the centre confirms.
            await self.write(encode_frame(self.next_frame(self.panel.duty_check_answer(self.now()))))

    def _answer(self, frame: Frame) -> Frame:
        """The answer to a centre request (a response) or control command (a confirm); a deny
        for anything this device does not understand."""
        deny = reply(frame, Command.deny, self.now())
        try:
            app = decode_app_data(frame.data)
        except DecodeError:
            return deny
        if frame.command == Command.control:
            match app.app_type, app.objects:
                case (90, (ClockSync(at=datetime() as at),)):
                    self.clock_offset = at - self.clock()
                case (89, _):
                    self.panel.reset()
                case (91, (DutyCheck(),)):
                    pass
                case _:
                    return deny
            return reply(frame, Command.confirm, self.now())
        if frame.command != Command.request or (data := self._read(app)) is None:
            return deny
        return Frame(
            frame.serial, frame.version, self.now(), self.address, frame.source, Command.response, encode_app_data(data)
        )

    def _read(self, app: AppData) -> AppData | None:
        now, panel = self.now(), self.panel
        match app.app_type:
            case 61:
                refs = [o for o in app.objects if isinstance(o, SystemRef) and (o.system_type, o.system_addr) == (1, 1)]
                return AppData(1, tuple(panel.system_status(now) for _ in refs))
            case 62:
                wanted = {
                    (o.system_type, o.system_addr, o.component_addr) for o in app.objects if isinstance(o, ComponentRef)
                }
                found = [c for c in panel.components if (c.system_type, c.system_addr, c.component_addr) in wanted]
                return AppData(2, tuple(panel.component_status(c, now) for c in found))
            case 81:
                return AppData(21, (UitdStatus(panel.uitd_status, now),))
            case 84:
                query = app.objects[0]
                count = query.count if isinstance(query, UitdOperationQuery) else 0
                return AppData(24, tuple(panel.operations[-count:] if count else ()))
            case 85:
                return AppData(25, (UitdVersion(1, 2),))
            case 86:
                return AppData(26, (UitdConfig(f"秒响模拟用传 {self.address} {len(panel.components)}个部件"),))
            case 88:
                return AppData(28, (UitdTime(now),))
        return None
