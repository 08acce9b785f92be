-- Snapshot of the fleet's live state for a fast start-up (devices.checkpoint, issue 21): one row per
-- column (the device ids, then each live column as the raw bytes of its array), all written in one
-- transaction (same taken_at), replaced whole. device_state stays the per-device checkpoint: a
-- start-up reads the snapshot, then only the device_state rows written since taken_at.
-- Owner: devices.service (DeviceService.snapshot).
CREATE TABLE fleet_snapshot (
    name     text PRIMARY KEY,
    format   smallint NOT NULL,
    dtype    text NOT NULL,
    data     bytea NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
);
-- Raw arrays compress poorly and are read whole: store them uncompressed out of line.
ALTER TABLE fleet_snapshot ALTER COLUMN data SET STORAGE EXTERNAL;
