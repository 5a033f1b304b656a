/*
 * Unit tests for ws_utf8_feed / ws_utf8_valid: known vectors, an exhaustive
 * comparison with a straightforward reference decoder over all 1-3 byte
 * strings (and a large slice of 4-byte ones), incremental feeding at every
 * split point and the ASCII fast path at every alignment.
 */
#include "check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basestation/ws.h"

/* Reference: 0 complete and valid, 1 invalid, 2 valid but incomplete. */
static int ref_state(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t len, k;
		uint8_t lo = 0x80, hi = 0xBF; /* range of the 2nd byte */

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			if (c == 0xE0)
				lo = 0xA0; /* overlong */
			if (c == 0xED)
				hi = 0x9F; /* surrogates */
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			if (c == 0xF0)
				lo = 0x90; /* overlong */
			if (c == 0xF4)
				hi = 0x8F; /* > U+10FFFF */
		} else {
			return 1;
		}
		for (k = 1; k < len; k++) {
			if (i + k == n)
				return 2;
			if (k == 1 && (s[i + k] < lo || s[i + k] > hi))
				return 1;
			if ((s[i + k] & 0xC0) != 0x80)
				return 1;
		}
		i += len;
	}
	return 0;
}

/* Map a DFA state to the reference's three outcomes. */
static int dfa_class(uint32_t st)
{
	if (st == WS_UTF8_ACCEPT)
		return 0;
	if (st == WS_UTF8_REJECT)
		return 1;
	return 2;
}

static void test_vectors(void)
{
	static const struct {
		const char *s;
		int valid;
	} v[] = {
		{"", 1},
		{"hello", 1},
		{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1}, /* kosme */
		{"\xc2\x80", 1},
		{"\xdf\xbf", 1},
		{"\xe0\xa0\x80", 1},
		{"\xef\xbf\xbf", 1},
		{"\xf0\x90\x80\x80", 1},
		{"\xf4\x8f\xbf\xbf", 1}, /* U+10FFFF */
		{"\xed\x9f\xbf", 1},	 /* U+D7FF */
		{"\xee\x80\x80", 1},	 /* U+E000 */
		{"\xef\xbb\xbf", 1},	 /* BOM */
		{"\x80", 0},
		{"\xbf", 0},
		{"\xc0\xaf", 0}, /* overlong '/' */
		{"\xc1\xbf", 0},
		{"\xe0\x80\xaf", 0},
		{"\xe0\x9f\xbf", 0},
		{"\xf0\x80\x80\xaf", 0},
		{"\xf0\x8f\xbf\xbf", 0},
		{"\xed\xa0\x80", 0},	 /* U+D800 */
		{"\xed\xbf\xbf", 0},	 /* U+DFFF */
		{"\xf4\x90\x80\x80", 0}, /* U+110000 */
		{"\xf5\x80\x80\x80", 0},
		{"\xfe", 0},
		{"\xff", 0},
		{"\xc2", 0},
		{"\xe2\x82", 0},
		{"\xf0\x9f\x98", 0},
		{"a\xc2 b", 0},
		{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
		 "edited",
		 0},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const uint8_t *s = (const uint8_t *)v[i].s;
		size_t n = strlen(v[i].s);
		if (ws_utf8_valid(s, n) != v[i].valid) {
			fprintf(stderr, "%s:%d: vector %zu: expected %d\n",
				__FILE__, __LINE__, i, v[i].valid);
			failures++;
		}
		CHECK((ref_state(s, n) == 0) == v[i].valid);
	}
}

static void test_states(void)
{
	const uint8_t euro[] = {0xE2, 0x82, 0xAC};
	uint32_t st;

	st = ws_utf8_feed(WS_UTF8_ACCEPT, euro, 2);
	CHECK(st != WS_UTF8_ACCEPT && st != WS_UTF8_REJECT);
	st = ws_utf8_feed(st, euro + 2, 1);
	CHECK(st == WS_UTF8_ACCEPT);
	/* sticky reject */
	CHECK(ws_utf8_feed(WS_UTF8_REJECT, (const uint8_t *)"a", 1) ==
	      WS_UTF8_REJECT);
	CHECK(ws_utf8_feed(WS_UTF8_REJECT, NULL, 0) == WS_UTF8_REJECT);
	/* out-of-range states are rejected, not indexed */
	CHECK(ws_utf8_feed(9, (const uint8_t *)"a", 1) == WS_UTF8_REJECT);
	CHECK(ws_utf8_feed(0xFFFFFFFFu, (const uint8_t *)"a", 1) ==
	      WS_UTF8_REJECT);
	/* empty input keeps the state */
	CHECK(ws_utf8_feed(WS_UTF8_ACCEPT, NULL, 0) == WS_UTF8_ACCEPT);
	st = ws_utf8_feed(WS_UTF8_ACCEPT, euro, 1);
	CHECK(ws_utf8_feed(st, NULL, 0) == st);
}

static unsigned long exhaustive_mismatch(const uint8_t *s, size_t n)
{
	uint32_t st = ws_utf8_feed(WS_UTF8_ACCEPT, s, n);
	int want = ref_state(s, n);

	if (dfa_class(st) != want) {
		if (failures < 20)
			fprintf(stderr,
				"%s:%d: mismatch len %zu: %02x %02x %02x %02x"
				" dfa %d ref %d\n",
				__FILE__, __LINE__, n, s[0], n > 1 ? s[1] : 0,
				n > 2 ? s[2] : 0, n > 3 ? s[3] : 0,
				dfa_class(st), want);
		failures++;
		return 1;
	}
	return 0;
}

static void test_exhaustive(void)
{
	static const uint8_t pick[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90,
				       0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0,
				       0xED, 0xF0, 0xF4, 0xFF};
	uint8_t s[4];

	for (unsigned a = 0; a < 256; a++) {
		s[0] = (uint8_t)a;
		exhaustive_mismatch(s, 1);
		for (unsigned b = 0; b < 256; b++) {
			s[1] = (uint8_t)b;
			exhaustive_mismatch(s, 2);
			for (unsigned c = 0; c < 256; c++) {
				s[2] = (uint8_t)c;
				exhaustive_mismatch(s, 3);
			}
		}
	}
	/* 4-byte: every lead F0..F4 with every 2nd and 3rd byte, picked
	 * 4th bytes; plus all leads with picked tails. */
	for (unsigned a = 0xF0; a <= 0xF4; a++)
		for (unsigned b = 0; b < 256; b++)
			for (unsigned c = 0; c < 256; c++)
				for (size_t d = 0; d < sizeof(pick); d++) {
					s[0] = (uint8_t)a;
					s[1] = (uint8_t)b;
					s[2] = (uint8_t)c;
					s[3] = pick[d];
					exhaustive_mismatch(s, 4);
				}
	for (unsigned a = 0; a < 256; a++)
		for (size_t b = 0; b < sizeof(pick); b++)
			for (size_t c = 0; c < sizeof(pick); c++)
				for (size_t d = 0; d < sizeof(pick); d++) {
					s[0] = (uint8_t)a;
					s[1] = pick[b];
					s[2] = pick[c];
					s[3] = pick[d];
					exhaustive_mismatch(s, 4);
				}
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Random strings biased towards UTF-8 structure; feeding them in two
 * pieces at every split point must agree with the reference. */
static void test_random_split(void)
{
	static const uint8_t atoms[][4] = {
		{'a'},
		{0xC3, 0xA9},
		{0xE2, 0x82, 0xAC},
		{0xF0, 0x9F, 0x98, 0x80},
		{0xED, 0xA0, 0x80},
		{0x80},
		{0xF4, 0x90},
		{0xE0, 0x9F},
		{0xFF},
	};
	static const uint8_t alen[] = {1, 2, 3, 4, 3, 1, 2, 2, 1};
	uint8_t buf[64];

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = 0;
		int natoms = (int)(rnd() % 10);
		int want;
		for (int k = 0; k < natoms; k++) {
			/* mostly valid atoms */
			size_t a = rnd() % 16;
			if (a > 3)
				a = a < 12 ? 0 : (a - 12) % 4;
			if (rnd() % 8 == 0)
				a = 4 + rnd() % 5;
			memcpy(buf + n, atoms[a], alen[a]);
			n += alen[a];
		}
		if (n && rnd() % 4 == 0)
			n -= 1 + rnd() % n; /* truncate */
		want = ref_state(buf, n);
		for (size_t cut = 0; cut <= n; cut++) {
			uint32_t st = ws_utf8_feed(WS_UTF8_ACCEPT, buf, cut);
			st = ws_utf8_feed(st, buf + cut, n - cut);
			if (dfa_class(st) != want) {
				fprintf(stderr,
					"%s:%d: split mismatch iter %d cut "
					"%zu\n",
					__FILE__, __LINE__, iter, cut);
				failures++;
				break;
			}
		}
	}
}

/* The fast path must not skip a bad or multibyte byte at any alignment. */
static void test_fast_path(void)
{
	uint8_t buf[80];

	for (size_t len = 1; len <= sizeof(buf); len++) {
		for (size_t pos = 0; pos < len; pos++) {
			memset(buf, 'x', len);
			buf[pos] = 0xFF;
			CHECK(!ws_utf8_valid(buf, len));
			buf[pos] = 0x80;
			CHECK(!ws_utf8_valid(buf, len));
			if (pos + 2 <= len) {
				buf[pos] = 0xC3;
				buf[pos + 1] = 0xA9;
				CHECK(ws_utf8_valid(buf, len));
				buf[pos + 1] = 'x'; /* missing continuation */
				CHECK(!ws_utf8_valid(buf, len));
			}
			if (pos == len - 1) {
				buf[pos] = 0xC3; /* truncated at the end */
				CHECK(ws_utf8_feed(WS_UTF8_ACCEPT, buf, len) >
				      WS_UTF8_REJECT);
			}
		}
		memset(buf, 'x', len);
		CHECK(ws_utf8_valid(buf, len));
		/* every start offset against word alignment */
		for (size_t off = 0; off < 8 && off < len; off++)
			CHECK(ws_utf8_valid(buf + off, len - off));
	}
	/* all 128 ASCII values are valid, including NUL and DEL */
	for (int c = 0; c < 128; c++)
		buf[c % sizeof(buf)] = (uint8_t)c;
	CHECK(ws_utf8_valid(buf, sizeof(buf)));
}

int main(void)
{
	test_vectors();
	test_states();
	test_exhaustive();
	test_random_split();
	test_fast_path();
	if (failures) {
		fprintf(stderr, "test_utf8: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_utf8: ok\n");
	return 0;
}
