/*
 * JetStream link (see jetstream.h for the contract).
 *
 * Three kinds of threads touch a link:
 *   - the loop: owns struct bsjs, every publish request, the consumer's
 *     position; calls no blocking libnats function;
 *   - libnats's threads (message delivery, PubAck delivery, connection
 *     events): they only append items to the bridge's queue and wake the
 *     loop with event_active();
 *   - two threads of the link: the sender (js_PublishMsgAsync, core
 *     publish, subscribe, unsubscribe: quick, but they take libnats's
 *     connection lock, which its reconnect thread holds during connect
 *     attempts) and the admin thread (JetStream API requests that wait
 *     for an answer).
 *
 * The bridge (queue, lock, "dead" flag) is what libnats's callbacks get as
 * their closure. libnats may still run a callback after bsjs_destroy
 * returns (its delivery threads end on their own schedule), so a bridge is
 * only marked dead there and freed by bsjs_global_finish, after
 * nats_CloseAndWait has joined every libnats thread. Subscription handles
 * are reference-counted under the bridge's lock for the same reason: the
 * last of the loop, a queued item, or libnats's on-complete callback frees
 * them.
 */
#include "basestation/jetstream.h"

#include <nats/nats.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/rand.h>
#include <uthash.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define EPOCH_PREFIX	  "basestation epoch="
#define BATCH_MAX	  256  /* consumer messages per callback */
#define TURN_MAX	  4096 /* queue items handled per loop wakeup */
#define API_WAIT_MS	  3000 /* one JetStream API request */
#define DEADLINE_GRACE_MS 250  /* let libnats report its own timeout */
#define RETRY_MIN_MS	  100
#define RETRY_MAX_MS	  1000
#define JOB_RETRY_MIN_MS  250
#define JOB_RETRY_MAX_MS  2000
#define RECONNECT_MIN_MS  100
#define RECONNECT_MAX_MS  2000
#define TEXT_MAX	  200
#define WATCH_MS	  3000	/* consumer progress check */
#define CORE_MAX_QUEUED	  16384 /* core messages waiting for the loop */
/* Creating (or deleting) the ordered consumer: a clustered consumer create
 * goes through the meta leader's and the consumer's Raft groups, which took
 * up to 2.5 s on a loaded machine (load 10-20 on 2 cores); at 3 s creates
 * timed out and were retried over and over (and a create that succeeds
 * after the client gave up leaves a consumer nobody reads). Right after a
 * server died, a create can also go unanswered for good (the new
 * consumer's server is the dead one, presumably): longer waits cost more
 * there. */
#define CONS_WAIT_MS 6000

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct timeval tv_ms(int64_t ms)
{
	struct timeval tv = {.tv_sec = ms / 1000,
			     .tv_usec = (suseconds_t)(ms % 1000) * 1000};
	return tv;
}

static void *xcalloc1(size_t n)
{
	void *p = calloc(1, n);
	if (!p)
		abort();
	return p;
}

static char *xstrdup1(const char *s)
{
	char *p = strdup(s);
	if (!p)
		abort();
	return p;
}

static int64_t backoff_ms(int tries, int64_t lo, int64_t hi)
{
	int64_t ms = lo;
	for (int i = 0; i < tries && ms < hi; i++)
		ms *= 2;
	return ms < hi ? ms : hi;
}

/* The calling thread's last libnats error if it is about s (libnats keeps
 * a thread's last error until the next one: an older error, say a failed
 * consumer delete, must not be reported as this one), else s's text. */
static void nats_text(natsStatus s, char *buf, size_t bufsz)
{
	natsStatus ls = NATS_OK;
	const char *last = nats_GetLastError(&ls);
	snprintf(buf, bufsz, "%s",
		 last && *last && ls == s ? last : natsStatus_GetText(s));
}

const char *bsjs_status_name(int status)
{
	switch (status) {
	case BSJS_OK:
		return "ok";
	case BSJS_ETIMEOUT:
		return "timeout";
	case BSJS_EUNAVAIL:
		return "unavailable";
	case BSJS_EWRONGSEQ:
		return "wrong_last_sequence";
	case BSJS_EREJECTED:
		return "rejected";
	case BSJS_ECLOSED:
		return "closed";
	}
	return "unknown";
}

/* ---- the bridge: libnats threads -> loop ---- */

enum item_kind {
	IT_ACK,	      /* a publish came back (PubAck, error, timeout) */
	IT_CONS,      /* an ordered-consumer message */
	IT_CONS_SLOW, /* libnats dropped consumer messages: restart it */
	IT_CORE,      /* a core NATS message */
	IT_STATE,     /* connection state */
	IT_READY,     /* the stream is there */
	IT_FATAL,
	IT_WARN,
	IT_INFO,    /* a stream-info answer */
	IT_CONS_UP, /* the consumer of generation u.cons.gen is subscribed */
};

struct inforeq;

struct item {
	struct item *next;
	enum item_kind kind;
	natsMsg *msg; /* ACK: ours again; CONS, CORE: received */
	union {
		struct {
			natsStatus status;
			int js_code;
			uint64_t seq;
			bool duplicate;
		} ack;
		struct {
			uint64_t gen;
			uint64_t seq;
			int64_t time_ns;
		} cons;
		struct bsjs_sub *core;
		struct {
			enum bsjs_conn_state state;
		} st;
		struct {
			struct inforeq *req;
			int status;
		} info;
	} u;
	struct bsjs_stream_info si; /* READY, INFO */
	char text[TEXT_MAX];	    /* ACK error, FATAL, WARN, STATE url */
};

struct bridge {
	pthread_mutex_t mu;
	pthread_cond_t cons_cond; /* consumer delivery threads wait here */
	bool dead;		  /* the link is gone: drop, do not wake */
	bool armed;		  /* ev is active and will run */
	struct event *ev;
	struct item *head, *tail;
	/* The message inside js_PublishMsgAsync on the sender thread, and
	 * its PubAck (or timeout) if libnats reported it before that call
	 * returned: libnats registers a message for its answer before it
	 * writes it, and a connection lock held by its reconnect thread can
	 * keep the write waiting past the message's MaxWait. The loop may
	 * free or resend the message only after the call returned (send_pub
	 * posts the held answer then); a message the dead link drops
	 * meanwhile is freed there too. */
	natsMsg *sending;
	struct item *sending_ack;
	natsMsg *sending_free;
	/* Consumer flow control: IT_CONS items not yet handled. */
	size_t cons_queued, cons_max;
	uint64_t cons_gen;	     /* items of another generation are stale */
	natsSubscription *cons_nsub; /* to recognise its async errors */
	uint64_t cons_waits;
	/* Core NATS messages not yet handled: past CORE_MAX_QUEUED, what
	 * other processes publish is dropped (counted), not queued. */
	size_t core_queued;
	uint64_t core_dropped;
	struct cons *held; /* cons_hold: freed by global_finish */
	struct event_base *base;
	struct bridge *gnext; /* all bridges, freed by global_finish */
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct bridge *g_bridges;
static bool g_open;

static void post_locked(struct bridge *b, struct item *it)
{
	it->next = NULL;
	if (b->tail)
		b->tail->next = it;
	else
		b->head = it;
	b->tail = it;
	if (!b->armed && !b->dead && b->ev) {
		b->armed = true;
		event_active(b->ev, EV_READ, 0);
	}
}

static void post(struct bridge *b, struct item *it)
{
	pthread_mutex_lock(&b->mu);
	post_locked(b, it);
	pthread_mutex_unlock(&b->mu);
}

static struct item *item_new(enum item_kind kind)
{
	struct item *it = xcalloc1(sizeof(*it));
	it->kind = kind;
	return it;
}

static void post_text(struct bridge *b, enum item_kind kind, const char *fmt,
		      ...) __attribute__((format(printf, 3, 4)));
static void post_text(struct bridge *b, enum item_kind kind, const char *fmt,
		      ...)
{
	struct item *it = item_new(kind);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(it->text, sizeof(it->text), fmt, ap);
	va_end(ap);
	post(b, it);
}

/* ---- handles shared with libnats ---- */

struct op {
	struct op *next;
	enum { OP_PUB, OP_CPUB, OP_SUB, OP_UNSUB } kind;
	void *p; /* struct pubreq, natsMsg, struct bsjs_sub */
};

struct bsjs_sub {
	struct bridge *b;
	struct bsjs *l;
	char *subject;
	bsjs_core_cb cb;
	void *arg;
	int refs;		/* under b->mu */
	bool cancelled;		/* under b->mu */
	natsSubscription *nsub; /* sender thread only */
	struct op op_sub, op_unsub;
	struct bsjs_sub *lnext; /* l->subs while subscribed (loop) */
};

struct cons {
	struct bridge *b;
	uint64_t gen;
	uint64_t start;
	int refs;		/* under b->mu */
	bool held;		/* under b->mu: in b->held */
	struct cons *hnext;	/* b->held */
	natsSubscription *nsub; /* admin thread only */
};

static void sub_unref_locked(struct bsjs_sub *s)
{
	if (--s->refs == 0) {
		free(s->subject);
		free(s);
	}
}

/* libnats may still call on_cons_msg with c although it will never call
 * on_cons_done: js_Subscribe failed after it had subscribed the delivery
 * inbox (a consumer create that timed out: libnats destroys that
 * subscription without waiting for a callback under way, and a create
 * answered late may already push messages), or the subscription was closed
 * before its on-complete callback could be set. libnats's reference then
 * stays until bsjs_global_finish has joined libnats's threads; freeing c at
 * once was a use-after-free in on_cons_msg. At most one c per consumer
 * (re)start. */
static void cons_hold(struct cons *c)
{
	struct bridge *b = c->b;
	pthread_mutex_lock(&b->mu);
	if (c->held) {
		c->refs--; /* one held reference is enough */
	} else {
		c->held = true;
		c->hnext = b->held;
		b->held = c;
	}
	pthread_mutex_unlock(&b->mu);
}

static void cons_unref(struct cons *c)
{
	struct bridge *b = c->b;
	pthread_mutex_lock(&b->mu);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&b->mu);
	if (last)
		free(c);
}

/* ---- the link ---- */

struct pubreq {
	struct op op;
	UT_hash_handle hh; /* l->by_msg, keyed by msg */
	natsMsg *msg;
	struct bsjs *l;
	bsjs_ack_cb cb; /* NULL once the caller has its answer */
	void *arg;
	char *msg_id;
	int64_t expect;
	int64_t deadline_ms;
	int64_t t0_us;
	int64_t attempt_wait_ms; /* read by the sender */
	int attempts;
	bool grace;
	enum {
		R_WAITING, /* in l->wait_*: not READY, or max_inflight */
		R_SENDQ,   /* in the sender's queue or in libnats */
		R_BACKOFF, /* ours, waiting to be retried */
	} where;
	/* The last failure, for the answer at the deadline. */
	int last_status;
	int last_js_code;
	char last_text[TEXT_MAX];
	struct pubreq *wnext;
	struct event *timer;
};

struct inforeq {
	struct inforeq *next; /* l->infos */
	bsjs_info_cb cb;
	void *arg;
};

enum job_kind { J_ENSURE, J_INFO, J_CONS_START, J_CONS_STOP };

struct job {
	struct job *next;
	enum job_kind kind;
	int64_t not_before_ms;
	int tries;
	struct cons *cons;
	bool delete_consumer; /* J_CONS_STOP */
	struct inforeq *info;
};

struct bsjs {
	struct event_base *base;
	struct bridge *b;
	natsOptions *opts;
	natsConnection *nc;
	jsCtx *js;  /* publishes, stream lookups: API_WAIT_MS */
	jsCtx *jsc; /* the ordered consumer: CONS_WAIT_MS */

	char *stream, *subjects; /* "<stream>.>" */
	int replicas;
	bool no_create;
	int64_t max_age_ms, max_msgs, dup_window_ms;
	int publish_timeout_ms, attempt_timeout_ms, max_inflight;
	void (*on_event)(void *arg, const struct bsjs_event *ev);
	void *arg;

	enum bsjs_conn_state state;
	bool ready, fatal;
	struct bsjs_stream_info si;
	const struct timeval *deadline_tv; /* a libevent common timeout */

	struct item *backlog, *backlog_tail; /* taken from the bridge */

	struct pubreq *by_msg;
	struct pubreq *wait_head, *wait_tail;
	size_t inflight, waiting;
	/* After "nobody took it" (no responders, no leader), nothing is sent
	 * for pause_ms (100 ms doubling to 1 s, reset by a PubAck): an
	 * election would otherwise be a storm of instant retries. */
	int64_t pause_until_ms, pause_ms;
	struct event *pump_timer;

	struct cons *cons;
	bool cons_up; /* l->cons is subscribed (IT_CONS_UP) */
	bsjs_batch_cb cons_cb;
	void *cons_arg;
	uint64_t cons_last; /* last seq delivered */
	/* The watchdog: cons_last at its previous tick, and whether its
	 * stream-info request is out. */
	struct event *watch_timer;
	uint64_t watch_prev;
	bool watch_asked;

	struct inforeq *infos;
	struct bsjs_sub *subs;

	/* sender thread */
	pthread_t sender;
	bool sender_started;
	pthread_mutex_t smu;
	pthread_cond_t scond;
	struct op *shead, *stail;
	bool squit;
	/* JetStream publishes of this loop turn (loop only): handed to the
	 * sender at once by out_ev, one lock and at most one wakeup per turn
	 * instead of one per publish. */
	struct op *ohead, *otail;
	struct event *out_ev;

	/* admin thread; connect_done (under amu) once the sender thread has
	 * set nc and js */
	bool connect_done;
	pthread_t admin;
	bool admin_started;
	pthread_mutex_t amu;
	pthread_cond_t acond;
	struct job *jhead;
	bool aquit;

	struct bsjs_stats st;
};

/* ---- libnats callbacks (libnats threads) ---- */

static void conn_state_cb(natsConnection *nc, struct bridge *b,
			  enum bsjs_conn_state state)
{
	struct item *it = item_new(IT_STATE);
	it->u.st.state = state;
	if (state == BSJS_CONNECTED &&
	    natsConnection_GetConnectedUrl(nc, it->text, sizeof(it->text)) !=
		    NATS_OK)
		it->text[0] = '\0';
	post(b, it);
}

static void on_connected(natsConnection *nc, void *closure)
{
	conn_state_cb(nc, closure, BSJS_CONNECTED);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
	conn_state_cb(nc, closure, BSJS_DISCONNECTED);
}

static void on_closed(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure; /* only bsjs_destroy closes */
}

static void on_async_error(natsConnection *nc, natsSubscription *sub,
			   natsStatus err, void *closure)
{
	struct bridge *b = closure;
	(void)nc;
	pthread_mutex_lock(&b->mu);
	if (err == NATS_SLOW_CONSUMER && sub && sub == b->cons_nsub) {
		/* libnats dropped consumer messages after its ordered check
		 * had counted them: a silent gap unless restarted. */
		struct item *it = item_new(IT_CONS_SLOW);
		it->u.cons.gen = b->cons_gen;
		post_locked(b, it);
	}
	pthread_mutex_unlock(&b->mu);
	post_text(b, IT_WARN, "event=nats.async_error error=\"%s\"",
		  natsStatus_GetText(err));
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	(void)nc;
	(void)closure;
	int64_t ms = backoff_ms(attempts > 0 ? attempts - 1 : 0,
				RECONNECT_MIN_MS, RECONNECT_MAX_MS);
	return ms + rand() % (ms / 4 + 1);
}

/* PubAck, error or timeout of one async publish (js's reply thread). */
static void on_puback(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
		      void *closure)
{
	struct bridge *b = closure;
	(void)js;
	pthread_mutex_lock(&b->mu);
	if (b->dead) {
		/* bsjs_destroy no longer knows this message. */
		if (msg == b->sending) {
			b->sending_free = msg; /* send_pub frees it */
			msg = NULL;
		}
		pthread_mutex_unlock(&b->mu);
		natsMsg_Destroy(msg);
		return;
	}
	struct item *it = item_new(IT_ACK);
	it->msg = msg;
	if (pa) {
		it->u.ack.status = NATS_OK;
		it->u.ack.seq = pa->Sequence;
		it->u.ack.duplicate = pa->Duplicate;
	} else {
		it->u.ack.status = pae ? pae->Err : NATS_ERR;
		it->u.ack.js_code = pae ? (int)pae->ErrCode : 0;
		snprintf(it->text, sizeof(it->text), "%s",
			 pae && pae->ErrText
				 ? pae->ErrText
				 : natsStatus_GetText(it->u.ack.status));
	}
	if (msg == b->sending)
		b->sending_ack = it; /* send_pub posts it */
	else
		post_locked(b, it);
	pthread_mutex_unlock(&b->mu);
}

/* An ordered-consumer message (its subscription's delivery thread). Waits
 * while the loop has cons_max messages to handle: libnats then does not
 * answer JetStream's flow control, and the server stops sending. */
static void on_cons_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
			void *closure)
{
	struct cons *c = closure;
	struct bridge *b = c->b;
	jsMsgMetaData *meta = NULL;
	(void)nc;
	(void)sub;
	if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
		/* Not a stream message (never for an ordered consumer). */
		natsMsg_Destroy(msg);
		return;
	}
	pthread_mutex_lock(&b->mu);
	bool waited = false;
	while (!b->dead && c->gen == b->cons_gen &&
	       b->cons_queued >= b->cons_max) {
		if (!waited)
			b->cons_waits++;
		waited = true;
		pthread_cond_wait(&b->cons_cond, &b->mu);
	}
	if (b->dead || c->gen != b->cons_gen) {
		pthread_mutex_unlock(&b->mu);
		jsMsgMetaData_Destroy(meta);
		natsMsg_Destroy(msg);
		return;
	}
	struct item *it = item_new(IT_CONS);
	it->msg = msg;
	it->u.cons.gen = c->gen;
	it->u.cons.seq = meta->Sequence.Stream;
	it->u.cons.time_ns = meta->Timestamp;
	b->cons_queued++;
	post_locked(b, it);
	pthread_mutex_unlock(&b->mu);
	jsMsgMetaData_Destroy(meta);
}

static void on_cons_done(void *closure)
{
	cons_unref(closure);
}

static void on_core_msg(natsConnection *nc, natsSubscription *nsub,
			natsMsg *msg, void *closure)
{
	struct bsjs_sub *s = closure;
	struct bridge *b = s->b;
	(void)nc;
	(void)nsub;
	pthread_mutex_lock(&b->mu);
	if (b->dead || s->cancelled || b->core_queued >= CORE_MAX_QUEUED) {
		if (!b->dead && !s->cancelled)
			b->core_dropped++;
		pthread_mutex_unlock(&b->mu);
		natsMsg_Destroy(msg);
		return;
	}
	b->core_queued++;
	struct item *it = item_new(IT_CORE);
	it->msg = msg;
	it->u.core = s;
	s->refs++; /* the item's */
	post_locked(b, it);
	pthread_mutex_unlock(&b->mu);
}

static void on_core_done(void *closure)
{
	struct bsjs_sub *s = closure;
	struct bridge *b = s->b;
	pthread_mutex_lock(&b->mu);
	sub_unref_locked(s);
	pthread_mutex_unlock(&b->mu);
}

/* ---- sender thread ---- */

static void sender_enqueue(struct bsjs *l, struct op *op)
{
	op->next = NULL;
	pthread_mutex_lock(&l->smu);
	bool was_empty = l->shead == NULL;
	if (l->stail)
		l->stail->next = op;
	else
		l->shead = op;
	l->stail = op;
	if (was_empty)
		pthread_cond_signal(&l->scond);
	pthread_mutex_unlock(&l->smu);
}

/* The turn's publishes go to the sender, in order. */
static void sender_flush(struct bsjs *l)
{
	if (!l->ohead)
		return;
	pthread_mutex_lock(&l->smu);
	bool was_empty = l->shead == NULL;
	if (l->stail)
		l->stail->next = l->ohead;
	else
		l->shead = l->ohead;
	l->stail = l->otail;
	if (was_empty)
		pthread_cond_signal(&l->scond);
	pthread_mutex_unlock(&l->smu);
	l->ohead = l->otail = NULL;
}

static void out_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sender_flush(arg);
}

/* Loop: a JetStream publish goes to the sender at the end of this loop
 * turn (out_ev runs after the events already active: every client read of
 * the turn). Core publishes and subscriptions go at once (sender_enqueue):
 * a node's goodbye must not wait for a turn that may not come. */
static void sender_enqueue_pub(struct bsjs *l, struct op *op)
{
	op->next = NULL;
	if (l->otail) {
		l->otail->next = op;
	} else {
		l->ohead = op;
		event_active(l->out_ev, EV_TIMEOUT, 0);
	}
	l->otail = op;
}

static void send_pub(struct bsjs *l, struct pubreq *r)
{
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = r->attempt_wait_ms;
	po.MsgId = r->msg_id;
	if (r->expect == 0)
		po.ExpectNoMessage = true;
	else if (r->expect > 0)
		po.ExpectLastSubjectSeq = (uint64_t)r->expect;
	natsMsg *m = r->msg;
	struct bridge *b = l->b;
	pthread_mutex_lock(&b->mu);
	b->sending = r->msg;
	pthread_mutex_unlock(&b->mu);
	/* No connection object at all (libnats refused the server list):
	 * certainly not sent. */
	natsStatus s =
		l->js ? js_PublishMsgAsync(l->js, &m, &po) : NATS_NO_SERVER;
	pthread_mutex_lock(&b->mu);
	b->sending = NULL;
	struct item *held = b->sending_ack;
	natsMsg *drop = b->sending_free;
	b->sending_ack = NULL;
	b->sending_free = NULL;
	if (held)
		post_locked(b, held); /* answered while it was being sent */
	pthread_mutex_unlock(&b->mu);
	natsMsg_Destroy(drop);
	if (s == NATS_OK || held || drop)
		return; /* libnats owns it until on_puback, or it came back */
	struct item *it = item_new(IT_ACK);
	it->msg = r->msg;
	it->u.ack.status = s;
	nats_text(s, it->text, sizeof(it->text));
	post(l->b, it);
}

static void send_sub(struct bsjs *l, struct bsjs_sub *s)
{
	natsSubscription *nsub = NULL;
	natsStatus st =
		l->nc ? natsConnection_Subscribe(&nsub, l->nc, s->subject,
						 on_core_msg, s)
		      : NATS_CONNECTION_CLOSED;
	if (st != NATS_OK) {
		char why[TEXT_MAX];
		nats_text(st, why, sizeof(why));
		post_text(l->b, IT_WARN,
			  "event=nats.subscribe_failed subject=%s error=\"%s\"",
			  s->subject, why);
		return;
	}
	pthread_mutex_lock(&l->b->mu);
	s->refs++; /* libnats's, dropped by on_core_done */
	pthread_mutex_unlock(&l->b->mu);
	if (natsSubscription_SetOnCompleteCB(nsub, on_core_done, s) !=
	    NATS_OK) {
		/* Already closed (the connection is going): no callback. */
		pthread_mutex_lock(&l->b->mu);
		s->refs--;
		pthread_mutex_unlock(&l->b->mu);
	}
	s->nsub = nsub;
}

static void run_op(struct bsjs *l, struct op *op)
{
	switch (op->kind) {
	case OP_PUB:
		send_pub(l, op->p);
		break;
	case OP_CPUB: {
		natsMsg *m = op->p;
		if (l->nc)
			(void)natsConnection_PublishMsg(l->nc, m);
		natsMsg_Destroy(m);
		free(op);
		break;
	}
	case OP_SUB:
		send_sub(l, op->p);
		break;
	case OP_UNSUB: {
		struct bsjs_sub *s = op->p;
		if (s->nsub) {
			(void)natsSubscription_Unsubscribe(s->nsub);
			natsSubscription_Destroy(s->nsub);
			s->nsub = NULL;
		}
		pthread_mutex_lock(&l->b->mu);
		sub_unref_locked(s); /* the loop's */
		pthread_mutex_unlock(&l->b->mu);
		break;
	}
	}
}

/* The connection's first attempt (synchronous in libnats: up to the
 * connect timeout per unreachable server), here rather than on the loop.
 * Publishes queued meanwhile wait in the sender's queue; the admin thread
 * waits for l->js. */
static void sender_connect(struct bsjs *l)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL, *jsc = NULL;
	natsStatus s = natsConnection_Connect(&nc, l->opts);
	if (s == NATS_OK)
		conn_state_cb(nc, l->b, BSJS_CONNECTED); /* no on_connected */
	else if (s == NATS_NOT_YET_CONNECTED)
		s = NATS_OK; /* retried in the background; on_connected says */
	if (s == NATS_OK) {
		jsOptions jo;
		jsOptions_Init(&jo);
		jo.Wait = API_WAIT_MS;
		/* Never stall in js_PublishMsgAsync: the link keeps at most
		 * max_inflight there. */
		jo.PublishAsync.MaxPending = (int64_t)l->max_inflight * 2;
		jo.PublishAsync.AckHandler = on_puback;
		jo.PublishAsync.AckHandlerClosure = l->b;
		s = natsConnection_JetStream(&js, nc, &jo);
		jo.Wait = CONS_WAIT_MS;
		jo.PublishAsync.AckHandler = NULL;
		jo.PublishAsync.AckHandlerClosure = NULL;
		if (s == NATS_OK)
			s = natsConnection_JetStream(&jsc, nc, &jo);
		if (s != NATS_OK && js) {
			jsCtx_Destroy(js);
			js = NULL;
		}
	}
	if (s != NATS_OK) {
		char why[TEXT_MAX];
		nats_text(s, why, sizeof(why));
		post_text(l->b, IT_FATAL, "NATS: %s", why);
	}
	pthread_mutex_lock(&l->amu);
	l->nc = nc;
	l->js = js;
	l->jsc = jsc;
	l->connect_done = true;
	pthread_cond_signal(&l->acond);
	pthread_mutex_unlock(&l->amu);
}

/* Stopping (smu held): core publishes still queued go out all the same
 * (a node's goodbye; natsConnection_Close flushes them); the rest is left
 * to bsjs_destroy. */
static void sender_last_words(struct bsjs *l)
{
	struct op **pp = &l->shead, *op;

	l->stail = NULL;
	while ((op = *pp)) {
		if (op->kind != OP_CPUB) {
			l->stail = op;
			pp = &op->next;
			continue;
		}
		*pp = op->next;
		pthread_mutex_unlock(&l->smu);
		run_op(l, op);
		pthread_mutex_lock(&l->smu);
	}
}

static void *sender_main(void *arg)
{
	struct bsjs *l = arg;
	sender_connect(l);
	pthread_mutex_lock(&l->smu);
	for (;;) {
		while (!l->shead && !l->squit)
			pthread_cond_wait(&l->scond, &l->smu);
		if (l->squit) {
			sender_last_words(l);
			break;
		}
		struct op *op = l->shead;
		l->shead = op->next;
		if (!l->shead)
			l->stail = NULL;
		pthread_mutex_unlock(&l->smu);
		run_op(l, op);
		pthread_mutex_lock(&l->smu);
	}
	pthread_mutex_unlock(&l->smu);
	return NULL;
}

/* ---- admin thread: JetStream API requests ---- */

static void admin_enqueue(struct bsjs *l, struct job *j)
{
	pthread_mutex_lock(&l->amu);
	struct job **pp = &l->jhead;
	while (*pp)
		pp = &(*pp)->next;
	j->next = NULL;
	*pp = j;
	pthread_cond_signal(&l->acond);
	pthread_mutex_unlock(&l->amu);
}

static struct job *job_new(enum job_kind kind)
{
	struct job *j = xcalloc1(sizeof(*j));
	j->kind = kind;
	return j;
}

/* Fills out from a jsStreamInfo. -1 (why set) when the stream is not one
 * the link can use. */
static int read_info(struct bsjs *l, const jsStreamInfo *si,
		     struct bsjs_stream_info *out, char *why, size_t whysz)
{
	const jsStreamConfig *c = si->Config;
	bool subj_ok = false;
	for (int i = 0; c && i < c->SubjectsLen; i++)
		if (strcmp(c->Subjects[i], l->subjects) == 0)
			subj_ok = true;
	if (!subj_ok) {
		snprintf(why, whysz,
			 "stream %s exists but does not take subjects %s",
			 l->stream, l->subjects);
		return -1;
	}
	const char *d = c->Description;
	size_t plen = strlen(EPOCH_PREFIX);
	if (!d || strncmp(d, EPOCH_PREFIX, plen) != 0 ||
	    strspn(d + plen, "0123456789abcdef") != 32 || d[plen + 32]) {
		snprintf(why, whysz,
			 "stream %s has no epoch in its description (it was "
			 "not made by basestation): delete it or use another "
			 "stream name",
			 l->stream);
		return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->epoch, d + plen, 32);
	if (si->Cluster && si->Cluster->Leader)
		snprintf(out->leader, sizeof(out->leader), "%s",
			 si->Cluster->Leader);
	out->first_seq = si->State.FirstSeq;
	out->last_seq = si->State.LastSeq;
	out->msgs = si->State.Msgs;
	out->replicas = (int)c->Replicas;
	out->max_age_ms = c->MaxAge > 0 ? c->MaxAge / 1000000 : 0;
	out->max_msgs = c->MaxMsgs > 0 ? c->MaxMsgs : 0;
	return 0;
}

enum { ADM_OK, ADM_RETRY, ADM_FATAL };

static int ensure_stream(struct bsjs *l, struct bsjs_stream_info *out,
			 char *why, size_t whysz)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	bool created = false;
	natsStatus s = js_GetStreamInfo(&si, l->js, l->stream, NULL, &jerr);
	if ((s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) &&
	    l->no_create) {
		snprintf(why, whysz, "stream %s does not exist", l->stream);
		return ADM_FATAL;
	}
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
		unsigned char r[16];
		char desc[sizeof(EPOCH_PREFIX) + 32];
		const char *subj[1] = {l->subjects};
		jsStreamConfig cfg;
		if (RAND_bytes(r, sizeof(r)) != 1) {
			snprintf(why, whysz, "no random bytes for the epoch");
			return ADM_RETRY;
		}
		int n = snprintf(desc, sizeof(desc), "%s", EPOCH_PREFIX);
		for (size_t i = 0; i < sizeof(r); i++)
			n += snprintf(desc + n, sizeof(desc) - (size_t)n,
				      "%02x", r[i]);
		jsStreamConfig_Init(&cfg);
		cfg.Name = l->stream;
		cfg.Description = desc;
		cfg.Subjects = subj;
		cfg.SubjectsLen = 1;
		cfg.Storage = js_FileStorage;
		cfg.Retention = js_LimitsPolicy;
		cfg.Discard = js_DiscardOld;
		cfg.Replicas = l->replicas;
		if (l->max_age_ms > 0)
			cfg.MaxAge = l->max_age_ms * 1000000;
		if (l->max_msgs > 0)
			cfg.MaxMsgs = l->max_msgs;
		if (l->dup_window_ms > 0)
			cfg.Duplicates = l->dup_window_ms * 1000000;
		jerr = 0;
		s = js_AddStream(&si, l->js, &cfg, NULL, &jerr);
		if (s == NATS_OK) {
			created = true;
		} else if (jerr == JSStreamNameExistErr) {
			/* Another node made it first: use theirs. */
			jerr = 0;
			s = js_GetStreamInfo(&si, l->js, l->stream, NULL,
					     &jerr);
		} else if (jerr == JSStreamInvalidConfig ||
			   jerr == JSStreamReplicasNotSupportedErr) {
			nats_text(s, why, whysz);
			return ADM_FATAL;
		}
	}
	if (s != NATS_OK) {
		nats_text(s, why, whysz);
		jsStreamInfo_Destroy(si);
		return ADM_RETRY;
	}
	int rc = read_info(l, si, out, why, whysz);
	jsStreamInfo_Destroy(si);
	if (rc < 0)
		return ADM_FATAL;
	out->created = created;
	return ADM_OK;
}

static int stream_info(struct bsjs *l, struct bsjs_stream_info *out, char *why,
		       size_t whysz)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, l->js, l->stream, NULL, &jerr);
	if (s != NATS_OK) {
		nats_text(s, why, whysz);
		return s == NATS_NOT_FOUND ? BSJS_EREJECTED : BSJS_EUNAVAIL;
	}
	int rc = read_info(l, si, out, why, whysz);
	jsStreamInfo_Destroy(si);
	return rc < 0 ? BSJS_EREJECTED : BSJS_OK;
}

/* ADM_OK (subscribed, or the consumer was stopped meanwhile) or ADM_RETRY. */
static int cons_start(struct bsjs *l, struct cons *c, char *why, size_t whysz)
{
	struct bridge *b = l->b;
	pthread_mutex_lock(&b->mu);
	bool stale = b->dead || c->gen != b->cons_gen;
	pthread_mutex_unlock(&b->mu);
	if (stale)
		return ADM_OK;

	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = l->stream;
	so.Ordered = true;
	if (c->start > 1) {
		so.Config.DeliverPolicy = js_DeliverByStartSequence;
		so.Config.OptStartSeq = c->start;
	} else {
		so.Config.DeliverPolicy = js_DeliverAll;
	}
	natsSubscription *nsub = NULL;
	jsErrCode jerr = 0;
	pthread_mutex_lock(&b->mu);
	c->refs++; /* libnats's, dropped by on_cons_done */
	pthread_mutex_unlock(&b->mu);
	natsStatus s = js_Subscribe(&nsub, l->jsc, l->subjects, on_cons_msg, c,
				    NULL, &so, &jerr);
	if (s != NATS_OK) {
		nats_text(s, why, whysz);
		cons_hold(c);
		return ADM_RETRY;
	}
	/* Unlimited: libnats must never drop what its ordered check counted
	 * (flow control bounds what the server sends). */
	natsSubscription_SetPendingLimits(nsub, -1, -1);
	if (natsSubscription_SetOnCompleteCB(nsub, on_cons_done, c) != NATS_OK)
		cons_hold(c);
	pthread_mutex_lock(&b->mu);
	stale = b->dead || c->gen != b->cons_gen;
	if (!stale)
		b->cons_nsub = nsub;
	pthread_mutex_unlock(&b->mu);
	if (stale) {
		(void)natsSubscription_Unsubscribe(nsub);
		natsSubscription_Destroy(nsub);
	} else {
		c->nsub = nsub;
		struct item *it = item_new(IT_CONS_UP);
		it->u.cons.gen = c->gen;
		post(b, it);
	}
	return ADM_OK;
}

/* With delete, natsSubscription_Unsubscribe deletes the ephemeral
 * consumer: a request, hence here. Without (a consumer replaced because it
 * stalled or libnats dropped messages), only the subscription goes:
 * JetStream removes an ephemeral consumer without interest by itself, and
 * a delete of a consumer that stalled, often because its server died,
 * waited out CONS_WAIT_MS while its replacement's create waited behind it
 * on this thread. */
static void cons_stop(struct bsjs *l, struct cons *c, bool delete)
{
	if (!c->nsub)
		return;
	pthread_mutex_lock(&l->b->mu);
	if (l->b->cons_nsub == c->nsub)
		l->b->cons_nsub = NULL;
	pthread_mutex_unlock(&l->b->mu);
	if (delete)
		(void)natsSubscription_Unsubscribe(c->nsub);
	natsSubscription_Destroy(c->nsub); /* UNSUB only, no delete */
	c->nsub = NULL;
}

/* Runs one job. true when it is done (free it), false to retry it later. */
static bool run_job(struct bsjs *l, struct job *j, bool *ready)
{
	char why[TEXT_MAX] = "";
	switch (j->kind) {
	case J_ENSURE: {
		struct item *it = item_new(IT_READY);
		int rc = ensure_stream(l, &it->si, why, sizeof(why));
		if (rc == ADM_OK) {
			*ready = true;
			post(l->b, it);
			return true;
		}
		if (rc == ADM_FATAL) {
			it->kind = IT_FATAL;
			snprintf(it->text, sizeof(it->text), "%s", why);
			post(l->b, it);
			return true;
		}
		free(it);
		post_text(l->b, IT_WARN,
			  "event=jetstream.stream_wait stream=%s try=%d "
			  "error=\"%s\"",
			  l->stream, j->tries + 1, why);
		return false;
	}
	case J_INFO: {
		struct item *it = item_new(IT_INFO);
		it->u.info.req = j->info;
		it->u.info.status = stream_info(l, &it->si, why, sizeof(why));
		snprintf(it->text, sizeof(it->text), "%s", why);
		post(l->b, it);
		return true;
	}
	case J_CONS_START:
		if (cons_start(l, j->cons, why, sizeof(why)) == ADM_OK) {
			cons_unref(j->cons);
			return true;
		}
		post_text(
			l->b, IT_WARN,
			"event=jetstream.consumer_wait stream=%s start=%" PRIu64
			" try=%d error=\"%s\"",
			l->stream, j->cons->start, j->tries + 1, why);
		return false;
	case J_CONS_STOP:
		cons_stop(l, j->cons, j->delete_consumer);
		cons_unref(j->cons);
		return true;
	}
	return true;
}

static void job_free(struct job *j)
{
	if (j->cons)
		cons_unref(j->cons);
	free(j);
}

static void *admin_main(void *arg)
{
	struct bsjs *l = arg;
	bool ready = false;
	pthread_mutex_lock(&l->amu);
	while (!l->aquit && !l->connect_done)
		pthread_cond_wait(&l->acond, &l->amu);
	if (!l->js)
		l->aquit = true; /* the connection could not be made: FATAL */
	while (!l->aquit) {
		/* The first job that may run now; until READY only J_ENSURE
		 * (and J_CONS_STOP, which needs no stream). */
		int64_t now = now_ms(), next = INT64_MAX;
		struct job **pp = &l->jhead, *j = NULL;
		for (; *pp; pp = &(*pp)->next) {
			struct job *c = *pp;
			bool eligible = ready || c->kind == J_ENSURE ||
					c->kind == J_CONS_STOP;
			if (!eligible)
				continue;
			if (c->not_before_ms <= now) {
				j = c;
				*pp = c->next;
				break;
			}
			if (c->not_before_ms < next)
				next = c->not_before_ms;
		}
		if (!j) {
			if (next == INT64_MAX) {
				pthread_cond_wait(&l->acond, &l->amu);
			} else {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				int64_t wait = next - now;
				ts.tv_sec += wait / 1000;
				ts.tv_nsec += (long)(wait % 1000) * 1000000;
				if (ts.tv_nsec >= 1000000000) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&l->acond, &l->amu, &ts);
			}
			continue;
		}
		pthread_mutex_unlock(&l->amu);
		bool done = run_job(l, j, &ready);
		pthread_mutex_lock(&l->amu);
		if (done) {
			if (j->kind != J_CONS_START && j->kind != J_CONS_STOP)
				job_free(j);
			else
				free(j); /* its cons ref went in run_job */
			continue;
		}
		j->not_before_ms =
			now_ms() + backoff_ms(j->tries++, JOB_RETRY_MIN_MS,
					      JOB_RETRY_MAX_MS);
		j->next = l->jhead; /* retried before younger jobs */
		l->jhead = j;
	}
	pthread_mutex_unlock(&l->amu);
	return NULL;
}

/* ---- publishing (loop) ---- */

static void emit(struct bsjs *l, const struct bsjs_event *ev)
{
	if (l->on_event)
		l->on_event(l->arg, ev);
}

static void pub_free(struct bsjs *l, struct pubreq *r)
{
	HASH_DEL(l->by_msg, r);
	if (r->timer)
		event_free(r->timer);
	natsMsg_Destroy(r->msg);
	free(r->msg_id);
	free(r);
}

/* Gives the caller its answer (once). */
static void pub_answer(struct bsjs *l, struct pubreq *r, int status,
		       uint64_t seq, bool dup, int js_code, const char *text)
{
	bsjs_ack_cb cb = r->cb;
	if (!cb)
		return;
	r->cb = NULL;
	if (status == BSJS_OK) {
		uint64_t us = (uint64_t)(now_us() - r->t0_us);
		l->st.acked++;
		l->st.duplicates += dup;
		l->st.ack_latency_us_sum += us;
		if (us > l->st.ack_latency_us_max)
			l->st.ack_latency_us_max = us;
	} else {
		l->st.failed++;
	}
	struct bsjs_ack a = {.status = status,
			     .seq = seq,
			     .duplicate = dup,
			     .js_code = js_code,
			     .text = text ? text : bsjs_status_name(status),
			     .attempts = r->attempts};
	cb(r->arg, &a);
}

static void pub_send(struct bsjs *l, struct pubreq *r)
{
	int64_t left = r->deadline_ms - now_ms();
	r->attempt_wait_ms = left < r->l->attempt_timeout_ms
				     ? (left > 50 ? left : 50)
				     : r->l->attempt_timeout_ms;
	if (r->attempts++ > 0)
		l->st.retries++;
	r->where = R_SENDQ;
	r->grace = false;
	l->inflight++;
	r->op.kind = OP_PUB;
	r->op.p = r;
	sender_enqueue_pub(l, &r->op);
}

/* Hands waiting publishes to the sender while there is room. */
static void pub_pump(struct bsjs *l)
{
	if (l->pause_until_ms && l->wait_head) {
		int64_t left = l->pause_until_ms - now_ms();
		if (left > 0) {
			if (!evtimer_pending(l->pump_timer, NULL)) {
				struct timeval tv = tv_ms(left);
				evtimer_add(l->pump_timer, &tv);
			}
			return;
		}
		l->pause_until_ms = 0;
	}
	while (l->ready && l->wait_head &&
	       l->inflight < (size_t)l->max_inflight) {
		struct pubreq *r = l->wait_head;
		l->wait_head = r->wnext;
		if (!l->wait_head)
			l->wait_tail = NULL;
		r->wnext = NULL;
		l->waiting--;
		pub_send(l, r);
	}
}

static void pump_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pub_pump(arg);
}

static void pub_unwait(struct bsjs *l, struct pubreq *r)
{
	struct pubreq **pp = &l->wait_head, *prev = NULL;
	while (*pp && *pp != r) {
		prev = *pp;
		pp = &(*pp)->wnext;
	}
	if (!*pp)
		return;
	*pp = r->wnext;
	if (l->wait_tail == r)
		l->wait_tail = prev;
	l->waiting--;
}

static int final_status(const struct pubreq *r)
{
	return r->last_status ? r->last_status : BSJS_EUNAVAIL;
}

static void pub_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pubreq *r = arg;
	struct bsjs *l = r->l;
	(void)fd;
	(void)what;
	int64_t now = now_ms();
	if (r->where == R_BACKOFF && now < r->deadline_ms) {
		/* Retries go first, within max_inflight and the pause. */
		r->where = R_WAITING;
		r->wnext = l->wait_head;
		l->wait_head = r;
		if (!l->wait_tail)
			l->wait_tail = r;
		l->waiting++;
		struct timeval tv = tv_ms(r->deadline_ms - now);
		event_add(r->timer, &tv);
		pub_pump(l);
		return;
	}
	if (r->where == R_SENDQ) {
		if (!r->grace) {
			/* libnats's own timeout is due about now. */
			r->grace = true;
			struct timeval tv = tv_ms(DEADLINE_GRACE_MS);
			event_add(r->timer, &tv);
			return;
		}
		/* Still in libnats, so maybe stored: answer now, free when
		 * libnats lets go. */
		pub_answer(l, r, BSJS_ETIMEOUT, 0, false, r->last_js_code,
			   r->last_text[0] ? r->last_text : NULL);
		return;
	}
	if (r->where == R_WAITING)
		pub_unwait(l, r);
	pub_answer(l, r, final_status(r), 0, false, r->last_js_code,
		   r->last_text[0] ? r->last_text : NULL);
	pub_free(l, r);
}

/* A publish came back from libnats (loop). */
static void pub_done(struct bsjs *l, struct item *it)
{
	struct pubreq *r = NULL;
	HASH_FIND_PTR(l->by_msg, &it->msg, r);
	if (!r) {
		natsMsg_Destroy(it->msg); /* not ours (cannot happen) */
		return;
	}
	l->inflight--;
	natsStatus s = it->u.ack.status;
	int code = it->u.ack.js_code;
	if (s == NATS_OK) {
		pub_answer(l, r, BSJS_OK, it->u.ack.seq, it->u.ack.duplicate, 0,
			   NULL);
		pub_free(l, r);
		l->pause_ms = 0;
		pub_pump(l);
		return;
	}
	/* Classify: the answer if final, or what to say at the deadline. */
	int status;
	bool retry;
	if (code == JSStreamWrongLastSequenceErr) {
		status = BSJS_EWRONGSEQ;
		retry = false;
	} else if (code == JSClusterNotAvailErr ||
		   code == JSClusterNotLeaderErr ||
		   code == JSStreamOfflineErr || code == JSClusterNoPeersErr ||
		   code == JSInsufficientResourcesErr) {
		status = BSJS_EUNAVAIL; /* not stored; a leader may come */
		retry = true;
	} else if (code) {
		status = BSJS_EREJECTED;
		retry = false;
	} else if (s == NATS_TIMEOUT) {
		status = BSJS_ETIMEOUT; /* maybe stored */
		retry = r->msg_id != NULL;
	} else if (s == NATS_NO_RESPONDERS || s == NATS_INSUFFICIENT_BUFFER ||
		   s == NATS_NO_SERVER) {
		status = BSJS_EUNAVAIL; /* nobody took it */
		retry = true;
	} else if (s == NATS_CONNECTION_CLOSED ||
		   s == NATS_CONNECTION_DISCONNECTED ||
		   s == NATS_NOT_YET_CONNECTED || s == NATS_STALE_CONNECTION) {
		status = r->msg_id ? BSJS_EUNAVAIL : BSJS_ETIMEOUT;
		retry = r->msg_id != NULL;
	} else {
		status = BSJS_EREJECTED;
		retry = false;
	}
	/* A timeout once means "maybe stored" for the final answer. */
	if (r->last_status != BSJS_ETIMEOUT || status == BSJS_EWRONGSEQ ||
	    status == BSJS_EREJECTED)
		r->last_status = status;
	r->last_js_code = code;
	snprintf(r->last_text, sizeof(r->last_text), "%s", it->text);

	int64_t left = r->deadline_ms - now_ms();
	if (!r->cb || !retry || left <= RETRY_MIN_MS) {
		pub_answer(l, r, r->last_status, 0, false, code, r->last_text);
		pub_free(l, r);
		pub_pump(l);
		return;
	}
	if (status == BSJS_EUNAVAIL) {
		int64_t now = now_ms();
		if (now >= l->pause_until_ms) {
			l->pause_ms =
				l->pause_ms ? l->pause_ms * 2 : RETRY_MIN_MS;
			if (l->pause_ms > RETRY_MAX_MS)
				l->pause_ms = RETRY_MAX_MS;
			l->pause_until_ms = now + l->pause_ms;
		}
	}
	int64_t wait = backoff_ms(r->attempts - 1, RETRY_MIN_MS, RETRY_MAX_MS);
	if (wait > left)
		wait = left;
	r->where = R_BACKOFF;
	struct timeval tv = tv_ms(wait);
	event_add(r->timer, &tv);
	pub_pump(l);
}

int bsjs_publish(struct bsjs *l, const struct bsjs_pub *p, bsjs_ack_cb cb,
		 void *arg)
{
	if (!p->subject || !*p->subject || p->len > INT_MAX || !cb)
		return -1;
	natsMsg *m = NULL;
	if (natsMsg_Create(&m, p->subject, NULL, p->data, (int)p->len) !=
	    NATS_OK)
		return -1;
	struct pubreq *r = xcalloc1(sizeof(*r));
	r->l = l;
	r->msg = m;
	r->cb = cb;
	r->arg = arg;
	r->msg_id = p->msg_id && *p->msg_id ? xstrdup1(p->msg_id) : NULL;
	r->expect = p->expect_last_subject_seq;
	r->t0_us = now_us();
	r->deadline_ms = now_ms() + l->publish_timeout_ms;
	r->timer = evtimer_new(l->base, pub_timer, r);
	if (!r->timer)
		abort();
	HASH_ADD_PTR(l->by_msg, msg, r);
	l->st.published++;
	/* The deadline; retries re-arm the timer with their backoff and
	 * pub_timer checks the deadline itself. */
	event_add(r->timer, l->deadline_tv);
	r->where = R_WAITING;
	if (l->wait_tail)
		l->wait_tail->wnext = r;
	else
		l->wait_head = r;
	l->wait_tail = r;
	l->waiting++;
	pub_pump(l);
	return 0;
}

/* ---- consumer (loop) ---- */

static void cons_begin(struct bsjs *l, uint64_t start)
{
	struct cons *c = xcalloc1(sizeof(*c));
	c->b = l->b;
	c->start = start;
	c->refs = 2; /* the loop's (l->cons), the job's */
	pthread_mutex_lock(&l->b->mu);
	c->gen = ++l->b->cons_gen;
	pthread_mutex_unlock(&l->b->mu);
	l->cons = c;
	l->cons_up = false;
	struct job *j = job_new(J_CONS_START);
	j->cons = c;
	admin_enqueue(l, j);
}

static void cons_end(struct bsjs *l, bool delete)
{
	struct cons *c = l->cons;
	if (!c)
		return;
	l->cons = NULL;
	l->cons_up = false;
	pthread_mutex_lock(&l->b->mu);
	l->b->cons_gen++; /* its queued and future messages are stale */
	pthread_cond_broadcast(&l->b->cons_cond);
	pthread_mutex_unlock(&l->b->mu);
	struct job *j = job_new(J_CONS_STOP);
	j->cons = c; /* the loop's ref */
	j->delete_consumer = delete;
	admin_enqueue(l, j);
}

/* A new consumer from the last delivered seq + 1 (the old one's queued
 * messages are dropped as stale). */
static void cons_restart(struct bsjs *l, const char *why)
{
	bsjs_batch_cb cb = l->cons_cb;
	void *arg = l->cons_arg;
	uint64_t from = l->cons_last + 1;
	l->st.consumer_restarts++;
	cons_end(l, false);
	l->cons_cb = cb;
	l->cons_arg = arg;
	cons_begin(l, from);
	char text[TEXT_MAX];
	snprintf(text, sizeof(text),
		 "event=jetstream.consumer_restart stream=%s from=%" PRIu64
		 " reason=%s",
		 l->stream, from, why);
	struct bsjs_event ev = {.type = BSJS_EV_WARN, .text = text};
	emit(l, &ev);
}

/* libnats recreates an ordered consumer that misses heartbeats, but a
 * recreation that fails (JetStream still away) is only retried at the
 * next miss, and after a total outage one was seen to stay silent (once
 * in ~25 runs of the "outage" test). So: a consumer that delivered
 * nothing for WATCH_MS while the stream has newer messages is replaced. */
static void watch_info(void *arg, int status, const struct bsjs_stream_info *si)
{
	struct bsjs *l = arg;
	l->watch_asked = false;
	if (status != BSJS_OK || !l->cons || !l->cons_up ||
	    l->cons_last != l->watch_prev)
		return;
	if (si->last_seq > l->cons_last && si->last_seq >= si->first_seq)
		cons_restart(l, "stalled");
}

static void watch_tick(evutil_socket_t fd, short what, void *arg)
{
	struct bsjs *l = arg;
	(void)fd;
	(void)what;
	/* Not before the consumer is subscribed: its creation is retried on
	 * the admin thread already, and replacing it there only queues one
	 * more create (and a delete) behind the one under way. */
	if (!l->cons || !l->ready || l->watch_asked || !l->cons_up) {
		l->watch_prev = l->cons_last;
		return;
	}
	if (l->cons_last == l->watch_prev &&
	    bsjs_stream_info(l, watch_info, l) == 0)
		l->watch_asked = true;
	l->watch_prev = l->cons_last;
}

int bsjs_consume(struct bsjs *l, uint64_t start_seq, bsjs_batch_cb cb,
		 void *arg)
{
	if (l->cons || !cb)
		return -1;
	l->cons_cb = cb;
	l->cons_arg = arg;
	l->cons_last = start_seq > 0 ? start_seq - 1 : 0;
	l->watch_prev = l->cons_last;
	cons_begin(l, start_seq);
	struct timeval tv = tv_ms(WATCH_MS);
	event_add(l->watch_timer, &tv);
	return 0;
}

void bsjs_consume_stop(struct bsjs *l)
{
	cons_end(l, true);
	l->cons_cb = NULL;
	event_del(l->watch_timer);
}

/* Delivers the IT_CONS items from the backlog's head as one batch, taken
 * past the IT_ACK items among them (those stay, in order, and are handled
 * next): a PubAck and a consumer message are independent (a publisher
 * waits for both, in either order), and PubAcks interleaved with the
 * consumer's messages would otherwise cut every batch (one replica
 * transaction each) to a few messages. Any other item ends the batch. */
static void cons_deliver(struct bsjs *l)
{
	struct bsjs_msg batch[BATCH_MAX];
	natsMsg *msgs[BATCH_MAX];
	size_t n = 0, handled = 0;
	uint64_t gen = l->cons ? l->cons->gen : 0;
	struct item **pp = &l->backlog, *kept = NULL;
	while (*pp && n < BATCH_MAX) {
		struct item *it = *pp;
		if (it->kind == IT_ACK) {
			kept = it;
			pp = &it->next;
			continue;
		}
		if (it->kind != IT_CONS)
			break;
		*pp = it->next;
		if (l->backlog_tail == it)
			l->backlog_tail = kept;
		handled++;
		if (!l->cons || it->u.cons.gen != gen) {
			natsMsg_Destroy(it->msg);
		} else if (it->u.cons.seq <= l->cons_last) {
			l->st.consumer_dropped++;
			natsMsg_Destroy(it->msg);
		} else {
			l->cons_last = it->u.cons.seq;
			batch[n] = (struct bsjs_msg){
				.seq = it->u.cons.seq,
				.time_ns = it->u.cons.time_ns,
				.subject = natsMsg_GetSubject(it->msg),
				.data = natsMsg_GetData(it->msg),
				.len = (size_t)natsMsg_GetDataLength(it->msg)};
			msgs[n++] = it->msg;
		}
		free(it);
	}
	if (n && l->cons_cb) {
		l->st.consumed += n;
		l->cons_cb(l->cons_arg, batch, n);
	}
	for (size_t i = 0; i < n; i++)
		natsMsg_Destroy(msgs[i]);
	pthread_mutex_lock(&l->b->mu);
	l->b->cons_queued -= handled;
	if (l->b->cons_queued < l->b->cons_max)
		pthread_cond_broadcast(&l->b->cons_cond);
	pthread_mutex_unlock(&l->b->mu);
}

/* ---- the loop's wakeup ---- */

static void info_done(struct bsjs *l, struct inforeq *q, int status,
		      const struct bsjs_stream_info *si)
{
	for (struct inforeq **pp = &l->infos; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	}
	q->cb(q->arg, status, status == BSJS_OK ? si : NULL);
	free(q);
}

static void handle(struct bsjs *l, struct item *it)
{
	struct bsjs_event ev = {0};
	switch (it->kind) {
	case IT_ACK:
		pub_done(l, it);
		break;
	case IT_CONS:
		break; /* cons_deliver */
	case IT_CONS_SLOW:
		if (l->cons && it->u.cons.gen == l->cons->gen)
			cons_restart(l, "slow_consumer");
		break;
	case IT_CONS_UP:
		if (l->cons && it->u.cons.gen == l->cons->gen)
			l->cons_up = true;
		break;
	case IT_CORE: {
		struct bsjs_sub *s = it->u.core;
		pthread_mutex_lock(&l->b->mu);
		bool live = !s->cancelled;
		pthread_mutex_unlock(&l->b->mu);
		if (live)
			s->cb(s->arg, natsMsg_GetSubject(it->msg),
			      natsMsg_GetData(it->msg),
			      (size_t)natsMsg_GetDataLength(it->msg));
		natsMsg_Destroy(it->msg);
		pthread_mutex_lock(&l->b->mu);
		l->b->core_queued--;
		sub_unref_locked(s);
		pthread_mutex_unlock(&l->b->mu);
		break;
	}
	case IT_STATE:
		if (it->u.st.state == l->state)
			break;
		l->state = it->u.st.state;
		ev.type = BSJS_EV_STATE;
		ev.state = l->state;
		ev.url = l->state == BSJS_CONNECTED ? it->text : NULL;
		emit(l, &ev);
		break;
	case IT_READY:
		l->ready = true;
		l->si = it->si;
		ev.type = BSJS_EV_READY;
		ev.stream = &l->si;
		emit(l, &ev);
		pub_pump(l);
		break;
	case IT_FATAL:
		l->fatal = true;
		ev.type = BSJS_EV_FATAL;
		ev.text = it->text;
		emit(l, &ev);
		break;
	case IT_WARN:
		ev.type = BSJS_EV_WARN;
		ev.text = it->text;
		emit(l, &ev);
		break;
	case IT_INFO:
		info_done(l, it->u.info.req, it->u.info.status, &it->si);
		break;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct bsjs *l = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&l->b->mu);
	struct item *head = l->b->head, *tail = l->b->tail;
	l->b->head = l->b->tail = NULL;
	l->b->armed = false;
	pthread_mutex_unlock(&l->b->mu);
	if (head) {
		if (l->backlog_tail)
			l->backlog_tail->next = head;
		else
			l->backlog = head;
		l->backlog_tail = tail;
	}
	/* A bounded amount per wakeup, so that the loop's other events run. */
	for (int done = 0; l->backlog && done < TURN_MAX;) {
		if (l->backlog->kind == IT_CONS) {
			cons_deliver(l);
			done += BATCH_MAX;
			continue;
		}
		struct item *it = l->backlog;
		l->backlog = it->next;
		if (!l->backlog)
			l->backlog_tail = NULL;
		handle(l, it);
		free(it);
		done++;
	}
	if (l->backlog) {
		pthread_mutex_lock(&l->b->mu);
		if (!l->b->armed) {
			l->b->armed = true;
			event_active(l->b->ev, EV_READ, 0);
		}
		pthread_mutex_unlock(&l->b->mu);
	}
}

/* ---- stream info, core NATS (loop) ---- */

int bsjs_stream_info(struct bsjs *l, bsjs_info_cb cb, void *arg)
{
	struct inforeq *q = calloc(1, sizeof(*q));
	if (!q)
		return -1;
	q->cb = cb;
	q->arg = arg;
	q->next = l->infos;
	l->infos = q;
	struct job *j = job_new(J_INFO);
	j->info = q;
	admin_enqueue(l, j);
	return 0;
}

struct bsjs_sub *bsjs_subscribe(struct bsjs *l, const char *subject,
				bsjs_core_cb cb, void *arg)
{
	if (!subject || !*subject || strchr(subject, ' ') || !cb)
		return NULL;
	struct bsjs_sub *s = xcalloc1(sizeof(*s));
	s->b = l->b;
	s->l = l;
	s->subject = xstrdup1(subject);
	s->cb = cb;
	s->arg = arg;
	s->refs = 1; /* the loop's, passed to OP_UNSUB */
	s->op_sub.kind = OP_SUB;
	s->op_sub.p = s;
	s->lnext = l->subs;
	l->subs = s;
	sender_enqueue(l, &s->op_sub);
	return s;
}

void bsjs_unsubscribe(struct bsjs_sub *s)
{
	if (!s)
		return;
	for (struct bsjs_sub **pp = &s->l->subs; *pp; pp = &(*pp)->lnext) {
		if (*pp == s) {
			*pp = s->lnext;
			break;
		}
	}
	pthread_mutex_lock(&s->b->mu);
	s->cancelled = true;
	pthread_mutex_unlock(&s->b->mu);
	s->op_unsub.kind = OP_UNSUB;
	s->op_unsub.p = s;
	sender_enqueue(s->l, &s->op_unsub);
}

int bsjs_core_publish(struct bsjs *l, const char *subject, const void *data,
		      size_t len)
{
	if (!subject || !*subject || len > INT_MAX)
		return -1;
	natsMsg *m = NULL;
	if (natsMsg_Create(&m, subject, NULL, data, (int)len) != NATS_OK)
		return -1;
	struct op *op = xcalloc1(sizeof(*op));
	op->kind = OP_CPUB;
	op->p = m;
	sender_enqueue(l, op);
	return 0;
}

enum bsjs_conn_state bsjs_state(const struct bsjs *l)
{
	return l->state;
}

const char *bsjs_epoch(const struct bsjs *l)
{
	return l->ready ? l->si.epoch : NULL;
}

void bsjs_get_stats(const struct bsjs *l, struct bsjs_stats *st)
{
	*st = l->st;
	st->inflight = l->inflight;
	st->waiting = l->waiting;
	pthread_mutex_lock(&l->b->mu);
	st->consumer_waits = l->b->cons_waits;
	st->core_dropped = l->b->core_dropped;
	pthread_mutex_unlock(&l->b->mu);
}

/* ---- lifecycle ---- */

int bsjs_global_init(void)
{
	/* Other threads wake the loop (event_active). */
	if (evthread_use_pthreads() != 0)
		return -1;
	if (nats_Open(-1) != NATS_OK)
		return -1;
	pthread_mutex_lock(&g_mu);
	g_open = true;
	pthread_mutex_unlock(&g_mu);
	return 0;
}

void bsjs_global_finish(void)
{
	pthread_mutex_lock(&g_mu);
	bool open = g_open;
	g_open = false;
	pthread_mutex_unlock(&g_mu);
	if (!open)
		return;
	/* Every libnats thread ends here; then no callback can run. */
	(void)nats_CloseAndWait(5000);
	pthread_mutex_lock(&g_mu);
	struct bridge *b = g_bridges;
	g_bridges = NULL;
	pthread_mutex_unlock(&g_mu);
	while (b) {
		struct bridge *next = b->gnext;
		/* Items queued after the link died (none normally). */
		for (struct item *it = b->head, *n; it; it = n) {
			n = it->next;
			natsMsg_Destroy(it->msg);
			free(it);
		}
		for (struct cons *c = b->held, *n; c; c = n) {
			n = c->hnext;
			free(c);
		}
		pthread_mutex_destroy(&b->mu);
		pthread_cond_destroy(&b->cons_cond);
		free(b);
		b = next;
	}
}

static int cfg_check(const struct bsjs_config *cfg, char *err, size_t errsz)
{
	if (!cfg->servers || cfg->nservers < 1) {
		snprintf(err, errsz, "no NATS server given");
		return -1;
	}
	if (!cfg->stream || !*cfg->stream ||
	    strpbrk(cfg->stream, " .*>\t\r\n/\\")) {
		snprintf(err, errsz,
			 "stream name must be non-empty, without spaces, "
			 "'.', '*', '>', '/' or '\\'");
		return -1;
	}
	if (cfg->replicas < 1 || cfg->replicas > 5) {
		snprintf(err, errsz, "replicas must be 1..5");
		return -1;
	}
	if (cfg->max_age_ms < 0 || cfg->max_msgs < 0 ||
	    cfg->duplicate_window_ms < 0 || cfg->publish_timeout_ms < 0 ||
	    cfg->attempt_timeout_ms < 0 || cfg->max_inflight < 0 ||
	    cfg->consumer_max_pending < 0) {
		snprintf(err, errsz, "negative limit");
		return -1;
	}
	return 0;
}

static natsStatus make_options(struct bsjs *l, const struct bsjs_config *cfg)
{
	natsStatus s = natsOptions_Create(&l->opts);
	if (s != NATS_OK)
		return s;
	natsOptions *o = l->opts;
	s = natsOptions_SetServers(o, (const char **)cfg->servers,
				   cfg->nservers);
	if (s == NATS_OK && cfg->name)
		s = natsOptions_SetName(o, cfg->name);
	if (s == NATS_OK)
		s = natsOptions_SetNoRandomize(o, cfg->no_randomize);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1); /* forever */
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay,
							NULL);
	if (s == NATS_OK)
		s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected,
							l->b);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, on_disconnected, l->b);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, on_connected, l->b);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, on_closed, l->b);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, on_async_error, l->b);
	/* A dead server (no RST) is noticed within about 6 s. */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(o, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(o, 2);
	/* Core subscriptions: generous, drops are reported. The ordered
	 * consumer is unlimited (cons_start). */
	if (s == NATS_OK)
		s = natsOptions_SetMaxPendingMsgs(o, 1 << 20);
	return s;
}

struct bsjs *bsjs_create(struct event_base *base, const struct bsjs_config *cfg,
			 char *err, size_t errsz)
{
	if (cfg_check(cfg, err, errsz) < 0)
		return NULL;
	struct bsjs *l = xcalloc1(sizeof(*l));
	struct bridge *b = xcalloc1(sizeof(*b));
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->cons_cond, NULL);
	b->cons_max =
		cfg->consumer_max_pending ? cfg->consumer_max_pending : 8192;
	pthread_mutex_lock(&g_mu);
	b->gnext = g_bridges;
	g_bridges = b;
	pthread_mutex_unlock(&g_mu);
	l->b = b;
	b->base = base;
	l->base = base;
	l->stream = xstrdup1(cfg->stream);
	size_t sl = strlen(cfg->stream) + 3;
	l->subjects = xcalloc1(sl);
	snprintf(l->subjects, sl, "%s.>", cfg->stream);
	l->replicas = cfg->replicas;
	l->no_create = cfg->no_create;
	l->max_age_ms = cfg->max_age_ms;
	l->max_msgs = cfg->max_msgs;
	l->dup_window_ms = cfg->duplicate_window_ms;
	l->publish_timeout_ms =
		cfg->publish_timeout_ms ? cfg->publish_timeout_ms : 5000;
	l->attempt_timeout_ms =
		cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : 2000;
	l->max_inflight = cfg->max_inflight ? cfg->max_inflight : 4096;
	l->on_event = cfg->on_event;
	l->arg = cfg->arg;
	l->state = BSJS_CONNECTING;
	pthread_mutex_init(&l->smu, NULL);
	pthread_cond_init(&l->scond, NULL);
	pthread_mutex_init(&l->amu, NULL);
	pthread_cond_init(&l->acond, NULL);

	struct timeval dl = tv_ms(l->publish_timeout_ms);
	l->deadline_tv = event_base_init_common_timeout(base, &dl);
	b->ev = event_new(base, -1, 0, on_wake, l);
	l->out_ev = event_new(base, -1, 0, out_cb, l);
	l->pump_timer = evtimer_new(base, pump_timer_cb, l);
	l->watch_timer = event_new(base, -1, EV_PERSIST, watch_tick, l);
	if (!b->ev || !l->deadline_tv || !l->pump_timer || !l->watch_timer ||
	    !l->out_ev) {
		snprintf(err, errsz, "libevent: cannot make the link's events");
		goto fail;
	}

	natsStatus s = make_options(l, cfg);
	if (s != NATS_OK) {
		char why[TEXT_MAX];
		nats_text(s, why, sizeof(why));
		snprintf(err, errsz, "NATS: %s", why);
		goto fail;
	}
	if (pthread_create(&l->sender, NULL, sender_main, l) != 0) {
		snprintf(err, errsz, "cannot start the sender thread");
		goto fail;
	}
	l->sender_started = true;
	if (pthread_create(&l->admin, NULL, admin_main, l) != 0) {
		snprintf(err, errsz, "cannot start the admin thread");
		goto fail;
	}
	l->admin_started = true;
	admin_enqueue(l, job_new(J_ENSURE));
	return l;
fail:
	bsjs_destroy(l);
	return NULL;
}

/* bsjs_destroy, after the sender thread ended: drops the loop's reference
 * to a subscription handle and the natsSubscription it had. */
static void sub_forget(struct bsjs_sub *s)
{
	struct bridge *b = s->b; /* s may be freed by the unref */

	if (s->nsub)
		natsSubscription_Destroy(s->nsub);
	s->nsub = NULL;
	pthread_mutex_lock(&b->mu);
	sub_unref_locked(s);
	pthread_mutex_unlock(&b->mu);
}

/* Same for the consumer, after the admin thread ended. */
static void cons_forget(struct cons *c)
{
	if (c && c->nsub) {
		natsSubscription_Destroy(c->nsub);
		c->nsub = NULL;
	}
}

void bsjs_destroy(struct bsjs *l)
{
	if (!l)
		return;
	struct bridge *b = l->b;
	pthread_mutex_lock(&b->mu);
	b->dead = true;
	pthread_cond_broadcast(&b->cons_cond);
	pthread_mutex_unlock(&b->mu);

	/* The sender first (it may be in the first connect attempt), then
	 * close: that fails the admin thread's pending requests. Publishes of
	 * this turn join its queue (never run: ours again, below). */
	sender_flush(l);
	if (l->sender_started) {
		pthread_mutex_lock(&l->smu);
		l->squit = true;
		pthread_cond_signal(&l->scond);
		pthread_mutex_unlock(&l->smu);
		pthread_join(l->sender, NULL);
	}
	if (l->nc)
		natsConnection_Close(l->nc);
	if (l->admin_started) {
		pthread_mutex_lock(&l->amu);
		l->aquit = true;
		pthread_cond_signal(&l->acond);
		pthread_mutex_unlock(&l->amu);
		pthread_join(l->admin, NULL);
	}
	/* Ops never run: publishes stay ours (R_SENDQ below means "in
	 * libnats"), the rest is freed. */
	for (struct op *op = l->shead, *n; op; op = n) {
		n = op->next;
		if (op->kind == OP_PUB) {
			((struct pubreq *)op->p)->where = R_BACKOFF;
		} else if (op->kind == OP_CPUB) {
			natsMsg_Destroy(op->p);
			free(op);
		} else if (op->kind == OP_UNSUB) {
			sub_forget(op->p);
		}
	}
	while (l->subs) {
		struct bsjs_sub *s = l->subs;
		l->subs = s->lnext;
		sub_forget(s);
	}
	/* The consumer's subscription (set by the admin thread, now gone). */
	for (struct job *j = l->jhead, *n; j; j = n) {
		n = j->next;
		cons_forget(j->cons);
		job_free(j);
	}
	if (l->cons) {
		cons_forget(l->cons);
		cons_unref(l->cons);
		l->cons = NULL;
	}
	/* Publishes that came back are ours again. */
	pthread_mutex_lock(&b->mu);
	struct item *items = b->head;
	b->head = b->tail = NULL;
	pthread_mutex_unlock(&b->mu);
	if (l->backlog_tail) {
		l->backlog_tail->next = items;
		items = l->backlog;
	}
	for (struct item *it = items, *n; it; it = n) {
		n = it->next;
		struct pubreq *r = NULL;
		if (it->kind == IT_ACK)
			HASH_FIND_PTR(l->by_msg, &it->msg, r);
		if (r)
			r->where = R_BACKOFF;
		else
			natsMsg_Destroy(it->msg);
		if (it->kind == IT_CORE) {
			pthread_mutex_lock(&b->mu);
			sub_unref_locked(it->u.core);
			pthread_mutex_unlock(&b->mu);
		}
		free(it);
	}
	/* jsCtx_Destroy frees the messages still in libnats. */
	if (l->js)
		jsCtx_Destroy(l->js);
	if (l->jsc)
		jsCtx_Destroy(l->jsc);
	struct pubreq *r, *tmp;
	HASH_ITER(hh, l->by_msg, r, tmp)
	{
		pub_answer(l, r, BSJS_ECLOSED, 0, false, 0, NULL);
		if (r->where == R_SENDQ)
			r->msg = NULL; /* libnats freed it */
		pub_free(l, r);
	}
	while (l->infos) {
		struct inforeq *q = l->infos;
		l->infos = q->next;
		q->cb(q->arg, BSJS_ECLOSED, NULL);
		free(q);
	}
	if (l->nc)
		natsConnection_Destroy(l->nc);
	natsOptions_Destroy(l->opts);
	if (b->ev)
		event_free(b->ev);
	b->ev = NULL;
	if (l->pump_timer)
		event_free(l->pump_timer);
	if (l->out_ev)
		event_free(l->out_ev);
	if (l->watch_timer)
		event_free(l->watch_timer);
	pthread_mutex_destroy(&l->smu);
	pthread_cond_destroy(&l->scond);
	pthread_mutex_destroy(&l->amu);
	pthread_cond_destroy(&l->acond);
	free(l->stream);
	free(l->subjects);
	free(l);
}
