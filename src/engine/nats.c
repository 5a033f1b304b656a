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
 * ack before the replica has the message would break that promise. Operations complete strictly in submission order, which is
 * what sync needs.
 *
 * The ordered consumer brings every stream message back, from this node
 * and from the others, in stream order; each batch is applied to the
 * replica (the single-node schema, --db) in one transaction that also sets
 * the counter "cluster_applied_seq", so a restart goes on from the next
 * seq and applies nothing twice. After the COMMIT each event is handed to
 * the broker: local=1 for those this process published (the broker
 * applied them when it submitted), local=0 for the others.
 *
 * Not cluster-wide yet, refused or said: tasks (submit refuses them: their
 * versions would not be linear across nodes), token revocation from the
 * CLI (it writes one node's replica only), retention of the replica (the
 * stream's max_age/max_msgs bound the stream; the replica keeps what it
 * applied). The start waits (at most 30 s) until the stream is there and
 * the replica has caught up with it: then load() sees the whole cluster.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PUBLISH_TIMEOUT_MS 4000
#define HEALTH_MS	   1000
#define HEALTH_STALE_MS	   4000
#define START_WAIT_MS	   30000
#define ENCODING_VERSION   1

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
	enum bk_status status;
	const char *why;
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
	char subject[160];
	size_t subject_base; /* strlen("<stream>.") */
	int ready, fatal;
	uint64_t applied; /* the replica's last applied seq */
	uint64_t stream_last;
	int64_t last_ok_ms; /* JetStream last answered */
	struct op *head, **tail;
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

/* Complete the operations at the head that are resolved. */
static void drain(struct nats *n)
{
	struct op *op;

	while ((op = n->head) && op->resolved) {
		struct bk_result r = {.status = op->status,
				      .seq = (int64_t)op->seq,
				      .msg = op->why};
		n->head = op->next;
		if (n->head == NULL)
			n->tail = &n->head;
		bk_complete(&op->done, &r);
		if (op->inflight)
			op->orphan = 1;
		else
			free(op);
	}
}

/* Acked operations whose seq the replica has applied are done. */
static void resolve_applied(struct nats *n)
{
	for (struct op *op = n->head; op; op = op->next)
		if (op->acked && !op->resolved && op->seq <= n->applied) {
			op->resolved = 1;
			op->status = BK_OK;
		}
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

static void on_ack(void *arg, const struct bsjs_ack *ack)
{
	struct op *op = arg;
	struct nats *n = op->n;

	op->inflight = 0;
	if (op->orphan) {
		free(op);
		return;
	}
	if (ack->status == BSJS_OK) {
		n->last_ok_ms = now_ms();
		op->seq = ack->seq;
		if (ack->duplicate) {
			/* stored before (a resend): its seq, no event */
			op->resolved = 1;
			op->status = BK_OK;
		} else {
			op->acked = 1;
		}
		resolve_applied(n);
		return;
	}
	log_warn("cluster.publish", "status=%s msg=%s attempts=%d",
		 bsjs_status_name(ack->status), log_val(ack->text),
		 ack->attempts);
	op->resolved = 1;
	op->status = BK_UNAVAILABLE;
	op->why = "cluster unavailable";
	drain(n);
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
		rc = apply(n, &ev);
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
		if (use[i] && decode(n, docs[i], &msgs[i], &ev) == 0 &&
		    n->e.on_event)
			n->e.on_event(n->e.on_event_arg, &ev);
		json_decref(docs[i]);
	}
	free(docs);
	free(use);
	resolve_applied(n);
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

static void on_info(void *arg, int status, const struct bsjs_stream_info *si)
{
	struct nats *n = arg;

	if (status != BSJS_OK)
		return;
	n->last_ok_ms = now_ms();
	n->stream_last = si->last_seq;
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
	if (ev->kind == ENGINE_TASK || ev->kind == ENGINE_TASK_DELETE) {
		*why = "tasks are not cluster-wide yet";
		return -1;
	}
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
	drain(arg);
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

	live_stop(n->live); /* flush is called when the server stops */
	for (struct op *op = n->head; op; op = op->next)
		if (!op->resolved) {
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

static int64_t nats_pruned(struct engine *eng)
{
	(void)eng;
	return 0;
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
	bsjs_destroy(n->link);
	/* completions of bsjs_destroy resolved nothing new: drained above */
	drain(n);
	event_free(n->health_ev);
	event_free(n->drain_ev);
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
	n->base = base;
	n->cfg = cfg;
	n->store = s;
	n->tail = &n->head;
	n->applied = (uint64_t)store_counter_get(s, "cluster_applied_seq");
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
	if (n->health_ev == NULL || n->drain_ev == NULL)
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
	log_info("cluster.start",
		 "node=%s stream=%s replicas=%d applied=%llu "
		 "not_cluster_wide=%s",
		 log_val(cfg->node), log_val(cfg->stream), jc.replicas,
		 (unsigned long long)n->applied,
		 "tasks(refused),token-revoke-cli,replica-retention");
	return &n->e;
}
