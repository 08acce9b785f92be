-- v1 notifications still pending at the upgrade are carried over to the response loop's
-- `notifications` (the v1 outbox notifier is gone), for the responder the v1 contact became
-- (0010: same name, its webhook's `v1-webhook-*` channel), so nothing queued is lost. The v1
-- outbox then has no reader or writer and goes; v1 attempts stay in `notification_attempts`.
INSERT INTO notifications (alarm_id, event_id, level, reason, responder_id)
SELECT DISTINCT ON (o.alarm_id, r.responder_id, o.level) o.alarm_id, o.event_id, o.level, 'level', r.responder_id
  FROM notification_outbox o
  JOIN responders r ON r.origin IN ('v1_escalation_contact', 'v1_unit_contact') AND r.deleted_at IS NULL
   AND r.name = o.contact AND ('v1-webhook-' || substr(md5(o.target), 1, 12)) = ANY (r.channels)
 WHERE o.state = 'pending'
 ORDER BY o.alarm_id, r.responder_id, o.level, o.id
ON CONFLICT DO NOTHING;

DROP TABLE notification_outbox;
