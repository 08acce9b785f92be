-- Supervision (CONTRACT §11): duty checks (查岗), shift handovers (交接班), shielded panel points,
-- supervisors' risk overrides and the daily online sample of the monthly report.
-- Owned by alerting.dutychecks, alerting.shifts, alerting.shields, alerting.risk_override and
-- alerting.reports.

-- One duty check of one transmission device: `sent`, `confirmed` (the device confirmed the
-- request frame), `answered` (its type-24 duty answer arrived by `deadline`), `missed` (raised
-- `duty_missed`: `alarm_id`) or `unreachable` (no session when it was to be sent).
CREATE TABLE duty_checks (
    check_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id      text NOT NULL,
    unit_id        text,
    region         text NOT NULL DEFAULT '',
    industry       text NOT NULL DEFAULT 'other',
    answer_minutes smallint NOT NULL CHECK (answer_minutes BETWEEN 1 AND 255),
    state          text NOT NULL DEFAULT 'sent'
                   CHECK (state IN ('sent', 'confirmed', 'answered', 'missed', 'unreachable')),
    origin         text NOT NULL DEFAULT 'manual' CHECK (origin IN ('manual', 'random')),
    requested_by   text NOT NULL,
    sent_at        timestamptz NOT NULL,
    deadline       timestamptz NOT NULL,
    confirmed_at   timestamptz,
    answered_at    timestamptz,
    missed_at      timestamptz,
    alarm_id       bigint
);
CREATE INDEX duty_checks_pending_idx ON duty_checks (deadline) WHERE state IN ('sent', 'confirmed');
CREATE INDEX duty_checks_sent_idx ON duty_checks (sent_at DESC);
CREATE INDEX duty_checks_device_idx ON duty_checks (device_id, sent_at DESC);

-- A closed shift: who closed it, the note for the next shift, and the open alarms and work
-- orders (as they stood at closing, within the closer's scope) handed over.
CREATE TABLE shifts (
    shift_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    closed_by        text NOT NULL,
    closed_at        timestamptz NOT NULL,
    note             text NOT NULL CHECK (length(note) BETWEEN 1 AND 2000),
    regions          text[] NOT NULL DEFAULT '{}',
    industries       text[] NOT NULL DEFAULT '{}',
    open_alarms      jsonb NOT NULL DEFAULT '[]',
    open_work_orders jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX shifts_closed_idx ON shifts (closed_at DESC);

-- Panel points a transmission device reports shielded (屏蔽, status bit 3), from its shield and
-- shield_clear changes; a cleared row keeps `cleared_at`.
CREATE TABLE panel_shields (
    device_id   text NOT NULL,
    component   text NOT NULL,
    since       timestamptz NOT NULL,
    description text NOT NULL DEFAULT '',
    cleared_at  timestamptz,
    PRIMARY KEY (device_id, component)
);
CREATE INDEX panel_shields_open_idx ON panel_shields (device_id) WHERE cleared_at IS NULL;

-- Supervisors' colour overrides of a unit's risk grade: every one kept (the audit); the newest
-- row of a unit holds while `until` is ahead and it is not `lifted_at`.
CREATE TABLE risk_overrides (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id    text NOT NULL REFERENCES units(unit_id) ON DELETE CASCADE,
    colour     text NOT NULL CHECK (colour IN ('green', 'yellow', 'orange', 'red')),
    reason     text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    until      timestamptz NOT NULL,
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL,
    lifted_by  text,
    lifted_at  timestamptz
);
CREATE INDEX risk_overrides_unit_idx ON risk_overrides (unit_id, id DESC);

-- The daily online sample (联网率): devices registered and online per (region, industry) once a
-- local day.
CREATE TABLE online_samples (
    day        date NOT NULL,
    region     text NOT NULL,
    industry   text NOT NULL,
    registered integer NOT NULL,
    online     integer NOT NULL,
    taken_at   timestamptz NOT NULL,
    PRIMARY KEY (day, region, industry)
);
