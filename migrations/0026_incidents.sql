-- Incidents (CONTRACT §8 "Incidents (v2)"): a unit's `fire` alarm is the parent of the fire-class
-- device alarms of its unit open when it is raised or raised while it is open. alerting.lifecycle
-- (the owner of `alarms`) links them and keeps both sides in one transaction: `parent_id` on the
-- child, `children` on the parent. `held_devices`: on a resolved parent, the detectors of its
-- children that were still in alarm; their alarms are recorded on the parent and raise nothing
-- until the detector clears (then it leaves the list).
ALTER TABLE alarms
    ADD COLUMN parent_id bigint REFERENCES alarms (alarm_id),
    ADD COLUMN children bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN held_devices text[] NOT NULL DEFAULT '{}';
CREATE INDEX alarms_parent_idx ON alarms (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX alarms_held_idx ON alarms (alarm_key) WHERE held_devices <> '{}';

-- A child's notifications still queued when it joins an incident are not sent: people are told
-- about the incident (its parent), not about each detector (alerting.response.outbox.skip_queued).
ALTER TABLE notifications DROP CONSTRAINT notifications_state_check,
    ADD CONSTRAINT notifications_state_check CHECK (state IN ('queued', 'sent', 'failed', 'acked', 'skipped'));
