/*
 * Fuzz the client-frame parser: bytes -> validated command or an error.
 * Invariants: every success has the fields its type needs; every error has
 * a code and a message; nothing leaks.
 */
#include "basestation/commands.h"
#include "basestation/names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct command cmd;
	int rc = commands_parse(data, size, &cmd);

	if (rc < 0) {
		if (cmd.code == NULL || cmd.err[0] == '\0')
			abort();
	} else {
		switch (cmd.type) {
		case CMD_SEND:
		case CMD_PUBLISH:
			if (cmd.data == NULL)
				abort();
			/* the raw text, when found, is the same value */
			if (cmd.data_raw) {
				json_t *again = json_loadb(
					cmd.data_raw, cmd.data_raw_len,
					JSON_DECODE_ANY, NULL);
				if (again == NULL ||
				    !json_equal(again, cmd.data))
					abort();
				json_decref(again);
			}
			__attribute__((fallthrough));
		case CMD_JOIN:
		case CMD_LEAVE:
		case CMD_PRESENCE:
		case CMD_SUBSCRIBE:
		case CMD_UNSUBSCRIBE:
		case CMD_SEED_TASK:
			if (cmd.target == NULL ||
			    !name_ok(cmd.target, COMMANDS_NAME_MAX))
				abort();
			break;
		case CMD_RESUME:
			if (cmd.since < 0)
				abort();
			break;
		default:
			break;
		}
	}
	if (cmd.ref && !commands_ref_ok(cmd.ref))
		abort();
	commands_free(&cmd);
	return 0;
}
