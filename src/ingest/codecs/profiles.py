"""Device profiles: data files mapping a vendor's object model onto canonical readings (CONTRACT §3).

A profile (one JSON file, see docs/profiles.md) names the product's kind, how each vendor
property becomes a canonical metric (`scale`, `offset`, `negate`, `map`, `index`, `hex`) and
rules deriving the event from property codes, and may carry rule `thresholds` for the product
(beneath a device's own, above its unit's: `devices.thresholds`). `ProfileRegistry.load` reads the
shipped directory and then an operator's, so an operator adds or overrides a profile without a release.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.kinds import ALL_METRICS, ATTENTION_EVENTS, KIND_METRICS, NB_METRICS, Event, Kind
from devices.thresholds import parse as parse_thresholds

from .errors import DecodeError
from .values import DEFAULT_RANGE, METRIC_TYPES, RANGES, check_extra, finite_float, show, validate_metric

#: Where the profiles shipped with Miaoxiang live.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "profiles"
#: Key of `Reading.extra` listing properties the profile could not map: {property: reason}.
REJECTED = "profile_rejected"

Context = Literal["data", "event"]
Platform = Literal["ctwing", "onenet", "iotda", "aliyun"]
_NUMBER_TEXT = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_HEX_TEXT = re.compile(r"\s*(?:0[xX])?([0-9A-Fa-f]{1,16})\s*")


class ProfileError(ValueError):
    """A profile file that does not load; the message names the file and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MetricSpec(_Strict):
    """How one vendor property becomes a canonical metric.

    Numbers: `value * scale + offset`, then `-abs(...)` when `negate` (RSRP sent without its
    sign). `map` replaces a code by a value instead. `index` puts the value at that position of a
    list metric (four cable temperatures from four properties). `hex` renders an integer cell id
    in upper-case hex, as MX1 does, so one cell has one name whatever the source. `clip` brings a
    number beyond the metric's range to its nearest end (a pyrolysis reading above the detector's
    alarm set value is index 100).
    """

    metric: str
    scale: float = 1.0
    offset: float = 0.0
    negate: bool = False
    map: dict[str, Any] | None = None
    index: int | None = Field(None, ge=0, le=63)
    hex: bool = False
    clip: bool = False

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in METRIC_TYPES:
            raise ValueError(f"{v!r} is not a canonical metric")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> MetricSpec:
        is_list = METRIC_TYPES[self.metric] is list
        if self.index is not None and not is_list:
            raise ValueError(f"index is only for list metrics, {self.metric} is not one")
        if self.clip and METRIC_TYPES[self.metric] not in (float, int, list):
            raise ValueError(f"clip is only for numeric metrics, {self.metric} is not one")
        if self.map is not None and not is_list:
            for code, value in self.map.items():
                try:
                    validate_metric(self.metric, value)
                except DecodeError as e:
                    raise ValueError(f"map code {code!r}: {e.reason}") from None
        return self

    def convert(self, value: Any) -> Any:
        """The metric value (before range checks) of a property value; DecodeError if it has none."""
        if self.map is not None:
            found, mapped = lookup(self.map, value)
            if not found:
                raise DecodeError(f"code {show(value)} is not in the profile's map for {self.metric}")
            return mapped
        kind = METRIC_TYPES[self.metric]
        if kind is str:
            return self._text(value)
        if kind is bool:
            found, flag = lookup({"1": True, "0": False}, value)
            if not found:
                raise DecodeError(f"{show(value)} is not a yes/no value")
            return flag
        if kind is list and self.index is None:  # a bare number is a list of one (CONTRACT §10)
            return [self._number(x) for x in value] if isinstance(value, list) else [self._number(value)]
        return self._number(value)

    def _number(self, value: Any) -> float:
        f = finite_float(value)
        if f is None and isinstance(value, str) and _NUMBER_TEXT.fullmatch(value):
            f = finite_float(float(value))
        if f is None:
            raise DecodeError(f"{show(value)} is not a finite number")
        f = f / self._divisor + self.offset if self._divisor else f * self.scale + self.offset
        f = -abs(f) if self.negate else f
        if self.clip:
            lo, hi = RANGES.get(self.metric, DEFAULT_RANGE)
            f = min(max(f, lo), hi)
        return f

    @property
    def _divisor(self) -> int:
        """For a scale such as 0.1 or 0.001, the integer it divides by (exact decimals: 350 x
        0.001 gives 0.35, not 0.35000000000000003); 0 for any other scale."""
        if not 0 < self.scale < 1:
            return 0
        inverse = round(1 / self.scale)
        return inverse if abs(1 / self.scale - inverse) < 1e-9 * inverse else 0

    def _text(self, value: Any) -> str:
        if self.hex:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return format(value, "X")
            m = _HEX_TEXT.fullmatch(value) if isinstance(value, str) else None
            if m is None:
                raise DecodeError(f"{show(value)} is not a hex or integer cell id")
            return format(int(m.group(1), 16), "X")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise DecodeError(f"{show(value)} is not text")
        return value.strip()


class Outcome(_Strict):
    """What a property code means: the event, a fault code, and anything to note in `extra`."""

    event: Event
    fault_code: str | None = Field(None, min_length=1, max_length=64)
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("event", mode="before")
    @classmethod
    def _event_name(cls, v: Any) -> Any:
        return Event.parse(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _storable(self) -> Outcome:
        try:
            if self.fault_code is not None:
                validate_metric("fault_code", self.fault_code)
            for key, value in self.extra.items():
                if key in ALL_METRICS or key == REJECTED:
                    raise ValueError(f"extra key {key!r} is reserved (a metric name or {REJECTED})")
                check_extra(key, value)
        except DecodeError as e:
            raise ValueError(e.reason) from None
        return self


class EventRule(_Strict):
    """Event from one property's code. `messages` limits the rule to periodic data reports or
    to platform event reports (where a 0 means "cleared" rather than "still normal")."""

    property: str
    map: dict[str, Outcome]
    messages: tuple[Context, ...] = ("data", "event")

    @field_validator("map", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        """`"1": "alarm"` is short for `"1": {"event": "alarm"}`."""
        if isinstance(v, dict):
            return {code: {"event": o} if isinstance(o, str) else o for code, o in v.items()}
        return v


class PlatformHint(_Strict):
    """Which platform products use the profile; `product_ids` select it without configuration."""

    product_ids: list[str] = Field(default_factory=list)


@dataclass(slots=True)
class Mapped:
    """A property map translated by a profile."""

    event: Event
    metrics: dict[str, Any]
    extra: dict[str, Any]


class Profile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str
    kind: Kind
    platform: dict[Platform, PlatformHint] = Field(default_factory=dict)
    properties: dict[str, MetricSpec] = Field(default_factory=dict)
    events: list[EventRule] = Field(default_factory=list)
    default_event: Event = Event.report
    #: Metrics every reading of the product carries (a CO detector's `gas_type` `co`); what a
    #: message itself says wins.
    fixed: dict[str, Any] = Field(default_factory=dict)
    #: Rule thresholds of the product (catalogue names or aliases), for devices registered with this
    #: profile that do not set them themselves; stored by catalogue name.
    thresholds: dict[str, float] = Field(default_factory=dict)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_name(cls, v: Any) -> Any:
        return Kind.parse(v) if isinstance(v, str) else v

    @field_validator("default_event", mode="before")
    @classmethod
    def _event_name(cls, v: Any) -> Any:
        return Event.parse(v) if isinstance(v, str) else v

    @field_validator("thresholds", mode="before")
    @classmethod
    def _threshold_names(cls, v: Any) -> Any:
        return parse_thresholds(v)

    @model_validator(mode="after")
    def _metrics_of_kind(self) -> Profile:
        allowed = {*NB_METRICS, *KIND_METRICS[self.kind], "fault_code"}
        for prop, spec in self.properties.items():
            if spec.metric not in allowed:
                raise ValueError(
                    f"property {prop!r} maps to {spec.metric}, which a {self.kind.name} device does not have"
                )
        for name, value in self.fixed.items():
            if name not in allowed:
                raise ValueError(f"fixed metric {name!r} is not one a {self.kind.name} device has")
            try:
                validate_metric(name, value)
            except DecodeError as e:
                raise ValueError(f"fixed {e.reason}") from None
        return self

    @property
    def _fixed(self) -> dict[str, Any]:
        return {name: validate_metric(name, value) for name, value in self.fixed.items()}

    @property
    def known_properties(self) -> frozenset[str]:
        """Every vendor property the profile maps or reads events from."""
        return frozenset(self.properties) | {r.property for r in self.events}

    def apply(self, props: Mapping[str, Any], *, context: Context = "data") -> Mapped:
        """Translate a vendor property map; what cannot be mapped is kept in `extra`, never fatal,
        so a bad battery value cannot cost an alarm (the reasons go to extra[REJECTED])."""
        metrics: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        rejected: dict[str, str] = {}
        slots: dict[str, dict[int, float]] = {}
        rule_props = {r.property for r in self.events}
        direct: dict[str, Any] = {}
        for prop, value in props.items():
            spec = self.properties.get(prop)
            try:
                if spec is not None:
                    converted = spec.convert(value)
                    if spec.index is not None:
                        slots.setdefault(spec.metric, {})[spec.index] = converted
                    else:
                        metrics[spec.metric] = validate_metric(spec.metric, converted)
                elif prop in ALL_METRICS:  # a vendor already using a canonical name needs no mapping
                    direct[prop] = validate_metric(prop, value)
                elif prop not in rule_props:
                    extra[prop] = check_extra(prop, value)
            except DecodeError as e:
                rejected[prop] = e.reason
                _keep_raw(extra, prop, value)
        for metric, by_index in slots.items():
            try:
                metrics[metric] = validate_metric(metric, [by_index[i] for i in sorted(by_index)])
            except DecodeError as e:
                rejected[metric] = e.reason
        metrics = {**self._fixed, **direct, **metrics}
        outcome = self._outcome(props, context, rejected, extra)
        if outcome.fault_code is not None:
            metrics["fault_code"] = outcome.fault_code
        extra.update(outcome.extra)
        if rejected:
            extra[REJECTED] = rejected
        return Mapped(outcome.event, metrics, extra)

    def _outcome(
        self, props: Mapping[str, Any], context: Context, rejected: dict[str, str], extra: dict[str, Any]
    ) -> Outcome:
        """The first matching rule of the highest tier wins: raising events (alarm, fault, ...),
        then clearing ones, then report/heartbeat. A code no rule knows is noted in `rejected`."""
        best: tuple[int, Outcome] | None = None
        matched: set[str] = set()
        unknown: dict[str, Any] = {}
        for rule in self.events:
            if context not in rule.messages or rule.property not in props:
                continue
            value = props[rule.property]
            found, outcome = lookup(rule.map, value)
            if not found:
                unknown[rule.property] = value
                continue
            matched.add(rule.property)
            tier = _tier(outcome.event)
            if best is None or tier > best[0]:
                best = (tier, outcome)
        for prop, value in unknown.items():
            if prop not in matched:
                rejected[prop] = f"code {show(value)} is not in the profile's event rules"
                _keep_raw(extra, prop, value)
        return best[1] if best is not None else Outcome(event=self.default_event, fault_code=None)


#: Events that end a condition; a raising event in the same message outranks them.
CLEARING_EVENTS = frozenset(
    {
        Event.alarm_clear, Event.fault_clear, Event.tamper_clear, Event.power_restore, Event.valve_opened,
        Event.breaker_closed, Event.hydrant_close, Event.charging_stop, Event.supervisory_clear, Event.shield_clear,
    }
)


def _tier(event: Event) -> int:
    if event not in ATTENTION_EVENTS:
        return 0
    return 1 if event in CLEARING_EVENTS else 2


def lookup(mapping: Mapping[str, Any], value: Any) -> tuple[bool, Any]:
    """(found, mapped) for a vendor code: 1, 1.0, "1" and " 1 " all find key "1"; true finds
    "true" or "1"."""
    keys: tuple[str, ...]
    if isinstance(value, bool):
        keys = ("true", "1") if value else ("false", "0")
    elif isinstance(value, int):
        keys = (str(value),)
    elif isinstance(value, float):
        keys = (str(int(value)),) if value.is_integer() else (repr(value),)
    elif isinstance(value, str):
        keys = (value.strip(),)
    else:
        return False, None
    for key in keys:
        if key in mapping:
            return True, mapping[key]
    return False, None


def _keep_raw(extra: dict[str, Any], prop: str, value: Any) -> None:
    """Keep a value the profile could not map under its vendor name (a canonical metric name is
    never an extra key; the reason in extra[REJECTED] shows that value)."""
    if prop in ALL_METRICS:
        return
    try:
        extra[prop] = check_extra(prop, value)
    except DecodeError:
        pass  # the reason already names the property; a value too deep to keep is dropped


class ProfileRegistry:
    """Profiles by name; a later profile with the same name replaces an earlier one."""

    def __init__(self, profiles: Iterable[Profile] = ()) -> None:
        self._by_name: dict[str, Profile] = {}
        for p in profiles:
            self._by_name[p.name] = p

    @classmethod
    def load(cls, operator_dir: Path | None = None) -> ProfileRegistry:
        """The shipped profiles, then the operator's (which win on a name clash)."""
        profiles = read_profiles(SHIPPED_DIR)
        if operator_dir is not None:
            profiles += read_profiles(operator_dir)
        return cls(profiles)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Iterator[Profile]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Profile | None:
        return self._by_name.get(name)

    def thresholds(self) -> dict[str, dict[str, float]]:
        """Profile name -> its thresholds, of the profiles that have some (for `devices.service`)."""
        return {p.name: dict(p.thresholds) for p in self if p.thresholds}

    def select(
        self, platform: Platform, *, name: str | None, product_id: str | None, props: Mapping[str, Any]
    ) -> Profile:
        """The profile for one message: the source's configured `name`, else the one listing the
        platform product id, else the platform's profile sharing the most property names."""
        if name is not None:
            chosen = self._by_name.get(name)
            if chosen is None:
                raise DecodeError(f"the push source names device profile {name!r}, which is not loaded")
            return chosen
        candidates = [p for p in self if platform in p.platform]
        if product_id is not None:
            for p in candidates:
                if product_id in p.platform[platform].product_ids:
                    return p
        scored = sorted(((len(p.known_properties & props.keys()), p.name) for p in candidates), reverse=True)
        if not scored or scored[0][0] == 0:
            raise DecodeError(
                f"no {platform} device profile knows any of the properties {', '.join(sorted(props))[:200]}"
            )
        if len(scored) > 1 and scored[1][0] == scored[0][0]:
            raise DecodeError(
                f"profiles {scored[0][1]} and {scored[1][1]} fit equally; configure one on the push source"
            )
        return self._by_name[scored[0][1]]


def read_profiles(directory: Path) -> list[Profile]:
    """Every `*.json` profile in `directory`, in file name order; ProfileError names a bad file."""
    if not directory.is_dir():
        raise ProfileError(f"profile directory {directory} does not exist")
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            out.append(Profile.model_validate_json(path.read_bytes()))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise ProfileError(f"profile {path}: {where}: {first['msg']} ({e.error_count()} problem(s))") from None
    return out
