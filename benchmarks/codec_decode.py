"""Decode rate of the payload codecs on one core: JSON reports, gateway JSON batches, MX1 frames,
CTWing and OneNET pushes through a device profile. Prints one JSON object (best of `--repeat`).

    python benchmarks/codec_decode.py [--messages 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import time
from collections.abc import Callable

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs import (
    ProfileRegistry,
    decode_ctwing,
    decode_json_batch,
    decode_json_report,
    decode_mx1,
    decode_onenet,
    encode_json_report,
    encode_mx1,
    verify_onenet,
)

TS0 = 1_795_341_600_000
BATCH_SIZE = 500


def reading(i: int) -> Reading:
    """A realistic smoke heartbeat with NB-IoT signal values, distinct per i."""
    return Reading(
        device_id=str(868120300000000 + i),
        kind=Kind.smoke,
        event=Event.alarm if i % 97 == 0 else Event.heartbeat,
        ts_ms=TS0 + i * 1000,
        received_ms=0,
        seq=i % 65536,
        metrics={
            "battery_pct": float(60 + i % 40),
            "rsrp_dbm": float(-80 - i % 40),
            "sinr_db": float(i % 20),
            "ecl": i % 3,
            "pci": i % 504,
            "cell_id": format(0x1A2B00 + i % 256, "X"),
            "temperature_c": 20 + (i % 100) / 10,
        },
    )


def ctwing_body(i: int) -> bytes:
    props = {
        "Alarm_Status": int(i % 97 == 0),
        "Battery_Level": 60 + i % 40,
        "RSRP": 80 + i % 40,
        "SINR": i % 20,
        "ECL": i % 3,
        "Cell_ID": 0x1A2B00 + i % 256,
    }
    env = {
        "upPacketSN": -1, "upDataSN": -1, "topic": "v1/up/ad", "timestamp": TS0 + i * 1000, "tenantId": "2000012345",
        "serviceId": "", "protocol": "lwm2m", "productId": "15017088", "messageType": "dataReport", "deviceType": "",
        "deviceId": f"15017088{868120300000000 + i}", "IMEI": str(868120300000000 + i), "IMSI": "460113003141592",
        "payload": {"serviceData": props},
    }  # fmt: skip
    return json.dumps(env).encode()


def onenet_body(i: int) -> bytes:
    imei = str(868120300000000 + i)
    points = [
        {"at": TS0 + i * 1000, "type": 1, "imei": imei, "dev_id": 5000 + i, "ds_id": name, "value": value}
        for name, value in (
            ("gas_sensor_state", int(i % 97 == 0)), ("gas_value", i % 30), ("battery_value", 90), ("rsrp", 95)
        )
    ]
    msg = json.dumps(points)
    sig = base64.b64encode(hashlib.md5(("token" + "nonce" + msg).encode()).digest()).decode()
    return json.dumps({"msg": points, "msg_signature": sig, "nonce": "nonce"}).encode()


def rate(items: list[bytes], decode: Callable[[bytes], object], repeat: int, units_per_item: int = 1) -> float:
    """Best-of-`repeat` items (times units) decoded per second."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        for item in items:
            decode(item)
        best = max(best, len(items) * units_per_item / (time.perf_counter() - started))
    return round(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.messages, args.repeat
    profiles = ProfileRegistry.load()
    readings = [reading(i) for i in range(n)]
    json_reports = [encode_json_report(r) for r in readings]
    mx1_frames = [encode_mx1(r) for r in readings]
    batches = [b"[" + b",".join(json_reports[k : k + BATCH_SIZE]) + b"]" for k in range(0, n, BATCH_SIZE)]
    ctwing = [ctwing_body(i) for i in range(n)]
    onenet = [onenet_body(i) for i in range(n)]
    figures = {
        "json_reports_per_s": rate(json_reports, lambda b: decode_json_report(b, received_ms=TS0), repeat),
        "json_batch_readings_per_s": rate(batches, lambda b: decode_json_batch(b, received_ms=TS0), repeat, BATCH_SIZE),
        "mx1_frames_per_s": rate(mx1_frames, lambda b: decode_mx1(b, received_ms=TS0), repeat),
        "ctwing_pushes_per_s": rate(
            ctwing, lambda b: decode_ctwing(b, received_ms=TS0, profiles=profiles, profile="ctwing-smoke"), repeat
        ),
        "onenet_pushes_per_s": rate(
            onenet, lambda b: decode_onenet(b, received_ms=TS0, profiles=profiles, profile=None), repeat
        ),
        "onenet_signature_checks_per_s": rate(onenet, lambda b: verify_onenet("token", b), repeat),
    }
    print(
        json.dumps(
            {
                "benchmark": "codec_decode",
                "messages": n,
                "repeat": repeat,
                "bytes_per_json_report": round(sum(map(len, json_reports)) / n, 1),
                "bytes_per_mx1_frame": round(sum(map(len, mx1_frames)) / n, 1),
                "python": platform.python_version(),
                **figures,
            }
        )
    )


if __name__ == "__main__":
    main()
