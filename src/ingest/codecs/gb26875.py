"""GB/T 26875.3-2011 frames (CONTRACT §4) and their mapping to canonical readings. Pure, no I/O.

A frame is `@@`, a 25-byte control unit (serial u16 LE, version 2 bytes, send time 6 bytes,
source and destination addresses 6 bytes LE each, data length u16 LE <= 1024, command byte),
the application data, a checksum (low 8 bits of the sum of the control unit and the data) and
`##`. `FrameReassembler` cuts a TCP byte stream into frames; `map_frame` turns a decoded frame
into readings, given the status words seen before (the transport keeps them per session).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from zoneinfo import ZoneInfo

from devices.kinds import Event, Kind
from devices.reading import Reading

from .errors import DecodeError
from .gb26875_appdata import (
    ANALOG_TYPES,
    COMPONENT_TYPE_NAMES,
    SYSTEM_OPERATION_BITS,
    SYSTEM_TYPE_NAMES,
    UITD_OPERATION_BITS,
    AnalogValue,
    AppData,
    ComponentConfig,
    ComponentStatus,
    InfoObject,
    RawObjects,
    SystemConfig,
    SystemOperation,
    SystemStatus,
    SystemTime,
    SystemVersion,
    UitdConfig,
    UitdOperation,
    UitdStatus,
    UitdTime,
    UitdVersion,
    decode_app_data,
    decode_time,
    encode_time,
)

START, END = b"@@", b"##"
HEADER_LEN = 27  # `@@` + the 25-byte control unit
MIN_FRAME = HEADER_LEN + 3  # + checksum + `##`
MAX_DATA = 1024
MAX_ADDRESS = 2**48 - 1
_CONTROL = struct.Struct("<HBB6s6s6sHB")


class Command(IntEnum):
    """The control unit's command byte."""

    control = 1
    send = 2
    confirm = 3
    request = 4
    response = 5
    deny = 6


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. `sent_at` is the sender's naive local time (None: the label names no valid time);
    `command` stays an int because 128-255 are user-defined. `raw` is the bytes a decoded frame
    came from (empty for one built in code; not compared, ignored by `encode_frame`)."""

    serial: int
    version: tuple[int, int]
    sent_at: datetime | None
    source: int
    dest: int
    command: int
    data: bytes = b""
    raw: bytes = field(default=b"", repr=False, compare=False)


class BadFrame(DecodeError):
    """A frame that fails its checksum, length or end marker; `raw` holds its bytes."""

    def __init__(self, reason: str, raw: bytes) -> None:
        super().__init__(reason)
        self.raw = raw


def encode_frame(frame: Frame) -> bytes:
    """The bytes of a frame (raises ValueError on a field out of range)."""
    if not 0 <= frame.serial <= 0xFFFF:
        raise ValueError(f"serial {frame.serial} is not a u16")
    if not (0 <= frame.source <= MAX_ADDRESS and 0 <= frame.dest <= MAX_ADDRESS):
        raise ValueError("addresses must fit 6 bytes")
    if len(frame.data) > MAX_DATA:
        raise ValueError(f"application data of {len(frame.data)} bytes exceeds {MAX_DATA}")
    try:
        control = _CONTROL.pack(
            frame.serial,
            *frame.version,
            encode_time(frame.sent_at),
            frame.source.to_bytes(6, "little"),
            frame.dest.to_bytes(6, "little"),
            len(frame.data),
            frame.command,
        )
    except struct.error as e:
        raise ValueError(f"frame field out of range: {e}") from None
    body = control + frame.data
    return START + body + bytes((sum(body) & 0xFF,)) + END


def decode_frame(raw: bytes) -> Frame:
    """Decode exactly one frame; raises `BadFrame` (a DecodeError) saying what does not check."""
    raw = bytes(raw)
    if len(raw) < MIN_FRAME:
        raise BadFrame(f"frame of {len(raw)} bytes is shorter than the {MIN_FRAME}-byte minimum", raw)
    if raw[:2] != START:
        raise BadFrame("frame does not start with @@", raw)
    header, n = _header(raw)
    if n > MAX_DATA:
        raise BadFrame(f"declared data length {n} exceeds {MAX_DATA}", raw)
    if len(raw) != MIN_FRAME + n:
        raise BadFrame(f"frame declares {n} data bytes, so {MIN_FRAME + n} bytes in all, but has {len(raw)}", raw)
    if raw[-2:] != END:
        raise BadFrame("frame does not end with ##", raw)
    checksum = sum(raw[2:-3]) & 0xFF
    if checksum != raw[-3]:
        raise BadFrame(f"checksum 0x{raw[-3]:02X} does not match the computed 0x{checksum:02X}", raw)
    h = header
    return Frame(h.serial, h.version, h.sent_at, h.source, h.dest, h.command, raw[HEADER_LEN:-3], raw)


def _header(raw: bytes) -> tuple[Frame, int]:
    """The control unit as a frame without data, and the data length it declares."""
    serial, major, minor, t, src, dst, n, command = _CONTROL.unpack_from(raw, 2)
    src_addr, dst_addr = int.from_bytes(src, "little"), int.from_bytes(dst, "little")
    return Frame(serial, (major, minor), decode_time(t), src_addr, dst_addr, command), n


def peek_header(raw: bytes) -> Frame | None:
    """The control unit of a frame that may not check (its `data` is empty), or None when `raw`
    is too short or does not start with `@@`: enough to deny a bad frame."""
    if len(raw) < HEADER_LEN or raw[:2] != START:
        return None
    return _header(raw)[0]


def reply(to: Frame, command: Command, sent_at: datetime | None) -> Frame:
    """An empty confirm or deny for `to`: same serial and version, addresses swapped."""
    return Frame(to.serial, to.version, sent_at, to.dest, to.source, int(command))


class FrameReassembler:
    """Cuts a byte stream into frames: split across reads, several per read, garbage before `@@`.

    A candidate whose declared length exceeds 1024 or whose `##` is not where its length says is
    reported as a `BadFrame` and scanning resumes one byte after its `@@`, so a corrupted length
    never swallows the frames behind it; a checksum failure skips the whole (well-delimited) frame.
    `feed` never raises."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0  # bytes dropped while looking for `@@`

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | BadFrame]:
        self._buf += data
        out: list[Frame | BadFrame] = []
        pos = 0
        while True:
            pos, item = self._next(pos)
            if item is None:
                break
            out.append(item)
        del self._buf[:pos]
        return out

    def flush(self) -> list[Frame | BadFrame]:
        """Give up waiting: the held-back partial frame is reported truncated and what follows
        its `@@` is scanned again. Called when the peer has gone quiet mid-frame."""
        out: list[Frame | BadFrame] = []
        while self._buf:
            raw = bytes(self._buf)
            if raw.startswith(START):
                out.append(BadFrame(f"frame truncated after {len(raw)} bytes", raw))
            else:
                self.skipped += 1
            del self._buf[:1]
            out.extend(self.feed(b""))
        return out

    def _next(self, pos: int) -> tuple[int, Frame | BadFrame | None]:
        buf = self._buf
        start = buf.find(START, pos)
        if start < 0:
            keep = 1 if buf.endswith(b"@") and len(buf) > pos else 0
            self.skipped += len(buf) - keep - pos
            return len(buf) - keep, None
        self.skipped += start - pos
        pos = start
        if len(buf) - pos < HEADER_LEN:
            return pos, None
        n = int.from_bytes(buf[pos + 24 : pos + 26], "little")
        if n > MAX_DATA:
            return pos + 1, BadFrame(f"declared data length {n} exceeds {MAX_DATA}", bytes(buf[pos : pos + HEADER_LEN]))
        end = pos + MIN_FRAME + n
        if len(buf) < end:
            return pos, None
        raw = bytes(buf[pos:end])
        if raw[-2:] != END:
            return pos + 1, BadFrame("no ## where the declared length says the frame ends", raw)
        try:
            return end, decode_frame(raw)
        except BadFrame as e:
            return end, e


# --- mapping to canonical readings -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flag:
    """One status bit: its name and, when it has a canonical counterpart, the events it raises
    when set and when cleared (and the fault code a fault carries)."""

    name: str
    on: Event | None = None
    off: Event | None = None
    fault_code: str | None = None


# Bit 0 ("normal operation"; clear = test) raises nothing: the standard's own fire example sends
# 0x0002, so test mode is a per-device setting (`under_test`); the raw word stays in `extra`.
_FIRE = Flag("fire", Event.alarm, Event.alarm_clear)
_PANEL_ONLY = {
    3: Flag("shield", Event.shield, Event.shield_clear),
    4: Flag("supervisory", Event.supervisory, Event.supervisory_clear),
    5: Flag("start"), 6: Flag("feedback"), 7: Flag("delay"),
}

#: §8.2.1.2 component status bits.
COMPONENT_FLAGS: dict[int, Flag] = {
    1: _FIRE,
    2: Flag("fault", Event.fault, Event.fault_clear, "component"),
    **_PANEL_ONLY,
    8: Flag("power_fault", Event.power_fail, Event.power_restore),
}
#: §8.2.1.1 system status bits.
SYSTEM_FLAGS: dict[int, Flag] = {
    1: _FIRE,
    2: Flag("fault", Event.fault, Event.fault_clear, "system"),
    **_PANEL_ONLY,
    8: Flag("main_power_fault", Event.power_fail, Event.power_restore),
    9: Flag("backup_power_fault", Event.power_fail, Event.power_restore),
    10: Flag("bus_fault", Event.fault, Event.fault_clear, "bus"),
    11: Flag("manual_mode"),
    12: Flag("config_changed"),
    13: Flag("reset"),
}
#: §8.2.1.8 transmission-device status bits.
UITD_FLAGS: dict[int, Flag] = {
    1: _FIRE,
    2: Flag("fault", Event.fault, Event.fault_clear, "device"),
    3: Flag("main_power_fault", Event.power_fail, Event.power_restore),
    4: Flag("backup_power_fault", Event.power_fail, Event.power_restore),
    5: Flag("channel_fault", Event.fault, Event.fault_clear, "comm"),
    6: Flag("line_fault", Event.fault, Event.fault_clear, "line"),
}
#: Operation flags with a canonical event; the others become a report.
OPERATION_EVENTS: dict[str, Event] = {
    "mute": Event.mute,
    "manual_alarm": Event.alarm,
    "alarm_clear": Event.alarm_clear,
    "self_check": Event.test,
    "test": Event.test,
}
#: Power flags of one status word: they make one `power_fail` (or `power_restore`) reading.
POWER_FLAGS = frozenset({"power_fault", "main_power_fault", "backup_power_fault"})
#: `alarm_code` of a `power_fail` whose main and backup power have both failed (CONTRACT §10 `power_fault`).
MAINS_AND_BACKUP = "mains_and_backup"
#: Analog types that are canonical metrics: name, factor from the type's unit (CONTRACT §10:
#: kPa and 0.1 MPa to `pressure_mpa`, L/s x 3.6 to `flow_m3h`).
ANALOG_METRICS: dict[int, tuple[str, float]] = {
    2: ("level_m", 1.0),
    3: ("temperature_c", 1.0),
    4: ("pressure_mpa", 1.0),
    5: ("pressure_mpa", 0.001),
    6: ("gas_lel_pct", 1.0),
    10: ("flow_m3h", 3.6),
}
#: `extra` of a reading whose metric is a panel's analog value: its pressure comes in 0.1 MPa or
#: kPa steps, too coarse for `water_pressure_drop`, which the core never raises from it.
ANALOG_SOURCE = {"source": "gb26875_analog"}
UITD_KEY = "uitd"
_SYSTEM_OBJECTS = (
    SystemStatus, ComponentStatus, AnalogValue, SystemOperation, SystemVersion, SystemConfig, ComponentConfig,
    SystemTime,
)
_COMPONENT_OBJECTS = (ComponentStatus, AnalogValue, ComponentConfig)


@dataclass(frozen=True, slots=True)
class StatusChange:
    """What a status word means given the one before: canonical `events` (event, flag name),
    `changes` of flags without a canonical counterpart (`name` or `name_clear`), and the names
    of every flag now set (`active`)."""

    events: tuple[tuple[Event, Flag], ...]
    changes: tuple[str, ...]
    active: tuple[str, ...]


def status_change(
    flags: Mapping[int, Flag], status: int, previous_status: int | None, *, under_test: bool
) -> StatusChange:
    """Events of one status word. A set canonical flag always raises its event (alerting folds
    repeats, so a fire is never lost to stale state); a flag set in `previous_status` and clear now
    raises its clearing event; without a previous status nothing clears. Under test, a fire is
    `test` and its clearing a plain change."""
    now, before = status, previous_status
    events: list[tuple[Event, Flag]] = []
    changes: list[str] = []
    for bit, flag in flags.items():
        is_set = bool(now >> bit & 1)
        was_set = before is not None and bool(before >> bit & 1)
        fire_test = under_test and flag.on is Event.alarm
        if is_set and flag.on is not None:
            events.append((Event.test if fire_test else flag.on, flag))
        elif is_set and not was_set:
            changes.append(flag.name)
        elif was_set and not is_set:
            if flag.off is not None and not fire_test:
                events.append((flag.off, flag))
            else:
                changes.append(f"{flag.name}_clear")
    active = tuple(flag.name for bit, flag in flags.items() if now >> bit & 1)
    return StatusChange(tuple(events), tuple(changes), active)


def _one_power_event(
    change: StatusChange,
) -> tuple[list[tuple[Event, Flag, dict[str, object]]], tuple[str, ...]]:
    """The events of a status word with its power flags made one: a `power_fail` while any power
    flag is set (listing them in `power_faults`, with `alarm_code` `mains_and_backup` when main
    and backup have both failed; a power flag clearing meanwhile is only a change), else one
    `power_restore` when the last one clears. Other events pass as they are."""
    failing = [f for e, f in change.events if e is Event.power_fail]
    restored = [f for e, f in change.events if e is Event.power_restore]
    changes = change.changes
    power: list[tuple[Event, Flag, dict[str, object]]] = []
    if failing:
        names = [f.name for f in failing]
        more: dict[str, object] = {"power_faults": names}
        if {"main_power_fault", "backup_power_fault"} <= set(names):
            more["alarm_code"] = MAINS_AND_BACKUP
        power.append((Event.power_fail, failing[0], more))
        changes += tuple(f"{f.name}_clear" for f in restored)
    elif restored:
        power.append((Event.power_restore, restored[0], {}))
    events: list[tuple[Event, Flag, dict[str, object]]] = [
        (e, f, {}) for e, f in change.events if f.name not in POWER_FLAGS
    ]
    first = next((i for i, (_, f) in enumerate(change.events) if f.name in POWER_FLAGS), len(events))
    return events[:first] + power + events[first:], changes


def status_key(obj: InfoObject) -> str | None:
    """Where a status word is remembered: a component's id, `system_type:system_addr`, or `uitd`."""
    if isinstance(obj, ComponentStatus):
        return component_id(obj.system_type, obj.system_addr, obj.component_addr)
    if isinstance(obj, SystemStatus):
        return f"{obj.system_type}:{obj.system_addr}"
    if isinstance(obj, UitdStatus):
        return UITD_KEY
    return None


def component_id(system_type: int, system_addr: int, component_addr: int) -> str:
    return f"{system_type}:{system_addr}:{component_addr}"


def local_ms(t: datetime, tz: ZoneInfo) -> int:
    """A naive device-local time as UTC epoch milliseconds."""
    return int(t.replace(tzinfo=tz).timestamp()) * 1000


def frame_to_readings(
    frame: Frame,
    *,
    received_ms: int,
    tz: ZoneInfo,
    under_test: bool = False,
    previous: Mapping[str, int] | None = None,
) -> list[Reading]:
    """Readings of a `send` or `response` frame (an empty `send` is a heartbeat); raises
    DecodeError when its application data does not decode. `previous` maps `status_key`s to
    the status words seen before this frame."""
    app = decode_app_data(frame.data) if frame.data else None
    return map_frame(frame, app, received_ms=received_ms, tz=tz, under_test=under_test, previous=previous or {})[0]


def map_frame(
    frame: Frame,
    app: AppData | None,
    *,
    received_ms: int,
    tz: ZoneInfo,
    under_test: bool,
    previous: Mapping[str, int],
) -> tuple[list[Reading], dict[str, int]]:
    """Readings of a decoded frame and the status words to remember after it.

    Objects are taken in order, each seeing the statuses the ones before it left. A panel reset
    (a system operation with its reset flag, or a system status with bit 13) clears the fire of
    every component of that system still remembered in fire, and forgets that system's statuses."""
    memory = dict(previous)
    if frame.command not in (Command.send, Command.response):
        return [], memory
    mapper = _Mapper(f"uitd-{frame.source}", received_ms, tz, under_test, frame.sent_at)
    if app is None:
        return ([mapper.reading(Event.heartbeat, None, None, {})] if frame.command == Command.send else []), memory
    for obj in app.objects:
        mapper.add(app.app_type, obj, memory)
    return mapper.out, memory


class _Mapper:
    """Collects the readings of one frame."""

    def __init__(
        self, device_id: str, received_ms: int, tz: ZoneInfo, under_test: bool, sent_at: datetime | None
    ) -> None:
        self.device_id = device_id
        self.received_ms = received_ms
        self.tz = tz
        self.under_test = under_test
        self.frame_ms = local_ms(sent_at, tz) if sent_at is not None else received_ms
        self.out: list[Reading] = []

    def ts(self, at: datetime | None) -> int:
        return local_ms(at, self.tz) if at is not None else self.frame_ms

    def reading(
        self,
        event: Event,
        at: datetime | None,
        component: str | None,
        extra: Mapping[str, object],
        metrics: Mapping[str, object] | None = None,
    ) -> Reading:
        return Reading(
            self.device_id, Kind.uitd, event, self.ts(at), self.received_ms,
            metrics=dict(metrics or {}), extra=dict(extra), component=component,
        )

    def add(self, app_type: int, obj: InfoObject, memory: dict[str, int]) -> None:
        base: dict[str, object] = {"app_type": app_type}
        component: str | None = None
        if isinstance(obj, _SYSTEM_OBJECTS):
            st, sa = obj.system_type, obj.system_addr
            base |= {"system_type": st, "system_type_name": SYSTEM_TYPE_NAMES.get(st, ""), "system_addr": sa}
        if isinstance(obj, _COMPONENT_OBJECTS):
            addr = obj.component_addr
            component = component_id(obj.system_type, obj.system_addr, addr)
            base |= {
                "component_type": obj.component_type,
                "component_type_name": COMPONENT_TYPE_NAMES.get(obj.component_type, ""),
                "component_addr": addr,
                "component_zone": addr & 0xFFFF,
                "component_point": addr >> 16,
            }
        match obj:
            case ComponentStatus() | SystemStatus() | UitdStatus():
                self.status(obj, base, component, memory)
            case SystemOperation() | UitdOperation():
                self.operation(obj, base, memory)
            case AnalogValue():
                self.analog(obj, base, component)
            case SystemVersion() | UitdVersion():
                version = {"software_version": f"{obj.major}.{obj.minor}"}
                self.out.append(self.reading(Event.report, None, None, base | version))
            case SystemConfig() | UitdConfig():
                self.out.append(self.reading(Event.report, None, None, base | {"configuration": obj.text}))
            case ComponentConfig():
                self.out.append(self.reading(Event.report, None, component, base | {"description": obj.description}))
            case SystemTime() | UitdTime():
                self.clock(obj.at, base)
            case RawObjects():
                extra = base | {"object_count": obj.count, "raw_hex": obj.raw.hex()}
                self.out.append(self.reading(Event.report, None, None, extra))
            case _:  # centre-to-device types have nothing to report
                pass

    def status(
        self,
        obj: ComponentStatus | SystemStatus | UitdStatus,
        base: dict[str, object],
        component: str | None,
        memory: dict[str, int],
    ) -> None:
        key = status_key(obj)
        assert key is not None
        flags = (
            COMPONENT_FLAGS if isinstance(obj, ComponentStatus)
            else SYSTEM_FLAGS if isinstance(obj, SystemStatus)
            else UITD_FLAGS
        )
        change = status_change(flags, obj.status, memory.get(key), under_test=self.under_test)
        extra = base | {"status": obj.status, "panel_status": list(change.active)}
        if isinstance(obj, ComponentStatus):
            extra["description"] = obj.description
        events, changes = _one_power_event(change)
        if changes:
            extra["panel_changes"] = list(changes)
        for event, flag, more in events:
            metrics = {"fault_code": flag.fault_code} if event is Event.fault and flag.fault_code else {}
            self.out.append(self.reading(event, obj.at, component, extra | {"panel_flag": flag.name} | more, metrics))
        if changes or not events:
            self.out.append(self.reading(Event.report, obj.at, component, extra))
        memory[key] = obj.status
        if isinstance(obj, SystemStatus) and obj.status >> 13 & 1:
            self.reset(obj.system_type, obj.system_addr, obj.at, memory)

    def operation(self, obj: SystemOperation | UitdOperation, base: dict[str, object], memory: dict[str, int]) -> None:
        names = SYSTEM_OPERATION_BITS if isinstance(obj, SystemOperation) else UITD_OPERATION_BITS
        ops = [name for bit, name in names.items() if obj.flags >> bit & 1]
        extra = base | {"operations": ops, "operator": obj.operator}
        events = dict.fromkeys(OPERATION_EVENTS[op] for op in ops if op in OPERATION_EVENTS)
        if self.under_test and Event.alarm in events:
            events = dict.fromkeys(Event.test if e is Event.alarm else e for e in events)
        for event in events:
            self.out.append(self.reading(event, obj.at, None, extra))
        if not events or any(op not in OPERATION_EVENTS for op in ops):
            self.out.append(self.reading(Event.report, obj.at, None, extra))
        if isinstance(obj, SystemOperation) and obj.flags & 1:
            self.reset(obj.system_type, obj.system_addr, obj.at, memory)

    def reset(self, system_type: int, system_addr: int, at: datetime | None, memory: dict[str, int]) -> None:
        prefix = f"{system_type}:{system_addr}:"
        for key in [k for k in memory if k.startswith(prefix)]:
            if memory.pop(key) >> 1 & 1 and not self.under_test:
                extra = {"system_type": system_type, "system_addr": system_addr, "cleared_by": "reset"}
                self.out.append(self.reading(Event.alarm_clear, at, key, extra))
        memory.pop(f"{system_type}:{system_addr}", None)

    def analog(self, obj: AnalogValue, base: dict[str, object], component: str | None) -> None:
        kind = ANALOG_TYPES.get(obj.analog_type)
        value = round(obj.value * kind.step, 6) if kind else obj.value
        extra = base | {"analog_type": obj.analog_type, "value": value}
        if kind:
            extra |= {"analog_name": kind.name, "unit": kind.unit}
        metrics: dict[str, object] = {}
        if obj.analog_type in ANALOG_METRICS:
            name, factor = ANALOG_METRICS[obj.analog_type]
            metrics[name] = round(value * factor, 6)
            extra |= ANALOG_SOURCE
        self.out.append(self.reading(Event.report, obj.at, component, extra, metrics))

    def clock(self, at: datetime | None, base: dict[str, object]) -> None:
        extra = dict(base)
        if at is not None:
            offset_s = (local_ms(at, self.tz) - self.received_ms) / 1000
            extra |= {"device_time": at.isoformat(), "clock_offset_s": offset_s}
        self.out.append(self.reading(Event.report, None, None, extra))
