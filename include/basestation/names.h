/* Names a client may give: rooms, uids as targets, task ids. */
#ifndef BASESTATION_NAMES_H
#define BASESTATION_NAMES_H

#include <jansson.h>
#include <stddef.h>

/* 1 when s is 1..max bytes without control characters (C0, DEL). */
int name_ok(const char *s, size_t max);
/* 1 when v is a string that name_ok accepts and that holds no NUL (which
 * would cut the name short). */
int name_json_ok(const json_t *v, size_t max);

#endif
