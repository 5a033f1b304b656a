/*
 * A session: the broker's half of a client connection. Who it is (user,
 * role, token), what it was sent (the highest seq), what waits (a replay
 * and the live messages held meanwhile), what it watches (task
 * subscriptions). The transport that owns it (src/conn/: a WebSocket,
 * send.c, or an SSE stream, sse.c) embeds it, drives its life with the calls
 * below, and is reached through one narrow sink: the broker never sees a
 * socket.
 */
#ifndef BASESTATION_SESSION_H
#define BASESTATION_SESSION_H

#include "basestation/auth.h"

#include <jansson.h>
#include <stdint.h>
#include <uthash.h>

struct msgbuf;
struct session;
struct task;
struct user;

/* How the broker reaches a session's client. */
struct session_sink {
	/* Queue m (the transport picks its encoding and takes its own
	 * reference): 0 queued, -1 not (closing, or cut just now as a slow
	 * consumer past --max-outbuf). Never blocks. */
	int (*deliver)(struct session *s, struct msgbuf *m);
	/* Bytes queued for the client and not written yet. */
	uint64_t (*buffered)(const struct session *s);
	/* Close with code and reason (4001 for a token); the transport calls
	 * session_close() on the way. */
	void (*close)(struct session *s, uint16_t code, const char *reason);
	/* Close as a slow consumer (1008), counted and logged with what it
	 * had buffered. */
	void (*cut)(struct session *s, uint64_t buffered);
};

struct replay; /* a replay under way (src/broker/replay.c) */

/* The per-connection rate limit (proto/dispatch.c). */
struct rate_bucket {
	double tokens;
	int64_t at; /* monotonic ms */
	int strikes;
};

struct session {
	const struct session_sink *sink;
	uint64_t id;
	UT_hash_handle hh;	       /* the broker's open sessions, by id */
	struct user *user;	       /* NULL until open and after close */
	struct session *unext, *uprev; /* the user's sessions */
	enum auth_role role;
	unsigned open : 1; /* in routing: between open and close */
	unsigned replaying : 1;
	unsigned replay_report : 1; /* send "resumed" at the end */
	unsigned replay_complete : 1;
	unsigned in_replay_queue : 1;
	unsigned wait_drain : 1;   /* a replay waits for the output */
	unsigned token_opaque : 1; /* token_hash names its opaque token */
	int64_t last_seq;	   /* highest message seq queued to it */
	int64_t sent_seq; /* what it had been given when its output last
			     drained: went whole to the kernel */
	/* the token it authenticated with: closed 4001 when it is revoked
	 * or expires (contract §10) */
	int64_t token_exp; /* wall clock ms, 0 = never */
	unsigned char token_hash[32];
	/* While replaying, and only then: an idle session holds none. */
	struct replay *rp;
	struct rate_bucket rate;
	struct task **subs; /* task subscriptions */
	int nsubs, capsubs;
};

/* Set up s (zeroed by its owner) with its sink and id. */
void session_init(struct session *s, const struct session_sink *sink,
		  uint64_t id);
/* Authenticated as id: s joins its user's sessions and rooms and is found
 * by session_find from now on. */
void session_open(struct session *s, const struct auth_identity *id);
/* Out of routing (closing, or its transport is gone); idempotent. When it
 * was its user's last session, the inbox cursor moves on. */
void session_close(struct session *s);
/* Release everything it holds; its owner frees it next. */
void session_finish(struct session *s);
/* Bytes of live messages held back while s replays (0 when it does not). */
uint64_t session_held_bytes(const struct session *s);
/* Its output drained (all of it went to the kernel; every time, not only
 * when asked): a replay that waited for room goes on, and the inbox
 * cursor may move up to what it had been given. */
void session_drained(struct session *s);
/* Close s (4001) when its token expired by wall_ms: 1 closed, 0 not. */
int session_check_expiry(struct session *s, int64_t wall_ms);
/* The open session with this id, or NULL. */
struct session *session_find(uint64_t id);

/* Send m to s as a reply (not held by a replay): the sink's deliver. */
static inline int session_send(struct session *s, struct msgbuf *m)
{
	return s->sink->deliver(s, m);
}

#endif
