-- The response loop (CONTRACT §9): notification channels, responders, who was told what, the
-- responder page's tokens and what people did through it, and dispatch. Owned by
-- alerting.response (one module per table: channels, responders, notifications, tokens).

-- A notification channel: a group robot, an SMTP server, an SMS provider account or a webhook.
-- `config` holds its secrets; they are never returned by the API nor logged.
CREATE TABLE channels (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    type        text NOT NULL CHECK (type IN ('wecom_robot', 'dingtalk_robot', 'feishu_robot', 'smtp',
                                              'aliyun_sms', 'tencent_sms', 'webhook')),
    config      jsonb NOT NULL,
    endpoint    text,                          -- overrides the provider's address
    updated_by  text NOT NULL DEFAULT 'system',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A person or team. `channels` in order of preference: a message goes to the first that succeeds.
-- Scope: `regions` (path prefixes, whole segments) and/or `unit_ids`. `on_duty`: a JSON list of
-- {"weekday": 1-7 (ISO, Monday 1), "start": "HH:MM", "end": "HH:MM"} in MIAOXIANG_DEVICE_TZ;
-- NULL means always. A deleted responder keeps its rows for history; its tokens die with it.
CREATE TABLE responders (
    responder_id text PRIMARY KEY CHECK (responder_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('unit_contact', 'grid_worker', 'micro_station', 'fire_brigade',
                                              'duty_officer', 'maintainer')),
    phone       text,                          -- E.164
    email       text,
    channels    text[] NOT NULL DEFAULT '{}',
    regions     text[] NOT NULL DEFAULT '{}',
    unit_ids    text[] NOT NULL DEFAULT '{}',
    location    jsonb,                         -- {"lat": .., "lon": ..} WGS-84
    on_duty     jsonb,
    origin      text NOT NULL DEFAULT 'api',   -- api, v1_escalation_contact, v1_unit_contact
    updated_by  text NOT NULL DEFAULT 'system',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE INDEX responders_role_idx ON responders (role) WHERE deleted_at IS NULL;

-- One row per (alarm, responder or group channel, level, reason): who must be told, written in
-- the transaction of the alarm change that made it due; the notifier sends it (possibly in a
-- digest with others of the same recipient) and records the outcome here.
-- reason: level (the escalation reached `level`), upgrade (the response became immediate),
-- dispatch (an operator dispatched), duty_officer (minor/warning, or nobody on duty at a level).
CREATE TABLE notifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id     bigint NOT NULL REFERENCES alarms(alarm_id),
    event_id     bigint REFERENCES alarm_events(event_id),   -- the change that made it due
    level        smallint NOT NULL CHECK (level BETWEEN 0 AND 3),
    reason       text NOT NULL CHECK (reason IN ('level', 'upgrade', 'dispatch', 'duty_officer')),
    responder_id text REFERENCES responders(responder_id),
    group_channel text REFERENCES channels(name) ON UPDATE CASCADE,  -- a group robot's row
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed', 'acked')),
    channel      text,                         -- the channel that carried it (or last tried)
    attempts     smallint NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT clock_timestamp(),  -- due, or end of a worker's lease
    digest_of    bigint REFERENCES notifications(id),  -- carried by that row's message
    error_class  text,
    provider_code text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    done_at      timestamptz,
    CHECK ((responder_id IS NULL) <> (group_channel IS NULL))
);
CREATE UNIQUE INDEX notifications_once_idx
    ON notifications (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, ''), level, reason);
CREATE INDEX notifications_due_idx ON notifications (next_at) WHERE state = 'queued';
CREATE INDEX notifications_alarm_idx ON notifications (alarm_id, id);

-- Every attempt to deliver a message (one message may carry several notifications: a digest).
CREATE TABLE notification_sends (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notifications(id),
    channel         text NOT NULL,
    attempt         smallint NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    ok              boolean NOT NULL,
    error_class     text,
    provider_code   text
);
CREATE INDEX notification_sends_notification_idx ON notification_sends (notification_id, id);

-- Responder page links: `{MIAOXIANG_PUBLIC_URL}/r/{token}`. Only the SHA-256 of the token is
-- kept. Bound to one (alarm, responder) or, for a group robot, one (alarm, channel).
CREATE TABLE response_tokens (
    token_hash   bytea PRIMARY KEY,
    alarm_id     bigint NOT NULL REFERENCES alarms(alarm_id),
    responder_id text REFERENCES responders(responder_id),
    group_channel text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK ((responder_id IS NULL) <> (group_channel IS NULL))
);
CREATE UNIQUE INDEX response_tokens_binding_idx
    ON response_tokens (alarm_id, coalesce(responder_id, ''), coalesce(group_channel, ''));

-- What people did through their link: ack (收到), arrive (到场), feedback (classification, note, photo).
CREATE TABLE responder_actions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id      bigint NOT NULL REFERENCES alarms(alarm_id),
    token_hash    bytea NOT NULL REFERENCES response_tokens(token_hash),
    responder_id  text,
    group_channel text,
    person        text,                        -- the name typed on a group channel's page
    action        text NOT NULL CHECK (action IN ('ack', 'arrive', 'feedback')),
    at            timestamptz NOT NULL DEFAULT now(),
    lat           double precision,
    lon           double precision,
    classification text CHECK (classification IN ('fire', 'false_alarm', 'test', 'fault', 'other')),
    note          text CHECK (length(note) <= 500),
    photo         bytea,                       -- re-encoded, without metadata
    photo_type    text
);
-- A repeat changes nothing: one of each action per token.
CREATE UNIQUE INDEX responder_actions_once_idx ON responder_actions (token_hash, action);
CREATE INDEX responder_actions_alarm_idx ON responder_actions (alarm_id, id);

-- Dispatch (operator confirms a real fire) and the responder-ack hold of the escalation climb.
ALTER TABLE alarms
    ADD COLUMN dispatched_at timestamptz,
    ADD COLUMN dispatched_by text,
    ADD COLUMN held_until   timestamptz;       -- a responder's ack holds the climb (immediate: 300 s)

-- The upgrade from v1: each escalation contact becomes a responder of its level's role scoped to
-- its region with a webhook channel; each unit contact with a webhook a unit_contact of that unit.
INSERT INTO channels (name, type, config, updated_by)
SELECT DISTINCT 'v1-webhook-' || substr(md5(webhook), 1, 12), 'webhook',
       jsonb_build_object('url', webhook, 'secret', ''), 'migration'
  FROM (SELECT webhook FROM region_contacts
        UNION SELECT c ->> 'webhook' FROM units u, jsonb_array_elements(u.contacts) c
               WHERE jsonb_typeof(c -> 'webhook') = 'string') w
ON CONFLICT DO NOTHING;

INSERT INTO responders (responder_id, name, role, channels, regions, origin, updated_by)
SELECT 'v1-contact-' || substr(md5(rc.region || '|' || rc.level || '|' || rc.name), 1, 16), rc.name,
       (ARRAY['unit_contact', 'grid_worker', 'micro_station', 'fire_brigade'])[rc.level + 1],
       ARRAY['v1-webhook-' || substr(md5(rc.webhook), 1, 12)],
       CASE WHEN rc.region = '' THEN '{}'::text[] ELSE ARRAY[rc.region] END,
       'v1_escalation_contact', rc.updated_by
  FROM region_contacts rc
ON CONFLICT DO NOTHING;

INSERT INTO responders (responder_id, name, role, phone, channels, unit_ids, origin, updated_by)
SELECT 'v1-unit-' || substr(md5(u.unit_id || '|' || (c ->> 'webhook') || '|' || coalesce(c ->> 'name', '')), 1, 16),
       coalesce(c ->> 'name', 'unit contact'), 'unit_contact', c ->> 'phone',
       ARRAY['v1-webhook-' || substr(md5(c ->> 'webhook'), 1, 12)], ARRAY[u.unit_id], 'v1_unit_contact', 'migration'
  FROM units u, jsonb_array_elements(u.contacts) c
 WHERE jsonb_typeof(c -> 'webhook') = 'string'
ON CONFLICT DO NOTHING;
