"""The operations kit in ops/: alert rules checked and exercised by promtool, the Grafana
dashboard well formed, and the PromQL metric-name extraction the /metrics check relies on
(tests/integration/test_ops_metrics.py compares the names with what the service exports)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with uvicorn[standard]

from tests.opskit import (
    RULES,
    dashboard_exprs,
    exported_names,
    load_dashboard,
    load_rules,
    metric_names,
    panels,
    promtool,
    unexported,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")

# --- the metric-name extractor ---------------------------------------------------------------


def test_metric_names_skip_functions_labels_keywords_durations_and_variables() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, lane) (rate(mx_latency_seconds_bucket{instance=~"$instance", '
            'job="a{b}"}[$__rate_interval]))) / ignoring(reason) group_left max without (x) (up_gauge offset 15m) '
            '> bool 1e3 and on (instance) foo:recorded:rate5m unless count(vector(0))')
    assert metric_names(expr) == {"mx_latency_seconds_bucket", "up_gauge", "foo:recorded:rate5m"}


def test_metric_names_of_a_bare_selector_and_of_arithmetic() -> None:
    assert metric_names("mx_a") == {"mx_a"}
    assert metric_names("max(mx_a) / clamp_min(max(mx_b) + max (mx_c), 1)") == {"mx_a", "mx_b", "mx_c"}


def test_a_made_up_metric_is_reported_and_suffixes_of_exported_families_are_not() -> None:
    page = """# HELP mx_things_total Things
# TYPE mx_things_total counter
mx_things_total 3.0
# TYPE mx_wait_seconds histogram
# TYPE mx_level gauge
# TYPE mx_old counter
"""
    exported = exported_names(page)
    fine = ["rate(mx_things_total[5m])", "mx_things_created",
            "histogram_quantile(0.9, rate(mx_wait_seconds_bucket[5m]))",
            "mx_wait_seconds_sum / mx_wait_seconds_count", "mx_level", "mx_old_total"]
    assert unexported(fine, exported) == {}
    made_up = 'sum(rate(mx_ingest_teleported_total{lane="tel"}[5m])) / mx_level'
    assert unexported([*fine, made_up], exported) == {made_up: {"mx_ingest_teleported_total"}}
    # a gauge has no buckets
    assert unexported(["mx_level_bucket"], exported) == {"mx_level_bucket": {"mx_level_bucket"}}


# --- the dashboard ---------------------------------------------------------------------------


def test_dashboard_is_importable_with_a_prometheus_datasource_input() -> None:
    dashboard = load_dashboard()
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for p in panels(dashboard):
        if p["type"] == "row":
            continue
        sources = [p["datasource"], *(t["datasource"] for t in p["targets"])]
        assert all(s == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources), p["title"]


def test_dashboard_panels_are_well_formed() -> None:
    every = panels(load_dashboard())
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for p in every:
        grid = p["gridPos"]
        assert {"x", "y", "w", "h"} <= grid.keys() and grid["x"] + grid["w"] <= 24, p["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & occupied, f"{p['title']} overlaps another panel"
        occupied |= cells
        assert CJK.search(p["title"]) and LATIN_WORD.search(p["title"]), f"title not Chinese and English: {p['title']}"
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and metric_names(t["expr"]), f"{p['title']}: {t['expr']!r} selects no metric"


def test_dashboard_covers_what_operators_asked_for() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_exprs(load_dashboard())))
    asked = {
        "mx_ingest_received_total", "mx_ingest_decoded_total", "mx_ingest_queue_depth", "mx_ingest_write_buffer",
        "mx_ingest_write_buffer_limit", "mx_ingest_dead_letters_total", "mx_alarms_raised_total",
        "mx_alarm_stream_latency_seconds_bucket", "mx_alarm_notification_attempts_total",
        "mx_alarm_notifications_failed_total", "mx_gb26875_sessions",
        "mx_fleet_online_devices", "mx_fleet_offline_devices",
    }
    assert asked <= used, asked - used


# --- the alert rules -------------------------------------------------------------------------


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), (None, pytest.skip.Exception)])
def test_missing_promtool_fails_under_ci_and_skips_elsewhere(
    ci: str | None, outcome: type[BaseException], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="prometheus"):
        promtool()


def test_rules_pass_promtool_check() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_have_severity_and_chinese_then_english_annotations() -> None:
    alerts = [r for g in load_rules()["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "MiaoxiangIngestStalled", "MiaoxiangDeadLetters", "MiaoxiangWriteBufferNearBound",
        "MiaoxiangNotificationsFailed", "MiaoxiangOfflineShareJump",
    }
    for a in alerts:
        assert a["labels"]["severity"] in ("critical", "warning"), a["alert"]
        for key in ("summary", "description"):
            text = re.sub(r"\{\{.*?\}\}", "", a["annotations"][key])  # template values are neither
            chinese, english = CJK.search(text), re.search(r"\b[A-Z][a-z]+ [a-z]+", text)  # a sentence's start
            assert chinese and english, f"{a['alert']} {key}: needs Chinese and English"
            assert chinese.start() < english.start(), f"{a['alert']} {key}: Chinese first"


def _scenario(name: str, series: dict[str, str], expect: list[tuple[str, str, list[dict[str, str]]]]) -> dict[str, Any]:
    """A promtool test group: `series` sampled every minute, and at each (time, alert) the alerts firing."""
    return {
        "name": name, "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [
            {"eval_time": t, "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in firing]}
            for t, alert, firing in expect
        ],
    }


ONE = 'job="miaoxiang", instance="a:8080"'
SCENARIOS = [
    _scenario("readings stop while devices stay online", {
        f'mx_ingest_received_total{{{ONE}, transport="mqtt", lane="tel"}}': "0+600x20 12000x40",
        f"mx_fleet_online_devices{{{ONE}}}": "1000x60",
        f"mx_fleet_offline_devices{{{ONE}}}": "0x60",
    }, [("15m", "MiaoxiangIngestStalled", []), ("40m", "MiaoxiangIngestStalled", [{"severity": "critical"}])]),
    _scenario("devices online, no reading ever counted", {
        f"mx_fleet_online_devices{{{ONE}}}": "50x20",
    }, [("10m", "MiaoxiangIngestStalled", [{"severity": "critical"}])]),
    _scenario("nobody online, nothing received", {
        f"mx_fleet_online_devices{{{ONE}}}": "0x20",
        f"mx_fleet_offline_devices{{{ONE}}}": "0x20",
    }, [("15m", "MiaoxiangIngestStalled", [])]),
    _scenario("undecodable input floods in, a trickle of kind mismatches", {
        f'mx_ingest_dead_letters_total{{{ONE}, transport="mqtt", reason="undecodable"}}': "0+120x40",
        f'mx_ingest_dead_letters_total{{{ONE}, transport="mqtt", reason="kind_mismatch"}}': "0+6x40",
    }, [("8m", "MiaoxiangDeadLetters", []),
        ("30m", "MiaoxiangDeadLetters", [{"severity": "warning", "reason": "undecodable"}])]),
    _scenario("one process's write buffer fills", {
        'mx_ingest_write_buffer{job="miaoxiang", instance="a"}': "1000x10 190000x20",
        'mx_ingest_write_buffer_limit{job="miaoxiang", instance="a"}': "200000x30",
        'mx_ingest_write_buffer{job="miaoxiang", instance="b"}': "10x30",
        'mx_ingest_write_buffer_limit{job="miaoxiang", instance="b"}': "200000x30",
    }, [("8m", "MiaoxiangWriteBufferNearBound", []),
        ("15m", "MiaoxiangWriteBufferNearBound", [{"severity": "warning", "instance": "a"}])]),
    _scenario("a notification is given up, then nothing more", {
        f"mx_alarm_notifications_failed_total{{{ONE}}}": "0x20 1x30",
    }, [("10m", "MiaoxiangNotificationsFailed", []),
        ("25m", "MiaoxiangNotificationsFailed", [{"severity": "critical"}]),
        ("45m", "MiaoxiangNotificationsFailed", [])]),
    _scenario("most webhook attempts start failing", {
        f'mx_alarm_notification_attempts_total{{{ONE}, ok="true"}}': "0+60x40",
        f'mx_alarm_notification_attempts_total{{{ONE}, ok="false"}}': "0+10x10 100+300x30",
    }, [("8m", "MiaoxiangNotificationAttemptsFailing", []),
        ("30m", "MiaoxiangNotificationAttemptsFailing", [{"severity": "warning"}])]),
    _scenario("a fifth of the fleet drops off at once", {
        'mx_fleet_online_devices{job="miaoxiang", instance="api"}': "1000x20 800x25",
        'mx_fleet_offline_devices{job="miaoxiang", instance="api"}': "0x20 200x25",
        'mx_fleet_online_devices{job="miaoxiang", instance="worker-0"}': "300x45",  # a partition: max() ignores it
        'mx_fleet_offline_devices{job="miaoxiang", instance="worker-0"}': "0x20 60x25",
    }, [("10m", "MiaoxiangOfflineShareJump", []),
        ("25m", "MiaoxiangOfflineShareJump", [{"severity": "critical"}]),
        ("40m", "MiaoxiangOfflineShareJump", [])]),
    _scenario("half of a ten-device fleet drops off", {
        f"mx_fleet_online_devices{{{ONE}}}": "10x20 5x20",
        f"mx_fleet_offline_devices{{{ONE}}}": "0x20 5x20",
    }, [("25m", "MiaoxiangOfflineShareJump", [])]),
]


def test_rules_fire_in_their_scenarios_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    """promtool evaluates the rules (annotations aside: their templates are checked above) over
    made-up series; every alert has a case where it fires and one where it does not."""
    rules = load_rules()
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": SCENARIOS}
    (tmp_path / "rules.test.yml").write_text(yaml.safe_dump(tests, allow_unicode=True), encoding="utf-8")
    fired = {alert for s in SCENARIOS for t in s["alert_rule_test"] if t["exp_alerts"] for alert in [t["alertname"]]}
    quiet = {t["alertname"] for s in SCENARIOS for t in s["alert_rule_test"] if not t["exp_alerts"]}
    every = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert fired == quiet == every
    done = subprocess.run([promtool(), "test", "rules", "rules.test.yml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
