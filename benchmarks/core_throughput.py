"""Correlation core throughput: readings/s through `Correlator.evaluate` on a large fleet.

A fleet of 100,000 detectors in units of 20 and NB cells of 200 (60 % smoke, 15 % gas, 15 %
electrical, 5 % water, 5 % panel components) sends batches of 5,000 readings: mostly heartbeats
and periodic reports with ordinary values, about 0.5 % alarms and clears, a few faults, tests and
low batteries, after every device has been heard once. Each batch is evaluated and then applied
to the fleet, as the service does, with the garbage collector tuned as the service tunes it
(`miaoxiang.services.tune_gc`); only `evaluate` is timed. The plain scalar reference
(tests/unit/reference_rules.py) is timed on the first few batches of the same run for a ratio.
Prints one JSON object.

`--before DIR` compares with an earlier build (a git worktree, e.g. `git worktree add --detach
/tmp/before ec3428b`): each build runs in its own process with its own `src` first on the path,
alternating for `--rounds` rounds on the same seed and the v1 mix of kinds (which every build
knows); the answer gives each round, the medians, the ratio this/before and whether this build is
no more than 10 % slower, with the load average (`uptime`) around the runs. `--mix v2` adds the v2
classes (chargers, hydrants, CO, pyrolysis: a build that has them only).

    python benchmarks/core_throughput.py [--devices 100000] [--batch 5000] [--batches 40] [--reference-batches 2]
    python benchmarks/core_throughput.py --before /tmp/before [--rounds 3] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_795_341_600_000  # 2026-11-21T00:00:00Z, as tests/unit/reference_rules.py
# (kind code, share): 1 smoke, 2 gas, 3 electrical, 4 water, 5 uitd, 6 charger
V1_KINDS = [(1, 0.60), (2, 0.15), (3, 0.15), (4, 0.05), (5, 0.05)]
V2_KINDS = [(1, 0.50), (2, 0.15), (3, 0.15), (4, 0.08), (5, 0.05), (6, 0.07)]
# (event code, share): heartbeat, report, alarm, alarm_clear, fault, fault_clear, test, tamper, low_battery
EVENT_SHARE = [(0, 0.70), (1, 0.2895), (2, 0.004), (3, 0.003), (4, 0.001), (5, 0.001), (9, 0.0005), (6, 0.0005),
               (8, 0.0005)]


def _load(src: Path) -> None:
    """Put a build's `src` (and the repository root, for the reference) first on the path."""
    sys.path[:0] = [str(src), str(src.parent)]


def build_fleet(n: int, rng: np.random.Generator, kind_share: list[tuple[int, float]]) -> Any:
    from devices.fleet import Fleet
    from devices.kinds import Kind

    kinds = rng.choice([k for k, _ in kind_share], size=n, p=[p for _, p in kind_share])
    fleet = Fleet(capacity=n)
    for i in range(n):
        fleet.upsert(f"8681203{i:08d}", Kind(int(kinds[i])), unit_id=f"unit-{i // 20}", cell_id=f"{i // 200:06X}")
    return fleet


def make_batch(fleet: Any, size: int, t: int, rng: np.random.Generator, slot: np.ndarray | None = None,
               mix: str = "v1") -> Any:
    from devices.batch import NUMERIC_COLUMNS, ReadingColumns

    slot = rng.integers(0, fleet.size, size).astype(np.int32) if slot is None else slot
    kind = fleet.kind[slot]
    event = rng.choice([e for e, _ in EVENT_SHARE], size=size, p=[p for _, p in EVENT_SHARE]).astype(np.int8)
    ts = t + rng.integers(-20_000, 0, size)
    nan = np.full(size, np.nan)

    def on(kinds: tuple[int, ...], values: np.ndarray) -> np.ndarray:
        return np.where(np.isin(kind, kinds), values, nan)

    smoke, gas, electrical, water, charger = 1, 2, 3, 4, 6
    nb = (smoke, gas, water)
    own = (slot.astype(np.int64) * 2654435761) % 1000 / 1000  # a stable per-device figure in [0, 1)
    values = {name: nan.copy() for name in NUMERIC_COLUMNS}
    values.update(
        battery_pct=on(nb, np.clip(19 + 81 * own, 0, 100).round()),  # 1 % of the devices stay low
        rsrp_dbm=on(nb, rng.normal(-95, 8, size).round()),
        temperature_c=on((smoke,), (18 + 10 * own + rng.normal(0, 0.3, size)).round(1)),
        smoke_obscuration_pct_m=on((smoke,), np.where(event == 2, 4.2, 0.1)),
        gas_lel_pct=on((gas,), np.where(rng.random(size) < 0.002, 30.0, rng.exponential(0.5, size).round(1))),
        residual_current_ma=on((electrical,), rng.normal(60, 25, size).round()),
        cable_temp_c=on((electrical,), (30 + 15 * own + rng.normal(0, 0.5, size)).round(1)),
        voltage_v=on((electrical,), rng.normal(226, 3, size).round(1)),
        arc_faults=on((electrical,), np.zeros(size)),
        pressure_mpa=on((water,), (0.25 + 0.1 * own + rng.normal(0, 0.003, size)).round(3)),  # steady mains
    )
    if mix == "v2":  # the v2 classes' values (a build that has them)
        values.update(
            co_ppm=on((gas,), np.where(own < 0.3, rng.exponential(5, size).round(), np.nan)),
            pyrolysis_index=on((electrical,), np.where(own < 0.3, rng.exponential(8, size).round(), np.nan)),
            flow_m3h=on((water,), np.where(own < 0.5, rng.exponential(0.1, size).round(2), np.nan)),
            port_temp_c=on((charger,), (28 + 15 * own + rng.normal(0, 0.5, size)).round(1)),
            port_current_a=on((charger,), rng.normal(8, 2, size).round(2)),
        )
        values["residual_current_ma"] = np.where(kind == charger, rng.exponential(2, size).round(), values[
            "residual_current_ma"])
    return ReadingColumns(slot=slot, kind=kind.astype(np.int8), event=event, ts_ms=ts.astype(np.int64),
                          received_ms=np.full(size, t, np.int64), values=values)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One build's figures (the build whose `src` is first on the path)."""
    import alerting
    from alerting.core import Correlator
    from miaoxiang.services import tune_gc

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    fleet = build_fleet(args.devices, rng, V2_KINDS if args.mix == "v2" else V1_KINDS)
    setup_s = time.perf_counter() - started
    core = Correlator()
    reference = None
    if args.reference_batches:
        from tests.unit.reference_rules import ReferenceCorrelator

        reference = ReferenceCorrelator()
    now = T0
    # steady state: every device has been heard once (values, battery flags), the core has run
    for first in range(0, fleet.size, args.batch):
        warm = make_batch(fleet, min(args.batch, fleet.size - first), now, rng,
                          np.arange(first, min(first + args.batch, fleet.size), dtype=np.int32), args.mix)
        core.evaluate(warm, fleet, now)
        fleet.apply(warm)
    tune_gc()  # as the service does once its fleet is loaded

    per_batch, decisions, ref_seconds, ref_readings, cpu = [], 0, 0.0, 0, 0.0
    for i in range(args.batches):
        now += 1000
        batch = make_batch(fleet, args.batch, now, rng, mix=args.mix)
        if reference is not None and i < args.reference_batches:
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
    return {
        "build": str(Path(alerting.__file__).resolve().parents[2]),
        "mix": args.mix,
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
    }


def _worker(src: Path, args: argparse.Namespace, mix: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--src", str(src), "--mix", mix, "--devices", str(args.devices),
           "--batch", str(args.batch), "--batches", str(args.batches), "--reference-batches", "0",
           "--seed", str(args.seed)]
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{src.parent}"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """This build against `--before`, alternating processes round by round (who goes first alternates)."""
    builds = {"this": ROOT / "src", "before": Path(args.before).resolve() / "src"}
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "before": []}
    for r in range(args.rounds):
        for name in (("this", "before") if r % 2 == 0 else ("before", "this")):
            runs[name].append(_worker(builds[name], args, "v1"))
    load_after = os.getloadavg()
    med = {name: {key: statistics.median(x[key] for x in results) for key in ("readings_per_s", "readings_per_cpu_s")}
           for name, results in runs.items()}
    ratio = {key: round(med["this"][key] / med["before"][key], 3) for key in med["this"]}
    out: dict[str, Any] = {
        "batch_size": args.batch, "devices": args.devices, "batches_per_run": args.batches, "rounds": args.rounds,
        "before": str(builds["before"].parent),
        **{f"rounds_{key}": {name: [x[key] for x in results] for name, results in runs.items()}
           for key in ("readings_per_s", "readings_per_cpu_s")},
        "median": med,
        "ratio_this_over_before": ratio,
        "goal": "no more than 10 % slower than the build before (ratio of readings per CPU second >= 0.9)",
        "goal_met": ratio["readings_per_cpu_s"] >= 0.9,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }
    if args.mix == "v2":
        out["this_v2_mix"] = _worker(builds["this"], args, "v2")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--reference-batches", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mix", choices=("v1", "v2"), default="v1", help="kinds of the fleet (v2: with chargers)")
    ap.add_argument("--before", help="a worktree of an earlier build to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--src", help=argparse.SUPPRESS)  # a worker process: the build to measure
    args = ap.parse_args()
    if args.before:
        print(json.dumps(compare(args), indent=2))
        return
    _load(Path(args.src) if args.src else ROOT / "src")
    print(json.dumps(measure(args), indent=2))


if __name__ == "__main__":
    main()
