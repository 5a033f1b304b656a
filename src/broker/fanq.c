/*
 * Bounded turns: what a commit makes the broker send waits in one FIFO
 * fan queue and goes out a budget at a time (FANQ_SENDS deliveries or
 * FANQ_BYTES payload bytes per loop turn), so that a large batch no longer
 * holds the loop: once the budget is spent the turn ends (the connections'
 * flush writes what was queued), the next chunk is a zero-timeout timer,
 * and reads, timers and other replies run between chunks.
 *
 * The queue holds, in commit order: messages (fanq_push), task pushes
 * (fanq_call, from tasks.c) and, attached to the entry that was last when
 * they completed, the completions of the broker's engine operations
 * (fanq_submit, fanq_sync: acks and replies). So a recipient sees
 * messages and task versions in commit order whatever path made them, and
 * no reply overtakes a delivery committed before it (a publisher's ack
 * comes after its message went out, as when fan-out was immediate).
 *
 * A run of consecutive messages to the same room goes out member-major:
 * each session gets the whole run in one go (one writev of them all), as
 * it did when the batch was fanned out in one turn. The run's cursor is a
 * room session index and the room's generation (changed on every change
 * to its session list); a changed generation restarts the run at index 0,
 * which is safe because a delivery skips a session that already has the
 * seq (replay_deliver) and cheap because that check is all it costs.
 * Within a chunk a delivery that removes sessions (a slow consumer cut)
 * is handled as in fanout(): the slot is looked at again.
 *
 * A session of a user who joined the room after the message was committed
 * does not get it (its member's joined_seq), as before when fan-out was
 * immediate. A message still queued has not been delivered: bk.fanned,
 * the seq before the oldest entry, is what session.c moves a closing
 * user's inbox cursor to (or the session's own last_seq when it was sent
 * more: a run reached it), so a message queued while its recipient's last
 * connection goes is in the inbox, and one it was sent whole is not.
 */
#include "broker_int.h"
#include "basestation/log.h"
#include "basestation/msgbuf.h"
#include "basestation/xalloc.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Per loop turn. Chosen in docs/perf-notes.md ("Bounded turns"). */
#define FANQ_SENDS 4096
#define FANQ_BYTES (1u << 20)
/* Messages in one member-major run. */
#define FANQ_RUN 64
/* The backlog a turn may leave behind. Publishers are read between chunks,
 * so without a bound they could queue faster than the fan-out drains:
 * above it a turn goes on until the queue is back under it (as a turn did
 * before bounded turns: everything committed went out in it). */
#define FANQ_BACKLOG_MSGS  4096
#define FANQ_BACKLOG_BYTES (16u << 20)
/* A room or recipient name held in the entry itself (names are at most
 * 128 bytes by contract; a longer one is allocated apart). */
#define FANQ_NAME 129
/* Spare nodes kept of each kind: a batch queues many before any is freed,
 * and malloc is then the queue's main cost. */
#define FANQ_SPARE 1024

/* A caller's completion (fanq_wait). Made at submit; when the operation
 * completes with the queue busy, the same node keeps the result (inline
 * when it points at nothing, as an ack does; else a carry() of it) and
 * waits on the entry that was last then. One allocation per operation. */
struct fan_ack {
	struct fan_ack *next;
	struct bk_done caller;
	struct bk_result r;
	int carried; /* caller is a carry() of the result */
};

struct fan_post {
	struct fan_post *next;
	int64_t seq;
	/* a message (m set): */
	uint64_t origin; /* the sender's session: not sent to */
	uint64_t gen;	 /* the room's generation when committed */
	char *room;	 /* or NULL: direct to the user `to` */
	char *to;
	struct msgbuf *m;
	/* else a call: */
	size_t (*fn)(void *arg);
	void *arg;
	struct fan_ack *acks, **acks_tail;
	char *long_name;      /* a name past FANQ_NAME, allocated */
	char name[FANQ_NAME]; /* room or to points here */
};

static struct {
	struct fan_post *head, *last;
	size_t n, bytes; /* queued entries, their payload bytes */
	struct event *ev;
	int scheduled;
	/* The run at the head: its length (0: none started), cursor. */
	int run_n, run_idx;
	uint64_t run_gen;
} fq;

/* The spare nodes (a free list of each kind). */
static struct {
	struct fan_post *posts;
	struct fan_ack *acks;
	size_t nposts, nacks;
} spare;

static struct fan_post *post_get(void)
{
	struct fan_post *p = spare.posts;

	if (p == NULL)
		return xcalloc(1, sizeof(*p));
	spare.posts = p->next;
	spare.nposts--;
	memset(p, 0, offsetof(struct fan_post, name));
	return p;
}

static void post_put(struct fan_post *p)
{
	free(p->long_name);
	if (spare.nposts >= FANQ_SPARE) {
		free(p);
		return;
	}
	p->next = spare.posts;
	spare.posts = p;
	spare.nposts++;
}

static struct fan_ack *ack_get(void)
{
	struct fan_ack *a = spare.acks;

	if (a == NULL)
		return xcalloc(1, sizeof(*a));
	spare.acks = a->next;
	spare.nacks--;
	memset(a, 0, sizeof(*a));
	return a;
}

static void ack_put(struct fan_ack *a)
{
	if (spare.nacks >= FANQ_SPARE) {
		free(a);
		return;
	}
	a->next = spare.acks;
	spare.acks = a;
	spare.nacks++;
}

static void schedule(int now)
{
	static const struct timeval zero = {0, 0};

	if (fq.scheduled || fq.ev == NULL)
		return;
	fq.scheduled = 1;
	if (now)
		event_active(fq.ev, EV_TIMEOUT, 0);
	else
		event_add(fq.ev, &zero);
}

/* The seq up to which everything is out when p is the oldest entry: a
 * call's seq is that of the last message before it (local engine) or its
 * own, which no message has (cluster). */
static void settle(const struct fan_post *p)
{
	int64_t upto = p->m ? p->seq - 1 : p->seq;

	if (upto > bk.fanned)
		bk.fanned = upto;
}

static struct fan_post *append(int64_t seq, struct msgbuf *m)
{
	struct fan_post *p = post_get();

	p->seq = seq;
	p->m = m;
	p->acks_tail = &p->acks;
	if (fq.head == NULL) {
		fq.head = p;
		settle(p); /* everything before it has gone out */
	} else {
		fq.last->next = p;
	}
	fq.last = p;
	fq.n++;
	/* The first chunk runs in this turn, after the rest of the commit's
	 * callbacks (so the whole batch forms runs). */
	schedule(1);
	return p;
}

void fanq_push(const struct engine_event *ev, struct msgbuf *m)
{
	const struct msg_record *mr = &ev->msg;
	const char *name = mr->room ? mr->room : mr->to;
	size_t nl = strlen(name) + 1;
	struct fan_post *p = append(mr->seq, m);
	char *at = p->name;

	p->origin = ev->session;
	if (nl <= sizeof(p->name))
		memcpy(p->name, name, nl);
	else
		at = p->long_name = xstrdup(name);
	if (mr->room) {
		struct room *r = registry_room(mr->room, 0);
		p->room = at;
		p->gen = r ? r->gen : 0;
	} else {
		p->to = at;
	}
	msgbuf_ref(m);
	fq.bytes += m->len;
}

void fanq_call(int64_t seq, size_t (*fn)(void *arg), void *arg)
{
	struct fan_post *p = append(seq, NULL);

	p->fn = fn;
	p->arg = arg;
}

int fanq_busy(void)
{
	return fq.head != NULL;
}

static void deliver_room(const struct fan_post *p, const struct room *r,
			 struct session *s)
{
	/* Cut earlier in this run (its user is gone from it), or the
	 * publisher's own session. */
	if (!s->open || s->id == p->origin)
		return;
	if (r->gen != p->gen) {
		/* The session list changed since the commit: a session of a
		 * user who joined since must not get an earlier message. */
		const struct member *mb = registry_member(s->user, r);
		if (mb == NULL || mb->joined_seq >= p->seq)
			return;
	}
	replay_deliver(s, p->seq, p->m);
}

static void deliver_direct(const struct fan_post *p, size_t *sends,
			   size_t *bytes)
{
	/* A cut slow consumer may free u with its last session; then next
	 * is NULL. */
	struct user *u = registry_user(p->to, 0);
	struct session *s = u ? u->sessions : NULL, *next;

	for (; s; s = next) {
		next = s->unext;
		replay_deliver(s, p->seq, p->m);
		++*sends;
		*bytes += p->m->len;
	}
}

/* The head is out: off the queue, then its waiting completions run. */
static void pop(void)
{
	static const struct bk_result ok = {.status = BK_OK};
	struct fan_post *p = fq.head;
	struct fan_ack *a, *next;

	fq.head = p->next;
	if (fq.head == NULL)
		fq.last = NULL;
	fq.n--;
	if (fq.head)
		settle(fq.head);
	else if (p->seq > bk.fanned)
		bk.fanned = p->seq;
	if (p->m) {
		fq.bytes -= p->m->len;
		msgbuf_unref(p->m);
	}
	for (a = p->acks; a; a = next) {
		next = a->next;
		bk_complete(&a->caller, a->carried ? &ok : &a->r);
		ack_put(a);
	}
	post_put(p);
}

static int in_run(const struct fan_post *p, const char *room)
{
	return p && p->m && p->room && strcmp(p->room, room) == 0;
}

/* Start the run at the head: it and the messages right after it to the
 * same room. */
static void run_start(const struct room *r)
{
	const struct fan_post *p = fq.head;

	fq.run_n = 0;
	while (fq.run_n < FANQ_RUN && in_run(p, fq.head->room)) {
		fq.run_n++;
		p = p->next;
	}
	fq.run_idx = 0;
	fq.run_gen = r ? r->gen : 0;
}

/* The run at the head to r's sessions, up to the budget. 1 when it went
 * to all of them. */
static int fan_run(struct room *r, size_t max_sends, size_t max_bytes,
		   size_t *sends, size_t *bytes)
{
	if (r->gen != fq.run_gen)
		fq.run_idx = 0;
	while (fq.run_idx < r->nsessions && *sends < max_sends &&
	       *bytes < max_bytes) {
		struct session *s = r->sessions[fq.run_idx];
		const struct fan_post *p = fq.head;
		for (int k = 0; k < fq.run_n; k++, p = p->next) {
			deliver_room(p, r, s);
			*bytes += p->m->len;
		}
		++*sends;
		/* A delivery may have removed s (or one before it): then the
		 * slot holds the next one. */
		if (fq.run_idx < r->nsessions && r->sessions[fq.run_idx] == s)
			fq.run_idx++;
	}
	fq.run_gen = r->gen;
	return fq.run_idx >= r->nsessions;
}

/* Deliver up to the budget. 1 if something is left. */
static int fan_chunk(size_t max_sends, size_t max_bytes)
{
	size_t sends = 0, bytes = 0;

	while (fq.head && sends < max_sends && bytes < max_bytes) {
		struct fan_post *p = fq.head;
		struct room *r;

		if (p->m == NULL) {
			sends += p->fn(p->arg);
			pop();
			continue;
		}
		if (p->room == NULL) {
			deliver_direct(p, &sends, &bytes);
			pop();
			continue;
		}
		r = registry_room(p->room, 0);
		if (fq.run_n == 0)
			run_start(r);
		if (r && !fan_run(r, max_sends, max_bytes, &sends, &bytes))
			break; /* budget spent mid-run */
		for (int k = fq.run_n; k > 0; k--)
			pop();
		fq.run_n = 0;
	}
	return fq.head != NULL;
}

static void fan_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fq.scheduled = 0;
	while (fan_chunk(FANQ_SENDS, FANQ_BYTES) &&
	       (fq.n > FANQ_BACKLOG_MSGS || fq.bytes > FANQ_BACKLOG_BYTES))
		;
	if (fq.head)
		schedule(0); /* after the next poll: reads and timers first */
}

/* ---- completions behind the queue ---- */

static void wait_fn(const struct bk_done *d, const struct bk_result *r)
{
	struct fan_ack *a = d->ptr;

	if (fq.head == NULL) {
		bk_complete(&a->caller, r);
		ack_put(a);
		return;
	}
	/* Behind everything queued so far (its own message, when it is a
	 * publish: the engine hands the event over before it completes). */
	if (r->name || r->body || r->msg) {
		a->caller = carry(&a->caller, r);
		a->carried = 1;
	} else {
		a->r = *r;
	}
	a->next = NULL;
	*fq.last->acks_tail = a;
	fq.last->acks_tail = &a->next;
}

struct bk_done fanq_wait(const struct bk_done *caller)
{
	struct fan_ack *a;

	if (caller == NULL || caller->fn == NULL)
		return (struct bk_done){0};
	a = ack_get();
	a->caller = *caller;
	return (struct bk_done){.fn = wait_fn, .ptr = a};
}

void fanq_wait_drop(const struct bk_done *d)
{
	if (d->ptr)
		ack_put(d->ptr);
}

int fanq_submit(const struct engine_event *ev, const struct bk_done *done,
		const char **why)
{
	struct bk_done d = fanq_wait(done);

	if (engine_submit(bk.engine, ev, &d, why) == 0)
		return 0;
	fanq_wait_drop(&d);
	return -1;
}

void fanq_sync(const struct bk_done *done)
{
	struct bk_done d = fanq_wait(done);

	engine_sync(bk.engine, &d);
}

void fanq_drain(void)
{
	while (fan_chunk(SIZE_MAX, SIZE_MAX))
		;
}

void fanq_init(struct event_base *base)
{
	memset(&fq, 0, sizeof(fq));
	fq.ev = evtimer_new(base, fan_cb, NULL);
	if (fq.ev == NULL)
		fatal("event_new failed");
}

void fanq_stop(void)
{
	fanq_drain();
	if (fq.ev)
		event_free(fq.ev);
	fq.ev = NULL;
	fq.scheduled = 0;
	while (spare.posts) {
		struct fan_post *p = spare.posts;
		spare.posts = p->next;
		free(p);
	}
	while (spare.acks) {
		struct fan_ack *a = spare.acks;
		spare.acks = a->next;
		free(a);
	}
	spare.nposts = spare.nacks = 0;
}
