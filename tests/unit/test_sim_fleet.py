"""The simulated fleet: determinism, identities, regions, cells, schedules, battery and radio."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.catalogue import THRESHOLDS
from devices.kinds import DEVICE_ID_RE, Kind
from devices.registry import DeviceSpec
from simulators.fleet import (
    CITY_CENTRES,
    HYDRANT_PRESSURE_LOW_MPA,
    INDUSTRIES,
    NO_AUTO_BREAKER,
    PRESSURE_LOW_MPA,
    ROLE_KIND,
    STREETS,
    build_fleet,
    imei_check_digit,
    imei_valid,
)
from simulators.telemetry import make_reading, routine_event

T0 = 1_795_341_600_000


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(600, 11)


def luhn_ok(number: str) -> bool:
    """Plain Luhn check, written independently of the fleet's check-digit helper."""
    digits = [int(c) for c in reversed(number)]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits))
    return total % 10 == 0


def test_same_seed_same_fleet() -> None:
    assert build_fleet(300, 5) == build_fleet(300, 5)
    a, b = build_fleet(300, 5), build_fleet(300, 6)
    assert [d.device_id for d in a.devices] != [d.device_id for d in b.devices]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 500), seed=st.integers(0, 2**31))
def test_exact_size_and_unique_ids(n: int, seed: int) -> None:
    f = build_fleet(n, seed)
    ids = [d.device_id for d in f.devices]
    assert len(ids) == n == len(set(ids))
    assert all(DEVICE_ID_RE.match(i) for i in ids)
    assert sorted(ids) == sorted(d for u in f.units for d in u.device_ids)


def test_nb_devices_use_valid_imeis(fleet) -> None:
    nb = [d for d in fleet.devices if d.uplink in ("mqtt", "ctwing", "onenet", "generic")]
    assert len(nb) > 400
    for d in nb:
        assert len(d.device_id) == 15 and d.device_id.isdigit()
        assert luhn_ok(d.device_id) and imei_valid(d.device_id)
        assert DEVICE_ID_RE.match(d.device_id)
        assert d.cell_id is not None and d.rsrp_dbm is not None


def test_imei_check_digit_known_value() -> None:
    # 49015420323751 is the textbook IMEI example; its check digit is 8.
    assert imei_check_digit("49015420323751") == "8"
    assert not imei_valid("490154203237519")


def test_other_identities(fleet) -> None:
    for d in fleet.devices:
        if d.kind is Kind.uitd:
            assert d.uplink == "tcp" and d.device_id == f"uitd-{d.uitd_address}"
            assert d.uitd_address is not None and 0 < d.uitd_address < 2**48
            comps = [c.component for c in d.components]
            assert comps and len(comps) == len(set(comps))
            assert all(len(c.description.encode("gb18030")) <= 31 for c in d.components)
        elif d.uplink == "gateway":
            assert d.gateway_id == fleet.unit(d.unit_id).gateway_id and d.device_id.startswith(d.gateway_id)
            assert d.cell_id is None and d.kind in (Kind.electrical, Kind.water) and d.role != "hydrant"


def test_every_kind_and_industry_in_a_modest_fleet(fleet) -> None:
    assert {d.kind for d in fleet.devices} == set(Kind)
    assert {u.industry for u in fleet.units} == set(INDUSTRIES)
    assert {d.uplink for d in fleet.devices} == {"mqtt", "gateway", "ctwing", "onenet", "generic", "tcp"}


def test_regions_and_units(fleet) -> None:
    streets = {s for s, _ in STREETS}
    for u in fleet.units:
        assert u.region in streets and len(u.region.split("/")) == 4
        assert u.address.startswith(u.region.split("/")[1])
        assert len(u.contacts) == 2 and all(len(c["phone"]) == 11 and c["phone"].isdigit() for c in u.contacts)
    assert len({u.name for u in fleet.units}) == len(fleet.units)


def test_cells(fleet) -> None:
    ids = [c.cell_id for c in fleet.cells]
    assert len(ids) == len(set(ids))
    for c in fleet.cells:
        assert format(int(c.cell_id, 16), "X") == c.cell_id  # upper-case hex, as MX1 decodes it
        assert 0 <= c.pci <= 503
    cells = {c.cell_id: c for c in fleet.cells}
    for u in fleet.units:
        nb = [d for d in fleet.devices_of(u.unit_id) if d.cell_id is not None]
        assert len({d.cell_id for d in nb}) <= 1  # one building, one serving cell
        for d in nb:
            assert cells[d.cell_id].region == u.region and d.pci == cells[d.cell_id].pci


def test_heartbeat_schedule(fleet) -> None:
    for d in fleet.devices[::7]:
        end = T0 + 10 * d.heartbeat_s * 1000
        beats = list(d.heartbeats(T0, end))
        assert 9 <= len(beats) <= 11
        assert all(T0 <= t < end for t in beats)
        gaps = [b - a for a, b in pairwise(beats)]
        assert all(abs(g - d.heartbeat_s * 1000) <= 2 * d.jitter_s * 1000 + 1 for g in gaps)
        assert list(d.heartbeats(T0, end)) == beats


def test_heartbeat_intervals_per_kind(fleet) -> None:
    by_kind = {k: {d.heartbeat_s for d in fleet.devices if d.kind is k} for k in Kind}
    assert by_kind[Kind.electrical] == by_kind[Kind.charger] == {300} and by_kind[Kind.uitd] == {90}
    assert by_kind[Kind.smoke] <= {43_200, 86_400} and by_kind[Kind.gas] == {86_400}


def test_battery_drains_and_radio_is_consistent(fleet) -> None:
    battery = [d for d in fleet.devices if d.battery_pct0 is not None]
    assert battery and all(not d.mains for d in battery)
    for d in battery:
        levels = [d.battery_at(T0 + k * 30 * 86_400_000) for k in range(6)]
        assert all(0 <= x <= 100 for x in levels)  # type: ignore[operator]
        assert levels == sorted(levels, reverse=True)
    for d in fleet.devices:
        s = d.signal_at(T0)
        if d.cell_id is None:
            assert s == {}
            continue
        expected_ecl = 0 if s["rsrp_dbm"] >= -105 else 1 if s["rsrp_dbm"] >= -115 else 2
        assert s["ecl"] == expected_ecl and s["cell_id"] == d.cell_id and s["pci"] == d.pci
        assert abs(s["rsrp_dbm"] - d.rsrp_dbm) <= 3.5


def test_registry_rows(fleet) -> None:
    rows = fleet.registry_rows()
    unit_ids = {u["unit_id"] for u in rows.units}
    assert len(rows.units) == len(fleet.units) and len(rows.devices) == len(fleet.devices)
    for u in rows.units:
        assert set(u) == {"unit_id", "name", "address", "region", "industry", "contacts", "location"}
        lat, lon = CITY_CENTRES[u["region"].split("/")[1]]
        assert abs(u["location"]["lat"] - lat) <= 0.05 and abs(u["location"]["lon"] - lon) <= 0.05
    assert len({(u["location"]["lat"], u["location"]["lon"]) for u in rows.units}) == len(rows.units)
    for row in rows.devices:
        d = fleet.device(row["device_id"])
        assert row["unit_id"] in unit_ids and row["kind"] == d.kind.name
        assert row["heartbeat_s"] == d.heartbeat_s
        assert row.get("cell_id") == d.cell_id
    cells = Counter(r.get("cell_id") for r in rows.devices)
    assert max(n for c, n in cells.items() if c) >= 20


def test_every_role_with_its_kind_and_registration(fleet) -> None:
    assert {d.role for d in fleet.devices} == set(ROLE_KIND)
    rows = {r["device_id"]: r for r in fleet.registry_rows().devices}
    for d in fleet.devices:
        assert d.kind is ROLE_KIND[d.role]
        assert set(d.thresholds) <= set(THRESHOLDS)
        row = rows[d.device_id]
        assert row.get("thresholds", {}) == d.thresholds
        assert row.get("hydrant", False) is (d.role == "hydrant")
        assert row.get("linkage") == d.linkage
        assert DeviceSpec.parse(row).hydrant is d.hydrant  # the service's registry takes the row as it is
        if d.role == "charger":
            assert 2 <= d.ports <= 10 and d.thresholds["port_rated_a"] > 0 and d.mains
        if d.role in ("pressure", "hydrant"):
            assert d.thresholds["pressure_low_mpa"] in (*PRESSURE_LOW_MPA, HYDRANT_PRESSURE_LOW_MPA)
        if d.role == "breaker":
            industry = fleet.unit(d.unit_id).industry
            assert d.linkage == ("never" if industry in NO_AUTO_BREAKER else "auto")
        else:
            assert d.linkage is None
        if d.role == "co":
            assert d.gas_type == "co"


@settings(max_examples=30, deadline=None)
@given(at_ms=st.integers(T0, T0 + 30 * 86_400_000))
def test_quiet_telemetry_stays_inside_every_default_threshold(at_ms: int) -> None:
    f = build_fleet(300, 5)
    limit = {name: spec.default for name, spec in THRESHOLDS.items()}
    for d in f.devices:
        m = make_reading(d, routine_event(d), at_ms).metrics
        limits = limit | d.thresholds
        assert max(m.get("residual_current_ma", [0]), default=0) < (
            limits["leakage_warn_ma"] if d.kind is Kind.charger else limits["residual_current_ma"])
        assert max(m.get("cable_temp_c", [0]), default=0) < limits["cable_temp_c"]
        assert m.get("arc_faults", 0) < limits["arc_faults"]
        assert m.get("pyrolysis_index", 0) < limits["pyrolysis_major"]
        assert m.get("co_ppm", 0) < limits["co_major_ppm"] and m.get("gas_lel_pct", 0) < limits["gas_lel_pct"]
        assert m.get("pressure_mpa", 1.0) > limits["pressure_low_mpa"]
        assert m.get("level_m", 9.0) > (d.thresholds.get("level_low_m", 0.0))
        assert m.get("flow_m3h", 0.0) <= limits["flow_open_m3h"] and m.get("tilt_deg", 0) < limits["tilt_max_deg"]
        if d.kind is Kind.charger:
            assert len(m["port_current_a"]) == len(m["port_temp_c"]) == len(m["port_power_w"]) == d.ports
            assert max(m["port_current_a"]) <= limits["port_rated_a"]
            assert max(m["port_temp_c"]) < limits["port_temp_c"]
            assert m["ports_active"] == sum(a > 0 for a in m["port_current_a"])
