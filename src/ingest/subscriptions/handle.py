"""What a subscription does with one message: the HTTP push's path (decode with the platform
codec and the device profiles, deliver, route notices, dead-letter what is not a report), and
return only once all of it is committed; raise when it cannot be, so the message is given back."""

from __future__ import annotations

import asyncio

from ingest.codecs.errors import DecodeError
from ingest.delivery import deliver
from ingest.notices import PlatformNotices, notice_bytes, route_notices
from ingest.transports.http_push import PushContext

from .base import Handle
from .kinds import SubscriptionKind

#: The transport family of subscription messages (`mq:{platform}` in dead letters and metrics).
FAMILY = "mq"


class NotCommitted(RuntimeError):
    """The message's readings could not be committed now (database down, service stopping)."""


def subscription_handle(
    ctx: PushContext, devices: PlatformNotices, kind: SubscriptionKind, *, source: str, profile: str | None,
    commit_timeout_s: float,
) -> Handle:
    """The `Handle` of one source: returns after commit, raises `NotCommitted` (or `TimeoutError`
    after `commit_timeout_s`) when the message must be redelivered."""
    transport, origin, codec = f"{FAMILY}:{kind.name}", f"{FAMILY}:{source}", kind.codec
    pipeline, metrics = ctx.pipeline, ctx.metrics

    async def handle(payload: bytes, label: str) -> None:
        if not pipeline.db_up:
            raise NotCommitted("数据库不可用 / the database is unavailable")
        if not pipeline.accepting.is_set():
            raise NotCommitted("服务正在停止 / the service is stopping")
        received_ms = pipeline.clock()
        metrics.codec_received.labels(FAMILY, codec).inc()
        async with asyncio.timeout(commit_timeout_s):
            try:
                result = kind.decode(payload, received_ms=received_ms, profiles=ctx.profiles, profile=profile)
            except DecodeError as e:
                metrics.decode_errors.labels(FAMILY, codec).inc()
                await (await pipeline.dead_letter(transport, origin, e.reason, payload, codec=codec))
                return
            waits = await deliver(pipeline, metrics, result, transport=transport, source=origin, codec=codec,
                                  raw=payload)
            routed = await route_notices(result.notices, devices, pipeline.fleet, received_ms=received_ms,
                                         platform=kind.codec)
            if routed.heartbeats:
                waits.append(await pipeline.submit(routed.heartbeats, lane="tel", transport=transport, source=origin,
                                                   codec=codec, raw=payload))
            for notice, reason in routed.unmatched:
                waits.append(await pipeline.dead_letter(transport, f"{origin}#notice", reason, notice_bytes(notice),
                                                        codec=codec))
            if not result.readings and not result.notices and not result.errors:
                waits.append(await pipeline.dead_letter(transport, origin, "nothing in the message is a report",
                                                        payload, codec=codec))
            await asyncio.gather(*waits)

    return handle
