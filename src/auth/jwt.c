/*
 * HS256 JSON Web Tokens (RFC 7519), verification only.
 *
 * Strict: exactly three base64url parts without padding (non-canonical
 * trailing bits refused), header {"alg":"HS256"} with an optional string
 * "typ" and no "crit", signature checked before the payload is parsed.
 */
#include "basestation/auth.h"

#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define JWT_SIG_LEN 32
/* decoded size of any part of a token of at most AUTH_TOKEN_MAX bytes */
#define JWT_PART_MAX (AUTH_TOKEN_MAX / 4 * 3 + 3)

static int b64url_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict base64url without padding. Decodes n chars into out (outsz bytes)
 * and sets *outlen. 0 ok, -1 invalid or too long. */
static int b64url_decode(const char *in, size_t n, unsigned char *out,
			 size_t outsz, size_t *outlen)
{
	size_t i, o = 0, rem = n % 4;
	uint32_t acc = 0;
	int v, bits = 0;

	if (rem == 1)
		return -1;
	if (n / 4 * 3 + (rem ? rem - 1 : 0) > outsz)
		return -1;
	for (i = 0; i < n; i++) {
		v = b64url_val((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1; /* leftover bits must be zero (canonical form) */
	*outlen = o;
	return 0;
}

/* Decode a base64url part and parse it as a JSON object; NULL if either
 * fails. */
static json_t *decode_object(const char *in, size_t n, unsigned char *buf)
{
	size_t len;
	json_t *j;

	if (b64url_decode(in, n, buf, JWT_PART_MAX, &len) != 0)
		return NULL;
	j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* NumericDate (seconds, integer or real) -> ms, saturating. 0 ok, -1 not a
 * number. */
static int claim_ms(const json_t *v, int64_t *ms)
{
	json_int_t i;
	double d;

	if (json_is_integer(v)) {
		i = json_integer_value(v);
		if (i > INT64_MAX / 1000)
			*ms = INT64_MAX;
		else if (i < INT64_MIN / 1000)
			*ms = INT64_MIN;
		else
			*ms = (int64_t)i * 1000;
		return 0;
	}
	if (json_is_real(v)) {
		d = json_real_value(v) * 1000.0;
		if (d >= 9.2e18)
			*ms = INT64_MAX;
		else if (d <= -9.2e18)
			*ms = INT64_MIN;
		else
			*ms = (int64_t)d;
		return 0;
	}
	return -1;
}

static int check_header(const json_t *h)
{
	const json_t *alg = json_object_get(h, "alg");
	const json_t *typ = json_object_get(h, "typ");

	if (!json_is_string(alg) || json_string_length(alg) != 5 ||
	    memcmp(json_string_value(alg), "HS256", 5) != 0)
		return -1;
	if (typ != NULL && !json_is_string(typ))
		return -1;
	if (json_object_get(h, "crit") != NULL)
		return -1; /* no extensions understood */
	return 0;
}

static int check_signature(const char *secret, const char *signed_part,
			   size_t signed_len, const char *sig, size_t sig_len)
{
	unsigned char mac[EVP_MAX_MD_SIZE], got[JWT_SIG_LEN + 3];
	unsigned int maclen = 0;
	size_t gotlen = 0;
	size_t secret_len = strlen(secret);

	if (b64url_decode(sig, sig_len, got, sizeof(got), &gotlen) != 0 ||
	    gotlen != JWT_SIG_LEN)
		return -1;
	if (HMAC(EVP_sha256(), secret, (int)secret_len,
		 (const unsigned char *)signed_part, signed_len, mac,
		 &maclen) == NULL ||
	    maclen != JWT_SIG_LEN)
		return -1;
	return auth_ct_equal(mac, maclen, got, gotlen) ? 0 : -1;
}

int auth_jwt_verify(const char *secret, const char *token, size_t len,
		    int64_t now_ms, struct auth_identity *id)
{
	unsigned char buf[JWT_PART_MAX];
	const char *dot1, *dot2, *payload, *sig;
	json_t *header = NULL, *claims = NULL;
	const json_t *sub, *exp, *nbf, *role;
	int64_t exp_ms = 0, nbf_ms;
	int r = ROLE_USER, rc = -1;
	size_t sublen;

	if (secret == NULL || secret[0] == '\0' || token == NULL || len == 0 ||
	    len > AUTH_TOKEN_MAX || id == NULL)
		return -1;

	/* exactly three parts */
	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		return -1;
	payload = dot1 + 1;
	dot2 = memchr(payload, '.', len - (size_t)(payload - token));
	if (dot2 == NULL)
		return -1;
	sig = dot2 + 1;
	if (memchr(sig, '.', len - (size_t)(sig - token)) != NULL)
		return -1;

	header = decode_object(token, (size_t)(dot1 - token), buf);
	if (header == NULL || check_header(header) != 0)
		goto fail;
	if (check_signature(secret, token, (size_t)(dot2 - token), sig,
			    len - (size_t)(sig - token)) != 0)
		goto fail;

	claims = decode_object(payload, (size_t)(dot2 - payload), buf);
	if (claims == NULL)
		goto fail;

	sub = json_object_get(claims, "sub");
	if (!json_is_string(sub))
		goto fail;
	sublen = json_string_length(sub);
	if (!auth_uid_valid(json_string_value(sub), sublen))
		goto fail;

	exp = json_object_get(claims, "exp");
	if (exp != NULL) {
		if (claim_ms(exp, &exp_ms) != 0 || now_ms >= exp_ms)
			goto fail;
	}
	nbf = json_object_get(claims, "nbf");
	if (nbf != NULL) {
		if (claim_ms(nbf, &nbf_ms) != 0 || now_ms < nbf_ms)
			goto fail;
	}
	role = json_object_get(claims, "role");
	if (role != NULL) {
		r = json_is_string(role)
			    ? auth_role_parse(json_string_value(role))
			    : -1;
		if (r < 0)
			goto fail;
	}

	memset(id, 0, sizeof(*id));
	memcpy(id->uid, json_string_value(sub), sublen);
	id->uid[sublen] = '\0';
	id->role = (enum auth_role)r;
	id->expires_at = exp_ms;
	auth_hash_prefix(token, len, id->prefix);
	rc = 0;
fail:
	json_decref(header);
	json_decref(claims);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}
