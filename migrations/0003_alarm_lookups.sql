-- Lookups of the alarm lifecycle and the alarm API.
-- A raise checks the newest closed alarm of its (key, type) so that a late report raises nothing.
CREATE INDEX alarms_key_idx ON alarms (alarm_key, type, last_seen DESC);
-- GET /api/v1/alarms?device_id=...
CREATE INDEX alarms_devices_idx ON alarms USING gin (device_ids);
-- An alarm's notification attempts, shown with the alarm.
CREATE INDEX notification_attempts_alarm_idx ON notification_attempts (alarm_id, id);
