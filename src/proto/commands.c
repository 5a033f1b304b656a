/*
 * Client frames: parse the JSON object and validate its fields. Pure: no
 * I/O, no state (fuzzed); dispatch.c acts on the result.
 */
#include "basestation/commands.h"
#include "basestation/names.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int commands_ref_ok(const json_t *ref)
{
	return ref == NULL || json_is_integer(ref) ||
	       (json_is_string(ref) && json_string_length(ref) <= 64);
}

static int fail(struct command *cmd, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct command *cmd, const char *code, const char *fmt, ...)
{
	va_list ap;
	cmd->code = code;
	va_start(ap, fmt);
	vsnprintf(cmd->err, sizeof(cmd->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* A name field: a string of 1..max bytes, no NUL, no control characters. */
static int get_name(struct command *cmd, const char *field, size_t max)
{
	json_t *v = json_object_get(cmd->msg, field);
	if (!json_is_string(v))
		return fail(cmd, "bad_request", "field '%s' must be a string",
			    field);
	if (!name_json_ok(v, max))
		return fail(cmd, "bad_request",
			    "field '%s' must be 1..%zu bytes without control "
			    "characters",
			    field, max);
	cmd->target = json_string_value(v);
	return 0;
}

static const struct {
	const char *name;
	enum cmd_type type;
} types[] = {
	{"ping", CMD_PING},
	{"headerBeat", CMD_PING}, /* seed 002's heartbeat */
	{"heartbeat", CMD_PING},
	{"send", CMD_SEND},
	{"publish", CMD_PUBLISH},
	{"join", CMD_JOIN},
	{"leave", CMD_LEAVE},
	{"presence", CMD_PRESENCE},
	{"resume", CMD_RESUME},
	{"subscribe", CMD_SUBSCRIBE},
	{"unsubscribe", CMD_UNSUBSCRIBE},
	{"task.create", CMD_TASK_CREATE},
	{"task.update", CMD_TASK_UPDATE},
};

/* The seed documents' shapes, for page code that predates the protocol. */
static int parse_seed(struct command *cmd)
{
	json_t *id;

	if (json_object_get(cmd->msg, "test")) {
		cmd->type = CMD_SEED_TEST;
		return 0;
	}
	if (json_object_get(cmd->msg, "keepalive")) {
		cmd->type = CMD_PING;
		return 0;
	}
	id = json_object_get(cmd->msg, "id");
	if (json_is_integer(id)) {
		snprintf(cmd->seed_id, sizeof(cmd->seed_id), "%lld",
			 (long long)json_integer_value(id));
		cmd->target = cmd->seed_id;
		cmd->type = CMD_SEED_TASK;
		return 0;
	}
	if (json_is_string(id)) {
		if (get_name(cmd, "id", COMMANDS_NAME_MAX) < 0)
			return -1;
		cmd->type = CMD_SEED_TASK;
		return 0;
	}
	return fail(cmd, "bad_request", "field 'type' is required");
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n &&
	       (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* Past the string starting at s[i] == '"'. */
static size_t skip_string(const char *s, size_t n, size_t i, int *escaped)
{
	for (i++; i < n && s[i] != '"'; i++)
		if (s[i] == '\\') {
			*escaped = 1;
			i++;
		}
	return i + 1;
}

/* Past the value starting at s[i] (the text is valid JSON). */
static size_t skip_value(const char *s, size_t n, size_t i)
{
	int depth = 0, esc = 0;

	do {
		if (s[i] == '"') {
			i = skip_string(s, n, i, &esc);
			continue;
		}
		if (s[i] == '{' || s[i] == '[')
			depth++;
		else if (s[i] == '}' || s[i] == ']')
			depth--;
		else if (depth == 0) {
			/* a scalar: up to the next delimiter */
			while (i < n && !strchr(",}] \t\r\n", s[i]))
				i++;
			return i;
		}
		i++;
	} while (i < n && depth > 0);
	return i;
}

int commands_member_text(const char *s, size_t n, const char *key,
			 const char **v, size_t *vn)
{
	size_t klen = strlen(key), i = skip_ws(s, n, 0);

	if (i >= n || s[i] != '{')
		return -1;
	i = skip_ws(s, n, i + 1);
	while (i < n && s[i] == '"') {
		int esc = 0;
		size_t k0 = i + 1, k1 = skip_string(s, n, i, &esc) - 1, v0;
		i = skip_ws(s, n, k1 + 1);
		if (i >= n || s[i] != ':')
			return -1;
		v0 = skip_ws(s, n, i + 1);
		i = skip_value(s, n, v0);
		if (!esc && k1 - k0 == klen && memcmp(s + k0, key, klen) == 0) {
			*v = s + v0;
			*vn = i - v0;
			return 0;
		}
		i = skip_ws(s, n, i);
		if (i < n && s[i] == ',')
			i = skip_ws(s, n, i + 1);
	}
	return -1;
}

int commands_parse(const uint8_t *data, size_t len, struct command *cmd)
{
	json_error_t jerr;
	json_t *tv, *ref;
	const char *type;
	size_t i;

	memset(cmd, 0, sizeof(*cmd));
	cmd->msg = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES,
			      &jerr);
	if (cmd->msg == NULL)
		return fail(cmd, "bad_request", "invalid JSON: %s", jerr.text);
	if (!json_is_object(cmd->msg))
		return fail(cmd, "bad_request",
			    "a frame must be a JSON object");
	ref = json_object_get(cmd->msg, "ref");
	if (!commands_ref_ok(ref))
		return fail(cmd, "bad_request",
			    "'ref' must be a string of at most 64 characters "
			    "or an integer");
	cmd->ref = ref;
	tv = json_object_get(cmd->msg, "type");
	if (tv == NULL)
		return parse_seed(cmd);
	if (!json_is_string(tv))
		return fail(cmd, "bad_request",
			    "field 'type' must be a string");
	type = json_string_value(tv);
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(type, types[i].name) == 0)
			break;
	if (i == sizeof(types) / sizeof(types[0]))
		return fail(cmd, "unknown_type", "unknown type '%.64s'", type);
	cmd->type = types[i].type;

	switch (cmd->type) {
	case CMD_SEND:
	case CMD_PUBLISH:
		if (get_name(cmd, cmd->type == CMD_SEND ? "to" : "room",
			     COMMANDS_NAME_MAX) < 0)
			return -1;
		cmd->data = json_object_get(cmd->msg, "data");
		if (cmd->data == NULL)
			return fail(cmd, "bad_request",
				    "field 'data' is required");
		if (commands_member_text((const char *)data, len, "data",
					 &cmd->data_raw,
					 &cmd->data_raw_len) < 0)
			cmd->data_raw = NULL; /* serialized from the tree */
		return 0;
	case CMD_JOIN: {
		json_t *p = json_object_get(cmd->msg, "presence");
		cmd->presence = -1;
		if (p && !json_is_null(p)) {
			if (!json_is_boolean(p))
				return fail(cmd, "bad_request",
					    "field 'presence' must be a "
					    "boolean");
			cmd->presence = json_is_true(p);
		}
		return get_name(cmd, "room", COMMANDS_NAME_MAX);
	}
	case CMD_LEAVE:
	case CMD_PRESENCE:
		return get_name(cmd, "room", COMMANDS_NAME_MAX);
	case CMD_SUBSCRIBE:
	case CMD_UNSUBSCRIBE:
		return get_name(cmd, "task", COMMANDS_NAME_MAX);
	case CMD_TASK_UPDATE: {
		/* dispatch.c checks the role first and the fields after; a task
		 * id that cannot exist is a bad_request, not not_found */
		json_t *task = json_object_get(cmd->msg, "task");
		if (json_is_string(task) &&
		    !name_json_ok(task, COMMANDS_NAME_MAX))
			return fail(cmd, "bad_request",
				    "field 'task' must be a task id");
		return 0;
	}
	case CMD_RESUME: {
		json_t *since = json_object_get(cmd->msg, "since");
		json_t *epoch = json_object_get(cmd->msg, "epoch");
		if (!json_is_integer(since) || json_integer_value(since) < 0)
			return fail(cmd, "bad_request",
				    "field 'since' must be an integer >= 0");
		cmd->since = json_integer_value(since);
		if (epoch && !json_is_null(epoch)) {
			if (!json_is_string(epoch))
				return fail(cmd, "bad_request",
					    "field 'epoch' must be a string");
			cmd->epoch = json_string_value(epoch);
		}
		return 0;
	}
	default:
		return 0;
	}
}

void commands_free(struct command *cmd)
{
	json_decref(cmd->msg);
	cmd->msg = NULL;
}
