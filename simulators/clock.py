"""Scenario time: an injected clock that runs by hand (tests) or follows real time, compressed."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable


class SimClock:
    """Epoch milliseconds of scenario time.

    Manual (`monotonic=None`): time moves only by `advance` and `sleep_until`, so a test plays an
    hour of scenario instantly. Live: scenario time is `start_ms` plus `compression` times the
    real time elapsed since creation (plus any advances): at compression 60 an hour of scenario
    plays in a minute. Hand `clock.now_ms` to the service (`create_app(settings, clock=...)`) so
    its receive times and offline sweep run on the same scenario time as the devices.
    """

    def __init__(
        self,
        start_ms: int,
        compression: float = 1.0,
        *,
        monotonic: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if compression <= 0:
            raise ValueError(f"compression must be positive, got {compression}")
        self.start_ms = start_ms
        self.compression = compression
        self._monotonic = monotonic
        self._real0 = monotonic() if monotonic is not None else 0.0
        self._sleep = sleep
        self._advanced_ms = 0

    @classmethod
    def live(cls, compression: float = 1.0, start_ms: int | None = None) -> SimClock:
        """A clock anchored at real now (or `start_ms`) that follows `time.monotonic`."""
        return cls(time.time_ns() // 1_000_000 if start_ms is None else start_ms, compression, monotonic=time.monotonic)

    @property
    def manual(self) -> bool:
        return self._monotonic is None

    def now_ms(self) -> int:
        elapsed = 0.0 if self._monotonic is None else (self._monotonic() - self._real0) * 1000.0 * self.compression
        return self.start_ms + self._advanced_ms + int(elapsed)

    def advance(self, ms: int) -> None:
        """Move scenario time forward by `ms` without waiting."""
        if ms < 0:
            raise ValueError("a clock does not go backwards")
        self._advanced_ms += ms

    def real_seconds(self, scenario_ms: float) -> float:
        """How long `scenario_ms` of scenario time takes in real seconds."""
        return scenario_ms / 1000.0 / self.compression

    async def sleep(self, scenario_s: float) -> None:
        """Let `scenario_s` seconds of scenario time pass (at least 1 ms when manual)."""
        if self._monotonic is None:
            self._advanced_ms += max(1, math.ceil(scenario_s * 1000))
        else:
            await self._sleep(scenario_s / self.compression)

    async def sleep_until(self, at_ms: int) -> None:
        """Return once scenario time has reached `at_ms` (at once, by advancing, when manual)."""
        while (delta := at_ms - self.now_ms()) > 0:
            if self._monotonic is None:
                self._advanced_ms += delta
            else:
                await self._sleep(self.real_seconds(delta))
