/*
 * The WebSocket protocol above the broker: text frames in (parse.c:
 * commands.h), operations dispatched (dispatch.c), results rendered as
 * replies (render.c), all through the session's sink.
 */
#ifndef BASESTATION_PROTO_H
#define BASESTATION_PROTO_H

#include "basestation/settings.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct session;

void proto_init(const struct config *cfg);
/* One text message from the client of s. Bad input gets an `error` reply
 * and the connection stays open. */
void proto_handle(struct session *s, const uint8_t *data, size_t len);
/* The rate limit (--rate, --burst): one token per text message or ping
 * (contract v2 §6). 0 go on; -1 refused: answered rate_limited (with ref),
 * or closed with 1008 for a client that keeps sending past the bucket. */
int proto_rate_check(struct session *s, const json_t *ref);
/* The first message of an open connection: {"type":"connect",...}. */
void proto_hello(struct session *s, const char *uid);

#endif
