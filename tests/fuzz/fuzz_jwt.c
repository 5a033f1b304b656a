/*
 * libFuzzer harness: arbitrary bytes as an HS256 JWT. Must never crash,
 * leak or read outside the input (the input is not NUL-terminated).
 */
#include "basestation/auth.h"

#include <stdint.h>
#include <string.h>

#define FUZZ_JWT_SECRET "fuzz-secret"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_identity id;

	/* far from exp/nbf of the seed tokens, so both outcomes are reached */
	if (auth_jwt_verify(FUZZ_JWT_SECRET, (const char *)data, size,
			    INT64_C(1700000000000), &id) == 0) {
		/* a valid identity must be well-formed */
		if (!auth_uid_valid(id.uid, strlen(id.uid)) ||
		    strlen(id.prefix) != 8 || (int)id.role < ROLE_USER ||
		    (int)id.role > ROLE_ADMIN)
			__builtin_trap();
	}
	return 0;
}
