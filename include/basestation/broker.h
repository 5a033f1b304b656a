/*
 * The broker: users, rooms and their sessions, messages (direct, room,
 * offline inbox, resume), tasks (tasks.h). One thread, one event loop;
 * nothing here is locked.
 *
 * Each operation completes its bk_done once with a bk_result (result.h),
 * whoever asked: the WebSocket dispatcher (proto/) and the HTTP API
 * (http/) render the same result. Anything that must be durable first goes
 * through the engine (engine.h) and completes after its commit.
 */
#ifndef BASESTATION_BROKER_H
#define BASESTATION_BROKER_H

#include "basestation/auth.h"
#include "basestation/settings.h"
#include "basestation/result.h"
#include "basestation/session.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct event_base;

/* Start on engine e: load memberships and tasks, listen for its events,
 * start the replay and task retention events. 0 ok, -1 the engine could
 * not load. */
int broker_init(struct event_base *base, const struct config *cfg,
		struct engine *e);
/* Free every user, room and task (the sessions are gone by then). */
void broker_finish(void);
/* Deliver everything still waiting for its bounded turn (fanq.c), now: at
 * stop, the last messages go out before the connections close. */
void broker_drain(void);

/* Who a token's text names: a JWT (--jwt-secret) or an opaque token (the
 * engine's store). 0 valid (fills *id); -1 cannot be a token (empty, too
 * long); AUTH_TOKEN_UNKNOWN neither a valid JWT nor a token of ours
 * (--auth-url may know it); AUTH_TOKEN_REVOKED / _EXPIRED; -2 error. */
int broker_authenticate(const char *tok, size_t len, int64_t now_ms,
			struct auth_identity *id);
/* The engine's epoch, and the newest committed seq. */
const char *broker_epoch(void);
int64_t broker_committed(void);

/* Gauges for /metrics. */
int broker_users_online(void);
size_t broker_nusers(void);
size_t broker_nrooms(void);

/* The session's uid (NULL when not open) and rooms. */
const char *broker_uid(const struct session *s);
int broker_session_nrooms(const struct session *s);
const char *broker_session_room(const struct session *s, int i);
/* 1 when uid is a member of room (stored membership), else 0. */
int broker_is_member(const char *uid, const char *room);

/*
 * Relay data (len bytes of JSON text, stored and sent as written) from
 * from_uid to user `to` or to `room` (exactly one). from is the sending
 * session (NULL for the HTTP API): it must be a member of the room, is not
 * sent its own room message, and a ref makes the send idempotent (a
 * resend completes with the original seq). Completes BK_OK with the seq
 * once committed.
 */
void broker_send(struct session *from, const char *from_uid, const char *to,
		 const char *room, const char *data, size_t len,
		 const json_t *ref, const struct bk_done *done);
/* Join or leave room (name = the room). presence 1: s is also sent the
 * room's presence.join/presence.leave events (until it leaves or closes),
 * 0: no longer, -1: as it was. broker_presence: body = a JSON array of the
 * members online (on any node; at once, without the grace period of the
 * events). */
void broker_join(struct session *s, const char *room, int presence,
		 const struct bk_done *done);
void broker_leave(struct session *s, const char *room,
		  const struct bk_done *done);
void broker_presence(const char *room, const struct bk_done *done);
/* Another node's sessions of uid changed by delta (the cluster engine's
 * feed): presence counts the user online while it has a session on any
 * node, and announces as for its own sessions. */
void broker_presence_remote(const char *uid, int delta);
/*
 * Replay to s the messages after since (>= 0: resume; with report it
 * ends with "resumed") or after its user's inbox cursor (since < 0, only
 * for the user's first session). epoch_ok 0: the client's seq names
 * another history, so all of ours. ref goes into "resumed". Completes at
 * once: BK_OK, or BK_BAD_REQUEST when a replay runs already.
 */
void broker_resume(struct session *s, int64_t since, int report, int epoch_ok,
		   const json_t *ref, const struct bk_done *done);

#endif
