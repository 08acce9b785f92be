"""The device catalogue: complete, bilingual, and what the rest of the code derives from it."""

from __future__ import annotations

import re

from alerting.config import RuleConfig
from alerting.core.rules import DEFAULTS, KIND_ALARMS
from alerting.model import ELECTRICAL_CLASS, FIRE_CLASS
from devices import catalogue
from devices.batch import NUMERIC_COLUMNS
from devices.catalogue import ALARM_TYPES, EVENTS, KINDS, METRICS, THRESHOLDS, AlarmType, Event, Kind
from devices.fleet import DEFAULT_HEARTBEAT_S, THRESHOLD_NAMES
from devices.kinds import ALL_METRICS, KIND_METRICS

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_kind_event_type_metric_and_threshold_is_declared_with_both_labels() -> None:
    assert set(KINDS) == set(Kind) and set(EVENTS) == set(Event) and set(ALARM_TYPES) == set(AlarmType)
    labels = [s.label for s in (*KINDS.values(), *METRICS.values(), *ALARM_TYPES.values(), *THRESHOLDS.values())]
    labels += list(EVENTS.values())
    assert [x for x in labels if not CJK.search(x.zh) or not x.en or CJK.search(x.en)] == []


def test_every_metric_a_kind_names_is_declared() -> None:
    named = {m for spec in KINDS.values() for m in spec.metrics}
    assert named <= set(METRICS)
    assert all(t in spec.alarm_types for spec in KINDS.values() for t in spec.alarm_types)


def test_the_codes_never_change() -> None:
    """MX1 carries kind and event codes on the wire (CONTRACT §2, §10)."""
    assert [(k.name, int(k)) for k in Kind] == [
        ("smoke", 1), ("gas", 2), ("electrical", 3), ("water", 4), ("uitd", 5), ("charger", 6)]
    assert int(Event.breaker_closed) == 16 and int(Event.hydrant_open) == 17 and int(Event.shield_clear) == 29
    assert [int(e) for e in Event] == list(range(len(Event)))
    assert [int(t) for t in AlarmType] == list(range(len(AlarmType)))


def test_the_rest_of_the_code_derives_from_the_catalogue() -> None:
    assert ALL_METRICS == set(METRICS)
    assert {k: set(v) for k, v in KIND_METRICS.items()} == {k: set(s.metrics) for k, s in KINDS.items()}
    assert set(NUMERIC_COLUMNS) == {n for n, s in METRICS.items() if s.column}
    assert set(THRESHOLD_NAMES) == set(THRESHOLDS)
    assert DEFAULT_HEARTBEAT_S == {k: s.heartbeat_s for k, s in KINDS.items()}
    assert DEFAULTS == {t: (s.severity, s.response) for t, s in ALARM_TYPES.items()}
    assert KIND_ALARMS == {k: s.alarm_types for k, s in KINDS.items()}
    assert FIRE_CLASS == {AlarmType.fire, AlarmType.smoke, AlarmType.gas_leak, AlarmType.panel_fire}
    assert AlarmType.pyrolysis_warning in ELECTRICAL_CLASS and AlarmType.pyrolysis_warning not in FIRE_CLASS


def test_rule_defaults_come_from_the_catalogue_and_a_deployment_may_change_them() -> None:
    defaults = RuleConfig().threshold_defaults()
    assert defaults["pressure_low_mpa"] == 0.05 and defaults["port_rated_a"] != defaults["port_rated_a"]  # NaN: off
    changed = RuleConfig(thresholds={"pressure_mpa_min": 0.1, "co_critical_ppm": 200}).threshold_defaults()
    assert changed["pressure_low_mpa"] == 0.1 and changed["co_critical_ppm"] == 200


def test_meta_is_plain_json_with_every_entry() -> None:
    import json

    meta = json.loads(json.dumps(catalogue.meta()))
    assert [k["name"] for k in meta["kinds"]] == [k.name for k in Kind]
    assert {t["name"] for t in meta["alarm_types"]} == {t.name for t in AlarmType}
    assert next(m for m in meta["metrics"] if m["name"] == "co_ppm")["unit"] == "ppm"
    assert next(t for t in meta["thresholds"] if t["name"] == "pressure_low_mpa")["aliases"] == ["pressure_mpa_min"]
    charger = next(k for k in meta["kinds"] if k["name"] == "charger")
    assert "port_temp_c" in charger["metrics"] and "battery_pct" in charger["metrics"]
