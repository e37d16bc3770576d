-- The first schema. Instants are ISO-8601 text in UTC with a fixed width
-- (2026-01-02T03:04:05.000000+00:00), so text order is time order.

CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: replay tools name messages by id
    dedup_key TEXT NOT NULL UNIQUE,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    raw BLOB NOT NULL,
    received_at TEXT NOT NULL,
    patient_key TEXT NOT NULL DEFAULT '',
    control_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('accepted', 'dead')),
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX messages_received_at ON messages (received_at);
CREATE INDEX messages_dead ON messages (id) WHERE status = 'dead';

-- No foreign key to encounters: patient-level links (patient:<key>) have no encounter row.
CREATE TABLE message_links (
    message_id INTEGER NOT NULL REFERENCES messages (id),
    encounter_key TEXT NOT NULL,
    PRIMARY KEY (message_id, encounter_key)
) WITHOUT ROWID;
CREATE INDEX message_links_encounter ON message_links (encounter_key, message_id);

CREATE TABLE encounters (
    key TEXT PRIMARY KEY,
    patient_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'dirty', 'coded', 'held', 'skipped')),
    last_activity TEXT NOT NULL,
    close_requested INTEGER NOT NULL DEFAULT 0,
    cutoff_at TEXT,
    revision INTEGER NOT NULL,
    outcome_detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT
);
CREATE INDEX encounters_ready ON encounters (last_activity) WHERE state IN ('open', 'dirty');
CREATE INDEX encounters_state ON encounters (state, updated_at);

-- Every version of every emitted resource; is_current marks the one search and read see.
CREATE TABLE resource_versions (
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    is_current INTEGER NOT NULL,
    encounter_key TEXT NOT NULL,
    patient_ref TEXT NOT NULL,
    status TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, version)
);
CREATE UNIQUE INDEX resource_current
    ON resource_versions (resource_type, resource_id) WHERE is_current = 1;
CREATE INDEX resource_search
    ON resource_versions (resource_type, last_updated) WHERE is_current = 1;
CREATE INDEX resource_encounter ON resource_versions (encounter_key) WHERE is_current = 1;
CREATE INDEX resource_patient ON resource_versions (patient_ref) WHERE is_current = 1;

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    FOREIGN KEY (resource_type, resource_id, version)
        REFERENCES resource_versions (resource_type, resource_id, version)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    encounter_key TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX audit_encounter ON audit (encounter_key, at);
