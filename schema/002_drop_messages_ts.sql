-- Messages are stored in time order (seq grows with ts), so age-based
-- retention walks the primary key from the oldest row instead of keeping an
-- index on ts: one index insert less per message.
DROP INDEX IF EXISTS messages_ts;
