/*
 * One payload, many encodings: a reference-counted message (its JSON text)
 * shared by every recipient, with the bytes each transport sends built on
 * demand, once, and cached beside it.
 *
 * The plain encoding is the payload with a header written into the
 * headroom in front of it (a WebSocket text frame: no copy, no second
 * allocation). Others (a compressed frame, an SSE event) are their own
 * bytes, made by the first recipient that wants them and freed with the
 * message. Nothing here knows a wire format: the transports supply the
 * header and the builders.
 */
#ifndef BASESTATION_MSGBUF_H
#define BASESTATION_MSGBUF_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Room in front of the payload for the plain encoding's header. */
#define MSGBUF_HEADROOM 14

/* The encodings cached beside the plain one. */
enum msgbuf_enc {
	MSGBUF_DEFLATE, /* permessage-deflate frame */
	MSGBUF_SSE,	/* text/event-stream event */
	MSGBUF_ENC_N,
};

struct msgbuf_bytes {
	uint32_t len;
	uint8_t data[];
};

struct msgbuf {
	uint32_t refs;
	uint32_t len;  /* payload bytes */
	uint8_t front; /* header bytes in the headroom; 0: none yet */
	struct msgbuf_bytes *enc[MSGBUF_ENC_N];
	uint8_t buf[]; /* MSGBUF_HEADROOM bytes, then the payload */
};

/* A message with room for len payload bytes (filled by the caller through
 * msgbuf_data), one reference held by the caller. */
struct msgbuf *msgbuf_create(size_t len);
/* A message holding a copy of the n bytes at p. */
struct msgbuf *msgbuf_copy(const void *p, size_t n);
void msgbuf_ref(struct msgbuf *m);
/* NULL is allowed. Frees the message and its encodings with the last
 * reference. */
void msgbuf_unref(struct msgbuf *m);

static inline uint8_t *msgbuf_data(struct msgbuf *m)
{
	return m->buf + MSGBUF_HEADROOM;
}

/* The plain encoding: hdr (hl <= MSGBUF_HEADROOM bytes) in front of the
 * payload. The first call writes hdr; later ones return what it wrote and
 * ignore hdr (NULL is then fine). *len gets the whole length. */
const uint8_t *msgbuf_front(struct msgbuf *m, const uint8_t *hdr, size_t hl,
			    size_t *len);

/* Build one encoding from the payload: NULL when it cannot be made. */
typedef struct msgbuf_bytes *(*msgbuf_build_fn)(const uint8_t *payload,
						size_t len, void *arg);
/* The cached encoding k, built by build(arg) on first use. NULL when the
 * builder failed (tried again next time). */
const struct msgbuf_bytes *msgbuf_encoding(struct msgbuf *m, enum msgbuf_enc k,
					   msgbuf_build_fn build, void *arg);

/* Queue n bytes at p, which lie in m (its plain encoding or another), on
 * out: small ones are copied (cheaper than a reference for a few hundred
 * bytes), larger ones added by reference, holding a reference on m until
 * the socket has written them. 0 ok, -1 out of memory. */
int msgbuf_add(struct evbuffer *out, struct msgbuf *m, const uint8_t *p,
	       size_t n);

#endif
