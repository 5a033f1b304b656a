/*
 * libFuzzer harness for the permessage-deflate inflate path.
 *
 * Input byte 0 picks the configuration: bit 0 UTF-8 checking, bits 1-3 the
 * limit (0, 1, 5, 100, 1000, 4096, 65536, 1 MiB), bits 4-7 the chunking
 * (0 = whole; else random pieces seeded by it). The rest is a compressed
 * message payload as it comes off the wire (without the 00 00 ff ff tail).
 * Invariants: the result is 0, 1007 or 1009; the output and its buffer
 * never exceed the limit; accepted text is valid UTF-8; the chunked and the
 * whole run agree; the shared stream's memory stays bounded; an accepted
 * message compresses with ws_deflate_message and inflates back to itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/deflate.h"
#include "basestation/ws.h"

#include "fuzz.h"

static const size_t limits[8] = {0, 1, 5, 100, 1000, 4096, 65536, 1u << 20};

static uint16_t chunked(const uint8_t *in, size_t n, size_t limit, int utf8,
			struct ws_zbuf *out, unsigned seed)
{
	struct ws_inflate st;
	uint32_t r = seed * 2654435761u + 1;
	size_t off = 0;

	ws_inflate_begin(&st, out, limit, utf8);
	while (off < n) {
		size_t c;
		r ^= r << 13;
		r ^= r >> 17;
		r ^= r << 5;
		c = 1 + r % (seed < 8 ? 4 : 300);
		if (c > n - off)
			c = n - off;
		ws_inflate_feed(&st, in + off, c);
		off += c;
	}
	return ws_inflate_end(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ws_zbuf a = {0}, b = {0}, z = {0};
	size_t limit;
	unsigned seed;
	int utf8;
	uint16_t ra, rb;
	uint8_t *in;

	if (size < 1)
		return 0;
	utf8 = data[0] & 1;
	limit = limits[(data[0] >> 1) & 7];
	seed = data[0] >> 4;
	size--;
	in = malloc(size ? size : 1); /* exact size: ASan sees overreads */
	if (in == NULL)
		return 0;
	memcpy(in, data + 1, size);

	ra = ws_inflate_message(in, size, limit, utf8, &a);
	REQUIRE(ra == 0 || ra == WS_CLOSE_BAD_DATA || ra == WS_CLOSE_TOO_BIG);
	REQUIRE(a.len <= limit && a.cap <= limit);
	REQUIRE(ra == 0 || a.len == 0);
	REQUIRE(ra != 0 || !utf8 || ws_utf8_valid(a.data, a.len));
	REQUIRE(ws_deflate_heap() < 48 * 1024 + 300 * 1024);

	rb = seed ? chunked(in, size, limit, utf8, &b, seed)
		  : ws_inflate_message(in, size, limit, utf8, &b);
	REQUIRE(rb == ra);
	REQUIRE(b.len == a.len &&
		(a.len == 0 || memcmp(a.data, b.data, a.len) == 0));

	if (ra == 0 && a.len) {
		REQUIRE(ws_deflate_message(a.data, a.len, 0, 15, &z) == 1);
		REQUIRE(ws_inflate_message(z.data, z.len, a.len, utf8, &b) ==
			0);
		REQUIRE(b.len == a.len && memcmp(a.data, b.data, a.len) == 0);
	}
	ws_zbuf_free(&a);
	ws_zbuf_free(&b);
	ws_zbuf_free(&z);
	free(in);
	return 0;
}
