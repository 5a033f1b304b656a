/*
 * The HTTP listener (libevent evhttp): /api for backend services, /admin
 * for operators, /healthz, /metrics, and the static pages.
 */
#ifndef BASESTATION_HTTP_H
#define BASESTATION_HTTP_H

#include "basestation/settings.h"
#include "basestation/result.h"

#include <jansson.h>

struct engine;
struct event_base;
struct evconnlistener;
struct evhttp;
struct evhttp_request;

/* Descriptors one HTTP connection may hold: its socket and a static file
 * being sent. */
#define HTTP_FDS_PER_CONN 2
/* Connections accepted before they are judged (conns.c). */
#define HTTP_ACCEPT_BATCH 16

/* Listen on cfg->http; the API's operations go to the broker and, for
 * tokens and /healthz, to engine e. 0 ok, -1 (errno set). */
int http_start(struct event_base *base, const struct config *cfg,
	       struct engine *e, const char *web_root, int *port_out);
/* Connections of the HTTP port at once (fitted to RLIMIT_NOFILE). */
void http_set_cap(int conns_max);
void http_stop(void);

/* conns.c: the caps and the request deadline of the HTTP port. */
void http_conns_start(struct event_base *base, const struct config *cfg,
		      struct evhttp *http, struct evconnlistener *l);
void http_conns_set_cap(int conns_max);
/* --tls-cert (tls.h): HTTPS on the HTTP port for connections accepted
 * from now on, with the pair t holds at their accept; NULL: plain. Set
 * before http_start. */
struct tls_ctx;
void http_set_tls(struct tls_ctx *t);
/* route() got req: its deadline stops until the reply is sent. */
void http_conns_request(struct evhttp_request *req);
/* Judge the connections accepted but not judged yet (also before
 * evhttp_free, so that none is left unjudged). */
void http_conns_judge_pending(void);
/* After evhttp_free (which closed every connection). */
void http_conns_stop(void);

struct evbuffer;

/* Send the reply with its standard reason phrase; to HEAD, only the
 * headers (Content-Length as GET would have it). body is drained, not
 * freed. */
void http_send(struct evhttp_request *req, int status, struct evbuffer *body);
/* Send n bytes of JSON text (NULL: empty body) with status. */
void http_reply_text(struct evhttp_request *req, int status, const char *json,
		     size_t n);
/* Send body, JSON text, with status and the JSON headers. body is drained,
 * not freed. */
void http_send_json(struct evhttp_request *req, int status,
		    struct evbuffer *body);
/* Send body (stolen) as JSON with status. */
void http_reply_json(struct evhttp_request *req, int status, json_t *body);
/* {"error": msg} with status. */
void http_error(struct evhttp_request *req, int status, const char *msg);
/* Parse the request body as a JSON object; on failure answers 400 and
 * returns NULL. */
json_t *http_body_json(struct evhttp_request *req);
/* The status for a result, and a refusal as {"error": msg} with it (400
 * with "code":"too_large" for a field past a limit). */
int http_status(enum bk_status st);
void http_refuse(struct evhttp_request *req, const struct bk_result *r);

/* admin.c */
void admin_init(struct event_base *base, const struct config *cfg,
		struct engine *e);
void admin_connections(struct evhttp_request *req);
/* GET /admin/nodes: the engine's live nodes, or this one alone. */
void admin_nodes(struct evhttp_request *req);
/* Runs the query on a worker thread; the answer comes from the loop. */
void admin_sql(struct evhttp_request *req);
/* Wait for the running queries (each ends within its time limit), answer
 * them, release the pool. Called before evhttp_free. */
void admin_sql_stop(void);

/* static.c: serve a file below the web root; 404 when absent. */
void static_init(const char *web_root);
void static_serve(struct evhttp_request *req, const char *path);
/* 1 when path names a public static file of the admin console. */
int static_exists(const char *path);

#endif
