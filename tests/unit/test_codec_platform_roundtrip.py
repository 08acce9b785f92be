"""Property round trips of the platform codecs: readings encoded as CTWing and OneNET pushes (with
simulators/envelopes.py, which runs a reading backwards through a device profile) decode to the
same readings. Every shipped profile takes part."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.reading import Reading
from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.onenet import decode_onenet, verify_onenet
from ingest.codecs.profiles import Profile, ProfileRegistry
from ingest.codecs.values import METRIC_TYPES, RANGES
from simulators.envelopes import ctwing_request, onenet_request, vendor_properties
from tests.unit.test_codec_mx1 import mx1_readings

PROFILES = ProfileRegistry.load()

RECEIVED = 1_795_341_700_000
TOKEN = "tok-1"


def _numbers(metric: str) -> st.SearchStrategy[Any]:
    """Values a vendor object model can carry exactly enough: whole numbers or tenths, in range."""
    if metric == "rsrp_dbm":
        return st.integers(-140, -44).map(float)
    if metric in ("battery_pct", "pyrolysis_index"):
        return st.integers(0, 100).map(float) if METRIC_TYPES[metric] is float else st.integers(0, 100)
    lo, hi = RANGES.get(metric, (0, 20_000))
    if METRIC_TYPES[metric] is int:
        return st.integers(int(lo), min(int(hi), 10_000))
    return st.integers(int(lo) * 10, min(int(hi), 2_000) * 10).map(lambda v: v / 10)


@st.composite
def profile_readings(draw: st.DrawFn, profile: Profile) -> Reading:
    metrics: dict[str, Any] = {}
    lists: dict[str, int] = {}
    for spec in profile.properties.values():
        if spec.index is not None:
            lists[spec.metric] = max(lists.get(spec.metric, 0), spec.index + 1)
    for spec in profile.properties.values():
        m = spec.metric
        if m in metrics or not draw(st.booleans()):
            continue
        if spec.index is not None:
            item = _numbers(m) if m != "cable_temp_c" else st.integers(-200, 1500).map(lambda v: v / 10)
            metrics[m] = draw(st.lists(item, min_size=1, max_size=lists[m]))
        elif spec.map is not None:
            metrics[m] = draw(st.sampled_from(sorted(spec.map.values(), key=str)))
        elif spec.hex:
            metrics[m] = format(draw(st.integers(0, 2**28)), "X")
        elif METRIC_TYPES[m] is list:
            metrics[m] = draw(st.lists(_numbers(m), min_size=1, max_size=3))
        elif METRIC_TYPES[m] is bool:
            metrics[m] = draw(st.booleans())
        elif METRIC_TYPES[m] is str:
            metrics[m] = draw(st.from_regex(r"\A[a-z]{1,8}\Z"))
        else:
            metrics[m] = draw(_numbers(m))
    outcomes = [o for rule in profile.events if "data" in rule.messages for o in rule.map.values()]
    event = profile.default_event
    if outcomes and draw(st.booleans()):
        outcome = draw(st.sampled_from(outcomes))
        event = outcome.event
        if outcome.fault_code is not None:
            metrics["fault_code"] = outcome.fault_code
    return Reading(
        device_id=str(draw(st.integers(860_000_000_000_000, 869_999_999_999_999))),
        kind=profile.kind,
        event=event,
        ts_ms=draw(st.integers(1_700_000_000_000, 1_900_000_000_000)),
        received_ms=RECEIVED,
        metrics={**profile.fixed, **metrics},  # a product's fixed metrics are on every reading
    )


def same_metrics(got: dict[str, Any], want: dict[str, Any]) -> bool:
    if got.keys() != want.keys():
        return False
    for k, w in want.items():
        g = got[k]
        ws, gs = (w, g) if isinstance(w, list) else ([w], [g])
        if len(ws) != len(gs):
            return False
        for a, b in zip(gs, ws, strict=True):
            if isinstance(b, float) and not isinstance(a, bool):
                if not (isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)):
                    return False
            elif a != b or type(a) is not type(b):
                return False
    return True


def check(decoded: list[Reading], r: Reading) -> None:
    assert len(decoded) == 1, decoded
    d = decoded[0]
    assert (d.device_id, d.kind, d.event, d.ts_ms, d.received_ms) == (r.device_id, r.kind, r.event, r.ts_ms, RECEIVED)
    assert same_metrics(d.metrics, r.metrics), (d.metrics, r.metrics)


def test_every_shipped_profile_takes_part() -> None:
    names = {p.name for p in _profiles()}
    assert {"ctwing-smoke", "ctwing-gas", "ctwing-electrical-fire"} <= names


def _profiles() -> list[Profile]:
    return sorted(PROFILES, key=lambda p: p.name)


@st.composite
def any_profile_reading(draw: st.DrawFn) -> tuple[Profile, Reading]:
    profile = draw(st.sampled_from(_profiles()))
    return profile, draw(profile_readings(profile))


@given(any_profile_reading())
@settings(max_examples=150, deadline=None)
def test_onenet_round_trip_through_every_profile(case: tuple[Profile, Reading]) -> None:
    profile, r = case
    body, _ = onenet_request(r, TOKEN, profile)
    assert verify_onenet(TOKEN, body)
    result = decode_onenet(body, received_ms=RECEIVED, profiles=PROFILES, profile=profile.name)
    assert not result.errors and not result.notices
    check(result.readings, r)


@given(any_profile_reading())
@settings(max_examples=150, deadline=None)
def test_ctwing_object_model_round_trip_through_every_profile(case: tuple[Profile, Reading]) -> None:
    profile, r = case
    envelope = {
        "upPacketSN": -1, "upDataSN": -1, "topic": "v1/up/ad", "timestamp": r.ts_ms, "tenantId": "2000001",
        "serviceId": "", "protocol": "lwm2m", "productId": "15000001", "messageType": "dataReport", "deviceType": "",
        "deviceId": "d-" + r.device_id, "IMEI": r.device_id, "IMSI": "460110000000000",
        "payload": {"serviceData": vendor_properties(profile, r)},
    }
    result = decode_ctwing(json.dumps(envelope).encode(), received_ms=RECEIVED, profiles=PROFILES, profile=profile.name)
    assert not result.errors and not result.notices
    check(result.readings, r)


@given(mx1_readings())
@settings(max_examples=150, deadline=None)
def test_ctwing_transparent_mx1_round_trip(r: Reading) -> None:
    r.received_ms = RECEIVED if r.ts_ms != RECEIVED else RECEIVED + 1
    body, headers = ctwing_request(r, TOKEN)
    assert headers["X-Miaoxiang-Token"] == TOKEN
    result = decode_ctwing(body, received_ms=r.received_ms, profiles=PROFILES, profile=None)
    assert not result.errors and result.readings == [r]


@given(mx1_readings())
@settings(max_examples=50, deadline=None)
def test_ctwing_transparent_frame_without_time_takes_the_platform_time(r: Reading) -> None:
    from ingest.codecs.mx1 import encode_mx1

    r.ts_ms = 0
    frame_reading = Reading(r.device_id, r.kind, r.event, 0, RECEIVED, r.seq, r.metrics, r.extra)
    body, _ = ctwing_request(frame_reading, TOKEN)  # the envelope says timestamp 0 too: rewrite it
    env = json.loads(body)
    env["timestamp"] = 1_795_341_600_000
    (d,) = decode_ctwing(json.dumps(env).encode(), received_ms=RECEIVED, profiles=PROFILES, profile=None).readings
    assert d.ts_ms == 1_795_341_600_000 and d.received_ms == RECEIVED and d.seq == r.seq
    again = Reading(d.device_id, d.kind, d.event, 0, 0, d.seq, d.metrics, d.extra)
    assert encode_mx1(again) == encode_mx1(frame_reading)
    del env["timestamp"]  # no time anywhere: untimed, ts == receive time
    (u,) = decode_ctwing(json.dumps(env).encode(), received_ms=RECEIVED, profiles=PROFILES, profile=None).readings
    assert u.ts_ms == u.received_ms == RECEIVED
