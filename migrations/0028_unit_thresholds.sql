-- Thresholds per unit (CONTRACT §10, issue 18): a unit's value applies to every device of the unit
-- that neither sets the threshold itself nor has a profile that does (devices.thresholds).
-- Catalogue names only (aliases are normalised before writing). Owner: devices.registry.
ALTER TABLE units ADD COLUMN thresholds jsonb NOT NULL DEFAULT '{}';
ALTER TABLE units ADD CONSTRAINT units_thresholds_object CHECK (jsonb_typeof(thresholds) = 'object');
