"""CTWing MQ subscriptions of a real `miaoxiang serve` process: killed with SIGKILL in the middle
of a 10,000-message backlog and started again, every message is stored exactly once (what it had
committed but not yet acknowledged comes back and is deduplicated; what it had not committed
comes back and is stored). The source lives in the database: the restarted process starts its
consumer by itself. Stopped with SIGTERM instead, it acknowledges what it committed before it
exits, so nothing stored comes back."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.faultkit import ADMIN_TOKEN, Service, service, service_env
from tests.integration.pulsarkit import PulsarLite, messages, publish, pulsar_lite, source_body, stored, subscribe_now
from tests.service import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
BACKLOG = 10_000


async def _start_consuming(svc: Service, broker: PulsarLite, topic_name: str) -> None:
    await asyncio.to_thread(svc.start)
    r = httpx.post(f"{svc.base}/api/v1/push-sources", json=source_body("ctmq", broker, topic_name, max_unacked=100),
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert r.status_code == 201, r.text


async def _backlog(broker: PulsarLite, topic_name: str) -> None:
    subscribe_now(broker.url, topic_name, "mx-ctmq")
    await asyncio.to_thread(publish, broker.url, topic_name, messages(50, BACKLOG // 50))


async def _midway(database_url: str) -> int:
    n = await wait_for(lambda: _stored_at_least(database_url, 1000), timeout=90, interval=0.02)
    return int(n)


async def _stored_at_least(database_url: str, n: int) -> int | None:
    total = (await stored(database_url))[0]
    return total if total >= n else None


@pytest.mark.parametrize("stop", ["kill9", "sigterm"])
async def test_a_stop_mid_backlog_then_a_restart_stores_every_message_exactly_once(
    stop: str, database_url: str, mqtt_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = service_env(database_url=database_url, mqtt_url=mqtt_url, topic_prefix=topic_prefix,
                      client_id=f"sub-{uuid.uuid4().hex[:8]}")
    with pulsar_lite(tmp_path / "pulsar") as broker, service(env, tmp_path / "svc.log") as svc:
        await _backlog(broker, "stop")
        await _start_consuming(svc, broker, "stop")
        await _midway(database_url)
        if stop == "kill9":
            svc.kill9()
        else:
            assert svc.proc is not None
            svc.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(svc.proc.wait, 20) == 0, svc.log()[-3000:]
            svc.proc = None
        at_stop = (await stored(database_url))[0]
        assert at_stop < BACKLOG, "the backlog was done before the stop: nothing was tested"
        await asyncio.to_thread(svc.start)  # its consumer starts from the source in the database
        await wait_for(lambda: _stored_at_least(database_url, BACKLOG), timeout=180, interval=0.5)
        await asyncio.sleep(2)  # late redeliveries would show now
        assert await stored(database_url) == (BACKLOG, BACKLOG), svc.log()[-3000:]
        acknowledged = svc.metric("mx_subscription_messages_total")
        assert acknowledged >= BACKLOG - at_stop
        if stop == "sigterm":  # what was committed had been acknowledged: none of it comes back
            assert _storage_duplicates(svc) == 0, svc.log()[-3000:]


def _storage_duplicates(svc: Service) -> float:
    """Readings the database refused as copies: after a restart, a message the first process had
    committed and that came back (copies the broker redelivers within one process's dedupe window
    are counted in memory, under the transport: pulsar-lite redelivers a few acknowledged ones)."""
    for line in httpx.get(f"{svc.base}/metrics", timeout=5).text.splitlines():
        if line.startswith('mx_ingest_duplicates_total{transport="storage"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
