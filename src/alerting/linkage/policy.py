"""Linkage policy (联动, CONTRACT §10), pure: which command an alarm calls for, and whether it is
sent at once (`auto`), offered to an operator (`confirm`) or not made at all.

A unit's policy switches each actuator (`gas_valve`, `breaker`, `charger_port`) to `auto`,
`confirm` or `off` (default). A device's `linkage` caps it: `unit` follows the unit, `confirm`
offers at most, `never` makes nothing, `auto` (breakers only) lets a breaker trip by itself.
Automatic supply cuts are held back where GB 50116 asks for a person's judgement: a breaker trips
automatically only when the unit says `auto`, the device says `auto` and the alarm is an
`arc_fault` raised from measured arcs (rule `electrical.arc`); otherwise the trip is offered at
most. `breaker: auto` is refused for hospitals, elderly care and welfare institutions.
Only alarms with a response (`immediate` or `verify`, not tests, maintenance, mutes or
transients), still active, of a detector that is not flapping, qualify.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args

from alerting.model import ACTIVE_STATUSES, AlarmType, Decision
from devices.catalogue import ALARM_TYPES
from devices.kinds import Kind

Mode = Literal["auto", "confirm", "off"]
MODES: tuple[str, ...] = get_args(Mode)
#: Industries where a breaker may never trip by itself (CONTRACT §10).
NO_AUTO_BREAKER = frozenset({"hospital", "elderly_care", "welfare"})
#: The rule of an `arc_fault` raised from measured arcs (`alerting.core.rules`).
MEASURED_ARC_RULE = "electrical.arc"
#: A device's `linkage` -> the most it allows.
DEVICE_CAP: dict[str, Mode] = {"unit": "auto", "auto": "auto", "confirm": "confirm", "never": "off"}
_RANK = {"off": 0, "confirm": 1, "auto": 2}
#: Linkage command -> the state event a device reports once it is done (clears `linkage_failed`).
RESULT_EVENT = {"valve_close": "valve_closed", "breaker_trip": "breaker_tripped", "port_cutoff": "port_cutoff"}
#: Linkage command -> the metric whose reported value shows the device has that actuator.
ACTUATOR_METRIC = {"valve_close": "valve", "breaker_trip": "breaker"}
_ACTUATOR_STATES = {"valve": ("open", "closed"), "breaker": ("closed", "tripped")}


class BadPolicy(ValueError):
    """A policy body names an unknown key or value (422)."""


class RefusedPolicy(Exception):
    """A policy the unit's industry does not allow (409)."""


@dataclass(frozen=True, slots=True)
class UnitPolicy:
    gas_valve: Mode = "off"
    breaker: Mode = "off"
    charger_port: Mode = "off"

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


POLICY_KEYS = tuple(f.name for f in fields(UnitPolicy))


def updated(policy: UnitPolicy, changes: Mapping[str, Any], industry: str | None) -> UnitPolicy:
    """The policy after `changes` (a missing key keeps its value). Raises `BadPolicy` for an
    unknown key or value, `RefusedPolicy` for `breaker: auto` in a unit that may not have it."""
    for key, value in changes.items():
        if key not in POLICY_KEYS:
            raise BadPolicy(f"未知联动项 {key!r} / unknown linkage key {key!r}; keys are {', '.join(POLICY_KEYS)}")
        if value not in MODES:
            raise BadPolicy(f"{key} 须为 {' / '.join(MODES)} / {key} must be one of {', '.join(MODES)}, not {value!r}")
    new = replace(policy, **changes)
    if new.breaker == "auto" and industry in NO_AUTO_BREAKER:
        raise RefusedPolicy(f"{industry} 场所不得自动跳闸（GB 50116） / breaker auto is refused for units of "
                            f"industry {industry} (GB 50116 advises against cutting supply automatically)")
    return new


def in_force(policy: UnitPolicy, industry: str | None) -> UnitPolicy:
    """The policy as applied: a unit whose industry became one that may not trip breakers by
    themselves (after its policy was set) has its `breaker: auto` offered instead."""
    if policy.breaker == "auto" and industry in NO_AUTO_BREAKER:
        return replace(policy, breaker="confirm")
    return policy


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """What the policy reads of an alarm (its stream snapshot)."""

    type: str
    severity: str
    response: str
    status: str
    rule: str
    evidence: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the policy reads of the alarm's device. `reported`: the newest value it reported of
    each actuator metric (`valve`, `breaker`), when known."""

    device_id: str
    kind: Kind
    linkage: str
    flapping: bool = False
    reported: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """A linkage command to send (`auto`) or offer (`confirm`) for an alarm."""

    mode: Literal["auto", "confirm"]
    cmd: str
    params: dict[str, Any]
    policy_key: str


@dataclass(frozen=True, slots=True)
class Target:
    policy_key: str
    cmd: str
    kind: Kind
    params: dict[str, Any]


def target(alarm: AlarmFacts) -> Target | None:
    """The command an alarm of this type and severity calls for, whatever the policies."""
    t = alarm.type
    if t in ("gas_leak", "co_high") and alarm.severity == "critical":
        return Target("gas_valve", "valve_close", Kind.gas, {})
    if t == "arc_fault":
        return Target("breaker", "breaker_trip", Kind.electrical, {})
    if t == "charger_overheat":
        port = hit_port(alarm.evidence)
        return Target("charger_port", "port_cutoff", Kind.charger, {} if port is None else {"port": port})
    if t == "charger_leakage":  # on the common supply: every port (which includes every active one)
        return Target("charger_port", "port_cutoff", Kind.charger, {})
    return None


LINKAGE_TYPES = frozenset({"gas_leak", "co_high", "arc_fault", "charger_overheat", "charger_leakage"})


def hit_port(evidence: Sequence[Mapping[str, Any]]) -> int | None:
    """The port (from 1) named by the newest evidence entry that names one."""
    for entry in reversed(evidence):
        port = entry.get("port")
        if type(port) is int and port >= 1:
            return port
    return None


def qualifies(alarm: AlarmFacts, flapping: bool) -> bool:
    """An alarm with a response, still active, of a detector that is not flapping."""
    return (alarm.response in ("immediate", "verify") and alarm.status in ACTIVE_STATUSES and not flapping
            and "flapping" not in alarm.rule.split("+"))


def has_actuator(cmd: str, device: DeviceFacts) -> bool:
    """A charger always has ports; a valve or breaker is known from the state the device reports."""
    metric = ACTUATOR_METRIC.get(cmd)
    if metric is None:
        return True
    return (device.reported or {}).get(metric) in _ACTUATOR_STATES[metric]


def plan(alarm: AlarmFacts, device: DeviceFacts, unit: UnitPolicy) -> Action | None:
    """The linkage an alarm calls for on its own device under these policies, or None."""
    goal = target(alarm)
    if goal is None or device.kind is not goal.kind or not qualifies(alarm, device.flapping):
        return None
    if not has_actuator(goal.cmd, device):
        return None
    mode: Mode = min(getattr(unit, goal.policy_key), DEVICE_CAP.get(device.linkage, "off"), key=_RANK.__getitem__)
    measured = MEASURED_ARC_RULE in alarm.rule.split("+")
    if mode == "auto" and goal.cmd == "breaker_trip" and (device.linkage != "auto" or not measured):
        mode = "confirm"
    if mode == "off":
        return None
    return Action(mode, goal.cmd, goal.params, goal.policy_key)


# --- linkage_failed ----------------------------------------------------------------------------
FAILED = AlarmType.linkage_failed
FAILED_RULE = "linkage.failed"


def failed_decision(
    device_id: str, unit_id: str | None, now_ms: int, evidence: Mapping[str, Any]
) -> Decision:
    """`linkage_failed` (major, verify: the catalogue's) for a device whose linkage command failed."""
    spec = ALARM_TYPES[FAILED]
    return Decision("raise", f"device:{device_id}", FAILED, spec.severity, spec.response, FAILED_RULE, now_ms,
                    device_ids=[device_id], unit_id=unit_id, evidence=[dict(evidence)])


def recovered_decision(device_id: str, unit_id: str | None, now_ms: int, rule: str) -> Decision:
    """The clear of `linkage_failed`: a late `ok` (rule `linkage.late_ok`) or the resulting state
    reported (`linkage.state`)."""
    spec = ALARM_TYPES[FAILED]
    return Decision("clear", f"device:{device_id}", FAILED, spec.severity, spec.response, rule, now_ms,
                    device_ids=[device_id], unit_id=unit_id)
