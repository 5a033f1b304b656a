-- basestation schema v1. Applied once, in a transaction, when
-- PRAGMA user_version < 1. Times are milliseconds since the Unix epoch.

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;

-- Opaque tokens: only the SHA-256 of the token is stored.
CREATE TABLE tokens (
	hash       BLOB PRIMARY KEY,          -- sha256(token), 32 bytes
	prefix     TEXT NOT NULL,             -- first 8 hex chars of the hash, for logs
	uid        TEXT NOT NULL,
	role       TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'producer', 'admin')),
	created_at INTEGER NOT NULL,
	expires_at INTEGER,                   -- NULL: never
	revoked_at INTEGER                    -- NULL: valid
) WITHOUT ROWID;
CREATE INDEX tokens_uid ON tokens (uid);

-- Every relayed message, in one global sequence.
CREATE TABLE messages (
	seq    INTEGER PRIMARY KEY,
	ts     INTEGER NOT NULL,
	sender TEXT NOT NULL,
	to_uid TEXT,                          -- direct message, or
	room   TEXT,                          -- room message
	data   TEXT NOT NULL,                 -- JSON
	CHECK ((to_uid IS NULL) <> (room IS NULL))
);
CREATE INDEX messages_to ON messages (to_uid, seq) WHERE to_uid IS NOT NULL;
CREATE INDEX messages_room ON messages (room, seq) WHERE room IS NOT NULL;
CREATE INDEX messages_ts ON messages (ts);

-- Idempotency keys: (sender, ref) -> seq, kept 24 h.
CREATE TABLE idem (
	sender TEXT NOT NULL,
	ref    TEXT NOT NULL,
	seq    INTEGER NOT NULL,
	ts     INTEGER NOT NULL,
	PRIMARY KEY (sender, ref)
) WITHOUT ROWID;
CREATE INDEX idem_ts ON idem (ts);

-- Room membership is per uid and durable.
CREATE TABLE members (
	room       TEXT NOT NULL,
	uid        TEXT NOT NULL,
	joined_seq INTEGER NOT NULL,          -- messages after this seq are for the member
	joined_at  INTEGER NOT NULL,
	PRIMARY KEY (room, uid)
) WITHOUT ROWID;
CREATE INDEX members_uid ON members (uid);

-- Per-user offline inbox cursor: messages with seq > cursor that arrived
-- while the user had no connection are delivered on the next connection.
CREATE TABLE users (
	uid       TEXT PRIMARY KEY,
	cursor    INTEGER NOT NULL DEFAULT 0,
	last_seen INTEGER
) WITHOUT ROWID;

-- Tasks: the latest snapshot is the truth.
CREATE TABLE tasks (
	id          TEXT PRIMARY KEY,
	title       TEXT NOT NULL,
	owner       TEXT NOT NULL,
	watchers    TEXT NOT NULL DEFAULT '[]',  -- JSON array of uids
	status      TEXT NOT NULL,
	steps       TEXT NOT NULL DEFAULT '[]',  -- JSON array of step objects
	done        INTEGER,
	total       INTEGER,
	note        TEXT,
	version     INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	finished_at INTEGER
) WITHOUT ROWID;
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- Counters that must survive restarts (e.g. messages removed by retention).
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
