-- DFT^P03 delivery (adapter/outbox/dft_mllp.py): an outbox row for a `dft:<profile>`
-- destination carries the message built when the version was queued (NULL for FHIR PUT,
-- which sends the stored resource version), and each receiver's posting per encounter
-- (the charges it holds once every queued DFT is through) is kept to build the next one.
ALTER TABLE outbox ADD COLUMN payload TEXT;
CREATE TABLE dft_postings (
    destination TEXT NOT NULL,
    encounter_key TEXT NOT NULL,
    version INTEGER NOT NULL,
    posting TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, encounter_key)
);
