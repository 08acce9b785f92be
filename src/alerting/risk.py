"""Four-colour (四色) risk grading of units: a pure numpy core, one vectorized pass over all units.

The score of a unit is 0-100, the sum of four capped parts (docs/risk.md explains the choice):

  alarms    open alarms: critical 40, major 20, minor 8, warning 3 each            cap 60
  history   last 90 days: confirmed fires 15 each, false alarms 2 each             cap 30
  health    25 x offline share + 15 x fault share + 10 x low-battery share
            + 10 per device with unresolved tamper                                 cap 40
  coverage  40 when the unit has no working fire detector                          (40 or 0)
  upkeep    open work orders 3 each, overdue ones 8 more each,
            shielded panel points 4 each                                           cap 20

score = min(alarms + history + health + coverage + upkeep, 100).
Colour: red when an open fire-class alarm needs an immediate response (秒响应) or score >= 60;
orange when score >= 35; yellow when score >= 15; green otherwise. A supervisor's override
(unexpired) replaces the colour, never the score.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

COLOURS = ("green", "yellow", "orange", "red")
GREEN, YELLOW, ORANGE, RED = range(4)
#: Open-alarm weights in `alerting.model.Severity` order (critical, major, minor, warning).
SEVERITY_WEIGHTS = np.array([40.0, 20.0, 8.0, 3.0])
ALARMS_CAP = 60.0
FIRE_WEIGHT, FALSE_ALARM_WEIGHT, HISTORY_CAP = 15.0, 2.0, 30.0
OFFLINE_WEIGHT, FAULT_WEIGHT, LOW_BATTERY_WEIGHT, TAMPER_WEIGHT, HEALTH_CAP = 25.0, 15.0, 10.0, 10.0, 40.0
NO_COVERAGE = 40.0
WORK_ORDER_WEIGHT, OVERDUE_WEIGHT, SHIELDED_WEIGHT, UPKEEP_CAP = 3.0, 8.0, 4.0, 20.0
#: Lower score bounds of yellow, orange and red.
THRESHOLDS = (15.0, 35.0, 60.0)
PARTS = ("alarms", "history", "health", "coverage", "upkeep")


@dataclass(slots=True)
class UnitInputs:
    """Per-unit float64 arrays, all of one length (the number of units)."""

    active_by_severity: np.ndarray  # (units, 4) open alarms per Severity
    active_immediate_fire: np.ndarray  # open fire-class alarms with response immediate
    fires_90d: np.ndarray  # alarms classified `fire` in the last 90 days
    false_alarms_90d: np.ndarray  # alarms classified `false_alarm` in the last 90 days
    devices: np.ndarray  # registered devices
    offline: np.ndarray
    faulty: np.ndarray
    low_battery: np.ndarray
    tamper_open: np.ndarray
    working: np.ndarray  # fire detectors online and not faulty
    work_orders_open: np.ndarray  # work orders not verified or cancelled (overdue ones included)
    work_orders_overdue: np.ndarray  # of those, past their due date
    shielded_points: np.ndarray  # panel points shielded now
    override: np.ndarray  # a supervisor's colour: 1 + index into COLOURS, 0 for none

    @classmethod
    def zeros(cls, n: int) -> UnitInputs:
        return cls(np.zeros((n, 4)), *(np.zeros(n) for _ in range(len(fields(cls)) - 1)))

    def __len__(self) -> int:
        return int(self.devices.shape[0])

    def take(self, index: np.ndarray) -> UnitInputs:
        """The rows `index` (a copy)."""
        return UnitInputs(*(getattr(self, f.name)[index].copy() for f in fields(self)))

    def put(self, index: np.ndarray, rows: UnitInputs) -> None:
        """Overwrite the rows `index` with `rows` (in place)."""
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(rows, f.name)


@dataclass(slots=True)
class Scores:
    score: np.ndarray  # float64, 0-100
    colour: np.ndarray  # int8 index into COLOURS
    parts: np.ndarray  # (units, 5) float64, the PARTS before the 100 cap


def colour_of(score: np.ndarray, immediate_fire: np.ndarray) -> np.ndarray:
    """Colour index per unit from its score and its open 秒响应 fire alarms."""
    yellow, orange, red = THRESHOLDS
    return np.select([(immediate_fire > 0) | (score >= red), score >= orange, score >= yellow], [RED, ORANGE, YELLOW],
                     GREEN).astype(np.int8)


def unit_scores(x: UnitInputs) -> Scores:
    """Score, colour and parts of every unit."""
    alarms = np.minimum(x.active_by_severity @ SEVERITY_WEIGHTS, ALARMS_CAP)
    history = np.minimum(FIRE_WEIGHT * x.fires_90d + FALSE_ALARM_WEIGHT * x.false_alarms_90d, HISTORY_CAP)
    n = np.maximum(x.devices, 1.0)
    health = np.minimum(
        (OFFLINE_WEIGHT * x.offline + FAULT_WEIGHT * x.faulty + LOW_BATTERY_WEIGHT * x.low_battery) / n
        + TAMPER_WEIGHT * x.tamper_open,
        HEALTH_CAP,
    )
    coverage = np.where(x.working <= 0, NO_COVERAGE, 0.0)
    upkeep = np.minimum(
        WORK_ORDER_WEIGHT * x.work_orders_open + OVERDUE_WEIGHT * x.work_orders_overdue
        + SHIELDED_WEIGHT * x.shielded_points,
        UPKEEP_CAP,
    )
    parts = np.stack([alarms, history, health, coverage, upkeep], axis=1)
    score = np.minimum(parts.sum(axis=1), 100.0)
    colour = colour_of(score, x.active_immediate_fire)
    overridden = x.override > 0
    colour[overridden] = (x.override[overridden] - 1).astype(np.int8)
    return Scores(score, colour, parts)
