/*
 * The one rule for every id, uid and room name a client or a backend gives
 * (WebSocket frames, HTTP paths and bodies): 1..max bytes of UTF-8
 * without a control character (C0 including NUL, DEL, C1). Checked over the
 * value's whole length: a percent-decoded path (or a JSON string, were NULs let
 * through the parser) may hold a NUL that C string code would silently cut
 * at: "a%00zzz" is not task "a".
 */
#ifndef BASESTATION_NAMES_H
#define BASESTATION_NAMES_H

#include <jansson.h>
#include <stddef.h>

/* 1 when the len bytes at s are a valid id. */
int name_id_ok(const char *s, size_t len, size_t max);
/* name_id_ok over a NUL-terminated string. */
int name_ok(const char *s, size_t max);
/* 1 when v is a JSON string that is a valid id. */
int name_json_ok(const json_t *v, size_t max);

#endif
