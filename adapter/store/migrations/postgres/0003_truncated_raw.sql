-- An oversize frame is kept as its first bytes only: such a raw is marked truncated and
-- can never be accepted (the sender was answered AR and the rest was never read). The
-- CHECK makes that a property of the data, not only of the replay code.
ALTER TABLE messages ADD COLUMN truncated BOOLEAN NOT NULL DEFAULT FALSE;

-- Oversize heads kept before this column existed. A replay of that time may have
-- accepted one (and linked it): its encounters are re-coded without it.
UPDATE encounters SET
    state = CASE WHEN state IN ('coded', 'held', 'skipped') THEN 'dirty' ELSE state END,
    revision = revision + 1
WHERE key IN (
    SELECT l.encounter_key FROM message_links AS l JOIN messages AS m ON m.id = l.message_id
    WHERE m.dedup_key LIKE 'hl7-oversize:%');
DELETE FROM message_links
WHERE message_id IN (SELECT id FROM messages WHERE dedup_key LIKE 'hl7-oversize:%');
UPDATE messages SET
    error = CASE WHEN status = 'accepted'
                 THEN 'truncated head of an oversize frame, accepted by an earlier replay; dead again'
                 ELSE error END,
    status = 'dead',
    truncated = TRUE
WHERE dedup_key LIKE 'hl7-oversize:%';

ALTER TABLE messages ADD CONSTRAINT messages_truncated_is_dead
    CHECK (NOT truncated OR status = 'dead');

-- `replay --message` looks a message up by the control id the feed sent (MSH-10, FHIR id).
CREATE INDEX messages_control_id ON messages (control_id);
