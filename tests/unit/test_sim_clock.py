"""SimClock: manual time for tests, compressed real time for playback."""

from __future__ import annotations

import pytest

from simulators.clock import SimClock

T0 = 1_795_341_600_000


class FakeTime:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


async def test_manual_clock_moves_only_when_told() -> None:
    c = SimClock(T0)
    assert c.manual and c.now_ms() == T0
    c.advance(1500)
    assert c.now_ms() == T0 + 1500
    await c.sleep_until(T0 + 60_000)
    assert c.now_ms() == T0 + 60_000
    await c.sleep_until(T0)  # the past: nothing happens
    assert c.now_ms() == T0 + 60_000
    await c.sleep(0.0001)
    assert c.now_ms() == T0 + 60_001
    with pytest.raises(ValueError):
        c.advance(-1)


async def test_compressed_clock_follows_real_time() -> None:
    real = FakeTime()
    c = SimClock(T0, compression=60, monotonic=real.monotonic, sleep=real.sleep)
    real.t += 1.0
    assert c.now_ms() == T0 + 60_000  # one real second is a scenario minute
    await c.sleep_until(T0 + 3_600_000)
    assert c.now_ms() >= T0 + 3_600_000
    assert sum(real.slept) == pytest.approx(59.0)  # the rest of the hour, compressed 60x
    assert c.real_seconds(3_600_000) == pytest.approx(60.0)
    await c.sleep(120)
    assert real.slept[-1] == pytest.approx(2.0)


def test_compression_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SimClock(T0, compression=0)


def test_live_clock_starts_near_now() -> None:
    import time

    c = SimClock.live(compression=10)
    assert abs(c.now_ms() - time.time() * 1000) < 5_000 and not c.manual
