/*
 * RFC 6455 frame parser (server side) and frame header writers.
 *
 * The parser is a byte-driven state machine that accepts any chunking of
 * its input. Header bytes are checked as soon as they arrive; text payload
 * is unmasked into p->msg and UTF-8-checked as it arrives; control payload
 * goes to the inline p->ctl buffer. No heap is held while no text message
 * is in progress at the end of a call.
 */
#include <stdlib.h>
#include <string.h>

#include "basestation/ws.h"

enum { ST_HDR = 0, ST_DATA, ST_CTL };

#define MSG_MIN_ALLOC 256
#define MSG_KEEP_MAX  4096 /* larger buffers are dropped once delivered */

static const uint8_t empty_payload[1];

/* dst[i] = src[i] ^ key[(pos + i) & 3], a word at a time; dst may equal
 * src. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
		      const uint8_t key[4], size_t pos)
{
	uint8_t k[8];
	uint64_t m;
	size_t i = 0;

	for (int j = 0; j < 8; j++)
		k[j] = key[(pos + (size_t)j) & 3];
	memcpy(&m, k, 8);
	for (; n - i >= 32; i += 32) {
		uint64_t w[4];
		memcpy(w, src + i, 32);
		w[0] ^= m;
		w[1] ^= m;
		w[2] ^= m;
		w[3] ^= m;
		memcpy(dst + i, w, 32);
	}
	for (; n - i >= 8; i += 8) {
		uint64_t w;
		memcpy(&w, src + i, 8);
		w ^= m;
		memcpy(dst + i, &w, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ k[i & 7];
}

void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
	mask_copy(data, data, len, key, offset);
}

static void release_msg(struct ws_parser *p)
{
	free(p->msg);
	p->msg = NULL;
	p->msg_cap = 0;
	p->msg_len = 0;
}

/* The control payload buffer lives only from a control frame's first
 * payload byte to the call after its event: idle parsers hold none. */
static void release_ctl(struct ws_parser *p)
{
	free(p->ctl);
	p->ctl = NULL;
}

void ws_parser_init(struct ws_parser *p, size_t max_message, int require_mask)
{
	memset(p, 0, sizeof(*p));
	p->max_message = max_message;
	p->require_mask = require_mask ? 1 : 0;
	p->state = ST_HDR;
	p->hdr_need = 2;
}

void ws_parser_finish(struct ws_parser *p)
{
	release_msg(p);
	release_ctl(p);
}

size_t ws_parser_heap(const struct ws_parser *p)
{
	return p->msg_cap + (p->ctl ? WS_CTL_MAX : 0);
}

int ws_parser_partial(const struct ws_parser *p)
{
	return p->in_message || p->state != ST_HDR || p->hdr_len > 0;
}

/* Make room for need bytes in p->msg; never beyond limit (>= need). */
int ws_buf_reserve(uint8_t **buf, size_t *cap, size_t need, size_t limit,
		   size_t first)
{
	size_t c;
	uint8_t *m;

	if (need <= *cap)
		return 0;
	c = *cap ? *cap : first;
	while (c < need && c <= SIZE_MAX / 2)
		c *= 2;
	if (c > limit)
		c = limit;
	if (c < need)
		c = need;
	m = realloc(*buf, c);
	if (!m)
		return -1;
	*buf = m;
	*cap = c;
	return 0;
}

static int reserve(struct ws_parser *p, size_t need, size_t limit)
{
	return ws_buf_reserve(&p->msg, &p->msg_cap, need, limit, MSG_MIN_ALLOC);
}

/* Kill the parser. p->dead keeps code - 1000 (all our codes are > 1000). */
static size_t fail(struct ws_parser *p, struct ws_event *ev, uint16_t code,
		   size_t consumed)
{
	p->dead = (uint8_t)(code - 1000);
	release_msg(p);
	release_ctl(p);
	ev->type = WS_EV_ERROR;
	ev->close_code = code;
	return consumed;
}

/* First header byte: RSV bits, opcode, fragmentation state. RSV1 is
 * allowed only by rsv1_ok and only where a data message begins. */
static uint16_t check_byte0(const struct ws_parser *p)
{
	uint8_t b0 = p->hdr[0], op = b0 & 0x0F;

	if ((b0 & 0x30) ||
	    ((b0 & 0x40) &&
	     (!p->rsv1_ok || (op != WS_OP_TEXT && op != WS_OP_BINARY))))
		return WS_CLOSE_PROTOCOL;
	switch (b0 & 0x0F) {
	case WS_OP_CONT:
		return p->in_message ? 0 : WS_CLOSE_PROTOCOL;
	case WS_OP_TEXT:
		return p->in_message ? WS_CLOSE_PROTOCOL : 0;
	case WS_OP_BINARY:
		return p->in_message  ? WS_CLOSE_PROTOCOL
		       : p->binary_ok ? 0
				      : WS_CLOSE_UNSUPPORTED;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		return (b0 & 0x80) ? 0 : WS_CLOSE_PROTOCOL;
	default:
		return WS_CLOSE_PROTOCOL;
	}
}

/* Second header byte: mask bit and 7-bit length; sets the header size. */
static uint16_t check_byte1(struct ws_parser *p)
{
	uint8_t b1 = p->hdr[1], len7 = b1 & 0x7F;

	if (!(b1 & 0x80) && p->require_mask)
		return WS_CLOSE_PROTOCOL;
	if ((p->hdr[0] & 0x08) && len7 > 125)
		return WS_CLOSE_PROTOCOL;
	p->hdr_need = 2 +
		      (len7 == 126   ? 2
		       : len7 == 127 ? 8
				     : 0) +
		      ((b1 & 0x80) ? 4 : 0);
	return 0;
}

static size_t length_end(const struct ws_parser *p)
{
	uint8_t len7 = p->hdr[1] & 0x7F;

	return len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
}

/* Bytes of payload the current message may buffer. */
static size_t msg_limit(const struct ws_parser *p)
{
	return p->compressed ? WS_COMPRESSED_MAX(p->max_message)
			     : p->max_message;
}

/* Length field complete: decode it into p->remaining and check limits. */
static uint16_t check_length(struct ws_parser *p)
{
	uint8_t len7 = p->hdr[1] & 0x7F;
	uint64_t n = len7;

	if (len7 == 126) {
		n = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
	} else if (len7 == 127) {
		n = 0;
		for (int j = 2; j < 10; j++)
			n = n << 8 | p->hdr[j];
		if (n >> 63)
			return WS_CLOSE_PROTOCOL;
	}
	/* Frames per message: a message of many empty fragments costs a
	 * header each and is refused like an oversized one. */
	if (!(p->hdr[0] & 0x08)) {
		if ((p->hdr[0] & 0x0F) == WS_OP_TEXT) {
			p->frames = 1;
			p->compressed = (p->hdr[0] >> 6) & 1;
		} else {
			p->frames++;
		}
		if (n > msg_limit(p) - p->msg_len)
			return WS_CLOSE_TOO_BIG;
		if (p->max_frames && p->frames > p->max_frames)
			return WS_CLOSE_TOO_BIG;
	}
	p->remaining = n;
	return 0;
}

/* Header complete: set up payload reading. */
static void start_frame(struct ws_parser *p)
{
	p->opcode = p->hdr[0] & 0x0F;
	p->fin = p->hdr[0] >> 7;
	p->masked = p->hdr[1] >> 7;
	if (p->masked)
		memcpy(p->mask, p->hdr + p->hdr_need - 4, 4);
	else
		memset(p->mask, 0, 4);
	p->mask_pos = 0;
	p->hdr_len = 0;
	p->hdr_need = 2;
	if (p->opcode & 0x08) {
		p->ctl_len = 0;
		p->state = ST_CTL;
	} else {
		if (p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) {
			p->in_message = 1;
			p->binary = p->opcode == WS_OP_BINARY;
			p->utf8 = WS_UTF8_ACCEPT;
		}
		p->state = ST_DATA;
	}
}

static int close_code_valid(unsigned code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

/* Control frame complete: turn it into an event. */
static size_t control_event(struct ws_parser *p, struct ws_event *ev,
			    size_t consumed)
{
	ev->data = p->ctl ? p->ctl : empty_payload;
	ev->len = p->ctl_len;
	switch (p->opcode) {
	case WS_OP_PING:
		ev->type = WS_EV_PING;
		break;
	case WS_OP_PONG:
		ev->type = WS_EV_PONG;
		break;
	default: /* WS_OP_CLOSE */
		if (p->ctl_len == 0) {
			ev->close_code = WS_CLOSE_NO_STATUS;
		} else {
			unsigned code = (unsigned)p->ctl[0] << 8 | p->ctl[1];
			if (p->ctl_len == 1 || !close_code_valid(code)) {
				ev->data = NULL;
				ev->len = 0;
				return fail(p, ev, WS_CLOSE_PROTOCOL, consumed);
			}
			if (!ws_utf8_valid(p->ctl + 2, p->ctl_len - 2u)) {
				ev->data = NULL;
				ev->len = 0;
				return fail(p, ev, WS_CLOSE_BAD_DATA, consumed);
			}
			ev->close_code = (uint16_t)code;
			ev->data = p->ctl + 2;
			ev->len = p->ctl_len - 2u;
		}
		ev->type = WS_EV_CLOSE;
		break;
	}
	return consumed;
}

size_t ws_parser_feed(struct ws_parser *p, const uint8_t *buf, size_t len,
		      struct ws_event *ev)
{
	size_t i = 0, n;
	uint16_t code;

	ev->type = WS_EV_NONE;
	ev->close_code = 0;
	ev->compressed = 0;
	ev->data = NULL;
	ev->len = 0;
	if (p->dead) {
		ev->type = WS_EV_ERROR;
		ev->close_code = (uint16_t)(1000 + p->dead);
		return 0;
	}
	if (p->ctl && p->state != ST_CTL)
		release_ctl(p); /* its event went out with the last call */
	if (!p->in_message) {
		/* the last message (if any) was delivered by the last call */
		p->msg_len = 0;
		if (p->msg_cap > MSG_KEEP_MAX)
			release_msg(p);
	}

	for (;;) {
		switch (p->state) {
		case ST_HDR:
			while (p->hdr_len < p->hdr_need) {
				size_t old = p->hdr_len, le;
				if (i == len)
					goto need_more;
				n = p->hdr_need - old;
				if (n > len - i)
					n = len - i;
				memcpy(p->hdr + old, buf + i, n);
				p->hdr_len = (uint8_t)(old + n);
				i += n;
				if (old == 0 && (code = check_byte0(p)))
					return fail(p, ev, code, i);
				if (p->hdr_len < 2)
					continue;
				if (old < 2 && (code = check_byte1(p)))
					return fail(p, ev, code, i);
				le = length_end(p);
				if (old < le && p->hdr_len >= le &&
				    (code = check_length(p)))
					return fail(p, ev, code, i);
			}
			start_frame(p);
			break;

		case ST_DATA:
			if (p->remaining) {
				size_t limit = msg_limit(p);
				uint8_t *dst;
				n = len - i;
				if (n == 0)
					goto need_more;
				if (n > p->remaining)
					n = (size_t)p->remaining;
				/* a final frame tells the exact message size */
				if (p->fin)
					limit = p->msg_len +
						(size_t)p->remaining;
				if (reserve(p, p->msg_len + n, limit))
					return fail(p, ev, WS_CLOSE_INTERNAL,
						    i);
				dst = p->msg + p->msg_len;
				if (p->masked)
					mask_copy(dst, buf + i, n, p->mask,
						  p->mask_pos);
				else
					memcpy(dst, buf + i, n);
				p->mask_pos = (uint8_t)((p->mask_pos + n) & 3);
				p->remaining -= n;
				i += n;
				p->msg_len += n;
				/* compressed: checked after inflate;
				 * binary: not text at all */
				if (!p->compressed && !p->binary)
					p->utf8 = ws_utf8_feed(p->utf8, dst, n);
				if (p->utf8 == WS_UTF8_REJECT)
					return fail(p, ev, WS_CLOSE_BAD_DATA,
						    i);
				if (p->remaining)
					goto need_more;
			}
			p->state = ST_HDR;
			p->frames_read++;
			if (!p->fin)
				break;
			if (p->utf8 != WS_UTF8_ACCEPT)
				return fail(p, ev, WS_CLOSE_BAD_DATA, i);
			p->in_message = 0;
			ev->type = p->binary ? WS_EV_BINARY : WS_EV_TEXT;
			ev->compressed = p->compressed;
			ev->data = p->msg ? p->msg : empty_payload;
			ev->len = p->msg_len;
			return i;

		default: /* ST_CTL */
			if (p->remaining) {
				n = len - i;
				if (n == 0)
					goto need_more;
				if (n > p->remaining)
					n = (size_t)p->remaining;
				if (p->ctl == NULL &&
				    (p->ctl = malloc(WS_CTL_MAX)) == NULL)
					return fail(p, ev, WS_CLOSE_INTERNAL,
						    i);
				if (p->masked)
					mask_copy(p->ctl + p->ctl_len, buf + i,
						  n, p->mask, p->mask_pos);
				else
					memcpy(p->ctl + p->ctl_len, buf + i, n);
				p->mask_pos = (uint8_t)((p->mask_pos + n) & 3);
				p->ctl_len = (uint8_t)(p->ctl_len + n);
				p->remaining -= n;
				i += n;
				if (p->remaining)
					goto need_more;
			}
			p->state = ST_HDR;
			p->frames_read++;
			return control_event(p, ev, i);
		}
	}

need_more:
	/* idle between messages: hold no heap */
	if (!p->in_message && p->msg)
		release_msg(p);
	return i;
}

/* Common part of the frame header writers. */
static size_t put_header(uint8_t *out, uint8_t b0, uint64_t len,
			 uint8_t mask_bit)
{
	out[0] = b0;
	if (len < 126) {
		out[1] = (uint8_t)(mask_bit | len);
		return 2;
	}
	if (len <= 0xFFFF) {
		out[1] = mask_bit | 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = mask_bit | 127;
	for (int j = 0; j < 8; j++)
		out[2 + j] = (uint8_t)(len >> (56 - 8 * j));
	return 10;
}

#define FIN_OP(op) ((uint8_t)(0x80 | ((op)&0x0F)))

size_t ws_frame_header(uint8_t *out, enum ws_opcode op, uint64_t len)
{
	return put_header(out, FIN_OP(op), len, 0);
}

size_t ws_frame_header_rsv1(uint8_t *out, enum ws_opcode op, uint64_t len)
{
	return put_header(out, FIN_OP(op) | 0x40, len, 0);
}

size_t ws_frame_header_masked(uint8_t *out, enum ws_opcode op, uint64_t len,
			      const uint8_t key[4])
{
	size_t n = put_header(out, FIN_OP(op), len, 0x80);

	memcpy(out + n, key, 4);
	return n + 4;
}
