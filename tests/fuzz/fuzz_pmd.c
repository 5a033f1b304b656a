/*
 * libFuzzer harness for the permessage-deflate negotiation parser
 * (Sec-WebSocket-Extensions values). The input is the header value, in an
 * exact-size heap buffer so that a read past len is caught by ASan.
 * Invariants: the result class; an accepted offer gives a response that is
 * itself an acceptable offer with the same window; a well-formed value
 * with one more list element appended gives the same answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/deflate.h"

#include "fuzz.h"

static const char BASE[] = "permessage-deflate; server_no_context_takeover; "
			   "client_no_context_takeover";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *v = malloc(size ? size : 1), *w;
	char resp[WS_PMD_RESPONSE_MAX], resp2[WS_PMD_RESPONSE_MAX];
	struct ws_pmd pmd, pmd2;
	int rc;

	if (v == NULL)
		return 0;
	memcpy(v, data, size);
	rc = ws_pmd_negotiate(v, size, &pmd, resp);
	REQUIRE(rc == WS_PMD_MALFORMED || rc == WS_PMD_DECLINED ||
		rc == WS_PMD_ACCEPTED);
	REQUIRE(strlen(resp) < WS_PMD_RESPONSE_MAX);
	if (rc == WS_PMD_ACCEPTED) {
		REQUIRE(pmd.on == 1);
		REQUIRE(pmd.window_bits >= 9 && pmd.window_bits <= 15);
		REQUIRE(strncmp(resp, BASE, sizeof(BASE) - 1) == 0);
		/* our answer is an offer we would accept, the same way */
		REQUIRE(ws_pmd_negotiate(resp, strlen(resp), &pmd2, resp2) ==
			WS_PMD_ACCEPTED);
		REQUIRE(pmd2.on == 1 && pmd2.window_bits == pmd.window_bits);
		REQUIRE(strcmp(resp, resp2) == 0);
	} else {
		REQUIRE(pmd.on == 0 && pmd.window_bits == 0);
		REQUIRE(resp[0] == '\0');
	}
	/* one more offer after a well-formed list changes nothing unless
	 * nothing was accepted yet */
	if (rc != WS_PMD_MALFORMED && (w = malloc(size + 20)) != NULL) {
		memcpy(w, v, size);
		memcpy(w + size, ",x-foo;a=\"b\"", 12);
		rc = ws_pmd_negotiate(w, size + 12, &pmd2, resp2);
		REQUIRE(rc == (pmd.on ? WS_PMD_ACCEPTED : WS_PMD_DECLINED));
		REQUIRE(pmd2.on == pmd.on &&
			pmd2.window_bits == pmd.window_bits);
		REQUIRE(strcmp(resp, resp2) == 0);
		memcpy(w + size, ", permessage-deflate", 20);
		rc = ws_pmd_negotiate(w, size + 20, &pmd2, resp2);
		REQUIRE(rc == WS_PMD_ACCEPTED);
		REQUIRE(!pmd.on || pmd2.window_bits == pmd.window_bits);
		REQUIRE(pmd.on || pmd2.window_bits == 15);
		free(w);
	}
	free(v);
	return 0;
}
