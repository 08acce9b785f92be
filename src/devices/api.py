"""Device, unit and administration routes (CONTRACT §5, §6).

Roles: viewers read; operators register devices and units, switch maintenance and send
commands (every command, not only valves and breakers: a viewer sends none); admins manage
push sources and tokens, and alone set a unit contact's `webhook` (an outbound
target, CONTRACT §9: checked against the outbound policy, 422 naming a refused address; an
operator may resend the webhooks a unit already has). A token scoped to regions sees only devices and
units whose unit region lies under one of them (whole path segments), and one scoped to industries
only those of units of these industries (`devices.scope`): lists are filtered, anything else is 403.
Bulk import needs an operator token without a region or industry scope. Lists answer
`{"items": [...], "next_cursor": ...}`; pass `next_cursor` back as `cursor` for the next page.
Times are RFC 3339 (UTC).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from devices import catalogue, fleet_query, maintenance, registry
from devices.auth import (
    Admin,
    IndustryFilter,
    Operator,
    Principal,
    RegionFilter,
    Viewer,
    create_token,
    industry_filter,
    list_scope,
)
from devices.commands import COMMANDS, OPPOSITE, InvalidCommand, ParamsTooLarge
from devices.cursors import bad_cursor, id_cursor, time_cursor
from devices.fleet import ClockSkewMark
from devices.importer import UnusableImport
from devices.kinds import Kind
from devices.outbound import OutboundPolicy, OutboundRefused, check_target
from devices.registry import DeviceSpec, InvalidSpec, KindConflict, UnitSpec, UnknownUnit
from devices.scope import INDUSTRIES
from devices.service import DeviceService

router = APIRouter(prefix="/api/v1", tags=["devices"])

CSV_TYPES = ("text/csv", "application/csv")
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines")
Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
#: Most contacts of one unit (its escalation chain, not an address book).
MAX_CONTACTS = 50


class UnitRisk(Protocol):
    """The four-colour risk grading (`alerting.risk_service.RiskService`). A protocol so that
    `devices` needs nothing from `alerting`."""

    async def colours(self, unit_ids: Sequence[str]) -> Mapping[str, str]: ...


class DeviceDeps(Protocol):
    """What the device routes read of the running service."""

    @property
    def devices(self) -> DeviceService: ...

    @property
    def risk(self) -> UnitRisk | None: ...

    @property
    def outbound(self) -> OutboundPolicy: ...

    @property
    def subscriptions(self) -> SubscriptionControl | None: ...

    @property
    def command_guard(self) -> CommandGuard | None: ...


class CommandGuard(Protocol):
    """What stands behind automatic linkage (CONTRACT §10; the root wires `alerting.linkage`): an
    opposite command (`valve_open`, `breaker_close`, `port_enable`) to a device that an open
    alarm's linkage acted on needs an override with a note, recorded on that alarm."""

    async def holding(self, device_id: str, cmd: str) -> list[int]:
        """The open alarms whose linkage `cmd` would undo on the device (none for other commands)."""
        ...

    async def overridden(
        self, alarm_ids: Sequence[int], device_id: str, cmd: str, note: str, actor: str, cmd_id: str
    ) -> None:
        """Record the override and its note on each of these alarms."""
        ...


class SubscriptionControl(Protocol):
    """The platform subscriptions' supervisor as the push-source routes see it (the root wires
    `ingest.subscriptions.supervisor.Subscriptions`)."""

    def check(self, platform: str, config: Mapping[str, Any]) -> None:
        """`ValueError` with the reason unless `platform` can consume with `config`."""
        ...

    async def changed(self, name: str) -> None:
        """The source was created, replaced or deleted: (re)start or stop its consumer."""
        ...

    def state(self, name: str) -> dict[str, Any] | None:
        """The consumer's state (connected, messages, redelivered, lag, last_error), None if none runs."""
        ...


def deps(request: Request) -> DeviceDeps:
    return cast(DeviceDeps, request.state.services)


Deps = Annotated[DeviceDeps, Depends(deps)]


def device_service(d: Deps) -> DeviceService:
    return d.devices


Devices = Annotated[DeviceService, Depends(device_service)]


def outbound_policy(d: Deps) -> OutboundPolicy:
    return d.outbound


#: the outbound policy, for every route that configures an outbound target
Outbound = Annotated[OutboundPolicy, Depends(outbound_policy)]


def ms_iso(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def _page(items: list[dict[str, Any]], limit: int, cursor_of: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    return {"items": items, "next_cursor": cursor_of(items[-1]) if len(items) == limit else None}


# --- devices ---------------------------------------------------------------------------------
class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "device_id": "868120301234567", "kind": "smoke", "unit_id": "U-nanwai-01", "location": "3F kitchen",
        "heartbeat_s": 86400, "thresholds": {"smoke_temp_c": 60}, "profile": None, "cell_id": "1A2B3C"}})

    device_id: str
    kind: str = Field(description=", ".join(k.name for k in Kind))
    unit_id: str | None = None
    location: dict[str, Any] | str | None = None
    heartbeat_s: int | None = Field(None, description="expected report interval; offline after 2.5 of them")
    thresholds: dict[str, float] = Field(default_factory=dict)
    profile: str | None = None
    cell_id: str | None = None
    linkage: str | None = Field(None, description="unit (default), confirm, never, or auto (breakers)")
    hydrant: bool | None = Field(None, description="a water device that is a fire hydrant")


def registry_view(svc: DeviceService, device: dict[str, Any]) -> dict[str, Any]:
    """A device's registry data with its `effective_thresholds`: each threshold as it applies, its
    own, else its profile's, else its unit's, else the default (null: the rule is off)."""
    return {**device, "effective_thresholds": svc.effective_thresholds(device)}


def live_state(svc: DeviceService, device_id: str) -> dict[str, Any]:
    """The fleet's live state of a device: status, times, battery, signal and last values."""
    slot = svc.fleet.slot(device_id)
    if slot < 0:
        return {"status": "unknown", "last_seen": None, "values": {}, "flags": []}
    snap = fleet_query.snapshot(svc.fleet, slot)
    values = snap["values"]
    return {
        "status": snap["status"],
        "last_seen": ms_iso(snap["last_seen_ms"]),
        "last_report_ts": ms_iso(snap["last_ts_ms"]),
        "offline_since": ms_iso(snap["offline_since_ms"]),
        "battery_pct": snap["battery_pct"],
        "rsrp_dbm": snap["rsrp_dbm"],
        "sinr_db": values.get("sinr_db", {}).get("value"),
        "values": {name: {"value": v["value"], "ts": ms_iso(v["ts_ms"])} for name, v in values.items()},
        "flags": snap["flags"],
        "in_maintenance": snap["maintenance"],
        "muted_until": ms_iso(snap["muted_until_ms"]),
        "clock_skew": clock_skew_out(svc.fleet.clock_skew.get(device_id)),
    }


def clock_skew_out(mark: ClockSkewMark | None) -> dict[str, Any] | None:
    """A device's clock-skew mark (`ingest.clock_skew`): its clock is ahead, since when and by how much."""
    return None if mark is None else {"since": ms_iso(mark.since_ms), "last_offset_s": mark.last_offset_s}


async def visible_device(svc: DeviceService, principal: Principal, device_id: str) -> dict[str, Any]:
    """The registry data of a device the principal may see; 404 if unknown, 403 outside its regions."""
    device = await registry.get_device(svc.pool, device_id)
    if device is None:
        raise HTTPException(404, f"unknown device {device_id}")
    if not principal.sees(device["region"], device["industry"]):
        raise HTTPException(403, f"device {device_id} is outside your regions")
    return device


@router.post("/devices", status_code=201)
async def register_device(body: DeviceIn, response: Response, principal: Operator, svc: Devices) -> dict[str, Any]:
    """Register a device (201) or re-register it (200). 409 if it exists with another kind.
    Registering a device that was auto-registered from its traffic ends its quarantine."""
    try:
        spec = DeviceSpec.parse(body.model_dump(exclude_unset=True), svc.layers.profiles)
    except InvalidSpec as e:
        raise HTTPException(422, str(e)) from None
    if principal.scoped:
        unit = await registry.get_unit(svc.pool, spec.unit_id) if spec.unit_id else None
        if unit is None or not principal.sees(unit["region"], unit["industry"]):
            raise HTTPException(403, "a region-scoped token registers devices only in units of its regions")
        existing = await registry.get_device(svc.pool, spec.device_id)
        if existing is not None and not principal.sees(existing["region"], existing["industry"]):
            raise HTTPException(403, f"device {spec.device_id} is outside your regions")
    try:
        outcome = await svc.register(spec)
    except KindConflict as e:
        raise HTTPException(409, str(e)) from None
    except UnknownUnit as e:
        raise HTTPException(422, str(e)) from None
    if not outcome["created"]:
        response.status_code = 200
    device = await registry.get_device(svc.pool, spec.device_id)
    assert device is not None  # registered just now
    return {**registry_view(svc, device), **live_state(svc, spec.device_id),
            "was_quarantined": outcome["was_quarantined"]}


@router.post(
    "/devices/import",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}},
                                               "application/x-ndjson": {"schema": {"type": "string"}}}}},
)
async def import_devices(request: Request, principal: Operator, svc: Devices) -> dict[str, Any]:
    """Bulk register from CSV (header row naming the columns) or JSON lines. Existing devices of the
    same kind are updated. Answers counts created/updated/rejected and each rejected row's line and reason."""
    if principal.scoped:
        raise HTTPException(403, "bulk import needs a token without a region or industry scope")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in CSV_TYPES:
        fmt: Literal["csv", "ndjson"] = "csv"
    elif media in NDJSON_TYPES:
        fmt = "ndjson"
    else:
        raise HTTPException(415, "send text/csv or application/x-ndjson")
    try:
        text = (await request.body()).decode("utf-8")
        report = await svc.import_devices(text, fmt)
    except UnicodeDecodeError:
        raise HTTPException(422, "the body is not UTF-8") from None
    except UnusableImport as e:
        raise HTTPException(422, str(e)) from None
    return report.as_dict()


#: `?kind=`, one of the catalogue's kinds (an enum in the OpenAPI document).
KindFilter = Annotated[str | None, Query(
    pattern=f"^({'|'.join(k.name for k in Kind)})$", json_schema_extra={"enum": [k.name for k in Kind]})]


@router.get("/meta")
async def meta() -> dict[str, Any]:
    """The device catalogue: kinds, events, metrics with units, alarm types and thresholds, each with
    its Chinese and English label (what the console shows; no login needed: it holds no data)."""
    return catalogue.meta()


@router.get("/devices")
async def list_devices(
    principal: Viewer,
    svc: Devices,
    kind: KindFilter = None,
    status: Annotated[Literal["online", "offline", "alarm", "fault", "unknown"] | None, Query()] = None,
    region: RegionFilter = None,
    unit_id: str | None = None,
    industry: IndustryFilter = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Devices with their live state, in fleet order; every device appears exactly once across pages."""
    fleet = svc.fleet
    after = -1
    if cursor is not None:
        after = fleet.slot(id_cursor(cursor))
        if after < 0:
            raise bad_cursor()
    scope = list_scope(principal, region, industry)
    unit_ids = await registry.scoped_unit_ids(svc.pool, scope)
    if unit_id:
        unit_ids = [unit_id] if unit_ids is None or unit_id in unit_ids else []
    slots = fleet_query.query(
        fleet, kind=Kind.parse(kind) if kind else None, status=status, unit_ids=unit_ids,
        region_prefix=scope.region, scope=scope.regions or None, after_slot=after, limit=limit,
    )
    ids = [fleet.device_ids[s] for s in slots.tolist()]
    found = await registry.get_devices(svc.pool, ids)
    items = [{**(registry_view(svc, found[d]) if d in found else {"device_id": d}), **live_state(svc, d)}
             for d in ids]
    return _page(items, limit, lambda item: item["device_id"])


@router.get("/devices/{device_id}")
async def get_device(device_id: str, principal: Viewer, svc: Devices) -> dict[str, Any]:
    """Registry data (with `effective_thresholds`) plus live state: status, last_seen, battery,
    signal, last values."""
    device = await visible_device(svc, principal, device_id)
    return {**registry_view(svc, device), **live_state(svc, device_id)}


class MaintenanceIn(BaseModel):
    on: bool
    until: datetime | None = Field(None, description="RFC 3339; default 24 h ahead, at most 7 days ahead")
    reason: str | None = Field(None, max_length=500)

    def switch(self, principal: Principal, now_ms: int) -> maintenance.Maintenance:
        """The switch this body asks for (422 for an `until` the contract refuses)."""
        if not self.on:
            return maintenance.Maintenance(False, None, None, principal.name)
        try:
            until = maintenance.until_for(datetime.fromtimestamp(now_ms / 1000, UTC), self.until)
        except maintenance.BadUntil as e:
            raise HTTPException(422, str(e)) from None
        return maintenance.Maintenance(True, until, self.reason, principal.name)


@router.post("/devices/{device_id}/maintenance")
async def device_maintenance(device_id: str, body: MaintenanceIn, principal: Operator, svc: Devices) -> dict[str, Any]:
    """Switch a device's maintenance mode (its alarms are kept with response `none`) until
    `until`, audited with the operator's name."""
    await visible_device(svc, principal, device_id)
    switch = body.switch(principal, svc.clock())
    await maintenance.set_device(svc.pool, device_id, switch)
    slot = svc.fleet.slot(device_id)
    if slot >= 0:
        svc.fleet.set_maintenance(slot, body.on)
    return {"device_id": device_id, **switch.shown()}


# --- commands --------------------------------------------------------------------------------
class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cmd: str = Field(description=", ".join(COMMANDS))
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(None, description="seconds to wait for each attempt's answer")
    override: bool = Field(
        False, description=f"undo a linkage ({', '.join(OPPOSITE.values())}) while its alarm is open")
    note: str | None = Field(None, max_length=500, description="why: required with override")


@router.post("/devices/{device_id}/commands", status_code=201)
async def send_command(device_id: str, body: CommandIn, principal: Operator, d: Deps, svc: Devices) -> dict[str, Any]:
    """Send a downlink command; answers its `cmd_id` and `state` (`sent`, or later `acked`,
    `failed`, `timeout`: follow it with `GET /api/v1/commands/{cmd_id}`). An opposite command
    undoing a linkage whose alarm is still open needs `"override": true` and a `note` (409)."""
    device = await visible_device(svc, principal, device_id)
    guard = d.command_guard
    holding = await guard.holding(device_id, body.cmd) if guard is not None else []
    note = (body.note or "").strip()
    if holding and not (body.override and note):
        raise HTTPException(409, f"告警 {', '.join(map(str, holding))} 的联动仍在生效，须 override 并填写 note / "
                                 f"the linkage of open alarm(s) {', '.join(map(str, holding))} holds this device: "
                                 f'{body.cmd} needs "override": true and a "note"')
    try:
        command = await svc.commands.send(
            device_id, Kind.parse(device["kind"]), body.cmd, body.params, timeout_s=body.timeout_s, actor=principal.name
        )
    except ParamsTooLarge as e:
        raise HTTPException(413, str(e)) from None
    except InvalidCommand as e:
        raise HTTPException(422, str(e)) from None
    if holding and guard is not None:
        await guard.overridden(holding, device_id, body.cmd, note, principal.name, command["cmd_id"])
    return command


@router.get("/devices/{device_id}/commands")
async def device_commands(
    device_id: str, principal: Viewer, svc: Devices, limit: Limit = 100, cursor: Cursor = None
) -> dict[str, Any]:
    """A device's commands, newest first."""
    await visible_device(svc, principal, device_id)
    before: tuple[datetime, uuid.UUID] | None = None
    if cursor is not None:
        at, cmd_id = time_cursor(cursor)
        try:
            before = (at, uuid.UUID(cmd_id))
        except ValueError:
            raise bad_cursor() from None
    items = await svc.commands.list_for_device(device_id, before=before, limit=limit)
    return _page(items, limit, lambda c: f"{round(c['created_at'].timestamp() * 1_000_000)}:{c['cmd_id']}")


@router.get("/commands/{cmd_id}")
async def get_command(cmd_id: uuid.UUID, principal: Viewer, svc: Devices) -> dict[str, Any]:
    """A command with every state change."""
    command = await svc.commands.get(cmd_id)
    if command is None:
        raise HTTPException(404, f"unknown command {cmd_id}")
    device = await registry.get_device(svc.pool, command["device_id"])
    visible = principal.sees(device["region"], device["industry"]) if device else not principal.scoped
    if not visible:
        raise HTTPException(403, "this command's device is outside your regions")
    return command


# --- units -----------------------------------------------------------------------------------
class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "unit_id": "U-nanwai-01", "name": "南外街道农贸市场", "address": "章贡区南外街道1号",
        "region": "江西省/赣州市/章贡区/南外街道", "industry": "commercial",
        "contacts": [{"name": "张三", "phone": "13800000000", "role": "owner"}]}})

    unit_id: str | None = Field(None, description="generated when absent")
    name: str
    address: str = ""
    region: str = Field("", description="path such as 江西省/赣州市/章贡区/南外街道")
    industry: str = Field("other", description=f"one of {', '.join(INDUSTRIES)}")
    contacts: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_CONTACTS)
    location: dict[str, Any] | str | None = None
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="rule thresholds for the unit's devices that neither set them "
                                          "themselves nor have a profile that does (names in GET /api/v1/meta)")


async def _colours(d: DeviceDeps, unit_ids: Sequence[str]) -> Mapping[str, str]:
    """Risk colour per unit; empty when the app has no risk grading (a unit not yet rated is absent)."""
    risk = d.risk
    return await risk.colours(unit_ids) if risk is not None and unit_ids else {}


def unit_out(unit: dict[str, Any], colours: Mapping[str, str]) -> dict[str, Any]:
    """A unit as answered, with its `risk_colour` (`red`, `orange`, `yellow`, `green`; null until rated)."""
    return {**unit, "risk_colour": colours.get(unit["unit_id"])}


async def _visible_unit(svc: DeviceService, principal: Principal, unit_id: str) -> dict[str, Any]:
    unit = await registry.get_unit(svc.pool, unit_id)
    if unit is None:
        raise HTTPException(404, f"unknown unit {unit_id}")
    if not principal.sees(unit["region"], unit["industry"]):
        raise HTTPException(403, f"unit {unit_id} is outside your regions")
    return unit


@router.post("/units", status_code=201)
async def upsert_unit(
    body: UnitIn, response: Response, principal: Operator, d: Deps, svc: Devices, outbound: Outbound
) -> dict[str, Any]:
    """Create a unit (201; `unit_id` generated when absent) or replace one (200). Changed
    `thresholds` apply at once to every device of the unit."""
    try:
        spec = UnitSpec.parse(body.model_dump(exclude_unset=True))
    except InvalidSpec as e:
        raise HTTPException(422, str(e)) from None
    if principal.scoped:
        if not principal.sees_region(spec.region):
            raise HTTPException(403, f"region {spec.region or '(none)'} is outside your regions")
        if not principal.sees(spec.region, spec.industry):
            raise HTTPException(403, f"industry {spec.industry} is outside your token's industries")
        existing = await registry.get_unit(svc.pool, spec.unit_id)
        if existing is not None and not principal.sees(existing["region"], existing["industry"]):
            raise HTTPException(403, f"unit {spec.unit_id} is outside your regions")
    await _check_webhooks(spec, principal, outbound, svc)
    async with svc.pool.acquire() as conn:
        unit, created = await registry.upsert_unit(conn, spec)
    await svc.unit_saved(unit)
    if not created:
        response.status_code = 200
    return unit_out(unit, await _colours(d, [unit["unit_id"]]))


async def _check_webhooks(spec: UnitSpec, principal: Principal, policy: OutboundPolicy, svc: DeviceService) -> None:
    """Contacts' webhooks are outbound targets: 403 when an operator sets one the unit does not
    have yet, 422 naming a webhook the outbound policy refuses."""
    hooks = [c["webhook"] for c in spec.contacts if "webhook" in c]
    if not hooks:
        return
    if not principal.may("admin"):
        unit = await registry.get_unit(svc.pool, spec.unit_id)
        kept = {c.get("webhook") for c in unit["contacts"]} if unit else set()
        if any(hook not in kept for hook in hooks):
            raise HTTPException(403, "联系人的 webhook 是外呼目标，只有管理员可以设置 / "
                                     "a contact's webhook is an outbound target: only an admin may set it")
    for hook in hooks:
        if not isinstance(hook, str):
            raise HTTPException(422, "contacts: webhook must be an http or https URL")
        try:
            await check_target(hook, policy)
        except OutboundRefused as e:
            raise HTTPException(422, f"contacts: webhook {hook}: {e}") from None


@router.get("/units")
async def list_units(
    principal: Viewer,
    d: Deps,
    svc: Devices,
    region: RegionFilter = None,
    industry: IndustryFilter = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    scope = list_scope(principal, region, industry)
    after = id_cursor(cursor) if cursor is not None else None
    units = await registry.list_units(svc.pool, scope=scope, after=after, limit=limit)
    colours = await _colours(d, [u["unit_id"] for u in units])
    return _page([unit_out(u, colours) for u in units], limit, lambda u: u["unit_id"])


@router.get("/units/{unit_id}")
async def get_unit(unit_id: str, principal: Viewer, d: Deps, svc: Devices) -> dict[str, Any]:
    unit = await _visible_unit(svc, principal, unit_id)
    return unit_out(unit, await _colours(d, [unit_id]))


@router.post("/units/{unit_id}/maintenance")
async def unit_maintenance(unit_id: str, body: MaintenanceIn, principal: Operator, svc: Devices) -> dict[str, Any]:
    """Switch maintenance for a whole unit (every device in it) until `until`, audited."""
    await _visible_unit(svc, principal, unit_id)
    switch = body.switch(principal, svc.clock())
    await maintenance.set_unit(svc.pool, unit_id, switch)
    svc.fleet.set_unit_maintenance(unit_id, body.on)
    return {"unit_id": unit_id, **switch.shown()}


# --- administration --------------------------------------------------------------------------
#: Platforms a push source is consumed from (a queue) rather than pushed by (HTTP); the ingest
#: registry's `SUBSCRIPTION_PLATFORMS` (a unit test keeps the two and the table's check equal).
SUBSCRIPTION_PLATFORMS = ("ctwing_mq", "iotda_amqp", "aliyun_amqp")
_SOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the push_sources.name check


class PushSourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    platform: Literal["ctwing", "onenet", "generic", "ctwing_mq", "iotda_amqp", "aliyun_amqp"]
    secret: str | None = Field(None, description="HMAC secret (generic)")
    token: str | None = Field(None, description="push token (onenet, ctwing)")
    tenant: str = "default"
    profile: str | None = None
    rate_per_s: float = Field(1000, ge=0.01, le=1_000_000, description="requests per second allowed")
    config: dict[str, Any] | None = Field(
        None, description="a subscription's settings (ctwing_mq, iotda_amqp, aliyun_amqp; CONTRACT §3); "
                          "its secrets are never answered"
    )


def _source_out(source: dict[str, Any], d: DeviceDeps) -> dict[str, Any]:
    """A push source with its consumer's state (`state`: null when no consumer runs for it)."""
    if source["platform"] in SUBSCRIPTION_PLATFORMS:
        source["state"] = d.subscriptions.state(source["name"]) if d.subscriptions is not None else None
    return source


@router.post("/push-sources", status_code=201)
async def upsert_push_source(
    body: PushSourceIn, response: Response, principal: Admin, d: Deps, svc: Devices
) -> dict[str, Any]:
    """Configure a push source (201) or replace one (200): an HTTP push (`secret` or `token`) or a
    subscription (`config`), whose consumer is (re)started. Secrets are never answered."""
    if body.secret is not None and body.token is not None:
        raise HTTPException(422, "give secret or token, not both")
    subscription = body.platform in SUBSCRIPTION_PLATFORMS
    if subscription:
        if body.secret is not None or body.token is not None:
            raise HTTPException(422, "订阅的凭据放在 config 中 / a subscription's credentials go in config")
        if body.config is None:
            raise HTTPException(422, f"{body.platform} 需要 config / {body.platform} needs config")
        if d.subscriptions is None:
            raise HTTPException(409, "此进程不运行订阅 / this process runs no subscriptions")
        try:
            d.subscriptions.check(body.platform, body.config)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
    elif body.config:
        raise HTTPException(422, f"HTTP 推送源没有 config / an HTTP push source ({body.platform}) takes no config")
    source, created = await registry.upsert_push_source(
        svc.pool, name=body.name, platform=body.platform, secret=body.secret or body.token,
        tenant=body.tenant, profile=body.profile, rate_per_s=body.rate_per_s, config=body.config,
    )
    if d.subscriptions is not None:
        await d.subscriptions.changed(body.name)
    if not created:
        response.status_code = 200
    return _source_out(source, d)


@router.get("/push-sources")
async def list_push_sources(principal: Admin, d: Deps, svc: Devices) -> dict[str, Any]:
    return {"items": [_source_out(s, d) for s in await registry.list_push_sources(svc.pool)], "next_cursor": None}


@router.get("/push-sources/{name}")
async def get_push_source(name: str, principal: Admin, d: Deps, svc: Devices) -> dict[str, Any]:
    source = await registry.get_push_source(svc.pool, name) if _SOURCE_NAME.fullmatch(name) else None
    if source is None:
        raise HTTPException(404, f"未知推送源 / unknown push source {name[:64]!r}")
    return _source_out(source, d)


@router.delete("/push-sources/{name}", status_code=204)
async def delete_push_source(name: str, principal: Admin, d: Deps, svc: Devices) -> Response:
    """Delete a push source; a subscription's consumer stops (what it has in flight settles first)."""
    if not _SOURCE_NAME.fullmatch(name) or not await registry.delete_push_source(svc.pool, name):
        raise HTTPException(404, f"未知推送源 / unknown push source {name[:64]!r}")
    if d.subscriptions is not None:
        await d.subscriptions.changed(name)
    return Response(status_code=204)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "operator", "viewer"]
    regions: list[str] = Field(default_factory=list, description="region path prefixes; empty: every region")
    industries: list[str] = Field(default_factory=list, description="industries (CONTRACT §11); empty: every one")


@router.post("/tokens", status_code=201)
async def new_token(body: TokenIn, principal: Admin, svc: Devices) -> dict[str, Any]:
    """Create an API token; it is answered once and only its hash is stored."""
    try:
        regions = sorted({registry.region_path(r) for r in body.regions} - {""})
    except InvalidSpec as e:
        raise HTTPException(422, str(e)) from None
    scoped_industries = list(industry_filter(body.industries))
    token = await create_token(svc.pool, body.name, body.role, regions, scoped_industries)
    return {"name": body.name, "role": body.role, "regions": regions, "industries": scoped_industries, "token": token}
