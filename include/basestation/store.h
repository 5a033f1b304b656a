/*
 * The SQLite store: migrations, WAL, prepared statements, transactions.
 * All SQL of the broker is below src/store/; no SQLite type crosses this
 * header (rows are the plain structs of records.h).
 *
 * Writes are the engine's (src/engine/local.c): they go into one open
 * transaction that it commits once per loop turn (store_begin /
 * store_commit). Every function returns 0 on success and -1 on a database
 * error (already logged) unless noted.
 */
#ifndef BASESTATION_STORE_H
#define BASESTATION_STORE_H

#include "basestation/auth.h"
#include "basestation/records.h"

#include <stddef.h>
#include <stdint.h>

struct store;

/* How long the loop's connection waits for a write lock held by another
 * process (a CLI, a backup) before the write fails: short, because the
 * event loop waits with it. (For the broker's own checkpoints it waits up
 * to WAL_HOLD_MAX_MS: see wal.h.) */
#define STORE_BUSY_MS 100
/* What a CLI command (store_open_cli) waits for it instead. */
#define STORE_CLI_BUSY_MS 5000

/* Open (creating if needed), apply schema migrations, WAL, prepare, and
 * start the checkpoint thread (wal.h). */
struct store *store_open(const char *path, int sync_full, char *err,
			 size_t errsz);
/* The same for a one-shot command that may run beside the broker: no
 * checkpoints at all (the broker's thread does them, and the last
 * connection to close copies what is left), and STORE_CLI_BUSY_MS of
 * patience for the writer lock. */
struct store *store_open_cli(const char *path, char *err, size_t errsz);
void store_close(struct store *s);
const char *store_epoch(const struct store *s);
int64_t store_max_seq(struct store *s);
int store_schema_version(struct store *s);

int store_in_tx(const struct store *s);
int store_begin(struct store *s);
/* Commit; on failure rolls back and returns -1. Observes commit time. */
int store_commit(struct store *s);
void store_rollback(struct store *s);
/* 1 when a write can be committed right now (for /healthz). */
int store_writable(struct store *s);

int store_msg_insert(struct store *s, const struct msg_record *m);
/* 1 found (*seq set), 0 not found, -1 error. Sees the open transaction. */
int store_idem_get(struct store *s, const char *sender, const char *ref,
		   int64_t *seq);
int store_idem_put(struct store *s, const char *sender, const char *ref,
		   int64_t seq, int64_t ts);

int store_member_put(struct store *s, const char *room, const char *uid,
		     int64_t joined_seq, int64_t ts);
int store_member_del(struct store *s, const char *room, const char *uid);
int store_user_put(struct store *s, const char *uid, int64_t cursor,
		   int64_t last_seen);

typedef void (*store_member_cb)(void *arg, const char *room, const char *uid,
				int64_t joined_seq);
int store_load_members(struct store *s, store_member_cb cb, void *arg);
/* The user's stored inbox cursor: 1 found (*cursor set), 0 no row, -1
 * error. Sees the open transaction. */
int store_user_get(struct store *s, const char *uid, int64_t *cursor);

/* Messages for uid (direct, or in a room it is a member of since it
 * joined) with since < seq <= upto, in seq order, at most limit. Calls cb
 * per row; returns the number of rows or -1. */
typedef void (*store_msg_cb)(void *arg, const struct msg_record *m);
int store_replay(struct store *s, const char *uid, int64_t since, int64_t upto,
		 int limit, store_msg_cb cb, void *arg);

/* 1 when store_prune with the same limits would delete something. Reads
 * only (no lock): lets the caller skip opening a write transaction. */
int store_prune_needed(struct store *s, int64_t before_ts, int64_t below_seq,
		       int64_t idem_before_ts);
/* Delete up to max_rows messages older than before_ts (0: skip) or with
 * seq <= below_seq (0: skip), and up to max_rows idempotency keys older
 * than idem_before_ts (0: skip; *idem_deleted gets how many). Returns the
 * number of messages deleted; *max_deleted gets the highest seq deleted. */
int store_prune(struct store *s, int64_t before_ts, int64_t below_seq,
		int64_t idem_before_ts, int max_rows, int64_t *max_deleted,
		int *idem_deleted);

/* Bookkeeping rows nothing needs any more, swept a little at a time: tokens
 * expired before tokens_before (ms; 0: skip), token_changes rows up to
 * changes_upto (0: skip), and user rows (inbox cursors) in the uid window
 * after users_after that were last seen before users_seen_before (0:
 * skip), whose cursor is at most users_cursor_max, in no room and with no
 * token. */
struct store_sweep {
	int64_t tokens_before;
	int64_t changes_upto;
	int64_t users_seen_before;
	int64_t users_cursor_max;
	const char *users_after; /* "" from the start */
};
/* Reads only. Returns a bit set of what store_sweep would delete (0:
 * nothing); users_upto (n bytes) gets the end of the users window of at
 * most max_rows uids, "" when there is none after users_after. */
int store_sweep_needed(struct store *s, const struct store_sweep *w,
		       int max_rows, char *users_upto, size_t n);
/* Delete what need (from store_sweep_needed) names, at most max_rows rows
 * of each kind. Returns the rows deleted, or -1. */
int store_sweep(struct store *s, const struct store_sweep *w, int need,
		const char *users_upto, int max_rows);

int64_t store_counter_get(struct store *s, const char *name);
int store_counter_set(struct store *s, const char *name, int64_t v);

/* Tasks: one row per task, its latest state. */
int store_task_put(struct store *s, const struct task_record *t);
int store_task_del(struct store *s, const char *id);
typedef void (*store_task_cb)(void *arg, const struct task_record *t);
int store_load_tasks(struct store *s, store_task_cb cb, void *arg);
/* The row of task id: 1 found (one call of cb), 0 none, -1 error. */
int store_task_get(struct store *s, const char *id, store_task_cb cb,
		   void *arg);

/* Tokens (src/store/tokens.c), with the contracts of the auth module:
 * store_token_put inserts a row made by auth_token_new; store_token_issue
 * makes and inserts one (0 ok, -1 error); store_token_state judges the row
 * of a hash at now_ms (0 valid and *id filled, AUTH_TOKEN_UNKNOWN /
 * _REVOKED / _EXPIRED, -2 database error); store_token_verify the same
 * from the token's text (0, -1 not valid, -2 error); store_token_revoke
 * (1 revoked, 0 unknown or already revoked, -1 error). The change log:
 * store_token_changes_head (newest seq, 0 when empty, -1 error) and
 * store_token_changes (hashes changed after *after, oldest first, at most
 * max; how many, -1 on error). */
int store_token_put(struct store *s, const struct token_record *rec);
int store_token_issue(struct store *s, const char *uid, enum auth_role role,
		      int64_t ttl_s, char *out, size_t outsz,
		      int64_t *expires_at);
int store_token_state(struct store *s, const unsigned char hash[32],
		      int64_t now_ms, struct auth_identity *id);
int store_token_verify(struct store *s, const char *token, size_t len,
		       int64_t now_ms, struct auth_identity *id);
int store_token_revoke(struct store *s, const char *token, int64_t now_ms);
/* The same by the token's hash (a revocation from the cluster's stream). */
int store_token_revoke_hash(struct store *s, const unsigned char hash[32],
			    int64_t now_ms);
int64_t store_token_changes_head(struct store *s);
int store_token_changes(struct store *s, int64_t *after,
			unsigned char (*hash)[32], int max);

#endif
