-- Work-order notices are sent (CONTRACT §11): `alerting.workorders.notices` claims queued rows of
-- `work_order_notices` (FOR UPDATE SKIP LOCKED, a lease in `next_at`) and sends each through its
-- responder's channels in order. A row ends `sent` (`sent_at`), `failed` (its error class and
-- provider code) or `skipped` (the order was closed, or re-assigned before an `assigned` notice
-- went out). Rows written before this migration are queued like new ones.
ALTER TABLE work_order_notices
    ADD COLUMN state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'sent', 'failed', 'skipped')),
    ADD COLUMN attempts      smallint NOT NULL DEFAULT 0,
    ADD COLUMN next_at       timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN channel       text,
    ADD COLUMN error_class   text,
    ADD COLUMN provider_code text,
    ADD COLUMN done_at       timestamptz;
CREATE INDEX work_order_notices_due_idx ON work_order_notices (next_at, id) WHERE state = 'queued';

-- Every attempt of a notice through a channel, like `notification_sends` for alarms.
CREATE TABLE work_order_sends (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id     bigint NOT NULL REFERENCES work_order_notices(id) ON DELETE CASCADE,
    channel       text NOT NULL,
    attempt       smallint NOT NULL,
    ok            boolean NOT NULL,
    error_class   text,
    provider_code text,
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX work_order_sends_notice_idx ON work_order_sends (notice_id, id);
