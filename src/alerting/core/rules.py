"""Single-reading rules (CONTRACT §8, §10), vectorized per device kind, and what every rule
module shares: `Readings` (a batch against the fleet) and `Hits`.

Each rule looks at one reading, the device's thresholds and, for a rate of rise, earlier
samples; it answers `Hits`: (batch row, alarm type, severity, response, rule).
Correlation across readings, suppression and flapping are applied later by the correlator.

Which readings count: threshold rules look at `heartbeat`, `report`, `alarm` and `test`
readings (an `alarm_clear` or `fault` carrying a high value is not a new alarm). A `test`
reading fires like an `alarm` and is suppressed later. Rule names are `RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alerting.config import RuleConfig
from alerting.core.timeline import NO_TIME, Timeline, repeats
from alerting.model import ELECTRICAL_CLASS, FIRE_CLASS, AlarmType, Response, Severity
from devices.batch import ALARM_CODES, ReadingColumns
from devices.catalogue import ALARM_TYPES, KINDS, METRICS
from devices.fleet import Fleet, decimal32
from devices.kinds import Event, Kind

RULES: tuple[str, ...] = (
    "smoke.single", "smoke.heat", "smoke.rise", "smoke.heat_only",
    "gas.alarm", "gas.lel_major", "gas.lel_critical",
    "electrical.residual_current", "electrical.cable_temp", "electrical.cable_rise", "electrical.arc",
    "electrical.overvoltage", "electrical.alarm", "electrical.alarm_code",
    "water.pressure_low", "water.alarm",
    "panel.fire", "panel.fault", "device.fault", "device.tamper", "device.low_battery", "device.offline",
    "suppressed.test", "suppressed.maintenance", "suppressed.muted", "flapping",
    "unit.multi_detector", "unit.electrical_then_smoke", "network_outage",
    "alarm_clear", "transient", "fault_clear", "tamper_clear", "battery_ok", "online",
    # v2 (CONTRACT §10)
    "water.pressure_high", "water.pressure_drop", "water.level_low", "water.hydrant_open", "water.hydrant_flow",
    "water.impact", "water.hydrant_tilt", "hydrant_close",
    "charger.port_temp", "charger.port_rise", "charger.overtemp", "charger.current", "charger.overcurrent",
    "charger.leakage_warn", "charger.leakage_critical", "charger.leakage", "charger.alarm",
    "pyrolysis.index", "pyrolysis.alarm", "pyrolysis.critical", "pyrolysis.rise",
    "co.alarm", "co.held", "co.held_short", "co.critical",
    "power.fail", "power.mains_and_backup", "power_restore", "panel.supervisory", "supervisory_clear",
    "breaker.tripped", "breaker_closed", "linkage.failed",
)
RULE: dict[str, int] = {name: code for code, name in enumerate(RULES)}

A = AlarmType
#: Default (severity, response) of every alarm type (the catalogue's); rules may raise a hit above it.
DEFAULTS: dict[AlarmType, tuple[Severity, Response]] = {t: (s.severity, s.response) for t, s in ALARM_TYPES.items()}
_DEFAULT_TABLE = np.array([DEFAULTS[t] for t in sorted(AlarmType)], np.int8)
#: Alarm types a kind's `alarm` / `alarm_clear` events are about.
KIND_ALARMS: dict[Kind, tuple[AlarmType, ...]] = {kind: spec.alarm_types for kind, spec in KINDS.items()}
_KIND_ALARM_TABLE = np.full((max(Kind) + 1, max(map(len, KIND_ALARMS.values()))), -1, np.int8)  # kind -> types, -1 pad
for _kind, _types in KIND_ALARMS.items():
    _KIND_ALARM_TABLE[_kind, : len(_types)] = _types
#: Fire-class device alarm types (correlate across detectors) and electrical types (electrical-then-smoke).
FIRE_TYPES = tuple(sorted(FIRE_CLASS - {A.fire}))
ELECTRICAL_TYPES = tuple(sorted(ELECTRICAL_CLASS))
#: Batch columns shown in the evidence of a hit of each type.
TYPE_METRICS: dict[AlarmType, tuple[str, ...]] = {t: s.metrics for t, s in ALARM_TYPES.items() if s.metrics}

#: The alarm type an electrical `alarm` with a device-reported `alarm_code` is (docs/escalation.md,
#: "Electrical alarm codes"). CONTRACT §5 has no type of its own for two codes: an overload is an
#: overcurrent whose danger is the conductor heating (cable_overheat); a short circuit is a fault
#: current at one point, which is where arcing starts (arc_fault). Undervoltage shares overvoltage:
#: the supply voltage is out of range.
CODE_TYPES: dict[str, AlarmType] = {
    "residual_current": A.residual_current, "leakage": A.residual_current,
    "over_temperature": A.cable_overheat, "overload": A.cable_overheat,
    "short_circuit": A.arc_fault, "arc_fault": A.arc_fault, "arc": A.arc_fault,
    "overvoltage": A.overvoltage, "undervoltage": A.overvoltage, "pyrolysis": A.pyrolysis_warning,
}
_CODE_TYPE = np.array([CODE_TYPES.get(code, -1) for code in ALARM_CODES], np.int8)  # ALARM_CODES index -> type

#: Events whose values the threshold rules look at.
VALUE_EVENTS = (Event.heartbeat, Event.report, Event.alarm, Event.test)
_IS_VALUE_EVENT = np.zeros(256, bool)
_IS_VALUE_EVENT[list(VALUE_EVENTS)] = True


def is_value_event(event: np.ndarray) -> np.ndarray:
    return _IS_VALUE_EVENT[event.astype(np.uint8)]


# Codes as plain ints for the hot paths (an enum member costs an `EnumType.__getattr__` per use).
_REPORT, _ALARM, _TEST = int(Event.report), int(Event.alarm), int(Event.test)
_SMOKE, _GAS, _ELECTRICAL, _UITD = (int(k) for k in (Kind.smoke, Kind.gas, Kind.electrical, Kind.uitd))
_CO_GAS = METRICS["gas_type"].values.index("co") + 1  # `ReadingColumns.gas_type` of carbon monoxide
_CO_CODE = ALARM_CODES.index("co")
_PYROLYSIS_CODE = ALARM_CODES.index("pyrolysis")
_CO_HIGH = int(A.co_high)
_MAJOR, _CRITICAL = int(Severity.major), int(Severity.critical)
_NONE, _VERIFY, _IMMEDIATE = int(Response.none), int(Response.verify), int(Response.immediate)


@dataclass(slots=True)
class Hits:
    """Alarm decisions about batch rows, one entry per (row, type); `rise` is the rate of rise
    (per minute) behind the hit, NaN when none was measured."""

    row: np.ndarray  # int64
    type: np.ndarray  # int8 AlarmType
    severity: np.ndarray  # int8 Severity
    response: np.ndarray  # int8 Response
    rule: np.ndarray  # int16 RULE code
    rise: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @classmethod
    def of(
        cls,
        row: np.ndarray,
        type_: AlarmType | np.ndarray,
        severity: Severity | int | np.ndarray | None = None,
        response: Response | int | np.ndarray | None = None,
        rule: int | np.ndarray = 0,
        rise: np.ndarray | None = None,
    ) -> Hits:
        """Hits on `row`; scalars are broadcast, severity and response default to the type's."""
        n = row.shape[0]
        if n == 0:
            return _NO_HITS
        types = _column(type_, n, np.int8)
        return cls(
            row=row.astype(np.int64),
            type=types,
            severity=_DEFAULT_TABLE[types, 0] if severity is None else _column(severity, n, np.int8),
            response=_DEFAULT_TABLE[types, 1] if response is None else _column(response, n, np.int8),
            rule=_column(rule, n, np.int16),
            rise=_column(np.nan, n, np.float64) if rise is None else rise.astype(np.float64),
        )

    @classmethod
    def concat(cls, parts: list[Hits]) -> Hits:
        """One `Hits` of fresh arrays (safe to modify) from several."""
        return cls(*(np.concatenate([getattr(p, f) for p in [_NO_HITS, *parts]]) for f in _HIT_FIELDS))

    def take(self, index: np.ndarray) -> Hits:
        return Hits(*(getattr(self, f)[index] for f in _HIT_FIELDS))


_HIT_FIELDS = ("row", "type", "severity", "response", "rule", "rise")
_NO_HITS = Hits(*(np.zeros(0, dt) for dt in (np.int64, np.int8, np.int8, np.int8, np.int16, np.float64)))


def _column(value: float | np.ndarray, n: int, dtype: type) -> np.ndarray:
    """A fresh array of n values of `dtype` from a scalar or an array of n."""
    if isinstance(value, np.ndarray) and value.ndim:
        return value.astype(dtype)
    out: np.ndarray = np.empty(n, dtype)
    out.fill(value)
    return out


def threshold_defaults(config: RuleConfig) -> dict[str, np.float64]:
    """The default of every per-device threshold, as float64 (what `Readings.threshold` compares in)."""
    return {name: np.float64(v) for name, v in config.threshold_defaults().items()}


EVERY_ROW = slice(None)


class Readings:
    """One batch seen against the fleet: columns by batch row, thresholds and rates of rise."""

    def __init__(
        self, batch: ReadingColumns, fleet: Fleet, config: RuleConfig, defaults: dict[str, np.float64],
    ) -> None:
        self.fleet = fleet
        self.config = config
        self.defaults = defaults  # `threshold_defaults(config)`
        slot = batch.slot.astype(np.intp)
        self.valid = (slot >= 0) & (slot < fleet.size)
        self.slot = slot if self.valid.all() else np.where(self.valid, slot, 0)  # safe to index the fleet
        self._with_values = self.valid & is_value_event(batch.event)
        self.kind = batch.kind
        self.event = batch.event
        self.ts = batch.ts_ms.astype(np.int64, copy=False)
        self.received = batch.received_ms
        n = len(batch)
        self._nan = np.full(n, np.nan)
        self.values = {name: np.asarray(v, np.float64) for name, v in batch.values.items()}
        if batch.port is not None:  # shown in the evidence of a charger's hits
            self.values["port"] = np.where(batch.port > 0, batch.port, np.nan)
        codes = batch.alarm_code
        self.alarm_code = np.zeros(n, np.int8) if codes is None else codes.astype(np.int8, copy=False)
        self.gas_type = None if batch.gas_type is None else batch.gas_type
        #: rows with an event other than heartbeat and report (few): alarms, clears, faults, ...
        self.attention = np.flatnonzero(self.valid & (batch.event > _REPORT))
        self._rows: dict[int, np.ndarray] = {}
        self._co_possible: bool | None = None
        self.attention_event = self.event[self.attention]  #: their events
        #: per row: an `alarm` or `test`, which the threshold rules take as an alarm whatever the values
        self.alarmish = np.zeros(n, bool)
        self.alarmish[self.attention[(self.attention_event == _ALARM) | (self.attention_event == _TEST)]] = True

    def with_event(self, event: Event) -> np.ndarray:
        """Rows with this event (not heartbeat or report), ascending."""
        return self.attention[self.attention_event == event]

    def value(self, name: str) -> np.ndarray:
        return self.values.get(name, self._nan)

    def has_values(self, name: str, rows: np.ndarray) -> bool:
        """Whether any of `rows` reports `name`."""
        return not np.isnan(self.value(name)[rows]).all()

    def threshold(self, name: str, rows: np.ndarray | slice) -> np.ndarray:
        """The device's threshold `name` for each row (its override, else the default); `rows` may be
        `EVERY_ROW`."""
        slot = self.slot[rows]
        if not self.fleet.overrides[name]:
            return np.full(slot.shape[0], self.defaults[name])
        t = decimal32(self.fleet.thresholds[name][slot])
        return np.where(np.isnan(t), self.defaults[name], t)

    def limit(self, name: str, rows: np.ndarray | slice) -> np.ndarray | np.float64:
        """`threshold`, as one number when no device overrides it (a comparison then needs no array)."""
        return self.threshold(name, rows) if self.fleet.overrides[name] else self.defaults[name]

    def thresholds(self, names: tuple[str, ...], rows: np.ndarray) -> np.ndarray:
        """`threshold` of several names at once: [name, row]."""
        slot = self.slot[rows]
        defaults = np.array([self.defaults[name] for name in names])[:, None]
        if not any(self.fleet.overrides[name] for name in names):
            return np.repeat(defaults, slot.shape[0], axis=1)
        t = decimal32(np.vstack([self.fleet.thresholds[name][slot] for name in names]))
        return np.where(np.isnan(t), defaults, t)

    def rows(self, kind: int) -> np.ndarray:
        """Rows of this kind whose values the threshold rules look at."""
        rows = self._rows.get(kind)
        if rows is None:
            rows = self._rows[kind] = np.flatnonzero(self._with_values & (self.kind == kind))
        return rows

    def has_kind(self, kind: int) -> bool:
        """Whether the batch has a reading of this kind (any event)."""
        return bool(self.rows(kind).size) or bool((self.kind[self.attention] == kind).any())

    @property
    def co_possible(self) -> bool:
        """Whether a CO detector may be in the batch: a reading says so, or a device reported co_ppm before."""
        if self._co_possible is None:
            gas = self.rows(_GAS)
            self._co_possible = (self.gas_type is not None or "co_ppm" in self.fleet.stored_values
                                 or bool((self.alarm_code == _CO_CODE).any())
                                 or not np.isnan(self.value("co_ppm")[np.concatenate([gas, self.attention])]).all())
        return self._co_possible

    def events(self, event: int, kind: int) -> np.ndarray:
        """Rows with this event (not heartbeat or report) of devices of this kind, ascending."""
        at = self.attention[self.attention_event == event]
        return at[self.kind[at] == kind]

    def rows_of(self, rows: np.ndarray) -> np.ndarray:
        """The valid rows of the devices of `rows` (these and the devices' other readings), ascending."""
        mark = np.zeros(self.fleet.size, bool)
        mark[self.slot[rows]] = True
        return np.flatnonzero(mark[self.slot] & self.valid)

    def rise_per_min(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Rate of rise of `name` per minute at each of `rows` (distinct), NaN when unknown.

        Measured against the device's newest sample at least `rise_min_span_s` older: among the
        batch's readings of that device (newest time, then the later row) and the fleet's
        stored value (the previous state: `evaluate` runs before `Fleet.apply`), which loses ties.
        """
        out = np.full(rows.shape[0], np.nan)
        if rows.shape[0] == 0:
            return out
        t = self.ts[rows]
        prev_ts, prev_val = self.sample_at_or_before(name, rows, t - int(self.config.rise_min_span_s * 1000))
        known = prev_ts != NO_TIME
        out[known] = (self.value(name)[rows[known]] - prev_val[known]) * 60000.0 / (t[known] - prev_ts[known])
        return out

    def sample_at_or_before(self, name: str, rows: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of `rows` (distinct), the time and value of its device's newest sample of `name`
        at or before `target` (NO_TIME and NaN when none): among the batch's readings of that device
        (newest time, then the later row) and the fleet's stored value (the previous state:
        `evaluate` runs before `Fleet.apply`), which loses ties."""
        column = self.value(name)
        slot = self.slot[rows]
        b_ts, b_val = self._earlier_in_batch(column, rows, target)
        in_batch = b_ts != NO_TIME
        f_val = self.fleet.values[name][slot].astype(np.float64)
        f_ts = self.fleet.value_ts_ms[name][slot]
        use_fleet = ~np.isnan(f_val) & (f_ts <= target) & (~in_batch | (f_ts > b_ts))
        return np.where(use_fleet, f_ts, b_ts), np.where(use_fleet, f_val, b_val)

    def _earlier_in_batch(
        self, column: np.ndarray, rows: np.ndarray, target: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the time and value of its device's newest batch sample of `column` at or before
        `target` (NO_TIME and NaN when none). Only devices with several samples can have one."""
        b_ts = np.full(rows.shape[0], NO_TIME, np.int64)
        b_val = np.full(rows.shape[0], np.nan)
        shared = self.rows_of(rows)
        shared = shared[~np.isnan(column[shared])]
        shared = shared[repeats(self.slot[shared])]
        if shared.size == 0:
            return b_ts, b_val
        in_shared = np.zeros(column.shape[0], bool)
        in_shared[shared] = True
        ask = np.flatnonzero(in_shared[rows])
        line = Timeline(self.slot[shared], self.ts[shared])
        k = line.last_at_or_before(self.slot[rows[ask]], target[ask])
        found = k >= 0
        b_ts[ask[found]] = line.ts[k[found]]
        b_val[ask[found]] = column[shared[line.order[k[found]]]]
        return b_ts, b_val


def smoke(r: Readings) -> list[Hits]:
    """Smoke `alarm` -> smoke, major, verify; immediate at temperature >= 57 °C or a rise >= 8 °C/min.
    A reading at or above the heat threshold without an alarm event is a heat alarm (verify)."""
    rows = r.rows(_SMOKE)
    temp = r.value("temperature_c")[rows]
    heat = temp >= r.threshold("smoke_temp_c", rows)
    fire = np.flatnonzero(r.alarmish[rows] | heat)
    if fire.size == 0:
        return []
    rows, temp, heat = rows[fire], temp[fire], heat[fire]
    alarmish = r.alarmish[rows]
    rise = np.full(rows.shape[0], np.nan)
    ask = alarmish & ~heat & ~np.isnan(temp)
    rise[ask] = r.rise_per_min("temperature_c", rows[ask])
    rising = rise >= r.threshold("smoke_rise_c_per_min", rows)
    response = np.where(alarmish & (heat | rising), _IMMEDIATE, _VERIFY)
    by_alarm = np.where(heat, RULE["smoke.heat"], np.where(rising, RULE["smoke.rise"], RULE["smoke.single"]))
    rule = np.where(alarmish, by_alarm, RULE["smoke.heat_only"])
    return [Hits.of(rows, A.smoke, _MAJOR, response, rule, np.where(rising, rise, np.nan))]


def is_co(r: Readings, rows: np.ndarray) -> np.ndarray:
    """Whether each gas row is of a CO detector: it says `gas_type` co, reports `co_ppm`, carries
    alarm code `co`, or the device has reported `co_ppm` before."""
    if not r.co_possible:
        return np.zeros(rows.shape[0], bool)
    slot = r.slot[rows]
    said = np.zeros(rows.shape[0], bool) if r.gas_type is None else r.gas_type[rows] == _CO_GAS
    return (said | ~np.isnan(r.value("co_ppm")[rows]) | (r.alarm_code[rows] == _CO_CODE)
            | ~np.isnan(r.fleet.values["co_ppm"][slot]))


def gas(r: Readings) -> list[Hits]:
    """Gas `alarm` or >= 10 %LEL -> gas_leak, major, verify; >= 25 %LEL -> critical, immediate.
    A CO detector's `alarm` is not a gas leak (see `co.co_high`)."""
    rows = r.rows(_GAS)
    lel = r.value("gas_lel_pct")[rows]
    critical, major = lel >= r.limit("gas_lel_critical_pct", rows), lel >= r.limit("gas_lel_pct", rows)
    alarm = r.alarmish[rows]
    if alarm.any():
        alarm[alarm] = ~is_co(r, rows[alarm])
    fire = np.flatnonzero(alarm | major | critical)
    if fire.size == 0:
        return []
    rows, critical, major = rows[fire], critical[fire], major[fire]
    return [Hits.of(
        rows, A.gas_leak,
        np.where(critical, _CRITICAL, _MAJOR),
        np.where(critical, _IMMEDIATE, _VERIFY),
        np.where(critical, RULE["gas.lel_critical"], np.where(major, RULE["gas.lel_major"], RULE["gas.alarm"])),
    )]


_ELECTRICAL_RULES = (  # (type, column, threshold, rule), in the order of their hits
    (A.residual_current, "residual_current_ma", "residual_current_ma", "electrical.residual_current"),
    (A.cable_overheat, "cable_temp_c", "cable_temp_c", "electrical.cable_temp"),
    (A.arc_fault, "arc_faults", "arc_faults", "electrical.arc"),
    (A.overvoltage, "voltage_v", "voltage_v_max", "electrical.overvoltage"),
    (A.pyrolysis_warning, "pyrolysis_index", "pyrolysis_major", "pyrolysis.index"),
)
_CABLE, _PYROLYSIS = 1, 4  # indexes of cable_overheat and pyrolysis_warning in _ELECTRICAL_RULES
_CODE_RULE = np.array([RULE["pyrolysis.alarm" if t is A.pyrolysis_warning else "electrical.alarm_code"]
                       for t, _, _, _ in _ELECTRICAL_RULES], np.int16)[:, None]
_ELECTRICAL_LIMITS = tuple(name for _, _, name, _ in _ELECTRICAL_RULES)
_ELECTRICAL_TYPE = np.array([t for t, _, _, _ in _ELECTRICAL_RULES], np.int8)[:, None]
_ELECTRICAL_RULE = np.array([RULE[rule] for _, _, _, rule in _ELECTRICAL_RULES], np.int16)[:, None]
_LIMIT_INDEX = np.arange(len(_ELECTRICAL_RULES))[:, None]


def electrical(r: Readings) -> list[Hits]:
    """Residual current >= 300 mA, cable >= 70 °C or rising >= 10 °C/min, >= 14 arcs/s, voltage
    >= 264 V, pyrolysis index >= 50: one hit per exceeded limit. An `alarm` whose device reported an
    alarm code of `CODE_TYPES` is also that type (rule `electrical.alarm_code`, `pyrolysis.alarm`,
    unless a limit of that type is exceeded too). An `alarm` without such a code exceeding no limit
    is put down to the metric nearest its limit (value / threshold; residual current when none was
    reported). A pyrolysis warning is critical at an index >= 80, or >= 50 after rising >= 20 since
    the device's previous sample at most 60 s earlier (`pyrolysis_severity`)."""
    rows = r.rows(_ELECTRICAL)
    # the pyrolysis limit only when a reading has an index or its alarm code (most batches have neither)
    pyrolysis = (~np.isnan(r.value("pyrolysis_index")[rows])).any() or (r.alarm_code[rows] == _PYROLYSIS_CODE).any()
    k = _PYROLYSIS + 1 if pyrolysis else _PYROLYSIS
    values = np.vstack([r.value(column)[rows] for _, column, _, _ in _ELECTRICAL_RULES[:k]])  # [limit, row]
    limits = r.thresholds(_ELECTRICAL_LIMITS[:k], rows)
    over = values >= limits
    cable = values[_CABLE]
    rise = np.full(rows.shape[0], np.nan)
    ask = ~over[_CABLE] & ~np.isnan(cable)
    rise[ask] = r.rise_per_min("cable_temp_c", rows[ask])
    rising = rise >= r.threshold("cable_rise_c_per_min", rows)
    hot = np.flatnonzero(r.alarmish[rows] | rising | over.any(axis=0))
    if hot.size == 0:
        return []
    return [_electrical_hits(r, rows[hot], values[:, hot], limits[:, hot], rise[hot], rising[hot])]


def _electrical_hits(r: Readings, rows: np.ndarray, values: np.ndarray, limits: np.ndarray, rise: np.ndarray,
                     rising: np.ndarray) -> Hits:
    """The electrical hits of the rows that exceed a limit or are an alarm, ordered by type, then row;
    `values` and `limits` hold the first k limits of `_ELECTRICAL_RULES`."""
    k = values.shape[0]
    by_value = values >= limits
    over = by_value.copy()
    over[_CABLE] |= rising
    alarmish = r.alarmish[rows]
    code_type = _CODE_TYPE[r.alarm_code[rows].astype(np.intp)]
    coded = alarmish & (code_type >= 0)
    device_alarm = alarmish & ~coded & ~over.any(axis=0)
    blamed = np.zeros(rows.shape[0], np.intp)
    if device_alarm.any():
        ratio = values / limits
        blamed = np.argmax(np.where(np.isnan(ratio), -np.inf, ratio), axis=0)
    blame = device_alarm & (blamed == _LIMIT_INDEX[:k])
    by_code = coded & (code_type == _ELECTRICAL_TYPE[:k]) & ~over
    rule = np.where(blame, RULE["electrical.alarm"], np.where(by_code, _CODE_RULE[:k], _ELECTRICAL_RULE[:k]))
    rule[_CABLE, rising & ~by_value[_CABLE]] = RULE["electrical.cable_rise"]
    fired = over | blame | by_code
    limit, at = np.nonzero(fired)
    hits = Hits.of(rows[at], _ELECTRICAL_TYPE[limit, 0], rule=rule[limit, at], rise=np.where(rising, rise, np.nan)[at])
    if k > _PYROLYSIS and fired[_PYROLYSIS].any():
        pyro = np.flatnonzero(limit == _PYROLYSIS)
        critical, by_rise = pyrolysis_severity(r, hits.row[pyro])
        hits.severity[pyro[critical]] = _CRITICAL
        hits.rule[pyro[critical]] = np.where(by_rise[critical], RULE["pyrolysis.rise"], RULE["pyrolysis.critical"])
    return hits


def pyrolysis_severity(r: Readings, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pyrolysis-warning row (distinct): whether it is critical, and whether by its rise."""
    index = r.value("pyrolysis_index")[rows]
    critical_at, major_at = r.thresholds(("pyrolysis_critical", "pyrolysis_major"), rows)
    by_rise = np.zeros(rows.shape[0], bool)
    ask = np.flatnonzero((index >= major_at) & ~(index >= critical_at))
    if ask.size:
        t = r.ts[rows[ask]]
        prev_ts, prev = r.sample_at_or_before("pyrolysis_index", rows[ask], t - 1)
        window = int(r.config.pyrolysis_rise_window_s * 1000)
        by_rise[ask] = (prev_ts != NO_TIME) & (t - prev_ts <= window) & (index[ask] - prev >= r.config.pyrolysis_rise)
    return (index >= critical_at) | by_rise, by_rise


def panel(r: Readings) -> list[Hits]:
    """A panel component's fire (`alarm`) -> panel_fire, critical, verify."""
    rows = r.rows(_UITD)
    return [Hits.of(rows[r.alarmish[rows]], A.panel_fire, rule=RULE["panel.fire"])]


_EventTypes = dict[Event, tuple[tuple[AlarmType, str], tuple[AlarmType, str]]]  # by (not a panel, a panel component)


def _event_table(entries: _EventTypes) -> tuple[np.ndarray, np.ndarray]:
    """[event code, is a panel component] -> alarm type (-1: none) and RULE code."""
    types = np.full((256, 2), -1, np.int8)
    rules = np.zeros((256, 2), np.int16)
    for event, by_panel in entries.items():
        for panel, (type_, rule) in enumerate(by_panel):
            types[event, panel], rules[event, panel] = type_, RULE[rule]
    return types, rules


_HEALTH_RAISES = _event_table({
    Event.fault: ((A.device_fault, "device.fault"), (A.panel_fault, "panel.fault")),
    Event.tamper: ((A.tamper, "device.tamper"),) * 2,
    Event.low_battery: ((A.low_battery, "device.low_battery"),) * 2,
})
_HEALTH_CLEARS = _event_table({
    Event.fault_clear: ((A.device_fault, "fault_clear"), (A.panel_fault, "fault_clear")),
    Event.tamper_clear: ((A.tamper, "tamper_clear"),) * 2,
})


def _event_hits(r: Readings, table: tuple[np.ndarray, np.ndarray]) -> Hits:
    """Hits of the attention rows whose event is in `table` (see `_event_table`), by row."""
    types, rules = table
    event = r.attention_event.astype(np.uint8)
    panel = (r.kind[r.attention] == _UITD).astype(np.intp)
    type_ = types[event, panel]
    at = np.flatnonzero(type_ >= 0)
    return Hits.of(r.attention[at], type_[at], rule=rules[event[at], panel[at]])


def health(r: Readings) -> Hits:
    """`fault` -> device_fault (panel_fault for uitd), `tamper` -> tamper, `low_battery` -> low_battery."""
    return _event_hits(r, _HEALTH_RAISES)


def event_clears(r: Readings, transient: np.ndarray, clear_rows: np.ndarray) -> list[Hits]:
    """`alarm_clear` -> a clear of every alarm type of the device's kind (co_high: of a CO detector) (rule `transient`,
    response none when `transient[i]` for `clear_rows[i]`); `fault_clear` and `tamper_clear`."""
    which, col = np.nonzero(_KIND_ALARM_TABLE[r.kind[clear_rows].astype(np.intp)] >= 0)
    types = _KIND_ALARM_TABLE[r.kind[clear_rows[which]].astype(np.intp), col]
    co = np.flatnonzero(types == _CO_HIGH)
    if co.size:  # only a CO detector's clear is about co_high (is_co)
        keep = np.ones(which.shape[0], bool)
        keep[co] = is_co(r, clear_rows[which[co]])
        which, types = which[keep], types[keep]
    quick = transient[which]
    return [
        Hits.of(clear_rows[which], types, _DEFAULT_TABLE[types, 0],
                np.where(quick, _NONE, _DEFAULT_TABLE[types, 1]),
                np.where(quick, RULE["transient"], RULE["alarm_clear"])),
        _event_hits(r, _HEALTH_CLEARS),
    ]
