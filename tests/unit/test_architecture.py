"""The architecture checks itself: import-linter's layer contracts (pyproject `[tool.importlinter]`),
ruff and mypy, each run as the developer runs it, must report nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / args[0]
    if not tool.exists():
        pytest.fail(f"{tool} is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.run([str(tool), *args[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(map(str, result.args))} found:\n{result.stdout}{result.stderr}"


def test_import_contracts_are_kept() -> None:
    """miaoxiang over ingest | alerting (independent) over devices; simulators only from miaoxiang."""
    result = run("lint-imports", "--no-cache")
    assert_clean(result)
    assert "0 broken" in result.stdout


def test_ruff_finds_nothing() -> None:
    assert_clean(run("ruff", "check", "--no-cache", "src", "simulators", "tests", "benchmarks"))


def test_mypy_finds_nothing() -> None:
    assert_clean(run("mypy"))
