"""The outbound-checked HTTP client every notification sender shares (CONTRACT §9 "Outbound policy").

Every connection resolves its host afresh, keeps the addresses the policy allows
(`devices.outbound`) and connects to those only: no keep-alive, no proxies from the environment,
redirects not followed, so a name that has come to resolve to an internal address is refused at
send time. A failed call is recorded by its class (`ERROR_CLASSES`), never by a socket's error
text: an operator must not learn from it which internal ports are open.

`Outbound` bundles the client with the policy, the resolver and the TLS trust (the system's
store; a test passes its own CA) so that channel adapters, SMTP included, reach the network
only through it. `call` makes one request and answers either the provider's `Answer` or the
`SendResult` of a failure before any answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx

from alerting.response.channels.base import OK, SendResult
from devices.outbound import (
    NOT_ALLOWED,
    OutboundPolicy,
    OutboundRefused,
    Resolver,
    check_url,
    resolve_allowed,
    system_resolver,
)

#: HTTP answers worth another attempt; any other 4xx will not get better by retrying.
RETRY_STATUSES = frozenset({408, 425, 429})
#: what an attempt records and the API shows: `http 2xx` for a success, else one of these
ERROR_CLASSES = ("timeout", "refused", "dns", "tls", NOT_ALLOWED, "http 3xx", "http 4xx", "http 5xx")
#: the error class of a refusal the provider stated in its answer (its code in `provider_code`)
PROVIDER = "provider"
#: the error class of a personal channel asked to reach someone without its address (no phone
#: for SMS, no e-mail for SMTP): nothing was sent, and retrying will not help
NO_ADDRESS = "no address"


class Unresolved(httpcore.ConnectError):
    """The target's host name did not resolve."""


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connections only to addresses the outbound policy allows: each connection resolves its
    host afresh and connects to an allowed address of the answer (the next one if it fails),
    never to the name, so what was checked is what is reached."""

    def __init__(self, policy: OutboundPolicy, resolve: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolve = resolve
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_allowed(host, port, self.policy, self.resolve)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from None
        except OSError as e:
            raise Unresolved(f"{host} does not resolve") from e
        failed: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as e:
                failed = e
        assert failed is not None  # resolve_allowed answers at least one address
        raise failed

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets are not outbound targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool whose every connection goes through `CheckedBackend`, with
    no keep-alive (every attempt resolves and checks again) and no proxy from the environment.
    `ssl_context`: the trust for HTTPS (default: httpx's, without the environment's)."""

    def __init__(
        self, policy: OutboundPolicy, resolve: Resolver = system_resolver, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(trust_env=False)
        # httpx has no parameter for the network backend: the pool it made is replaced by one
        # with the checking backend and otherwise httpx's defaults.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=0,
            network_backend=CheckedBackend(policy, resolve),
        )


def outbound_client(
    policy: OutboundPolicy, *, timeout_s: float, headers: dict[str, str] | None = None,
    resolve: Resolver = system_resolver, ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for outbound calls under `policy`; redirects are answers, not followed."""
    return httpx.AsyncClient(
        transport=CheckedTransport(policy, resolve, ssl_context), timeout=timeout_s, headers=headers,
        follow_redirects=False, trust_env=False,
    )


def status_class(status: int) -> str:
    return f"http {status // 100}xx"


def error_class(error: BaseException) -> str:
    """The class of a failed call (`ERROR_CLASSES`), judged by the error and what caused it."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, OutboundRefused) for c in chain):
        return NOT_ALLOWED
    if any(isinstance(c, (Unresolved, socket.gaierror)) for c in chain):
        return "dns"
    if any(isinstance(c, ssl.SSLError) for c in chain):
        return "tls"
    if any(isinstance(c, (httpx.TimeoutException, httpcore.TimeoutException, TimeoutError)) for c in chain):
        return "timeout"
    return "refused"


def retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUSES


def http_failure(status: int) -> SendResult:
    """A non-2xx answer that carries no provider code: its class; retried on 5xx, 408, 425, 429."""
    return SendResult(False, status_class(status), retry=retryable_status(status))


def provider_failure(status: int, code: object, retry_codes: Collection[str] = ()) -> SendResult:
    """The provider refused with `code`: retried when the code is one of its rate limits (or the
    answer was a 5xx or 429), never otherwise."""
    text = str(code)
    return SendResult(False, PROVIDER, text, retry=text in retry_codes or retryable_status(status))


@dataclass(frozen=True, slots=True)
class Answer:
    """The provider's answer: its status and its JSON body (None when the body is not JSON)."""

    status: int
    body: Any


@dataclass(slots=True)
class Outbound:
    """What a sender may reach and how: the checked HTTP client, the policy and resolver it
    obeys (SMTP resolves and connects through them too), the per-attempt timeout and the TLS
    trust (`ssl_context` None = the system's trust store; tests pass a context trusting their
    own CA, never one that skips verification). Close it with `aclose` (or `async with`)."""

    policy: OutboundPolicy
    timeout_s: float = 5.0
    resolve: Resolver = system_resolver
    ssl_context: ssl.SSLContext | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: {"User-Agent": "miaoxiang-notifier/2"})
    client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = outbound_client(self.policy, timeout_s=self.timeout_s, headers=dict(self.headers),
                                      resolve=self.resolve, ssl_context=self.ssl_context)

    def tls(self) -> ssl.SSLContext:
        """The context that verifies a server's certificate and name (SMTP)."""
        return self.ssl_context or ssl.create_default_context()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Outbound:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(
        self, method: str, url: str, *, content: bytes | str | None = None, headers: Mapping[str, str] | None = None,
    ) -> Answer | SendResult:
        """One request to `url` (already carrying its query). A URL or address the policy
        refuses fails with `outbound address not allowed` before any connection (not retried);
        a connection error or timeout fails with its class and is worth a retry."""
        try:
            check_url(url, self.policy)
            resp = await self.client.request(method, url, content=content, headers=headers)
        except OutboundRefused:
            return SendResult(False, NOT_ALLOWED)
        except httpx.HTTPError as e:
            return SendResult(False, error_class(e), retry=True)
        try:
            body = json.loads(resp.content) if resp.content else None
        except ValueError:
            body = None
        return Answer(resp.status_code, body)

    async def post_json(self, url: str, payload: Any, headers: Mapping[str, str] | None = None) -> Answer | SendResult:
        """POST `payload` as UTF-8 JSON (what every robot API asks for)."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return await self.call("POST", url, content=body,
                               headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def rebase(url: str, endpoint: str | None) -> str:
    """`url` sent to `endpoint` instead (CONTRACT §9 `endpoint`: a private deployment's or a test's
    address): the endpoint's scheme, host and port (and path prefix), the URL's path and query."""
    if not endpoint:
        return url
    base, target = urlsplit(endpoint), urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + target.path, target.query, ""))


def code_result(answer: Answer | SendResult, field: str, retry_codes: Collection[str] = ()) -> SendResult:
    """A robot's result: sent only when a 2xx answer's JSON `field` (`errcode`, `code`) is 0;
    another code fails with it (retried when it is one of `retry_codes`); an answer without the
    field fails by its status (a 2xx without it is a provider failure without a code)."""
    if isinstance(answer, SendResult):
        return answer
    code = answer.body.get(field) if isinstance(answer.body, dict) else None
    success = 200 <= answer.status < 300
    if code is None or (code == 0 and not success):
        return http_failure(answer.status) if not success else SendResult(False, PROVIDER)
    return OK if code == 0 else provider_failure(answer.status, code, retry_codes)


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8 (never inside a character), marked by `…`."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - len("…".encode())].decode(errors="ignore") + "…"
