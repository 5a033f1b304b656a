/*
 * Where a message goes: direct messages, rooms, the offline inbox and
 * resume. Every message is stored under one global seq inside the loop
 * turn's transaction; acks and deliveries happen only after the commit
 * (router_post_commit), so nobody ever sees a seq that a crash could undo.
 */
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "basestation/metrics.h"
#include "basestation/sb.h"
#include "basestation/shbuf.h"
#include "basestation/store.h"
#include "basestation/tasks.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_CHUNK  256
#define REPLAY_BUDGET 2048 /* rows per loop turn, all connections */

/* {"type":"message","seq":N,"from":..,"to"|"room":..,"data":..,"ts":..} */
static struct shbuf *frame_message(const struct stored_msg *m)
{
	struct sb b;
	struct shbuf *f;

	sb_init(&b, 96 + m->data_len);
	sb_adds(&b, "{\"type\":\"message\",\"seq\":");
	sb_addi(&b, m->seq);
	sb_adds(&b, ",\"from\":");
	sb_add_jstr(&b, m->sender);
	if (m->room) {
		sb_adds(&b, ",\"room\":");
		sb_add_jstr(&b, m->room);
	} else {
		sb_adds(&b, ",\"to\":");
		sb_add_jstr(&b, m->to);
	}
	sb_adds(&b, ",\"data\":");
	sb_add(&b, m->data, m->data_len);
	sb_adds(&b, ",\"ts\":");
	sb_addi(&b, m->ts);
	sb_add(&b, "}", 1);
	f = shbuf_frame_text(b.p, b.n);
	sb_free(&b);
	return f;
}

static struct post *post_new(enum post_kind kind)
{
	struct post *p = xcalloc(1, sizeof(*p));
	p->kind = kind;
	return p;
}

static void fail_sender(struct conn *from, struct evhttp_request *req,
			json_t *ref, const char *why)
{
	if (from)
		conn_send_error(from, ref, "internal", "%s", why);
	if (req)
		http_reply_json(req, 503, json_pack("{s:s}", "error", why));
}

void router_send(struct conn *from, const char *from_uid, const char *to_uid,
		 const char *room, json_t *data, const char *data_raw,
		 size_t data_raw_len, json_t *ref, struct evhttp_request *req)
{
	struct stored_msg m = {0};
	char *key = NULL, *text = NULL;
	struct post *p;
	int64_t seq;
	int found;

	if (server_write_begin() < 0) {
		fail_sender(from, req, ref, "store unavailable");
		return;
	}
	if (ref) {
		key = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
		found = store_idem_get(srv->store, from_uid, key, &seq);
		if (found < 0)
			goto fail;
		if (found) {
			/* A resend: ack again with the original seq. */
			p = post_new(POST_ACK);
			p->seq = seq;
			p->conn_id = from ? from->id : 0;
			p->ref = json_incref(ref);
			p->req = req;
			server_post(p);
			free(key);
			return;
		}
	}
	if (data_raw == NULL) {
		text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
		if (text == NULL)
			goto fail;
		data_raw = text;
		data_raw_len = strlen(text);
	}
	/* What a client may not send, a backend may not either: every
	 * message fits the WebSocket limit. */
	if (req && data_raw_len > srv->cfg->max_message) {
		http_error(req, 413, "'data' is larger than --max-message");
		free(text);
		free(key);
		return;
	}
	m.seq = srv->last_seq + 1;
	m.ts = now_ms();
	m.sender = from_uid;
	m.to = room ? NULL : to_uid;
	m.room = room;
	m.data = data_raw;
	m.data_len = data_raw_len;
	if (store_msg_insert(srv->store, &m) < 0 ||
	    (key && store_idem_put(srv->store, from_uid, key, m.seq, m.ts) < 0))
		goto fail;
	srv->last_seq = m.seq;
	/* Retention looks at the table again next turn (a few index reads):
	 * under a flood it stays at its bounds. */
	server_prune_soon();
	p = post_new(POST_MESSAGE);
	p->seq = m.seq;
	p->conn_id = from ? from->id : 0;
	p->ref = ref ? json_incref(ref) : NULL;
	p->frame = frame_message(&m);
	/* Only names: a room nobody is in gets no record (the message is
	 * stored all the same, bounded by retention like any other). */
	if (room)
		p->room_name = xstrdup(room);
	else
		p->to_uid = xstrdup(to_uid);
	p->req = req;
	server_post(p);
	free(text);
	free(key);
	return;
fail:
	free(text);
	free(key);
	fail_sender(from, req, ref, "could not store the message");
}

static void send_ack(struct post *p)
{
	struct conn *c;
	struct sb b;
	char *ref;

	if (p->req) {
		http_reply_json(p->req, 200,
				json_pack("{s:I}", "seq", (json_int_t)p->seq));
		return;
	}
	c = conn_find(p->conn_id);
	if (c == NULL || c->state != CONN_OPEN)
		return;
	/* {"type":"ack","seq":N[,"ref":…]}, built by hand: one per message */
	sb_init(&b, 64);
	sb_adds(&b, "{\"type\":\"ack\",\"seq\":");
	sb_addi(&b, p->seq);
	if (p->ref && (ref = json_dumps(p->ref, JSON_ENCODE_ANY)) != NULL) {
		sb_adds(&b, ",\"ref\":");
		sb_adds(&b, ref);
		free(ref);
	}
	sb_add(&b, "}", 1);
	metrics.acks++;
	conn_send_text(c, b.p, b.n);
	sb_free(&b);
}

void router_deliver(struct conn *c, int64_t seq, struct shbuf *frame)
{
	if (c->state != CONN_OPEN || seq <= c->last_seq)
		return;
	if (c->replaying) {
		struct held *h;
		/* Held messages count against the output limit: a connection
		 * whose replay cannot keep up with live traffic is cut and
		 * resumes later, rather than growing without bound. */
		if (c->held_bytes + frame->len > srv->cfg->max_outbuf) {
			conn_cut_slow(c, c->held_bytes);
			return;
		}
		c->held_bytes += frame->len;
		h = xmalloc(sizeof(*h));
		h->next = NULL;
		h->seq = seq;
		h->frame = frame;
		shbuf_ref(frame);
		if (c->held_tail)
			c->held_tail->next = h;
		else
			c->held_head = h;
		c->held_tail = h;
		return;
	}
	c->last_seq = seq;
	conn_send_frame(c, frame);
}

static void fan_out(struct post *p)
{
	struct room *r;

	/* Both looked up now, not when stored: a connection that opened in
	 * between has already replayed up to the last commit. */
	if (p->room_name) {
		if ((r = registry_room(p->room_name, 0)) == NULL)
			return; /* no member (left since) */
		/* A delivery can shrink the room's connection list (a slow
		 * consumer is detached; the room stays, its membership does
		 * not change), so re-check the slot before moving on. */
		for (int i = 0; i < r->nconns;) {
			struct conn *c = r->conns[i];
			if (c->id != p->conn_id)
				router_deliver(c, p->seq, p->frame);
			if (i < r->nconns && r->conns[i] == c)
				i++;
		}
	} else if (p->to_uid) {
		/* A cut slow consumer may free u with its last connection;
		 * then next is NULL. */
		struct user *u = registry_user(p->to_uid, 0);
		struct conn *c = u ? u->conns : NULL, *next;
		for (; c; c = next) {
			next = c->unext;
			router_deliver(c, p->seq, p->frame);
		}
	}
}

/* While router_post_commit runs: the seq up to which its messages have
 * gone to their live connections (-1 otherwise: then every committed
 * message has). */
static int64_t fanned_upto = -1;

int64_t router_delivered(const struct conn *c)
{
	if (c->replaying)
		return c->last_seq;
	return fanned_upto >= 0 ? fanned_upto : srv->committed_seq;
}

void router_post_commit(int ok)
{
	struct post *p;

	/* committed_seq already counts this batch: until a message is fanned
	 * out, its connections have not been given it. */
	for (p = srv->post_head; p && p->kind != POST_MESSAGE; p = p->next)
		;
	if (p && ok)
		fanned_upto = p->seq - 1;
	while ((p = srv->post_head) != NULL) {
		srv->post_head = p->next;
		if (srv->post_head == NULL)
			srv->post_tail = &srv->post_head;
		switch (p->kind) {
		case POST_MESSAGE:
			if (ok) {
				metrics.stored++;
				fan_out(p);
				fanned_upto = p->seq;
				send_ack(p);
			} else {
				fail_sender(conn_find(p->conn_id), p->req,
					    p->ref, "commit failed");
			}
			break;
		case POST_ACK:
			if (ok)
				send_ack(p);
			else
				fail_sender(conn_find(p->conn_id), p->req,
					    p->ref, "commit failed");
			break;
		case POST_REPLY: {
			struct conn *c = conn_find(p->conn_id);
			if (p->req && ok)
				http_reply_json(p->req, p->http_status,
						json_incref(p->http_body));
			else if (p->req)
				http_error(p->req, 503, "commit failed");
			else if (c && ok)
				conn_send_frame(c, p->frame);
			else if (c)
				conn_send_error(c, p->ref, "internal",
						"commit failed");
			break;
		}
		case POST_TASK:
			tasks_post_commit(p, ok);
			break;
		}
		shbuf_unref(p->frame);
		json_decref(p->ref);
		json_decref(p->http_body);
		free(p->snap);
		free(p->to_uid);
		free(p->room_name);
		free(p);
	}
	fanned_upto = -1;
}

/* ---- rooms ---- */

static void reply_after_commit(struct conn *c, json_t *obj, json_t *ref)
{
	struct post *p = post_new(POST_REPLY);
	char *s;
	if (ref)
		json_object_set(obj, "ref", ref);
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	p->conn_id = c->id;
	p->ref = ref ? json_incref(ref) : NULL;
	p->frame = shbuf_frame_text(s, strlen(s));
	free(s);
	server_post(p);
}

void router_join(struct conn *c, const char *name, json_t *ref)
{
	struct user *u = c->user;
	struct room *r = registry_room(name, 0);

	/* Refusals make no record: the room exists once it has a member. */
	if (r == NULL || !registry_is_member(u, r)) {
		if (u->nrooms >= srv->cfg->max_rooms) {
			conn_send_error(c, ref, "forbidden",
					"at most %d rooms per user",
					srv->cfg->max_rooms);
			return;
		}
		if (server_write_begin() < 0 ||
		    store_member_put(srv->store, name, u->uid, srv->last_seq,
				     now_ms()) < 0) {
			conn_send_error(c, ref, "internal",
					"store unavailable");
			return;
		}
		registry_join(u, registry_room(name, 1), srv->last_seq);
		log_info("room.join", "room=%s uid=%s", log_val(name),
			 log_val(u->uid));
	}
	if (store_in_tx(srv->store))
		reply_after_commit(
			c,
			json_pack("{s:s, s:s}", "type", "joined", "room", name),
			ref);
	else {
		json_t *o =
			json_pack("{s:s, s:s}", "type", "joined", "room", name);
		if (ref)
			json_object_set(o, "ref", ref);
		conn_send_json(c, o);
	}
}

void router_leave(struct conn *c, const char *name, json_t *ref)
{
	struct user *u = c->user;
	struct room *r = registry_room(name, 0);
	json_t *o = json_pack("{s:s, s:s}", "type", "left", "room", name);

	if (r && registry_is_member(u, r)) {
		if (server_write_begin() < 0 ||
		    store_member_del(srv->store, name, u->uid) < 0) {
			json_decref(o);
			conn_send_error(c, ref, "internal",
					"store unavailable");
			return;
		}
		registry_leave(u, r);
		log_info("room.leave", "room=%s uid=%s", log_val(name),
			 log_val(u->uid));
		reply_after_commit(c, o, ref);
		return;
	}
	if (ref)
		json_object_set(o, "ref", ref);
	conn_send_json(c, o);
}

void router_presence(struct conn *c, const char *name, json_t *ref)
{
	struct room *r = registry_room(name, 0);
	json_t *online = json_array();
	struct member *m, *tmp;

	if (r) {
		HASH_ITER(hh, r->members, m, tmp)
		{
			if (m->user->nconns > 0)
				json_array_append_new(
					online, json_string(m->user->uid));
		}
	}
	json_t *o = json_pack("{s:s, s:s, s:o}", "type", "presence", "room",
			      name, "online", online);
	if (ref)
		json_object_set(o, "ref", ref);
	conn_send_json(c, o);
}

/* ---- replay: resume and offline inbox ---- */

static void replay_enqueue(struct conn *c)
{
	if (c->in_replay_queue)
		return;
	c->in_replay_queue = 1;
	c->rnext = NULL;
	if (srv->replay_tail)
		srv->replay_tail->rnext = c;
	else
		srv->replay_head = c;
	srv->replay_tail = c;
	event_active(srv->replay_ev, EV_TIMEOUT, 0);
}

void router_replay_start(struct conn *c, int64_t since, int report,
			 int epoch_ok, json_t *ref)
{
	if (c->replaying) {
		conn_send_error(c, ref, "bad_request",
				"a replay is already running");
		return;
	}
	c->replay_report = report;
	c->replay_complete = 1;
	if (since < 0) {
		/* Offline inbox: only for the user's first connection. */
		if (c->user->nconns > 1)
			return;
		since = c->user->cursor;
	}
	if (!epoch_ok) {
		/* The client's seq names another history: all of ours. */
		c->replay_complete = 0;
		c->replay_since = since;
		since = 0;
	} else {
		c->replay_since = since;
	}
	/* Retention removed some of it, or the client has seen seqs we never
	 * had (a database restored from an older backup): not whole. */
	if (since < srv->pruned_max_seq || since > srv->committed_seq)
		c->replay_complete = 0;
	if (since > srv->committed_seq)
		since = srv->committed_seq;
	if (since < c->last_seq)
		since = c->last_seq;
	c->replaying = 1;
	c->replay_count = 0;
	c->replay_upto = srv->committed_seq;
	c->last_seq = since;
	json_decref(c->replay_ref);
	c->replay_ref = ref ? json_incref(ref) : NULL;
	replay_enqueue(c);
}

/* Send one replayed row, unless c's output is half full: then stop this
 * chunk (the row is fetched again from last_seq once the output drains). */
static void replay_row(void *arg, const struct stored_msg *m)
{
	struct conn *c = arg;
	struct shbuf *f;
	uint64_t buffered;

	if (c->wait_drain || m->seq <= c->last_seq || c->state != CONN_OPEN)
		return;
	buffered = conn_out_buffered(c);
	if (buffered > 0 &&
	    buffered + m->data_len + 128 > srv->cfg->max_outbuf / 2) {
		c->wait_drain = 1;
		return;
	}
	f = frame_message(m);
	c->last_seq = m->seq;
	conn_send_frame(c, f);
	shbuf_unref(f);
	c->replay_count++;
	metrics.replayed++;
}

static void replay_finish(struct conn *c)
{
	struct held *h;

	c->replaying = 0;
	if (c->replay_report) {
		json_t *o =
			json_pack("{s:s, s:I, s:I, s:b}", "type", "resumed",
				  "since", (json_int_t)c->replay_since, "last",
				  (json_int_t)(c->last_seq > c->replay_upto
						       ? c->last_seq
						       : c->replay_upto),
				  "complete", c->replay_complete);
		if (c->replay_ref)
			json_object_set(o, "ref", c->replay_ref);
		conn_send_json(c, o);
	}
	if (c->last_seq < c->replay_upto)
		c->last_seq = c->replay_upto;
	json_decref(c->replay_ref);
	c->replay_ref = NULL;
	/* Live messages that arrived meanwhile, in seq order, no repeats. */
	while ((h = c->held_head) != NULL) {
		c->held_head = h->next;
		if (c->state == CONN_OPEN && h->seq > c->last_seq) {
			c->last_seq = h->seq;
			conn_send_frame(c, h->frame);
		}
		shbuf_unref(h->frame);
		free(h);
	}
	c->held_tail = NULL;
	c->held_bytes = 0;
}

/* One chunk for c. Returns 1 when c's replay is over. */
static int replay_chunk(struct conn *c, int *budget)
{
	/* --max-replay bounds a resume (since). The offline inbox is owed
	 * whole: what it holds is bounded by retention, and it goes in the
	 * same chunks, paced by the client's reading. */
	int limit = REPLAY_CHUNK, n;
	int left = c->replay_report ? srv->cfg->max_replay - c->replay_count
				    : REPLAY_CHUNK;

	if (c->state != CONN_OPEN)
		return 1;
	if (left <= 0) {
		/* The rest is skipped: say so. */
		c->replay_complete = 0;
		replay_finish(c);
		return 1;
	}
	if (limit > left)
		limit = left;
	/* The statement reads the uid while replay_row sends: a copy, since
	 * a connection cut on the way may free its user record. */
	char uid[AUTH_UID_MAX + 1];
	snprintf(uid, sizeof(uid), "%s", c->user->uid);
	n = store_replay(srv->store, uid, c->last_seq, c->replay_upto, limit,
			 replay_row, c);
	if (n < 0) {
		c->replay_complete = 0;
		replay_finish(c);
		return 1;
	}
	*budget -= n;
	if (c->wait_drain)
		return 0; /* conn.c calls us again when the output drains */
	if (n < limit) {
		replay_finish(c);
		return 1;
	}
	return 0;
}

void router_replay_continue(void)
{
	int budget = REPLAY_BUDGET;
	struct conn *c;

	while (budget > 0 && (c = srv->replay_head) != NULL) {
		srv->replay_head = c->rnext;
		if (srv->replay_head == NULL)
			srv->replay_tail = NULL;
		c->in_replay_queue = 0;
		if (!replay_chunk(c, &budget) && !c->wait_drain)
			replay_enqueue(c);
	}
	if (srv->replay_head)
		event_active(srv->replay_ev, EV_TIMEOUT, 0);
}

void router_replay_continue_conn(struct conn *c)
{
	if (c->replaying)
		replay_enqueue(c);
}

/* ---- retention ---- */

/* Rows one prune step deletes at most, of messages and of idempotency keys
 * each: a few ms of work, plus as many rows as were stored since the step
 * before. While steps delete something the next one runs on the next loop
 * turn (server.c), so deleting keeps pace with any rate of storing, and no
 * turn stalls the loop for long. */
#define PRUNE_BATCH 1000

int router_prune(void)
{
	static int64_t last_step_seq = -1, logged_at, unlogged, unlogged_idem;
	const struct config *cfg = srv->cfg;
	int64_t now = now_ms(), max_deleted = 0;
	int64_t before =
		cfg->retention_age > 0 ? now - cfg->retention_age * 1000 : 0;
	int64_t below = cfg->retention_count > 0 && srv->committed_seq >
							    cfg->retention_count
				? srv->committed_seq - cfg->retention_count
				: 0;
	int64_t idem_before = now - 86400 * 1000LL;
	int64_t stored = last_step_seq < 0 || srv->committed_seq < last_step_seq
				 ? 0
				 : srv->committed_seq - last_step_seq;
	int budget = PRUNE_BATCH + (int)(stored < INT_MAX / 2 ? stored : 0);
	int n, idem = 0;

	last_step_seq = srv->committed_seq;
	/* Nothing old enough: no write transaction, no lock. */
	if (!store_prune_needed(srv->store, before, below, idem_before) ||
	    server_write_begin() < 0)
		return 0;
	n = store_prune(srv->store, before, below, idem_before, budget,
			&max_deleted, &idem);
	if (n > 0) {
		metrics.retention += (uint64_t)n;
		if (max_deleted > srv->pruned_max_seq) {
			srv->pruned_max_seq = max_deleted;
			store_counter_set(srv->store, "pruned_max_seq",
					  max_deleted);
		}
		store_counter_set(srv->store, "pruned_total",
				  (int64_t)metrics.retention);
	}
	/* Steps run every loop turn under load: one line a second at most. */
	unlogged += n;
	unlogged_idem += idem;
	if ((unlogged || unlogged_idem) && now - logged_at >= 1000) {
		log_info("store.prune", "deleted=%lld idem=%lld upto=%lld",
			 (long long)unlogged, (long long)unlogged_idem,
			 (long long)srv->pruned_max_seq);
		unlogged = unlogged_idem = 0;
		logged_at = now;
	}
	/* Whatever it deleted, the next step looks again at the next turn:
	 * under a steady flood the table stays at its bound, not a second's
	 * worth of messages above it. */
	return n > 0 || idem > 0;
}

/* Rows of each kind one sweep deletes at most: a few ms, once a second. */
#define SWEEP_ROWS 256
#define DAY_MS	   (86400 * 1000LL)

void router_sweep(void)
{
	/* Where the walk over users stopped: one window of uids a second. */
	static char users_after[AUTH_UID_MAX + 1];
	char upto[AUTH_UID_MAX + 1];
	const struct config *cfg = srv->cfg;
	int64_t now = now_ms();
	/* Tokens a day past their expiry (so every connection was closed
	 * with "token expired" first); token changes the broker has read
	 * (a new start reads from the newest on); inbox cursors of users not
	 * seen for --retention-age whose messages retention has deleted. */
	struct store_sweep w = {
		.tokens_before = now - DAY_MS,
		.changes_upto = srv->token_seq,
		.users_seen_before = cfg->retention_age > 0
					     ? now - cfg->retention_age * 1000
					     : 0,
		.users_cursor_max = srv->pruned_max_seq,
		.users_after = users_after,
	};
	int need = store_sweep_needed(srv->store, &w, SWEEP_ROWS, upto,
				      sizeof(upto));
	int n = 0;

	if (need && server_write_begin() == 0)
		n = store_sweep(srv->store, &w, need, upto, SWEEP_ROWS);
	/* The next window, or from the start once past the last uid. */
	snprintf(users_after, sizeof(users_after), "%s", upto);
	if (n > 0)
		log_info("store.sweep", "deleted=%d", n);
}
