/* Results as WebSocket replies (private to src/proto/). */
#ifndef BASESTATION_PROTO_RENDER_H
#define BASESTATION_PROTO_RENDER_H

#include "basestation/commands.h"
#include "basestation/result.h"

#include <jansson.h>

struct session;

/* The reply to command kind (enum cmd_type) with ref for result r: an
 * ack, joined, left, presence, task, unsubscribed, or an error. Nothing
 * for a resume that started (its "resumed" comes at the end). */
void render_result(struct session *s, enum cmd_type kind, const json_t *ref,
		   const struct bk_result *r);
/* {"type":"error","code":code,"message":…[,"ref":…]} */
void render_error(struct session *s, const json_t *ref, const char *code,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* {"type":"pong"[,"ref":…]} */
void render_pong(struct session *s, const json_t *ref);
/* A JSON object (stolen) as a reply. */
void render_json(struct session *s, json_t *o);

#endif
