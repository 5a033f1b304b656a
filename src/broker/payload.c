/*
 * What the broker sends on its own, as message payloads (msgbuf.h): the
 * JSON text every transport carries (a WebSocket text frame, an SSE
 * event), built once and shared by every recipient.
 */
#include "broker_int.h"
#include "basestation/msgbuf.h"
#include "basestation/sb.h"

#include <stdlib.h>
#include <string.h>

struct msgbuf *payload_message(const struct msg_record *m)
{
	struct sb b;
	struct msgbuf *mb;

	sb_init(&b, 96 + m->data_len);
	sb_adds(&b, "{\"type\":\"message\",\"seq\":");
	sb_addi(&b, m->seq);
	sb_adds(&b, ",\"from\":");
	sb_add_jstr(&b, m->sender);
	if (m->room) {
		sb_adds(&b, ",\"room\":");
		sb_add_jstr(&b, m->room);
	} else {
		sb_adds(&b, ",\"to\":");
		sb_add_jstr(&b, m->to);
	}
	sb_adds(&b, ",\"data\":");
	sb_add(&b, m->data, m->data_len);
	sb_adds(&b, ",\"ts\":");
	sb_addi(&b, m->ts);
	sb_add(&b, "}", 1);
	mb = msgbuf_copy(b.p, b.n);
	sb_free(&b);
	return mb;
}

struct msgbuf *payload_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	struct msgbuf *mb;

	json_decref(o);
	if (s == NULL)
		return NULL;
	mb = msgbuf_copy(s, strlen(s));
	free(s);
	return mb;
}

struct msgbuf *payload_presence(const char *type, const char *room,
				const char *uid)
{
	struct sb b;
	struct msgbuf *mb;

	sb_init(&b, 64);
	sb_adds(&b, "{\"type\":");
	sb_add_jstr(&b, type);
	sb_adds(&b, ",\"room\":");
	sb_add_jstr(&b, room);
	sb_adds(&b, ",\"uid\":");
	sb_add_jstr(&b, uid);
	sb_add(&b, "}", 1);
	mb = msgbuf_copy(b.p, b.n);
	sb_free(&b);
	return mb;
}
