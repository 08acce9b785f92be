"""Runs one consumer per subscription push source (CONTRACT §3 v2).

At start-up every source whose platform is a subscription kind gets a consumer; `changed(name)`
(called by the push-source routes after a create, replace or delete) stops that source's consumer
and starts the one its row now asks for. Every `RECONCILE_S` the rows are read again, so the other
instances of a deployment follow a change made through one of them. On shutdown each consumer
lets its messages in flight commit and acknowledges them before it closes. Each consumer's state is on `/metrics`
(`mx_subscription_*{source,platform}`) and in the source's GET (`state`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from devices.db_errors import UNAVAILABLE
from ingest.notices import PlatformNotices
from ingest.transports.http_push import PushContext

from .base import Consumer
from .handle import subscription_handle
from .kinds import KINDS, SUBSCRIPTION_PLATFORMS, subscription_kind

log = logging.getLogger(__name__)

#: How often the consumers are reconciled with `push_sources`.
RECONCILE_S = 30.0
#: Default longest wait for one message's commit before it is given back (`config.commit_timeout_s`).
COMMIT_TIMEOUT_S = 30.0


def commit_timeout(config: Mapping[str, Any]) -> float:
    value = config.get("commit_timeout_s", COMMIT_TIMEOUT_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 600:
        raise ValueError("config.commit_timeout_s 必须是 0.1..600 的秒数 / must be seconds in 0.1..600")
    return float(value)


_SOURCES = "SELECT name, platform, profile, config FROM push_sources"


@dataclass
class _Running:
    platform: str
    consumer: Consumer
    task: asyncio.Task[None]
    row: tuple[str, str | None, str]  # what it was started from: platform, profile, config


def _signature(row: asyncpg.Record) -> tuple[str, str | None, str]:
    config = row["config"]
    if not isinstance(config, str):
        config = json.dumps(config)
    return row["platform"], row["profile"], json.dumps(json.loads(config), sort_keys=True)


class Subscriptions:
    """The supervisor; the push-source routes see it as `devices.api.SubscriptionControl`."""

    def __init__(
        self, pool: asyncpg.Pool, push: PushContext, devices: PlatformNotices, registry: CollectorRegistry
    ) -> None:
        self.pool = pool
        self.push = push
        self.devices = devices
        self.running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._refused: dict[str, tuple[str, str | None, str]] = {}  # rows that cannot run, said once
        self._collector = _Collector(self)
        registry.register(self._collector)
        self._registry = registry

    # --- what the routes call ----------------------------------------------------------------------
    def check(self, platform: str, config: Mapping[str, Any]) -> None:
        """`ValueError` (with the reason) unless `config` is one `platform` can run."""
        subscription_kind(platform).check({k: v for k, v in config.items() if k != "commit_timeout_s"})
        commit_timeout(config)

    def secrets(self, platform: str) -> tuple[str, ...]:
        kind = KINDS.get(platform)
        return kind.secrets if kind is not None else ()

    def state(self, name: str) -> dict[str, Any] | None:
        run = self.running.get(name)
        return None if run is None else asdict(run.consumer.state)

    async def changed(self, name: str) -> None:
        """Restart (or stop) the consumer of `name` after its row changed."""
        async with self._lock:
            if not self._started:
                return  # run() reads every row when it starts
            await self._stop(name)
            self._refused.pop(name, None)
            row = await self.pool.fetchrow(f"{_SOURCES} WHERE name = $1", name)
            if row is not None and row["platform"] in SUBSCRIPTION_PLATFORMS:
                self._start(row)

    # --- the background job --------------------------------------------------------------------------
    async def run(self) -> None:
        """Start a consumer per subscription source, follow the table every `RECONCILE_S`; on
        cancellation stop them all gracefully."""
        try:
            while True:
                try:
                    await self.reconcile()
                except UNAVAILABLE as e:
                    log.warning("push sources not re-read: database unavailable (%s)", e)
                await asyncio.sleep(RECONCILE_S)
        finally:
            self._started = False
            await asyncio.shield(self._stop_all())
            self._registry.unregister(self._collector)

    async def reconcile(self) -> None:
        """Start, restart or stop consumers so that they match the subscription rows."""
        async with self._lock:
            rows = {r["name"]: r for r in await self.pool.fetch(
                f"{_SOURCES} WHERE platform = ANY($1::text[])", list(SUBSCRIPTION_PLATFORMS)
            )}
            for name in [n for n, run in self.running.items() if n not in rows or run.row != _signature(rows[n])]:
                await self._stop(name)
            for name, row in rows.items():
                if name not in self.running and self._refused.get(name) != _signature(row):
                    self._start(row)
            self._started = True

    def _start(self, row: asyncpg.Record) -> None:
        name, platform = row["name"], row["platform"]
        config = row["config"]
        if isinstance(config, str):
            config = json.loads(config)
        try:
            kind = subscription_kind(platform)
            timeout_s = commit_timeout(config)
            consumer = kind.build({k: v for k, v in config.items() if k != "commit_timeout_s"}, f"{platform}:{name}")
        except ValueError as e:  # a row written before this build's checks: it stays idle, said once
            log.error("push source %s (%s) is not consumed: %s", name, platform, e)
            self._refused[name] = _signature(row)
            return
        handle = subscription_handle(self.push, self.devices, kind, source=name, profile=row["profile"],
                                     commit_timeout_s=timeout_s)
        task = asyncio.create_task(consumer.run(handle), name=f"subscription:{name}")
        task.add_done_callback(lambda t: _report_end(name, t))
        self.running[name] = _Running(platform, consumer, task, _signature(row))
        log.info("consuming push source %s (%s)", name, platform)

    async def _stop(self, name: str) -> None:
        run = self.running.pop(name, None)
        if run is not None:
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop(name) for name in list(self.running)), return_exceptions=True)


def _report_end(name: str, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the consumer of push source %s stopped: %r", name, task.exception())


class _Collector(Collector):
    """`mx_subscription_*{source,platform}` from the consumers' states, read at scrape time."""

    def __init__(self, subs: Subscriptions) -> None:
        self.subs = subs

    def collect(self) -> Iterator[Metric]:
        labels = ["source", "platform"]
        connected = GaugeMetricFamily("mx_subscription_connected", "1 while the consumer is connected", labels=labels)
        messages = CounterMetricFamily("mx_subscription_messages", "Messages acknowledged after commit",
                                       labels=labels)
        redelivered = CounterMetricFamily("mx_subscription_redelivered", "Messages given back for redelivery",
                                          labels=labels)
        lag = GaugeMetricFamily("mx_subscription_lag", "Backlog the broker reports (absent when unknown)",
                                labels=labels)
        for name, run in list(self.subs.running.items()):
            state, key = run.consumer.state, [name, run.platform]
            connected.add_metric(key, 1.0 if state.connected else 0.0)
            messages.add_metric(key, state.messages)
            redelivered.add_metric(key, state.redelivered)
            if state.lag is not None:
                lag.add_metric(key, state.lag)
        yield from (connected, messages, redelivered, lag)
