"""Readings from every transport -> dedupe -> micro-batches -> fleet/alerting -> durable writes.

Two lanes: `evt` (attention events) is processed as soon as anything is there; `tel`
(heartbeats, periodic values, gateway batches) is a group commit: processed at once while the
writer is idle, and while a write is in flight it gathers what arrives, up to `batch_max`
readings or `batch_ms` (the longest it waits, e.g. while PostgreSQL is down). The writer writes
whatever is buffered in one transaction. So a lone report is written without waiting for any
timer, and under load batches grow with the write time. Alerting runs before storage, so alarms
reach the stream even while PostgreSQL is slow or down. Processed readings wait in a write
buffer bounded by `queue_max` readings (the `evt` lane has a reserve on top, so alarms still pass
when telemetry has filled it); when it is full, `submit` blocks, the transports stop reading and
the broker keeps the backlog.

Every submission carries a future that resolves once its readings (or dead letters) are
committed to PostgreSQL, and so are the alarm decisions taken on them when the batch handler
answers a future of those (it may queue them rather than wait, so that the evt lane keeps
deciding while PostgreSQL is down): transports acknowledge the message (MQTT PUBACK, HTTP 200,
GB/T 26875 confirm) only then. So the at-least-once guarantee is "durably written", not "queued".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import numpy as np

from devices.batch import ReadingColumns
from devices.clock import Clock, wall_clock_ms
from devices.db_errors import UNAVAILABLE
from devices.fleet import QUARANTINED, Fleet
from devices.kinds import ATTENTION_EVENTS
from devices.reading import Reading
from ingest.clock_skew import DEFAULT_TOLERANCE_S, check_clocks
from ingest.components import keep_components_of_panels
from ingest.metrics import IngestMetrics
from ingest.registration import AutoRegistration
from ingest.storage import DeadLetter, ReadingStore, prepare_many

log = logging.getLogger(__name__)

Lane = Literal["evt", "tel"]
#: Answers None, or a future that resolves once what it decided on the batch is committed.
BatchHandler = Callable[[list[Reading], ReadingColumns], Awaitable["asyncio.Future[None] | None"]]
#: The bytes each reading of a submission came from, by the reading's index: the payload as
#: received for a single report, the element's own text for a batch element.
RawOf = Callable[[int], bytes]
EVT_RESERVE = 10_000  # readings the evt lane may add beyond queue_max
#: Event-loop turns without a new submission that end an `evt` batch, and the longest an
#: `evt` batch gathers (`Pipeline._gather`).
EVT_IDLE_TURNS = 4
EVT_GATHER_S = 0.1
WRITE_CHUNK = 20_000  # readings per COPY


def _release(waiters: list[asyncio.Future[None]], decided: asyncio.Future[None] | None) -> None:
    """Acknowledge a written flush, unless its decisions were never committed (shutdown)."""
    if decided is not None and (decided.cancelled() or decided.exception() is not None):
        return
    for w in waiters:
        if not w.done():
            w.set_result(None)


def _release_when_decided(waiters: list[asyncio.Future[None]], decided: asyncio.Future[None]) -> None:
    _release(waiters, decided)


def lane_for(readings: list[Reading]) -> Lane:
    """`evt` when any reading needs attention (an alarm on `tel` is still an alarm), else `tel`."""
    return "evt" if any(r.event in ATTENTION_EVENTS for r in readings) else "tel"


def default_codec(transport: str) -> str:
    """The codec of a submission whose transport did not name one (GB/T 26875 frames over TCP)."""
    return "gb26875" if transport == "tcp" else "unknown"


def _family(transport: str) -> str:
    """The transport label of the per-codec counters: `http` for `http:onenet` (the codec says which)."""
    return transport.partition(":")[0]


@dataclass(slots=True)
class Submission:
    readings: list[Reading]
    transport: str
    source: str
    done: asyncio.Future[None]
    codec: str = "unknown"
    raw: bytes | RawOf | None = None
    origin: str = ""  # who sent it, for the auto-registration bounds (ingest.registration); else `source`

    def raw_of(self, index: int) -> bytes | None:
        """The bytes reading `index` came from, as received; None if the transport did not say."""
        if self.raw is None or isinstance(self.raw, bytes):
            return self.raw
        return self.raw(index)


@dataclass(slots=True)
class Flush:
    """What one processed batch needs written, and whose acknowledgements wait on it."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    new_devices: list[tuple[str, str]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    #: the batch handler's decisions on these readings, when it wrote them asynchronously
    decided: asyncio.Future[None] | None = None

    def size(self) -> int:
        return len(self.rows) + len(self.dead_letters)


class Deduper:
    """Remembers (detector, device time, dedup key) for at least `window_ms`, in two rotating
    generations: the same identity as the database's unique index on readings. An untimed
    report (a seq, no device time) has -1 for its time: its copies meet on (detector, seq)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.current: set[tuple[str, int, int]] = set()
        self.previous: set[tuple[str, int, int]] = set()
        self.rotated_ms = 0

    def seen(self, key: tuple[str, int, int], now_ms: int) -> bool:
        if now_ms - self.rotated_ms >= self.window_ms:
            self.previous, self.current, self.rotated_ms = self.current, set(), now_ms
        if key in self.current or key in self.previous:
            return True
        self.current.add(key)
        return False

    def fresh(self, keys: list[tuple[str, int, int]], now_ms: int) -> list[bool] | None:
        """`not seen(key, now_ms)` for each key in order; None when every key is new (the
        common case, answered by set operations without a Python loop)."""
        if not keys:
            return None
        if now_ms - self.rotated_ms >= self.window_ms:
            self.previous, self.current, self.rotated_ms = self.current, set(), now_ms
        current, previous = self.current, self.previous
        before = len(current)
        if current.isdisjoint(keys) and (not previous or previous.isdisjoint(keys)):
            current.update(keys)
            if len(current) - before == len(keys):
                return None
            current.difference_update(keys)  # a key repeats within `keys`: one by one, in order
        seen = self.seen
        return [not seen(key, now_ms) for key in keys]


class Pipeline:
    def __init__(
        self,
        *,
        fleet: Fleet,
        store: ReadingStore,
        on_batch: BatchHandler,
        metrics: IngestMetrics,
        batch_max: int = 5000,
        batch_ms: int = 20,
        queue_max: int = 200_000,
        dedupe_window_s: int = 600,
        unknown_devices: str = "quarantine",
        quarantine_per_min: int = 100,
        quarantine_max: int = 10_000,
        clock: Clock = wall_clock_ms,
        clock_skew_tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_components: int = 4096,
    ) -> None:
        self.fleet = fleet
        self.store = store
        self.on_batch = on_batch
        self.metrics = metrics
        self.batch_max = batch_max
        self.batch_s = batch_ms / 1000
        self.queue_max = queue_max
        metrics.buffer_limit.set(queue_max)
        self.unknown_devices = unknown_devices
        self.auto_registration = AutoRegistration(
            per_min=quarantine_per_min, cap=quarantine_max,
            count_quarantined=lambda: int(np.count_nonzero(fleet.flags[: fleet.size] & QUARANTINED)),
        )
        self.clock = clock
        self.clock_skew_ms = int(clock_skew_tolerance_s * 1000)  # device times further ahead: `ingest.clock_skew`
        self.max_components = max_components  # per device (`Fleet.add_component`); beyond, dead letters
        self.dedupe = Deduper(dedupe_window_s * 1000)
        store.untimed_window_ms = dedupe_window_s * 1000  # one dedupe window, in memory and in the database
        self.lanes: dict[Lane, asyncio.Queue[Submission]] = {
            "evt": asyncio.Queue(maxsize=10_000),
            "tel": asyncio.Queue(maxsize=max(100, queue_max // 50)),
        }
        #: Clear while the evt lane gathers a batch: telemetry starts no batch meanwhile.
        self._evt_not_gathering = asyncio.Event()
        self._evt_not_gathering.set()
        self.buffer: deque[Flush] = deque()
        self.buffered = 0
        self.buffer_changed = asyncio.Condition()
        #: Set while nothing is buffered nor being written: a telemetry batch then goes at once.
        self.writer_idle = asyncio.Event()
        self.writer_idle.set()
        #: Set by a telemetry submission or an idle writer: what a gathering `tel` batch waits on.
        self._tel_wake = asyncio.Event()
        self.db_up = True
        #: cleared by `drain`: submissions then wait, unacknowledged, until shutdown cancels them
        self.accepting = asyncio.Event()
        self.accepting.set()
        self.unwritten: set[asyncio.Future[None]] = set()  # answered futures not yet resolved

    # --- transports call these -------------------------------------------------------------
    async def submit(
        self,
        readings: list[Reading],
        *,
        lane: Lane,
        transport: str,
        source: str,
        codec: str | None = None,
        raw: bytes | RawOf | None = None,
        origin: str | None = None,
    ) -> asyncio.Future[None]:
        """Queue readings; answer a future resolved once they are durably written.
        Waits while the lane is full: that wait is the backpressure transports feel.

        `codec` names the decoder that produced them (counted per transport and codec); a caller
        that names none (GB/T 26875 over TCP) also has its payload counted as received here.
        `raw` is what a rejected reading is dead-lettered with: the payload as received, or a
        function from reading index to the bytes of its batch element. `origin` is who sent them,
        for the auto-registration bounds, when that is not `source` (`ingest.registration`)."""
        if not self.accepting.is_set():
            await self.accepting.wait()
        done = self._unwritten_future()
        self.metrics.received.labels(transport, lane).inc(len(readings))
        if codec is None:
            codec = default_codec(transport)
            self.metrics.codec_received.labels(_family(transport), codec).inc()
        self.metrics.codec_decoded.labels(_family(transport), codec).inc(len(readings))
        await self.lanes[lane].put(Submission(readings, transport, source, done, codec, raw, origin or source))
        if lane == "tel":
            self._tel_wake.set()
        self.metrics.queue_depth.labels(lane).set(self.lanes[lane].qsize())
        return done

    async def dead_letter(
        self, transport: str, source: str, reason: str, raw: bytes, *, codec: str | None = None,
        cause: str = "undecodable",
    ) -> asyncio.Future[None]:
        """Keep rejected input with its reason; answer a future resolved once it is written.
        `cause` is the `reason` label of mx_ingest_dead_letters_total (ingest.metrics)."""
        if not self.accepting.is_set():
            await self.accepting.wait()
        self.metrics.dead_letters.labels(transport, cause).inc()
        self.metrics.codec_dead_letters.labels(_family(transport), codec or default_codec(transport)).inc()
        flush = Flush(dead_letters=[DeadLetter(transport, source, reason, raw, self.clock())])
        done = self._unwritten_future()
        flush.waiters.append(done)
        await self._buffer(flush, lane="evt")
        return done

    def _unwritten_future(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.unwritten.add(done)
        done.add_done_callback(self.unwritten.discard)
        return done

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking submissions, then wait until what was taken is written and so acknowledged
        by its transport; answer whether all of it was within `timeout_s`. The lanes, the writer
        and the batch handler must still run. A submission made from now on waits, unacknowledged,
        until shutdown cancels it: the broker redelivers it to the next session."""
        self.accepting.clear()
        pending = {f for f in self.unwritten if not f.done()}
        if pending:
            _, pending = await asyncio.wait(pending, timeout=timeout_s)
        await asyncio.sleep(0)  # the transports' acknowledgement callbacks run now
        return not pending

    # --- background work -------------------------------------------------------------------
    async def run(self) -> None:
        """Run both lane consumers and the writer until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume("evt"))
            tg.create_task(self._consume("tel"))
            tg.create_task(self._write_forever())

    async def _consume(self, lane: Lane) -> None:
        """Take batches of submissions: on `evt` what is there, on `tel` what is there once the
        writer is idle (`_fill`)."""
        queue = self.lanes[lane]
        while True:
            batch = [await queue.get()]
            count = len(batch[0].readings)
            if lane == "tel":
                count = await self._fill(queue, batch, count)
                await self._evt_not_gathering.wait()
            else:
                count = await self._gather(queue, batch, count)
            while count < self.batch_max and not queue.empty():
                batch.append(queue.get_nowait())
                count += len(batch[-1].readings)
            self.metrics.queue_depth.labels(lane).set(queue.qsize())
            await self._process(batch, lane)

    async def _gather(self, queue: asyncio.Queue[Submission], batch: list[Submission], count: int) -> int:
        """Add to an `evt` batch what arrives while the loop turns, until EVT_IDLE_TURNS turns
        bring nothing or EVT_GATHER_S has passed; answer its count. The MQTT client
        reads one packet per turn, so without this each alarm of a flood would be a batch of its
        own, correlated alone, and the lane would fall behind a single flooding detector. The
        telemetry lane starts no batch meanwhile, so alarms keep their priority."""
        idle = 0
        loop = asyncio.get_running_loop()
        until = loop.time() + EVT_GATHER_S
        self._evt_not_gathering.clear()
        try:
            while idle < EVT_IDLE_TURNS and count < self.batch_max and loop.time() < until:
                await asyncio.sleep(0)
                if queue.empty():
                    idle += 1
                    continue
                idle = 0
                while count < self.batch_max and not queue.empty():
                    batch.append(queue.get_nowait())
                    count += len(batch[-1].readings)
        finally:
            self._evt_not_gathering.set()
        return count

    async def _fill(self, queue: asyncio.Queue[Submission], batch: list[Submission], count: int) -> int:
        """Group commit: add to `batch` what arrives until the writer is idle, it holds
        `batch_max` readings or `batch_ms` has passed; answer its count. An idle writer takes a
        lone submission at once (after one loop turn, for what arrived with it); a busy one
        makes the batch gather what comes during its write. One timer per batch, and a wake-up
        per submission or finished write (`_tel_wake`), as cheap as a `get` per submission."""
        await asyncio.sleep(0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.batch_s):
                while True:
                    while count < self.batch_max and not queue.empty():
                        batch.append(queue.get_nowait())
                        count += len(batch[-1].readings)
                    if count >= self.batch_max or self.writer_idle.is_set():
                        break
                    self._tel_wake.clear()
                    await self._tel_wake.wait()
        return count

    async def _process(self, batch: list[Submission], lane: Lane) -> None:
        now = self.clock()
        flush = Flush(waiters=[s.done for s in batch])
        accepted: list[Reading] = []
        slots: list[int] = []
        rows = flush.rows
        every = [r for sub in batch for r in sub.readings]
        check_clocks(every, self.clock_skew_ms, self.fleet.clock_skew)  # one place every transport passes
        keep_components_of_panels(every)
        known = self._registered_slots(every)
        offset = 0
        for sub in batch:
            readings = sub.readings
            keys, prepared = prepare_many(readings, sub.source)  # identity and metrics JSON, once per reading
            fresh = self.dedupe.fresh(keys, now)
            duplicates = 0
            for index, r in enumerate(readings):
                if fresh is not None and not fresh[index]:
                    duplicates += 1
                    continue
                slot = known[offset + index]
                if slot < 0:
                    slot = self._slot_for(r, sub, index, flush, now)
                    if slot < 0:
                        continue
                accepted.append(r)
                slots.append(slot)
                rows.append(prepared[index])
            offset += len(readings)
            if duplicates:
                self.metrics.duplicates.labels(sub.transport).inc(duplicates)
        if accepted:
            self.metrics.batch_size.labels(lane).observe(len(accepted))
            columns = ReadingColumns.from_readings(accepted, slots)  # type: ignore[arg-type]
            flush.decided = await self.on_batch(accepted, columns)
            self.metrics.processed.labels(lane).inc(len(accepted))
        await self._buffer(flush, lane)

    def _registered_slots(self, readings: list[Reading]) -> list[int]:
        """For each reading, its device's slot when `_slot_for` would answer it without doing
        anything (the device is registered with the reading's kind, and the reading names no
        component); else -1, and `_slot_for` decides. One vectorised pass over a whole batch of
        submissions instead of a fleet look-up and a kind check per reading. A device `_slot_for`
        registers meanwhile stays -1 here, and `_slot_for` finds it (no await in between)."""
        fleet = self.fleet
        n = len(readings)
        found = fleet.slots([r.device_id for r in readings])
        if fleet.size == 0 or not (found >= 0).any():
            return [-1] * n
        kinds = np.fromiter((r.kind for r in readings), np.int8, n)
        plain = np.fromiter((r.component is None for r in readings), bool, n)
        ok = (found >= 0) & plain & (fleet.kind[np.maximum(found, 0)] == kinds)
        return np.where(ok, found, -1).tolist()

    def _slot_for(self, r: Reading, sub: Submission, index: int, flush: Flush, now: int) -> int:
        """The fleet slot of a reading's detector, registering what may be registered; -1 rejects."""
        fleet = self.fleet
        slot = fleet.slot(r.device_id)
        if slot < 0:
            if self.unknown_devices == "reject":
                self._reject(flush, sub, index, "unknown_device",
                             f"unknown device {r.device_id}; register it first", now)
                return -1
            refused = self.auto_registration.refusal(r.device_id, sub.origin, now)
            if refused is not None:
                self._reject(flush, sub, index, refused.cause, refused.reason, now)
                return -1
            slot = fleet.upsert(r.device_id, r.kind, quarantined=True)
            flush.new_devices.append((r.device_id, r.kind.name))
            self.metrics.quarantined.inc()
        if int(fleet.kind[slot]) != int(r.kind):
            registered = type(r.kind)(int(fleet.kind[slot])).name
            self._reject(flush, sub, index, "kind_mismatch",
                         f"device {r.device_id} is registered as {registered}, report says {r.kind.name}", now)
            return -1
        if r.component is None:
            return slot
        comp = fleet.slot(r.detector_id)
        if comp < 0:
            comp = fleet.add_component(slot, r.detector_id, r.kind, self.max_components)
            if comp < 0:
                self._reject(flush, sub, index, "too_many_components",
                             f"设备 {r.device_id} 的部件已达上限 {self.max_components}，部件 {r.component} 未登记; "
                             f"device {r.device_id} has {self.max_components} components already", now)
        return comp

    def _reject(self, flush: Flush, sub: Submission, index: int, cause: str, reason: str, now: int) -> None:
        """Dead-letter reading `index` of `sub` with the bytes it came from; `cause` labels the metric."""
        self.metrics.dead_letters.labels(sub.transport, cause).inc()
        self.metrics.codec_dead_letters.labels(_family(sub.transport), sub.codec).inc()
        raw = sub.raw_of(index)
        if raw is None:  # a caller that kept no bytes: a description of the reading instead
            r = sub.readings[index]
            raw = repr((r.device_id, r.kind.name, r.event.name, r.ts_ms, r.seq, r.metrics)).encode()
        flush.dead_letters.append(DeadLetter(sub.transport, sub.source, reason, raw, now))

    async def _buffer(self, flush: Flush, lane: Lane) -> None:
        limit = self.queue_max + (EVT_RESERVE if lane == "evt" else 0)
        async with self.buffer_changed:
            if self.buffered + flush.size() > limit and self.buffered > 0:
                self.metrics.buffer_full.inc()
                log.warning("write buffer full (%d readings waiting for PostgreSQL); ingest is paused", self.buffered)
                await self.buffer_changed.wait_for(lambda: self.buffered + flush.size() <= limit or self.buffered == 0)
            self.buffer.append(flush)
            self.writer_idle.clear()
            self.buffered += flush.size()
            self.metrics.buffered.set(self.buffered)
            self.buffer_changed.notify_all()

    async def _write_forever(self) -> None:
        backoff = 0.2
        while True:
            async with self.buffer_changed:
                await self.buffer_changed.wait_for(lambda: bool(self.buffer))
                taken: list[Flush] = []
                size = 0
                while self.buffer and (not taken or size + self.buffer[0].size() <= WRITE_CHUNK):
                    taken.append(self.buffer.popleft())
                    size += taken[-1].size()
            merged = Flush()
            for f in taken:
                merged.rows += f.rows
                merged.new_devices += f.new_devices
                merged.dead_letters += f.dead_letters
            started = time.perf_counter()
            try:
                written = await self.store.write(merged.rows, merged.new_devices, merged.dead_letters)
            except (*UNAVAILABLE, asyncpg.PostgresError) as e:  # unavailable, or refused: held, never dropped
                async with self.buffer_changed:
                    self.buffer.extendleft(reversed(taken))
                if self.db_up:
                    log.error("PostgreSQL write failed (%s); %d readings held in memory, retrying", e, self.buffered)
                    self.db_up = False
                self.metrics.write_errors.inc()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.db_up:
                log.info("PostgreSQL writes recovered")
                self.db_up = True
            backoff = 0.2
            self.metrics.write_seconds.observe(time.perf_counter() - started)
            self.metrics.written.inc(written)
            self.metrics.duplicates.labels("storage").inc(len(merged.rows) - written)
            async with self.buffer_changed:
                self.buffered -= size
                self.metrics.buffered.set(self.buffered)
                if not self.buffer:
                    self.writer_idle.set()
                    self._tel_wake.set()
                self.buffer_changed.notify_all()
            for f in taken:
                if f.decided is None or f.decided.done():
                    _release(f.waiters, f.decided)
                else:
                    f.decided.add_done_callback(functools.partial(_release_when_decided, f.waiters))
