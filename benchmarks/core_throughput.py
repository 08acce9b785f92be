"""Correlation core throughput: readings/s through `Correlator.evaluate` on a large fleet.

A fleet of 100,000 detectors in units of 20 and NB cells of 200 (60 % smoke, 15 % gas, 15 %
electrical, 5 % water, 5 % panel components) sends batches of 5,000 readings: mostly heartbeats
and periodic reports with ordinary values, about 0.5 % alarms and clears, a few faults, tests and
low batteries, after every device has been heard once. Each batch is evaluated and then applied
to the fleet, as the service does, with the garbage collector tuned as the service tunes it
(`miaoxiang.services.tune_gc`); only `evaluate` is timed. The plain scalar reference
(tests/unit/reference_rules.py) is timed on the first few batches of the same run for a ratio.
Prints one JSON object.

    python benchmarks/core_throughput.py [--devices 100000] [--batch 5000] [--batches 40] [--reference-batches 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alerting.core import Correlator
from devices.batch import NUMERIC_COLUMNS, ReadingColumns
from devices.fleet import Fleet
from devices.kinds import Event, Kind
from miaoxiang.services import tune_gc
from tests.unit.reference_rules import T0, ReferenceCorrelator

KIND_SHARE = [(Kind.smoke, 0.60), (Kind.gas, 0.15), (Kind.electrical, 0.15), (Kind.water, 0.05), (Kind.uitd, 0.05)]
EVENT_SHARE = [(Event.heartbeat, 0.70), (Event.report, 0.2895), (Event.alarm, 0.004), (Event.alarm_clear, 0.003),
               (Event.fault, 0.001), (Event.fault_clear, 0.001), (Event.test, 0.0005), (Event.tamper, 0.0005),
               (Event.low_battery, 0.0005)]


def build_fleet(n: int, rng: np.random.Generator) -> Fleet:
    kinds = rng.choice([k for k, _ in KIND_SHARE], size=n, p=[p for _, p in KIND_SHARE])
    fleet = Fleet(capacity=n)
    for i in range(n):
        fleet.upsert(f"8681203{i:08d}", Kind(int(kinds[i])), unit_id=f"unit-{i // 20}", cell_id=f"{i // 200:06X}")
    return fleet


def make_batch(
    fleet: Fleet, size: int, t: int, rng: np.random.Generator, slot: np.ndarray | None = None
) -> ReadingColumns:
    slot = rng.integers(0, fleet.size, size).astype(np.int32) if slot is None else slot
    kind = fleet.kind[slot]
    event = rng.choice([e for e, _ in EVENT_SHARE], size=size, p=[p for _, p in EVENT_SHARE]).astype(np.int8)
    ts = t + rng.integers(-20_000, 0, size)
    nan = np.full(size, np.nan)

    def on(kinds: tuple[Kind, ...], values: np.ndarray) -> np.ndarray:
        return np.where(np.isin(kind, kinds), values, nan)

    nb = (Kind.smoke, Kind.gas, Kind.water)
    own = (slot.astype(np.int64) * 2654435761) % 1000 / 1000  # a stable per-device figure in [0, 1)
    values = {name: nan.copy() for name in NUMERIC_COLUMNS}
    values.update(
        battery_pct=on(nb, np.clip(19 + 81 * own, 0, 100).round()),  # 1 % of the devices stay low
        rsrp_dbm=on(nb, rng.normal(-95, 8, size).round()),
        temperature_c=on((Kind.smoke,), (18 + 10 * own + rng.normal(0, 0.3, size)).round(1)),
        smoke_obscuration_pct_m=on((Kind.smoke,), np.where(event == Event.alarm, 4.2, 0.1)),
        gas_lel_pct=on((Kind.gas,), np.where(rng.random(size) < 0.002, 30.0, rng.exponential(0.5, size).round(1))),
        residual_current_ma=on((Kind.electrical,), rng.normal(60, 25, size).round()),
        cable_temp_c=on((Kind.electrical,), (30 + 15 * own + rng.normal(0, 0.5, size)).round(1)),
        voltage_v=on((Kind.electrical,), rng.normal(226, 3, size).round(1)),
        arc_faults=on((Kind.electrical,), np.zeros(size)),
        pressure_mpa=on((Kind.water,), rng.normal(0.3, 0.05, size).round(3)),
    )
    return ReadingColumns(slot=slot, kind=kind.astype(np.int8), event=event, ts_ms=ts.astype(np.int64),
                          received_ms=np.full(size, t, np.int64), values=values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--reference-batches", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    started = time.perf_counter()
    fleet = build_fleet(args.devices, rng)
    setup_s = time.perf_counter() - started
    core, reference = Correlator(), ReferenceCorrelator()
    now = T0
    # steady state: every device has been heard once (values, battery flags), the core has run
    for first in range(0, fleet.size, args.batch):
        warm = make_batch(fleet, min(args.batch, fleet.size - first), now, rng,
                          np.arange(first, min(first + args.batch, fleet.size), dtype=np.int32))
        core.evaluate(warm, fleet, now)
        fleet.apply(warm)
    tune_gc()  # as the service does once its fleet is loaded

    per_batch, decisions, ref_seconds, ref_readings, cpu = [], 0, 0.0, 0, 0.0
    for i in range(args.batches):
        now += 1000
        batch = make_batch(fleet, args.batch, now, rng)
        if i < args.reference_batches:
            t0 = time.perf_counter()
            reference.evaluate(batch, fleet, now)
            ref_seconds += time.perf_counter() - t0
            ref_readings += len(batch)
        t0, c0 = time.perf_counter(), time.thread_time()
        out = core.evaluate(batch, fleet, now)
        per_batch.append(time.perf_counter() - t0)
        cpu += time.thread_time() - c0
        decisions += len(out)
        fleet.apply(batch)

    seconds = np.array(per_batch)
    rate = args.batch * len(seconds) / seconds.sum()
    ref_rate = ref_readings / ref_seconds if ref_seconds else None
    print(json.dumps({
        "devices": args.devices,
        "batch_size": args.batch,
        "batches": args.batches,
        "readings_per_s": round(rate),
        "readings_per_cpu_s": round(args.batch * len(seconds) / cpu),  # unaffected by other processes on the machine
        "goal_readings_per_s": 2_000_000,
        "batch_ms_p50": round(float(np.percentile(seconds, 50)) * 1000, 3),
        "batch_ms_p99": round(float(np.percentile(seconds, 99)) * 1000, 3),
        "decisions_per_batch": round(decisions / args.batches, 1),
        "reference_readings_per_s": round(ref_rate) if ref_rate else None,
        "speedup_over_reference": round(rate / ref_rate, 1) if ref_rate else None,
        "fleet_setup_s": round(setup_s, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
