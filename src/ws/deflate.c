/*
 * permessage-deflate (RFC 7692): negotiation, inflate, deflate.
 *
 * Both directions run without context takeover, so one z_stream per
 * direction serves the process: reset per message. Their memory is counted
 * by a wrapping allocator (ws_deflate_heap) so tests can check that a
 * message leaves nothing behind.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "basestation/deflate.h"
#include "basestation/ws.h"

/* ---- negotiation ---- */

static int is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

struct cursor {
	const char *s;
	size_t n, i;
};

static void skip_ows(struct cursor *c)
{
	while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
		c->i++;
}

/* A token at the cursor; its length (0 = none). */
static size_t take_token(struct cursor *c, const char **tok)
{
	size_t start = c->i;

	while (c->i < c->n && is_tchar((unsigned char)c->s[c->i]))
		c->i++;
	*tok = c->s + start;
	return c->i - start;
}

#define VAL_MAX 16 /* longer values are invalid for every known parameter */

/* A quoted-string at the cursor (on its opening quote), unescaped into
 * val; *vlen is set to VAL_MAX + 1 when it does not fit. -1 when not
 * well-formed (RFC 7230 §3.2.6). */
static int take_quoted(struct cursor *c, char val[VAL_MAX], size_t *vlen)
{
	size_t k = 0;

	c->i++; /* opening DQUOTE */
	while (c->i < c->n) {
		unsigned char ch = (unsigned char)c->s[c->i++];
		if (ch == '"') {
			*vlen = k;
			return 0;
		}
		if (ch == '\\') {
			if (c->i == c->n)
				return -1;
			ch = (unsigned char)c->s[c->i++];
			/* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
			if (ch != '\t' && (ch < 0x20 || ch == 0x7f))
				return -1;
		} else if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
			return -1; /* qdtext excludes CTLs */
		}
		if (k < VAL_MAX)
			val[k] = (char)ch;
		k = k < VAL_MAX ? k + 1 : VAL_MAX + 1;
	}
	return -1; /* unterminated */
}

/* server_max_window_bits / client_max_window_bits value: a decimal
 * integer 8..15 without leading zeros (RFC 7692 §7.1.2.1). */
static int parse_bits(const char *v, size_t n)
{
	int x;

	if (n == 1 && v[0] >= '8' && v[0] <= '9')
		return v[0] - '0';
	if (n != 2 || v[0] != '1' || v[1] < '0' || v[1] > '5')
		return -1;
	x = 10 + (v[1] - '0');
	return x;
}

static int ieq(const char *a, size_t n, const char *lit)
{
	size_t k = strlen(lit);

	if (n != k)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = a[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (ch != lit[i])
			return 0;
	}
	return 1;
}

enum {
	P_SNCT = 1, /* server_no_context_takeover */
	P_CNCT = 2, /* client_no_context_takeover */
	P_SMWB = 4, /* server_max_window_bits */
	P_CMWB = 8, /* client_max_window_bits */
};

struct offer {
	unsigned seen;	 /* P_* bits */
	int bad;	 /* a parameter we cannot accept */
	int server_bits; /* 0 = not offered */
};

/* One parameter of a permessage-deflate offer (RFC 7692 §7.1). */
static void offer_param(struct offer *o, const char *name, size_t nlen,
			int has_value, const char *val, size_t vlen)
{
	unsigned bit;
	int bits = -1;

	if (ieq(name, nlen, "server_no_context_takeover"))
		bit = P_SNCT;
	else if (ieq(name, nlen, "client_no_context_takeover"))
		bit = P_CNCT;
	else if (ieq(name, nlen, "server_max_window_bits"))
		bit = P_SMWB;
	else if (ieq(name, nlen, "client_max_window_bits"))
		bit = P_CMWB;
	else
		bit = 0; /* unknown: decline */
	if (bit == 0 || (o->seen & bit)) {
		o->bad = 1;
		return;
	}
	o->seen |= bit;
	if (has_value && vlen <= VAL_MAX)
		bits = parse_bits(val, vlen);
	switch (bit) {
	case P_SNCT:
	case P_CNCT:
		if (has_value)
			o->bad = 1;
		break;
	case P_SMWB:
		/* zlib has no 256-byte window for raw deflate: decline 8 */
		if (bits < 9)
			o->bad = 1;
		o->server_bits = bits;
		break;
	default: /* P_CMWB: a hint; we inflate with 15 bits whatever */
		if (has_value && bits < 0)
			o->bad = 1;
		break;
	}
}

int ws_pmd_negotiate(const char *value, size_t len, struct ws_pmd *pmd,
		     char resp[WS_PMD_RESPONSE_MAX])
{
	struct cursor c = {value, len, 0};
	struct offer chosen = {0};
	int found = 0;

	memset(pmd, 0, sizeof(*pmd));
	resp[0] = '\0';
	for (;;) {
		struct offer o = {0};
		const char *name;
		size_t nlen;
		int is_pmd;

		skip_ows(&c);
		if (c.i == c.n)
			break;
		if (c.s[c.i] == ',') { /* empty list element */
			c.i++;
			continue;
		}
		nlen = take_token(&c, &name);
		if (nlen == 0)
			return WS_PMD_MALFORMED;
		is_pmd = ieq(name, nlen, "permessage-deflate");
		skip_ows(&c);
		while (c.i < c.n && c.s[c.i] == ';') {
			const char *pname, *tok;
			char val[VAL_MAX];
			size_t plen, vlen = 0;
			int has_value = 0;

			c.i++;
			skip_ows(&c);
			plen = take_token(&c, &pname);
			if (plen == 0)
				return WS_PMD_MALFORMED;
			skip_ows(&c);
			if (c.i < c.n && c.s[c.i] == '=') {
				c.i++;
				skip_ows(&c);
				has_value = 1;
				if (c.i < c.n && c.s[c.i] == '"') {
					if (take_quoted(&c, val, &vlen) < 0)
						return WS_PMD_MALFORMED;
				} else {
					vlen = take_token(&c, &tok);
					if (vlen == 0)
						return WS_PMD_MALFORMED;
					memcpy(val, tok,
					       vlen < VAL_MAX ? vlen : VAL_MAX);
					if (vlen > VAL_MAX)
						vlen = VAL_MAX + 1;
				}
				skip_ows(&c);
			}
			if (is_pmd)
				offer_param(&o, pname, plen, has_value, val,
					    vlen);
		}
		if (c.i < c.n && c.s[c.i] != ',')
			return WS_PMD_MALFORMED;
		if (is_pmd && !o.bad && !found) {
			chosen = o;
			found = 1;
		}
	}
	if (!found)
		return WS_PMD_DECLINED;
	pmd->on = 1;
	pmd->window_bits =
		(uint8_t)(chosen.server_bits ? chosen.server_bits : 15);
	if (chosen.server_bits)
		snprintf(resp, WS_PMD_RESPONSE_MAX,
			 "permessage-deflate; server_no_context_takeover; "
			 "client_no_context_takeover; "
			 "server_max_window_bits=%d",
			 chosen.server_bits);
	else
		snprintf(resp, WS_PMD_RESPONSE_MAX,
			 "permessage-deflate; server_no_context_takeover; "
			 "client_no_context_takeover");
	return WS_PMD_ACCEPTED;
}

/* ---- buffers ---- */

void ws_zbuf_trim(struct ws_zbuf *b, size_t keep)
{
	if (b->cap > keep)
		ws_zbuf_free(b);
	b->len = 0;
}

void ws_zbuf_free(struct ws_zbuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* Output buffers grow by doubling from this. */
#define ZBUF_FIRST 1024

/* ---- the shared streams and their allocator ---- */

union zhdr {
	size_t n;
	max_align_t align;
};

static size_t z_heap;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
	size_t n = (size_t)items * size;
	union zhdr *h = malloc(sizeof(*h) + n);

	(void)opaque;
	if (h == NULL)
		return Z_NULL;
	h->n = n;
	z_heap += sizeof(*h) + n;
	return h + 1;
}

static void z_free(voidpf opaque, voidpf p)
{
	union zhdr *h = (union zhdr *)p - 1;

	(void)opaque;
	z_heap -= sizeof(*h) + h->n;
	free(h);
}

static z_stream inf;
static int inf_ready; /* inflateInit2 done */
static int inf_busy;  /* a message is open */
static z_stream def;
static int def_bits; /* window of the initialised deflate stream, 0 = none */

size_t ws_deflate_heap(void)
{
	return z_heap;
}

void ws_deflate_cleanup(void)
{
	if (inf_busy)
		abort();
	if (inf_ready)
		inflateEnd(&inf);
	inf_ready = 0;
	if (def_bits)
		deflateEnd(&def);
	def_bits = 0;
}

/* ---- inflate ---- */

#define HISTORY_MAX 32768u /* the largest LZ77 window */

void ws_inflate_begin(struct ws_inflate *st, struct ws_zbuf *out, size_t limit,
		      int utf8)
{
	if (inf_busy)
		abort(); /* two messages interleaved on the one stream */
	memset(st, 0, sizeof(*st));
	st->out = out;
	st->limit = limit;
	st->check_utf8 = utf8 ? 1 : 0;
	st->utf8 = WS_UTF8_ACCEPT;
	st->streams = 1;
	out->len = 0;
	if (!inf_ready) {
		memset(&inf, 0, sizeof(inf));
		inf.zalloc = z_alloc;
		inf.zfree = z_free;
		if (inflateInit2(&inf, -15) != Z_OK) {
			st->err = WS_CLOSE_INTERNAL;
			return;
		}
		inf_ready = 1;
	} else if (inflateReset(&inf) != Z_OK) {
		st->err = WS_CLOSE_INTERNAL;
		return;
	}
	inf_busy = 1;
}

/* A block with BFINAL set ended the stream but the message goes on
 * (RFC 7692 §7.2.3.4): start a new stream that still sees the message's
 * earlier bytes as history. */
static uint16_t restart(struct ws_inflate *st)
{
	size_t dict = st->out->len < HISTORY_MAX ? st->out->len : HISTORY_MAX;

	if (st->streams >= WS_INFLATE_MAX_STREAMS)
		return WS_CLOSE_BAD_DATA;
	st->streams++;
	if (inflateReset(&inf) != Z_OK)
		return WS_CLOSE_INTERNAL;
	if (dict &&
	    inflateSetDictionary(&inf, st->out->data + st->out->len - dict,
				 (uInt)dict) != Z_OK)
		return WS_CLOSE_INTERNAL;
	st->ended = 0;
	return 0;
}

/* Inflate inf.next_in/avail_in into st->out until the input is used up and
 * no output is pending. tail: the input is our appended 00 00 ff ff, whose
 * rest is ignored once a final block ended the stream. */
static uint16_t run(struct ws_inflate *st, int tail)
{
	struct ws_zbuf *out = st->out;

	for (;;) {
		uint8_t spare, *dst;
		size_t room, made;
		uint16_t code;
		int r;

		if (st->ended) {
			if (inf.avail_in == 0)
				return 0;
			if (tail) {
				inf.avail_in = 0;
				return 0;
			}
			if ((code = restart(st)) != 0)
				return code;
		}
		if (out->len >= st->limit) {
			/* at the limit: one more byte means too big */
			dst = &spare;
			room = 1;
		} else {
			if (out->len == out->cap &&
			    ws_buf_reserve(&out->data, &out->cap, out->len + 1,
					   st->limit, ZBUF_FIRST) < 0)
				return WS_CLOSE_INTERNAL;
			dst = out->data + out->len;
			/* a reused buffer may be larger than this limit */
			room = (out->cap < st->limit ? out->cap : st->limit) -
			       out->len;
			if (room > UINT_MAX)
				room = UINT_MAX;
		}
		inf.next_out = dst;
		inf.avail_out = (uInt)room;
		r = inflate(&inf, Z_NO_FLUSH);
		made = room - inf.avail_out;
		if (made) {
			if (dst == &spare)
				return WS_CLOSE_TOO_BIG;
			if (st->check_utf8) {
				st->utf8 = ws_utf8_feed(st->utf8, dst, made);
				if (st->utf8 == WS_UTF8_REJECT)
					return WS_CLOSE_BAD_DATA;
			}
			out->len += made;
		}
		switch (r) {
		case Z_STREAM_END:
			st->ended = 1;
			break;
		case Z_OK:
			if (inf.avail_in == 0 && inf.avail_out != 0)
				return 0; /* input used up, no output pending */
			break;
		case Z_BUF_ERROR: /* no progress possible: input used up */
			return inf.avail_in == 0 ? 0 : WS_CLOSE_INTERNAL;
		case Z_MEM_ERROR:
			return WS_CLOSE_INTERNAL;
		default: /* Z_DATA_ERROR, Z_NEED_DICT */
			return WS_CLOSE_BAD_DATA;
		}
	}
}

uint16_t ws_inflate_feed(struct ws_inflate *st, const uint8_t *in, size_t len)
{
	while (st->err == 0 && len > 0) {
		size_t n = len > UINT_MAX ? UINT_MAX : len;
		st->fed = 1;
		inf.next_in = (Bytef *)(uintptr_t)in;
		inf.avail_in = (uInt)n;
		st->err = run(st, 0);
		in += n;
		len -= n;
	}
	return st->err;
}

uint16_t ws_inflate_end(struct ws_inflate *st)
{
	static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

	if (st->err == 0 && st->fed && !st->ended) {
		inf.next_in = (Bytef *)(uintptr_t)tail;
		inf.avail_in = sizeof(tail);
		st->err = run(st, 1);
		/* the message must end on a block boundary (data_type bit 7:
		 * inflate stopped where a new block header begins) */
		if (st->err == 0 && !st->ended &&
		    (inf.avail_in != 0 || !(inf.data_type & 128)))
			st->err = WS_CLOSE_BAD_DATA;
	}
	if (st->err == 0 && st->utf8 != WS_UTF8_ACCEPT)
		st->err = WS_CLOSE_BAD_DATA;
	if (st->err)
		st->out->len = 0;
	inf.next_in = NULL;
	inf.next_out = NULL;
	inf_busy = 0;
	return st->err;
}

uint16_t ws_inflate_message(const uint8_t *in, size_t len, size_t limit,
			    int utf8, struct ws_zbuf *out)
{
	struct ws_inflate st;

	ws_inflate_begin(&st, out, limit, utf8);
	ws_inflate_feed(&st, in, len);
	return ws_inflate_end(&st);
}

/* ---- deflate ---- */

/* The shared deflate stream, reset, with a 2^bits window. */
static int def_open(int bits)
{
	if (def_bits == bits)
		return deflateReset(&def) == Z_OK ? 0 : -1;
	if (def_bits)
		deflateEnd(&def);
	def_bits = 0;
	memset(&def, 0, sizeof(def));
	def.zalloc = z_alloc;
	def.zfree = z_free;
	if (deflateInit2(&def, WS_DEFLATE_LEVEL, Z_DEFLATED, -bits, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	def_bits = bits;
	return 0;
}

int ws_deflate_message(const uint8_t *in, size_t len, size_t min,
		       int window_bits, struct ws_zbuf *out)
{
	static const uint8_t marker[4] = {0x00, 0x00, 0xff, 0xff};
	int rc = -1;

	if (len < min)
		return 0;
	if (window_bits < 9 || window_bits > 15 || len > UINT_MAX)
		return -1;
	if (def_open(window_bits) < 0)
		return -1;
	out->len = 0;
	/* deflateBound is for Z_FINISH; a sync flush adds its empty stored
	 * block (5 bytes) and a few bits */
	if (ws_buf_reserve(&out->data, &out->cap, deflateBound(&def, len) + 16,
			   SIZE_MAX, ZBUF_FIRST) < 0)
		goto fail;
	def.next_in = (Bytef *)(uintptr_t)in;
	def.avail_in = (uInt)len;
	for (;;) {
		size_t room = out->cap - out->len;
		if (room > UINT_MAX)
			room = UINT_MAX;
		def.next_out = out->data + out->len;
		def.avail_out = (uInt)room;
		if (deflate(&def, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
			goto fail;
		out->len += room - def.avail_out;
		if (def.avail_out != 0)
			break; /* all input taken and flushed */
		if (ws_buf_reserve(&out->data, &out->cap, out->cap + 1,
				   SIZE_MAX, ZBUF_FIRST) < 0)
			goto fail;
	}
	/* the sync flush ends with an empty stored block: strip its
	 * LEN/NLEN (RFC 7692 §7.2.1) */
	if (def.avail_in != 0 || out->len < 4 ||
	    memcmp(out->data + out->len - 4, marker, 4) != 0)
		goto fail;
	out->len -= 4;
	rc = 1;
fail:
	def.next_in = NULL;
	def.next_out = NULL;
	if (rc < 0)
		out->len = 0;
	return rc;
}
