"""The operations kit under test: where its files are, the metric names its PromQL uses, the
names a /metrics page exports, and Prometheus's promtool (Debian package `prometheus`)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with uvicorn[standard]

OPS = Path(__file__).resolve().parent.parent / "ops"
RULES = OPS / "prometheus" / "miaoxiang-rules.yml"
DASHBOARD = OPS / "grafana" / "miaoxiang.json"

#: Words of PromQL that look like metric names: aggregations (written `sum by (x) (...)` they are
#: not followed by a parenthesis), modifiers, set and vector-matching operators, literals.
KEYWORDS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "and", "or", "unless", "atan2", "offset", "inf", "nan",
})
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")  # label matchers; after strings are gone no `}` hides inside
_RANGES = re.compile(r"\[[^\]]*\]")  # [5m], [$__rate_interval], subqueries [1h:5m]
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier that is whole (not part of a longer word, a number such as 15m or 1e3, or a
# Grafana $variable) and is not a function call.
_IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not function calls, label
    names (in `{...}` or after by/without/on/ignoring/group_*), keywords, durations or strings."""
    bare = _STRINGS.sub(" ", expr)
    bare = _MATCHERS.sub(" ", bare)
    bare = _RANGES.sub(" ", bare)
    bare = _LABEL_LISTS.sub(" ", bare)
    return {name for name in _IDENTIFIER.findall(bare) if name.lower() not in KEYWORDS}


def exported_names(metrics_text: str) -> set[str]:
    """Every series name a Prometheus text page can carry, from its `# TYPE` lines: the name, and
    for counters `_total`/`_created`, for histograms and summaries `_bucket`/`_sum`/`_count`/`_created`."""
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(maxsplit=3)
        names.add(name)
        if kind == "counter":
            base = name.removesuffix("_total")
            names |= {base + "_total", base + "_created"}
        elif kind in ("histogram", "gaugehistogram", "summary"):
            names |= {name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
    return names


def rule_exprs(rules: dict[str, Any]) -> list[str]:
    """The `expr` of every rule in a Prometheus rule file."""
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of a Grafana dashboard: every target's `expr` (rows' nested panels too) and the
    metric of each `label_values(metric, label)` template variable."""
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        exprs += _LABEL_VALUES.findall(text)
    return exprs


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All panels, those nested in collapsed rows included."""
    out: list[dict[str, Any]] = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out += p.get("panels", [])
    return out


def unexported(exprs: Iterable[str], exported: set[str]) -> dict[str, set[str]]:
    """Expression -> the metric names in it that are not exported (only expressions with some)."""
    missing = {expr: metric_names(expr) - exported for expr in exprs}
    return {expr: names for expr, names in missing.items() if names}


def load_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return rules


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def promtool() -> str:
    """The promtool binary. Missing: a failure under CI=true (tests/browser_setup.py installs it
    there), a skip elsewhere."""
    found = shutil.which("promtool")
    if found:
        return found
    reason = ("promtool not found: it comes with Debian's `prometheus` package, which tests/browser_setup.py "
              "(run by `make test`) installs when root on Debian")
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
