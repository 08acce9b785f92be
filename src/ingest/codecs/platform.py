"""What an NB-IoT platform push decodes to, shared by the CTWing and OneNET codecs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from devices.reading import Reading

from .errors import BatchItemError
from .profiles import Context, Profile

NoticeKind = Literal["online", "offline", "command_response"]
#: What a platform's command result makes of the command (`detail["state"]` of a command response).
CommandState = Literal["acked", "failed", "sent"]
#: The bytes a reading of a result came from, by the reading's index (a batch element's own text).
RawOf = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class PlatformNotice:
    """Something a platform says about a device that is not a reading: it came online, went
    offline, or answered a command (`detail` then holds `result_code`, `state`, the task id and
    the `cmd_id` the device echoed, if any)."""

    kind: NoticeKind
    device_id: str
    ts_ms: int
    detail: dict[str, Any]


@dataclass(slots=True)
class PlatformResult:
    """Readings, per-message failures (for dead letters) and notices from one payload. `raw_of`
    gives each reading's own bytes when they are not the whole payload (a batch element)."""

    readings: list[Reading] = field(default_factory=list)
    errors: list[BatchItemError] = field(default_factory=list)
    notices: list[PlatformNotice] = field(default_factory=list)
    raw_of: RawOf | None = None


def profile_reading(
    profile: Profile, props: dict[str, Any], *, device_id: str, ts_ms: int, received_ms: int, context: Context
) -> Reading:
    """The reading of one vendor property map translated by `profile`."""
    mapped = profile.apply(props, context=context)
    return Reading(
        device_id=device_id,
        kind=profile.kind,
        event=mapped.event,
        ts_ms=ts_ms,
        received_ms=received_ms,
        metrics=mapped.metrics,
        extra=mapped.extra,
    )


def reserialise(value: Any) -> bytes:
    """Compact JSON bytes of an already parsed value, for a dead letter."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
