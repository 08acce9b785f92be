-- Industries of CONTRACT §11: unit industries mapped once to the fixed list (the old text kept
-- as `industry_detail`), and tokens scoped by industries as well as regions.
ALTER TABLE units ADD COLUMN industry_detail text;
UPDATE units SET industry_detail = industry,
                 industry = CASE industry
                     WHEN 'health' THEN 'hospital'
                     WHEN 'education' THEN 'school'
                     WHEN 'religion' THEN 'religious'
                     WHEN 'commerce' THEN 'commercial'
                     WHEN 'market' THEN 'commercial'
                     WHEN 'small_venue' THEN 'nine_small'
                     WHEN 'civil_affairs' THEN 'welfare'
                     ELSE 'other' END
 WHERE industry NOT IN ('religious', 'elderly_care', 'welfare', 'hospital', 'school', 'nine_small', 'shared_use',
                        'rental_housing', 'residential', 'industrial', 'commercial', 'entertainment', 'other');
CREATE INDEX units_industry_idx ON units (industry);

ALTER TABLE api_tokens ADD COLUMN industries text[] NOT NULL DEFAULT '{}';  -- empty: every industry
