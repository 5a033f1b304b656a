/*
 * HTTP routing and the /api endpoints. JSON in and out; everything under
 * /api needs the API key and under /admin the admin key (constant-time).
 */
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/store.h"
#include "basestation/tasks.h"
#include "basestation/xalloc.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

const char *http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 426:
		return "Upgrade Required";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

void http_send(struct evhttp_request *req, int status, struct evbuffer *body)
{
	/* libevent sends the body even to HEAD (and then no Content-Length),
	 * which a keep-alive client would read as the next response. */
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char len[32];
		snprintf(len, sizeof(len), "%zu",
			 body ? evbuffer_get_length(body) : 0);
		evhttp_remove_header(evhttp_request_get_output_headers(req),
				     "Content-Length");
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Content-Length", len);
		if (body)
			evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, status, http_reason(status), body);
}

void http_send_json(struct evhttp_request *req, int status,
		    struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Cache-Control", "no-store");
	http_send(req, status, body);
}

void http_reply_text(struct evhttp_request *req, int status, const char *json,
		     size_t n)
{
	struct evbuffer *b = evbuffer_new();

	if (json) {
		evbuffer_add(b, json, n);
		evbuffer_add(b, "\n", 1);
	}
	http_send_json(req, status, b);
	evbuffer_free(b);
}

void http_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT);

	http_reply_text(req, status, s, s ? strlen(s) : 0);
	free(s);
	json_decref(body);
}

void http_error(struct evhttp_request *req, int status, const char *msg)
{
	http_reply_json(req, status, json_pack("{s:s}", "error", msg));
}

json_t *http_body_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *j;
	char msg[256];

	if (len == 0) {
		http_error(req, 400, "a JSON object body is required");
		return NULL;
	}
	j = json_loadb((const char *)evbuffer_pullup(in, -1), len,
		       JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		snprintf(msg, sizeof(msg), "invalid JSON: %s", jerr.text);
		http_error(req, 400, msg);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		http_error(req, 400, "the body must be a JSON object");
		return NULL;
	}
	return j;
}

/* 1 when the request carries "Authorization: Bearer <key>". A key that is
 * not configured (NULL or empty) matches nothing. */
static int has_key(struct evhttp_request *req, const char *key)
{
	const char *h = evhttp_find_header(
		evhttp_request_get_input_headers(req), "Authorization");
	if (key == NULL || *key == '\0' || h == NULL ||
	    strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	return auth_ct_equal(h, strlen(h), key, strlen(key));
}

static void api_tokens(struct evhttp_request *req)
{
	json_t *b = http_body_json(req), *uid, *role, *ttl;
	char token[128];
	int64_t exp;
	int r = ROLE_USER;

	if (b == NULL)
		return;
	uid = json_object_get(b, "uid");
	role = json_object_get(b, "role");
	ttl = json_object_get(b, "ttl");
	if (!json_is_string(uid) ||
	    !auth_uid_valid(json_string_value(uid), json_string_length(uid)) ||
	    strlen(json_string_value(uid)) != json_string_length(uid)) {
		http_error(req, 400,
			   "'uid' must be a non-empty string of at "
			   "most 128 bytes without control characters");
		goto out;
	}
	if (role && !json_is_null(role)) {
		r = json_is_string(role)
			    ? auth_role_parse(json_string_value(role))
			    : -1;
		if (r < 0) {
			http_error(req, 400,
				   "'role' must be user, producer or "
				   "admin");
			goto out;
		}
	}
	if (ttl && !json_is_null(ttl) &&
	    (!json_is_integer(ttl) || json_integer_value(ttl) < 0 ||
	     json_integer_value(ttl) > 100LL * 365 * 86400)) {
		http_error(req, 400, "'ttl' must be seconds (integer >= 0)");
		goto out;
	}
	/* Inside the loop turn's transaction, answered once it is committed
	 * (contract v2 §6): a 201 names a token that survives a crash. */
	if (server_write_begin() < 0) {
		http_error(req, 503, "store unavailable");
		goto out;
	}
	if (auth_token_issue(
		    store_db(srv->store), json_string_value(uid),
		    (enum auth_role)r,
		    ttl && json_is_integer(ttl) ? json_integer_value(ttl) : 0,
		    token, sizeof(token), &exp) < 0) {
		http_error(req, 500, "could not store the token");
		goto out;
	}
	log_info("token.issue", "uid=%s role=%s via=http",
		 log_val(json_string_value(uid)),
		 auth_role_name((enum auth_role)r));
	json_t *o = json_pack("{s:s, s:s, s:s}", "token", token, "uid",
			      json_string_value(uid), "role",
			      auth_role_name((enum auth_role)r));
	json_object_set_new(o, "expires_at",
			    exp ? json_integer(exp) : json_null());
	struct post *p = xcalloc(1, sizeof(*p));
	p->kind = POST_REPLY;
	p->req = req;
	p->http_status = 201;
	p->http_body = o;
	server_post(p);
out:
	json_decref(b);
}

static void api_publish(struct evhttp_request *req)
{
	json_t *b = http_body_json(req), *to, *room, *data, *from;
	const char *sender = "system";

	if (b == NULL)
		return;
	to = json_object_get(b, "to");
	room = json_object_get(b, "room");
	data = json_object_get(b, "data");
	from = json_object_get(b, "from");
	if ((to == NULL) == (room == NULL)) {
		http_error(req, 400,
			   "exactly one of 'to' or 'room' is required");
		goto out;
	}
	if ((to && !commands_valid_json_id(to, AUTH_UID_MAX)) ||
	    (room && !commands_valid_json_id(room, COMMANDS_NAME_MAX))) {
		http_error(req, 400,
			   "'to' / 'room' must be a string of 1..128 "
			   "bytes without control characters");
		goto out;
	}
	if (data == NULL) {
		http_error(req, 400, "'data' is required");
		goto out;
	}
	if (from && !json_is_null(from)) {
		if (!commands_valid_json_id(from, AUTH_UID_MAX)) {
			http_error(req, 400, "'from' must be a uid string");
			goto out;
		}
		sender = json_string_value(from);
	}
	router_send(NULL, sender, to ? json_string_value(to) : NULL,
		    room ? json_string_value(room) : NULL, data, NULL, 0, NULL,
		    req);
out:
	json_decref(b);
}

/* /healthz runs on the loop thread; the store's connection waits at most
 * STORE_BUSY_MS for a write lock held by another process, then this
 * answers 503. */
static void healthz(struct evhttp_request *req)
{
	if (!store_writable(srv->store)) {
		http_reply_json(req, 503,
				json_pack("{s:s, s:s}", "status", "error",
					  "error", "database is not writable"));
		return;
	}
	http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void metrics_page(struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();
	/* A room record exists exactly while the room has a member. */
	metrics_render(b, (uint64_t)srv->nconns, (uint64_t)srv->users_online,
		       registry_nusers(), registry_nrooms(), tasks_count(),
		       (uint64_t)srv->committed_seq);
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	http_send(req, 200, b);
	evbuffer_free(b);
}

/* 1 when m is one of the methods in allowed (GET implies HEAD); else
 * answers 405 with an Allow header and returns 0. */
static int method_ok(struct evhttp_request *req, enum evhttp_cmd_type m,
		     int allowed)
{
	char list[32] = "";

	if (allowed & EVHTTP_REQ_GET)
		allowed |= EVHTTP_REQ_HEAD;
	if (m & allowed)
		return 1;
	if (allowed & EVHTTP_REQ_GET)
		strcat(list, "GET, HEAD");
	if (allowed & EVHTTP_REQ_POST)
		strcat(list, list[0] ? ", POST" : "POST");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
			  list);
	http_error(req, 405, "method not allowed");
	return 0;
}

/* /api/tasks, /api/tasks/{id}, /api/tasks/{id}/progress */
static void api_tasks(struct evhttp_request *req, const char *rest,
		      enum evhttp_cmd_type m)
{
	char id[256];
	const char *slash;
	size_t n;

	if (*rest == '\0') {
		if (!method_ok(req, m, EVHTTP_REQ_POST))
			return;
		json_t *b = http_body_json(req);
		if (b) {
			tasks_http_create(req, b);
			json_decref(b);
		}
		return;
	}
	if (*rest != '/') {
		http_error(req, 404, "not found");
		return;
	}
	rest++;
	slash = strchr(rest, '/');
	n = slash ? (size_t)(slash - rest) : strlen(rest);
	if (n == 0 || n >= sizeof(id)) {
		http_error(req, 404, "not found");
		return;
	}
	memcpy(id, rest, n);
	id[n] = '\0';
	size_t declen = 0;
	char *dec = evhttp_uridecode(id, 0, &declen);
	/* a %00 decodes to a NUL: "a%00zzz" is not task "a" */
	if (dec == NULL || !commands_valid_id(dec, declen, COMMANDS_NAME_MAX)) {
		free(dec);
		http_error(req, 400, "bad task id");
		return;
	}
	if (slash == NULL) {
		if (method_ok(req, m, EVHTTP_REQ_GET))
			tasks_http_get(req, dec);
	} else if (strcmp(slash, "/progress") == 0) {
		if (method_ok(req, m, EVHTTP_REQ_POST)) {
			json_t *b = http_body_json(req);
			if (b) {
				tasks_http_progress(req, dec, b);
				json_decref(b);
			}
		}
	} else {
		http_error(req, 404, "not found");
	}
	free(dec);
}

/* RFC 9112 §6.3: with two Content-Length headers (libevent reads the
 * first) the request's length, and where the next request starts, cannot
 * be trusted: 400, and the connection is closed after the answer. */
static int length_ambiguous(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	int n = 0;

	for (kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
		if (strcasecmp(kv->key, "Content-Length") == 0 && ++n > 1) {
			evhttp_add_header(
				evhttp_request_get_output_headers(req),
				"Connection", "close");
			return 1;
		}
	}
	return 0;
}

static void route(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	(void)arg;

	http_conns_request(req);
	metrics.http_requests++;
	if (length_ambiguous(req)) {
		http_error(req, 400, "Content-Length given twice");
		return;
	}
	if (path == NULL || *path != '/') {
		http_error(req, 400, "bad request target");
		return;
	}
	/* The key is checked before the route: without it every path under
	 * /api and /admin looks the same (401). */
	if (strcmp(path, "/healthz") == 0) {
		if (method_ok(req, m, EVHTTP_REQ_GET))
			healthz(req);
	} else if (strcmp(path, "/metrics") == 0) {
		if (method_ok(req, m, EVHTTP_REQ_GET))
			metrics_page(req);
	} else if (strncmp(path, "/api/", 5) == 0) {
		if (!has_key(req, srv->cfg->api_key)) {
			http_error(req, 401, "missing or wrong API key");
			return;
		}
		if (strcmp(path, "/api/tokens") == 0) {
			if (method_ok(req, m, EVHTTP_REQ_POST))
				api_tokens(req);
		} else if (strcmp(path, "/api/publish") == 0) {
			if (method_ok(req, m, EVHTTP_REQ_POST))
				api_publish(req);
		} else if (strncmp(path, "/api/tasks", 10) == 0) {
			api_tasks(req, path + 10, m);
		} else {
			http_error(req, 404, "not found");
		}
	} else if (strncmp(path, "/admin/", 7) == 0 && !static_exists(path)) {
		if (!has_key(req, srv->cfg->admin_key)) {
			http_error(req, 401, "missing or wrong admin key");
			return;
		}
		if (strcmp(path, "/admin/connections") == 0) {
			if (method_ok(req, m, EVHTTP_REQ_GET))
				admin_connections(req);
		} else if (strcmp(path, "/admin/sql") == 0) {
			if (method_ok(req, m, EVHTTP_REQ_POST))
				admin_sql(req);
		} else {
			http_error(req, 404, "not found");
		}
	} else if (method_ok(req, m, EVHTTP_REQ_GET)) {
		static_serve(req, path);
	}
}

int http_start(const char *addr, int *port_out)
{
	struct evconnlistener *l;

	srv->http = evhttp_new(srv->base);
	if (srv->http == NULL)
		return -1;
	evhttp_set_max_body_size(srv->http,
				 (ev_ssize_t)srv->cfg->max_http_body);
	evhttp_set_max_headers_size(srv->http, 16384);
	evhttp_set_timeout(srv->http, 30);
	/* Every method libevent parses reaches route(), which answers 405
	 * (JSON, with Allow) to those a path does not take. */
	evhttp_set_allowed_methods(
		srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
				   EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
				   EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(srv->http, route, NULL);
	/* Our listener, with the back-off on accept errors; evhttp takes
	 * its connections (and frees it in evhttp_free). */
	l = server_listen(addr, "http", NULL, port_out);
	if (l == NULL)
		return -1;
	if (evhttp_bind_listener(srv->http, l) == NULL) {
		server_listen_forget(l);
		evconnlistener_free(l);
		return -1;
	}
	http_conns_start(srv->http, l);
	return 0;
}

void http_stop(void)
{
	admin_sql_stop();
	if (srv && srv->http) {
		http_conns_judge_pending();
		evhttp_free(srv->http);
		srv->http = NULL;
		http_conns_stop();
	}
}
