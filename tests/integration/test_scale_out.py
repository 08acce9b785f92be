"""Scale-out on real Mosquitto and PostgreSQL: two `worker` processes sharing the uplink through
`$share`, one `api` process, correlation partitioned by unit (docs/scale-out.md).

The two smoke alarms of one unit are published so that the shared subscription hands them to
different workers; the unit's `fire` `immediate` alarm must still be raised, exactly once, by the
worker owning the unit's partition, and the API process must show both devices' live state and
stream the alarm it did not write. Then telemetry of many devices must all arrive once: no loss
through the share (Mosquitto 2.0.11 traps, DESIGN.md)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import zlib
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.faultkit import ADMIN_TOKEN, Publisher, Service, mosquitto, report, service_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
UNIT = "unit-scale-out-1"
SMOKE = ["868120309900001", "868120309900004"]  # by device id they would be in partitions 1 and 0
TELEMETRY_DEVICES = 40
PER_DEVICE = 10


def owner_of(key: str, partitions: int = 2) -> int:
    """The partition of a key (same formula as `ingest.partition`, restated)."""
    return zlib.crc32(key.encode()) % partitions


class SseAlarms:
    """The API process's alarm stream, collected in a thread until stopped."""

    def __init__(self, base: str) -> None:
        self.alarms: list[dict] = []
        self.open = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(base,), daemon=True)
        self._thread.start()

    def _run(self, base: str) -> None:
        with httpx.Client(timeout=httpx.Timeout(5, read=1)) as http, \
                http.stream("GET", f"{base}/api/v1/alarms/stream", headers=AUTH) as r:
            self.open.set()
            lines = r.iter_lines()
            while not self._stop.is_set():
                try:
                    line = next(lines)
                except httpx.ReadTimeout:
                    continue
                except StopIteration:
                    return
                if line.startswith("data: "):
                    self.alarms.append(json.loads(line[6:]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def deployment(database_url: str, topic_prefix: str, broker_url: str, logs: Path) -> tuple[Service, list[Service]]:
    """The api process and two `$share` workers of one scaled-out deployment (not started)."""
    env = service_env(database_url=database_url, mqtt_url=broker_url, topic_prefix=topic_prefix,
                      client_id=f"so-{uuid.uuid4().hex[:8]}", partitions="2", registry_refresh_s="0.3")
    api = Service({**env, "MIAOXIANG_ROLE": "api"}, logs / "api.log")
    workers = [Service({**env, "MIAOXIANG_ROLE": "worker", "MIAOXIANG_PARTITION_INDEX": str(i),
                        "MIAOXIANG_MQTT_SHARE_GROUP": "ingest"}, logs / f"worker{i}.log") for i in range(2)]
    return api, workers


def received_on_evt(svc: Service) -> float:
    total = 0.0
    for line in httpx.get(f"{svc.base}/metrics", timeout=5).text.splitlines():
        if line.startswith("mx_ingest_received_total{") and 'lane="evt"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def smoke_alarm(topic_prefix: str, device: str, seq: int, ts_ms: int) -> tuple[str, bytes]:
    body = report(device, seq, ts_ms, "alarm", smoke_obscuration_pct_m=4.2, temperature_c=30.0)
    return f"{topic_prefix}/default/evt/smoke/{device}", body


async def test_a_fire_split_across_workers_is_flagged_once_by_the_owning_partition(
    database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    assert {owner_of(f"device:{d}") for d in SMOKE} == {0, 1}, "partitioned by device, the smoke alarms would not meet"
    with mosquitto() as broker:
        api, workers = deployment(database_url, topic_prefix, broker.url, tmp_path)
        conn = await asyncpg.connect(database_url)
        pub: Publisher | None = None
        stream: SseAlarms | None = None
        try:
            api.start()  # migrates first; the workers then start on a migrated database
            for w in workers:
                w.start()
            # registered through the API process after the workers loaded the registry: they learn the
            # unit from their registry refresh, else each alarm would be partitioned by its device id
            http = httpx.Client(base_url=api.base, headers=AUTH, timeout=10)
            unit = {"unit_id": UNIT, "name": "仓库", "region": "江西省/赣州市/章贡区/南外街道"}
            assert http.post("/api/v1/units", json=unit).status_code in (200, 201)
            for d in SMOKE:
                device = {"device_id": d, "kind": "smoke", "unit_id": UNIT}
                assert http.post("/api/v1/devices", json=device).status_code in (200, 201)
            time.sleep(1.5)
            stream = SseAlarms(api.base)
            assert stream.open.wait(10)

            pub = Publisher(broker.port)
            now = int(time.time() * 1000)
            got: list[int] = []
            for i, device in enumerate(SMOKE):
                before = [received_on_evt(w) for w in workers]
                pub.send([smoke_alarm(topic_prefix, device, 7 + i, now + i * 1000)])
                wait_until(
                    lambda before=before: sum(received_on_evt(w) for w in workers) > sum(before),
                    10,
                    f"a worker to take {device}",
                )
                got.append(next(k for k, w in enumerate(workers) if received_on_evt(w) > before[k]))
            assert sorted(got) == [0, 1], f"the share gave both alarms to worker {got[0]}: the premise does not hold"

            await wait_for_rows(conn, "SELECT * FROM alarms WHERE alarm_key = $1 AND type = 'fire'", f"unit:{UNIT}")
            # repeats through the other worker fold into the same alarm
            pub.send([
                smoke_alarm(topic_prefix, SMOKE[0], 9, now + 3000), smoke_alarm(topic_prefix, SMOKE[1], 10, now + 4000)
            ])
            wait_until(lambda: sum(received_on_evt(w) for w in workers) >= 4, 10, "the repeats to arrive")
            time.sleep(1.0)
            fires = await conn.fetch("SELECT * FROM alarms WHERE alarm_key = $1 AND type = 'fire'", f"unit:{UNIT}")
            assert len(fires) == 1, [dict(r) for r in fires]
            fire = fires[0]
            assert fire["response"] == "immediate" and fire["severity"] == "critical"
            assert sorted(fire["device_ids"]) == SMOKE

            owner = owner_of(f"unit:{UNIT}")
            raised = [w.metric("mx_alarms_raised_total") for w in workers]
            assert raised[1 - owner] == 0, f"worker {1 - owner} does not own {UNIT} yet raised {raised}"
            assert raised[owner] >= 3  # two device `smoke` alarms and the unit's `fire`

            # the API process wrote none of it, and shows it all
            for d in SMOKE:
                state = http.get(f"/api/v1/devices/{d}").json()
                assert state["status"] == "alarm", state
            wait_until(
                lambda: any(a.get("type") == "fire" for a in stream.alarms), 10, "the fire alarm on the API's stream"
            )
            first_fire = next(a for a in stream.alarms if a.get("type") == "fire" and a["status"] == "active_unack")
            assert first_fire["alarm_id"] == str(fire["alarm_id"])

            # telemetry of many devices through the share: every reading stored once, every device seen by the API
            ts0 = now - 600_000
            tel = [(f"{topic_prefix}/default/tel/smoke/86812031{d:07d}", report(str(d), s, ts0 + s * 1000))
                   for s in range(PER_DEVICE) for d in range(TELEMETRY_DEVICES)]
            pub.send(tel)
            expected = len(tel) + 4
            await wait_for_count(conn, expected)
            assert await conn.fetchval("SELECT count(*) FROM readings") == expected
            heard = lambda: all(  # noqa: E731
                http.get(f"/api/v1/devices/86812031{d:07d}").json().get("status") == "online"
                for d in range(0, TELEMETRY_DEVICES, 7)
            )
            wait_until(heard, 10, "the API's fleet to show devices handled by both workers")
            tel_by_worker = [w.metric("mx_ingest_received_total") for w in workers]
            assert all(n > 0 for n in tel_by_worker), tel_by_worker
        finally:
            if stream is not None:
                stream.close()
            if pub is not None:
                pub.close()
            await conn.close()
            for svc in (*workers, api):
                svc.stop()


async def wait_for_rows(
    conn: asyncpg.Connection, query: str, *args: object, timeout: float = 15
) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await conn.fetch(query, *args)
        if rows:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"no rows after {timeout}s for {query}")


async def wait_for_count(conn: asyncpg.Connection, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while await conn.fetchval("SELECT count(*) FROM readings") < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {await conn.fetchval('SELECT count(*) FROM readings')} of {n} readings stored")
        await asyncio.sleep(0.2)


async def test_a_mute_confirmed_through_the_api_process_suppresses_in_the_owning_worker(
    database_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """The API process sends commands and applies their answers; the worker that correlates the
    device must learn of the mute too (internal/ctl), or the muted detector's alarm goes out."""
    import paho.mqtt.client as paho

    device, unit = "868120309900007", "unit-scale-out-mute"
    with mosquitto() as broker:
        api, workers = deployment(database_url, topic_prefix, broker.url, tmp_path)
        answering = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"dev-{device}")

        def answer(_c: object, _u: object, msg: paho.MQTTMessage) -> None:  # the detector confirms every command
            cmd = json.loads(msg.payload)
            answering.publish(
                f"{topic_prefix}/default/ack/smoke/{device}", json.dumps({"cmd_id": cmd["cmd_id"], "ok": True}), qos=1
            )

        answering.on_message = answer
        conn = await asyncpg.connect(database_url)
        pub: Publisher | None = None
        try:
            api.start()
            for w in workers:
                w.start()
            answering.connect("127.0.0.1", broker.port)
            answering.subscribe(f"{topic_prefix}/default/down/smoke/{device}", qos=1)
            answering.loop_start()
            http = httpx.Client(base_url=api.base, headers=AUTH, timeout=10)
            assert http.post("/api/v1/units", json={"unit_id": unit, "name": "住宅楼"}).status_code in (200, 201)
            created = http.post("/api/v1/devices", json={"device_id": device, "kind": "smoke", "unit_id": unit})
            assert created.status_code in (200, 201)
            time.sleep(1.0)  # the workers' registry refresh
            sent = http.post(f"/api/v1/devices/{device}/commands", json={"cmd": "mute", "params": {"duration_s": 600}})
            assert sent.status_code == 201, sent.text
            wait_until(lambda: http.get(f"/api/v1/commands/{sent.json()['cmd_id']}").json()["state"] == "acked", 15,
                       "the mute to be confirmed")
            time.sleep(0.5)  # the control message to reach the workers
            pub = Publisher(broker.port)
            pub.send([smoke_alarm(topic_prefix, device, 21, int(time.time() * 1000))])
            [alarm] = await wait_for_rows(conn, "SELECT * FROM alarms WHERE alarm_key = $1", f"device:{device}")
            assert (alarm["type"], alarm["response"]) == ("smoke", "none"), dict(alarm)
            assert alarm["rule"].startswith("suppressed"), alarm["rule"]
        finally:
            answering.loop_stop()
            answering.disconnect()
            if pub is not None:
                pub.close()
            await conn.close()
            for svc in (*workers, api):
                svc.stop()
