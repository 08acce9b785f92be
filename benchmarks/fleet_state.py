"""Fleet state at province scale: load, memory, batch apply, offline sweep, queries, checkpoints.

A realistic mix (55 % smoke, 20 % gas, 15 % electrical, 5 % water, 5 % uitd) of 1,000,000
devices in 100,000 units over a region tree, 2,000 NB cells. Prints one JSON object; goals:
sweep <= 20 ms, RSS <= 1.5 GB, start-up load <= 15 s.

    python benchmarks/fleet_state.py [--devices 1000000 --units 100000 --cells 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from devices import checkpoint, fleet_query
from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind

T0 = 1_795_341_600_000
BATCH = 5_000
KIND_MIX = {Kind.smoke: 0.55, Kind.gas: 0.20, Kind.electrical: 0.15, Kind.water: 0.05, Kind.uitd: 0.05}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def fleet_array_mb(fleet: Fleet) -> float:
    cols = fleet._columns().values()
    return (sum(a.nbytes for a in cols) + fleet.unit_region.nbytes + fleet.unit_maintenance.nbytes) / 2**20


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median milliseconds of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), result


def registry(rng: np.random.Generator, n: int, units: int, cells: int) -> dict[str, Any]:
    """Registry columns as they come out of PostgreSQL."""
    kinds = rng.choice(np.array(list(KIND_MIX), np.int8), n, p=list(KIND_MIX.values()))
    unit_names = [f"U{u:06d}" for u in range(units)]
    cell_names = [f"{0x1A0000 + c:X}" for c in range(cells)]
    unit_of = rng.integers(0, units, n)
    cell_of = rng.integers(0, cells, n)
    return {
        "device_ids": [f"86812{i:010d}" for i in range(n)],
        "kinds": kinds,
        "unit_ids": [unit_names[u] for u in unit_of.tolist()],
        "cell_ids": [None if k == Kind.uitd else cell_names[c] for k, c in zip(kinds.tolist(), cell_of.tolist())],
        "unit_names": unit_names,
        # province / 11 cities / 10 districts / 10 streets
        "unit_regions": [f"江西省/市{u % 11:02d}/区{u // 11 % 10}/街道{u // 110 % 10}" for u in range(units)],
    }


def make_batch(rng: np.random.Generator, fleet: Fleet, slots: np.ndarray, now: int) -> ReadingColumns:
    n = slots.shape[0]
    events = rng.choice(np.array([Event.heartbeat, Event.report, Event.alarm, Event.alarm_clear, Event.fault,
                                  Event.low_battery], np.int8), n, p=[0.6, 0.3, 0.03, 0.03, 0.02, 0.02])
    kind = fleet.kind[slots]
    values = {name: np.full(n, np.nan) for name in NUMERIC_COLUMNS}
    nb = kind != Kind.uitd
    values["battery_pct"][nb] = rng.uniform(5, 100, nb.sum())
    values["rsrp_dbm"][nb] = rng.uniform(-125, -70, nb.sum())
    smoke = kind == Kind.smoke
    values["temperature_c"][smoke] = rng.normal(25, 5, smoke.sum())
    gas = kind == Kind.gas
    values["gas_lel_pct"][gas] = rng.uniform(0, 8, gas.sum())
    elec = kind == Kind.electrical
    values["cable_temp_c"][elec] = rng.normal(40, 8, elec.sum())
    values["residual_current_ma"][elec] = rng.uniform(0, 200, elec.sum())
    return ReadingColumns(
        slot=slots.astype(np.int32), kind=kind, event=events,
        ts_ms=now - rng.integers(0, 5_000, n), received_ms=np.full(n, now, np.int64), values=values,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--cells", type=int, default=2_000)
    parser.add_argument("--upserts", type=int, default=100_000, help="devices registered one by one")
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    reg = registry(rng, args.devices, args.units, args.cells)
    out: dict[str, Any] = {"devices": args.devices, "units": args.units, "cells": args.cells}
    rss_before = rss_mb()

    one_by_one = Fleet()
    k = min(args.upserts, args.devices)
    t = time.perf_counter()
    for i in range(k):
        one_by_one.upsert(reg["device_ids"][i], Kind(int(reg["kinds"][i])), unit_id=reg["unit_ids"][i],
                          cell_id=reg["cell_ids"][i])
    upsert_s = time.perf_counter() - t
    out["upsert_per_s"] = round(k / upsert_s)
    out["upsert_all_s_extrapolated"] = round(upsert_s * args.devices / k, 1)
    del one_by_one

    fleet = Fleet()
    t = time.perf_counter()
    for unit, region in zip(reg["unit_names"], reg["unit_regions"]):
        fleet.set_unit(unit, region=region)
    out["units_load_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    fleet.bulk_load(reg["device_ids"], reg["kinds"], unit_ids=reg["unit_ids"], cell_ids=reg["cell_ids"])
    out["bulk_load_s"] = round(time.perf_counter() - t, 3)
    out["fleet_arrays_mb"] = round(fleet_array_mb(fleet), 1)

    # every device reports once (a re-registration storm), in batches of 5,000
    everyone = rng.permutation(args.devices)
    now = T0
    batches = [make_batch(rng, fleet, everyone[i:i + BATCH], now) for i in range(0, args.devices, BATCH)]
    t = time.perf_counter()
    for b in batches:
        fleet.apply(b)
    apply_s = time.perf_counter() - t
    out["apply_readings_per_s"] = round(args.devices / apply_s)
    out["apply_batch_ms"] = round(apply_s * 1000 / len(batches), 3)
    del batches
    fleet.take_dirty()
    out["rss_mb"] = round(rss_mb(), 1)
    out["rss_fleet_mb"] = round(rss_mb() - rss_before, 1)

    now = T0 + 60_000
    out["sweep_ms_median"], _ = timed(lambda: fleet.sweep(now), repeat=21)
    # 15 minutes on, every electrical (5 min) and uitd (90 s) device has gone silent
    mass_ms, gone = timed(lambda: fleet.sweep(T0 + 15 * 60_000))
    out["sweep_ms_mass_offline"] = round(mass_ms, 2)
    out["sweep_mass_offline_devices"] = int(gone.shape[0])
    out["sweep_ms_median"] = round(out["sweep_ms_median"], 3)

    lat: dict[str, float] = {}
    for name, q in {
        "first_page": {},
        "kind_gas": {"kind": Kind.gas},
        "status_offline": {"status": "offline"},
        "status_alarm_deep_cursor": {"status": "alarm", "after_slot": args.devices // 2},
        "region_district": {"region_prefix": "江西省/市03/区4"},
        "unit": {"unit_ids": [reg["unit_names"][42]]},
        "scoped_region_kind_status": {"scope": ["江西省/市05"], "kind": Kind.smoke, "status": "online"},
    }.items():
        ms, _ = timed(lambda q=q: fleet_query.query(fleet, **q), repeat=11)
        lat[f"query_{name}_ms"] = round(ms, 3)
    ms, _ = timed(lambda: fleet_query.counts(fleet), repeat=5)
    lat["counts_all_ms"] = round(ms, 2)
    ms, _ = timed(lambda: fleet_query.counts(fleet, region_prefix="江西省/市03", region_depth=3), repeat=5)
    lat["counts_region_ms"] = round(ms, 2)
    probes = rng.integers(0, args.devices, 1000)
    t = time.perf_counter()
    for s in probes.tolist():
        fleet_query.snapshot(fleet, s)
    lat["snapshot_ms"] = round((time.perf_counter() - t) * 1000 / probes.shape[0], 4)
    ms, _ = timed(lambda: fleet.unit_slots(reg["unit_names"][7]), repeat=11)
    lat["unit_slots_ms"] = round(ms, 3)
    out["latency"] = lat

    # checkpoints: a periodic one after one batch, then a full one restored into a fresh fleet
    fleet.take_dirty()
    fleet.apply(make_batch(rng, fleet, rng.integers(0, args.devices, BATCH), T0 + 16 * 60_000))
    t = time.perf_counter()
    rows = checkpoint.checkpoint_rows(fleet, fleet.take_dirty())
    out["checkpoint_dirty_rows"] = len(rows)
    out["checkpoint_dirty_ms"] = round((time.perf_counter() - t) * 1000, 2)
    restarted = Fleet()
    for unit, region in zip(reg["unit_names"], reg["unit_regions"]):
        restarted.set_unit(unit, region=region)
    t = time.perf_counter()
    restarted.bulk_load(reg["device_ids"], reg["kinds"], unit_ids=reg["unit_ids"], cell_ids=reg["cell_ids"])
    load_s = time.perf_counter() - t
    write_s = restore_s = 0.0
    for start in range(0, args.devices, 100_000):
        t = time.perf_counter()
        rows = checkpoint.checkpoint_rows(fleet, np.arange(start, min(start + 100_000, args.devices)))
        write_s += time.perf_counter() - t
        t = time.perf_counter()
        checkpoint.restore(restarted, rows)
        restore_s += time.perf_counter() - t
    out["checkpoint_full_s"] = round(write_s, 2)
    out["restore_full_s"] = round(restore_s, 2)
    out["startup_load_s"] = round(load_s + restore_s, 2)
    assert fleet_query.status_codes(restarted).tolist() == fleet_query.status_codes(fleet).tolist()
    out["goals_met"] = {
        "sweep_le_20ms": out["sweep_ms_median"] <= 20 and mass_ms <= 20,
        "rss_le_1_5gb": out["rss_mb"] <= 1536,
        "load_le_15s": out["startup_load_s"] <= 15,
    }
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
