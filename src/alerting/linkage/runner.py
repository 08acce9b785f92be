"""The linkage runner (联动, CONTRACT §10): the edge where `alerting.linkage.policy` meets the alarm
stream, the registry and the command service.

It follows the alarm event stream (the hub, which replays from `alarm_events` after a gap or a
restart, from the event saved in `linkage_progress`). A `raised` or `upgraded` event of a type
that calls for a command is planned (`policy.plan`) and recorded once per (alarm, command) in
`alarm_linkage`, with a `linkage_sent` or `linkage_offered` entry (actor `linkage`) on the
alarm's timeline; an `auto` command is then sent. Its end comes back through
`CommandService.on_result`: each is on the timeline (`linkage_acked`, `linkage_failed`,
`linkage_timeout`); a failed or timed-out one raises `linkage_failed` for the device (through the
lifecycle, like any decision), which clears on a late `ok` or once the device reports the
resulting state (`valve_closed`, `breaker_tripped`, `port_cutoff`; looked for every `poll_s`).

Operators send offered commands (`send_offer`); an opposite command (`valve_open`,
`breaker_close`, `port_enable`) to a device that an open alarm's linkage acted on needs an
override with a note (`holding`, `overridden`), both on that alarm's timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from alerting.lifecycle import Alarm, AlarmLifecycle, Change, to_dt
from alerting.linkage import store
from alerting.linkage.policy import (
    ACTUATOR_METRIC,
    LINKAGE_TYPES,
    RESULT_EVENT,
    Action,
    AlarmFacts,
    DeviceFacts,
    failed_decision,
    plan,
    recovered_decision,
    target,
)
from alerting.stream import AlarmHub
from devices.clock import Clock
from devices.commands import OPPOSITE, CommandService, InvalidCommand
from devices.db_errors import UNAVAILABLE
from devices.fleet import FLAPPING, Fleet
from devices.kinds import Kind

log = logging.getLogger(__name__)

ACTOR = "linkage"
#: Command ends waiting to be recorded (they are rare: one per linkage command).
RESULTS_MAX = 10_000
PROGRESS_EVERY_S = 5.0
#: Pause before following again after the stream ended (the hub cut this subscriber off or closed).
RESUME_S = 0.5
DB_ERRORS = (*UNAVAILABLE, asyncpg.PostgresError)
_FORWARD = {opposite: forward for forward, opposite in OPPOSITE.items()}


class NothingOffered(Exception):
    """The alarm has no linkage command waiting for an operator."""


class AlarmClosed(Exception):
    """The alarm is resolved or cleared and acknowledged: nothing is sent for it any more."""


@dataclass(frozen=True, slots=True)
class Result:
    cmd_id: uuid.UUID
    device_id: str
    cmd: str
    state: str
    detail: str


def _everywhere(_region: str | None) -> bool:
    return True


def reported_in(evidence: Sequence[Mapping[str, Any]], device_id: str, metric: str) -> str | None:
    """The newest value of `metric` the alarm's evidence shows for the device."""
    for entry in reversed(evidence):
        if entry.get("device_id") in (device_id, None) and isinstance(entry.get(metric), str):
            return str(entry[metric])
    return None


class LinkageRunner:
    def __init__(
        self, pool: asyncpg.Pool, hub: AlarmHub, lifecycle: AlarmLifecycle, commands: CommandService, fleet: Fleet,
        clock: Clock, *, poll_s: float = 5.0,
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.lifecycle = lifecycle
        self.commands = commands
        self.fleet = fleet
        self.clock = clock
        self.poll_s = poll_s
        self._results: asyncio.Queue[Result] = asyncio.Queue(RESULTS_MAX)

    async def run(self) -> None:
        """Follow alarms, record command ends and watch failed linkage, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow())
            tg.create_task(self._record_results())
            tg.create_task(self._watch_failed())

    # --- alarms -> commands ------------------------------------------------------------------
    async def _follow(self) -> None:
        last: int | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                if last is None:
                    last = await store.progress(self.pool)
                saved_at, saved = loop.time(), last
                async for event in self.hub.events(_everywhere, last):
                    if event is not None and event.event_id is not None:
                        await self._consider(event.event_id, event.data)
                        last = event.event_id
                    if last != saved and loop.time() - saved_at >= PROGRESS_EVERY_S:
                        await store.save_progress(self.pool, last)
                        saved_at, saved = loop.time(), last
                await asyncio.sleep(RESUME_S)  # cut off for falling behind, or the hub closed: resume
            except DB_ERRORS as e:
                log.warning("linkage runner paused (%s); resuming after event %s", e, last)
                await asyncio.sleep(1)

    async def _consider(self, event_id: int, alarm: dict[str, Any]) -> None:
        """`consider`, retried (the caller resumes) while the database fails; any other failure is
        logged and the event passed over, so that one odd event never stops linkage."""
        try:
            await self.consider(event_id, alarm)
        except DB_ERRORS:
            raise
        except Exception:
            log.exception("linkage: alarm event %d not handled", event_id)

    async def consider(self, event_id: int, alarm: dict[str, Any]) -> Action | None:
        """Plan and record (and send, when `auto`) the linkage one alarm event calls for."""
        device_ids = alarm.get("device_ids") or []
        if alarm.get("type") not in LINKAGE_TYPES or len(device_ids) != 1:
            return None
        action_name = await self.pool.fetchval("SELECT action FROM alarm_events WHERE event_id = $1", event_id)
        if action_name not in ("raised", "upgraded"):
            return None
        facts = AlarmFacts(alarm["type"], alarm["severity"], alarm["response"], alarm["status"], alarm["rule"],
                           alarm.get("evidence") or [])
        goal = target(facts)
        context = await store.device_context(self.pool, device_ids[0])
        if goal is None or context is None:
            return None
        row, unit_policy = context
        device = await self._device(row, facts, goal.cmd)
        action = plan(facts, device, unit_policy)
        if action is not None:
            await self._record(int(alarm["alarm_id"]), device, action)
        return action

    async def _device(self, row: asyncpg.Record, alarm: AlarmFacts, cmd: str) -> DeviceFacts:
        device_id = row["device_id"]
        slot = self.fleet.slot(device_id)
        flapping = slot >= 0 and bool(int(self.fleet.flags[slot]) & FLAPPING)
        metric = ACTUATOR_METRIC.get(cmd)
        reported: dict[str, str] = {}
        if metric is not None:
            value = reported_in(alarm.evidence, device_id, metric) or await store.reported(
                self.pool, device_id, metric, to_dt(self.clock()))
            if value is not None:
                reported[metric] = value
        return DeviceFacts(device_id, Kind.parse(row["kind"]), row["linkage"], flapping, reported)

    async def _record(self, alarm_id: int, device: DeviceFacts, action: Action) -> None:
        cmd_id = uuid.uuid4() if action.mode == "auto" else None

        async def step(conn: asyncpg.Connection, alarm: Alarm, now_ms: int) -> Change | None:
            if not await store.record(conn, alarm.alarm_id, device.device_id, action, cmd_id, to_dt(now_ms)):
                return None  # once per alarm
            detail = {"cmd": action.cmd, "params": action.params, "device_id": device.device_id,
                      "mode": action.mode, "policy": action.policy_key}
            if cmd_id is not None:
                detail["cmd_id"] = str(cmd_id)
            return Change(alarm, "linkage_sent" if cmd_id else "linkage_offered", detail, actor=ACTOR)

        change = await self.lifecycle.act(alarm_id, step)
        if change is None and cmd_id is not None:  # recorded before: sent unless its sending failed
            cmd_id = await store.unsent(self.pool, alarm_id, action.cmd)
        if cmd_id is not None:
            await self._send(device.device_id, device.kind, action.cmd, action.params, cmd_id, ACTOR)

    async def _send(
        self, device_id: str, kind: Kind, cmd: str, params: dict[str, Any], cmd_id: uuid.UUID, actor: str
    ) -> None:
        try:
            await self.commands.send(device_id, kind, cmd, params, timeout_s=None, actor=actor, cmd_id=cmd_id)
        except InvalidCommand as e:  # the device's kind changed meanwhile: recorded as a failed linkage
            self.on_command_result_nowait(Result(cmd_id, device_id, cmd, "failed", str(e)))

    # --- operators ---------------------------------------------------------------------------
    async def send_offer(self, alarm_id: int, cmd: str | None, actor: str) -> dict[str, Any]:
        """Send the alarm's offered command (`cmd`, or its only one) for an operator; answer the
        command. Raises AlarmNotFound, AlarmClosed or NothingOffered."""
        cmd_id = uuid.uuid4()
        taken: dict[str, Any] = {}

        async def step(conn: asyncpg.Connection, alarm: Alarm, now_ms: int) -> Change | None:
            if alarm.status in ("resolved", "cleared_ack"):
                raise AlarmClosed(f"告警已关闭 / alarm {alarm.alarm_id} is {alarm.status}")
            row = await store.take_offer(conn, alarm.alarm_id, cmd, cmd_id, actor, to_dt(now_ms))
            if row is None:
                raise NothingOffered(f"告警没有待确认的联动 / alarm {alarm.alarm_id} has no linkage command offered"
                                     + (f" ({cmd})" if cmd else ""))
            taken.update(device_id=row["device_id"], cmd=row["cmd"], params=json.loads(row["params"]))
            detail = {**taken, "cmd_id": str(cmd_id), "offered": True}
            return Change(alarm, "linkage_sent", detail, actor=actor)

        await self.lifecycle.act(alarm_id, step)
        kind = await self.pool.fetchval("SELECT kind FROM devices WHERE device_id = $1", taken["device_id"])
        await self._send(taken["device_id"], Kind.parse(kind), taken["cmd"], taken["params"], cmd_id, actor)
        return {"cmd_id": str(cmd_id), **taken}

    async def holding(self, device_id: str, cmd: str) -> list[int]:
        """The open alarms whose linkage acted on the device, when `cmd` would undo it (else none)."""
        forward = _FORWARD.get(cmd)
        return [] if forward is None else await store.holding(self.pool, device_id, forward)

    async def overridden(
        self, alarm_ids: Sequence[int], device_id: str, cmd: str, note: str, actor: str, cmd_id: str
    ) -> None:
        """An operator undid a linkage: the override and its note on each holding alarm's timeline."""
        detail = {"cmd": cmd, "device_id": device_id, "note": note, "cmd_id": cmd_id, "override": True}

        async def step(conn: asyncpg.Connection, alarm: Alarm, now_ms: int) -> Change | None:
            return Change(alarm, "linkage_overridden", detail, actor=actor)

        for alarm_id in alarm_ids:
            await self.lifecycle.act(alarm_id, step)

    # --- command ends -------------------------------------------------------------------------
    async def on_command_result(self, cmd_id: uuid.UUID, device_id: str, cmd: str, state: str, detail: str) -> None:
        """`CommandService.on_result`: queued, recorded by `run` (never blocks the transport)."""
        self.on_command_result_nowait(Result(cmd_id, device_id, cmd, state, detail))

    def on_command_result_nowait(self, result: Result) -> None:
        try:
            self._results.put_nowait(result)
        except asyncio.QueueFull:
            log.error("linkage: end of command %s (%s) not recorded: %d ends waiting", result.cmd_id, result.state,
                      RESULTS_MAX)

    async def _record_results(self) -> None:
        while True:
            result = await self._results.get()
            while True:
                try:
                    await self.result(result)
                    break
                except DB_ERRORS as e:
                    log.warning("linkage: end of command %s not recorded yet (%s); retrying", result.cmd_id, e)
                    await asyncio.sleep(1)
                except Exception:
                    log.exception("linkage: end of command %s (%s) not recorded", result.cmd_id, result.state)
                    break

    async def result(self, r: Result) -> None:
        """Record a command's end if it was a linkage command: on the alarm's timeline, and
        `linkage_failed` raised (failed, or timed out without the resulting state) or cleared
        (a late `ok`)."""
        now = self.clock()
        row = await store.result(self.pool, r.cmd_id, r.state, to_dt(now))
        if row is None:
            return
        place: dict[str, str | None] = {}

        async def step(conn: asyncpg.Connection, alarm: Alarm, now_ms: int) -> Change | None:
            place["unit_id"] = alarm.unit_id
            detail = {"cmd": r.cmd, "device_id": r.device_id, "cmd_id": str(r.cmd_id), "detail": r.detail}
            return Change(alarm, f"linkage_{r.state}", detail, actor=ACTOR)

        await self.lifecycle.act(row["alarm_id"], step)
        unit_id = place.get("unit_id")
        if r.state == "failed" or (r.state == "timeout" and not await self._state_seen(row)):
            evidence = {"alarm_id": str(row["alarm_id"]), "cmd": r.cmd, "cmd_id": str(r.cmd_id), "state": r.state,
                        "detail": r.detail, "device_id": r.device_id, "ts_ms": now}
            await self.lifecycle.handle([failed_decision(r.device_id, unit_id, now, evidence)])
        elif r.state == "acked" and row["was"] in ("failed", "timeout"):
            await self.lifecycle.handle([recovered_decision(r.device_id, unit_id, now, "linkage.late_ok")])

    async def _state_seen(self, row: asyncpg.Record) -> bool:
        event = RESULT_EVENT.get(row["cmd"])
        return event is not None and await store.state_seen(self.pool, row["device_id"], event, row["created_at"])

    async def _watch_failed(self) -> None:
        """Clear `linkage_failed` once its device reports the state the command asked for."""
        while True:
            try:
                for row in await store.failing(self.pool):
                    if await self._state_seen(row):
                        decision = recovered_decision(row["device_id"], row["unit_id"], self.clock(), "linkage.state")
                        await self.lifecycle.handle([decision])
            except DB_ERRORS as e:
                log.warning("linkage: failed commands not checked (%s)", e)
            await asyncio.sleep(self.poll_s)
