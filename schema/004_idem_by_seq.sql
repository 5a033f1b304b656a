-- Idempotency keys, smaller. Before: (sender, ref) as the primary key and
-- again in the ts index, both copies as long as the uid and the ref (about
-- 470 bytes a row for a long uid), the index bigger than the table. Now a
-- row per message sent with a ref, keyed by the message's seq, holding a
-- 16-byte hash of (sender, ref) with a unique index on it for the lookup.
-- Rows are added in seq order, so pruning by age walks the primary key from
-- the oldest, as for messages: no index on ts. The keys of the last 24 h
-- are kept across the upgrade: bs_idem_key() is the broker's own SQL
-- function (src/store/store.c), so only the broker applies this migration.
CREATE TABLE idem_by_seq (
	seq  INTEGER PRIMARY KEY,             -- the message's seq
	ts   INTEGER NOT NULL,
	hash BLOB NOT NULL                    -- bs_idem_key(sender, ref)
);
INSERT OR IGNORE INTO idem_by_seq (seq, ts, hash)
	SELECT seq, ts, bs_idem_key(sender, ref) FROM idem ORDER BY seq;
DROP TABLE idem;
ALTER TABLE idem_by_seq RENAME TO idem;
CREATE UNIQUE INDEX idem_hash ON idem (hash);
