"""A work-order notice's message (CONTRACT §11): Chinese by default, English by setting, the
order object for webhooks, alarm-shaped SMS variables (kind, unit, due `MM-DD`, no token)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from alerting.workorders.notice_text import OrderText, compose

UNIT = "赣州市第一人民医院住院部东楼三层护士站值班室"  # 22 characters: SMS keeps 20
ORDER = OrderText(work_order_id=7, kind="shielded", state="assigned", reason="屏蔽 24 小时 / shielded 24 h",
                  due=date(2026, 4, 30), overdue=False, unit_id="u1", unit_name=UNIT,
                  address="章贡区红旗大道 1 号", assignee="wang", devices=(("uitd-1", "消防控制室"), ("d2", None)))


def test_chinese_message_names_the_order_and_carries_no_alarm() -> None:
    m = compose(ORDER, "assigned", notice_id=42)
    assert m.title == f"【工单分派】屏蔽点位 {UNIT}"
    assert "工单：#7  类型：屏蔽点位  状态：已分派" in m.text and "设备：uitd-1（消防控制室）、d2" in m.text
    assert "整改期限：2026-04-30" in m.text and "逾期" not in m.text
    assert (m.alarm_ids, m.notification_id, m.link, m.work_order_notice_id, m.notice) == ((), 0, None, 42, "assigned")
    assert m.work_order is not None and m.work_order["device_ids"] == ["uitd-1", "d2"]
    assert m.work_order["due"] == "2026-04-30" and m.work_order["unit_id"] == "u1"


def test_english_overdue_and_sms_variables() -> None:
    m = compose(replace(ORDER, overdue=True), "overdue", "en")
    assert m.title.startswith("[work order overdue] shielded at ")
    assert "Due: 2026-04-30 (overdue)" in m.text and "Devices: uitd-1 (消防控制室), d2" in m.text
    assert m.sms == {"type": "屏蔽点位", "unit": UNIT[:20], "time": "04-30", "token": ""}
