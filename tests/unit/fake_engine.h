/*
 * A fake engine for the broker's unit tests: the interface of engine.h in
 * memory. Submitted events wait until fake_engine_commit(), which (like
 * the local engine after its COMMIT) hands each to the broker and then
 * completes its operation, in submission order; or fails them all. It
 * keeps what a store would: committed messages (replay reads them),
 * memberships since their seq, cursors, idempotency keys.
 */
#ifndef BASESTATION_TEST_FAKE_ENGINE_H
#define BASESTATION_TEST_FAKE_ENGINE_H

#include "basestation/engine.h"

struct engine *fake_engine_create(void);
void fake_engine_destroy(struct engine *e);
/* Commit (ok = 1) or fail (ok = 0) everything submitted so far. */
void fake_engine_commit(struct engine *e, int ok);
/* Operations waiting for a commit. */
int fake_engine_pending(const struct engine *e);
/* Events submitted so far (whether committed or not), of one kind. */
int fake_engine_submitted(const struct engine *e, enum engine_kind kind);
/* The next submit is refused at once. */
void fake_engine_refuse_next(struct engine *e);
/* The presence calls the broker made ("+uid " online, "-uid " gone). */
const char *fake_engine_presence_log(const struct engine *e);
/* Another node's presence, through the engine's on_presence. */
void fake_engine_feed_presence(struct engine *e, const char *uid, int delta);

#endif
