"""A `tcp` sink for `play`: scenario and background steps of uitd devices sent over GB/T 26875.3.

Each uitd of the fleet gets its own `UitdSimulator` session (opened on its first step) whose panel
holds the fleet's components, and whose frames carry the step's scenario time as device time
(local time in the service's `device_tz`), so compressed runs keep their timing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import datetime
from types import TracebackType
from zoneinfo import ZoneInfo

from devices.kinds import Event
from devices.reading import Reading
from ingest.codecs.gb26875 import Command, Frame
from simulators.fleet import SimDevice, SimFleet
from simulators.publish import PublishError
from simulators.scenarios import Step
from simulators.uitd import NORMAL, PanelComponent, UitdSimulator

#: `extra.alarm_code` of a power_fail when main and backup power have both failed (as the codec says it).
BOTH_FAILED = "mains_and_backup"


def _command_name(command: int) -> str:
    """The name of a command byte; its number if user-defined (128-255)."""
    try:
        return Command(command).name
    except ValueError:
        return str(command)


class UitdSink:
    """Sends uitd steps as the device would: heartbeats, component fire/fault and their clearing,
    main power failure and restoration. Use `async with UitdSink(...) as sink:`."""

    def __init__(
        self, fleet: SimFleet, host: str, port: int, *, tz: str = "Asia/Shanghai", timeout_s: float = 10.0
    ) -> None:
        self.fleet = fleet
        self.host, self.port = host, port
        self.zone = ZoneInfo(tz)
        self.timeout_s = timeout_s
        self.sessions: dict[str, UitdSimulator] = {}
        self._now = datetime.now(self.zone).replace(tzinfo=None, microsecond=0)

    async def __aenter__(self) -> UitdSink:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for sim in self.sessions.values():
            with contextlib.suppress(OSError):
                await sim.close()
        self.sessions.clear()

    def _device_time(self, at_ms: int) -> datetime:
        return datetime.fromtimestamp(at_ms / 1000, self.zone).replace(tzinfo=None, microsecond=0)

    async def _session(self, dev: SimDevice) -> UitdSimulator:
        sim = self.sessions.get(dev.device_id)
        if sim is None or sim.closed.is_set():
            assert dev.uitd_address is not None, f"{dev.device_id} is no uitd"
            sim = UitdSimulator(self.host, self.port, dev.uitd_address, clock=lambda: self._now)
            sim.panel.components = [
                PanelComponent(c.system_type, c.system_addr, c.component_type, c.component_addr, c.description)
                for c in dev.components
            ]
            sim.panel.status = {c.id: NORMAL for c in sim.panel.components}
            try:
                await asyncio.wait_for(sim.connect(), self.timeout_s)
            except (OSError, TimeoutError) as e:
                raise PublishError(f"cannot reach the GB/T 26875 port {self.host}:{self.port}: {e}") from e
            self.sessions[dev.device_id] = sim
        return sim

    async def send(self, step: Step) -> int:
        r = step.reading
        dev = self.fleet.device(r.device_id)
        sim = await self._session(dev)
        self._now = self._device_time(step.at_ms)
        index = next((i for i, c in enumerate(sim.panel.components) if c.id == r.component), None)
        try:
            answer = await asyncio.wait_for(self._frame(sim, r, index), self.timeout_s)
        except (TimeoutError, OSError) as e:
            await sim.close()
            raise PublishError(f"{r.device_id}: no confirm from the centre: {e!r}") from e
        if answer.command != Command.confirm:
            raise PublishError(f"{r.device_id}: the centre answered {_command_name(answer.command)} to {r.event.name}")
        return 1

    @staticmethod
    def _frame(sim: UitdSimulator, r: Reading, index: int | None) -> Awaitable[Frame]:
        """The simulator call that sends the reading's event (of component `index`, if any); power
        events with a `system_type` in `extra` are the panel's own, else the uitd's."""
        event, device_id = r.event, r.device_id
        if index is None and "system_type" in r.extra and event in (Event.power_fail, Event.power_restore):
            failed = event is Event.power_fail
            both = failed and r.extra.get("alarm_code") == BOTH_FAILED
            return sim.panel_power(main_failed=failed, backup_failed=both)
        if index is None:
            if event is Event.power_fail:
                return sim.power_fault(True)
            if event is Event.power_restore:
                return sim.power_fault(False)
            if event in (Event.heartbeat, Event.report):
                return sim.heartbeat()
        elif event is Event.alarm:
            return sim.fire(index)
        elif event is Event.fault:
            return sim.fault(index)
        elif event in (Event.alarm_clear, Event.fault_clear):
            return sim.clear(index)
        raise PublishError(
            f"{device_id}: a uitd cannot send {event.name}" + ("" if index is None else " for a component")
        )

    async def flush(self) -> int:
        return 0
