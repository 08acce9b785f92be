"""Message text (CONTRACT §9 "Message"): pure. Chinese by default, English by setting.

A message names the alarm's type, severity and response, the unit's name, address and duty
phone, the devices' locations, the time (local, `MIAOXIANG_DEVICE_TZ`) and the responder link
`{MIAOXIANG_PUBLIC_URL}/r/{token}` (none without a public URL). A digest has one line per alarm
with its own link, at most `DIGEST_LINES`, then "and N more". SMS carries template variables
only (`type`, `unit` of at most 20 characters, `time` HH:MM, `token`) and never a digest: it
names the first alarm and, in `unit`, the count of the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from alerting.response.channels.base import Message
from devices.catalogue import ALARM_TYPES, AlarmType

Language = Literal["zh", "en"]
DIGEST_LINES = 10
SMS_UNIT_MAX = 20
ALARM_TYPE_BY_NAME: dict[str, AlarmType] = dict(AlarmType.__members__)

SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "提示"}
RESPONSE_ZH = {"immediate": "秒响应", "verify": "待核实", "none": "无需响应"}
LEVEL_ZH = ("单位联系人", "网格员", "微型消防站", "消防救援")
LEVEL_EN = ("unit contact", "grid worker", "micro fire station", "fire brigade")


@dataclass(frozen=True, slots=True)
class AlarmText:
    """What a message says about one alarm (read from the alarm, its unit and its devices)."""

    alarm_id: int
    type: str
    severity: str
    response: str
    first_seen: datetime
    unit_name: str | None = None
    address: str | None = None
    duty_phone: str | None = None
    device_locations: tuple[str, ...] = ()
    token: str | None = None
    alarm: Mapping[str, Any] = field(default_factory=dict)


def type_name(alarm_type: str, language: Language = "zh") -> str:
    """The catalogue's label of an alarm type (the code itself if the catalogue has none)."""
    code = ALARM_TYPE_BY_NAME.get(alarm_type)
    if code is None:
        return alarm_type if language == "zh" else alarm_type.replace("_", " ")
    label = ALARM_TYPES[code].label
    return label.zh if language == "zh" else label.en


def link(public_url: str | None, token: str | None) -> str | None:
    return None if not public_url or not token else f"{public_url.rstrip('/')}/r/{token}"


def _local(t: datetime, tz: ZoneInfo) -> datetime:
    return t.astimezone(tz)


def _title(a: AlarmText, language: Language) -> str:
    unit = a.unit_name or ("未知单位" if language == "zh" else "unknown unit")
    if language == "zh":
        return f"【{RESPONSE_ZH.get(a.response, a.response)}】{type_name(a.type)} {unit}"
    return f"[{a.response}] {type_name(a.type, 'en')} at {unit}"


def single_text(a: AlarmText, level: int, url: str | None, tz: ZoneInfo, language: Language = "zh") -> str:
    """The full message of one alarm."""
    at = _local(a.first_seen, tz).strftime("%Y-%m-%d %H:%M:%S")
    places = "; ".join(a.device_locations)
    if language == "zh":
        lines = [
            _title(a, language),
            f"类型：{type_name(a.type)}  级别：{SEVERITY_ZH.get(a.severity, a.severity)}  "
            f"响应：{RESPONSE_ZH.get(a.response, a.response)}",
            f"单位：{a.unit_name or '—'}",
            f"地址：{a.address or '—'}",
            f"值班电话：{a.duty_phone or '—'}",
            f"设备位置：{places or '—'}",
            f"时间：{at}",
            f"通知层级：{LEVEL_ZH[level]}",
            f"处置链接：{url}" if url else "处置链接：未配置（MIAOXIANG_PUBLIC_URL）",
        ]
    else:
        lines = [
            _title(a, language),
            f"Type: {type_name(a.type, 'en')}  Severity: {a.severity}  Response: {a.response}",
            f"Unit: {a.unit_name or '-'}",
            f"Address: {a.address or '-'}",
            f"Duty phone: {a.duty_phone or '-'}",
            f"Device locations: {places or '-'}",
            f"Time: {at}",
            f"Level: {LEVEL_EN[level]}",
            f"Link: {url}" if url else "Link: not configured (MIAOXIANG_PUBLIC_URL)",
        ]
    return "\n".join(lines)


def digest_text(
    alarms: Sequence[AlarmText], public_url: str | None, tz: ZoneInfo, language: Language = "zh"
) -> tuple[str, str]:
    """(title, text) of a digest: one line per alarm with its own link, at most DIGEST_LINES,
    then "and N more"."""
    n = len(alarms)
    title = f"【报警汇总】{n} 条报警" if language == "zh" else f"[digest] {n} alarms"
    lines = [title]
    for a in alarms[:DIGEST_LINES]:
        at = _local(a.first_seen, tz).strftime("%H:%M:%S")
        url = link(public_url, a.token)
        unit = a.unit_name or "—"
        if language == "zh":
            line = f"{at} {type_name(a.type)}（{RESPONSE_ZH.get(a.response, a.response)}）{unit} {a.address or ''}"
        else:
            line = f"{at} {type_name(a.type, 'en')} ({a.response}) {unit} {a.address or ''}"
        lines.append(line.rstrip() + (f" {url}" if url else ""))
    if n > DIGEST_LINES:
        lines.append(f"另有 {n - DIGEST_LINES} 条" if language == "zh" else f"and {n - DIGEST_LINES} more")
    return title, "\n".join(lines)


def sms_vars(alarms: Sequence[AlarmText], tz: ZoneInfo) -> dict[str, str]:
    """SMS template variables, in order: the first alarm's type (Chinese), unit (at most 20
    characters, "等N条" appended for the others), time HH:MM and token."""
    a = alarms[0]
    more = f"等{len(alarms)}条" if len(alarms) > 1 else ""
    unit = (a.unit_name or "未知单位")[: SMS_UNIT_MAX - len(more)] + more
    return {"type": type_name(a.type), "unit": unit, "time": _local(a.first_seen, tz).strftime("%H:%M"),
            "token": a.token or ""}


def compose(
    alarms: Sequence[AlarmText], level: int, public_url: str | None, tz: ZoneInfo, language: Language = "zh",
    *, notification_id: int = 0,
) -> Message:
    """The message carrying `alarms` (one, or a digest of several) at `level`."""
    first = alarms[0]
    url = link(public_url, first.token)
    if len(alarms) == 1:
        title, text = _title(first, language), single_text(first, level, url, tz, language)
    else:
        title, text = digest_text(alarms, public_url, tz, language)
    return Message(
        title=title, text=text, sms=sms_vars(alarms, tz), alarm_ids=tuple(a.alarm_id for a in alarms), link=url,
        level=level, alarm=first.alarm, notification_id=notification_id,
    )
