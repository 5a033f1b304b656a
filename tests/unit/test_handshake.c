/*
 * Unit tests for the HTTP upgrade request parser, the RFC 6455 checks,
 * Sec-WebSocket-Accept and query parameter decoding.
 */
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/ws.h"

static int str_eq(struct ws_str s, const char *lit)
{
	return s.n == strlen(lit) && (s.n == 0 || memcmp(s.p, lit, s.n) == 0);
}

static const char browser[] =
	"GET /ws HTTP/1.1\r\n"
	"Host: example.com:8080\r\n"
	"Connection: Upgrade\r\n"
	"Pragma: no-cache\r\n"
	"Cache-Control: no-cache\r\n"
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
	"(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
	"Upgrade: websocket\r\n"
	"Origin: http://example.com:8080\r\n"
	"Sec-WebSocket-Version: 13\r\n"
	"Accept-Encoding: gzip, deflate, br\r\n"
	"Accept-Language: en-US,en;q=0.9\r\n"
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	"Sec-WebSocket-Extensions: permessage-deflate; "
	"client_max_window_bits\r\n"
	"Sec-WebSocket-Protocol: chat, superchat\r\n"
	"Authorization: Bearer abc.def\r\n"
	"X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n"
	"\r\n";

/* A minimal valid request with the given target and extra header lines. */
static size_t build(char *buf, size_t cap, const char *target,
		    const char *extra)
{
	int n = snprintf(buf, cap,
			 "GET %s HTTP/1.1\r\n"
			 "Host: h\r\n"
			 "%s"
			 "\r\n",
			 target, extra);
	if (n < 0 || (size_t)n >= cap)
		abort();
	return (size_t)n;
}

#define STD_HEADERS                                                            \
	"Upgrade: websocket\r\n"                                               \
	"Connection: Upgrade\r\n"                                              \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                      \
	"Sec-WebSocket-Version: 13\r\n"

/* Parse a complete request; return ws_request_check's verdict, or -1000
 * plus the parse result when parsing does not succeed. */
static int verdict(const char *target, const char *extra)
{
	char buf[4096];
	struct ws_request req;
	size_t n = build(buf, sizeof(buf), target, extra);
	int r = ws_request_parse(buf, n, &req);

	if (r != (int)n)
		return -1000 + r;
	return ws_request_check(&req);
}

/* Parse raw text (with embedded NULs allowed via explicit length). */
static int parse_raw(const char *s, size_t n)
{
	struct ws_request req;

	return ws_request_parse(s, n, &req);
}

#define PARSE(lit)    parse_raw(lit, sizeof(lit) - 1)
#define PARSE_OK(lit) (PARSE(lit) == (int)sizeof(lit) - 1)

static void test_browser(void)
{
	struct ws_request req;
	size_t n = sizeof(browser) - 1;
	char accept[29];
	int r;

	r = ws_request_parse(browser, n, &req);
	CHECK(r == (int)n);
	CHECK(str_eq(req.method, "GET"));
	CHECK(str_eq(req.target, "/ws"));
	CHECK(str_eq(req.path, "/ws"));
	CHECK(req.query.n == 0);
	CHECK(req.http_major == 1 && req.http_minor == 1);
	CHECK(str_eq(req.host, "example.com:8080"));
	CHECK(str_eq(req.upgrade, "websocket"));
	CHECK(str_eq(req.connection, "Upgrade"));
	CHECK(req.connection_has_upgrade && req.upgrade_is_websocket);
	CHECK(str_eq(req.key, "dGhlIHNhbXBsZSBub25jZQ=="));
	CHECK(str_eq(req.version, "13"));
	CHECK(str_eq(req.origin, "http://example.com:8080"));
	CHECK(str_eq(req.protocol, "chat, superchat"));
	CHECK(str_eq(req.authorization, "Bearer abc.def"));
	CHECK(str_eq(req.forwarded_for, "203.0.113.7, 10.0.0.1"));
	CHECK(req.header_count == 15);
	CHECK(ws_request_check(&req) == 0);

	ws_accept_key(req.key.p, req.key.n, accept);
	CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);

	/* every proper prefix needs more; the head length ignores bytes
	 * that follow it (an early first frame) */
	for (size_t k = 0; k < n; k++) {
		r = ws_request_parse(browser, k, &req);
		if (r != WS_HS_NEED_MORE) {
			fprintf(stderr, "%s:%d: prefix %zu gave %d\n", __FILE__,
				__LINE__, k, r);
			failures++;
		}
	}
	{
		char *more = malloc(n + 6);
		if (!more)
			abort();
		memcpy(more, browser, n);
		memcpy(more + n, "\x81\x85\x37\xfa\x21\x3d", 6);
		CHECK(ws_request_parse(more, n + 6, &req) == (int)n);
		/* the exact buffer: a heap copy lets ASan catch over-reads */
		for (size_t k = 0; k <= n; k++) {
			char *exact = malloc(k ? k : 1);
			if (!exact)
				abort();
			memcpy(exact, browser, k);
			r = ws_request_parse(exact, k, &req);
			CHECK(r == (k == n ? (int)n : WS_HS_NEED_MORE));
			free(exact);
		}
		free(more);
	}
}

static void test_bare_lf(void)
{
	static const char lf[] = "GET /ws?token=abc HTTP/1.1\n"
				 "Host: h\n"
				 "Upgrade: websocket\n"
				 "Connection: Upgrade\r\n" /* mixed */
				 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n"
				 "Sec-WebSocket-Version: 13\n"
				 "\n";
	struct ws_request req;
	size_t n = sizeof(lf) - 1;

	CHECK(ws_request_parse(lf, n, &req) == (int)n);
	CHECK(ws_request_check(&req) == 0);
	CHECK(str_eq(req.path, "/ws") && str_eq(req.query, "token=abc"));
	CHECK(str_eq(req.version, "13") && str_eq(req.connection, "Upgrade"));
	for (size_t k = 0; k < n; k++)
		CHECK(ws_request_parse(lf, k, &req) == WS_HS_NEED_MORE);
	/* CRLF head ended by a bare LF blank line */
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: x\r\n\n") == 26);
}

static void test_limits(void)
{
	char *buf = malloc(WS_HS_MAX_BYTES + 200);
	struct ws_request req;
	size_t n;
	int r;

	if (!buf)
		abort();
	/* exactly WS_HS_MAX_HEADERS headers: fine; one more: bad */
	n = (size_t)sprintf(buf, "GET /ws HTTP/1.1\r\n");
	for (int i = 0; i < WS_HS_MAX_HEADERS; i++)
		n += (size_t)sprintf(buf + n, "X-H%d: v\r\n", i);
	memcpy(buf + n, "\r\n", 2);
	CHECK(ws_request_parse(buf, n + 2, &req) == (int)n + 2);
	CHECK(req.header_count == WS_HS_MAX_HEADERS);
	n += (size_t)sprintf(buf + n, "X-Extra: v\r\n");
	memcpy(buf + n, "\r\n", 2);
	CHECK(ws_request_parse(buf, n + 2, &req) == WS_HS_BAD);
	/* ... as soon as the extra header line is complete */
	CHECK(ws_request_parse(buf, n, &req) == WS_HS_BAD);

	/* a head of exactly WS_HS_MAX_BYTES is fine, one more is not */
	for (int extra = 0; extra <= 1; extra++) {
		size_t fixed = strlen("GET /ws HTTP/1.1\r\nX: \r\n\r\n");
		size_t vlen = WS_HS_MAX_BYTES - fixed + (size_t)extra;
		n = (size_t)sprintf(buf, "GET /ws HTTP/1.1\r\nX: ");
		memset(buf + n, 'v', vlen);
		n += vlen;
		memcpy(buf + n, "\r\n\r\n", 4);
		n += 4;
		r = ws_request_parse(buf, n, &req);
		if (extra == 0) {
			CHECK(n == WS_HS_MAX_BYTES);
			CHECK(r == (int)n);
			CHECK(req.header_count == 1);
		} else {
			CHECK(n == WS_HS_MAX_BYTES + 1);
			CHECK(r == WS_HS_BAD);
		}
	}

	/* no terminator: NEED_MORE below the limit, BAD at or over it */
	n = (size_t)sprintf(buf, "GET /ws HTTP/1.1\r\nX: ");
	memset(buf + n, 'v', WS_HS_MAX_BYTES + 100 - n);
	CHECK(ws_request_parse(buf, WS_HS_MAX_BYTES - 1, &req) ==
	      WS_HS_NEED_MORE);
	CHECK(ws_request_parse(buf, WS_HS_MAX_BYTES, &req) == WS_HS_BAD);
	CHECK(ws_request_parse(buf, WS_HS_MAX_BYTES + 100, &req) == WS_HS_BAD);
	/* terminator just past the limit */
	memcpy(buf + WS_HS_MAX_BYTES - 2, "\r\n\r\n", 4);
	CHECK(ws_request_parse(buf, WS_HS_MAX_BYTES + 2, &req) == WS_HS_BAD);
	/* request line alone longer than the limit */
	memset(buf, 'A', WS_HS_MAX_BYTES + 10);
	CHECK(ws_request_parse(buf, WS_HS_MAX_BYTES + 10, &req) == WS_HS_BAD);
	free(buf);
}

static void test_check(void)
{
	CHECK(verdict("/ws", STD_HEADERS) == 0);

	/* method and version */
	{
		struct ws_request req;
		static const char post[] =
			"POST /ws HTTP/1.1\r\n" STD_HEADERS "\r\n";
		static const char post404[] =
			"POST /other HTTP/1.1\r\n" STD_HEADERS "\r\n";
		static const char get_lc[] =
			"get /ws HTTP/1.1\r\n" STD_HEADERS "\r\n";
		static const char http10[] =
			"GET /ws HTTP/1.0\r\n" STD_HEADERS "\r\n";
		static const char http20[] =
			"GET /ws HTTP/2.0\r\n" STD_HEADERS "\r\n";
		static const char http12[] =
			"GET /ws HTTP/1.2\r\nHost: h\r\n" STD_HEADERS "\r\n";
		static const char http10_404[] =
			"GET /x HTTP/1.0\r\n" STD_HEADERS "\r\n";

		CHECK(PARSE(post) > 0);
		ws_request_parse(post, sizeof(post) - 1, &req);
		CHECK(ws_request_check(&req) == 400);
		ws_request_parse(post404, sizeof(post404) - 1, &req);
		CHECK(ws_request_check(&req) == 400);
		ws_request_parse(get_lc, sizeof(get_lc) - 1, &req);
		CHECK(ws_request_check(&req) == 400);
		CHECK(ws_request_parse(http10, sizeof(http10) - 1, &req) > 0);
		CHECK(req.http_major == 1 && req.http_minor == 0);
		CHECK(ws_request_check(&req) == 400);
		ws_request_parse(http10_404, sizeof(http10_404) - 1, &req);
		CHECK(ws_request_check(&req) == 400);
		CHECK(ws_request_parse(http20, sizeof(http20) - 1, &req) > 0);
		CHECK(req.http_major == 2 && req.http_minor == -1);
		CHECK(ws_request_check(&req) == 400);
		CHECK(ws_request_parse(http12, sizeof(http12) - 1, &req) > 0);
		CHECK(ws_request_check(&req) == 0);
	}

	/* Upgrade / Connection */
	CHECK(verdict("/ws", "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);
	CHECK(verdict("/ws", "Upgrade: h2c\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: close\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgraded\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: keep-alive, Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 0);
	CHECK(verdict("/ws", "upgrade: WebSocket\r\n"
			     "CONNECTION:KEEP-ALIVE,upgrade \t\r\n"
			     "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "sec-websocket-version:13\r\n") == 0);
	CHECK(verdict("/ws", "Upgrade:\twebsocket\t\r\n"
			     "Connection: keep-alive\r\n"
			     "Connection: Upgrade\r\n" /* any header counts */
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 0);
	CHECK(verdict("/ws", "Upgrade: foo, websocket\r\n"
			     "Connection: ,,Upgrade,\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 0);

	/* key must be base64 of exactly 16 bytes */
	static const char *bad_keys[] = {
		"",
		"dGhlIHNhbXBsZSBub25jZQ",
		"dGhlIHNhbXBsZSBub25jZQ=",
		"dGhlIHNhbXBsZSBub25jZQ===",
		"dGhlIHNhbXBsZSBub25jZSE=", /* 17 bytes */
		"dGhlIHNhbXBsZSBub25j",	    /* 15 bytes */
		"dGhlIHNhbXBsZSBub25jZ!==",
		"dGhlIHNhbXBsZSBub2 jZQ==",
		"dGhlIHNhbXBsZSBub25jZQ=A",
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	};
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		char extra[512];
		snprintf(extra, sizeof(extra),
			 "Upgrade: websocket\r\n"
			 "Connection: Upgrade\r\n"
			 "Sec-WebSocket-Key: %s\r\n"
			 "Sec-WebSocket-Version: 13\r\n",
			 bad_keys[i]);
		if (verdict("/ws", extra) != 400) {
			fprintf(stderr, "%s:%d: key '%s' accepted\n", __FILE__,
				__LINE__, bad_keys[i]);
			failures++;
		}
	}
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 0);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: +/+/+/+/+/+/+/+/+/+/+w==\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 0);

	/* version */
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 8\r\n") == 426);
	CHECK(verdict("/ws",
		      "Upgrade: websocket\r\n"
		      "Connection: Upgrade\r\n"
		      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") ==
	      426);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 13, 8\r\n") == 426);
	CHECK(verdict("/ws", "Upgrade: websocket\r\n"
			     "Connection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			     "Sec-WebSocket-Version: 8\r\n"
			     "Sec-WebSocket-Version: 13\r\n") == 400);

	/* headers that may appear once: a second one is a 400, not "the last
	 * one wins" (RFC 6455 §4.2.1, §11.3.1, §11.3.5; RFC 9112 §3.2) */
	CHECK(verdict("/ws",
		      STD_HEADERS "Sec-WebSocket-Key: "
				  "dGhlIHNhbXBsZSBub25jZQ==\r\n") == 400);
	CHECK(verdict("/ws",
		      STD_HEADERS "Sec-WebSocket-Key: "
				  "AAAAAAAAAAAAAAAAAAAAAA==\r\n") == 400);
	CHECK(verdict("/ws", STD_HEADERS "Sec-WebSocket-Version: 13\r\n") ==
	      400);
	CHECK(verdict("/ws", STD_HEADERS "Upgrade: websocket\r\n") == 400);
	CHECK(verdict("/ws", STD_HEADERS "upgrade: h2c\r\n") == 400);
	CHECK(verdict("/ws", STD_HEADERS "Host: h\r\n") == 400);
	CHECK(verdict("/ws", STD_HEADERS "HOST: other\r\n") == 400);
	/* Connection is a list: several are one (see above), as are other
	 * headers; but one Origin only (RFC 6454 §7.3): which would be
	 * judged? */
	CHECK(verdict("/ws", STD_HEADERS "Connection: keep-alive\r\n"
					 "X-A: a\r\nX-A: b\r\n") == 0);
	CHECK(verdict("/ws", STD_HEADERS "Origin: a\r\nOrigin: b\r\n") == 400);
	CHECK(verdict("/ws", STD_HEADERS "Origin: a\r\norigin: a\r\n") == 400);
	/* a repeated WebSocket header on another path: 404 first; Host is
	 * HTTP's own and comes before the path */
	CHECK(verdict("/other", STD_HEADERS "Upgrade: websocket\r\n") == 404);
	CHECK(verdict("/other", STD_HEADERS "Host: h\r\n") == 400);
	{
		static const char no_host[] =
			"GET /ws HTTP/1.1\r\n" STD_HEADERS "\r\n";
		static const char no_host404[] =
			"GET /other HTTP/1.1\r\n" STD_HEADERS "\r\n";
		static const char empty_host[] =
			"GET /ws HTTP/1.1\r\nHost:\r\n" STD_HEADERS "\r\n";
		struct ws_request req;

		CHECK(ws_request_parse(no_host, sizeof(no_host) - 1, &req) ==
		      (int)sizeof(no_host) - 1);
		CHECK(!(req.seen & WS_HDR_HOST) && req.repeated == 0);
		CHECK(ws_request_check(&req) == 400);
		ws_request_parse(no_host404, sizeof(no_host404) - 1, &req);
		CHECK(ws_request_check(&req) == 400);
		/* an empty Host is allowed (RFC 9112 §3.2) */
		CHECK(ws_request_parse(empty_host, sizeof(empty_host) - 1,
				       &req) == (int)sizeof(empty_host) - 1);
		CHECK(ws_request_check(&req) == 0 && req.host.n == 0);
	}

	/* path */
	CHECK(verdict("/other", STD_HEADERS) == 404);
	CHECK(verdict("/", STD_HEADERS) == 404);
	CHECK(verdict("/ws/", STD_HEADERS) == 404);
	CHECK(verdict("/WS", STD_HEADERS) == 404);
	CHECK(verdict("/wss", STD_HEADERS) == 404);
	CHECK(verdict("/ws?", STD_HEADERS) == 0);
	CHECK(verdict("/other", "") == 404); /* 404 before the ws headers */
	CHECK(verdict("http://h/ws", STD_HEADERS) == 404);
	{
		char buf[1024];
		struct ws_request req;
		size_t n = build(buf, sizeof(buf), "/ws?token=x&b=%41",
				 STD_HEADERS);
		CHECK(ws_request_parse(buf, n, &req) == (int)n);
		CHECK(ws_request_check(&req) == 0);
		CHECK(str_eq(req.path, "/ws"));
		CHECK(str_eq(req.query, "token=x&b=%41"));
		CHECK(str_eq(req.target, "/ws?token=x&b=%41"));
		n = build(buf, sizeof(buf), "/ws?a?b", STD_HEADERS);
		CHECK(ws_request_parse(buf, n, &req) == (int)n);
		CHECK(str_eq(req.path, "/ws") && str_eq(req.query, "a?b"));
		n = build(buf, sizeof(buf), "/ws?", STD_HEADERS);
		CHECK(ws_request_parse(buf, n, &req) == (int)n);
		CHECK(str_eq(req.path, "/ws") && req.query.n == 0);
	}
}

static void test_malformed(void)
{
	/* request line */
	CHECK(PARSE("GET  /ws HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws  HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws HTTP/1.1 \r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE(" GET /ws HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("\r\nGET /ws HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws HTTP/1.10\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws HTTP/1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws http/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws HTTP/x.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /w s HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /w\ts HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /w\x7fs HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /w\xc3\xa9 HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("G(T /ws HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws HTTP/1.1\r\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET\0/ws HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws\0 HTTP/1.1\r\n\r\n") == WS_HS_BAD);
	/* a bad request line is refused before the head is complete */
	CHECK(PARSE("GET /ws HTTP/1.1 x\r\nHost: a\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET /ws HTTP/1.1\r\nHost: a\r\n") == WS_HS_NEED_MORE);

	/* header lines */
	CHECK(PARSE("GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nX-A: b\r\n\tc\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nNoColon\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\n: a\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\x01"
		    "b\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\n\0\r\n\r\n") == WS_HS_BAD);
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n") == WS_HS_BAD);
	/* NUL after the head is not our business */
	CHECK(PARSE("GET / HTTP/1.1\r\nHost: a\r\n\r\n\0") ==
	      (int)sizeof("GET / HTTP/1.1\r\nHost: a\r\n\r\n") - 1);
	/* obs-text, empty values and tabs are fine */
	CHECK(PARSE_OK("GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"));
	CHECK(PARSE_OK("GET / HTTP/1.1\r\nX:\r\nY: \t \r\n\r\n"));
	{
		struct ws_request req;
		static const char s[] = "GET / HTTP/1.1\r\nHost:  a b \t\r\n"
					"Origin:\t\r\n\r\n";
		CHECK(ws_request_parse(s, sizeof(s) - 1, &req) ==
		      (int)sizeof(s) - 1);
		CHECK(str_eq(req.host, "a b"));
		CHECK(req.origin.n == 0 && req.origin.p != NULL);
	}
	/* nothing at all */
	CHECK(parse_raw("", 0) == WS_HS_NEED_MORE);
	CHECK(parse_raw(NULL, 0) == WS_HS_NEED_MORE);
}

/* Random mutations of the browser request: parse must not crash, read
 * out of bounds (run under ASan) or return nonsense. */
static void test_mutations(void)
{
	uint64_t x = 0x853C49E6748FEA9Bull;
	size_t n = sizeof(browser) - 1;
	char *buf = malloc(n);

	if (!buf)
		abort();
	for (int iter = 0; iter < 20000; iter++) {
		struct ws_request req;
		size_t len = n;
		int r;
		memcpy(buf, browser, n);
		for (int k = 0; k < 1 + iter % 4; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[x % n] = (char)(x >> 40);
		}
		if (iter & 1)
			len = (x >> 20) % (n + 1);
		r = ws_request_parse(buf, len, &req);
		CHECK(r == WS_HS_NEED_MORE || r == WS_HS_BAD ||
		      (r > 0 && (size_t)r <= len));
		if (r > 0) {
			CHECK(req.header_count <= WS_HS_MAX_HEADERS);
			CHECK(req.method.p >= buf && req.method.p < buf + r);
			r = ws_request_check(&req);
			CHECK(r == 0 || r == 400 || r == 404 || r == 426);
		}
	}
	free(buf);
}

static void test_accept_key(void)
{
	char out[29], key[200];

	memset(out, 'Z', sizeof(out));
	ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
	CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
	memset(key, 'x', sizeof(key));
	ws_accept_key(key, 0, out);
	CHECK(strcmp(out, "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=") == 0);
	ws_accept_key(key, 92, out);
	CHECK(strcmp(out, "N6jQH9SY1VrfN6p4qvkUdTUUhwQ=") == 0);
	ws_accept_key(key, 93, out);
	CHECK(strcmp(out, "VLoMsYpfUyI53GDGVcOE0uhJF04=") == 0);
	ws_accept_key(key, 200, out);
	CHECK(strcmp(out, "2/xdrRDawKrkzT3zWJGBWn134JI=") == 0);
}

static void query_case(const char *q, const char *name, size_t outsz, int want,
		       const char *want_s, int line)
{
	char out[64];
	int r;

	memset(out, '#', sizeof(out));
	r = ws_query_get(q, strlen(q), name, out, outsz);
	CHECK_AT(line, r == want);
	if (r != want)
		fprintf(stderr, "    query '%s' name '%s': got %d\n", q, name,
			r);
	if (want >= 0 && r == want) {
		CHECK_AT(line, strcmp(out, want_s) == 0);
		CHECK_AT(line, out[want] == '\0');
	}
}

#define Q(q, name, outsz, want, s) query_case(q, name, outsz, want, s, __LINE__)

static void test_query(void)
{
	Q("token=abc", "token", 64, 3, "abc");
	Q("a=1&token=abc%20def&x=2", "token", 64, 7, "abc def");
	Q("token=a+b+c", "token", 64, 5, "a b c");
	Q("token=%2Fx%2f%41", "token", 64, 4, "/x/A");
	Q("token=%e2%82%ac", "token", 64, 3, "\xe2\x82\xac");
	Q("token=%2B", "token", 64, 1, "+");
	Q("token=a=b", "token", 64, 3, "a=b");
	Q("token=", "token", 64, 0, "");
	Q("token", "token", 64, 0, "");
	Q("x=1&token&y=2", "token", 64, 0, "");
	Q("token=1&token=2", "token", 64, 1, "1"); /* first wins */
	Q("tok=1&token=2&tokens=3", "token", 64, 1, "2");
	Q("&&token=v&", "token", 64, 1, "v");
	Q("xtoken=1", "token", 64, -1, NULL);
	Q("a=1&b=2", "token", 64, -1, NULL);
	Q("", "token", 64, -1, NULL);
	Q("token=v", "", 64, -1, NULL);
	Q("=v", "", 64, -1, NULL);
	Q("TOKEN=v", "token", 64, -1, NULL); /* names are case-sensitive */
	/* malformed */
	Q("token=%zz", "token", 64, -2, NULL);
	Q("token=%2", "token", 64, -2, NULL);
	Q("token=%", "token", 64, -2, NULL);
	Q("token=ab%", "token", 64, -2, NULL);
	Q("token=%g1", "token", 64, -2, NULL);
	Q("token=%00", "token", 64, -2, NULL);
	Q("token=ok&x=%zz", "token", 64, 2, "ok"); /* others don't matter */
	/* too long: the value plus NUL must fit */
	Q("token=abcd", "token", 5, 4, "abcd");
	Q("token=abcd", "token", 4, -2, NULL);
	Q("token=%41%42%43%44", "token", 5, 4, "ABCD");
	Q("token=%41%42%43%44", "token", 4, -2, NULL);
	Q("token=", "token", 1, 0, "");
	Q("token=a", "token", 1, -2, NULL);
	Q("token=", "token", 0, -2, NULL);
	Q("x=1", "token", 0, -1, NULL);

	/* qlen bounds the search: bytes past it are never looked at */
	{
		char out[16];
		const char q[] = "a=1&token=secret";
		CHECK(ws_query_get(q, 3, "token", out, sizeof(out)) == -1);
		CHECK(ws_query_get(q, 3, "a", out, sizeof(out)) == 1);
		CHECK(ws_query_get(q, 12, "token", out, sizeof(out)) == 2 &&
		      strcmp(out, "se") == 0);
		CHECK(ws_query_get(q, 14, "token", out, sizeof(out)) == 4 &&
		      strcmp(out, "secr") == 0);
		CHECK(ws_query_get(NULL, 0, "token", out, sizeof(out)) == -1);
	}
}

static void test_str_ieq(void)
{
	struct ws_str s = {"WebSocket", 9};
	struct ws_str e = {NULL, 0};

	CHECK(ws_str_ieq(s, "websocket"));
	CHECK(ws_str_ieq(s, "WEBSOCKET"));
	CHECK(!ws_str_ieq(s, "websockets"));
	CHECK(!ws_str_ieq(s, "websocke"));
	CHECK(ws_str_ieq(e, ""));
	CHECK(!ws_str_ieq(e, "a"));
	s.n = 3;
	CHECK(ws_str_ieq(s, "web"));
	/* only ASCII letters fold */
	s.p = "[";
	s.n = 1;
	CHECK(!ws_str_ieq(s, "{"));
}

/* The path is a parameter: ws_request_check is the contract's "/ws". */
static void test_path_policy(void)
{
	char buf[4096];
	struct ws_request req;
	size_t n = build(buf, sizeof(buf), "/stream?x=1", STD_HEADERS);

	CHECK(ws_request_parse(buf, n, &req) == (int)n);
	CHECK(ws_request_check(&req) == 404);
	CHECK(ws_request_check_path(&req, "/stream") == 0);
	CHECK(ws_request_check_path(&req, "/strea") == 404);
	CHECK(ws_request_check_path(&req, "/streams") == 404);
	n = build(buf, sizeof(buf), "/ws", STD_HEADERS);
	CHECK(ws_request_parse(buf, n, &req) == (int)n);
	CHECK(ws_request_check(&req) == 0 &&
	      ws_request_check_path(&req, "/ws") == 0);
}

int main(void)
{
	test_browser();
	test_bare_lf();
	test_limits();
	test_check();
	test_malformed();
	test_mutations();
	test_accept_key();
	test_query();
	test_str_ieq();
	test_path_policy();
	if (failures) {
		fprintf(stderr, "test_handshake: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_handshake: ok\n");
	return 0;
}
