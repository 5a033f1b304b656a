/*
 * The cluster engine: one node of a broker on NATS JetStream (engine.h,
 * protocol §7, docs/architecture.md "Cluster mode").
 *
 * submit publishes the event as one stream message on
 * "<stream>.<kind>" (JSON, "v":1, encoded below) and the operation waits
 * for two things: the PubAck (its seq; or a duplicate's original seq; or
 * BK_UNAVAILABLE when JetStream did not store it within 4 s) and the
 * node's replica having applied that seq. So an ack means "stored by a
 * quorum" AND "readable here" (a resume on this node right after the ack
 * sees it: `resumed.last` covers every ack). No deadline on the second
 * wait: a stalled consumer is replaced by the link within 3-6 s, and an
 * ack before the replica has the message would break that promise. Operations
 * complete strictly in submission order, which is what sync needs.
 *
 * The ordered consumer brings every stream message back, from this node
 * and from the others, in stream order; each batch is applied to the
 * replica (the single-node schema, --db) in one transaction that also sets
 * the counter "cluster_applied_seq", so a restart goes on from the next
 * seq and applies nothing twice. After the COMMIT each event is handed to
 * the broker: local=1 for those this process published (the broker
 * applied them when it submitted), local=0 for the others.
 *
 * Task changes are linear across nodes (struct tsubj below). The CLI's
 * token commands publish to the stream too (engine_nats_token_*). The
 * replica drops the messages the stream no longer keeps (prune_step), and
 * pruned() says where the stream begins. The start waits (at most 30 s)
 * until the stream is there and the replica has caught up with it: then
 * load() sees the whole cluster.
 */
#include "basestation/engine.h"
#include "basestation/engine_nats.h"
#include "basestation/jetstream.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/store.h"
#include "basestation/xalloc.h"
#include "nats_live.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <uthash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PUBLISH_TIMEOUT_MS 4000
#define HEALTH_MS	   1000
#define HEALTH_STALE_MS	   4000
#define START_WAIT_MS	   30000
#define ENCODING_VERSION   1
#define PRUNE_BATCH	   1000 /* replica rows deleted per loop turn */
#define IDEM_KEEP_MS	   (86400 * 1000LL)

struct tsubj;

/* One submitted operation, completed in submission order. */
struct op {
	struct op *next;
	struct nats *n;
	struct bk_done done;
	uint64_t seq;	    /* from the PubAck */
	unsigned acked : 1; /* PubAck OK: waits for the replica */
	unsigned resolved : 1;
	unsigned inflight : 1; /* on_ack has yet to run */
	unsigned orphan : 1; /* completed before it (stopping): on_ack frees */
	unsigned stale : 1;  /* lost to another change of the task: BK_STALE
				once the replica has applied wait_seq */
	enum bk_status status;
	const char *why;
	/* A task change: its task's chain, the next one waiting in it, and
	 * the encoded event until it is published. */
	struct tsubj *ts;
	struct op *tnext;
	char *text;
	uint64_t wait_seq;
	uint64_t oid; /* in its event ("o"): found again when it is applied */
};

/*
 * The changes of one task, on its own subject "<stream>.task.<key>".
 *
 * Every task event names its base ("b"): the seq of the task's event it
 * was made on top of. Every replica applies it only when that is the
 * task's last applied event (the counter "task_base:<id>"), and skips it
 * otherwise; all replicas apply the same stream in the same order, so all
 * keep the same events and the versions stay linear. The origin's change
 * of a skipped event completes BK_STALE: the broker validates it again on
 * the new state.
 *
 * Most conflicts are refused before they are stored: a change is
 * published with Nats-Expected-Last-Subject-Sequence = the seq of the
 * subject's last message (the counter "task_seq:<id>", skipped ones
 * included). That alone is not enough: nats-server 2.9, clustered, checks
 * it against what its store holds, so two changes proposed at once can
 * both pass (seen in tests/cluster/tasks.test.mjs); the base check above
 * decides. A change JetStream refused (err 10071) completes BK_STALE once
 * the replica has applied the subject's last seq that JetStream named.
 *
 * At most one change per task is published and not yet acked (busy); the
 * next ones wait for its PubAck and take its seq as base and expectation.
 * Once one is stale, every change of the task made before the broker
 * learns it (it completes) was made from its state: stale too. Held while
 * an operation refers to it or an acked seq is not applied yet.
 */
struct tsubj {
	UT_hash_handle hh; /* n->tsubjs, by id */
	char *id, *subject;
	uint64_t acked;	  /* our newest acked seq on the subject */
	int nops;	  /* operations not completed that refer to it */
	struct op *busy;  /* published, PubAck not here yet */
	struct op *whead; /* waiting for busy, in order */
	struct op **wtail;
	/* The subject's last seq as JetStream said when it refused an
	 * expectation (its messages may be gone by max_age/max_msgs, which
	 * the counter does not see): used while the counter still says
	 * hint_counter. */
	uint64_t hint, hint_counter;
	unsigned has_hint : 1;
	struct op *poison; /* stale and not completed: later ones are too */
};

/* An engine_settle waiting for the replica. */
struct settle {
	struct settle *next;
	struct nats *n;
	struct bk_done done;
	struct event *timer;
	uint64_t upto;
	unsigned known : 1;	/* upto is the stream's last seq */
	unsigned completed : 1; /* done ran */
	unsigned asking : 1;	/* the stream-info request is out */
};

struct nats {
	struct engine e; /* first */
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	struct bsjs *link;
	struct live *live; /* heartbeats, presence (nats_live.c) */
	struct event *health_ev, *drain_ev;
	char instance[17]; /* this process, in every message it publishes */
	char epoch[33];
	char subject[320];
	size_t subject_base; /* strlen("<stream>.") */
	int ready, fatal;
	uint64_t applied; /* the replica's last applied seq */
	uint64_t stream_last;
	/* The stream's first kept seq (0: not known yet): the replica's
	 * messages below it are pruned, a paced step per loop turn. */
	uint64_t stream_first;
	int64_t pruned_max; /* the newest seq the replica pruned */
	struct event *prune_ev;
	int64_t last_ok_ms; /* JetStream last answered */
	struct op *head, **tail;
	struct tsubj *tsubjs;
	struct settle *settles;
	uint64_t next_oid;
};

static struct nats *nats_of(struct engine *e)
{
	return (struct nats *)e;
}

static const char *kind_name[] = {
	[ENGINE_MESSAGE] = "msg",	[ENGINE_JOIN] = "join",
	[ENGINE_LEAVE] = "leave",	[ENGINE_CURSOR] = "cursor",
	[ENGINE_TASK] = "task",		[ENGINE_TASK_DELETE] = "taskdel",
	[ENGINE_TOKEN_ISSUE] = "token", [ENGINE_TOKEN_CHANGE] = "tokenchg",
};

static int kind_of(const char *s)
{
	for (size_t i = 0; i < sizeof(kind_name) / sizeof(kind_name[0]); i++)
		if (kind_name[i] && s && strcmp(kind_name[i], s) == 0)
			return (int)i;
	return -1;
}

/* ---- completions ---- */

/* ts once nothing needs it. */
static void tsubj_gc(struct nats *n, struct tsubj *ts)
{
	if (ts->nops > 0 || ts->busy || ts->whead || ts->acked > n->applied)
		return;
	HASH_DEL(n->tsubjs, ts);
	free(ts->id);
	free(ts->subject);
	free(ts);
}

/* Resolves op if what it waits for is there: acked and its seq applied by
 * the replica, or stale and what beat it applied. Both conditions only
 * ever become true (applied grows, acked stays), so checking an op late
 * gives the answer an early check would have given. 1 resolved. */
static int op_settle(struct nats *n, struct op *op)
{
	if (op->resolved)
		return 1;
	if (op->acked && op->seq <= n->applied) {
		op->resolved = 1;
		op->status = BK_OK;
	} else if (op->stale && !op->inflight && op->wait_seq <= n->applied) {
		op->resolved = 1;
		op->status = BK_STALE;
		op->why = "changed concurrently";
	}
	return op->resolved;
}

/* Complete the operations at the head that are resolved (or resolve now).
 * Operations complete in submission order, so one that cannot resolve yet
 * stops the walk: what is behind it is looked at once it completes. Each
 * call costs the operations it completes plus one, not the whole list (a
 * walk per PubAck and per batch was O(in flight) each: O(n^2) under
 * load). */
static void drain(struct nats *n)
{
	struct op *op;

	while ((op = n->head) && op_settle(n, op)) {
		struct bk_result r = {.status = op->status,
				      .seq = (int64_t)op->seq,
				      .msg = op->why};
		n->head = op->next;
		if (n->head == NULL)
			n->tail = &n->head;
		/* the broker may try it again in bk_complete: on the new state
		 */
		if (op->ts && op->ts->poison == op)
			op->ts->poison = NULL;
		bk_complete(&op->done, &r);
		if (op->ts) {
			op->ts->nops--;
			if (!op->inflight) {
				tsubj_gc(n, op->ts);
				op->ts = NULL;
			}
		}
		free(op->text);
		op->text = NULL;
		if (op->inflight)
			op->orphan = 1;
		else
			free(op);
	}
}

/* Acked operations whose seq the replica has applied are done, and so are
 * stale ones once it has applied what beat them (op_settle, from the
 * head). */
static void resolve_applied(struct nats *n)
{
	drain(n);
}

static struct op *op_new(struct nats *n, const struct bk_done *done)
{
	struct op *op = xcalloc(1, sizeof(*op));

	op->n = n;
	if (done)
		op->done = *done;
	*n->tail = op;
	n->tail = &op->next;
	return op;
}

/* An operation completed while its publish was out (stopping). */
static void op_orphan_free(struct op *op)
{
	if (op->ts) {
		if (op->ts->busy == op)
			op->ts->busy = NULL;
		tsubj_gc(op->n, op->ts);
	}
	free(op);
}

static void task_publish(struct nats *n, struct op *op);
static void settle_check(struct nats *n);

/* ts's busy change came back: the next one goes (ok), or every waiting
 * one was made from a state that is not stored: BK_STALE. */
static void task_next(struct nats *n, struct tsubj *ts, int ok)
{
	struct op *op = ts->whead;

	if (op == NULL)
		return;
	if (ok) {
		ts->whead = op->tnext;
		if (ts->whead == NULL)
			ts->wtail = &ts->whead;
		op->tnext = NULL;
		task_publish(n, op);
		return;
	}
	for (; op; op = op->tnext)
		op->stale = 1; /* wait_seq 0: in turn */
	ts->whead = NULL;
	ts->wtail = &ts->whead;
}

static void on_stale_info(void *arg, int status,
			  const struct bsjs_stream_info *si)
{
	struct op *op = arg;
	struct nats *n = op->n;

	op->inflight = 0;
	if (op->orphan) {
		op_orphan_free(op);
		return;
	}
	op->wait_seq = status == BSJS_OK ? si->last_seq : n->stream_last;
	resolve_applied(n);
}

/* A task change whose expectation did not hold: it completes BK_STALE once
 * the replica has applied the subject's last seq (JetStream names it:
 * "wrong last sequence: N"; else the stream's last). */
static void task_wrong_seq(struct nats *n, struct op *op,
			   const struct bsjs_ack *ack)
{
	struct tsubj *ts = op->ts;
	const char *at = strstr(ack->text, "sequence: ");
	char *end;
	unsigned long long last = 0;

	op->stale = 1;
	if (ts->poison == NULL)
		ts->poison = op;
	if (at)
		last = strtoull(at + 10, &end, 10);
	if (at && end != at + 10) {
		op->wait_seq = last;
		ts->hint = last;
		ts->has_hint = 1;
	} else {
		op->inflight = 1;
		if (bsjs_stream_info(n->link, on_stale_info, op) < 0) {
			op->inflight = 0;
			op->wait_seq = n->stream_last;
		}
	}
	task_next(n, ts, 0);
	resolve_applied(n);
}

static void on_ack(void *arg, const struct bsjs_ack *ack)
{
	struct op *op = arg;
	struct nats *n = op->n;
	struct tsubj *ts = op->ts;

	op->inflight = 0;
	if (op->orphan) {
		op_orphan_free(op);
		return;
	}
	if (ts)
		ts->busy = NULL;
	if (ack->status == BSJS_OK) {
		n->last_ok_ms = now_ms();
		/* A duplicate (a resend) names the original's seq. Either way
		 * the ack waits for the replica to have applied that seq: the
		 * original may have been stored after this node had answered
		 * it `unavailable` (a publish JetStream took late), and a
		 * resume here right after the ack must find it. */
		op->seq = ack->seq;
		if (!op->stale) /* else skipped by the replica already */
			op->acked = 1;
		if (ts) {
			if (ack->seq > ts->acked)
				ts->acked = ack->seq;
			task_next(n, ts, 1);
		}
		resolve_applied(n);
		return;
	}
	if (ts && ack->status == BSJS_EWRONGSEQ) {
		n->last_ok_ms = now_ms();
		task_wrong_seq(n, op, ack);
		return;
	}
	log_warn("cluster.publish", "status=%s msg=%s attempts=%d",
		 bsjs_status_name(ack->status), log_val(ack->text),
		 ack->attempts);
	op->resolved = 1;
	op->status = BK_UNAVAILABLE;
	op->why = "cluster unavailable";
	if (ts)
		task_next(n, ts, 0);
	resolve_applied(n); /* and the stale ones behind it */
}

/* ---- encoding (version 1: one JSON object per event) ---- */

static void hex(char *out, const unsigned char *b, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int unhex(unsigned char *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + (size_t)k];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return -1;
		}
		b[i] = (unsigned char)v;
	}
	return 0;
}

static void set_str(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

static json_t *encode(struct nats *n, const struct engine_event *ev)
{
	json_t *o = json_object();
	char h[65];

	json_object_set_new(o, "v", json_integer(ENCODING_VERSION));
	json_object_set_new(o, "k", json_string(kind_name[ev->kind]));
	json_object_set_new(o, "i", json_string(n->instance));
	json_object_set_new(o, "s", json_integer((json_int_t)ev->session));
	switch (ev->kind) {
	case ENGINE_MESSAGE:
		set_str(o, "from", ev->msg.sender);
		set_str(o, "to", ev->msg.to);
		set_str(o, "room", ev->msg.room);
		set_str(o, "ref", ev->idem);
		json_object_set_new(
			o, "data",
			json_stringn(ev->msg.data, ev->msg.data_len));
		break;
	case ENGINE_JOIN:
	case ENGINE_LEAVE:
		set_str(o, "uid", ev->member.uid);
		set_str(o, "room", ev->member.room);
		break;
	case ENGINE_CURSOR:
		set_str(o, "uid", ev->cursor.uid);
		json_object_set_new(o, "cursor",
				    json_integer(ev->cursor.cursor));
		break;
	case ENGINE_TASK:
		set_str(o, "id", ev->task.rec.id);
		set_str(o, "title", ev->task.rec.title);
		set_str(o, "owner", ev->task.rec.owner);
		set_str(o, "watchers", ev->task.rec.watchers);
		set_str(o, "status", ev->task.rec.status);
		set_str(o, "steps", ev->task.rec.steps);
		set_str(o, "note", ev->task.rec.note);
		json_object_set_new(o, "done", json_integer(ev->task.rec.done));
		json_object_set_new(o, "total",
				    json_integer(ev->task.rec.total));
		json_object_set_new(o, "version",
				    json_integer(ev->task.rec.version));
		json_object_set_new(o, "created",
				    json_integer(ev->task.rec.created_at));
		json_object_set_new(o, "updated",
				    json_integer(ev->task.rec.updated_at));
		json_object_set_new(o, "finished",
				    json_integer(ev->task.rec.finished_at));
		json_object_set_new(
			o, "snap",
			json_stringn(ev->task.snap, ev->task.snap_len));
		break;
	case ENGINE_TASK_DELETE:
		set_str(o, "id", ev->task_id);
		break;
	case ENGINE_TOKEN_CHANGE:
		/* a revocation (the CLI's): the hash and when, in token */
		hex(h, ev->token.hash, 32);
		json_object_set_new(o, "hash", json_string(h));
		json_object_set_new(o, "revoked",
				    json_integer(ev->token.revoked_at));
		break;
	case ENGINE_TOKEN_ISSUE:
		hex(h, ev->token.hash, 32);
		json_object_set_new(o, "hash", json_string(h));
		set_str(o, "uid", ev->token.uid);
		json_object_set_new(o, "role", json_integer(ev->token.role));
		json_object_set_new(o, "created",
				    json_integer(ev->token.created_at));
		json_object_set_new(o, "expires",
				    json_integer(ev->token.expires_at));
		break;
	default:
		json_decref(o);
		return NULL;
	}
	return o;
}

static const char *get_str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int64_t get_int(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* Fill ev from o (strings point into o). 0 ok, -1 not ours or bad. */
static int decode(struct nats *n, json_t *o, const struct bsjs_msg *m,
		  struct engine_event *ev)
{
	json_t *d;
	int k;
	const char *h, *inst;

	memset(ev, 0, sizeof(*ev));
	if (json_integer_value(json_object_get(o, "v")) != ENCODING_VERSION ||
	    (k = kind_of(get_str(o, "k"))) < 0)
		return -1;
	ev->kind = (enum engine_kind)k;
	ev->seq = (int64_t)m->seq;
	inst = get_str(o, "i");
	ev->local = inst && strcmp(inst, n->instance) == 0;
	ev->session =
		ev->local
			? (uint64_t)json_integer_value(json_object_get(o, "s"))
			: 0;
	switch (ev->kind) {
	case ENGINE_MESSAGE:
		d = json_object_get(o, "data");
		ev->msg.seq = (int64_t)m->seq;
		ev->msg.ts = m->time_ns / 1000000;
		ev->msg.sender = get_str(o, "from");
		ev->msg.to = get_str(o, "to");
		ev->msg.room = get_str(o, "room");
		ev->idem = get_str(o, "ref");
		ev->msg.data = json_string_value(d);
		ev->msg.data_len = json_string_length(d);
		if (!ev->msg.sender || !ev->msg.data ||
		    !(ev->msg.to || ev->msg.room))
			return -1;
		return 0;
	case ENGINE_JOIN:
	case ENGINE_LEAVE:
		ev->member.uid = get_str(o, "uid");
		ev->member.room = get_str(o, "room");
		return ev->member.uid && ev->member.room ? 0 : -1;
	case ENGINE_CURSOR:
		ev->cursor.uid = get_str(o, "uid");
		ev->cursor.cursor =
			json_integer_value(json_object_get(o, "cursor"));
		return ev->cursor.uid ? 0 : -1;
	case ENGINE_TASK: {
		struct task_record *r = &ev->task.rec;
		r->id = get_str(o, "id");
		r->title = get_str(o, "title");
		r->owner = get_str(o, "owner");
		r->watchers = get_str(o, "watchers");
		r->status = get_str(o, "status");
		r->steps = get_str(o, "steps");
		r->note = get_str(o, "note");
		r->done = get_int(o, "done");
		r->total = get_int(o, "total");
		r->version = get_int(o, "version");
		r->created_at = get_int(o, "created");
		r->updated_at = get_int(o, "updated");
		r->finished_at = get_int(o, "finished");
		d = json_object_get(o, "snap");
		ev->task.snap = json_string_value(d);
		ev->task.snap_len = json_string_length(d);
		return r->id && r->title && r->owner && r->status &&
				       ev->task.snap && r->version > 0
			       ? 0
			       : -1;
	}
	case ENGINE_TASK_DELETE:
		ev->task_id = get_str(o, "id");
		return ev->task_id ? 0 : -1;
	case ENGINE_TOKEN_CHANGE:
		/* a revocation; handed on as the token's state (on_batch) */
		h = get_str(o, "hash");
		if (!h || strlen(h) != 64 || unhex(ev->token.hash, h, 32) < 0)
			return -1;
		ev->token.revoked_at = get_int(o, "revoked");
		return ev->token.revoked_at > 0 ? 0 : -1;
	case ENGINE_TOKEN_ISSUE:
		h = get_str(o, "hash");
		if (!h || strlen(h) != 64 || unhex(ev->token.hash, h, 32) < 0)
			return -1;
		memcpy(ev->token.prefix, h, 8);
		ev->token.uid = get_str(o, "uid");
		ev->token.role =
			(int)json_integer_value(json_object_get(o, "role"));
		ev->token.created_at =
			json_integer_value(json_object_get(o, "created"));
		ev->token.expires_at =
			json_integer_value(json_object_get(o, "expires"));
		return ev->token.uid ? 0 : -1;
	default:
		return -1;
	}
}

/* ---- the replica ---- */

/* A task's counters in the replica (struct tsubj): "task_seq:<id>" the
 * seq of the last message on its subject, "task_base:<id>" of its last
 * event applied. Kept after a deletion too: a task made again with the
 * same id follows the deletion. */
static uint64_t task_counter(struct nats *n, const char *kind, const char *id)
{
	char name[200];

	snprintf(name, sizeof(name), "%s:%s", kind, id);
	return (uint64_t)store_counter_get(n->store, name);
}

static int task_counter_set(struct nats *n, const char *kind, const char *id,
			    int64_t seq)
{
	char name[200];

	snprintf(name, sizeof(name), "%s:%s", kind, id);
	return store_counter_set(n->store, name, seq);
}

/* Our change with id oid was skipped by the replica (seq): BK_STALE, and
 * so is every change of the task made before the broker learns it. */
static void task_skipped(struct nats *n, uint64_t oid, uint64_t seq)
{
	for (struct op *op = n->head; op; op = op->next)
		if (op->ts && op->oid == oid && !op->resolved) {
			op->acked = 0;
			op->stale = 1;
			op->wait_seq = seq;
			if (op->ts->poison == NULL)
				op->ts->poison = op;
			task_next(n, op->ts, 0);
			return;
		}
}

/* A task event (inside the batch's transaction): applied when its base is
 * the task's last applied event. 1 applied, 0 skipped, -1 error. */
static int apply_task(struct nats *n, const struct engine_event *ev, json_t *o)
{
	const char *id =
		ev->kind == ENGINE_TASK ? ev->task.rec.id : ev->task_id;
	uint64_t base = (uint64_t)json_integer_value(json_object_get(o, "b"));

	if (task_counter_set(n, "task_seq", id, ev->seq) < 0)
		return -1;
	if (base != task_counter(n, "task_base", id)) {
		log_info("cluster.task_skip", "task=%s seq=%lld base=%llu",
			 log_val(id), (long long)ev->seq,
			 (unsigned long long)base);
		if (ev->local)
			task_skipped(n,
				     (uint64_t)json_integer_value(
					     json_object_get(o, "o")),
				     (uint64_t)ev->seq);
		return 0;
	}
	if ((ev->kind == ENGINE_TASK
		     ? store_task_put(n->store, &ev->task.rec)
		     : store_task_del(n->store, ev->task_id)) < 0 ||
	    task_counter_set(n, "task_base", id, ev->seq) < 0)
		return -1;
	return 1;
}

/* Apply ev to the replica (inside the batch's transaction). 1 applied,
 * 0 skipped (a message whose ref the replica already has: a resend past
 * JetStream's duplicate window), -1 error. */
static int apply(struct nats *n, const struct engine_event *ev)
{
	int64_t seq;
	int found;

	switch (ev->kind) {
	case ENGINE_MESSAGE:
		if (ev->idem) {
			found = store_idem_get(n->store, ev->msg.sender,
					       ev->idem, &seq);
			if (found < 0)
				return -1;
			if (found)
				return 0;
		}
		if (store_msg_insert(n->store, &ev->msg) < 0 ||
		    (ev->idem &&
		     store_idem_put(n->store, ev->msg.sender, ev->idem,
				    ev->msg.seq, ev->msg.ts) < 0))
			return -1;
		return 1;
	case ENGINE_JOIN:
		/* messages after the join's own seq are for the member */
		return store_member_put(n->store, ev->member.room,
					ev->member.uid, ev->seq, now_ms()) < 0
			       ? -1
			       : 1;
	case ENGINE_LEAVE:
		return store_member_del(n->store, ev->member.room,
					ev->member.uid) < 0
			       ? -1
			       : 1;
	case ENGINE_CURSOR:
		return store_user_put(n->store, ev->cursor.uid,
				      ev->cursor.cursor, now_ms()) < 0
			       ? -1
			       : 1;
	case ENGINE_TOKEN_ISSUE:
		return store_token_put(n->store, &ev->token) < 0 ? -1 : 1;
	case ENGINE_TOKEN_CHANGE:
		return store_token_revoke_hash(n->store, ev->token.hash,
					       ev->token.revoked_at) < 0
			       ? -1
			       : 1;
	default:
		return 0;
	}
}

static void on_batch(void *arg, const struct bsjs_msg *msgs, size_t cnt)
{
	struct nats *n = arg;
	json_t **docs = xcalloc(cnt, sizeof(*docs));
	unsigned char *use = xcalloc(cnt, 1);
	struct engine_event ev;
	uint64_t last = n->applied;

	if (store_begin(n->store) < 0)
		fatal("cluster: cannot open a transaction on the replica");
	for (size_t i = 0; i < cnt; i++) {
		const struct bsjs_msg *m = &msgs[i];
		int rc;

		if (m->seq <= n->applied)
			continue;
		last = m->seq;
		docs[i] = json_loadb(m->data, m->len, 0, NULL);
		if (docs[i] == NULL || decode(n, docs[i], m, &ev) < 0) {
			log_warn("cluster.skip", "seq=%llu subject=%s",
				 (unsigned long long)m->seq,
				 log_val(m->subject));
			continue;
		}
		rc = ev.kind == ENGINE_TASK || ev.kind == ENGINE_TASK_DELETE
			     ? apply_task(n, &ev, docs[i])
			     : apply(n, &ev);
		if (rc < 0)
			fatal("cluster: cannot apply seq %llu to the replica",
			      (unsigned long long)m->seq);
		use[i] = rc > 0;
	}
	if (store_counter_set(n->store, "cluster_applied_seq", (int64_t)last) <
		    0 ||
	    store_commit(n->store) < 0)
		fatal("cluster: cannot commit to the replica");
	n->applied = last;
	if (last > n->stream_last)
		n->stream_last = last;
	for (size_t i = 0; i < cnt; i++) {
		struct engine_token_state st;

		if (!use[i] || decode(n, docs[i], &msgs[i], &ev) < 0) {
			json_decref(docs[i]);
			continue;
		}
		if (ev.kind == ENGINE_TOKEN_CHANGE) {
			/* what the token is now: its sessions here close */
			struct auth_identity id;
			memcpy(st.hash, ev.token.hash, 32);
			st.state = store_token_state(n->store, st.hash,
						     now_ms(), &id);
			st.expires_at = st.state == 0 ? id.expires_at : 0;
			ev.tokens.v = &st;
			ev.tokens.n = st.state == -2 ? 0 : 1;
		}
		if (n->e.on_event)
			n->e.on_event(n->e.on_event_arg, &ev);
		json_decref(docs[i]);
	}
	free(docs);
	free(use);
	resolve_applied(n);
	settle_check(n);
	{
		struct tsubj *ts, *tmp;
		HASH_ITER(hh, n->tsubjs, ts, tmp)
		{
			tsubj_gc(n, ts);
		}
	}
}

/* ---- the link ---- */

/* The replica belongs to one stream: the first 15 hex digits of its epoch
 * are kept as the counter "cluster_epoch" (set with the first look). A
 * replica of another stream (deleted and made again, or another --stream)
 * would skip the new stream's first seqs: refused. 0 ok, -1 refused. */
static int replica_of_stream(struct nats *n)
{
	char head[16];
	int64_t want, have = store_counter_get(n->store, "cluster_epoch");

	memcpy(head, n->epoch, 15);
	head[15] = '\0';
	want = strtoll(head, NULL, 16);
	if (have == want)
		return 0;
	if (have != 0 || n->applied != 0) {
		log_error("cluster.replica", "msg=%s db=%s epoch=%s",
			  "the replica (--db) is of another stream: delete it "
			  "and the node rebuilds it from the stream",
			  log_val(n->cfg->db), n->epoch);
		return -1;
	}
	if (store_begin(n->store) < 0 ||
	    store_counter_set(n->store, "cluster_epoch", want) < 0 ||
	    store_commit(n->store) < 0)
		fatal("cluster: cannot write to the replica");
	return 0;
}

static void on_link(void *arg, const struct bsjs_event *ev)
{
	struct nats *n = arg;

	switch (ev->type) {
	case BSJS_EV_STATE:
		log_info("cluster.state", "state=%d url=%s", (int)ev->state,
			 log_val(ev->url));
		break;
	case BSJS_EV_READY:
		snprintf(n->epoch, sizeof(n->epoch), "%s", ev->stream->epoch);
		if (replica_of_stream(n) < 0) {
			n->fatal = 1;
			return;
		}
		n->stream_last = ev->stream->last_seq;
		n->stream_first = ev->stream->first_seq;
		n->last_ok_ms = now_ms();
		n->ready = 1;
		log_info("cluster.ready",
			 "stream=%s epoch=%s last_seq=%llu applied=%llu "
			 "created=%d",
			 log_val(n->cfg->stream), n->epoch,
			 (unsigned long long)ev->stream->last_seq,
			 (unsigned long long)n->applied,
			 (int)ev->stream->created);
		if (bsjs_consume(n->link, n->applied + 1, on_batch, n) < 0)
			log_warn("cluster.consume", "msg=%s",
				 "already running");
		break;
	case BSJS_EV_FATAL:
		n->fatal = 1;
		log_error("cluster.fatal", "msg=%s", log_val(ev->text));
		break;
	case BSJS_EV_WARN:
		log_warn("cluster.warn", "msg=%s", log_val(ev->text));
		break;
	}
}

/* ---- retention of the replica ---- */

/* One step: the replica's messages the stream no longer keeps (below its
 * first seq: max_age, max_msgs), and idempotency keys older than 24 h, at
 * most PRUNE_BATCH rows each, in one transaction. 1 when it deleted
 * something: the next step runs on the next loop turn. */
static int prune_step(struct nats *n)
{
	int64_t below = n->stream_first > 1 ? (int64_t)n->stream_first - 1 : 0;
	int64_t idem_before = now_ms() - IDEM_KEEP_MS, max_deleted = 0;
	int k, idem = 0;

	if (below > (int64_t)n->applied)
		below = (int64_t)n->applied;
	if (!store_prune_needed(n->store, 0, below, idem_before))
		return 0;
	if (store_begin(n->store) < 0)
		return 0;
	k = store_prune(n->store, 0, below, idem_before, PRUNE_BATCH,
			&max_deleted, &idem);
	if (k > 0) {
		metrics.retention += (uint64_t)k;
		if (max_deleted > n->pruned_max) {
			n->pruned_max = max_deleted;
			store_counter_set(n->store, "pruned_max_seq",
					  max_deleted);
		}
		store_counter_set(n->store, "pruned_total",
				  (int64_t)metrics.retention);
	}
	if (k < 0 || store_commit(n->store) < 0) {
		store_rollback(n->store);
		return 0;
	}
	if (k > 0 || idem > 0)
		log_info("cluster.prune", "deleted=%d idem=%d upto=%lld", k,
			 idem, (long long)n->pruned_max);
	return k > 0 || idem > 0;
}

static void prune_soon(struct nats *n)
{
	static const struct timeval next_turn = {0, 0};

	if (!evtimer_pending(n->prune_ev, NULL))
		evtimer_add(n->prune_ev, &next_turn);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (prune_step(arg))
		prune_soon(arg);
}

static void on_info(void *arg, int status, const struct bsjs_stream_info *si)
{
	struct nats *n = arg;

	if (status != BSJS_OK)
		return;
	n->last_ok_ms = now_ms();
	n->stream_last = si->last_seq;
	n->stream_first = si->first_seq;
	prune_soon(n);
}

static void figures(struct nats *n)
{
	struct bsjs_stats st;
	struct metrics_cluster *c = &metrics.cluster;

	bsjs_get_stats(n->link, &st);
	c->on = 1;
	c->applied_seq = n->applied;
	c->replica_lag =
		n->stream_last > n->applied ? n->stream_last - n->applied : 0;
	c->published = st.published;
	c->acked = st.acked;
	c->failed = st.failed;
	c->ack_us_sum = st.ack_latency_us_sum;
	c->ack_us_max = st.ack_latency_us_max;
	c->consumer_restarts = st.consumer_restarts;
	c->consumer_redelivered = st.consumer_dropped;
	c->core_dropped = st.core_dropped;
}

static void live_figures(void *arg, int64_t *applied, int64_t *lag)
{
	struct nats *n = arg;

	*applied = (int64_t)n->applied;
	*lag = n->stream_last > n->applied
		       ? (int64_t)(n->stream_last - n->applied)
		       : 0;
}

static void health_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nats *n = arg;
	(void)fd;
	(void)what;

	if (n->ready)
		bsjs_stream_info(n->link, on_info, n);
	figures(n);
}

/* ---- task changes ---- */

/* "<stream>.task.<key>": the id itself when it is a safe subject token,
 * else "~" and 32 hex digits of its SHA-256. */
static char *task_subject(struct nats *n, const char *id)
{
	size_t len = strlen(id), k = strspn(id, "abcdefghijklmnopqrstuvwxyz"
						"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
						"0123456789_-");
	char key[140], *out;
	unsigned char md[SHA256_DIGEST_LENGTH];

	if (len > 0 && k == len && len < sizeof(key)) {
		memcpy(key, id, len + 1);
	} else {
		SHA256((const unsigned char *)id, len, md);
		key[0] = '~';
		hex(key + 1, md, 16);
	}
	out = xmalloc(n->subject_base + 6 + strlen(key) + 1);
	memcpy(out, n->subject, n->subject_base);
	sprintf(out + n->subject_base, "task.%s", key);
	return out;
}

static void task_publish(struct nats *n, struct op *op)
{
	struct tsubj *ts = op->ts;
	uint64_t c = task_counter(n, "task_seq", ts->id), expect, base;
	struct bsjs_pub p = {.subject = ts->subject};
	char *text;
	size_t len = strlen(op->text);

	if (ts->poison) {
		op->stale = 1;
		task_next(n, ts, 0);
		event_active(n->drain_ev, EV_TIMEOUT, 0);
		return;
	}
	if (ts->acked > n->applied) {
		/* made on top of our change not applied yet */
		expect = base = ts->acked;
	} else {
		base = task_counter(n, "task_base", ts->id);
		expect = ts->has_hint && c == ts->hint_counter ? ts->hint : c;
	}
	ts->has_hint = 0;
	ts->hint_counter = c;
	/* the encoded object, its base and id added */
	text = xmalloc(len + 64);
	memcpy(text, op->text, len - 1);
	len = len - 1 +
	      (size_t)sprintf(text + len - 1, ",\"b\":%llu,\"o\":%llu}",
			      (unsigned long long)base,
			      (unsigned long long)op->oid);
	free(op->text);
	op->text = text;
	p.data = text;
	p.len = len;
	p.expect_last_subject_seq = (int64_t)expect;
	ts->busy = op;
	op->inflight = 1;
	if (bsjs_publish(n->link, &p, on_ack, op) < 0) {
		op->inflight = 0;
		ts->busy = NULL;
		op->resolved = 1;
		op->status = BK_UNAVAILABLE;
		op->why = "cluster unavailable";
		task_next(n, ts, 0);
		event_active(n->drain_ev, EV_TIMEOUT, 0);
	}
	free(op->text);
	op->text = NULL;
}

/* A task change or deletion, on its task's chain (struct tsubj). */
static int submit_task(struct nats *n, const struct engine_event *ev,
		       const struct bk_done *done, const char **why)
{
	const char *id =
		ev->kind == ENGINE_TASK ? ev->task.rec.id : ev->task_id;
	struct tsubj *ts;
	struct op *op;
	json_t *o = encode(n, ev);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (text == NULL || id == NULL) {
		free(text);
		*why = "cannot encode the event";
		return -1;
	}
	HASH_FIND_STR(n->tsubjs, id, ts);
	if (ts == NULL) {
		ts = xcalloc(1, sizeof(*ts));
		ts->id = xstrdup(id);
		ts->subject = task_subject(n, id);
		ts->wtail = &ts->whead;
		HASH_ADD_KEYPTR(hh, n->tsubjs, ts->id, strlen(ts->id), ts);
	}
	op = op_new(n, done);
	op->ts = ts;
	op->text = text;
	op->oid = ++n->next_oid;
	ts->nops++;
	if (ts->busy) {
		*ts->wtail = op;
		ts->wtail = &op->tnext;
	} else {
		task_publish(n, op);
	}
	return 0;
}

/* ---- settle: the replica up to what the stream has now ---- */

static void settle_free(struct settle *w)
{
	event_free(w->timer);
	free(w);
}

static void settle_complete(struct settle *w)
{
	struct nats *n = w->n;
	struct bk_result r = {.status = BK_OK};

	for (struct settle **pp = &n->settles; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	w->completed = 1;
	evtimer_del(w->timer);
	bk_complete(&w->done, &r);
	if (!w->asking)
		settle_free(w);
}

static void settle_check(struct nats *n)
{
	struct settle *w = n->settles, *next;

	for (; w; w = next) {
		next = w->next;
		if (w->known && w->upto <= n->applied)
			settle_complete(w);
	}
}

static void settle_info(void *arg, int status,
			const struct bsjs_stream_info *si)
{
	struct settle *w = arg;

	w->asking = 0;
	if (w->completed) {
		settle_free(w);
		return;
	}
	if (status != BSJS_OK) {
		settle_complete(w); /* nothing to wait for */
		return;
	}
	w->upto = si->last_seq;
	w->known = 1;
	settle_check(w->n);
}

static void settle_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	settle_complete(arg);
}

static void nats_settle(struct engine *eng, int wait_ms,
			const struct bk_done *done)
{
	struct nats *n = nats_of(eng);
	struct settle *w = xcalloc(1, sizeof(*w));
	struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};

	w->n = n;
	w->done = *done;
	w->timer = evtimer_new(n->base, settle_timer, w);
	if (w->timer == NULL)
		fatal("event_new failed");
	w->next = n->settles;
	n->settles = w;
	evtimer_add(w->timer, &tv);
	w->asking = 1;
	if (bsjs_stream_info(n->link, settle_info, w) < 0) {
		w->asking = 0;
		settle_complete(w);
	}
}

static int nats_task(struct engine *eng, const char *id, engine_task_fn fn,
		     void *arg)
{
	return store_task_get(nats_of(eng)->store, id, fn, arg);
}

/* ---- the interface ---- */

static int nats_submit(struct engine *eng, const struct engine_event *ev,
		       const struct bk_done *done, const char **why)
{
	struct nats *n = nats_of(eng);
	const char *dummy;
	char *text, msgid[600];
	struct bsjs_pub p = {.expect_last_subject_seq = -1};
	struct op *op;
	json_t *o;
	int64_t seq;
	int found;

	if (why == NULL)
		why = &dummy;
	if (ev->kind == ENGINE_TASK || ev->kind == ENGINE_TASK_DELETE)
		return submit_task(n, ev, done, why);
	if (ev->kind == ENGINE_TOKEN_CHANGE) {
		*why = "not an operation";
		return -1;
	}
	if (ev->kind == ENGINE_MESSAGE && ev->idem) {
		/* a resend past JetStream's duplicate window */
		found = store_idem_get(n->store, ev->msg.sender, ev->idem,
				       &seq);
		if (found < 0) {
			*why = "replica unavailable";
			return -1;
		}
		if (found) {
			op = op_new(n, done);
			op->resolved = 1;
			op->status = BK_OK;
			op->seq = (uint64_t)seq;
			event_active(n->drain_ev, EV_TIMEOUT, 0);
			return 0;
		}
	}
	o = encode(n, ev);
	text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL) {
		*why = "cannot encode the event";
		return -1;
	}
	snprintf(n->subject + n->subject_base,
		 sizeof(n->subject) - n->subject_base, "%s",
		 kind_name[ev->kind]);
	p.subject = n->subject;
	p.data = text;
	p.len = strlen(text);
	if (ev->kind == ENGINE_MESSAGE && ev->idem &&
	    (size_t)snprintf(msgid, sizeof(msgid), "m:%s:%s", ev->msg.sender,
			     ev->idem) < sizeof(msgid))
		p.msg_id = msgid;
	op = op_new(n, done);
	op->inflight = 1;
	if (bsjs_publish(n->link, &p, on_ack, op) < 0) {
		op->inflight = 0;
		op->resolved = 1;
		op->status = BK_UNAVAILABLE;
		op->why = "cluster unavailable";
		event_active(n->drain_ev, EV_TIMEOUT, 0);
	}
	free(text);
	return 0;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	resolve_applied(arg); /* stale task changes too; then drain */
}

static void nats_sync(struct engine *eng, const struct bk_done *done)
{
	struct nats *n = nats_of(eng);
	struct bk_result r = {.status = BK_OK};
	struct op *op;

	if (n->head == NULL) {
		bk_complete(done, &r);
		return;
	}
	op = op_new(n, done);
	op->resolved = 1;
	op->status = BK_OK;
}

/* Stopping: what JetStream has not acked yet completes as unavailable
 * ("maybe stored": a resend with the same ref is acked once). */
static void nats_flush(struct engine *eng)
{
	struct nats *n = nats_of(eng);
	struct tsubj *ts, *tmp;

	live_stop(n->live); /* flush is called when the server stops */
	/* the waiting changes complete below, unlinked from their chains */
	HASH_ITER(hh, n->tsubjs, ts, tmp)
	{
		ts->whead = NULL;
		ts->wtail = &ts->whead;
	}
	/* what could complete keeps its answer; the rest is "stopping" */
	for (struct op *op = n->head; op; op = op->next)
		if (!op_settle(n, op)) {
			op->resolved = 1;
			op->status = BK_UNAVAILABLE;
			op->why = "stopping";
		}
	drain(n);
}

static const char *nats_epoch(struct engine *eng)
{
	return nats_of(eng)->epoch;
}

static int64_t nats_committed(struct engine *eng)
{
	return (int64_t)nats_of(eng)->applied;
}

/* What the replica pruned, or what the stream no longer keeps (a replica
 * rebuilt from it never had those): a resume from below is not whole. */
static int64_t nats_pruned(struct engine *eng)
{
	struct nats *n = nats_of(eng);
	int64_t gone = n->stream_first > 1 ? (int64_t)n->stream_first - 1 : 0;

	return gone > n->pruned_max ? gone : n->pruned_max;
}

static int nats_load(struct engine *eng, const struct engine_loader *ld,
		     void *arg)
{
	struct nats *n = nats_of(eng);

	if (ld->member && store_load_members(n->store, ld->member, arg) < 0)
		return -1;
	if (ld->task && store_load_tasks(n->store, ld->task, arg) < 0)
		return -1;
	return 0;
}

static int nats_cursor(struct engine *eng, const char *uid, int64_t *cursor)
{
	return store_user_get(nats_of(eng)->store, uid, cursor);
}

static int nats_replay(struct engine *eng, const char *uid, int64_t since,
		       int64_t upto, int limit, engine_msg_fn fn, void *arg)
{
	return store_replay(nats_of(eng)->store, uid, since, upto, limit, fn,
			    arg);
}

static int nats_token(struct engine *eng, const unsigned char hash[32],
		      int64_t now, struct auth_identity *id)
{
	return store_token_state(nats_of(eng)->store, hash, now, id);
}

static int nats_healthy(struct engine *eng)
{
	struct nats *n = nats_of(eng);

	return n->ready && !n->fatal && bsjs_state(n->link) == BSJS_CONNECTED &&
	       now_ms() - n->last_ok_ms < HEALTH_STALE_MS &&
	       store_writable(n->store);
}

static void nats_presence(struct engine *eng, const char *uid, int online)
{
	live_presence(nats_of(eng)->live, uid, online);
}

static void nats_nodes(struct engine *eng, engine_node_fn fn, void *arg)
{
	live_nodes(nats_of(eng)->live, fn, arg);
}

static void nats_destroy(struct engine *eng)
{
	struct nats *n = nats_of(eng);

	nats_flush(eng);
	live_destroy(n->live);
	bsjs_consume_stop(n->link);
	while (n->settles)
		settle_complete(n->settles);
	bsjs_destroy(n->link);
	/* completions of bsjs_destroy resolved nothing new: drained above */
	drain(n);
	{
		struct tsubj *ts, *tmp;
		HASH_ITER(hh, n->tsubjs, ts, tmp)
		{
			HASH_DEL(n->tsubjs, ts);
			free(ts->id);
			free(ts->subject);
			free(ts);
		}
	}
	event_free(n->health_ev);
	event_free(n->drain_ev);
	event_free(n->prune_ev);
	store_close(n->store);
	free(n);
	bsjs_global_finish();
}

static const struct engine_ops nats_ops = {
	.submit = nats_submit,
	.sync = nats_sync,
	.flush = nats_flush,
	.epoch = nats_epoch,
	.committed = nats_committed,
	.pruned = nats_pruned,
	.load = nats_load,
	.cursor = nats_cursor,
	.replay = nats_replay,
	.token = nats_token,
	.task = nats_task,
	.settle = nats_settle,
	.healthy = nats_healthy,
	.presence = nats_presence,
	.nodes = nats_nodes,
	.destroy = nats_destroy,
};

/* The servers of a comma list, in place. */
static int split(char *list, const char **out, int max)
{
	int k = 0;

	for (char *save = NULL, *s = strtok_r(list, ",", &save); s && k < max;
	     s = strtok_r(NULL, ",", &save))
		if (*s)
			out[k++] = s;
	return k;
}

int engine_nats_init(void)
{
	return bsjs_global_init();
}

struct engine *engine_nats_create(struct event_base *base,
				  const struct config *cfg, char *err,
				  size_t errsz)
{
	struct nats *n;
	struct store *s;
	const char *servers[32];
	char *list = xstrdup(cfg->cluster);
	struct bsjs_config jc = {0};
	struct timeval health = {HEALTH_MS / 1000, 0};
	unsigned char rnd[8];
	int64_t deadline;

	jc.nservers = split(list, servers, 32);
	if (jc.nservers == 0) {
		snprintf(err, errsz, "--cluster names no server");
		free(list);
		return NULL;
	}
	s = store_open(cfg->db, cfg->sync_full, err, errsz);
	if (s == NULL) {
		free(list);
		return NULL;
	}
	n = xcalloc(1, sizeof(*n));
	n->e.ops = &nats_ops;
	n->e.linear_tasks = 1;
	n->base = base;
	n->cfg = cfg;
	n->store = s;
	n->tail = &n->head;
	n->applied = (uint64_t)store_counter_get(s, "cluster_applied_seq");
	n->pruned_max = store_counter_get(s, "pruned_max_seq");
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		fatal("getrandom failed");
	hex(n->instance, rnd, sizeof(rnd));
	n->subject_base = (size_t)snprintf(n->subject, sizeof(n->subject),
					   "%s.", cfg->stream);
	jc.servers = servers;
	jc.name = cfg->node;
	jc.stream = cfg->stream;
	jc.replicas = cfg->replicas > 0 ? cfg->replicas
		      : jc.nservers < 3 ? jc.nservers
					: 3;
	jc.max_age_ms = cfg->retention_age * 1000;
	jc.max_msgs = cfg->retention_count;
	jc.publish_timeout_ms = PUBLISH_TIMEOUT_MS;
	jc.on_event = on_link;
	jc.arg = n;
	n->link = bsjs_create(base, &jc, err, errsz);
	free(list);
	if (n->link == NULL) {
		store_close(s);
		free(n);
		return NULL;
	}
	n->live = live_create(&(struct live_config){
		.base = base,
		.link = n->link,
		.engine = &n->e,
		.node = cfg->node,
		.stream = cfg->stream,
		.instance = n->instance,
		.figures = live_figures,
		.arg = n,
	});
	n->health_ev = event_new(base, -1, EV_PERSIST, health_cb, n);
	n->drain_ev = event_new(base, -1, 0, drain_cb, n);
	n->prune_ev = evtimer_new(base, prune_cb, n);
	if (n->health_ev == NULL || n->drain_ev == NULL || n->prune_ev == NULL)
		fatal("event_new failed");
	event_add(n->health_ev, &health);
	/* Before anything listens: wait for the stream and for the replica
	 * to catch up with it (nothing else runs on the loop yet). */
	deadline = now_ms() + START_WAIT_MS;
	while (!n->fatal && now_ms() < deadline &&
	       !(n->ready && n->applied >= n->stream_last))
		event_base_loop(base, EVLOOP_ONCE);
	if (!n->ready || n->applied < n->stream_last) {
		snprintf(err, errsz,
			 n->fatal   ? "the stream cannot be used"
			 : n->ready ? "the replica did not catch up with the "
				      "stream within 30 s"
				    : "JetStream not reached within 30 s");
		n->e.ops->destroy(&n->e);
		return NULL;
	}
	figures(n);
	log_info("cluster.start", "node=%s stream=%s replicas=%d applied=%llu",
		 log_val(cfg->node), log_val(cfg->stream), jc.replicas,
		 (unsigned long long)n->applied);
	return &n->e;
}

/* ---- the token commands of the CLI ---- */

#define CLI_WAIT_MS 5000

struct cli {
	int ready, fatal, done, status;
	char text[200];
};

static void cli_link(void *arg, const struct bsjs_event *ev)
{
	struct cli *c = arg;

	if (ev->type == BSJS_EV_READY)
		c->ready = 1;
	if (ev->type == BSJS_EV_FATAL) {
		c->fatal = 1;
		snprintf(c->text, sizeof(c->text), "%s", ev->text);
	}
}

static void cli_ack(void *arg, const struct bsjs_ack *ack)
{
	struct cli *c = arg;

	c->done = 1;
	c->status = ack->status;
	snprintf(c->text, sizeof(c->text), "%s", ack->text);
}

static void cli_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Publish ev (a token's row or revocation) on <stream>.<kind> with msg_id,
 * waiting at most CLI_WAIT_MS for the PubAck. 0, or -2 with err. On a
 * failure the link is left to the process's exit (its first connection
 * attempt may still block). */
static int cli_publish(const char *servers, const char *stream,
		       const struct engine_event *ev, const char *msg_id,
		       char *err, size_t errsz)
{
	struct nats tmp = {0};
	struct cli c = {0};
	struct bsjs_config jc = {0};
	struct bsjs_pub p = {.expect_last_subject_seq = -1, .msg_id = msg_id};
	const char *list[32];
	char *copy = xstrdup(servers), subject[200], *text;
	struct event_base *base;
	struct event *tick;
	struct timeval tv = {0, 100000};
	struct bsjs *link;
	json_t *o;
	int64_t deadline;

	jc.nservers = split(copy, list, 32);
	if (jc.nservers == 0) {
		snprintf(err, errsz, "--cluster names no server");
		free(copy);
		return -2;
	}
	if (bsjs_global_init() < 0 || (base = event_base_new()) == NULL) {
		snprintf(err, errsz, "cannot set up libnats");
		free(copy);
		return -2;
	}
	snprintf(tmp.instance, sizeof(tmp.instance), "cli");
	o = encode(&tmp, ev);
	text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	snprintf(subject, sizeof(subject), "%s.%s", stream,
		 kind_name[ev->kind]);
	jc.servers = list;
	jc.name = "basestation-cli";
	jc.stream = stream;
	jc.no_create = true;
	jc.replicas = jc.nservers < 3 ? jc.nservers : 3;
	jc.publish_timeout_ms = CLI_WAIT_MS;
	jc.on_event = cli_link;
	jc.arg = &c;
	link = bsjs_create(base, &jc, err, errsz);
	free(copy);
	if (link == NULL) {
		free(text);
		return -2;
	}
	p.subject = subject;
	p.data = text;
	p.len = strlen(text);
	if (bsjs_publish(link, &p, cli_ack, &c) < 0)
		fatal("cannot publish");
	free(text);
	tick = event_new(base, -1, EV_PERSIST, cli_tick, NULL);
	event_add(tick, &tv);
	deadline = now_ms() + CLI_WAIT_MS + 500;
	while (!c.done && !c.fatal && now_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	if (!c.done || c.status != BSJS_OK) {
		snprintf(err, errsz, "%s",
			 c.fatal   ? c.text
			 : c.ready ? "JetStream did not store it within 5 s"
				   : "JetStream not reached within 5 s");
		return -2;
	}
	event_free(tick);
	bsjs_destroy(link);
	event_base_free(base);
	bsjs_global_finish();
	return 0;
}

int engine_nats_token_issue(const char *servers, const char *stream,
			    const char *uid, enum auth_role role, int64_t ttl_s,
			    char *out, size_t outsz, int64_t *expires_at,
			    char *err, size_t errsz)
{
	struct engine_event ev = {.kind = ENGINE_TOKEN_ISSUE};
	char id[80];

	if (auth_token_new(uid, role, ttl_s, now_ms(), out, outsz, &ev.token) <
	    0) {
		snprintf(err, errsz, "cannot make a token");
		return -2;
	}
	*expires_at = ev.token.expires_at;
	snprintf(id, sizeof(id), "t:");
	hex(id + 2, ev.token.hash, 32);
	return cli_publish(servers, stream, &ev, id, err, errsz);
}

int engine_nats_token_revoke(const char *servers, const char *stream,
			     const char *token, char *err, size_t errsz)
{
	struct engine_event ev = {.kind = ENGINE_TOKEN_CHANGE};
	char id[80];

	if (auth_token_hash(token, strnlen(token, AUTH_TOKEN_MAX + 1),
			    ev.token.hash) < 0)
		return -1;
	ev.token.revoked_at = now_ms();
	snprintf(id, sizeof(id), "r:");
	hex(id + 2, ev.token.hash, 32);
	return cli_publish(servers, stream, &ev, id, err, errsz);
}
