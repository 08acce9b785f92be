-- Whether a report carried no device time of its own: its `ts` is then the receive time
-- (CONTRACT §2), and a redelivered copy is recognised by (device_id, dedup) near that time.
ALTER TABLE readings ADD COLUMN untimed boolean NOT NULL DEFAULT false;
