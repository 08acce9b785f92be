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


def repeats(keys: np.ndarray) -> np.ndarray:
    """A mask of the elements whose key (a non-negative int, such as a slot) occurs more than once."""
    if keys.shape[0] < 2:
        return np.zeros(keys.shape[0], bool)
    s = np.sort(keys)
    twice = np.zeros(int(s[-1]) + 1, bool)
    twice[s[1:][s[1:] == s[:-1]]] = True
    return twice[keys]


def members(keys: np.ndarray, of: np.ndarray) -> np.ndarray:
    """A mask of the `keys` that are among `of` (np.isin without its overhead on small arrays)."""
    if of.shape[0] == 0:
        return np.zeros(keys.shape[0], bool)
    values = np.sort(of)
    at = np.minimum(np.searchsorted(values, keys), values.shape[0] - 1)
    return values[at] == keys


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
        return self._rank(group, ts, 1 if inclusive else -1)

    def between(self, group: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each query, the range [start, stop) of the points of its group with lo <= ts <= hi."""
        m = group.shape[0]
        bias = np.ones(2 * m, np.int8)
        bias[:m] = -1
        bounds = self._rank(np.concatenate([group, group]), np.concatenate([lo, hi]), bias)
        return bounds[:m], bounds[m:]

    def _rank(self, group: np.ndarray, ts: np.ndarray, bias: int | np.ndarray) -> np.ndarray:
        """`rank` of queries that sort before (bias -1) or after (bias 1) the points of equal time,
        all in one merged sort."""
        n, m = len(self), group.shape[0]
        if m == 0:
            return np.zeros(0, np.int64)
        key = np.zeros(n + m, np.int8)
        key[n:] = bias
        merged = np.lexsort((key, np.concatenate([self.ts, ts]), np.concatenate([self.group, group])))
        at_query = np.flatnonzero(merged >= n)
        out = np.empty(m, np.int64)
        out[merged[at_query] - n] = at_query - np.arange(m)
        return out

    def last_at_or_before(self, group: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """For each query, the index of the last point of its group with a time <= ts, or -1."""
        i = self.rank(group, ts, inclusive=True) - 1
        found = i >= 0
        found[found] = self.group[i[found]] == group[found]
        return np.where(found, i, -1)
