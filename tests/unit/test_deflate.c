/*
 * Unit tests for permessage-deflate (src/ws/deflate.c): negotiation, the
 * RFC 7692 §7.2.3 example payloads, round trips against zlib used directly
 * (an independent peer) at random sizes and chunkings, limits, corrupt data,
 * and the memory the shared streams hold.
 */
#include "check.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "basestation/deflate.h"
#include "basestation/ws.h"

static const char BASE[] = "permessage-deflate; server_no_context_takeover; "
			   "client_no_context_takeover";

/* ---- negotiation ---- */

static void neg_at(int line, const char *value, int want, int bits)
{
	struct ws_pmd pmd;
	char resp[WS_PMD_RESPONSE_MAX], exp[WS_PMD_RESPONSE_MAX];
	int rc;

	memset(resp, 'x', sizeof(resp));
	memset(&pmd, 0xEE, sizeof(pmd));
	rc = ws_pmd_negotiate(value, strlen(value), &pmd, resp);
	if (rc != want) {
		fprintf(stderr, "%s:%d: [%s] -> %d, want %d\n", __FILE__, line,
			value, rc, want);
		failures++;
		return;
	}
	if (want != WS_PMD_ACCEPTED) {
		CHECK_AT(line, pmd.on == 0 && pmd.window_bits == 0);
		CHECK_AT(line, resp[0] == '\0');
		return;
	}
	CHECK_AT(line, pmd.on == 1);
	CHECK_AT(line, pmd.window_bits == (bits ? bits : 15));
	if (bits)
		snprintf(exp, sizeof(exp), "%s; server_max_window_bits=%d",
			 BASE, bits);
	else
		snprintf(exp, sizeof(exp), "%s", BASE);
	if (strcmp(resp, exp) != 0) {
		fprintf(stderr, "%s:%d: [%s] response [%s], want [%s]\n",
			__FILE__, line, value, resp, exp);
		failures++;
	}
}

#define ACCEPT(v, bits) neg_at(__LINE__, v, WS_PMD_ACCEPTED, bits)
#define DECLINE(v)	neg_at(__LINE__, v, WS_PMD_DECLINED, 0)
#define MALFORMED(v)	neg_at(__LINE__, v, WS_PMD_MALFORMED, 0)

static void test_negotiate_rfc_examples(void)
{
	/* RFC 7692 §7.1.3 (and §5 of the framework) */
	ACCEPT("permessage-deflate", 0);
	ACCEPT("permessage-deflate; client_max_window_bits", 0);
	ACCEPT("permessage-deflate; client_max_window_bits; "
	       "server_max_window_bits=10",
	       10);
	/* the offer with a fallback: the first is acceptable */
	ACCEPT("permessage-deflate; client_max_window_bits; "
	       "server_max_window_bits=10, permessage-deflate; "
	       "client_max_window_bits",
	       10);
	/* what browsers and ws send */
	ACCEPT("permessage-deflate; client_max_window_bits=15", 0);
	ACCEPT("permessage-deflate; server_no_context_takeover; "
	       "client_no_context_takeover",
	       0);
	ACCEPT("permessage-deflate; server_no_context_takeover; "
	       "client_no_context_takeover; server_max_window_bits=15; "
	       "client_max_window_bits=15",
	       15);
}

static void test_negotiate_values(void)
{
	char v[128];

	/* server_max_window_bits: required value 8..15, no leading zero;
	 * 8 is declined (zlib has no raw deflate with a 256-byte window) */
	for (int b = 9; b <= 15; b++) {
		snprintf(v, sizeof(v),
			 "permessage-deflate; "
			 "server_max_window_bits=%d",
			 b);
		ACCEPT(v, b);
		snprintf(v, sizeof(v),
			 "permessage-deflate; "
			 "server_max_window_bits=\"%d\"",
			 b);
		ACCEPT(v, b);
	}
	DECLINE("permessage-deflate; server_max_window_bits=8");
	DECLINE("permessage-deflate; server_max_window_bits");
	DECLINE("permessage-deflate; server_max_window_bits=7");
	DECLINE("permessage-deflate; server_max_window_bits=16");
	DECLINE("permessage-deflate; server_max_window_bits=0");
	DECLINE("permessage-deflate; server_max_window_bits=1");
	DECLINE("permessage-deflate; server_max_window_bits=010");
	DECLINE("permessage-deflate; server_max_window_bits=09");
	DECLINE("permessage-deflate; server_max_window_bits=+9");
	DECLINE("permessage-deflate; server_max_window_bits=9.0");
	DECLINE("permessage-deflate; server_max_window_bits=1e1");
	DECLINE("permessage-deflate; server_max_window_bits=ten");
	DECLINE("permessage-deflate; server_max_window_bits=\"\"");
	DECLINE("permessage-deflate; server_max_window_bits=\" 10\"");
	DECLINE("permessage-deflate; server_max_window_bits=\"10 \"");
	DECLINE("permessage-deflate; server_max_window_bits="
		"1000000000000000000000000000000010");
	DECLINE("permessage-deflate; server_max_window_bits=\""
		"1000000000000000000000000000000010\"");

	/* client_max_window_bits: optional value 8..15 */
	for (int b = 8; b <= 15; b++) {
		snprintf(v, sizeof(v),
			 "permessage-deflate; "
			 "client_max_window_bits=%d",
			 b);
		ACCEPT(v, 0);
	}
	DECLINE("permessage-deflate; client_max_window_bits=7");
	DECLINE("permessage-deflate; client_max_window_bits=16");
	DECLINE("permessage-deflate; client_max_window_bits=08");
	DECLINE("permessage-deflate; client_max_window_bits=\"\"");
	DECLINE("permessage-deflate; client_max_window_bits=abc");

	/* the no-context-takeover parameters take no value */
	DECLINE("permessage-deflate; server_no_context_takeover=1");
	DECLINE("permessage-deflate; client_no_context_takeover=true");
	DECLINE("permessage-deflate; client_no_context_takeover=\"\"");

	/* quoted values: quoted-pair unescaped before checking */
	ACCEPT("permessage-deflate; server_max_window_bits=\"1\\2\"", 12);
	ACCEPT("permessage-deflate; server_max_window_bits=\"\\9\"", 9);
	ACCEPT("permessage-deflate; client_max_window_bits=\"10\"", 0);
	DECLINE("permessage-deflate; server_max_window_bits=\"1\\\\2\"");
}

static void test_negotiate_params(void)
{
	/* unknown parameters decline the offer, not the upgrade */
	DECLINE("permessage-deflate; foo");
	DECLINE("permessage-deflate; foo=1");
	DECLINE("permessage-deflate; server_no_context_takeover; x=\"y\"");
	DECLINE("permessage-deflate; max_window_bits=10");
	DECLINE("permessage-deflate; client_max_window");

	/* duplicates, also with different values or case */
	DECLINE("permessage-deflate; server_no_context_takeover; "
		"server_no_context_takeover");
	DECLINE("permessage-deflate; client_no_context_takeover; "
		"client_no_context_takeover");
	DECLINE("permessage-deflate; server_max_window_bits=10; "
		"server_max_window_bits=10");
	DECLINE("permessage-deflate; server_max_window_bits=10; "
		"server_max_window_bits=11");
	DECLINE("permessage-deflate; client_max_window_bits; "
		"client_max_window_bits=10");
	DECLINE("permessage-deflate; client_max_window_bits; "
		"CLIENT_MAX_WINDOW_BITS");

	/* names compare case-insensitively */
	ACCEPT("PerMessage-Deflate; Server_No_Context_Takeover; "
	       "SERVER_MAX_WINDOW_BITS=11",
	       11);

	/* several offers: the first acceptable one wins */
	ACCEPT("permessage-deflate; foo, permessage-deflate", 0);
	ACCEPT("permessage-deflate; server_max_window_bits=8, "
	       "permessage-deflate; server_max_window_bits=12",
	       12);
	ACCEPT("permessage-deflate; server_max_window_bits=9, "
	       "permessage-deflate; server_max_window_bits=12",
	       9);
	ACCEPT("x-webkit-deflate-frame, permessage-deflate; "
	       "client_max_window_bits",
	       0);
	ACCEPT("foo; bar=\"a b, c; d\", permessage-deflate", 0);
	DECLINE("permessage-deflate; a, permessage-deflate; b");
	/* other extensions alone: nothing to accept, nothing malformed */
	DECLINE("x-webkit-deflate-frame");
	DECLINE("foo; bar=baz; q=\"a \\\" b\"");
	DECLINE("deflate-frame; no_context_takeover");
	DECLINE("permessage-deflate-x");
	DECLINE("permessage-bzip2, permessage_deflate");
}

static void test_negotiate_syntax(void)
{
	char v[64];

	/* optional whitespace around separators, tabs too */
	ACCEPT("  permessage-deflate ; server_no_context_takeover ;"
	       "client_no_context_takeover  ",
	       0);
	ACCEPT("permessage-deflate\t;\tserver_max_window_bits\t=\t13\t", 13);
	ACCEPT("permessage-deflate;server_max_window_bits = \"14\"", 14);
	/* empty list elements are skipped (RFC 7230 §7) */
	ACCEPT(", ,permessage-deflate,,", 0);
	ACCEPT("foo,,, permessage-deflate ,", 0);
	DECLINE("");
	DECLINE("   ");
	DECLINE(" , ,, ");

	/* not an extension list: the whole header is ignored, even an
	 * acceptable offer before the error */
	MALFORMED(";");
	MALFORMED("permessage-deflate;");
	MALFORMED("permessage-deflate; ");
	MALFORMED("permessage-deflate;; server_no_context_takeover");
	MALFORMED("permessage-deflate; =10");
	MALFORMED("permessage-deflate; server_max_window_bits=");
	MALFORMED("permessage-deflate; server_max_window_bits= ,");
	MALFORMED("permessage-deflate; server_max_window_bits==10");
	MALFORMED("permessage-deflate; server_max_window_bits=\"10");
	MALFORMED("permessage-deflate; server_max_window_bits=\"10\\\"");
	MALFORMED("permessage-deflate; server_max_window_bits=\"10\"x");
	MALFORMED("permessage-deflate; server_max_window_bits=1 0");
	MALFORMED("permessage-deflate x");
	MALFORMED("permessage deflate");
	MALFORMED("\"permessage-deflate\"");
	MALFORMED("permessage-deflate, ;");
	MALFORMED("permessage-deflate, =");
	MALFORMED("permessage-deflate; a b");
	MALFORMED("permessage-deflate; a=b=c");
	MALFORMED("permessage-deflate; a=(b)");
	MALFORMED("permessage-deflate; a=\"\x01\"");
	MALFORMED("permessage-deflate; a=\"\\\x01\"");
	MALFORMED("permessage-deflate\r\n");
	MALFORMED("permessage-deflate@");
	MALFORMED("perm\xc3\xa9ssage-deflate");
	/* obs-text inside quotes is allowed; the offer is another one */
	DECLINE("foo; a=\"\xc3\xa9\"");

	/* the length is honoured: no reading past it, NUL is a byte */
	{
		struct ws_pmd pmd;
		char resp[WS_PMD_RESPONSE_MAX];
		memcpy(v, "permessage-deflate; foo", 24);
		CHECK(ws_pmd_negotiate(v, 18, &pmd, resp) == WS_PMD_ACCEPTED);
		CHECK(ws_pmd_negotiate(v, 19, &pmd, resp) == WS_PMD_MALFORMED);
		CHECK(ws_pmd_negotiate(v, 21, &pmd, resp) == WS_PMD_DECLINED);
		CHECK(ws_pmd_negotiate(v, 23, &pmd, resp) == WS_PMD_DECLINED);
		CHECK(ws_pmd_negotiate(v, 24, &pmd, resp) == WS_PMD_MALFORMED);
		CHECK(ws_pmd_negotiate(v, 0, &pmd, resp) == WS_PMD_DECLINED);
		CHECK(ws_pmd_negotiate(NULL, 0, &pmd, resp) == WS_PMD_DECLINED);
	}
	/* the longest response fits */
	{
		struct ws_pmd pmd;
		char resp[WS_PMD_RESPONSE_MAX];
		const char *o = "permessage-deflate; server_max_window_bits=15";
		CHECK(ws_pmd_negotiate(o, strlen(o), &pmd, resp) ==
		      WS_PMD_ACCEPTED);
		CHECK(strlen(resp) + 1 <= WS_PMD_RESPONSE_MAX);
		CHECK(strlen(resp) == strlen(BASE) + 27);
	}
}

/* ---- helpers: an independent peer built on zlib ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void *xmalloc_t(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

/* What a client sends: raw deflate with the given settings, sync flush,
 * trailing 00 00 ff ff removed (RFC 7692 §7.2.1). */
static uint8_t *peer_deflate(const uint8_t *in, size_t n, int level, int bits,
			     int memlevel, int strategy, size_t *outlen)
{
	z_stream z;
	size_t cap = deflateBound(NULL, n) + 64;
	uint8_t *out = xmalloc_t(cap);

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, level, Z_DEFLATED, -bits, memlevel, strategy) !=
	    Z_OK)
		abort();
	cap = deflateBound(&z, n) + 64;
	free(out);
	out = xmalloc_t(cap);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in != 0 ||
	    z.avail_out == 0)
		abort();
	*outlen = cap - z.avail_out;
	deflateEnd(&z);
	if (*outlen < 4 || memcmp(out + *outlen - 4, "\0\0\xff\xff", 4) != 0)
		abort();
	*outlen -= 4;
	return out;
}

/* What a client does with our payload: append the tail, raw inflate with
 * a 2^bits window. Returns 0 and the bytes in *out, or -1. */
static int peer_inflate(const uint8_t *in, size_t n, int bits, uint8_t **out,
			size_t *outlen)
{
	z_stream z;
	uint8_t *buf = xmalloc_t(n + 4);
	size_t cap = 4096, len = 0;
	uint8_t *o = xmalloc_t(cap);
	int r, rc = -1;

	memcpy(buf, in, n);
	memcpy(buf + n, "\0\0\xff\xff", 4);
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -bits) != Z_OK)
		abort();
	z.next_in = buf;
	z.avail_in = (uInt)(n + 4);
	for (;;) {
		if (len == cap) {
			cap *= 2;
			o = realloc(o, cap);
			if (!o)
				abort();
		}
		z.next_out = o + len;
		z.avail_out = (uInt)(cap - len);
		r = inflate(&z, Z_SYNC_FLUSH);
		len = cap - z.avail_out;
		if (r == Z_OK && z.avail_in == 0 && z.avail_out != 0) {
			rc = 0;
			break;
		}
		if (r != Z_OK && r != Z_BUF_ERROR)
			break;
		if (r == Z_BUF_ERROR && z.avail_in == 0) {
			rc = 0;
			break;
		}
	}
	inflateEnd(&z);
	free(buf);
	*out = o;
	*outlen = len;
	return rc;
}

/* Feed in to a ws_inflate in random pieces (seed 0: whole). */
static uint16_t inflate_chunked(const uint8_t *in, size_t n, size_t limit,
				int utf8, struct ws_zbuf *out, uint64_t seed)
{
	struct ws_inflate st;
	size_t off = 0;

	if (seed == 0)
		return ws_inflate_message(in, n, limit, utf8, out);
	rng = seed;
	ws_inflate_begin(&st, out, limit, utf8);
	while (off < n) {
		uint64_t r = rnd();
		size_t c = r % 3 == 0 ? 1 + (r >> 8) % 4 : 1 + (r >> 8) % 3000;
		if (c > n - off)
			c = n - off;
		ws_inflate_feed(&st, in + off, c);
		off += c;
		/* zero-length feeds are harmless */
		if (r % 7 == 0)
			ws_inflate_feed(&st, in + off, 0);
	}
	return ws_inflate_end(&st);
}

/* Inflate whole and in several chunkings: every run must agree. */
static void expect_inflate_at(int line, const uint8_t *in, size_t n,
			      size_t limit, int utf8, uint16_t want,
			      const void *text, size_t tlen)
{
	struct ws_zbuf out = {0};

	for (uint64_t seed = 0; seed < 6; seed++) {
		uint16_t rc = inflate_chunked(in, n, limit, utf8, &out,
					      seed * 0x51ED27u);
		if (rc != want) {
			fprintf(stderr,
				"%s:%d: inflate -> %u, want %u (seed "
				"%llu)\n",
				__FILE__, line, rc, want,
				(unsigned long long)seed);
			failures++;
			break;
		}
		CHECK_AT(line, out.cap <= limit || out.cap == 0);
		if (want == 0) {
			CHECK_AT(line, out.len == tlen);
			CHECK_AT(line, tlen == 0 || memcmp(out.data, text,
							   tlen) == 0);
		} else {
			CHECK_AT(line, out.len == 0);
		}
	}
	ws_zbuf_free(&out);
}

#define EXPECT_INFLATE(in, limit, utf8, want, text)                            \
	expect_inflate_at(__LINE__, (const uint8_t *)(in), sizeof(in) - 1,     \
			  limit, utf8, want, text, sizeof(text) - 1)
#define EXPECT_FAIL(in, limit, utf8, want)                                     \
	expect_inflate_at(__LINE__, (const uint8_t *)(in), sizeof(in) - 1,     \
			  limit, utf8, want, NULL, 0)

/* ---- inflate ---- */

static void test_rfc_payloads(void)
{
	/* §7.2.3.1: one compressed block ("Hello") */
	EXPECT_INFLATE("\xf2\x48\xcd\xc9\xc9\x07\x00", 100, 1, 0, "Hello");
	/* §7.2.3.2: the second "Hello" with context takeover refers back
	 * into the first message: we never keep context, so it is corrupt */
	EXPECT_FAIL("\xf2\x00\x11\x00\x00", 100, 1, WS_CLOSE_BAD_DATA);
	/* §7.2.3.3: a block with no compression */
	EXPECT_INFLATE("\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 100, 1,
		       0, "Hello");
	/* §7.2.3.4: a block with BFINAL set, then an empty one */
	EXPECT_INFLATE("\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 100, 1, 0, "Hello");
	/* ... and ending at the final block (no extra byte): accepted */
	EXPECT_INFLATE("\xf3\x48\xcd\xc9\xc9\x07\x00", 100, 1, 0, "Hello");
	/* §7.2.3.5: two blocks in one message */
	EXPECT_INFLATE("\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00",
		       100, 1, 0, "Hello");
	/* the same bytes through the exact limit, and one below */
	EXPECT_INFLATE("\xf2\x48\xcd\xc9\xc9\x07\x00", 5, 1, 0, "Hello");
	EXPECT_FAIL("\xf2\x48\xcd\xc9\xc9\x07\x00", 4, 1, WS_CLOSE_TOO_BIG);
	EXPECT_FAIL("\xf2\x48\xcd\xc9\xc9\x07\x00", 0, 1, WS_CLOSE_TOO_BIG);
	/* empty messages: the sync-flushed empty input, and no bytes */
	EXPECT_INFLATE("\x00", 100, 1, 0, "");
	EXPECT_INFLATE("\x02\x00", 100, 1, 0, "");
	EXPECT_INFLATE("", 100, 1, 0, "");
	EXPECT_INFLATE("\x00", 0, 1, 0, "");

	/* a final block followed by a new stream that refers back into the
	 * first one: the history carries over within a message */
	{
		static const uint8_t hello[] = "Hello Hello Hello Hello!";
		uint8_t msg[256];
		size_t n1, n2, m = 0;
		uint8_t *a, *b;
		z_stream z;

		/* stream 1: "Hello " with Z_FINISH (BFINAL), raw */
		memset(&z, 0, sizeof(z));
		deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
		z.next_in = (Bytef *)(uintptr_t)hello;
		z.avail_in = 6;
		z.next_out = msg;
		z.avail_out = sizeof(msg);
		CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
		n1 = sizeof(msg) - z.avail_out;
		deflateEnd(&z);
		/* stream 2: the rest, primed with "Hello " as dictionary */
		memset(&z, 0, sizeof(z));
		deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
		deflateSetDictionary(&z, hello, 6);
		z.next_in = (Bytef *)(uintptr_t)(hello + 6);
		z.avail_in = (uInt)(sizeof(hello) - 1 - 6);
		z.next_out = msg + n1;
		z.avail_out = (uInt)(sizeof(msg) - n1);
		CHECK(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
		n2 = sizeof(msg) - n1 - z.avail_out;
		deflateEnd(&z);
		m = n1 + n2 - 4;
		expect_inflate_at(__LINE__, msg, m, 100, 1, 0, hello,
				  sizeof(hello) - 1);
		/* a plain inflater would not see the history */
		CHECK(peer_inflate(msg + n1, n2 - 4, 15, &a, &n1) < 0 ||
		      n1 != sizeof(hello) - 1 - 6 ||
		      memcmp(a, hello + 6, n1) != 0);
		free(a);
		(void)b;
	}
}

static void test_corrupt(void)
{
	/* block type 3 (reserved) */
	EXPECT_FAIL("\xff\xff\xff", 100, 0, WS_CLOSE_BAD_DATA);
	EXPECT_FAIL("\x07", 100, 0, WS_CLOSE_BAD_DATA);
	/* stored block with LEN != ~NLEN */
	EXPECT_FAIL("\x00\x05\x00\xfb\xff\x48\x65\x6c\x6c\x6f\x00", 100, 0,
		    WS_CLOSE_BAD_DATA);
	/* truncated: cut inside the compressed block */
	EXPECT_FAIL("\xf2\x48\xcd\xc9", 100, 0, WS_CLOSE_BAD_DATA);
	EXPECT_FAIL("\xf2\x48\xcd\xc9\xc9\x07", 100, 0, WS_CLOSE_BAD_DATA);
	/* truncated stored block */
	EXPECT_FAIL("\x00\x05\x00\xfa\xff\x48\x65", 100, 0, WS_CLOSE_BAD_DATA);
	/* the sender did not strip 00 00 ff ff: our tail then starts a
	 * stored block that never completes */
	EXPECT_FAIL("\xf2\x48\xcd\xc9\xc9\x07\x00\x00\x00\xff\xff", 100, 0,
		    WS_CLOSE_BAD_DATA);
	/* ... with one more empty stored block header it is valid */
	EXPECT_INFLATE("\xf2\x48\xcd\xc9\xc9\x07\x00\x00\x00\xff\xff\x00", 100,
		       0, 0, "Hello");
	/* garbage after a final block */
	EXPECT_FAIL("\xf3\x48\xcd\xc9\xc9\x07\x00\xff", 100, 0,
		    WS_CLOSE_BAD_DATA);

	/* UTF-8 is checked on the inflated bytes, when asked: a bad byte,
	 * and a message ending inside a sequence */
	{
		static const char *texts[] = {"ok \xff here", "euro \xe2\x82"};
		for (size_t i = 0; i < 2; i++) {
			const uint8_t *t = (const uint8_t *)texts[i];
			size_t n, tn = strlen(texts[i]);
			uint8_t *z = peer_deflate(t, tn, 6, 15, 8,
						  Z_DEFAULT_STRATEGY, &n);
			expect_inflate_at(__LINE__, z, n, 100, 1,
					  WS_CLOSE_BAD_DATA, NULL, 0);
			expect_inflate_at(__LINE__, z, n, 100, 0, 0, t, tn);
			free(z);
		}
	}

	/* many final blocks: WS_INFLATE_MAX_STREAMS streams are fine, one
	 * more is refused (each restart copies the history) */
	{
		uint8_t m[2 * (WS_INFLATE_MAX_STREAMS + 1)];
		for (size_t i = 0; i < sizeof(m); i += 2) {
			m[i] = 0x03; /* BFINAL, fixed codes, end of block */
			m[i + 1] = 0x00;
		}
		expect_inflate_at(__LINE__, m, sizeof(m) - 2, 100, 1, 0, "", 0);
		expect_inflate_at(__LINE__, m, sizeof(m), 100, 1,
				  WS_CLOSE_BAD_DATA, NULL, 0);
	}

	/* random garbage never crashes and never exceeds the limit */
	for (int k = 0; k < 2000; k++) {
		uint8_t g[64];
		struct ws_zbuf out = {0};
		size_t n = 1 + rnd() % sizeof(g);
		uint16_t rc;
		for (size_t i = 0; i < n; i++)
			g[i] = (uint8_t)rnd();
		rc = ws_inflate_message(g, n, 1000, k & 1, &out);
		CHECK(rc == 0 || rc == WS_CLOSE_BAD_DATA ||
		      rc == WS_CLOSE_TOO_BIG);
		CHECK(out.cap <= 1000);
		CHECK(rc != 0 || !(k & 1) || ws_utf8_valid(out.data, out.len));
		ws_zbuf_free(&out);
	}
}

/* Text of n bytes: JSON-ish, compressible, with multibyte characters. */
static uint8_t *make_text(size_t n)
{
	static const char *words[] = {"{\"type\":\"publish\",",
				      "\"room\":",
				      "\"lobby\",",
				      "\"data\":",
				      "\xe2\x82\xac",
				      "hello ",
				      "world ",
				      "\xf0\x9f\x98\x80",
				      "12345",
				      "}"};
	uint8_t *s = xmalloc_t(n);
	size_t i = 0;

	while (i < n) {
		const char *w = words[rnd() % 10];
		size_t l = strlen(w);
		if (l > n - i) {
			memset(s + i, 'x', n - i);
			break;
		}
		memcpy(s + i, w, l);
		i += l;
	}
	return s;
}

static void test_roundtrip(void)
{
	static const size_t sizes[] = {1,     2,      5,      100,   255,
				       256,   1000,   4096,   16383, 16384,
				       32768, 32769,  65535,  65536, 70000,
				       99999, 131072, 200000, 300001};
	struct ws_zbuf ours = {0};

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]) + 30; k++) {
		size_t n = k < sizeof(sizes) / sizeof(sizes[0])
				   ? sizes[k]
				   : 1 + rnd() % 250000;
		int random_bytes = (k % 5 == 4);
		uint8_t *s = make_text(n), *z, *back;
		int level = (int)(rnd() % 10), bits = 9 + (int)(rnd() % 7);
		int memlevel = 1 + (int)(rnd() % 9);
		int strategy = (int)(rnd() % 5);
		size_t zn, bn;

		if (random_bytes)
			for (size_t i = 0; i < n; i++)
				s[i] = (uint8_t)rnd();
		/* client -> server: any zlib settings, any chunking */
		z = peer_deflate(s, n, level, bits, memlevel, strategy, &zn);
		expect_inflate_at(__LINE__, z, zn, n, !random_bytes, 0, s, n);
		expect_inflate_at(__LINE__, z, zn, n - 1, !random_bytes,
				  WS_CLOSE_TOO_BIG, NULL, 0);
		free(z);

		/* server -> client: our output decodes with the window we
		 * promised, and through our own inflater */
		CHECK(ws_deflate_message(s, n, 0, bits, &ours) == 1);
		CHECK(peer_inflate(ours.data, ours.len, bits, &back, &bn) == 0);
		CHECK(bn == n && memcmp(back, s, n) == 0);
		free(back);
		z = xmalloc_t(ours.len);
		memcpy(z, ours.data, ours.len);
		zn = ours.len;
		expect_inflate_at(__LINE__, z, zn, n, !random_bytes, 0, s, n);
		if (!random_bytes)
			CHECK(zn < n || n < 100); /* it compresses */
		free(z);
		free(s);
	}
	ws_zbuf_free(&ours);
}

static void test_limits_and_memory(void)
{
	struct ws_zbuf out = {0};
	size_t big = 16u << 20, n, heap;
	uint8_t *zeros = calloc(1, big), *z;
	uint16_t rc;

	if (!zeros)
		abort();
	/* a bomb: 16 MiB of zeros in ~16 KiB; the limit is 1 MiB */
	z = peer_deflate(zeros, big, 9, 15, 9, Z_DEFAULT_STRATEGY, &n);
	CHECK(n < 64 * 1024);
	rc = ws_inflate_message(z, n, 1u << 20, 1, &out);
	CHECK(rc == WS_CLOSE_TOO_BIG);
	CHECK(out.len == 0 && out.cap <= (1u << 20));
	heap = ws_deflate_heap();
	/* again, in pieces: same answer, no more memory */
	for (uint64_t seed = 1; seed < 4; seed++) {
		rc = inflate_chunked(z, n, 1u << 20, 1, &out, seed);
		CHECK(rc == WS_CLOSE_TOO_BIG);
		CHECK(out.cap <= (1u << 20));
		CHECK(ws_deflate_heap() == heap);
	}
	free(z);

	/* exactly at the limit: the buffer is exactly the limit */
	ws_zbuf_free(&out);
	z = peer_deflate(zeros, 300000, 6, 15, 8, Z_DEFAULT_STRATEGY, &n);
	CHECK(ws_inflate_message(z, n, 300000, 1, &out) == 0);
	CHECK(out.len == 300000 && out.cap == 300000);
	CHECK(ws_inflate_message(z, n, 299999, 1, &out) == WS_CLOSE_TOO_BIG);
	CHECK(out.cap <= 300000);
	free(z);

	/* trim drops a large buffer, keeps a small one */
	ws_zbuf_trim(&out, 65536);
	CHECK(out.data == NULL && out.cap == 0 && out.len == 0);
	z = peer_deflate(zeros, 1000, 6, 15, 8, Z_DEFAULT_STRATEGY, &n);
	CHECK(ws_inflate_message(z, n, 1u << 20, 1, &out) == 0);
	ws_zbuf_trim(&out, 65536);
	CHECK(out.data != NULL && out.len == 0 && out.cap <= 65536);
	free(z);
	ws_zbuf_free(&out);

	/* the shared streams: what they hold, and that it does not grow
	 * with the number of messages */
	ws_deflate_cleanup();
	CHECK(ws_deflate_heap() == 0);
	z = peer_deflate(zeros, 100000, 6, 15, 8, Z_DEFAULT_STRATEGY, &n);
	CHECK(ws_inflate_message(z, n, 1u << 20, 1, &out) == 0);
	heap = ws_deflate_heap();
	printf("test_deflate: shared inflate stream %zu bytes\n", heap);
	CHECK(heap > 0 && heap < 48 * 1024);
	for (int i = 0; i < 50; i++)
		CHECK(ws_inflate_message(z, n, 1u << 20, 1, &out) == 0);
	CHECK(ws_deflate_heap() == heap);
	CHECK(ws_deflate_message(zeros, 100000, 0, 15, &out) == 1);
	printf("test_deflate: shared deflate stream %zu bytes (window 15, "
	       "memLevel 8)\n",
	       ws_deflate_heap() - heap);
	heap = ws_deflate_heap();
	for (int i = 0; i < 50; i++)
		CHECK(ws_deflate_message(zeros, 100000, 0, 15, &out) == 1);
	CHECK(ws_deflate_heap() == heap);
	/* a different window re-creates the deflate stream: no leak */
	CHECK(ws_deflate_message(zeros, 1000, 0, 9, &out) == 1);
	CHECK(ws_deflate_heap() < heap);
	CHECK(ws_deflate_message(zeros, 1000, 0, 15, &out) == 1);
	CHECK(ws_deflate_heap() == heap);
	ws_deflate_cleanup();
	CHECK(ws_deflate_heap() == 0);
	free(z);
	ws_zbuf_free(&out);
	free(zeros);
}

static void test_deflate_once(void)
{
	struct ws_zbuf a = {0}, b = {0}, c = {0};
	uint8_t *s1 = make_text(5000), *s2 = make_text(5000);
	uint8_t sentinel = 0x5A;

	/* RFC 7692 §7.2.3.1 exactly */
	CHECK(ws_deflate_message((const uint8_t *)"Hello", 5, 0, 15, &a) == 1);
	CHECK(a.len == 7 &&
	      memcmp(a.data, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7) == 0);

	/* the output depends on the input only: A, B, A -> same bytes */
	CHECK(ws_deflate_message(s1, 5000, 0, 15, &a) == 1);
	CHECK(ws_deflate_message(s2, 5000, 0, 15, &b) == 1);
	CHECK(ws_deflate_message(s1, 5000, 0, 15, &c) == 1);
	CHECK(a.len == c.len && memcmp(a.data, c.data, a.len) == 0);
	CHECK(b.len != a.len || memcmp(a.data, b.data, a.len) != 0);
	/* ... also after inflating in between and with another window */
	CHECK(ws_inflate_message(b.data, b.len, 5000, 1, &c) == 0);
	CHECK(ws_deflate_message(s1, 5000, 0, 10, &c) == 1);
	CHECK(ws_deflate_message(s1, 5000, 0, 15, &c) == 1);
	CHECK(a.len == c.len && memcmp(a.data, c.data, a.len) == 0);

	/* below the minimum: "send it plain", out untouched */
	b.len = 1;
	b.data[0] = sentinel;
	CHECK(ws_deflate_message(s1, 255, 256, 15, &b) == 0);
	CHECK(b.len == 1 && b.data[0] == sentinel);
	CHECK(ws_deflate_message(s1, 256, 256, 15, &b) == 1);
	CHECK(ws_deflate_message(s1, 0, 0, 15, &b) == 1);
	CHECK(b.len == 1 && b.data[0] == 0x00); /* the empty message */
	/* bad windows */
	CHECK(ws_deflate_message(s1, 300, 0, 8, &b) == -1);
	CHECK(ws_deflate_message(s1, 300, 0, 16, &b) == -1);
	CHECK(ws_deflate_message(s1, 300, 0, 0, &b) == -1);

	/* a frame around it: RSV1 header, parsed back by a client parser */
	{
		uint8_t frame[16 + 5000];
		struct ws_parser p;
		struct ws_event ev;
		size_t h;
		CHECK(ws_deflate_message(s1, 5000, 0, 15, &a) == 1);
		h = ws_frame_header_rsv1(frame, WS_OP_TEXT, a.len);
		memcpy(frame + h, a.data, a.len);
		ws_parser_init(&p, 5000, 0);
		p.rsv1_ok = 1;
		CHECK(ws_parser_feed(&p, frame, h + a.len, &ev) == h + a.len);
		CHECK(ev.type == WS_EV_TEXT && ev.compressed == 1);
		CHECK(ev.len == a.len);
		CHECK(ws_inflate_message(ev.data, ev.len, p.max_message, 1,
					 &c) == 0);
		CHECK(c.len == 5000 && memcmp(c.data, s1, 5000) == 0);
		ws_parser_finish(&p);
	}
	free(s1);
	free(s2);
	ws_zbuf_free(&a);
	ws_zbuf_free(&b);
	ws_zbuf_free(&c);
}

/* Two messages open on the one shared stream is a bug in the caller:
 * abort loudly rather than corrupt both. */
static void test_interleave_aborts(void)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct ws_inflate a, b;
		struct ws_zbuf o1 = {0}, o2 = {0};
		signal(SIGABRT, SIG_DFL);
		ws_inflate_begin(&a, &o1, 10, 1);
		ws_inflate_begin(&b, &o2, 10, 1);
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);

	/* sequential use is fine, also after an error */
	{
		struct ws_zbuf o = {0};
		CHECK(ws_inflate_message((const uint8_t *)"\xff", 1, 10, 1,
					 &o) == WS_CLOSE_BAD_DATA);
		CHECK(ws_inflate_message(
			      (const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00",
			      7, 10, 1, &o) == 0);
		CHECK(o.len == 5 && memcmp(o.data, "Hello", 5) == 0);
		ws_zbuf_free(&o);
	}
}

int main(void)
{
	test_negotiate_rfc_examples();
	test_negotiate_values();
	test_negotiate_params();
	test_negotiate_syntax();
	test_rfc_payloads();
	test_corrupt();
	test_roundtrip();
	test_limits_and_memory();
	test_deflate_once();
	test_interleave_aborts();
	ws_deflate_cleanup();
	if (failures) {
		fprintf(stderr, "test_deflate: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_deflate: ok\n");
	return 0;
}
