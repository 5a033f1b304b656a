/*
 * HTTP replies: JSON text with a status, HEAD answered with headers only,
 * and results (result.h) as a status and {"error": ...}.
 */
#include "basestation/http.h"
#include "basestation/ws.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	evhttp_send_reply(req, status, ws_http_reason(status), body);
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

int http_status(enum bk_status st)
{
	switch (st) {
	case BK_OK:
		return 200;
	case BK_CREATED:
		return 201;
	case BK_FORBIDDEN:
		return 403;
	case BK_NOT_FOUND:
		return 404;
	case BK_CONFLICT:
		return 409;
	case BK_UNAVAILABLE:
	case BK_STALE: /* the broker never answers it */
		return 503;
	case BK_BAD_REQUEST:
	case BK_TOO_LARGE:
		break;
	}
	return 400;
}

void http_refuse(struct evhttp_request *req, const struct bk_result *r)
{
	const char *msg = r->msg ? r->msg : "failed";

	/* A field past a limit: 400 with the WebSocket error code. */
	if (r->status == BK_TOO_LARGE)
		http_reply_json(req, 400,
				json_pack("{s:s, s:s}", "error", msg, "code",
					  "too_large"));
	else
		http_error(req, http_status(r->status), msg);
}
