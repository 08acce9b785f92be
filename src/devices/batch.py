"""Columnar batches: many readings as numpy arrays, the unit of work of fleet state and alerting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np

from devices.catalogue import METRICS
from devices.reading import Reading


def _scalar(name: str) -> Callable[[dict[str, Any]], float]:
    def get(metrics: dict[str, Any]) -> float:
        v = metrics.get(name)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan

    return get


def _list_max(name: str) -> Callable[[dict[str, Any]], float]:
    def get(metrics: dict[str, Any]) -> float:
        v = metrics.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        nums = [float(x) for x in v if isinstance(x, (int, float))] if isinstance(v, list) else []
        return max(nums) if nums else np.nan

    return get


#: Numeric columns of a batch: column name -> how it is read from a reading's metrics (the
#: catalogue's metrics with a `column`). List metrics (per channel, phase or port) are reduced to
#: their maximum. Missing values are NaN.
NUMERIC_COLUMNS: dict[str, Callable[[dict[str, Any]], float]] = {
    name: (_list_max if spec.column == "max" else _scalar)(name) for name, spec in METRICS.items() if spec.column
}


_COLUMN_NAMES = tuple(NUMERIC_COLUMNS)
_METRICS, _EXTRA = attrgetter("metrics"), attrgetter("extra")
_KIND, _EVENT, _TS, _RECEIVED = attrgetter("kind"), attrgetter("event"), attrgetter("ts_ms"), attrgetter("received_ms")
_COLUMN_INDEX = {name: j for j, name in enumerate(_COLUMN_NAMES)}
_COLUMN_SET = frozenset(_COLUMN_NAMES)
_PLAIN_NUMBERS = frozenset((float, int))
_PORT_METRICS = frozenset(("port_temp_c", "port"))
_LIST_COLUMNS = frozenset(j for j, name in enumerate(_COLUMN_NAMES) if METRICS[name].column == "max")


#: Device-reported alarm codes (`Reading.extra["alarm_code"]`, as device profiles such as
#: ctwing-electrical-fire set them) that a batch carries in `ReadingColumns.alarm_code`: an index
#: into this tuple, 0 for none or a code not listed here. What each means is alerting's business.
ALARM_CODES: tuple[str, ...] = (
    "", "residual_current", "leakage", "over_temperature", "overload", "short_circuit", "overvoltage",
    "undervoltage", "arc_fault", "arc", "pyrolysis", "mains_and_backup", "co",
)
_ALARM_CODE_IDS = {code: i for i, code in enumerate(ALARM_CODES) if code}


def alarm_code_id(extra: dict[str, Any]) -> int:
    """The `ALARM_CODES` index of a reading's `extra["alarm_code"]` (0: none or unknown)."""
    code = extra.get("alarm_code")
    return _ALARM_CODE_IDS.get(code, 0) if isinstance(code, str) else 0


_GAS_TYPE_IDS = {name: i + 1 for i, name in enumerate(METRICS["gas_type"].values)}


def gas_type_id(metrics: dict[str, Any]) -> int:
    """1 + the index of a reading's `gas_type` in the catalogue's values (0: none or unknown)."""
    gas = metrics.get("gas_type")
    return _GAS_TYPE_IDS.get(gas, 0) if isinstance(gas, str) else 0


def port_of(metrics: dict[str, Any]) -> int:
    """The port (from 1) a charger reading is about: that of its hottest `port_temp_c`, else its
    `port`; 0 when it names none. The batch keeps only the hottest temperature, so this is how a
    charger_overheat knows which port to cut."""
    temps = metrics.get("port_temp_c")
    if isinstance(temps, list):
        nums = [(float(x), i) for i, x in enumerate(temps) if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if nums:
            return max(nums, key=lambda p: (p[0], -p[1]))[1] + 1
    port = metrics.get("port")
    return port if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 128 else 0


@dataclass(slots=True)
class ReadingColumns:
    """A batch of readings in columns; row i of every array is reading i.

    `slot` is the fleet slot of each reading's detector (see `devices.fleet`).
    `values` maps each name of `NUMERIC_COLUMNS` to a float64 array (NaN = not reported).
    `alarm_code` is each reading's `ALARM_CODES` index; None means no reading carried one.
    `gas_type` (`gas_type_id`) and `port` (`port_of`) likewise, None when no reading carries
    the metrics they come from.
    """

    slot: np.ndarray  # int32
    kind: np.ndarray  # int8, devices.kinds.Kind
    event: np.ndarray  # int8, devices.kinds.Event
    ts_ms: np.ndarray  # int64
    received_ms: np.ndarray  # int64
    values: dict[str, np.ndarray]
    alarm_code: np.ndarray | None = None  # int8
    gas_type: np.ndarray | None = None  # int8
    port: np.ndarray | None = None  # int8

    def __len__(self) -> int:
        return int(self.slot.shape[0])

    @classmethod
    def from_readings(cls, readings: Sequence[Reading], slots: np.ndarray) -> ReadingColumns:
        """Only the columns some reading carries (a heartbeat has a few of the twelve), each read
        from every reading's metrics with one comprehension; a column holding only floats and ints
        (NaN where absent) becomes an array in one conversion, any other takes the definition in
        `NUMERIC_COLUMNS` value by value."""
        n = len(readings)
        metrics = list(map(_METRICS, readings))
        table = np.full((len(_COLUMN_NAMES), n), np.nan)
        nan = np.nan
        present = set().union(*metrics)
        for name in _COLUMN_SET.intersection(present):
            column = [m.get(name, nan) for m in metrics]
            if set(map(type, column)) <= _PLAIN_NUMBERS:
                table[_COLUMN_INDEX[name]] = column
            else:
                table[_COLUMN_INDEX[name]] = np.fromiter(map(NUMERIC_COLUMNS[name], metrics), np.float64, n)
        values = dict(zip(_COLUMN_NAMES, table))
        return cls(
            slot=np.asarray(slots, dtype=np.int32),
            kind=np.fromiter(map(_KIND, readings), np.int8, n),
            event=np.fromiter(map(_EVENT, readings), np.int8, n),
            ts_ms=np.fromiter(map(_TS, readings), np.int64, n),
            received_ms=np.fromiter(map(_RECEIVED, readings), np.int64, n),
            values=values,
            alarm_code=np.fromiter((alarm_code_id(x) if x else 0 for x in map(_EXTRA, readings)), np.int8, n),
            gas_type=np.fromiter(map(gas_type_id, metrics), np.int8, n) if "gas_type" in present else None,
            port=np.fromiter(map(port_of, metrics), np.int8, n) if present & _PORT_METRICS else None,
        )

    def take(self, index: np.ndarray) -> ReadingColumns:
        """The rows selected by a boolean mask or an index array."""
        return ReadingColumns(
            slot=self.slot[index],
            kind=self.kind[index],
            event=self.event[index],
            ts_ms=self.ts_ms[index],
            received_ms=self.received_ms[index],
            values={k: v[index] for k, v in self.values.items()},
            alarm_code=None if self.alarm_code is None else self.alarm_code[index],
            gas_type=None if self.gas_type is None else self.gas_type[index],
            port=None if self.port is None else self.port[index],
        )
