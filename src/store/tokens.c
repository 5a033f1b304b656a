/*
 * The tokens table and its change log. Rows are made and judged by the
 * auth module (crypto only); this file only moves them in and out of
 * SQLite.
 */
#include "tokens.h"

#include <string.h>
#include <time.h>

static const char *const tok_sql[TOK_N] = {
	[TOK_PUT] = "INSERT INTO tokens (hash, prefix, uid, role, created_at, "
		    "expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[TOK_GET] = "SELECT uid, role, expires_at, revoked_at FROM tokens "
		    "WHERE hash = ?1",
	[TOK_REVOKE] = "UPDATE tokens SET revoked_at = ?1 "
		       "WHERE hash = ?2 AND revoked_at IS NULL",
	[TOK_HEAD] = "SELECT coalesce(max(seq), 0) FROM token_changes",
	[TOK_CHANGES] = "SELECT seq, hash FROM token_changes WHERE seq > ?1 "
			"ORDER BY seq LIMIT ?2",
};

void tokens_init(struct tokens *t, sqlite3 *db)
{
	memset(t, 0, sizeof(*t));
	t->db = db;
}

void tokens_finish(struct tokens *t)
{
	for (int i = 0; i < TOK_N; i++)
		sqlite3_finalize(t->st[i]);
	memset(t->st, 0, sizeof(t->st));
}

/* The statement, prepared on first use (a table missing from this
 * database is an error then, not at start); reset and unbound. */
static sqlite3_stmt *stmt(struct tokens *t, int which)
{
	if (t->db == NULL)
		return NULL;
	if (t->st[which] == NULL &&
	    sqlite3_prepare_v3(t->db, tok_sql[which], -1,
			       SQLITE_PREPARE_PERSISTENT, &t->st[which],
			       NULL) != SQLITE_OK)
		return NULL;
	return t->st[which];
}

static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

int tokens_put(struct tokens *t, const struct token_record *rec)
{
	sqlite3_stmt *st = stmt(t, TOK_PUT);
	int rc = -1;

	if (st == NULL)
		return -1;
	if (sqlite3_bind_blob(st, 1, rec->hash, 32, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, rec->prefix, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 3, rec->uid, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 4, auth_role_name((enum auth_role)rec->role),
			      -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 5, rec->created_at) ||
	    (rec->expires_at ? sqlite3_bind_int64(st, 6, rec->expires_at)
			     : sqlite3_bind_null(st, 6)))
		goto out;
	if (sqlite3_step(st) == SQLITE_DONE)
		rc = 0;
out:
	done(st);
	return rc;
}

int tokens_issue(struct tokens *t, const char *uid, enum auth_role role,
		 int64_t ttl_s, char *out, size_t outsz, int64_t *expires_at)
{
	struct token_record rec;
	struct timespec ts;
	int64_t now;

	if (t->db == NULL)
		return -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	if (auth_token_new(uid, role, ttl_s, now, out, outsz, &rec) < 0)
		return -1;
	if (tokens_put(t, &rec) < 0) {
		memset(out, 0, outsz);
		return -1;
	}
	if (expires_at != NULL)
		*expires_at = rec.expires_at;
	return 0;
}

int tokens_state(struct tokens *t, const unsigned char hash[32], int64_t now_ms,
		 struct auth_identity *id)
{
	sqlite3_stmt *st = stmt(t, TOK_GET);
	struct token_record rec;
	int step, rc = -2;

	if (st == NULL)
		return -2;
	if (sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC))
		goto out;
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = AUTH_TOKEN_UNKNOWN;
		goto out;
	}
	if (step != SQLITE_ROW)
		goto out;
	memset(&rec, 0, sizeof(rec));
	memcpy(rec.hash, hash, 32);
	rec.uid = (const char *)sqlite3_column_text(st, 0);
	rec.role = auth_role_parse((const char *)sqlite3_column_text(st, 1));
	if (rec.uid && strlen(rec.uid) != (size_t)sqlite3_column_bytes(st, 0))
		rec.role = -1; /* a NUL inside: not a uid we wrote */
	rec.expires_at = sqlite3_column_int64(st, 2);
	/* A NULL revoked_at is valid; any value (even 0) revokes. */
	rec.revoked_at = sqlite3_column_type(st, 3) != SQLITE_NULL;
	if (sqlite3_column_type(st, 2) != SQLITE_NULL && rec.expires_at == 0)
		rec.expires_at = -1; /* stored as 0: long expired */
	rc = auth_token_judge(&rec, now_ms, id);
out:
	done(st);
	return rc;
}

int tokens_check(struct tokens *t, const char *token, size_t len,
		 int64_t now_ms, struct auth_identity *id)
{
	unsigned char hash[32];
	int rc = auth_token_hash(token, len, hash);

	if (rc == -1)
		return AUTH_TOKEN_UNKNOWN; /* cannot be one of ours */
	if (rc < 0 || t->db == NULL || id == NULL)
		return -2;
	return tokens_state(t, hash, now_ms, id);
}

int tokens_verify(struct tokens *t, const char *token, size_t len,
		  int64_t now_ms, struct auth_identity *id)
{
	int rc = tokens_check(t, token, len, now_ms, id);

	return rc > 0 ? -1 : rc;
}

int tokens_revoke(struct tokens *t, const char *token, int64_t now_ms)
{
	unsigned char hash[32];
	int rc;

	if (t->db == NULL)
		return -1;
	if (token == NULL)
		return 0;
	rc = auth_token_hash(token, strnlen(token, AUTH_TOKEN_MAX + 1), hash);
	if (rc == -1)
		return 0; /* cannot be a token: nothing to revoke */
	return rc < 0 ? -1 : tokens_revoke_hash(t, hash, now_ms);
}

int tokens_revoke_hash(struct tokens *t, const unsigned char hash[32],
		       int64_t now_ms)
{
	sqlite3_stmt *st;
	int rc = -1;

	if (t->db == NULL || (st = stmt(t, TOK_REVOKE)) == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, now_ms) ||
	    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC))
		goto out;
	if (sqlite3_step(st) == SQLITE_DONE)
		rc = sqlite3_changes(t->db) > 0 ? 1 : 0;
out:
	done(st);
	return rc;
}

int64_t tokens_changes_head(struct tokens *t)
{
	sqlite3_stmt *st = stmt(t, TOK_HEAD);
	int64_t seq = -1;

	if (st == NULL)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		seq = sqlite3_column_int64(st, 0);
	done(st);
	return seq;
}

int tokens_changes(struct tokens *t, int64_t *after, unsigned char (*hash)[32],
		   int max)
{
	sqlite3_stmt *st = stmt(t, TOK_CHANGES);
	int64_t from = *after;
	int n = 0, step;

	if (st == NULL)
		return -1;
	if (sqlite3_bind_int64(st, 1, *after) || sqlite3_bind_int(st, 2, max)) {
		n = -1;
		goto out;
	}
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		*after = sqlite3_column_int64(st, 0);
		if (sqlite3_column_bytes(st, 1) != 32)
			continue; /* not a hash we wrote */
		memcpy(hash[n++], sqlite3_column_blob(st, 1), 32);
	}
	if (step != SQLITE_DONE) {
		*after = from;
		n = -1;
	}
out:
	done(st);
	return n;
}
