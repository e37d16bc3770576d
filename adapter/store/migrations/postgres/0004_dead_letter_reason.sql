-- A dead letter says why it was refused as a code (adapter.core.refusals.RefusalReason)
-- and where (segment/field or JSON path): the worklist shows these, never the error text,
-- which may quote the refused value. Dead letters kept before this migration show ''.
ALTER TABLE messages ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN error_location TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_dead_letters ON messages (status, id);
