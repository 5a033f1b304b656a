/*
 * Tasks and progress: the latest state of each task in memory and in the
 * store (through the engine); every new version is pushed to subscribers
 * after its commit, framed once for all of them. Operations complete a
 * bk_done (result.h): body = the snapshot (JSON text), seq = the version,
 * name = the task id.
 */
#ifndef BASESTATION_TASKS_H
#define BASESTATION_TASKS_H

#include "basestation/auth.h"
#include "basestation/result.h"

#include <jansson.h>
#include <stddef.h>

struct session;

/* Create from body ({id?, title, owner?, watchers?, steps?, total?});
 * default_owner when it names none (NULL: owner is required). BK_CREATED
 * after the commit; BK_BAD_REQUEST, BK_TOO_LARGE, BK_CONFLICT (id in use)
 * or BK_UNAVAILABLE. */
void tasks_create(const json_t *body, const char *default_owner,
		  const struct bk_done *done);
/* Apply an update {step?, status?, done?, total?, note?}: BK_OK with the
 * new version after its commit, or at once when nothing changed. */
void tasks_update(const char *id, const json_t *body,
		  const struct bk_done *done);
/* The committed snapshot now. */
void tasks_get(const char *id, const struct bk_done *done);
/* Subscribe s (seed: the seed documents' shape, which stops once the task
 * is done): body = the current snapshot (or its seed shape), after the
 * commit of a change still pending. */
void tasks_subscribe(struct session *s, const char *id, int seed,
		     const struct bk_done *done);
/* Every subscription of s to id, of either kind: BK_OK, name = id. */
void tasks_unsubscribe(struct session *s, const char *id,
		       const struct bk_done *done);

/* Whether uid (role) may watch task id: 1 yes, 0 no, -1 no such task. */
int tasks_may_watch(const char *id, const char *uid, enum auth_role role);

size_t tasks_count(void);
int tasks_exists(const char *id);

#endif
