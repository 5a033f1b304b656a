/*
 * Opaque tokens: "bs_" + base64url(32 random bytes). Only sha256(token) is
 * stored (tokens.hash), with the first 8 hex chars of it (tokens.prefix) for
 * logs. Also role names, uid validation and constant-time comparison.
 */
#include "basestation/auth.h"
#include "basestation/ws.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define TOKEN_RAW_LEN 32
#define TOKEN_PREFIX  "bs_"
/* "bs_" + 43 base64url chars + NUL */
#define TOKEN_STR_LEN (3 + 43 + 1)

static const char b64url_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int auth_role_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "user") == 0)
		return ROLE_USER;
	if (strcmp(s, "producer") == 0)
		return ROLE_PRODUCER;
	if (strcmp(s, "admin") == 0)
		return ROLE_ADMIN;
	return -1;
}

const char *auth_role_name(enum auth_role r)
{
	switch (r) {
	case ROLE_USER:
		return "user";
	case ROLE_PRODUCER:
		return "producer";
	case ROLE_ADMIN:
		return "admin";
	}
	return "unknown"; /* not a role: fails the tokens.role CHECK */
}

/* Length of the well-formed UTF-8 sequence at s (n bytes left) encoding a
 * code point other than a control character (C0, DEL, C1) or a space; 0 if
 * the bytes there are not one. */
static size_t uid_char_len(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len = ws_utf8_decode(s, n, &cp);

	if (len == 0 || cp <= 0x20 || (cp >= 0x7f && cp < 0xa0))
		return 0; /* not UTF-8, space, C0, DEL, C1 */
	return len;
}

int auth_uid_valid(const char *uid, size_t len)
{
	const unsigned char *s = (const unsigned char *)uid;
	size_t i = 0, n;

	if (uid == NULL || len == 0 || len > AUTH_UID_MAX)
		return 0;
	while (i < len) {
		n = uid_char_len(s + i, len - i);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

int auth_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return 0;
	if (alen == 0)
		return 1;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

/* sha256(data) -> out[32]. 0 ok, -1 error. */
static int sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return -1;
	return 0;
}

static void hex_prefix(const unsigned char hash[32], char out[9])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 4; i++) {
		out[2 * i] = hex[hash[i] >> 4];
		out[2 * i + 1] = hex[hash[i] & 0x0f];
	}
	out[8] = '\0';
}

void auth_hash_prefix(const void *data, size_t len, char out[9])
{
	unsigned char hash[32];

	if (sha256(data, len, hash) != 0) {
		memcpy(out, "????????", 9);
		return;
	}
	hex_prefix(hash, out);
}

/* base64url without padding of n bytes into out (>= 4*ceil(n/3)+1 bytes);
 * returns the length written (without the NUL). */
size_t auth_b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t i, o = 0;
	uint32_t v;

	for (i = 0; i + 2 < n; i += 3) {
		v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) |
		    in[i + 2];
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		out[o++] = b64url_alphabet[(v >> 6) & 63];
		out[o++] = b64url_alphabet[v & 63];
	}
	if (n - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
	} else if (n - i == 2) {
		v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
		out[o++] = b64url_alphabet[(v >> 18) & 63];
		out[o++] = b64url_alphabet[(v >> 12) & 63];
		out[o++] = b64url_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int auth_token_issue(sqlite3 *db, const char *uid, enum auth_role role,
		     int64_t ttl_s, char *out, size_t outsz,
		     int64_t *expires_at)
{
	static const char sql[] =
		"INSERT INTO tokens (hash, prefix, uid, role, created_at, "
		"expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
	unsigned char raw[TOKEN_RAW_LEN], hash[32];
	char tok[TOKEN_STR_LEN], prefix[9];
	sqlite3_stmt *st = NULL;
	int64_t now, exp = 0;
	size_t uidlen;
	int rc = -1;

	if (db == NULL || uid == NULL || out == NULL || outsz < TOKEN_STR_LEN)
		goto fail;
	uidlen = strnlen(uid, AUTH_UID_MAX + 1);
	if (!auth_uid_valid(uid, uidlen) || (int)role < ROLE_USER ||
	    (int)role > ROLE_ADMIN)
		goto fail;
	/* ttl beyond ~292 million years would overflow the ms arithmetic */
	if (ttl_s < 0 || ttl_s > INT64_MAX / 2000)
		goto fail;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		goto fail;
	memcpy(tok, TOKEN_PREFIX, 3);
	auth_b64url_encode(raw, sizeof(raw), tok + 3);
	if (sha256(tok, strlen(tok), hash) != 0)
		goto fail;
	hex_prefix(hash, prefix);

	now = wall_ms();
	if (ttl_s > 0)
		exp = now + ttl_s * 1000;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_bind_blob(st, 1, hash, sizeof(hash), SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 3, uid, (int)uidlen, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 4, auth_role_name(role), -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 5, now) ||
	    (exp ? sqlite3_bind_int64(st, 6, exp) : sqlite3_bind_null(st, 6)))
		goto fail;
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;

	memcpy(out, tok, sizeof(tok));
	if (expires_at != NULL)
		*expires_at = exp;
	rc = 0;
fail:
	sqlite3_finalize(st);
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(tok, sizeof(tok));
	return rc;
}

int auth_token_revoke(sqlite3 *db, const char *token)
{
	static const char sql[] = "UPDATE tokens SET revoked_at = ?1 "
				  "WHERE hash = ?2 AND revoked_at IS NULL";
	unsigned char hash[32];
	sqlite3_stmt *st = NULL;
	size_t len;
	int rc = -1;

	if (db == NULL)
		return -1;
	if (token == NULL)
		return 0;
	len = strnlen(token, AUTH_TOKEN_MAX + 1);
	if (len == 0 || len > AUTH_TOKEN_MAX)
		return 0;
	if (sha256(token, len, hash) != 0)
		return -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_bind_int64(st, 1, wall_ms()) ||
	    sqlite3_bind_blob(st, 2, hash, sizeof(hash), SQLITE_STATIC))
		goto fail;
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	rc = sqlite3_changes(db) > 0 ? 1 : 0;
fail:
	sqlite3_finalize(st);
	return rc;
}

/* The tokens row whose hash is hash, judged at now_ms: 0 valid (fills
 * *id), or AUTH_TOKEN_UNKNOWN / _REVOKED / _EXPIRED, or -2 database error. */
static int token_row(sqlite3 *db, const unsigned char hash[32], int64_t now_ms,
		     struct auth_identity *id)
{
	static const char sql[] = "SELECT uid, role, expires_at, revoked_at "
				  "FROM tokens WHERE hash = ?1";
	sqlite3_stmt *st = NULL;
	const unsigned char *uid;
	int uidlen, role, step, rc = -2;
	int64_t exp;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC))
		goto fail;
	step = sqlite3_step(st);
	if (step == SQLITE_DONE) {
		rc = AUTH_TOKEN_UNKNOWN;
		goto fail;
	}
	if (step != SQLITE_ROW)
		goto fail;

	rc = AUTH_TOKEN_REVOKED;
	if (sqlite3_column_type(st, 3) != SQLITE_NULL)
		goto fail;
	exp = 0;
	if (sqlite3_column_type(st, 2) != SQLITE_NULL) {
		exp = sqlite3_column_int64(st, 2);
		rc = AUTH_TOKEN_EXPIRED;
		if (exp <= now_ms)
			goto fail;
	}
	rc = AUTH_TOKEN_UNKNOWN; /* a row we did not write: refuse */
	role = auth_role_parse((const char *)sqlite3_column_text(st, 1));
	uid = sqlite3_column_text(st, 0);
	uidlen = sqlite3_column_bytes(st, 0);
	if (role < 0 || uid == NULL ||
	    !auth_uid_valid((const char *)uid, (size_t)uidlen))
		goto fail;

	memset(id, 0, sizeof(*id));
	memcpy(id->uid, uid, (size_t)uidlen);
	id->uid[uidlen] = '\0';
	id->role = (enum auth_role)role;
	id->expires_at = exp;
	id->opaque = 1;
	memcpy(id->hash, hash, 32);
	hex_prefix(hash, id->prefix);
	rc = 0;
fail:
	sqlite3_finalize(st);
	return rc;
}

int auth_token_check(sqlite3 *db, const char *token, size_t len, int64_t now_ms,
		     struct auth_identity *id)
{
	unsigned char hash[32];

	if (token == NULL || len == 0 || len > AUTH_TOKEN_MAX)
		return AUTH_TOKEN_UNKNOWN;
	if (db == NULL || id == NULL || sha256(token, len, hash) != 0)
		return -2;
	return token_row(db, hash, now_ms, id);
}

int auth_token_verify(sqlite3 *db, const char *token, size_t len,
		      int64_t now_ms, struct auth_identity *id)
{
	int rc = auth_token_check(db, token, len, now_ms, id);

	return rc > 0 ? -1 : rc;
}

int auth_token_state(sqlite3 *db, const unsigned char hash[32], int64_t now_ms,
		     int64_t *expires_at)
{
	struct auth_identity id;
	int rc = token_row(db, hash, now_ms, &id);

	if (rc == 0)
		*expires_at = id.expires_at;
	return rc;
}

int64_t auth_token_changes_head(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int64_t seq = -1;

	if (sqlite3_prepare_v2(db,
			       "SELECT coalesce(max(seq), 0) FROM "
			       "token_changes",
			       -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		seq = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return seq;
}

int auth_token_changes(sqlite3 *db, int64_t *after, unsigned char (*hash)[32],
		       int max)
{
	static const char sql[] = "SELECT seq, hash FROM token_changes WHERE "
				  "seq > ?1 ORDER BY seq LIMIT ?2";
	sqlite3_stmt *st = NULL;
	int64_t from = *after;
	int n = 0, step;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 1, *after) || sqlite3_bind_int(st, 2, max)) {
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
	sqlite3_finalize(st);
	return n;
}
