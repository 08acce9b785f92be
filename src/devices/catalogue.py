"""The one catalogue of what devices are and say (CONTRACT §1, §8, §10): kinds, events, metrics,
alarm types and the per-device rule thresholds, with their Chinese and English labels.

Everything else derives from here: the codecs' value checks (`devices.kinds`), the batch columns
(`devices.batch`), the fleet's thresholds and heartbeats (`devices.fleet`), the correlation core's
defaults and classes (`alerting.core.rules`), the API's enums and `GET /api/v1/meta`, which the
console reads its labels from. docs/extending.md says how to add a kind.

Kind, event and alarm-type codes are stable small integers: MX1 frames carry kinds and events on
the wire, and numpy columns hold all three. Never renumber; add at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum


class Kind(IntEnum):
    """Device kinds; the codes are MX1's (5, `uitd`, is reserved and never sent)."""

    smoke = 1
    gas = 2
    electrical = 3
    water = 4
    uitd = 5
    charger = 6

    @classmethod
    def parse(cls, name: str) -> Kind:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown kind {name!r}; expected one of {', '.join(k.name for k in cls)}") from None


class Event(IntEnum):
    """Events; the codes are MX1's event codes."""

    heartbeat = 0
    report = 1
    alarm = 2
    alarm_clear = 3
    fault = 4
    fault_clear = 5
    tamper = 6
    tamper_clear = 7
    low_battery = 8
    test = 9
    mute = 10
    power_fail = 11
    power_restore = 12
    valve_closed = 13
    valve_opened = 14
    breaker_tripped = 15
    breaker_closed = 16
    hydrant_open = 17
    hydrant_close = 18
    impact = 19
    charging_start = 20
    charging_stop = 21
    overcurrent = 22
    overtemp = 23
    leakage = 24
    port_cutoff = 25
    supervisory = 26
    supervisory_clear = 27
    shield = 28
    shield_clear = 29

    @classmethod
    def parse(cls, name: str) -> Event:
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown event {name!r}") from None


class Severity(IntEnum):
    critical = 0
    major = 1
    minor = 2
    warning = 3


class Response(IntEnum):
    immediate = 0  # 秒响应
    verify = 1
    none = 2


class AlarmType(IntEnum):
    fire = 0
    smoke = 1
    gas_leak = 2
    residual_current = 3
    cable_overheat = 4
    arc_fault = 5
    overvoltage = 6
    water_pressure_low = 7
    offline = 8
    network_outage = 9
    tamper = 10
    low_battery = 11
    device_fault = 12
    panel_fire = 13
    panel_fault = 14
    duty_missed = 15  # 查岗 not answered in time (CONTRACT §11)
    water_pressure_high = 16
    water_pressure_drop = 17
    water_level_low = 18
    hydrant_open = 19
    hydrant_damaged = 20
    charger_overheat = 21
    charger_overcurrent = 22
    charger_leakage = 23
    pyrolysis_warning = 24
    co_high = 25
    power_fault = 26
    panel_supervisory = 27
    breaker_tripped = 28
    linkage_failed = 29


@dataclass(frozen=True, slots=True)
class Label:
    zh: str
    en: str


@dataclass(frozen=True, slots=True)
class KindSpec:
    label: Label
    heartbeat_s: int  #: default heartbeat interval; offline after 2.5 of them (CONTRACT §8)
    metrics: tuple[str, ...]  #: the kind's own metrics (NB-IoT radio metrics are every kind's)
    alarm_types: tuple[AlarmType, ...]  #: what the kind's `alarm` / `alarm_clear` events are about


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """`type` is the Python type of a value; `list` metrics hold one value per channel, phase or port
    (a single number reads as a list of one). `column`: a numeric batch column the rules read
    (`scalar`, or `max` of a list), or None. `values`: the allowed strings of an enumerated metric."""

    type: type
    unit: str
    label: Label
    column: str | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlarmSpec:
    label: Label
    severity: Severity  #: the default; a rule may raise it
    response: Response
    fire_class: bool = False  #: correlates across detectors; climbs to levels 2 and 3
    electrical_class: bool = False  #: counts for the electrical-then-smoke rule (CONTRACT §8, §10)
    climbs_high: bool = False  #: reaches escalation levels 2 and 3 without being fire class (`co_high`)
    metrics: tuple[str, ...] = ()  #: batch columns shown in the evidence of a hit


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """A per-device rule parameter; NaN default = the rule is off until a device or profile sets it."""

    default: float
    unit: str
    label: Label
    aliases: tuple[str, ...] = field(default=())  #: earlier names still accepted at registration


def _l(zh: str, en: str) -> Label:
    return Label(zh, en)


NB_METRIC_NAMES = ("battery_pct", "battery_mv", "rsrp_dbm", "sinr_db", "ecl", "pci", "cell_id")

METRICS: dict[str, MetricSpec] = {
    "battery_pct": MetricSpec(float, "%", _l("电量", "battery"), "scalar"),
    "battery_mv": MetricSpec(float, "mV", _l("电池电压", "battery voltage")),
    "rsrp_dbm": MetricSpec(float, "dBm", _l("信号强度", "RSRP"), "scalar"),
    "sinr_db": MetricSpec(float, "dB", _l("信噪比", "SINR"), "scalar"),
    "ecl": MetricSpec(int, "", _l("覆盖等级", "ECL")),
    "pci": MetricSpec(int, "", _l("物理小区", "PCI")),
    "cell_id": MetricSpec(str, "", _l("小区号", "cell id")),
    "smoke_obscuration_pct_m": MetricSpec(float, "%/m", _l("烟雾浓度", "smoke"), "scalar"),
    "temperature_c": MetricSpec(float, "°C", _l("温度", "temperature"), "scalar"),
    "gas_lel_pct": MetricSpec(float, "%LEL", _l("燃气浓度", "gas"), "scalar"),
    "gas_type": MetricSpec(str, "", _l("气体种类", "gas type"), values=("methane", "lpg", "co", "hydrogen")),
    "valve": MetricSpec(str, "", _l("阀门", "valve"), values=("open", "closed", "none")),
    "mains_ok": MetricSpec(bool, "", _l("主电正常", "mains ok")),
    "co_ppm": MetricSpec(float, "ppm", _l("一氧化碳浓度", "CO"), "scalar"),
    "residual_current_ma": MetricSpec(list, "mA", _l("剩余电流", "residual current"), "max"),
    "cable_temp_c": MetricSpec(list, "°C", _l("线缆温度", "cable temperature"), "max"),
    "voltage_v": MetricSpec(list, "V", _l("电压", "voltage"), "max"),
    "current_a": MetricSpec(list, "A", _l("电流", "current")),
    "power_kw": MetricSpec(float, "kW", _l("功率", "power")),
    "arc_faults": MetricSpec(int, "", _l("电弧次数", "arc faults"), "scalar"),
    "pyrolysis_index": MetricSpec(float, "", _l("热解指数", "pyrolysis index"), "scalar"),
    "breaker": MetricSpec(str, "", _l("断路器", "breaker"), values=("closed", "tripped")),
    "pressure_mpa": MetricSpec(float, "MPa", _l("水压", "pressure"), "scalar"),
    "level_m": MetricSpec(float, "m", _l("液位", "level"), "scalar"),
    "flow_m3h": MetricSpec(float, "m³/h", _l("流量", "flow"), "scalar"),
    "tilt_deg": MetricSpec(float, "°", _l("倾角", "tilt"), "scalar"),
    "port": MetricSpec(int, "", _l("端口", "port")),
    "port_current_a": MetricSpec(list, "A", _l("端口电流", "port current"), "max"),
    "port_power_w": MetricSpec(list, "W", _l("端口功率", "port power")),
    "port_temp_c": MetricSpec(list, "°C", _l("端口温度", "port temperature"), "max"),
    "ports_active": MetricSpec(int, "", _l("在充端口数", "active ports")),
    "fault_code": MetricSpec(str, "", _l("故障码", "fault code")),
}

KINDS: dict[Kind, KindSpec] = {
    Kind.smoke: KindSpec(_l("独立烟感", "Smoke alarm"), 86_400, ("smoke_obscuration_pct_m", "temperature_c"),
                         (AlarmType.smoke,)),
    Kind.gas: KindSpec(_l("可燃气体探测器", "Gas detector"), 86_400,
                       ("gas_lel_pct", "gas_type", "valve", "mains_ok", "co_ppm"),
                       (AlarmType.gas_leak, AlarmType.co_high)),
    Kind.electrical: KindSpec(
        _l("电气火灾监控", "Electrical monitor"), 300,
        ("residual_current_ma", "cable_temp_c", "voltage_v", "current_a", "power_kw", "arc_faults",
         "pyrolysis_index", "breaker"),
        (AlarmType.residual_current, AlarmType.cable_overheat, AlarmType.arc_fault, AlarmType.overvoltage,
         AlarmType.pyrolysis_warning)),
    Kind.water: KindSpec(_l("消防水压/液位/消火栓", "Fire water / hydrant"), 86_400,
                         ("pressure_mpa", "level_m", "flow_m3h", "tilt_deg"),
                         (AlarmType.water_pressure_low, AlarmType.water_pressure_high, AlarmType.water_pressure_drop,
                          AlarmType.water_level_low, AlarmType.hydrant_open, AlarmType.hydrant_damaged)),
    Kind.uitd: KindSpec(_l("用户信息传输装置", "Transmission device (UITD)"), 90, (), (AlarmType.panel_fire,)),
    Kind.charger: KindSpec(
        _l("电动车充电桩", "Charging pile"), 300,
        ("port", "port_current_a", "port_power_w", "port_temp_c", "voltage_v", "residual_current_ma", "ports_active"),
        (AlarmType.charger_overheat, AlarmType.charger_overcurrent, AlarmType.charger_leakage)),
}

EVENTS: dict[Event, Label] = {
    Event.heartbeat: _l("心跳", "heartbeat"),
    Event.report: _l("定时上报", "report"),
    Event.alarm: _l("报警", "alarm"),
    Event.alarm_clear: _l("报警恢复", "alarm cleared"),
    Event.fault: _l("故障", "fault"),
    Event.fault_clear: _l("故障恢复", "fault cleared"),
    Event.tamper: _l("防拆", "tamper"),
    Event.tamper_clear: _l("防拆恢复", "tamper cleared"),
    Event.low_battery: _l("低电量", "low battery"),
    Event.test: _l("自检", "test"),
    Event.mute: _l("消音", "mute"),
    Event.power_fail: _l("断电", "power failure"),
    Event.power_restore: _l("来电", "power restored"),
    Event.valve_closed: _l("阀门关闭", "valve closed"),
    Event.valve_opened: _l("阀门打开", "valve opened"),
    Event.breaker_tripped: _l("断路器跳闸", "breaker tripped"),
    Event.breaker_closed: _l("断路器合闸", "breaker closed"),
    Event.hydrant_open: _l("消火栓开启", "hydrant opened"),
    Event.hydrant_close: _l("消火栓关闭", "hydrant closed"),
    Event.impact: _l("撞击", "impact"),
    Event.charging_start: _l("开始充电", "charging started"),
    Event.charging_stop: _l("停止充电", "charging stopped"),
    Event.overcurrent: _l("过流", "overcurrent"),
    Event.overtemp: _l("超温", "over temperature"),
    Event.leakage: _l("漏电", "leakage"),
    Event.port_cutoff: _l("端口断电", "port cut off"),
    Event.supervisory: _l("监管", "supervisory"),
    Event.supervisory_clear: _l("监管恢复", "supervisory cleared"),
    Event.shield: _l("屏蔽", "shielded"),
    Event.shield_clear: _l("屏蔽解除", "shield cleared"),
}

S, R = Severity, Response
ALARM_TYPES: dict[AlarmType, AlarmSpec] = {
    AlarmType.fire: AlarmSpec(_l("火警", "Fire"), S.critical, R.immediate, fire_class=True),
    AlarmType.smoke: AlarmSpec(_l("烟感报警", "Smoke"), S.major, R.verify, fire_class=True,
                               metrics=("smoke_obscuration_pct_m", "temperature_c")),
    AlarmType.gas_leak: AlarmSpec(_l("燃气泄漏", "Gas leak"), S.major, R.verify, fire_class=True,
                                  metrics=("gas_lel_pct",)),
    AlarmType.residual_current: AlarmSpec(_l("剩余电流超限", "Residual current"), S.major, R.verify,
                                          electrical_class=True, metrics=("residual_current_ma",)),
    AlarmType.cable_overheat: AlarmSpec(_l("线缆超温", "Cable overheat"), S.major, R.verify,
                                        electrical_class=True, metrics=("cable_temp_c",)),
    AlarmType.arc_fault: AlarmSpec(_l("故障电弧", "Arc fault"), S.major, R.verify, electrical_class=True,
                                   metrics=("arc_faults",)),
    AlarmType.overvoltage: AlarmSpec(_l("过压", "Overvoltage"), S.minor, R.verify, electrical_class=True,
                                     metrics=("voltage_v",)),
    AlarmType.water_pressure_low: AlarmSpec(_l("水压过低", "Low water pressure"), S.major, R.verify,
                                            metrics=("pressure_mpa", "level_m")),
    AlarmType.offline: AlarmSpec(_l("设备离线", "Offline"), S.minor, R.none),
    AlarmType.network_outage: AlarmSpec(_l("基站区域断网", "Network outage"), S.major, R.verify),
    AlarmType.tamper: AlarmSpec(_l("防拆报警", "Tamper"), S.minor, R.none),
    AlarmType.low_battery: AlarmSpec(_l("低电量", "Low battery"), S.warning, R.none, metrics=("battery_pct",)),
    AlarmType.device_fault: AlarmSpec(_l("设备故障", "Device fault"), S.minor, R.none),
    AlarmType.panel_fire: AlarmSpec(_l("主机火警", "Panel fire"), S.critical, R.verify, fire_class=True),
    AlarmType.panel_fault: AlarmSpec(_l("主机故障", "Panel fault"), S.minor, R.none),
    AlarmType.duty_missed: AlarmSpec(_l("查岗未应答", "Duty check missed"), S.minor, R.verify),
    AlarmType.water_pressure_high: AlarmSpec(_l("水压过高", "High water pressure"), S.minor, R.verify,
                                             metrics=("pressure_mpa",)),
    AlarmType.water_pressure_drop: AlarmSpec(_l("水压骤降", "Water pressure drop"), S.major, R.verify,
                                             metrics=("pressure_mpa",)),
    AlarmType.water_level_low: AlarmSpec(_l("水位过低", "Low water level"), S.major, R.verify, metrics=("level_m",)),
    AlarmType.hydrant_open: AlarmSpec(_l("消火栓开启", "Hydrant opened"), S.major, R.verify, metrics=("flow_m3h",)),
    AlarmType.hydrant_damaged: AlarmSpec(_l("消火栓损坏", "Hydrant damaged"), S.major, R.verify,
                                         metrics=("tilt_deg",)),
    AlarmType.charger_overheat: AlarmSpec(_l("充电端口超温", "Charger overheat"), S.major, R.verify,
                                          electrical_class=True, metrics=("port_temp_c", "port")),
    AlarmType.charger_overcurrent: AlarmSpec(_l("充电端口过流", "Charger overcurrent"), S.major, R.verify,
                                             electrical_class=True, metrics=("port_current_a",)),
    AlarmType.charger_leakage: AlarmSpec(_l("充电桩漏电", "Charger leakage"), S.major, R.verify,
                                         electrical_class=True, metrics=("residual_current_ma",)),
    AlarmType.pyrolysis_warning: AlarmSpec(_l("热解粒子预警", "Pyrolysis warning"), S.major, R.verify,
                                           electrical_class=True, metrics=("pyrolysis_index",)),
    AlarmType.co_high: AlarmSpec(_l("一氧化碳超标", "CO high"), S.major, R.verify, climbs_high=True,
                                 metrics=("co_ppm",)),
    AlarmType.power_fault: AlarmSpec(_l("电源故障", "Power fault"), S.minor, R.verify),
    AlarmType.panel_supervisory: AlarmSpec(_l("主机监管", "Panel supervisory"), S.major, R.verify),
    AlarmType.breaker_tripped: AlarmSpec(_l("断路器跳闸", "Breaker tripped"), S.minor, R.verify),
    AlarmType.linkage_failed: AlarmSpec(_l("联动失败", "Linkage failed"), S.major, R.verify),
}
del S, R

_NAN = math.nan
#: Per-device rule thresholds (CONTRACT §8, §10); a device's value wins over its profile's.
THRESHOLDS: dict[str, ThresholdSpec] = {
    "smoke_temp_c": ThresholdSpec(57.0, "°C", _l("烟感高温秒响应", "smoke alarm heat for immediate")),
    "smoke_rise_c_per_min": ThresholdSpec(8.0, "°C/min", _l("烟感温升秒响应", "smoke alarm rise for immediate")),
    "gas_lel_pct": ThresholdSpec(10.0, "%LEL", _l("燃气泄漏", "gas leak")),
    "gas_lel_critical_pct": ThresholdSpec(25.0, "%LEL", _l("燃气泄漏(严重)", "gas leak, critical")),
    "residual_current_ma": ThresholdSpec(300.0, "mA", _l("剩余电流", "residual current")),
    "cable_temp_c": ThresholdSpec(70.0, "°C", _l("线缆温度", "cable temperature")),
    "cable_rise_c_per_min": ThresholdSpec(10.0, "°C/min", _l("线缆温升", "cable temperature rise")),
    "arc_faults": ThresholdSpec(14.0, "/s", _l("故障电弧次数", "arcs per second")),
    "voltage_v_max": ThresholdSpec(264.0, "V", _l("过压", "overvoltage")),
    "pressure_low_mpa": ThresholdSpec(0.05, "MPa", _l("水压下限", "pressure low"), aliases=("pressure_mpa_min",)),
    "battery_pct_min": ThresholdSpec(20.0, "%", _l("低电量", "low battery")),
    "pressure_high_mpa": ThresholdSpec(_NAN, "MPa", _l("水压上限", "pressure high")),
    "pressure_drop_mpa": ThresholdSpec(0.05, "MPa", _l("水压骤降幅度", "pressure drop")),
    "level_low_m": ThresholdSpec(_NAN, "m", _l("水位下限", "level low")),
    "flow_open_m3h": ThresholdSpec(1.0, "m³/h", _l("消火栓开启流量", "hydrant open flow")),
    "tilt_max_deg": ThresholdSpec(15.0, "°", _l("消火栓倾角", "hydrant tilt")),
    "port_temp_c": ThresholdSpec(70.0, "°C", _l("充电端口温度", "port temperature")),
    "port_rise_c_per_min": ThresholdSpec(10.0, "°C/min", _l("充电端口温升", "port temperature rise")),
    "port_rated_a": ThresholdSpec(_NAN, "A", _l("端口额定电流", "port rated current")),
    "leakage_warn_ma": ThresholdSpec(15.0, "mA", _l("充电桩漏电预警", "charger leakage warning")),
    "leakage_critical_ma": ThresholdSpec(30.0, "mA", _l("充电桩漏电(严重)", "charger leakage, critical")),
    "pyrolysis_major": ThresholdSpec(50.0, "", _l("热解预警", "pyrolysis warning")),
    "pyrolysis_critical": ThresholdSpec(80.0, "", _l("热解预警(严重)", "pyrolysis, critical")),
    "co_major_ppm": ThresholdSpec(50.0, "ppm", _l("一氧化碳(60分钟)", "CO held 60 min")),
    "co_critical_ppm": ThresholdSpec(300.0, "ppm", _l("一氧化碳(严重)", "CO critical")),
}
#: An earlier threshold name -> its name now.
THRESHOLD_ALIASES: dict[str, str] = {alias: name for name, spec in THRESHOLDS.items() for alias in spec.aliases}

FAULT_CODES = ("sensor", "chamber_dirty", "low_battery", "comm", "probe_open", "probe_short", "valve", "power")


def meta() -> dict[str, object]:
    """The catalogue as JSON (`GET /api/v1/meta`): codes, units and zh/en labels of everything."""
    def label(x: Label) -> dict[str, str]:
        return {"zh": x.zh, "en": x.en}

    return {
        "kinds": [{"name": k.name, "code": int(k), "label": label(s.label), "heartbeat_s": s.heartbeat_s,
                   "metrics": [*NB_METRIC_NAMES, *s.metrics] if k is not Kind.uitd else list(s.metrics),
                   "alarm_types": [t.name for t in s.alarm_types]} for k, s in KINDS.items()],
        "events": [{"name": e.name, "code": int(e), "label": label(x)} for e, x in EVENTS.items()],
        "metrics": [{"name": n, "type": s.type.__name__, "unit": s.unit, "label": label(s.label),
                     **({"values": list(s.values)} if s.values else {})} for n, s in METRICS.items()],
        "alarm_types": [{"name": t.name, "label": label(s.label), "severity": s.severity.name,
                         "response": s.response.name, "fire_class": s.fire_class,
                         "electrical_class": s.electrical_class} for t, s in ALARM_TYPES.items()],
        "thresholds": [{"name": n, "default": None if math.isnan(s.default) else s.default, "unit": s.unit,
                        "label": label(s.label), "aliases": list(s.aliases)} for n, s in THRESHOLDS.items()],
        "fault_codes": list(FAULT_CODES),
    }
