"""One report from an `evt`/`tel` topic: JSON (first byte `{`) or an MX1 frame (first byte 0xA5)."""

from __future__ import annotations

from devices.kinds import Kind
from devices.reading import Reading

from .errors import DecodeError
from .json_report import decode_json_report
from .mx1 import MAGIC, decode_mx1


def decode_report(
    payload: bytes, *, received_ms: int, topic_kind: Kind | None = None, topic_device: str | None = None
) -> Reading:
    """Decode by the first byte; what the topic names (kind, device) must match the report."""
    if payload[:1] == b"{":
        return decode_json_report(payload, received_ms=received_ms, topic_kind=topic_kind, topic_device=topic_device)
    if payload[:1] == bytes((MAGIC,)):
        r = decode_mx1(payload, received_ms=received_ms)
        if topic_kind is not None and r.kind != topic_kind:
            raise DecodeError(f"the MX1 frame says kind {r.kind.name} but the topic says {topic_kind.name}")
        if topic_device is not None and r.device_id != topic_device:
            raise DecodeError(f"the MX1 frame says device {r.device_id} but the topic says {topic_device[:64]!r}")
        return r
    if not payload:
        raise DecodeError("the payload is empty")
    raise DecodeError(f"the payload starts with byte 0x{payload[0]:02x}: neither JSON ('{{') nor MX1 (0xa5)")
