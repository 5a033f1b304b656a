/*
 * Client frames: parse the JSON object, validate its fields, dispatch.
 * Bad input gets an `error` frame and the connection stays open; only a
 * client that keeps flooding past its rate limit is closed (1008).
 */
#include "basestation/broker.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/store.h"
#include "basestation/tasks.h"

#include <stdio.h>
#include <string.h>

/* Room names, uids and task ids: 1..max bytes, no control characters. */
int commands_valid_name(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

int commands_ref_ok(const json_t *ref)
{
	if (ref == NULL || json_is_integer(ref))
		return 0;
	if (json_is_string(ref) && json_string_length(ref) <= 64)
		return 0;
	return -1;
}

/* Token bucket. Returns 0 to go on, -1 when the frame is refused. */
static int rate_check(struct conn *c, const json_t *ref)
{
	const struct config *cfg = srv->cfg;
	int64_t now;

	if (cfg->rate <= 0)
		return 0;
	now = mono_ms();
	c->tokens += (double)(now - c->tokens_at) * cfg->rate / 1000.0;
	c->tokens_at = now;
	if (c->tokens > cfg->burst) {
		c->tokens = cfg->burst;
		c->strikes = 0;
	}
	if (c->tokens >= 1.0) {
		c->tokens -= 1.0;
		return 0;
	}
	metrics.rate_limited++;
	if (++c->strikes > (int)cfg->burst) {
		metrics.drop_rate++;
		log_warn("conn.flood", "conn=%llu uid=%s",
			 (unsigned long long)c->id, log_val(c->user->uid));
		conn_close(c, WS_CLOSE_POLICY, "rate limit exceeded");
		return -1;
	}
	conn_send_error(c, ref, "rate_limited",
			"more than %g messages per "
			"second",
			cfg->rate);
	return -1;
}

static const char *get_name(struct conn *c, json_t *msg, const char *field,
			    const json_t *ref, size_t max)
{
	json_t *v = json_object_get(msg, field);
	if (!json_is_string(v)) {
		conn_send_error(c, ref, "bad_request",
				"field '%s' must be a string", field);
		return NULL;
	}
	if (!commands_valid_name(json_string_value(v), max) ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		conn_send_error(c, ref, "bad_request",
				"field '%s' must be 1..%zu bytes without "
				"control characters",
				field, max);
		return NULL;
	}
	return json_string_value(v);
}

static void pong(struct conn *c, const json_t *ref)
{
	json_t *o = json_pack("{s:s}", "type", "pong");
	if (ref)
		json_object_set(o, "ref", (json_t *)ref);
	conn_send_json(c, o);
}

static void cmd_send(struct conn *c, json_t *msg, json_t *ref, int room)
{
	const char *target =
		get_name(c, msg, room ? "room" : "to", ref, AUTH_UID_MAX);
	json_t *data = json_object_get(msg, "data");

	if (target == NULL)
		return;
	if (data == NULL) {
		conn_send_error(c, ref, "bad_request",
				"field 'data' is "
				"required");
		return;
	}
	if (room) {
		struct room *r = registry_room(target, 0);
		if (r == NULL || !registry_is_member(c->user, r)) {
			conn_send_error(c, ref, "forbidden",
					"join room '%s' before publishing",
					target);
			return;
		}
		router_send(c, c->user->uid, NULL, target, data, ref, NULL);
	} else {
		router_send(c, c->user->uid, target, NULL, data, ref, NULL);
	}
}

static void cmd_resume(struct conn *c, json_t *msg, json_t *ref)
{
	json_t *since = json_object_get(msg, "since");
	json_t *epoch = json_object_get(msg, "epoch");
	int epoch_ok = 1;

	if (!json_is_integer(since) || json_integer_value(since) < 0) {
		conn_send_error(c, ref, "bad_request",
				"field 'since' must be an integer >= 0");
		return;
	}
	if (epoch && !json_is_null(epoch)) {
		if (!json_is_string(epoch)) {
			conn_send_error(c, ref, "bad_request",
					"field 'epoch' must be a string");
			return;
		}
		epoch_ok = strcmp(json_string_value(epoch),
				  store_epoch(srv->store)) == 0;
	}
	router_replay_start(c, json_integer_value(since), 1, epoch_ok, ref);
}

/* The seed documents' shapes, for page code that predates the protocol. */
static int seed_compat(struct conn *c, json_t *msg)
{
	json_t *id;

	if (json_object_get(msg, "test")) {
		conn_send_json(c, json_pack("{s:s}", "test", "ok"));
		return 1;
	}
	if (json_object_get(msg, "keepalive")) {
		pong(c, NULL);
		return 1;
	}
	id = json_object_get(msg, "id");
	if (id && (json_is_string(id) || json_is_integer(id))) {
		char buf[32];
		const char *tid = buf;
		if (json_is_integer(id))
			snprintf(buf, sizeof(buf), "%lld",
				 (long long)json_integer_value(id));
		else
			tid = json_string_value(id);
		tasks_ws_subscribe(c, tid, NULL, 1);
		return 1;
	}
	return 0;
}

void commands_handle(struct conn *c, const uint8_t *data, size_t len)
{
	json_error_t jerr;
	json_t *msg, *ref, *tv;
	const char *type;

	msg = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES,
			 &jerr);
	if (msg == NULL) {
		if (rate_check(c, NULL) == 0)
			conn_send_error(c, NULL, "bad_request",
					"invalid JSON: %s", jerr.text);
		return;
	}
	ref = json_object_get(msg, "ref");
	if (!json_is_object(msg)) {
		if (rate_check(c, NULL) == 0)
			conn_send_error(c, NULL, "bad_request",
					"a frame must be a JSON object");
		goto out;
	}
	if (rate_check(c, commands_ref_ok(ref) == 0 ? ref : NULL) < 0)
		goto out;
	if (commands_ref_ok(ref) < 0) {
		conn_send_error(c, NULL, "bad_request",
				"'ref' must be a string of at most 64 "
				"characters or an integer");
		goto out;
	}
	tv = json_object_get(msg, "type");
	if (tv == NULL) {
		if (!seed_compat(c, msg))
			conn_send_error(c, ref, "bad_request",
					"field 'type' is required");
		goto out;
	}
	if (!json_is_string(tv)) {
		conn_send_error(c, ref, "bad_request",
				"field 'type' must be a string");
		goto out;
	}
	type = json_string_value(tv);
	if (strcmp(type, "ping") == 0 || strcmp(type, "headerBeat") == 0 ||
	    strcmp(type, "heartbeat") == 0) {
		pong(c, ref);
	} else if (strcmp(type, "send") == 0) {
		cmd_send(c, msg, ref, 0);
	} else if (strcmp(type, "publish") == 0) {
		cmd_send(c, msg, ref, 1);
	} else if (strcmp(type, "join") == 0 || strcmp(type, "leave") == 0 ||
		   strcmp(type, "presence") == 0) {
		const char *room = get_name(c, msg, "room", ref, 128);
		if (room == NULL)
			goto out;
		if (type[0] == 'j')
			router_join(c, room, ref);
		else if (type[0] == 'l')
			router_leave(c, room, ref);
		else
			router_presence(c, room, ref);
	} else if (strcmp(type, "resume") == 0) {
		cmd_resume(c, msg, ref);
	} else if (strcmp(type, "subscribe") == 0 ||
		   strcmp(type, "unsubscribe") == 0) {
		const char *task = get_name(c, msg, "task", ref, 128);
		if (task == NULL)
			goto out;
		if (type[0] == 's')
			tasks_ws_subscribe(c, task, ref, 0);
		else
			tasks_ws_unsubscribe(c, task, ref);
	} else if (strcmp(type, "task.create") == 0) {
		tasks_ws_create(c, msg, ref);
	} else if (strcmp(type, "task.update") == 0) {
		tasks_ws_update(c, msg, ref);
	} else {
		conn_send_error(c, ref, "unknown_type", "unknown type '%.64s'",
				type);
	}
out:
	json_decref(msg);
}
