/*
 * Results as WebSocket replies: one builder per reply shape, the ref
 * added in one place. Each reply is a payload of its own, sent through the
 * session's sink (which frames it).
 */
#include "render.h"
#include "basestation/metrics.h"
#include "basestation/msgbuf.h"
#include "basestation/sb.h"
#include "basestation/session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void send_sb(struct session *s, struct sb *b)
{
	struct msgbuf *m = msgbuf_copy(b->p, b->n);
	session_send(s, m);
	msgbuf_unref(m);
	sb_free(b);
}

/* ,"ref":… when there is one, then the closing brace. */
static void end(struct sb *b, const json_t *ref)
{
	char *r;
	if (ref && (r = json_dumps(ref, JSON_ENCODE_ANY)) != NULL) {
		sb_adds(b, ",\"ref\":");
		sb_adds(b, r);
		free(r);
	}
	sb_add(b, "}", 1);
}

/* A reply object (stolen) with the ref, if any, added. */
static void send_obj(struct session *s, json_t *o, const json_t *ref)
{
	if (o && ref)
		json_object_set(o, "ref", (json_t *)ref);
	render_json(s, o);
}

void render_pong(struct session *s, const json_t *ref)
{
	send_obj(s, json_pack("{s:s}", "type", "pong"), ref);
}

void render_json(struct session *s, json_t *o)
{
	char *t;
	struct msgbuf *m;

	if (o == NULL)
		return;
	t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (t == NULL)
		return;
	m = msgbuf_copy(t, strlen(t));
	free(t);
	session_send(s, m);
	msgbuf_unref(m);
}

void render_error(struct session *s, const json_t *ref, const char *code,
		  const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	metrics.errors_sent++;
	send_obj(s,
		 json_pack("{s:s, s:s, s:s}", "type", "error", "code", code,
			   "message", msg),
		 ref);
}

static const char *error_code(enum bk_status st)
{
	switch (st) {
	case BK_FORBIDDEN:
		return "forbidden";
	case BK_NOT_FOUND:
		return "not_found";
	case BK_TOO_LARGE:
		return "too_large";
	case BK_UNAVAILABLE:
	case BK_STALE: /* the broker never answers it */
		/* the engine could not make it durable (a failed COMMIT, a
		 * cluster that did not ack in time): "maybe stored", resend
		 * with the same ref (protocol §7) */
		return "unavailable";
	default:
		return "bad_request";
	}
}

void render_result(struct session *s, enum cmd_type kind, const json_t *ref,
		   const struct bk_result *r)
{
	const char *name = r->name ? r->name : "";
	struct sb b;

	if (r->status != BK_OK && r->status != BK_CREATED) {
		render_error(s, ref, error_code(r->status), "%s",
			     r->msg ? r->msg : "failed");
		return;
	}
	switch (kind) {
	case CMD_SEND:
	case CMD_PUBLISH:
		/* {"type":"ack","seq":N[,"ref":…]}: one per message */
		sb_init(&b, 64);
		sb_adds(&b, "{\"type\":\"ack\",\"seq\":");
		sb_addi(&b, r->seq);
		end(&b, ref);
		metrics.acks++;
		send_sb(s, &b);
		break;
	case CMD_JOIN:
		send_obj(
			s,
			json_pack("{s:s, s:s}", "type", "joined", "room", name),
			ref);
		break;
	case CMD_LEAVE:
		send_obj(s,
			 json_pack("{s:s, s:s}", "type", "left", "room", name),
			 ref);
		break;
	case CMD_UNSUBSCRIBE:
		send_obj(s,
			 json_pack("{s:s, s:s}", "type", "unsubscribed", "task",
				   name),
			 ref);
		break;
	case CMD_PRESENCE: {
		json_t *online =
			r->body ? json_loadb(r->body, r->body_len, 0, NULL)
				: NULL;
		send_obj(s,
			 json_pack("{s:s, s:s, s:o}", "type", "presence",
				   "room", name, "online",
				   online ? online : json_array()),
			 ref);
		break;
	}
	case CMD_SUBSCRIBE:
	case CMD_TASK_CREATE:
		/* {"type":"task","task":snapshot[,"ref":…]} */
		sb_init(&b, 48 + r->body_len);
		sb_adds(&b, "{\"type\":\"task\",\"task\":");
		sb_add(&b, r->body, r->body_len);
		end(&b, ref);
		send_sb(s, &b);
		break;
	case CMD_SEED_TASK: {
		/* the seed documents' own shape, as it is */
		struct msgbuf *m = msgbuf_copy(r->body, r->body_len);
		session_send(s, m);
		msgbuf_unref(m);
		break;
	}
	case CMD_TASK_UPDATE:
		send_obj(s,
			 json_pack("{s:s, s:s, s:I}", "type", "ack", "task",
				   name, "version", (json_int_t)r->seq),
			 ref);
		break;
	case CMD_PING:
	case CMD_SEED_TEST:
	case CMD_RESUME:
		break;
	}
}
