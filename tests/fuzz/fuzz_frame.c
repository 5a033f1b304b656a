/*
 * libFuzzer harness for the frame parser.
 *
 * Input byte 0 picks the configuration: bits 0-5 the chunk size (1..63, or
 * 63 = the whole input at once), bit 6 require_mask off, bit 7 a small
 * max_message and at most 3 frames per message. The rest is fed through the
 * parser, checking invariants on every call; then it is fed again in one piece
 * and both runs must produce the same events. Then both runs again with
 * rsv1_ok (permessage-deflate negotiated): compressed messages are inflated
 * as the connection will, and the results must agree too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/deflate.h"
#include "basestation/ws.h"

#include "fuzz.h"

struct summary {
	uint64_t hash; /* over every event's type, code and payload */
	size_t events;
};

static uint64_t mix(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001B3ull;
	return h;
}

static void check_event(const struct ws_parser *p, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_TEXT:
		REQUIRE(ev->data != NULL);
		REQUIRE(!ev->compressed || p->rsv1_ok);
		if (ev->compressed) {
			REQUIRE(ev->len <= WS_COMPRESSED_MAX(p->max_message));
			break;
		}
		REQUIRE(ev->len <= p->max_message);
		REQUIRE(ws_utf8_valid(ev->data, ev->len));
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
		REQUIRE(ev->len <= 125);
		REQUIRE(ev->data != NULL);
		break;
	case WS_EV_CLOSE:
		REQUIRE(ev->len <= 123);
		REQUIRE(ev->close_code == WS_CLOSE_NO_STATUS ||
			(ev->close_code >= 1000 && ev->close_code <= 4999));
		REQUIRE(ev->close_code != WS_CLOSE_NO_STATUS || ev->len == 0);
		REQUIRE(ws_utf8_valid(ev->data, ev->len));
		break;
	case WS_EV_ERROR:
		REQUIRE(ev->close_code == WS_CLOSE_PROTOCOL ||
			ev->close_code == WS_CLOSE_UNSUPPORTED ||
			ev->close_code == WS_CLOSE_BAD_DATA ||
			ev->close_code == WS_CLOSE_TOO_BIG ||
			ev->close_code == WS_CLOSE_INTERNAL);
		REQUIRE(ev->len == 0);
		break;
	default:
		REQUIRE(0);
	}
}

/* A compressed message, as the connection will handle it: inflated within
 * max_message and UTF-8-checked; the result goes into the summary. */
static void inflate_event(const struct ws_parser *p, const struct ws_event *ev,
			  struct summary *sum)
{
	struct ws_zbuf out = {0};
	uint16_t rc =
		ws_inflate_message(ev->data, ev->len, p->max_message, 1, &out);
	uint8_t tag[2] = {(uint8_t)(rc >> 8), (uint8_t)rc};

	REQUIRE(rc == 0 || rc == WS_CLOSE_BAD_DATA || rc == WS_CLOSE_TOO_BIG);
	REQUIRE(out.len <= p->max_message && out.cap <= p->max_message);
	REQUIRE(rc != 0 || ws_utf8_valid(out.data, out.len));
	sum->hash = mix(sum->hash, tag, sizeof(tag));
	sum->hash = mix(sum->hash, out.data, out.len);
	ws_zbuf_free(&out);
}

static void run(const uint8_t *in, size_t n, size_t chunk, size_t max,
		int require_mask, int rsv1_ok, struct summary *sum)
{
	struct ws_parser p;
	size_t off = 0;
	int dead = 0;

	sum->hash = 0xCBF29CE484222325ull;
	sum->events = 0;
	ws_parser_init(&p, max, require_mask);
	p.rsv1_ok = rsv1_ok ? 1 : 0;
	if (max == 100)
		p.max_frames = 3;
	while (off < n && !dead) {
		size_t end = n - off > chunk ? off + chunk : n;
		while (off < end) {
			struct ws_event ev;
			size_t used =
				ws_parser_feed(&p, in + off, end - off, &ev);
			uint8_t tag[4];

			REQUIRE(used <= end - off);
			REQUIRE(ws_parser_heap(&p) <=
				(rsv1_ok ? WS_COMPRESSED_MAX(max) : max) +
					WS_CTL_MAX);
			off += used;
			if (ev.type == WS_EV_NONE) {
				/* no event: every byte was consumed */
				REQUIRE(off == end);
				REQUIRE(ev.len == 0);
				break;
			}
			/* an event on live input always consumes bytes */
			REQUIRE(used > 0);
			check_event(&p, &ev);
			tag[0] = (uint8_t)ev.type;
			tag[1] = (uint8_t)(ev.close_code >> 8);
			tag[2] = (uint8_t)ev.close_code;
			tag[3] = (uint8_t)ev.len;
			sum->hash = mix(sum->hash, tag, sizeof(tag));
			sum->hash = mix(sum->hash, ev.data, ev.len);
			if (ev.type == WS_EV_TEXT && ev.compressed)
				inflate_event(&p, &ev, sum);
			sum->events++;
			if (ev.type == WS_EV_ERROR) {
				/* dead: ERROR again, nothing consumed */
				struct ws_event again;
				REQUIRE(ws_parser_feed(&p, in, n, &again) == 0);
				REQUIRE(again.type == WS_EV_ERROR);
				REQUIRE(again.close_code == ev.close_code);
				REQUIRE(ws_parser_heap(&p) == 0);
				dead = 1;
				break;
			}
		}
	}
	ws_parser_finish(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct summary a, b;
	size_t chunk, max;
	int require_mask;

	if (size < 1)
		return 0;
	chunk = (data[0] & 0x3F) == 0x3F ? SIZE_MAX : (data[0] & 0x3F) + 1u;
	require_mask = !(data[0] & 0x40);
	max = (data[0] & 0x80) ? 100 : 1u << 20;
	data++;
	size--;

	run(data, size, chunk, max, require_mask, 0, &a);
	run(data, size, SIZE_MAX, max, require_mask, 0, &b);
	REQUIRE(a.events == b.events && a.hash == b.hash);
	run(data, size, chunk, max, require_mask, 1, &a);
	run(data, size, SIZE_MAX, max, require_mask, 1, &b);
	REQUIRE(a.events == b.events && a.hash == b.hash);
	return 0;
}
