/*
 * A WebSocket connection on one event: the HTTP upgrade, frames in and
 * out, heartbeats, closing. The codec (ws/frame.c, ws/handshake.c) does the
 * parsing; this file only moves bytes and applies policy.
 *
 * A connection is never freed inside its own callback: conn_kill() marks it
 * dead and the reap event frees it once the stack has unwound.
 */
#include "basestation/addr.h"
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "basestation/metrics.h"
#include "basestation/shbuf.h"
#include "basestation/store.h"
#include "basestation/tasks.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define CLOSE_LINGER_MS	 2000
#define REFUSE_LINGER_MS 2000
#define SLOW_CLOSE_MS	 5000
/* At most this many Sec-WebSocket-Protocol values are tried as tokens: each
 * try costs a hash and a database lookup, and one request head can offer
 * thousands of values. Browsers offer one or two. */
#define MAX_TOKEN_CANDIDATES 4
/* Close code for a connection whose token was revoked or expired
 * (contract §10). */
#define CLOSE_TOKEN 4001
/* Token changes handled per tick (the rest on the next ones). */
#define TOKEN_CHANGES_MAX 1024

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

static int retriable(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* Every read lands here first; frames are parsed straight out of it (the
 * parser keeps what it must across reads), so an idle connection holds no
 * input buffer at all. */
static uint8_t rbuf[64 * 1024];

struct conn *conn_find(uint64_t id)
{
	struct conn *c;
	HASH_FIND(hh, srv->conns, &id, sizeof(id), c);
	return c;
}

uint64_t conn_out_buffered(const struct conn *c)
{
	return c->out ? evbuffer_get_length(c->out) : 0;
}

int64_t conn_delivered_seq(const struct conn *c)
{
	return conn_out_buffered(c) == 0 ? router_delivered(c) : c->sent_seq;
}

/* ---- I/O: one event per connection; output flushed once per loop turn ---- */

/* Change what the event waits for (rare: only when the kernel's send
 * buffer is full, or it drains again). */
static void conn_watch(struct conn *c, short what)
{
	if (c->watching == what)
		return;
	event_del(&c->ev);
	event_assign(&c->ev, srv->base, c->fd, (short)(what | EV_PERSIST),
		     conn_io_cb, c);
	event_add(&c->ev, NULL);
	c->watching = what;
}

/* The output buffer, created on first use. The connection joins the list
 * flushed at the end of this loop turn: many frames queued in one turn
 * leave in one writev. */
static struct evbuffer *conn_out(struct conn *c)
{
	if (c->out == NULL && (c->out = evbuffer_new()) == NULL)
		fatal("out of memory");
	if (!c->in_flush && !(c->watching & EV_WRITE)) {
		c->in_flush = 1;
		c->fnext = srv->flush;
		srv->flush = c;
		event_active(srv->flush_ev, EV_TIMEOUT, 0);
	}
	return c->out;
}

static void conn_kill(struct conn *c);

/* Output empty: free the buffer; continue a paced replay; finish a close. */
static void conn_drained(struct conn *c)
{
	evbuffer_free(c->out);
	c->out = NULL;
	c->sent_seq = router_delivered(c);
	conn_watch(c, EV_READ);
	if (c->state == CONN_OPEN && c->wait_drain) {
		c->wait_drain = 0;
		router_replay_continue_conn(c);
	} else if ((c->state == CONN_CLOSING || c->state == CONN_REFUSING) &&
		   !c->shut) {
		/* All written: half-close and linger for the peer's FIN so an
		 * unread byte on our side does not turn into an RST that
		 * destroys the close frame in flight. */
		shutdown(c->fd, SHUT_WR);
		c->shut = 1;
		c->deadline = mono_ms() + CLOSE_LINGER_MS;
	}
}

/* Write what the kernel takes; wait for EV_WRITE when it takes no more. */
static void conn_write_out(struct conn *c)
{
	if (c->state == CONN_DEAD || c->out == NULL)
		return;
	while (evbuffer_get_length(c->out) > 0) {
		int n = evbuffer_write(c->out, c->fd);
		if (n > 0)
			continue;
		if (n < 0 && retriable(errno))
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
	while ((c = srv->flush) != NULL) {
		srv->flush = c->fnext;
		c->in_flush = 0;
		conn_write_out(c);
	}
}

/* Mark dead; freed by conn_reap() from its own event. */
static void conn_kill(struct conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	if (c->state == CONN_OPEN || c->state == CONN_CLOSING)
		registry_detach(c);
	c->state = CONN_DEAD;
	event_del(&c->ev);
	c->qnext = srv->reap;
	srv->reap = c;
	event_active(srv->reap_ev, EV_TIMEOUT, 0);
}

void conn_close_now(struct conn *c)
{
	conn_kill(c);
}

static void conn_destroy(struct conn *c)
{
	struct held *h, *hn;

	HASH_DEL(srv->conns, c);
	srv->nsockets--;
	if (c->ip)
		registry_ip_put(c->ip, IP_WS);
	for (h = c->held_head; h; h = hn) {
		hn = h->next;
		shbuf_unref(h->frame);
		free(h);
	}
	tasks_unsubscribe_all(c);
	json_decref(c->replay_ref);
	ws_parser_finish(&c->parser);
	if (c->out)
		evbuffer_free(c->out);
	free(c->hs);
	evutil_closesocket(c->fd);
	free(c);
}

void conn_reap(void)
{
	/* A dead connection may still be on the flush list: drain the list
	 * first (dead ones are skipped) so nothing points at freed memory. */
	conn_flush_all();
	while (srv->reap) {
		struct conn *c = srv->reap;
		srv->reap = c->qnext;
		/* It may still sit in the replay queue; unlink it there. */
		if (c->in_replay_queue) {
			struct conn **pp = &srv->replay_head;
			srv->replay_tail = NULL;
			while (*pp) {
				if (*pp == c)
					*pp = c->rnext;
				else {
					srv->replay_tail = *pp;
					pp = &(*pp)->rnext;
				}
			}
		}
		conn_destroy(c);
	}
}

/* Refused at accept, before anything is read or allocated: counted like
 * the refusals after the head (503, contract §2), logged in a count. */
static void refuse_at_accept(int fd, const char *why)
{
	metrics.refused[REFUSE_LIMIT]++;
	server_refuse_fd(fd, IP_WS, why);
	evutil_closesocket(fd);
}

void conn_accept(int fd, const struct sockaddr *sa, int salen)
{
	struct conn *c;
	char remote[48];
	int one = 1, counted;

	(void)salen;
	server_addr_string(sa, remote, sizeof(remote));
	/* Every socket counts from its accept to its close: against the
	 * port's cap, which keeps the descriptors the broker needs, and
	 * against --max-per-ip by its peer address, handshakes too, so one
	 * address cannot hold the port. A trusted proxy speaks for many
	 * clients: its sockets are counted by the forwarded address once the
	 * head is read (conn_handshake), bounded until then by the cap. */
	if (srv->nsockets >= srv->ws_sockets_max) {
		refuse_at_accept(fd, "connection limit reached");
		return;
	}
	counted = !server_trusted_proxy(remote);
	if (counted && srv->cfg->max_per_ip > 0 &&
	    registry_ip_count(remote, IP_WS) >= srv->cfg->max_per_ip) {
		refuse_at_accept(fd, "too many connections from this address");
		return;
	}
	c = xcalloc(1, sizeof(*c));
	evutil_make_socket_nonblocking(fd);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->id = ++srv->next_conn_id;
	c->state = CONN_HANDSHAKE;
	c->deadline = mono_ms() + (int64_t)srv->cfg->handshake_timeout * 1000;
	memcpy(c->remote, remote, sizeof(c->remote));
	if (counted)
		c->ip = registry_ip_hold(remote, IP_WS);
	HASH_ADD(hh, srv->conns, id, sizeof(c->id), c);
	srv->nsockets++;
	c->watching = EV_READ;
	event_assign(&c->ev, srv->base, fd, EV_READ | EV_PERSIST, conn_io_cb,
		     c);
	event_add(&c->ev, NULL);
}

/* ---- refusing an upgrade ---- */

static void conn_refuse(struct conn *c, int status, const char *why)
{
	struct evbuffer *out = conn_out(c);
	enum refuse_reason r;

	switch (status) {
	case 401:
		r = REFUSE_UNAUTHORIZED;
		break;
	case 403:
		r = REFUSE_FORBIDDEN;
		break;
	case 404:
		r = REFUSE_NOT_FOUND;
		break;
	case 426:
		r = REFUSE_VERSION;
		break;
	case 503:
		r = REFUSE_LIMIT;
		break;
	default:
		r = REFUSE_BAD_REQUEST;
	}
	metrics.refused[r]++;
	log_info("conn.refused", "conn=%llu remote=%s status=%d reason=%s",
		 (unsigned long long)c->id, c->remote, status, log_val(why));
	evbuffer_add_printf(
		out,
		"HTTP/1.1 %d %s\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Length: %zu\r\n"
		"Connection: close\r\n"
		"%s"
		"\r\n%s\n",
		status, http_reason(status), strlen(why) + 1,
		status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", why);
	c->state = CONN_REFUSING;
	c->deadline = mono_ms() + REFUSE_LINGER_MS;
	free(c->hs);
	c->hs = NULL;
	c->hs_len = 0;
}

/* ---- the upgrade ---- */

static void trim(const char **p, size_t *n)
{
	while (*n && (**p == ' ' || **p == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* Verify one token candidate; 0 ok. */
static int check_token(const char *tok, size_t len, struct auth_identity *id)
{
	int64_t now = now_ms();
	if (len == 0 || len > AUTH_TOKEN_MAX)
		return -1;
	if (srv->cfg->jwt_secret && memchr(tok, '.', len) &&
	    auth_jwt_verify(srv->cfg->jwt_secret, tok, len, now, id) == 0)
		return 0;
	return auth_token_verify(store_db(srv->store), tok, len, now, id) == 0
		       ? 0
		       : -1;
}

/* Hostname part of an origin or Host value: strip scheme, port, path. */
static void host_of(const char *p, size_t n, char *out, size_t outsz)
{
	const char *s = memmem(p, n, "://", 3);
	size_t k = 0;
	if (s) {
		n -= (size_t)(s + 3 - p);
		p = s + 3;
	}
	if (n && *p == '[') {
		while (k < n && p[k] != ']')
			k++;
		if (k < n)
			k++;
	} else {
		while (k < n && p[k] != ':' && p[k] != '/')
			k++;
	}
	if (k >= outsz)
		k = outsz - 1;
	memcpy(out, p, k);
	out[k] = '\0';
}

static int origin_allowed(const struct ws_request *req)
{
	const struct config *cfg = srv->cfg;
	char oh[256], hh[256];

	if (req->origin.p == NULL)
		return 1; /* not a browser */
	if (cfg->origin_any)
		return 1;
	if (cfg->norigins > 0) {
		for (int i = 0; i < cfg->norigins; i++) {
			size_t l = strlen(cfg->origins[i]);
			while (l && cfg->origins[i][l - 1] == '/')
				l--;
			if (l == req->origin.n &&
			    strncasecmp(cfg->origins[i], req->origin.p, l) == 0)
				return 1;
		}
		return 0;
	}
	if (req->host.p == NULL)
		return 0;
	host_of(req->origin.p, req->origin.n, oh, sizeof(oh));
	host_of(req->host.p, req->host.n, hh, sizeof(hh));
	return oh[0] && strcasecmp(oh, hh) == 0;
}

/* The client address: the peer, or the last X-Forwarded-For entry when the
 * peer is a proxy the operator named. */
static void apply_forwarded(struct conn *c, const struct ws_request *req)
{
	const char *p, *comma;
	size_t n;
	char ip[64];
	struct addr a;

	if (req->forwarded_for.p == NULL || !server_trusted_proxy(c->remote))
		return;
	p = req->forwarded_for.p;
	n = req->forwarded_for.n;
	comma = NULL;
	for (size_t i = 0; i < n; i++)
		if (p[i] == ',')
			comma = p + i;
	if (comma) {
		n -= (size_t)(comma + 1 - p);
		p = comma + 1;
	}
	trim(&p, &n);
	if (n == 0 || n >= sizeof(ip))
		return;
	memcpy(ip, p, n);
	ip[n] = '\0';
	/* Canonical text, as for peers: "0::1" is "::1". */
	if (addr_parse(ip, 0, &a) == 0)
		addr_format(&a, c->remote, sizeof(c->remote));
}

static void conn_open(struct conn *c, const struct auth_identity *id);

/* Parse and judge the request head in c->hs. Returns 1 when the
 * connection was upgraded (*head_len = bytes of the head) or refused, 0
 * when more bytes are needed. */
static int conn_handshake(struct conn *c, size_t *head_len)
{
	struct evbuffer *out;
	size_t len = c->hs_len;
	size_t take = len > WS_HS_MAX_BYTES ? WS_HS_MAX_BYTES : len;
	const char *buf = c->hs;
	struct ws_request req;
	struct auth_identity id;
	char tmp[AUTH_TOKEN_MAX + 1], accept[29], uidq[AUTH_UID_MAX + 2];
	const char *proto_echo = NULL, *tok = NULL;
	size_t proto_echo_len = 0, tok_len = 0;
	int n, head, status, have_token = 0, offered_v1 = 0, tried = 0;

	n = head = ws_request_parse(buf, take, &req);
	if (n == WS_HS_NEED_MORE) {
		if (len >= WS_HS_MAX_BYTES) {
			conn_refuse(c, 400, "request head too large");
			return 1;
		}
		return 0;
	}
	if (n < 0) {
		conn_refuse(c, 400, "malformed request head");
		return 1;
	}
	status = ws_request_check(&req);
	if (status) {
		conn_refuse(c, status,
			    status == 404   ? "no such path; use /ws"
			    : status == 426 ? "Sec-WebSocket-Version must be 13"
					    : "not a valid WebSocket upgrade");
		return 1;
	}
	apply_forwarded(c, &req);
	if (srv->stopping || srv->nconns >= srv->cfg->max_connections) {
		conn_refuse(c, 503, "connection limit reached");
		return 1;
	}
	/* Through a trusted proxy: counted by the forwarded address from
	 * here on (the others were counted at the accept). */
	if (c->ip == NULL && srv->cfg->max_per_ip > 0 &&
	    registry_ip_count(c->remote, IP_WS) >= srv->cfg->max_per_ip) {
		conn_refuse(c, 503, "too many connections from this address");
		return 1;
	}

	/* Identity: query token, then Bearer, then subprotocol values. */
	int qlen = ws_query_get(req.query.p, req.query.n, "token", tmp,
				sizeof(tmp));
	if (qlen >= 0) {
		have_token = 1;
		tok = tmp;
		tok_len = (size_t)qlen;
		if (check_token(tmp, (size_t)qlen, &id) < 0)
			goto unauthorized;
	} else if (req.authorization.p && req.authorization.n > 7 &&
		   strncasecmp(req.authorization.p, "Bearer ", 7) == 0) {
		const char *t = req.authorization.p + 7;
		size_t tl = req.authorization.n - 7;
		trim(&t, &tl);
		have_token = 1;
		tok = t;
		tok_len = tl;
		if (check_token(t, tl, &id) < 0)
			goto unauthorized;
	}
	if (req.protocol.p) {
		const char *p = req.protocol.p, *end = p + req.protocol.n;
		while (p < end) {
			const char *comma = memchr(p, ',', (size_t)(end - p));
			const char *e = comma ? comma : end;
			size_t l = (size_t)(e - p);
			const char *v = p;
			trim(&v, &l);
			if (l == 14 && memcmp(v, "basestation.v1", 14) == 0) {
				offered_v1 = 1;
			} else if (l && !have_token &&
				   tried++ < MAX_TOKEN_CANDIDATES) {
				if (check_token(v, l, &id) == 0) {
					have_token = 1;
					proto_echo = v;
					proto_echo_len = l;
				}
			} else if (l && tok && !proto_echo && l == tok_len &&
				   memcmp(v, tok, l) == 0) {
				/* The token accepted from the query or the
				 * Bearer header is offered here too: echo it,
				 * or a browser fails the connection. */
				proto_echo = v;
				proto_echo_len = l;
			}
			p = e + 1;
		}
		if (!have_token && req.protocol.n > 0 && !offered_v1)
			goto unauthorized;
	}
	if (!have_token) {
		conn_refuse(c, 401, "missing token");
		return 1;
	}

	n = ws_query_get(req.query.p, req.query.n, "uid", uidq, sizeof(uidq));
	if (n == -1)
		n = ws_query_get(req.query.p, req.query.n, "id", uidq,
				 sizeof(uidq));
	if (n != -1 && (n < 0 || strcmp(uidq, id.uid) != 0)) {
		conn_refuse(c, 403, "uid does not match the token");
		return 1;
	}
	if (!origin_allowed(&req)) {
		conn_refuse(c, 403, "origin not allowed");
		return 1;
	}
	/* Resume parameters, judged before the upgrade: a since that is
	 * not a seq is a malformed request (contract §2), not "no since". */
	int64_t since = -1;
	int epoch_ok = 1;
	char num[32], ep[64];
	n = ws_query_get(req.query.p, req.query.n, "since", num, sizeof(num));
	if (n != -1) {
		char *e;
		long long v;
		errno = 0;
		v = strtoll(num, &e, 10);
		if (n <= 0 || num[0] < '0' || num[0] > '9' || *e != '\0' ||
		    errno) {
			conn_refuse(c, 400, "since must be a sequence number");
			return 1;
		}
		since = v;
	}
	if (ws_query_get(req.query.p, req.query.n, "epoch", ep, sizeof(ep)) >=
	    0)
		epoch_ok = strcmp(ep, store_epoch(srv->store)) == 0;

	/* Accepted. */
	out = conn_out(c);
	ws_accept_key(req.key.p, req.key.n, accept);
	evbuffer_add_printf(out,
			    "HTTP/1.1 101 Switching Protocols\r\n"
			    "Upgrade: websocket\r\n"
			    "Connection: Upgrade\r\n"
			    "Sec-WebSocket-Accept: %s\r\n",
			    accept);
	if (offered_v1)
		evbuffer_add_printf(
			out, "Sec-WebSocket-Protocol: basestation.v1\r\n");
	else if (proto_echo)
		evbuffer_add_printf(out, "Sec-WebSocket-Protocol: %.*s\r\n",
				    (int)proto_echo_len, proto_echo);
	evbuffer_add(out, "\r\n", 2);

	*head_len = (size_t)head;
	conn_open(c, &id);
	if (c->state != CONN_OPEN)
		return 1;
	if (since >= 0)
		router_replay_start(c, since, 1, epoch_ok, NULL);
	else
		router_replay_start(c, -1, 0, 1, NULL);
	return 1;

unauthorized:
	conn_refuse(c, 401, "invalid, revoked or expired token");
	return 1;
}

/* The connection remembers its token: it is closed when the token
 * expires (conn_tick) or is revoked (check_token_changes). */
static void remember_token(struct conn *c, const struct auth_identity *id)
{
	c->token_exp = id->expires_at;
	c->token_opaque = id->opaque ? 1 : 0;
	if (id->opaque)
		memcpy(c->token_hash, id->hash, sizeof(c->token_hash));
}

static void conn_open(struct conn *c, const struct auth_identity *id)
{
	json_t *hello;

	c->state = CONN_OPEN;
	c->role = id->role;
	c->since_ms = now_ms();
	c->last_rx = c->last_ping = mono_ms();
	c->tokens = srv->cfg->burst;
	c->tokens_at = c->last_rx;
	ws_parser_init(&c->parser, srv->cfg->max_message, 1);
	c->parser.max_frames = (uint32_t)srv->cfg->max_frames;
	if (c->ip == NULL)
		c->ip = registry_ip_hold(c->remote, IP_WS);
	remember_token(c, id);
	registry_attach(c, id->uid);
	srv->nconns++;
	metrics.conns_opened++;
	log_info("conn.open", "conn=%llu uid=%s role=%s remote=%s token=%s",
		 (unsigned long long)c->id, log_val(id->uid),
		 auth_role_name(id->role), c->remote,
		 id->prefix[0] ? id->prefix : "jwt");
	hello = json_pack("{s:s, s:s, s:I, s:i, s:I, s:s}", "type", "connect",
			  "uid", id->uid, "conn", (json_int_t)c->id,
			  "heartbeat", srv->cfg->heartbeat, "seq",
			  (json_int_t)srv->committed_seq, "epoch",
			  store_epoch(srv->store));
	conn_send_json(c, hello);
}

/* ---- frames out ---- */

static void queue_bytes(struct conn *c, const void *hdr, size_t hl,
			const void *payload, size_t pl)
{
	struct evbuffer *out = conn_out(c);
	evbuffer_add(out, hdr, hl);
	if (pl)
		evbuffer_add(out, payload, pl);
	metrics.msgs_out++;
	metrics.bytes_out += hl + pl;
}

void conn_cut_slow(struct conn *c, uint64_t buffered)
{
	metrics.drop_slow++;
	log_warn("conn.slow", "conn=%llu uid=%s buffered=%llu",
		 (unsigned long long)c->id,
		 c->user ? log_val(c->user->uid) : "-",
		 (unsigned long long)buffered);
	c->slow = 1;
	conn_close(c, WS_CLOSE_POLICY, "slow consumer");
}

/* 1 when c has more buffered than allowed: then it is cut. */
static int check_slow(struct conn *c, size_t adding)
{
	/* One frame larger than the limit still goes to a client that has
	 * nothing pending; otherwise it could never get past it. */
	if (conn_out_buffered(c) + adding <= srv->cfg->max_outbuf ||
	    conn_out_buffered(c) == 0)
		return 0;
	/* Output queued in this very turn is not slowness: hand it to the
	 * kernel now, unless the kernel is known to be full already. */
	if (!(c->watching & EV_WRITE)) {
		conn_write_out(c);
		if (c->state != CONN_OPEN)
			return 1;
		if (conn_out_buffered(c) + adding <= srv->cfg->max_outbuf)
			return 0;
	}
	conn_cut_slow(c, conn_out_buffered(c));
	return 1;
}

void conn_send_frame(struct conn *c, struct shbuf *frame)
{
	if (c->state != CONN_OPEN || check_slow(c, frame->len))
		return;
	shbuf_add(conn_out(c), frame);
	metrics.msgs_out++;
	metrics.bytes_out += frame->len;
}

void conn_send_text(struct conn *c, const char *s, size_t n)
{
	uint8_t hdr[10];
	size_t hl;
	if (c->state != CONN_OPEN || check_slow(c, n + 10))
		return;
	hl = ws_frame_header(hdr, WS_OP_TEXT, n);
	queue_bytes(c, hdr, hl, s, n);
}

void conn_send_json(struct conn *c, json_t *obj)
{
	char *s;
	if (obj == NULL)
		return;
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (s == NULL)
		return;
	conn_send_text(c, s, strlen(s));
	free(s);
}

void conn_send_error(struct conn *c, const json_t *ref, const char *code,
		     const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
		      "message", msg);
	if (ref)
		json_object_set(o, "ref", (json_t *)ref);
	metrics.errors_sent++;
	conn_send_json(c, o);
}

/* Queue a control frame as is: only conn_close() uses it directly (a close
 * frame must go out even to a slow consumer); pings and pongs go through
 * send_ping_pong(). */
static void send_control(struct conn *c, enum ws_opcode op, const void *p,
			 size_t n)
{
	uint8_t hdr[10];
	size_t hl = ws_frame_header(hdr, op, n);
	queue_bytes(c, hdr, hl, p, n);
}

/* Pings and pongs count against --max-outbuf like any other output: a
 * client that pings without reading is a slow consumer (closed with 1008),
 * not a way to grow our memory. */
static void send_ping_pong(struct conn *c, enum ws_opcode op, const void *p,
			   size_t n)
{
	if (c->state != CONN_OPEN || check_slow(c, n + 2))
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
	/* Before the close frame joins the output (registry_detach reads
	 * where the next inbox starts). */
	c->sent_seq = conn_delivered_seq(c);
	send_control(c, WS_OP_CLOSE, body, 2 + rl);
	registry_detach(c);
	c->state = CONN_CLOSING;
	c->deadline = mono_ms() + (c->slow ? SLOW_CLOSE_MS : CLOSE_LINGER_MS);
	log_info("conn.close", "conn=%llu code=%u reason=%s",
		 (unsigned long long)c->id, code,
		 log_val(reason ? reason : ""));
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

/* The per-connection token bucket (--rate, --burst). Every text message
 * (however many fragments it came in: --max-frames bounds those), every
 * ping and every pong takes a token (contract v2 §6: control frames count
 * against the same limit; otherwise a ping flood is answered without end).
 * A refused frame is answered rate_limited; a client that keeps sending
 * past the bucket is closed with 1008. 0 go on, -1 refused. */
int conn_rate_check(struct conn *c, const json_t *ref)
{
	const struct config *cfg = srv->cfg;
	int64_t now;

	if (cfg->rate <= 0)
		return 0;
	now = mono_ms();
	c->tokens += (double)(now - c->tokens_at) * cfg->rate / 1000.0;
	c->tokens_at = now;
	if (c->tokens > cfg->burst) {
		c->tokens = cfg->burst;
		c->strikes = 0;
	}
	if (c->tokens >= 1.0) {
		c->tokens -= 1.0;
		return 0;
	}
	metrics.rate_limited++;
	/* Refused frames past the bucket: the client ignores rate_limited. */
	if (++c->strikes > (cfg->burst < 1000 ? (int)cfg->burst : 1000)) {
		metrics.drop_rate++;
		log_warn("conn.flood", "conn=%llu uid=%s",
			 (unsigned long long)c->id, log_val(c->user->uid));
		conn_close(c, WS_CLOSE_POLICY, "rate limit exceeded");
		return -1;
	}
	conn_send_error(c, ref, "rate_limited",
			"more than %g messages per second", cfg->rate);
	return -1;
}

static void handle_event(struct conn *c, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_TEXT:
		metrics.msgs_in++;
		commands_handle(c, ev->data, ev->len);
		break;
	case WS_EV_PING:
		if (conn_rate_check(c, NULL) == 0)
			send_ping_pong(c, WS_OP_PONG, ev->data, ev->len);
		break;
	case WS_EV_PONG:
		/* Read and dropped, but not for free: unsolicited pongs were a
		 * flood nothing limited. */
		conn_rate_check(c, NULL);
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
			 (unsigned long long)c->id, ev->close_code);
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
	if (c->parser.frames_read != frames)
		c->last_rx = now;
	if (!ws_parser_partial(&c->parser))
		c->msg_since = 0;
	else if (finished || c->msg_since == 0)
		c->msg_since = now;
}

/* Bytes of the request head: kept (growing, up to WS_HS_MAX_BYTES) only
 * until the head is complete. Bytes after the head are frames. */
static void read_handshake(struct conn *c, const uint8_t *p, size_t n)
{
	size_t room = WS_HS_MAX_BYTES - c->hs_len, take = n < room ? n : room;
	size_t head = 0, extra;
	char *hs;

	c->hs = hs = xrealloc(c->hs, c->hs_len + take + 1);
	memcpy(c->hs + c->hs_len, p, take);
	c->hs_len += (uint32_t)take;
	if (!conn_handshake(c, &head)) {
		if (c->hs_len >= WS_HS_MAX_BYTES)
			conn_refuse(c, 400, "request head too large");
		return;
	}
	if (c->state != CONN_OPEN)
		return;
	/* Frames sent right behind the head: what is left in hs, then the
	 * rest of this read. */
	extra = c->hs_len - head;
	hs = c->hs;
	c->hs = NULL;
	c->hs_len = 0;
	read_frames(c, (const uint8_t *)hs + head, extra);
	free(hs);
	read_frames(c, p + take, n - take);
}

static void conn_readable(struct conn *c)
{
	ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), 0);

	if (n < 0 && retriable(errno))
		return;
	if (n <= 0) {
		if (c->state == CONN_OPEN)
			log_info("conn.gone", "conn=%llu uid=%s reason=%s",
				 (unsigned long long)c->id,
				 log_val(c->user ? c->user->uid : "-"),
				 n == 0 ? "eof" : "error");
		conn_kill(c);
		return;
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
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;

	if (what & EV_WRITE)
		conn_write_out(c);
	if ((what & EV_READ) && c->state != CONN_DEAD)
		conn_readable(c);
}

static int hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Tokens revoked, deleted or given another expiry since the last look, by
 * this process or another one (`basestation token revoke` writes the
 * database beside the broker): the triggers of schema 003 log them in
 * token_changes, read here by seq. Nearly always that read finds nothing;
 * when it finds changes, one walk over the connections closes those whose
 * token no longer admits them. */
static void check_token_changes(void)
{
	static unsigned char hash[TOKEN_CHANGES_MAX][32];
	static int state[TOKEN_CHANGES_MAX];
	static int64_t exp[TOKEN_CHANGES_MAX];
	sqlite3 *db = store_db(srv->store);
	int64_t from = srv->token_seq, wall = now_ms();
	struct conn *c, *tmp;
	int n = auth_token_changes(db, &srv->token_seq, hash,
				   TOKEN_CHANGES_MAX);

	if (n <= 0)
		return;
	qsort(hash, (size_t)n, sizeof(hash[0]), hash_cmp);
	for (int i = 0; i < n; i++)
		state[i] = -1; /* not looked up yet */
	HASH_ITER(hh, srv->conns, c, tmp)
	{
		unsigned char(*h)[32];
		size_t i;

		if (c->state != CONN_OPEN || !c->token_opaque)
			continue;
		h = bsearch(c->token_hash, hash, (size_t)n, sizeof(hash[0]),
			    hash_cmp);
		if (h == NULL)
			continue;
		i = (size_t)(h - hash);
		if (state[i] == -1)
			state[i] = auth_token_state(db, hash[i], wall, &exp[i]);
		if (state[i] == 0)
			c->token_exp = exp[i]; /* still valid: maybe longer */
		else if (state[i] == AUTH_TOKEN_EXPIRED)
			conn_close(c, CLOSE_TOKEN, "token expired");
		else if (state[i] > 0)
			conn_close(c, CLOSE_TOKEN, "token revoked");
		else
			srv->token_seq = from; /* database error: again later */
	}
}

/* Heartbeats, idle and handshake deadlines, token expiry and revocation.
 * Called a few times a second. */
void conn_tick(int64_t now)
{
	struct conn *c, *tmp;
	const struct config *cfg = srv->cfg;
	int64_t wall = now_ms();

	check_token_changes();

	HASH_ITER(hh, srv->conns, c, tmp)
	{
		switch (c->state) {
		case CONN_HANDSHAKE:
			if (now >= c->deadline) {
				metrics.refused[REFUSE_TIMEOUT]++;
				log_info("conn.refused",
					 "conn=%llu remote=%s reason=timeout",
					 (unsigned long long)c->id, c->remote);
				conn_kill(c);
			}
			break;
		case CONN_REFUSING:
		case CONN_CLOSING:
			if (now >= c->deadline)
				conn_kill(c);
			break;
		case CONN_OPEN:
			if (c->token_exp && wall >= c->token_exp) {
				conn_close(c, CLOSE_TOKEN, "token expired");
			} else if (cfg->message_timeout > 0 && c->msg_since &&
				   now - c->msg_since >=
					   (int64_t)cfg->message_timeout *
						   1000) {
				/* It holds up to --max-message meanwhile. */
				metrics.idle_close++;
				conn_close(c, WS_CLOSE_POLICY,
					   "message not completed in time");
			} else if (cfg->idle_timeout > 0 &&
				   now - c->last_rx >=
					   (int64_t)cfg->idle_timeout * 1000) {
				metrics.idle_close++;
				conn_close(c, WS_CLOSE_GOING_AWAY,
					   "idle timeout");
			} else if (cfg->heartbeat > 0 &&
				   now - c->last_ping >=
					   (int64_t)cfg->heartbeat * 1000) {
				c->last_ping = now;
				send_ping_pong(c, WS_OP_PING, NULL, 0);
			}
			break;
		case CONN_DEAD:
			break;
		}
	}
}
