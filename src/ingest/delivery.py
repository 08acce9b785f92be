"""What every transport does with a decoded payload: its readings go to the pipeline and each
item that failed to decode to the dead letters; the answer is the futures to wait on before
acknowledging (MQTT PUBACK, HTTP 200)."""

from __future__ import annotations

import asyncio

from ingest.codecs.platform import PlatformResult
from ingest.metrics import IngestMetrics
from ingest.pipeline import Lane, Pipeline, lane_for


async def deliver(
    pipeline: Pipeline,
    metrics: IngestMetrics,
    result: PlatformResult,
    *,
    transport: str,
    source: str,
    codec: str,
    raw: bytes,
    lane: Lane | None = None,
    origin: str | None = None,
) -> list[asyncio.Future[None]]:
    """Dead-letter `result.errors` (as `{source}#{index}`), submit `result.readings` on `lane`
    (by default the lane their events call for). A rejected reading is dead-lettered with its
    own bytes (`result.raw_of`) or else with `raw`, the payload as received. `origin`: who sent it,
    for the auto-registration bounds, when not `source` (`Pipeline.submit`)."""
    waits: list[asyncio.Future[None]] = []
    family = transport.partition(":")[0]
    for err in result.errors:
        metrics.decode_errors.labels(family, codec).inc()
        waits.append(await pipeline.dead_letter(transport, f"{source}#{err.index}", err.reason, err.raw, codec=codec))
    if result.readings:
        waits.append(await pipeline.submit(
            result.readings, lane=lane or lane_for(result.readings), transport=transport, source=source, codec=codec,
            raw=result.raw_of or raw, origin=origin,
        ))
    return waits
