"""The composition root's services: what one process runs, built in one place for its role.

`Services` is handed to request handlers as Starlette lifespan state (`request.state.services`);
each router module reads it through its own `Protocol` (`devices.api.DeviceDeps`, ...), so a
lower package never sees this module. `_satisfies` makes mypy check that `Services` fits them all.
Roles (`settings.role`, docs/scale-out.md): `all` is the single process; `worker` and `api` are
the processes of a scaled-out deployment, wired by `miaoxiang.scaleout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from alerting.api import AlarmDeps
from alerting.config import RuleConfig
from alerting.core.correlator import Correlator
from alerting.dutychecks import DutyChecks, DutySender, SendOutcome
from alerting.linkage.api import LinkageDeps
from alerting.linkage.runner import LinkageRunner
from alerting.overview_api import OverviewDeps
from alerting.reports import online_sample
from alerting.response.channels.store import ResponseDeps
from alerting.response.page import Buckets, PageDeps
from alerting.risk_api import RiskDeps
from alerting.risk_service import RiskService
from alerting.service import AlarmService
from alerting.workorders.api import WorkOrderDeps
from alerting.workorders.notices import NoticeSender
from alerting.workorders.sweep import Sweep
from devices import shielded
from devices.api import CommandGuard, DeviceDeps
from devices.auth import AuthDeps
from devices.clock import Clock
from devices.commands import CommandService
from devices.db_errors import UNAVAILABLE
from devices.fleet import Fleet
from devices.fleet_metrics import FleetCollector
from devices.outbound import OutboundPolicy
from devices.reading import Reading
from devices.service import DeviceService
from ingest.codecs.gb26875_appdata import DUTY_CHECK
from ingest.codecs.profiles import ProfileRegistry
from ingest.gb26875_api import Gb26875Deps
from ingest.gb26875_metrics import GB26875Collector
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline, lane_for
from ingest.readings_api import ReadingsDeps
from ingest.storage import ReadingStore
from ingest.subscriptions.supervisor import Subscriptions
from ingest.transports.gb26875_tcp import GB26875Server, NotConnected, RequestError
from ingest.transports.http_push import PushContext, PushDeps, RateLimiter
from ingest.transports.mqtt import BrokerConfig, MqttTransport
from miaoxiang.embedded import embedded_broker, embedded_postgres_url
from miaoxiang.migrate import migrate
from miaoxiang.scaleout import ScaleOut, alarm_service_class, scale_out
from miaoxiang.settings import Settings

log = logging.getLogger(__name__)

Job = Coroutine[Any, Any, None]
#: How long a stop waits for readings already taken to be written (and so acknowledged).
DRAIN_TIMEOUT_S = 5
#: How soon partition maintenance is tried again after the database was unavailable.
PARTITION_RETRY_S = 60


@dataclass
class Services:
    """Everything a running process holds; read by handlers (through their Protocols) and by the root."""

    settings: Settings
    metrics_registry: CollectorRegistry
    pool: asyncpg.Pool
    clock: Clock
    fleet: Fleet
    commands: CommandService
    devices: DeviceService
    alarms: AlarmService
    risk: RiskService
    pipeline: Pipeline
    store: ReadingStore
    mqtt: MqttTransport
    #: the internal links of a scaled-out process (`partitions` > 1), else None
    links: ScaleOut | None
    push: PushContext
    gb26875: GB26875Server | None
    #: the broker actually used (the embedded one when `mqtt_url` is not set)
    mqtt_url: str
    mqtt_protocol: str
    #: the platform subscriptions' consumers (CONTRACT §3 v2); None in a worker process
    subscriptions: Subscriptions | None = None
    #: the exception that stopped the background jobs, if one did
    background_error: BaseException | None = None

    @property
    def admin_token(self) -> SecretStr | None:
        return self.settings.admin_token

    @functools.cached_property
    def outbound(self) -> OutboundPolicy:
        """Where outbound calls may go (`MIAOXIANG_OUTBOUND_ALLOW`, CONTRACT §9)."""
        return OutboundPolicy.parse(self.settings.outbound_allow)

    @functools.cached_property
    def responder_buckets(self) -> Buckets:
        """The responder page's per-client-address rate limit (CONTRACT §9)."""
        return Buckets()

    @property
    def database_writing(self) -> bool:
        """False while the readings writer or the alarm writer is retrying a failed write."""
        return self.pipeline.db_up and not self.alarms.lifecycle.db_down

    @functools.cached_property
    def duty_checks(self) -> DutyChecks:
        """查岗 (CONTRACT §11): sent through the GB/T 26875 listener, settled from readings."""
        return DutyChecks(self.pool, self.alarms.lifecycle, self.clock, _duty_sender(self.gb26875),
                          random_regions=self.settings.duty_check_random_regions, device_tz=self.settings.device_tz)

    @functools.cached_property
    def linkage(self) -> LinkageRunner:
        """联动 (CONTRACT §10): linkage commands and offers for alarms, followed to their end."""
        return LinkageRunner(self.pool, self.alarms.hub, self.alarms.lifecycle, self.commands, self.fleet, self.clock)

    @property
    def command_guard(self) -> CommandGuard | None:
        """Opposite commands need an override while the linkage they undo holds (not in a worker)."""
        return None if self.settings.role == "worker" else self.linkage

    @functools.cached_property
    def work_order_notices(self) -> NoticeSender:
        """Sends work-order notices through the responders' channels (CONTRACT §11)."""
        return NoticeSender(self.pool, self.clock, policy=self.outbound, language=self.settings.language,
                            device_tz=self.settings.device_tz)

    def oversight_jobs(self) -> list[Job]:
        """Settling duty checks, the daily online sample, sending work-order notices and linkage:
        once, not in a worker."""
        if self.settings.role == "worker":
            return []
        return [self.duty_checks.run(), online_sample.run(self.pool, self.fleet, self.clock,
                                                            ZoneInfo(self.settings.device_tz)),
                self.work_order_notices.run(), self.linkage.run()]

    @functools.cached_property
    def supervision(self) -> Sweep:
        """Work orders and maintenance expiry (CONTRACT §11), over the process's complete fleet."""
        return Sweep(self.pool, self.fleet, self.clock, ZoneInfo(self.settings.device_tz))

    @property
    def broker_ready(self) -> bool:
        """The MQTT client's, or the scale-out links', connection (what `/readyz` shows as broker)."""
        return self.mqtt.ready if self.links is None else self.links.ready

    def jobs(self) -> list[Job]:
        """This role's background jobs."""
        maintenance = _maintain_partitions(self.store, self.settings)
        supervision = [] if self.settings.role == "worker" else [self.supervision.run()]
        subscriptions = [] if self.subscriptions is None else [self.subscriptions.run()]
        if self.links is None:
            return [self.pipeline.run(), self.mqtt.run(), self.alarms.run(), self.devices.run(), maintenance,
                    *subscriptions, *supervision]
        return [*self.links.jobs(self.pipeline, self.alarms, self.devices, self.pool, maintenance), *subscriptions,
                *supervision]


def _satisfies(
    services: Services,
) -> tuple[
    AuthDeps, DeviceDeps, ReadingsDeps, PushDeps, Gb26875Deps, AlarmDeps, OverviewDeps, RiskDeps, ResponseDeps,
    PageDeps, WorkOrderDeps, LinkageDeps,
]:
    """Never called: mypy checks here that `Services` provides what every router reads."""
    return (services, services, services, services, services, services, services, services, services, services,
            services, services)


@contextlib.asynccontextmanager
async def running(settings: Settings, *, clock: Clock, registry: CollectorRegistry) -> AsyncIterator[Services]:
    """Build this process's services, run their background jobs until the context ends, then stop
    them (the single process and the API process checkpoint device state once more)."""
    async with contextlib.AsyncExitStack() as stack:
        services = await _build(settings, stack, clock=clock, registry=registry)

        def record_failure(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                services.background_error = task.exception()

        background = asyncio.create_task(_run_background(*services.jobs(), *services.oversight_jobs()))
        background.add_done_callback(record_failure)
        try:
            yield services
        finally:
            if not background.done() and not await services.pipeline.drain(DRAIN_TIMEOUT_S):
                log.warning("stopping with readings not yet written after %d s: their senders will send them again",
                            DRAIN_TIMEOUT_S)
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
            with contextlib.suppress(Exception):
                if settings.role != "worker":  # a worker's fleet holds one partition's live state
                    await services.devices.checkpoint()  # live state survives a clean restart


async def _build(
    settings: Settings, stack: contextlib.AsyncExitStack, *, clock: Clock, registry: CollectorRegistry
) -> Services:
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
    fleet_collector = FleetCollector(fleet)
    registry.register(fleet_collector)
    stack.callback(registry.unregister, fleet_collector)
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
    profiles = ProfileRegistry.load(settings.profiles_dir)
    devices = DeviceService(pool, fleet, commands, clock=clock, checkpoint_interval_s=settings.checkpoint_interval_s,
                            profile_thresholds=profiles.thresholds())
    loaded = await devices.load()
    log.info("fleet state loaded: %d devices", loaded)
    tune_gc()
    alarms = alarm_service_class(settings).create(
        pool=pool, fleet=fleet, correlator=Correlator(RuleConfig()), clock=clock, registry=registry,
        sweep_interval_s=settings.sweep_interval_s, listen_dsn=db_url,
        flood_alarms_per_s=settings.flood_alarms_per_s, flood_window_s=settings.flood_window_s,
        outbound=OutboundPolicy.parse(settings.outbound_allow), public_url=settings.public_url,
        language=settings.language, device_tz=settings.device_tz,
    )
    if settings.role != "all":
        links = scale_out(settings, BrokerConfig.from_url(mqtt_url, protocol), fleet=fleet, alarms=alarms,
                          commands=commands, clock=clock)
    store = ReadingStore(pool)
    metrics = IngestMetrics(registry)
    pipeline = Pipeline(
        fleet=fleet, store=store, on_batch=alarms.on_batch if links is None else links.partitioner.on_batch,
        metrics=metrics,
        batch_max=settings.batch_max, batch_ms=settings.batch_ms, queue_max=settings.queue_max,
        dedupe_window_s=settings.dedupe_window_s, unknown_devices=settings.unknown_devices, clock=clock,
        clock_skew_tolerance_s=settings.clock_skew_tolerance_s, max_components=settings.max_components_per_device,
        quarantine_per_min=settings.quarantine_per_min, quarantine_max=settings.quarantine_max,
    )
    mqtt = MqttTransport(
        BrokerConfig.from_url(mqtt_url, protocol), pipeline=pipeline, metrics=metrics,
        topic_root=settings.topic(), client_id=settings.session_id(),
        share_group=settings.mqtt_share_group, max_inflight=settings.mqtt_max_inflight,
        max_payload=settings.mqtt_max_payload, max_batch_payload=settings.mqtt_max_batch_payload,
        on_command_ack=commands.on_ack if links is None else links.forward_command_ack, clock=clock,
    )
    if links is not None and settings.role == "worker":
        links.uplink = mqtt
    gb26875 = _gb26875_server(settings, pipeline, clock, pool)
    if gb26875 is not None:
        await gb26875.start()
        stack.push_async_callback(gb26875.close)
        collector = GB26875Collector(gb26875)
        registry.register(collector)
        stack.callback(registry.unregister, collector)
        log.info("GB/T 26875.3 listener on %s:%d", settings.gb26875_host, gb26875.port)
    push = PushContext(
        pipeline=pipeline, metrics=metrics, profiles=profiles,
        limiter=RateLimiter(), max_bytes=settings.push_max_bytes, unverified_per_min=settings.push_unverified_per_min,
    )
    subscriptions = None if settings.role == "worker" else Subscriptions(pool, push, devices, registry)
    services = Services(
        settings=settings, metrics_registry=registry, pool=pool, clock=clock, fleet=fleet, commands=commands,
        devices=devices, alarms=alarms, risk=RiskService(pool, fleet, device_tz=settings.device_tz),
        pipeline=pipeline, store=store, mqtt=mqtt,
        links=links, push=push, gb26875=gb26875, mqtt_url=mqtt_url, mqtt_protocol=protocol,
        subscriptions=subscriptions,
    )
    if settings.role != "worker":
        commands.on_result = services.linkage.on_command_result
    return services


async def _maintain_partitions(store: ReadingStore, settings: Settings) -> None:
    """Every hour (every minute while the database is unavailable): the coming days' partitions."""
    while True:
        try:
            made, dropped = await store.maintain_partitions(
                datetime.now(UTC).date(), ahead_days=7, retention_days=settings.readings_retention_days
            )
        except UNAVAILABLE as e:
            log.warning("readings partition maintenance postponed: database unavailable (%s)", e)
            await asyncio.sleep(PARTITION_RETRY_S)
            continue
        if made or dropped:
            log.info("readings partitions: %d created, %d dropped past retention", made, dropped)
        await asyncio.sleep(3600)


async def _run_background(*jobs: Job) -> None:
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


def _duty_sender(server: GB26875Server | None) -> DutySender:
    """Send a duty check (control 91, the minutes as its byte) and tell how the device took it."""

    async def send(device_id: str, minutes: int) -> SendOutcome:
        if server is None:
            return "unreachable"
        try:
            await server.request(int(device_id.removeprefix("uitd-")), DUTY_CHECK, bytes([minutes]))
        except NotConnected:
            return "unreachable"
        except (RequestError, ConnectionError):
            return "sent"  # not confirmed: missed unless the answer still comes
        return "confirmed"

    return send


def _gb26875_server(
    settings: Settings, pipeline: Pipeline, clock: Clock, pool: asyncpg.Pool
) -> GB26875Server | None:
    """The GB/T 26875.3 listener feeding the pipeline; a frame is confirmed once durably written.
    Shield changes of panel points are kept for supervision (`devices.shielded`) once written."""
    if not settings.gb26875_enabled:
        return None

    async def submit(readings: list[Reading]) -> None:
        await (await pipeline.submit(readings, lane=lane_for(readings), transport="tcp", source="tcp:gb26875"))
        await shielded.record(pool, readings)

    async def dead_letter(raw: bytes, source: str, reason: str) -> None:
        await (await pipeline.dead_letter("tcp", source, reason, raw))

    return GB26875Server(
        submit, dead_letter, host=settings.gb26875_host, port=settings.gb26875_port, tz=settings.device_tz,
        under_test=settings.gb26875_under_test,
        frame_deadline_s=settings.gb26875_frame_deadline_s, presession_timeout_s=settings.gb26875_presession_timeout_s,
        takeover_silence_s=settings.gb26875_takeover_silence_s, max_connections=settings.gb26875_max_connections,
        max_presession_per_peer=settings.gb26875_max_presession_per_peer, allow_peers=settings.gb26875_allow_peers,
        clock=lambda: clock() / 1000,
    )
