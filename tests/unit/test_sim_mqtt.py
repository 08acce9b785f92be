"""MQTT publisher smoke test on a real broker (the machine's Mosquitto, or the embedded one)."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import aiomqtt
import pytest

from devices.kinds import Kind
from ingest.codecs.json_report import decode_json_batch
from ingest.codecs.registry import decode_report
from simulators.background import background
from simulators.clock import SimClock
from simulators.fleet import build_fleet
from simulators.publish import MqttPublisher, play, route_by_transport
from simulators.scenarios import SCENARIOS

pytestmark = pytest.mark.integration
T0 = 1_795_341_600_000


def client(url: str) -> aiomqtt.Client:
    u = urlsplit(url)
    return aiomqtt.Client(u.hostname or "127.0.0.1", u.port or 1883, identifier=f"simtest-{uuid.uuid4().hex[:8]}")


async def collect(sub: aiomqtt.Client, n: int) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    async with asyncio.timeout(15):
        async for m in sub.messages:
            got.append(m)
            if len(got) == n:
                return got
    return got


async def test_scenario_and_gateway_batches_arrive(mqtt_url: str) -> None:
    fleet = build_fleet(400, 2)
    root = f"simtest-{uuid.uuid4().hex[:10]}/default"
    sc = SCENARIOS["fire_spread"](fleet, 2, T0)
    gw = [
        s for s in background(fleet, 2, T0, T0 + 3_600_000) if fleet.device(s.reading.device_id).uplink == "gateway"
    ][:30]
    mx1 = [s for s in background(fleet, 2, T0, T0 + 86_400_000)
           if fleet.device(s.reading.device_id).encoding == "mx1" and s.transport_hint == "mqtt"][:10]
    assert len(gw) == 30 and len({fleet.device(s.reading.device_id).gateway_id for s in gw}) >= 2 and mx1
    gateways = {fleet.device(s.reading.device_id).gateway_id for s in gw}
    async with client(mqtt_url) as sub, client(mqtt_url) as pub_client:
        await sub.subscribe(f"{root}/#", qos=1)
        pub = MqttPublisher(pub_client, fleet, topic_root=root)
        stats = await play(sc.steps, route_by_transport(mqtt=pub, http=pub), clock=SimClock(T0))
        for s in gw:  # all at once: one batch per gateway on flush
            await pub.send(s)
        batches = await pub.flush()
        for s in mx1:
            await pub.send(s)
        expected = stats.sent + batches + len(mx1)
        got = await collect(sub, expected)
    assert stats.sent == len(sc.messages()) and batches == len(gateways)
    assert len(got) == expected
    direct = [m for m in got if "/batch/" not in m.topic.value]
    sent = sc.messages() + mx1
    assert [m.topic.value for m in direct] == [
        f"{root}/{s.lane}/{s.reading.kind.name}/{s.reading.device_id}" for s in sent
    ]
    assert all(m.qos == 1 for m in got)
    for m, s in zip(direct, sent):
        r = decode_report(m.payload, received_ms=s.reading.received_ms, topic_kind=s.reading.kind,  # type: ignore[arg-type]
                          topic_device=s.reading.device_id)
        assert (r.device_id, r.event, r.seq) == (s.reading.device_id, s.reading.event, s.reading.seq)
        if m.payload[:1] == b"{":  # type: ignore[index]
            assert r == s.reading
    assert any(m.payload[:1] == b"\xa5" for m in direct)  # type: ignore[index]
    batch_readings = []
    for m in got:
        if "/batch/" in m.topic.value:
            assert m.topic.value.rsplit("/", 1)[1] in gateways
            readings, errors = decode_json_batch(m.payload, received_ms=T0)  # type: ignore[arg-type]
            assert errors == []
            batch_readings += readings
    assert sorted(r.device_id for r in batch_readings) == sorted(s.reading.device_id for s in gw)
    assert all(r.kind in (Kind.electrical, Kind.water) for r in batch_readings)
