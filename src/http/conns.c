/*
 * The HTTP port's connections: at most hc.max at once (from
 * --max-http-conns, fitted to the descriptor limit), at most --max-per-ip
 * from one address, and a deadline for each whole request
 * (--http-request-timeout) where evhttp only has an inactivity timeout, so
 * a client trickling a byte now and then cannot hold a connection.
 *
 * evhttp (libevent 2.1) accepts by itself and its accept function is not
 * exported; the one hook it calls for a new connection is the bufferevent
 * callback, inside the accept and before the socket is attached. So that
 * callback makes the bufferevent and notes it, and the connection is
 * judged once the listener's callback has returned (judge_ev, made active
 * from it and run in the same pass of the loop): by then evhttp has
 * attached the socket and set the bufferevent's callbacks, whose argument
 * is the evhttp_connection (as everywhere in evhttp). Nothing of evhttp
 * runs on the new connection in between, as its socket has not been
 * polled yet; a reference held on the bufferevent until then keeps even an
 * early failure inside evhttp from leaving a dangling pointer here.
 *
 * A refused connection gets a 503 with Retry-After written straight to the
 * socket (no request was read) and is freed; evhttp closes the socket.
 */
#include "basestation/net.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"

#include "basestation/tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uthash.h>

struct hconn {
	struct bufferevent *bev;	 /* until judged (one reference) */
	struct evhttp_connection *evcon; /* once judged */
	struct ipcount *ip;		 /* NULL: not counted per address */
	struct event *deadline_ev;
	struct hconn *pnext; /* not judged yet */
	UT_hash_handle hh;   /* hc.conns, by evcon */
};

static struct {
	struct evconnlistener *listener;
	struct event *judge_ev;
	struct hconn *conns;		       /* judged, by evcon */
	struct hconn *pending, **pending_tail; /* accepted, not judged */
	int npending;
	int n; /* judged and not closed yet */
	int max;
	const struct config *cfg;
	struct event_base *base;
	struct tls_ctx *tls; /* NULL: plain HTTP */
} hc;

static struct hconn *find(struct evhttp_connection *evcon)
{
	struct hconn *h;
	HASH_FIND_PTR(hc.conns, &evcon, h);
	return h;
}

static void arm_deadline(struct hconn *h)
{
	struct timeval tv = {hc.cfg->http_request_timeout, 0};
	if (tv.tv_sec > 0)
		evtimer_add(h->deadline_ev, &tv);
}

/* evhttp frees the connection: the last thing that happens to it. */
static void closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct hconn *h = arg;
	(void)evcon;
	HASH_DEL(hc.conns, h);
	if (h->ip)
		net_ip_put(h->ip, IP_HTTP);
	event_free(h->deadline_ev);
	free(h);
	hc.n--;
}

/* Only armed while evhttp reads a request (not while route() or a
 * worker holds one): freeing the connection then frees only evhttp's own
 * request object. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *h = arg;
	(void)fd;
	(void)what;
	log_info("http.timeout", "remote=%s timeout_s=%d",
		 h->ip ? net_ip_addr(h->ip) : "-",
		 hc.cfg->http_request_timeout);
	evhttp_connection_free(h->evcon);
}

static void refuse(struct hconn *h, evutil_socket_t fd, const char *why)
{
	/* Over TLS an answer would need the handshake first: only a close. */
	net_refuse_fd(fd, IP_HTTP, hc.tls ? NULL : why);
	evhttp_connection_free(h->evcon);
}

static void judge(struct hconn *h)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char remote[48] = "unknown";
	void *arg = NULL;
	evutil_socket_t fd;
	int max_ip = hc.cfg->max_per_ip;

	bufferevent_getcb(h->bev, NULL, NULL, NULL, &arg);
	fd = bufferevent_getfd(h->bev);
	bufferevent_decref(h->bev);
	h->bev = NULL;
	if (arg == NULL || fd < 0) {
		/* evhttp gave the connection up inside the accept (out of
		 * memory): it has closed the socket already. */
		free(h);
		return;
	}
	h->evcon = arg;
	h->deadline_ev = evtimer_new(hc.base, deadline_cb, h);
	HASH_ADD_PTR(hc.conns, evcon, h);
	evhttp_connection_set_closecb(h->evcon, closed_cb, h);
	if (++hc.n > hc.max) {
		refuse(h, fd, "too many HTTP connections");
		return;
	}
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		net_addr_string((struct sockaddr *)&ss, remote, sizeof(remote));
	/* No X-Forwarded-For here: the request is not read yet. A trusted
	 * proxy's connections are bounded by the cap alone. */
	if (!net_trusted_proxy(remote)) {
		if (max_ip > 0 && net_ip_count(remote, IP_HTTP) >= max_ip) {
			refuse(h, fd, "too many connections from this address");
			return;
		}
		h->ip = net_ip_hold(remote, IP_HTTP);
	}
	arm_deadline(h);
}

static void judge_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	http_conns_judge_pending();
}

void http_conns_judge_pending(void)
{
	struct hconn *h;
	while ((h = hc.pending) != NULL) {
		hc.pending = h->pnext;
		if (hc.pending == NULL)
			hc.pending_tail = &hc.pending;
		hc.npending--;
		judge(h);
	}
	if (hc.listener)
		net_listen_pause(hc.listener, 0);
}

/* evhttp's bufferevent callback: a connection is being accepted. */
static struct bufferevent *new_bev(struct event_base *base, void *arg)
{
	struct hconn *h;
	(void)arg;

	struct bufferevent *bev;

	if (hc.tls) {
		/* The SSL object is freed with the bufferevent only under
		 * CLOSE_ON_FREE, which also closes the socket; evhttp (2.1)
		 * then leaves the socket to it. The TLS handshake is part of
		 * the request under its deadline (arm_deadline). */
		struct ssl_st *ssl = tls_ctx_ssl_new(hc.tls);
		if (ssl == NULL)
			return NULL;
		bev = bufferevent_openssl_socket_new(base, -1, ssl,
						     BUFFEREVENT_SSL_ACCEPTING,
						     BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL) {
			SSL_free(ssl);
			return NULL;
		}
		/* A TCP close without close_notify ends a request stream
		 * like any other (curl, browsers). */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		/* Options as evhttp's own (0): evhttp closes the socket. */
		bev = bufferevent_socket_new(base, -1, 0);
		if (bev == NULL)
			return NULL;
	}
	h = xcalloc(1, sizeof(*h));
	h->bev = bev;
	bufferevent_incref(bev);
	*hc.pending_tail = h;
	hc.pending_tail = &h->pnext;
	hc.npending++;
	net_listen_ok(hc.listener);
	/* The listener accepts until the backlog is empty: at most a batch
	 * before they are judged (the descriptors are budgeted). */
	if (hc.npending >= HTTP_ACCEPT_BATCH)
		net_listen_pause(hc.listener, 1);
	event_active(hc.judge_ev, EV_TIMEOUT, 0);
	return bev;
}

void http_conns_start(struct event_base *base, const struct config *cfg,
		      struct evhttp *http, struct evconnlistener *l)
{
	hc.base = base;
	hc.cfg = cfg;
	if (hc.max == 0)
		hc.max = cfg->max_http_conns;
	hc.listener = l;
	hc.pending_tail = &hc.pending;
	hc.judge_ev = event_new(hc.base, -1, 0, judge_cb, NULL);
	evhttp_set_bevcb(http, new_bev, NULL);
}

void http_set_tls(struct tls_ctx *t)
{
	hc.tls = t;
}

void http_conns_set_cap(int conns_max)
{
	hc.max = conns_max;
}

/* The reply is out; on a kept-alive connection the next request gets its
 * own deadline. */
static void request_done(struct evhttp_request *req, void *arg)
{
	struct hconn *h = find(evhttp_request_get_connection(req));
	(void)arg;
	if (h)
		arm_deadline(h);
}

void http_conns_request(struct evhttp_request *req)
{
	struct hconn *h = find(evhttp_request_get_connection(req));
	if (h == NULL)
		return;
	evtimer_del(h->deadline_ev);
	evhttp_request_set_on_complete_cb(req, request_done, NULL);
}

void http_conns_stop(void)
{
	if (hc.judge_ev)
		event_free(hc.judge_ev);
	if (hc.listener)
		net_listen_forget(hc.listener);
	memset(&hc, 0, sizeof(hc));
}
