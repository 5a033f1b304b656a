/*
 * Unit tests for the frame parser and writers. Every input stream is fed
 * whole, byte by byte and in many seeded random chunkings; all runs must
 * produce exactly the expected events.
 */
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/ws.h"

#define BIG SIZE_MAX

/* ---- byte stream builder ---- */

struct out {
	uint8_t *d;
	size_t n, cap;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->n + n > o->cap) {
		o->cap = (o->n + n) * 2 + 64;
		o->d = realloc(o->d, o->cap);
		if (!o->d)
			abort();
	}
	if (n)
		memcpy(o->d + o->n, p, n);
	o->n += n;
}

static void out_free(struct out *o)
{
	free(o->d);
	memset(o, 0, sizeof(*o));
}

enum { ENC_AUTO = 0, ENC_16 = 16, ENC_64 = 64 };

static unsigned key_counter;

/* A client frame written by hand (independent of ws_frame_header): raw
 * first byte b0, optional mask with a varying key, forced length form. */
static void frame_enc(struct out *o, uint8_t b0, const void *payload, size_t n,
		      int masked, int enc)
{
	uint8_t h[14], key[4];
	size_t hl = 2;
	uint8_t mbit = masked ? 0x80 : 0;

	h[0] = b0;
	if (enc == ENC_AUTO && n < 126) {
		h[1] = mbit | (uint8_t)n;
	} else if (enc == ENC_16 || (enc == ENC_AUTO && n <= 0xFFFF)) {
		h[1] = mbit | 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = mbit | 127;
		for (int j = 0; j < 8; j++)
			h[2 + j] = (uint8_t)((uint64_t)n >> (56 - 8 * j));
		hl = 10;
	}
	key_counter++;
	key[0] = (uint8_t)(0x37 + key_counter * 13);
	key[1] = (uint8_t)(0xFA ^ key_counter);
	key[2] = (uint8_t)(key_counter * 7);
	key[3] = (uint8_t)(0x3D + key_counter);
	if (masked) {
		memcpy(h + hl, key, 4);
		hl += 4;
	}
	put(o, h, hl);
	if (masked) {
		const uint8_t *s = payload;
		size_t base = o->n;
		put(o, payload, n);
		for (size_t i = 0; i < n; i++)
			o->d[base + i] = s[i] ^ key[i & 3];
	} else {
		put(o, payload, n);
	}
}

static void frame(struct out *o, uint8_t b0, const void *payload, size_t n)
{
	frame_enc(o, b0, payload, n, 1, ENC_AUTO);
}

static void frames(struct out *o, uint8_t b0, const char *s)
{
	frame(o, b0, s, strlen(s));
}

#define FIN	  0x80
#define OP_TEXT	  (FIN | WS_OP_TEXT)
#define OP_CLOSE  (FIN | WS_OP_CLOSE)
#define OP_PING	  (FIN | WS_OP_PING)
#define OP_PONG	  (FIN | WS_OP_PONG)
#define OP_BINARY (FIN | WS_OP_BINARY)

/* ---- running the parser ---- */

struct xev {
	enum ws_event_type type;
	unsigned code;
	const void *data;
	size_t len;
	int compressed;
};

struct evlist {
	struct xev *v;
	size_t n;
};

static void ev_push(struct evlist *l, const struct ws_event *ev)
{
	struct xev *x;
	uint8_t *copy = NULL;

	l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
	if (!l->v)
		abort();
	if (ev->len) {
		copy = malloc(ev->len);
		if (!copy)
			abort();
		memcpy(copy, ev->data, ev->len);
	}
	x = &l->v[l->n++];
	x->type = ev->type;
	x->code = ev->close_code;
	x->data = copy;
	x->len = ev->len;
	x->compressed = ev->compressed;
}

static void ev_free(struct evlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free((void *)l->v[i].data);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static uint64_t rng;
/* parser policy for the runs: permessage-deflate negotiated */
static int policy_rsv1;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

enum { MODE_WHOLE = -2, MODE_BYTES = -1 }; /* else: a random seed */

static size_t chunk_size(int mode)
{
	uint64_t r;

	if (mode == MODE_WHOLE)
		return SIZE_MAX;
	if (mode == MODE_BYTES)
		return 1;
	r = rnd();
	switch (r % 4) {
	case 0:
		return 1 + (r >> 8) % 3;
	case 1:
		return 1 + (r >> 8) % 16;
	case 2:
		return 1 + (r >> 8) % 200;
	default:
		return 1 + (r >> 8) % 5000;
	}
}

/* Feed in under the given chunking; collect events (stops after ERROR). */
static void run(const uint8_t *in, size_t n, size_t max, int rm, int mode,
		struct evlist *out, int line)
{
	struct ws_parser p;
	size_t off = 0;
	int dead = 0;

	rng = 0x2545F4914F6CDD1Dull * (uint64_t)(mode + 3);
	ws_parser_init(&p, max, rm);
	p.rsv1_ok = policy_rsv1 ? 1 : 0;
	while (off < n && !dead) {
		size_t c = chunk_size(mode), end;
		end = c > n - off ? n : off + c;
		while (!dead) {
			struct ws_event ev;
			size_t used =
				ws_parser_feed(&p, in + off, end - off, &ev);
			CHECK_AT(line, used <= end - off);
			off += used;
			if (ev.type == WS_EV_NONE) {
				CHECK_AT(line, off == end);
				CHECK_AT(line, ev.data == NULL && ev.len == 0);
				/* between messages: nothing, or the buffer of
				 * a control frame still arriving */
				if (!p.in_message)
					CHECK_AT(line,
						 ws_parser_heap(&p) == 0 ||
							 ws_parser_heap(&p) ==
								 WS_CTL_MAX);
				break;
			}
			CHECK_AT(line, ev.data != NULL || ev.len == 0);
			CHECK_AT(line, !ev.compressed || policy_rsv1);
			if (ev.type == WS_EV_TEXT && ev.compressed) {
				CHECK_AT(line,
					 ev.len <= WS_COMPRESSED_MAX(max));
			} else if (ev.type == WS_EV_TEXT) {
				CHECK_AT(line, ev.len <= max);
				CHECK_AT(line, ws_utf8_valid(ev.data, ev.len));
			} else {
				CHECK_AT(line, ev.compressed == 0);
			}
			ev_push(out, &ev);
			if (ev.type == WS_EV_ERROR) {
				struct ws_event again;
				CHECK_AT(line, ws_parser_heap(&p) == 0);
				CHECK_AT(line, ws_parser_feed(&p, in, n,
							      &again) == 0);
				CHECK_AT(line, again.type == WS_EV_ERROR &&
						       again.close_code ==
							       ev.close_code);
				dead = 1;
			}
			if (off == end)
				break;
		}
	}
	ws_parser_finish(&p);
	CHECK_AT(line, ws_parser_heap(&p) == 0);
}

static int same_events(const struct evlist *got, const struct xev *want,
		       size_t nwant)
{
	if (got->n != nwant)
		return 0;
	for (size_t i = 0; i < nwant; i++) {
		const struct xev *g = &got->v[i], *w = &want[i];
		if (g->type != w->type || g->len != w->len ||
		    g->compressed != w->compressed)
			return 0;
		if ((w->type == WS_EV_CLOSE || w->type == WS_EV_ERROR) &&
		    g->code != w->code)
			return 0;
		if (w->len && memcmp(g->data, w->data, w->len) != 0)
			return 0;
	}
	return 1;
}

static void dump(const char *what, const struct evlist *got)
{
	fprintf(stderr, "    %s:", what);
	for (size_t i = 0; i < got->n; i++)
		fprintf(stderr, " {type %d code %u len %zu z %d}",
			got->v[i].type, got->v[i].code, got->v[i].len,
			got->v[i].compressed);
	fprintf(stderr, "\n");
}

static int n_streams;

/* Run all chunkings of in against the expected events. */
static void expect_events(const struct out *in, size_t max, int rm,
			  const struct xev *want, size_t nwant, int line)
{
	n_streams++;
	for (int mode = MODE_WHOLE; mode < 40; mode++) {
		struct evlist got = {0};
		run(in->d, in->n, max, rm, mode, &got, line);
		if (!same_events(&got, want, nwant)) {
			fprintf(stderr, "%s:%d: unexpected events (mode %d)\n",
				__FILE__, line, mode);
			dump("got", &got);
			failures++;
			ev_free(&got);
			break;
		}
		ev_free(&got);
	}
}

#define EXPECT(in, max, rm, ...)                                               \
	expect_events(in, max, rm, (const struct xev[]){__VA_ARGS__},          \
		      sizeof((const struct xev[]){__VA_ARGS__}) /              \
			      sizeof(struct xev),                              \
		      __LINE__)
#define EXPECT_NONE(in, max, rm) expect_events(in, max, rm, NULL, 0, __LINE__)
#define TEXT(s)                                                                \
	{                                                                      \
		WS_EV_TEXT, 0, s, sizeof(s) - 1, 0                             \
	}
#define TEXTN(s, n)                                                            \
	{                                                                      \
		WS_EV_TEXT, 0, s, n, 0                                         \
	}
/* a compressed message: its payload as sent, not inflated */
#define CTEXT(s)                                                               \
	{                                                                      \
		WS_EV_TEXT, 0, s, sizeof(s) - 1, 1                             \
	}
#define CTEXTN(s, n)                                                           \
	{                                                                      \
		WS_EV_TEXT, 0, s, n, 1                                         \
	}
#define PING(s)                                                                \
	{                                                                      \
		WS_EV_PING, 0, s, sizeof(s) - 1, 0                             \
	}
#define PONG(s)                                                                \
	{                                                                      \
		WS_EV_PONG, 0, s, sizeof(s) - 1, 0                             \
	}
#define CLOSE(code, s)                                                         \
	{                                                                      \
		WS_EV_CLOSE, code, s, sizeof(s) - 1, 0                         \
	}
#define ERROR(code)                                                            \
	{                                                                      \
		WS_EV_ERROR, code, NULL, 0, 0                                  \
	}

/* ---- tests ---- */

static void test_rfc_sample(void)
{
	/* RFC 6455 §5.7: a single-frame masked text message "Hello" */
	static const uint8_t b[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
				    0x7f, 0x9f, 0x4d, 0x51, 0x58};
	struct out o = {0};

	put(&o, b, sizeof(b));
	EXPECT(&o, BIG, 1, TEXT("Hello"));
	out_free(&o);
}

static void test_single_text(void)
{
	struct out o = {0};

	frames(&o, OP_TEXT, "Hello, world");
	EXPECT(&o, BIG, 1, TEXT("Hello, world"));
	out_free(&o);

	frames(&o, OP_TEXT, "");
	EXPECT(&o, BIG, 1, TEXT(""));
	out_free(&o);

	frames(&o, OP_TEXT, "a");
	frames(&o, OP_TEXT, "");
	frames(&o, OP_TEXT, "\xe2\x82\xac uro");
	frames(&o, OP_PING, "p");
	frames(&o, OP_TEXT, "last");
	EXPECT(&o, BIG, 1, TEXT("a"), TEXT(""), TEXT("\xe2\x82\xac uro"),
	       PING("p"), TEXT("last"));
	out_free(&o);
}

/* Payload of n bytes: ASCII with a few multibyte characters. */
static uint8_t *make_text(size_t n)
{
	uint8_t *s = malloc(n ? n : 1);

	if (!s)
		abort();
	for (size_t i = 0; i < n; i++)
		s[i] = (uint8_t)('a' + i % 26);
	for (size_t i = 100; i + 3 <= n; i += 1000) {
		s[i] = 0xe2;
		s[i + 1] = 0x82;
		s[i + 2] = 0xac;
	}
	return s;
}

static void test_lengths(void)
{
	static const size_t sizes[] = {0,     1,     125,   126,    127,   1000,
				       65535, 65536, 65537, 100000, 300000};

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		uint8_t *s = make_text(n);
		struct out o = {0};
		frame(&o, OP_TEXT, s, n);
		EXPECT(&o, BIG, 1, TEXTN(s, n));
		/* exactly at the limit is fine, one below is not */
		EXPECT(&o, n, 1, TEXTN(s, n));
		if (n)
			EXPECT(&o, n - 1, 1, ERROR(WS_CLOSE_TOO_BIG));
		out_free(&o);
		free(s);
	}
}

static void test_nonminimal_length(void)
{
	/* the length need not use the shortest form: accepted */
	struct out o = {0};

	frame_enc(&o, OP_TEXT, "abc", 3, 1, ENC_16);
	frame_enc(&o, OP_TEXT, "defg", 4, 1, ENC_64);
	EXPECT(&o, BIG, 1, TEXT("abc"), TEXT("defg"));
	/* ... except on control frames: 7-bit length field > 125 */
	frame_enc(&o, OP_PING, "", 0, 1, ENC_16);
	EXPECT(&o, BIG, 1, TEXT("abc"), TEXT("defg"), ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
}

static void test_fragmented(void)
{
	struct out o = {0};

	frames(&o, WS_OP_TEXT, "Hel");
	frames(&o, OP_PING, "p1");
	frames(&o, WS_OP_CONT, "lo ");
	frames(&o, OP_PONG, "");
	frames(&o, OP_PING, "p2");
	frames(&o, WS_OP_CONT, "");
	frames(&o, FIN | WS_OP_CONT, "world");
	frames(&o, OP_TEXT, "next");
	EXPECT(&o, BIG, 1, PING("p1"), PONG(""), PING("p2"),
	       TEXT("Hello world"), TEXT("next"));
	out_free(&o);

	/* empty first fragment, empty final fragment */
	frames(&o, WS_OP_TEXT, "");
	frames(&o, WS_OP_CONT, "x");
	frames(&o, FIN | WS_OP_CONT, "");
	EXPECT(&o, BIG, 1, TEXT("x"));
	out_free(&o);

	/* a close frame in the middle of a fragmented message */
	frames(&o, WS_OP_TEXT, "abc");
	frame(&o, OP_CLOSE, "\x03\xe8", 2);
	EXPECT(&o, BIG, 1, CLOSE(1000, ""));
	out_free(&o);

	/* many small fragments */
	{
		char want[301];
		frames(&o, WS_OP_TEXT, "");
		for (int i = 0; i < 300; i++) {
			char c = (char)('A' + i % 26);
			want[i] = c;
			frame(&o, WS_OP_CONT, &c, 1);
			if (i % 50 == 0)
				frames(&o, OP_PONG, "x");
		}
		want[300] = 0;
		frames(&o, FIN | WS_OP_CONT, "");
		EXPECT(&o, BIG, 1, PONG("x"), PONG("x"), PONG("x"), PONG("x"),
		       PONG("x"), PONG("x"), TEXTN(want, 300));
		out_free(&o);
	}
}

static void test_utf8_fragments(void)
{
	struct out o = {0};

	/* euro sign split over three fragments */
	frames(&o, WS_OP_TEXT, "a\xe2");
	frames(&o, WS_OP_CONT, "\x82");
	frames(&o, FIN | WS_OP_CONT,
	       "\xac"
	       "b");
	EXPECT(&o, BIG, 1,
	       TEXT("a\xe2\x82\xac"
		    "b"));
	out_free(&o);

	/* 4-byte character split with a ping in between */
	frames(&o, WS_OP_TEXT, "\xf0\x9f");
	frames(&o, OP_PING, "");
	frames(&o, FIN | WS_OP_CONT, "\x98\x80");
	EXPECT(&o, BIG, 1, PING(""), TEXT("\xf0\x9f\x98\x80"));
	out_free(&o);

	/* invalid continuation in the 2nd fragment: fails there, without
	 * waiting for the final fragment */
	frames(&o, WS_OP_TEXT, "a\xe2");
	frames(&o, WS_OP_CONT, "\x28");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);

	/* invalid byte fails before the rest of its own frame arrives */
	{
		static const uint8_t partial[] = {0x81, 0x0A, 'a', 0xFF, 'b'};
		put(&o, partial, sizeof(partial));
		EXPECT(&o, BIG, 0, ERROR(WS_CLOSE_BAD_DATA));
		out_free(&o);
	}
	/* surrogate split across fragments */
	frames(&o, WS_OP_TEXT, "\xed");
	frames(&o, WS_OP_CONT, "\xa0");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);

	/* message ending inside a multibyte sequence */
	frames(&o, OP_TEXT, "a\xe2\x82");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);
	frames(&o, WS_OP_TEXT, "\xe2");
	frames(&o, FIN | WS_OP_CONT, "\x82");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);
	frames(&o, WS_OP_TEXT, "\xe2\x82");
	frames(&o, FIN | WS_OP_CONT, "");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);

	/* invalid in a single frame */
	frames(&o, OP_TEXT, "\xc0\xaf");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);
}

static void test_mask_required(void)
{
	struct out o = {0};

	frame_enc(&o, OP_TEXT, "hi", 2, 0, ENC_AUTO);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	/* client side (require_mask = 0) accepts it */
	EXPECT(&o, BIG, 0, TEXT("hi"));
	out_free(&o);

	frame_enc(&o, OP_PING, "hi", 2, 0, ENC_AUTO);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* masked and unmasked mixed, require_mask = 0 */
	frame_enc(&o, OP_TEXT, "m", 1, 1, ENC_AUTO);
	frame_enc(&o, OP_TEXT, "u", 1, 0, ENC_AUTO);
	EXPECT(&o, BIG, 0, TEXT("m"), TEXT("u"));
	out_free(&o);
}

static void test_bad_headers(void)
{
	struct out o = {0};

	/* RSV1..3 on data and control frames */
	for (int bit = 0x10; bit <= 0x40; bit <<= 1) {
		frames(&o, (uint8_t)(OP_TEXT | bit), "x");
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		frames(&o, (uint8_t)(OP_PING | bit), "x");
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		/* RSV on a continuation after a good first fragment */
		frames(&o, WS_OP_TEXT, "a");
		frames(&o, (uint8_t)(FIN | WS_OP_CONT | bit), "b");
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
	}

	/* reserved opcodes, with and without FIN */
	for (int op = 3; op <= 0xF; op++) {
		if (op >= WS_OP_CLOSE && op <= WS_OP_PONG)
			continue;
		frames(&o, (uint8_t)(FIN | op), "x");
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		frames(&o, (uint8_t)op, "");
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
	}

	/* control frames over 125 bytes, even before their payload */
	{
		uint8_t big[126];
		memset(big, 'p', sizeof(big));
		frame(&o, OP_PING, big, 126);
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		frame(&o, OP_CLOSE, big, 126);
		o.n = 2; /* header start only */
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		/* the 16-bit form is refused even for a value <= 125 */
		frame_enc(&o, OP_PONG, big, 125, 1, ENC_16);
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		frame_enc(&o, OP_PONG, big, 125, 1, ENC_AUTO);
		EXPECT(&o, BIG, 1, {WS_EV_PONG, 0, big, 125, 0});
		out_free(&o);
	}

	/* fragmented control frames */
	frames(&o, WS_OP_PING, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_CLOSE, "");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_TEXT, "a");
	frames(&o, WS_OP_PONG, "");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* continuation without a start */
	frames(&o, FIN | WS_OP_CONT, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_CONT, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, OP_TEXT, "done");
	frames(&o, FIN | WS_OP_CONT, "x");
	EXPECT(&o, BIG, 1, TEXT("done"), ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* a new data frame inside a fragmented message */
	frames(&o, WS_OP_TEXT, "a");
	frames(&o, OP_TEXT, "b");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_TEXT, "a");
	frames(&o, OP_PING, "");
	frames(&o, WS_OP_TEXT, "b");
	EXPECT(&o, BIG, 1, PING(""), ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_TEXT, "a");
	frames(&o, OP_BINARY, "b");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* binary messages are refused on their header */
	frames(&o, OP_BINARY, "\x01\x02");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_UNSUPPORTED));
	o.n = 1;
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_UNSUPPORTED));
	out_free(&o);
	frames(&o, WS_OP_BINARY, "");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_UNSUPPORTED));
	out_free(&o);
	frames(&o, OP_TEXT, "ok");
	frames(&o, OP_BINARY, "");
	EXPECT(&o, BIG, 1, TEXT("ok"), ERROR(WS_CLOSE_UNSUPPORTED));
	out_free(&o);
}

static void test_too_big(void)
{
	struct out o = {0};
	uint8_t h[14];

	/* 1009 from the header alone, before any payload */
	h[0] = OP_TEXT;
	h[1] = 0x80 | 101;
	memset(h + 2, 0x11, 4);
	put(&o, h, 6);
	EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
	o.n = 2; /* even before the mask key */
	EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
	EXPECT_NONE(&o, 101, 1);
	out_free(&o);

	/* 16-bit and 64-bit lengths */
	h[0] = OP_TEXT;
	h[1] = 0x80 | 126;
	h[2] = 0xFF;
	h[3] = 0xFF;
	put(&o, h, 4);
	EXPECT(&o, 65534, 1, ERROR(WS_CLOSE_TOO_BIG));
	EXPECT_NONE(&o, 65535, 1);
	out_free(&o);
	h[1] = 0x80 | 127;
	memset(h + 2, 0, 8);
	h[4] = 1; /* 2^40 */
	put(&o, h, 10);
	EXPECT(&o, 16u << 20, 1, ERROR(WS_CLOSE_TOO_BIG));
	out_free(&o);

	/* 64-bit length with the top bit set: 1002 whatever the limit */
	h[1] = 0x80 | 127;
	memset(h + 2, 0, 8);
	h[2] = 0x80;
	put(&o, h, 10);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	EXPECT(&o, 10, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	h[2] = 0xFF;
	memset(h + 3, 0xFF, 7);
	put(&o, h, 10);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* cumulative: fragments together over the limit */
	{
		uint8_t s[60];
		memset(s, 'z', sizeof(s));
		frame(&o, WS_OP_TEXT, s, 60);
		frame(&o, WS_OP_CONT, s, 40);
		frame(&o, FIN | WS_OP_CONT, s, 1);
		EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
		EXPECT(&o, 99, 1, ERROR(WS_CLOSE_TOO_BIG));
		EXPECT(&o, 59, 1, ERROR(WS_CLOSE_TOO_BIG));
		out_free(&o);
	}
	/* control frames are not counted against max_message */
	frames(&o, OP_PING, "0123456789");
	frames(&o, OP_TEXT, "");
	EXPECT(&o, 0, 1, PING("0123456789"), TEXT(""));
	out_free(&o);
	frames(&o, OP_TEXT, "x");
	EXPECT(&o, 0, 1, ERROR(WS_CLOSE_TOO_BIG));
	out_free(&o);
}

static void test_cumulative_exact(void)
{
	struct out o = {0};
	uint8_t s[101];

	memset(s, 'z', sizeof(s));
	frame(&o, WS_OP_TEXT, s, 60);
	frame(&o, WS_OP_CONT, s, 40);
	frame(&o, FIN | WS_OP_CONT, s, 1);
	EXPECT(&o, 101, 1, TEXTN(s, 101));
	EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
	out_free(&o);
}

static void test_close(void)
{
	static const unsigned bad[] = {0,    1,	   999,	 1004, 1005,
				       1006, 1015, 1016, 1100, 2000,
				       2999, 5000, 5001, 65535};
	static const unsigned good[] = {1000, 1001, 1002, 1003, 1007, 1008,
					1009, 1010, 1011, 1012, 1013, 1014,
					3000, 3999, 4000, 4999};
	struct out o = {0};
	uint8_t b[64];

	frame(&o, OP_CLOSE, "", 0);
	EXPECT(&o, BIG, 1, CLOSE(WS_CLOSE_NO_STATUS, ""));
	out_free(&o);

	frame(&o, OP_CLOSE, "\x03", 1);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b[0] = (uint8_t)(bad[i] >> 8);
		b[1] = (uint8_t)bad[i];
		frame(&o, OP_CLOSE, b, 2);
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
	}
	for (unsigned c = 1016; c < 3000; c += 7) {
		b[0] = (uint8_t)(c >> 8);
		b[1] = (uint8_t)c;
		frame(&o, OP_CLOSE, b, 2);
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		b[0] = (uint8_t)(good[i] >> 8);
		b[1] = (uint8_t)good[i];
		memcpy(b + 2, "bye \xe2\x98\x83", 7);
		frame(&o, OP_CLOSE, b, 9);
		EXPECT(&o, BIG, 1, CLOSE(good[i], "bye \xe2\x98\x83"));
		out_free(&o);
	}

	/* code only, maximal reason */
	frame(&o, OP_CLOSE, "\x0f\xa0", 2);
	EXPECT(&o, BIG, 1, CLOSE(4000, ""));
	out_free(&o);
	b[0] = 0x03;
	b[1] = 0xe8;
	{
		uint8_t c[125];
		memcpy(c, b, 2);
		memset(c + 2, 'r', 123);
		frame(&o, OP_CLOSE, c, 125);
		EXPECT(&o, BIG, 1, {WS_EV_CLOSE, 1000, c + 2, 123, 0});
		out_free(&o);
	}

	/* invalid UTF-8 reason: 1007 */
	frame(&o, OP_CLOSE, "\x03\xe8\xff", 3);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);
	frame(&o, OP_CLOSE,
	      "\x03\xe8"
	      "ab\xe2\x82",
	      6);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);
	/* bad code wins over a bad reason */
	frame(&o, OP_CLOSE, "\x03\xedx\xff", 4);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
}

static void test_ping_pong(void)
{
	struct out o = {0};
	uint8_t bin[125];

	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 37 + 0x80); /* not UTF-8: fine */
	frame(&o, OP_PING, bin, 125);
	frame(&o, OP_PONG, bin, 1);
	frame(&o, OP_PING, "", 0);
	frame(&o, OP_PONG, bin + 3, 122);
	EXPECT(&o, BIG, 1, {WS_EV_PING, 0, bin, 125, 0},
	       {WS_EV_PONG, 0, bin, 1, 0}, PING(""),
	       {WS_EV_PONG, 0, bin + 3, 122, 0});
	out_free(&o);
}

static void test_errors_sticky_and_heap(void)
{
	struct out o = {0};
	struct ws_parser p;
	struct ws_event ev;
	uint8_t *big = make_text(10000);
	size_t used;

	/* heap: nothing until a text frame, nothing after delivery */
	ws_parser_init(&p, BIG, 1);
	CHECK(ws_parser_heap(&p) == 0);
	frames(&o, OP_PING, "x");
	used = ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(used == o.n && ev.type == WS_EV_PING);
	/* the ping's payload stays valid until the next call, then goes */
	CHECK(ws_parser_heap(&p) == WS_CTL_MAX);
	used = ws_parser_feed(&p, o.d, 0, &ev);
	CHECK(used == 0 && ev.type == WS_EV_NONE);
	CHECK(ws_parser_heap(&p) == 0);
	out_free(&o);

	frames(&o, WS_OP_TEXT, "abc");
	used = ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(used == o.n && ev.type == WS_EV_NONE);
	CHECK(ws_parser_heap(&p) > 0); /* partial message held */
	out_free(&o);

	frame(&o, FIN | WS_OP_CONT, big, 10000);
	frames(&o, OP_TEXT, "tail");
	used = ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(ev.type == WS_EV_TEXT && ev.len == 10003);
	CHECK(memcmp(ev.data, "abc", 3) == 0 &&
	      memcmp(ev.data + 3, big, 10000) == 0);
	CHECK(ws_parser_heap(&p) >= 10003);
	{
		size_t rest = o.n - used;
		used = ws_parser_feed(&p, o.d + used, rest, &ev);
		CHECK(used == rest && ev.type == WS_EV_TEXT && ev.len == 4);
		/* the big buffer was dropped before parsing "tail" */
		CHECK(ws_parser_heap(&p) <= 4096);
		used = ws_parser_feed(&p, o.d, 0, &ev);
		CHECK(used == 0 && ev.type == WS_EV_NONE);
		CHECK(ws_parser_heap(&p) == 0);
	}
	out_free(&o);

	/* a single large frame allocates exactly its size */
	frame(&o, OP_TEXT, big, 10000);
	used = ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(ev.type == WS_EV_TEXT && ev.len == 10000);
	CHECK(ws_parser_heap(&p) == 10000);
	out_free(&o);

	/* errors are sticky and free the buffer */
	frames(&o, WS_OP_TEXT, "abc");
	frames(&o, OP_BINARY, "");
	used = ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(ev.type == WS_EV_ERROR && ev.close_code == 1002);
	CHECK(used <= o.n);
	CHECK(ws_parser_heap(&p) == 0);
	for (int k = 0; k < 3; k++) {
		used = ws_parser_feed(&p, o.d, o.n, &ev);
		CHECK(used == 0 && ev.type == WS_EV_ERROR &&
		      ev.close_code == 1002);
	}
	ws_parser_finish(&p);
	/* re-init after finish */
	ws_parser_init(&p, 10, 1);
	used = ws_parser_feed(&p, o.d, 0, &ev);
	CHECK(used == 0 && ev.type == WS_EV_NONE);
	ws_parser_finish(&p);
	out_free(&o);

	/* a frame announced big but trickling in grows geometrically */
	ws_parser_init(&p, BIG, 1);
	frame(&o, OP_TEXT, big, 10000);
	used = ws_parser_feed(&p, o.d, 14 + 10, &ev);
	CHECK(used == 24 && ev.type == WS_EV_NONE);
	CHECK(ws_parser_heap(&p) > 0 && ws_parser_heap(&p) < 1024);
	used = ws_parser_feed(&p, o.d + 24, o.n - 24, &ev);
	CHECK(ev.type == WS_EV_TEXT && ev.len == 10000);
	CHECK(memcmp(ev.data, big, 10000) == 0);
	ws_parser_finish(&p);
	out_free(&o);
	free(big);
}

static void test_frame_header(void)
{
	uint8_t h[14];
	static const struct {
		uint64_t len;
		size_t hl;
		uint8_t b[10];
	} v[] = {
		{0, 2, {0x81, 0x00}},
		{1, 2, {0x81, 0x01}},
		{125, 2, {0x81, 0x7D}},
		{126, 4, {0x81, 126, 0x00, 0x7E}},
		{65535, 4, {0x81, 126, 0xFF, 0xFF}},
		{65536, 10, {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{0x0102030405060708ull,
		 10,
		 {0x81, 127, 1, 2, 3, 4, 5, 6, 7, 8}},
	};
	static const uint8_t key[4] = {0xA1, 0xB2, 0xC3, 0xD4};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(h, 0xEE, sizeof(h));
		CHECK(ws_frame_header(h, WS_OP_TEXT, v[i].len) == v[i].hl);
		CHECK(memcmp(h, v[i].b, v[i].hl) == 0);
		CHECK(h[v[i].hl] == 0xEE); /* nothing written past it */

		memset(h, 0xEE, sizeof(h));
		CHECK(ws_frame_header_masked(h, WS_OP_TEXT, v[i].len, key) ==
		      v[i].hl + 4);
		CHECK(h[0] == 0x81 && h[1] == (v[i].b[1] | 0x80));
		CHECK(memcmp(h + 2, v[i].b + 2, v[i].hl - 2) == 0);
		CHECK(memcmp(h + v[i].hl, key, 4) == 0);
	}
	CHECK(ws_frame_header(h, WS_OP_CLOSE, 2) == 2 && h[0] == 0x88 &&
	      h[1] == 2);
	CHECK(ws_frame_header(h, WS_OP_PING, 0) == 2 && h[0] == 0x89);
	CHECK(ws_frame_header(h, WS_OP_PONG, 5) == 2 && h[0] == 0x8A);
	CHECK(ws_frame_header(h, WS_OP_BINARY, 5) == 2 && h[0] == 0x82);
}

static void test_mask_roundtrip(void)
{
	uint8_t data[200], ref[200], orig[200];
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

	for (size_t i = 0; i < sizeof(orig); i++)
		orig[i] = (uint8_t)(i * 131 + 7);
	for (size_t len = 0; len <= sizeof(data); len += (len < 40 ? 1 : 13))
		for (size_t off = 0; off < 9; off++) {
			memcpy(data, orig, len);
			for (size_t i = 0; i < len; i++)
				ref[i] = orig[i] ^ key[(off + i) & 3];
			ws_mask(data, len, key, off);
			CHECK(memcmp(data, ref, len) == 0);
			ws_mask(data, len, key, off);
			CHECK(memcmp(data, orig, len) == 0);
		}
	/* masking in pieces with running offsets == masking at once */
	memcpy(data, orig, sizeof(data));
	memcpy(ref, orig, sizeof(ref));
	ws_mask(ref, sizeof(ref), key, 0);
	ws_mask(data, 3, key, 0);
	ws_mask(data + 3, 50, key, 3);
	ws_mask(data + 53, 147, key, 53);
	CHECK(memcmp(data, ref, sizeof(ref)) == 0);

	/* writer + ws_mask feed the parser */
	{
		struct out o = {0};
		uint8_t h[14];
		uint8_t *s = make_text(70000);
		static const size_t lens[] = {0,     5,	    125,  126,
					      65535, 65536, 70000};
		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
			size_t hl = ws_frame_header_masked(h, WS_OP_TEXT,
							   lens[k], key);
			size_t base;
			put(&o, h, hl);
			base = o.n;
			put(&o, s, lens[k]);
			ws_mask(o.d + base, lens[k], key, 0);
			EXPECT(&o, BIG, 1, TEXTN(s, lens[k]));
			out_free(&o);
		}
		/* unmasked server frame through a client-side parser */
		put(&o, h, ws_frame_header(h, WS_OP_TEXT, 300));
		put(&o, s, 300);
		put(&o, h, ws_frame_header(h, WS_OP_PING, 3));
		put(&o, "abc", 3);
		EXPECT(&o, BIG, 0, TEXTN(s, 300), PING("abc"));
		EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
		out_free(&o);
		free(s);
	}
}

/* permessage-deflate policy (rsv1_ok): RSV1 marks a message compressed on
 * its first frame only; its payload is not UTF-8-checked by the parser. */
static void test_rsv1_policy(void)
{
	struct out o = {0};
	uint8_t h[10];
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

	/* not negotiated (the default): RSV1 is 1002 wherever it appears */
	policy_rsv1 = 0;
	frames(&o, OP_TEXT | RSV1, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	policy_rsv1 = 1;
	/* compressed bytes are not UTF-8: delivered as they came */
	frame(&o, OP_TEXT | RSV1, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
	frames(&o, OP_TEXT, "plain");
	frames(&o, OP_TEXT | RSV1, "");
	EXPECT(&o, BIG, 1, CTEXT("\xf2\x48\xcd\xc9\xc9\x07\x00"), TEXT("plain"),
	       CTEXT(""));
	out_free(&o);

	/* an uncompressed message on a negotiated connection is still
	 * UTF-8-checked, at the first bad byte */
	frames(&o, OP_TEXT | RSV1, "\xff");
	frames(&o, OP_TEXT, "ok");
	frames(&o, OP_TEXT, "\xff");
	EXPECT(&o, BIG, 1, CTEXT("\xff"), TEXT("ok"), ERROR(WS_CLOSE_BAD_DATA));
	out_free(&o);

	/* fragmented: RSV1 on the first frame covers the message; a ping in
	 * between is fine; a truncated UTF-8 sequence is not the parser's
	 * business */
	frames(&o, WS_OP_TEXT | RSV1, "ab\xe2");
	frames(&o, OP_PING, "p");
	frames(&o, WS_OP_CONT, "\xfe");
	frames(&o, FIN | WS_OP_CONT, "c\xe2");
	frames(&o, OP_TEXT, "\xe2\x82\xac");
	EXPECT(&o, BIG, 1, PING("p"),
	       CTEXT("ab\xe2\xfe"
		     "c\xe2"),
	       TEXT("\xe2\x82\xac"));
	out_free(&o);

	/* RSV1 on a continuation: 1002, compressed message or not */
	frames(&o, WS_OP_TEXT | RSV1, "a");
	frames(&o, FIN | WS_OP_CONT | RSV1, "b");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_TEXT, "a");
	frames(&o, WS_OP_CONT | RSV1, "b");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	/* ... and without a message: still the RSV1 error */
	frames(&o, FIN | WS_OP_CONT | RSV1, "b");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* RSV1 on control frames: 1002, also inside a message */
	frames(&o, OP_PING | RSV1, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, OP_PONG | RSV1, "");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frame(&o, OP_CLOSE | RSV1, "\x03\xe8", 2);
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);
	frames(&o, WS_OP_TEXT | RSV1, "a");
	frames(&o, OP_PING | RSV1, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
	out_free(&o);

	/* RSV2 and RSV3 stay reserved */
	{
		static const uint8_t bad[] = {RSV2, RSV3, RSV1 | RSV2,
					      RSV1 | RSV3, RSV1 | RSV2 | RSV3};
		for (size_t i = 0; i < sizeof(bad); i++) {
			frames(&o, (uint8_t)(OP_TEXT | bad[i]), "x");
			EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_PROTOCOL));
			out_free(&o);
		}
	}

	/* a compressed binary message is refused as binary */
	frames(&o, OP_BINARY | RSV1, "x");
	EXPECT(&o, BIG, 1, ERROR(WS_CLOSE_UNSUPPORTED));
	out_free(&o);

	/* the compressed payload may exceed max_message by the deflate
	 * slack, checked from the header; the plain limit is unchanged */
	{
		size_t cmax = WS_COMPRESSED_MAX((size_t)100);
		uint8_t *z = malloc(cmax + 1);
		if (!z)
			abort();
		memset(z, 0x80, cmax + 1);
		CHECK(cmax == 100 + 12 + 64);
		frame(&o, OP_TEXT | RSV1, z, cmax);
		EXPECT(&o, 100, 1, CTEXTN(z, cmax));
		out_free(&o);
		frame(&o, OP_TEXT | RSV1, z, cmax + 1);
		EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
		out_free(&o);
		frame(&o, WS_OP_TEXT | RSV1, z, 100);
		frame(&o, FIN | WS_OP_CONT, z, cmax - 100);
		EXPECT(&o, 100, 1, CTEXTN(z, cmax));
		out_free(&o);
		frame(&o, WS_OP_TEXT | RSV1, z, 100);
		frame(&o, FIN | WS_OP_CONT, z, cmax - 99);
		EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
		out_free(&o);
		memset(z, 'a', cmax);
		frame(&o, OP_TEXT, z, 101);
		EXPECT(&o, 100, 1, ERROR(WS_CLOSE_TOO_BIG));
		out_free(&o);
		free(z);
		CHECK(WS_COMPRESSED_MAX(SIZE_MAX) == SIZE_MAX);
		CHECK(WS_COMPRESSED_MAX(SIZE_MAX / 9 * 8) == SIZE_MAX);
	}

	/* the RSV1 writer: unmasked server frames through a client parser */
	put(&o, h, ws_frame_header_rsv1(h, WS_OP_TEXT, 3));
	CHECK(h[0] == 0xC1 && h[1] == 3);
	put(&o, "\xff\x00\x01", 3);
	put(&o, h, ws_frame_header_rsv1(h, WS_OP_TEXT, 300));
	CHECK(h[0] == 0xC1 && h[1] == 126 && h[2] == 1 && h[3] == 44);
	{
		uint8_t z[300];
		memset(z, 0xC0, sizeof(z));
		put(&o, z, 300);
		EXPECT(&o, BIG, 0, CTEXT("\xff\x00\x01"), CTEXTN(z, 300));
	}
	out_free(&o);
	policy_rsv1 = 0;
#undef RSV1
#undef RSV2
#undef RSV3
}

static void test_empty_feed(void)
{
	struct ws_parser p;
	struct ws_event ev;
	uint8_t b[1] = {0};

	ws_parser_init(&p, 100, 1);
	CHECK(ws_parser_feed(&p, b, 0, &ev) == 0 && ev.type == WS_EV_NONE);
	CHECK(ws_parser_feed(&p, NULL, 0, &ev) == 0 && ev.type == WS_EV_NONE);
	ws_parser_finish(&p);
}

/* binary_ok: a binary message, fragmented and not UTF-8, is delivered as
 * WS_EV_BINARY; without it (the default) its first header is 1003. */
static void test_binary_policy(void)
{
	static const uint8_t bin[] = {0xff, 0x00, 0xc3, 0x28, 0x80};
	struct out o = {0};
	struct ws_parser p;
	struct ws_event ev;
	size_t used;

	frame(&o, WS_OP_BINARY, bin, 2); /* first fragment, no FIN */
	frame(&o, WS_OP_CONT | FIN, bin + 2, sizeof(bin) - 2);
	ws_parser_init(&p, 100, 1);
	p.binary_ok = 1;
	used = ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(ev.type == WS_EV_BINARY && ev.len == sizeof(bin) &&
	      memcmp(ev.data, bin, sizeof(bin)) == 0 && used == o.n);
	ws_parser_finish(&p);

	ws_parser_init(&p, 100, 1);
	ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(ev.type == WS_EV_ERROR && ev.close_code == WS_CLOSE_UNSUPPORTED);
	ws_parser_finish(&p);

	/* A text message stays text, and checked, with binary_ok. */
	out_free(&o);
	frame(&o, OP_TEXT, bin, sizeof(bin));
	ws_parser_init(&p, 100, 1);
	p.binary_ok = 1;
	ws_parser_feed(&p, o.d, o.n, &ev);
	CHECK(ev.type == WS_EV_ERROR && ev.close_code == WS_CLOSE_BAD_DATA);
	ws_parser_finish(&p);
	out_free(&o);
}

int main(void)
{
	test_rfc_sample();
	test_single_text();
	test_lengths();
	test_nonminimal_length();
	test_fragmented();
	test_utf8_fragments();
	test_mask_required();
	test_bad_headers();
	test_too_big();
	test_cumulative_exact();
	test_close();
	test_ping_pong();
	test_errors_sticky_and_heap();
	test_frame_header();
	test_mask_roundtrip();
	test_empty_feed();
	test_rsv1_policy();
	test_binary_policy();
	if (failures) {
		fprintf(stderr, "test_frame: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_frame: ok (%d streams x 42 chunkings)\n", n_streams);
	return 0;
}
