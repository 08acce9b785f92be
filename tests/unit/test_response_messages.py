"""Message text (alerting.response.messages) and when messages go (alerting.response.notifier.plan)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerting.response.messages import AlarmText, compose
from alerting.response.notifier import Due, plan

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 12, 6, 2, 5, 9, tzinfo=UTC)  # 10:05:09 in Shanghai


LONG_UNIT = "赣州市章贡区南外街道某某综合市场有限公司第一分公司"


def text(n: int = 1, token: str | None = "tok1", unit: str = LONG_UNIT) -> AlarmText:
    return AlarmText(alarm_id=n, type="smoke", severity="major", response="verify", first_seen=AT, unit_name=unit,
                     address="南外街道 1 号", duty_phone="+8613800000000", device_locations=("3 楼 301",), token=token)


def test_a_single_message_in_chinese_names_everything() -> None:
    m = compose([text()], 0, "https://mx.example.cn/", TZ)
    for part in ("烟感报警", "重要", "待核实", "某某综合市场", "南外街道 1 号", "+8613800000000", "3 楼 301",
                 "2026-12-06 10:05:09", "https://mx.example.cn/r/tok1"):
        assert part in m.text
    assert m.link == "https://mx.example.cn/r/tok1" and m.alarm_ids == (1,)
    assert m.sms == {"type": "烟感报警", "unit": LONG_UNIT[:20], "time": "10:05", "token": "tok1"}
    assert m.sms["unit"] == "赣州市章贡区南外街道某某综合市场有限公司"
    assert len(m.sms["unit"]) <= 20


def test_english_by_setting_and_no_link_without_public_url() -> None:
    m = compose([text()], 1, None, TZ, "en")
    assert "Type: Smoke  Severity: major  Response: verify" in m.text and "Level: grid worker" in m.text
    assert m.link is None and "not configured" in m.text


def test_a_digest_lists_ten_alarms_with_their_links_then_the_count_of_others() -> None:
    alarms = [text(i, f"t{i}") for i in range(1, 14)]
    zh = compose(alarms, 0, "https://mx.example.cn", TZ)
    lines = zh.text.splitlines()
    assert lines[0] == "【报警汇总】13 条报警" and len(lines) == 12 and lines[-1] == "另有 3 条"
    assert all(f"https://mx.example.cn/r/t{i}" in zh.text for i in range(1, 11))
    assert "/r/t11" not in zh.text
    en = compose(alarms, 0, "https://mx.example.cn", TZ, "en")
    assert en.text.splitlines()[-1] == "and 3 more"
    # SMS never carries a digest: the first alarm and the count
    assert zh.sms["token"] == "t1" and zh.sms["unit"].endswith("等13条") and len(zh.sms["unit"]) <= 20


def d(i: int, immediate: bool = False) -> Due:
    return Due(i, i, 0, immediate)


def test_a_message_goes_out_at_once_when_nothing_was_sent_lately() -> None:
    p = plan([d(1)], now=100.0, last_sent=None, digest_s=10)
    assert p.messages == [[d(1)]] and p.wait == []
    p = plan([d(1), d(2)], now=100.0, last_sent=80.0, digest_s=10)
    assert p.messages == [[d(1), d(2)]]


def test_verify_alarms_within_ten_seconds_wait_for_one_digest_but_immediate_never_waits() -> None:
    p = plan([d(2), d(3, immediate=True), d(4)], now=104.0, last_sent=100.0, digest_s=10)
    assert p.messages == [[d(3, immediate=True)]]
    assert p.wait == [d(2), d(4)] and p.until == 110.0
    # at 110 the held ones go as one digest
    p = plan([d(2), d(4)], now=110.0, last_sent=104.0, digest_s=10)
    assert p.wait and p.until == 114.0  # the immediate message at 104 counts as a message sent
    p = plan([d(2), d(4)], now=114.0, last_sent=104.0, digest_s=10)
    assert p.messages == [[d(2), d(4)]]


def test_a_group_robot_gets_at_most_twenty_messages_a_minute() -> None:
    sent = [float(t) for t in range(0, 40, 2)]  # 20 in the last minute
    p = plan([d(1, True), d(2)], now=50.0, last_sent=None, digest_s=10, recent_sends=sent, per_min=20)
    assert p.messages == [] and p.wait == [d(1, True), d(2)] and p.until == 60.0
    # one slot left: the excess joins one digest
    p = plan([d(1, True), d(2, True), d(3)], now=61.0, last_sent=None, digest_s=10, recent_sends=sent, per_min=20)
    assert p.messages == [[d(1, True), d(2, True), d(3)]]
    p = plan([d(1, True), d(2, True), d(3)], now=63.0, last_sent=None, digest_s=10, recent_sends=sent, per_min=20)
    assert p.messages == [[d(1, True)], [d(2, True), d(3)]]


def test_messages_name_types_by_the_catalogue_label() -> None:
    from alerting.response.messages import type_name

    assert (type_name("charger_overheat"), type_name("charger_overheat", "en")) == ("充电端口超温", "Charger overheat")
    assert type_name("vendor_thing") == "vendor_thing" and type_name("vendor_thing", "en") == "vendor thing"
