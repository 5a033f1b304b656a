/*
 * Server-Sent Events (contract §9): GET /sse on the WebSocket port, the
 * same token, uid, origin and limit rules as the upgrade (upgrade.c), the
 * same socket machinery (transport, output, back-pressure, reaping: conn.c
 * and send.c), without WebSocket framing. The session sees a second sink:
 * each message's event is built once (msgbuf.h, MSGBUF_SSE) and shared by
 * every stream it goes to.
 *
 * A stream carries `message` events (id: = seq) for its user's direct
 * messages and for the rooms it lists, and `task` events (the bare
 * snapshot) for the tasks it lists. Everything else a session is sent
 * (the connect frame, "resumed", replies) has no event: dropped. A replay
 * (Last-Event-ID, since=, or the offline inbox) holds live messages as on
 * WebSocket: no gap, no duplicate.
 */
#include "conn_int.h"
#include "basestation/broker.h"
#include "basestation/log.h"
#include "basestation/msgbuf.h"
#include "basestation/sb.h"
#include "basestation/tasks.h"
#include "basestation/xalloc.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Rooms and tasks one stream may list: a query is bounded by the head
 * (8 KiB) anyway; this bounds the lookups and what is kept. */
#define SSE_MAX_LIST 64
#define SSE_NAME_MAX 256
/* The reconnect delay a browser is told (ms). */
#define SSE_RETRY_MS 1000

struct sse {
	char **rooms;
	int nrooms;
	char **tasks;
	int ntasks;
};

static const char task_prefix[] = "{\"type\":\"task\",\"task\":";

/* ---- events ---- */

/* One event: each line of data (split at CR and LF, which would end a
 * field) on its own data: line; the client joins them with LF. */
static void sse_encode(struct sb *b, const char *event, int64_t id,
		       const char *data, size_t n)
{
	size_t i = 0, k;

	sb_adds(b, "event: ");
	sb_adds(b, event);
	sb_adds(b, "\n");
	if (id >= 0) {
		sb_adds(b, "id: ");
		sb_addi(b, id);
		sb_adds(b, "\n");
	}
	for (;;) {
		for (k = i; k < n && data[k] != '\n' && data[k] != '\r'; k++)
			;
		sb_adds(b, "data: ");
		sb_add(b, data + i, k - i);
		sb_adds(b, "\n");
		if (k >= n)
			break;
		i = k + 1;
		if (data[k] == '\r' && i < n && data[i] == '\n')
			i++;
	}
	sb_adds(b, "\n");
}

/* The cached SSE encoding of a payload: the room it is for (empty when
 * none) and a NUL, then the event; only the NUL when the payload is no
 * event (the stream skips it). Built once per message. */
static struct msgbuf_bytes *sse_build(const uint8_t *payload, size_t len,
				      void *arg)
{
	const char *p = (const char *)payload, *room = "";
	struct msgbuf_bytes *e;
	struct sb b;
	json_t *o = NULL;
	size_t pl = sizeof(task_prefix) - 1;

	(void)arg;
	sb_init(&b, len + 64);
	if (len > pl + 1 && memcmp(p, task_prefix, pl) == 0) {
		sb_add(&b, "", 1);
		sse_encode(&b, "task", -1, p + pl, len - pl - 1);
	} else if ((o = json_loadb(p, len, 0, NULL)) != NULL &&
		   json_is_string(json_object_get(o, "type")) &&
		   strcmp(json_string_value(json_object_get(o, "type")),
			  "message") == 0) {
		json_t *r = json_object_get(o, "room");
		if (json_is_string(r))
			room = json_string_value(r);
		sb_add(&b, room, strlen(room) + 1);
		sse_encode(&b, "message",
			   json_integer_value(json_object_get(o, "seq")), p,
			   len);
	} else {
		sb_add(&b, "", 1);
	}
	json_decref(o);
	e = xmalloc(sizeof(*e) + b.n);
	e->len = (uint32_t)b.n;
	memcpy(e->data, b.p, b.n);
	sb_free(&b);
	return e;
}

static int room_listed(const struct sse *x, const char *room)
{
	for (int i = 0; i < x->nrooms; i++)
		if (strcmp(x->rooms[i], room) == 0)
			return 1;
	return 0;
}

/* Queue n event bytes (in m, or copied when m is NULL). */
static int sse_queue(struct conn *c, struct msgbuf *m, const uint8_t *p,
		     size_t n)
{
	if (c->state != CONN_OPEN || conn_check_slow(c, n))
		return -1;
	if (m)
		msgbuf_add(conn_out(c), m, p, n);
	else
		evbuffer_add(conn_out(c), p, n);
	conn_count_out(n);
	return 0;
}

/* ---- the sink ---- */

static int sse_deliver(struct session *s, struct msgbuf *m)
{
	struct conn *c = conn_of(s);
	const struct msgbuf_bytes *e;
	size_t rl;

	if (c->state != CONN_OPEN)
		return -1;
	e = msgbuf_encoding(m, MSGBUF_SSE, sse_build, NULL);
	rl = strnlen((const char *)e->data, e->len);
	if (rl + 1 >= e->len)
		return 0; /* no event: nothing to send */
	if (rl > 0 && !room_listed(c->sse, (const char *)e->data))
		return 0; /* a room this stream did not ask for */
	return sse_queue(c, m, e->data + rl + 1, e->len - rl - 1);
}

static uint64_t sse_buffered(const struct session *s)
{
	return conn_sink.buffered(s);
}

static void sse_close(struct session *s, uint16_t code, const char *reason)
{
	conn_sink.close(s, code, reason);
}

static void sse_cut(struct session *s, uint64_t buffered)
{
	conn_sink.cut(s, buffered);
}

static const struct session_sink sse_sink = {
	.deliver = sse_deliver,
	.buffered = sse_buffered,
	.close = sse_close,
	.cut = sse_cut,
};

/* ---- the request ---- */

static void list_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void sse_free(struct conn *c)
{
	if (c->sse == NULL)
		return;
	list_free(c->sse->rooms, c->sse->nrooms);
	list_free(c->sse->tasks, c->sse->ntasks);
	free(c->sse);
	c->sse = NULL;
}

/* Every value of query parameter name, into *v: 0, or -1 with *why. */
static int query_all(const struct ws_request *req, const char *name, char ***v,
		     int *n, const char **why)
{
	const char *p = req->query.p, *end = p + req->query.n;
	char val[SSE_NAME_MAX];

	while (p && p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		size_t l = (size_t)((amp ? amp : end) - p);
		int k = ws_query_get(p, l, name, val, sizeof(val));
		if (k == -2 || k == 0) {
			*why = "malformed room or task";
			return -1;
		}
		if (k > 0) {
			if (*n >= SSE_MAX_LIST) {
				*why = "too many rooms or tasks";
				return -1;
			}
			*v = xrealloc(*v, sizeof(**v) * (size_t)(*n + 1));
			(*v)[(*n)++] = xstrdup(val);
		}
		p = amp ? amp + 1 : end;
	}
	return 0;
}

int sse_check(struct conn *c, const struct ws_request *req,
	      const struct auth_identity *id, const char **why)
{
	struct sse *x = xcalloc(1, sizeof(*x));

	sse_free(c);
	c->sse = x;
	if (query_all(req, "room", &x->rooms, &x->nrooms, why) < 0 ||
	    query_all(req, "task", &x->tasks, &x->ntasks, why) < 0)
		return 400;
	for (int i = 0; i < x->nrooms; i++)
		if (!broker_is_member(id->uid, x->rooms[i])) {
			*why = "not a member of a listed room";
			return 403;
		}
	for (int i = 0; i < x->ntasks; i++)
		if (tasks_may_watch(x->tasks[i], id->uid, id->role) != 1) {
			*why = "a listed task does not exist or may not be "
			       "watched";
			return 403;
		}
	return 0;
}

/* A decimal seq >= 0, or -1. */
static int64_t parse_seq(const char *s)
{
	char *e;
	long long v;

	if (*s == '\0')
		return -1;
	v = strtoll(s, &e, 10);
	return *e == '\0' && v >= 0 ? v : -1;
}

/* The first snapshot of a listed task (maybe after a pending commit). */
static void task_done(const struct bk_done *d, const struct bk_result *r)
{
	struct session *s = session_find(d->id);
	struct sb b;

	if (s == NULL || r->status != BK_OK || r->body == NULL)
		return;
	sb_init(&b, r->body_len + 32);
	sse_encode(&b, "task", -1, r->body, r->body_len);
	sse_queue(conn_of(s), NULL, (const uint8_t *)b.p, b.n);
	sb_free(&b);
}

void sse_start(struct conn *c, const struct ws_request *req,
	       const struct auth_identity *id, int origin_ok)
{
	struct evbuffer *out = conn_out(c);
	char num[32], ep[64];
	int64_t since = -1;
	int epoch_ok = 1;

	evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\n"
				 "Content-Type: text/event-stream\r\n"
				 "Cache-Control: no-cache\r\n"
				 "X-Accel-Buffering: no\r\n");
	if (origin_ok)
		evbuffer_add_printf(out,
				    "Access-Control-Allow-Origin: %.*s\r\n"
				    "Vary: Origin\r\n",
				    (int)req->origin.n, req->origin.p);
	evbuffer_add_printf(out, "\r\nretry: %d\n\n", SSE_RETRY_MS);

	/* Where to resume: Last-Event-ID (a browser's reconnect) wins over
	 * since= (the first connect's URL, which the browser repeats). */
	if (req->last_event_id.p && req->last_event_id.n < sizeof(num)) {
		memcpy(num, req->last_event_id.p, req->last_event_id.n);
		num[req->last_event_id.n] = '\0';
		since = parse_seq(num);
	}
	if (since < 0 && ws_query_get(req->query.p, req->query.n, "since", num,
				      sizeof(num)) > 0)
		since = parse_seq(num);
	if (ws_query_get(req->query.p, req->query.n, "epoch", ep, sizeof(ep)) >=
	    0)
		epoch_ok = strcmp(ep, broker_epoch()) == 0;

	c->s.sink = &sse_sink;
	conn_open(c, id);
	if (c->state != CONN_OPEN)
		return;
	broker_resume(&c->s, since, 0, since >= 0 ? epoch_ok : 1, NULL, NULL);
	for (int i = 0; i < c->sse->ntasks && c->state == CONN_OPEN; i++) {
		struct bk_done d = {.fn = task_done, .id = c->s.id};
		tasks_subscribe(&c->s, c->sse->tasks[i], 0, &d);
	}
}

void sse_heartbeat(struct conn *c)
{
	static const char hb[] = ": heartbeat\n\n";
	sse_queue(c, NULL, (const uint8_t *)hb, sizeof(hb) - 1);
}
