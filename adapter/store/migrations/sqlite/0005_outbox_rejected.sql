-- A version its destination refused for good (a sink's Rejected result, e.g. a DFT the billing
-- system answered AR): kept with the reason in last_error, never retried, never dropped; listed
-- by GET /admin/outbox?state=rejected and counted in adapter_outbox_rejected.
ALTER TABLE outbox ADD COLUMN rejected_at TEXT;
CREATE INDEX outbox_rejected ON outbox (id) WHERE rejected_at IS NOT NULL;
