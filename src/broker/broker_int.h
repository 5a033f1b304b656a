/*
 * The broker's own state and the calls between its files (private to
 * src/broker/). Who calls whom, so that no two files call each other:
 *
 *   broker.c   start, stop, the engine's events  -> session, router, tasks,
 *                                                   presence
 *   session.c  a session's life, tokens          -> registry, replay, tasks,
 *                                                   presence
 *   router.c   messages, rooms                   -> registry, fanq,
 *                                                   payload, carry,
 *                                                   presence
 *   presence.c presence events, the grace timer  -> registry, payload,
 *                                                   fanout
 *   tasks.c    tasks                             -> fanout, carry,
 *                                                   payload, fanq
 *   fanq.c     the fan queue: bounded turns      -> registry, replay,
 *                                                   carry
 *   replay.c   resume, inbox, held messages      -> payload
 *   registry.c users, rooms, sessions by id      (nothing)
 *   payload.c  message JSON                      (nothing)
 *   fanout.c   one delivery loop                 (nothing)
 *   carry.c    replies that wait for a commit    (nothing)
 *   state.c    the state below                   (nothing)
 */
#ifndef BASESTATION_BROKER_INT_H
#define BASESTATION_BROKER_INT_H

#include "basestation/broker.h"
#include "basestation/engine.h"
#include "basestation/session.h"

#include <stdint.h>
#include <uthash.h>

struct event;
struct event_base;
struct msgbuf;

struct member {
	struct user *user;
	int64_t joined_seq;
	UT_hash_handle hh; /* room->members, by user pointer */
};

struct room {
	char *name;
	UT_hash_handle hh; /* bk.rooms, by name */
	struct member *members;
	int nmembers;
	struct session **sessions; /* live sessions of members */
	int nsessions, capsessions;
	uint64_t gen; /* changes with sessions[]; unique over all rooms */
	/* sessions of members that joined with "presence":true */
	struct session **psubs;
	int npsubs, cappsubs;
};

/* A user is held while it has a session or a membership. */
struct user {
	char *uid;	   /* after the record: one allocation */
	UT_hash_handle hh; /* bk.users, by uid */
	struct session *sessions;
	int nsessions;
	struct room **rooms;
	int nrooms, caprooms;
	int64_t cursor; /* offline inbox: delivered up to here */
	/* presence.c: sessions on other nodes (broker_presence_remote);
	 * online = nsessions + remote > 0. present: announced online
	 * (presence.join sent, no presence.leave yet); pending: offline and
	 * in the grace list since gone_at (monotonic ms). The record is held
	 * while present or remote. */
	int remote;
	unsigned present : 1;
	unsigned pending : 1;
	int64_t gone_at;
	struct user *gnext, *gprev;
};

struct broker {
	const struct config *cfg;
	struct engine *engine;
	struct event_base *base;
	struct session *sessions; /* open, by id */
	struct user *users;
	struct room *rooms;
	struct task *tasks;
	int users_online;
	struct session *replay_head, *replay_tail;
	struct event *replay_ev, *prune_ev;
	/* The seq up to which committed messages have gone to all their
	 * live sessions (fanq.c keeps it): the seq before the oldest entry
	 * still in the fan queue. engine_committed counts queued ones too. */
	int64_t fanned;
	uint64_t room_gen; /* the last room generation handed out */
	struct user *gone_head, *gone_tail; /* presence grace, by gone_at */
	struct event *gone_ev;
};

extern struct broker bk;

/* ---- registry.c ---- */
/* Find a record; with create, make it if missing (a new user's inbox
 * cursor is read from the engine's store). A record is freed once nothing
 * needs it, so a created one must be attached or joined at once. Never
 * keep a pointer to either across loop turns. */
struct user *registry_user(const char *uid, int create);
struct room *registry_room(const char *name, int create);
/* s joins uid's sessions and rooms, and the table by id. */
void registry_attach(struct session *s, const char *uid);
/* s leaves them. Returns its user when s was its last session (the user
 * is still there: the caller settles the cursor, then registry_release
 * frees it when it is in no room), else NULL. */
struct user *registry_detach(struct session *s);
void registry_release(struct user *u);
/* 1 added, 0 already a member */
int registry_join(struct user *u, struct room *r, int64_t joined_seq);
/* 1 removed, 0 not a member. Frees r when u was its last member. */
int registry_leave(struct user *u, struct room *r);
int registry_is_member(const struct user *u, const struct room *r);
/* u's membership of r, or NULL. */
const struct member *registry_member(struct user *u, const struct room *r);
/* s (a session of a member of r) subscribed to r's presence events, or
 * not; detach and leave end it too. */
void registry_presence_sub(struct room *r, struct session *s, int on);
void registry_load_member(void *arg, const char *room, const char *uid,
			  int64_t joined_seq);
void registry_free(void);

/* ---- payload.c ---- */
/* {"type":"message","seq":N,"from":..,"to"|"room":..,"data":..,"ts":..} */
struct msgbuf *payload_message(const struct msg_record *m);
/* {"type":"presence.join"|"presence.leave","room":..,"uid":..} */
struct msgbuf *payload_presence(const char *type, const char *room,
				const char *uid);
/* A JSON object (stolen) as a message. */
struct msgbuf *payload_json(json_t *o);

/* ---- carry.c ---- */
/* A completion for an engine operation that hands caller r (copied now)
 * once the operation completes, or the engine's refusal instead. When the
 * engine refuses it at once, carry_drop() releases it. */
struct bk_done carry(const struct bk_done *caller, const struct bk_result *r);
void carry_drop(const struct bk_done *d);

/* ---- fanout.c ---- */
/* Call one(elem, arg) for each element of the array *v (n elements now in
 * *n, size bytes each, each starting with a struct session *). A delivery
 * may remove elements while this runs, keeping the order of the others (a
 * slow consumer is cut and leaves its rooms) or replacing the current one
 * (a finished seed subscription ends): the slot is looked at again before
 * moving on, so none is skipped or visited twice. */
void fanout(void *const *v, size_t size, const int *n,
	    void (*one)(void *elem, void *arg), void *arg);

/* ---- fanq.c ---- */
/* Bounded turns. Everything the broker sends because of a commit goes
 * through one FIFO, in commit order, a budget per loop turn: messages
 * (fanq_push), task pushes (fanq_call), and the completions of the
 * broker's engine operations (fanq_submit, fanq_sync), which wait behind
 * what was queued before them, so a reply never overtakes a delivery
 * committed ahead of it. */
/* Queue a committed message (m is referenced) for its recipients, looked
 * up when it goes out. */
void fanq_push(const struct engine_event *ev, struct msgbuf *m);
/* 1 while something waits in the queue. */
int fanq_busy(void);
/* Queue fn(arg) (the event's seq): it runs in its turn, also at stop, and
 * returns the deliveries it made (counted against the budget). */
void fanq_call(int64_t seq, size_t (*fn)(void *arg), void *arg);
/* A completion that hands caller its result once everything queued
 * when it completes has gone out (at once when the queue is empty). When
 * the engine refuses the operation at once, fanq_wait_drop() releases it. */
struct bk_done fanq_wait(const struct bk_done *caller);
void fanq_wait_drop(const struct bk_done *d);
/* engine_submit / engine_sync with fanq_wait(done). */
int fanq_submit(const struct engine_event *ev, const struct bk_done *done,
		const char **why);
void fanq_sync(const struct bk_done *done);
/* Everything queued, now. */
void fanq_drain(void);
void fanq_init(struct event_base *base);
/* Drains, then frees the event. */
void fanq_stop(void);

/* ---- replay.c ---- */
/* Deliver m (seq) to s live: held while s replays, never twice, never
 * out of order. */
void replay_deliver(struct session *s, int64_t seq, struct msgbuf *m);
/* 0 started; -1 one runs already. */
int replay_start(struct session *s, int64_t since, int report, int epoch_ok,
		 const json_t *ref);
/* s's output drained. */
void replay_drained(struct session *s);
/* s goes away: out of the replay queue, held messages dropped. */
void replay_forget(struct session *s);
void replay_init(void);
void replay_stop(void);

/* ---- router.c ---- */
void router_on_message(const struct engine_event *ev);
void router_on_member(const struct engine_event *ev);

/* ---- tasks.c ---- */
void tasks_load_row(void *arg, const struct task_record *r);
/* After the last row: the retention lists in order. */
void tasks_loaded(void);
void tasks_free(void);
void tasks_on_event(const struct engine_event *ev);
/* Retention: a few tasks at a time. */
void tasks_prune(int64_t now);
void tasks_unsubscribe_all(struct session *s);

/* ---- presence.c ---- */
/* u's online count changed (a session opened or closed here, or
 * elsewhere): presence.join when it comes online unless it is back within
 * the grace period; presence.leave when the grace period of its going
 * offline ends. */
void presence_update(struct user *u);
/* u became a member of r / stopped being one of room (r is gone when it
 * had no other member): presence.join / presence.leave there when u is
 * announced online. */
void presence_joined(struct user *u, struct room *r);
void presence_left(struct user *u, const char *room);
void presence_init(void);
void presence_stop(void);

/* ---- session.c ---- */
void session_tokens_changed(const struct engine_event *ev);

#endif
