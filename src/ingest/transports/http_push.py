"""HTTP push from NB-IoT platforms (CONTRACT §3): `POST /api/v1/ingest/push/{source}`.

Each configured push source names its platform and its secret. The answer is given only once
everything accepted is durably written (or dead-lettered), so a platform that retries on a
non-200 never loses a report and a retry of a stored one is deduplicated.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from ingest.codecs.ctwing import decode_ctwing
from ingest.codecs.errors import DecodeError
from ingest.codecs.generic import verify_generic
from ingest.codecs.json_report import decode_json_batch_indexed, decode_json_report
from ingest.codecs.onenet import decode_onenet, verify_onenet, verify_onenet_url
from ingest.codecs.platform import PlatformResult
from ingest.codecs.profiles import ProfileRegistry
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline, RawOf, lane_for

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])
SOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the push_sources.name check


@dataclass(frozen=True, slots=True)
class PushSource:
    name: str
    platform: str
    secret: str | None
    tenant: str
    profile: str | None
    rate_per_s: float


class RateLimiter:
    """Token bucket per source: `rate` requests per second, bursts of up to `rate` requests."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, rate: float, now: float) -> bool:
        tokens, last = self.buckets.get(key, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1, now)
        return True


@dataclass
class PushContext:
    pipeline: Pipeline
    metrics: IngestMetrics
    profiles: ProfileRegistry
    limiter: RateLimiter
    max_bytes: int


def push_context(request: Request) -> PushContext:
    return request.app.state.push


async def _source(request: Request, name: str) -> PushSource:
    if not SOURCE_NAME.fullmatch(name):  # e.g. a NUL byte, which PostgreSQL would refuse with an error
        raise HTTPException(404, "unknown push source")
    row = await request.app.state.pool.fetchrow(
        "SELECT name, platform, secret, tenant, profile, rate_per_s FROM push_sources WHERE name = $1", name
    )
    if row is None:
        raise HTTPException(404, f"unknown push source {name!r}")
    return PushSource(**dict(row))


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_generic(body: bytes, received_ms: int) -> tuple[PlatformResult, bytes | RawOf]:
    """The readings of a generic push, and what a rejected one is dead-lettered with: the body,
    or for an array the element's own text."""
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        batch = decode_json_batch_indexed(body, received_ms=received_ms)
        return PlatformResult(readings=batch.readings, errors=batch.errors, notices=[]), batch.element
    return PlatformResult(readings=[decode_json_report(body, received_ms=received_ms)], errors=[], notices=[]), body


@router.post("/push/{source}")
async def push(source: str, request: Request, ctx: Annotated[PushContext, Depends(push_context)]) -> dict[str, Any]:
    """Accept one platform push. 200 with counts, 401 bad signature, 404 unknown source, 413 too
    large, 422 when nothing in the body is a report, 429 over the source's rate."""
    src = await _source(request, source)
    if not ctx.limiter.allow(src.name, src.rate_per_s, time.monotonic()):
        raise HTTPException(429, f"push source {src.name} is over its rate of {src.rate_per_s:g} requests/s")
    body = await _body(request, ctx.max_bytes)
    received_ms = request.app.state.clock()
    if src.platform == "generic":
        if not src.secret or not verify_generic(src.secret, body, request.headers.get("x-miaoxiang-signature")):
            raise HTTPException(401, "bad or missing X-Miaoxiang-Signature")
    elif src.platform == "onenet":
        if not src.secret or not verify_onenet(src.secret, body):
            raise HTTPException(401, "bad OneNET msg_signature")
    elif src.platform == "ctwing":
        token = request.headers.get("x-miaoxiang-token") or request.query_params.get("token")
        if not src.secret or token is None or not _same(token, src.secret):
            raise HTTPException(401, "bad or missing CTWing push token")
    transport = f"http:{src.platform}"
    origin = f"http:{src.name}"
    codec = src.platform  # generic, onenet or ctwing (device profiles are part of the last two)
    ctx.metrics.codec_received.labels("http", codec).inc()
    raw: bytes | RawOf = body  # a platform push is dead-lettered as sent
    try:
        if src.platform == "generic":
            result, raw = _decode_generic(body, received_ms)
        elif src.platform == "onenet":
            result = decode_onenet(body, received_ms=received_ms, profiles=ctx.profiles, profile=src.profile)
        else:
            result = decode_ctwing(body, received_ms=received_ms, profiles=ctx.profiles, profile=src.profile)
    except DecodeError as e:
        ctx.metrics.decode_errors.labels("http", codec).inc()
        await (await ctx.pipeline.dead_letter(transport, origin, e.reason, body, codec=codec))
        raise HTTPException(422, f"nothing in the body is a report: {e.reason}") from None
    waits: list[asyncio.Future[None]] = []
    for err in result.errors:
        ctx.metrics.decode_errors.labels("http", codec).inc()
        waits.append(await ctx.pipeline.dead_letter(transport, f"{origin}#{err.index}", err.reason, err.raw, codec=codec))
    if result.readings:
        waits.append(await ctx.pipeline.submit(
            result.readings, lane=lane_for(result.readings), transport=transport, source=origin, codec=codec, raw=raw
        ))
    if not result.readings and not result.notices:
        if not result.errors:  # e.g. an empty array: still kept, with its reason
            waits.append(await ctx.pipeline.dead_letter(transport, origin, "nothing in the body is a report", body, codec=codec))
        await asyncio.gather(*waits)
        raise HTTPException(422, "nothing in the body is a report")
    await asyncio.gather(*waits)
    return {"accepted": len(result.readings), "rejected": len(result.errors), "notices": len(result.notices)}


@router.get("/push/{source}", response_class=PlainTextResponse)
async def onenet_url_verification(
    source: str,
    request: Request,
    msg: Annotated[str, Query()],
    nonce: Annotated[str, Query()],
    signature: Annotated[str, Query()],
) -> str:
    """OneNET checks a push URL by sending `msg`, `nonce` and `signature`; answer `msg` if it checks."""
    src = await _source(request, source)
    if src.platform != "onenet" or not src.secret or not verify_onenet_url(src.secret, msg, nonce, signature):
        raise HTTPException(401, "signature does not check")
    return msg


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

