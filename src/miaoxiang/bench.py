"""`miaoxiang bench`: run every `benchmarks/*.py`, collect their JSON, write JSON and a Markdown report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
HELPERS = {"mqtt_broker.py"}  # support modules, not benchmarks


def discover(directory: Path = BENCH_DIR) -> list[Path]:
    return sorted(p for p in directory.glob("*.py") if p.name not in HELPERS and not p.name.startswith("_"))


def run_one(script: Path, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"script": script.name, "ok": False, "error": f"timed out after {timeout_s:.0f}s"}
    elapsed = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        return {"script": script.name, "ok": False, "seconds": elapsed, "error": done.stderr.strip()[-2000:]}
    try:
        figures = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        return {"script": script.name, "ok": False, "seconds": elapsed, "error": "did not print a JSON object"}
    return {"script": script.name, "ok": True, "seconds": elapsed, "figures": figures}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# Miaoxiang benchmark report", "", f"Python {sys.version.split()[0]}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    for r in results:
        lines.append(f"## {r['script']} ({'ok' if r['ok'] else 'FAILED'}, {r.get('seconds', '?')} s)")
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
    results = []
    scripts = discover()
    for i, script in enumerate(scripts, 1):
        print(f"[{i}/{len(scripts)}] {script.name} ...", file=sys.stderr, flush=True)
        results.append(run_one(script, timeout_s))
        print(f"      {'ok' if results[-1]['ok'] else 'FAILED: ' + results[-1]['error'][:200]}", file=sys.stderr)
    (out_dir / "bench.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (out_dir / "bench.md").write_text(markdown(results))
    print(f"wrote {out_dir / 'bench.json'} and {out_dir / 'bench.md'}", file=sys.stderr)
    return sum(not r["ok"] for r in results)
