"""A private pulsar-lite broker for benchmarks (the dev extra), on free loopback ports with its own
data directory and its metrics endpoint on loopback as well."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pulsar_lite.binary_finder import find_pulsar_lite_binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_pulsar() -> Iterator[str]:
    """Run pulsar-lite until the context ends; yield its pulsar:// URL."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        port, metrics = _free_port(), _free_port()
        (d / "pulsar-lite.toml").write_text(f'[metrics]\naddr = "127.0.0.1:{metrics}"\n')
        proc = subprocess.Popen(
            [find_pulsar_lite_binary(), "--config", str(d / "pulsar-lite.toml"), "--addr", f"127.0.0.1:{port}",
             "--db-path", str(d / "data"), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d,
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("pulsar-lite did not start")
            yield f"pulsar://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
