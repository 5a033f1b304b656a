/*
 * Authentication, crypto and checks only: opaque tokens (made here, stored
 * by the store as SHA-256 hashes and judged here), HS256 JWTs, roles, uids,
 * constant-time comparison. No I/O and no database: the store keeps the
 * tokens table (src/store/tokens.c).
 */
#ifndef BASESTATION_AUTH_H
#define BASESTATION_AUTH_H

#include <stddef.h>
#include <stdint.h>

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

/* Why a stored token does not admit (auth_token_judge). */
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

struct token_record;

/*
 * Make an opaque token for uid with role, valid ttl_s seconds from now_ms
 * (0 = never expires): the token ("bs_" + base64url of 32 random bytes,
 * NUL-terminated, 46 chars) in out (>= 64 bytes), and the row to store in
 * *rec (hash, prefix, uid = the caller's uid, role, times). Only the hash
 * is ever stored. 0 ok, -1 bad arguments or no randomness.
 */
int auth_token_new(const char *uid, enum auth_role role, int64_t ttl_s,
		   int64_t now_ms, char *out, size_t outsz,
		   struct token_record *rec);

/* sha256 of the token text (what the tokens table is keyed by): 0 ok, -1
 * when it cannot be a token (empty, longer than AUTH_TOKEN_MAX), -2 when
 * the digest failed. */
int auth_token_hash(const char *token, size_t len, unsigned char hash[32]);

/* Judge a stored row at now_ms: 0 valid (fills *id, opaque and hash set),
 * AUTH_TOKEN_REVOKED, AUTH_TOKEN_EXPIRED, or AUTH_TOKEN_UNKNOWN for a row
 * we did not write (bad role or uid). */
int auth_token_judge(const struct token_record *rec, int64_t now_ms,
		     struct auth_identity *id);

/* The token of an "Authorization: Bearer <token>" value (h, n bytes):
 * 0 with *tok / *tlen (spaces trimmed), -1 when it is not a Bearer value. */
int auth_bearer(const char *h, size_t n, const char **tok, size_t *tlen);

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
