/*
 * Client frames: parsing and validation (no I/O, no server state), so the
 * whole path from bytes to a validated command can be unit-tested and
 * fuzzed. Dispatch is src/proto/dispatch.c (proto.h).
 */
#ifndef BASESTATION_COMMANDS_H
#define BASESTATION_COMMANDS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define COMMANDS_NAME_MAX 128

enum cmd_type {
	CMD_PING,
	CMD_SEND,
	CMD_PUBLISH,
	CMD_JOIN,
	CMD_LEAVE,
	CMD_PRESENCE,
	CMD_RESUME,
	CMD_SUBSCRIBE,
	CMD_UNSUBSCRIBE,
	CMD_TASK_CREATE, /* fields validated by tasks.c */
	CMD_TASK_UPDATE,
	CMD_SEED_TEST, /* {"test":…} */
	CMD_SEED_TASK, /* {"id":X} */
};

struct command {
	enum cmd_type type;
	json_t *msg;	      /* the whole frame (owned) */
	json_t *ref;	      /* borrowed from msg; NULL if absent or invalid */
	const char *target;   /* to / room / task, validated name */
	json_t *data;	      /* send / publish payload (borrowed) */
	const char *data_raw; /* its text as the client wrote it, inside
				 the frame: no re-serialization */
	size_t data_raw_len;
	int presence;	   /* join: 1 true, 0 false, -1 absent */
	int64_t since;	   /* resume */
	const char *epoch; /* resume, may be NULL */
	char seed_id[32];  /* CMD_SEED_TASK with an integer id */
	const char *code;  /* on error: bad_request / unknown_type */
	char err[160];	   /* on error: the message */
};

/* 1 when ref is absent, an integer, or a string of at most 64 chars. */
int commands_ref_ok(const json_t *ref);

/*
 * Parse one text frame. Returns 0 with *cmd filled, or -1 with cmd->code
 * and cmd->err set (cmd->ref is set when the frame had a valid ref, so the
 * error can carry it). Either way release with commands_free().
 */
int commands_parse(const uint8_t *data, size_t len, struct command *cmd);

/* In s (n bytes of valid JSON holding an object), find the value of the
 * top-level member `key` (compared as written, no escapes): 0 with its text
 * in *v / *vn, -1 when absent or the key is escaped. */
int commands_member_text(const char *s, size_t n, const char *key,
			 const char **v, size_t *vn);
void commands_free(struct command *cmd);

#endif
