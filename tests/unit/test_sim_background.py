"""Background telemetry: schedules, fixed rate, silences, merging with scenarios."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from devices.kinds import Event, Kind
from simulators.background import background, merge_steps
from simulators.fleet import build_fleet
from simulators.scenarios import SCENARIOS, Silence

T0 = 1_795_341_600_000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(300, 4)


def test_scheduled_follows_each_heartbeat_schedule(fleet) -> None:
    end = T0 + 2 * HOUR
    steps = list(background(fleet, 4, T0, end))
    assert [s.at_ms for s in steps] == sorted(s.at_ms for s in steps)
    got = Counter(s.reading.device_id for s in steps)
    for d in fleet.devices:
        assert got[d.device_id] == len(list(d.heartbeats(T0, end)))
    for s in steps:
        dev = fleet.device(s.reading.device_id)
        assert s.lane == "tel" and s.transport_hint == dev.transport
        assert s.reading.event is (
            Event.report if dev.kind in (Kind.electrical, Kind.water, Kind.charger) else Event.heartbeat
        )
    assert got.most_common(1)[0][1] >= 20  # 2 h of a 5-minute electrical monitor or a 90 s uitd


def test_paced_rate_and_order(fleet) -> None:
    steps = list(background(fleet, 4, T0, T0 + 10_000, rate_per_s=90))
    assert len(steps) == 900 and steps[-1].at_ms < T0 + 10_000
    ids = [s.reading.device_id for s in steps]
    assert sorted(ids[:300]) == sorted(d.device_id for d in fleet.devices)  # one round covers the fleet
    assert ids[300:600] == ids[:300]
    again = [s.reading.device_id for s in background(fleet, 4, T0, T0 + 10_000, rate_per_s=90)]
    other = [s.reading.device_id for s in background(fleet, 5, T0, T0 + 10_000, rate_per_s=90)]
    assert again == ids and other != ids
    with pytest.raises(ValueError):
        next(background(fleet, 4, T0, rate_per_s=0))


def test_unbounded_stream_is_lazy(fleet) -> None:
    first = list(islice(background(fleet, 4, T0, rate_per_s=1000), 5000))
    assert len(first) == 5000 and first[-1].at_ms == T0 + 4999


def test_silences_are_honoured(fleet) -> None:
    d = next(x for x in fleet.devices if x.kind is Kind.electrical)
    quiet = Silence(T0 + HOUR // 2, d.device_id, T0 + HOUR)
    steps = [s for s in background(fleet, 4, T0, T0 + 2 * HOUR, silences=[quiet]) if s.reading.device_id == d.device_id]
    assert steps and not [s for s in steps if quiet.covers(d.device_id, s.at_ms)]
    assert any(s.at_ms >= T0 + HOUR for s in steps) and any(s.at_ms < T0 + HOUR // 2 for s in steps)


def test_merge_with_a_scenario(fleet) -> None:
    sc = SCENARIOS["cell_outage"](fleet, 4, T0)
    bg = background(fleet, 4, T0, T0 + 4 * HOUR, silences=sc.silences())
    merged = list(merge_steps(sc.steps, bg))
    assert [s.at_ms for s in merged] == sorted(s.at_ms for s in merged)
    silent = {s.device_id for s in sc.silences()}
    late = [s for s in merged if not isinstance(s, Silence) and s.reading.device_id in silent and s.at_ms > T0 + 90_000]
    assert late == []
