"""A private Mosquitto for benchmarks and fault tests, started with the settings we tell
deployments to use (persistence, unbounded offline queue, TCP_NODELAY) on a spare port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence {persistence}
persistence_location {dir}/
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
set_tcp_nodelay true
log_dest file {dir}/mosquitto.log
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_mosquitto(persistence: bool = False, workdir: Path | None = None) -> Iterator[str]:
    """Run `mosquitto` on a free loopback port until the context ends; yield its URL."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with tempfile.TemporaryDirectory() as tmp:
        d = workdir or Path(tmp)
        port = _free_port()
        conf = d / "mosquitto.conf"
        conf.write_text(CONF.format(port=port, dir=d, persistence="true" if persistence else "false"))
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("mosquitto did not start")
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
