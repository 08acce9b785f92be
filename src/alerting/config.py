"""Defaults of the correlation rules (CONTRACT §8); every threshold can be overridden per device.

Per-device thresholds are declared with their defaults in `devices.catalogue.THRESHOLDS`; a
device's `Fleet.thresholds[name]` overrides the default, NaN meaning "use the default", and a NaN
default means the rule is off until a device sets the threshold. The fields here (windows, counts)
are deployment-wide.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.catalogue import THRESHOLD_ALIASES, THRESHOLDS
from devices.kinds import Kind


class RuleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Deployment defaults of per-device thresholds that differ from the catalogue's "
                    "(devices.catalogue.THRESHOLDS)")

    # --- deployment-wide ---
    rise_min_span_s: float = Field(
        default=15.0, gt=0, description="A rate of rise is measured against a sample at least this much older")
    multi_detector_window_s: float = Field(
        default=120.0, ge=0, description="Two distinct detectors of a unit in fire-class alarm within this")
    electrical_smoke_window_s: float = Field(
        default=300.0, ge=0, description="An electrical and a smoke alarm of one unit within this")
    transient_s: float = Field(
        default=10.0, ge=0, description="An alarm cleared within this (device time) is a transient")
    flapping_cycles: int = Field(default=3, ge=2, description="This many alarm/clear cycles ...")
    flapping_window_s: float = Field(default=600.0, ge=0, description="... within this mark a detector flapping")
    outage_devices: int = Field(default=20, ge=2, description="This many devices of one NB cell offline ...")
    outage_window_s: float = Field(default=600.0, ge=0, description="... within this are one network_outage")
    mute_s: float = Field(
        default=600.0, ge=0,
        description="A device's own `mute` event silences its alarms this long "
                    "(a mute command sets Fleet.mute_until_ms)")
    correlation_memory_s: float = Field(
        default=600.0, gt=0, description="How long (service time) unit alarms are remembered for correlation")
    # --- v2 device classes (CONTRACT §10) ---
    pressure_drop_window_s: float = Field(
        default=60.0, gt=0, description="A water pressure drop is between two readings at most this far apart")
    pressure_resolution_mpa: float = Field(
        default=0.001, gt=0, description="Resolution of a water device's pressure (MX1: 0.001 MPa); a drop must "
                                         "be at least twice it. GB/T 26875 analog pressure (0.1 MPa) never counts")
    pyrolysis_rise: float = Field(default=20.0, gt=0, description="A pyrolysis index rising this much ...")
    pyrolysis_rise_window_s: float = Field(
        default=60.0, gt=0, description="... since the previous sample at most this much older is critical")
    co_major_hold_s: float = Field(default=3600.0, ge=0, description="co_ppm held >= co_major_ppm this long")
    co_short_ppm: float = Field(default=100.0, gt=0, description="co_ppm held at or above this ...")
    co_short_hold_s: float = Field(default=600.0, ge=0, description="... this long is co_high too")
    overcurrent_hold_s: float = Field(
        default=30.0, ge=0, description="A charger port above its rated current in readings this far apart")
    breaker_command_s: float = Field(
        default=120.0, ge=0, description="A breaker tripping within this after a breaker_trip command raises nothing")
    offline_verify_kinds: frozenset[Kind] = Field(
        default=frozenset({Kind.uitd}),
        description="Kinds whose offline alarm needs a response (major, verify); others are minor, none")

    @model_validator(mode="after")
    def _memory_covers_windows(self) -> RuleConfig:
        unknown = set(self.thresholds) - set(THRESHOLDS) - set(THRESHOLD_ALIASES)
        if unknown:
            raise ValueError(f"unknown thresholds {sorted(unknown)}; known: {', '.join(THRESHOLDS)}")
        if self.correlation_memory_s < max(self.multi_detector_window_s, self.electrical_smoke_window_s):
            raise ValueError("correlation_memory_s must be at least the longest correlation window")
        return self

    def threshold_defaults(self) -> dict[str, float]:
        """Default of every per-device threshold, by catalogue name."""
        given = {THRESHOLD_ALIASES.get(name, name): value for name, value in self.thresholds.items()}
        return {name: float(given.get(name, spec.default)) for name, spec in THRESHOLDS.items()}
