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
from devices.catalogue import THRESHOLDS
from devices.kinds import Event, Kind
from devices.reading import Reading
from simulators.fleet import Role, SimDevice, SimFleet, SimUnit
from simulators.telemetry import Lane, ambient_c, charger_metrics, lane_of, make_reading, routine_event

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
LINKAGE_ACTOR = "linkage"
SETTLE_S = 30  # quiet time at the end of every scenario
POWER_CUT_MIN_DEVICES = 20
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
    """From `at_ms` the device sends nothing (also no background heartbeats) until `until_ms` (None: never).
    `scripted`: only its background is silent, because the scenario plays its values over the span
    (a routine report with quiet values in the middle of a rising series would be no real device)."""

    at_ms: int
    device_id: str
    until_ms: int | None = None
    scripted: bool = False

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
    command: str | None = None  #: about commands (`GET /api/v1/devices/{id}/commands`), not alarms
    port: int | None = None  #: the command's `params.port`

    @property
    def deadline_ms(self) -> int:
        return self.after_ms + round(self.within_s * 1000)

    def matches(self, item: Mapping[str, Any]) -> bool:
        """Whether an alarm object (a command object when `command` is set) is one this is about."""
        return self._matches_command(item) if self.command is not None else self._matches_alarm(item)

    def _matches_command(self, cmd: Mapping[str, Any]) -> bool:
        """A linkage command (actor `linkage`) to one of `device_ids` that its device acknowledged."""
        params = cmd.get("params") or {}
        return (cmd.get("cmd") == self.command and cmd.get("device_id") in self.device_ids
                and cmd.get("actor") == LINKAGE_ACTOR and cmd.get("state") == "acked"
                and (self.port is None or params.get("port") == self.port))

    def _matches_alarm(self, alarm: Mapping[str, Any]) -> bool:
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
    #: unit linkage policies to set before playing (`PUT /api/v1/units/{unit_id}/linkage`)
    linkage: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def messages(self) -> list[Step]:
        return [s for s in self.steps if isinstance(s, Step)]

    def silences(self) -> list[Silence]:
        return [s for s in self.steps if isinstance(s, Silence)]

    def device_ids(self) -> set[str]:
        return {s.reading.device_id if isinstance(s, Step) else s.device_id for s in self.steps}

    def commanded(self) -> set[str]:
        """The devices that expectations say receive linkage commands (their actuators must answer)."""
        return {d for e in self.expectations if e.command is not None for d in e.device_ids}

    def evaluate(
        self, alarms: Iterable[Mapping[str, Any]], *, commands: Iterable[Mapping[str, Any]] = (), slack_s: float = 0.0
    ) -> list[Verdict]:
        """Score API alarm objects (and, for command expectations, command objects) against the
        expectations. `first_seen` of an alarm, `created_at` of a command (epoch ms or RFC 3339)
        is compared with each deadline plus `slack_s`."""
        alarms, commands = list(alarms), list(commands)
        out = []
        for e in self.expectations:
            found = [a for a in (commands if e.command is not None else alarms) if e.matches(a)]
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


def first_seen_ms(item: Mapping[str, Any]) -> int | None:
    """An alarm's `first_seen` or a command's `created_at` as epoch ms."""
    v = item.get("first_seen", item.get("created_at"))
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
    ("panel_mains_failure", lambda ds: _has(ds, "uitd"), ()),
    ("gas_valve_linkage", lambda ds: _has(ds, "gas", _valved), ("residential", "nine_small")),
    ("charger_overheat_smoke", lambda ds: _has(ds, "charger") and _has(ds, "smoke"),
     ("residential", "rental_housing")),
    ("arc_breaker_trip", lambda ds: _has(ds, "breaker", lambda d: d.linkage == "auto"),
     ("nine_small", "rental_housing")),
    ("pyrolysis_cabinet_fire", lambda ds: _has(ds, "pyrolysis") and _has(ds, "smoke"),
     ("commercial", "industrial", "hospital")),
    ("electrical_then_smoke", lambda ds: _has(ds, "monitor") and _has(ds, "smoke"), ("commercial", "industrial")),
    ("co_poisoning", lambda ds: _has(ds, "co"), ("residential", "rental_housing", "elderly_care")),
    ("hydrant_opened", lambda ds: _has(ds, "hydrant"), ()),
    ("water_leak", lambda ds: _has(ds, "pressure"), ("industrial", "commercial")),
    ("fire_spread", lambda ds: _count(ds, "smoke") >= 3, ("residential", "welfare", "hospital")),
    ("fire_spread", lambda ds: _count(ds, "smoke") >= 2, ()),
    ("gas_leak", lambda ds: _has(ds, "gas"), ("nine_small", "residential")),
    ("cooking_transient", lambda ds: _has(ds, "smoke"), ("nine_small", "residential")),
    ("smoke_heat", lambda ds: _has(ds, "smoke"), ()),
    ("test_button", lambda ds: _has(ds, "smoke"), ()),
    ("flapping", lambda ds: _has(ds, "smoke"), ()),
    ("muted", lambda ds: _has(ds, "smoke"), ()),
)


def _castable(d: SimDevice) -> bool:
    """Whether every event of `d` reaches the service as sent (OneNET data points cannot say
    test, mute or alarm_clear), so it can play the lead in a scenario."""
    return d.uplink != "onenet"


def _valved(d: SimDevice) -> bool:
    return d.valve == "open"


def _count(ds: list[SimDevice], role: Role, where: Callable[[SimDevice], bool] | None = None) -> int:
    return sum(d.role == role and _castable(d) and (where is None or where(d)) for d in ds)


def _has(ds: list[SimDevice], role: Role, where: Callable[[SimDevice], bool] | None = None) -> bool:
    return _count(ds, role, where) > 0


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
    per_district = Counter(  # devices that re-register after the cut (uitds stay on backup power)
        district_of(d.region) for d in fleet.units if d.unit_id not in reserved
        for dev in fleet.devices_of(d.unit_id) if dev.kind is not Kind.uitd
    )
    candidates = [(n, d) for d, n in per_district.items() if d != outage_district]
    # the smallest district big enough for a re-registration burst, so the others keep units to cast
    big_enough = [c for c in candidates if c[0] >= POWER_CUT_MIN_DEVICES]
    power_cut = min(big_enough)[1] if big_enough else max(candidates)[1] if candidates else None
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
    linkage: dict[str, dict[str, str]] = field(default_factory=dict)
    scripted: list[SimDevice] = field(default_factory=list)  # played by the scenario alone (no background)

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
        for dev in self.scripted:
            last = max(s.at_ms for s in self.steps if isinstance(s, Step) and s.reading.device_id == dev.device_id)
            self.steps.append(Silence(self.start_ms, dev.device_id, last + 1, scripted=True))
        steps = sorted(self.steps, key=lambda s: s.at_ms)  # stable: insertion order breaks ties
        last = max([s.at_ms for s in steps] + [e.deadline_ms for e in self.expectations if e.must_fire])
        end_ms = last + SETTLE_S * 1000
        whole = (end_ms - self.start_ms) / 1000
        expectations = tuple(
            e if e.must_fire else replace(e, after_ms=self.start_ms, within_s=whole) for e in self.expectations
        )
        return Scenario(self.name, description, self.start_ms, end_ms, tuple(steps), expectations, self.linkage)


def _role_unit(fleet: SimFleet, seed: int, name: str) -> SimUnit:
    unit_id = cast(fleet, seed).units.get(name)
    if unit_id is None:
        raise ScenarioUnavailable(f"{name}: the fleet has no free unit with the devices this scenario needs")
    return fleet.unit(unit_id)


def _pick(
    rng: random.Random, fleet: SimFleet, unit: SimUnit, role: Role, n: int = 1,
    where: Callable[[SimDevice], bool] | None = None,
) -> list[SimDevice]:
    ds = [d for d in fleet.devices_of(unit.unit_id) if d.role == role and _castable(d) and (where is None or where(d))]
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
    dets = _pick(rng, fleet, unit, "smoke", 4)
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
    (d,) = _pick(rng, fleet, unit, "smoke")
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
    (e,) = _pick(rng, fleet, unit, "monitor")
    (d,) = _pick(rng, fleet, unit, "smoke")
    s = _Script("electrical_then_smoke", fleet, start_ms, scripted=[e])
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
    (g,) = _pick(rng, fleet, unit, "gas")
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
    smokes = [d for d in fleet.devices_of(unit.unit_id) if d.role == "smoke" and _castable(d)]
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
    (d,) = _pick(rng, fleet, unit, "smoke")
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
    (d,) = _pick(rng, fleet, unit, "smoke")
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
    (d,) = _pick(rng, fleet, unit, "smoke")
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
    reported: list[tuple[int, SimDevice]] = []  # power_fail of a uitd or of a device reporting mains_ok
    for i, d in enumerate(devs):
        if d.mains:
            at = s.send(d, Event.power_fail, cut + 3 * i / len(devs), _mains_off(d))
            if d.kind is Kind.uitd or "mains_ok" in _mains_off(d):
                reported.append((at, d))
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
    if reported:
        at, first = reported[0]
        s.expect(must_fire=True, types=(AlarmType.power_fault,), key=_detector_key(first),
                 device_ids=(first.device_id,), responses=(Response.verify,), after_ms=at,
                 within_s=IMMEDIATE_WITHIN_S, why=f"power_fail of a {first.kind.name} device (CONTRACT §10)")
    return s.build(f"power cut in {district} ({len(devs)} devices, {len(quiet)} re-register within {burst} s)")


def _threshold(dev: SimDevice, name: str) -> float:
    """The device's registered threshold, else the catalogue's default (CONTRACT §10)."""
    return dev.thresholds.get(name, THRESHOLDS[name].default)


def _unit_fire(s: _Script, unit: SimUnit, after_ms: int, why: str) -> None:
    s.expect(must_fire=True, types=(AlarmType.fire, AlarmType.smoke), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), after_ms=after_ms, within_s=IMMEDIATE_WITHIN_S, why=why)


def _smoke_alarm(s: _Script, d: SimDevice, offset_s: float) -> int:
    """A smoke alarm whose own temperature stays normal (so only correlation makes it 秒响应)."""
    return s.send(d, Event.alarm, offset_s,
                  {"smoke_obscuration_pct_m": 3.4, "temperature_c": round(ambient_c(d, s.at(offset_s)) + 3, 1)})


def hydrant_opened(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A hydrant is opened without a fire (water taken at night, a street washer): its flow meter
    sees it first, its cap sensor reports `hydrant_open` 30 s later, it is closed after four minutes."""
    rng = _rng("hydrant_opened", seed)
    unit = _role_unit(fleet, seed, "hydrant_opened")
    (h,) = _pick(rng, fleet, unit, "hydrant")
    s = _Script("hydrant_opened", fleet, start_ms, scripted=[h])
    p0 = make_reading(h, Event.report, start_ms).metrics["pressure_mpa"]
    s.send(h, Event.report, 0, {"pressure_mpa": p0})
    flowing = {"pressure_mpa": round(p0 - 0.02, 3)}
    at = s.send(h, Event.report, 60, {**flowing, "flow_m3h": 15.6})
    s.send(h, Event.hydrant_open, 90, {**flowing, "flow_m3h": 16.2})
    s.send(h, Event.report, 180, {**flowing, "flow_m3h": 15.9})
    s.send(h, Event.hydrant_close, 300, {"pressure_mpa": p0, "flow_m3h": 0.0})
    flow_open = _threshold(h, "flow_open_m3h")
    s.expect(must_fire=True, types=(AlarmType.hydrant_open,), key=_detector_key(h), device_ids=(h.device_id,),
             responses=(Response.verify,), severity=Severity.major, after_ms=at, within_s=IMMEDIATE_WITHIN_S,
             why=f"flow_m3h > {flow_open:g} on a device registered hydrant: true")
    s.expect(must_fire=False, types=(AlarmType.hydrant_damaged, AlarmType.water_pressure_drop,
                                     AlarmType.water_pressure_low), device_ids=(h.device_id,),
             why="an opened hydrant is upright and keeps its pressure")
    s.expect(must_fire=False, types=(), device_ids=(h.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), why="an opened hydrant is no fire")
    return s.build(f"hydrant at {h.location} of {unit.name} opened for four minutes")


def water_leak(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A pipe of the fire water system leaks: pressure falls fast, then below the device's limit."""
    rng = _rng("water_leak", seed)
    unit = _role_unit(fleet, seed, "water_leak")
    (w,) = _pick(rng, fleet, unit, "pressure")
    low = _threshold(w, "pressure_low_mpa")
    p0 = make_reading(w, Event.report, start_ms).metrics["pressure_mpa"]
    falling = [round(p0 - 0.07 * k, 3) for k in range(1, 20) if p0 - 0.07 * k > low] + [round(0.8 * low, 3)]
    s = _Script("water_leak", fleet, start_ms, scripted=[w])
    s.send(w, Event.report, 0, {"pressure_mpa": p0})
    times = [s.send(w, Event.report, 30 * k, {"pressure_mpa": p}) for k, p in enumerate(falling, start=1)]
    drop = THRESHOLDS["pressure_drop_mpa"].default
    s.expect(must_fire=True, types=(AlarmType.water_pressure_drop,), key=_detector_key(w), device_ids=(w.device_id,),
             responses=(Response.verify,), severity=Severity.major, after_ms=times[0], within_s=IMMEDIATE_WITHIN_S,
             why=f"pressure fell by >= {drop:g} MPa within 60 s")
    s.expect(must_fire=True, types=(AlarmType.water_pressure_low,), key=_detector_key(w), device_ids=(w.device_id,),
             responses=(Response.verify,), severity=Severity.major, after_ms=times[-1], within_s=IMMEDIATE_WITHIN_S,
             why=f"pressure_mpa below the device's pressure_low_mpa {low:g}")
    s.expect(must_fire=False, types=(), device_ids=(w.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), why="a leak is no fire")
    return s.build(f"leak at {w.location} of {unit.name}: {p0:g} -> {falling[-1]:g} MPa")


def charger_overheat_smoke(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """An e-bike battery overheats on a charging port, the port is cut off by linkage, then smoke."""
    rng = _rng("charger_overheat_smoke", seed)
    unit = _role_unit(fleet, seed, "charger_overheat_smoke")
    (c,) = _pick(rng, fleet, unit, "charger")
    (d,) = _pick(rng, fleet, unit, "smoke")
    port = rng.randint(1, c.ports)
    hot_c = THRESHOLDS["port_temp_c"].default
    s = _Script("charger_overheat_smoke", fleet, start_ms, linkage={unit.unit_id: {"charger_port": "auto"}},
                scripted=[c])
    s.send(d, Event.heartbeat, 1)
    temp, hot_at, k = round(ambient_c(c, start_ms) + 10, 1), 0, 0
    while not hot_at or temp < hot_c + 6:  # 6 °C a minute (under the rise limit) to past the limit
        at = s.send(c, Event.report, 60 * k, charger_metrics(c, s.at(60 * k), {port: (2.4, temp)}))
        hot_at = hot_at or (at if temp >= hot_c else 0)
        temp, k = round(temp + 6, 1), k + 1
    smoke_at = _smoke_alarm(s, d, (hot_at - start_ms) / 1000 + 90)
    s.expect(must_fire=True, types=(AlarmType.charger_overheat,), key=_detector_key(c), device_ids=(c.device_id,),
             responses=(Response.verify,), severity=Severity.major, after_ms=hot_at, within_s=IMMEDIATE_WITHIN_S,
             why=f"port {port} at port_temp_c >= {hot_c:g}")
    s.expect(must_fire=True, types=(), command="port_cutoff", port=port, device_ids=(c.device_id,), after_ms=hot_at,
             within_s=IMMEDIATE_WITHIN_S, why="linkage charger_port auto: port_cutoff of the hot port, acknowledged")
    _unit_fire(s, unit, smoke_at, f"charger_overheat (electrical class) and a smoke alarm within "
                                  f"{ELECTRICAL_SMOKE_WINDOW_S} s")
    return s.build(f"port {port} of the charger at {c.location} of {unit.name} overheats, then smoke")


def pyrolysis_cabinet_fire(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A pyrolysis-particle detector in a distribution cabinet warns as insulation decomposes
    (index rising 10-12 a minute), then a smoke detector of the unit alarms: the cabinet is on fire."""
    rng = _rng("pyrolysis_cabinet_fire", seed)
    unit = _role_unit(fleet, seed, "pyrolysis_cabinet_fire")
    (p,) = _pick(rng, fleet, unit, "pyrolysis")
    (d,) = _pick(rng, fleet, unit, "smoke")
    major, critical = THRESHOLDS["pyrolysis_major"].default, THRESHOLDS["pyrolysis_critical"].default
    s = _Script("pyrolysis_cabinet_fire", fleet, start_ms, scripted=[p])
    s.send(d, Event.heartbeat, 1)
    major_at = critical_at = 0
    for k, index in enumerate((8, 18, 30, 42, 53, 64, 76, 86)):
        event, extra = (Event.alarm, {"alarm_code": "pyrolysis"}) if index >= critical else (Event.report, None)
        at = s.send(p, event, 60 * k, {"pyrolysis_index": index}, extra=extra)
        major_at = major_at or (at if index >= major else 0)
        critical_at = critical_at or (at if index >= critical else 0)
    smoke_at = _smoke_alarm(s, d, (critical_at - start_ms) / 1000 + 30)
    s.expect(must_fire=True, types=(AlarmType.pyrolysis_warning,), key=_detector_key(p), device_ids=(p.device_id,),
             responses=(Response.verify,), after_ms=major_at, within_s=IMMEDIATE_WITHIN_S,
             why=f"pyrolysis_index >= {major:g}")
    s.expect(must_fire=True, types=(AlarmType.pyrolysis_warning,), key=_detector_key(p), device_ids=(p.device_id,),
             responses=(Response.verify,), severity=Severity.critical, after_ms=critical_at,
             within_s=IMMEDIATE_WITHIN_S, why=f"pyrolysis_index >= {critical:g}")
    s.expect(must_fire=False, types=(AlarmType.residual_current, AlarmType.cable_overheat, AlarmType.arc_fault),
             device_ids=(p.device_id,), why="a pyrolysis detector's alarm is a pyrolysis_warning")
    _unit_fire(s, unit, smoke_at, f"pyrolysis_warning (electrical class) and a smoke alarm within "
                                  f"{ELECTRICAL_SMOKE_WINDOW_S} s")
    return s.build(f"pyrolysis warning at {p.location} of {unit.name}, then smoke")


def gas_valve_linkage(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A gas leak past the critical level in a unit whose gas valves close automatically (联动)."""
    rng = _rng("gas_valve_linkage", seed)
    unit = _role_unit(fleet, seed, "gas_valve_linkage")
    (g,) = _pick(rng, fleet, unit, "gas", where=_valved)
    critical = THRESHOLDS["gas_lel_critical_pct"].default
    s = _Script("gas_valve_linkage", fleet, start_ms, linkage={unit.unit_id: {"gas_valve": "auto"}}, scripted=[g])
    s.send(g, Event.heartbeat, 0)
    s.send(g, Event.report, 30, {"gas_lel_pct": 6.5})
    s.send(g, Event.alarm, 60, {"gas_lel_pct": 13.2})
    at = s.send(g, Event.alarm, 90, {"gas_lel_pct": 31.0})
    s.send(g, Event.alarm_clear, 240, {"gas_lel_pct": 4.0, "valve": "closed"})
    s.expect(must_fire=True, types=(AlarmType.gas_leak,), key=_detector_key(g), device_ids=(g.device_id,),
             responses=(Response.immediate,), severity=Severity.critical, after_ms=at, within_s=IMMEDIATE_WITHIN_S,
             why=f"gas_lel_pct >= {critical:g}")
    s.expect(must_fire=True, types=(), command="valve_close", device_ids=(g.device_id,), after_ms=at,
             within_s=IMMEDIATE_WITHIN_S, why="linkage gas_valve auto: gas_leak critical closes the valve")
    s.expect(must_fire=False, types=(AlarmType.linkage_failed,), device_ids=(g.device_id,),
             why="the valve answers and reports valve_closed")
    return s.build(f"{g.gas_type} leak in {unit.name} closes its valve by linkage")


def arc_breaker_trip(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """Arcs on a socket circuit: the arc-extinguishing breaker (linkage auto, unit breaker auto) is
    tripped by linkage; its breaker_tripped report is the command's result, not an alarm."""
    rng = _rng("arc_breaker_trip", seed)
    unit = _role_unit(fleet, seed, "arc_breaker_trip")
    (b,) = _pick(rng, fleet, unit, "breaker", where=lambda d: d.linkage == "auto")
    arcs = THRESHOLDS["arc_faults"].default
    s = _Script("arc_breaker_trip", fleet, start_ms, linkage={unit.unit_id: {"breaker": "auto"}}, scripted=[b])
    s.send(b, Event.report, 0)
    s.send(b, Event.report, 30, {"arc_faults": 3})
    at = s.send(b, Event.alarm, 60, {"arc_faults": int(arcs) + 4})
    s.send(b, Event.breaker_closed, 300, {"breaker": "closed", "arc_faults": 0})  # an electrician resets it
    s.expect(must_fire=True, types=(AlarmType.arc_fault,), key=_detector_key(b), device_ids=(b.device_id,),
             responses=(Response.verify,), after_ms=at, within_s=IMMEDIATE_WITHIN_S,
             why=f"arc_faults >= {arcs:g} in one second")
    s.expect(must_fire=True, types=(), command="breaker_trip", device_ids=(b.device_id,), after_ms=at,
             within_s=IMMEDIATE_WITHIN_S, why="unit breaker auto and device linkage auto: measured arcs trip it")
    s.expect(must_fire=False, types=(AlarmType.breaker_tripped, AlarmType.linkage_failed), device_ids=(b.device_id,),
             why="a breaker_tripped within 120 s of a breaker_trip command is its result")
    return s.build(f"arcs at {b.location} of {unit.name} trip its breaker by linkage")


def co_poisoning(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A gas water heater burns badly in a closed room: a CO detector's level climbs, it alarms at
    180 ppm, and the level passes the critical limit a minute later."""
    rng = _rng("co_poisoning", seed)
    unit = _role_unit(fleet, seed, "co_poisoning")
    (c,) = _pick(rng, fleet, unit, "co")
    critical = THRESHOLDS["co_critical_ppm"].default
    s = _Script("co_poisoning", fleet, start_ms, scripted=[c])
    s.send(c, Event.heartbeat, 0)
    s.send(c, Event.report, 60, {"co_ppm": 35})
    s.send(c, Event.report, 120, {"co_ppm": 90})
    alarm_at = s.send(c, Event.alarm, 180, {"co_ppm": 180}, extra={"alarm_code": "co"})
    critical_at = s.send(c, Event.alarm, 240, {"co_ppm": 330}, extra={"alarm_code": "co"})
    s.send(c, Event.alarm_clear, 420, {"co_ppm": 20})
    s.expect(must_fire=True, types=(AlarmType.co_high,), key=_detector_key(c), device_ids=(c.device_id,),
             after_ms=alarm_at, within_s=IMMEDIATE_WITHIN_S, why="a CO detector's alarm")
    s.expect(must_fire=True, types=(AlarmType.co_high,), key=_detector_key(c), device_ids=(c.device_id,),
             responses=(Response.immediate,), severity=Severity.critical, after_ms=critical_at,
             within_s=IMMEDIATE_WITHIN_S, why=f"co_ppm >= {critical:g}")
    s.expect(must_fire=False, types=_FIRE_TYPES, device_ids=(c.device_id,),
             unit_ids=(unit.unit_id,), why="CO is no gas leak and no fire")
    return s.build(f"CO at {c.location} of {unit.name}")


#: Where a fire panel's own status is (GB/T 26875.3 system type 1, address 1), as the codec names it.
PANEL_SYSTEM = {"system_type": 1, "system_addr": 1}


def panel_mains_failure(fleet: SimFleet, seed: int, start_ms: int) -> Scenario:
    """A fire panel loses mains power (system status bit 8 through its uitd), then its backup
    battery fails too (bits 8 and 9), then both come back."""
    unit = _role_unit(fleet, seed, "panel_mains_failure")
    (p,) = [d for d in fleet.devices_of(unit.unit_id) if d.kind is Kind.uitd][:1]
    s = _Script("panel_mains_failure", fleet, start_ms)
    s.send(p, Event.heartbeat, 0)
    main_at = s.send(p, Event.power_fail, 30, extra={**PANEL_SYSTEM, "panel_flag": "main_power_fault"})
    both_at = s.send(p, Event.power_fail, 150,
                     extra={**PANEL_SYSTEM, "panel_flag": "backup_power_fault", "alarm_code": "mains_and_backup"})
    s.send(p, Event.power_restore, 270, extra={**PANEL_SYSTEM, "panel_flag": "main_power_fault"})
    s.expect(must_fire=True, types=(AlarmType.power_fault,), device_ids=(p.device_id,), responses=(Response.verify,),
             after_ms=main_at, within_s=IMMEDIATE_WITHIN_S, why="the panel's main power failed")
    s.expect(must_fire=True, types=(AlarmType.power_fault,), device_ids=(p.device_id,), responses=(Response.verify,),
             severity=Severity.major, after_ms=both_at, within_s=IMMEDIATE_WITHIN_S,
             why="main and backup power both failed")
    s.expect(must_fire=False, types=_FIRE_TYPES, device_ids=(p.device_id,), unit_ids=(unit.unit_id,),
             why="a power fault is no fire")
    s.expect(must_fire=False, types=(), device_ids=(p.device_id,), unit_ids=(unit.unit_id,),
             responses=(Response.immediate,), why="nothing in a power fault is 秒响应")
    return s.build(f"the fire panel of {unit.name} loses mains, then backup power")


def _mains_off(d: SimDevice) -> dict[str, Any]:
    if d.role == "gas":
        return {"mains_ok": False}
    if d.role in ("monitor", "breaker"):
        return {"voltage_v": [0.0] * d.phases, "current_a": [0.0] * d.phases, "power_kw": 0.0}
    if d.role == "charger":
        return {"voltage_v": [0.0], "port_current_a": [0.0] * d.ports, "port_power_w": [0] * d.ports,
                "ports_active": 0}
    return {}


SCENARIOS: dict[str, Callable[[SimFleet, int, int], Scenario]] = {
    f.__name__: f
    for f in (fire_spread, smoke_heat, electrical_then_smoke, gas_leak, panel_fire, cooking_transient, test_button,
              flapping, muted, cell_outage, power_cut_reregistration, hydrant_opened, water_leak,
              charger_overheat_smoke, pyrolysis_cabinet_fire, gas_valve_linkage, arc_breaker_trip,
              panel_mains_failure, co_poisoning)
}
