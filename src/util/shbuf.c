/* Shared, reference-counted frames for fan-out. */
#include "basestation/shbuf.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "basestation/ws.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

/* Below this a copy into the chain's free space beats allocating a
 * reference chain per recipient (measured; see docs/benchmarks.md). */
#define SHBUF_COPY_MAX 512

struct shbuf *shbuf_create(size_t len)
{
	struct shbuf *b = xmalloc(sizeof(*b) + len);
	b->refs = 1;
	b->len = (uint32_t)len;
	return b;
}

struct shbuf *shbuf_frame_text(const char *json, size_t len)
{
	uint8_t hdr[10];
	size_t h = ws_frame_header(hdr, WS_OP_TEXT, len);
	struct shbuf *b = shbuf_create(h + len);
	memcpy(b->data, hdr, h);
	memcpy(b->data + h, json, len);
	return b;
}

void shbuf_ref(struct shbuf *b)
{
	b->refs++;
}

void shbuf_unref(struct shbuf *b)
{
	if (b && --b->refs == 0)
		free(b);
}

static void shbuf_cleanup(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	shbuf_unref(arg);
}

int shbuf_add(struct evbuffer *out, struct shbuf *b)
{
	if (b->len <= SHBUF_COPY_MAX)
		return evbuffer_add(out, b->data, b->len);
	b->refs++;
	if (evbuffer_add_reference(out, b->data, b->len, shbuf_cleanup, b) <
	    0) {
		b->refs--;
		return -1;
	}
	return 0;
}
