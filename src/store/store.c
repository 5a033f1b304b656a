/*
 * SQLite store. One read-write connection owned by the event loop; writes
 * are grouped into one transaction per loop turn by the caller.
 */
#include "basestation/store.h"
#include "tokens.h"

#include <sqlite3.h>
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "basestation/metrics.h"
#include "wal.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern const char *const schema_migrations[];
extern const int schema_count;

enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_MSG_INSERT,
	ST_IDEM_GET,
	ST_IDEM_PUT,
	ST_MEMBER_PUT,
	ST_MEMBER_DEL,
	ST_USER_PUT,
	ST_USER_GET,
	ST_REPLAY,
	ST_PRUNE_AGE,
	ST_PRUNE_SEQ,
	ST_PRUNE_IDEM,
	ST_PRUNE_PROBE,
	ST_SWEEP_PROBE,
	ST_SWEEP_TOKENS,
	ST_SWEEP_CHANGES,
	ST_SWEEP_USERS_WINDOW,
	ST_SWEEP_USERS_PROBE,
	ST_SWEEP_USERS,
	ST_COUNTER_GET,
	ST_COUNTER_SET,
	ST_TASK_PUT,
	ST_TASK_DEL,
	ST_N
};

/* A user row (its inbox cursor) nothing needs: in the window (?1, ?2],
 * last seen before ?3, every message up to its cursor gone (?4 is the
 * highest seq retention deleted, so an inbox from 0 is the same inbox), in
 * no room and with no token. */
#define SWEEP_USERS_WHERE                                                      \
	"uid > ?1 AND uid <= ?2 AND last_seen < ?3 AND cursor <= ?4 AND NOT "  \
	"EXISTS (SELECT 1 FROM members m WHERE m.uid = users.uid) AND NOT "    \
	"EXISTS (SELECT 1 FROM tokens t WHERE t.uid = users.uid)"

static const char *const sql_text[ST_N] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_MSG_INSERT] = "INSERT INTO messages (seq, ts, sender, to_uid, "
			  "room, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_IDEM_GET] = "SELECT seq FROM idem WHERE hash = bs_idem_key(?1, ?2)",
	[ST_IDEM_PUT] = "INSERT OR REPLACE INTO idem (seq, ts, hash) "
			"VALUES (?3, ?4, bs_idem_key(?1, ?2))",
	[ST_MEMBER_PUT] = "INSERT OR IGNORE INTO members (room, uid, "
			  "joined_seq, joined_at) VALUES (?1, ?2, ?3, ?4)",
	[ST_MEMBER_DEL] = "DELETE FROM members WHERE room = ?1 AND uid = ?2",
	[ST_USER_PUT] = "INSERT INTO users (uid, cursor, last_seen) VALUES "
			"(?1, ?2, ?3) ON CONFLICT (uid) DO UPDATE SET "
			"cursor = excluded.cursor, last_seen = "
			"excluded.last_seen",
	[ST_USER_GET] = "SELECT cursor FROM users WHERE uid = ?1",
	[ST_REPLAY] =
		"SELECT seq, ts, sender, to_uid, room, data FROM messages "
		"WHERE to_uid = ?1 AND seq > ?2 AND seq <= ?3 "
		"UNION ALL "
		"SELECT m.seq, m.ts, m.sender, m.to_uid, m.room, m.data "
		"FROM members r JOIN messages m ON m.room = r.room "
		"AND m.seq > max(?2, r.joined_seq) AND m.seq <= ?3 "
		"WHERE r.uid = ?1 ORDER BY 1 LIMIT ?4",
	/* The oldest ?2 rows by seq, of those the ones older than ?1: the
	 * scan is bounded by ?2 whatever the ages (no index on ts). */
	[ST_PRUNE_AGE] = "DELETE FROM messages WHERE seq IN (SELECT seq FROM "
			 "(SELECT seq, ts FROM messages ORDER BY seq LIMIT ?2) "
			 "WHERE ts < ?1) RETURNING seq",
	[ST_PRUNE_SEQ] = "DELETE FROM messages WHERE seq IN (SELECT seq FROM "
			 "messages WHERE seq <= ?1 ORDER BY seq LIMIT ?2) "
			 "RETURNING seq",
	/* The same walk for idempotency keys, keyed by their message's seq. */
	[ST_PRUNE_IDEM] = "DELETE FROM idem WHERE seq IN (SELECT seq FROM "
			  "(SELECT seq, ts FROM idem ORDER BY seq LIMIT ?2) "
			  "WHERE ts < ?1)",
	[ST_PRUNE_PROBE] =
		"SELECT (SELECT ts FROM messages ORDER BY seq LIMIT 1), "
		"(SELECT min(seq) FROM messages), "
		"(SELECT ts FROM idem ORDER BY seq LIMIT 1)",
	/* Bookkeeping nothing needs any more (store_sweep). */
	[ST_SWEEP_PROBE] = "SELECT (SELECT min(expires_at) FROM tokens WHERE "
			   "expires_at IS NOT NULL), (SELECT min(seq) FROM "
			   "token_changes)",
	[ST_SWEEP_TOKENS] = "DELETE FROM tokens WHERE hash IN (SELECT hash "
			    "FROM tokens WHERE expires_at < ?1 ORDER BY "
			    "expires_at LIMIT ?2)",
	[ST_SWEEP_CHANGES] = "DELETE FROM token_changes WHERE seq IN (SELECT "
			     "seq FROM token_changes WHERE seq <= ?1 ORDER BY "
			     "seq LIMIT ?2)",
	/* Users are walked by uid a window at a time (no index on
	 * last_seen, which every disconnect writes). */
	[ST_SWEEP_USERS_WINDOW] = "SELECT max(uid) FROM (SELECT uid FROM users "
				  "WHERE uid > ?1 ORDER BY uid LIMIT ?2)",
	[ST_SWEEP_USERS_PROBE] = "SELECT EXISTS (SELECT 1 FROM users "
				 "WHERE " SWEEP_USERS_WHERE ")",
	[ST_SWEEP_USERS] = "DELETE FROM users WHERE " SWEEP_USERS_WHERE,
	[ST_COUNTER_GET] = "SELECT value FROM counters WHERE name = ?1",
	[ST_COUNTER_SET] = "INSERT INTO counters (name, value) VALUES (?1, ?2) "
			   "ON CONFLICT (name) DO UPDATE SET value = "
			   "excluded.value",
	[ST_TASK_PUT] = "INSERT OR REPLACE INTO tasks (id, title, owner, "
			"watchers, status, steps, done, total, note, version, "
			"created_at, updated_at, finished_at) VALUES (?1, ?2, "
			"?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[ST_TASK_DEL] = "DELETE FROM tasks WHERE id = ?1",
};

struct store {
	sqlite3 *db;
	sqlite3_stmt *st[ST_N];
	struct tokens tokens;
	int in_tx;
	char epoch[33];
	struct wal_busy busy;
	/* WAL checkpoints run on their own connection and thread (wal.c),
	 * so the loop's COMMIT never pays for copying the log. */
	struct wal *wal;
};

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errsz)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errsz, "%s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int user_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int v = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* Apply every migration newer than PRAGMA user_version, each in its own
 * transaction together with the version bump. */
static int migrate(sqlite3 *db, char *err, size_t errsz)
{
	int v = user_version(db);
	char sql[64];

	if (v < 0) {
		snprintf(err, errsz, "cannot read user_version: %s",
			 sqlite3_errmsg(db));
		return -1;
	}
	if (v > schema_count) {
		snprintf(err, errsz,
			 "database schema version %d is newer than this "
			 "binary (%d)",
			 v, schema_count);
		return -1;
	}
	for (int i = v; i < schema_count; i++) {
		if (exec_sql(db, "BEGIN IMMEDIATE", err, errsz) < 0)
			return -1;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", i + 1);
		if (exec_sql(db, schema_migrations[i], err, errsz) < 0 ||
		    exec_sql(db, sql, err, errsz) < 0) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		if (i == 0) {
			/* The epoch names this history; made once. */
			unsigned char r[16];
			char q[128];
			RAND_bytes(r, sizeof(r));
			int o = snprintf(q, sizeof(q),
					 "INSERT INTO meta VALUES ('epoch', '");
			for (int k = 0; k < 16; k++)
				o += snprintf(q + o, sizeof(q) - (size_t)o,
					      "%02x", r[k]);
			snprintf(q + o, sizeof(q) - (size_t)o, "')");
			if (exec_sql(db, q, err, errsz) < 0) {
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
				return -1;
			}
		}
		if (exec_sql(db, "COMMIT", err, errsz) < 0)
			return -1;
		log_info("store.migrate", "version=%d", i + 1);
	}
	return 0;
}

/* bs_idem_key(sender, ref): the idempotency key of a message, the first 16
 * bytes of SHA-256(sender NUL ref). A uid has no NUL, so two pairs never
 * meet by concatenation, and 128 bits make a collision out of reach. */
static void idem_key_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	int ok = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1;
	(void)argc;

	for (int i = 0; ok && i < 2; i++) {
		const unsigned char *v = sqlite3_value_text(argv[i]);
		size_t n = (size_t)sqlite3_value_bytes(argv[i]);
		ok = (i == 0 || EVP_DigestUpdate(h, "", 1) == 1) &&
		     (v == NULL || EVP_DigestUpdate(h, v, n) == 1);
	}
	ok = ok && EVP_DigestFinal_ex(h, md, &mdlen) == 1 && mdlen >= 16;
	EVP_MD_CTX_free(h);
	if (ok)
		sqlite3_result_blob(ctx, md, 16, SQLITE_TRANSIENT);
	else
		sqlite3_result_error(ctx, "bs_idem_key: digest failed", -1);
}

static int idem_key_register(sqlite3 *db)
{
	return sqlite3_create_function(
		       db, "bs_idem_key", 2,
		       SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY,
		       NULL, idem_key_fn, NULL, NULL) == SQLITE_OK
		       ? 0
		       : -1;
}

/* cli: a one-shot command beside the broker (see store_open_cli). */
static struct store *open_store(const char *path, int sync_full, int cli,
				char *err, size_t errsz)
{
	struct store *s = xcalloc(1, sizeof(*s));
	sqlite3_stmt *st = NULL;
	char limit[64];

	/* A log that was reset and grew past this is cut back to it. */
	snprintf(limit, sizeof(limit), "PRAGMA journal_size_limit = %d",
		 WAL_RESTART_BYTES);

	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				    SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errsz, "cannot open %s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	wal_busy_set(s->db, &s->busy, cli ? STORE_CLI_BUSY_MS : STORE_BUSY_MS);
	sqlite3_extended_result_codes(s->db, 1);
	if (idem_key_register(s->db) < 0) {
		snprintf(err, errsz, "cannot register bs_idem_key()");
		goto fail;
	}
	if (exec_sql(s->db, "PRAGMA journal_mode = WAL", err, errsz) < 0 ||
	    exec_sql(s->db,
		     sync_full ? "PRAGMA synchronous = FULL"
			       : "PRAGMA synchronous = NORMAL",
		     err, errsz) < 0 ||
	    exec_sql(s->db, "PRAGMA foreign_keys = ON", err, errsz) < 0 ||
	    exec_sql(s->db, limit, err, errsz) < 0 ||
	    migrate(s->db, err, errsz) < 0)
		goto fail;
	for (int i = 0; i < ST_N; i++) {
		if (sqlite3_prepare_v3(s->db, sql_text[i], -1,
				       SQLITE_PREPARE_PERSISTENT, &s->st[i],
				       NULL) != SQLITE_OK) {
			snprintf(err, errsz, "prepare %d: %s", i,
				 sqlite3_errmsg(s->db));
			goto fail;
		}
	}
	if (sqlite3_prepare_v2(s->db,
			       "SELECT value FROM meta WHERE key = 'epoch'", -1,
			       &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		snprintf(err, errsz, "no epoch in meta: %s",
			 sqlite3_errmsg(s->db));
		goto fail;
	}
	snprintf(s->epoch, sizeof(s->epoch), "%s",
		 (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	tokens_init(&s->tokens, s->db);
	if (cli)
		sqlite3_wal_autocheckpoint(s->db, 0);
	else
		s->wal = wal_start(path, s->db, &s->busy);
	return s;
fail:
	sqlite3_finalize(st);
	store_close(s);
	return NULL;
}

struct store *store_open(const char *path, int sync_full, char *err,
			 size_t errsz)
{
	return open_store(path, sync_full, 0, err, errsz);
}

struct store *store_open_cli(const char *path, char *err, size_t errsz)
{
	return open_store(path, 0, 1, err, errsz);
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	if (s->in_tx)
		store_commit(s);
	wal_stop(s->wal);
	tokens_finish(&s->tokens);
	for (int i = 0; i < ST_N; i++)
		sqlite3_finalize(s->st[i]);
	if (s->db) {
		int64_t t0 = mono_ms();
		/* optimize may ANALYZE the message table: a bounded sample
		 * keeps a stop short whatever the table's size. */
		sqlite3_exec(s->db,
			     "PRAGMA analysis_limit = 400; PRAGMA optimize",
			     NULL, NULL, NULL);
		/* The last connection to close copies the log into the
		 * database and deletes it; any other (a CLI command while
		 * the broker runs) leaves the log alone, so that it never
		 * holds the broker's writer lock for a checkpoint. */
		sqlite3_close(s->db);
		t0 = mono_ms() - t0;
		if (t0 >= 100)
			log_info("store.close", "ms=%lld", (long long)t0);
	}
	free(s);
}

const char *store_epoch(const struct store *s)
{
	return s->epoch;
}

int store_schema_version(struct store *s)
{
	return user_version(s->db);
}

/* Run a prepared statement that returns no rows; reset it. */
static int run(struct store *s, int which)
{
	sqlite3_stmt *st = s->st[which];
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		log_error("store.error", "stmt=%d rc=%d msg=%s", which, rc,
			  log_val(sqlite3_errmsg(s->db)));
		return -1;
	}
	return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

int64_t store_max_seq(struct store *s)
{
	sqlite3_stmt *st;
	int64_t v = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT max(seq) FROM messages", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	/* Never reuse a seq that retention removed. */
	int64_t pruned = store_counter_get(s, "pruned_max_seq");
	return v > pruned ? v : pruned;
}

int store_in_tx(const struct store *s)
{
	return s->in_tx;
}

int store_begin(struct store *s)
{
	if (s->in_tx)
		return 0;
	if (run(s, ST_BEGIN) < 0)
		return -1;
	s->in_tx = 1;
	return 0;
}

int store_commit(struct store *s)
{
	struct timespec a, b;
	if (!s->in_tx)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &a);
	if (run(s, ST_COMMIT) < 0) {
		store_rollback(s);
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	metrics_commit_observe((double)(b.tv_sec - a.tv_sec) +
			       (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	s->in_tx = 0;
	return 0;
}

void store_rollback(struct store *s)
{
	if (!s->in_tx)
		return;
	if (sqlite3_get_autocommit(s->db) == 0)
		run(s, ST_ROLLBACK);
	s->in_tx = 0;
}

int store_writable(struct store *s)
{
	if (s->in_tx)
		return 1;
	/* A write that changes nothing still needs the write lock and a
	 * writable file. */
	char err[128];
	if (exec_sql(s->db,
		     "BEGIN IMMEDIATE; INSERT OR REPLACE INTO meta VALUES "
		     "('healthz', strftime('%s','now')); COMMIT",
		     err, sizeof(err)) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		log_warn("store.unhealthy", "msg=%s", log_val(err));
		return 0;
	}
	return 1;
}

int store_msg_insert(struct store *s, const struct msg_record *m)
{
	sqlite3_stmt *st = s->st[ST_MSG_INSERT];
	sqlite3_bind_int64(st, 1, m->seq);
	sqlite3_bind_int64(st, 2, m->ts);
	bind_text(st, 3, m->sender);
	bind_text(st, 4, m->to);
	bind_text(st, 5, m->room);
	sqlite3_bind_text(st, 6, m->data, (int)m->data_len, SQLITE_STATIC);
	return run(s, ST_MSG_INSERT);
}

int store_idem_get(struct store *s, const char *sender, const char *ref,
		   int64_t *seq)
{
	sqlite3_stmt *st = s->st[ST_IDEM_GET];
	int rc, found = 0;
	bind_text(st, 1, sender);
	bind_text(st, 2, ref);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*seq = sqlite3_column_int64(st, 0);
		found = 1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return -1;
	return found;
}

int store_idem_put(struct store *s, const char *sender, const char *ref,
		   int64_t seq, int64_t ts)
{
	sqlite3_stmt *st = s->st[ST_IDEM_PUT];
	bind_text(st, 1, sender);
	bind_text(st, 2, ref);
	sqlite3_bind_int64(st, 3, seq);
	sqlite3_bind_int64(st, 4, ts);
	return run(s, ST_IDEM_PUT);
}

int store_member_put(struct store *s, const char *room, const char *uid,
		     int64_t joined_seq, int64_t ts)
{
	sqlite3_stmt *st = s->st[ST_MEMBER_PUT];
	bind_text(st, 1, room);
	bind_text(st, 2, uid);
	sqlite3_bind_int64(st, 3, joined_seq);
	sqlite3_bind_int64(st, 4, ts);
	return run(s, ST_MEMBER_PUT);
}

int store_member_del(struct store *s, const char *room, const char *uid)
{
	sqlite3_stmt *st = s->st[ST_MEMBER_DEL];
	bind_text(st, 1, room);
	bind_text(st, 2, uid);
	return run(s, ST_MEMBER_DEL);
}

int store_user_put(struct store *s, const char *uid, int64_t cursor,
		   int64_t last_seen)
{
	sqlite3_stmt *st = s->st[ST_USER_PUT];
	bind_text(st, 1, uid);
	sqlite3_bind_int64(st, 2, cursor);
	sqlite3_bind_int64(st, 3, last_seen);
	return run(s, ST_USER_PUT);
}

int store_load_members(struct store *s, store_member_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(s->db,
			       "SELECT room, uid, joined_seq FROM members "
			       "ORDER BY room",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		cb(arg, (const char *)sqlite3_column_text(st, 0),
		   (const char *)sqlite3_column_text(st, 1),
		   sqlite3_column_int64(st, 2));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_user_get(struct store *s, const char *uid, int64_t *cursor)
{
	sqlite3_stmt *st = s->st[ST_USER_GET];
	int rc, found = 0;
	bind_text(st, 1, uid);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*cursor = sqlite3_column_int64(st, 0);
		found = 1;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		log_error("store.error", "op=user_get msg=%s",
			  log_val(sqlite3_errmsg(s->db)));
		return -1;
	}
	return found;
}

int store_replay(struct store *s, const char *uid, int64_t since, int64_t upto,
		 int limit, store_msg_cb cb, void *arg)
{
	sqlite3_stmt *st = s->st[ST_REPLAY];
	int rc, n = 0;

	bind_text(st, 1, uid);
	sqlite3_bind_int64(st, 2, since);
	sqlite3_bind_int64(st, 3, upto);
	sqlite3_bind_int(st, 4, limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct msg_record m = {
			.seq = sqlite3_column_int64(st, 0),
			.ts = sqlite3_column_int64(st, 1),
			.sender = (const char *)sqlite3_column_text(st, 2),
			.to = (const char *)sqlite3_column_text(st, 3),
			.room = (const char *)sqlite3_column_text(st, 4),
			.data = (const char *)sqlite3_column_text(st, 5),
			.data_len = (size_t)sqlite3_column_bytes(st, 5),
		};
		cb(arg, &m);
		n++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		log_error("store.error", "op=replay msg=%s",
			  log_val(sqlite3_errmsg(s->db)));
		return -1;
	}
	return n;
}

static int prune_with(struct store *s, int which, int64_t arg, int max_rows,
		      int64_t *max_deleted)
{
	sqlite3_stmt *st = s->st[which];
	int rc, n = 0;
	sqlite3_bind_int64(st, 1, arg);
	sqlite3_bind_int(st, 2, max_rows);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seq = sqlite3_column_int64(st, 0);
		if (seq > *max_deleted)
			*max_deleted = seq;
		n++;
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		log_error("store.error", "op=prune msg=%s",
			  log_val(sqlite3_errmsg(s->db)));
		return -1;
	}
	return n;
}

int store_prune_needed(struct store *s, int64_t before_ts, int64_t below_seq,
		       int64_t idem_before_ts)
{
	sqlite3_stmt *st = s->st[ST_PRUNE_PROBE];
	int need = 0;

	if (sqlite3_step(st) == SQLITE_ROW) {
		need = (before_ts > 0 &&
			sqlite3_column_type(st, 0) != SQLITE_NULL &&
			sqlite3_column_int64(st, 0) < before_ts) ||
		       (below_seq > 0 &&
			sqlite3_column_type(st, 1) != SQLITE_NULL &&
			sqlite3_column_int64(st, 1) <= below_seq) ||
		       (idem_before_ts > 0 &&
			sqlite3_column_type(st, 2) != SQLITE_NULL &&
			sqlite3_column_int64(st, 2) < idem_before_ts);
	}
	sqlite3_reset(st);
	return need;
}

int store_prune(struct store *s, int64_t before_ts, int64_t below_seq,
		int64_t idem_before_ts, int max_rows, int64_t *max_deleted,
		int *idem_deleted)
{
	int n = 0, k;
	*idem_deleted = 0;
	if (before_ts > 0) {
		k = prune_with(s, ST_PRUNE_AGE, before_ts, max_rows,
			       max_deleted);
		if (k < 0)
			return -1;
		n += k;
	}
	if (below_seq > 0 && n < max_rows) {
		k = prune_with(s, ST_PRUNE_SEQ, below_seq, max_rows - n,
			       max_deleted);
		if (k < 0)
			return -1;
		n += k;
	}
	if (idem_before_ts > 0) {
		sqlite3_stmt *st = s->st[ST_PRUNE_IDEM];
		sqlite3_bind_int64(st, 1, idem_before_ts);
		sqlite3_bind_int(st, 2, max_rows);
		if (run(s, ST_PRUNE_IDEM) < 0)
			return -1;
		*idem_deleted = sqlite3_changes(s->db);
	}
	return n;
}

static void bind_users_window(sqlite3_stmt *st, const struct store_sweep *w,
			      const char *upto)
{
	bind_text(st, 1, w->users_after);
	bind_text(st, 2, upto);
	sqlite3_bind_int64(st, 3, w->users_seen_before);
	sqlite3_bind_int64(st, 4, w->users_cursor_max);
}

int store_sweep_needed(struct store *s, const struct store_sweep *w,
		       int max_rows, char *users_upto, size_t n)
{
	sqlite3_stmt *st = s->st[ST_SWEEP_PROBE];
	int need = 0;

	users_upto[0] = '\0';
	if (sqlite3_step(st) == SQLITE_ROW) {
		if (w->tokens_before > 0 &&
		    sqlite3_column_type(st, 0) != SQLITE_NULL &&
		    sqlite3_column_int64(st, 0) < w->tokens_before)
			need |= 1;
		if (w->changes_upto > 0 &&
		    sqlite3_column_type(st, 1) != SQLITE_NULL &&
		    sqlite3_column_int64(st, 1) <= w->changes_upto)
			need |= 2;
	}
	sqlite3_reset(st);
	if (w->users_seen_before <= 0)
		return need;
	st = s->st[ST_SWEEP_USERS_WINDOW];
	bind_text(st, 1, w->users_after);
	sqlite3_bind_int(st, 2, max_rows);
	if (sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_type(st, 0) != SQLITE_NULL)
		snprintf(users_upto, n, "%s", sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (users_upto[0] == '\0')
		return need;
	st = s->st[ST_SWEEP_USERS_PROBE];
	bind_users_window(st, w, users_upto);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0))
		need |= 4;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return need;
}

/* Run a DELETE taking (?1 a bound, ?2 a row limit); rows deleted or -1. */
static int delete_batch(struct store *s, int which, int64_t arg, int max_rows)
{
	sqlite3_bind_int64(s->st[which], 1, arg);
	sqlite3_bind_int(s->st[which], 2, max_rows);
	return run(s, which) < 0 ? -1 : sqlite3_changes(s->db);
}

int store_sweep(struct store *s, const struct store_sweep *w, int need,
		const char *users_upto, int max_rows)
{
	int n = 0, k = 0;

	if ((need & 1) && (k = delete_batch(s, ST_SWEEP_TOKENS,
					    w->tokens_before, max_rows)) < 0)
		return -1;
	n += k;
	k = 0;
	if ((need & 2) && (k = delete_batch(s, ST_SWEEP_CHANGES,
					    w->changes_upto, max_rows)) < 0)
		return -1;
	n += k;
	if (need & 4) {
		bind_users_window(s->st[ST_SWEEP_USERS], w, users_upto);
		if (run(s, ST_SWEEP_USERS) < 0)
			return -1;
		n += sqlite3_changes(s->db);
	}
	return n;
}

int64_t store_counter_get(struct store *s, const char *name)
{
	sqlite3_stmt *st = s->st[ST_COUNTER_GET];
	int64_t v = 0;
	bind_text(st, 1, name);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return v;
}

int store_counter_set(struct store *s, const char *name, int64_t v)
{
	sqlite3_stmt *st = s->st[ST_COUNTER_SET];
	bind_text(st, 1, name);
	sqlite3_bind_int64(st, 2, v);
	return run(s, ST_COUNTER_SET);
}

int store_task_put(struct store *s, const struct task_record *t)
{
	sqlite3_stmt *st = s->st[ST_TASK_PUT];
	bind_text(st, 1, t->id);
	bind_text(st, 2, t->title);
	bind_text(st, 3, t->owner);
	bind_text(st, 4, t->watchers);
	bind_text(st, 5, t->status);
	bind_text(st, 6, t->steps);
	if (t->done >= 0)
		sqlite3_bind_int64(st, 7, t->done);
	if (t->total >= 0)
		sqlite3_bind_int64(st, 8, t->total);
	bind_text(st, 9, t->note);
	sqlite3_bind_int64(st, 10, t->version);
	sqlite3_bind_int64(st, 11, t->created_at);
	sqlite3_bind_int64(st, 12, t->updated_at);
	if (t->finished_at > 0)
		sqlite3_bind_int64(st, 13, t->finished_at);
	return run(s, ST_TASK_PUT);
}

int store_task_del(struct store *s, const char *id)
{
	sqlite3_stmt *st = s->st[ST_TASK_DEL];
	bind_text(st, 1, id);
	return run(s, ST_TASK_DEL);
}

#define TASK_COLUMNS                                                           \
	"SELECT id, title, owner, watchers, status, steps, done, total, "      \
	"note, version, created_at, updated_at, finished_at FROM tasks"

/* The task row at st's cursor, to cb. */
static void task_row(sqlite3_stmt *st, store_task_cb cb, void *arg)
{
	struct task_record t = {
		.id = (const char *)sqlite3_column_text(st, 0),
		.title = (const char *)sqlite3_column_text(st, 1),
		.owner = (const char *)sqlite3_column_text(st, 2),
		.watchers = (const char *)sqlite3_column_text(st, 3),
		.status = (const char *)sqlite3_column_text(st, 4),
		.steps = (const char *)sqlite3_column_text(st, 5),
		.done = sqlite3_column_type(st, 6) == SQLITE_NULL
				? -1
				: sqlite3_column_int64(st, 6),
		.total = sqlite3_column_type(st, 7) == SQLITE_NULL
				 ? -1
				 : sqlite3_column_int64(st, 7),
		.note = (const char *)sqlite3_column_text(st, 8),
		.version = sqlite3_column_int64(st, 9),
		.created_at = sqlite3_column_int64(st, 10),
		.updated_at = sqlite3_column_int64(st, 11),
		.finished_at = sqlite3_column_int64(st, 12),
	};
	cb(arg, &t);
}

int store_load_tasks(struct store *s, store_task_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(s->db, TASK_COLUMNS, -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		task_row(st, cb, arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int store_task_get(struct store *s, const char *id, store_task_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc;
	if (sqlite3_prepare_v2(s->db, TASK_COLUMNS " WHERE id = ?1", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	bind_text(st, 1, id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		task_row(st, cb, arg);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* ---- tokens: src/store/tokens.c on the loop's connection ---- */

int store_token_put(struct store *s, const struct token_record *rec)
{
	return tokens_put(&s->tokens, rec);
}

int store_token_issue(struct store *s, const char *uid, enum auth_role role,
		      int64_t ttl_s, char *out, size_t outsz,
		      int64_t *expires_at)
{
	return tokens_issue(&s->tokens, uid, role, ttl_s, out, outsz,
			    expires_at);
}

int store_token_state(struct store *s, const unsigned char hash[32],
		      int64_t now_ms, struct auth_identity *id)
{
	return tokens_state(&s->tokens, hash, now_ms, id);
}

int store_token_verify(struct store *s, const char *token, size_t len,
		       int64_t now_ms, struct auth_identity *id)
{
	return tokens_verify(&s->tokens, token, len, now_ms, id);
}

int store_token_revoke(struct store *s, const char *token, int64_t now_ms)
{
	return tokens_revoke(&s->tokens, token, now_ms);
}

int store_token_revoke_hash(struct store *s, const unsigned char hash[32],
			    int64_t now_ms)
{
	return tokens_revoke_hash(&s->tokens, hash, now_ms);
}

int64_t store_token_changes_head(struct store *s)
{
	return tokens_changes_head(&s->tokens);
}

int store_token_changes(struct store *s, int64_t *after,
			unsigned char (*hash)[32], int max)
{
	return tokens_changes(&s->tokens, after, hash, max);
}
