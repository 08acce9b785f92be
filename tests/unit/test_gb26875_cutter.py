"""The listener's `FrameCutter`: garbage in bursts, false starts never denied, frames found behind them."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.codecs.gb26875 import BadFrame, Command, Frame, encode_frame
from ingest.transports.gb26875_stream import GARBAGE_HEAD, FrameCutter, Garbage
from miaoxiang.settings import SettingsError, load_settings

HEARTBEAT = encode_frame(Frame(0, (1, 0), None, 889, 1, Command.send))
FIRE = encode_frame(Frame(1, (1, 0), None, 889, 1, Command.send, bytes.fromhex("15 01 03 00 00 00 00 00 00")))


def kinds(items: list[Frame | BadFrame | Garbage]) -> list[str]:
    return [type(i).__name__ if not isinstance(i, Garbage) else f"Garbage({i.size})" for i in items]


def test_a_flood_of_at_signs_is_one_burst_and_the_frame_behind_it_is_found() -> None:
    cutter = FrameCutter()
    assert kinds(cutter.feed(b"@" * 4096 + HEARTBEAT)) == ["Garbage(4096)", "Frame"]
    assert cutter.skipped == 4096 and cutter.pending == 0


def test_an_open_burst_is_reported_by_flush_with_its_head_capped() -> None:
    cutter = FrameCutter()
    assert cutter.feed(b"@" * 10_000) == []
    [garbage] = cutter.flush()
    assert garbage == Garbage(b"@" * GARBAGE_HEAD, 10_000)


def test_a_burst_split_over_reads_stays_one_burst() -> None:
    cutter = FrameCutter()
    out = [item for chunk in (b"GET / HTTP", b"/1.0\r\n\r\n@", b"@garbage", HEARTBEAT) for item in cutter.feed(chunk)]
    assert out[0] == Garbage(b"GET / HTTP/1.0\r\n\r\n@@garbage", 27) and kinds(out[1:]) == ["Frame"]


def test_a_checksum_failure_is_a_bad_frame_even_after_garbage() -> None:
    bad = bytearray(FIRE)
    bad[-3] ^= 0x55
    items = FrameCutter().feed(b"xx" + bytes(bad) + HEARTBEAT)
    assert kinds(items) == ["Garbage(2)", "BadFrame", "Frame"] and "checksum" in str(items[1])


def test_a_bad_length_is_a_bad_frame_at_a_frame_boundary_only() -> None:
    broken = bytearray(HEARTBEAT)
    broken[24:26] = b"\xff\x07"  # declares 2047 bytes of data, over the 1024 allowed
    at_boundary = FrameCutter().feed(HEARTBEAT + bytes(broken) + HEARTBEAT)
    assert kinds(at_boundary) == ["Frame", "BadFrame", "Garbage(3)", "Frame"]  # the bad header, then its tail
    bad = at_boundary[1]
    assert isinstance(bad, BadFrame) and bad.raw == bytes(broken[:27]) and "exceeds 1024" in str(bad)
    amid_garbage = FrameCutter().feed(b"zz" + bytes(broken) + HEARTBEAT)
    assert kinds(amid_garbage) == [f"Garbage({2 + len(broken)})", "Frame"]


def test_a_reserved_command_byte_is_a_false_start() -> None:
    odd = encode_frame(Frame(0, (1, 0), None, 889, 1, 64))
    assert kinds(FrameCutter().feed(odd + HEARTBEAT)) == [f"Garbage({len(odd)})", "Frame"]


def test_a_partial_frame_given_up_is_reported_once_with_its_bytes() -> None:
    cutter = FrameCutter()
    cutter.feed(HEARTBEAT + FIRE[:20])
    [truncated] = cutter.flush()
    assert isinstance(truncated, BadFrame) and truncated.raw == FIRE[:20] and "truncated" in str(truncated)


def test_the_offset_names_the_partial_frame_held_back() -> None:
    cutter = FrameCutter()
    cutter.feed(HEARTBEAT[:5])
    cutter.feed(HEARTBEAT[5:10])
    assert (cutter.offset, cutter.pending) == (0, 10)
    cutter.feed(HEARTBEAT[10:] + FIRE[:3])
    assert (cutter.offset, cutter.pending) == (len(HEARTBEAT), 3)
    held, garbage = cutter.abandon()
    assert (held, garbage, cutter.pending) == (FIRE[:3], None, 0)


@given(st.binary(max_size=600), st.integers(1, 64))
def test_every_byte_is_a_frame_a_bad_frame_or_garbage_however_it_is_split(noise: bytes, step: int) -> None:
    stream = noise + FIRE + noise + HEARTBEAT
    cutter = FrameCutter()
    items = [i for pos in range(0, len(stream), step) for i in cutter.feed(stream[pos : pos + step])] + cutter.flush()
    frames = [i for i in items if isinstance(i, Frame)]
    assert frames[-1].raw == HEARTBEAT and FIRE in [f.raw for f in frames]
    assert not any(isinstance(a, Garbage) and isinstance(b, Garbage) for a, b in itertools.pairwise(items))
    assert sum(1 for i in items if isinstance(i, BadFrame)) <= 3  # at frame boundaries only, never per byte


@pytest.mark.parametrize("value", ['["10.0.0.0/33"]', '["example.com"]'])
def test_the_allow_list_setting_takes_cidrs_only(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MIAOXIANG_GB26875_ALLOW_PEERS", value)
    with pytest.raises(SettingsError, match=r"GB26875_ALLOW_PEERS.*not a CIDR"):
        load_settings()


def test_the_listener_limits_have_defaults_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert (defaults.gb26875_allow_peers, defaults.gb26875_max_presession_per_peer) == ([], 8)
    assert (defaults.gb26875_presession_timeout_s, defaults.gb26875_frame_deadline_s) == (20.0, 10.0)
    assert defaults.gb26875_takeover_silence_s == 225.0
    monkeypatch.setenv("MIAOXIANG_GB26875_ALLOW_PEERS", '["10.8.0.0/16", "::1"]')
    monkeypatch.setenv("MIAOXIANG_GB26875_MAX_PRESESSION_PER_PEER", "2")
    s = load_settings()
    assert s.gb26875_allow_peers == ["10.8.0.0/16", "::1"] and s.gb26875_max_presession_per_peer == 2
