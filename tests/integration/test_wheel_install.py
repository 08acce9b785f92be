"""The wheel as a user installs it: `pip wheel`, then a fresh virtualenv with the wheel and no
extras, `miaoxiang serve` from a directory outside the checkout against the machine's PostgreSQL
and Mosquitto until `/readyz` answers 200 (so the SQL migrations came with the wheel), then every
module of the shipped packages imported inside that virtualenv.

Dependencies come from pip's configured indexes and its cache, so a rerun is quick."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from miaoxiang.embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
#: What the wheel is built from: what the Dockerfile copies into its build stage.
BUILD_INPUTS = ("pyproject.toml", "README.md", "src", "simulators", "migrations")
#: Shipped packages and where their sources are in the checkout.
PACKAGES = {"devices": "src", "alerting": "src", "ingest": "src", "miaoxiang": "src", "simulators": "."}

#: Run inside the installed virtualenv (python -I: no cwd, no PYTHONPATH): import every module of
#: the shipped packages; report failures, where each module came from, and the data files found.
IMPORT_ALL = """
import importlib, importlib.resources, json, pkgutil, sys, traceback
failed, files = {}, {}
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    names = [top] + [m.name for m in pkgutil.walk_packages(package.__path__, top + ".", onerror=lambda n: None)]
    for name in names:
        try:
            files[name] = importlib.import_module(name).__file__
        except BaseException:
            failed[name] = traceback.format_exc(limit=-3)
from miaoxiang.settings import DEFAULT_MIGRATIONS_DIR
def tree(folder, at=""):
    return [n for c in folder.iterdir() for n in (tree(c, f"{at}{c.name}/") if c.is_dir() else [at + c.name])]
data = {
    "migrations": sorted(p.name for p in DEFAULT_MIGRATIONS_DIR.glob("*.sql")),
    "console": sorted(tree(importlib.resources.files("miaoxiang.console"))),  # with vendor/leaflet/...
    "profiles": sorted(p.name for p in importlib.resources.files("ingest.profiles").iterdir()
                       if p.name.endswith(".json")),
}
print(json.dumps({"failed": failed, "files": files, "data": data}))
"""


def run(cmd: list[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    )
    return done


def source_modules(root: Path) -> set[str]:
    """Every module a source tree holds in the shipped packages."""
    found = set()
    for top, base in PACKAGES.items():
        for path in (root / base / top).rglob("*.py"):
            parts = path.relative_to(root / base).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"`miaoxiang serve` exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz not 200 after {timeout:.0f}s:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def test_wheel_installed_without_extras_serves_and_imports(
    database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    source = tmp_path / "source"  # a snapshot: the checkout may change while the test runs
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True,  # as the Dockerfile copies them
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dist), str(source)], 300)
    (wheel,) = dist.glob("miaoxiang-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 120)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(wheel)], 420)

    workdir = tmp_path / "elsewhere"  # no migrations/, no checkout: only what the wheel brought
    workdir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIAOXIANG_", "PYTHON"))}
    env.update(
        MIAOXIANG_DATABASE_URL=database_url, MIAOXIANG_MQTT_URL=mqtt_url, MIAOXIANG_TOPIC_PREFIX=topic_prefix,
        MIAOXIANG_MQTT_CLIENT_ID=f"wheel-{uuid.uuid4().hex[:8]}", MIAOXIANG_HTTP_PORT=str(port),
        MIAOXIANG_GB26875_ENABLED="false", MIAOXIANG_DATA_DIR=str(workdir / "data"),
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "miaoxiang"), "serve"], cwd=workdir, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/readyz", log, 90)
        report = json.loads(run([str(python), "-I", "-c", IMPORT_ALL, *PACKAGES], 180, cwd=workdir, env=env).stdout)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert report["failed"] == {}, "\n".join(f"{name}:\n{err}" for name, err in report["failed"].items())
    assert set(report["files"]) == source_modules(source)  # nothing of the sources left out of the wheel
    outside = [f for f in report["files"].values() if not Path(f).is_relative_to(venv)]
    assert not outside, f"imported from outside the virtualenv: {outside[:5]}"
    assert report["data"]["migrations"] == sorted(p.name for p in (source / "migrations").glob("*.sql"))
    console = source / "src/miaoxiang/console"
    assert report["data"]["console"] == sorted(p.relative_to(console).as_posix() for p in console.rglob("*")
                                               if p.is_file())
    assert report["data"]["profiles"] == sorted(p.name for p in (source / "src/ingest/profiles").glob("*.json"))
    assert code == 0, log.read_text(errors="replace")[-3000:]
