/*
 * The connect hook: tokens the broker does not know, put to the
 * application's backend over HTTP(S) without blocking the loop (contract
 * §10; the API and its answers are described in auth_hook.h).
 *
 * One request is one evhttp connection (Connection: close): a check that
 * misses the cache costs a TCP (and TLS) handshake, which the cache and the
 * coalescing of checks of one key keep rare. A request lives from
 * req_start() to req_free(); its timer is first the deadline, then, once
 * the request is finished, the deferred free: evhttp must not see its
 * connection freed inside its own callback.
 */
#include "basestation/auth_hook.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uthash.h>
#include <utlist.h>

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HOOK_MAX_HEADERS 16384 /* bytes of the answer's head */
#define HOOK_URL_MAX	 2048

struct hook_entry {
	unsigned char key[32];
	UT_hash_handle hh;		  /* hook->cache */
	struct hook_entry *lprev, *lnext; /* hook->lru */
	int64_t until;			  /* monotonic ms */
	struct auth_identity id;	  /* expires_at: wall clock ms */
};

struct auth_hook_wait {
	struct hook_req *req;
	struct auth_hook_wait *prev, *next;
	auth_hook_cb cb;
	void *arg;
};

struct hook_req {
	unsigned char key[32];
	UT_hash_handle hh; /* hook->inflight, while not done */
	struct auth_hook *hook;
	struct hook_req *prev, *next; /* hook->reqs: every request not freed */
	struct evhttp_connection *evcon;
	struct event *timer;
	struct auth_hook_wait *waiters;
	char prefix[9];
	const char *error; /* what evhttp's error callback said */
	int64_t started;   /* monotonic ms */
	int done;
	enum auth_hook_status status;
	struct auth_identity id;
};

struct auth_hook {
	struct event_base *base;
	struct evdns_base *dns; /* NULL when the host is an IP address */
	SSL_CTX *tls;		/* https only */
	char *host;		/* for the connection and TLS: no brackets */
	char *host_header;	/* Host: as in the URL */
	char *path;		/* path and query */
	int port;
	int host_is_ip;
	int64_t cache_ms;
	int timeout_ms;
	struct hook_entry *cache; /* by key */
	struct hook_entry *lru;	  /* the same, least recently used first */
	int ncache;
	struct hook_req *inflight; /* by key */
	int ninflight;
	struct hook_req *reqs;
	int64_t busy_logged; /* monotonic ms of the last "busy" line */
	unsigned long busy;  /* refused as busy since then */
};

/* ---- the URL ---- */

struct hook_url {
	int tls, port, is_ip;
	char host[256], host_header[300], path[HOOK_URL_MAX];
};

static int fail_msg(char *err, size_t errsz, const char *msg)
{
	if (err && errsz)
		snprintf(err, errsz, "%s", msg);
	return -1;
}

static int parse_url(const char *url, struct hook_url *u, char *err,
		     size_t errsz)
{
	struct evhttp_uri *uri = NULL;
	const char *scheme, *host, *path, *query;
	unsigned char a[16];
	size_t hl;
	int rc = -1;

	memset(u, 0, sizeof(*u));
	if (url == NULL || strlen(url) >= HOOK_URL_MAX) {
		fail_msg(err, errsz, "URL missing or too long");
		goto out;
	}
	uri = evhttp_uri_parse_with_flags(url, 0);
	if (uri == NULL) {
		fail_msg(err, errsz, "not a URL");
		goto out;
	}
	scheme = evhttp_uri_get_scheme(uri);
	if (scheme && strcasecmp(scheme, "https") == 0) {
		u->tls = 1;
	} else if (scheme == NULL || strcasecmp(scheme, "http") != 0) {
		fail_msg(err, errsz, "the scheme must be http:// or https://");
		goto out;
	}
	if (evhttp_uri_get_userinfo(uri) || evhttp_uri_get_fragment(uri)) {
		fail_msg(err, errsz, "no user@ and no #fragment, please");
		goto out;
	}
	host = evhttp_uri_get_host(uri);
	hl = host ? strlen(host) : 0;
	if (hl == 0 || hl >= sizeof(u->host)) {
		fail_msg(err, errsz, "no host, or a host name too long");
		goto out;
	}
	if (host[0] == '[') { /* IPv6 literal: brackets only in Host: */
		memcpy(u->host, host + 1, hl - 2);
		u->host[hl - 2] = '\0';
	} else {
		memcpy(u->host, host, hl + 1);
	}
	u->is_ip = inet_pton(AF_INET, u->host, a) == 1 ||
		   inet_pton(AF_INET6, u->host, a) == 1;
	u->port = evhttp_uri_get_port(uri);
	if (u->port == 0) {
		fail_msg(err, errsz, "port 0");
		goto out;
	}
	if (u->port < 0)
		u->port = u->tls ? 443 : 80;
	if (u->port == (u->tls ? 443 : 80))
		snprintf(u->host_header, sizeof(u->host_header), "%s", host);
	else
		snprintf(u->host_header, sizeof(u->host_header), "%s:%d", host,
			 u->port);
	path = evhttp_uri_get_path(uri);
	query = evhttp_uri_get_query(uri);
	snprintf(u->path, sizeof(u->path), "%s%s%s", path && *path ? path : "/",
		 query ? "?" : "", query ? query : "");
	rc = 0;
out:
	if (uri)
		evhttp_uri_free(uri);
	return rc;
}

int auth_hook_url_check(const char *url, char *err, size_t errsz)
{
	struct hook_url u;
	return parse_url(url, &u, err, errsz);
}

/* ---- the cache ---- */

static void cache_drop(struct auth_hook *h, struct hook_entry *e)
{
	HASH_DEL(h->cache, e);
	DL_DELETE2(h->lru, e, lprev, lnext);
	h->ncache--;
	free(e);
}

/* The live entry for key, made the most recently used; NULL when none (an
 * expired one is dropped on the way). */
static struct hook_entry *cache_get(struct auth_hook *h,
				    const unsigned char key[32])
{
	struct hook_entry *e;

	HASH_FIND(hh, h->cache, key, 32, e);
	if (e == NULL)
		return NULL;
	if (mono_ms() >= e->until ||
	    (e->id.expires_at && now_ms() >= e->id.expires_at)) {
		cache_drop(h, e);
		return NULL;
	}
	DL_DELETE2(h->lru, e, lprev, lnext);
	DL_APPEND2(h->lru, e, lprev, lnext);
	return e;
}

/* Remember a 200 for min(--auth-cache, its expires_at: checked on use). */
static void cache_put(struct auth_hook *h, const unsigned char key[32],
		      const struct auth_identity *id)
{
	struct hook_entry *e;

	if (h->cache_ms <= 0)
		return;
	HASH_FIND(hh, h->cache, key, 32, e);
	if (e == NULL) {
		if (h->ncache >= AUTH_HOOK_CACHE_MAX)
			cache_drop(h, h->lru);
		e = xcalloc(1, sizeof(*e));
		memcpy(e->key, key, 32);
		HASH_ADD(hh, h->cache, key, 32, e);
		h->ncache++;
	} else {
		DL_DELETE2(h->lru, e, lprev, lnext);
	}
	DL_APPEND2(h->lru, e, lprev, lnext);
	e->until = mono_ms() + h->cache_ms;
	e->id = *id;
}

/* ---- the answer ---- */

/* The identity in a 200's body; AUTH_HOOK_OK, AUTH_HOOK_REFUSED (already
 * expired) or AUTH_HOOK_UNAVAILABLE (*why: what is wrong with the body). */
static enum auth_hook_status
parse_answer(struct evbuffer *body, struct auth_identity *id, const char **why)
{
	size_t len = evbuffer_get_length(body);
	const char *p = len ? (const char *)evbuffer_pullup(body, -1) : "";
	json_t *o = json_loadb(p, len, 0, NULL), *v;
	enum auth_hook_status st = AUTH_HOOK_UNAVAILABLE;
	int role = ROLE_USER;
	int64_t exp = 0;

	if (!json_is_object(o)) {
		*why = "answer is not a JSON object";
		goto out;
	}
	v = json_object_get(o, "uid");
	if (!json_is_string(v) ||
	    !auth_uid_valid(json_string_value(v), json_string_length(v))) {
		*why = "answer has no valid uid";
		goto out;
	}
	memcpy(id->uid, json_string_value(v), json_string_length(v) + 1);
	v = json_object_get(o, "role");
	if (v && !json_is_null(v) &&
	    (role = auth_role_parse(json_string_value(v))) < 0) {
		*why = "answer's role is not user, producer or admin";
		goto out;
	}
	id->role = (enum auth_role)role;
	v = json_object_get(o, "expires_at");
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		exp = json_integer_value(v);
	} else if (json_is_real(v) && isfinite(json_real_value(v)) &&
		   json_real_value(v) >= 0 && json_real_value(v) < 9e15) {
		exp = (int64_t)json_real_value(v);
	} else if (v && !json_is_null(v)) {
		*why = "answer's expires_at is not a time in ms";
		goto out;
	}
	id->expires_at = exp;
	if (exp && exp <= now_ms()) {
		*why = "answer's expires_at is past";
		st = AUTH_HOOK_REFUSED;
		goto out;
	}
	st = AUTH_HOOK_OK;
out:
	json_decref(o);
	return st;
}

/* ---- requests ---- */

static void req_free(struct hook_req *r)
{
	struct auth_hook *h = r->hook;
	struct auth_hook_wait *w;

	if (!r->done) {
		HASH_DEL(h->inflight, r);
		h->ninflight--;
	}
	while ((w = r->waiters) != NULL) {
		DL_DELETE(r->waiters, w);
		free(w);
	}
	DL_DELETE(h->reqs, r);
	if (r->evcon)
		evhttp_connection_free(r->evcon); /* no callback runs */
	event_free(r->timer);
	free(r);
}

/* The request is answered (or failed): cache a 200, tell every waiter,
 * and have the timer free the request once evhttp's stack has unwound. A
 * waiter is unlinked before its callback runs, so a callback may cancel
 * other waiters or start new checks. */
static void req_finish(struct hook_req *r, enum auth_hook_status st,
		       const struct auth_identity *id, int http,
		       const char *why)
{
	struct auth_hook *h = r->hook;
	struct auth_hook_wait *w;
	struct timeval now = {0, 0};
	long long ms = (long long)(mono_ms() - r->started);

	if (r->done)
		return;
	r->done = 1;
	HASH_DEL(h->inflight, r);
	h->ninflight--;
	r->status = st;
	memset(&r->id, 0, sizeof(r->id));
	if (st == AUTH_HOOK_OK) {
		r->id = *id;
		memcpy(r->id.prefix, r->prefix, sizeof(r->prefix));
		cache_put(h, r->key, &r->id);
		log_debug("auth.hook",
			  "token=%s status=%d uid=%s role=%s ms=%lld",
			  r->prefix, http, log_val(r->id.uid),
			  auth_role_name(r->id.role), ms);
	} else if (st == AUTH_HOOK_REFUSED) {
		log_info("auth.hook.refused", "token=%s status=%d ms=%lld%s%s",
			 r->prefix, http, ms, why ? " reason=" : "",
			 why ? log_val(why) : "");
	} else {
		log_warn("auth.hook.error",
			 "token=%s status=%d ms=%lld reason=%s", r->prefix,
			 http, ms, log_val(why ? why : "no answer"));
	}
	evtimer_add(r->timer, &now);
	while ((w = r->waiters) != NULL) {
		auth_hook_cb cb = w->cb;
		void *arg = w->arg;
		DL_DELETE(r->waiters, w);
		free(w);
		cb(arg, st, &r->id);
	}
}

/* Deadline, or the deferred free of a finished request. */
static void req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hook_req *r = arg;
	(void)fd;
	(void)what;

	if (!r->done)
		req_finish(r, AUTH_HOOK_UNAVAILABLE, NULL, 0,
			   "no answer within the timeout");
	req_free(r);
}

static void req_error_cb(enum evhttp_request_error e, void *arg)
{
	struct hook_req *r = arg;

	switch (e) {
	case EVREQ_HTTP_TIMEOUT:
		r->error = "timeout";
		break;
	case EVREQ_HTTP_EOF:
		r->error = "connection closed before the answer";
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		r->error = "invalid answer head";
		break;
	case EVREQ_HTTP_DATA_TOO_LONG:
		r->error = "answer too large";
		break;
	default:
		r->error = "connection failed";
	}
}

/* What OpenSSL says went wrong on r's connection (certificate, ...). */
static const char *tls_error(struct hook_req *r)
{
	static char buf[160];
	struct bufferevent *bev;
	unsigned long e, last = 0;

	if (r->hook->tls == NULL || r->evcon == NULL)
		return NULL;
	bev = evhttp_connection_get_bufferevent(r->evcon);
	/* Popped newest first; the oldest is libevent's SSL_get_error()
	 * value, not an OpenSSL error code. */
	while (bev && (e = bufferevent_get_openssl_error(bev)) != 0)
		if (last == 0 && ERR_GET_LIB(e) != 0)
			last = e;
	if (last == 0)
		return NULL;
	snprintf(buf, sizeof(buf), "tls: %s",
		 ERR_reason_error_string(last) ? ERR_reason_error_string(last)
					       : "handshake failed");
	return buf;
}

static void req_done_cb(struct evhttp_request *req, void *arg)
{
	struct hook_req *r = arg;
	struct auth_identity id;
	enum auth_hook_status st;
	const char *why = NULL;
	int code = req ? evhttp_request_get_response_code(req) : 0;

	if (r->done)
		return;
	if (code == 0) {
		why = tls_error(r);
		req_finish(r, AUTH_HOOK_UNAVAILABLE, NULL, 0,
			   why	      ? why
			   : r->error ? r->error
				      : "connection failed");
		return;
	}
	if (code != 200) {
		req_finish(r, AUTH_HOOK_REFUSED, NULL, code, NULL);
		return;
	}
	memset(&id, 0, sizeof(id));
	st = parse_answer(evhttp_request_get_input_buffer(req), &id, &why);
	req_finish(r, st, &id, code, why);
}

/* The request body; NULL when the token or origin is not UTF-8. */
static char *request_body(const struct auth_hook_query *q)
{
	json_t *o = json_object(), *t = json_stringn(q->token, q->token_len);
	char *s = NULL;

	if (o == NULL || t == NULL)
		goto out;
	json_object_set_new(o, "token", t);
	t = NULL;
	if (q->uid && json_object_set_new(o, "uid", json_string(q->uid)) < 0)
		goto out;
	if (json_object_set_new(o, "remote", json_string(q->remote)) < 0)
		goto out;
	if (q->origin &&
	    json_object_set_new(o, "origin",
				json_stringn(q->origin, q->origin_len)) < 0)
		goto out;
	s = json_dumps(o, JSON_COMPACT);
out:
	json_decref(t);
	json_decref(o);
	return s;
}

/* The bufferevent for one https request: SNI and the name (or address)
 * the certificate must show. NULL on failure. */
static struct bufferevent *tls_bev(struct auth_hook *h)
{
	SSL *ssl = SSL_new(h->tls);
	struct bufferevent *bev;

	if (ssl == NULL)
		return NULL;
	if (h->host_is_ip) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
						   h->host))
			goto fail;
	} else if (!SSL_set_tlsext_host_name(ssl, h->host) ||
		   !SSL_set1_host(ssl, h->host)) {
		goto fail;
	}
	bev = bufferevent_openssl_socket_new(
		h->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
		BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL)
		goto fail;
	/* Servers that answer with Connection: close often skip the TLS
	 * close_notify; the answer is complete by its length anyway. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
fail:
	SSL_free(ssl);
	return NULL;
}

/* Send one request; the result comes through req_done_cb or the timer
 * (possibly before this returns: then r->done is set). NULL when nothing
 * could be set up. */
static struct hook_req *req_start(struct auth_hook *h,
				  const unsigned char key[32],
				  const char prefix[9], const char *body)
{
	struct hook_req *r = xcalloc(1, sizeof(*r));
	struct evhttp_request *req;
	struct bufferevent *bev = NULL;
	struct evkeyvalq *hd;
	struct timeval tv = {h->timeout_ms / 1000,
			     (h->timeout_ms % 1000) * 1000};

	memcpy(r->key, key, 32);
	memcpy(r->prefix, prefix, 9);
	r->hook = h;
	r->started = mono_ms();
	r->timer = evtimer_new(h->base, req_timer_cb, r);
	if (r->timer == NULL)
		fatal("out of memory");
	if (h->tls && (bev = tls_bev(h)) == NULL)
		goto fail;
	r->evcon = evhttp_connection_base_bufferevent_new(h->base, h->dns, bev,
							  h->host, h->port);
	if (r->evcon == NULL) {
		if (bev)
			bufferevent_free(bev);
		goto fail;
	}
	evhttp_connection_set_timeout_tv(r->evcon, &tv);
	evhttp_connection_set_max_body_size(r->evcon, AUTH_HOOK_MAX_ANSWER);
	evhttp_connection_set_max_headers_size(r->evcon, HOOK_MAX_HEADERS);
	req = evhttp_request_new(req_done_cb, r);
	if (req == NULL)
		goto fail;
	evhttp_request_set_error_cb(req, req_error_cb);
	hd = evhttp_request_get_output_headers(req);
	evhttp_add_header(hd, "Host", h->host_header);
	evhttp_add_header(hd, "Content-Type", "application/json");
	evhttp_add_header(hd, "Accept", "application/json");
	evhttp_add_header(hd, "Connection", "close");
	evhttp_add_header(hd, "User-Agent", "basestation");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));

	HASH_ADD(hh, h->inflight, key, 32, r);
	h->ninflight++;
	DL_APPEND(h->reqs, r);
	evtimer_add(r->timer, &tv);
	/* evhttp owns req from here (also when this fails, in all but
	 * allocation failures, which leave nothing worse than a leak). */
	if (evhttp_make_request(r->evcon, req, EVHTTP_REQ_POST, h->path) != 0)
		req_finish(r, AUTH_HOOK_UNAVAILABLE, NULL, 0,
			   "request not sent");
	return r;
fail:
	if (r->evcon)
		evhttp_connection_free(r->evcon);
	event_free(r->timer);
	free(r);
	return NULL;
}

/* ---- the API ---- */

/* SHA-256 over the token, the remote address and the origin, each with its
 * length in front (so no two different triples hash the same input). */
static int hook_key(const struct auth_hook_query *q, unsigned char key[32])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint64_t n[3] = {q->token_len, strlen(q->remote),
			 q->origin ? q->origin_len + 1 : 0};
	unsigned int len = 0;
	int ok;

	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(ctx, n, sizeof(n)) &&
	     EVP_DigestUpdate(ctx, q->token, q->token_len) &&
	     EVP_DigestUpdate(ctx, q->remote, n[1]) &&
	     (q->origin == NULL ||
	      EVP_DigestUpdate(ctx, q->origin, q->origin_len)) &&
	     EVP_DigestFinal_ex(ctx, key, &len) && len == 32;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

static void log_busy(struct auth_hook *h)
{
	int64_t now = mono_ms();

	h->busy++;
	if (now - h->busy_logged < 1000)
		return;
	log_warn("auth.hook.busy", "inflight=%d refused=%lu", h->ninflight,
		 h->busy);
	h->busy_logged = now;
	h->busy = 0;
}

enum auth_hook_status auth_hook_check(struct auth_hook *h,
				      const struct auth_hook_query *q,
				      struct auth_identity *id, auth_hook_cb cb,
				      void *arg, struct auth_hook_wait **wait)
{
	unsigned char key[32];
	char prefix[9], *body;
	struct hook_entry *e;
	struct hook_req *r;
	struct auth_hook_wait *w;

	*wait = NULL;
	memset(id, 0, sizeof(*id));
	if (q->token_len == 0 || q->token_len > AUTH_TOKEN_MAX)
		return AUTH_HOOK_REFUSED;
	if (hook_key(q, key) < 0)
		return AUTH_HOOK_UNAVAILABLE;
	if ((e = cache_get(h, key)) != NULL) {
		*id = e->id;
		return AUTH_HOOK_OK;
	}
	HASH_FIND(hh, h->inflight, key, 32, r);
	if (r == NULL) {
		if (h->ninflight >= AUTH_HOOK_MAX_INFLIGHT) {
			log_busy(h);
			return AUTH_HOOK_UNAVAILABLE;
		}
		if ((body = request_body(q)) == NULL)
			return AUTH_HOOK_REFUSED;
		auth_hash_prefix(q->token, q->token_len, prefix);
		r = req_start(h, key, prefix, body);
		OPENSSL_cleanse(body, strlen(body));
		free(body);
		if (r == NULL) {
			log_warn("auth.hook.error", "token=%s reason=%s",
				 prefix, log_val("request not set up"));
			return AUTH_HOOK_UNAVAILABLE;
		}
		if (r->done) { /* failed at once (connect error) */
			*id = r->id;
			return r->status;
		}
	}
	w = xcalloc(1, sizeof(*w));
	w->req = r;
	w->cb = cb;
	w->arg = arg;
	DL_APPEND(r->waiters, w);
	*wait = w;
	return AUTH_HOOK_PENDING;
}

void auth_hook_cancel(struct auth_hook_wait *w)
{
	if (w == NULL)
		return;
	DL_DELETE(w->req->waiters, w);
	free(w);
}

struct auth_hook *auth_hook_create(struct event_base *base, const char *url,
				   int cache_seconds, int timeout_ms, char *err,
				   size_t errsz)
{
	struct auth_hook *h;
	struct hook_url u;

	if (parse_url(url, &u, err, errsz) < 0)
		return NULL;
	h = xcalloc(1, sizeof(*h));
	h->base = base;
	h->host = xstrdup(u.host);
	h->host_header = xstrdup(u.host_header);
	h->path = xstrdup(u.path);
	h->port = u.port;
	h->host_is_ip = u.is_ip;
	h->cache_ms = (int64_t)cache_seconds * 1000;
	h->timeout_ms = timeout_ms > 0 ? timeout_ms : AUTH_HOOK_TIMEOUT_MS;
	/* A name is resolved for each request by evdns, never by the
	 * blocking getaddrinfo (which evhttp uses without a dns base). */
	if (!u.is_ip &&
	    (h->dns = evdns_base_new(
		     base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
				   EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL) {
		fail_msg(err, errsz, "cannot set up DNS (/etc/resolv.conf)");
		goto fail;
	}
	if (u.tls) {
		h->tls = SSL_CTX_new(TLS_client_method());
		if (h->tls == NULL ||
		    !SSL_CTX_set_min_proto_version(h->tls, TLS1_2_VERSION) ||
		    SSL_CTX_set_default_verify_paths(h->tls) != 1) {
			fail_msg(err, errsz, "cannot set up TLS");
			goto fail;
		}
		SSL_CTX_set_verify(h->tls, SSL_VERIFY_PEER, NULL);
	}
	return h;
fail:
	auth_hook_destroy(h);
	return NULL;
}

void auth_hook_destroy(struct auth_hook *h)
{
	struct hook_entry *e, *tmp;

	if (h == NULL)
		return;
	while (h->reqs)
		req_free(h->reqs);
	HASH_ITER(hh, h->cache, e, tmp)
	cache_drop(h, e);
	if (h->dns)
		evdns_base_free(h->dns, 0);
	SSL_CTX_free(h->tls);
	free(h->host);
	free(h->host_header);
	free(h->path);
	free(h);
}
