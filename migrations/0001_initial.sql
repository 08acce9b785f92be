-- Miaoxiang initial schema: registry, readings (daily partitions), alarms with audit,
-- commands, dead letters, push sources and API tokens.

CREATE TABLE regions (
    path        text PRIMARY KEY,              -- 江西省/赣州市/章贡区/南外街道
    name        text NOT NULL,
    parent      text REFERENCES regions(path),
    level       smallint NOT NULL CHECK (level BETWEEN 1 AND 6)
);

CREATE TABLE units (
    unit_id     text PRIMARY KEY,
    name        text NOT NULL,
    address     text NOT NULL DEFAULT '',
    region      text NOT NULL DEFAULT '' ,
    industry    text NOT NULL DEFAULT 'other',
    contacts    jsonb NOT NULL DEFAULT '[]',
    location    jsonb,
    maintenance boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX units_region_idx ON units (region text_pattern_ops);

CREATE TABLE devices (
    device_id   text PRIMARY KEY CHECK (device_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    kind        text NOT NULL CHECK (kind IN ('smoke', 'gas', 'electrical', 'uitd', 'water')),
    unit_id     text REFERENCES units(unit_id),
    location    jsonb,
    heartbeat_s integer CHECK (heartbeat_s > 0),
    thresholds  jsonb NOT NULL DEFAULT '{}',
    profile     text,
    cell_id     text,
    maintenance boolean NOT NULL DEFAULT false,
    quarantined boolean NOT NULL DEFAULT false,
    parent_id   text,                          -- a uitd panel component's transmission device
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_unit_idx ON devices (unit_id);
CREATE INDEX devices_kind_idx ON devices (kind);

-- Live state checkpoint of the in-memory fleet (devices.fleet), restored at start.
CREATE TABLE device_state (
    device_id   text PRIMARY KEY,
    last_seen   timestamptz,
    status      text NOT NULL,
    battery_pct real,
    rsrp_dbm    real,
    last_values jsonb NOT NULL DEFAULT '{}',
    flags       integer NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Readings: range partitions by day on device time, created ahead by mx_ensure_readings_partitions.
-- `dedup` is the report's seq or, without one, a digest of its content: a replayed message
-- (QoS 1 redelivery, a platform's retry) inserts nothing.
CREATE TABLE readings (
    device_id   text NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    seq         integer,
    dedup       bigint NOT NULL,
    kind        text NOT NULL,
    event       text NOT NULL,
    component   text,
    metrics     jsonb NOT NULL DEFAULT '{}',
    extra       jsonb,
    source      text NOT NULL DEFAULT ''
) PARTITION BY RANGE (ts);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;
CREATE UNIQUE INDEX readings_dedup_idx ON readings (device_id, ts, dedup);

CREATE FUNCTION mx_ensure_readings_partitions(from_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    made integer := 0;
    name text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := from_day + i;
        name := 'readings_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL
           AND NOT EXISTS (SELECT 1 FROM readings_default WHERE ts >= d AND ts < d + 1) THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                           name, d::timestamptz, (d + 1)::timestamptz);
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

CREATE FUNCTION mx_drop_readings_before(cutoff date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    dropped integer := 0;
BEGIN
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_[0-9]{8}$'
               AND to_date(substr(c.relname, 10), 'YYYYMMDD') < cutoff LOOP
        EXECUTE format('DROP TABLE %I', r.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

CREATE TABLE alarms (
    alarm_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_key       text NOT NULL,             -- the device or unit the alarm folds on
    type            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    response        text NOT NULL CHECK (response IN ('immediate', 'verify', 'none')),
    status          text NOT NULL CHECK (status IN ('active_unack', 'active_ack', 'cleared_unack', 'cleared_ack', 'resolved')),
    device_ids      text[] NOT NULL DEFAULT '{}',
    unit_id         text,
    region          text NOT NULL DEFAULT '',
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    count           integer NOT NULL DEFAULT 1,
    rule            text NOT NULL,
    evidence        jsonb NOT NULL DEFAULT '[]',
    escalation_level smallint NOT NULL DEFAULT 0,
    escalated_at    timestamptz,
    classification  text CHECK (classification IN ('fire', 'false_alarm', 'test', 'fault', 'other')),
    note            text,
    acked_by        text,
    acked_at        timestamptz,
    cleared_at      timestamptz,
    resolved_by     text,
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- One open alarm per (key, type), enforced by the database whatever number of workers race.
CREATE UNIQUE INDEX alarms_one_open_idx ON alarms (alarm_key, type)
    WHERE status IN ('active_unack', 'active_ack', 'cleared_unack');
CREATE INDEX alarms_status_idx ON alarms (status, last_seen DESC);
CREATE INDEX alarms_unit_idx ON alarms (unit_id, last_seen DESC);
CREATE INDEX alarms_region_idx ON alarms (region text_pattern_ops);

-- Audit trail of every alarm change; its id is the event id of the live streams.
CREATE TABLE alarm_events (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id    bigint NOT NULL REFERENCES alarms(alarm_id),
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,                 -- raised, repeated, acked, escalated, cleared, resolved, ...
    actor       text NOT NULL DEFAULT 'system',
    detail      jsonb NOT NULL DEFAULT '{}',
    snapshot    jsonb NOT NULL                 -- the alarm as it stood after the change
);
CREATE INDEX alarm_events_alarm_idx ON alarm_events (alarm_id, event_id);

CREATE TABLE notification_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id    bigint NOT NULL REFERENCES alarms(alarm_id),
    level       smallint NOT NULL,
    target      text NOT NULL,
    attempt     smallint NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    detail      text NOT NULL DEFAULT ''
);

-- Escalation contacts per region prefix and level (0 unit contact .. 3 fire brigade dispatch).
CREATE TABLE region_contacts (
    region      text NOT NULL,
    level       smallint NOT NULL CHECK (level BETWEEN 0 AND 3),
    name        text NOT NULL,
    webhook     text NOT NULL,
    PRIMARY KEY (region, level, name)
);

CREATE TABLE commands (
    cmd_id      uuid PRIMARY KEY,
    device_id   text NOT NULL,
    cmd         text NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}',
    state       text NOT NULL CHECK (state IN ('sent', 'acked', 'failed', 'timeout')),
    actor       text NOT NULL,
    attempts    smallint NOT NULL DEFAULT 1,
    timeout_s   real NOT NULL,
    detail      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX commands_device_idx ON commands (device_id, created_at DESC);

CREATE TABLE command_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cmd_id      uuid NOT NULL REFERENCES commands(cmd_id),
    at          timestamptz NOT NULL DEFAULT now(),
    state       text NOT NULL,
    detail      text
);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    transport   text NOT NULL,                 -- mqtt, http, tcp
    source      text NOT NULL,                 -- topic, push source or peer address
    reason      text NOT NULL,
    raw         bytea NOT NULL
);
CREATE INDEX dead_letters_time_idx ON dead_letters (received_at DESC);

CREATE TABLE push_sources (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    platform    text NOT NULL CHECK (platform IN ('ctwing', 'onenet', 'generic')),
    secret      text,                          -- HMAC secret (generic) or token (onenet, ctwing)
    tenant      text NOT NULL DEFAULT 'default',
    profile     text,                          -- default device profile for this source's products
    rate_per_s  real NOT NULL DEFAULT 1000,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    token_hash  text NOT NULL UNIQUE,          -- sha256 of the token; the token itself is never stored
    role        text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    regions     text[] NOT NULL DEFAULT '{}',  -- empty: every region
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
