/*
 * libFuzzer harness for the HTTP upgrade request parser, the handshake
 * checks and query decoding. The input is copied into an exact-size heap
 * buffer so that any read past len is caught by ASan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/ws.h"

#include "fuzz.h"

/* A field is either empty or lies inside the head. */
static void check_str(struct ws_str s, const char *buf, int head)
{
	if (s.n == 0)
		return;
	REQUIRE(s.p >= buf && s.p + s.n <= buf + head);
}

static void check_query(const char *q, size_t qlen, const char *name,
			size_t outsz)
{
	char out[70];
	int r;

	REQUIRE(outsz <= sizeof(out));
	r = ws_query_get(q, qlen, name, out, outsz);
	REQUIRE(r >= -2);
	if (r >= 0) {
		REQUIRE((size_t)r < outsz);
		REQUIRE(strlen(out) == (size_t)r);
	}
}

static void check_request(const char *buf, size_t len)
{
	struct ws_request req;
	int r = ws_request_parse(buf, len, &req);

	if (r == WS_HS_NEED_MORE) {
		REQUIRE(len < WS_HS_MAX_BYTES);
		/* a prefix of an incomplete head is incomplete too */
		REQUIRE(ws_request_parse(buf, len / 2, &req) ==
			WS_HS_NEED_MORE);
		return;
	}
	if (r == WS_HS_BAD)
		return;
	REQUIRE(r > 0 && (size_t)r <= len && r <= WS_HS_MAX_BYTES);
	REQUIRE(req.header_count >= 0 && req.header_count <= WS_HS_MAX_HEADERS);
	REQUIRE(req.http_major >= 0 && req.http_major <= 9);
	REQUIRE(req.http_minor >= -1 && req.http_minor <= 9);
	check_str(req.method, buf, r);
	check_str(req.target, buf, r);
	check_str(req.path, buf, r);
	check_str(req.query, buf, r);
	check_str(req.host, buf, r);
	check_str(req.upgrade, buf, r);
	check_str(req.connection, buf, r);
	check_str(req.key, buf, r);
	check_str(req.version, buf, r);
	check_str(req.origin, buf, r);
	check_str(req.protocol, buf, r);
	check_str(req.authorization, buf, r);
	check_str(req.forwarded_for, buf, r);
	REQUIRE(req.method.n > 0 && req.target.n > 0);
	REQUIRE(req.path.n + (req.query.n ? req.query.n + 1 : 0) <=
		req.target.n);

	/* the head alone parses the same */
	{
		struct ws_request again;
		REQUIRE(ws_request_parse(buf, (size_t)r, &again) == r);
		REQUIRE(again.header_count == req.header_count);
	}

	REQUIRE((req.repeated & ~req.seen) == 0);
	r = ws_request_check(&req);
	REQUIRE(r == 0 || r == 400 || r == 404 || r == 426);
	if (r == 0) {
		char accept[29];
		/* one Host, and no header that must be single given twice */
		REQUIRE((req.seen & WS_HDR_HOST) && req.repeated == 0);
		REQUIRE(req.key.n == 24);
		ws_accept_key(req.key.p, req.key.n, accept);
		REQUIRE(strlen(accept) == 28);
	}
	check_query(req.query.p, req.query.n, "token", 64);
	check_query(req.query.p, req.query.n, "a", 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	char name[8];
	size_t nlen;

	if (!buf)
		return 0;
	buf[0] = '\0';
	if (size)
		memcpy(buf, data, size);
	check_request(buf, size);

	/* the raw input as a query string: name from its first bytes */
	nlen = size ? (size_t)(data[0] % 4) : 0;
	if (nlen > size - (size ? 1 : 0))
		nlen = 0;
	for (size_t i = 0; i < nlen; i++)
		name[i] = (char)(data[1 + i] ? data[1 + i] : 'x');
	name[nlen] = '\0';
	check_query(buf, size, name, size ? 1 + (size_t)(data[0] % 64) : 1);
	check_query(buf, size, "token", 64);
	free(buf);
	return 0;
}
