"""MX1 binary frames (CONTRACT §2): a fixed 19-byte header, TLV fields, CRC-16/MODBUS.

Everything is big-endian, the CRC too (unlike Modbus RTU, which sends it low byte first).
Fixed-point fields are decoded as `raw / divisor`, so a value written with its decimal digits
(4.2 %/m = 420 / 100) comes back as exactly that float.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from devices.kinds import FAULT_CODES, Event, Kind
from devices.reading import Reading

from .errors import DecodeError
from .values import METRIC_TYPES, RANGES, is_number, validate_metric

MAGIC = 0xA5
VERSION = 0x01
_HEADER = struct.Struct(">BBBBQIHB")
HEADER_SIZE = _HEADER.size  # 19
MIN_FRAME = HEADER_SIZE + 2
#: Key of `Reading.extra` holding unknown tags: {"0x7f": "<hex of the value>"}.
UNKNOWN_TAGS = "mx1_tags"
#: Kind codes MX1 carries: the catalogue's, but 5 (`uitd`) is reserved and never sent (CONTRACT §10).
_MX1_KINDS: dict[int, Kind] = {int(k): k for k in Kind if k is not Kind.uitd}
_KIND_CODES = ", ".join(f"{code} {k.name}" for code, k in _MX1_KINDS.items())
_MAX_EVENT = int(max(Event))
_VENDOR_FAULT = re.compile(r"code_(\d{1,3})")
_HEX = re.compile(r"[0-9A-Fa-f]{1,8}")
_TAG_KEY = re.compile(r"0x[0-9a-f]{2}")


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF, no final xor."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


@dataclass(frozen=True, slots=True)
class _Field:
    """One TLV tag: its metric, struct code of one element, fixed-point divisor, enum codes."""

    metric: str
    fmt: str
    divisor: int = 1
    codes: dict[int, Any] | None = None
    repeated: bool = False
    size: int = field(init=False)
    signed: bool = field(init=False)
    #: Whether a plain number needs a range check beyond what its field width allows.
    checked: bool = field(init=False)
    as_float: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", struct.calcsize(">" + self.fmt))
        object.__setattr__(self, "signed", self.fmt.islower())
        object.__setattr__(self, "checked", self.metric in RANGES)
        object.__setattr__(self, "as_float", METRIC_TYPES[self.metric] is float)


_FIELDS: dict[int, _Field] = {
    0x01: _Field("battery_pct", "B"),
    0x02: _Field("battery_mv", "H"),
    0x03: _Field("rsrp_dbm", "h"),
    0x04: _Field("sinr_db", "b"),
    0x05: _Field("ecl", "B"),
    0x06: _Field("pci", "H"),
    0x07: _Field("cell_id", "I"),
    0x10: _Field("smoke_obscuration_pct_m", "H", 100),
    0x11: _Field("temperature_c", "h", 10),
    0x20: _Field("gas_lel_pct", "H", 10),
    0x21: _Field("gas_type", "B", codes={1: "methane", 2: "lpg", 3: "co", 4: "hydrogen"}),
    0x22: _Field("valve", "B", codes={0: "none", 1: "open", 2: "closed"}),
    0x23: _Field("mains_ok", "B", codes={0: False, 1: True}),
    0x24: _Field("co_ppm", "H"),
    0x30: _Field("residual_current_ma", "H", repeated=True),
    0x31: _Field("cable_temp_c", "h", 10, repeated=True),
    0x32: _Field("voltage_v", "H", 10, repeated=True),
    0x33: _Field("current_a", "H", 100, repeated=True),
    0x34: _Field("power_kw", "I", 1000),
    0x35: _Field("arc_faults", "B"),
    0x36: _Field("pyrolysis_index", "B"),
    0x37: _Field("breaker", "B", codes={1: "closed", 2: "tripped"}),
    0x40: _Field("pressure_mpa", "H", 1000),
    0x41: _Field("level_m", "H", 100),
    0x42: _Field("flow_m3h", "H", 100),
    0x43: _Field("tilt_deg", "H", 10),
    0x50: _Field("fault_code", "B", codes=dict(enumerate(FAULT_CODES, start=1))),
    0x60: _Field("port", "B"),
    0x61: _Field("port_current_a", "H", 100, repeated=True),
    0x62: _Field("port_power_w", "H", repeated=True),
    0x63: _Field("port_temp_c", "h", 10, repeated=True),
    0x64: _Field("ports_active", "B"),
}
_TAG_OF = {f.metric: tag for tag, f in _FIELDS.items()}


def decode_mx1(frame: bytes, *, received_ms: int) -> Reading:
    """The reading in one MX1 frame; DecodeError if any header byte, length or the CRC is off."""
    if len(frame) < MIN_FRAME:
        raise DecodeError(f"MX1 frame of {len(frame)} bytes is shorter than the minimum {MIN_FRAME}")
    magic, version, kind_code, event_code, device, ts_s, seq, n = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise DecodeError(f"MX1 magic byte is 0x{magic:02x}, expected 0xa5")
    if version != VERSION:
        raise DecodeError(f"MX1 version {version} is not supported (only 1)")
    sent = int.from_bytes(frame[-2:], "big")
    computed = crc16_modbus(frame[:-2])
    if sent != computed:
        raise DecodeError(f"MX1 CRC mismatch: frame says 0x{sent:04X}, computed 0x{computed:04X}")
    kind = _MX1_KINDS.get(kind_code)
    if kind is None:
        raise DecodeError(f"MX1 kind code {kind_code} is unknown ({_KIND_CODES})")
    if event_code > _MAX_EVENT:
        raise DecodeError(f"MX1 event code {event_code} is unknown (0-{_MAX_EVENT})")
    metrics, unknown = _fields(frame, n)
    return Reading(
        device_id=str(device),
        kind=kind,
        event=Event(event_code),
        ts_ms=ts_s * 1000 if ts_s else received_ms,
        received_ms=received_ms,
        untimed=ts_s == 0,
        seq=seq,
        metrics=metrics,
        extra={UNKNOWN_TAGS: unknown} if unknown else {},
    )


def decode_mx1_report(
    payload: bytes, *, received_ms: int, topic_kind: Kind | None = None, topic_device: str | None = None
) -> Reading:
    """`decode_mx1` of a frame on a report topic: what the topic names (kind, device) must match."""
    r = decode_mx1(payload, received_ms=received_ms)
    if topic_kind is not None and r.kind != topic_kind:
        raise DecodeError(f"the MX1 frame says kind {r.kind.name} but the topic says {topic_kind.name}")
    if topic_device is not None and r.device_id != topic_device:
        raise DecodeError(f"the MX1 frame says device {r.device_id} but the topic says {topic_device[:64]!r}")
    return r


def _fields(frame: bytes, n: int) -> tuple[dict[str, Any], dict[str, str]]:
    metrics: dict[str, Any] = {}
    unknown: dict[str, str] = {}
    pos, end = HEADER_SIZE, len(frame) - 2
    for i in range(n):
        if pos + 2 > end:
            raise DecodeError(f"MX1 frame ends inside the header of field {i + 1} of {n}")
        tag, length = frame[pos], frame[pos + 1]
        pos += 2
        if pos + length > end:
            raise DecodeError(f"MX1 field 0x{tag:02x} says {length} bytes but only {end - pos} remain")
        value = frame[pos : pos + length]
        pos += length
        spec = _FIELDS.get(tag)
        if spec is None:
            key = f"0x{tag:02x}"
            if key in unknown:
                raise DecodeError(f"MX1 tag {key} appears twice")
            unknown[key] = value.hex()
            continue
        if spec.metric in metrics:
            raise DecodeError(f"MX1 tag 0x{tag:02x} ({spec.metric}) appears twice")
        metrics[spec.metric] = _value(tag, spec, value)
    if pos != end:
        raise DecodeError(f"MX1 frame has {end - pos} bytes after its {n} fields")
    return metrics, unknown


def _value(tag: int, spec: _Field, value: bytes) -> Any:
    size = spec.size
    if spec.repeated:
        if not value or len(value) % size:
            raise DecodeError(f"MX1 field 0x{tag:02x} ({spec.metric}) has {len(value)} bytes, not a multiple of {size}")
        raws = struct.unpack(f">{len(value) // size}{spec.fmt}", value)
        return validate_metric(spec.metric, [r / spec.divisor for r in raws])
    if len(value) != size:
        raise DecodeError(f"MX1 field 0x{tag:02x} ({spec.metric}) has {len(value)} bytes, expected {size}")
    raw = int.from_bytes(value, "big", signed=spec.signed)
    if spec.codes is not None:
        decoded = spec.codes.get(raw)
        if decoded is None:
            if spec.metric != "fault_code":
                raise DecodeError(f"MX1 field 0x{tag:02x} ({spec.metric}) has unknown code {raw}")
            decoded = f"code_{raw}"
        return validate_metric(spec.metric, decoded)
    if spec.metric == "cell_id":
        return format(raw, "X")
    number = raw / spec.divisor if spec.divisor != 1 else float(raw) if spec.as_float else raw
    return validate_metric(spec.metric, number) if spec.checked else number


def encode_mx1(r: Reading) -> bytes:
    """The MX1 frame of `r`. ValueError for what MX1 cannot carry: kind uitd, a device id that is
    not a decimal u64, a value out of its spec's range, an unencodable string. `extra` other
    than unknown tags is not carried; a missing seq is sent as 0."""
    if r.kind is Kind.uitd:
        raise ValueError(f"kind {r.kind.name} has no MX1 code")
    if not r.device_id.isdigit() or not r.device_id.isascii() or str(int(r.device_id)) != r.device_id:
        raise ValueError(f"device id {r.device_id!r} is not the decimal form of an unsigned 64-bit integer")
    fields = [_encode_field(name, value) for name, value in r.metrics.items()]
    fields.extend(_unknown_fields(r.extra.get(UNKNOWN_TAGS, {})))
    if len(fields) > 255:
        raise ValueError(f"MX1 carries at most 255 fields, the reading has {len(fields)}")
    try:
        ts_s = 0 if r.untimed else r.ts_ms // 1000
        head = _HEADER.pack(
            MAGIC, VERSION, int(r.kind), int(r.event), int(r.device_id), ts_s, r.seq or 0, len(fields)
        )
    except struct.error as e:
        raise ValueError(f"reading does not fit the MX1 header (ts, seq u16 or device id u64): {e}") from None
    body = head + b"".join(fields)
    return body + crc16_modbus(body).to_bytes(2, "big")


def _encode_field(name: str, value: Any) -> bytes:
    tag = _TAG_OF.get(name)
    if tag is None:
        raise ValueError(f"metric {name!r} has no MX1 tag")
    spec = _FIELDS[tag]
    values = value if spec.repeated else [value]
    raws = [_raw(spec, v) for v in values]
    try:
        data = struct.pack(f">{len(raws)}{spec.fmt}", *raws)
    except struct.error as e:
        raise ValueError(f"metric {name}={value!r} does not fit MX1 tag 0x{tag:02x}: {e}") from None
    if len(data) > 255:
        raise ValueError(f"metric {name} has too many values for one MX1 spec")
    return bytes((tag, len(data))) + data


def _raw(spec: _Field, v: Any) -> int:
    if spec.codes is not None:
        for code, decoded in spec.codes.items():
            if decoded == v and type(decoded) is type(v):
                return code
        m = _VENDOR_FAULT.fullmatch(v) if spec.metric == "fault_code" and isinstance(v, str) else None
        if m is None:
            raise ValueError(f"metric {spec.metric}={v!r} has no MX1 code")
        return int(m.group(1))
    if spec.metric == "cell_id":
        if not isinstance(v, str) or _HEX.fullmatch(v) is None:
            raise ValueError(f"cell_id {v!r} is not a hex string of at most 8 digits")
        return int(v, 16)
    if not is_number(v):
        raise ValueError(f"metric {spec.metric}={v!r} is not a number")
    return round(float(v) * spec.divisor)


def _unknown_fields(tags: dict[str, str]) -> list[bytes]:
    out = []
    for key, hex_value in sorted(tags.items()):
        if _TAG_KEY.fullmatch(key) is None or int(key, 16) in _FIELDS:
            raise ValueError(f"{UNKNOWN_TAGS} key {key!r} is not an unknown tag such as '0x7f'")
        data = bytes.fromhex(hex_value)
        if len(data) > 255:
            raise ValueError(f"MX1 tag {key} value is longer than 255 bytes")
        out.append(bytes((int(key, 16), len(data))) + data)
    return out
