/*
 * The tokens table on one SQLite connection, private to src/store (and its
 * unit test, which runs it on a bare schema): statements are prepared on
 * first use and kept, so a handshake costs one step of a prepared SELECT.
 * The public face is store_token_*() in store.h.
 */
#ifndef BASESTATION_STORE_TOKENS_H
#define BASESTATION_STORE_TOKENS_H

#include "basestation/auth.h"
#include "basestation/records.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

enum {
	TOK_PUT,
	TOK_GET,
	TOK_REVOKE,
	TOK_HEAD,
	TOK_CHANGES,
	TOK_N,
};

struct tokens {
	sqlite3 *db;
	sqlite3_stmt *st[TOK_N];
};

void tokens_init(struct tokens *t, sqlite3 *db);
void tokens_finish(struct tokens *t);

/* Insert a row made by auth_token_new(). 0 ok, -1 database error. */
int tokens_put(struct tokens *t, const struct token_record *rec);
/* auth_token_new() + tokens_put(): the token in out (>= 64 bytes), its
 * expiry (ms, 0 = never) in *expires_at. 0 ok, -1 bad arguments or
 * database error. */
int tokens_issue(struct tokens *t, const char *uid, enum auth_role role,
		 int64_t ttl_s, char *out, size_t outsz, int64_t *expires_at);
/* Check a token's text: 0 valid (fills *id), AUTH_TOKEN_UNKNOWN (not a
 * token this broker issued: --auth-url may know it), AUTH_TOKEN_REVOKED,
 * AUTH_TOKEN_EXPIRED, -2 database error. */
int tokens_check(struct tokens *t, const char *token, size_t len,
		 int64_t now_ms, struct auth_identity *id);
/* The same, for a yes or no: 0 valid (fills *id), -1 unknown / revoked /
 * expired, -2 database error. */
int tokens_verify(struct tokens *t, const char *token, size_t len,
		  int64_t now_ms, struct auth_identity *id);
/* The row with this hash, judged at now_ms: 0 valid (fills *id),
 * AUTH_TOKEN_UNKNOWN / _REVOKED / _EXPIRED, -2 database error. */
int tokens_state(struct tokens *t, const unsigned char hash[32], int64_t now_ms,
		 struct auth_identity *id);
/* Revoke by the token's text at now_ms. 1 revoked, 0 unknown or already
 * revoked, -1 database error. */
int tokens_revoke(struct tokens *t, const char *token, int64_t now_ms);
/* The same by the token's hash. */
int tokens_revoke_hash(struct tokens *t, const unsigned char hash[32],
		       int64_t now_ms);
/* The change log (schema 003): the newest seq (0 when empty, -1 error);
 * the hashes of the changes after *after, oldest first, at most max,
 * moving *after past what was read: how many, -1 on error (*after
 * unchanged). */
int64_t tokens_changes_head(struct tokens *t);
int tokens_changes(struct tokens *t, int64_t *after, unsigned char (*hash)[32],
		   int max);

#endif
