-- Linkage (联动, CONTRACT §10): each device's linkage setting and hydrant flag (devices.registry),
-- each unit's linkage policy, and the linkage commands and offers made for alarms
-- (alerting.linkage.store owns both tables).
ALTER TABLE devices
    ADD COLUMN linkage text NOT NULL DEFAULT 'unit' CHECK (linkage IN ('unit', 'confirm', 'never', 'auto')),
    ADD COLUMN hydrant boolean NOT NULL DEFAULT false;

CREATE TABLE unit_linkage (
    unit_id      text PRIMARY KEY REFERENCES units (unit_id) ON DELETE CASCADE,
    gas_valve    text NOT NULL DEFAULT 'off' CHECK (gas_valve IN ('auto', 'confirm', 'off')),
    breaker      text NOT NULL DEFAULT 'off' CHECK (breaker IN ('auto', 'confirm', 'off')),
    charger_port text NOT NULL DEFAULT 'off' CHECK (charger_port IN ('auto', 'confirm', 'off')),
    updated_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per (alarm, command): a linkage command is sent or offered once per alarm.
CREATE TABLE alarm_linkage (
    alarm_id   bigint NOT NULL REFERENCES alarms (alarm_id),
    cmd        text NOT NULL,
    device_id  text NOT NULL,
    params     jsonb NOT NULL DEFAULT '{}',
    mode       text NOT NULL CHECK (mode IN ('auto', 'confirm')),
    state      text NOT NULL CHECK (state IN ('offered', 'sent', 'acked', 'failed', 'timeout')),
    cmd_id     uuid,
    sent_by    text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (alarm_id, cmd)
);
CREATE UNIQUE INDEX alarm_linkage_cmd_idx ON alarm_linkage (cmd_id);
CREATE INDEX alarm_linkage_device_idx ON alarm_linkage (device_id) WHERE state <> 'offered';

-- The newest alarm event the linkage runner has looked at (one row).
CREATE TABLE linkage_progress (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_event_id bigint NOT NULL
);
