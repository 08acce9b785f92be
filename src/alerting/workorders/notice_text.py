"""The message of a work-order notice (CONTRACT §11): pure. Chinese by default, English by setting.

It names why it is sent (assigned, overdue), the order's kind, number and state, the unit's name
and address, the devices (with their locations), the reason and the due date; no link (work
orders have no responder page). SMS gets the contract's alarm-shaped template variables: `type`
the kind's Chinese name, `unit` (at most 20 characters), `time` the due date as `MM-DD`, `token`
empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from alerting.response.channels.base import Message
from alerting.response.messages import SMS_UNIT_MAX, Language

KIND_ZH = {"repair": "故障维修", "reconnect": "离线恢复", "battery": "更换电池", "tamper": "防拆处理",
           "false_alarms": "误报治理", "shielded": "屏蔽点位", "hidden_danger": "其他隐患"}
STATE_ZH = {"open": "待分派", "assigned": "已分派", "fixed": "已整改待验证", "verified": "已验证",
            "cancelled": "已撤销"}
NOTICE_ZH = {"assigned": "工单分派", "overdue": "工单逾期"}
NOTICE_EN = {"assigned": "work order assigned", "overdue": "work order overdue"}


@dataclass(frozen=True, slots=True)
class OrderText:
    """What a notice says about its order (read from the order, its unit and its devices).
    `devices`: (device_id, location or None), in the order's device order."""

    work_order_id: int
    kind: str
    state: str
    reason: str
    due: date
    overdue: bool
    unit_id: str | None = None
    unit_name: str | None = None
    address: str | None = None
    assignee: str | None = None
    devices: tuple[tuple[str, str | None], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The order object of a webhook body."""
        return {"work_order_id": self.work_order_id, "kind": self.kind, "state": self.state,
                "unit_id": self.unit_id, "unit_name": self.unit_name, "address": self.address,
                "device_ids": [d for d, _ in self.devices], "reason": self.reason, "assignee": self.assignee,
                "due": self.due.isoformat(), "overdue": self.overdue}


def kind_name(kind: str, language: Language = "zh") -> str:
    return KIND_ZH.get(kind, kind) if language == "zh" else kind.replace("_", " ")


def _devices(devices: Sequence[tuple[str, str | None]], language: Language) -> str:
    if not devices:
        return "—" if language == "zh" else "-"
    if language == "zh":
        return "、".join(f"{d}（{p}）" if p else d for d, p in devices)
    return ", ".join(f"{d} ({p})" if p else d for d, p in devices)


def notice_text(o: OrderText, notice: str, language: Language = "zh") -> tuple[str, str]:
    """(title, text) of the notice `notice` (`assigned`, `overdue`) about `o`."""
    due = o.due.isoformat()
    if language == "zh":
        title = f"【{NOTICE_ZH.get(notice, notice)}】{kind_name(o.kind)} {o.unit_name or '未知单位'}"
        lines = [
            title,
            f"工单：#{o.work_order_id}  类型：{kind_name(o.kind)}  状态：{STATE_ZH.get(o.state, o.state)}",
            f"单位：{o.unit_name or '—'}",
            f"地址：{o.address or '—'}",
            f"设备：{_devices(o.devices, language)}",
            f"原因：{o.reason}",
            f"整改期限：{due}" + ("（已逾期）" if o.overdue else ""),
        ]
    else:
        title = f"[{NOTICE_EN.get(notice, notice)}] {kind_name(o.kind, 'en')} at {o.unit_name or 'unknown unit'}"
        lines = [
            title,
            f"Work order: #{o.work_order_id}  Kind: {kind_name(o.kind, 'en')}  State: {o.state}",
            f"Unit: {o.unit_name or '-'}",
            f"Address: {o.address or '-'}",
            f"Devices: {_devices(o.devices, language)}",
            f"Reason: {o.reason}",
            f"Due: {due}" + (" (overdue)" if o.overdue else ""),
        ]
    return title, "\n".join(lines)


def sms_vars(o: OrderText) -> dict[str, str]:
    """The alarm-shaped SMS template variables, in order: kind (Chinese), unit, due `MM-DD`, no token."""
    return {"type": kind_name(o.kind), "unit": (o.unit_name or "未知单位")[:SMS_UNIT_MAX],
            "time": o.due.strftime("%m-%d"), "token": ""}


def compose(o: OrderText, notice: str, language: Language = "zh", *, notice_id: int = 0) -> Message:
    """The message of notice `notice_id` about `o`."""
    title, text = notice_text(o, notice, language)
    return Message(title=title, text=text, sms=sms_vars(o), alarm_ids=(), work_order=o.to_json(),
                   work_order_notice_id=notice_id, notice=notice)
