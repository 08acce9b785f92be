"""A clock the test moves by hand: epoch milliseconds, as `devices.clock.Clock` answers them."""

from __future__ import annotations


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
