"""A plain scalar reference of the correlation rules (CONTRACT §8), for property tests.

Same rules as `alerting.core`, written the obvious way: Python loops over readings in order,
dicts for per-detector state, pairwise comparisons for the unit windows. It shares nothing with
the core but the vocabulary (enums, rule names, defaults tables) and `RuleConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from alerting.config import RuleConfig
from alerting.core.rules import CODE_TYPES, DEFAULTS, KIND_ALARMS
from alerting.model import ELECTRICAL_CLASS, AlarmType, Decision, Response, Severity
from devices.batch import ALARM_CODES, ReadingColumns
from devices.catalogue import KINDS, METRICS
from devices.fleet import FLAPPING, HYDRANT, LOW_BATTERY, MAINTENANCE, NOT_HELD, Fleet, decimal32
from devices.kinds import Event, Kind
from devices.reading import Reading

A = AlarmType
FIRE = {A.smoke, A.gas_leak, A.panel_fire}
ELECTRICAL = set(ELECTRICAL_CLASS)
POWER_KINDS = {Kind.uitd} | {k for k, spec in KINDS.items() if "mains_ok" in spec.metrics}
CO_GAS = METRICS["gas_type"].values.index("co") + 1
HEALTH = {A.device_fault, A.panel_fault, A.tamper, A.low_battery}
VALUE_EVENTS = {Event.heartbeat, Event.report, Event.alarm, Event.test}


@dataclass
class Hit:
    row: int
    type: AlarmType
    severity: Severity
    response: Response
    rule: str


@dataclass
class Remembered:
    slot: int
    unit: int
    ts: int
    classes: set[str]
    seen: int
    index: int  # order of remembrance (ties of equal times go to the later one)


@dataclass
class ReferenceCorrelator:
    config: RuleConfig = field(default_factory=RuleConfig)
    started: dict[int, int] = field(default_factory=dict)  # open episode start per slot
    cycles: dict[int, list[int]] = field(default_factory=dict)  # completed cycle times, newest first
    last_mute: dict[int, int] = field(default_factory=dict)  # device time of the latest mute event per slot
    log: list[Remembered] = field(default_factory=list)
    offline_mode: dict[int, str] = field(default_factory=dict)  # "own" | "outage"
    outage_cell: dict[int, int] = field(default_factory=dict)
    outage_members: dict[int, int] = field(default_factory=dict)
    counter: int = 0

    # --- helpers --------------------------------------------------------------------------
    def th(self, fleet: Fleet, slot: int, name: str) -> float:
        v = float(decimal32(fleet.thresholds[name][slot : slot + 1])[0])  # the fleet's float32, as set
        return self.config.threshold_defaults()[name] if math.isnan(v) else v

    def rise(self, b: ReadingColumns, fleet: Fleet, row: int, name: str) -> float:
        t = int(b.ts_ms[row])
        prev = self.sample(b, fleet, row, name, t - int(self.config.rise_min_span_s * 1000))
        if prev is None:
            return math.nan
        return (float(b.values[name][row]) - prev[1]) * 60000.0 / (t - prev[0])

    def sample(self, b: ReadingColumns, fleet: Fleet, row: int, name: str, target: int) -> tuple[int, float] | None:
        """The device's newest sample of `name` at or before `target`: the batch's, else the fleet's."""
        slot = int(b.slot[row])
        best: tuple[int, int] | None = None
        for i in range(len(b)):
            v = float(b.values[name][i])
            if int(b.slot[i]) == slot and not math.isnan(v) and int(b.ts_ms[i]) <= target:
                if best is None or (int(b.ts_ms[i]), i) > best:
                    best = (int(b.ts_ms[i]), i)
        prev: tuple[int, float] | None = None if best is None else (best[0], float(b.values[name][best[1]]))
        fv, fts = float(fleet.values[name][slot]), int(fleet.value_ts_ms[name][slot])
        if not math.isnan(fv) and fts <= target and (prev is None or fts > prev[0]):
            prev = (fts, fv)
        return prev

    def is_co(self, b: ReadingColumns, fleet: Fleet, i: int) -> bool:
        code = ALARM_CODES[int(b.alarm_code[i])] if b.alarm_code is not None else ""
        said = b.gas_type is not None and int(b.gas_type[i]) == CO_GAS
        return (said or not math.isnan(float(b.values["co_ppm"][i])) or code == "co"
                or not math.isnan(float(fleet.values["co_ppm"][int(b.slot[i])])))

    def holding(self, b: ReadingColumns, fleet: Fleet, rows: list[int], condition: str, kind: Kind, name: str,
                meets: object) -> dict[int, int]:
        """Row -> since when `condition` holds (NOT_HELD: it does not), following the fleet's state."""
        state: dict[int, int] = {}
        since: dict[int, int] = {}
        mine = [i for i in rows if int(b.kind[i]) == kind and Event(int(b.event[i])) in VALUE_EVENTS
                and not math.isnan(float(b.values[name][i]))]
        for i in sorted(mine, key=lambda i: (int(b.slot[i]), int(b.ts_ms[i]), i)):
            s = int(b.slot[i])
            cur = state.get(s, int(fleet.held_since(condition)[s]))
            if meets(i):  # type: ignore[operator]
                cur = int(b.ts_ms[i]) if cur == NOT_HELD else cur
            else:
                cur = NOT_HELD
            state[s] = since[i] = cur
        for s, v in state.items():
            fleet.set_held_since(condition, np.array([s]), np.array([v], np.int64))
        return since

    def held_long(self, since: dict[int, int], b: ReadingColumns, i: int, hold_s: float) -> bool:
        t = since.get(i, NOT_HELD)
        return t != NOT_HELD and int(b.ts_ms[i]) - t >= hold_s * 1000

    # --- single readings ------------------------------------------------------------------
    def alarm_hits(self, b: ReadingColumns, fleet: Fleet, i: int, held: dict[str, dict[int, int]]) -> list[Hit]:
        kind, ev = Kind(int(b.kind[i])), Event(int(b.event[i]))
        by_event = {(Kind.water, Event.hydrant_open): (A.hydrant_open, "water.hydrant_open"),
                    (Kind.water, Event.impact): (A.hydrant_damaged, "water.impact"),
                    (Kind.charger, Event.overtemp): (A.charger_overheat, "charger.overtemp"),
                    (Kind.charger, Event.overcurrent): (A.charger_overcurrent, "charger.overcurrent"),
                    (Kind.charger, Event.leakage): (A.charger_leakage, "charger.leakage")}
        if (kind, ev) in by_event:
            t, rule = by_event[kind, ev]
            sev = Severity.critical if t == A.charger_leakage else DEFAULTS[t][0]
            return [Hit(i, t, sev, DEFAULTS[t][1], rule)]
        if ev not in VALUE_EVENTS:
            return []
        slot = int(b.slot[i])
        alarmish = ev in (Event.alarm, Event.test)
        val = {k: float(v[i]) for k, v in b.values.items()}
        hits: list[Hit] = []
        if kind == Kind.smoke:
            heat = val["temperature_c"] >= self.th(fleet, slot, "smoke_temp_c")
            if alarmish or heat:
                rising = False
                if alarmish and not heat and not math.isnan(val["temperature_c"]):
                    rising = self.rise(b, fleet, i, "temperature_c") >= self.th(fleet, slot, "smoke_rise_c_per_min")
                if alarmish and heat:
                    rule = "smoke.heat"
                elif alarmish and rising:
                    rule = "smoke.rise"
                elif alarmish:
                    rule = "smoke.single"
                else:
                    rule = "smoke.heat_only"
                immediate = alarmish and (heat or rising)
                hits.append(Hit(i, A.smoke, Severity.major, Response.immediate if immediate else Response.verify, rule))
        elif kind == Kind.gas:
            lel = val["gas_lel_pct"]
            co = self.is_co(b, fleet, i)
            if lel >= self.th(fleet, slot, "gas_lel_critical_pct"):
                hits.append(Hit(i, A.gas_leak, Severity.critical, Response.immediate, "gas.lel_critical"))
            elif lel >= self.th(fleet, slot, "gas_lel_pct"):
                hits.append(Hit(i, A.gas_leak, Severity.major, Response.verify, "gas.lel_major"))
            elif alarmish and not co:
                hits.append(Hit(i, A.gas_leak, Severity.major, Response.verify, "gas.alarm"))
            ppm = val["co_ppm"]
            if ppm >= self.th(fleet, slot, "co_critical_ppm"):
                hits.append(Hit(i, A.co_high, Severity.critical, Response.immediate, "co.critical"))
            elif self.held_long(held["co_major"], b, i, self.config.co_major_hold_s):
                hits.append(Hit(i, A.co_high, Severity.major, Response.verify, "co.held"))
            elif self.held_long(held["co_short"], b, i, self.config.co_short_hold_s):
                hits.append(Hit(i, A.co_high, Severity.major, Response.verify, "co.held_short"))
            elif alarmish and co:
                hits.append(Hit(i, A.co_high, Severity.major, Response.verify, "co.alarm"))
        elif kind == Kind.electrical:
            spec = [(A.residual_current, "residual_current_ma", "residual_current_ma", "electrical.residual_current"),
                    (A.cable_overheat, "cable_temp_c", "cable_temp_c", "electrical.cable_temp"),
                    (A.arc_fault, "arc_faults", "arc_faults", "electrical.arc"),
                    (A.overvoltage, "voltage_v", "voltage_v_max", "electrical.overvoltage"),
                    (A.pyrolysis_warning, "pyrolysis_index", "pyrolysis_major", "pyrolysis.index")]
            limits = [self.th(fleet, slot, t) for _, _, t, _ in spec]
            over = [val[col] >= lim for (_, col, _, _), lim in zip(spec, limits)]
            rules = [r for _, _, _, r in spec]
            if not over[1] and not math.isnan(val["cable_temp_c"]):
                if self.rise(b, fleet, i, "cable_temp_c") >= self.th(fleet, slot, "cable_rise_c_per_min"):
                    over[1], rules[1] = True, "electrical.cable_rise"
            code = ALARM_CODES[int(b.alarm_code[i])] if b.alarm_code is not None else ""
            coded = CODE_TYPES.get(code) if alarmish else None
            if coded is not None:
                k = [t for t, _, _, _ in spec].index(coded)
                if not over[k]:
                    by_code = "pyrolysis.alarm" if coded == A.pyrolysis_warning else "electrical.alarm_code"
                    over[k], rules[k] = True, by_code
            elif alarmish and not any(over):
                ratios = [-math.inf if math.isnan(val[col] / lim) else val[col] / lim
                          for (_, col, _, _), lim in zip(spec, limits)]
                k = max(range(len(spec)), key=lambda j: ratios[j])
                over[k], rules[k] = True, "electrical.alarm"
            for (type_, _, _, _), fired, rule in zip(spec, over, rules):
                if fired:
                    hits.append(Hit(i, type_, *DEFAULTS[type_], rule))
            if over[4]:
                index = val["pyrolysis_index"]
                if index >= self.th(fleet, slot, "pyrolysis_critical"):
                    hits[-1].severity, hits[-1].rule = Severity.critical, "pyrolysis.critical"
                elif index >= self.th(fleet, slot, "pyrolysis_major"):
                    at = int(b.ts_ms[i])
                    prev = self.sample(b, fleet, i, "pyrolysis_index", at - 1)
                    if (prev is not None and at - prev[0] <= self.config.pyrolysis_rise_window_s * 1000
                            and index - prev[1] >= self.config.pyrolysis_rise):
                        hits[-1].severity, hits[-1].rule = Severity.critical, "pyrolysis.rise"
        elif kind == Kind.water:
            hits += self.levels(fleet, i, slot, val)
            if alarmish and not val["pressure_mpa"] < self.th(fleet, slot, "pressure_low_mpa"):
                hits.append(Hit(i, A.water_pressure_low, *DEFAULTS[A.water_pressure_low], "water.alarm"))
            if int(fleet.flags[slot]) & HYDRANT and val["flow_m3h"] > self.th(fleet, slot, "flow_open_m3h"):
                hits.append(Hit(i, A.hydrant_open, *DEFAULTS[A.hydrant_open], "water.hydrant_flow"))
            if val["tilt_deg"] >= self.th(fleet, slot, "tilt_max_deg"):
                hits.append(Hit(i, A.hydrant_damaged, *DEFAULTS[A.hydrant_damaged], "water.hydrant_tilt"))
            if not math.isnan(val["pressure_mpa"]):
                at = int(b.ts_ms[i])
                prev = self.sample(b, fleet, i, "pressure_mpa", at - 1)
                least = max(self.th(fleet, slot, "pressure_drop_mpa"), 2 * self.config.pressure_resolution_mpa)
                if (prev is not None and at - prev[0] <= self.config.pressure_drop_window_s * 1000
                        and prev[1] - val["pressure_mpa"] + 1e-6 >= least):
                    hits.append(Hit(i, A.water_pressure_drop, *DEFAULTS[A.water_pressure_drop], "water.pressure_drop"))
        elif kind == Kind.uitd:
            if alarmish:
                hits.append(Hit(i, A.panel_fire, *DEFAULTS[A.panel_fire], "panel.fire"))
            hits += self.levels(fleet, i, slot, val)
        elif kind == Kind.charger:
            temp = val["port_temp_c"]
            hot = temp >= self.th(fleet, slot, "port_temp_c")
            rising = not hot and not math.isnan(temp) and \
                self.rise(b, fleet, i, "port_temp_c") >= self.th(fleet, slot, "port_rise_c_per_min")
            over_rated = self.held_long(held["port_current"], b, i, self.config.overcurrent_hold_s)
            leak = val["residual_current_ma"]
            critical = leak >= self.th(fleet, slot, "leakage_critical_ma")
            warn = critical or leak >= self.th(fleet, slot, "leakage_warn_ma")
            if hot or rising or (alarmish and not (over_rated or warn)):
                rule = "charger.port_temp" if hot else "charger.port_rise" if rising else "charger.alarm"
                hits.append(Hit(i, A.charger_overheat, *DEFAULTS[A.charger_overheat], rule))
            if over_rated:
                hits.append(Hit(i, A.charger_overcurrent, *DEFAULTS[A.charger_overcurrent], "charger.current"))
            if critical:
                hits.append(Hit(i, A.charger_leakage, Severity.critical, Response.verify, "charger.leakage_critical"))
            elif warn:
                hits.append(Hit(i, A.charger_leakage, Severity.major, Response.verify, "charger.leakage_warn"))
        return hits

    def levels(self, fleet: Fleet, i: int, slot: int, val: dict[str, float]) -> list[Hit]:
        """Pressure and level limits (water devices and panel components)."""
        out = []
        for type_, name, limit, rule, low in (
            (A.water_pressure_low, "pressure_mpa", "pressure_low_mpa", "water.pressure_low", True),
            (A.water_pressure_high, "pressure_mpa", "pressure_high_mpa", "water.pressure_high", False),
            (A.water_level_low, "level_m", "level_low_m", "water.level_low", True),
        ):
            v, lim = val[name], self.th(fleet, slot, limit)
            if (v < lim) if low else (v > lim):
                out.append(Hit(i, type_, *DEFAULTS[type_], rule))
        return out

    def muted_by_event(self, b: ReadingColumns, i: int) -> bool:
        slot, t = int(b.slot[i]), int(b.ts_ms[i])
        mutes = [int(b.ts_ms[j]) for j in range(len(b)) if int(b.slot[j]) == slot and int(b.event[j]) == Event.mute]
        mutes.append(self.last_mute.get(slot, t + 1))
        before = [m for m in mutes if m <= t]
        return bool(before) and t - max(before) < self.config.mute_s * 1000

    def suppression(self, b: ReadingColumns, fleet: Fleet, i: int, health: bool) -> str | None:
        slot = int(b.slot[i])
        unit = int(fleet.unit[slot])
        maintenance = bool(int(fleet.flags[slot]) & MAINTENANCE) or (unit >= 0 and bool(fleet.unit_maintenance[unit]))
        if health:
            return "suppressed.maintenance" if maintenance else None
        if int(b.event[i]) == Event.test:
            return "suppressed.test"
        if maintenance:
            return "suppressed.maintenance"
        if int(fleet.mute_until_ms[slot]) > int(b.ts_ms[i]) or self.muted_by_event(b, i):
            return "suppressed.muted"
        return None

    # --- a batch --------------------------------------------------------------------------
    def evaluate(self, b: ReadingColumns, fleet: Fleet, now_ms: int) -> list[Decision]:
        cfg = self.config
        rows = [i for i in range(len(b)) if 0 <= int(b.slot[i]) < fleet.size]
        ids = fleet.device_ids

        def unit_name(slot: int) -> str | None:
            u = int(fleet.unit[slot])
            return fleet.units.names[u] if u >= 0 else None

        def value(name: str, i: int) -> float:
            return float(b.values[name][i])

        def th(name: str, i: int) -> float:
            return self.th(fleet, int(b.slot[i]), name)

        held = {
            "co_major": self.holding(b, fleet, rows, "co_major", Kind.gas, "co_ppm",
                                     lambda i: value("co_ppm", i) >= th("co_major_ppm", i)),
            "co_short": self.holding(b, fleet, rows, "co_short", Kind.gas, "co_ppm",
                                     lambda i: value("co_ppm", i) >= cfg.co_short_ppm),
            "port_current": self.holding(b, fleet, rows, "port_current", Kind.charger, "port_current_a",
                                         lambda i: value("port_current_a", i) > th("port_rated_a", i)),
        }
        raises: list[Hit] = []
        raised_rows: set[int] = set()
        for i in rows:
            for h in self.alarm_hits(b, fleet, i, held):
                why = self.suppression(b, fleet, i, health=False)
                if why:
                    h.response, h.rule = Response.none, why
                else:
                    raised_rows.add(i)
                raises.append(h)
        for i in rows:
            if int(b.event[i]) == Event.mute:
                s = int(b.slot[i])
                self.last_mute[s] = max(self.last_mute.get(s, int(b.ts_ms[i])), int(b.ts_ms[i]))

        # episodes, in device-time order per detector
        transient: dict[int, bool] = {}
        flapping_rows: set[int] = set()
        flagged = {s: bool(int(fleet.flags[s]) & FLAPPING) for s in range(fleet.size)}
        history = cfg.flapping_cycles - 1
        newly: set[int] = set()
        seq = sorted((i for i in rows if i in raised_rows or int(b.event[i]) == Event.alarm_clear),
                     key=lambda i: (int(b.slot[i]), int(b.ts_ms[i]), i))
        for i in seq:
            s, t = int(b.slot[i]), int(b.ts_ms[i])
            if i in raised_rows:
                self.started.setdefault(s, t)
                if flagged[s]:
                    flapping_rows.add(i)
                continue
            start = self.started.pop(s, None)
            transient[i] = start is not None and 0 <= t - start <= cfg.transient_s * 1000
            if start is not None:
                past = self.cycles.get(s, [])
                if len(past) >= history and t - past[history - 1] <= cfg.flapping_window_s * 1000:
                    flagged[s] = True
                    newly.add(s)
                self.cycles[s] = [t, *past][:history]
        for s in sorted(newly):
            fleet.flags[s] |= FLAPPING
        for h in raises:
            if h.row in flapping_rows and not h.rule.startswith("suppressed."):
                h.response, h.rule = max(h.response, Response.verify), "flapping"

        # health and battery
        faults: list[Hit] = []
        clears: list[Hit] = []
        for i in rows:
            ev, kind = int(b.event[i]), int(b.kind[i])
            panel = kind == Kind.uitd
            if ev == Event.fault:
                t = A.panel_fault if panel else A.device_fault
                faults.append(Hit(i, t, *DEFAULTS[t], "panel.fault" if panel else "device.fault"))
            elif ev == Event.tamper:
                faults.append(Hit(i, A.tamper, *DEFAULTS[A.tamper], "device.tamper"))
            elif ev == Event.low_battery:
                faults.append(Hit(i, A.low_battery, *DEFAULTS[A.low_battery], "device.low_battery"))
            elif ev == Event.power_fail and Kind(kind) in POWER_KINDS:
                both = b.alarm_code is not None and ALARM_CODES[int(b.alarm_code[i])] == "mains_and_backup"
                faults.append(Hit(i, A.power_fault, Severity.major if both else Severity.minor, Response.verify,
                                  "power.mains_and_backup" if both else "power.fail"))
            elif ev == Event.supervisory and panel:
                faults.append(Hit(i, A.panel_supervisory, *DEFAULTS[A.panel_supervisory], "panel.supervisory"))
            elif ev == Event.breaker_tripped:
                since = int(b.received_ms[i]) - int(fleet.commanded("breaker_trip")[int(b.slot[i])])
                if not 0 <= since <= cfg.breaker_command_s * 1000:
                    faults.append(Hit(i, A.breaker_tripped, *DEFAULTS[A.breaker_tripped], "breaker.tripped"))
            elif ev == Event.power_restore and Kind(kind) in POWER_KINDS:
                clears.append(Hit(i, A.power_fault, *DEFAULTS[A.power_fault], "power_restore"))
            elif ev == Event.supervisory_clear and panel:
                clears.append(Hit(i, A.panel_supervisory, *DEFAULTS[A.panel_supervisory], "supervisory_clear"))
            elif ev == Event.breaker_closed:
                clears.append(Hit(i, A.breaker_tripped, *DEFAULTS[A.breaker_tripped], "breaker_closed"))
            elif ev == Event.hydrant_close and kind == Kind.water:
                clears.append(Hit(i, A.hydrant_open, *DEFAULTS[A.hydrant_open], "hydrant_close"))
            elif ev == Event.alarm_clear:
                quick = transient[i]
                for t in KIND_ALARMS[Kind(kind)]:
                    if t == A.co_high and not self.is_co(b, fleet, i):
                        continue
                    clears.append(Hit(i, t, DEFAULTS[t][0], Response.none if quick else DEFAULTS[t][1],
                                      "transient" if quick else "alarm_clear"))
            elif ev == Event.fault_clear:
                t = A.panel_fault if panel else A.device_fault
                clears.append(Hit(i, t, *DEFAULTS[t], "fault_clear"))
            elif ev == Event.tamper_clear:
                clears.append(Hit(i, A.tamper, *DEFAULTS[A.tamper], "tamper_clear"))
        low_state: dict[int, bool] = {}
        for i in sorted(rows, key=lambda i: (int(b.slot[i]), int(b.ts_ms[i]), i)):
            s = int(b.slot[i])
            pct = float(b.values["battery_pct"][i])
            event_low = int(b.event[i]) == Event.low_battery
            if int(b.ts_ms[i]) < int(fleet.last_ts_ms[s]) or not (event_low or not math.isnan(pct)):
                continue
            before = low_state.get(s, bool(int(fleet.flags[s]) & LOW_BATTERY))
            now_low = event_low or pct < self.th(fleet, s, "battery_pct_min")
            if now_low and not before and not event_low:
                faults.append(Hit(i, A.low_battery, *DEFAULTS[A.low_battery], "device.low_battery"))
            if before and not now_low:
                clears.append(Hit(i, A.low_battery, *DEFAULTS[A.low_battery], "battery_ok"))
            low_state[s] = now_low
        for h in faults:
            why = self.suppression(b, fleet, h.row, health=True)
            if why:
                h.response, h.rule = Response.none, why

        out = [Decision("raise", f"device:{ids[int(b.slot[h.row])]}", h.type, h.severity, h.response, h.rule,
                        int(b.ts_ms[h.row]), [ids[int(b.slot[h.row])]], unit_name(int(b.slot[h.row])))
               for h in raises + faults]
        out += [Decision("clear", f"device:{ids[int(b.slot[h.row])]}", h.type, h.severity, h.response, h.rule,
                         int(b.ts_ms[h.row]), [ids[int(b.slot[h.row])]], unit_name(int(b.slot[h.row])))
                for h in clears]
        out += self.units(b, fleet, now_ms, raises)
        return out

    def units(self, b: ReadingColumns, fleet: Fleet, now_ms: int, raises: list[Hit]) -> list[Decision]:
        cfg = self.config
        self.log = [m for m in self.log if m.seen >= now_ms - cfg.correlation_memory_s * 1000]
        fresh: dict[int, Remembered] = {}
        for h in raises:
            if h.rule.startswith("suppressed."):
                continue
            slot = int(b.slot[h.row])
            unit = int(fleet.unit[slot])
            classes = ({"fire"} if h.type in FIRE else set()) | ({"smoke"} if h.type == A.smoke else set()) \
                | ({"electrical"} if h.type in ELECTRICAL else set())
            if unit < 0 or not classes:
                continue
            if h.row not in fresh:
                fresh[h.row] = Remembered(slot, unit, int(b.ts_ms[h.row]), set(), now_ms, 0)
            fresh[h.row].classes |= classes
        batch = [fresh[r] for r in sorted(fresh)]
        for m in batch:
            self.counter += 1
            m.index = self.counter
        everything = self.log + batch
        multi_w, elec_w = cfg.multi_detector_window_s * 1000, cfg.electrical_smoke_window_s * 1000

        triggered: dict[int, dict] = {}
        for q in batch:
            found: list[tuple[str, list[Remembered]]] = []
            if "fire" in q.classes:
                near = [
                    m for m in everything if "fire" in m.classes and m.unit == q.unit and abs(m.ts - q.ts) <= multi_w
                ]
                if any(m.slot != q.slot for m in near):
                    found.append(("multi", near))
            for mine, theirs in (("electrical", "smoke"), ("smoke", "electrical")):
                if mine in q.classes:
                    near = [
                        m for m in everything if theirs in m.classes and m.unit == q.unit and abs(m.ts - q.ts) <= elec_w
                    ]
                    if near:
                        found.append(("elec", [*near, q]))
            for kind, near in found:
                t = triggered.setdefault(q.unit, {"multi": False, "ts": q.ts, "involved": []})
                t["multi"] |= kind == "multi"
                t["ts"] = max(t["ts"], q.ts)
                t["involved"] += near
        self.log += batch

        out = []
        for unit, t in triggered.items():
            newest: dict[int, Remembered] = {}
            for m in t["involved"]:
                if m.slot not in newest or (m.ts, m.index) > (newest[m.slot].ts, newest[m.slot].index):
                    newest[m.slot] = m
            name = fleet.units.names[unit]
            out.append(Decision("raise", f"unit:{name}", A.fire, Severity.critical, Response.immediate,
                                "unit.multi_detector" if t["multi"] else "unit.electrical_then_smoke", t["ts"],
                                [fleet.device_ids[s] for s in newest], name))
        return out

    # --- offline --------------------------------------------------------------------------
    def sweep(self, offline_slots: list[int], fleet: Fleet, now_ms: int) -> list[Decision]:
        cfg = self.config
        ids = fleet.device_ids
        new = sorted(
            {int(s) for s in offline_slots if 0 <= int(s) < fleet.size and int(fleet.offline_since_ms[int(s)]) > 0}
        )
        members: set[int] = set()
        for q in new:
            cell = int(fleet.cell[q])
            if cell < 0:
                continue
            since = int(fleet.offline_since_ms[q])
            near = [s for s in range(fleet.size) if int(fleet.cell[s]) == cell and int(fleet.offline_since_ms[s]) > 0
                    and 0 <= since - int(fleet.offline_since_ms[s]) <= cfg.outage_window_s * 1000]
            if len(near) >= cfg.outage_devices:
                members |= {s for s in near if self.offline_mode.get(s) != "outage"}
        out = []
        for s in new:
            if s in members:
                continue
            self.offline_mode[s] = "own"
            verify = Kind(int(fleet.kind[s])) in cfg.offline_verify_kinds
            sev, resp = (Severity.major, Response.verify) if verify else (Severity.minor, Response.none)
            out.append(Decision("raise", f"device:{ids[s]}", A.offline, sev, resp, "device.offline",
                                int(fleet.offline_since_ms[s]), [ids[s]]))
        by_cell: dict[int, list[int]] = {}
        for s in sorted(members):
            cell = int(fleet.cell[s])
            if s not in new:
                out.append(Decision("clear", f"device:{ids[s]}", A.offline, Severity.minor, Response.none,
                                    "network_outage", now_ms, [ids[s]]))
            self.offline_mode[s], self.outage_cell[s] = "outage", cell
            self.outage_members[cell] = self.outage_members.get(cell, 0) + 1
            by_cell.setdefault(cell, []).append(s)
        for cell, slots in by_cell.items():
            out.append(Decision("raise", f"cell:{fleet.cells.names[cell]}", A.network_outage, Severity.major,
                                Response.verify, "network_outage", max(int(fleet.offline_since_ms[s]) for s in slots),
                                [ids[s] for s in slots]))
        return out

    def came_online(self, slots: list[int], fleet: Fleet, now_ms: int) -> list[Decision]:
        ids = fleet.device_ids
        out = []
        heard: dict[int, int] = {}
        for s in sorted({int(s) for s in slots if 0 <= int(s) < fleet.size}):
            seen = int(fleet.last_seen_ms[s]) or now_ms
            if self.offline_mode.pop(s, None) == "outage":
                cell = self.outage_cell.pop(s)
                self.outage_members[cell] -= 1
                heard[cell] = max(heard.get(cell, 0), seen)
            else:
                out.append(Decision(
                    "clear", f"device:{ids[s]}", A.offline, Severity.minor, Response.none, "online", seen, [ids[s]]
                ))
        for cell, seen in heard.items():
            if self.outage_members[cell] <= 0:
                out.append(Decision("clear", f"cell:{fleet.cells.names[cell]}", A.network_outage, Severity.major,
                                    Response.verify, "online", seen, []))
        return out


# --- test inputs ----------------------------------------------------------------------------
T0 = 1_795_341_600_000  # 2026-11-21T00:00:00Z


def reading(device_id: str, kind: Kind, event: Event | str, ts_ms: int, alarm_code: str | None = None,
            **metrics: object) -> Reading:
    """A reading received when it was sent; `alarm_code` goes to its extra, as device profiles put it."""
    extra = {} if alarm_code is None else {"alarm_code": alarm_code}
    return Reading(device_id, kind, Event[event] if isinstance(event, str) else event, ts_ms, ts_ms,
                   metrics=dict(metrics), extra=extra)


def columns(fleet: Fleet, readings: list[Reading]) -> ReadingColumns:
    return ReadingColumns.from_readings(readings, fleet.slots([r.detector_id for r in readings]))


def decision_key(d: Decision) -> tuple:
    """What the property tests compare: everything but the evidence and the order of device ids."""
    return (
        d.action, d.key, d.type.name, d.severity.name, d.response.name, d.rule, d.ts_ms, tuple(sorted(d.device_ids))
    )
