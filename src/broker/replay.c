/*
 * Replay: resume and the offline inbox are one mechanism. The session is
 * marked replaying, rows are read from the engine's store in chunks (at
 * most REPLAY_BUDGET rows per loop turn over all sessions), and live
 * messages for it are held meanwhile (references to the shared payloads).
 * A chunk stops early when the session's output is half full and goes on
 * once it drains. When the store has nothing more up to the seq that was
 * committed when the replay began, "resumed" is sent and the held
 * messages follow, skipping any seq already sent: each session remembers
 * the highest seq it was sent, which is what makes "never twice, never out
 * of order" hold.
 */
#include "broker_int.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/msgbuf.h"
#include "basestation/xalloc.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#define REPLAY_CHUNK  256
#define REPLAY_BUDGET 2048 /* rows per loop turn, all sessions */

/* A live message held back while its session replays. */
struct held {
	struct held *next;
	int64_t seq;
	struct msgbuf *m;
};

/* A replay under way (s->rp from replay_start to finish or forget). */
struct replay {
	struct session *next; /* bk.replay_head: the replay queue */
	int64_t since;	      /* as the client asked (for "resumed") */
	int64_t upto;	      /* committed when it began */
	int count;	      /* rows sent */
	json_t *ref;
	struct held *head, *tail;
	uint64_t held_bytes; /* bounded by --max-outbuf like the output */
};

void replay_deliver(struct session *s, int64_t seq, struct msgbuf *m)
{
	struct held *h;

	if (!s->open || seq <= s->last_seq)
		return;
	if (!s->replaying) {
		/* last_seq moves once m is queued: the send may cut s, or
		 * drain its output first (session_drained), and neither may
		 * count m as given (the inbox cursor, session.c). */
		if (session_send(s, m) == 0)
			s->last_seq = seq;
		return;
	}
	/* Held messages count against the output limit: a session whose
	 * replay cannot keep up with live traffic is cut and resumes later,
	 * rather than growing without bound. */
	struct replay *rp = s->rp;
	if (rp->held_bytes + m->len > bk.cfg->max_outbuf) {
		s->sink->cut(s, rp->held_bytes);
		return;
	}
	rp->held_bytes += m->len;
	h = xmalloc(sizeof(*h));
	h->next = NULL;
	h->seq = seq;
	h->m = m;
	msgbuf_ref(m);
	if (rp->tail)
		rp->tail->next = h;
	else
		rp->head = h;
	rp->tail = h;
}

static void enqueue(struct session *s)
{
	if (s->in_replay_queue)
		return;
	s->in_replay_queue = 1;
	s->rp->next = NULL;
	if (bk.replay_tail)
		bk.replay_tail->rp->next = s;
	else
		bk.replay_head = s;
	bk.replay_tail = s;
	event_active(bk.replay_ev, EV_TIMEOUT, 0);
}

int replay_start(struct session *s, int64_t since, int report, int epoch_ok,
		 const json_t *ref)
{
	int64_t committed = engine_committed(bk.engine);

	if (s->replaying)
		return -1;
	s->replay_report = report;
	s->replay_complete = 1;
	if (since < 0) {
		/* Offline inbox: only for the user's first session, on any
		 * node (remote: other nodes' sessions, cluster mode). */
		if (s->user->nsessions > 1 || s->user->remote > 0)
			return 0;
		since = s->user->cursor;
	}
	struct replay *rp = xcalloc(1, sizeof(*rp));
	rp->since = since;
	if (!epoch_ok) {
		/* The client's seq names another history: all of ours. */
		s->replay_complete = 0;
		since = 0;
	}
	/* Retention removed some of it, or the client has seen seqs we never
	 * had (a database restored from an older backup): not whole. */
	if (since < engine_pruned(bk.engine) || since > committed)
		s->replay_complete = 0;
	if (since > committed)
		since = committed;
	if (since < s->last_seq)
		since = s->last_seq;
	s->replaying = 1;
	s->rp = rp;
	rp->upto = committed;
	s->last_seq = since;
	rp->ref = ref ? json_incref((json_t *)ref) : NULL;
	enqueue(s);
	return 0;
}

/* Send one replayed row, unless s's output is half full: then stop this
 * chunk (the row is fetched again from last_seq once the output drains). */
static void replay_row(void *arg, const struct msg_record *m)
{
	struct session *s = arg;
	struct msgbuf *mb;
	uint64_t buffered;

	if (s->wait_drain || m->seq <= s->last_seq || !s->open)
		return;
	buffered = s->sink->buffered(s);
	if (buffered > 0 &&
	    buffered + m->data_len + 128 > bk.cfg->max_outbuf / 2) {
		s->wait_drain = 1;
		return;
	}
	mb = payload_message(m);
	s->last_seq = m->seq;
	session_send(s, mb);
	msgbuf_unref(mb);
	s->rp->count++;
	metrics.replayed++;
}

/* Frees rp and what it holds; with send, the held messages go to s first,
 * in seq order, skipping what it was sent. s->rp is already NULL: a send
 * that cuts s finds no replay to forget. */
static void replay_free(struct session *s, struct replay *rp, int send)
{
	struct held *h;

	while ((h = rp->head) != NULL) {
		rp->head = h->next;
		if (send && s->open && h->seq > s->last_seq) {
			s->last_seq = h->seq;
			session_send(s, h->m);
		}
		msgbuf_unref(h->m);
		free(h);
	}
	json_decref(rp->ref);
	free(rp);
}

static void finish(struct session *s)
{
	struct replay *rp = s->rp;

	s->replaying = 0;
	s->rp = NULL;
	if (s->replay_report && s->open) {
		json_t *o = json_pack("{s:s, s:I, s:I, s:b}", "type", "resumed",
				      "since", (json_int_t)rp->since, "last",
				      (json_int_t)(s->last_seq > rp->upto
							   ? s->last_seq
							   : rp->upto),
				      "complete", s->replay_complete);
		struct msgbuf *mb;
		if (rp->ref)
			json_object_set(o, "ref", rp->ref);
		if ((mb = payload_json(o)) != NULL) {
			session_send(s, mb);
			msgbuf_unref(mb);
		}
	}
	if (s->last_seq < rp->upto)
		s->last_seq = rp->upto;
	/* Live messages that arrived meanwhile, in seq order, no repeats. */
	replay_free(s, rp, 1);
}

/* One chunk for s. Returns 1 when s's replay is over. */
static int chunk(struct session *s, int *budget)
{
	/* --max-replay bounds a resume (since). The offline inbox is owed
	 * whole: what it holds is bounded by retention, and it goes in the
	 * same chunks, paced by the client's reading. */
	int limit = REPLAY_CHUNK, n;
	int left = s->replay_report ? bk.cfg->max_replay - s->rp->count
				    : REPLAY_CHUNK;
	char uid[AUTH_UID_MAX + 1];

	if (!s->open)
		return 1;
	if (left <= 0) {
		/* The rest is skipped: say so. */
		s->replay_complete = 0;
		finish(s);
		return 1;
	}
	if (limit > left)
		limit = left;
	/* The statement reads the uid while replay_row sends: a copy, since
	 * a session cut on the way may free its user record. */
	snprintf(uid, sizeof(uid), "%s", s->user->uid);
	n = engine_replay(bk.engine, uid, s->last_seq, s->rp->upto, limit,
			  replay_row, s);
	if (n < 0) {
		s->replay_complete = 0;
		finish(s);
		return 1;
	}
	*budget -= n;
	if (s->wait_drain)
		return 0; /* replay_drained() goes on */
	if (n < limit) {
		finish(s);
		return 1;
	}
	return 0;
}

static void replay_cb(evutil_socket_t fd, short what, void *arg)
{
	int budget = REPLAY_BUDGET;
	struct session *s;
	(void)fd;
	(void)what;
	(void)arg;

	while (budget > 0 && (s = bk.replay_head) != NULL) {
		bk.replay_head = s->rp->next;
		if (bk.replay_head == NULL)
			bk.replay_tail = NULL;
		s->in_replay_queue = 0;
		if (!chunk(s, &budget) && !s->wait_drain)
			enqueue(s);
	}
	if (bk.replay_head)
		event_active(bk.replay_ev, EV_TIMEOUT, 0);
}

void replay_drained(struct session *s)
{
	if (!s->wait_drain)
		return;
	s->wait_drain = 0;
	if (s->open && s->replaying)
		enqueue(s);
}

void replay_forget(struct session *s)
{
	if (s->in_replay_queue) {
		struct session **pp = &bk.replay_head;
		bk.replay_tail = NULL;
		while (*pp) {
			if (*pp == s)
				*pp = s->rp->next;
			else {
				bk.replay_tail = *pp;
				pp = &(*pp)->rp->next;
			}
		}
		s->in_replay_queue = 0;
	}
	if (s->rp) {
		struct replay *rp = s->rp;
		s->rp = NULL;
		s->replaying = 0;
		replay_free(s, rp, 0);
	}
}

uint64_t session_held_bytes(const struct session *s)
{
	return s->rp ? s->rp->held_bytes : 0;
}

void replay_init(void)
{
	bk.replay_ev = event_new(bk.base, -1, 0, replay_cb, NULL);
	if (bk.replay_ev == NULL)
		fatal("event_new failed");
}

void replay_stop(void)
{
	if (bk.replay_ev)
		event_free(bk.replay_ev);
	bk.replay_ev = NULL;
	bk.replay_head = bk.replay_tail = NULL;
}
