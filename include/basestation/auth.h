/*
 * Authentication: opaque tokens (stored as SHA-256 hashes) and HS256 JWTs.
 */
#ifndef BASESTATION_AUTH_H
#define BASESTATION_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#define AUTH_UID_MAX   128 /* bytes, without NUL */
#define AUTH_TOKEN_MAX 4096

enum auth_role { ROLE_USER = 0, ROLE_PRODUCER = 1, ROLE_ADMIN = 2 };

struct auth_identity {
	char uid[AUTH_UID_MAX + 1];
	enum auth_role role;
	int64_t expires_at; /* ms since epoch, 0 = never */
	char prefix[9];	    /* first 8 hex chars of sha256(token), for logs */
	int opaque;	    /* 1: an opaque token, and hash is its sha256 */
	unsigned char hash[32];
};

/* Why a stored token does not admit (auth_token_state). */
enum {
	AUTH_TOKEN_UNKNOWN = 1, /* no such row: never issued, or deleted */
	AUTH_TOKEN_REVOKED = 2,
	AUTH_TOKEN_EXPIRED = 3,
};

/* "user" / "producer" / "admin" -> role; -1 for anything else.
 * auth_role_name of a value outside the enum is "unknown". */
int auth_role_parse(const char *s);
const char *auth_role_name(enum auth_role r);

/* A uid is 1..AUTH_UID_MAX bytes of printable ASCII without spaces or
 * control characters, or valid UTF-8 without control characters. 1 ok. */
int auth_uid_valid(const char *uid, size_t len);

/*
 * Issue an opaque token for uid with role, valid ttl_s seconds (0 = never
 * expires). Writes the token (NUL-terminated, ~46 chars, "bs_" + base64url
 * of 32 random bytes) to out (>= 64 bytes), and the expiry (ms, 0 = never)
 * to *expires_at. Only sha256(token) is stored. 0 ok, -1 error.
 */
int auth_token_issue(sqlite3 *db, const char *uid, enum auth_role role,
		     int64_t ttl_s, char *out, size_t outsz,
		     int64_t *expires_at);

/* Revoke. 1 revoked, 0 unknown or already revoked, -1 database error. */
int auth_token_revoke(sqlite3 *db, const char *token);

/*
 * Check an opaque token. 0 valid (fills *id), -1 unknown / revoked /
 * expired, -2 database error. now_ms is the current time.
 */
int auth_token_verify(sqlite3 *db, const char *token, size_t len,
		      int64_t now_ms, struct auth_identity *id);
/* The same, telling why: 0 valid (fills *id), AUTH_TOKEN_UNKNOWN (not a
 * token this broker issued: --auth-url may know it), AUTH_TOKEN_REVOKED,
 * AUTH_TOKEN_EXPIRED, -2 database error. */
int auth_token_check(sqlite3 *db, const char *token, size_t len, int64_t now_ms,
		     struct auth_identity *id);

/*
 * The state, at now_ms, of the opaque token whose sha256 is hash: 0 valid
 * (*expires_at: its expiry in ms, 0 = never), AUTH_TOKEN_UNKNOWN,
 * AUTH_TOKEN_REVOKED or AUTH_TOKEN_EXPIRED, -2 database error.
 */
int auth_token_state(sqlite3 *db, const unsigned char hash[32], int64_t now_ms,
		     int64_t *expires_at);

/*
 * The change log of tokens (table token_changes, written by triggers when a
 * token is revoked, deleted or gets another expiry, by any process).
 * auth_token_changes_head: the newest seq in it (0 when empty), -1 on a
 * database error. auth_token_changes: the hashes of the changes after
 * *after, oldest first, at most max of them, moving *after past what it
 * read; returns how many, -1 on a database error (*after unchanged).
 */
int64_t auth_token_changes_head(sqlite3 *db);
int auth_token_changes(sqlite3 *db, int64_t *after, unsigned char (*hash)[32],
		       int max);

/*
 * Check an HS256 JWT: header alg must be "HS256" (anything else refused,
 * including "none"), signature compared in constant time, `sub` is the uid
 * (a string satisfying auth_uid_valid), `exp` and `nbf` (seconds) honoured
 * when present, optional `role` claim ("user"/"producer"/"admin", default
 * user). 0 valid, -1 invalid.
 */
int auth_jwt_verify(const char *secret, const char *token, size_t len,
		    int64_t now_ms, struct auth_identity *id);

/* Constant-time comparison of two byte strings (length leaks, contents do
 * not). 1 equal, 0 different. */
int auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* base64url without padding of n bytes into out (>= 4 * ceil(n / 3) + 1
 * bytes), NUL-terminated. Returns the length written. */
size_t auth_b64url_encode(const unsigned char *in, size_t n, char *out);

/* sha256 of data -> first 8 hex chars (+NUL) in out[9]. */
void auth_hash_prefix(const void *data, size_t len, char out[9]);

#endif
