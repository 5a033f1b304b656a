/*
 * libFuzzer harness for auth_jwt_verify (fixed secret). Each input is used
 * twice:
 *   1. as the token itself (not NUL-terminated: reads must stay in bounds);
 *   2. if it contains a NUL byte, as "header JSON\0payload JSON", encoded
 *      and signed here, so the header/claims checks past the signature are
 *      reached too.
 * A token that verifies must give a well-formed identity.
 */
#include "basestation/auth.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define FUZZ_JWT_SECRET "fuzz-secret"
/* between the exp/nbf values of the seeds, so both outcomes are reached */
#define FUZZ_JWT_NOW INT64_C(1700000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *token, size_t len)
{
	struct auth_identity id;

	if (auth_jwt_verify(FUZZ_JWT_SECRET, token, len, FUZZ_JWT_NOW, &id) !=
	    0)
		return;
	if (!auth_uid_valid(id.uid, strlen(id.uid)) || strlen(id.prefix) != 8 ||
	    (int)id.role < ROLE_USER || (int)id.role > ROLE_ADMIN)
		__builtin_trap();
}

static void check_signed(const uint8_t *data, size_t size)
{
	static char tok[AUTH_TOKEN_MAX * 2];
	const uint8_t *nul = memchr(data, 0, size);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n;

	if (nul == NULL || size > AUTH_TOKEN_MAX)
		return;
	n = auth_b64url_encode(data, (size_t)(nul - data), tok);
	tok[n++] = '.';
	n += auth_b64url_encode(nul + 1, size - (size_t)(nul - data) - 1,
				tok + n);
	if (HMAC(EVP_sha256(), FUZZ_JWT_SECRET, (int)strlen(FUZZ_JWT_SECRET),
		 (const unsigned char *)tok, n, mac, &maclen) == NULL)
		return;
	tok[n++] = '.';
	n += auth_b64url_encode(mac, maclen, tok + n);
	check(tok, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check((const char *)data, size);
	check_signed(data, size);
	return 0;
}
