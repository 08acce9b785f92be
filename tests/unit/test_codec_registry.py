"""Dispatch of one topic report by its first byte."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.errors import DecodeError
from ingest.codecs.json_report import encode_json_report
from ingest.codecs.mx1 import encode_mx1
from ingest.codecs.registry import decode_report

READING = Reading(
    "868120301234567", Kind.water, Event.report, 1_795_341_600_000, 1_795_341_600_100, seq=3, metrics={"pressure_mpa": 0.35}
)


@pytest.mark.parametrize("encode", [encode_json_report, encode_mx1])
def test_json_and_mx1_decode_to_the_same_reading(encode: Callable[[Reading], bytes]) -> None:
    assert (
        decode_report(encode(READING), received_ms=READING.received_ms, topic_kind=Kind.water, topic_device=READING.device_id)
        == READING
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b" {}", "starts with byte 0x20"),
        (b"[{}]", "starts with byte 0x5b"),
        (b"\xa4\x01", "starts with byte 0xa4"),
        (b"\xa5\x01", "shorter than the minimum"),
        (b"{", "not valid JSON"),
    ],
)
def test_other_first_bytes_are_decode_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_report(payload, received_ms=0, topic_kind=Kind.smoke, topic_device="d1")
