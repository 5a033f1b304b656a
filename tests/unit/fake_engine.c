/* The fake engine of fake_engine.h: everything in small arrays. */
#include "fake_engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPS	    256
#define MAX_MSGS    256
#define MAX_MEMBERS 64
#define MAX_IDEM    64
#define MAX_CURSORS 64
#define STR	    256

struct fop {
	struct bk_done done;
	int has_event;
	int64_t seq;
	struct engine_event ev;
	char from[STR], to[STR], room[STR], data[STR * 16], uid[STR];
};

struct fmsg {
	int64_t seq, ts;
	char from[STR], to[STR], room[STR], data[STR * 16];
};

struct fake {
	struct engine e;
	char presence[512]; /* "+uid -uid ...": the broker's presence calls */
	struct fop ops[MAX_OPS];
	int nops;
	struct fmsg msgs[MAX_MSGS]; /* committed, in seq order */
	int nmsgs;
	struct {
		char uid[STR], room[STR];
		int64_t since;
	} members[MAX_MEMBERS];
	int nmembers;
	struct {
		char sender[STR], key[STR];
		int64_t seq;
	} idem[MAX_IDEM];
	int nidem;
	struct {
		char uid[STR];
		int64_t cursor;
	} cursors[MAX_CURSORS];
	int ncursors;
	int64_t last_seq, committed;
	int submitted[ENGINE_TOKEN_CHANGE + 1];
	int refuse_next;
};

static struct fake *fake_of(struct engine *e)
{
	return (struct fake *)e;
}

static void copy(char *dst, const char *src)
{
	if (src)
		snprintf(dst, STR, "%s", src);
	else
		dst[0] = '\0';
}

static int64_t find_idem(struct fake *f, const char *sender, const char *key)
{
	for (int i = 0; i < f->nidem; i++)
		if (strcmp(f->idem[i].sender, sender) == 0 &&
		    strcmp(f->idem[i].key, key) == 0)
			return f->idem[i].seq;
	return 0;
}

static int fake_submit(struct engine *e, const struct engine_event *ev,
		       const struct bk_done *done, const char **why)
{
	struct fake *f = fake_of(e);
	struct fop *op;
	int64_t dup;

	if (f->refuse_next || f->nops == MAX_OPS) {
		f->refuse_next = 0;
		if (why)
			*why = "refused";
		return -1;
	}
	f->submitted[ev->kind]++;
	op = &f->ops[f->nops++];
	memset(op, 0, sizeof(*op));
	if (done)
		op->done = *done;
	op->ev = *ev;
	op->ev.local = 1;
	op->ev.idem = NULL;
	op->has_event = 1;
	switch (ev->kind) {
	case ENGINE_MESSAGE:
		/* Idempotency, as the store's table: a resend completes with
		 * the original seq and makes no event. */
		if (ev->idem &&
		    (dup = find_idem(f, ev->msg.sender, ev->idem)) != 0) {
			op->has_event = 0;
			op->seq = dup;
			return 0;
		}
		op->seq = op->ev.seq = op->ev.msg.seq = ++f->last_seq;
		op->ev.msg.ts = 1000 + op->seq;
		copy(op->from, ev->msg.sender);
		copy(op->to, ev->msg.to);
		copy(op->room, ev->msg.room);
		snprintf(op->data, sizeof(op->data), "%.*s",
			 (int)ev->msg.data_len, ev->msg.data);
		op->ev.msg.sender = op->from;
		op->ev.msg.to = ev->msg.to ? op->to : NULL;
		op->ev.msg.room = ev->msg.room ? op->room : NULL;
		op->ev.msg.data = op->data;
		if (ev->idem && f->nidem < MAX_IDEM) {
			copy(f->idem[f->nidem].sender, ev->msg.sender);
			copy(f->idem[f->nidem].key, ev->idem);
			f->idem[f->nidem++].seq = op->seq;
		}
		break;
	case ENGINE_JOIN:
	case ENGINE_LEAVE:
		op->seq = op->ev.seq = f->last_seq;
		copy(op->uid, ev->member.uid);
		copy(op->room, ev->member.room);
		op->ev.member.uid = op->uid;
		op->ev.member.room = op->room;
		break;
	case ENGINE_CURSOR:
		copy(op->uid, ev->cursor.uid);
		op->ev.cursor.uid = op->uid;
		break;
	case ENGINE_TASK:
		/* The task's strings are not needed after the commit here
		 * but for its id and snapshot, which the broker reads. */
		copy(op->uid, ev->task.rec.id);
		op->ev.task.rec.id = op->uid;
		snprintf(op->data, sizeof(op->data), "%.*s",
			 (int)ev->task.snap_len, ev->task.snap);
		op->ev.task.snap = op->data;
		op->ev.task.rec.title = op->ev.task.rec.owner = NULL;
		op->ev.task.rec.watchers = op->ev.task.rec.status = NULL;
		op->ev.task.rec.steps = op->ev.task.rec.note = NULL;
		op->seq = ev->task.rec.version;
		break;
	case ENGINE_TASK_DELETE:
		copy(op->uid, ev->task_id);
		op->ev.task_id = op->uid;
		break;
	case ENGINE_TOKEN_ISSUE:
		copy(op->uid, ev->token.uid);
		op->ev.token.uid = op->uid;
		break;
	case ENGINE_TOKEN_CHANGE:
		f->nops--;
		return -1;
	}
	return 0;
}

/* What the store would keep once committed. */
static void keep(struct fake *f, const struct fop *op)
{
	const struct engine_event *ev = &op->ev;

	if (ev->kind == ENGINE_MESSAGE && f->nmsgs < MAX_MSGS) {
		struct fmsg *m = &f->msgs[f->nmsgs++];
		m->seq = ev->msg.seq;
		m->ts = ev->msg.ts;
		copy(m->from, op->from);
		copy(m->to, ev->msg.to ? op->to : NULL);
		copy(m->room, ev->msg.room ? op->room : NULL);
		copy(m->data, op->data);
	} else if (ev->kind == ENGINE_JOIN && f->nmembers < MAX_MEMBERS) {
		copy(f->members[f->nmembers].uid, op->uid);
		copy(f->members[f->nmembers].room, op->room);
		f->members[f->nmembers++].since = ev->seq;
	} else if (ev->kind == ENGINE_CURSOR && f->ncursors < MAX_CURSORS) {
		copy(f->cursors[f->ncursors].uid, op->uid);
		f->cursors[f->ncursors++].cursor = ev->cursor.cursor;
	}
}

void fake_engine_commit(struct engine *e, int ok)
{
	struct fake *f = fake_of(e);
	static struct fop ops[MAX_OPS];
	int n = f->nops;

	/* What the callbacks submit belongs to the next commit. */
	memcpy(ops, f->ops, sizeof(ops[0]) * (size_t)n);
	f->nops = 0;
	if (ok)
		f->committed = f->last_seq;
	else
		f->last_seq = f->committed;
	for (int i = 0; i < n; i++) {
		struct fop *op = &ops[i];
		struct bk_result r = {
			.status = ok ? BK_OK : BK_UNAVAILABLE,
			.seq = op->seq,
			.msg = ok ? NULL : "commit failed",
		};
		if (ok && op->has_event) {
			keep(f, op);
			if (e->on_event)
				e->on_event(e->on_event_arg, &op->ev);
		}
		bk_complete(&op->done, &r);
	}
}

static void fake_sync(struct engine *e, const struct bk_done *done)
{
	struct fake *f = fake_of(e);
	struct bk_result r = {.status = BK_OK};

	if (f->nops == 0) {
		bk_complete(done, &r);
		return;
	}
	memset(&f->ops[f->nops], 0, sizeof(f->ops[0]));
	f->ops[f->nops++].done = *done;
}

static void fake_flush(struct engine *e)
{
	fake_engine_commit(e, 1);
}

static const char *fake_epoch(struct engine *e)
{
	(void)e;
	return "fake-epoch";
}

static int64_t fake_committed(struct engine *e)
{
	return fake_of(e)->committed;
}

static int64_t fake_pruned(struct engine *e)
{
	(void)e;
	return 0;
}

static int fake_load(struct engine *e, const struct engine_loader *l, void *arg)
{
	(void)e;
	(void)l;
	(void)arg;
	return 0;
}

static int fake_cursor(struct engine *e, const char *uid, int64_t *cursor)
{
	struct fake *f = fake_of(e);
	int found = 0;

	for (int i = 0; i < f->ncursors; i++)
		if (strcmp(f->cursors[i].uid, uid) == 0) {
			*cursor = f->cursors[i].cursor;
			found = 1;
		}
	return found;
}

static int member_since(struct fake *f, const char *uid, const char *room,
			int64_t *since)
{
	for (int i = f->nmembers - 1; i >= 0; i--)
		if (strcmp(f->members[i].uid, uid) == 0 &&
		    strcmp(f->members[i].room, room) == 0) {
			*since = f->members[i].since;
			return 1;
		}
	return 0;
}

static int fake_replay(struct engine *e, const char *uid, int64_t since,
		       int64_t upto, int limit, engine_msg_fn fn, void *arg)
{
	struct fake *f = fake_of(e);
	int n = 0;

	for (int i = 0; i < f->nmsgs && n < limit; i++) {
		const struct fmsg *m = &f->msgs[i];
		int64_t joined;
		if (m->seq <= since || m->seq > upto)
			continue;
		if (m->room[0] ? !member_since(f, uid, m->room, &joined) ||
					 m->seq <= joined
			       : strcmp(m->to, uid) != 0)
			continue;
		struct msg_record r = {
			.seq = m->seq,
			.ts = m->ts,
			.sender = m->from,
			.to = m->room[0] ? NULL : m->to,
			.room = m->room[0] ? m->room : NULL,
			.data = m->data,
			.data_len = strlen(m->data),
		};
		fn(arg, &r);
		n++;
	}
	return n;
}

static int fake_token(struct engine *e, const unsigned char hash[32],
		      int64_t now, struct auth_identity *id)
{
	(void)e;
	(void)hash;
	(void)now;
	(void)id;
	return AUTH_TOKEN_UNKNOWN;
}

static int fake_task(struct engine *e, const char *id, engine_task_fn fn,
		     void *arg)
{
	(void)e;
	(void)id;
	(void)fn;
	(void)arg;
	return 0;
}

static void fake_settle(struct engine *e, int wait_ms,
			const struct bk_done *done)
{
	struct bk_result r = {.status = BK_OK};
	(void)e;
	(void)wait_ms;
	bk_complete(done, &r);
}

static int fake_healthy(struct engine *e)
{
	(void)e;
	return 1;
}

static void fake_destroy(struct engine *e)
{
	free(e);
}

static void fake_presence(struct engine *e, const char *uid, int online)
{
	struct fake *f = fake_of(e);
	size_t n = strlen(f->presence);

	snprintf(f->presence + n, sizeof(f->presence) - n, "%c%s ",
		 online ? '+' : '-', uid);
}

static const struct engine_ops fake_ops = {
	.submit = fake_submit,
	.sync = fake_sync,
	.flush = fake_flush,
	.epoch = fake_epoch,
	.committed = fake_committed,
	.pruned = fake_pruned,
	.load = fake_load,
	.cursor = fake_cursor,
	.replay = fake_replay,
	.token = fake_token,
	.task = fake_task,
	.settle = fake_settle,
	.healthy = fake_healthy,
	.presence = fake_presence,
	.destroy = fake_destroy,
};

struct engine *fake_engine_create(void)
{
	struct fake *f = calloc(1, sizeof(*f));
	f->e.ops = &fake_ops;
	return &f->e;
}

void fake_engine_destroy(struct engine *e)
{
	engine_destroy(e);
}

int fake_engine_pending(const struct engine *e)
{
	return ((const struct fake *)e)->nops;
}

int fake_engine_submitted(const struct engine *e, enum engine_kind kind)
{
	return ((const struct fake *)e)->submitted[kind];
}

const char *fake_engine_presence_log(const struct engine *e)
{
	return ((const struct fake *)e)->presence;
}

void fake_engine_feed_presence(struct engine *e, const char *uid, int delta)
{
	if (e->on_presence)
		e->on_presence(e->on_presence_arg, uid, delta);
}

void fake_engine_refuse_next(struct engine *e)
{
	fake_of(e)->refuse_next = 1;
}
