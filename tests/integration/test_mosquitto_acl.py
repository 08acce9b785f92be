"""The broker ACL docs/deploy.md asks for (ops/mosquitto/acl), on a private Mosquitto with
passwords and no anonymous access: a device publishes only its own uplink topics, which the
service's account reads (also through `$share/`), and reads only its own downlink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import asyncpg
import pytest

from miaoxiang.embedded import free_port
from miaoxiang.settings import Settings
from tests.integration.faultkit import MOSQUITTO, private_dir, wait_until
from tests.service import running_service, wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
ACL = REPO / "ops" / "mosquitto" / "acl"
ROOT = "mx/v1/default"
PASSWORDS = {"miaoxiang": "service-pw", "devA": "a-pw", "devB": "b-pw"}
WAIT_S = 10


def test_deploy_docs_show_the_acl_file_as_it_is() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    shown = re.findall(r"```text\n(.*?)```", docs, re.S)
    assert ACL.read_text(encoding="utf-8") in shown


def _tool(name: str) -> str:
    path = shutil.which(name) or (MOSQUITTO if name == "mosquitto" else None)
    if path is None or not Path(path).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing (Debian's mosquitto package provides it)")
        pytest.skip(f"{name} not found")
    return path


@contextlib.contextmanager
def acl_broker() -> Iterator[int]:
    """A private Mosquitto on a spare port: password file, the ACL file from ops/, no anonymous access."""
    broker, passwd = _tool("mosquitto"), _tool("mosquitto_passwd")
    with private_dir("mx-acl-", "mosquitto") as d:
        for i, (user, password) in enumerate(PASSWORDS.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run([passwd, "-b", *create, str(d / "passwords"), user, password], check=True, timeout=WAIT_S,
                           capture_output=True)
        shutil.copy(ACL, d / "acl")
        for f in ("passwords", "acl"):
            (d / f).chmod(0o644)
        port = free_port()
        (d / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwords\nacl_file {d}/acl\n"
            "message_size_limit 1048576\npersistence false\nlog_dest stderr\n"
        )
        proc = subprocess.Popen([broker, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _listening(port), WAIT_S, "mosquitto to listen")
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(WAIT_S)


def _listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3):
        return True
    return False


def _client(port: int, user: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, username=user, password=PASSWORDS[user],
                          protocol=aiomqtt.ProtocolVersion.V5, identifier=f"acl-test-{user}")


async def _next(client: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(WAIT_S):
        return await anext(aiter(client.messages))


def _report(device: str) -> bytes:
    return json.dumps({"device_id": device, "kind": "smoke", "ts": 1_795_341_600_000, "seq": 1,
                       "event": "alarm", "data": {"smoke_obscuration_pct_m": 4.2}}).encode()


async def test_devices_publish_and_read_only_their_own_topics(settings: Settings) -> None:
    with acl_broker() as port:
        settings = settings.model_copy(update={
            "mqtt_url": f"mqtt://miaoxiang:{PASSWORDS['miaoxiang']}@127.0.0.1:{port}", "topic_prefix": "mx/v1",
        })
        conn = await asyncpg.connect(settings.database_url)
        try:
            async with running_service(settings), _client(port, "devA") as dev_a:
                # A spoofs B's alarm, then sends its own: the service stores only A's
                await dev_a.publish(f"{ROOT}/evt/smoke/devB", _report("devB"), qos=1)
                await dev_a.publish(f"{ROOT}/evt/smoke/devA", _report("devA"), qos=1)
                await wait_for(lambda: conn.fetchval("SELECT count(*) FROM readings WHERE device_id = 'devA'"),
                               timeout=WAIT_S)
                assert await conn.fetchval("SELECT count(*) FROM readings WHERE device_id = 'devB'") == 0
                assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
        finally:
            await conn.close()


async def test_shared_subscription_reads_uplinks_and_downlinks_reach_only_their_device() -> None:
    with acl_broker() as port:
        async with _client(port, "miaoxiang") as service, _client(port, "devA") as dev_a:
            await service.subscribe(f"$share/ingest/{ROOT}/tel/#", qos=1)
            await dev_a.subscribe(f"{ROOT}/down/smoke/devB", qos=1)  # B's downlink: refused or never delivered
            await dev_a.subscribe(f"{ROOT}/down/#", qos=1)
            await dev_a.publish(f"{ROOT}/tel/smoke/devB", b"spoof", qos=1)
            await dev_a.publish(f"{ROOT}/tel/smoke/devA", b"own", qos=1)
            got = await _next(service)
            assert (str(got.topic), got.payload) == (f"{ROOT}/tel/smoke/devA", b"own")
            # the service commands B, then A: A gets its own and nothing before it
            await service.publish(f"{ROOT}/down/smoke/devB", b'{"cmd": "valve_close"}', qos=1)
            await service.publish(f"{ROOT}/down/smoke/devA", b'{"cmd": "self_test"}', qos=1)
            got = await _next(dev_a)
            assert (str(got.topic), got.payload) == (f"{ROOT}/down/smoke/devA", b'{"cmd": "self_test"}')
            # and A cannot subscribe its way into the service's view of the uplinks
            await dev_a.subscribe(f"{ROOT}/evt/#", qos=1)
            async with _client(port, "devB") as dev_b:
                await dev_b.publish(f"{ROOT}/evt/smoke/devB", b"alarm of B", qos=1)
                await dev_b.publish(f"{ROOT}/down/smoke/devA", b"forged command", qos=1)
            await service.publish(f"{ROOT}/down/smoke/devA", b"sentinel", qos=1)
            got = await _next(dev_a)
            assert got.payload == b"sentinel"
