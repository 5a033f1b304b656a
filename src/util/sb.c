/* String builder with JSON string escaping. */
#include "basestation/sb.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grow(struct sb *b, size_t need)
{
	if (b->n + need + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->n + need + 1)
		cap *= 2;
	b->p = xrealloc(b->p, cap);
	b->cap = cap;
}

void sb_init(struct sb *b, size_t reserve)
{
	b->p = NULL;
	b->n = b->cap = 0;
	grow(b, reserve);
	b->p[0] = '\0';
}

void sb_free(struct sb *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

void sb_add(struct sb *b, const char *s, size_t n)
{
	grow(b, n);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

void sb_adds(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

void sb_addi(struct sb *b, int64_t v)
{
	char tmp[24];
	int k = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
	sb_add(b, tmp, (size_t)k);
}

void sb_add_jstr(struct sb *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = strlen(s);
	grow(b, n + 2);
	b->p[b->n++] = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\') {
			grow(b, 2);
			b->p[b->n++] = (char)c;
			continue;
		}
		grow(b, 7);
		b->p[b->n++] = '\\';
		switch (c) {
		case '"':
			b->p[b->n++] = '"';
			break;
		case '\\':
			b->p[b->n++] = '\\';
			break;
		case '\n':
			b->p[b->n++] = 'n';
			break;
		case '\r':
			b->p[b->n++] = 'r';
			break;
		case '\t':
			b->p[b->n++] = 't';
			break;
		default:
			b->p[b->n++] = 'u';
			b->p[b->n++] = '0';
			b->p[b->n++] = '0';
			b->p[b->n++] = hex[c >> 4];
			b->p[b->n++] = hex[c & 15];
		}
	}
	grow(b, 1);
	b->p[b->n++] = '"';
	b->p[b->n] = '\0';
}
