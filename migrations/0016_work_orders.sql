-- Supervision (CONTRACT §11): hidden-danger work orders (隐患整改) and maintenance with an end.
-- Owned by alerting.workorders (work orders) and devices.maintenance (maintenance columns, unit_audit).

-- One work order: opened by the sweep for a condition of a device (`actor` system) or by hand.
-- `due` is a date in MIAOXIANG_DEVICE_TZ; `overdue` is computed (past `due`, not verified or
-- cancelled); `overdue_at` records when the sweep first found it overdue and told people.
CREATE TABLE work_orders (
    work_order_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('repair', 'reconnect', 'battery', 'tamper', 'false_alarms',
                                                'shielded', 'hidden_danger')),
    unit_id       text REFERENCES units(unit_id),
    region        text NOT NULL DEFAULT '',
    industry      text NOT NULL DEFAULT 'other',
    device_ids    text[] NOT NULL DEFAULT '{}',
    reason        text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    assignee      text REFERENCES responders(responder_id),
    due           date NOT NULL,
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'assigned', 'fixed', 'verified', 'cancelled')),
    opened_by     text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    closed_at     timestamptz,
    overdue_at    timestamptz
);
CREATE INDEX work_orders_state_idx ON work_orders (state, due) WHERE state NOT IN ('verified', 'cancelled');
CREATE INDEX work_orders_unit_idx ON work_orders (unit_id, work_order_id);
CREATE INDEX work_orders_region_idx ON work_orders (region text_pattern_ops);

-- At most one live (open, assigned or fixed) order per (device, kind): a row per device of a live
-- order, deleted when the order is verified or cancelled.
CREATE TABLE work_order_devices (
    device_id     text NOT NULL,
    kind          text NOT NULL,
    work_order_id bigint NOT NULL REFERENCES work_orders(work_order_id) ON DELETE CASCADE,
    PRIMARY KEY (device_id, kind)
);
CREATE INDEX work_order_devices_order_idx ON work_order_devices (work_order_id);

-- What happened to an order: opened, assigned, fixed, verified, cancelled, overdue, edited.
CREATE TABLE work_order_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders(work_order_id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    action        text NOT NULL,
    actor         text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX work_order_events_order_idx ON work_order_events (work_order_id, id);

-- Who must be told about an order: the assignee when assigned; the assignee and the region's
-- duty officers each time it becomes overdue (once per due date). The response loop's notifier
-- carries alarm messages only; these rows wait for a sender (`sent_at`).
CREATE TABLE work_order_notices (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders(work_order_id) ON DELETE CASCADE,
    responder_id  text NOT NULL REFERENCES responders(responder_id),
    reason        text NOT NULL CHECK (reason IN ('assigned', 'overdue')),
    created_at    timestamptz NOT NULL,
    sent_at       timestamptz
);
CREATE INDEX work_order_notices_order_idx ON work_order_notices (work_order_id, id);

-- Maintenance with an end, a reason and who set it; a unit's maintenance changes are audited here
-- (a device's in device_audit).
ALTER TABLE devices
    ADD COLUMN maintenance_until  timestamptz,
    ADD COLUMN maintenance_reason text,
    ADD COLUMN maintenance_by     text;
ALTER TABLE units
    ADD COLUMN maintenance_until  timestamptz,
    ADD COLUMN maintenance_reason text,
    ADD COLUMN maintenance_by     text;
CREATE INDEX devices_maintenance_until_idx ON devices (maintenance_until) WHERE maintenance;
CREATE INDEX units_maintenance_until_idx ON units (maintenance_until) WHERE maintenance;

CREATE TABLE unit_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id     text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,
    actor       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX unit_audit_unit_idx ON unit_audit (unit_id, id);
