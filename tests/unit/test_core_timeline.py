"""Window queries over sorted (group, time) points against brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.core.timeline import Timeline, covered

points = st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 5)), max_size=30)
queries = st.lists(st.tuples(st.integers(0, 4), st.integers(-7, 7), st.integers(0, 3)), max_size=10)


@settings(max_examples=200, deadline=None)
@given(points, queries)
def test_between_and_last_at_or_before_match_brute_force(pts: list, qs: list) -> None:
    group = np.array([p[0] for p in pts], np.int64)
    ts = np.array([p[1] for p in pts], np.int64)
    line = Timeline(group, ts)
    assert [(group[i], ts[i]) for i in line.order] == sorted(zip(group, ts))
    qg = np.array([q[0] for q in qs], np.int64)
    qt = np.array([q[1] for q in qs], np.int64)
    width = np.array([q[2] for q in qs], np.int64)
    lo, hi = line.between(qg, qt - width, qt + width)
    last = line.last_at_or_before(qg, qt)
    for k, (g, t, w) in enumerate(qs):
        inside = sorted(i for i in range(len(pts)) if pts[i][0] == g and t - w <= pts[i][1] <= t + w)
        assert sorted(line.order[lo[k]:hi[k]].tolist()) == inside
        before = [i for i in range(len(pts)) if pts[i][0] == g and pts[i][1] <= t]
        want = max(before, key=lambda i: (pts[i][1], i)) if before else None
        assert (line.order[last[k]] if last[k] >= 0 else None) == want


@given(st.integers(0, 20), st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=8))
def test_covered_marks_the_union_of_ranges(n: int, ranges: list) -> None:
    ranges = [(min(a, b, n), min(max(a, b), n)) for a, b in ranges]
    got = covered(n, np.array([a for a, _ in ranges], np.int64), np.array([b for _, b in ranges], np.int64))
    assert got.tolist() == [any(a <= i < b for a, b in ranges) for i in range(n)]
