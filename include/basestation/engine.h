/*
 * The engine: order and durability, behind one interface. It assigns
 * seqs, makes each batch of events durable, completes every operation
 * asynchronously, names the history (the epoch), and hands committed
 * events to the broker in seq order through one callback. The broker never
 * writes to a store itself; it reads the store only through the engine
 * (replay, load at start, a token's state, a user's cursor).
 *
 * engine/local.c is one node on SQLite: seqs are the messages table's,
 * every write of a loop turn is one transaction, and after its COMMIT each
 * operation of the turn is completed in submission order, its event handed
 * to the broker just before. A cluster engine (JetStream) fits the same
 * interface: the seq is the stream sequence (not contiguous), completions
 * come with the PubAck (maybe much later, maybe BK_UNAVAILABLE), and the
 * callback sees the events in stream order as the ordered consumer brings
 * them back, including those that other nodes published.
 *
 * All of it runs on the loop thread. Pointers in an event are valid only
 * during the call that carries it.
 */
#ifndef BASESTATION_ENGINE_H
#define BASESTATION_ENGINE_H

#include "basestation/auth.h"
#include "basestation/records.h"
#include "basestation/result.h"

#include <stddef.h>
#include <stdint.h>

enum engine_kind {
	ENGINE_MESSAGE,	     /* msg: direct (to) or room message */
	ENGINE_JOIN,	     /* member: uid joins room */
	ENGINE_LEAVE,	     /* member: uid leaves room */
	ENGINE_CURSOR,	     /* cursor: a user's inbox cursor moves */
	ENGINE_TASK,	     /* task: a task's new state (create or update) */
	ENGINE_TASK_DELETE,  /* task_id: removed (retention, --max-tasks) */
	ENGINE_TOKEN_ISSUE,  /* token: a new opaque token's row */
	ENGINE_TOKEN_CHANGE, /* tokens: revoked, deleted or new expiry, with
				their state now (never submitted: the engine
				learns them from the store or the stream) */
};

/* A changed token and what it is now (auth_token_judge's values). */
struct engine_token_state {
	unsigned char hash[32];
	int state;	    /* 0 valid, AUTH_TOKEN_UNKNOWN/_REVOKED/_EXPIRED */
	int64_t expires_at; /* when still valid; 0 = never */
};

struct engine_event {
	enum engine_kind kind;
	/* Set by the engine. The position in the one order: a message's seq;
	 * for the other kinds the seq of the last message before it (local)
	 * or its own stream sequence (cluster). Non-decreasing along the
	 * callback. A message's msg.seq and msg.ts are set too. */
	int64_t seq;
	/* 1 when it was submitted through this engine (on this node): the
	 * broker applied it to its memory when it submitted it, and only
	 * delivers it now. 0: from elsewhere; the broker applies it. */
	unsigned local : 1;
	/* The submitting session on this node (0: none, or another node):
	 * a room message is not delivered back to it. */
	uint64_t session;
	const char *idem; /* MESSAGE: idempotency key (sender, this text);
			     NULL: none */
	union {
		struct msg_record msg;
		struct {
			const char *uid, *room;
		} member;
		struct {
			const char *uid;
			int64_t cursor;
		} cursor;
		struct {
			struct task_record rec;
			const char *snap; /* this version's snapshot, JSON */
			size_t snap_len;
		} task;
		const char *task_id;
		struct token_record token;
		struct {
			const struct engine_token_state *v; /* by hash */
			int n;
		} tokens;
	};
};

/* Load at start: every membership and every task. */
struct engine_loader {
	void (*member)(void *arg, const char *room, const char *uid,
		       int64_t joined_seq);
	void (*task)(void *arg, const struct task_record *t);
};

typedef void (*engine_event_fn)(void *arg, const struct engine_event *ev);
typedef void (*engine_task_fn)(void *arg, const struct task_record *t);
typedef void (*engine_msg_fn)(void *arg, const struct msg_record *m);
/* Other nodes' sessions of uid changed by delta (+1: a node has it online
 * now, -1: no longer). Ephemeral: not in seq order, not stored. */
typedef void (*engine_presence_fn)(void *arg, const char *uid, int delta);

/* One live node of the broker (GET /admin/nodes); strings valid during
 * the call only. */
struct engine_node {
	const char *node;    /* --node */
	const char *version; /* as `basestation version` prints it */
	int64_t since_ms;    /* its start, ms since the epoch */
	int64_t connections;
	int64_t applied_seq; /* the newest seq it has applied */
	int64_t lag;	     /* the stream's last seq minus applied_seq */
	int64_t age_ms;	     /* since its last heartbeat (0: this node) */
};
typedef void (*engine_node_fn)(void *arg, const struct engine_node *n);

struct engine;

struct engine_ops {
	/* Take ev (copied) and complete done once it is durable (BK_OK, seq
	 * = its seq, or the original seq of a duplicate message: then no
	 * event) or lost (BK_UNAVAILABLE). 0 accepted; -1 refused at once,
	 * done never runs, *why says why. */
	int (*submit)(struct engine *e, const struct engine_event *ev,
		      const struct bk_done *done, const char **why);
	/* Complete done after everything submitted before it has completed
	 * (at once when nothing is pending): replies keep request order. */
	void (*sync)(struct engine *e, const struct bk_done *done);
	/* Make what is pending durable now and complete it (stopping). */
	void (*flush)(struct engine *e);
	const char *(*epoch)(struct engine *e);
	/* The newest seq that is durable and handed to the broker. */
	int64_t (*committed)(struct engine *e);
	/* The newest seq removed by retention: a replay from below it is not
	 * whole. */
	int64_t (*pruned)(struct engine *e);
	/* 0 ok, -1 error. */
	int (*load)(struct engine *e, const struct engine_loader *l, void *arg);
	/* A user's stored inbox cursor: 1 found, 0 none, -1 error. */
	int (*cursor)(struct engine *e, const char *uid, int64_t *cursor);
	/* Messages for uid (direct, or in its rooms since it joined) with
	 * since < seq <= upto, in seq order, at most limit, one call of fn
	 * each: how many, -1 on error. */
	int (*replay)(struct engine *e, const char *uid, int64_t since,
		      int64_t upto, int limit, engine_msg_fn fn, void *arg);
	/* The state of the opaque token with this hash at now_ms: 0 valid
	 * (*id filled), AUTH_TOKEN_UNKNOWN/_REVOKED/_EXPIRED, -2 error. */
	int (*token)(struct engine *e, const unsigned char hash[32],
		     int64_t now_ms, struct auth_identity *id);
	/* The stored row of task id, one call of fn: 1 found, 0 none, -1
	 * error. A cluster engine's is the replica's, so committed; the
	 * local engine's sees the open turn's writes too. */
	int (*task)(struct engine *e, const char *id, engine_task_fn fn,
		    void *arg);
	/* Complete done once the replica has applied what the cluster had
	 * stored when this was called, or after at most wait_ms (BK_OK
	 * either way): a node that does not know a task yet looks again
	 * (protocol §7). The local engine completes at once. */
	void (*settle)(struct engine *e, int wait_ms,
		       const struct bk_done *done);
	/* 1 when a write can be made durable now (/healthz). */
	int (*healthy)(struct engine *e);
	/* Optional (NULL: one node, nobody to tell). uid's sessions on this
	 * node went from none to some (online 1) or back to none (0); other
	 * nodes learn it and feed their broker's on_presence. */
	void (*presence)(struct engine *e, const char *uid, int online);
	/* Optional (NULL: one node, the caller describes itself). fn once
	 * per live node, this one first. */
	void (*nodes)(struct engine *e, engine_node_fn fn, void *arg);
	void (*destroy)(struct engine *e);
};

/* The head of every engine (its own state follows). */
struct engine {
	const struct engine_ops *ops;
	engine_event_fn on_event; /* the broker's, set by engine_listen */
	void *on_event_arg;
	/* Task changes are checked against the stored history (a cluster:
	 * other nodes change tasks too). A change made from a state that was
	 * not the latest completes BK_STALE, after the change that came
	 * first has been handed on; the broker validates it again. A task
	 * change completes only after the previous change of the same task
	 * was stored or refused. */
	unsigned linear_tasks : 1;
	/* the broker's, set by engine_listen_presence (NULL: not yet, or
	 * no longer: a cluster engine then ignores other nodes' presence
	 * and catches up once it is set) */
	engine_presence_fn on_presence;
	void *on_presence_arg;
};

/* The one callback for committed events. */
static inline void engine_listen(struct engine *e, engine_event_fn fn,
				 void *arg)
{
	e->on_event = fn;
	e->on_event_arg = arg;
}

static inline void engine_listen_presence(struct engine *e,
					  engine_presence_fn fn, void *arg)
{
	e->on_presence = fn;
	e->on_presence_arg = arg;
}

static inline void engine_presence(struct engine *e, const char *uid,
				   int online)
{
	if (e->ops->presence)
		e->ops->presence(e, uid, online);
}

/* 0 when the engine lists no nodes (one node: the caller describes
 * itself), else 1 after fn ran for each. */
static inline int engine_nodes(struct engine *e, engine_node_fn fn, void *arg)
{
	if (e->ops->nodes == NULL)
		return 0;
	e->ops->nodes(e, fn, arg);
	return 1;
}

static inline int engine_submit(struct engine *e, const struct engine_event *ev,
				const struct bk_done *done, const char **why)
{
	return e->ops->submit(e, ev, done, why);
}

static inline void engine_sync(struct engine *e, const struct bk_done *done)
{
	e->ops->sync(e, done);
}

static inline void engine_flush(struct engine *e)
{
	e->ops->flush(e);
}

static inline const char *engine_epoch(struct engine *e)
{
	return e->ops->epoch(e);
}

static inline int64_t engine_committed(struct engine *e)
{
	return e->ops->committed(e);
}

static inline int64_t engine_pruned(struct engine *e)
{
	return e->ops->pruned(e);
}

static inline int engine_load(struct engine *e, const struct engine_loader *l,
			      void *arg)
{
	return e->ops->load(e, l, arg);
}

static inline int engine_cursor(struct engine *e, const char *uid,
				int64_t *cursor)
{
	return e->ops->cursor(e, uid, cursor);
}

static inline int engine_replay(struct engine *e, const char *uid,
				int64_t since, int64_t upto, int limit,
				engine_msg_fn fn, void *arg)
{
	return e->ops->replay(e, uid, since, upto, limit, fn, arg);
}

static inline int engine_token(struct engine *e, const unsigned char hash[32],
			       int64_t now_ms, struct auth_identity *id)
{
	return e->ops->token(e, hash, now_ms, id);
}

static inline int engine_task(struct engine *e, const char *id,
			      engine_task_fn fn, void *arg)
{
	return e->ops->task(e, id, fn, arg);
}

static inline void engine_settle(struct engine *e, int wait_ms,
				 const struct bk_done *done)
{
	e->ops->settle(e, wait_ms, done);
}

static inline int engine_healthy(struct engine *e)
{
	return e->ops->healthy(e);
}

static inline void engine_destroy(struct engine *e)
{
	if (e)
		e->ops->destroy(e);
}

#endif
