/*
 * Ephemeral cluster traffic on core NATS (protocol §7, §10; docs/
 * operations.md §12): node heartbeats for GET /admin/nodes, and presence
 * across nodes. Nothing here is stored: a node that starts learns the
 * others' state from them, and a node that goes silent is forgotten.
 *
 * One subject, "_basestation.<stream>.live" (outside the stream's
 * "<stream>.>"), one JSON object per message, "v":1, "t" its type, "n" the
 * sending node's name and "i" its instance (a random id per process: a
 * node restarted under the same name is a new instance, and what the old
 * one said is dropped at once):
 *
 *   hb    every second: "q", "c" connections, "a" applied seq, "l" lag,
 *         "ver", "since" (ms since the epoch);
 *   d     presence changes: "q", "on": [uids], "off": [uids] — uids whose
 *         first session on the sender came online, or whose last left;
 *   snap  the sender's whole online set as of "q", in parts "k" = 0, 1,
 *         ... with "end" on the last ("u": [uids]);
 *   sync  "to": an instance asked for a snap (it answers to everyone);
 *   bye   the sender stops (best effort).
 *
 * "q" counts the sender's d messages. NATS delivers one publisher's
 * messages to a subscription in order, so a receiver that holds a node's
 * set as of q applies the d with q + 1 and knows it missed one when it sees
 * another q (in a d, or in a heartbeat): it then ignores that node's d
 * until a snap it asks for (at most once a second) replaces the set. A
 * node first seen with q = 0 has an empty set. Each node's uids are fed
 * to the broker (engine.on_presence, +1 when a node gains one, -1 when it
 * loses it), whose grace period (presence.c) makes a tab moving from one
 * node to another within a second silent, as on one node.
 *
 * Expiry: a node silent for LIVE_PRESENCE_MS loses its uids (-1 each: the
 * broker's presence.leave after the grace), and is dropped from the node
 * list after LIVE_DROP_MS (protocol: 10 s). It may come back: its next
 * heartbeat makes the receiver ask for a snap.
 *
 * Bounds, since another node's messages must not grow this one without
 * limit: at most LIVE_MAX_NODES other nodes, LIVE_MAX_UIDS uids per node
 * and LIVE_MAX_REMOTE in all (each is a user record in the broker),
 * messages of at most LIVE_MSG_MAX bytes; every id is checked with the id
 * rule. What is refused is counted (basestation_cluster_live_dropped_total).
 *
 * Everything runs on the loop: the link hands core messages to it, and
 * they wait in one queue (at most LIVE_QUEUE_BYTES) that is worked through
 * about LIVE_TURN_UIDS uids per loop turn, so that a node's snapshot of
 * many users does not hold the loop; while it is not empty nobody is
 * judged silent.
 */
#include "nats_live.h"

#include "bs_config.h"
#include "basestation/auth.h"
#include "basestation/jetstream.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/names.h"
#include "basestation/xalloc.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define LIVE_HB_MS	 1000
#define LIVE_PRESENCE_MS 4000  /* silent this long: its uids go */
#define LIVE_DROP_MS	 10000 /* silent this long: the node goes */
#define LIVE_ASK_MS	 1000  /* between two snap requests to a node */
#define LIVE_SNAP_MS	 500   /* between two snaps of ours */
#define LIVE_MAX_NODES	 64
#define LIVE_MAX_UIDS	 100000		   /* per node */
#define LIVE_MAX_REMOTE	 1000000	   /* over all nodes */
#define LIVE_PART_BYTES	 (32 * 1024)	   /* of uids per d or snap message */
#define LIVE_BATCH	 256		   /* uids per d or snap message */
#define LIVE_TURN_UIDS	 2048		   /* handled per loop turn */
#define LIVE_QUEUE_BYTES (8 * 1024 * 1024) /* waiting to be handled */
#define LIVE_MSG_MAX	 (64 * 1024)	   /* ours: at most ~34 KiB */
#define LIVE_NAME_MAX	 128
#define LIVE_INST_MAX	 32
#define LIVE_VER_MAX	 64

/* A uid online on this node: cur now, pub as the others were told. */
struct luid {
	UT_hash_handle hh;
	struct luid *dnext; /* the dirty list, while dirty */
	unsigned cur : 1, pub : 1, dirty : 1;
	char uid[];
};

/* Another node's message, waiting for its turn (work_cb). */
struct pending {
	struct pending *next;
	json_t *o;
	size_t len;
};

/* A uid online on another node. */
struct ruid {
	UT_hash_handle hh;
	unsigned mark : 1; /* seen in the snap being applied */
	char uid[];
};

struct rnode {
	UT_hash_handle hh; /* l->nodes, by name */
	char name[LIVE_NAME_MAX + 1];
	char inst[LIVE_INST_MAX + 1];
	char version[LIVE_VER_MAX + 1];
	int64_t seen; /* mono_ms of its last heartbeat */
	int64_t since_ms, connections, applied, lag;
	uint64_t q;    /* its set is as of this d */
	int synced;    /* uids is its set as of q */
	int64_t asked; /* mono_ms of our last sync request */
	long snap_k;   /* the snap part expected next, -1 none */
	uint64_t snap_q;
	struct ruid *uids;
	size_t nuids;
};

struct live {
	struct event_base *base;
	struct bsjs *link;
	struct engine *e;
	struct bsjs_sub *sub;
	struct event *tick_ev, *flush_ev, *work_ev;
	struct pending *qhead, *qtail; /* other nodes' messages, to handle */
	size_t qbytes;
	char *node, *inst, *subject;
	live_figures_fn figures;
	void *arg;
	int64_t since_ms;
	uint64_t q;	      /* d messages published */
	struct luid *local;   /* by uid */
	struct luid *dirty;   /* changed since the last flush */
	int stopping;	      /* said goodbye: silent from then on */
	int64_t clash_logged; /* mono_ms: another node has our name */
	int64_t snap_at;      /* mono_ms of our last snap */
	int snap_want;	      /* asked for one meanwhile */
	struct rnode *nodes;  /* other nodes, by name */
	size_t remote_uids;   /* sum of nuids */
};

/* ---- sending ---- */

static json_t *msg_new(struct live *l, const char *type)
{
	return json_pack("{s:i, s:s, s:s, s:s}", "v", 1, "t", type, "n",
			 l->node, "i", l->inst);
}

static void send_msg(struct live *l, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	if (text == NULL)
		return;
	/* Lost while the link is down: the receivers see the gap in q. */
	(void)bsjs_core_publish(l->link, l->subject, text, strlen(text));
	free(text);
}

static void send_delta(struct live *l, json_t *on, json_t *off)
{
	json_t *o = msg_new(l, "d");

	json_object_set_new(o, "q", json_integer((json_int_t)++l->q));
	json_object_set_new(o, "on", on);
	json_object_set_new(o, "off", off);
	send_msg(l, o);
}

/* Counts uid into a message part of n uids and about bytes
 * of JSON (a uid's characters escaped at most twice over: the id rule
 * leaves only '"' and '\\' to escape); 1 when the part is full, which
 * starts the next one. Every part stays well below LIVE_MSG_MAX. */
static int part_full(size_t *n, size_t *bytes, const char *uid)
{
	(*n)++;
	*bytes += 2 * strlen(uid) + 3;
	if (*n < LIVE_BATCH && *bytes < LIVE_PART_BYTES)
		return 0;
	*n = *bytes = 0;
	return 1;
}

/* The changes of this turn, netted: a uid that went and came back within
 * it is not mentioned. */
static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct live *l = arg;
	json_t *on = json_array(), *off = json_array();
	struct luid *u;
	size_t n = 0, bytes = 0;
	(void)fd;
	(void)what;

	while ((u = l->dirty)) {
		l->dirty = u->dnext;
		u->dirty = 0;
		if (u->cur != u->pub) {
			json_array_append_new(u->cur ? on : off,
					      json_string(u->uid));
			u->pub = u->cur;
			if (part_full(&n, &bytes, u->uid)) {
				send_delta(l, on, off);
				on = json_array();
				off = json_array();
			}
		}
		if (!u->cur) {
			HASH_DEL(l->local, u);
			free(u);
		}
	}
	if (n)
		send_delta(l, on, off);
	else {
		json_decref(on);
		json_decref(off);
	}
}

static void send_snap_part(struct live *l, json_t *list, long k, int end)
{
	json_t *o = msg_new(l, "snap");

	json_object_set_new(o, "q", json_integer((json_int_t)l->q));
	json_object_set_new(o, "k", json_integer(k));
	json_object_set_new(o, "end", json_boolean(end));
	json_object_set_new(o, "u", list);
	send_msg(l, o);
}

/* Our set as the others were told it (pub), as of l->q; the last part
 * has "end" (and may be empty). */
static void send_snap(struct live *l)
{
	struct luid *u, *tmp;
	json_t *list = json_array();
	long k = 0;
	size_t n = 0, bytes = 0;

	l->snap_at = mono_ms();
	l->snap_want = 0;
	HASH_ITER(hh, l->local, u, tmp)
	{
		if (!u->pub)
			continue;
		json_array_append_new(list, json_string(u->uid));
		if (part_full(&n, &bytes, u->uid)) {
			send_snap_part(l, list, k++, 0);
			list = json_array();
		}
	}
	send_snap_part(l, list, k, 1);
}

static void send_heartbeat(struct live *l)
{
	int64_t applied = 0, lag = 0;
	json_t *o = msg_new(l, "hb");

	l->figures(l->arg, &applied, &lag);
	json_object_set_new(o, "q", json_integer((json_int_t)l->q));
	json_object_set_new(o, "c",
			    json_integer((json_int_t)(metrics.conns_opened -
						      metrics.conns_closed)));
	json_object_set_new(o, "a", json_integer(applied));
	json_object_set_new(o, "l", json_integer(lag));
	json_object_set_new(o, "ver", json_string(BS_VERSION));
	json_object_set_new(o, "since", json_integer(l->since_ms));
	send_msg(l, o);
}

/* ---- other nodes' sets ---- */

static void feed(struct live *l, const char *uid, int delta)
{
	if (l->e->on_presence)
		l->e->on_presence(l->e->on_presence_arg, uid, delta);
}

static void dropped(const char *what, const char *node)
{
	if (metrics.cluster.live_dropped++ % 1000 == 0)
		log_warn("cluster.live_drop", "what=%s node=%s count=%llu",
			 what, log_val(node),
			 (unsigned long long)metrics.cluster.live_dropped);
}

static void uid_add(struct live *l, struct rnode *r, const char *uid)
{
	struct ruid *u;
	size_t len = strlen(uid);

	HASH_FIND(hh, r->uids, uid, len, u);
	if (u) {
		u->mark = 1;
		return;
	}
	if (!name_ok(uid, AUTH_UID_MAX)) {
		dropped("uid", r->name);
		return;
	}
	if (r->nuids >= LIVE_MAX_UIDS || l->remote_uids >= LIVE_MAX_REMOTE) {
		dropped("uids", r->name);
		return;
	}
	u = xmalloc(sizeof(*u) + len + 1);
	memcpy(u->uid, uid, len + 1);
	u->mark = 1;
	HASH_ADD_KEYPTR(hh, r->uids, u->uid, len, u);
	r->nuids++;
	l->remote_uids++;
	feed(l, u->uid, 1);
}

static void uid_del(struct live *l, struct rnode *r, struct ruid *u)
{
	HASH_DEL(r->uids, u);
	r->nuids--;
	l->remote_uids--;
	feed(l, u->uid, -1);
	free(u);
}

/* Forget r's set (its uids leave, after the broker's grace). */
static void node_clear(struct live *l, struct rnode *r)
{
	struct ruid *u, *tmp;

	HASH_ITER(hh, r->uids, u, tmp)
	uid_del(l, r, u);
	r->synced = 0;
	r->snap_k = -1;
}

static void node_drop(struct live *l, struct rnode *r, const char *why)
{
	log_info("cluster.node_gone", "node=%s instance=%s why=%s",
		 log_val(r->name), r->inst, why);
	node_clear(l, r);
	HASH_DEL(l->nodes, r);
	free(r);
}

static void ask_sync(struct live *l, struct rnode *r)
{
	int64_t now = mono_ms();
	json_t *o;

	r->synced = 0;
	if (l->e->on_presence == NULL || now - r->asked < LIVE_ASK_MS)
		return;
	r->asked = now;
	metrics.cluster.live_resyncs++;
	o = msg_new(l, "sync");
	json_object_set_new(o, "to", json_string(r->inst));
	send_msg(l, o);
}

/* A string field of at most max bytes that passes the id rule. */
static const char *field(json_t *o, const char *k, size_t max)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s && name_ok(s, max) ? s : NULL;
}

static void on_heartbeat(struct live *l, json_t *o, const char *name,
			 const char *inst)
{
	struct rnode *r;
	const char *ver = field(o, "ver", LIVE_VER_MAX);
	uint64_t q = (uint64_t)json_integer_value(json_object_get(o, "q"));
	int fresh = 1;

	if (strcmp(name, l->node) == 0) {
		/* names are unique in a cluster: one of the two is misnamed */
		if (mono_ms() - l->clash_logged >= LIVE_DROP_MS) {
			l->clash_logged = mono_ms();
			log_error("cluster.node_name",
				  "node=%s instance=%s "
				  "other=%s msg=%s",
				  log_val(name), l->inst, inst,
				  "another node has this --node name");
		}
		return;
	}
	HASH_FIND_STR(l->nodes, name, r);
	if (r == NULL) {
		if (HASH_COUNT(l->nodes) >= LIVE_MAX_NODES) {
			dropped("nodes", name);
			return;
		}
		r = xcalloc(1, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%s", name);
		HASH_ADD_STR(l->nodes, name, r);
		r->snap_k = -1;
		r->asked = mono_ms() - LIVE_ASK_MS;
		log_info("cluster.node_seen", "node=%s instance=%s",
			 log_val(name), inst);
	} else if (strcmp(r->inst, inst) != 0) {
		/* restarted: what the old process said is void (two live
		 * processes under one name would flap here: both warn) */
		log_info("cluster.node_seen", "node=%s instance=%s was=%s",
			 log_val(name), inst, r->inst);
		node_clear(l, r);
	} else {
		fresh = 0;
	}
	if (fresh) {
		snprintf(r->inst, sizeof(r->inst), "%s", inst);
		r->q = 0;
		/* A process that never changed its set has none. */
		r->synced = q == 0 && l->e->on_presence != NULL;
	}
	r->seen = mono_ms();
	snprintf(r->version, sizeof(r->version), "%s", ver ? ver : "");
	r->since_ms = json_integer_value(json_object_get(o, "since"));
	r->connections = json_integer_value(json_object_get(o, "c"));
	r->applied = json_integer_value(json_object_get(o, "a"));
	r->lag = json_integer_value(json_object_get(o, "l"));
	if (!r->synced || q != r->q)
		ask_sync(l, r);
}

static void uid_list(struct live *l, struct rnode *r, json_t *a, int on)
{
	size_t i;
	json_t *v;
	struct ruid *u;

	json_array_foreach(a, i, v)
	{
		const char *uid = json_string_value(v);

		if (uid == NULL)
			continue;
		if (on) {
			uid_add(l, r, uid);
			continue;
		}
		HASH_FIND_STR(r->uids, uid, u);
		if (u)
			uid_del(l, r, u);
	}
}

static void on_delta(struct live *l, struct rnode *r, json_t *o)
{
	uint64_t q = (uint64_t)json_integer_value(json_object_get(o, "q"));

	if (!r->synced)
		return; /* a snap is on its way */
	if (l->e->on_presence == NULL || q != r->q + 1) {
		ask_sync(l, r); /* missed one (or nobody listens yet) */
		return;
	}
	r->q = q;
	uid_list(l, r, json_object_get(o, "on"), 1);
	uid_list(l, r, json_object_get(o, "off"), 0);
}

static void on_snap(struct live *l, struct rnode *r, json_t *o)
{
	uint64_t q = (uint64_t)json_integer_value(json_object_get(o, "q"));
	long k = (long)json_integer_value(json_object_get(o, "k"));
	struct ruid *u, *tmp;

	if (l->e->on_presence == NULL)
		return;
	if (k == 0) {
		if (r->synced && r->q == q) {
			r->snap_k = -1; /* asked by another node: ours holds */
			return;
		}
		HASH_ITER(hh, r->uids, u, tmp)
		u->mark = 0;
		r->snap_k = 0;
		r->snap_q = q;
		r->synced = 0;
	} else if (k != r->snap_k || q != r->snap_q) {
		r->snap_k = -1; /* a part missed: ask again at its heartbeat */
		return;
	}
	uid_list(l, r, json_object_get(o, "u"), 1);
	r->snap_k = k + 1;
	if (!json_is_true(json_object_get(o, "end")))
		return;
	HASH_ITER(hh, r->uids, u, tmp)
	if (!u->mark)
		uid_del(l, r, u);
	r->snap_k = -1;
	r->q = q;
	r->synced = 1;
}

static void want_snap(struct live *l)
{
	if (mono_ms() - l->snap_at >= LIVE_SNAP_MS)
		send_snap(l);
	else
		l->snap_want = 1; /* at the next tick */
}

/* One message of another node, checked (v, t, n, i), not ours. */
static void handle(struct live *l, json_t *o)
{
	const char *type = json_string_value(json_object_get(o, "t"));
	const char *name = json_string_value(json_object_get(o, "n"));
	const char *inst = json_string_value(json_object_get(o, "i"));
	const char *to;
	struct rnode *r;

	if (strcmp(type, "hb") == 0) {
		on_heartbeat(l, o, name, inst);
		return;
	}
	if (strcmp(type, "sync") == 0) {
		to = json_string_value(json_object_get(o, "to"));
		if (to && strcmp(to, l->inst) == 0)
			want_snap(l);
		return;
	}
	HASH_FIND_STR(l->nodes, name, r);
	if (r == NULL || strcmp(r->inst, inst) != 0)
		return;	     /* known from its heartbeats only */
	r->seen = mono_ms(); /* alive */
	if (strcmp(type, "d") == 0)
		on_delta(l, r, o);
	else if (strcmp(type, "snap") == 0)
		on_snap(l, r, o);
	else if (strcmp(type, "bye") == 0)
		node_drop(l, r, "bye");
}

/* The uids a message names: the work it is for the loop. */
static size_t cost(json_t *o)
{
	return 1 + json_array_size(json_object_get(o, "on")) +
	       json_array_size(json_object_get(o, "off")) +
	       json_array_size(json_object_get(o, "u"));
}

static void work_later(struct live *l)
{
	static const struct timeval now = {0, 0};

	if (!evtimer_pending(l->work_ev, NULL))
		evtimer_add(l->work_ev, &now);
}

/* In arrival order, about LIVE_TURN_UIDS uids per loop turn (a node's
 * snapshot of 100000 users is many turns, not one long one); the next
 * part after the loop has polled again. */
static void work_cb(evutil_socket_t fd, short what, void *arg)
{
	struct live *l = arg;
	struct pending *p;
	size_t done = 0;
	(void)fd;
	(void)what;

	while ((p = l->qhead) && done < LIVE_TURN_UIDS) {
		l->qhead = p->next;
		if (l->qhead == NULL)
			l->qtail = NULL;
		l->qbytes -= p->len;
		done += cost(p->o);
		handle(l, p->o);
		json_decref(p->o);
		free(p);
	}
	if (l->qhead)
		work_later(l);
}

static void on_msg(void *arg, const char *subject, const void *data, size_t len)
{
	struct live *l = arg;
	json_t *o;
	const char *type, *name, *inst;
	struct pending *p;
	(void)subject;

	if (len > LIVE_MSG_MAX) {
		dropped("size", NULL);
		return;
	}
	o = json_loadb(data, len, 0, NULL);
	type = json_string_value(json_object_get(o, "t"));
	name = field(o, "n", LIVE_NAME_MAX);
	inst = field(o, "i", LIVE_INST_MAX);
	if (json_integer_value(json_object_get(o, "v")) != 1 || !type ||
	    !name || !inst) {
		dropped("message", name);
		json_decref(o);
		return;
	}
	if (strcmp(inst, l->inst) == 0 || l->stopping) {
		json_decref(o); /* our own */
		return;
	}
	if (l->qbytes + len > LIVE_QUEUE_BYTES) {
		dropped("backlog", name); /* a gap: the node resyncs later */
		json_decref(o);
		return;
	}
	p = xmalloc(sizeof(*p));
	p->next = NULL;
	p->o = o;
	p->len = len;
	if (l->qtail)
		l->qtail->next = p;
	else
		l->qhead = p;
	l->qtail = p;
	l->qbytes += len;
	work_later(l);
}

/* Every second: our heartbeat, a snap owed, the silent nodes. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct live *l = arg;
	struct rnode *r, *tmp;
	int64_t now = mono_ms();
	(void)fd;
	(void)what;

	if (l->stopping)
		return;
	flush_cb(-1, 0, l); /* the heartbeat's q covers every change */
	send_heartbeat(l);
	if (l->snap_want)
		send_snap(l);
	/* Behind with their messages: who is silent cannot be told now. */
	if (l->qhead == NULL)
		HASH_ITER(hh, l->nodes, r, tmp)
		{
			if (now - r->seen >= LIVE_DROP_MS)
				node_drop(l, r, "silent");
			else if (now - r->seen >= LIVE_PRESENCE_MS &&
				 (r->synced || r->nuids))
				node_clear(l, r);
		}
	metrics.cluster.live_nodes = HASH_COUNT(l->nodes);
	metrics.cluster.live_remote_uids = l->remote_uids;
}

/* ---- the interface ---- */

void live_presence(struct live *l, const char *uid, int online)
{
	struct luid *u;
	size_t len = strlen(uid);

	if (l->stopping)
		return; /* the others dropped us */
	HASH_FIND(hh, l->local, uid, len, u);
	if (u == NULL) {
		if (!online)
			return;
		u = xcalloc(1, sizeof(*u) + len + 1);
		memcpy(u->uid, uid, len + 1);
		HASH_ADD_KEYPTR(hh, l->local, u->uid, len, u);
	}
	u->cur = online ? 1 : 0;
	if (!u->dirty) {
		u->dirty = 1;
		u->dnext = l->dirty;
		l->dirty = u;
	}
	event_active(l->flush_ev, EV_TIMEOUT, 0);
}

void live_nodes(struct live *l, engine_node_fn fn, void *arg)
{
	struct engine_node n = {
		.node = l->node,
		.version = BS_VERSION,
		.since_ms = l->since_ms,
		.connections =
			(int64_t)(metrics.conns_opened - metrics.conns_closed),
	};
	struct rnode *r, *tmp;
	int64_t now = mono_ms();

	l->figures(l->arg, &n.applied_seq, &n.lag);
	fn(arg, &n);
	HASH_ITER(hh, l->nodes, r, tmp)
	{
		n.node = r->name;
		n.version = r->version;
		n.since_ms = r->since_ms;
		n.connections = r->connections;
		n.applied_seq = r->applied;
		n.lag = r->lag;
		n.age_ms = now - r->seen;
		fn(arg, &n);
	}
}

struct live *live_create(const struct live_config *c)
{
	struct live *l = xcalloc(1, sizeof(*l));
	struct timeval hb = {LIVE_HB_MS / 1000, 0};
	size_t n = strlen(c->stream) + 32;

	l->base = c->base;
	l->link = c->link;
	l->e = c->engine;
	l->node = xstrdup(c->node);
	l->inst = xstrdup(c->instance);
	l->subject = xmalloc(n);
	snprintf(l->subject, n, "_basestation.%s.live", c->stream);
	l->figures = c->figures;
	l->arg = c->arg;
	l->since_ms = now_ms();
	l->snap_at = mono_ms() - LIVE_SNAP_MS;
	l->tick_ev = event_new(c->base, -1, EV_PERSIST, tick_cb, l);
	l->flush_ev = event_new(c->base, -1, 0, flush_cb, l);
	l->work_ev = evtimer_new(c->base, work_cb, l);
	if (l->tick_ev == NULL || l->flush_ev == NULL || l->work_ev == NULL)
		fatal("event_new failed");
	l->sub = bsjs_subscribe(l->link, l->subject, on_msg, l);
	if (l->sub == NULL)
		fatal("cluster: cannot subscribe to %s", l->subject);
	event_add(l->tick_ev, &hb);
	return l;
}

void live_stop(struct live *l)
{
	if (l == NULL || l->stopping)
		return;
	l->stopping = 1;
	send_msg(l, msg_new(l, "bye"));
}

void live_destroy(struct live *l)
{
	struct luid *u, *ut;
	struct rnode *r, *rt;

	if (l == NULL)
		return;
	live_stop(l);
	bsjs_unsubscribe(l->sub);
	event_free(l->tick_ev);
	event_free(l->flush_ev);
	event_free(l->work_ev);
	while (l->qhead) {
		struct pending *p = l->qhead;

		l->qhead = p->next;
		json_decref(p->o);
		free(p);
	}
	HASH_ITER(hh, l->local, u, ut)
	{
		HASH_DEL(l->local, u);
		free(u);
	}
	HASH_ITER(hh, l->nodes, r, rt)
	{
		struct ruid *x, *xt;

		HASH_ITER(hh, r->uids, x, xt)
		{
			HASH_DEL(r->uids, x);
			free(x);
		}
		HASH_DEL(l->nodes, r);
		free(r);
	}
	free(l->node);
	free(l->inst);
	free(l->subject);
	free(l);
}
