"""The one clock type of the service: epoch milliseconds, injectable so tests and simulations
can run on their own time."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
