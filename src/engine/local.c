/*
 * The local engine: one node on SQLite (engine.h).
 *
 * Seqs are the messages table's: the next one is the last handed out plus
 * one. Everything submitted in one loop turn goes into one transaction,
 * opened by the first submit, which also makes the commit event active: it
 * runs after the callbacks already active in this turn, so one COMMIT
 * covers every message, membership change, cursor and task update of the
 * turn (group commit). After the COMMIT each operation of the turn is
 * completed in submission order, its event handed to the broker just
 * before its completion; after a failed COMMIT every one of them completes
 * BK_UNAVAILABLE and no event is handed on. Nobody sees a seq a crash
 * could take back.
 *
 * Also here, because they write or watch the store: retention (messages
 * past --retention-age/--retention-count and idempotency keys past 24 h:
 * a step on the turn after messages are stored and again while it finds
 * rows, each bounded, inside the turn's transaction), the sweep of
 * bookkeeping nothing needs (expired tokens, token changes read, idle
 * users' cursors; once a second, a few rows), and the token
 * change log, which other processes write too (`basestation token
 * revoke`): each change is judged here and handed on as one event.
 */
#include "basestation/engine.h"
#include "basestation/engine_local.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/store.h"
#include "basestation/xalloc.h"

#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRUNE_MS 1000
/* Rows one prune step deletes at most, of messages and of idempotency keys
 * each: a few ms of work, plus as many rows as were stored since the step
 * before. While steps delete something the next one runs on the next loop
 * turn, so deleting keeps pace with any rate of storing, and no turn
 * stalls the loop for long. */
#define PRUNE_BATCH 1000
/* Rows of each kind one sweep deletes at most: a few ms, once a second. */
#define SWEEP_ROWS	  256
#define DAY_MS		  (86400 * 1000LL)
#define TOKEN_WATCH_MS	  200
#define TOKEN_CHANGES_MAX 1024
#define IDEM_KEEP_MS	  (86400 * 1000LL)

/* One operation of the turn, with copies of its event's strings. */
struct op {
	struct op *next;
	struct bk_done done; /* fn NULL: nobody waits */
	int64_t seq;	     /* the result's */
	unsigned has_event : 1;
	struct engine_event ev;
	char mem[];
};

struct local {
	struct engine e; /* first: the engine is the local */
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	struct event *commit_ev, *prune_ev, *token_ev;
	struct event *prune_step_ev; /* the next retention step, next turn */
	int64_t prune_step_seq;	     /* committed_seq at the last step */
	int64_t prune_logged_at, prune_unlogged, prune_unlogged_idem;
	/* Where the sweep's walk over users stopped: a window a second. */
	char sweep_users_after[AUTH_UID_MAX + 1];
	int64_t last_seq;      /* last handed out */
	int64_t committed_seq; /* last durable */
	int64_t pruned_max_seq;
	int64_t token_seq; /* the change log read up to here */
	struct op *head, **tail;
};

static void prune_soon(struct local *l);

static struct local *local_of(struct engine *e)
{
	return (struct local *)e;
}

/* ---- the turn ---- */

/* Open the turn's transaction (scheduling its commit). 0 ok, -1 error. */
static int turn_begin(struct local *l)
{
	if (store_in_tx(l->store))
		return 0;
	if (store_begin(l->store) < 0)
		return -1;
	event_active(l->commit_ev, EV_TIMEOUT, 0);
	return 0;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* Copy s (n bytes, then a NUL) to *at; the copy, or NULL for NULL. */
static const char *keep(char **at, const char *s, size_t n)
{
	char *r = *at;
	if (s == NULL)
		return NULL;
	memcpy(r, s, n);
	r[n] = '\0';
	*at += n + 1;
	return r;
}

#define KEEP(at, s) keep(at, s, (s) ? strlen(s) : 0)

/* Queue an operation: ev (may be NULL: a completion only), its strings
 * copied, completed at the end of the turn. */
static void queue(struct local *l, const struct engine_event *ev,
		  const struct bk_done *done, int64_t seq)
{
	size_t n = 0;
	struct op *op;
	char *at;

	if (ev) {
		switch (ev->kind) {
		case ENGINE_MESSAGE:
			n = slen(ev->msg.sender) + slen(ev->msg.to) +
			    slen(ev->msg.room) + ev->msg.data_len + 1;
			break;
		case ENGINE_JOIN:
		case ENGINE_LEAVE:
			n = slen(ev->member.uid) + slen(ev->member.room);
			break;
		case ENGINE_CURSOR:
			n = slen(ev->cursor.uid);
			break;
		case ENGINE_TASK:
			n = slen(ev->task.rec.id) + slen(ev->task.rec.title) +
			    slen(ev->task.rec.owner) +
			    slen(ev->task.rec.watchers) +
			    slen(ev->task.rec.status) +
			    slen(ev->task.rec.steps) + slen(ev->task.rec.note) +
			    ev->task.snap_len + 1;
			break;
		case ENGINE_TASK_DELETE:
			n = slen(ev->task_id);
			break;
		case ENGINE_TOKEN_ISSUE:
			n = slen(ev->token.uid);
			break;
		case ENGINE_TOKEN_CHANGE:
			break;
		}
	}
	op = xmalloc(sizeof(*op) + n);
	op->next = NULL;
	if (done)
		op->done = *done;
	else
		memset(&op->done, 0, sizeof(op->done));
	op->seq = seq;
	op->has_event = ev != NULL;
	if (ev) {
		op->ev = *ev;
		op->ev.local = 1;
		op->ev.idem = NULL;
		at = op->mem;
		switch (ev->kind) {
		case ENGINE_MESSAGE:
			op->ev.msg.sender = KEEP(&at, ev->msg.sender);
			op->ev.msg.to = KEEP(&at, ev->msg.to);
			op->ev.msg.room = KEEP(&at, ev->msg.room);
			op->ev.msg.data =
				keep(&at, ev->msg.data, ev->msg.data_len);
			break;
		case ENGINE_JOIN:
		case ENGINE_LEAVE:
			op->ev.member.uid = KEEP(&at, ev->member.uid);
			op->ev.member.room = KEEP(&at, ev->member.room);
			break;
		case ENGINE_CURSOR:
			op->ev.cursor.uid = KEEP(&at, ev->cursor.uid);
			break;
		case ENGINE_TASK: {
			struct task_record *r = &op->ev.task.rec;
			r->id = KEEP(&at, r->id);
			r->title = KEEP(&at, r->title);
			r->owner = KEEP(&at, r->owner);
			r->watchers = KEEP(&at, r->watchers);
			r->status = KEEP(&at, r->status);
			r->steps = KEEP(&at, r->steps);
			r->note = KEEP(&at, r->note);
			op->ev.task.snap =
				keep(&at, ev->task.snap, ev->task.snap_len);
			break;
		}
		case ENGINE_TASK_DELETE:
			op->ev.task_id = KEEP(&at, ev->task_id);
			break;
		case ENGINE_TOKEN_ISSUE:
			op->ev.token.uid = KEEP(&at, ev->token.uid);
			break;
		case ENGINE_TOKEN_CHANGE:
			break;
		}
	}
	*l->tail = op;
	l->tail = &op->next;
}

/* Complete the operations queued so far. Those queued meanwhile (a
 * delivery that cuts a slow consumer moves its cursor) belong to the next
 * turn. */
static void complete_all(struct local *l, int ok)
{
	struct op *op = l->head, *next;

	l->head = NULL;
	l->tail = &l->head;
	for (; op; op = next) {
		struct bk_result r = {
			.status = ok ? BK_OK : BK_UNAVAILABLE,
			.seq = op->seq,
			.msg = ok ? NULL : "commit failed",
		};
		next = op->next;
		if (ok && op->has_event && l->e.on_event)
			l->e.on_event(l->e.on_event_arg, &op->ev);
		bk_complete(&op->done, &r);
		free(op);
	}
}

static void commit(struct local *l)
{
	int ok = 1;

	if (store_in_tx(l->store)) {
		ok = store_commit(l->store) == 0;
		if (ok)
			l->committed_seq = l->last_seq;
		else
			l->last_seq = l->committed_seq;
	}
	complete_all(l, ok);
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	commit(arg);
}

/* ---- submit ---- */

static int submit_message(struct local *l, const struct engine_event *ev,
			  const struct bk_done *done, const char **why)
{
	struct engine_event e = *ev;
	int64_t seq;
	int found;

	*why = "could not store the message";
	if (ev->idem) {
		found = store_idem_get(l->store, ev->msg.sender, ev->idem,
				       &seq);
		if (found < 0)
			return -1;
		if (found) {
			/* A resend: completed with the original seq, after
			 * this turn's commit like any other. */
			queue(l, NULL, done, seq);
			return 0;
		}
	}
	e.msg.seq = e.seq = l->last_seq + 1;
	e.msg.ts = now_ms();
	if (store_msg_insert(l->store, &e.msg) < 0 ||
	    (ev->idem && store_idem_put(l->store, ev->msg.sender, ev->idem,
					e.msg.seq, e.msg.ts) < 0))
		return -1;
	l->last_seq = e.msg.seq;
	queue(l, &e, done, e.msg.seq);
	/* Retention looks at the table again next turn (a few index reads):
	 * under a flood it stays at its bounds. */
	prune_soon(l);
	return 0;
}

static int local_submit(struct engine *eng, const struct engine_event *ev,
			const struct bk_done *done, const char **why)
{
	struct local *l = local_of(eng);
	struct engine_event e = *ev;
	const char *dummy;
	int rc = -1;

	if (why == NULL)
		why = &dummy;
	*why = "store unavailable";
	if (turn_begin(l) < 0)
		return -1;
	e.seq = l->last_seq;
	switch (ev->kind) {
	case ENGINE_MESSAGE:
		return submit_message(l, ev, done, why);
	case ENGINE_JOIN:
		/* Messages after the last seq handed out are for the member. */
		rc = store_member_put(l->store, ev->member.room, ev->member.uid,
				      l->last_seq, now_ms());
		break;
	case ENGINE_LEAVE:
		rc = store_member_del(l->store, ev->member.room,
				      ev->member.uid);
		break;
	case ENGINE_CURSOR:
		rc = store_user_put(l->store, ev->cursor.uid, ev->cursor.cursor,
				    now_ms());
		break;
	case ENGINE_TASK:
		rc = store_task_put(l->store, &ev->task.rec);
		break;
	case ENGINE_TASK_DELETE:
		rc = store_task_del(l->store, ev->task_id);
		break;
	case ENGINE_TOKEN_ISSUE:
		*why = "could not store the token";
		rc = store_token_put(l->store, &ev->token);
		break;
	case ENGINE_TOKEN_CHANGE:
		*why = "not an operation";
		return -1;
	}
	if (rc < 0)
		return -1;
	queue(l, &e, done, e.seq);
	return 0;
}

static void local_sync(struct engine *eng, const struct bk_done *done)
{
	struct local *l = local_of(eng);
	struct bk_result r = {.status = BK_OK};

	if (l->head || store_in_tx(l->store))
		queue(l, NULL, done, 0);
	else
		bk_complete(done, &r);
}

static void local_flush(struct engine *eng)
{
	commit(local_of(eng));
}

/* ---- reads ---- */

static const char *local_epoch(struct engine *eng)
{
	return store_epoch(local_of(eng)->store);
}

static int64_t local_committed(struct engine *eng)
{
	return local_of(eng)->committed_seq;
}

static int64_t local_pruned(struct engine *eng)
{
	return local_of(eng)->pruned_max_seq;
}

static int local_load(struct engine *eng, const struct engine_loader *ld,
		      void *arg)
{
	struct local *l = local_of(eng);

	if (ld->member && store_load_members(l->store, ld->member, arg) < 0)
		return -1;
	if (ld->task && store_load_tasks(l->store, ld->task, arg) < 0)
		return -1;
	return 0;
}

static int local_cursor(struct engine *eng, const char *uid, int64_t *cursor)
{
	return store_user_get(local_of(eng)->store, uid, cursor);
}

static int local_replay(struct engine *eng, const char *uid, int64_t since,
			int64_t upto, int limit, engine_msg_fn fn, void *arg)
{
	return store_replay(local_of(eng)->store, uid, since, upto, limit, fn,
			    arg);
}

static int local_token(struct engine *eng, const unsigned char hash[32],
		       int64_t now, struct auth_identity *id)
{
	return store_token_state(local_of(eng)->store, hash, now, id);
}

static int local_task(struct engine *eng, const char *id, engine_task_fn fn,
		      void *arg)
{
	return store_task_get(local_of(eng)->store, id, fn, arg);
}

/* One node: what is committed is everything there is. */
static void local_settle(struct engine *eng, int wait_ms,
			 const struct bk_done *done)
{
	struct bk_result r = {.status = BK_OK};
	(void)eng;
	(void)wait_ms;
	bk_complete(done, &r);
}

static int local_healthy(struct engine *eng)
{
	return store_writable(local_of(eng)->store);
}

/* ---- retention ---- */

/* One retention step (--retention-age, --retention-count, idempotency
 * keys older than 24 h) in the loop turn's transaction. 1 when it deleted
 * something: then the next step runs on the next loop turn. */
static int prune_step(struct local *l)
{
	const struct config *cfg = l->cfg;
	int64_t now = now_ms(), max_deleted = 0;
	int64_t before =
		cfg->retention_age > 0 ? now - cfg->retention_age * 1000 : 0;
	int64_t below = cfg->retention_count > 0 &&
					l->committed_seq > cfg->retention_count
				? l->committed_seq - cfg->retention_count
				: 0;
	int64_t idem_before = now - IDEM_KEEP_MS;
	int64_t stored = l->committed_seq < l->prune_step_seq
				 ? 0
				 : l->committed_seq - l->prune_step_seq;
	int budget = PRUNE_BATCH + (int)(stored < INT_MAX / 2 ? stored : 0);
	int n, idem = 0;

	l->prune_step_seq = l->committed_seq;
	/* Nothing old enough: no write transaction, no lock. */
	if (!store_prune_needed(l->store, before, below, idem_before) ||
	    turn_begin(l) < 0)
		return 0;
	n = store_prune(l->store, before, below, idem_before, budget,
			&max_deleted, &idem);
	if (n > 0) {
		metrics.retention += (uint64_t)n;
		if (max_deleted > l->pruned_max_seq) {
			l->pruned_max_seq = max_deleted;
			store_counter_set(l->store, "pruned_max_seq",
					  max_deleted);
		}
		store_counter_set(l->store, "pruned_total",
				  (int64_t)metrics.retention);
	}
	/* Steps run every loop turn under load: one line a second at most. */
	if (n > 0)
		l->prune_unlogged += n;
	l->prune_unlogged_idem += idem;
	if ((l->prune_unlogged || l->prune_unlogged_idem) &&
	    now - l->prune_logged_at >= 1000) {
		log_info("store.prune", "deleted=%lld idem=%lld upto=%lld",
			 (long long)l->prune_unlogged,
			 (long long)l->prune_unlogged_idem,
			 (long long)l->pruned_max_seq);
		l->prune_unlogged = l->prune_unlogged_idem = 0;
		l->prune_logged_at = now;
	}
	/* Whatever it deleted, the next step looks again at the next turn:
	 * under a steady flood the table stays at its bound, not a second's
	 * worth of messages above it. */
	return n > 0 || idem > 0;
}

/* Run a retention step on the next loop turn. A zero timeout fires after
 * the next turn's I/O: pruning keeps pace with storing without starving
 * the connections. */
static void prune_soon(struct local *l)
{
	static const struct timeval next_turn = {0, 0};
	if (l->prune_step_ev && !evtimer_pending(l->prune_step_ev, NULL))
		evtimer_add(l->prune_step_ev, &next_turn);
}

static void prune_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local *l = arg;
	(void)fd;
	(void)what;
	if (prune_step(l))
		prune_soon(l);
}

/* Once a second: delete, a few rows at a time, tokens a day past their
 * expiry (so every connection was closed with "token expired" first),
 * token changes this process has read (a new start reads from the newest
 * on), and inbox cursors of users not seen for --retention-age whose
 * messages retention has deleted. */
static void sweep(struct local *l)
{
	char upto[AUTH_UID_MAX + 1];
	const struct config *cfg = l->cfg;
	int64_t now = now_ms();
	struct store_sweep w = {
		.tokens_before = now - DAY_MS,
		.changes_upto = l->token_seq,
		.users_seen_before = cfg->retention_age > 0
					     ? now - cfg->retention_age * 1000
					     : 0,
		.users_cursor_max = l->pruned_max_seq,
		.users_after = l->sweep_users_after,
	};
	int need = store_sweep_needed(l->store, &w, SWEEP_ROWS, upto,
				      sizeof(upto));
	int n = 0;

	if (need && turn_begin(l) == 0)
		n = store_sweep(l->store, &w, need, upto, SWEEP_ROWS);
	/* The next window, or from the start once past the last uid. */
	snprintf(l->sweep_users_after, sizeof(l->sweep_users_after), "%s",
		 upto);
	if (n > 0)
		log_info("store.sweep", "deleted=%d", n);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	struct local *l = arg;
	(void)fd;
	(void)what;

	if (!evtimer_pending(l->prune_step_ev, NULL))
		prune_step_cb(-1, 0, l);
	sweep(l);
}

/* ---- the token change log ---- */

static int by_hash(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Tokens revoked, deleted or given another expiry since the last look, by
 * this process or another one: the triggers of schema 003 log them in
 * token_changes, read here by seq (nearly always nothing). Each is judged
 * now and the lot handed to the broker as one event. On a database error
 * the same changes are read again next time. */
static void token_cb(evutil_socket_t fd, short what, void *arg)
{
	static unsigned char hash[TOKEN_CHANGES_MAX][32];
	static struct engine_token_state v[TOKEN_CHANGES_MAX];
	struct local *l = arg;
	struct engine_event ev = {.kind = ENGINE_TOKEN_CHANGE};
	int64_t from = l->token_seq, wall = now_ms();
	int n, k = 0;
	(void)fd;
	(void)what;

	n = store_token_changes(l->store, &l->token_seq, hash,
				TOKEN_CHANGES_MAX);
	if (n <= 0)
		return;
	qsort(hash, (size_t)n, sizeof(hash[0]), by_hash);
	for (int i = 0; i < n; i++) {
		struct auth_identity id;
		if (k > 0 && memcmp(v[k - 1].hash, hash[i], 32) == 0)
			continue;
		memcpy(v[k].hash, hash[i], 32);
		v[k].state = store_token_state(l->store, hash[i], wall, &id);
		if (v[k].state < 0) {
			l->token_seq = from;
			return;
		}
		v[k].expires_at = v[k].state == 0 ? id.expires_at : 0;
		k++;
	}
	ev.seq = l->committed_seq;
	ev.tokens.v = v;
	ev.tokens.n = k;
	if (l->e.on_event)
		l->e.on_event(l->e.on_event_arg, &ev);
}

/* ---- life ---- */

static void local_destroy(struct engine *eng)
{
	struct local *l = local_of(eng);

	commit(l);
	event_free(l->commit_ev);
	event_free(l->prune_ev);
	event_free(l->prune_step_ev);
	event_free(l->token_ev);
	store_close(l->store);
	free(l);
}

static const struct engine_ops local_ops = {
	.submit = local_submit,
	.sync = local_sync,
	.flush = local_flush,
	.epoch = local_epoch,
	.committed = local_committed,
	.pruned = local_pruned,
	.load = local_load,
	.cursor = local_cursor,
	.replay = local_replay,
	.token = local_token,
	.task = local_task,
	.settle = local_settle,
	.healthy = local_healthy,
	.destroy = local_destroy,
};

struct engine *engine_local_create(struct event_base *base,
				   const struct config *cfg, char *err,
				   size_t errsz)
{
	struct local *l;
	struct store *s = store_open(cfg->db, cfg->sync_full, err, errsz);
	struct timeval prune = {PRUNE_MS / 1000, (PRUNE_MS % 1000) * 1000},
		       watch = {0, TOKEN_WATCH_MS * 1000};

	if (s == NULL)
		return NULL;
	l = xcalloc(1, sizeof(*l));
	l->e.ops = &local_ops;
	l->base = base;
	l->cfg = cfg;
	l->store = s;
	l->tail = &l->head;
	l->last_seq = l->committed_seq = store_max_seq(s);
	l->pruned_max_seq = store_counter_get(s, "pruned_max_seq");
	metrics.retention = (uint64_t)store_counter_get(s, "pruned_total");
	/* Token changes from before this start concern no connection. */
	l->token_seq = store_token_changes_head(s);
	if (l->token_seq < 0)
		l->token_seq = 0;
	l->commit_ev = event_new(base, -1, 0, commit_cb, l);
	l->prune_ev = event_new(base, -1, EV_PERSIST, prune_cb, l);
	l->prune_step_ev = evtimer_new(base, prune_step_cb, l);
	l->token_ev = event_new(base, -1, EV_PERSIST, token_cb, l);
	l->prune_step_seq = l->committed_seq;
	if (l->commit_ev == NULL || l->prune_ev == NULL ||
	    l->prune_step_ev == NULL || l->token_ev == NULL)
		fatal("event_new failed");
	event_add(l->prune_ev, &prune);
	event_add(l->token_ev, &watch);
	return &l->e;
}

/* ---- the CLI, beside a running broker ---- */

/* The CLI's store; NULL (err filled) also for a cluster node's replica
 * (engine/nats.c marks it with the counter cluster_epoch): a token
 * written there would reach that one node only. */
static struct store *open_quiet(const char *path, char *err, size_t errsz)
{
	struct store *s;

	log_min_level = LOG_WARN;
	s = store_open_cli(path, err, errsz);
	if (s && store_counter_get(s, "cluster_epoch") != 0) {
		snprintf(err, errsz,
			 "%s is a cluster node's replica: a token written "
			 "here would reach that node only (use "
			 "basestation token --cluster URLS, or POST "
			 "/api/tokens on any node)",
			 path);
		store_close(s);
		return NULL;
	}
	return s;
}

int engine_local_token_issue(const char *path, const char *uid,
			     enum auth_role role, int64_t ttl_s, char *out,
			     size_t outsz, int64_t *expires_at, char *err,
			     size_t errsz)
{
	struct store *s = open_quiet(path, err, errsz);
	int rc;

	if (s == NULL)
		return -2;
	rc = store_token_issue(s, uid, role, ttl_s, out, outsz, expires_at);
	store_close(s);
	return rc < 0 ? -1 : 0;
}

int engine_local_token_revoke(const char *path, const char *token, char *err,
			      size_t errsz)
{
	struct store *s = open_quiet(path, err, errsz);
	int rc;

	if (s == NULL)
		return -2;
	rc = store_token_revoke(s, token, now_ms());
	store_close(s);
	return rc;
}
