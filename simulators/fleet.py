"""A seeded model of a monitored fleet: regions, units, NB-IoT cells and devices of every kind.

`build_fleet(n_devices, seed)` is deterministic: the same arguments give the same fleet, down to
every IMEI, heartbeat phase and battery level. Devices know their own schedule (heartbeats with
jitter), battery drain and radio conditions; `simulators.telemetry` turns them into readings.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from devices.catalogue import KINDS, Kind

Industry = Literal[
    "welfare", "elderly_care", "hospital", "school", "religious", "commercial", "residential", "rental_housing",
    "nine_small", "industrial",
]
INDUSTRIES: tuple[Industry, ...] = (
    "welfare", "elderly_care", "hospital", "school", "religious", "commercial", "residential", "rental_housing",
    "nine_small", "industrial",
)
#: What a device is within its kind (CONTRACT §1, §10): a combustible-gas or a CO detector; an
#: electrical-fire monitor, a pyrolysis-particle detector or an arc-extinguishing breaker; a water
#: pressure or level sensor or a smart hydrant.
Role = Literal[
    "smoke", "gas", "co", "monitor", "pyrolysis", "breaker", "pressure", "level", "hydrant", "charger", "uitd"
]
ROLE_KIND: dict[Role, Kind] = {
    "smoke": Kind.smoke, "gas": Kind.gas, "co": Kind.gas, "monitor": Kind.electrical, "pyrolysis": Kind.electrical,
    "breaker": Kind.electrical, "pressure": Kind.water, "level": Kind.water, "hydrant": Kind.water,
    "charger": Kind.charger, "uitd": Kind.uitd,
}
#: Industries whose breakers feed medical or life-support loads: registered `linkage: never`, and
#: their units may not have `breaker: auto` (CONTRACT §10).
NO_AUTO_BREAKER: frozenset[str] = frozenset({"hospital", "elderly_care", "welfare"})
#: Low-pressure limits at the most unfavourable point (GB 50974: 0.07, 0.10 or 0.15 MPa) and on
#: municipal hydrant mains (0.14 MPa).
PRESSURE_LOW_MPA = (0.07, 0.10, 0.15)
HYDRANT_PRESSURE_LOW_MPA = 0.14
#: How a device reaches the service: straight to MQTT, through its unit's MQTT gateway (a JSON
#: batch), through an NB-IoT platform's HTTP push (ctwing, onenet) or a vendor cloud's generic
#: push, or over GB/T 26875 TCP (uitd).
Uplink = Literal["mqtt", "gateway", "ctwing", "onenet", "generic", "tcp"]
Transport = Literal["mqtt", "http", "tcp"]
TRANSPORT_OF: dict[str, Transport] = {
    "mqtt": "mqtt", "gateway": "mqtt", "ctwing": "http", "onenet": "http", "generic": "http", "tcp": "tcp"
}

#: Battery levels are given at this instant (2025-01-01T00:00:00Z) and drain linearly from it.
FLEET_EPOCH_MS = 1_735_689_600_000
DAY_MS = 86_400_000

#: Street-level regions with the administrative code of their district (used in uitd addresses).
STREETS: tuple[tuple[str, int], ...] = (
    ("江西省/赣州市/章贡区/南外街道", 360702),
    ("江西省/赣州市/章贡区/解放街道", 360702),
    ("江西省/赣州市/章贡区/赣江街道", 360702),
    ("江西省/赣州市/章贡区/水东镇", 360702),
    ("江西省/赣州市/南康区/蓉江街道", 360703),
    ("江西省/赣州市/南康区/东山街道", 360703),
    ("江西省/赣州市/赣县区/梅林镇", 360704),
    ("江西省/南昌市/东湖区/公园街道", 360102),
    ("江西省/南昌市/东湖区/百花洲街道", 360102),
    ("江西省/南昌市/西湖区/朝阳洲街道", 360103),
)
_STREET_WEIGHTS = (6, 4, 3, 2, 3, 2, 2, 4, 2, 2)
#: WGS-84 centres of the simulated cities (Ganzhou, Nanchang); units lie within ~6 km of theirs.
CITY_CENTRES: dict[str, tuple[float, float]] = {"赣州市": (25.83, 114.93), "南昌市": (28.68, 115.89)}
_SPREAD_DEG = 0.05
_ROADS = ("文清路", "红旗大道", "章江路", "青年路", "东阳山路", "八一大道", "阳明路", "中山路", "解放路", "健康路")
_CELL_CAPACITY = 150  # NB devices per simulated cell before a street gets another cell

#: GB/T 26875.3 component type codes used for panel components.
COMPONENT_TYPES: dict[int, str] = {42: "感烟", 31: "感温", 23: "手报", 24: "消火栓按钮", 96: "水流指示器"}


@dataclass(frozen=True, slots=True)
class UnitTemplate:
    names: tuple[str, ...]
    suffix: str
    mix: dict[Role, tuple[int, int]]  # device count range per role (uitd apart)
    uitd_p: float  # chance the unit has a fire panel relayed by a uitd
    gateway_p: float  # chance its electrical/water devices hang off an MQTT gateway


TEMPLATES: dict[Industry, UnitTemplate] = {
    "residential": UnitTemplate(
        ("阳光花园", "江南华府", "锦绣苑", "和谐家园", "滨江名都", "书香门第", "紫荆园", "金色家园"), "小区",
        {"smoke": (4, 12), "gas": (0, 3), "co": (0, 1), "pressure": (0, 1), "hydrant": (0, 2), "monitor": (0, 1),
         "charger": (1, 3)}, 0.3, 0.0,
    ),
    "rental_housing": UnitTemplate(
        ("城中村出租屋", "青年公寓", "民房出租楼", "务工人员公寓"), "",
        {"smoke": (2, 8), "gas": (0, 1), "co": (0, 1), "breaker": (0, 1), "charger": (0, 2)}, 0.0, 0.0,
    ),
    "nine_small": UnitTemplate(
        ("张记餐馆", "好又多超市", "老王五金店", "小美理发店", "平安网吧", "如家小旅馆", "幸福麻将馆", "兴旺粉店"), "",
        {"smoke": (1, 3), "gas": (0, 2), "monitor": (0, 1), "breaker": (0, 1)}, 0.0, 0.0,
    ),
    "commercial": UnitTemplate(
        ("万达广场", "天虹商场", "国美电器", "步行街商城", "华润万家", "新世纪百货"), "",
        {"smoke": (2, 6), "gas": (0, 1), "monitor": (1, 2), "pyrolysis": (0, 2), "pressure": (1, 1),
         "hydrant": (0, 1), "charger": (0, 1)}, 0.5, 0.4,
    ),
    "industrial": UnitTemplate(
        ("宏达纺织厂", "稀土材料公司", "恒通机械厂", "绿源食品厂", "华强电子厂", "金诚物流仓库"), "",
        {"smoke": (2, 5), "gas": (0, 1), "co": (0, 1), "monitor": (1, 3), "pyrolysis": (0, 2), "breaker": (0, 1),
         "pressure": (1, 2), "level": (0, 1), "hydrant": (0, 2)}, 0.6, 0.5,
    ),
    "hospital": UnitTemplate(
        ("第三人民医院", "社区卫生服务中心", "中医院", "妇幼保健院"), "",
        {"smoke": (2, 6), "gas": (0, 1), "co": (0, 1), "monitor": (0, 2), "pyrolysis": (0, 1), "breaker": (0, 1),
         "pressure": (0, 1), "level": (0, 1), "hydrant": (0, 1)}, 0.9, 0.3,
    ),
    "school": UnitTemplate(
        ("第一中学", "实验小学", "阳光幼儿园", "职业技术学校"), "",
        {"smoke": (2, 6), "gas": (0, 1), "monitor": (0, 2), "pressure": (0, 1), "hydrant": (0, 1),
         "charger": (0, 1)}, 0.8, 0.3,
    ),
    "elderly_care": UnitTemplate(
        ("福寿养老院", "颐养中心", "敬老院", "康乐老年公寓"), "",
        {"smoke": (2, 5), "gas": (0, 1), "co": (0, 1), "monitor": (0, 1), "pyrolysis": (0, 1), "breaker": (0, 1)},
        0.7, 0.0,
    ),
    "welfare": UnitTemplate(
        ("社会福利院", "儿童福利院", "救助管理站"), "",
        {"smoke": (2, 5), "gas": (0, 1), "monitor": (0, 1)}, 0.7, 0.0,
    ),
    "religious": UnitTemplate(
        ("慈云寺", "福音堂", "万寿宫", "清真寺"), "",
        {"smoke": (2, 4), "monitor": (0, 1)}, 0.0, 0.0,
    ),
}
_SURNAMES = "张王李刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = (
    "伟", "芳", "娜", "敏", "静", "强", "磊", "军", "洋", "勇", "艳", "杰", "涛", "明", "秀英", "建华", "志强", "海燕"
)
_SMOKE_SPOTS = ("走廊", "东侧房间", "西侧房间", "厨房", "仓库", "楼梯间", "配电间", "大厅", "客厅", "卧室")
#: Uplink shares (mqtt, ctwing, onenet, generic) of directly connected devices. OneNET object
#: models carry only some events (no test, mute or alarm_clear in a data point), so only smoke
#: detectors use it and scenarios never cast them (see `simulators.scenarios`).
_UPLINK_WEIGHTS: dict[Kind, tuple[int, int, int, int]] = {
    Kind.smoke: (45, 25, 15, 15),
    Kind.gas: (50, 30, 0, 20),
    Kind.water: (50, 30, 0, 20),
    Kind.electrical: (100, 0, 0, 0),
    Kind.charger: (60, 25, 0, 15),
}
_TACS = ("86812003", "86948703", "86447504", "86772403", "86370305")


@dataclass(frozen=True, slots=True)
class Cell:
    """An NB-IoT cell: `cell_id` is its E-UTRAN cell id in upper-case hex (as MX1 decodes it)."""

    cell_id: str
    pci: int
    region: str


@dataclass(frozen=True, slots=True)
class PanelComponent:
    """A component of a fire panel behind a uitd (GB/T 26875.3 system and component addresses)."""

    system_type: int
    system_addr: int
    component_type: int
    component_addr: int
    description: str

    @property
    def component(self) -> str:
        """The reading's `component`: `{system_type}:{system_addr}:{component_addr}` (CONTRACT §4)."""
        return f"{self.system_type}:{self.system_addr}:{self.component_addr}"


@dataclass(slots=True)
class SimUnit:
    unit_id: str
    name: str
    address: str
    region: str
    industry: Industry
    contacts: list[dict[str, str]]
    gateway_id: str | None = None
    device_ids: list[str] = field(default_factory=list)

    @property
    def location(self) -> tuple[float, float]:
        """(lat, lon), WGS-84: near its city's centre, a function of the unit id alone (so adding
        locations changed no other property of a seeded fleet)."""
        return place_near(CITY_CENTRES[self.region.split("/")[1]], self.unit_id)


def place_near(centre: tuple[float, float], key: str, spread_deg: float = _SPREAD_DEG) -> tuple[float, float]:
    """A point within `spread_deg` of `centre`, fixed by `key` (6 decimals, ~0.1 m)."""
    digest = hashlib.sha256(key.encode()).digest()
    dlat, dlon = (int.from_bytes(digest[i : i + 4], "big") / 2**32 * 2 - 1 for i in (0, 4))
    return round(centre[0] + dlat * spread_deg, 6), round(centre[1] + dlon * spread_deg, 6)


@dataclass(slots=True)
class SimDevice:
    """One device. NB-IoT devices have an IMEI id, a cell, a battery (unless mains-powered) and a radio.

    Heartbeat k falls at `k * heartbeat_s + phase_s` seconds after the epoch, moved by up to
    `jitter_s` either way (a deterministic function of the fleet seed, device and k).
    """

    device_id: str
    kind: Kind
    role: Role
    unit_id: str
    location: str
    heartbeat_s: int
    uplink: Uplink
    encoding: Literal["json", "mx1"]
    phase_s: float
    jitter_s: float
    seed: int
    cell_id: str | None = None
    pci: int | None = None
    rsrp_dbm: float | None = None  # the device's median signal; readings scatter around it
    battery_pct0: float | None = None  # at FLEET_EPOCH_MS; None when mains-powered without a battery
    drain_pct_per_day: float = 0.0
    mains: bool = False
    gateway_id: str | None = None
    gas_type: str | None = None
    valve: Literal["open", "none"] | None = None
    channels: int = 0  # residual-current channels (electrical monitor)
    phases: int = 0  # 1 or 3 (electrical monitor and breaker)
    ports: int = 0  # charging ports (charger), 2-10
    uitd_address: int | None = None
    components: tuple[PanelComponent, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)  # registered per device (CONTRACT §10)
    linkage: Literal["auto", "never"] | None = None  # registered; None follows the unit's policy
    building: str | None = None  # None outdoors (hydrants, charging sheds)
    floor: int | None = None  # negative below ground
    room: str | None = None

    @property
    def place(self) -> dict[str, Any] | str:
        """The registered location: building, floor (`3F`, `B1`) and room, or the text outdoors."""
        if self.floor is None:
            return self.location
        floor = f"{self.floor}F" if self.floor > 0 else f"B{-self.floor}"
        return {k: v for k, v in (("building", self.building), ("floor", floor), ("room", self.room)) if v}

    @property
    def hydrant(self) -> bool:
        """Registered with `hydrant: true`: its flow alone says it was opened (CONTRACT §10)."""
        return self.role == "hydrant"

    @property
    def nb(self) -> bool:
        return self.cell_id is not None

    @property
    def transport(self) -> Transport:
        return TRANSPORT_OF[self.uplink]

    def heartbeat_at(self, k: int) -> int:
        """Epoch ms of heartbeat number `k`."""
        jitter = self.jitter_s * noise(self.seed, self.device_id, "hb", k)
        return round((k * self.heartbeat_s + self.phase_s + jitter) * 1000)

    def heartbeats(self, start_ms: int, end_ms: int) -> Iterator[int]:
        """Epoch ms of every heartbeat in [start_ms, end_ms), in order."""
        k = max(0, math.floor((start_ms / 1000 - self.phase_s) / self.heartbeat_s) - 1)
        while (t := self.heartbeat_at(k)) < end_ms:
            if t >= start_ms:
                yield t
            k += 1

    def battery_at(self, at_ms: int) -> float | None:
        """Battery level in percent at `at_ms` (linear drain from FLEET_EPOCH_MS), or None."""
        if self.battery_pct0 is None:
            return None
        days = (at_ms - FLEET_EPOCH_MS) / DAY_MS
        return round(min(100.0, max(0.0, self.battery_pct0 - self.drain_pct_per_day * days)), 1)

    def signal_at(self, at_ms: int) -> dict[str, Any]:
        """NB radio metrics of a report sent at `at_ms` (empty for non-NB devices)."""
        if self.cell_id is None or self.rsrp_dbm is None:
            return {}
        rsrp = round(self.rsrp_dbm + 3 * noise(self.seed, self.device_id, "rsrp", at_ms))
        sinr = round((rsrp + 120) / 3 + 2 * noise(self.seed, self.device_id, "sinr", at_ms))
        ecl = 0 if rsrp >= -105 else 1 if rsrp >= -115 else 2
        return {
            "rsrp_dbm": rsrp, "sinr_db": max(-10, min(30, sinr)), "ecl": ecl, "pci": self.pci, "cell_id": self.cell_id
        }


@dataclass(frozen=True, slots=True)
class RegistryRows:
    """Bodies for the service's registry API: `POST /api/v1/units` and `POST /api/v1/devices`."""

    units: list[dict[str, Any]]
    devices: list[dict[str, Any]]


@dataclass
class SimFleet:
    seed: int
    regions: tuple[str, ...]
    cells: tuple[Cell, ...]
    units: tuple[SimUnit, ...]
    devices: tuple[SimDevice, ...]
    _unit_index: dict[str, SimUnit] = field(init=False, repr=False)
    _device_index: dict[str, SimDevice] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._unit_index = {u.unit_id: u for u in self.units}
        self._device_index = {d.device_id: d for d in self.devices}

    def unit(self, unit_id: str) -> SimUnit:
        return self._unit_index[unit_id]

    def device(self, device_id: str) -> SimDevice:
        return self._device_index[device_id]

    def devices_of(self, unit_id: str) -> list[SimDevice]:
        return [self._device_index[d] for d in self._unit_index[unit_id].device_ids]

    def registry_rows(self) -> RegistryRows:
        units = [
            {"unit_id": u.unit_id, "name": u.name, "address": u.address, "region": u.region, "industry": u.industry,
             "contacts": [dict(c) for c in u.contacts], "location": dict(zip(("lat", "lon"), u.location, strict=True))}
            for u in self.units
        ]
        devices = []
        for d in self.devices:
            row: dict[str, Any] = {"device_id": d.device_id, "kind": d.kind.name, "unit_id": d.unit_id,
                                   "location": d.place, "heartbeat_s": d.heartbeat_s}
            if d.cell_id is not None:
                row["cell_id"] = d.cell_id
            if d.thresholds:
                row["thresholds"] = dict(d.thresholds)
            if d.hydrant:
                row["hydrant"] = True
            if d.linkage is not None:
                row["linkage"] = d.linkage
            devices.append(row)
        return RegistryRows(units, devices)


def noise(*key: object) -> float:
    """A value in [-1, 1) that depends only on `key` (stable across processes, unlike `hash`)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def imei_check_digit(body14: str) -> str:
    """The Luhn check digit that completes a 14-digit IMEI body."""
    total = 0
    for i, ch in enumerate(body14):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return str((10 - total % 10) % 10)


def imei_valid(imei: str) -> bool:
    return len(imei) == 15 and imei.isdigit() and imei_check_digit(imei[:14]) == imei[14]


class _Builder:
    """The state of one `build_fleet` run; every random draw comes from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(f"fleet:{seed}")
        self.imeis: set[str] = set()
        self.names: Counter[str] = Counter()
        self.uitd_serial: Counter[int] = Counter()

    def imei(self) -> str:
        while True:
            body = self.rng.choice(_TACS) + f"{self.rng.randrange(1_000_000):06d}"
            imei = body + imei_check_digit(body)
            if imei not in self.imeis:
                self.imeis.add(imei)
                return imei

    def person(self) -> str:
        return self.rng.choice(_SURNAMES) + self.rng.choice(_GIVEN)

    def phone(self) -> str:
        return self.rng.choice(("138", "139", "150", "158", "186", "189")) + f"{self.rng.randrange(10**8):08d}"

    def unit(self, index: int, industry: Industry, street: str) -> SimUnit:
        t = TEMPLATES[industry]
        city, district, town = street.split("/")[1:]
        name = f"{district}{self.rng.choice(t.names)}{t.suffix}"
        self.names[name] += 1
        if self.names[name] > 1:
            name += f"（{self.names[name]}）"
        address = f"{city}{district}{town}{self.rng.choice(_ROADS)}{self.rng.randrange(1, 400)}号"
        contacts = [
            {"name": self.person(), "phone": self.phone(), "role": "responsible"},
            {"name": self.person(), "phone": self.phone(), "role": "manager"},
        ]
        return SimUnit(f"sim-u{index:05d}", name, address, street, industry, contacts)

    def device(self, role: Role, unit: SimUnit, street_code: int, floors: int) -> SimDevice:
        rng = self.rng
        kind = ROLE_KIND[role]
        # electrical and water devices inside a building may hang off its gateway; outdoor hydrants are NB-IoT
        gateway = unit.gateway_id is not None and kind in (Kind.electrical, Kind.water) and role != "hydrant"
        if kind is Kind.uitd:
            self.uitd_serial[street_code] += 1
            address = street_code * 1_000_000 + self.uitd_serial[street_code]
            device_id, uplink = f"uitd-{address}", "tcp"
        elif gateway:
            device_id, uplink = f"{unit.gateway_id}-{len(unit.device_ids):02d}", "gateway"
        else:
            device_id = self.imei()
            uplink = rng.choices(("mqtt", "ctwing", "onenet", "generic"), _UPLINK_WEIGHTS[kind])[0]
        # The catalogue's default interval, but a quarter of smoke alarms beat twice a day and
        # water sensors hourly.
        heartbeat_s = {
            Kind.smoke: rng.choice((86_400, 86_400, 86_400, 43_200)), Kind.water: 3_600,
        }.get(kind, KINDS[kind].heartbeat_s)
        dev = SimDevice(
            device_id=device_id,
            kind=kind,
            role=role,
            unit_id=unit.unit_id,
            **self.place(role, device_id, floors),
            heartbeat_s=heartbeat_s,
            uplink=uplink,  # type: ignore[arg-type]
            encoding="mx1" if uplink in ("mqtt", "ctwing") and rng.random() < 0.3 else "json",
            phase_s=rng.uniform(0, heartbeat_s),
            jitter_s=min(0.02 * heartbeat_s, 120.0),
            seed=self.seed,
            mains=role in ("gas", "monitor", "pyrolysis", "breaker", "charger", "uitd"),
        )
        if uplink not in ("tcp", "gateway"):
            dev.rsrp_dbm = max(-125.0, min(-65.0, rng.gauss(-95, 9)))
            if not dev.mains:
                dev.battery_pct0 = rng.choice((rng.uniform(55, 100), rng.uniform(55, 100), rng.uniform(22, 55)))
                dev.drain_pct_per_day = rng.uniform(0.015, 0.06)
        elif gateway:
            dev.gateway_id = unit.gateway_id
        if role == "gas":
            dev.gas_type = rng.choice(("methane", "methane", "lpg")) if unit.industry != "industrial" else rng.choice(
                ("methane", "hydrogen"))
            dev.valve = "open" if unit.industry in ("residential", "nine_small") and rng.random() < 0.5 else "none"
        elif role == "co":
            dev.gas_type = "co"
        elif role == "monitor":
            dev.phases = rng.choice((1, 3, 3))
            dev.channels = rng.choice((1, 1, 2))
        elif role == "breaker":
            dev.phases = 1
            dev.linkage = "never" if unit.industry in NO_AUTO_BREAKER else "auto"
        elif role == "pressure":
            dev.thresholds = {"pressure_low_mpa": rng.choice(PRESSURE_LOW_MPA)}
        elif role == "level":
            dev.thresholds = {"level_low_m": rng.choice((1.5, 2.0, 2.5))}
        elif role == "hydrant":
            dev.thresholds = {"pressure_low_mpa": HYDRANT_PRESSURE_LOW_MPA}
        elif role == "charger":
            dev.ports = rng.randint(2, 10)
            dev.thresholds = {"port_rated_a": rng.choice((3.0, 3.5, 5.0))}
        elif role == "uitd":
            dev.uitd_address = address
            dev.components = self.components(floors)
        return dev

    def location(self, role: Role, floors: int) -> tuple[str, int]:
        """A place in words and the floor drawn for it."""
        rng = self.rng
        floor = rng.randint(1, floors)
        spots: dict[Role, tuple[str, ...]] = {
            "gas": ("厨房", "锅炉房", "燃气表间"),
            "co": ("厨房", "锅炉房", "热水器间", "卧室"),
            "monitor": ("总配电箱", f"{floor}楼配电箱", "动力柜"),
            "pyrolysis": ("低压配电柜", f"{floor}楼配电柜", "UPS电池柜"),
            "breaker": (f"{floor}楼配电箱", "照明回路", "插座回路"),
            "pressure": ("喷淋末端", "消火栓管网最不利点", "报警阀组"),
            "level": ("消防水池", "屋顶水箱"),
            "hydrant": ("东门室外消火栓", "西侧道路消火栓", "北门室外消火栓", "停车场消火栓"),
            "charger": ("电动车棚", "地下非机动车库", "东侧充电区"),
            "uitd": ("消防控制室",),
        }
        return (f"{floor}楼{rng.choice(_SMOKE_SPOTS)}" if role == "smoke" else rng.choice(spots[role])), floor

    def place(self, role: Role, device_id: str, floors: int) -> dict[str, Any]:
        """The device's `location` text with its building, floor and room (SimDevice fields; the
        building is hashed from the id, so the random draws, and a seeded fleet, stay as they were):
        floor-specific places keep their floor, plant rooms are on the ground floor, water tanks on
        the roof or below ground; outdoor hydrants and charging sheds have none."""
        text, floor = self.location(role, floors)
        if role in ("hydrant", "charger") and not text.startswith("地下"):
            return {"location": text}
        if not (role in ("smoke", "gas", "co", "pressure") or "楼" in text):
            floor = {"屋顶水箱": floors, "消防水池": -1, "地下非机动车库": -1}.get(text, 1)
        room = text.split("楼", 1)[1] if role == "smoke" else text
        building = f"{int(hashlib.sha256(device_id.encode()).hexdigest(), 16) % 3 + 1}号楼" if floors >= 20 else "主楼"
        return {"location": text, "building": building, "floor": floor, "room": room}

    def components(self, floors: int) -> tuple[PanelComponent, ...]:
        rng = self.rng
        out = []
        for i in range(rng.randint(8, 40)):
            ctype = rng.choices(tuple(COMPONENT_TYPES), (70, 10, 10, 6, 4))[0]
            loop, addr = divmod(i, 200)
            floor, side = rng.randint(1, floors), rng.choice(("东", "西", "南", "北"))
            desc = f"{floor}层{side}侧{COMPONENT_TYPES[ctype]}{addr + 1:03d}"
            out.append(PanelComponent(1, 1, ctype, (loop + 1) * 1000 + addr + 1, desc))
        return tuple(out)


#: Shares of the industries after the anchors (in INDUSTRIES order).
_INDUSTRY_WEIGHTS = (2, 3, 4, 5, 4, 10, 8, 10, 36, 18)


def _anchor_industries() -> tuple[Industry, ...]:
    """The first units cycle through every industry so that even a small fleet has each one."""
    return ("residential", "nine_small", "commercial", "hospital", "industrial", "school", "elderly_care",
            "rental_housing", "welfare", "religious", "residential", "commercial", "industrial")


def build_fleet(n_devices: int, seed: int) -> SimFleet:
    """A fleet of exactly `n_devices` devices (uitd panels count as one device each)."""
    if n_devices < 1:
        raise ValueError("a fleet needs at least one device")
    b = _Builder(seed)
    rng = b.rng
    units: list[SimUnit] = []
    devices: list[SimDevice] = []
    anchors = _anchor_industries()
    streets = [s for s, _ in STREETS]
    codes = dict(STREETS)
    while len(devices) < n_devices:
        i = len(units)
        industry = anchors[i] if i < len(anchors) else rng.choices(INDUSTRIES, _INDUSTRY_WEIGHTS)[0]
        street = rng.choices(streets, _STREET_WEIGHTS)[0]
        unit = b.unit(i, industry, street)
        t = TEMPLATES[industry]
        floors = {"residential": 30, "rental_housing": 6, "nine_small": 2, "religious": 2}.get(industry, 8)
        if rng.random() < t.gateway_p:
            unit.gateway_id = f"gw{codes[street]}{i:05d}"
        roles: list[Role] = [r for r, (lo, hi) in t.mix.items() for _ in range(rng.randint(lo, hi))]
        if rng.random() < t.uitd_p:
            roles.append("uitd")
        for role in roles[: n_devices - len(devices)]:
            dev = b.device(role, unit, codes[street], floors)
            unit.device_ids.append(dev.device_id)
            devices.append(dev)
        units.append(unit)
    cells = _assign_cells(rng, units, devices)
    return SimFleet(seed, tuple(streets), tuple(cells), tuple(units), tuple(devices))


def _assign_cells(rng: random.Random, units: list[SimUnit], devices: list[SimDevice]) -> list[Cell]:
    """Give each street enough cells for its NB devices; a unit's NB devices share one cell."""
    by_id = {d.device_id: d for d in devices}
    per_street: Counter[str] = Counter()
    for u in units:
        per_street[u.region] += sum(by_id[d].rsrp_dbm is not None for d in u.device_ids)
    cells: list[Cell] = []
    street_cells: dict[str, list[Cell]] = {}
    used_ids: set[str] = set()
    for street, _ in STREETS:
        if per_street[street] == 0:
            continue
        for _ in range(math.ceil(per_street[street] / _CELL_CAPACITY)):
            while (cid := f"{rng.randrange(0x1000000, 0x10000000):X}") in used_ids:
                pass
            used_ids.add(cid)
            cell = Cell(cid, rng.randrange(504), street)
            cells.append(cell)
            street_cells.setdefault(street, []).append(cell)
    for u in units:
        choices = street_cells.get(u.region)
        if not choices:
            continue
        cell = rng.choice(choices)
        for d in u.device_ids:
            dev = by_id[d]
            if dev.rsrp_dbm is not None:
                dev.cell_id, dev.pci = cell.cell_id, cell.pci
    return cells
