"""The app factory: one lifespan owns the pool, the MQTT clients and one TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from datetime import UTC, datetime

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from alerting.admin_api import router as alarm_settings_router
from alerting.api import router as alarms_router
from alerting.config import RuleConfig
from alerting.core.correlator import Correlator
from alerting.risk_api import router as risk_router
from alerting.risk_service import RiskService
from devices.api import router as devices_router
from devices.commands import CommandService
from devices.fleet import Fleet
from devices.reading import Reading
from devices.service import DeviceService
from ingest.codecs.profiles import ProfileRegistry
from ingest.gb26875_api import router as gb26875_router
from ingest.gb26875_metrics import GB26875Collector
from ingest.transports.gb26875_tcp import GB26875Server
from ingest.transports.http_push import PushContext, RateLimiter
from ingest.transports.http_push import router as push_router
from ingest.metrics import IngestMetrics
from ingest.pipeline import Clock, Pipeline, lane_for, wall_clock_ms
from ingest.storage import ReadingStore
from ingest.transports.mqtt import BrokerConfig, MqttTransport
from miaoxiang.console_router import console_router
from miaoxiang.embedded import embedded_broker, embedded_postgres_url
from miaoxiang.migrate import migrate
from miaoxiang.scaleout import ScaleOut, alarm_service_class, scale_out
from miaoxiang.settings import Settings

log = logging.getLogger(__name__)


async def _maintain_partitions(store: ReadingStore, settings: Settings) -> None:
    while True:
        made, dropped = await store.maintain_partitions(
            datetime.now(UTC).date(), ahead_days=7, retention_days=settings.readings_retention_days
        )
        if made or dropped:
            log.info("readings partitions: %d created, %d dropped past retention", made, dropped)
        await asyncio.sleep(3600)


async def _run_background(*jobs: Coroutine[Any, Any, None]) -> None:
    """Run the service's background jobs in one TaskGroup; a crash of one is logged and stops all."""
    try:
        async with asyncio.TaskGroup() as tg:
            for job in jobs:
                tg.create_task(job)
    except Exception:
        log.exception("a background task failed; ingest has stopped")
        raise


def tune_gc() -> None:
    """Keep the cyclic collector off the hot path: what start-up built (the fleet's million ids
    and index entries) is frozen out of every future collection, and young collections run per
    50,000 allocations instead of 700 (a reading allocates tens of objects, almost none in a
    cycle). Measured with benchmarks/ingest_throughput.py, docs/performance.md."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _record_failure(app: FastAPI, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        app.state.background_error = task.exception()


def _gb26875_server(settings: Settings, pipeline: Pipeline, clock: Clock) -> GB26875Server | None:
    """The GB/T 26875.3 listener feeding the pipeline; a frame is confirmed once durably written."""
    if not settings.gb26875_enabled:
        return None

    async def submit(readings: list[Reading]) -> None:
        await (await pipeline.submit(readings, lane=lane_for(readings), transport="tcp", source="tcp:gb26875"))

    async def dead_letter(raw: bytes, source: str, reason: str) -> None:
        await (await pipeline.dead_letter("tcp", source, reason, raw))

    return GB26875Server(
        submit, dead_letter, host=settings.gb26875_host, port=settings.gb26875_port, tz=settings.device_tz,
        under_test=settings.gb26875_under_test,
        clock=lambda: clock() / 1000,
    )


def create_app(settings: Settings, *, clock: Clock = wall_clock_ms) -> FastAPI:
    """Build the service. Nothing is started until the lifespan runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            db_url = settings.database_url
            if db_url is None:
                db_url = await asyncio.to_thread(embedded_postgres_url, settings.data_dir)
            else:
                log.info("using PostgreSQL at %s", db_url.rsplit("@", 1)[-1])
            protocol = "5"
            mqtt_url = settings.mqtt_url
            if mqtt_url is None:
                mqtt_url = await stack.enter_async_context(embedded_broker())
                protocol = "3.1.1"  # amqtt speaks MQTT 3.1.1 only
            else:
                log.info("using MQTT broker at %s", mqtt_url.rsplit("@", 1)[-1])
            pool = await asyncpg.create_pool(db_url, min_size=2, max_size=10, command_timeout=30)
            stack.push_async_callback(pool.close)
            async with pool.acquire() as conn:
                applied = await migrate(conn, settings.migrations_dir)
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))

            fleet = Fleet()
            registry = app.state.metrics_registry
            mqtt: MqttTransport | None = None
            links: ScaleOut | None = None  # partitions > 1 (miaoxiang.scaleout)

            async def publish(topic: str, payload: bytes) -> None:
                if links is not None:
                    return await links.publish(topic, payload)
                assert mqtt is not None
                await mqtt.publish(topic, payload)

            commands = CommandService(
                pool, fleet, publish, topic_root=settings.topic(), clock=clock, timeout_s=settings.command_timeout_s
            )
            devices = DeviceService(pool, fleet, commands, clock=clock, checkpoint_interval_s=settings.checkpoint_interval_s)
            loaded = await devices.load()
            log.info("fleet state loaded: %d devices", loaded)
            tune_gc()
            alarms = alarm_service_class(settings).create(
                pool=pool, fleet=fleet, correlator=Correlator(RuleConfig()), clock=clock, registry=registry,
                sweep_interval_s=settings.sweep_interval_s, listen_dsn=db_url,
            )
            if settings.partitions > 1:
                links = scale_out(settings, BrokerConfig.from_url(mqtt_url, protocol), fleet=fleet, alarms=alarms,
                                  commands=commands, clock=clock)
            store = ReadingStore(pool)
            metrics = IngestMetrics(registry)
            pipeline = Pipeline(
                fleet=fleet, store=store, on_batch=alarms.on_batch if links is None else links.partitioner.on_batch,
                metrics=metrics,
                batch_max=settings.batch_max, batch_ms=settings.batch_ms, queue_max=settings.queue_max,
                dedupe_window_s=settings.dedupe_window_s, unknown_devices=settings.unknown_devices, clock=clock,
            )
            mqtt = MqttTransport(
                BrokerConfig.from_url(mqtt_url, protocol), pipeline=pipeline, metrics=metrics,
                topic_root=settings.topic(), client_id=settings.session_id(),
                share_group=settings.mqtt_share_group, max_inflight=settings.mqtt_max_inflight,
                on_command_ack=commands.on_ack if links is None else links.forward_command_ack, clock=clock,
            )
            if links is not None and settings.role == "worker":
                links.uplink = mqtt
            gb26875 = _gb26875_server(settings, pipeline, clock)
            if gb26875 is not None:
                await gb26875.start()
                stack.push_async_callback(gb26875.close)
                collector = GB26875Collector(gb26875)
                registry.register(collector)
                stack.callback(registry.unregister, collector)
                log.info("GB/T 26875.3 listener on %s:%d", settings.gb26875_host, gb26875.port)
            app.state.pool = pool
            app.state.mqtt_url, app.state.mqtt_protocol = mqtt_url, protocol  # the broker actually used
            app.state.fleet = fleet
            app.state.pipeline = pipeline
            app.state.mqtt = mqtt if links is None else links
            app.state.clock = clock
            app.state.devices = devices
            app.state.alarms = alarms
            app.state.gb26875 = gb26875
            app.state.risk = RiskService(pool, fleet)
            app.state.push = PushContext(
                pipeline=pipeline, metrics=metrics, profiles=ProfileRegistry.load(settings.profiles_dir),
                limiter=RateLimiter(), max_bytes=settings.push_max_bytes,
            )
            background = asyncio.create_task(_run_background(
                pipeline.run(), mqtt.run(), alarms.run(), devices.run(), _maintain_partitions(store, settings)
            ) if links is None else _run_background(
                *links.jobs(pipeline, alarms, devices, pool, _maintain_partitions(store, settings))
            ))
            background.add_done_callback(lambda t: _record_failure(app, t))
            try:
                yield
            finally:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
                with contextlib.suppress(Exception):
                    if settings.role != "worker":  # a worker's fleet holds one partition's live state
                        await devices.checkpoint()  # live state survives a clean restart

    app = FastAPI(title="Miaoxiang 秒响", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics_registry = CollectorRegistry()
    app.state.background_error = None
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"])

    @app.exception_handler(asyncpg.DataError)
    async def refused_by_postgres(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        """Input PostgreSQL cannot store (a NUL character in text, a number out of its column's
        range) is the caller's error: 422 with the reason, never a 500."""
        reason = "text must not contain NUL characters" if "0x00" in str(exc) else str(exc).splitlines()[0]
        return JSONResponse({"detail": f"not storable: {reason}"}, status_code=422)

    app.include_router(devices_router)
    app.include_router(alarms_router)
    app.include_router(alarm_settings_router)
    app.include_router(risk_router)
    app.include_router(push_router)
    app.include_router(gb26875_router)
    app.include_router(console_router())

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request, response: Response) -> dict[str, object]:
        checks: dict[str, bool] = {"database": False, "broker": False}
        with contextlib.suppress(Exception):
            checks["database"] = await asyncio.wait_for(request.app.state.pool.fetchval("SELECT true"), 2)
        checks["broker"] = bool(request.app.state.mqtt.ready)
        checks["background"] = request.app.state.background_error is None
        ready = all(checks.values())
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", **checks}

    @app.get("/metrics", tags=["health"])
    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return app
