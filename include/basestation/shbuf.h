/*
 * A reference-counted, immutable byte buffer: one framed message shared by
 * every recipient's output buffer (evbuffer_add_reference), freed when the
 * last socket has written it.
 */
#ifndef BASESTATION_SHBUF_H
#define BASESTATION_SHBUF_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

struct shbuf {
	uint32_t refs;
	uint32_t len;
	uint8_t data[];
};

/* A buffer with room for len bytes, one reference held by the caller. */
struct shbuf *shbuf_create(size_t len);
/* A WebSocket text frame holding json (len bytes): header + payload. */
struct shbuf *shbuf_frame_text(const char *json, size_t len);
void shbuf_ref(struct shbuf *b);
void shbuf_unref(struct shbuf *b);

/* Queue b on out. Small buffers are copied (cheaper than a reference for a
 * few hundred bytes); larger ones are added by reference. 0 ok, -1 ENOMEM. */
int shbuf_add(struct evbuffer *out, struct shbuf *b);

#endif
