"""PostgreSQL: the Inbox port's statements (messages, links, the encounters they touch)."""

from __future__ import annotations

from adapter.store.postgres.connection import MESSAGE_COLUMNS

INSERT_MESSAGE = """
INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key, control_id,
                      status, error, truncated, reason, error_location)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING id
"""

# Create OPEN, or: bump revision and activity, OR in close_requested, keep the earliest
# cutoff (LEAST ignores NULL), and send a finished encounter back to be coded (DIRTY).
TOUCH_SET = """
ON CONFLICT (key) DO UPDATE SET
    patient_key = CASE WHEN encounters.patient_key = '' THEN excluded.patient_key
                       ELSE encounters.patient_key END,
    state = CASE WHEN encounters.state IN ('coded', 'held', 'skipped') THEN 'dirty'
                 ELSE encounters.state END,
    last_activity = GREATEST(encounters.last_activity, excluded.last_activity),
    close_requested = encounters.close_requested OR excluded.close_requested,
    cutoff_at = LEAST(encounters.cutoff_at, excluded.cutoff_at),
    revision = encounters.revision + excluded.revision,  -- messages in this statement
    updated_at = excluded.updated_at
"""

TOUCH_ENCOUNTER = (
    """
INSERT INTO encounters (key, patient_key, state, last_activity, close_requested, cutoff_at,
                        revision, outcome_detail, updated_at)
VALUES ($1, $2, 'open', $3, $4, $5, 1, '', $3)
"""
    + TOUCH_SET
)

# add_message for a group of messages (unique dedup keys; one or many) in one statement, so
# one round trip and one commit: the new messages, their links, and each touched encounter
# upserted once with the group's values merged as `TOUCH_SET` would merge them one message
# at a time (an ON CONFLICT DO UPDATE may not touch a row twice in one statement).
# Encounters in key order, so concurrent writers lock encounter rows in one order.
# Returns (dedup_key, id, reused) of the messages that were new: `reused` is the reused-
# control-id check (`control_id_reused`), against the rows stored before the statement
# and the group's other messages, in the same statement instead of one query per message.
# `m.status || ''`: not indexable on purpose. On a young table (no statistics yet: a new
# install, the bench, the crash test) the planner ANDed the control_id index with the
# (status, id) index, which reads every accepted row: a group of 8 took 1.8 ms at 3,000
# rows and 3.5 ms at 16,000, growing with the table until an ANALYZE. The control_id index
# alone finds the few rows under one MSH-10 (as the SQLite store's `+status`).
ADD_MESSAGES = (
    """
WITH incoming AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                         $6::timestamptz[], $7::text[], $8::text[], $16::text[])
        AS i (ord, dedup_key, format, kind, raw, received_at, patient_key, control_id,
              control_key)
), new_message AS (
    INSERT INTO messages (dedup_key, format, kind, raw, received_at, patient_key, control_id,
                          status, error)
    SELECT dedup_key, format, kind, raw, received_at, patient_key, control_id, 'accepted', ''
    FROM incoming ORDER BY ord
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, dedup_key
), new_ord AS (
    SELECT n.id, i.ord, i.received_at FROM new_message n JOIN incoming i USING (dedup_key)
), linked AS (
    INSERT INTO message_links (message_id, encounter_key)
    SELECT n.id, l.key FROM new_ord n
    JOIN unnest($9::int[], $10::text[]) AS l (ord, key) ON l.ord = n.ord
), touched AS (
    INSERT INTO encounters (key, patient_key, state, last_activity, close_requested, cutoff_at,
                            revision, outcome_detail, updated_at)
    SELECT e.key,
           COALESCE((array_agg(e.patient_key ORDER BY e.ord)
                     FILTER (WHERE e.patient_key <> ''))[1], ''),
           'open', max(n.received_at), bool_or(e.close_requested), min(e.cutoff_at), count(*), '',
           max(n.received_at)
    FROM new_ord n
    JOIN unnest($11::int[], $12::text[], $13::text[], $14::boolean[], $15::timestamptz[])
        AS e (ord, key, patient_key, close_requested, cutoff_at) ON e.ord = n.ord
    GROUP BY e.key
    ORDER BY e.key
"""
    + TOUCH_SET
    + """
)
SELECT n.dedup_key, n.id, i.control_key <> '' AND (
    EXISTS (SELECT 1 FROM messages m WHERE m.control_id = i.control_id
            AND m.status || '' = 'accepted' AND m.format = 'hl7' AND m.dedup_key <> i.dedup_key
            AND (m.dedup_key = i.control_key OR starts_with(m.dedup_key, i.control_key || ':')))
    OR EXISTS (SELECT 1 FROM incoming j WHERE j.ord <> i.ord
               AND j.control_key = i.control_key AND j.dedup_key <> i.dedup_key)
) AS reused
FROM new_message n JOIN incoming i USING (dedup_key)
"""
)

# One message's reused-control-id check (the group write has the same test inline): the
# control_id index, then the rows under that MSH-10 (starts_with compares bytes whatever
# the collation, which a range on dedup_key would not): 0.03 ms for a unique MSH-10, 6 ms
# when 20,000 rows of ANOTHER sender share it (a test system). `status || ''` as in
# ADD_MESSAGES: never the (status, id) index.
CONTROL_ID_REUSED = """
SELECT EXISTS (SELECT 1 FROM messages WHERE control_id = $1
    AND status || '' = 'accepted' AND format = 'hl7' AND dedup_key <> $2
    AND (dedup_key = $3 OR starts_with(dedup_key, $3 || ':')))
"""

# A message left the encounter (replay moved it, or it is now dead): code it again.
BUMP_ENCOUNTER = """
UPDATE encounters SET
    state = CASE WHEN state IN ('coded', 'held', 'skipped') THEN 'dirty' ELSE state END,
    revision = revision + 1,
    updated_at = COALESCE($1, updated_at)
WHERE key = $2
"""

# messages_for_encounter's query once per (encounter key, patient link), in one statement.
MESSAGES_FOR_ENCOUNTERS = f"""
SELECT w.key AS wanted, m.*
FROM unnest($1::text[], $2::text[]) AS w (key, patient_link)
CROSS JOIN LATERAL (
    SELECT {MESSAGE_COLUMNS} FROM messages
    WHERE status = 'accepted' AND id IN (
        SELECT message_id FROM message_links
        WHERE encounter_key IN (w.key, w.patient_link))
) AS m
ORDER BY w.key, m.id
"""

LOCK_ENCOUNTERS = "SELECT key FROM encounters WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE"
