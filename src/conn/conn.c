/*
 * A WebSocket connection on one event: accepted, read, its frames handed
 * to the protocol (proto.h), timed (handshake deadline, heartbeats, idle
 * timeout, token expiry), reaped. The codec (ws/frame.c, ws/handshake.c)
 * parses; the transport (transport.h) moves the bytes; upgrade.c judges
 * the handshake; send.c writes.
 *
 * A connection is never freed inside its own callback: conn_kill() marks
 * it dead and the reap event frees it once the stack has unwound.
 */
#include "conn_int.h"
#include "basestation/broker.h"
#include "basestation/conn.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/net.h"
#include "basestation/proto.h"
#include "basestation/tls.h"
#include "basestation/xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_MS 200
/* Reads per wake-up while the transport holds decrypted bytes. */
#define PENDING_READS 4

/* Every read lands here first; frames are parsed straight out of it (the
 * parser keeps what it must across reads), so an idle connection holds no
 * input buffer at all. */
static uint8_t rbuf[64 * 1024];

static void conn_destroy(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		cs.all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	cs.nsockets--;
	if (c->ip)
		net_ip_put(c->ip, IP_WS);
	session_finish(&c->s);
	sse_free(c);
	ws_parser_finish(&c->parser);
	if (c->out)
		evbuffer_free(c->out);
	if (c->sent)
		evbuffer_free(c->sent);
	free(c->hs);
	transport_close(&c->tp);
	free(c);
}

static void reap(void)
{
	/* A dead connection may still be on the flush list: drain the list
	 * first (dead ones are skipped) so nothing points at freed memory. */
	conn_flush_all();
	while (cs.reap) {
		struct conn *c = cs.reap;
		cs.reap = c->qnext;
		if (!conn_busy(c))
			conn_destroy(c);
	}
}

/* ---- frames in ---- */

/* The reason sent with a close for a parser error. */
static const char *close_reason(uint16_t code)
{
	switch (code) {
	case WS_CLOSE_TOO_BIG:
		return "message too big";
	case WS_CLOSE_BAD_DATA:
		return "invalid UTF-8";
	case WS_CLOSE_UNSUPPORTED:
		return "binary messages are not supported";
	case WS_CLOSE_INTERNAL:
		return "internal error";
	default:
		return "protocol error";
	}
}

/* Inflated messages, one at a time: the process's one inflate stream
 * fills it within this callback and the protocol reads it before the next
 * message; trimmed back after a large one. */
static struct ws_zbuf inflated;
#define INFLATED_KEEP 65536

/* A compressed text message (RSV1, permessage-deflate): inflated within
 * --max-message (1009 past it, checked as it grows), UTF-8 checked on the
 * inflated bytes (1007), corrupt deflate data 1007. */
static void handle_compressed(struct conn *c, const struct ws_event *ev)
{
	uint16_t code = ws_inflate_message(ev->data, ev->len,
					   cs.cfg->max_message, 1, &inflated);

	if (code != 0) {
		metrics.protocol_close++;
		log_info("conn.inflate_error", "conn=%llu code=%u",
			 (unsigned long long)c->s.id, code);
		conn_close(c, code,
			   code == WS_CLOSE_BAD_DATA
				   ? "invalid compressed data or UTF-8"
				   : close_reason(code));
	} else {
		metrics.inflated++;
		proto_handle(&c->s,
			     inflated.data ? inflated.data
					   : (const uint8_t *)"",
			     inflated.len);
	}
	ws_zbuf_trim(&inflated, INFLATED_KEEP);
}

static void handle_event(struct conn *c, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_TEXT:
		metrics.msgs_in++;
		if (ev->compressed)
			handle_compressed(c, ev);
		else
			proto_handle(&c->s, ev->data, ev->len);
		break;
	case WS_EV_PING:
		/* Pings take a token of the rate limit too (contract v2 §6):
		 * otherwise a ping flood is answered without end. */
		if (proto_rate_check(&c->s, NULL) == 0)
			conn_send_ping_pong(c, WS_OP_PONG, ev->data, ev->len);
		break;
	case WS_EV_BINARY: /* only with binary_ok, which upgrade.c leaves 0 */
		conn_close(c, WS_CLOSE_UNSUPPORTED,
			   close_reason(WS_CLOSE_UNSUPPORTED));
		break;
	case WS_EV_PONG:
		/* Read and dropped, but not for free: unsolicited pongs were a
		 * flood nothing limited. */
		proto_rate_check(&c->s, NULL);
		break;
	case WS_EV_NONE:
		break;
	case WS_EV_CLOSE: {
		uint16_t code = ev->close_code == WS_CLOSE_NO_STATUS
					? WS_CLOSE_NORMAL
					: ev->close_code;
		conn_close(c, code, NULL);
		break;
	}
	case WS_EV_ERROR:
		metrics.protocol_close++;
		log_info("conn.protocol_error", "conn=%llu code=%u",
			 (unsigned long long)c->s.id, ev->close_code);
		conn_close(c, ev->close_code, close_reason(ev->close_code));
		break;
	}
}

/* Feed received bytes to the frame parser, one event at a time. Life
 * (contract §3: any frame received) is a complete frame, not a byte: a
 * frame trickled a byte at a time does not hold off --idle-timeout. A
 * frame or message started must be complete within --message-timeout
 * (conn_tick), pings between its fragments or not: msg_since is when the
 * parser last left the state of holding nothing unfinished. */
static void read_frames(struct conn *c, const uint8_t *p, size_t n)
{
	if (c->sse)
		return; /* an SSE client has nothing to say: dropped */
	uint32_t frames = c->parser.frames_read;
	int64_t now = mono_ms();
	int finished = 0;

	while (c->state == CONN_OPEN && n > 0) {
		struct ws_event ev;
		size_t used = ws_parser_feed(&c->parser, p, n, &ev);
		p += used;
		n -= used;
		if (ev.type != WS_EV_NONE && !ws_parser_partial(&c->parser))
			finished = 1;
		handle_event(c, &ev);
		if (ev.type == WS_EV_ERROR)
			break;
	}
	if (c->state == CONN_DEAD)
		return;
	if (c->parser.frames_read != frames)
		c->last_rx = now;
	if (!ws_parser_partial(&c->parser))
		c->msg_since = 0;
	else if (finished || c->msg_since == 0)
		c->msg_since = now;
}

/* Judge the head in c->hs; once upgraded, frames sent right behind the
 * head: what is left in hs, then p (the rest of this read). */
static void handshake_step(struct conn *c, const uint8_t *p, size_t n)
{
	size_t head = 0, extra;
	char *hs;
	int rc = upgrade_handshake(c, &head);

	if (rc == HS_PAUSED && n > 0) {
		/* More than the head buffer holds, before our answer. */
		conn_hook_free(c);
		upgrade_refuse(c, 400, "data sent before the upgrade");
		return;
	}
	if (rc == 0 && c->hs_len >= WS_HS_MAX_BYTES)
		upgrade_refuse(c, 400, "request head too large");
	if (rc != 1 || c->state != CONN_OPEN)
		return;
	extra = c->hs_len - head;
	hs = c->hs;
	c->hs = NULL;
	c->hs_len = 0;
	read_frames(c, (const uint8_t *)hs + head, extra);
	free(hs);
	read_frames(c, p, n);
}

/* Bytes of the request head: kept (growing, up to WS_HS_MAX_BYTES) only
 * until the head is complete (or, while --auth-url is asked, answered).
 * Bytes after the head are frames. */
static void read_handshake(struct conn *c, const uint8_t *p, size_t n)
{
	size_t room = WS_HS_MAX_BYTES - c->hs_len, take = n < room ? n : room;

	c->hs = xrealloc(c->hs, c->hs_len + take + 1);
	memcpy(c->hs + c->hs_len, p, take);
	c->hs_len += (uint32_t)take;
	handshake_step(c, p + take, n - take);
}

/* The answer of --auth-url: the handshake runs again and takes it. */
static void hook_answer(void *arg, enum auth_hook_status st,
			const struct auth_identity *id)
{
	struct conn *c = arg;

	c->hook->wait = NULL;
	c->hook->status = st;
	c->hook->id = *id;
	conn_watch(c, EV_READ);
	handshake_step(c, NULL, 0);
	if (c->hook && c->hook->wait == NULL)
		conn_hook_free(c); /* not taken: the head changed meaning */
}

/* One read; 1 when the transport holds more that the fd will not signal. */
static int conn_readable(struct conn *c)
{
	ssize_t n = transport_read(&c->tp, rbuf, sizeof(rbuf));

	if (n == NET_WANT_READ || n == NET_WANT_WRITE)
		return 0;
	if (n <= 0) {
		if (c->state == CONN_OPEN) {
			const char *uid = broker_uid(&c->s);
			log_info("conn.gone", "conn=%llu uid=%s reason=%s",
				 (unsigned long long)c->s.id,
				 log_val(uid ? uid : "-"),
				 n == 0 ? "eof" : "error");
		}
		conn_kill(c);
		return 0;
	}
	metrics.bytes_in += (uint64_t)n;
	switch (c->state) {
	case CONN_HANDSHAKE:
		read_handshake(c, rbuf, (size_t)n);
		break;
	case CONN_OPEN:
		read_frames(c, rbuf, (size_t)n);
		break;
	default:
		break; /* closing: what the peer still sends is dropped */
	}
	return c->state != CONN_DEAD && transport_pending(&c->tp) > 0;
}

/* The transport's own handshake (TLS), before the HTTP head: 1 done. */
static int transport_ready(struct conn *c)
{
	int r;

	if (c->tp_ready)
		return 1;
	r = c->tp.ops->handshake(&c->tp);
	if (r == 0) {
		c->tp_ready = 1;
		/* a step may have waited for the fd to be writable */
		if (c->out == NULL)
			conn_watch(c, EV_READ);
		return 1;
	}
	if (r == NET_WANT_WRITE)
		conn_watch(c, EV_READ | EV_WRITE);
	else if (r == NET_WANT_READ)
		conn_watch(c, EV_READ);
	else {
		/* only TLS has a handshake: the reason is OpenSSL's */
		log_info("conn.tls.error", "conn=%llu remote=%s msg=%s",
			 (unsigned long long)c->s.id, c->remote,
			 log_val(tls_error()));
		conn_kill(c);
	}
	return 0;
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;

	if (!transport_ready(c))
		return;
	if (what & EV_WRITE)
		conn_write_out(c);
	if (!(what & EV_READ))
		return;
	for (int i = 0; i < PENDING_READS; i++) {
		if (!conn_readable(c))
			return;
	}
	/* Stopped early with decrypted bytes in the transport, which the fd
	 * will not signal again: come back on the next turn of the loop. */
	event_active(&c->ev, EV_READ, 0);
}

/* ---- accept ---- */

/* Refused at accept, before anything is read or allocated: counted like
 * the refusals after the head (503, contract §2), logged in a count. On a
 * TLS port only closed: a 503 would need the TLS handshake first. */
static void refuse_at_accept(int fd, const char *why)
{
	metrics.refused[REFUSE_LIMIT]++;
	net_refuse_fd(fd, IP_WS, cs.tls ? NULL : why);
	evutil_closesocket(fd);
}

void conn_accept(int fd, const struct sockaddr *sa, int salen)
{
	struct conn *c;
	char remote[48];
	int one = 1, counted;

	(void)salen;
	net_addr_string(sa, remote, sizeof(remote));
	/* Every socket counts from its accept to its close: against the
	 * port's cap, which keeps the descriptors the broker needs, and
	 * against --max-per-ip by its peer address, handshakes too, so one
	 * address cannot hold the port. A trusted proxy speaks for many
	 * clients: its sockets are counted by the forwarded address once the
	 * head is read (upgrade.c), bounded until then by the cap. */
	if (cs.nsockets >= cs.sockets_max) {
		refuse_at_accept(fd, "connection limit reached");
		return;
	}
	counted = !net_trusted_proxy(remote);
	if (counted && cs.cfg->max_per_ip > 0 &&
	    net_ip_count(remote, IP_WS) >= cs.cfg->max_per_ip) {
		refuse_at_accept(fd, "too many connections from this address");
		return;
	}
	c = xcalloc(1, sizeof(*c));
	evutil_make_socket_nonblocking(fd);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cs.tls == NULL && cs.uring)
		net_uring_init(&c->tp, fd, conn_sent, c);
	else if (cs.tls == NULL)
		net_tcp_init(&c->tp, fd);
	else if (net_tls_init(&c->tp, cs.tls, fd) < 0) {
		free(c);
		refuse_at_accept(fd, "out of memory");
		return;
	}
	c->tp_ready = c->tp.ops->handshake == NULL;
	session_init(&c->s, &conn_sink, ++cs.next_id);
	c->state = CONN_HANDSHAKE;
	c->deadline = mono_ms() + (int64_t)cs.cfg->handshake_timeout * 1000;
	memcpy(c->remote, remote, sizeof(c->remote));
	if (counted)
		c->ip = net_ip_hold(remote, IP_WS);
	c->next = cs.all;
	if (cs.all)
		cs.all->prev = c;
	cs.all = c;
	cs.nsockets++;
	c->watching = EV_READ;
	event_assign(&c->ev, cs.base, fd, EV_READ | EV_PERSIST, conn_io_cb, c);
	event_add(&c->ev, NULL);
}

/* ---- timers ---- */

/* Heartbeats, idle and handshake deadlines, token expiry. A few times a
 * second. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	const struct config *cfg = cs.cfg;
	int64_t now = mono_ms(), wall = now_ms();
	struct conn *c, *next;
	(void)fd;
	(void)what;
	(void)arg;

	for (c = cs.all; c; c = next) {
		next = c->next;
		switch (c->state) {
		case CONN_HANDSHAKE:
			if (now >= c->deadline) {
				metrics.refused[REFUSE_TIMEOUT]++;
				log_info("conn.refused",
					 "conn=%llu remote=%s reason=timeout",
					 (unsigned long long)c->s.id,
					 c->remote);
				conn_kill(c);
			}
			break;
		case CONN_REFUSING:
		case CONN_CLOSING:
			if (now >= c->deadline)
				conn_kill(c);
			break;
		case CONN_OPEN:
			if (session_check_expiry(&c->s, wall)) {
				/* closed 4001 */
			} else if (cfg->message_timeout > 0 && c->msg_since &&
				   now - c->msg_since >=
					   (int64_t)cfg->message_timeout *
						   1000) {
				/* It holds up to --max-message meanwhile. */
				metrics.idle_close++;
				conn_close(c, WS_CLOSE_POLICY,
					   "message not completed in time");
			} else if (cfg->idle_timeout > 0 && c->sse == NULL &&
				   now - c->last_rx >=
					   (int64_t)cfg->idle_timeout * 1000) {
				metrics.idle_close++;
				conn_close(c, WS_CLOSE_GOING_AWAY,
					   "idle timeout");
			} else if (cfg->heartbeat > 0 &&
				   now - c->last_ping >=
					   (int64_t)cfg->heartbeat * 1000) {
				c->last_ping = now;
				/* An SSE client never speaks (no idle
				 * timeout): a comment keeps proxies open. */
				if (c->sse)
					sse_heartbeat(c);
				else
					conn_send_ping_pong(c, WS_OP_PING, NULL,
							    0);
			}
			break;
		case CONN_DEAD:
			break;
		}
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	conn_flush_all();
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	reap();
	if (cs.stopping && cs.nsockets == 0)
		event_base_loopbreak(cs.base);
}

/* ---- the layer ---- */

void conns_init(struct event_base *base, const struct config *cfg)
{
	struct timeval tick = {0, TICK_MS * 1000};

	memset(&cs, 0, sizeof(cs));
	cs.cfg = cfg;
	cs.base = base;
	cs.io_cb = conn_io_cb;
	cs.hook_answer = hook_answer;
	cs.sockets_max = cfg->max_connections;
	cs.flush_ev = event_new(base, -1, 0, flush_cb, NULL);
	cs.reap_ev = event_new(base, -1, 0, reap_cb, NULL);
	cs.tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	if (cs.flush_ev == NULL || cs.reap_ev == NULL || cs.tick_ev == NULL)
		fatal("event_new failed");
	event_add(cs.tick_ev, &tick);
	/* With --tls-cert every WebSocket connection is TLS and writes
	 * through OpenSSL: no ring. */
	if (cfg->io_uring && cfg->tls_cert)
		log_info("io", "io=epoll requested=uring reason=%s",
			 log_val("--tls-cert: TLS connections write through "
				 "OpenSSL"));
	else
		cs.uring = net_io_start(base, cfg->io_uring);
}

void conns_set_cap(int sockets_max)
{
	cs.sockets_max = sockets_max;
}

void conns_set_hook(struct auth_hook *h)
{
	cs.hook = h;
}

void conns_set_tls(struct tls_ctx *t)
{
	cs.tls = t;
}

void conns_stop(void)
{
	struct conn *c, *next;

	cs.stopping = 1;
	for (c = cs.all; c; c = next) {
		next = c->next;
		if (c->state == CONN_OPEN)
			conn_close(c, WS_CLOSE_GOING_AWAY,
				   "server shutting down");
		else if (c->state == CONN_HANDSHAKE)
			conn_kill(c);
	}
	if (cs.nsockets == 0)
		event_base_loopbreak(cs.base);
}

void conns_close_all(void)
{
	for (struct conn *c = cs.all; c; c = c->next)
		conn_kill(c);
	reap();
	/* Those with writes in flight: their completions (cancelled) come
	 * in the drain and queue them for the reap again. */
	if (cs.all) {
		net_io_drain();
		reap();
	}
}

void conns_finish(void)
{
	conns_close_all();
	if (cs.flush_ev)
		event_free(cs.flush_ev);
	if (cs.reap_ev)
		event_free(cs.reap_ev);
	if (cs.tick_ev)
		event_free(cs.tick_ev);
	cs.flush_ev = cs.reap_ev = cs.tick_ev = NULL;
	net_io_finish();
	ws_zbuf_free(&inflated);
	conn_deflate_finish();
	ws_deflate_cleanup();
}

int conns_open(void)
{
	return cs.nconns;
}

int conns_sockets(void)
{
	return cs.nsockets;
}

void conns_each(void (*fn)(void *arg, const struct conn_info *i), void *arg)
{
	for (struct conn *c = cs.all; c; c = c->next) {
		struct conn_info i = {&c->s, c->remote, c->since_ms,
				      conn_out_buffered(c)};
		if (c->state == CONN_OPEN && c->s.open)
			fn(arg, &i);
	}
}
