"""Four-colour (四色) risk grading of units and trend warnings per region or industry (pure numpy).

Unit score, 0-100, the sum of four capped parts (weights below, all per unit):
  active alarms  critical 40, major 20, minor 8, warning 3 each; capped at 60
  history (90 d) confirmed fires 15 each, false alarms 2 each; capped at 30
  device health  25 x offline share + 15 x fault share + 10 x low-battery share + 10 per unresolved tamper; capped at 40
  coverage       40 when the unit has no working (online, not faulty) detector
Colour: red when an active fire-class alarm needs an immediate response or score >= 60; orange >= 35;
yellow >= 15; green otherwise. Every unit is recomputed in one vectorized pass.

Trends: per group (region path or industry) weekly alarm counts; the current week's count k is
compared with the group's own baseline mean λ of the previous weeks; a Poisson upper tail
P(X >= k | λ) below `p_max` (with at least `min_count` alarms) raises a `warning` trend alert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS = ("green", "yellow", "orange", "red")
SEVERITY_WEIGHTS = np.array([40.0, 20.0, 8.0, 3.0])  # alerting.model.Severity order


@dataclass(slots=True)
class UnitInputs:
    """Per-unit arrays, all of one length (the number of units)."""

    active_by_severity: np.ndarray  # (units, 4) counts of active alarms per Severity
    active_immediate_fire: np.ndarray  # (units,) active fire-class alarms with response immediate
    fires_90d: np.ndarray
    false_alarms_90d: np.ndarray
    devices: np.ndarray  # detectors registered
    offline: np.ndarray
    faulty: np.ndarray
    low_battery: np.ndarray
    tamper_open: np.ndarray
    working: np.ndarray  # online and not faulty


def unit_scores(x: UnitInputs) -> tuple[np.ndarray, np.ndarray]:
    """Answer (score float64, colour index into COLOURS int8) for every unit."""
    alarms = np.minimum(x.active_by_severity @ SEVERITY_WEIGHTS, 60.0)
    history = np.minimum(15.0 * x.fires_90d + 2.0 * x.false_alarms_90d, 30.0)
    n = np.maximum(x.devices, 1).astype(np.float64)
    health = np.minimum(
        25.0 * x.offline / n + 15.0 * x.faulty / n + 10.0 * x.low_battery / n + 10.0 * x.tamper_open, 40.0
    )
    coverage = np.where(x.working <= 0, 40.0, 0.0)
    score = np.minimum(alarms + history + health + coverage, 100.0)
    colour = np.select([(x.active_immediate_fire > 0) | (score >= 60), score >= 35, score >= 15], [3, 2, 1], 0)
    return score, colour.astype(np.int8)


def poisson_upper_tail(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """P(X >= k) for X ~ Poisson(lam), elementwise; k are non-negative integers."""
    k = np.asarray(k, np.int64)
    lam = np.maximum(np.asarray(lam, np.float64), 1e-9)
    kmax = int(k.max(initial=0))
    if kmax == 0:
        return np.ones(k.shape)
    i = np.arange(kmax)
    # log pmf for i < kmax, per element: -lam + i log lam - log i!
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, kmax)))]) if kmax > 1 else np.zeros(1)
    log_pmf = -lam[..., None] + i * np.log(lam)[..., None] - log_fact
    below = np.where(i < k[..., None], np.exp(log_pmf), 0.0).sum(axis=-1)
    return np.clip(1.0 - below, 0.0, 1.0)


@dataclass(slots=True)
class TrendAlert:
    group: str
    count: int
    baseline: float
    p_value: float
    why: str


def trend_alerts(groups: list[str], weekly: np.ndarray, *, p_max: float = 0.001, min_count: int = 3) -> list[TrendAlert]:
    """`weekly` is (groups, weeks) alarm counts, the last column the current week."""
    if weekly.shape[1] < 2:
        return []
    baseline = weekly[:, :-1].mean(axis=1)
    current = weekly[:, -1].astype(np.int64)
    p = poisson_upper_tail(current, baseline)
    hits = np.flatnonzero((p < p_max) & (current >= min_count))
    return [
        TrendAlert(
            groups[g], int(current[g]), float(baseline[g]), float(p[g]),
            f"{int(current[g])} alarms this week against a baseline of {baseline[g]:.1f}/week "
            f"over {weekly.shape[1] - 1} weeks (Poisson P(X>={int(current[g])}) = {p[g]:.2g})",
        )
        for g in hits
    ]
