"""GB/T 26875.3 frames: the standard's example frames byte by byte, errors, round trips, the
reassembler on split, merged, garbled and corrupted streams, and fuzzing."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.codecs.errors import DecodeError
from ingest.codecs.gb26875 import (
    BadFrame,
    Command,
    Frame,
    FrameReassembler,
    decode_frame,
    encode_frame,
    peek_header,
    reply,
)


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# Worked examples of GB/T 26875.3-2011 (device 889 = 79 03 00 00 00 00, centre 88888 = 38 5B 01 00 00 00).
FIRE = hx(
    "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 30 00 02"
    " 02 01 01 01 28 0A 00 02 00 02 00"
    " 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 00"
    " 02 3A 09 1A 09 0C 46 23 23"
)
CENTRE_CONFIRM = hx("40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23")
CENTRE_DENY = hx("40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 06 AE 23 23")
MAIN_POWER = hx(
    "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 02 15 01 08 02 3A 09 1A 09 0C"
    " 42 23 23"
)
READ_STATUS = hx("40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 51 01 00 FE 23 23")
DUTY_CHECK = hx("40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 5B 01 0A 0F 23 23")
EXAMPLES = [FIRE, CENTRE_CONFIRM, CENTRE_DENY, MAIN_POWER, READ_STATUS, DUTY_CHECK]
T = datetime(2012, 9, 26, 9, 58, 32)


def reference_checksum(raw: bytes) -> int:
    """Plain loop over the 25 control-unit bytes and the data (everything between @@ and the checksum)."""
    total = 0
    for b in raw[2 : len(raw) - 3]:
        total = (total + b) % 256
    return total


def test_standard_fire_example_decodes_field_by_field() -> None:
    f = decode_frame(FIRE)
    assert (f.serial, f.version, f.sent_at) == (1, (1, 1), T)
    assert (f.source, f.dest, f.command) == (889, 88888, Command.send)
    assert f.data == FIRE[27:75] and len(f.data) == 0x30
    assert f.raw == FIRE


@pytest.mark.parametrize("raw", EXAMPLES)
def test_every_standard_example_checks_and_reencodes_identically(raw: bytes) -> None:
    assert raw[-3] == reference_checksum(raw)
    assert encode_frame(decode_frame(raw)) == raw


def test_hand_built_heartbeat_encodes_byte_by_byte() -> None:
    frame = Frame(serial=0, version=(1, 1), sent_at=T, source=889, dest=88888, command=Command.send)
    # 00+00+01+01+20+3A+09+1A+09+0C+79+03+38+5B+01+02 = 422 = 0x1A6 -> A6
    expected = hx("40 40 00 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 00 00 02 A6 23 23")
    assert encode_frame(frame) == expected


def test_hand_built_frame_with_wide_fields_encodes_little_endian() -> None:
    frame = Frame(0xBEEF, (1, 7), None, 0x0102030405FF, 0xFFFFFFFFFFFF, Command.response, b"\x19\x01\x01\x02")
    raw = encode_frame(frame)
    assert raw[:27] == hx("40 40 EF BE 01 07 00 00 00 00 00 00 FF 05 04 03 02 01 FF FF FF FF FF FF 04 00 05")
    assert raw[27:31] == hx("19 01 01 02") and raw[-2:] == b"##"
    assert raw[-3] == reference_checksum(raw)


def test_confirm_and_deny_replies_match_the_standard() -> None:
    fire = decode_frame(FIRE)
    at = T.replace(second=35)
    assert encode_frame(reply(fire, Command.confirm, at)) == CENTRE_CONFIRM
    assert encode_frame(reply(fire, Command.deny, at)) == CENTRE_DENY


def test_sent_at_none_is_six_zero_bytes_and_an_invalid_time_decodes_to_none() -> None:
    raw = encode_frame(Frame(5, (1, 0), None, 1, 2, Command.send))
    assert raw[6:12] == bytes(6) and decode_frame(raw).sent_at is None
    bad_month = bytearray(raw)
    bad_month[10] = 13
    bad_month[-3] = reference_checksum(bytes(bad_month))
    assert decode_frame(bytes(bad_month)).sent_at is None


def corrupt(raw: bytes, index: int, value: int) -> bytes:
    b = bytearray(raw)
    b[index] = value
    return bytes(b)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (corrupt(FIRE, -3, 0x47), "checksum 0x47 does not match the computed 0x46"),
        (corrupt(FIRE, -1, 0x24), "does not end with ##"),
        (corrupt(FIRE, 0, 0x41), "does not start with @@"),
        (FIRE[:29], "shorter than the 30-byte minimum"),
        (FIRE[:-1], "declares 48 data bytes, so 78 bytes in all, but has 77"),
        (corrupt(corrupt(CENTRE_CONFIRM, 24, 0x01), 25, 0x04), "declared data length 1025 exceeds 1024"),
    ],
)
def test_bad_frames_raise_with_a_precise_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadFrame) as info:
        decode_frame(raw)
    assert reason in info.value.reason and info.value.raw == raw


def test_data_of_exactly_1024_bytes_is_accepted_and_1025_refused() -> None:
    ok = Frame(1, (1, 0), T, 1, 2, Command.send, bytes(range(256)) * 4)
    assert decode_frame(encode_frame(ok)) == ok
    with pytest.raises(ValueError):
        encode_frame(Frame(1, (1, 0), T, 1, 2, Command.send, bytes(1025)))


def test_encode_refuses_fields_out_of_range() -> None:
    for frame in (
        Frame(65536, (1, 0), T, 1, 2, 2),
        Frame(1, (1, 256), T, 1, 2, 2),
        Frame(1, (1, 0), T, 2**48, 2, 2),
        Frame(1, (1, 0), T, 1, 2, 256),
        Frame(1, (1, 0), datetime(2100, 1, 1), 1, 2, 2),
    ):
        with pytest.raises(ValueError):
            encode_frame(frame)


def test_peek_header_reads_the_control_unit_of_a_frame_that_fails_its_checksum() -> None:
    header = peek_header(corrupt(FIRE, -3, 0))
    assert header is not None and (header.serial, header.source, header.dest) == (1, 889, 88888)
    assert peek_header(FIRE[:26]) is None and peek_header(b"xx" + FIRE) is None


# --- property tests -------------------------------------------------------------------------

times = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)).map(
        lambda t: t.replace(microsecond=0)
    ),
)
frames = st.builds(
    Frame,
    serial=st.integers(0, 0xFFFF),
    version=st.tuples(st.integers(0, 255), st.integers(0, 255)),
    sent_at=times,
    source=st.integers(0, 2**48 - 1),
    dest=st.integers(0, 2**48 - 1),
    command=st.integers(0, 255),
    data=st.binary(max_size=1024),
)


@settings(max_examples=200)
@given(frames)
def test_frames_round_trip(frame: Frame) -> None:
    raw = encode_frame(frame)
    assert len(raw) == 30 + len(frame.data) and raw[-3] == reference_checksum(raw)
    assert decode_frame(raw) == frame


@settings(max_examples=300)
@given(st.binary(max_size=1100))
def test_fuzz_decode_frame_random_bytes(raw: bytes) -> None:
    try:
        decode_frame(raw)
    except DecodeError:
        pass


@settings(max_examples=300)
@given(frames, st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_decode_frame_mutated_frames(frame: Frame, edits: list[tuple[int, int]]) -> None:
    raw = bytearray(encode_frame(frame))
    for at, value in edits:
        raw[at % len(raw)] = value
    try:
        got = decode_frame(bytes(raw))
    except DecodeError:
        return
    assert encode_frame(got) == bytes(raw) or got.sent_at is None  # an invalid time label reads as None


# --- reassembler ------------------------------------------------------------------------------

def feed_all(chunks: list[bytes]) -> list[Frame | BadFrame]:
    r = FrameReassembler()
    out: list[Frame | BadFrame] = []
    for c in chunks:
        out.extend(r.feed(c))
    return out


def test_reassembler_joins_a_frame_split_at_every_position() -> None:
    for cut in range(1, len(FIRE)):
        assert feed_all([FIRE[:cut], FIRE[cut:]]) == [decode_frame(FIRE)]


def test_reassembler_byte_by_byte_and_several_in_one_read() -> None:
    stream = FIRE + CENTRE_CONFIRM + MAIN_POWER
    expected = [decode_frame(x) for x in (FIRE, CENTRE_CONFIRM, MAIN_POWER)]
    assert feed_all([stream]) == expected
    assert feed_all([bytes([b]) for b in stream]) == expected


def test_reassembler_skips_garbage_before_the_start_marker() -> None:
    r = FrameReassembler()
    assert r.feed(b"\x00junk@") == []
    assert r.pending == 1  # a lone '@' may begin '@@'
    assert r.feed(b"x@#" + FIRE) == [decode_frame(FIRE)]
    assert r.skipped == len(b"\x00junk@x@#") and r.pending == 0


def test_reassembler_reports_a_bad_checksum_and_keeps_the_next_frame() -> None:
    bad = corrupt(MAIN_POWER, -3, 0x00)
    out = feed_all([FIRE + bad + CENTRE_CONFIRM])
    assert out[0] == decode_frame(FIRE) and out[2] == decode_frame(CENTRE_CONFIRM)
    assert isinstance(out[1], BadFrame) and "checksum" in out[1].reason and out[1].raw == bad


def test_reassembler_survives_a_corrupted_length_without_losing_the_frames_behind_it() -> None:
    too_long = corrupt(corrupt(CENTRE_CONFIRM, 24, 0xFF), 25, 0x7F)  # 32767 > 1024
    short_claim = corrupt(CENTRE_CONFIRM, 24, 0x05)  # says 5 data bytes: ## not where it should be
    out = feed_all([too_long + FIRE, short_claim + MAIN_POWER])
    good = [x for x in out if isinstance(x, Frame)]
    bad = [x for x in out if isinstance(x, BadFrame)]
    assert good == [decode_frame(FIRE), decode_frame(MAIN_POWER)]
    assert "exceeds 1024" in bad[0].reason and bad[0].raw == too_long[:27]
    assert any("no ## where" in b.reason for b in bad)


def test_reassembler_reports_a_bad_end_marker() -> None:
    out = feed_all([corrupt(FIRE, -2, 0x00) + FIRE])
    assert isinstance(out[0], BadFrame) and "no ##" in out[0].reason
    assert out[-1] == decode_frame(FIRE)


def test_flush_reports_a_truncated_frame_and_recovers_what_follows_its_start() -> None:
    r = FrameReassembler()
    wrong_length = corrupt(CENTRE_CONFIRM, 24, 200)  # claims 200 data bytes; only FIRE (78) follows
    assert r.feed(wrong_length[:-3] + FIRE) == []
    out = r.flush()
    assert isinstance(out[0], BadFrame) and "truncated" in out[0].reason
    assert decode_frame(FIRE) in out and r.pending == 0


chunks_of = st.lists(st.integers(1, 64), min_size=1, max_size=40)


@settings(max_examples=200)
@given(st.lists(st.tuples(frames, st.binary(max_size=20).filter(lambda g: b"@" not in g)), max_size=5), chunks_of)
def test_reassembler_recovers_every_frame_from_any_chunking(parts: list[tuple[Frame, bytes]], sizes: list[int]) -> None:
    stream = b"".join(garbage + encode_frame(f) for f, garbage in parts)
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        chunks.append(stream[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    assert feed_all(chunks) == [f for f, _ in parts]


@settings(max_examples=300)
@given(st.binary(max_size=3000), chunks_of)
def test_fuzz_reassembler_never_raises(noise: bytes, sizes: list[int]) -> None:
    rng = random.Random(noise)
    stream = bytearray(noise)
    for example in rng.sample(EXAMPLES, 3):  # splice real frames into the noise
        at = rng.randrange(len(stream) + 1)
        stream[at:at] = example
    r = FrameReassembler()
    pos, i = 0, 0
    out: list[Frame | BadFrame] = []
    while pos < len(stream):
        size = sizes[i % len(sizes)]
        out.extend(r.feed(bytes(stream[pos : pos + size])))
        pos, i = pos + size, i + 1
    out.extend(r.flush())
    assert r.pending == 0
    for item in out:
        assert isinstance(item, (Frame, BadFrame))
        if isinstance(item, Frame):
            assert decode_frame(item.raw) == item
