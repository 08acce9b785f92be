"""Scenarios: determinism, wire validity, casting, and ground truth checked against the steps
with plain scalar reimplementations of the CONTRACT §8 conditions."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from alerting.model import FIRE_CLASS, AlarmType, Response, Severity
from devices.catalogue import THRESHOLDS
from devices.kinds import ATTENTION_EVENTS, Event, Kind
from ingest.codecs.json_report import decode_json_report, encode_json_report
from simulators.background import background
from simulators.fleet import NO_AUTO_BREAKER, build_fleet
from simulators.scenarios import IMMEDIATE_WITHIN_S, SCENARIOS, Scenario, Step, cast, district_of

T0 = 1_795_341_600_000
NAMES = ["fire_spread", "smoke_heat", "electrical_then_smoke", "gas_leak", "panel_fire", "cooking_transient",
         "test_button", "flapping", "muted", "cell_outage", "power_cut_reregistration", "hydrant_opened", "water_leak",
         "charger_overheat_smoke", "pyrolysis_cabinet_fire", "gas_valve_linkage", "arc_breaker_trip",
         "panel_mains_failure", "co_poisoning"]
#: Scenarios that play the devices of a whole cell or district instead of one cast unit.
WIDE = {"cell_outage", "power_cut_reregistration"}


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(400, 3)


@pytest.fixture(scope="module")
def played(fleet) -> dict[str, Scenario]:
    return {name: make(fleet, 3, T0) for name, make in SCENARIOS.items()}


def alarms_of(sc: Scenario, device_id: str | None = None, event: Event = Event.alarm) -> list[Step]:
    return [s for s in sc.messages() if s.reading.event is event and device_id in (None, s.reading.device_id)]


def only(sc: Scenario, *, must: bool) -> list:
    return [e for e in sc.expectations if e.must_fire is must]


def test_names() -> None:
    assert list(SCENARIOS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name: str) -> None:
    a = SCENARIOS[name](build_fleet(400, 3), 3, T0)
    b = SCENARIOS[name](build_fleet(400, 3), 3, T0)
    assert a == b
    c = SCENARIOS[name](build_fleet(400, 9), 9, T0)
    assert [s.reading for s in c.messages()] != [s.reading for s in a.messages()]


@pytest.mark.parametrize("n,seed", [(300, s) for s in range(6)] + [(1000, 1), (3000, 2)])
def test_every_scenario_available(n: int, seed: int) -> None:
    f = build_fleet(n, seed)
    for make in SCENARIOS.values():
        assert make(f, seed, T0).expectations


def test_steps_are_ordered_valid_and_routed(fleet, played) -> None:
    for sc in played.values():
        times = [s.at_ms for s in sc.steps]
        assert times == sorted(times) and sc.start_ms <= times[0] and times[-1] < sc.end_ms
        for step in sc.messages():
            r = step.reading
            dev = fleet.device(r.device_id)
            assert r.ts_ms == step.at_ms and r.kind is dev.kind
            assert step.lane == ("evt" if r.event in ATTENTION_EVENTS else "tel")
            assert step.transport_hint == dev.transport
            back = decode_json_report(encode_json_report(r), received_ms=r.received_ms)
            assert back == r  # every metric passes the service's own validation
        for e in sc.expectations:
            assert e.deadline_ms <= sc.end_ms


def test_silenced_devices_send_nothing_while_silent(played) -> None:
    for sc in played.values():
        for s in sc.silences():
            if not s.scripted:
                assert not [m for m in sc.messages() if s.covers(m.reading.device_id, m.at_ms)]


def test_scripted_devices_have_no_background_while_the_scenario_plays_them(played, fleet) -> None:
    for name in ("electrical_then_smoke", "hydrant_opened", "water_leak", "charger_overheat_smoke",
                 "pyrolysis_cabinet_fire", "gas_valve_linkage", "arc_breaker_trip"):
        sc = played[name]
        scripted = [s for s in sc.silences() if s.scripted]
        assert scripted, name
        for s in scripted:
            own = [m.at_ms for m in sc.messages() if m.reading.device_id == s.device_id]
            assert s.at_ms == sc.start_ms <= min(own) and max(own) < s.until_ms
            quiet = list(background(fleet, 3, sc.start_ms, sc.end_ms, silences=sc.silences()))
            assert not [q for q in quiet if q.reading.device_id == s.device_id and q.at_ms < s.until_ms]


def test_cast_is_disjoint(fleet, played) -> None:
    c = cast(fleet, 3)
    assert len(set(c.units.values())) == len(c.units) == len(NAMES) - len(WIDE)
    used = {name: {fleet.device(d).unit_id for d in sc.device_ids()} for name, sc in played.items()}
    names = list(used)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not used[a] & used[b], (a, b)
    for name, unit_id in c.units.items():
        assert used[name] == {unit_id}
        assert district_of(fleet.unit(unit_id).region) != c.power_cut_district
    leads = {m.reading.device_id for name in c.units for m in played[name].messages()}
    assert all(fleet.device(d).uplink != "onenet" for d in leads)


def test_fire_spread(played, fleet) -> None:
    sc = played["fire_spread"]
    first: dict[str, int] = {}
    for s in alarms_of(sc):
        first.setdefault(s.reading.device_id, s.at_ms)
    units = {fleet.device(d).unit_id for d in first}
    assert len(units) == 1 and len(first) >= 2
    ordered = sorted(first.values())
    assert ordered[1] - ordered[0] <= 120_000
    (fire,) = [e for e in sc.expectations if AlarmType.fire in e.types]
    assert fire.must_fire and fire.responses == (Response.immediate,) and fire.after_ms == ordered[1]
    assert fire.unit_ids == (units.pop(),) and fire.key == f"unit:{fire.unit_ids[0]}"
    assert all(fleet.device(d).kind is Kind.smoke for d in first)


def test_smoke_heat(played) -> None:
    sc = played["smoke_heat"]
    (e,) = sc.expectations
    (trigger,) = [s for s in sc.messages() if s.at_ms == e.after_ms]
    assert trigger.reading.event is Event.alarm and trigger.reading.kind is Kind.smoke
    assert trigger.reading.metrics["temperature_c"] >= 57 and e.responses == (Response.immediate,)


def test_electrical_then_smoke(played, fleet) -> None:
    sc = played["electrical_then_smoke"]
    elec = [s for s in sc.messages() if s.reading.kind is Kind.electrical]
    hot = [s for s in elec if max(s.reading.metrics["cable_temp_c"]) >= 70]
    temps = [max(s.reading.metrics["cable_temp_c"]) for s in elec]
    assert temps == sorted(temps)  # a rising trend
    smoke = alarms_of(sc)
    smoke = [s for s in smoke if s.reading.kind is Kind.smoke]
    assert len(smoke) == 1 and hot
    assert 0 < smoke[0].at_ms - hot[0].at_ms <= 300_000
    assert smoke[0].reading.metrics["temperature_c"] < 57
    assert fleet.device(smoke[0].reading.device_id).unit_id == fleet.device(hot[0].reading.device_id).unit_id
    (imm,) = [e for e in sc.expectations if e.responses == (Response.immediate,)]
    assert imm.after_ms == smoke[0].at_ms and AlarmType.fire in imm.types


def test_gas_leak(played) -> None:
    sc = played["gas_leak"]
    lel = [(s.at_ms, s.reading.metrics["gas_lel_pct"]) for s in sc.messages()]
    first_10 = next(t for t, v in lel if v >= 10)
    first_25 = next(t for t, v in lel if v >= 25)
    major, critical = only(sc, must=True)
    assert major.after_ms == first_10 < critical.after_ms == first_25
    assert critical.responses == (Response.immediate,) and critical.severity.name == "critical"
    assert all(AlarmType.gas_leak in e.types for e in sc.expectations)


def test_panel_fire(played) -> None:
    sc = played["panel_fire"]
    (fire,) = alarms_of(sc)
    r = fire.reading
    assert r.kind is Kind.uitd and r.component and fire.transport_hint == "tcp"
    assert r.extra["component_type"] == 42 and r.extra["description"]
    (e,) = sc.expectations
    assert e.key == f"device:{r.detector_id}" and r.detector_id in e.device_ids and e.after_ms == fire.at_ms


def test_cooking_transient(played) -> None:
    sc = played["cooking_transient"]
    (alarm,) = alarms_of(sc)
    (clear,) = alarms_of(sc, event=Event.alarm_clear)
    assert clear.reading.device_id == alarm.reading.device_id
    assert 0 < clear.at_ms - alarm.at_ms < 10_000
    assert alarm.reading.metrics["temperature_c"] < 57
    must, = only(sc, must=True)
    assert must.responses == (Response.none,)
    assert any(e.responses == (Response.immediate,) for e in only(sc, must=False))


def test_test_button(played) -> None:
    sc = played["test_button"]
    assert alarms_of(sc) == [] and len(alarms_of(sc, event=Event.test)) == 1
    assert not only(sc, must=True)
    forbidden = {r for e in only(sc, must=False) for r in e.responses}
    assert forbidden == {Response.immediate, Response.verify}


def test_flapping(played) -> None:
    sc = played["flapping"]
    (device,) = {s.reading.device_id for s in sc.messages()}
    alarms = [s.at_ms for s in alarms_of(sc, device)]
    clears = [s.at_ms for s in alarms_of(sc, device, Event.alarm_clear)]
    cycles = list(zip(alarms, clears))
    assert all(10_000 <= c - a for a, c in cycles)  # no cycle is a transient
    assert sum(1 for a, c in cycles if c - alarms[0] <= 600_000) >= 3
    assert max(c - a for a, c in cycles) > 60_000  # one alarm is held past the 60 s escalation
    assert all(s.reading.metrics["temperature_c"] < 57 for s in alarms_of(sc, device))
    assert any(e.responses == (Response.immediate,) and not e.types for e in only(sc, must=False))


def test_muted(played) -> None:
    sc = played["muted"]
    (mute,) = alarms_of(sc, event=Event.mute)
    (alarm,) = alarms_of(sc)
    assert mute.reading.device_id == alarm.reading.device_id and mute.at_ms < alarm.at_ms
    (must,) = only(sc, must=True)
    assert must.responses == (Response.none,) and must.after_ms == alarm.at_ms


def test_cell_outage(played, fleet) -> None:
    sc = played["cell_outage"]
    silent = {s.device_id: s for s in sc.silences()}
    assert all(s.until_ms is None for s in silent.values())
    cells = {fleet.device(d).cell_id for d in silent}
    assert len(cells) == 1 and len(silent) >= 20
    last = {m.reading.device_id: m.at_ms for m in sc.messages()}
    offline_at = sorted(last[d] + 2.5 * fleet.device(d).heartbeat_s * 1000 for d in silent)
    windows = [offline_at[j] - offline_at[j - 19] for j in range(19, len(offline_at))]
    assert min(windows) <= 600_000
    (outage,) = only(sc, must=True)
    assert outage.types == (AlarmType.network_outage,) and outage.key == f"cell:{cells.pop()}"
    assert len(outage.device_ids) >= 20 and set(outage.device_ids) <= set(silent)
    assert outage.after_ms in offline_at
    limits = {e.types: e.max_matches for e in only(sc, must=False)}
    assert limits[(AlarmType.network_outage,)] == 1 and limits[(AlarmType.offline,)] < 20


def test_power_cut(played, fleet) -> None:
    sc = played["power_cut_reregistration"]
    devs = {m.reading.device_id for m in sc.messages()}
    assert len({district_of(fleet.unit(fleet.device(d).unit_id).region) for d in devs}) == 1
    events = defaultdict(list)
    for m in sc.messages():
        events[m.reading.device_id].append((m.at_ms, m.reading.event))
    assert not [m for m in sc.messages() if m.reading.event in (Event.alarm, Event.test)]
    for d in devs:
        dev = fleet.device(d)
        if dev.mains:
            assert Event.power_fail in [e for _, e in events[d]]
        times = [t for t, _ in events[d]]
        gaps = [b - a for a, b in pairwise(times)]
        assert max(gaps) < 2.5 * dev.heartbeat_s * 1000  # nobody is silent long enough to go offline
    silences = sc.silences()
    back = [s.until_ms for s in silences]
    assert len(silences) >= 20 and max(back) - min(back) <= 30_000  # the re-registration burst
    for s in silences:
        assert s.until_ms in [t for t, _ in events[s.device_id]]
    fire = [e for e in only(sc, must=False) if set(e.types) == FIRE_CLASS]
    assert fire and fire[0].max_matches == 0
    (power,) = only(sc, must=True)
    (fail,) = [m for m in sc.messages() if m.at_ms == power.after_ms and m.reading.event is Event.power_fail]
    dev = fleet.device(fail.reading.device_id)
    assert power.types == (AlarmType.power_fault,) and power.device_ids == (dev.device_id,)
    assert dev.kind is Kind.uitd or fail.reading.metrics["mains_ok"] is False


def test_evaluate_scores_alarm_objects(played) -> None:
    sc = played["cooking_transient"]
    must, forbid = sc.expectations
    device = must.device_ids[0]
    unit = forbid.unit_ids[0]
    good = {"type": "smoke", "response": "none", "severity": "major", "device_ids": [device], "unit_id": unit,
            "first_seen": must.after_ms + 1_000}
    assert all(v.ok for v in sc.evaluate([good]))
    late = {**good, "first_seen": must.deadline_ms + 1}
    assert not sc.evaluate([late])[0].ok and sc.evaluate([late], slack_s=1)[0].ok
    stamp = datetime.fromtimestamp((must.after_ms + 1_000) / 1000, UTC).isoformat().replace("+00:00", "Z")
    assert sc.evaluate([{**good, "first_seen": stamp}])[0].ok
    bad = {**good, "response": "immediate"}
    verdicts = sc.evaluate([bad])
    assert [v.ok for v in verdicts] == [False, False]
    other = {**bad, "device_ids": ["someone-else"], "unit_id": "elsewhere"}
    assert [v.ok for v in sc.evaluate([other])] == [False, True]


def _series(sc: Scenario, device_id: str, metric: str) -> list[tuple[int, object]]:
    return [(s.at_ms, s.reading.metrics[metric]) for s in sc.messages()
            if s.reading.device_id == device_id and metric in s.reading.metrics]


def _must(sc: Scenario, alarm_type: AlarmType):
    return [e for e in only(sc, must=True) if alarm_type in e.types]


def _command(sc: Scenario):
    (e,) = [e for e in sc.expectations if e.command is not None]
    return e


def test_hydrant_opened(played, fleet) -> None:
    sc = played["hydrant_opened"]
    (e,) = _must(sc, AlarmType.hydrant_open)
    (dev,) = [fleet.device(d) for d in e.device_ids]
    assert dev.role == "hydrant" and dev.hydrant
    flow = _series(sc, dev.device_id, "flow_m3h")
    assert e.after_ms == next(t for t, v in flow if v > THRESHOLDS["flow_open_m3h"].default)
    opened = alarms_of(sc, dev.device_id, Event.hydrant_open)
    assert opened and opened[0].at_ms > e.after_ms + IMMEDIATE_WITHIN_S * 1000  # the flow alone must do it
    assert alarms_of(sc, dev.device_id, Event.hydrant_close)
    pressure = _series(sc, dev.device_id, "pressure_mpa")
    assert all(a - b < THRESHOLDS["pressure_drop_mpa"].default for (_, a), (_, b) in pairwise(pressure))
    assert min(v for _, v in pressure) > dev.thresholds["pressure_low_mpa"]
    assert all(v < THRESHOLDS["tilt_max_deg"].default for _, v in _series(sc, dev.device_id, "tilt_deg"))


def test_water_leak(played, fleet) -> None:
    sc = played["water_leak"]
    (drop,) = _must(sc, AlarmType.water_pressure_drop)
    (low,) = _must(sc, AlarmType.water_pressure_low)
    dev = fleet.device(drop.device_ids[0])
    pressure = _series(sc, dev.device_id, "pressure_mpa")
    first_drop = next(t for (t0, a), (t, b) in pairwise(pressure)
                      if t - t0 <= 60_000 and a - b >= THRESHOLDS["pressure_drop_mpa"].default)
    limit = dev.thresholds["pressure_low_mpa"]
    first_low, value = next((t, v) for t, v in pressure if v < limit)
    assert drop.after_ms == first_drop < low.after_ms == first_low
    assert value > THRESHOLDS["pressure_low_mpa"].default  # only the registered limit makes it low


def test_charger_overheat_smoke(played, fleet) -> None:
    sc = played["charger_overheat_smoke"]
    (hot,) = _must(sc, AlarmType.charger_overheat)
    charger = fleet.device(hot.device_ids[0])
    temps = [(t, v) for t, v in _series(sc, charger.device_id, "port_temp_c")]
    limit = THRESHOLDS["port_temp_c"].default
    first_hot, hottest = next((t, v) for t, v in temps if max(v) >= limit)
    port = hottest.index(max(hottest)) + 1
    assert hot.after_ms == first_hot
    rises = [(b[port - 1] - a[port - 1]) / ((t1 - t0) / 60_000) for (t0, a), (t1, b) in pairwise(temps)]
    assert max(rises) < THRESHOLDS["port_rise_c_per_min"].default  # only the temperature limit fires
    currents = _series(sc, charger.device_id, "port_current_a")
    assert all(max(v) <= charger.thresholds["port_rated_a"] for _, v in currents)  # no overcurrent
    cmd = _command(sc)
    assert (cmd.command, cmd.port, cmd.device_ids, cmd.after_ms) == ("port_cutoff", port, (charger.device_id,),
                                                                     first_hot)
    assert sc.linkage == {charger.unit_id: {"charger_port": "auto"}}
    (smoke,) = [s for s in alarms_of(sc) if s.reading.kind is Kind.smoke]
    assert fleet.device(smoke.reading.device_id).unit_id == charger.unit_id
    assert 0 < smoke.at_ms - first_hot <= 300_000 and smoke.reading.metrics["temperature_c"] < 57
    (fire,) = [e for e in only(sc, must=True) if AlarmType.fire in e.types]
    assert fire.after_ms == smoke.at_ms and fire.responses == (Response.immediate,)


def test_pyrolysis_cabinet_fire(played, fleet) -> None:
    sc = played["pyrolysis_cabinet_fire"]
    major, critical = _must(sc, AlarmType.pyrolysis_warning)
    dev = fleet.device(major.device_ids[0])
    assert dev.role == "pyrolysis" and dev.kind is Kind.electrical
    index = _series(sc, dev.device_id, "pyrolysis_index")
    assert major.after_ms == next(t for t, v in index if v >= THRESHOLDS["pyrolysis_major"].default)
    assert critical.after_ms == next(t for t, v in index if v >= THRESHOLDS["pyrolysis_critical"].default)
    assert critical.severity is Severity.critical and major.severity is None
    # never "rising >= 20 within 60 s": critical comes from the index alone, after the major warning
    assert all(b - a < 20 for (t0, a), (t1, b) in pairwise(index) if t1 - t0 <= 60_000)
    (smoke,) = [s for s in alarms_of(sc) if s.reading.kind is Kind.smoke]
    assert 0 < smoke.at_ms - major.after_ms <= 300_000
    assert {s.reading.extra.get("alarm_code") for s in alarms_of(sc, dev.device_id)} == {"pyrolysis"}


def test_gas_valve_linkage(played, fleet) -> None:
    sc = played["gas_valve_linkage"]
    (leak,) = _must(sc, AlarmType.gas_leak)
    dev = fleet.device(leak.device_ids[0])
    assert dev.role == "gas" and dev.valve == "open"
    lel = _series(sc, dev.device_id, "gas_lel_pct")
    assert leak.after_ms == next(t for t, v in lel if v >= THRESHOLDS["gas_lel_critical_pct"].default)
    assert leak.severity is Severity.critical and leak.responses == (Response.immediate,)
    cmd = _command(sc)
    assert (cmd.command, cmd.device_ids, cmd.after_ms) == ("valve_close", (dev.device_id,), leak.after_ms)
    assert sc.linkage == {dev.unit_id: {"gas_valve": "auto"}} and sc.commanded() == {dev.device_id}
    assert not alarms_of(sc, dev.device_id, Event.valve_closed)  # the valve itself reports it, once commanded


def test_arc_breaker_trip(played, fleet) -> None:
    sc = played["arc_breaker_trip"]
    (arc,) = _must(sc, AlarmType.arc_fault)
    dev = fleet.device(arc.device_ids[0])
    assert dev.role == "breaker" and dev.linkage == "auto"
    assert fleet.unit(dev.unit_id).industry not in NO_AUTO_BREAKER
    arcs = _series(sc, dev.device_id, "arc_faults")
    assert arc.after_ms == next(t for t, v in arcs if v >= THRESHOLDS["arc_faults"].default)
    cmd = _command(sc)
    assert (cmd.command, cmd.device_ids, cmd.after_ms) == ("breaker_trip", (dev.device_id,), arc.after_ms)
    assert sc.linkage == {dev.unit_id: {"breaker": "auto"}}
    assert not alarms_of(sc, dev.device_id, Event.breaker_tripped)
    forbidden = [e for e in only(sc, must=False) if AlarmType.breaker_tripped in e.types]
    assert forbidden and forbidden[0].max_matches == 0


def test_panel_mains_failure(played, fleet) -> None:
    sc = played["panel_mains_failure"]
    fails = alarms_of(sc, event=Event.power_fail)
    (restore,) = alarms_of(sc, event=Event.power_restore)
    assert len(fails) == 2 and fails[-1].at_ms < restore.at_ms
    assert all(s.reading.kind is Kind.uitd and s.transport_hint == "tcp" and s.reading.component is None
               for s in (*fails, restore))
    assert [s.reading.extra.get("alarm_code") for s in fails] == [None, "mains_and_backup"]
    first, both = _must(sc, AlarmType.power_fault)
    assert (first.after_ms, both.after_ms) == (fails[0].at_ms, fails[1].at_ms)
    assert first.severity is None and both.severity is Severity.major


def test_co_poisoning(played, fleet) -> None:
    sc = played["co_poisoning"]
    alarm, critical = _must(sc, AlarmType.co_high)
    dev = fleet.device(alarm.device_ids[0])
    assert dev.role == "co" and dev.kind is Kind.gas and dev.gas_type == "co"
    assert alarm.after_ms == alarms_of(sc, dev.device_id)[0].at_ms and alarm.severity is None
    co = _series(sc, dev.device_id, "co_ppm")
    assert critical.after_ms == next(t for t, v in co if v >= THRESHOLDS["co_critical_ppm"].default)
    assert critical.severity is Severity.critical and critical.responses == (Response.immediate,)
    assert all("gas_lel_pct" not in m.reading.metrics for m in sc.messages())
    (never,) = only(sc, must=False)
    assert set(never.types) == FIRE_CLASS and AlarmType.gas_leak in never.types


def test_linkage_scenarios_have_their_own_units(played, fleet) -> None:
    units = [u for sc in played.values() for u in sc.linkage]
    assert len(units) == len(set(units)) == 3
    for sc in played.values():
        for unit_id in sc.linkage:
            assert {fleet.device(d).unit_id for d in sc.device_ids()} == {unit_id}
