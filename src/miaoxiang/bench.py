"""`miaoxiang bench`: run every `benchmarks/*.py`, collect their JSON, write JSON and a Markdown report.

The report opens with the machine (cores, memory, broker and database versions, load average
around each benchmark, so a noisy run shows as one) and a headline table of the figures
docs/performance.md records, picked from the benchmarks' own JSON; then every benchmark's full
figures.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
HELPERS = {"mqtt_broker.py", "bench_db.py"}  # support modules, not benchmarks
Figures = dict[str, Any]


def discover(directory: Path = BENCH_DIR) -> list[Path]:
    return sorted(p for p in directory.glob("*.py") if p.name not in HELPERS and not p.name.startswith("_"))


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_one(script: Path, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    load = _load()
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"script": script.name, "ok": False, "error": f"timed out after {timeout_s:.0f}s", "load_before": load}
    elapsed = round(time.monotonic() - started, 1)
    common = {"script": script.name, "seconds": elapsed, "load_before": load, "load_after": _load()}
    if done.returncode != 0:
        return {**common, "ok": False, "error": done.stderr.strip()[-2000:]}
    try:
        figures = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        return {**common, "ok": False, "error": "did not print a JSON object"}
    return {**common, "ok": True, "figures": figures}


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return ((out.stdout or out.stderr).strip().splitlines() or ["?"])[0]


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import psutil

        memory_gb: float | None = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gb = None
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
        "memory_gb": memory_gb, "mosquitto": _version(["mosquitto", "-h"]), "postgres": _version(["psql", "--version"]),
        "load_at_start": _load(),
    }


def _at(results: list[dict[str, Any]], script: str, *path: str) -> Any:
    """A figure by its path in one benchmark's JSON, or None."""
    value: Any = next((r.get("figures") for r in results if r["script"] == script and r["ok"]), None)
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


#: Headline rows: (label, unit, how to get it from the results).
HEADLINES: list[tuple[str, str, Callable[[list[dict[str, Any]]], Any]]] = [
    ("ingest, whole service in one process", "msgs/s", lambda r: _at(r, "ingest_throughput.py", "pipeline_msgs_per_s")),
    ("raw client ceiling (receive + ack only)", "msgs/s",
     lambda r: _at(r, "ingest_throughput.py", "ceiling_msgs_per_s")),
    ("naive baseline (one INSERT per message)", "msgs/s", lambda r: _at(r, "ingest_throughput.py", "naive_msgs_per_s")),
    ("one process / ceiling", "ratio", lambda r: _at(r, "ingest_throughput.py", "pipeline_vs_ceiling")),
    ("one process / naive", "ratio", lambda r: _at(r, "ingest_throughput.py", "pipeline_vs_naive")),
    ("ingest, `miaoxiang serve` subprocess, partitions 1", "msgs/s",
     lambda r: _at(r, "scale_out.py", "one_process", "msgs_per_s")),
    ("ingest, N `$share` workers + api process", "msgs/s", lambda r: _at(r, "scale_out.py", "workers", "msgs_per_s")),
    ("N (workers)", "", lambda r: _at(r, "scale_out.py", "workers", "count")),
    ("N workers / one process", "ratio", lambda r: _at(r, "scale_out.py", "workers_vs_one")),
    ("N workers / ceiling", "ratio", lambda r: _ratio(_at(r, "scale_out.py", "workers", "msgs_per_s"),
                                                      _at(r, "ingest_throughput.py", "ceiling_msgs_per_s"))),
    ("N workers / naive", "ratio", lambda r: _ratio(_at(r, "scale_out.py", "workers", "msgs_per_s"),
                                                    _at(r, "ingest_throughput.py", "naive_msgs_per_s"))),
    ("readings from gateway batches", "readings/s", lambda r: _at(r, "ingest_throughput.py", "batch_readings_per_s")),
    ("alarm latency idle, p50", "ms", lambda r: _at(r, "alarm_latency.py", "publish_to_sse_idle_ms", "p50")),
    ("alarm latency idle, p99", "ms", lambda r: _at(r, "alarm_latency.py", "publish_to_sse_idle_ms", "p99")),
    ("alarm latency under burst, p50", "ms",
     lambda r: _at(r, "alarm_latency.py", "publish_to_sse_under_burst_ms", "p50")),
    ("alarm latency under burst, p99", "ms",
     lambda r: _at(r, "alarm_latency.py", "publish_to_sse_under_burst_ms", "p99")),
    ("burst rate reached", "msgs/s", lambda r: _at(r, "alarm_latency.py", "burst_tel", "messages_per_s")),
    ("notification beyond digest hold, steady storm, p50", "ms",
     lambda r: _at(r, "notify_latency.py", "phases", "steady", "beyond_hold_ms", "p50")),
    ("notification beyond digest hold, steady storm, p99", "ms",
     lambda r: _at(r, "notify_latency.py", "phases", "steady", "beyond_hold_ms", "p99")),
    ("notifications lost / pending / duplicated after kill -9", "",
     lambda r: _triple(_at(r, "notify_latency.py", "counts"))),
    ("correlation core", "readings/s", lambda r: _at(r, "core_throughput.py", "readings_per_s")),
    ("fleet 1M: load from registry + checkpoint", "s", lambda r: _at(r, "fleet_state.py", "startup_load_s")),
    ("fleet 1M: apply batches", "readings/s", lambda r: _at(r, "fleet_state.py", "apply_readings_per_s")),
    ("fleet 1M: offline sweep, median", "ms", lambda r: _at(r, "fleet_state.py", "sweep_ms_median")),
    ("fleet 1M: sweep with mass offline", "ms", lambda r: _at(r, "fleet_state.py", "sweep_ms_mass_offline")),
    ("fleet 1M: process RSS", "MB", lambda r: _at(r, "fleet_state.py", "rss_mb")),
    ("service 1M: spawn to /readyz", "s", lambda r: _at(r, "fleet_api.py", "startup_to_ready_s")),
    ("service 1M: RSS", "MB", lambda r: _at(r, "fleet_api.py", "rss_mb")),
    ("service 1M: GET /devices first page p50 / p99", "ms",
     lambda r: _pair(_at(r, "fleet_api.py", "latency", "devices_first_page"))),
    ("service 1M: GET /devices?region p50 / p99", "ms",
     lambda r: _pair(_at(r, "fleet_api.py", "latency", "devices_region_district"))),
    ("service 1M: GET /devices/{id} p50 / p99", "ms",
     lambda r: _pair(_at(r, "fleet_api.py", "latency", "device_detail"))),
    ("service 1M: GET /stats/overview p50 / p99", "ms",
     lambda r: _pair(_at(r, "fleet_api.py", "latency", "stats_overview"))),
    ("scale-out RSS per process (api, workers)", "MB", lambda r: _at(r, "scale_out.py", "workers", "rss_mb")),
    ("bulk import 100k devices", "s", lambda r: _at(r, "import_devices.py", "seconds")),
]


def _pair(latency: Any) -> str | None:
    return f"{latency['p50_ms']} / {latency['p99_ms']}" if isinstance(latency, dict) and "p50_ms" in latency else None


def _triple(counts: Any) -> str | None:
    if not isinstance(counts, dict):
        return None
    return f"{counts.get('lost')} / {counts.get('pending_at_end')} / {counts.get('duplicates')}"


def headlines(results: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(label, unit, get(results)) for label, unit, get in HEADLINES]


def markdown(results: list[dict[str, Any]], host: dict[str, Any] | None = None) -> str:
    lines = ["# Miaoxiang benchmark report", "",
             f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    if host is not None:
        lines += ["## Machine", "", "| | |", "|---|---|"]
        lines += [
            f"| {k} | {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v} |" for k, v in host.items()
        ]
        lines.append("")
    lines += ["## Headline figures", "", "| figure | value | unit |", "|---|---|---|"]
    lines += [
        f"| {label} | {'n/a' if value is None else json.dumps(value, ensure_ascii=False).strip(chr(34))} | {unit} |"
        for label, unit, value in headlines(results)
    ]
    lines.append("")
    for r in results:
        load = f", load {r['load_before']} -> {r['load_after']}" if "load_after" in r else ""
        lines.append(f"## {r['script']} ({'ok' if r['ok'] else 'FAILED'}, {r.get('seconds', '?')} s{load})")
        lines.append("")
        if not r["ok"]:
            lines += ["```", r["error"], "```", ""]
            continue
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v, ensure_ascii=False)} |" for k, v in r["figures"].items()]
        lines.append("")
    return "\n".join(lines)


def run_all(out_dir: Path, timeout_s: float = 900) -> int:
    """Run the suite with progress on stderr; answer the number of failed benchmarks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    host = machine()
    results = []
    scripts = discover()
    for i, script in enumerate(scripts, 1):
        print(f"[{i}/{len(scripts)}] {script.name} ...", file=sys.stderr, flush=True)
        results.append(run_one(script, timeout_s))
        print(f"      {'ok' if results[-1]['ok'] else 'FAILED: ' + results[-1]['error'][:200]}", file=sys.stderr)
    (out_dir / "bench.json").write_text(json.dumps({"machine": host, "results": results}, indent=2, ensure_ascii=False))
    (out_dir / "bench.md").write_text(markdown(results, host))
    print(f"wrote {out_dir / 'bench.json'} and {out_dir / 'bench.md'}", file=sys.stderr)
    return sum(not r["ok"] for r in results)
