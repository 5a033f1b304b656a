/*
 * Client text messages: parse (commands.c), check the rate limit, call
 * the broker operation, and render its result (render.c) whenever it
 * completes: at once, or after the commit. A completion finds its session
 * again by id: a connection may be gone by then.
 */
#include "basestation/broker.h"
#include "basestation/commands.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/proto.h"
#include "basestation/session.h"
#include "basestation/tasks.h"
#include "basestation/ws.h"
#include "render.h"

#include <stdlib.h>
#include <string.h>

static const struct config *cfg;

void proto_init(const struct config *c)
{
	cfg = c;
}

int proto_rate_check(struct session *s, const json_t *ref)
{
	struct rate_bucket *b = &s->rate;
	int64_t now;

	if (cfg->rate <= 0)
		return 0;
	now = mono_ms();
	b->tokens += (double)(now - b->at) * cfg->rate / 1000.0;
	b->at = now;
	if (b->tokens > cfg->burst) {
		b->tokens = cfg->burst;
		b->strikes = 0;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	metrics.rate_limited++;
	/* Refused frames past the bucket: the client ignores rate_limited. */
	if (++b->strikes > (cfg->burst < 1000 ? (int)cfg->burst : 1000)) {
		metrics.drop_rate++;
		log_warn("conn.flood", "conn=%llu uid=%s",
			 (unsigned long long)s->id, log_val(broker_uid(s)));
		s->sink->close(s, WS_CLOSE_POLICY, "rate limit exceeded");
		return -1;
	}
	render_error(s, ref, "rate_limited", "more than %g messages per second",
		     cfg->rate);
	return -1;
}

void proto_hello(struct session *s, const char *uid)
{
	render_json(s, json_pack("{s:s, s:s, s:I, s:i, s:I, s:s}", "type",
				 "connect", "uid", uid, "conn",
				 (json_int_t)s->id, "heartbeat", cfg->heartbeat,
				 "seq", (json_int_t)broker_committed(), "epoch",
				 broker_epoch()));
}

/* The completion of every command: ptr holds the ref (a reference), id
 * the session, kind the command. */
static void reply_done(const struct bk_done *d, const struct bk_result *r)
{
	struct session *s = session_find(d->id);

	if (s)
		render_result(s, (enum cmd_type)d->kind, d->ptr, r);
	json_decref(d->ptr);
}

static void dispatch(struct session *s, const struct command *cmd)
{
	const char *uid = broker_uid(s);
	struct bk_done done = {
		.fn = reply_done,
		.ptr = cmd->ref ? json_incref(cmd->ref) : NULL,
		.id = s->id,
		.kind = (int)cmd->type,
	};

	switch (cmd->type) {
	case CMD_PING:
		render_pong(s, cmd->ref);
		break;
	case CMD_SEED_TEST:
		render_json(s, json_pack("{s:s}", "test", "ok"));
		break;
	case CMD_SEND:
	case CMD_PUBLISH: {
		const char *data = cmd->data_raw;
		size_t len = cmd->data_raw_len;
		char *text = NULL;
		if (data == NULL) {
			/* the raw text was not found: serialized again */
			text = json_dumps(cmd->data,
					  JSON_COMPACT | JSON_ENCODE_ANY);
			if (text == NULL) {
				bk_refuse(&done, BK_UNAVAILABLE,
					  "could not store the message");
				return;
			}
			data = text;
			len = strlen(text);
		}
		broker_send(s, uid, cmd->type == CMD_SEND ? cmd->target : NULL,
			    cmd->type == CMD_PUBLISH ? cmd->target : NULL, data,
			    len, cmd->ref, &done);
		free(text);
		return;
	}
	case CMD_JOIN:
		broker_join(s, cmd->target, cmd->presence, &done);
		return;
	case CMD_LEAVE:
		broker_leave(s, cmd->target, &done);
		return;
	case CMD_PRESENCE:
		broker_presence(cmd->target, &done);
		return;
	case CMD_RESUME:
		broker_resume(s, cmd->since, 1,
			      cmd->epoch == NULL ||
				      strcmp(cmd->epoch, broker_epoch()) == 0,
			      cmd->ref, &done);
		return;
	case CMD_SUBSCRIBE:
		tasks_subscribe(s, cmd->target, 0, &done);
		return;
	case CMD_SEED_TASK:
		json_decref(done.ptr);
		done.ptr = NULL; /* the seed shape carries no ref */
		tasks_subscribe(s, cmd->target, 1, &done);
		return;
	case CMD_UNSUBSCRIBE:
		tasks_unsubscribe(s, cmd->target, &done);
		return;
	case CMD_TASK_CREATE:
	case CMD_TASK_UPDATE: {
		json_t *id = json_object_get(cmd->msg, "task");
		if (s->role != ROLE_PRODUCER && s->role != ROLE_ADMIN) {
			bk_refuse(&done, BK_FORBIDDEN,
				  cmd->type == CMD_TASK_CREATE
					  ? "task.create needs the producer "
					    "role"
					  : "task.update needs the producer "
					    "role");
		} else if (cmd->type == CMD_TASK_CREATE) {
			tasks_create(cmd->msg, uid, &done);
		} else if (!json_is_string(id)) {
			bk_refuse(&done, BK_BAD_REQUEST,
				  "field 'task' must be a task id");
		} else {
			tasks_update(json_string_value(id), cmd->msg, &done);
		}
		return;
	}
	}
	json_decref(done.ptr);
}

void proto_handle(struct session *s, const uint8_t *data, size_t len)
{
	struct command cmd;
	int rc = commands_parse(data, len, &cmd);

	if (proto_rate_check(s, cmd.ref) == 0) {
		if (rc < 0)
			render_error(s, cmd.ref, cmd.code, "%s", cmd.err);
		else
			dispatch(s, &cmd);
	}
	commands_free(&cmd);
}
