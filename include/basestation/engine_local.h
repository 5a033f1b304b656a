/*
 * The local engine (src/engine/local.c): one node, SQLite, group commit
 * per loop turn. See engine.h for the interface.
 */
#ifndef BASESTATION_ENGINE_LOCAL_H
#define BASESTATION_ENGINE_LOCAL_H

#include "basestation/auth.h"
#include "basestation/settings.h"

#include <stddef.h>
#include <stdint.h>

struct engine;
struct event_base;

/* Open the database of cfg (--db, --sync) and start: the commit event,
 * retention (--retention-age/-count, once a second) and the watch on the
 * token change log (a few times a second). NULL with a reason in err. */
struct engine *engine_local_create(struct event_base *base,
				   const struct config *cfg, char *err,
				   size_t errsz);

/* The token commands of the CLI, on the database at path while a broker
 * may run beside them. issue: 0 ok (token in out, expiry in *expires_at),
 * -1 could not store it, -2 the database could not be opened (err).
 * revoke: 1 revoked, 0 no such valid token, -1 database error, -2 could
 * not open (err). */
int engine_local_token_issue(const char *path, const char *uid,
			     enum auth_role role, int64_t ttl_s, char *out,
			     size_t outsz, int64_t *expires_at, char *err,
			     size_t errsz);
int engine_local_token_revoke(const char *path, const char *token, char *err,
			      size_t errsz);

#endif
