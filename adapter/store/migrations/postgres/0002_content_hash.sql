-- A hash of each version's body without meta (compact JSON, as stored), so that
-- save_coding tells an unchanged resource without parsing the stored body. NULL on the
-- versions written before: those are compared as parsed JSON.
ALTER TABLE resource_versions ADD COLUMN content_hash TEXT;
