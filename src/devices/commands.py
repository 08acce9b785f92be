"""Downlink commands (CONTRACT §6): publish, retry, time out, and apply what a device confirms.

A command is published as `{"cmd_id", "cmd", "params", "ts"}` on `{topic_root}/down/{kind}/{id}`
and stays `sent` until the device answers `{"cmd_id", "ok", "detail"}` on `ack/{kind}/{id}`
(`acked` or `failed`). Without an answer within `timeout_s` it is published again with the same
`cmd_id` (devices must treat a repeat as one command), up to `retries` times, then it is
`timeout`. NB-IoT devices in PSM answer late: an answer after `timeout` still moves the command
to `acked`/`failed`, with the detail saying so. Every change is a `command_events` row; times
come from the injected clock. Only a confirmed `mute` mutes the device in the fleet, and only a
confirmed `set_thresholds` changes the registry and the fleet. `on_result` (wired by the root: the
linkage runner) hears every command that ends `acked`, `failed` or `timeout`.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from devices.clock import Clock
from devices.db_errors import UNAVAILABLE
from devices.fleet import NOTED_COMMANDS, Fleet
from devices.kinds import Kind
from devices.registry import InvalidSpec, merge_thresholds, parse_thresholds
from devices.thresholds import ThresholdLayers

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]

#: Command -> the kinds it applies to (None: every kind).
COMMANDS: dict[str, frozenset[Kind] | None] = {
    "mute": None,
    "self_test": None,
    "reboot": None,
    "set_thresholds": None,
    "valve_close": frozenset({Kind.gas}),
    "valve_open": frozenset({Kind.gas}),
    "breaker_trip": frozenset({Kind.electrical}),
    "breaker_close": frozenset({Kind.electrical}),
    "port_cutoff": frozenset({Kind.charger}),
    "port_enable": frozenset({Kind.charger}),
}
#: A command that cuts supply -> the one that restores it (CONTRACT §10: never sent by the service).
OPPOSITE: dict[str, str] = {"valve_close": "valve_open", "breaker_trip": "breaker_close", "port_cutoff": "port_enable"}
#: Most ports of one charging pile (`params.port` counts from 1).
MAX_PORTS = 64
STATES = ("sent", "acked", "failed", "timeout")
#: What a platform that carried a command says of it: it ended (acked, failed) or is on its way (sent).
PlatformState = Literal["acked", "failed", "sent"]
#: Told (cmd_id, device_id, cmd, end state, detail) when a command ends or a late answer changes its end.
ResultHook = Callable[[uuid.UUID, str, str, str, str], Awaitable[None]]
MUTE_DEFAULT_S = 600
#: The database unavailable (devices.db_errors), or refusing one statement: logged, retried later.
DB_ERRORS = (*UNAVAILABLE, asyncpg.PostgresError)
MAX_S = 86_400


class InvalidCommand(ValueError):
    """The command, its parameters or its target are wrong; the message says which."""


class ParamsTooLarge(InvalidCommand):
    """The parameters do not fit in what the device's kind can receive in one downlink."""


#: JSON bytes of `params` one downlink can carry to a device of each kind: battery NB-IoT
#: detectors receive tens of bytes, mains-powered devices and transmission units more.
DOWNLINK_PARAMS_BYTES: dict[Kind, int] = {
    Kind.smoke: 128, Kind.gas: 128, Kind.electrical: 512, Kind.water: 512, Kind.uitd: 1024, Kind.charger: 512,
}


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def dt_to_ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def _seconds(value: Any, name: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or not 0 < value <= MAX_S:
        raise InvalidCommand(f"{name} must be a number of seconds above 0 and at most {MAX_S}")
    return float(value)


def validate_command(cmd: str, params: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """Check a command against the device's kind; answer its normalised parameters. Raises
    `ParamsTooLarge` when they exceed the kind's downlink budget (`DOWNLINK_PARAMS_BYTES`)."""
    normalised = _normalised(cmd, params, kind)
    size = len(json.dumps(normalised, ensure_ascii=False, separators=(",", ":")).encode())
    budget = DOWNLINK_PARAMS_BYTES[kind]
    if size > budget:
        raise ParamsTooLarge(
            f"参数 {size} 字节，超过 {kind.name} 设备一次下行可接收的 {budget} 字节 / "
            f"params take {size} bytes of JSON; a {kind.name} device receives at most {budget} in one downlink"
        )
    return normalised


def _normalised(cmd: str, params: dict[str, Any], kind: Kind) -> dict[str, Any]:
    if cmd not in COMMANDS:
        raise InvalidCommand(f"unknown command {cmd!r}; commands are {', '.join(COMMANDS)}")
    kinds = COMMANDS[cmd]
    if kinds is not None and kind not in kinds:
        raise InvalidCommand(f"{cmd} applies to {', '.join(k.name for k in kinds)} devices, not {kind.name}")
    if cmd == "mute":
        return {**params, "duration_s": int(_seconds(params.get("duration_s", MUTE_DEFAULT_S), "duration_s"))}
    if cmd == "set_thresholds":
        try:
            thresholds = parse_thresholds(params.get("thresholds"))
        except InvalidSpec as e:
            raise InvalidCommand(str(e)) from None
        if not thresholds:
            raise InvalidCommand("set_thresholds needs params.thresholds, an object of threshold name -> number")
        return {**params, "thresholds": thresholds}
    if cmd in ("port_cutoff", "port_enable") and "port" in params:
        port = params["port"]
        if type(port) is not int or not 1 <= port <= MAX_PORTS:
            raise InvalidCommand(f"params.port 须为 1 至 {MAX_PORTS} 的整数（不填即全部端口） / "
                                 f"params.port must be a whole number from 1 to {MAX_PORTS} (absent: every port)")
    return params


@dataclass(slots=True)
class Pending:
    cmd_id: uuid.UUID
    device_id: str
    kind: Kind
    cmd: str
    params: dict[str, Any]
    timeout_ms: int
    attempts: int
    deadline_ms: int


def command_dict(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "cmd_id": str(r["cmd_id"]), "device_id": r["device_id"], "cmd": r["cmd"], "params": json.loads(r["params"]),
        "state": r["state"], "attempts": r["attempts"], "timeout_s": r["timeout_s"], "detail": r["detail"],
        "actor": r["actor"], "created_at": r["created_at"], "updated_at": r["updated_at"],
    }


TRANSITION = """
    WITH changed AS (
        UPDATE commands SET state = $2, detail = coalesce($3, detail), attempts = coalesce($4, attempts),
            updated_at = $5
        WHERE cmd_id = $1 AND state = ANY($6::text[]) RETURNING cmd_id)
    INSERT INTO command_events (cmd_id, at, state, detail) SELECT cmd_id, $5, $2, $3 FROM changed RETURNING id
"""


class CommandService:
    """Sends commands and follows them to an end state. `expire()` must be called periodically
    (DeviceService.run does); `on_ack` is the MQTT transport's command-answer handler."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        fleet: Fleet,
        publish: Publish,
        *,
        topic_root: str,
        clock: Clock,
        timeout_s: float = 60.0,
        retries: int = 2,
    ) -> None:
        self.pool = pool
        self.fleet = fleet
        self.publish = publish
        self.root = topic_root.rstrip("/")
        self.clock = clock
        self.timeout_s = timeout_s
        self.retries = retries
        self.pending: dict[uuid.UUID, Pending] = {}
        #: told (device_id, until_ms) of every confirmed mute; scale-out passes it to the workers
        self.on_muted: Callable[[str, int], None] | None = None
        #: told every command's end (`ResultHook`); the linkage runner follows its commands with it
        self.on_result: ResultHook | None = None
        #: told (device_id, cmd, sent_ms) of every `NOTED_COMMANDS` command sent; scale-out passes it on
        self.on_noted: Callable[[str, str, int], None] | None = None
        #: the profile and unit layers a confirmed `set_thresholds` merges with (`DeviceService` shares its own)
        self.layers = ThresholdLayers()

    async def load(self) -> int:
        """Resume following commands still `sent` (after a restart); answer how many."""
        rows = await self.pool.fetch(
            """SELECT c.cmd_id, c.device_id, c.cmd, c.params, c.attempts, c.timeout_s, c.updated_at, d.kind
               FROM commands c JOIN devices d USING (device_id) WHERE c.state = 'sent'"""
        )
        for r in rows:
            timeout_ms = round(r["timeout_s"] * 1000)
            self.pending[r["cmd_id"]] = Pending(
                r["cmd_id"], r["device_id"], Kind.parse(r["kind"]), r["cmd"], json.loads(r["params"]),
                timeout_ms, r["attempts"], dt_to_ms(r["updated_at"]) + timeout_ms,
            )
        return len(rows)

    async def send(
        self, device_id: str, kind: Kind, cmd: str, params: dict[str, Any], *, timeout_s: float | None, actor: str,
        cmd_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        """Record and publish a command (`cmd_id`: one the caller recorded first, else a new one);
        answer it. Raises `InvalidCommand`."""
        params = validate_command(cmd, params, kind)
        timeout = _seconds(timeout_s, "timeout_s") if timeout_s is not None else self.timeout_s
        now = self.clock()
        p = Pending(cmd_id or uuid.uuid4(), device_id, kind, cmd, params, round(timeout * 1000), 1,
                    now + round(timeout * 1000))
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """INSERT INTO commands
                       (cmd_id, device_id, cmd, params, state, actor, attempts, timeout_s, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, 'sent', $5, 1, $6, $7, $7) RETURNING *""",
                p.cmd_id, device_id, cmd, json.dumps(params, ensure_ascii=False), actor, timeout, ms_to_dt(now),
            )
            await conn.execute(
                "INSERT INTO command_events (cmd_id, at, state, detail) VALUES ($1, $2, 'sent', $3)",
                p.cmd_id, ms_to_dt(now), f"attempt 1 of {1 + self.retries}",
            )
        self.pending[p.cmd_id] = p
        slot = self.fleet.slot(device_id)
        if slot >= 0 and cmd in NOTED_COMMANDS:  # a breaker tripping soon after a trip is its effect (§10)
            self.fleet.note_command(slot, cmd, now)
            if self.on_noted is not None:
                self.on_noted(device_id, cmd, now)
        await self._publish(p, now)
        return command_dict(row)

    async def on_ack(self, device_id: str, body: dict[str, Any]) -> None:
        """A device's answer: `acked` when `ok` is true, else `failed`; late answers still count."""
        try:
            cmd_id = uuid.UUID(str(body.get("cmd_id")))
        except ValueError:
            log.warning("answer from %s names no valid cmd_id: %r", device_id, body.get("cmd_id"))
            return
        now = self.clock()
        detail = str(body.get("detail") or "")[:500]
        p = self.pending.get(cmd_id)
        if p is not None:
            if p.device_id != device_id:
                log.warning("answer to command %s came from %s, not %s; ignored", cmd_id, device_id, p.device_id)
                return
            del self.pending[cmd_id]
            cmd, params = p.cmd, p.params
        else:
            row = await self.pool.fetchrow(
                "SELECT cmd, params FROM commands WHERE cmd_id = $1 AND device_id = $2 AND state = 'timeout'",
                cmd_id, device_id,
            )
            if row is None:
                log.debug("answer to command %s from %s is a repeat or unknown; ignored", cmd_id, device_id)
                return
            cmd, params = row["cmd"], json.loads(row["params"])
            detail = f"answered after timeout: {detail}" if detail else "answered after timeout"
        ok = body.get("ok") is True
        state = "acked" if ok else "failed"
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                changed = await self._transition(cmd_id, state, detail or None, now, ("sent", "timeout"), db=conn)
                thresholds = (
                    await merge_thresholds(conn, device_id, params["thresholds"])
                    if changed and ok and cmd == "set_thresholds" else None
                )
        except DB_ERRORS as e:
            # Never raise into the transport: the command stays pending and its next attempt's answer counts.
            log.error("answer to command %s not recorded (%s); it will be retried", cmd_id, e)
            if p is not None:
                self.pending.setdefault(cmd_id, p)
            return
        if changed and ok:
            self._apply(device_id, cmd, params, thresholds, now)
        if changed:
            await self._tell(cmd_id, device_id, cmd, state, detail)

    async def on_platform_result(self, device_id: str, cmd_id: str | None, state: PlatformState, detail: str) -> bool:
        """A platform's word on a command to `device_id` (CTWing `commandResponse`); False when no
        command matches. The command is the one whose `cmd_id` the device echoed, else the device's
        newest `sent` one: platforms name commands by their own task ids, which Miaoxiang never
        learns. `acked`/`failed` end it as a device's answer does (`on_ack`); `sent` (the
        platform sent or delivered it) leaves it sent and records the platform's word as an event."""
        found = await self._platform_target(device_id, cmd_id)
        if found is None:
            return False
        if state == "sent":
            await self.pool.execute(
                """INSERT INTO command_events (cmd_id, at, state, detail)
                   SELECT cmd_id, $2, 'sent', $3 FROM commands WHERE cmd_id = $1 AND state = 'sent'""",
                found, ms_to_dt(self.clock()), detail[:500],
            )
        else:
            await self.on_ack(device_id, {"cmd_id": str(found), "ok": state == "acked", "detail": detail})
        return True

    async def _platform_target(self, device_id: str, cmd_id: str | None) -> uuid.UUID | None:
        if cmd_id is None:
            return await self.pool.fetchval(
                """SELECT cmd_id FROM commands WHERE device_id = $1 AND state = 'sent'
                   ORDER BY created_at DESC, cmd_id DESC LIMIT 1""",
                device_id,
            )
        try:
            echoed = uuid.UUID(cmd_id)
        except ValueError:
            return None
        return await self.pool.fetchval(
            "SELECT cmd_id FROM commands WHERE cmd_id = $1 AND device_id = $2 AND state IN ('sent', 'timeout')",
            echoed, device_id,
        )

    async def expire(self) -> int:
        """Publish again or time out every command past its deadline; answer how many were due."""
        now = self.clock()
        due = [p for p in self.pending.values() if p.deadline_ms <= now]
        for p in due:
            if self.pending.get(p.cmd_id) is not p:
                continue  # answered while an earlier one was being handled
            if p.attempts <= self.retries:
                p.attempts += 1
                p.deadline_ms = now + p.timeout_ms
                detail = f"no answer; attempt {p.attempts} of {1 + self.retries}"
                if await self._transition(p.cmd_id, "sent", detail, now, ("sent",), attempts=p.attempts):
                    await self._publish(p, now)
            else:
                del self.pending[p.cmd_id]
                detail = f"no answer to {p.attempts} attempts"
                if await self._transition(p.cmd_id, "timeout", detail, now, ("sent",)):
                    await self._tell(p.cmd_id, p.device_id, p.cmd, "timeout", detail)
        return len(due)

    async def get(self, cmd_id: uuid.UUID) -> dict[str, Any] | None:
        """A command with its events, oldest first."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM commands WHERE cmd_id = $1", cmd_id)
            if row is None:
                return None
            events = await conn.fetch(
                "SELECT at, state, detail FROM command_events WHERE cmd_id = $1 ORDER BY id", cmd_id
            )
        return {**command_dict(row), "events": [dict(e) for e in events]}

    async def list_for_device(
        self, device_id: str, *, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[dict[str, Any]]:
        """A device's commands, newest first, after the cursor `before` (created_at, cmd_id)."""
        rows = await self.pool.fetch(
            """SELECT * FROM commands WHERE device_id = $1
                 AND ($2::timestamptz IS NULL OR (created_at, cmd_id) < ($2, $3::uuid))
               ORDER BY created_at DESC, cmd_id DESC LIMIT $4""",
            device_id, before[0] if before else None, before[1] if before else None, limit,
        )
        return [command_dict(r) for r in rows]

    # --- internals ------------------------------------------------------------------------------
    def topic(self, kind: Kind, device_id: str) -> str:
        return f"{self.root}/down/{kind.name}/{device_id}"

    async def _publish(self, p: Pending, now: int) -> None:
        payload = json.dumps({"cmd_id": str(p.cmd_id), "cmd": p.cmd, "params": p.params, "ts": now}, ensure_ascii=False)
        try:
            await self.publish(self.topic(p.kind, p.device_id), payload.encode())
        except Exception as e:  # any broker failure: the next attempt retries
            log.warning("command %s to %s not published: %s", p.cmd_id, p.device_id, e)
            await self.pool.execute(
                "INSERT INTO command_events (cmd_id, at, state, detail) VALUES ($1, $2, 'sent', $3)",
                p.cmd_id, ms_to_dt(now), f"attempt {p.attempts} not published: {e or type(e).__name__}",
            )

    async def _tell(self, cmd_id: uuid.UUID, device_id: str, cmd: str, state: str, detail: str) -> None:
        """Tell `on_result` of a command's end; its failure is logged, never raised into the transport."""
        if self.on_result is None:
            return
        try:
            await self.on_result(cmd_id, device_id, cmd, state, detail)
        except Exception:
            log.exception("the result of command %s (%s) was not handled", cmd_id, state)

    async def _transition(
        self, cmd_id: uuid.UUID, state: str, detail: str | None, now: int, from_states: tuple[str, ...],
        *, attempts: int | None = None, db: asyncpg.Connection | None = None,
    ) -> bool:
        """Move a command from one of `from_states` to `state` and record it; False if it was not in them."""
        changed = await (db or self.pool).fetchval(
            TRANSITION, cmd_id, state, detail, attempts, ms_to_dt(now), list(from_states)
        )
        return changed is not None

    def _apply(
        self, device_id: str, cmd: str, params: dict[str, Any],
        thresholds: tuple[dict[str, float], str | None, str | None] | None, now: int,
    ) -> None:
        """A confirmed command's effect on the fleet (`thresholds`: the device's own after the merge,
        its profile and its unit)."""
        slot = self.fleet.slot(device_id)
        if slot < 0:
            return
        if cmd == "mute":
            until = now + int(params.get("duration_s", MUTE_DEFAULT_S)) * 1000
            self.fleet.mute(slot, until)
            if self.on_muted is not None:
                self.on_muted(device_id, until)
        elif thresholds is not None:
            self.layers.apply(self.fleet, device_id, *thresholds)
