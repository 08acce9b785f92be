-- Device kinds are the catalogue's (devices.catalogue.Kind): the application validates them, so a
-- new kind (v2: charger) needs no migration. Drop the fixed list of v1.
ALTER TABLE devices DROP CONSTRAINT IF EXISTS devices_kind_check;
