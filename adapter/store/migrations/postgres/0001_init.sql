-- The first schema. Runs with search_path set to the store's schema, inside the
-- migration transaction that holds the advisory lock.

CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedup_key TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    raw BYTEA NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    patient_key TEXT NOT NULL DEFAULT '',
    control_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('accepted', 'dead')),
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_received_at ON messages (received_at);
CREATE INDEX messages_dead ON messages (id) WHERE status = 'dead';

-- No foreign key to encounters: patient-level links (patient:<key>) have no encounter row.
CREATE TABLE message_links (
    message_id BIGINT NOT NULL REFERENCES messages (id),
    encounter_key TEXT NOT NULL,
    PRIMARY KEY (message_id, encounter_key)
);
CREATE INDEX message_links_encounter ON message_links (encounter_key, message_id);

CREATE TABLE encounters (
    key TEXT PRIMARY KEY,
    patient_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'dirty', 'coded', 'held', 'skipped')),
    last_activity TIMESTAMPTZ NOT NULL,
    close_requested BOOLEAN NOT NULL DEFAULT FALSE,
    cutoff_at TIMESTAMPTZ,
    revision INTEGER NOT NULL,
    outcome_detail TEXT NOT NULL DEFAULT '',
    updated_at TIMESTAMPTZ NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ
);
CREATE INDEX encounters_ready ON encounters (last_activity) WHERE state IN ('open', 'dirty');
CREATE INDEX encounters_state ON encounters (state, updated_at);

-- Every version of every emitted resource; is_current marks the one search and read see.
CREATE TABLE resource_versions (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    is_current BOOLEAN NOT NULL,
    encounter_key TEXT NOT NULL,
    patient_ref TEXT NOT NULL,
    status TEXT NOT NULL,
    last_updated TIMESTAMPTZ NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, version)
);
CREATE UNIQUE INDEX resource_current
    ON resource_versions (resource_type, resource_id) WHERE is_current;
CREATE INDEX resource_search
    ON resource_versions (resource_type, last_updated) WHERE is_current;
CREATE INDEX resource_encounter ON resource_versions (encounter_key) WHERE is_current;
CREATE INDEX resource_patient ON resource_versions (patient_ref) WHERE is_current;

CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    FOREIGN KEY (resource_type, resource_id, version)
        REFERENCES resource_versions (resource_type, resource_id, version)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    encounter_key TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX audit_encounter ON audit (encounter_key, at);
