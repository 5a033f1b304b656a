/*
 * Incremental UTF-8 validation (RFC 3629): a Hoehrmann-style DFA behind an
 * ASCII fast path that skips whole 8-byte words while at a code point
 * boundary.
 */
#include <string.h>

#include "basestation/ws.h"

/* Byte -> character class. */
/* clang-format off */
static const uint8_t utf8_class[256] = {
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 00 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 10 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 20 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 30 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 40 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 50 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 60 */
	 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 70 */
	 1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, /* 80 */
	 9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9,  9, /* 90 */
	 7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, /* A0 */
	 7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, /* B0 */
	 8,  8,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* C0 */
	 2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* D0 */
	10,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  3,  4,  3,  3, /* E0 */
	11,  6,  6,  6,  5,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8,  8, /* F0 */
};

/*
 * (state * 16 + class) -> state. States: 0 accept, 1 reject, 2 one
 * continuation byte left, 3 two left, 4 after E0 (A0..BF next), 5 after ED
 * (80..9F next), 6 after F0 (90..BF next), 7 three left, 8 after F4
 * (80..8F next).
 */
#define UTF8_NSTATES 9
static const uint8_t utf8_trans[UTF8_NSTATES * 16] = {
	0, 1, 2, 3, 5, 8, 7, 1, 1, 1, 4, 6, 1, 1, 1, 1, /* 0 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 1 */
	1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, /* 2 */
	1, 2, 1, 1, 1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, /* 3 */
	1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, /* 4 */
	1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, /* 5 */
	1, 1, 1, 1, 1, 1, 1, 3, 1, 3, 1, 1, 1, 1, 1, 1, /* 6 */
	1, 3, 1, 1, 1, 1, 1, 3, 1, 3, 1, 1, 1, 1, 1, 1, /* 7 */
	1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 8 */
};
/* clang-format on */

#define HIGH_BITS 0x8080808080808080ull

uint32_t ws_utf8_feed(uint32_t state, const uint8_t *s, size_t n)
{
	size_t i = 0;

	if (state >= UTF8_NSTATES)
		return WS_UTF8_REJECT;
	while (i < n) {
		if (state == WS_UTF8_ACCEPT) {
			/* ASCII fast path: whole words, then single bytes. */
			while (n - i >= 16) {
				uint64_t a, b;
				memcpy(&a, s + i, 8);
				memcpy(&b, s + i + 8, 8);
				if ((a | b) & HIGH_BITS)
					break;
				i += 16;
			}
			if (n - i >= 8) {
				uint64_t a;
				memcpy(&a, s + i, 8);
				if (!(a & HIGH_BITS))
					i += 8;
			}
			while (i < n && s[i] < 0x80)
				i++;
			if (i == n)
				break;
		}
		state = utf8_trans[state * 16 + utf8_class[s[i++]]];
		if (state == WS_UTF8_REJECT)
			return WS_UTF8_REJECT;
	}
	return state;
}

int ws_utf8_valid(const uint8_t *s, size_t n)
{
	return ws_utf8_feed(WS_UTF8_ACCEPT, s, n) == WS_UTF8_ACCEPT;
}

size_t ws_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp_out)
{
	uint8_t c = s[0];
	uint32_t cp;
	size_t len, i;

	if (c < 0x80) {
		*cp_out = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, surrogate */
	*cp_out = cp;
	return len;
}
