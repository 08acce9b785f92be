"""Sorted (group, time) points and window queries over them, without Python loops.

Groups are detectors (slots), units or NB cells; times are epoch milliseconds. Queries are
answered by one merged sort of points and query bounds, so any int64 times work (no packing
of group and time into one key that could overflow).
"""

from __future__ import annotations

import numpy as np

NO_TIME = np.iinfo(np.int64).min  # "no such time" in int64 time columns


def run_starts(keys: np.ndarray) -> np.ndarray:
    """For sorted `keys`, a mask of the first element of every run of equal keys."""
    first = np.ones(keys.shape[0], bool)
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return first


def run_ends(keys: np.ndarray) -> np.ndarray:
    """For sorted `keys`, a mask of the last element of every run of equal keys."""
    last = np.ones(keys.shape[0], bool)
    np.not_equal(keys[1:], keys[:-1], out=last[:-1])
    return last


def covered(n: int, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """A mask of the positions 0..n-1 inside any of the ranges [start, stop)."""
    depth = np.bincount(start, minlength=n + 1)[: n + 1] - np.bincount(stop, minlength=n + 1)[: n + 1]
    return np.cumsum(depth[:n]) > 0


class Timeline:
    """Points sorted by group, then time, then input order; `order[i]` is the input index of point i."""

    def __init__(self, group: np.ndarray, ts: np.ndarray) -> None:
        self.order = np.lexsort((ts, group))
        self.group = group[self.order]
        self.ts = ts[self.order]

    def __len__(self) -> int:
        return int(self.order.shape[0])

    def rank(self, group: np.ndarray, ts: np.ndarray, *, inclusive: bool) -> np.ndarray:
        """For each query (group, ts), how many points sort before it: those of lower groups and
        those of its group with a time < ts (<= ts when `inclusive`)."""
        n, m = len(self), group.shape[0]
        if m == 0:
            return np.zeros(0, np.int64)
        bias = np.zeros(n + m, np.int8)
        bias[n:] = 1 if inclusive else -1  # queries sort after (before) points of equal time
        merged = np.lexsort((bias, np.concatenate([self.ts, ts]), np.concatenate([self.group, group])))
        is_point = merged < n
        before = np.cumsum(is_point)
        at_query = np.flatnonzero(~is_point)
        out = np.empty(m, np.int64)
        out[merged[at_query] - n] = before[at_query]
        return out

    def between(self, group: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query, the range [start, stop) of the points of its group with lo <= ts <= hi."""
        return self.rank(group, lo, inclusive=False), self.rank(group, hi, inclusive=True)

    def last_at_or_before(self, group: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """For each query, the index of the last point of its group with a time <= ts, or -1."""
        i = self.rank(group, ts, inclusive=True) - 1
        found = i >= 0
        found[found] = self.group[i[found]] == group[found]
        return np.where(found, i, -1)
