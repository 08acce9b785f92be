"""The alarm object's v2 additions, pure parts: contacts as each role may see them, the timeline
merge of audit rows and notifications, the response-time row."""

from __future__ import annotations

from alerting.response.alarm_view import contacts_for, from_row, merged

CONTACTS = [{"name": "值班室", "phone": "+867978123456", "webhook": "https://hooks.example/x"}, "free text"]


def test_contacts_phones_for_operators_webhooks_for_admins() -> None:
    assert contacts_for(CONTACTS, phones=False) == [{"name": "值班室"}, "free text"]
    assert contacts_for(CONTACTS, phones=True) == [{"name": "值班室", "phone": "+867978123456"}, "free text"]
    assert contacts_for(CONTACTS, phones=True, admin=True) == CONTACTS
    assert contacts_for('[{"name": "a", "phone": "1"}]', phones=False) == [{"name": "a"}]
    assert contacts_for(None, phones=True) == []


def test_timeline_merge_keeps_time_order_audit_first_at_equal_times() -> None:
    audit = [{"at": "2026-12-06T10:00:00.000Z", "action": "raised"},
             {"at": "2026-12-06T10:00:05.000Z", "action": "acked"}]
    sent = [{"at": "2026-12-06T10:00:01.000Z", "action": "notified"},
            {"at": "2026-12-06T10:00:05.000Z", "action": "notified"}]
    assert [e["action"] for e in merged(audit, sent)] == ["raised", "notified", "acked", "notified"]


def test_row_without_unit_and_times_rounded_never_negative() -> None:
    row = {"unit_id": None, "name": None, "address": None, "region": None, "industry": None, "contacts": None,
           "location": None, "devices": '[{"device_id": "d", "kind": null, "location": null}]',
           "notified_s": 1.23456, "acked_s": -0.002, "arrived_s": None, "resolved_s": None}
    out = from_row(row, phones=False)
    assert out["unit"] is None and out["devices"] == [{"device_id": "d", "kind": None, "location": None}]
    assert out["response_times"] == {"notified_s": 1.235, "acked_s": 0.0, "arrived_s": None, "resolved_s": None}
