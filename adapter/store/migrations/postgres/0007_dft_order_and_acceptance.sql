-- DFT^P03 (docs/charges-out.md): a patient's DFTs go in queue order, and a refused DFT
-- gives back the posting it would have made.
-- ordering_key: the patient (or encounter) whose earlier queued rows this one waits for.
-- posting: what the receiver holds once it accepted this DFT (adapter/outbox/dft_posting.py).
ALTER TABLE outbox ADD COLUMN ordering_key TEXT;
ALTER TABLE outbox ADD COLUMN posting TEXT;
CREATE INDEX outbox_in_order ON outbox (destination, ordering_key, id)
    WHERE delivered_at IS NULL AND rejected_at IS NULL AND ordering_key IS NOT NULL;
-- DFTs queued before this migration wait in order too: keyed by their Claim's patient
UPDATE outbox SET ordering_key = (
    SELECT CASE WHEN rv.patient_ref <> '' THEN rv.patient_ref ELSE rv.encounter_key END
    FROM resource_versions rv
    WHERE rv.resource_type = outbox.resource_type AND rv.resource_id = outbox.resource_id
      AND rv.version = outbox.version
) WHERE payload IS NOT NULL AND delivered_at IS NULL AND rejected_at IS NULL;
