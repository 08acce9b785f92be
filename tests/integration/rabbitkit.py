"""A second RabbitMQ node of the test's own, standing in for Huawei IoTDA's and Alibaba Cloud IoT's
AMQP 1.0 brokers, and the checks those providers make of a consumer's signed SASL credentials.

The node never touches the machine's shared RabbitMQ: its own node name (`mxtest-{port}@localhost`),
AMQP and distribution ports (free loopback ports), data, log, config, enabled-plugins and
environment files and Erlang cookie in the test's directory (HOME points there). AMQP 1.0 is the
`rabbitmq_amqp1_0` plugin on RabbitMQ 3.x (enabled on this node only) and built in from 4.0.

Consumers authenticate as the providers document (`ingest.subscriptions.amqp_auth`): RabbitMQ's
HTTP auth backend asks `ProviderAuth`, a loopback HTTP server in the test process, which accepts
an IoTDA username `accessKey=..|timestamp=..|instanceId=..` with the access code as password, or
an Alibaba `{clientId}|authMode=aksign,...|` username with Base64(HMAC-SHA1) of
`authId=..&timestamp=..` as password, each only within 5 minutes of its timestamp. Publishers
(the platform's side) are internal users created with `rabbitmqctl add_user`, named like the
signed usernames (`|`, `=` and `,` in a RabbitMQ user name).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest

RABBIT_BIN = Path(os.environ.get("MIAOXIANG_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PLUGINS_GLOB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins"
#: The publisher, an internal user named like an IoTDA signed username.
PUBLISHER = ("accessKey=mx-publisher|timestamp=1700000000000|instanceId=mx-test", "publisher-pass")
#: What the providers accept: IoTDA access key -> access code, Alibaba access key -> secret.
IOTDA_KEYS = {"mx-ak": "mx-access-code"}
ALIYUN_KEYS = {"LTAImxTestKey": "mx-access-secret"}
SKEW_MS = 5 * 60 * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def _plugins_dir() -> Path | None:
    found = sorted(Path("/").glob(PLUGINS_GLOB.lstrip("/")))
    return found[-1] if found else None


def unavailable() -> str | None:
    """Why no test node can be started here, or None."""
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        return f"RabbitMQ is not installed ({RABBIT_BIN}/rabbitmq-server missing)"
    plugins = _plugins_dir()
    if plugins is None:
        return "RabbitMQ's plugin directory was not found"
    names = {p.name.rsplit("-", 1)[0] for p in plugins.iterdir()}
    if "rabbitmq_auth_backend_http" not in names:
        return "RabbitMQ's rabbitmq_auth_backend_http plugin is missing"
    version = _version(plugins)
    if version < (4,) and "rabbitmq_amqp1_0" not in names:
        return "RabbitMQ 3.x without the rabbitmq_amqp1_0 plugin speaks no AMQP 1.0"
    return None


def _version(plugins: Path) -> tuple[int, ...]:
    text = plugins.parent.name.rsplit("-", 1)[-1]
    return tuple(int(x) for x in text.split(".") if x.isdigit())


# --- the providers' credential checks -------------------------------------------------------------
def provider_accepts(username: str, password: str, now_ms: int) -> bool:
    """Whether IoTDA or Alibaba would accept this SASL PLAIN login (as documented; see amqp_auth)."""
    if username.startswith("accessKey="):
        fields = dict(part.split("=", 1) for part in username.split("|") if "=" in part)
        code = IOTDA_KEYS.get(fields.get("accessKey", ""))
        ts = fields.get("timestamp", "")
        return (code is not None and ts.isdigit() and len(ts) == 13 and abs(now_ms - int(ts)) < SKEW_MS
                and hmac.compare_digest(password, code))
    client, sep, rest = username.partition("|")
    if not sep or not rest.endswith("|") or not client:
        return False
    params = dict(p.split("=", 1) for p in rest[:-1].split(",") if "=" in p)
    secret = ALIYUN_KEYS.get(params.get("authId", ""))
    ts = params.get("timestamp", "")
    if secret is None or params.get("authMode") != "aksign" or not ts.isdigit() or abs(now_ms - int(ts)) >= SKEW_MS:
        return False
    if "consumerGroupId" not in params or params.get("signMethod", "").lower() != "hmacsha1":
        return False
    content = f"authId={params['authId']}&timestamp={ts}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), content, hashlib.sha1).digest()).decode()
    return hmac.compare_digest(password, expected)


@dataclass
class ProviderAuth:
    """RabbitMQ's HTTP auth backend target; counts what it refused."""

    port: int = field(default_factory=free_port)
    refused: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        auth = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                answer = "allow"
                # RabbitMQ asks again without a password to authorise a user it already
                # authenticated (AMQP 1.0 sessions open an internal connection): allow that.
                if self.path == "/user" and "password" in form:
                    ok = provider_accepts(form.get("username", ""), form.get("password", ""), int(time.time() * 1000))
                    if not ok:
                        auth.refused.append(form.get("username", ""))
                        answer = "deny"
                body = answer.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- the node -------------------------------------------------------------------------------------
@dataclass
class RabbitNode:
    base: Path
    auth: ProviderAuth
    port: int
    dist_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"mxtest-{self.port}@localhost"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.base),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(self.base / "plugins-expand"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    def write_files(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq/rabbitmq-env.conf
        a = f"http://127.0.0.1:{self.auth.port}"
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "amqp1_0.default_user = none\n"  # no anonymous AMQP 1.0 logins
            "auth_backends.1 = internal\n"
            "auth_backends.2 = http\n"
            "auth_http.http_method = post\n"
            f"auth_http.user_path = {a}/user\nauth_http.vhost_path = {a}/vhost\n"
            f"auth_http.resource_path = {a}/resource\nauth_http.topic_path = {a}/topic\n"
        )
        (self.base / "advanced.config").write_text("[].\n")
        plugins = _plugins_dir()
        amqp1 = ["rabbitmq_amqp1_0"] if plugins is not None and _version(plugins) < (4,) else []
        (self.base / "enabled_plugins").write_text(f"[{', '.join([*amqp1, 'rabbitmq_auth_backend_http'])}].\n")
        cookie = self.base / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(f"MXTEST{self.port}COOKIE")
            cookie.chmod(0o400)

    def start(self, timeout: float = 90) -> None:
        self.write_files()
        log = open(self.base / "server.out", "ab")  # closed with the process
        self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ test node exited:\n{self.server_log()[-3000:]}")
            done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, "await_startup",
                                   "--timeout", "20"], env=self.env, capture_output=True, timeout=60)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"RabbitMQ test node not up after {timeout}s:\n{self.server_log()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM, which the Erlang VM turns into `init:stop()`: the broker closes
        its connections and listeners and writes its queues; durable messages survive it). At once,
        unlike `rabbitmqctl stop`, whose CLI VM takes seconds to start on a loaded machine."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill9(self) -> None:
        """The node's processes killed at once (a crash: what the broker confirmed is on disk)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def ctl(self, *args: str) -> str:
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def add_user(self, name: str, password: str) -> None:
        self.ctl("add_user", name, password)
        self.ctl("set_permissions", name, ".*", ".*", ".*")

    def declare_queue(self, queue: str) -> None:
        """A durable queue (`rabbitmqctl eval`: 3.x's CLI declares none)."""
        self.ctl("eval", f'rabbit_amqqueue:declare(rabbit_misc:r(<<"/">>, queue, <<"{queue}">>), true, false, [], '
                         'none, <<"mxtest">>).')

    def depth(self, queue: str) -> tuple[int, int]:
        """(messages ready, messages unacknowledged) of a queue."""
        for line in self.ctl("list_queues", "-q", "name", "messages_ready", "messages_unacknowledged").splitlines():
            parts = line.split("\t")
            if parts[0] == queue:
                return int(parts[1]), int(parts[2])
        raise AssertionError(f"no queue {queue}")

    def publisher_url(self, queue: str) -> str:
        user, password = PUBLISHER
        return f"amqp://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/amq/queue/{queue}"

    def server_log(self) -> str:
        path = self.base / "server.out"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def rabbit_node(base: Path) -> Iterator[RabbitNode]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    auth = ProviderAuth()
    auth.start()
    port, dist_port = free_ports(2)
    node = RabbitNode(base, auth, port, dist_port)
    try:
        node.start()
        node.add_user(*PUBLISHER)
        yield node
    finally:
        if node.proc is not None:
            with contextlib.suppress(Exception):
                node.stop()
        auth.stop()
        shutil.rmtree(base / "mnesia", ignore_errors=True)


def iotda_config(node: RabbitNode, queue: str, **extra: object) -> dict[str, object]:
    """A source's config for the test node as IoTDA's broker (plain AMQP on loopback)."""
    ((key, code),) = IOTDA_KEYS.items()
    return {"host": "127.0.0.1", "port": node.port, "tls": False, "queue": f"/amq/queue/{queue}",
            "access_key": key, "access_code": code, "instance_id": "mx-test", **extra}


def aliyun_config(node: RabbitNode, queue: str, **extra: object) -> dict[str, object]:
    """Alibaba's config for the test node; Alibaba names no queue (the consumer group is the
    queue), RabbitMQ needs one."""
    ((key, secret),) = ALIYUN_KEYS.items()
    return {"host": "127.0.0.1", "port": node.port, "tls": False, "queue": f"/amq/queue/{queue}",
            "access_key": key, "access_secret": secret, "consumer_group_id": "DEFAULT_GROUP",
            "client_id": "mx-test-client", **extra}
