-- Shielded panel points (CONTRACT §4, §10) are owned by devices.shielded from here on: the GB/T 26875
-- ingest records each point's shield and shield_clear events. `changed_at` is the device time of the
-- change last applied, so a change that arrives late (a backlog sent after a reconnect) never undoes
-- a newer one. Rows from before keep their newest known change.
ALTER TABLE panel_shields ADD COLUMN changed_at timestamptz NOT NULL DEFAULT '-infinity';
UPDATE panel_shields SET changed_at = coalesce(cleared_at, since);
COMMENT ON TABLE panel_shields IS 'Shielded (屏蔽) panel points per transmission device; owner devices.shielded';
