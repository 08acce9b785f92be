"""Ingest end to end through the real app, real Mosquitto and real PostgreSQL (issue 3): a mix of
valid, duplicate and malformed messages on every uplink topic; every HTTP push platform's
verification; two instances splitting a `$share` stream. Exactly the valid distinct readings are
stored, every other input is a dead letter with its reason and its bytes, and /metrics counts
them per transport and codec."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.parse
import uuid

import aiomqtt
import asyncpg
import pytest

from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.generic import hmac_signature
from ingest.codecs.mx1 import encode_mx1
from ingest.codecs.onenet import onenet_signature
from miaoxiang.settings import Settings
from tests.service import RunningService, running_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
T0 = 1_795_341_600_000


def _broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


def js(**doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def mx1(device: str, kind: Kind, event: Event, seq: int, ts_ms: int, **metrics: object) -> bytes:
    return encode_mx1(Reading(device, kind, event, ts_ms, 0, seq, dict(metrics)))


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the /metrics text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


async def test_a_mix_of_valid_duplicate_and_malformed_uplink(settings: Settings) -> None:
    t = settings.topic
    gas_dev, smoke_mx, gas_mx = "868120300000001", "868120300000002", "868120300000003"
    valid_evt = js(ts=T0, seq=1, event="alarm", data={"smoke_obscuration_pct_m": 4.2, "battery_pct": 86})
    valid_tel = js(ts=T0 + 1000, seq=2, event="heartbeat", data={"battery_pct": 86, "rsrp_dbm": -97})
    untimed = js(seq=77, event="heartbeat", data={"battery_pct": 50})  # no ts: takes its receive time
    mx_tel = mx1(smoke_mx, Kind.smoke, Event.heartbeat, 10, T0, battery_pct=90, temperature_c=21.5)
    mx_evt = mx1(gas_mx, Kind.gas, Event.alarm, 11, T0, gas_lel_pct=30.0)
    bad_crc = mx_tel[:-1] + bytes([mx_tel[-1] ^ 0xFF])
    good_items = [
        js(device_id="gw-dev-1", kind="water", ts=T0, event="report", data={"pressure_mpa": 0.3}),
        js(device_id="gw-dev-2", kind="water", ts=T0, seq=5, event="report", data={"level_m": 2.5}),
    ]
    bad_item = js(device_id="gw-dev-3", kind="toaster", ts=T0)
    batch = b"[" + b",".join([*good_items, bad_item]) + b"]"
    mismatch = js(ts=T0 + 5000, seq=9, event="alarm")  # on a smoke topic for a device known as gas
    messages = [
        (t("evt", "smoke", "dev-a"), valid_evt), (t("evt", "smoke", "dev-a"), valid_evt),  # the same message twice
        (t("tel", "smoke", "dev-a"), valid_tel),
        (t("tel", "smoke", "dev-u"), untimed),
        (t("tel", "smoke", smoke_mx), mx_tel), (t("tel", "smoke", smoke_mx), mx_tel),  # MX1 twice
        (t("evt", "gas", gas_mx), mx_evt),
        (t("batch", "gw-1"), batch), (t("batch", "gw-1"), batch),  # batch twice: only its bad element twice
        (t("tel", "smoke", smoke_mx), bad_crc),
        (t("evt", "smoke", "dev-b"), b'{"ts": 1795341600000, "event": "alarm"'),
        (t("tel", "toaster", "dev-c"), js(ts=T0)),
        (t("evt", "smoke", gas_dev), mismatch),
    ]
    async with running_service(settings) as svc:
        host, port = _broker(settings.mqtt_url or "")
        db = await asyncpg.connect(settings.database_url)
        try:
            async with aiomqtt.Client(host, port) as pub:
                await pub.publish(t("tel", "gas", gas_dev), js(ts=T0, seq=1, event="heartbeat"), qos=1)
                await wait_for(lambda: db.fetchval("SELECT count(*) FROM readings WHERE device_id = $1", gas_dev))
                for topic, payload in messages:
                    await pub.publish(topic, payload, qos=1)
                await asyncio.sleep(0.3)
                await pub.publish(t("tel", "smoke", "dev-u"), untimed, qos=1)  # a QoS 1 resend, received later
            async def settled() -> bool:
                return (await db.fetchval("SELECT count(*) FROM dead_letters") >= 6
                        and await db.fetchval("SELECT count(*) FROM readings") >= 8)

            await wait_for(settled)
            await asyncio.sleep(0.5)  # anything still in flight lands before we count
            stored = sorted((r["device_id"], r["seq"], r["event"]) for r in await db.fetch("SELECT * FROM readings"))
            dead = sorted(
                (r["source"].split("/")[-1], r["reason"], bytes(r["raw"]))
                for r in await db.fetch("SELECT * FROM dead_letters")
            )
            text = (await svc.http.get("/metrics")).text
        finally:
            await db.close()
    assert stored == sorted([
        ("dev-a", 1, "alarm"), ("dev-a", 2, "heartbeat"), ("dev-u", 77, "heartbeat"),
        (smoke_mx, 10, "heartbeat"), (gas_mx, 11, "alarm"), ("gw-dev-1", None, "report"), ("gw-dev-2", 5, "report"),
        (gas_dev, 1, "heartbeat"),
    ])
    assert len(dead) == 6, dead
    by_reason = {(src, reason.split(":")[0].split(" (")[0]): raw for src, reason, raw in dead}
    assert by_reason[(smoke_mx, "MX1 CRC mismatch")] == bad_crc
    assert any(src == "dev-b" and "not valid JSON" in reason for src, reason, _ in dead)
    assert any(src == "dev-c" and "toaster" in reason for src, reason, _ in dead)
    assert [raw for src, reason, _ in dead for raw in [_] if src == "gw-1#2"] == [bad_item, bad_item]
    assert [(reason, raw) for src, reason, raw in dead if src == gas_dev] == [
        (f"device {gas_dev} is registered as gas, report says smoke", mismatch)  # the bytes as received
    ]
    # per transport and codec
    # gas, evt x2, tel, untimed x2, bad JSON, toaster, mismatch
    assert metric(text, "mx_ingest_payloads_total", transport="mqtt", codec="json") == 9
    assert metric(text, "mx_ingest_payloads_total", transport="mqtt", codec="mx1") == 4
    assert metric(text, "mx_ingest_payloads_total", transport="mqtt", codec="json_batch") == 2
    assert metric(text, "mx_ingest_decoded_total", transport="mqtt", codec="mx1") == 3
    assert metric(text, "mx_ingest_decoded_total", transport="mqtt", codec="json_batch") == 4
    # the toaster and the bad JSON did not decode
    assert metric(text, "mx_ingest_decoded_total", transport="mqtt", codec="json") == 7
    assert metric(text, "mx_ingest_codec_dead_letters_total", transport="mqtt", codec="mx1") == 1
    assert metric(text, "mx_ingest_codec_dead_letters_total", transport="mqtt", codec="json") == 3
    assert metric(text, "mx_ingest_codec_dead_letters_total", transport="mqtt", codec="json_batch") == 2
    assert metric(text, "mx_ingest_decode_errors_total", transport="mqtt", codec="mx1") == 1
    assert metric(text, "mx_ingest_duplicates_total", transport="mqtt") == 5  # evt, MX1, 2 batch items, untimed resend


SECRET, CT_TOKEN, ON_TOKEN = "gen-s3cret", "ct-t0ken", "on-t0ken"
IMEI = "868120301234567"


async def _sources(svc: RunningService) -> None:
    for body in (
        {"name": "gen", "platform": "generic", "secret": SECRET},
        {"name": "ctw", "platform": "ctwing", "token": CT_TOKEN},
        {"name": "one", "platform": "onenet", "token": ON_TOKEN},
    ):
        r = await svc.http.post("/api/v1/push-sources", json=body, headers=svc.auth())
        assert r.status_code in (200, 201), r.text


async def test_push_verification_of_every_platform(settings: Settings) -> None:
    small = settings.model_copy(update={"push_max_bytes": 4096})
    report = js(device_id=IMEI, kind="smoke", ts=T0, seq=1, event="alarm", data={"battery_pct": 80})
    array = b"[" + report + b"," + js(device_id=IMEI, kind="smoke", ts=T0 + 1, seq=2) + b',{"kind":"smoke"}]'
    msg = json.dumps(
        {"at": T0 + 2, "type": 1, "imei": "868120301234568", "dev_id": 7, "ds_id": "Alarm_Status", "value": 1}
    )
    onenet = (
        '{"msg":' + msg + ',"nonce":"abc123","msg_signature":"' + onenet_signature(ON_TOKEN, "abc123", msg) + '"}'
    ).encode()
    frame = mx1("868120301234569", Kind.smoke, Event.alarm, 3, T0 + 3)
    ctwing = js(
        upPacketSN=-1,
        upDataSN=-1,
        topic="v1/up/ad",
        timestamp=T0 + 3,
        tenantId="1",
        serviceId="",
        protocol="tcp",
        productId="1",
        messageType="dataReport",
        deviceType="",
        deviceId="x",
        IMEI="868120301234569",
        IMSI="4600",
        payload={"APPdata": base64.b64encode(frame).decode()},
    )
    async with running_service(small) as svc:
        await _sources(svc)
        post = svc.http.post
        gen = "/api/v1/ingest/push/gen"
        # generic: HMAC-SHA256 of the raw body; 200 with counts even when one element fails
        r = await post(gen, content=array, headers={"x-miaoxiang-signature": hmac_signature(SECRET, array)})
        assert (r.status_code, r.json()) == (200, {"accepted": 2, "rejected": 1, "notices": 0})
        assert (
            await post(gen, content=array, headers={"x-miaoxiang-signature": hmac_signature("wrong", array)})
        ).status_code == 401
        assert (await post(gen, content=array)).status_code == 401
        assert (await post("/api/v1/ingest/push/nosuch", content=report)).status_code == 404
        big = b"[" + b",".join([report] * 60) + b"]"
        assert (
            await post(gen, content=big, headers={"x-miaoxiang-signature": hmac_signature(SECRET, big)})
        ).status_code == 413
        empty = b'[{"kind":"smoke"}]'
        assert (
            await post(gen, content=empty, headers={"x-miaoxiang-signature": hmac_signature(SECRET, empty)})
        ).status_code == 422
        # OneNET: Base64(MD5(token + nonce + msg as sent)); a re-serialised msg does not check
        r = await post("/api/v1/ingest/push/one", content=onenet)
        assert (r.status_code, r.json()["accepted"]) == (200, 1)
        tampered = onenet.replace(b'"ds_id": "Alarm_Status"', b'"ds_id":"Alarm_Status"')
        assert (await post("/api/v1/ingest/push/one", content=tampered)).status_code == 401
        # OneNET URL verification: answer msg when the signature checks
        q = {"msg": "hello-onenet", "nonce": "n1", "signature": onenet_signature(ON_TOKEN, "n1", "hello-onenet")}
        r = await svc.http.get("/api/v1/ingest/push/one?" + urllib.parse.urlencode(q))
        assert (r.status_code, r.text) == (200, "hello-onenet")
        bad = {**q, "signature": onenet_signature("wrong", "n1", "hello-onenet")}
        assert (await svc.http.get("/api/v1/ingest/push/one?" + urllib.parse.urlencode(bad))).status_code == 401
        assert (await svc.http.get("/api/v1/ingest/push/gen?" + urllib.parse.urlencode(q))).status_code == 401
        # CTWing: the source's token, by header or query
        assert (
            await post("/api/v1/ingest/push/ctw", content=ctwing, headers={"x-miaoxiang-token": CT_TOKEN})
        ).status_code == 200
        assert (
            await post(f"/api/v1/ingest/push/ctw?token={CT_TOKEN}", content=ctwing)
        ).status_code == 200  # a retry: deduped
        assert (
            await post("/api/v1/ingest/push/ctw", content=ctwing, headers={"x-miaoxiang-token": "nope"})
        ).status_code == 401
        assert (await post("/api/v1/ingest/push/ctw", content=ctwing)).status_code == 401
        text = (await svc.http.get("/metrics")).text
        db = await asyncpg.connect(small.database_url)
        try:
            stored = sorted(
                (r["device_id"], r["source"]) for r in await db.fetch("SELECT device_id, source FROM readings")
            )
            dead = [
                (r["source"], bytes(r["raw"]))
                for r in await db.fetch("SELECT source, raw FROM dead_letters ORDER BY id")
            ]
        finally:
            await db.close()
    assert stored == [
        (IMEI, "http:gen"),
        (IMEI, "http:gen"),
        ("868120301234568", "http:one"),
        ("868120301234569", "http:ctw"),
    ]
    assert dead == [("http:gen#2", b'{"kind":"smoke"}'), ("http:gen#0", b'{"kind":"smoke"}')]
    assert (
        metric(text, "mx_ingest_payloads_total", transport="http", codec="generic") == 2
    )  # 401/413 never reach a codec
    assert metric(text, "mx_ingest_decoded_total", transport="http", codec="generic") == 2
    assert metric(text, "mx_ingest_codec_dead_letters_total", transport="http", codec="generic") == 2
    assert metric(text, "mx_ingest_decoded_total", transport="http", codec="onenet") == 1
    assert metric(text, "mx_ingest_decoded_total", transport="http", codec="ctwing") == 2


async def test_two_instances_split_a_share_stream_and_store_each_reading_once(settings: Settings) -> None:
    """`$share/<group>/...`: each message goes to one member. Needs Mosquitto >= 2.0.12 for a
    member's durable session to get its shared subscription back after a reconnect (2.0.11 does
    not restore it); here both members subscribe afresh, which every 2.x version serves."""
    group = f"g{uuid.uuid4().hex[:6]}"
    first = settings.model_copy(update={"mqtt_share_group": group, "mqtt_client_id": settings.mqtt_client_id + "-a"})
    second = settings.model_copy(update={"mqtt_share_group": group, "mqtt_client_id": settings.mqtt_client_id + "-b"})
    devices, per_device = 30, 10
    async with running_service(first) as a, running_service(second) as b:
        host, port = _broker(settings.mqtt_url or "")
        async with aiomqtt.Client(host, port) as pub:
            for k in range(per_device):
                for d in range(devices):
                    await pub.publish(
                        settings.topic("tel", "smoke", f"sh-{d}"), js(ts=T0 + k * 1000, seq=k, event="heartbeat"), qos=1
                    )
        total = devices * per_device

        def got() -> list[int]:
            return [int(s.app.state.services.pipeline.metrics.written._value.get()) for s in (a, b)]

        await wait_for(lambda: sum(got()) >= total, timeout=30)
        await asyncio.sleep(0.5)
        split = got()
    db = await asyncpg.connect(settings.database_url)
    try:
        rows = await db.fetch("SELECT device_id, seq, count(*) AS n FROM readings GROUP BY device_id, seq")
    finally:
        await db.close()
    assert len(rows) == total and all(r["n"] == 1 for r in rows)
    assert sum(split) == total and min(split) > 0, split  # both members took a share
