"""GB/T 26875.3-2011 application data units (§8): type byte, object count, information objects.

Every object layout here is the standard's; multi-byte integers are little-endian, texts are
GB 18030, and most objects end with a 6-byte time label (s, min, h, day, month, year-2000) in the
device's local time. Upstream types (1-8 building fire facilities, 21-28 the transmission device
itself) and the centre's downstream requests (61-68, 81-91) are decoded and encoded both ways;
any other type is kept raw (`RawObjects`). See docs/gb26875.md for what each layout relies on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from datetime import datetime
from typing import ClassVar, Self

from .errors import DecodeError

TIME_LEN = 6
DESCRIPTION_LEN = 31

# --- time labels and texts (§8.2.2, GB 18030) ---------------------------------------------------


def encode_time(t: datetime | None) -> bytes:
    """A naive local time as the 6-byte label; None (time unknown) as six zero bytes."""
    if t is None:
        return bytes(TIME_LEN)
    if not 2000 <= t.year <= 2099:
        raise ValueError(f"year {t.year} does not fit the time label (2000-2099)")
    return bytes((t.second, t.minute, t.hour, t.day, t.month, t.year - 2000))


def decode_time(b: bytes) -> datetime | None:
    """The 6-byte label as a naive local time; None when it names no valid time (all zeros, month 13, ...)."""
    s, mi, h, d, mo, y = b[:TIME_LEN]
    if y > 99:
        return None
    try:
        return datetime(2000 + y, mo, d, h, mi, s)
    except ValueError:
        return None


def encode_description(text: str) -> bytes:
    """A component description as the 31-byte GB 18030 field, NUL-padded."""
    raw = text.encode("gb18030")
    if len(raw) > DESCRIPTION_LEN:
        raise ValueError(f"description is {len(raw)} bytes in GB 18030, more than {DESCRIPTION_LEN}")
    return raw.ljust(DESCRIPTION_LEN, b"\x00")


def decode_description(raw: bytes) -> str:
    """The 31-byte field up to its first NUL, without trailing spaces (panels pad either way).

    NUL and space never occur inside a GB 18030 multi-byte character, so cutting bytes is safe."""
    return raw.split(b"\x00", 1)[0].rstrip(b" ").decode("gb18030", errors="replace")


def _text(raw: bytes) -> str:
    return raw.decode("gb18030", errors="replace")


# --- information objects -----------------------------------------------------------------------


class _Fixed:
    """An object of fixed size: struct fields in dataclass order, `bytes` fields being
    31-byte descriptions, then (when `_TIMED`) the time label as the last field `at`."""

    __slots__ = ()
    _FMT: ClassVar[struct.Struct]
    _TIMED: ClassVar[bool] = True

    @classmethod
    def size(cls) -> int:
        return cls._FMT.size + (TIME_LEN if cls._TIMED else 0)

    @classmethod
    def unpack(cls, b: bytes) -> Self:
        values: list[object] = [decode_description(v) if isinstance(v, bytes) else v for v in cls._FMT.unpack_from(b)]
        if cls._TIMED:
            values.append(decode_time(b[cls._FMT.size : cls._FMT.size + TIME_LEN]))
        return cls(*values)

    def pack(self) -> bytes:
        values = [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]
        at = values.pop() if self._TIMED else None
        packed = [encode_description(v) if isinstance(v, str) else v for v in values]
        try:
            body = self._FMT.pack(*packed)
        except struct.error as e:
            raise ValueError(f"{type(self).__name__} field out of range: {e}") from None
        return body + encode_time(at) if self._TIMED else body


@dataclass(frozen=True, slots=True)
class SystemStatus(_Fixed):
    """Type 1 (§8.2.1.1): a building fire facility system's status word."""

    _FMT = struct.Struct("<BBH")
    system_type: int
    system_addr: int
    status: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class ComponentStatus(_Fixed):
    """Type 2 (§8.2.1.2): one component's status word; 40 bytes plus the time label."""

    _FMT = struct.Struct("<BBBIH31s")
    system_type: int
    system_addr: int
    component_type: int
    component_addr: int
    status: int
    description: str
    at: datetime | None


@dataclass(frozen=True, slots=True)
class AnalogValue(_Fixed):
    """Type 3 (§8.2.1.3): one analog value (signed, in the unit steps of `ANALOG_TYPES`)."""

    _FMT = struct.Struct("<BBBIBh")
    system_type: int
    system_addr: int
    component_type: int
    component_addr: int
    analog_type: int
    value: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class SystemOperation(_Fixed):
    """Type 4 (§8.2.1.4): an operation on a facility system (flags of `SYSTEM_OPERATION_BITS`)."""

    _FMT = struct.Struct("<BBBB")
    system_type: int
    system_addr: int
    flags: int
    operator: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class SystemVersion(_Fixed):
    """Type 5 (§8.2.1.5): a facility system's software version; no time label."""

    _FMT = struct.Struct("<BBBB")
    _TIMED = False
    system_type: int
    system_addr: int
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class ComponentConfig(_Fixed):
    """Type 7 (§8.2.1.7): a component's configuration (38 bytes, no time label)."""

    _FMT = struct.Struct("<BBBI31s")
    _TIMED = False
    system_type: int
    system_addr: int
    component_type: int
    component_addr: int
    description: str


@dataclass(frozen=True, slots=True)
class SystemTime(_Fixed):
    """Type 8: a facility system's clock."""

    _FMT = struct.Struct("<BB")
    system_type: int
    system_addr: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class UitdStatus(_Fixed):
    """Type 21 (§8.2.1.8): the transmission device's own status byte (`UITD_STATUS_BITS`)."""

    _FMT = struct.Struct("<B")
    status: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class UitdOperation(_Fixed):
    """Type 24 (§8.2.1.9): an operation on the transmission device (`UITD_OPERATION_BITS`)."""

    _FMT = struct.Struct("<BB")
    flags: int
    operator: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class UitdVersion(_Fixed):
    """Type 25 (§8.2.1.10): the transmission device's software version."""

    _FMT = struct.Struct("<BB")
    _TIMED = False
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class UitdTime(_Fixed):
    """Type 28: the transmission device's clock."""

    _FMT = struct.Struct("<")
    at: datetime | None


@dataclass(frozen=True, slots=True)
class SystemRef(_Fixed):
    """Requests 61, 65, 66, 68: which facility system to read."""

    _FMT = struct.Struct("<BB")
    _TIMED = False
    system_type: int
    system_addr: int


@dataclass(frozen=True, slots=True)
class ComponentRef(_Fixed):
    """Requests 62, 63, 67: which component to read (no component type in the request)."""

    _FMT = struct.Struct("<BBI")
    _TIMED = False
    system_type: int
    system_addr: int
    component_addr: int


@dataclass(frozen=True, slots=True)
class OperationQuery(_Fixed):
    """Request 64: up to `count` operation records of a system from `since` on."""

    _FMT = struct.Struct("<BBB")
    system_type: int
    system_addr: int
    count: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class UitdOperationQuery(_Fixed):
    """Request 84: up to `count` operation records of the transmission device from `at` on."""

    _FMT = struct.Struct("<B")
    count: int
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Reserved(_Fixed):
    """Requests 81, 85, 86, 88 and control 89: one reserved byte (0)."""

    _FMT = struct.Struct("<B")
    _TIMED = False
    value: int = 0


@dataclass(frozen=True, slots=True)
class ClockSync(_Fixed):
    """Control 90: set the device clock to `at` (local time), as the standard's example sends it."""

    _FMT = struct.Struct("<")
    at: datetime | None


@dataclass(frozen=True, slots=True)
class DutyCheck(_Fixed):
    """Control 91, duty check (查岗): the standard's table calls the byte reserved, its example
    sends 10 - the minutes the person on duty has to answer."""

    _FMT = struct.Struct("<B")
    _TIMED = False
    minutes: int = 0


@dataclass(frozen=True, slots=True)
class SystemConfig:
    """Type 6 (§8.2.1.6): a facility system's configuration text (length byte + GB 18030)."""

    system_type: int
    system_addr: int
    text: str

    def pack(self) -> bytes:
        raw = self.text.encode("gb18030")
        if len(raw) > 255:
            raise ValueError("system configuration text is longer than 255 bytes")
        return bytes((self.system_type, self.system_addr, len(raw))) + raw


@dataclass(frozen=True, slots=True)
class UitdConfig:
    """Type 26 (§8.2.1.11): the transmission device's configuration text (length byte + GB 18030)."""

    text: str

    def pack(self) -> bytes:
        raw = self.text.encode("gb18030")
        if len(raw) > 255:
            raise ValueError("device configuration text is longer than 255 bytes")
        return bytes((len(raw),)) + raw


@dataclass(frozen=True, slots=True)
class RawObjects:
    """The objects of a type this codec does not decode, kept as sent."""

    count: int
    raw: bytes


InfoObject = (
    SystemStatus | ComponentStatus | AnalogValue | SystemOperation | SystemVersion | SystemConfig | ComponentConfig
    | SystemTime | UitdStatus | UitdOperation | UitdVersion | UitdConfig | UitdTime | SystemRef | ComponentRef
    | OperationQuery | UitdOperationQuery | Reserved | ClockSync | DutyCheck | RawObjects
)

#: Type byte -> the class of its objects.
OBJECT_TYPES: dict[int, type[_Fixed] | type[SystemConfig] | type[UitdConfig]] = {
    1: SystemStatus,
    2: ComponentStatus,
    3: AnalogValue,
    4: SystemOperation,
    5: SystemVersion,
    6: SystemConfig,
    7: ComponentConfig,
    8: SystemTime,
    21: UitdStatus,
    24: UitdOperation,
    25: UitdVersion,
    26: UitdConfig,
    28: UitdTime,
    61: SystemRef,
    62: ComponentRef,
    63: ComponentRef,
    64: OperationQuery,
    65: SystemRef,
    66: SystemRef,
    67: ComponentRef,
    68: SystemRef,
    81: Reserved,
    84: UitdOperationQuery,
    85: Reserved,
    86: Reserved,
    88: Reserved,
    89: Reserved,
    90: ClockSync,
    91: DutyCheck,
}
#: Centre -> device types sent as a request (command 4, answered by a response).
REQUEST_TYPES = frozenset({61, 62, 63, 64, 65, 66, 67, 68, 81, 84, 85, 86, 88})
#: Centre -> device types sent as a control command (command 1, answered by a confirm).
CONTROL_TYPES = frozenset({89, 90, 91})
READ_UITD_STATUS, INIT_UITD, SYNC_CLOCK, DUTY_CHECK = 81, 89, 90, 91


@dataclass(frozen=True, slots=True)
class AppData:
    """One application data unit: its type and objects (one `RawObjects` for an unknown type)."""

    app_type: int
    objects: tuple[InfoObject, ...] = ()


def decode_app_data(data: bytes) -> AppData:
    """Decode an application data unit; its length must be exactly what its objects need."""
    if len(data) < 2:
        raise DecodeError(f"application data of {len(data)} bytes lacks its type and object count")
    app_type, count, body = data[0], data[1], data[2:]
    cls = OBJECT_TYPES.get(app_type)
    if cls is None:
        return AppData(app_type, (RawObjects(count, bytes(body)),))
    if not issubclass(cls, _Fixed):
        return AppData(app_type, _decode_texts(cls, count, body))
    size = cls.size()
    if len(body) != count * size:
        raise DecodeError(
            f"type {app_type} declares {count} objects of {size} bytes ({count * size}) but carries {len(body)}"
        )
    return AppData(app_type, tuple(cls.unpack(body[i : i + size]) for i in range(0, len(body), size)))  # type: ignore[misc]


def _decode_texts(cls: type, count: int, body: bytes) -> tuple[InfoObject, ...]:
    prefix = 3 if cls is SystemConfig else 1
    objects: list[InfoObject] = []
    pos = 0
    for _ in range(count):
        if pos + prefix > len(body) or pos + prefix + body[pos + prefix - 1] > len(body):
            raise DecodeError(f"configuration object {len(objects) + 1} of {count} runs past the data")
        end = pos + prefix + body[pos + prefix - 1]
        text = _text(body[pos + prefix : end])
        objects.append(SystemConfig(body[pos], body[pos + 1], text) if cls is SystemConfig else UitdConfig(text))
        pos = end
    if pos != len(body):
        raise DecodeError(f"{len(body) - pos} bytes follow the {count} configuration objects")
    return tuple(objects)


def encode_app_data(app: AppData) -> bytes:
    """The bytes of an application data unit (raises ValueError on objects that do not fit its type)."""
    if len(app.objects) == 1 and isinstance(app.objects[0], RawObjects):
        raw = app.objects[0]
        return bytes((app.app_type, raw.count)) + raw.raw
    cls = OBJECT_TYPES.get(app.app_type)
    if cls is None or not all(type(o) is cls for o in app.objects):
        raise ValueError(f"type {app.app_type} cannot carry {sorted({type(o).__name__ for o in app.objects})}")
    if len(app.objects) > 255:
        raise ValueError("at most 255 objects fit one data unit")
    return bytes((app.app_type, len(app.objects))) + b"".join(o.pack() for o in app.objects)  # type: ignore[union-attr]


def request_data(app_type: int, objects: bytes = b"") -> bytes:
    """Application data of a centre request or control command from its objects' bytes.

    The object count is the bytes divided by the type's object size; types whose single object is
    one reserved byte (81, 85, 86, 88, 89, 91) default to `00`. Raises ValueError otherwise."""
    if app_type not in REQUEST_TYPES | CONTROL_TYPES:
        raise ValueError(f"type {app_type} is not a request or control type (61-68, 81, 84-86, 88-91)")
    cls = OBJECT_TYPES[app_type]
    assert issubclass(cls, _Fixed)
    size = cls.size()
    if not objects and size == 1:
        objects = b"\x00"
    if not objects or len(objects) % size or len(objects) // size > 255:
        raise ValueError(f"type {app_type} needs 1 to 255 objects of {size} bytes, got {len(objects)} bytes")
    return bytes((app_type, len(objects) // size)) + objects


def request_command(app_type: int) -> int:
    """The frame command a centre-initiated type travels in: 1 control (89-91) or 4 request."""
    return 1 if app_type in CONTROL_TYPES else 4


# --- the standard's code tables ----------------------------------------------------------------

#: §8.2.1.1 system types.
SYSTEM_TYPE_NAMES: dict[int, str] = {
    0: "通用",
    1: "火灾报警系统",
    10: "消防联动控制器",
    11: "消火栓系统",
    12: "自动喷水灭火系统",
    13: "气体灭火系统",
    14: "水喷雾灭火系统(泵启动方式)",
    15: "水喷雾灭火系统(压力容器启动方式)",
    16: "泡沫灭火系统",
    17: "干粉灭火系统",
    18: "防烟排烟系统",
    19: "防火门及卷帘系统",
    20: "消防电梯",
    21: "消防应急广播",
    22: "消防应急照明和疏散指示系统",
    23: "消防电源",
    24: "消防电话",
}

#: §8.2.1.2 component types.
COMPONENT_TYPE_NAMES: dict[int, str] = {
    0: "通用",
    1: "火灾报警控制器",
    10: "可燃气体探测器",
    11: "点型可燃气体探测器",
    12: "独立式可燃气体探测器",
    13: "线型可燃气体探测器",
    16: "电气火灾监控报警器",
    17: "剩余电流式电气火灾监控探测器",
    18: "测温式电气火灾监控探测器",
    21: "探测回路",
    22: "火灾显示盘",
    23: "手动火灾报警按钮",
    24: "消火栓按钮",
    25: "火灾探测器",
    30: "感温火灾探测器",
    31: "点型感温火灾探测器",
    32: "点型感温火灾探测器(S型)",
    33: "点型感温火灾探测器(R型)",
    34: "线型感温火灾探测器",
    35: "线型感温火灾探测器(S型)",
    36: "线型感温火灾探测器(R型)",
    37: "光纤感温火灾探测器",
    40: "感烟火灾探测器",
    41: "点型离子感烟火灾探测器",
    42: "点型光电感烟火灾探测器",
    43: "线型光束感烟火灾探测器",
    44: "吸气式感烟火灾探测器",
    50: "复合式火灾探测器",
    51: "复合式感烟感温火灾探测器",
    52: "复合式感光感温火灾探测器",
    53: "复合式感光感烟火灾探测器",
    61: "紫外火焰探测器",
    62: "红外火焰探测器",
    69: "感光火灾探测器",
    74: "气体探测器",
    78: "图像摄像方式火灾探测器",
    79: "感声火灾探测器",
    81: "气体灭火控制器",
    82: "消防电气控制装置",
    83: "消防控制室图形显示装置",
    84: "模块",
    85: "输入模块",
    86: "输出模块",
    87: "输入/输出模块",
    88: "中继模块",
    91: "消防水泵",
    92: "消防水箱",
    95: "喷淋泵",
    96: "水流指示器",
    97: "信号阀",
    98: "报警阀",
    99: "压力开关",
    101: "阀驱动装置",
    102: "防火门",
    103: "防火阀",
    104: "通风空调",
    105: "泡沫液泵",
    106: "管网电磁阀",
    111: "防烟排烟风机",
    113: "排烟防火阀",
    114: "常闭送风口",
    115: "排烟口",
    116: "电控挡烟垂壁",
    117: "防火卷帘控制器",
    118: "防火门监控器",
    121: "报警装置",
}


@dataclass(frozen=True, slots=True)
class AnalogType:
    """§8.2.1.3: what an analog value measures; value x `step` is in `unit`."""

    name: str
    unit: str
    step: float


ANALOG_TYPES: dict[int, AnalogType] = {
    1: AnalogType("event_count", "", 1),
    2: AnalogType("height", "m", 0.01),
    3: AnalogType("temperature", "°C", 0.1),
    4: AnalogType("pressure", "MPa", 0.1),
    5: AnalogType("pressure", "kPa", 0.1),
    6: AnalogType("gas_concentration", "%LEL", 0.1),
    7: AnalogType("time", "s", 1),
    8: AnalogType("voltage", "V", 0.1),
    9: AnalogType("current", "A", 0.1),
    10: AnalogType("flow", "L/s", 0.1),
    11: AnalogType("air_volume", "m³/min", 0.1),
    12: AnalogType("wind_speed", "m/s", 1),
}

#: §8.2.1.4 facility operation flags and §8.2.1.9 transmission-device operation flags.
SYSTEM_OPERATION_BITS: dict[int, str] = {
    0: "reset",
    1: "mute",
    2: "manual_alarm",
    3: "alarm_clear",
    4: "self_check",
    5: "confirm",
    6: "test",
}
UITD_OPERATION_BITS: dict[int, str] = {**SYSTEM_OPERATION_BITS, 5: "duty_check_answer"}
