/*
 * The WebSocket upgrade: the request head judged against RFC 6455
 * (ws/handshake.c) and the contract's policy: limits, the client address
 * behind a trusted proxy, the token (query, Bearer, or a subprotocol
 * value; looked up through the broker, a prepared read of the store),
 * the uid, the origin. Accepted: 101, the session opens, its inbox or
 * resume starts. Refused: an HTTP status with a reason, then close.
 */
#include "conn_int.h"
#include "basestation/addr.h"
#include "basestation/broker.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/names.h"
#include "basestation/net.h"
#include "basestation/proto.h"
#include "basestation/xalloc.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REFUSE_LINGER_MS 2000
/* At most this many Sec-WebSocket-Protocol values are tried as tokens: each
 * try costs a hash and a database lookup, and one request head can offer
 * thousands of values. Browsers offer one or two. */
#define MAX_TOKEN_CANDIDATES 4
/* The one path of the WebSocket port (contract §2). */
#define WS_PATH "/ws"

/* ---- refusing an upgrade ---- */

void upgrade_refuse(struct conn *c, int status, const char *why)
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
		 (unsigned long long)c->s.id, c->remote, status, log_val(why));
	evbuffer_add_printf(
		out,
		"HTTP/1.1 %d %s\r\n"
		"Content-Type: text/plain; charset=utf-8\r\n"
		"Content-Length: %zu\r\n"
		"Connection: close\r\n"
		"%s"
		"\r\n%s\n",
		status, ws_http_reason(status), strlen(why) + 1,
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

/* check_token() and ask_hook(), beside 0 (admitted) and -1 (401). */
#define TOKEN_FOREIGN	  1 /* not ours: for --auth-url */
#define TOKEN_WAIT	  2 /* put to --auth-url: the handshake pauses */
#define TOKEN_UNAVAILABLE 3 /* --auth-url did not answer: 503 */

/* Verify one token candidate: 0 ok, -1 refused, TOKEN_FOREIGN when it is
 * neither a valid JWT nor a token this broker issued (revoked and expired
 * ones are ours) and --auth-url is set. */
static int check_token(const char *tok, size_t len, struct auth_identity *id)
{
	int rc = broker_authenticate(tok, len, now_ms(), id);

	if (rc == AUTH_TOKEN_UNKNOWN && cs.hook)
		return TOKEN_FOREIGN;
	return rc == 0 ? 0 : -1;
}

/* A token the broker does not know, put to --auth-url (contract §10):
 * 0 admitted (*id), -1 refused, TOKEN_UNAVAILABLE, or TOKEN_WAIT: the
 * socket is not read until cs.hook_answer runs the handshake again, when
 * this returns the answer (for the same token only). The handshake
 * deadline keeps running; conn_kill() cancels the wait. */
static int ask_hook(struct conn *c, const struct ws_request *req,
		    const char *tok, size_t len, const char *uid,
		    struct auth_identity *id)
{
	struct auth_hook_query q = {tok,       len,	      uid,
				    c->remote, req->origin.p, req->origin.n};
	struct auth_hook_wait *wait;
	enum auth_hook_status st;
	char prefix[9];

	if (c->hook) {
		auth_hash_prefix(tok, len, prefix);
		st = strcmp(prefix, c->hook->prefix) == 0 ? c->hook->status
							  : AUTH_HOOK_REFUSED;
		*id = c->hook->id;
		conn_hook_free(c);
	} else {
		st = auth_hook_check(cs.hook, &q, id, cs.hook_answer, c, &wait);
		if (st == AUTH_HOOK_PENDING) {
			c->hook = xcalloc(1, sizeof(*c->hook));
			c->hook->wait = wait;
			auth_hash_prefix(tok, len, c->hook->prefix);
			event_del(&c->ev);
			c->watching = 0;
			return TOKEN_WAIT;
		}
	}
	if (st == AUTH_HOOK_OK)
		return 0;
	return st == AUTH_HOOK_UNAVAILABLE ? TOKEN_UNAVAILABLE : -1;
}

/* check_token(), then ask_hook() for a foreign token. */
static int judge_token(struct conn *c, const struct ws_request *req,
		       const char *tok, size_t len, const char *uid,
		       struct auth_identity *id)
{
	int rc = check_token(tok, len, id);
	return rc == TOKEN_FOREIGN ? ask_hook(c, req, tok, len, uid, id) : rc;
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
	const struct config *cfg = cs.cfg;
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

	if (req->forwarded_for.p == NULL || !net_trusted_proxy(c->remote))
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

static void negotiate_deflate(struct conn *c, const struct ws_request *req,
			      struct evbuffer *out);

int upgrade_handshake(struct conn *c, size_t *head_len)
{
	struct evbuffer *out;
	size_t len = c->hs_len;
	size_t take = len > WS_HS_MAX_BYTES ? WS_HS_MAX_BYTES : len;
	const char *buf = c->hs;
	struct ws_request req;
	struct auth_identity id;
	char tmp[AUTH_TOKEN_MAX + 1], accept[29], uidq[AUTH_UID_MAX + 2];
	const char *proto_echo = NULL, *tok = NULL, *t = NULL, *foreign = NULL;
	const char *uid;
	size_t proto_echo_len = 0, tok_len = 0, tl = 0, foreign_len = 0;
	int n, head, status, have_token = 0, offered_v1 = 0, tried = 0, uidn;
	int rc;

	n = head = ws_request_parse(buf, take, &req);
	if (n == WS_HS_NEED_MORE) {
		if (len >= WS_HS_MAX_BYTES) {
			upgrade_refuse(c, 400, "request head too large");
			return 1;
		}
		return 0;
	}
	if (n < 0) {
		upgrade_refuse(c, 400, "malformed request head");
		return 1;
	}
	int sse = req.path.n == strlen(SSE_PATH) &&
		  memcmp(req.path.p, SSE_PATH, req.path.n) == 0;
	status = sse ? ws_request_check_http(&req, SSE_PATH)
		     : ws_request_check_path(&req, WS_PATH);
	if (status) {
		upgrade_refuse(c, status,
			       status == 404 ? "no such path; use /ws"
			       : status == 426
				       ? "Sec-WebSocket-Version must be 13"
				       : "not a valid WebSocket upgrade");
		return 1;
	}
	apply_forwarded(c, &req);
	if (cs.stopping || cs.nconns >= cs.cfg->max_connections) {
		upgrade_refuse(c, 503, "connection limit reached");
		return 1;
	}
	/* Through a trusted proxy: counted by the forwarded address from
	 * here on (the others were counted at the accept). */
	if (c->ip == NULL && cs.cfg->max_per_ip > 0 &&
	    net_ip_count(c->remote, IP_WS) >= cs.cfg->max_per_ip) {
		upgrade_refuse(c, 503,
			       "too many connections from this address");
		return 1;
	}

	/* The uid asked for: it must be the token's (below). */
	uidn = ws_query_get(req.query.p, req.query.n, "uid", uidq,
			    sizeof(uidq));
	if (uidn == -1)
		uidn = ws_query_get(req.query.p, req.query.n, "id", uidq,
				    sizeof(uidq));
	/* A NUL or control character, a bad escape or a uid past the id
	 * rule's length is malformed, never truncated into another uid
	 * (contract §6): 400, before any token is looked at. */
	if (uidn == -2 ||
	    (uidn > 0 && !name_id_ok(uidq, (size_t)uidn, AUTH_UID_MAX))) {
		upgrade_refuse(c, 400,
			       "uid: malformed (a control character, "
			       "not UTF-8 or too long)");
		return 1;
	}
	uid = uidn >= 0 ? uidq : NULL;

	/* Identity: query token, then Bearer, then subprotocol values. */
	int qlen = ws_query_get(req.query.p, req.query.n, "token", tmp,
				sizeof(tmp));
	if (qlen >= 0) {
		have_token = 1;
		tok = tmp;
		tok_len = (size_t)qlen;
		rc = judge_token(c, &req, tmp, (size_t)qlen, uid, &id);
		if (rc != 0)
			goto refused;
	} else if (auth_bearer(req.authorization.p, req.authorization.n, &t,
			       &tl) == 0) {
		have_token = 1;
		tok = t;
		tok_len = tl;
		rc = judge_token(c, &req, t, tl, uid, &id);
		if (rc != 0)
			goto refused;
	}
	if (req.protocol.p && !sse) {
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
				rc = check_token(v, l, &id);
				if (rc == 0) {
					have_token = 1;
					proto_echo = v;
					proto_echo_len = l;
				} else if (rc == TOKEN_FOREIGN && !foreign) {
					foreign = v;
					foreign_len = l;
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
		/* None of ours: the first foreign one goes to --auth-url. */
		if (!have_token && foreign) {
			rc = ask_hook(c, &req, foreign, foreign_len, uid, &id);
			if (rc != 0)
				goto refused;
			have_token = 1;
			proto_echo = foreign;
			proto_echo_len = foreign_len;
		}
		if (!have_token && req.protocol.n > 0 && !offered_v1)
			goto unauthorized;
	}
	if (!have_token) {
		upgrade_refuse(c, 401, "missing token");
		return 1;
	}

	if (uidn != -1 && (uidn < 0 || strcmp(uidq, id.uid) != 0)) {
		upgrade_refuse(c, 403, "uid does not match the token");
		return 1;
	}
	if (!origin_allowed(&req)) {
		upgrade_refuse(c, 403, "origin not allowed");
		return 1;
	}
	if (sse) {
		const char *why = NULL;
		status = sse_check(c, &req, &id, &why);
		if (status) {
			upgrade_refuse(c, status, why);
			return 1;
		}
		*head_len = (size_t)head;
		sse_start(c, &req, &id, req.origin.p != NULL);
		return 1;
	}
	/* Resume parameters, judged before the upgrade: a since that is
	 * not a seq is a malformed request (contract §2), not "no since". */
	int64_t since = -1;
	int epoch_ok = 1;
	char num[32], ep[64];
	int sn = ws_query_get(req.query.p, req.query.n, "since", num,
			      sizeof(num));
	if (sn != -1) {
		char *e;
		long long v;
		errno = 0;
		v = strtoll(num, &e, 10);
		if (sn <= 0 || num[0] < '0' || num[0] > '9' || *e != '\0' ||
		    errno) {
			upgrade_refuse(c, 400,
				       "since must be a sequence number");
			return 1;
		}
		since = v;
	}
	if (ws_query_get(req.query.p, req.query.n, "epoch", ep, sizeof(ep)) >=
	    0)
		epoch_ok = strcmp(ep, broker_epoch()) == 0;

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
	negotiate_deflate(c, &req, out);
	evbuffer_add(out, "\r\n", 2);

	*head_len = (size_t)head;
	conn_open(c, &id);
	if (c->state != CONN_OPEN)
		return 1;
	if (since >= 0)
		broker_resume(&c->s, since, 1, epoch_ok, NULL, NULL);
	else
		broker_resume(&c->s, -1, 0, 1, NULL, NULL);
	return 1;

refused:
	if (rc == TOKEN_WAIT)
		return HS_PAUSED;
	if (rc == TOKEN_UNAVAILABLE) {
		upgrade_refuse(c, 503, "authentication backend unavailable");
		return 1;
	}
unauthorized:
	upgrade_refuse(c, 401, "invalid, revoked or expired token");
	return 1;
}

/* permessage-deflate (RFC 7692): the first acceptable offer across the
 * Sec-WebSocket-Extensions headers, in order; an offer with unknown or
 * invalid parameters is declined and the upgrade goes on without it. */
static void negotiate_deflate(struct conn *c, const struct ws_request *req,
			      struct evbuffer *out)
{
	char resp[WS_PMD_RESPONSE_MAX];

	memset(&c->pmd, 0, sizeof(c->pmd));
	if (!cs.cfg->compression)
		return;
	for (int i = 0; i < req->n_extensions; i++)
		if (ws_pmd_negotiate(req->extensions[i].p, req->extensions[i].n,
				     &c->pmd, resp) == WS_PMD_ACCEPTED) {
			evbuffer_add_printf(
				out, "Sec-WebSocket-Extensions: %s\r\n", resp);
			return;
		}
}
