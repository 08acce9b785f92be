"""Defaults of the correlation rules (CONTRACT §8); every threshold can be overridden per device.

The eleven threshold fields carry the names of `devices.fleet.THRESHOLD_NAMES`: a device's
`Fleet.thresholds[name]` overrides the field of the same name, NaN meaning "use this default".
The other fields (windows, counts) are deployment-wide.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices.fleet import THRESHOLD_NAMES
from devices.kinds import Kind


class RuleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- per-device thresholds (names of devices.fleet.THRESHOLD_NAMES) ---
    smoke_temp_c: float = Field(
        default=57.0, description="A smoke alarm at or above this temperature is immediate (GB 4716 class A1 heat)")
    smoke_rise_c_per_min: float = Field(
        default=8.0, gt=0, description="A smoke alarm with a temperature rise at least this fast is immediate")
    gas_lel_pct: float = Field(default=10.0, description="gas_leak, major, verify at or above this %LEL")
    gas_lel_critical_pct: float = Field(default=25.0, description="gas_leak, critical, immediate at or above this %LEL")
    residual_current_ma: float = Field(
        default=300.0, description="residual_current at or above this (GB 50116 recommends 300-500 mA)")
    cable_temp_c: float = Field(default=70.0, description="cable_overheat at or above this cable temperature")
    cable_rise_c_per_min: float = Field(
        default=10.0, gt=0, description="cable_overheat when a cable warms at least this fast")
    arc_faults: float = Field(default=14.0, description="arc_fault at or above this many arcs in one second")
    voltage_v_max: float = Field(default=264.0, description="overvoltage at or above this (220 V + 20 %)")
    pressure_mpa_min: float = Field(default=0.05, description="water_pressure_low below this pressure")
    battery_pct_min: float = Field(
        default=20.0, description="low_battery below this charge (as devices.fleet's LOW_BATTERY flag)")

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
    offline_verify_kinds: frozenset[Kind] = Field(
        default=frozenset({Kind.uitd}),
        description="Kinds whose offline alarm needs a response (major, verify); others are minor, none")

    @model_validator(mode="after")
    def _memory_covers_windows(self) -> RuleConfig:
        if self.correlation_memory_s < max(self.multi_detector_window_s, self.electrical_smoke_window_s):
            raise ValueError("correlation_memory_s must be at least the longest correlation window")
        return self

    def threshold_defaults(self) -> dict[str, float]:
        """Default of every per-device threshold, by `THRESHOLD_NAMES` name."""
        return {name: float(getattr(self, name)) for name in THRESHOLD_NAMES}
