"""benchmarks/storm.py's own logic, at no scale: who reports in the storm, and that its push
bodies are what the CTWing codec and the `ctwing-smoke` profile accept (the benchmark itself
runs only by hand or in `miaoxiang bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devices.kinds import Event, Kind
from ingest.codecs.profiles import ProfileRegistry
from ingest.codecs.registry import push_platform

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import storm


def test_every_group_device_and_every_background_device_reports_once_interleaved() -> None:
    args = argparse.Namespace(outage=300, background=100)
    devices = storm.storm_devices(args)
    assert sorted(devices) == list(range(400))
    first_half = devices[: len(devices) // 2]
    assert any(d >= 300 for d in first_half) and any(d < 300 for d in first_half)  # both arrive throughout
    assert storm.storm_devices(argparse.Namespace(outage=5, background=0)) == [0, 1, 2, 3, 4]


def test_push_bodies_decode_to_a_smoke_report_of_the_device() -> None:
    body = storm.ctwing_body(storm.imei(42), 1_795_341_600_000)
    platform = push_platform("ctwing")
    assert platform.verify(storm.PUSH_TOKEN, body, {}, {"token": storm.PUSH_TOKEN})
    result = platform.decode(body, received_ms=1_795_341_600_050, profiles=ProfileRegistry.load(),
                             profile="ctwing-smoke")
    assert not result.errors
    [reading] = result.readings
    assert (reading.device_id, reading.kind, reading.ts_ms) == ("868120000000042", Kind.smoke, 1_795_341_600_000)
    assert reading.event != Event.alarm and reading.metrics["battery_pct"] == 77
