"""The correlation core: a batch of readings + fleet state + the clock -> alarm decisions.

Pure and synchronous: no I/O and no clock reads (time is `now_ms`); numpy over the whole batch,
Python only to build the few `Decision` objects at the end. CONTRACT §8 and §10 are the rule
book; the rules live in `rules` (one reading; smoke, gas, panels, electrical with pyrolysis),
`water`, `charger` and `co` (the v2 classes, with `held` for conditions that must last),
`states` (power, supervisory and breaker states), `episodes` (one detector over time),
`correlation` (one unit) and `offline` (sweeps and NB cells).

Not here: "a verify fire-class alarm still unacknowledged after 60 s becomes immediate" is a
timer of the alarm lifecycle (`alerting.lifecycle.upgrade_unacked`), as is escalation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alerting.config import RuleConfig
from alerting.core import offline
from alerting.core.charger import charger
from alerting.core.co import co_high
from alerting.core.correlation import ELECTRICAL, FIRE, SMOKE, AlarmLog, Entries, UnitFire, unit_fires
from alerting.core.episodes import DetectorState, battery_changes, episodes, muted_by_event
from alerting.core.rules import (
    DEFAULTS,
    ELECTRICAL_TYPES,
    EVERY_ROW,
    FIRE_TYPES,
    RULE,
    RULES,
    TYPE_METRICS,
    Hits,
    Readings,
    electrical,
    event_clears,
    gas,
    health,
    panel,
    smoke,
    threshold_defaults,
)
from alerting.core.states import state_clears, state_raises
from alerting.core.timeline import NO_TIME, run_ends, run_starts
from alerting.core.water import water
from alerting.model import AlarmType, Decision, Response, Severity
from devices.batch import ReadingColumns
from devices.catalogue import METRICS
from devices.fleet import LOW_BATTERY, MAINTENANCE, Fleet
from devices.kinds import Event, Kind

_TYPE_CLASS = np.zeros(len(AlarmType), np.uint8)
_TYPE_CLASS[list(FIRE_TYPES)] |= FIRE
_TYPE_CLASS[AlarmType.smoke] |= SMOKE
_TYPE_CLASS[list(ELECTRICAL_TYPES)] |= ELECTRICAL
_EVENT_NAMES = {int(e): e.name for e in Event}
_TYPE_METRICS = tuple(TYPE_METRICS.get(t, ()) for t in AlarmType)  # by type code
_TYPES, _SEVERITIES, _RESPONSES = tuple(AlarmType), tuple(Severity), tuple(Response)  # by code: codes are 0..n-1
_TEST, _NONE = int(Event.test), int(Response.none)
_SUPPRESSED_TEST, _SUPPRESSED_MAINTENANCE, _SUPPRESSED_MUTED = (
    RULE["suppressed.test"], RULE["suppressed.maintenance"], RULE["suppressed.muted"])
_NO_ROWS = np.zeros(0, np.int64)
#: The alarm-class rules, in the order their hits are listed.
ALARM_RULES = (smoke, gas, panel, electrical, water, charger, co_high)
_INT_METRICS = frozenset(name for name, spec in METRICS.items() if spec.type is int)
#: Devices listed one by one in a network outage's evidence (all are in its `device_ids`).
OUTAGE_EVIDENCE_MAX = 20


class Correlator:
    """Turns readings into alarm decisions; holds per-detector state that grows with the fleet.

    State: the open alarm episode, the last completed alarm/clear cycles and the latest `mute`
    event of every slot (for transients, flapping, mutes), recent unit alarms (for multi-detector and
    electrical-then-smoke correlation) and how each offline device was reported. Its writes to the fleet are
    `Fleet.mark_flapping` and, when an operator lifts the mark, `Fleet.clear_flapping` (`clear_flapping`).
    """

    def __init__(self, config: RuleConfig | None = None) -> None:
        self.config = c = config or RuleConfig()
        self._detectors = DetectorState.empty(0, c.flapping_cycles - 1)
        self._offline = offline.OfflineState.empty(0)
        self._log = AlarmLog(int(c.correlation_memory_s * 1000))
        self._thresholds = threshold_defaults(c)

    def clear_flapping(self, slot: int, fleet: Fleet) -> None:
        """An operator lifts a detector's flapping mark: the fleet flag and the cycles that made it,
        so that only `flapping_cycles` new cycles mark it again."""
        fleet.clear_flapping(slot)
        if slot < self._detectors.cycles.shape[0]:
            self._detectors.cycles[slot] = NO_TIME

    # --- readings --------------------------------------------------------------------------
    def evaluate(self, batch: ReadingColumns, fleet: Fleet, now_ms: int) -> list[Decision]:
        """Decisions about one batch, ordered by device time. Call it BEFORE `fleet.apply(batch)`:
        the fleet's values are then the previous samples (rate of rise) and its flags the state
        before the batch (LOW_BATTERY, FLAPPING, MAINTENANCE).

        Single-reading rules raise per device (`device:<detector_id>`); suppressed alarms (a
        `test` reading, a device or unit in maintenance, a device muted by command
        (`Fleet.mute_until_ms`) or by its own `mute` event (`mute_s`)) are kept with response
        `none` and rule `suppressed.*`; a flapping detector's alarms stay `verify` (rule
        `flapping`). Unsuppressed fire-class alarms of two detectors of one unit within 120 s, or
        an electrical and a smoke alarm within 300 s, raise the unit's `fire` alarm
        (`unit:<unit_id>`, critical, immediate). `alarm_clear` clears the alarm types of the
        device's kind; within 10 s (inclusive, device time) of the alarm's start it is a
        `transient` (response `none`). `fault`, `tamper`, `low_battery` events and a
        `battery_pct` falling below the floor raise device_fault (panel_fault for uitd), tamper,
        low_battery (response `none`; only maintenance suppresses them); `fault_clear`,
        `tamper_clear` and a recovered battery clear them. The v2 classes (CONTRACT §10) are rules of
        their own modules (`water`, `charger`, `co`; pyrolysis in `rules.electrical`); power_fault,
        panel_supervisory and breaker_tripped are raised and cleared by events like faults (`states`).
        Evidence names the batch `row` of each
        reading, so the caller can add what the numeric columns lack (a fault's `fault_code`).
        A detector's readings are taken in device-time order. Rows whose slot is not a fleet
        device are ignored.
        """
        c = self.config
        self._detectors.grow(fleet.size)
        r = Readings(batch, fleet, c, self._thresholds)
        n = len(batch)

        alarms = Hits.concat([hits for rule in ALARM_RULES for hits in rule(r)])
        muted = muted_by_event(
            alarms.row, r.slot, r.ts, r.with_event(Event.mute), self._detectors, int(c.mute_s * 1000)
        )
        quiet = _suppress(alarms, _suppression(r, alarms.row, muted))
        raised = _distinct(alarms.row[~quiet], n)
        clears = r.with_event(Event.alarm_clear)
        ep = episodes(raised, clears, r.slot, r.ts, fleet.flags, self._detectors,
                      transient_ms=int(c.transient_s * 1000), flapping_ms=int(c.flapping_window_s * 1000))
        if ep.newly_flapping.size:
            fleet.mark_flapping(ep.newly_flapping)
        flapping = np.zeros(n, bool)
        flapping[raised] = ep.flapping
        flap = flapping[alarms.row] & ~quiet
        alarms.response[flap] = np.maximum(alarms.response[flap], Response.verify)
        alarms.rule[flap] = RULE["flapping"]

        low, recovered = _battery(r)
        faults = Hits.concat([health(r), Hits.of(low, AlarmType.low_battery, rule=RULE["device.low_battery"]),
                              state_raises(r)])
        _suppress(faults, _suppression(r, faults.row, None))
        ended = Hits.concat([*event_clears(r, ep.transient, clears),
                             Hits.of(recovered, AlarmType.low_battery, rule=RULE["battery_ok"]), state_clears(r)])
        started = np.full(n, NO_TIME, np.int64)
        started[clears] = ep.started

        entries = _entries(r, alarms.take(~quiet), now_ms)
        known = self._log.recall(now_ms, entries.unit) + entries
        fires = unit_fires(known, int(c.multi_detector_window_s * 1000), int(c.electrical_smoke_window_s * 1000))
        self._log.remember(entries)

        out = _device_decisions(r, [alarms, faults], ended, started)
        out += [_unit_decision(r, known, fire) for fire in fires]
        out.sort(key=lambda d: d.ts_ms)
        return out

    # --- offline -----------------------------------------------------------------------------
    def sweep(self, offline_slots: np.ndarray, fleet: Fleet, now_ms: int) -> list[Decision]:
        """Alarms for the devices `Fleet.sweep` just declared offline (`offline_slots`).

        Each gets an `offline` alarm (minor, response none: a maintenance job; for the kinds in
        `offline_verify_kinds`, by default uitd, whose silence hides a whole fire panel: major,
        verify), unless its NB cell has 20 or more devices offline since a moment in the 10 minutes
        up to its own: those fold into one `network_outage` alarm of the cell (major, verify) and
        the own offline alarms of the earlier ones are cleared (rule `network_outage`).
        """
        c = self.config
        w = offline.went_offline(offline_slots, fleet, self._offline, devices=c.outage_devices,
                                 window_ms=int(c.outage_window_s * 1000))
        ids, since, seen = fleet.device_ids, fleet.offline_since_ms, fleet.last_seen_ms
        out = []
        for s in w.own.tolist():
            needs_response = Kind(int(fleet.kind[s])) in c.offline_verify_kinds
            severity, response = (Severity.major, Response.verify) if needs_response else DEFAULTS[AlarmType.offline]
            evidence = {"device_id": ids[s], "offline_since_ms": int(since[s]), "last_seen_ms": int(seen[s]),
                        "detected_ms": now_ms}
            out.append(Decision("raise", f"device:{ids[s]}", AlarmType.offline, severity, response, "device.offline",
                                int(since[s]), [ids[s]], _unit_name(fleet, s), [evidence]))
        for s in w.folded.tolist():
            key = f"device:{ids[s]}"
            out.append(_clear(AlarmType.offline, key, "network_outage", now_ms, [ids[s]], _unit_name(fleet, s)))
        if w.outage.size:
            ends = np.flatnonzero(run_ends(w.outage_cells))
            for a, b in zip(np.concatenate([[0], ends[:-1] + 1]).tolist(), (ends + 1).tolist()):
                out.append(_outage(fleet, int(w.outage_cells[a]), w.outage[a:b], c.outage_window_s, now_ms))
        out.sort(key=lambda d: d.ts_ms)
        return out

    def came_online(self, slots: np.ndarray, fleet: Fleet, now_ms: int) -> list[Decision]:
        """Clears for devices heard again after being offline (`AppliedBatch.came_online`, after
        `fleet.apply`): their own `offline` alarm, and a cell's `network_outage` once every device
        folded into it is back. Rule `online`; the time is when the device was heard."""
        back = offline.came_back(slots, fleet, self._offline)
        ids = fleet.device_ids

        def heard(s: int) -> int:
            return int(fleet.last_seen_ms[s]) or now_ms

        out = [_clear(AlarmType.offline, f"device:{ids[s]}", "online", heard(s), [ids[s]], _unit_name(fleet, s))
               for s in back.own.tolist()]
        out += [_clear(AlarmType.network_outage, f"cell:{fleet.cells.names[cell]}", "online", heard(s), [], None)
                for cell, s in zip(back.ended_cells.tolist(), back.last_back.tolist())]
        out.sort(key=lambda d: d.ts_ms)
        return out


# --- helpers of evaluate -------------------------------------------------------------------
def _distinct(rows: np.ndarray, n: int) -> np.ndarray:
    """The distinct batch rows among `rows` (of a batch of n), ascending."""
    seen = np.zeros(n, bool)
    seen[rows] = True
    return np.flatnonzero(seen)


def _suppression(r: Readings, rows: np.ndarray, muted_by_event: np.ndarray | None) -> np.ndarray:
    """Per row, the RULE code of what suppresses its alarms (a test, maintenance, a mute), or -1.
    Health decisions (`muted_by_event` None) are suppressed by maintenance only."""
    fleet = r.fleet
    slot = r.slot[rows]
    unit = fleet.unit[slot]
    maintenance = ((fleet.flags[slot] & MAINTENANCE) != 0) | ((unit >= 0) & fleet.unit_maintenance[np.maximum(unit, 0)])
    if muted_by_event is None:
        return np.where(maintenance, _SUPPRESSED_MAINTENANCE, -1)
    test = r.event[rows] == _TEST
    muted = (fleet.mute_until_ms[slot] > r.ts[rows]) | muted_by_event
    return np.where(test, _SUPPRESSED_TEST,
                    np.where(maintenance, _SUPPRESSED_MAINTENANCE, np.where(muted, _SUPPRESSED_MUTED, -1)))


def _suppress(hits: Hits, code: np.ndarray) -> np.ndarray:
    """Apply suppression codes (response none, rule suppressed.*); answer the suppressed mask."""
    quiet = code >= 0
    hits.response[quiet] = _NONE
    hits.rule[quiet] = code[quiet]
    return quiet


def _battery(r: Readings) -> tuple[np.ndarray, np.ndarray]:
    """Rows where a device's battery becomes low by its `battery_pct` and rows where it recovers."""
    pct = r.value("battery_pct")
    floor = r.limit("battery_pct_min", EVERY_ROW)
    low_event = np.zeros(pct.shape[0], bool)
    low_event[r.with_event(Event.low_battery)] = True
    was_low = (r.fleet.flags[r.slot] & LOW_BATTERY) != 0
    # only devices with a row that disagrees with their flag can change: follow those alone
    disagree = r.valid & (low_event | ~np.isnan(pct)) & ((low_event | (pct < floor)) != was_low)
    if not disagree.any():
        return _NO_ROWS, _NO_ROWS
    rows = r.rows_of(np.flatnonzero(disagree))
    slot, ts = r.slot[rows], r.ts[rows]
    late = ts < r.fleet.last_ts_ms[slot]
    floors = floor[rows] if isinstance(floor, np.ndarray) else np.full(rows.shape[0], floor)
    low, recovered = battery_changes(slot, ts, low_event[rows], pct[rows], floors, late, was_low[rows])
    return rows[low], rows[recovered]


def _entries(r: Readings, hits: Hits, now_ms: int) -> Entries:
    """This batch's unsuppressed unit alarms, one entry per row (type of its first hit)."""
    cls = _TYPE_CLASS[hits.type]
    mine = cls != 0
    rows, cls, types = hits.row[mine], cls[mine], hits.type[mine]
    order = np.argsort(rows, kind="stable")
    rows, cls, types = rows[order], cls[order], types[order]
    first = run_starts(rows)
    heads = np.flatnonzero(first)
    cls = np.bitwise_or.reduceat(cls, heads) if heads.size else cls[heads]
    rows, types = rows[heads], types[heads]
    slot = r.slot[rows]
    unit = r.fleet.unit[slot]
    keep = unit >= 0
    rows = rows[keep]
    return Entries(slot[keep].astype(np.int32), unit[keep], r.ts[rows], cls[keep], types[keep],
                   r.event[rows].astype(np.int8), rows, np.full(rows.shape[0], now_ms, np.int64))


def _unit_name(fleet: Fleet, slot: int) -> str | None:
    u = int(fleet.unit[slot])
    return fleet.units.names[u] if u >= 0 else None


def _evidence(r: Readings, rows: np.ndarray, device_ids: list[str], types: list[int]) -> list[dict[str, Any]]:
    """Evidence of batch readings: who, when, which event, the metrics behind each one's alarm type."""
    needed = {name for t in set(types) for name in _TYPE_METRICS[t]}
    metrics = {name: r.value(name)[rows].tolist() for name in needed}
    out = []
    for i, (row, device, ts, event, t) in enumerate(zip(rows.tolist(), device_ids, r.ts[rows].tolist(),
                                                        r.event[rows].tolist(), types)):
        ev: dict[str, Any] = {"row": row, "device_id": device, "ts_ms": ts, "event": _EVENT_NAMES[event]}
        for name in _TYPE_METRICS[t]:
            v = metrics[name][i]
            if v == v:
                ev[name] = int(v) if name in _INT_METRICS else v
        out.append(ev)
    return out


def _device_decisions(r: Readings, raises: list[Hits], clears: Hits, started: np.ndarray) -> list[Decision]:
    hits = Hits.concat([*raises, clears])
    if not len(hits):
        return []
    order = np.lexsort((np.arange(len(hits)), hits.row, r.ts[hits.row]))
    fleet = r.fleet
    rows = hits.row[order]
    slots = r.slot[rows]
    ids = fleet.device_ids
    devices = [ids[s] for s in slots.tolist()]
    types = hits.type[order].tolist()
    evidence = _evidence(r, rows, devices, types)
    columns = zip(devices, evidence, fleet.unit[slots].tolist(), r.ts[rows].tolist(), types,
                  hits.severity[order].tolist(), hits.response[order].tolist(), hits.rule[order].tolist(),
                  hits.rise[order].tolist(), (order >= len(hits) - len(clears)).tolist(), started[rows].tolist())
    names = fleet.units.names
    out = []
    for device, ev, unit, ts, t, s, p, code, up, clear, since in columns:
        if clear and since != NO_TIME:
            ev["alarm_started_ms"] = since
        if up == up:
            ev["rise_per_min"] = up
        out.append(Decision("clear" if clear else "raise", f"device:{device}", _TYPES[t], _SEVERITIES[s], _RESPONSES[p],
                            RULES[code], ts, [device], names[unit] if unit >= 0 else None, [ev]))
    return out


def _unit_decision(r: Readings, e: Entries, fire: UnitFire) -> Decision:
    fleet = r.fleet
    entries = fire.evidence[np.argsort(e.ts[fire.evidence], kind="stable")]
    devices = [fleet.device_ids[s] for s in e.slot[entries].tolist()]
    types = e.type[entries].tolist()
    evidence = [{"device_id": device, "ts_ms": ts, "event": _EVENT_NAMES[event]}  # remembered from earlier batches
                for device, ts, event in zip(devices, e.ts[entries].tolist(), e.event[entries].tolist())]
    rows = e.row[entries]
    in_batch = np.flatnonzero(rows >= 0).tolist()
    mine = _evidence(r, rows[in_batch], [devices[i] for i in in_batch], [types[i] for i in in_batch])
    for i, ev in zip(in_batch, mine):
        evidence[i] = ev
    for ev, t in zip(evidence, types):
        ev["type"] = _TYPES[t].name
    unit = fleet.units.names[fire.unit]
    return Decision("raise", f"unit:{unit}", AlarmType.fire, Severity.critical, Response.immediate, fire.rule, fire.ts,
                    devices, unit, evidence)


# --- helpers of sweep ----------------------------------------------------------------------
def _clear(type_: AlarmType, key: str, rule: str, ts_ms: int, device_ids: list[str], unit_id: str | None) -> Decision:
    severity, response = DEFAULTS[type_]
    return Decision("clear", key, type_, severity, response, rule, ts_ms, device_ids, unit_id)


def _outage(fleet: Fleet, cell: int, slots: np.ndarray, window_s: float, now_ms: int) -> Decision:
    ids, since, seen = fleet.device_ids, fleet.offline_since_ms, fleet.last_seen_ms
    name = fleet.cells.names[cell]
    slots = slots[np.argsort(since[slots], kind="stable")]
    evidence: list[dict[str, Any]] = [
        {"cell_id": name, "devices": int(slots.size), "window_s": window_s, "detected_ms": now_ms}]
    evidence += [{"device_id": ids[s], "offline_since_ms": int(since[s]), "last_seen_ms": int(seen[s])}
                 for s in slots[:OUTAGE_EVIDENCE_MAX].tolist()]
    severity, response = DEFAULTS[AlarmType.network_outage]
    return Decision("raise", f"cell:{name}", AlarmType.network_outage, severity, response, "network_outage",
                    int(since[slots].max()), [ids[s] for s in slots.tolist()], None, evidence)
