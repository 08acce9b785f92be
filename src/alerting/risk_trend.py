"""Trend warnings per region or industry against each group's own baseline (pure numpy).

Each group (a region prefix or an industry) has weekly alarm counts; the last column is the
current week (the last 7 days). Its baseline is the mean of its previous weeks, floored at
`min_baseline` so that a group with a silent or short history is not flagged for its first
few alarms. The current count k is surprising when the Poisson upper tail P(X >= k | λ) is
below `p_max` and k >= `min_count`; such a group gets a `warning` trend alert saying why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

P_MAX = 0.001
MIN_COUNT = 3
MIN_BASELINE = 0.5  # alarms per week


def poisson_upper_tail(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """P(X >= k) for X ~ Poisson(lam), elementwise; `k` non-negative integers, `lam` > 0.

    Sums the pmf below k in log space (one (n, max k) matrix), so it is exact to float64
    rounding for the weekly counts of a group (k up to a few thousand)."""
    k = np.asarray(k, np.int64)
    lam = np.maximum(np.asarray(lam, np.float64), 1e-12)
    kmax = int(k.max(initial=0))
    if kmax == 0:
        return np.ones(k.shape)
    i = np.arange(kmax)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, kmax, dtype=np.float64)))])
    log_pmf = -lam[..., None] + i * np.log(lam)[..., None] - log_fact
    below = np.where(i < k[..., None], np.exp(log_pmf), 0.0).sum(axis=-1)
    return np.clip(1.0 - below, 0.0, 1.0)


def weekly_matrix(group: np.ndarray, age_weeks: np.ndarray, count: np.ndarray, n_groups: int, weeks: int) -> np.ndarray:
    """(n_groups, weeks) counts from rows (group index, age in whole weeks, count); the last
    column is age 0 (the current week). Rows older than `weeks` are ignored."""
    out = np.zeros((n_groups, weeks))
    keep = (age_weeks >= 0) & (age_weeks < weeks) & (group >= 0)
    np.add.at(out, (group[keep], weeks - 1 - age_weeks[keep]), count[keep])
    return out


def region_prefix(regions: list[str], depth: int) -> list[str]:
    """The first `depth` segments of each region path."""
    return ["/".join(r.split("/")[:depth]) for r in regions]


def group_index(keys: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct keys and each key's index into them."""
    names, inverse = np.unique(np.array(keys, dtype=object), return_inverse=True)
    return [str(n) for n in names], inverse.astype(np.int64)


@dataclass(frozen=True, slots=True)
class TrendAlert:
    group: str
    count: int  # alarms in the current week
    baseline: float  # expected alarms per week (the floored mean of the previous weeks)
    weeks: int  # weeks the baseline covers
    p_value: float  # P(X >= count) under Poisson(baseline)
    severity: str = "warning"

    @property
    def why(self) -> str:
        return (f"{self.count} alarms in the last 7 days against a baseline of {self.baseline:.1f}/week over the "
                f"previous {self.weeks} weeks: P(X >= {self.count}) = {self.p_value:.2g} "
                f"under Poisson({self.baseline:.2f})")


def trend_alerts(
    groups: list[str], weekly: np.ndarray, *, p_max: float = P_MAX, min_count: int = MIN_COUNT,
    min_baseline: float = MIN_BASELINE,
) -> list[TrendAlert]:
    """A `warning` for each group whose current week is improbably high for its own baseline."""
    if weekly.ndim != 2 or weekly.shape[1] < 2:
        return []
    baseline = np.maximum(weekly[:, :-1].mean(axis=1), min_baseline)
    current = weekly[:, -1].astype(np.int64)
    p = poisson_upper_tail(current, baseline)
    hits = np.flatnonzero((p < p_max) & (current >= min_count))
    return [TrendAlert(groups[g], int(current[g]), float(baseline[g]), weekly.shape[1] - 1, float(p[g])) for g in hits]


@dataclass(frozen=True, slots=True)
class GroupAggregate:
    group: str
    units: int
    by_colour: tuple[int, int, int, int]  # units per colour, in `alerting.risk.COLOURS` order
    mean_score: float
    max_score: float


def aggregate(keys: list[str], score: np.ndarray, colour: np.ndarray) -> list[GroupAggregate]:
    """Units per colour, mean and max score per group key, groups sorted by key."""
    if not keys:
        return []
    names, g = group_index(keys)
    m = len(names)
    units = np.bincount(g, minlength=m)
    by_colour = np.zeros((m, 4), np.int64)
    np.add.at(by_colour, (g, colour.astype(np.int64)), 1)
    total = np.bincount(g, weights=score, minlength=m)
    peak = np.full(m, -np.inf)
    np.maximum.at(peak, g, score)
    return [
        GroupAggregate(names[i], int(units[i]), tuple(int(c) for c in by_colour[i]),  # type: ignore[arg-type]
                       float(total[i] / units[i]), float(peak[i]))
        for i in range(m)
    ]
