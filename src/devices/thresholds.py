"""Thresholds in layers (CONTRACT §10): a device's value wins over its profile's, a profile's over
its unit's, and a unit's over the deployment default (`alerting.config.RuleConfig`, the catalogue's).

`parse` is the one validation of a layer (registration, units, profiles); `effective` is the one
merge. `ThresholdLayers` holds the profile and unit layers of the running service (the composition
root hands in the profiles' thresholds as plain data: `devices` never imports `ingest`) and turns a
device's own thresholds into the row the fleet holds (`Fleet.set_thresholds`, NaN = the default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from devices.catalogue import THRESHOLD_ALIASES, THRESHOLDS
from devices.fleet import Fleet

Thresholds = Mapping[str, float]
NAMES = tuple(THRESHOLDS)


def parse(raw: Any) -> dict[str, float]:
    """Thresholds by catalogue name from an object of name (or alias, such as `pressure_mpa_min`)
    -> finite number; None is none. ValueError naming the first problem."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("thresholds must be an object of threshold name -> number")
    out: dict[str, float] = {}
    for given, v in raw.items():
        name = THRESHOLD_ALIASES.get(given, given)
        if name not in THRESHOLDS:
            raise ValueError(f"unknown threshold {given!r}; known: {', '.join(NAMES)}")
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"threshold {name} must be a finite number")
        out[name] = float(v)
    return out


def _canonical(layer: Thresholds | None) -> dict[str, float]:
    return {THRESHOLD_ALIASES.get(name, name): float(v) for name, v in (layer or {}).items()}


def effective(
    device: Thresholds, profile: Thresholds | None = None, unit: Thresholds | None = None
) -> dict[str, float]:
    """The thresholds some layer sets for a device, by catalogue name: the device's own, else its
    profile's, else its unit's. A name no layer sets is absent (its default applies)."""
    return {**_canonical(unit), **_canonical(profile), **_canonical(device)}


def fleet_row(thresholds: Thresholds) -> dict[str, float]:
    """Every threshold name, NaN where `thresholds` sets none: what `Fleet.set_thresholds` takes."""
    given = _canonical(thresholds)
    return {name: given.get(name, math.nan) for name in NAMES}


def shown(thresholds: Thresholds) -> dict[str, float | None]:
    """Every threshold name with its value, the catalogue default where `thresholds` sets none, and
    None where there is no default either (the rule is off)."""
    given = _canonical(thresholds)
    return {name: given.get(name, None if math.isnan(spec.default) else spec.default)
            for name, spec in THRESHOLDS.items()}


class ThresholdLayers:
    """The profile and unit layers beneath the devices' own thresholds."""

    def __init__(self, profiles: Mapping[str, Thresholds] | None = None) -> None:
        #: profile name -> its thresholds (profiles without any are left out)
        self.profiles = {name: _canonical(t) for name, t in (profiles or {}).items() if t}
        #: unit id -> its thresholds (units without any are left out)
        self.units: dict[str, dict[str, float]] = {}

    def set_unit(self, unit_id: str, thresholds: Thresholds) -> bool:
        """Replace a unit's thresholds; answer whether they changed."""
        new = _canonical(thresholds)
        if new == self.units.get(unit_id, {}):
            return False
        if new:
            self.units[unit_id] = new
        else:
            del self.units[unit_id]
        return True

    def layered(self, profile: str | None, unit_id: str | None) -> bool:
        """Whether the device's profile or unit sets any threshold."""
        return (profile is not None and profile in self.profiles) or (unit_id is not None and unit_id in self.units)

    def of(self, own: Thresholds, profile: str | None, unit_id: str | None) -> dict[str, float]:
        """A device's effective thresholds (`effective`) from its own, its profile's and its unit's."""
        return effective(own, self.profiles.get(profile or ""), self.units.get(unit_id or ""))

    def apply(self, fleet: Fleet, device_id: str, own: Thresholds, profile: str | None, unit_id: str | None) -> None:
        """Set a device's effective thresholds in the fleet (nothing for a device it does not hold,
        nor when it has none and holds none: `Fleet.set_thresholds` costs some 60 µs a device)."""
        slot = fleet.slot(device_id)
        if slot < 0:
            return
        thresholds = self.of(own, profile, unit_id)
        held = any(n and not math.isnan(fleet.thresholds[name][slot]) for name, n in fleet.overrides.items())
        if thresholds or held:
            fleet.set_thresholds(slot, fleet_row(thresholds))
