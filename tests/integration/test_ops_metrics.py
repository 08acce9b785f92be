"""The operations kit against the real service: every metric the Grafana dashboard and the alert
rules in ops/ use is one /metrics exports, and the metrics added for them move with traffic."""

from __future__ import annotations

import json

import aiomqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from miaoxiang.settings import Settings
from tests.opskit import (
    dashboard_exprs,
    exported_names,
    load_dashboard,
    load_rules,
    rule_exprs,
    unexported,
)
from tests.service import RunningService, running_service, wait_for

pytestmark = pytest.mark.integration


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _metrics(svc: RunningService) -> str:
    response = await svc.http.get("/metrics")
    assert response.status_code == 200
    return response.text


async def test_dashboard_and_rules_use_only_exported_metrics(settings: Settings) -> None:
    async with running_service(settings) as svc:
        exported = exported_names(await _metrics(svc))
    assert "mx_ingest_received_total" in exported and "mx_alarm_stream_latency_seconds_bucket" in exported
    assert unexported(dashboard_exprs(load_dashboard()), exported) == {}
    assert unexported(rule_exprs(load_rules()), exported) == {}


async def test_dead_letter_reasons_fleet_liveness_and_buffer_bound_follow_traffic(settings: Settings) -> None:
    device = "868120309900001"
    report = {"ts": 1795341600000, "seq": 1, "event": "heartbeat", "data": {"battery_pct": 90}}
    host, port = (settings.mqtt_url or "").removeprefix("mqtt://").split(":")
    async with running_service(settings) as svc:
        before = _samples(await _metrics(svc))
        assert before[("mx_fleet_online_devices", frozenset())] == 0
        assert before[("mx_ingest_write_buffer_limit", frozenset())] == settings.queue_max
        async with aiomqtt.Client(host, int(port)) as pub:
            await pub.publish(settings.topic("tel", "smoke", device), json.dumps(report), qos=1)
            await wait_for(lambda: svc.app.state.services.fleet.slot(device) >= 0)
            await pub.publish(settings.topic("tel", "gas", device), json.dumps({**report, "seq": 2}), qos=1)
            await pub.publish(settings.topic("tel", "smoke", device), b"\xa5 not a frame", qos=1)

        def reason(name: str) -> tuple[str, frozenset[tuple[str, str]]]:
            return "mx_ingest_dead_letters_total", frozenset({("transport", "mqtt"), ("reason", name)})

        async def counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            now = _samples(await _metrics(svc))
            return now if now.get(reason("undecodable")) and now.get(reason("kind_mismatch")) else None

        after = await wait_for(counted)
    assert after[reason("undecodable")] == 1 and after[reason("kind_mismatch")] == 1
    assert reason("unknown_device") not in after  # quarantine is the default: strangers are registered
    assert after[("mx_fleet_online_devices", frozenset())] == 1
    assert after[("mx_fleet_offline_devices", frozenset())] == 0
    assert after[("mx_fleet_devices", frozenset({("status", "online")}))] == 1
