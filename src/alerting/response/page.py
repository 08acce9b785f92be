"""The responder page (CONTRACT §9): `GET /r/{token}`, `POST /r/{token}/ack|arrive|feedback`.

No login: the link's token (`tokens`) is the credential, bound to one alarm and one responder
or group robot channel (whose page asks the person's name). `GET` shows a phone-sized page
(Chinese first, then English) and never changes anything. Each action is recorded once per
token (`responder_actions`; a repeat changes nothing) and on the alarm's timeline through the
lifecycle (actor `responder:<id>` or `group:<channel>:<name>`), so it reaches the stream. A
responder's `ack` holds the escalation climb (`alarms.held_until`): a `verify` alarm's for good,
an `immediate` one's for 300 s; an `arrive` or a `feedback` stops it. `feedback` never resolves:
its classification is a proposal on the timeline. A photo (JPEG or PNG, at most 5 MiB) is
re-encoded without its metadata (EXIF, GPS, comments) before it is stored.

Answers: 204 to an API client, 303 back to the page to a browser's form post (its Accept names
`text/html`); 404 for an unknown, expired or revoked token; 413 for a larger photo; 429 when a
client address has used up its small token bucket. Every answer carries `Referrer-Policy:
no-referrer`, `Cache-Control: no-store`, a strict Content-Security-Policy and nosniff; the page
loads nothing from other origins (its stylesheet and a tiny script for the arrival's location
come from `/r/-/`).

Linkage (CONTRACT §10): a link bound to a `unit_contact` or `micro_station` responder (never a
group channel's) also shows the alarm's offered (confirm-mode) linkage commands, one button each,
which `POST /r/{token}/linkage` (`cmd`) sends in the responder's name; opposite commands are never
offered. Other links answer 403 there, 409 when nothing is offered or the alarm is closed.
"""

from __future__ import annotations

import asyncio
import html
import io
import json
import math
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from string import Template
from typing import Annotated, Any, Protocol, cast
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.requests import HTTPConnection

from alerting.lifecycle import CLASSIFICATIONS, IMMEDIATE_HOLD_S, Alarm, AlarmNotFound, Change
from alerting.linkage import store as linkage_store
from alerting.linkage.runner import AlarmClosed, NothingOffered
from alerting.response import alarm_view, tokens
from alerting.response.messages import RESPONSE_ZH, SEVERITY_ZH, type_name
from alerting.response.photos import photo_url
from alerting.service import AlarmService

router = APIRouter(prefix="/r", tags=["responder page"])

PHOTO_MAX_BYTES = 5 * 1024 * 1024
#: a feedback body: the photo plus the form's other fields and multipart framing
FEEDBACK_MAX_BYTES = PHOTO_MAX_BYTES + 64 * 1024
#: a photo's largest decoded size (a small file can decode to a huge bitmap)
PHOTO_MAX_PIXELS = 40_000_000
NOTE_MAX = 500
NAME_MAX = 64
#: a hold for good (`verify` ack, arrival, feedback): far beyond any alarm's life
FOR_GOOD = timedelta(days=3650)
ACTIONS = ("ack", "arrive", "feedback")
AUDIT_ACTION = {"ack": "responder_acked", "arrive": "arrived", "feedback": "feedback"}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff", "X-Robots-Tag": "noindex, nofollow",
}
GONE = "链接无效或已过期 / this link is unknown or has expired"


# --- rate limit: a small token bucket per client address --------------------------------------
@dataclass(slots=True)
class Buckets:
    """`burst` requests at once per client address, refilled at `per_s`; full buckets are
    forgotten when more than `max_clients` addresses are tracked."""

    burst: float = 30.0
    per_s: float = 1.0
    max_clients: int = 10_000
    _level: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, client: str, now: float | None = None) -> float:
        """0 when the request may go on; else the seconds until it could."""
        now = time.monotonic() if now is None else now
        tokens_left, at = self._level.get(client, (self.burst, now))
        tokens_left = min(self.burst, tokens_left + (now - at) * self.per_s)
        if tokens_left < 1:
            self._level[client] = (tokens_left, now)
            return (1 - tokens_left) / self.per_s
        self._level[client] = (tokens_left - 1, now)
        if len(self._level) > self.max_clients:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        for client, (level, at) in list(self._level.items()):
            if level + (now - at) * self.per_s >= self.burst:
                del self._level[client]


class PageDeps(Protocol):
    """What the responder page reads of the running service."""

    @property
    def alarms(self) -> AlarmService: ...

    @property
    def responder_buckets(self) -> Buckets: ...

    @property
    def linkage(self) -> LinkageOffers: ...


class LinkageOffers(Protocol):
    """Confirm-mode linkage (`alerting.linkage.runner.LinkageRunner`)."""

    async def send_offer(self, alarm_id: int, cmd: str | None, actor: str) -> dict[str, Any]:
        """Send the alarm's offered command; raises AlarmNotFound, AlarmClosed or NothingOffered."""
        ...


#: Responders whose links may send an offered linkage command (CONTRACT §10), and what its button says.
LINKAGE_ROLES = ("unit_contact", "micro_station")
LINKAGE_TEXT = {"valve_close": "关闭燃气阀门 Close the gas valve", "breaker_trip": "断开断路器 Trip the breaker",
                "port_cutoff": "切断充电端口 Cut off the charging port"}


async def may_link(pool: asyncpg.Pool, binding: tokens.Binding) -> bool:
    """Whether the link may send offered linkage: a unit contact's or a micro station's, not a group's."""
    if binding.group or binding.responder_id is None:
        return False
    role = await pool.fetchval(
        "SELECT role FROM responders WHERE responder_id = $1 AND deleted_at IS NULL", binding.responder_id)
    return role in LINKAGE_ROLES


def deps(conn: HTTPConnection) -> PageDeps:
    return cast(PageDeps, conn.state.services)


def refused(status: int, detail: str, **extra: str) -> HTTPException:
    return HTTPException(status, detail, headers={**HEADERS, **extra})


def limited(request: Request, d: Annotated[PageDeps, Depends(deps)]) -> PageDeps:
    """429 when the client address has no token left."""
    wait = d.responder_buckets.take(request.client.host if request.client else "")
    if wait > 0:
        raise refused(429, "请求过于频繁，请稍后再试 / too many requests, try again shortly",
                      **{"Retry-After": str(math.ceil(wait))})
    return d


Page = Annotated[PageDeps, Depends(limited)]


# --- static files ------------------------------------------------------------------------------
def _static(name: str) -> str:
    return resources.files("alerting.response").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/-/page.css", include_in_schema=False)
async def page_css(_: Page) -> Response:
    return Response(_static("page.css"), media_type="text/css", headers={**HEADERS, "Cache-Control": "max-age=3600"})


@router.get("/-/page.js", include_in_schema=False)
async def page_js(_: Page) -> Response:
    return Response(_static("page.js"), media_type="text/javascript",
                    headers={**HEADERS, "Cache-Control": "max-age=3600"})


@router.get("/-/icon.svg", include_in_schema=False)
async def page_icon(_: Page) -> Response:
    return Response(_static("icon.svg"), media_type="image/svg+xml",
                    headers={**HEADERS, "Cache-Control": "max-age=3600"})


# --- the page ----------------------------------------------------------------------------------
@router.get("/{token}", response_class=HTMLResponse)
async def page(token: str, d: Page) -> HTMLResponse:
    """The alarm as the responder needs it, with the 收到 / 到场 / 反馈 buttons; changes nothing."""
    pool = d.alarms.pool
    binding = await tokens.lookup(pool, token)
    if binding is None:
        return HTMLResponse(render_gone(), status_code=404, headers=HEADERS)
    row = await pool.fetchrow("SELECT * FROM alarms WHERE alarm_id = $1", binding.alarm_id)
    extras = (await alarm_view.extras(pool, [binding.alarm_id], phones=True))[binding.alarm_id]
    actions = await pool.fetch(
        """SELECT ra.action, ra.at, ra.person, ra.group_channel, ra.classification, ra.token_hash = $2 AS mine,
                  r.name AS responder_name
             FROM responder_actions ra LEFT JOIN responders r ON r.responder_id = ra.responder_id
            WHERE ra.alarm_id = $1 ORDER BY ra.at, ra.id""",
        binding.alarm_id, binding.token_hash,
    )
    offers: tuple[str, ...] = ()
    if row["status"] not in ("resolved", "cleared_ack") and await may_link(pool, binding):
        offers = tuple(r["cmd"] for r in await linkage_store.offers(pool, binding.alarm_id) if r["cmd"] in LINKAGE_TEXT)
    view = PageView.of(Alarm.from_record(row), row, extras, [dict(a) for a in actions], binding, token,
                       d.alarms.lifecycle.tz, offers)
    return HTMLResponse(render(view), headers=HEADERS)


@dataclass(frozen=True, slots=True)
class PageView:
    """What the page shows (pure: `render` makes the HTML)."""

    token: str
    group: bool
    type: str
    severity: str
    response: str
    status: str
    unit_name: str | None
    address: str | None
    duty_phone: str | None
    devices: tuple[tuple[str, str], ...]  # (kind, place)
    local_time: str
    tz: str
    happened: tuple[tuple[str, str], ...]  # (local time, what)
    done: frozenset[str]  # this link's actions already recorded
    offers: tuple[str, ...] = ()  # linkage commands this link may send (`may_link`)

    @classmethod
    def of(
        cls, alarm: Alarm, row: Mapping[str, Any], extras: Mapping[str, Any], actions: list[dict[str, Any]],
        binding: tokens.Binding, token: str, tz: ZoneInfo, offers: tuple[str, ...] = (),
    ) -> PageView:
        def local(at: datetime | None) -> str:
            return "" if at is None else at.astimezone(tz).strftime("%m-%d %H:%M:%S")

        unit = extras.get("unit") or {}
        happened: list[tuple[datetime, str]] = [(row["created_at"], "告警产生 / alarm raised")]
        notified_s = (extras.get("response_times") or {}).get("notified_s")
        if notified_s is not None:
            happened.append((row["created_at"] + timedelta(seconds=notified_s), "已发出通知 / notifications sent"))
        if row["acked_at"] is not None:
            happened.append((row["acked_at"], "值班员已确认 / operator acknowledged"))
        if row["dispatched_at"] is not None:
            happened.append((row["dispatched_at"], "已调派微型消防站和消防救援 / stations and brigade dispatched"))
        for a in actions:
            who = a["responder_name"] or a["person"] or "—"
            what = {"ack": "已收到 / acknowledged", "arrive": "已到场 / arrived on site",
                    "feedback": f"反馈 / feedback: {CLASSIFICATION_TEXT.get(a['classification'], '')}"}[a["action"]]
            happened.append((a["at"], f"{who} {what}"))
        if row["resolved_at"] is not None:
            happened.append((row["resolved_at"],
                             f"已处置 / resolved: {CLASSIFICATION_TEXT.get(row['classification'], '')}"))
        happened.sort(key=lambda h: h[0])
        return cls(
            token=token, group=binding.group, type=alarm.type, severity=alarm.severity, response=alarm.response,
            status=alarm.status, unit_name=unit.get("name"), address=unit.get("address"),
            duty_phone=duty_phone(unit.get("contacts")),
            devices=tuple((str(d.get("kind") or ""), place(d)) for d in extras.get("devices") or []),
            local_time=row["first_seen"].astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), tz=tz.key,
            happened=tuple((local(at), what) for at, what in happened),
            done=frozenset(a["action"] for a in actions if a["mine"]), offers=offers,
        )


def duty_phone(contacts: Any) -> str | None:
    """The unit's duty phone: the first of its contacts with a phone number (never a responder's)."""
    for c in contacts or []:
        if isinstance(c, dict) and isinstance(c.get("phone"), str) and c["phone"].strip():
            return str(c["phone"]).strip()
    return None


#: the words of a device location, largest first (jsonb keeps its keys in its own order)
PLACE_ORDER = ("building", "floor", "room", "area", "description")


def place(device: Mapping[str, Any]) -> str:
    """A device's location as text: its building/floor/room words, else its id."""
    loc = device.get("location")
    if isinstance(loc, Mapping):
        keys = sorted(loc, key=lambda k: (PLACE_ORDER.index(k) if k in PLACE_ORDER else len(PLACE_ORDER), k))
        words = [str(loc[k]) for k in keys if k not in ("lat", "lon") and isinstance(loc[k], str | int)]
        words = [w for w in words if w]
        if words:
            return " ".join(words)
    if isinstance(loc, str) and loc:
        return loc
    return str(device.get("device_id", ""))


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def render(v: PageView) -> str:
    """The page's HTML (every value escaped)."""
    severity = f"{SEVERITY_ZH.get(v.severity, v.severity)} {v.severity}"
    response = f"{RESPONSE_ZH.get(v.response, v.response)} {v.response}"
    phone = (f'<a class="tel" href="tel:{_e(v.duty_phone.replace(" ", ""))}">{_e(v.duty_phone)}</a>'
             if v.duty_phone else "—")
    devices = "".join(f"<li>{_e(place_)} <span class=muted>{_e(kind)}</span></li>" for kind, place_ in v.devices)
    happened = "".join(f"<li><time>{_e(at)}</time> {_e(what)}</li>" for at, what in v.happened) or (
        "<li class=muted>暂无 / nothing yet</li>")
    name = ('<label>姓名 Your name<input name="name" required maxlength="64" autocomplete="name"></label>'
            if v.group else "")
    # no default: a note sent without a choice must not become a proposal of `fire` (the browser asks)
    options = '<option value="" disabled selected>请选择 / choose</option>' + "".join(
        f'<option value="{c}">{_e(CLASSIFICATION_TEXT[c])}</option>' for c in CLASSIFICATIONS
    )
    return Template(_static("page.html")).substitute(
        title=_e(f"{type_name(v.type)} {type_name(v.type, 'en')}"),
        type_zh=_e(type_name(v.type)), type_en=_e(type_name(v.type, "en")),
        severity_class=_e(v.severity), severity=_e(severity), response=_e(response),
        status=_e(STATUS_TEXT.get(v.status, v.status)),
        unit=_e(v.unit_name or "—"), address=_e(v.address or "—"), phone=phone,
        devices=devices or "<li class=muted>—</li>", time=_e(v.local_time), tz=_e(v.tz), happened=happened,
        base=f"/r/{_e(v.token)}", name=name,
        ack=_button("ack", "收到 Ack", "已收到 ✓ Acknowledged", v.done),
        arrive=_button("arrive", "到场 Arrive", "已到场 ✓ Arrived", v.done),
        feedback=_button("feedback", "提交反馈 Send feedback", "已反馈 ✓ Feedback sent", v.done),
        feedback_fields="" if "feedback" in v.done else FEEDBACK_FIELDS.format(name=name, options=options),
        linkage="".join(LINKAGE_FORM.format(base=f"/r/{_e(v.token)}", cmd=_e(cmd), label=_e(LINKAGE_TEXT[cmd]))
                        for cmd in v.offers if cmd in LINKAGE_TEXT),
    )


#: one offered linkage command (CONTRACT §10)
LINKAGE_FORM = """<form method="post" action="{base}/linkage" class="act linkage">
      <input type="hidden" name="cmd" value="{cmd}">
      <button type="submit" class="act-linkage">{label}</button>
      <p class="hint">联动待确认：按下即向设备下发 / linkage awaiting confirmation: pressing sends it to the device</p>
    </form>"""


#: the feedback form's fields (left out once this link has sent its feedback)
FEEDBACK_FIELDS = """{name}
      <label>现场判断 Classification
        <select name="classification" required>{options}</select>
      </label>
      <label>说明 Note <span class="muted">(≤ 500)</span>
        <textarea name="note" maxlength="500" rows="3"></textarea>
      </label>
      <label>照片 Photo <span class="muted">(JPEG/PNG ≤ 5 MiB)</span>
        <input type="file" name="photo" accept="image/jpeg,image/png">
      </label>"""


def _button(action: str, label: str, done_label: str, done: frozenset[str]) -> str:
    if action in done:
        return f'<button type="submit" disabled class="done">{_e(done_label)}</button>'
    return f'<button type="submit" class="act-{action}">{_e(label)}</button>'


CLASSIFICATION_TEXT = {
    "fire": "真实火情 Fire", "false_alarm": "误报 False alarm", "test": "测试 Test", "fault": "设备故障 Fault",
    "other": "其他 Other",
}
STATUS_TEXT = {
    "active_unack": "报警中，未确认 / active, unacknowledged", "active_ack": "报警中，已确认 / active, acknowledged",
    "cleared_unack": "已恢复，未确认 / cleared, unacknowledged", "cleared_ack": "已恢复 / cleared",
    "resolved": "已处置 / resolved",
}


def render_gone() -> str:
    return Template(_static("gone.html")).substitute(message=_e(GONE))


# --- actions -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Photo:
    data: bytes
    media_type: str


class PhotoRefused(ValueError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


def clean_photo(data: bytes) -> Photo:
    """The photo re-encoded from its pixels alone (orientation applied, EXIF, GPS, ICC and text
    chunks dropped); PhotoRefused 415 for anything but JPEG or PNG, 413 for a huge bitmap."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            kind = im.format
            if kind not in ("JPEG", "PNG"):
                raise PhotoRefused(415, f"照片须为 JPEG 或 PNG / the photo must be JPEG or PNG, not {kind}")
            if im.width * im.height > PHOTO_MAX_PIXELS:
                raise PhotoRefused(413, "照片像素过多 / the photo has too many pixels")
            upright = ImageOps.exif_transpose(im)
            if kind == "JPEG":
                pixels = upright if upright.mode in ("RGB", "L") else upright.convert("RGB")
            else:
                alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
                pixels = upright if upright.mode in ("RGB", "RGBA", "L", "LA") else upright.convert(
                    "RGBA" if alpha else "RGB")
            bare = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())  # no info, no metadata
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if isinstance(e, PhotoRefused):
            raise
        raise PhotoRefused(415, "照片无法识别 / the photo is not a readable JPEG or PNG") from None
    except Image.DecompressionBombError:
        raise PhotoRefused(413, "照片像素过多 / the photo has too many pixels") from None
    out = io.BytesIO()
    if kind == "JPEG":
        bare.save(out, "JPEG", quality=85)
        return Photo(out.getvalue(), "image/jpeg")
    bare.save(out, "PNG")
    return Photo(out.getvalue(), "image/png")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 beyond `limit`: by its declared length before reading, and
    while reading for a body without one."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise refused(413, f"照片不得超过 5 MiB / the photo must be at most 5 MiB ({limit} bytes a request)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refused(413, f"照片不得超过 5 MiB / the photo must be at most 5 MiB ({limit} bytes a request)")
        chunks.append(chunk)
    return b"".join(chunks)


async def form_fields(request: Request, limit: int) -> tuple[dict[str, str], bytes | None]:
    """The posted fields (a form, multipart or urlencoded, or a JSON object) and the photo's bytes."""
    body = await read_body(request, limit)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            raw = json.loads(body or b"{}")
        except ValueError:
            raise refused(422, "请求体不是 JSON / the body is not JSON") from None
        if not isinstance(raw, dict):
            raise refused(422, "请求体须为 JSON 对象 / the body must be a JSON object")
        return {k: "" if v is None else str(v) for k, v in raw.items() if k != "photo"}, None
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return {}, None
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=20, max_part_size=64 * 1024) as form:
            fields: dict[str, str] = {}
            photo: bytes | None = None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if key == "photo" and value.filename:
                        photo = await value.read(PHOTO_MAX_BYTES + 1)
                elif key not in fields:
                    fields[key] = value
    except HTTPException as e:
        status = 422 if e.status_code == 400 else e.status_code
        raise refused(status, f"表单无效 / malformed form: {e.detail}") from None
    if photo is not None and len(photo) > PHOTO_MAX_BYTES:
        raise refused(413, "照片不得超过 5 MiB / the photo must be at most 5 MiB")
    return fields, photo


def person_name(fields: Mapping[str, str], group: bool) -> str | None:
    """The name a group channel's page asks for (422 when missing); None on a personal link."""
    if not group:
        return None
    name = "".join(ch for ch in fields.get("name", "") if unicodedata.category(ch)[0] != "C").strip()
    if not name:
        raise refused(422, "请填写姓名 / please give your name")
    if len(name) > NAME_MAX:
        raise refused(422, f"姓名不得超过 {NAME_MAX} 个字符 / the name must be at most {NAME_MAX} characters")
    return name


def coordinate(fields: Mapping[str, str], name: str, bound: float) -> float | None:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise refused(422, f"{name} 须为数字 / {name} must be a number") from None
    if not math.isfinite(value) or abs(value) > bound:
        raise refused(422, f"{name} 超出范围 / {name} out of range")
    return value


@dataclass(frozen=True, slots=True)
class Action:
    """One validated responder action."""

    action: str
    person: str | None = None
    lat: float | None = None
    lon: float | None = None
    classification: str | None = None
    note: str | None = None
    photo: Photo | None = None


async def parse_action(action: str, request: Request, binding: tokens.Binding) -> Action:
    fields, photo_bytes = await form_fields(request, FEEDBACK_MAX_BYTES if action == "feedback" else 64 * 1024)
    person = person_name(fields, binding.group)
    if action == "ack":
        return Action(action, person)
    if action == "arrive":
        lat, lon = coordinate(fields, "lat", 90), coordinate(fields, "lon", 180)
        if (lat is None) != (lon is None):
            raise refused(422, "lat 与 lon 须同时给出 / give both lat and lon, or neither")
        return Action(action, person, lat=lat, lon=lon)
    classification = fields.get("classification", "")
    if classification not in CLASSIFICATIONS:
        raise refused(422, f"classification 须为 {', '.join(CLASSIFICATIONS)} 之一 / classification must be one of "
                           f"{', '.join(CLASSIFICATIONS)}")
    note = fields.get("note", "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise refused(422, f"备注不得超过 {NOTE_MAX} 个字符 / the note must be at most {NOTE_MAX} characters")
    photo = None
    if photo_bytes:
        try:
            photo = await asyncio.to_thread(clean_photo, photo_bytes)
        except PhotoRefused as e:
            raise refused(e.status, str(e)) from None
    return Action(action, person, classification=classification, note=note, photo=photo)


_RECORD = """
INSERT INTO responder_actions (alarm_id, token_hash, responder_id, group_channel, person, action, at, lat, lon,
                               classification, note, photo, photo_type)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, ''), action) DO NOTHING
RETURNING id
"""
#: the hold only ever lengthens (an arrival after an ack holds for good)
_HOLD = "UPDATE alarms SET held_until = greatest(held_until, $2) WHERE alarm_id = $1"
_ACKED = """
UPDATE notifications SET state = 'acked', done_at = coalesce(done_at, $4)
 WHERE alarm_id = $1 AND state = 'sent' AND coalesce(responder_id, '') = coalesce($2, '')
   AND coalesce(group_channel, '') = coalesce($3, '')
"""


def hold_until(action: str, response: str, now: datetime) -> datetime:
    """Until when an action holds the alarm's climb: an `immediate` alarm's ack for 300 s, any
    other ack, an arrival or a feedback for good."""
    if action == "ack" and response == "immediate":
        return now + timedelta(seconds=IMMEDIATE_HOLD_S)
    return now + FOR_GOOD


def actor(binding: tokens.Binding, person: str | None) -> str:
    if binding.group_channel is not None:
        return f"group:{binding.group_channel}:{person or ''}"
    return f"responder:{binding.responder_id}"


async def record(alarms: AlarmService, binding: tokens.Binding, act: Action) -> bool:
    """Record the action once (its audit row on the alarm's timeline); False for a repeat."""

    async def step(conn: asyncpg.Connection, alarm: Alarm, now_ms: int) -> Change | None:
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        photo = act.photo
        added = await conn.fetchval(
            _RECORD, alarm.alarm_id, binding.token_hash, binding.responder_id, binding.group_channel, act.person,
            act.action, now, act.lat, act.lon, act.classification, act.note, photo.data if photo else None,
            photo.media_type if photo else None,
        )
        if added is None:
            return None
        if alarm.status != "resolved":
            await conn.execute(_HOLD, alarm.alarm_id, hold_until(act.action, alarm.response, now))
        if act.action == "ack":
            await conn.execute(_ACKED, alarm.alarm_id, binding.responder_id, binding.group_channel, now)
        detail: dict[str, Any] = {"action_id": added}
        if act.lat is not None:
            detail |= {"lat": act.lat, "lon": act.lon}
        if act.action == "feedback":
            detail |= {"proposed_classification": act.classification, "note": act.note,
                       "photo_url": photo_url(alarm.alarm_id, added) if photo else None}
        return Change(alarm, AUDIT_ACTION[act.action], detail, actor=actor(binding, act.person))

    return await alarms.lifecycle.act(binding.alarm_id, step) is not None


async def _act(action: str, token: str, request: Request, d: PageDeps) -> Response:
    binding = await tokens.lookup(d.alarms.pool, token)
    if binding is None:
        raise refused(404, GONE)
    act = await parse_action(action, request, binding)
    try:
        await record(d.alarms, binding, act)
    except AlarmNotFound:
        raise refused(404, GONE) from None
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(f"/r/{token}", status_code=303, headers=HEADERS)
    return Response(status_code=204, headers=HEADERS)


@router.post("/{token}/ack", status_code=204)
async def ack(token: str, request: Request, d: Page) -> Response:
    """收到: the responder has the message (holds the climb; the alarm's status is unchanged)."""
    return await _act("ack", token, request, d)


@router.post("/{token}/arrive", status_code=204)
async def arrive(token: str, request: Request, d: Page) -> Response:
    """到场: on site, with optional `lat`, `lon` (WGS-84)."""
    return await _act("arrive", token, request, d)


@router.post("/{token}/linkage", status_code=204)
async def linkage(token: str, request: Request, d: Page) -> Response:
    """联动: send the alarm's offered linkage command (`cmd`) in the responder's name (unit contacts
    and micro stations only: 403 for other links; 409 when nothing is offered)."""
    binding = await tokens.lookup(d.alarms.pool, token)
    if binding is None:
        raise refused(404, GONE)
    if not await may_link(d.alarms.pool, binding):
        raise refused(403, "此链接不能下发联动 / this link cannot send linkage commands")
    fields, _ = await form_fields(request, 64 * 1024)
    cmd = fields.get("cmd") or None
    if cmd is not None and cmd not in LINKAGE_TEXT:
        raise refused(422, f"cmd 须为 {', '.join(LINKAGE_TEXT)} 之一 / cmd must be one of {', '.join(LINKAGE_TEXT)}")
    try:
        await d.linkage.send_offer(binding.alarm_id, cmd, actor(binding, None))
    except AlarmNotFound:
        raise refused(404, GONE) from None
    except (NothingOffered, AlarmClosed) as e:
        raise refused(409, str(e)) from None
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(f"/r/{token}", status_code=303, headers=HEADERS)
    return Response(status_code=204, headers=HEADERS)


@router.post("/{token}/feedback", status_code=204)
async def feedback(token: str, request: Request, d: Page) -> Response:
    """反馈 (multipart): `classification` proposed, `note` up to 500 characters, optional `photo`."""
    return await _act("feedback", token, request, d)
