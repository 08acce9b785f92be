-- When an alarm last became active (raised, or reopened after clearing): the 60 s "still
-- unacknowledged" upgrade of CONTRACT §8 counts from here, not from the first raise, so a
-- detector that alarms again minutes later is not taken for one nobody answered.
ALTER TABLE alarms ADD COLUMN active_since timestamptz;
UPDATE alarms SET active_since = created_at;
ALTER TABLE alarms ALTER COLUMN active_since SET NOT NULL, ALTER COLUMN active_since SET DEFAULT now();
