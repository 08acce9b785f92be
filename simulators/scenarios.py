"""Scenarios with ground truth: deterministic timed messages and the alarms they must (not) raise.

A scenario is built from a fleet, a seed and a start time (epoch ms; anchor it at real now when
the service runs on real time). Its `steps` are readings in time order plus `Silence` marks
(a device stops sending, for good or until `until_ms`); its `expectations` say which alarms
must fire, with which response and how soon after which reading, and which must not (CONTRACT §8).

`cast(fleet, seed)` gives every scenario of one seed its own units, cell and district, so all of
them can play at once against one service and be scored independently.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from alerting.model import FIRE_CLASS, AlarmType, Response, Severity
from devices.kinds import Event, Kind
from devices.reading import Reading
from simulators.fleet import SimDevice, SimFleet, SimUnit
from simulators.telemetry import Lane, ambient_c, lane_of, make_reading, routine_event

TransportHint = Literal["mqtt", "http", "tcp"]

#: How soon (scenario seconds) after its triggering reading a 秒响应 or single-device alarm must exist.
IMMEDIATE_WITHIN_S = 5.0
#: The service's offline sweep runs at least this often (CONTRACT §8).
SWEEP_S = 10.0
#: CONTRACT §8 values the ground truth is built on.
MULTI_DETECTOR_WINDOW_S = 120
ELECTRICAL_SMOKE_WINDOW_S = 300
TRANSIENT_S = 10
FLAPPING_CYCLES, FLAPPING_WINDOW_S = 3, 600
OUTAGE_MIN_DEVICES, OUTAGE_WINDOW_S = 20, 600
OFFLINE_FACTOR = 2.5
SMOKE_HEAT_C = 57.0
GAS_MAJOR_LEL, GAS_CRITICAL_LEL = 10.0, 25.0
CABLE_HOT_C = 70.0
SETTLE_S = 30  # quiet time at the end of every scenario
_FIRE_TYPES = tuple(sorted(FIRE_CLASS))


@dataclass(frozen=True, slots=True)
class Step:
    """One message: a reading to send at scenario time `at_ms` on a lane through a transport."""

    at_ms: int
    reading: Reading
    lane: Lane
    transport_hint: TransportHint


@dataclass(frozen=True, slots=True)
class Silence:
    """From `at_ms` the device sends nothing (also no background heartbeats) until `until_ms` (None: never)."""

    at_ms: int
    device_id: str
    until_ms: int | None = None

    def covers(self, device_id: str, at_ms: int) -> bool:
        return device_id == self.device_id and self.at_ms <= at_ms and (self.until_ms is None or at_ms < self.until_ms)


@dataclass(frozen=True, slots=True)
class Expectation:
    """Ground truth about alarms, matched against alarm objects of the API (CONTRACT §5).

    An alarm matches when its type is one of `types` (empty: any), it involves one of
    `device_ids` or has one of `unit_ids` as its unit (both empty: any), its response is one of
    `responses` (empty: any) and its severity is `severity` (None: any). `must_fire`: some
    matching alarm exists with `first_seen` no later than `after_ms + within_s`. Otherwise at most
    `max_matches` matching alarms may exist over the whole scenario. `key` is the correlation
    core's alarm key (`device:<detector>`, `unit:<unit_id>`, `cell:<cell_id>`) where it is fixed.
    """

    must_fire: bool
    types: tuple[AlarmType, ...]
    why: str
    key: str | None = None
    device_ids: tuple[str, ...] = ()
    unit_ids: tuple[str, ...] = ()
    responses: tuple[Response, ...] = ()
    severity: Severity | None = None
    after_ms: int = 0
    within_s: float = 0.0
    max_matches: int = 0

    @property
    def deadline_ms(self) -> int:
        return self.after_ms + round(self.within_s * 1000)

    def matches(self, alarm: Mapping[str, Any]) -> bool:
        if self.types and _name(alarm.get("type")) not in {t.name for t in self.types}:
            return False
        if self.responses and _name(alarm.get("response")) not in {r.name for r in self.responses}:
            return False
        if self.severity is not None and _name(alarm.get("severity")) != self.severity.name:
            return False
        if self.device_ids or self.unit_ids:
            involved = set(alarm.get("device_ids") or ())
            if not (involved & set(self.device_ids) or alarm.get("unit_id") in self.unit_ids):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Verdict:
    expectation: Expectation
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    start_ms: int
    end_ms: int  # every step and every deadline falls before it
    steps: tuple[Step | Silence, ...]  # in time order
    expectations: tuple[Expectation, ...]

    def messages(self) -> list[Step]:
        return [s for s in self.steps if isinstance(s, Step)]

    def silences(self) -> list[Silence]:
        return [s for s in self.steps if isinstance(s, Silence)]

    def device_ids(self) -> set[str]:
        return {s.reading.device_id if isinstance(s, Step) else s.device_id for s in self.steps}

    def evaluate(self, alarms: Iterable[Mapping[str, Any]], *, slack_s: float = 0.0) -> list[Verdict]:
        """Score API alarm objects against the expectations. `first_seen` (epoch ms or RFC 3339)
        is compared with each deadline plus `slack_s` when an alarm carries it."""
        alarms = list(alarms)
        out = []
        for e in self.expectations:
            found = [a for a in alarms if e.matches(a)]
            if e.must_fire:
                late_after = e.deadline_ms + slack_s * 1000
                on_time = [a for a in found if (seen := first_seen_ms(a)) is None or seen <= late_after]
                ok = bool(on_time)
                detail = f"{len(found)} matching, {len(on_time)} in time" if found else "no matching alarm"
            else:
                ok = len(found) <= e.max_matches
                detail = f"{len(found)} matching (at most {e.max_matches} allowed)"
            out.append(Verdict(e, ok, detail))
        return out


def _name(v: Any) -> str | None:
    return getattr(v, "name", v) if v is not None else None


def first_seen_ms(alarm: Mapping[str, Any]) -> int | None:
    v = alarm.get("first_seen")
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str):
        return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)
    return None


class ScenarioUnavailable(ValueError):
    """The fleet has nothing to play this scenario with (e.g. no cell with 20 NB devices)."""


# --------------------------------------------------------------------------- casting


@dataclass(frozen=True, slots=True)
class Cast:
    """Who plays what, disjoint across scenarios: a unit per single-unit scenario, the cell with
    the most NB devices sharing one heartbeat interval for the outage, another district for the
    power cut."""

    outage_cell: str | None
    power_cut_district: str | None
    units: dict[str, str]


def district_of(region: str) -> str:
    return "/".join(region.split("/")[:3])


_ROLES: tuple[tuple[str, Callable[[list[SimDevice]], bool], tuple[str, ...]], ...] = (
    ("panel_fire", lambda ds: any(d.kind is Kind.uitd and d.components for d in ds), ()),
    ("electrical_then_smoke", lambda ds: _has(ds, Kind.electrical) and _has(ds, Kind.smoke),
     ("commercial", "industrial")),
    ("fire_spread", lambda ds: _count(ds, Kind.smoke) >= 3, ("residential", "welfare", "hospital")),
    ("fire_spread", lambda ds: _count(ds, Kind.smoke) >= 2, ()),
    ("gas_leak", lambda ds: _has(ds, Kind.gas), ("nine_small", "residential")),
    ("cooking_transient", lambda ds: _has(ds, Kind.smoke), ("nine_small", "residential")),
    ("smoke_heat", lambda ds: _has(ds, Kind.smoke), ()),
    ("test_button", lambda ds: _has(ds, Kind.smoke), ()),
    ("flapping", lambda ds: _has(ds, Kind.smoke), ()),
    ("muted", lambda ds: _has(ds, Kind.smoke), ()),
)


def _castable(d: SimDevice) -> bool:
    """Whether every event of `d` reaches the service as sent (OneNET data points cannot say
    test, mute or alarm_clear), so it can play the lead in a scenario."""
    return d.uplink != "onenet"


def _count(ds: list[SimDevice], kind: Kind) -> int:
    return sum(d.kind is kind and _castable(d) for d in ds)


def _has(ds: list[SimDevice], kind: Kind) -> bool:
    return _count(ds, kind) > 0


def cast(fleet: SimFleet, seed: int) -> Cast:
    rng = random.Random(f"cast:{seed}")
    # Devices of one cell go offline together only if they share a heartbeat interval.
    per_cell = Counter((d.cell_id, d.heartbeat_s) for d in fleet.devices if d.cell_id is not None)
    outage_cell = None
    if per_cell:
        (cell, _), n = max(per_cell.items(), key=lambda kv: (kv[1], kv[0]))
        outage_cell = cell if n >= OUTAGE_MIN_DEVICES else None
    reserved = {d.unit_id for d in fleet.devices if outage_cell is not None and d.cell_id == outage_cell}
    outage_district = next((district_of(c.region) for c in fleet.cells if c.cell_id == outage_cell), None)
    per_district = Counter(
        district_of(u.region) for u in fleet.units if u.unit_id not in reserved for _ in u.device_ids
    )
    candidates = [(n, d) for d, n in per_district.items() if d != outage_district]
    power_cut = max(candidates)[1] if candidates else None
    eligible = [u for u in fleet.units if u.unit_id not in reserved and district_of(u.region) != power_cut]
    rng.shuffle(eligible)
    units: dict[str, str] = {}
    taken: set[str] = set()
    for name, fits, prefer in _ROLES:
        if name in units:
            continue
        pool = [u for u in eligible if u.unit_id not in taken and fits(fleet.devices_of(u.unit_id))]
        pool.sort(key=lambda u: u.industry not in prefer)  # stable: preferred industries first
        if pool:
            units[name] = pool[0].unit_id
            taken.add(pool[0].unit_id)
    return Cast(outage_cell, power_cut, units)


# --------------------------------------------------------------------------- building blocks


@dataclass
class _Script:
    name: str
    fleet: SimFleet
    start_ms: int
    steps: list[Step | Silence] = field(default_factory=list)
    expectations: list[Expectation] = field(default_factory=list)

    def at(self, offset_s: float) -> int:
        return self.start_ms + round(offset_s * 1000)

    def send(
        self,
        dev: SimDevice,
        event: Event,
        offset_s: float,
        metrics: dict[str, Any] | None = None,
        *,
        component: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        at_ms = self.at(offset_s)
        reading = make_reading(dev, event, at_ms, metrics, component=component, extra=extra, normal=component is None)
        self.steps.append(Step(at_ms, reading, lane_of(event), dev.transport))
        return at_ms

    def silence(self, dev: SimDevice, offset_s: float, until_s: float | None = None) -> None:
        self.steps.append(Silence(self.at(offset_s), dev.device_id, None if until_s is None else self.at(until_s)))

    def expect(self, **kwargs: Any) -> None:
        self.expectations.append(Expectation(**kwargs))

    def build(self, description: str) -> Scenario:
        steps = sorted(self.steps, key=lambda s: s.at_ms)  # stable: insertion order breaks ties
        last = max([s.at_ms for s in steps] + [e.deadline_ms for e in self.expectations if e.must_fire])
        end_ms = last + SETTLE_S * 1000
        whole = (end_ms - self.start_ms) / 1000
        expectations = tuple(
            e if e.must_fire else replace(e, after_ms=self.start_ms, within_s=whole) for e in self.expectations
        )
        return Scenario(self.name, description, self.start_ms, end_ms, tuple(steps), expectations)


def _role_unit(fleet: SimFleet, seed: int, name: str) -> SimUnit:
    unit_id = cast(fleet, seed).units.get(name)
    if unit_id is None:
        raise ScenarioUnavailable(f"{name}: the fleet has no free unit with the devices this scenario needs")
    return fleet.unit(unit_id)


def _pick(rng: random.Random, fleet: SimFleet, unit: SimUnit, kind: Kind, n: int = 1) -> list[SimDevice]:
    ds = [d for d in fleet.devices_of(unit.unit_id) if d.kind is kind and _castable(d)]
    return rng.sample(ds, min(n, len(ds)))


def _rng(name: str, seed: int) -> random.Random:
    return random.Random(f"{name}:{seed}")


def _detector_key(dev: SimDevice, component: str | None = None) -> str:
    return f"device:{dev.device_id}" if component is None else f"device:{dev.device_id}:{component}"


# --------------------------------------------------------------------------- scenarios


def fire_spread(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """Fire spreads across a unit: detectors alarm one after another as heat rises."""
    rng = _rng("fire_spread", seed)
    unit = _role_unit(fleet, seed, "fire_spread")
    s = _Script("fire_spread", fleet, start_ms)
    dets = _pick(rng, fleet, unit, Kind.smoke, 4)
    for i, d in enumerate(dets):
        s.send(d, Event.heartbeat, 2 * i)
    amb = [ambient_c(d, start_ms) for d in dets]
    # (detector, offset s, event, obscuration %/m, degrees above ambient)
    plan = [(0, 30, Event.report, 0.8, 6), (0, 60, Event.alarm, 4.5, 14), (1, 80, Event.report, 1.2, 5),
            (1, 100, Event.alarm, 3.8, 11), (2, 140, Event.alarm, 3.1, 9), (0, 160, Event.alarm, 9.5, 36),
            (3, 175, Event.alarm, 2.6, 7)]
    alarms: dict[int, int] = {}
    for i, offset, event, obs, heat in plan:
        if i >= len(dets):
            continue
        at = s.send(dets[i], event, offset, {"smoke_obscuration_pct_m": obs, "temperature_c": round(amb[i] + heat, 1)})
        if event is Event.alarm:
            alarms.setdefault(i, at)
    s.expect(must_fire=True, types=(AlarmType.fire,), key=f"unit:{unit.unit_id}", unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), after_ms=alarms[1], within_s=IMMEDIATE_WITHIN_S,
             why=f"two detectors of one unit in alarm within {MULTI_DETECTOR_WINDOW_S} s")
    for i, at in alarms.items():
        s.expect(must_fire=True, types=(AlarmType.smoke,), key=_detector_key(dets[i]), device_ids=(dets[i].device_id,),
                 after_ms=at, within_s=IMMEDIATE_WITHIN_S, why="a smoke detector in alarm")
    return s.build(f"fire spreading over {len(alarms)} smoke detectors of {unit.name} with rising heat")


def smoke_heat(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A smoke alarm carrying a temperature of 57 °C or more."""
    rng = _rng("smoke_heat", seed)
    unit = _role_unit(fleet, seed, "smoke_heat")
    (d,) = _pick(rng, fleet, unit, Kind.smoke)
    s = _Script("smoke_heat", fleet, start_ms)
    s.send(d, Event.heartbeat, 0)
    s.send(d, Event.report, 60, {"smoke_obscuration_pct_m": 1.5, "temperature_c": 41.0})
    at = s.send(d, Event.alarm, 90, {"smoke_obscuration_pct_m": 5.2, "temperature_c": 61.5})
    s.send(d, Event.alarm, 120, {"smoke_obscuration_pct_m": 8.0, "temperature_c": 68.0})
    s.expect(must_fire=True, types=(AlarmType.smoke,), key=_detector_key(d), device_ids=(d.device_id,),
             responses=(Response.immediate,), after_ms=at, within_s=IMMEDIATE_WITHIN_S,
             why=f"smoke alarm with temperature_c >= {SMOKE_HEAT_C:g}")
    return s.build(f"smoke alarm at 61.5 °C in {unit.name}")


def electrical_then_smoke(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A cable heats up on an electrical-fire monitor, then a smoke detector of the unit alarms."""
    rng = _rng("electrical_then_smoke", seed)
    unit = _role_unit(fleet, seed, "electrical_then_smoke")
    (e,) = _pick(rng, fleet, unit, Kind.electrical)
    (d,) = _pick(rng, fleet, unit, Kind.smoke)
    s = _Script("electrical_then_smoke", fleet, start_ms)
    s.send(e, Event.report, 0)
    s.send(d, Event.heartbeat, 1)
    base = make_reading(e, Event.report, start_ms).metrics["cable_temp_c"]
    hot_at = 0
    for k, hot in enumerate((44.0, 50.0, 56.0, 62.0, 68.0, 74.0, 78.5), start=1):
        event = Event.alarm if hot >= CABLE_HOT_C and not hot_at else Event.report
        at = s.send(e, event, 30 * k, {"cable_temp_c": [hot, *base[1:]]})
        if hot >= CABLE_HOT_C and not hot_at:
            hot_at = at
    smoke_at = s.send(
        d, Event.alarm, 300, {"smoke_obscuration_pct_m": 3.0, "temperature_c": round(ambient_c(d, start_ms) + 3, 1)}
    )
    s.expect(must_fire=True, types=(AlarmType.cable_overheat,), key=_detector_key(e), device_ids=(e.device_id,),
             after_ms=hot_at, within_s=IMMEDIATE_WITHIN_S,
             why=f"cable temperature >= {CABLE_HOT_C:g} °C (and rising >= 10 °C/min)")
    s.expect(must_fire=True, types=(AlarmType.fire, AlarmType.smoke), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), after_ms=smoke_at, within_s=IMMEDIATE_WITHIN_S,
             why=f"an electrical alarm and a smoke alarm in one unit within {ELECTRICAL_SMOKE_WINDOW_S} s")
    return s.build(f"overheating cable then smoke in {unit.name}")


def gas_leak(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """Gas concentration climbs past 10 %LEL and then 25 %LEL; a linked valve closes."""
    rng = _rng("gas_leak", seed)
    unit = _role_unit(fleet, seed, "gas_leak")
    (g,) = _pick(rng, fleet, unit, Kind.gas)
    s = _Script("gas_leak", fleet, start_ms)
    s.send(g, Event.heartbeat, 0)
    s.send(g, Event.report, 30, {"gas_lel_pct": 4.2})
    major_at = s.send(g, Event.alarm, 60, {"gas_lel_pct": 11.6})
    s.send(g, Event.alarm, 90, {"gas_lel_pct": 18.4})
    critical_at = s.send(g, Event.alarm, 120, {"gas_lel_pct": 27.3})
    if g.valve == "open":
        s.send(g, Event.valve_closed, 122, {"gas_lel_pct": 27.8, "valve": "closed"})
    s.expect(must_fire=True, types=(AlarmType.gas_leak,), key=_detector_key(g), device_ids=(g.device_id,),
             after_ms=major_at, within_s=IMMEDIATE_WITHIN_S, why=f"gas_lel_pct >= {GAS_MAJOR_LEL:g}")
    s.expect(must_fire=True, types=(AlarmType.gas_leak,), key=_detector_key(g), device_ids=(g.device_id,),
             responses=(Response.immediate,), severity=Severity.critical, after_ms=critical_at,
             within_s=IMMEDIATE_WITHIN_S, why=f"gas_lel_pct >= {GAS_CRITICAL_LEL:g}")
    return s.build(f"{g.gas_type} leak in {unit.name}")


def panel_fire(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A fire panel reports one of its detectors in fire through its uitd (GB/T 26875 over TCP)."""
    rng = _rng("panel_fire", seed)
    unit = _role_unit(fleet, seed, "panel_fire")
    (p,) = [d for d in fleet.devices_of(unit.unit_id) if d.kind is Kind.uitd][:1]
    smoke_parts = [c for c in p.components if c.component_type == 42] or list(p.components)
    c = rng.choice(smoke_parts)
    s = _Script("panel_fire", fleet, start_ms)
    s.send(p, Event.heartbeat, 0)
    at = s.send(p, Event.alarm, 30, component=c.component,
                extra={"component_type": c.component_type, "description": c.description})
    s.send(p, Event.heartbeat, 90)
    detector = f"{p.device_id}:{c.component}"
    s.expect(must_fire=True, types=(AlarmType.panel_fire,), key=_detector_key(p, c.component),
             device_ids=(p.device_id, detector), severity=Severity.critical, after_ms=at,
             within_s=IMMEDIATE_WITHIN_S, why="a panel component in fire")
    return s.build(f"panel fire at {c.description} in {unit.name}")


def cooking_transient(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """Cooking smoke: a smoke alarm that clears by itself after 6 s."""
    rng = _rng("cooking_transient", seed)
    unit = _role_unit(fleet, seed, "cooking_transient")
    smokes = [d for d in fleet.devices_of(unit.unit_id) if d.kind is Kind.smoke and _castable(d)]
    kitchen = [d for d in smokes if "厨房" in d.location]
    d = rng.choice(kitchen or smokes)
    amb = ambient_c(d, start_ms)
    s = _Script("cooking_transient", fleet, start_ms)
    s.send(d, Event.heartbeat, 0)
    at = s.send(d, Event.alarm, 40, {"smoke_obscuration_pct_m": 2.2, "temperature_c": round(amb + 2, 1)})
    s.send(d, Event.alarm_clear, 46, {"smoke_obscuration_pct_m": 0.4, "temperature_c": round(amb + 2, 1)})
    s.expect(must_fire=True, types=(AlarmType.smoke,), key=_detector_key(d), device_ids=(d.device_id,),
             responses=(Response.none,), after_ms=at, within_s=TRANSIENT_S + IMMEDIATE_WITHIN_S,
             why=f"an alarm that clears by itself within {TRANSIENT_S} s stays visible with response none")
    s.expect(must_fire=False, types=(), device_ids=(d.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), why="a transient is never 秒响应")
    return s.build(f"cooking smoke for 6 s at {d.location} of {unit.name}")


def test_button(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """Someone presses a detector's test button."""
    rng = _rng("test_button", seed)
    unit = _role_unit(fleet, seed, "test_button")
    (d,) = _pick(rng, fleet, unit, Kind.smoke)
    s = _Script("test_button", fleet, start_ms)
    s.send(d, Event.heartbeat, 0)
    s.send(d, Event.test, 30, {"smoke_obscuration_pct_m": 3.5})
    s.expect(must_fire=False, types=(), device_ids=(d.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), why="a test event is never 秒响应")
    s.expect(must_fire=False, types=_FIRE_TYPES, device_ids=(d.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.verify,), why="a test event is kept with response none: nobody is called")
    return s.build(f"test button at {d.location} of {unit.name}")


test_button.__test__ = False  # type: ignore[attr-defined]  # a scenario, not a pytest test


def flapping(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A dirty detector alarms and clears every two minutes, then holds an alarm for two minutes."""
    rng = _rng("flapping", seed)
    unit = _role_unit(fleet, seed, "flapping")
    (d,) = _pick(rng, fleet, unit, Kind.smoke)
    amb = ambient_c(d, start_ms)
    s = _Script("flapping", fleet, start_ms)
    s.send(d, Event.heartbeat, 0)
    first = 0
    for k in range(4):
        at = s.send(d, Event.alarm, 30 + 120 * k, {"smoke_obscuration_pct_m": 2.4, "temperature_c": amb})
        s.send(d, Event.alarm_clear, 55 + 120 * k, {"smoke_obscuration_pct_m": 0.5, "temperature_c": amb})
        first = first or at
    s.send(d, Event.alarm, 510, {"smoke_obscuration_pct_m": 2.6, "temperature_c": amb})
    s.send(d, Event.alarm_clear, 630, {"smoke_obscuration_pct_m": 0.4, "temperature_c": amb})
    s.expect(must_fire=True, types=(AlarmType.smoke,), key=_detector_key(d), device_ids=(d.device_id,),
             responses=(Response.verify,), after_ms=first, within_s=IMMEDIATE_WITHIN_S,
             why="a smoke alarm that lasts 25 s is a verify alarm")
    s.expect(must_fire=False, types=(), device_ids=(d.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,),
             why=f"{FLAPPING_CYCLES}+ alarm/clear cycles in {FLAPPING_WINDOW_S} s: flapping, never immediate")
    return s.build(f"flapping detector at {d.location} of {unit.name}")


def muted(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A detector is muted (its `mute` event), then alarms for two minutes."""
    rng = _rng("muted", seed)
    unit = _role_unit(fleet, seed, "muted")
    (d,) = _pick(rng, fleet, unit, Kind.smoke)
    amb = ambient_c(d, start_ms)
    s = _Script("muted", fleet, start_ms)
    s.send(d, Event.heartbeat, 0)
    s.send(d, Event.mute, 30)
    at = s.send(d, Event.alarm, 40, {"smoke_obscuration_pct_m": 2.8, "temperature_c": round(amb + 1, 1)})
    s.send(d, Event.alarm_clear, 160, {"smoke_obscuration_pct_m": 0.3, "temperature_c": amb})
    s.expect(must_fire=True, types=(AlarmType.smoke,), key=_detector_key(d), device_ids=(d.device_id,),
             responses=(Response.none,), after_ms=at, within_s=IMMEDIATE_WITHIN_S,
             why="a muted device's alarm is kept with response none")
    s.expect(must_fire=False, types=(), device_ids=(d.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), why="a muted device's alarm is never 秒响应")
    s.expect(must_fire=False, types=_FIRE_TYPES, device_ids=(d.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.verify,), why="nobody is called for a muted device")
    return s.build(f"muted detector at {d.location} of {unit.name} alarms")


def cell_outage(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """An NB-IoT cell goes down: every device on it falls silent after checking in within one minute."""
    cell_id = cast(fleet, seed).outage_cell
    if cell_id is None:
        raise ScenarioUnavailable(f"cell_outage: no cell has {OUTAGE_MIN_DEVICES} NB devices; build a bigger fleet")
    devs = sorted((d for d in fleet.devices if d.cell_id == cell_id), key=lambda d: d.device_id)
    _rng("cell_outage", seed).shuffle(devs)
    s = _Script("cell_outage", fleet, start_ms)
    offline: list[tuple[int, str]] = []
    for i, d in enumerate(devs):
        at = s.send(d, routine_event(d), 60 * i / len(devs))
        s.silence(d, 90)
        offline.append((at + round(OFFLINE_FACTOR * d.heartbeat_s * 1000), d.device_id))
    offline.sort()
    n = OUTAGE_MIN_DEVICES
    j = next(
        (j for j in range(n - 1, len(offline)) if offline[j][0] - offline[j - n + 1][0] <= OUTAGE_WINDOW_S * 1000), None
    )
    if j is None:
        raise ScenarioUnavailable(
            f"cell_outage: {OUTAGE_MIN_DEVICES} devices of cell {cell_id} never go offline within 10 minutes"
        )
    t0 = offline[j - n + 1][0]
    group = tuple(dev for t, dev in offline if t0 <= t <= t0 + OUTAGE_WINDOW_S * 1000)
    s.expect(must_fire=True, types=(AlarmType.network_outage,), key=f"cell:{cell_id}", device_ids=group,
             after_ms=offline[j][0], within_s=SWEEP_S + IMMEDIATE_WITHIN_S,
             why=f"{OUTAGE_MIN_DEVICES}+ devices of one cell offline within {OUTAGE_WINDOW_S} s")
    s.expect(must_fire=False, types=(AlarmType.network_outage,), key=f"cell:{cell_id}", device_ids=group,
             max_matches=1, why="one outage alarm per cell")
    s.expect(must_fire=False, types=(AlarmType.offline,), device_ids=group, max_matches=OUTAGE_MIN_DEVICES - 1,
             why="offline devices of an outage fold into the network_outage alarm, not one alarm each")
    return s.build(f"cell {cell_id} goes down with {len(devs)} NB devices; {len(group)} go offline together")


def power_cut_reregistration(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A district loses mains power for five minutes; its devices re-register in a burst."""
    district = cast(fleet, seed).power_cut_district
    if district is None:
        raise ScenarioUnavailable("power_cut_reregistration: the fleet needs devices in two districts")
    units = [u for u in fleet.units if district_of(u.region) == district]
    devs = [d for u in units for d in fleet.devices_of(u.unit_id)]
    s = _Script("power_cut_reregistration", fleet, start_ms)
    cut, restore, burst = 120, 425, 30
    for i, d in enumerate(devs):
        s.send(d, routine_event(d), 60 * i / len(devs))
    quiet = [d for d in devs if d.kind is not Kind.uitd]
    for i, d in enumerate(devs):
        if d.mains:
            s.send(d, Event.power_fail, cut + 3 * i / len(devs), _mains_off(d))
        if d.kind is Kind.uitd:  # on its backup battery a uitd keeps its link and heartbeat
            for t in range(cut + 90, restore, 90):
                s.send(d, Event.heartbeat, t)
            s.send(d, Event.power_restore, restore)
    for i, d in enumerate(quiet):
        back = restore + burst * i / len(quiet)
        s.silence(d, cut + 5, back)
        s.send(d, Event.power_restore if d.mains else routine_event(d), back)
    ids = tuple(d.device_id for d in devs)
    unit_ids = tuple(u.unit_id for u in units)
    s.expect(must_fire=False, types=_FIRE_TYPES, device_ids=ids, unit_ids=unit_ids,
             why="a power cut and a re-registration burst are no fire")
    s.expect(must_fire=False, types=(), device_ids=ids, unit_ids=unit_ids, responses=(Response.immediate,),
             why="nothing in a power cut is 秒响应")
    s.expect(must_fire=False, types=(AlarmType.offline, AlarmType.network_outage), device_ids=ids,
             why=f"no device is silent for {OFFLINE_FACTOR} heartbeat intervals")
    return s.build(f"power cut in {district} ({len(devs)} devices, {len(quiet)} re-register within {burst} s)")


def _mains_off(d: SimDevice) -> dict[str, Any]:
    if d.kind is Kind.gas:
        return {"mains_ok": False}
    if d.kind is Kind.electrical:
        return {"voltage_v": [0.0] * d.phases, "current_a": [0.0] * d.phases, "power_kw": 0.0}
    return {}


SCENARIOS: dict[str, Callable[[SimFleet, int, int], Scenario]] = {
    f.__name__: f
    for f in (fire_spread, smoke_heat, electrical_then_smoke, gas_leak, panel_fire, cooking_transient, test_button,
              flapping, muted, cell_outage, power_cut_reregistration)
}
