"""Platform notices (CTWing, OneNET) routed to what they concern, not only counted.

- `online`: the platform heard the device. It becomes a heartbeat reading of the device's
  registered kind, submitted like any report: the fleet marks the device seen and online, an open
  offline alarm clears, and the readings history keeps it (`extra.platform_notice`).
- `offline`: `PlatformNotices.on_platform_offline`: the next offline sweep declares the device
  offline since the platform's moment, unless it was heard after it.
- `command_response`: `PlatformNotices.on_command_result` with the command state the codec read
  (acked, failed, or still sent with the platform's word recorded).

A notice that concerns nothing known (an unregistered device, a result matching no command) is
answered with its reason, for a dead letter: never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from devices.fleet import Fleet
from devices.kinds import Event, Kind
from devices.reading import Reading
from ingest.codecs.platform import CommandState, PlatformNotice, reserialise

#: `Reading.extra` key of a heartbeat that a platform's online notice stands for.
NOTICE_KEY = "platform_notice"


class PlatformNotices(Protocol):
    """What ingest tells the devices side (the root wires `devices.service.DeviceService`)."""

    def on_platform_offline(self, device_id: str, at_ms: int) -> bool:
        """The platform says the device went offline at `at_ms`; False if it is not registered."""
        ...

    async def on_command_result(self, device_id: str, cmd_id: str | None, state: CommandState, detail: str) -> bool:
        """The platform's word on a command; False when no command of the device matches."""
        ...


@dataclass(slots=True)
class Routed:
    """Heartbeats to submit (online notices) and the notices that matched nothing, with why."""

    heartbeats: list[Reading] = field(default_factory=list)
    unmatched: list[tuple[PlatformNotice, str]] = field(default_factory=list)


async def route_notices(
    notices: list[PlatformNotice], target: PlatformNotices, fleet: Fleet, *, received_ms: int, platform: str
) -> Routed:
    """Route each notice (see the module docstring); answer what the caller still has to submit
    or dead-letter."""
    routed = Routed()
    for n in notices:
        if n.kind == "online":
            slot = fleet.slot(n.device_id)
            if slot < 0:
                routed.unmatched.append((n, f"{platform} says unregistered device {n.device_id} is online"))
            else:
                routed.heartbeats.append(Reading(
                    n.device_id, Kind(int(fleet.kind[slot])), Event.heartbeat, n.ts_ms, received_ms,
                    extra={NOTICE_KEY: "online"},
                ))
        elif n.kind == "offline":
            if not target.on_platform_offline(n.device_id, n.ts_ms):
                routed.unmatched.append((n, f"{platform} says unregistered device {n.device_id} is offline"))
        else:
            state: CommandState = n.detail.get("state", "sent")
            cmd_id = n.detail.get("cmd_id")
            echoed = cmd_id if isinstance(cmd_id, str) else None
            if not await target.on_command_result(n.device_id, echoed, state, _command_detail(platform, n)):
                reason = f"{platform} command result for {n.device_id} matches no command awaiting one"
                routed.unmatched.append((n, reason))
    return routed


def _command_detail(platform: str, n: PlatformNotice) -> str:
    task = n.detail.get("task_id")
    return f"{platform} {n.detail.get('result_code')}" + (f" (task {task})" if task is not None else "")


def notice_bytes(n: PlatformNotice) -> bytes:
    """A notice as JSON, for its dead letter."""
    return reserialise({"notice": n.kind, "device_id": n.device_id, "ts_ms": n.ts_ms, "detail": n.detail})
