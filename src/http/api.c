/*
 * HTTP routing and the /api endpoints. JSON in and out; everything under
 * /api needs the API key and under /admin the admin key (constant-time).
 * The endpoints call the same broker operations as the WebSocket
 * commands and render their results (result.h) as a status and JSON.
 */
#include "basestation/broker.h"
#include "basestation/commands.h"
#include "basestation/conn.h"
#include "basestation/engine.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/names.h"
#include "basestation/net.h"
#include "basestation/records.h"
#include "basestation/tasks.h"

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

static struct {
	const struct config *cfg;
	struct engine *engine;
	struct evhttp *http;
} api;

/* 1 when the request carries "Authorization: Bearer <key>". A key that is
 * not configured (NULL or empty) matches nothing. */
static int has_key(struct evhttp_request *req, const char *key)
{
	const char *h = evhttp_find_header(
		evhttp_request_get_input_headers(req), "Authorization");
	const char *tok;
	size_t tl;

	if (key == NULL || *key == '\0' || h == NULL ||
	    auth_bearer(h, strlen(h), &tok, &tl) < 0)
		return 0;
	return auth_ct_equal(tok, tl, key, strlen(key));
}

/* The token's 201 once its row is durable. */
static void token_done(const struct bk_done *d, const struct bk_result *r)
{
	if (r->status == BK_OK)
		http_reply_json(d->ptr, 201, d->aux);
	else {
		http_refuse(d->ptr, r);
		json_decref(d->aux);
	}
}

static void api_tokens(struct evhttp_request *req)
{
	json_t *b = http_body_json(req), *uid, *role, *ttl, *o;
	struct engine_event ev = {.kind = ENGINE_TOKEN_ISSUE};
	struct bk_done done = {.fn = token_done, .ptr = req};
	const char *why;
	char token[128];
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
	/* Through the engine, answered once it is committed (contract v2
	 * §6): a 201 names a token that survives a crash. */
	if (auth_token_new(json_string_value(uid), (enum auth_role)r,
			   ttl && json_is_integer(ttl) ? json_integer_value(ttl)
						       : 0,
			   now_ms(), token, sizeof(token), &ev.token) < 0) {
		http_error(req, 500, "could not store the token");
		goto out;
	}
	o = json_pack("{s:s, s:s, s:s}", "token", token, "uid",
		      json_string_value(uid), "role",
		      auth_role_name((enum auth_role)r));
	json_object_set_new(o, "expires_at",
			    ev.token.expires_at
				    ? json_integer(ev.token.expires_at)
				    : json_null());
	done.aux = o;
	if (engine_submit(api.engine, &ev, &done, &why) < 0) {
		json_decref(o);
		http_error(req, 503, why);
		goto out;
	}
	log_info("token.issue", "uid=%s role=%s via=http",
		 log_val(json_string_value(uid)),
		 auth_role_name((enum auth_role)r));
out:
	json_decref(b);
}

/* {"seq":N} once the message is committed. */
static void publish_done(const struct bk_done *d, const struct bk_result *r)
{
	if (r->status == BK_OK)
		http_reply_json(d->ptr, 200,
				json_pack("{s:I}", "seq", (json_int_t)r->seq));
	else
		http_refuse(d->ptr, r);
}

static void api_publish(struct evhttp_request *req)
{
	json_t *b = http_body_json(req), *to, *room, *data, *from;
	const char *sender = "system";
	struct bk_done done = {.fn = publish_done, .ptr = req};
	char *text = NULL;

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
	if ((to && !name_json_ok(to, AUTH_UID_MAX)) ||
	    (room && !name_json_ok(room, COMMANDS_NAME_MAX))) {
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
		if (!name_json_ok(from, AUTH_UID_MAX)) {
			http_error(req, 400, "'from' must be a uid string");
			goto out;
		}
		sender = json_string_value(from);
	}
	text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text == NULL) {
		http_error(req, 503, "could not store the message");
		goto out;
	}
	/* What a client may not send, a backend may not either: every
	 * message fits the WebSocket limit. */
	if (strlen(text) > api.cfg->max_message) {
		http_error(req, 413, "'data' is larger than --max-message");
		goto out;
	}
	broker_send(NULL, sender, to ? json_string_value(to) : NULL,
		    room ? json_string_value(room) : NULL, text, strlen(text),
		    NULL, &done);
out:
	free(text);
	json_decref(b);
}

/* /healthz runs on the loop thread; the local engine's store waits at
 * most STORE_BUSY_MS for a write lock held by another process, then this
 * answers 503. */
static void healthz(struct evhttp_request *req)
{
	if (!engine_healthy(api.engine)) {
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
	metrics_render(b, (uint64_t)conns_open(),
		       (uint64_t)broker_users_online(), broker_nusers(),
		       broker_nrooms(), tasks_count(),
		       (uint64_t)broker_committed());
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

/* A task's snapshot (201 for a create), or the refusal. */
static void task_done(const struct bk_done *d, const struct bk_result *r)
{
	struct bk_result nf;

	if (r->status == BK_OK || r->status == BK_CREATED) {
		http_reply_text(d->ptr, http_status(r->status), r->body,
				r->body_len);
		return;
	}
	if (r->status == BK_NOT_FOUND) {
		nf = *r;
		nf.msg = "no such task"; /* the id is in the path */
		r = &nf;
	}
	http_refuse(d->ptr, r);
}

/* /api/tasks, /api/tasks/{id}, /api/tasks/{id}/progress */
static void api_tasks(struct evhttp_request *req, const char *rest,
		      enum evhttp_cmd_type m)
{
	struct bk_done done = {.fn = task_done, .ptr = req};
	char id[256];
	const char *slash;
	size_t n;

	if (*rest == '\0') {
		if (!method_ok(req, m, EVHTTP_REQ_POST))
			return;
		json_t *b = http_body_json(req);
		if (b) {
			tasks_create(b, NULL, &done);
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
	if (dec == NULL || !name_id_ok(dec, declen, COMMANDS_NAME_MAX)) {
		free(dec);
		http_error(req, 400, "bad task id");
		return;
	}
	if (slash == NULL) {
		if (method_ok(req, m, EVHTTP_REQ_GET))
			tasks_get(dec, &done);
	} else if (strcmp(slash, "/progress") == 0) {
		if (method_ok(req, m, EVHTTP_REQ_POST)) {
			json_t *b = http_body_json(req);
			if (b) {
				tasks_update(dec, b, &done);
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
		if (!has_key(req, api.cfg->api_key)) {
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
		if (!has_key(req, api.cfg->admin_key)) {
			http_error(req, 401, "missing or wrong admin key");
			return;
		}
		if (strcmp(path, "/admin/connections") == 0) {
			if (method_ok(req, m, EVHTTP_REQ_GET))
				admin_connections(req);
		} else if (strcmp(path, "/admin/nodes") == 0) {
			if (method_ok(req, m, EVHTTP_REQ_GET))
				admin_nodes(req);
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

int http_start(struct event_base *base, const struct config *cfg,
	       struct engine *e, const char *web_root, int *port_out)
{
	struct evconnlistener *l;

	api.cfg = cfg;
	api.engine = e;
	admin_init(base, cfg, e);
	static_init(web_root);
	api.http = evhttp_new(base);
	if (api.http == NULL)
		return -1;
	evhttp_set_max_body_size(api.http, (ev_ssize_t)cfg->max_http_body);
	evhttp_set_max_headers_size(api.http, 16384);
	evhttp_set_timeout(api.http, 30);
	/* Every method libevent parses reaches route(), which answers 405
	 * (JSON, with Allow) to those a path does not take. */
	evhttp_set_allowed_methods(
		api.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
				  EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
				  EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
				  EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(api.http, route, NULL);
	/* Our listener, with the back-off on accept errors; evhttp takes
	 * its connections (and frees it in evhttp_free). */
	l = net_listen(cfg->http, "http", NULL, port_out);
	if (l == NULL)
		return -1;
	if (evhttp_bind_listener(api.http, l) == NULL) {
		net_listen_forget(l);
		evconnlistener_free(l);
		return -1;
	}
	http_conns_start(base, cfg, api.http, l);
	return 0;
}

void http_set_cap(int conns_max)
{
	http_conns_set_cap(conns_max);
}

void http_stop(void)
{
	admin_sql_stop();
	if (api.http) {
		http_conns_judge_pending();
		evhttp_free(api.http);
		api.http = NULL;
		http_conns_stop();
	}
}
