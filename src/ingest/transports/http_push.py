"""HTTP push from NB-IoT platforms (CONTRACT §3): `POST /api/v1/ingest/push/{source}`.

Each configured push source names its platform and its secret. The answer is given only once
everything accepted is durably written (or dead-lettered), so a platform that retries on a
non-200 never loses a report and a retry of a stored one is deduplicated.

Sources are cached by name for `SOURCE_TTL_S` (`SourceCache`): a push costs no query, and a
source created, changed or deleted (through any process's API, or in SQL) takes effect in every
process within that time. A name not configured is never cached: it is found as soon as it is.

Only a request whose signature or token checks spends its source's rate: one that fails the
check, or names no source, spends a small budget of its client address instead
(`unverified_per_min`), and an address without budget left is answered 429 before its body is
read. Unsigned floods thus never make the real platform's signed pushes answer 429.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol, cast

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.requests import ClientDisconnect

from ingest.codecs.errors import DecodeError
from ingest.codecs.profiles import ProfileRegistry
from ingest.codecs.registry import PushPlatform, UnknownCodec, push_platform
from ingest.delivery import deliver
from ingest.metrics import IngestMetrics
from ingest.notices import PlatformNotices, Routed, notice_bytes, route_notices
from ingest.pipeline import Clock, Pipeline

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])
SOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the push_sources.name check
NO_NOTICES = Routed()  # what a push without notices routes (most pushes: no call, nothing to build)


@dataclass(frozen=True, slots=True)
class PushSource:
    name: str
    platform: str
    secret: str | None
    tenant: str
    profile: str | None
    rate_per_s: float


#: How long a push source is used as read before it is read again: the longest a change to it
#: (a new secret, a deletion) takes to reach every process. A TTL rather than a NOTIFY, so that a
#: lost listener connection can never keep a deleted source's secret valid.
SOURCE_TTL_S = 1.0


class SourceCache:
    """Push sources by name, each read again once `ttl_s` old. Concurrent requests for a source
    not (or no longer) cached share one query; an unknown name is not cached (an unknown name
    spends its client's unverified budget instead, `PushContext.unverified_per_min`)."""

    def __init__(self, ttl_s: float = SOURCE_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.entries: dict[str, tuple[float, PushSource]] = {}
        self.loading: dict[str, asyncio.Future[PushSource | None]] = {}

    async def get(self, pool: asyncpg.Pool, name: str) -> PushSource | None:
        entry = self.entries.get(name)
        if entry is not None and self.clock() < entry[0]:
            return entry[1]
        loading = self.loading.get(name)
        if loading is None:
            loading = self.loading[name] = asyncio.ensure_future(self._load(pool, name))
            loading.add_done_callback(self._loaded)
        return await asyncio.shield(loading)

    def _loaded(self, loading: asyncio.Future[PushSource | None]) -> None:
        """Forget a finished query; its error is raised to whoever still waits on it."""
        for name, pending in list(self.loading.items()):
            if pending is loading:
                del self.loading[name]
        if not loading.cancelled():
            loading.exception()  # retrieved: no "never retrieved" warning when every waiter left

    async def _load(self, pool: asyncpg.Pool, name: str) -> PushSource | None:
        read_at = self.clock()
        row = await pool.fetchrow(
            "SELECT name, platform, secret, tenant, profile, rate_per_s FROM push_sources WHERE name = $1", name
        )
        if row is None:
            self.entries.pop(name, None)
            return None
        src = PushSource(**dict(row))
        self.entries[name] = (read_at + self.ttl_s, src)
        return src


class RateLimiter:
    """Token buckets by key: `rate` requests per second, bursts of up to `burst` (default `rate`,
    at least 1: a rate below one request a second still allows one now and then)."""

    #: Above this many keys, buckets that have refilled completely are forgotten.
    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, key: str, rate: float, burst: float, now: float) -> float:
        tokens, last = self.buckets.get(key, (burst, now))
        return min(burst, tokens + (now - last) * rate)

    def available(self, key: str, rate: float, now: float, *, burst: float | None = None) -> bool:
        """Whether `allow` would allow one request now, spending nothing."""
        return self._tokens(key, rate, max(burst or rate, 1.0), now) >= 1

    def allow(self, key: str, rate: float, now: float, *, burst: float | None = None) -> bool:
        """Spend one request if the bucket has one."""
        cap = max(burst or rate, 1.0)
        tokens = self._tokens(key, rate, cap, now)
        if len(self.buckets) >= self.MAX_KEYS and key not in self.buckets:
            self._forget_full(now, rate, cap)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1, now)
        return True

    def _forget_full(self, now: float, rate: float, burst: float) -> None:
        full = [k for k, (tokens, last) in self.buckets.items() if tokens + (now - last) * rate >= burst]
        for key in full:
            del self.buckets[key]


@dataclass
class PushContext:
    pipeline: Pipeline
    metrics: IngestMetrics
    profiles: ProfileRegistry
    limiter: RateLimiter
    max_bytes: int
    #: Requests a client address may make a minute that fail the signature check or name no source.
    unverified_per_min: int = 60
    unverified: RateLimiter = field(default_factory=RateLimiter)
    sources: SourceCache = field(default_factory=SourceCache)

    def unverified_left(self, client: str) -> bool:
        return self.unverified.available(client, self.unverified_per_min / 60, time.monotonic(),
                                         burst=self.unverified_per_min)

    def spend_unverified(self, client: str) -> None:
        self.unverified.allow(client, self.unverified_per_min / 60, time.monotonic(), burst=self.unverified_per_min)


class PushDeps(Protocol):
    """What the push routes read of the running service."""

    @property
    def push(self) -> PushContext: ...

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def devices(self) -> PlatformNotices: ...


async def deps(request: Request) -> PushDeps:
    """Async, so FastAPI calls it on the loop: a plain function would cost a thread hop a push."""
    return cast(PushDeps, request.state.services)


Deps = Annotated[PushDeps, Depends(deps)]


async def _source(sources: SourceCache, pool: asyncpg.Pool, name: str) -> tuple[PushSource, PushPlatform]:
    if not SOURCE_NAME.fullmatch(name):  # e.g. a NUL byte, which PostgreSQL would refuse with an error
        raise HTTPException(404, "unknown push source")
    src = await sources.get(pool, name)
    if src is None:
        raise HTTPException(404, f"unknown push source {name!r}")
    try:
        return src, push_platform(src.platform)
    except UnknownCodec as e:  # a row the service's push_sources check would not let in
        raise HTTPException(409, f"push source {src.name}: {e}") from None


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def _checked_source(
    ctx: PushContext, pool: asyncpg.Pool, name: str, client: str
) -> tuple[PushSource, PushPlatform]:
    """The source named, unless the client address has no budget left for unverified requests
    (429); an unknown name spends that budget (404)."""
    if not ctx.unverified_left(client):
        raise HTTPException(429, "该地址签名校验失败的请求过多，请稍后再试 / too many requests from this address "
                                 "failed the signature check or named no source; retry later")
    try:
        return await _source(ctx.sources, pool, name)
    except HTTPException:
        ctx.spend_unverified(client)
        raise


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody to answer; nothing was accepted, the platform sends it again
        raise HTTPException(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


@router.post("/push/{source}", response_model=dict[str, Any])
async def push(source: str, request: Request) -> Response:
    """Accept one platform push. 200 with counts, 401 bad signature, 404 unknown source, 413 too
    large, 422 when nothing in the body is a report or a notice, 429 over the source's rate (spent only
    once the signature checks) or when this address sent too many unverified requests.

    The source's platform (`ingest.codecs.registry.PLATFORMS`) checks and decodes the body;
    readings go to the pipeline, notices to `ingest.notices`, failures to the dead letters.
    Lean on purpose (the hot path of NB-IoT ingest): the services taken from the request rather
    than a dependency, and the answer rendered here rather than validated against its model."""
    d = await deps(request)
    ctx = d.push
    client = _client(request)
    src, platform = await _checked_source(ctx, d.pool, source, client)
    body = await _body(request, ctx.max_bytes)
    received_ms = d.clock()
    if not src.secret or not platform.verify(src.secret, body, request.headers, request.query_params):
        ctx.spend_unverified(client)
        raise HTTPException(401, platform.refusal)
    if not ctx.limiter.allow(src.name, src.rate_per_s, time.monotonic()):
        raise HTTPException(429, f"push source {src.name} is over its rate of {src.rate_per_s:g} requests/s")
    transport = f"http:{src.platform}"
    origin = f"http:{src.name}"
    codec = platform.name  # device profiles are part of the platform codecs
    ctx.metrics.codec_received.labels("http", codec).inc()
    try:
        result = platform.decode(body, received_ms=received_ms, profiles=ctx.profiles, profile=src.profile)
    except DecodeError as e:
        ctx.metrics.decode_errors.labels("http", codec).inc()
        await (await ctx.pipeline.dead_letter(transport, origin, e.reason, body, codec=codec))
        raise HTTPException(422, f"nothing in the body is a report: {e.reason}") from None
    # a platform push is dead-lettered as sent; a generic array's element as its own text
    waits = await deliver(ctx.pipeline, ctx.metrics, result, transport=transport, source=origin, codec=codec, raw=body)
    routed = NO_NOTICES if not result.notices else await route_notices(
        result.notices, d.devices, ctx.pipeline.fleet, received_ms=received_ms, platform=src.platform
    )
    if routed.heartbeats:
        waits.append(await ctx.pipeline.submit(
            routed.heartbeats, lane="tel", transport=transport, source=origin, codec=codec, raw=body
        ))
    for notice, reason in routed.unmatched:
        raw = notice_bytes(notice)
        waits.append(await ctx.pipeline.dead_letter(transport, f"{origin}#notice", reason, raw, codec=codec))
    if not result.readings and not result.notices:
        if not result.errors:  # e.g. an empty array: still kept, with its reason
            reason = "nothing in the body is a report"
            waits.append(await ctx.pipeline.dead_letter(transport, origin, reason, body, codec=codec))
        await asyncio.gather(*waits)
        raise HTTPException(422, "nothing in the body is a report")
    for wait in waits:  # usually one: no gathering future per push
        await wait
    unmatched = len(routed.unmatched)
    counts = (len(result.readings), len(result.errors) + unmatched, len(result.notices) - unmatched)
    return Response(b'{"accepted":%d,"rejected":%d,"notices":%d}' % counts, media_type="application/json")


@router.get("/push/{source}", response_class=PlainTextResponse)
async def url_verification(
    source: str,
    request: Request,
    d: Deps,
    msg: Annotated[str, Query()],
    nonce: Annotated[str, Query()],
    signature: Annotated[str, Query()],
) -> str:
    """A platform (OneNET) checks a push URL by sending `msg`, `nonce` and `signature`; answer
    `msg` if it checks."""
    client = _client(request)
    src, platform = await _checked_source(d.push, d.pool, source, client)
    if platform.verify_url is None or not src.secret or not platform.verify_url(src.secret, msg, nonce, signature):
        d.push.spend_unverified(client)
        raise HTTPException(401, "signature does not check")
    return msg
