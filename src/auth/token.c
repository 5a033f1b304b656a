/*
 * Opaque tokens: "bs_" + base64url(32 random bytes). Only sha256(token) is
 * stored (tokens.hash), with the first 8 hex chars of it (tokens.prefix) for
 * logs. Also role names, uid validation and constant-time comparison.
 */
#include "basestation/auth.h"
#include "basestation/records.h"
#include "basestation/ws.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

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

int auth_token_new(const char *uid, enum auth_role role, int64_t ttl_s,
		   int64_t now_ms, char *out, size_t outsz,
		   struct token_record *rec)
{
	unsigned char raw[TOKEN_RAW_LEN];
	char tok[TOKEN_STR_LEN];
	int rc = -1;

	if (uid == NULL || out == NULL || rec == NULL || outsz < TOKEN_STR_LEN)
		goto fail;
	if (!auth_uid_valid(uid, strnlen(uid, AUTH_UID_MAX + 1)) ||
	    (int)role < ROLE_USER || (int)role > ROLE_ADMIN)
		goto fail;
	/* ttl beyond ~292 million years would overflow the ms arithmetic */
	if (ttl_s < 0 || ttl_s > INT64_MAX / 2000)
		goto fail;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		goto fail;
	memcpy(tok, TOKEN_PREFIX, 3);
	auth_b64url_encode(raw, sizeof(raw), tok + 3);
	memset(rec, 0, sizeof(*rec));
	if (sha256(tok, strlen(tok), rec->hash) != 0)
		goto fail;
	hex_prefix(rec->hash, rec->prefix);
	rec->uid = uid;
	rec->role = (int)role;
	rec->created_at = now_ms;
	rec->expires_at = ttl_s > 0 ? now_ms + ttl_s * 1000 : 0;
	memcpy(out, tok, sizeof(tok));
	rc = 0;
fail:
	OPENSSL_cleanse(raw, sizeof(raw));
	OPENSSL_cleanse(tok, sizeof(tok));
	return rc;
}

int auth_token_hash(const char *token, size_t len, unsigned char hash[32])
{
	if (token == NULL || len == 0 || len > AUTH_TOKEN_MAX)
		return -1;
	return sha256(token, len, hash) == 0 ? 0 : -2;
}

int auth_token_judge(const struct token_record *rec, int64_t now_ms,
		     struct auth_identity *id)
{
	size_t uidlen = rec->uid ? strnlen(rec->uid, AUTH_UID_MAX + 1) : 0;

	if (rec->revoked_at != 0)
		return AUTH_TOKEN_REVOKED;
	if (rec->expires_at != 0 && rec->expires_at <= now_ms)
		return AUTH_TOKEN_EXPIRED;
	if (rec->role < ROLE_USER || rec->role > ROLE_ADMIN ||
	    !auth_uid_valid(rec->uid, uidlen))
		return AUTH_TOKEN_UNKNOWN; /* a row we did not write: refuse */
	memset(id, 0, sizeof(*id));
	memcpy(id->uid, rec->uid, uidlen);
	id->uid[uidlen] = '\0';
	id->role = (enum auth_role)rec->role;
	id->expires_at = rec->expires_at;
	id->opaque = 1;
	memcpy(id->hash, rec->hash, 32);
	hex_prefix(rec->hash, id->prefix);
	return 0;
}

int auth_bearer(const char *h, size_t n, const char **tok, size_t *tlen)
{
	if (h == NULL || n <= 7 || strncasecmp(h, "Bearer ", 7) != 0)
		return -1;
	h += 7;
	n -= 7;
	while (n && (*h == ' ' || *h == '\t')) {
		h++;
		n--;
	}
	while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	*tok = h;
	*tlen = n;
	return 0;
}
