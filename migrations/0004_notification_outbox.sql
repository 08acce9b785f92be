-- Durable escalation notifications, escalation contacts, operator audit of devices, and the
-- ordering and NOTIFY of alarm_events that live streams of several processes rely on.

-- Escalation contacts: who configured them.
ALTER TABLE region_contacts
    ADD COLUMN updated_by text NOT NULL DEFAULT 'system',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The contacts of one escalation level for an alarm: region_contacts whose region is the alarm's
-- region or an ancestor of it (whole path segments; '' is every region) and, at level 0, the
-- unit's own `contacts` entries that carry a `webhook`.
CREATE FUNCTION mx_escalation_contacts(alarm_region text, alarm_unit text, alarm_level integer)
RETURNS TABLE (name text, webhook text) LANGUAGE sql STABLE AS $$
    SELECT rc.name, rc.webhook FROM region_contacts rc
     WHERE rc.level = alarm_level
       AND (rc.region = '' OR alarm_region = rc.region OR starts_with(alarm_region, rtrim(rc.region, '/') || '/'))
    UNION
    SELECT coalesce(c ->> 'name', 'unit contact'), c ->> 'webhook'
      FROM units u, jsonb_array_elements(u.contacts) c
     WHERE alarm_level = 0 AND u.unit_id = alarm_unit AND jsonb_typeof(c -> 'webhook') = 'string'
$$;

-- One row per (alarm change that reached a level, contact), written in the transaction of the
-- change; delivered (with retries) from here, so a restart or a full queue loses nothing.
CREATE TABLE notification_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id    bigint NOT NULL REFERENCES alarms(alarm_id),
    event_id    bigint NOT NULL REFERENCES alarm_events(event_id),  -- its snapshot is the payload
    level       smallint NOT NULL CHECK (level BETWEEN 0 AND 3),
    contact     text NOT NULL,
    target      text NOT NULL,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts    smallint NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT clock_timestamp(),  -- due, or end of a worker's lease
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz,
    UNIQUE (event_id, target)
);
CREATE INDEX notification_outbox_due_idx ON notification_outbox (next_at) WHERE state = 'pending';

-- Operator actions on a device's alarm state (e.g. clearing a flapping mark).
CREATE TABLE device_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,
    actor       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX device_audit_device_idx ON device_audit (device_id, id);

-- Alarm writers of every process take one transaction-level advisory lock before they lock or
-- insert anything (the lifecycle explicitly; these triggers for any single-statement writer), so
-- alarm_events ids commit in increasing order: a stream that has published id N has seen every
-- committed id below N. Key 0x6d78616c61726d ('mxalarm'), alerting.lifecycle.ALARM_WRITE_LOCK.
CREATE FUNCTION mx_alarm_write_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(30813132286947949);
    RETURN NULL;
END $$;
CREATE TRIGGER alarms_write_lock BEFORE INSERT ON alarms
    FOR EACH STATEMENT EXECUTE FUNCTION mx_alarm_write_lock();
CREATE TRIGGER alarm_events_write_lock BEFORE INSERT ON alarm_events
    FOR EACH STATEMENT EXECUTE FUNCTION mx_alarm_write_lock();

-- After each statement that wrote alarm events: NOTIFY mx_alarm_events with its newest event id
-- (delivered at commit), so the stream hubs of other processes fetch and publish them.
CREATE FUNCTION mx_alarm_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    newest bigint;
BEGIN
    SELECT max(event_id) INTO newest FROM inserted;
    IF newest IS NOT NULL THEN
        PERFORM pg_notify('mx_alarm_events', newest::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alarm_events_notify AFTER INSERT ON alarm_events
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION mx_alarm_events_notify();
