/*
 * Frames out: the output buffer, flushed once per loop turn through the
 * transport (one writev per connection for everything queued in the
 * turn), back-pressure (a slow consumer is cut, never waited for), the
 * close handshake, and the sink the broker delivers through.
 *
 * On an asynchronous transport (io_uring, --io uring) the flush hands the
 * turn's output to the transport instead: its chains move from `out` to
 * `sent`, where nothing touches them until the completion reports them
 * written (then they are drained, releasing the msgbuf references); the
 * rest of a short write and what was queued meanwhile go in the next
 * flush. One write per connection is in flight at a time. Bytes in `sent`
 * count as buffered (--max-outbuf), and a dead connection is freed only
 * after the completions of its writes (conn_busy).
 *
 * A shared message (msgbuf.h) goes out as its plain encoding: the text
 * frame header is written once into the headroom in front of the payload,
 * so every recipient copies (or references) the same bytes. On a
 * connection with permessage-deflate, a message of --compression-min bytes
 * or more goes as its compressed frame instead, built once (the
 * no-context-takeover answer makes it the same bytes for every recipient
 * with the same window) and cached in the msgbuf beside the plain one.
 */
#include "conn_int.h"
#include "basestation/broker.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/msgbuf.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define CLOSE_LINGER_MS 2000
#define SLOW_CLOSE_MS	5000
/* Chains handed to one writev (as evbuffer_write does). */
#define WRITE_IOV 128

uint64_t conn_out_buffered(const struct conn *c)
{
	return (c->out ? evbuffer_get_length(c->out) : 0) +
	       (c->sent ? evbuffer_get_length(c->sent) : 0);
}

static int async_tp(const struct conn *c)
{
	return c->tp.ops->submit != NULL;
}

/* Rare: only when the transport's buffer is full, or it drains again. */
void conn_watch(struct conn *c, short what)
{
	if (c->watching == what)
		return;
	event_del(&c->ev);
	event_assign(&c->ev, cs.base, c->tp.fd, (short)(what | EV_PERSIST),
		     cs.io_cb, c);
	event_add(&c->ev, NULL);
	c->watching = what;
}

/* The connection joins the list flushed at the end of this loop turn:
 * many frames queued in one turn leave in one writev. */
static void flush_later(struct conn *c)
{
	if (!c->in_flush && !(c->watching & EV_WRITE)) {
		c->in_flush = 1;
		c->fnext = cs.flush;
		cs.flush = c;
		event_active(cs.flush_ev, EV_TIMEOUT, 0);
	}
}

struct evbuffer *conn_out(struct conn *c)
{
	if (c->out == NULL && (c->out = evbuffer_new()) == NULL)
		fatal("out of memory");
	flush_later(c);
	return c->out;
}

void conn_entered(struct conn *c)
{
	c->state = CONN_OPEN;
	cs.nconns++;
	metrics.conns_opened++;
}

/* c leaves the open state: counted once, and its session leaves routing. */
static void conn_left(struct conn *c)
{
	if (c->state != CONN_OPEN)
		return;
	cs.nconns--;
	metrics.conns_closed++;
	session_close(&c->s);
}

void conn_hook_free(struct conn *c)
{
	if (c->hook == NULL)
		return;
	auth_hook_cancel(c->hook->wait);
	free(c->hook);
	c->hook = NULL;
}

static void reap_later(struct conn *c)
{
	c->qnext = cs.reap;
	cs.reap = c;
	event_active(cs.reap_ev, EV_TIMEOUT, 0);
}

void conn_kill(struct conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	conn_left(c);
	conn_hook_free(c);
	c->state = CONN_DEAD;
	event_del(&c->ev);
	reap_later(c);
}

int conn_busy(struct conn *c)
{
	if (!async_tp(c) || c->tp.ops->inflight(&c->tp) == 0)
		return 0;
	/* The kernel may still read the bytes in c->sent and completions
	 * name c: cancel, and free c after the last one (conn_sent). */
	if (!c->reap_wait)
		c->tp.ops->cancel(&c->tp);
	c->reap_wait = 1;
	return 1;
}

/* Output empty: free the buffer; go on with a paced replay; finish a
 * close. */
static void conn_drained(struct conn *c)
{
	if (c->out)
		evbuffer_free(c->out);
	if (c->sent)
		evbuffer_free(c->sent);
	c->out = c->sent = NULL;
	conn_watch(c, EV_READ);
	if (c->state == CONN_OPEN) {
		session_drained(&c->s);
	} else if ((c->state == CONN_CLOSING || c->state == CONN_REFUSING) &&
		   !c->shut) {
		/* All written: half-close and linger for the peer's FIN so an
		 * unread byte on our side does not turn into an RST that
		 * destroys the close frame in flight. */
		transport_shutdown(&c->tp);
		c->shut = 1;
		c->deadline = mono_ms() + CLOSE_LINGER_MS;
	}
}

/* The first WRITE_IOV chains of b (not empty) as iovecs: their count. */
static int out_iov(struct evbuffer *b, struct iovec *iov)
{
	struct evbuffer_iovec v[WRITE_IOV];
	int k = evbuffer_peek(b, -1, NULL, v, WRITE_IOV);

	if (k > WRITE_IOV)
		k = WRITE_IOV;
	for (int i = 0; i < k; i++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len;
	}
	return k;
}

/* An asynchronous transport: submit what is unsent unless a write is in
 * flight (its completion comes back here, through the flush list). */
static void write_async(struct conn *c)
{
	struct iovec iov[WRITE_IOV];

	if (c->sent_err) {
		conn_kill(c);
		return;
	}
	if (c->tp.ops->inflight(&c->tp) > 0)
		return;
	if (c->sent == NULL || evbuffer_get_length(c->sent) == 0) {
		if (c->out == NULL || evbuffer_get_length(c->out) == 0) {
			if (c->out || c->sent)
				conn_drained(c);
			return;
		}
		if (c->sent == NULL && (c->sent = evbuffer_new()) == NULL)
			fatal("out of memory");
		/* Moves the chains (no copy): `out` starts empty, so what
		 * is queued from now on never shares a chain with bytes the
		 * kernel reads. */
		evbuffer_add_buffer(c->sent, c->out);
	}
	if (c->tp.ops->submit(&c->tp, iov, out_iov(c->sent, iov)) < 0)
		conn_kill(c); /* out of memory in the ring's queue */
}

void conn_sent(void *arg, size_t written, int err)
{
	struct conn *c = arg;

	if (written > 0)
		evbuffer_drain(c->sent, written);
	if (c->state == CONN_DEAD) {
		if (c->reap_wait && c->tp.ops->inflight(&c->tp) == 0) {
			c->reap_wait = 0;
			reap_later(c);
		}
		return;
	}
	/* EPIPE, ECONNRESET (the peer is gone): killed from the flush, not
	 * here, since a kick in the middle of a fan-out runs this for other
	 * connections than the one delivered to. Otherwise the rest, what
	 * came meanwhile, or drained. */
	if (err)
		c->sent_err = 1;
	flush_later(c);
}

void conn_write_out(struct conn *c)
{
	struct iovec iov[WRITE_IOV];
	ssize_t n;

	if (c->state == CONN_DEAD)
		return;
	if (async_tp(c)) {
		write_async(c);
		return;
	}
	if (c->out == NULL)
		return;
	while (evbuffer_get_length(c->out) > 0) {
		n = transport_writev(&c->tp, iov, out_iov(c->out, iov));
		if (n > 0) {
			evbuffer_drain(c->out, (size_t)n);
			continue;
		}
		if (n == NET_WANT_WRITE || n == NET_WANT_READ)
			break;
		conn_kill(c); /* EPIPE, ECONNRESET: the peer is gone */
		return;
	}
	if (evbuffer_get_length(c->out) > 0)
		conn_watch(c, EV_READ | EV_WRITE);
	else
		conn_drained(c);
}

void conn_flush_all(void)
{
	struct conn *c;
	while ((c = cs.flush) != NULL) {
		cs.flush = c->fnext;
		c->in_flush = 0;
		conn_write_out(c);
	}
}

void conn_count_out(size_t n)
{
	metrics.msgs_out++;
	metrics.bytes_out += n;
}

static void cut_slow(struct conn *c, uint64_t buffered)
{
	const char *uid = broker_uid(&c->s);

	metrics.drop_slow++;
	log_warn("conn.slow", "conn=%llu uid=%s buffered=%llu",
		 (unsigned long long)c->s.id, uid ? log_val(uid) : "-",
		 (unsigned long long)buffered);
	c->slow = 1;
	conn_close(c, WS_CLOSE_POLICY, "slow consumer");
}

/* 1 when c has more buffered than allowed: then it is cut. */
int conn_check_slow(struct conn *c, size_t adding)
{
	/* One frame larger than the limit still goes to a client that has
	 * nothing pending; otherwise it could never get past it. */
	if (conn_out_buffered(c) + adding <= cs.cfg->max_outbuf ||
	    conn_out_buffered(c) == 0)
		return 0;
	/* Output queued in this very turn is not slowness: hand it to the
	 * transport now, unless it is known to be full already. An
	 * asynchronous one is submitted at once (every connection's queue
	 * with it) and what the kernel took inline is reported by the kick. */
	if (async_tp(c)) {
		conn_write_out(c);
		c->tp.ops->kick(&c->tp);
		if (c->state != CONN_OPEN)
			return 1;
		if (conn_out_buffered(c) + adding <= cs.cfg->max_outbuf)
			return 0;
	} else if (!(c->watching & EV_WRITE)) {
		conn_write_out(c);
		if (c->state != CONN_OPEN)
			return 1;
		if (conn_out_buffered(c) + adding <= cs.cfg->max_outbuf)
			return 0;
	}
	cut_slow(c, conn_out_buffered(c));
	return 1;
}

/* Queue a control frame as is: only conn_close() uses it directly (a
 * close frame must go out even to a slow consumer). */
static void send_control(struct conn *c, enum ws_opcode op, const void *p,
			 size_t n)
{
	struct evbuffer *out = conn_out(c);
	uint8_t hdr[10];
	size_t hl = ws_frame_header(hdr, op, n);

	evbuffer_add(out, hdr, hl);
	if (n)
		evbuffer_add(out, p, n);
	conn_count_out(hl + n);
}

/* Pings and pongs count against --max-outbuf like any other output: a
 * client that pings without reading is a slow consumer (closed with 1008),
 * not a way to grow our memory. */
void conn_send_ping_pong(struct conn *c, enum ws_opcode op, const void *p,
			 size_t n)
{
	if (c->state != CONN_OPEN || conn_check_slow(c, n + 2))
		return;
	send_control(c, op, p, n);
}

void conn_close(struct conn *c, uint16_t code, const char *reason)
{
	uint8_t body[125];
	size_t rl = reason ? strlen(reason) : 0;

	if (c->state != CONN_OPEN)
		return;
	if (rl > 123)
		rl = 123;
	body[0] = (uint8_t)(code >> 8);
	body[1] = (uint8_t)(code & 0xff);
	if (rl)
		memcpy(body + 2, reason, rl);
	/* Out of routing first: where the user's next inbox starts is read
	 * from what is buffered before the close frame joins it. */
	conn_left(c);
	/* An SSE stream has no close frame: it ends with the socket. */
	if (c->sse == NULL)
		send_control(c, WS_OP_CLOSE, body, 2 + rl);
	c->state = CONN_CLOSING;
	c->deadline = mono_ms() + (c->slow ? SLOW_CLOSE_MS : CLOSE_LINGER_MS);
	log_info("conn.close", "conn=%llu code=%u reason=%s",
		 (unsigned long long)c->s.id, code,
		 log_val(reason ? reason : ""));
}

/* ---- the sink ---- */

/* The text frame of m: its header written once into the headroom. */
static const uint8_t *text_frame(struct msgbuf *m, size_t *len)
{
	uint8_t hdr[10];
	size_t hl = 0;

	if (m->front == 0)
		hl = ws_frame_header(hdr, WS_OP_TEXT, m->len);
	return msgbuf_front(m, hdr, hl, len);
}

/* The process's one output buffer for deflate: a message is compressed
 * into it and then copied into the frame that is kept. */
static struct ws_zbuf deflated;
#define DEFLATED_KEEP 65536

void conn_deflate_finish(void)
{
	ws_zbuf_free(&deflated);
}

/* The compressed text frame of a payload (RSV1 set) with a 2^bits window,
 * or NULL when it is shorter than --compression-min or out of memory (the
 * plain frame goes then). */
static struct msgbuf_bytes *deflate_frame(const uint8_t *payload, size_t len,
					  void *arg)
{
	int bits = *(const int *)arg;
	struct msgbuf_bytes *b = NULL;
	uint8_t hdr[10];
	size_t hl;

	if (ws_deflate_message(payload, len, (size_t)cs.cfg->compression_min,
			       bits, &deflated) != 1)
		goto done;
	hl = ws_frame_header_rsv1(hdr, WS_OP_TEXT, deflated.len);
	b = malloc(sizeof(*b) + hl + deflated.len);
	if (b == NULL)
		goto done;
	b->len = (uint32_t)(hl + deflated.len);
	memcpy(b->data, hdr, hl);
	memcpy(b->data + hl, deflated.data, deflated.len);
	metrics.deflated++;
done:
	ws_zbuf_trim(&deflated, DEFLATED_KEEP);
	return b;
}

/* The frame c gets for m: compressed when c negotiated permessage-deflate
 * and m is long enough, else the plain text frame. The msgbuf caches one
 * compressed frame, for the usual 15-bit window; a client that asked for
 * a smaller server_max_window_bits gets its own, built for it alone. */
static const uint8_t *frame_for(struct conn *c, struct msgbuf *m, size_t *len,
				struct msgbuf_bytes **own)
{
	int bits = c->pmd.window_bits;
	const struct msgbuf_bytes *b;

	*own = NULL;
	if (!c->pmd.on || m->len < (size_t)cs.cfg->compression_min)
		return text_frame(m, len);
	if (bits == 15)
		b = msgbuf_encoding(m, MSGBUF_DEFLATE, deflate_frame, &bits);
	else
		b = *own = deflate_frame(msgbuf_data(m), m->len, &bits);
	if (b == NULL)
		return text_frame(m, len);
	*len = b->len;
	return b->data;
}

static int sink_deliver(struct session *s, struct msgbuf *m)
{
	struct conn *c = conn_of(s);
	struct msgbuf_bytes *own;
	const uint8_t *p;
	size_t n;

	if (c->state != CONN_OPEN)
		return -1;
	p = frame_for(c, m, &n, &own);
	if (own) {
		/* not the msgbuf's bytes: queued as a copy */
		int slow = conn_check_slow(c, n);
		if (!slow) {
			evbuffer_add(conn_out(c), p, n);
			conn_count_out(n);
		}
		free(own);
		return slow ? -1 : 0;
	}
	if (conn_check_slow(c, n))
		return -1;
	msgbuf_add(conn_out(c), m, p, n);
	conn_count_out(n);
	return 0;
}

static uint64_t sink_buffered(const struct session *s)
{
	return conn_out_buffered(
		(const struct conn *)((const char *)s -
				      offsetof(struct conn, s)));
}

static void sink_close(struct session *s, uint16_t code, const char *reason)
{
	conn_close(conn_of(s), code, reason);
}

static void sink_cut(struct session *s, uint64_t buffered)
{
	struct conn *c = conn_of(s);
	if (c->state == CONN_OPEN)
		cut_slow(c, buffered);
}

const struct session_sink conn_sink = {
	.deliver = sink_deliver,
	.buffered = sink_buffered,
	.close = sink_close,
	.cut = sink_cut,
};
