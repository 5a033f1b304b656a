/* Shared, reference-counted messages and their cached encodings. */
#include "basestation/msgbuf.h"
#include "basestation/xalloc.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

/* Below this a copy into the chain's free space beats allocating a
 * reference chain per recipient (measured; see docs/benchmarks.md). */
#define MSGBUF_COPY_MAX 512

struct msgbuf *msgbuf_create(size_t len)
{
	struct msgbuf *m = xmalloc(sizeof(*m) + MSGBUF_HEADROOM + len);

	m->refs = 1;
	m->len = (uint32_t)len;
	m->front = 0;
	for (int i = 0; i < MSGBUF_ENC_N; i++)
		m->enc[i] = NULL;
	return m;
}

struct msgbuf *msgbuf_copy(const void *p, size_t n)
{
	struct msgbuf *m = msgbuf_create(n);
	memcpy(msgbuf_data(m), p, n);
	return m;
}

void msgbuf_ref(struct msgbuf *m)
{
	m->refs++;
}

void msgbuf_unref(struct msgbuf *m)
{
	if (m == NULL || --m->refs > 0)
		return;
	for (int i = 0; i < MSGBUF_ENC_N; i++)
		free(m->enc[i]);
	free(m);
}

const uint8_t *msgbuf_front(struct msgbuf *m, const uint8_t *hdr, size_t hl,
			    size_t *len)
{
	if (m->front == 0) {
		memcpy(m->buf + MSGBUF_HEADROOM - hl, hdr, hl);
		m->front = (uint8_t)hl;
	}
	*len = m->front + (size_t)m->len;
	return m->buf + MSGBUF_HEADROOM - m->front;
}

const struct msgbuf_bytes *msgbuf_encoding(struct msgbuf *m, enum msgbuf_enc k,
					   msgbuf_build_fn build, void *arg)
{
	if (m->enc[k] == NULL)
		m->enc[k] = build(msgbuf_data(m), m->len, arg);
	return m->enc[k];
}

static void msgbuf_cleanup(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	msgbuf_unref(arg);
}

int msgbuf_add(struct evbuffer *out, struct msgbuf *m, const uint8_t *p,
	       size_t n)
{
	if (n <= MSGBUF_COPY_MAX)
		return evbuffer_add(out, p, n);
	m->refs++;
	if (evbuffer_add_reference(out, p, n, msgbuf_cleanup, m) < 0) {
		m->refs--;
		return -1;
	}
	return 0;
}
