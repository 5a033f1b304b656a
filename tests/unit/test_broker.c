/*
 * Unit tests of the broker against a fake engine (fake_engine.c) and fake
 * sessions (a sink that records what it is sent): what the engine seam
 * makes testable without a socket or a database. Delivery and acks only
 * after the commit, nothing on a failed one; idempotency (a resend is
 * acked with the original seq and delivered once); replay in seq order,
 * live messages held meanwhile and sent after "resumed" without repeats;
 * the held list bounded by --max-outbuf; tasks pushed after their commit;
 * bounded turns (the fan queue: the inbox cursor, also when the budget
 * cuts a run short; commit order across messages and task pushes; acks
 * after their fan-out);
 * presence fed with other nodes' sessions (broker_presence_remote).
 */
#include "check.h"
#include "fake_engine.h"
#include "basestation/broker.h"
#include "basestation/config.h"
#include "basestation/msgbuf.h"
#include "basestation/session.h"
#include "basestation/tasks.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GOT 64

/* A session whose sink keeps every payload it is sent. */
struct tsession {
	struct session s; /* first */
	char *got[MAX_GOT];
	int ngot;
	uint64_t buffered; /* what the sink says is queued */
	int closed;	   /* close code, or 1008 when cut */
};

static int t_deliver(struct session *s, struct msgbuf *m)
{
	struct tsession *t = (struct tsession *)s;
	if (t->closed || t->ngot == MAX_GOT)
		return -1;
	t->got[t->ngot] = malloc(m->len + 1);
	memcpy(t->got[t->ngot], msgbuf_data(m), m->len);
	t->got[t->ngot++][m->len] = '\0';
	return 0;
}

static uint64_t t_buffered(const struct session *s)
{
	return ((const struct tsession *)s)->buffered;
}

static void t_close(struct session *s, uint16_t code, const char *reason)
{
	(void)reason;
	((struct tsession *)s)->closed = code;
	session_close(s);
}

static void t_cut(struct session *s, uint64_t buffered)
{
	(void)buffered;
	t_close(s, 1008, "slow consumer");
}

static const struct session_sink test_sink = {t_deliver, t_buffered, t_close,
					      t_cut};

static struct event_base *base;
static struct engine *eng;
static struct config cfg;
static uint64_t next_id;

static struct tsession *open_session(const char *uid, enum auth_role role)
{
	struct tsession *t = calloc(1, sizeof(*t));
	struct auth_identity id = {.role = role};

	snprintf(id.uid, sizeof(id.uid), "%s", uid);
	session_init(&t->s, &test_sink, ++next_id);
	session_open(&t->s, &id);
	return t;
}

static void forget(struct tsession *t)
{
	for (int i = 0; i < t->ngot; i++)
		free(t->got[i]);
	t->ngot = 0;
}

static void free_session(struct tsession *t)
{
	session_finish(&t->s);
	forget(t);
	free(t);
}

/* Run what the broker scheduled (replay chunks). */
static void run_loop(void)
{
	for (int i = 0; i < 20; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

/* The engine's commit, then the loop turn that fans its messages out
 * (bounded turns: fanq.c) and completes their acks. */
static void commit_turn(struct engine *e, int ok)
{
	fake_engine_commit(e, ok);
	run_loop();
}

/* The seq of the n-th payload if it is a message, else -1. */
static long long msg_seq(const struct tsession *t, int n)
{
	long long seq;
	if (n >= t->ngot ||
	    sscanf(t->got[n], "{\"type\":\"message\",\"seq\":%lld", &seq) != 1)
		return -1;
	return seq;
}

static int has(const struct tsession *t, int n, const char *text)
{
	return n < t->ngot && strstr(t->got[n], text) != NULL;
}

/* A completion that records its result. */
struct got_result {
	int calls;
	enum bk_status status;
	int64_t seq;
	char body[4096];
};

static void record(const struct bk_done *d, const struct bk_result *r)
{
	struct got_result *g = d->ptr;
	g->calls++;
	g->status = r->status;
	g->seq = r->seq;
	snprintf(g->body, sizeof(g->body), "%.*s", (int)r->body_len,
		 r->body ? r->body : "");
}

static struct bk_done done_for(struct got_result *g)
{
	memset(g, 0, sizeof(*g));
	return (struct bk_done){.fn = record, .ptr = g};
}

static void send_to(struct tsession *from, const char *to, const char *room,
		    const char *data, const char *ref, struct got_result *g)
{
	struct bk_done d = done_for(g);
	json_t *r = ref ? json_string(ref) : NULL;
	broker_send(&from->s, broker_uid(&from->s), to, room, data,
		    strlen(data), r, &d);
	json_decref(r);
}

static void test_direct(void)
{
	struct tsession *a = open_session("alice", ROLE_USER);
	struct tsession *b = open_session("bob", ROLE_USER);
	struct got_result g;

	send_to(a, "bob", NULL, "{\"x\":1}", NULL, &g);
	/* Nothing before the commit: no delivery, no ack. */
	CHECK(b->ngot == 0 && g.calls == 0);
	CHECK(fake_engine_pending(eng) == 1);
	commit_turn(eng, 1);
	CHECK(g.calls == 1 && g.status == BK_OK && g.seq == 1);
	CHECK(b->ngot == 1 && msg_seq(b, 0) == 1);
	CHECK(has(b, 0, "\"from\":\"alice\"") && has(b, 0, "\"to\":\"bob\""));
	CHECK(has(b, 0, "\"data\":{\"x\":1}"));
	CHECK(a->ngot == 0);

	/* A failed commit: refused, nothing delivered, the seq not used. */
	send_to(a, "bob", NULL, "2", NULL, &g);
	commit_turn(eng, 0);
	CHECK(g.calls == 1 && g.status == BK_UNAVAILABLE);
	CHECK(b->ngot == 1);
	send_to(a, "bob", NULL, "3", NULL, &g);
	commit_turn(eng, 1);
	CHECK(g.status == BK_OK && g.seq == 2 && msg_seq(b, 1) == 2);

	/* Refused by the engine at once: completed at once. */
	fake_engine_refuse_next(eng);
	send_to(a, "bob", NULL, "4", NULL, &g);
	CHECK(g.calls == 1 && g.status == BK_UNAVAILABLE);
	CHECK(fake_engine_pending(eng) == 0);
	free_session(a);
	free_session(b);
	commit_turn(eng, 1); /* the cursors */
}

static void test_idempotency(void)
{
	struct tsession *a = open_session("ann", ROLE_USER);
	struct tsession *b = open_session("ben", ROLE_USER);
	struct got_result g1, g2, g3;
	int64_t first;

	send_to(a, "ben", NULL, "\"once\"", "k1", &g1);
	commit_turn(eng, 1);
	first = g1.seq;
	CHECK(g1.status == BK_OK && first > 0);
	/* A resend with the same ref: the original seq, delivered once. */
	send_to(a, "ben", NULL, "\"once\"", "k1", &g2);
	commit_turn(eng, 1);
	CHECK(g2.calls == 1 && g2.status == BK_OK && g2.seq == first);
	CHECK(b->ngot == 1);
	/* Another ref is another message. */
	send_to(a, "ben", NULL, "\"twice\"", "k2", &g3);
	commit_turn(eng, 1);
	CHECK(g3.seq == first + 1 && b->ngot == 2);
	CHECK(fake_engine_submitted(eng, ENGINE_MESSAGE) >= 3);
	free_session(a);
	free_session(b);
	commit_turn(eng, 1);
}

static void test_rooms(void)
{
	struct tsession *a = open_session("amy", ROLE_USER);
	struct tsession *b = open_session("bart", ROLE_USER);
	struct got_result g, j;
	struct bk_done d;

	/* Not a member: refused at once. */
	send_to(a, NULL, "r1", "1", NULL, &g);
	CHECK(g.calls == 1 && g.status == BK_FORBIDDEN);
	/* Join and publish in one turn: the join counts at once. */
	d = done_for(&j);
	broker_join(&a->s, "r1", -1, &d);
	broker_join(&b->s, "r1", -1, NULL);
	send_to(a, NULL, "r1", "\"hi\"", NULL, &g);
	CHECK(g.calls == 0 && j.calls == 0);
	commit_turn(eng, 1);
	CHECK(j.calls == 1 && j.status == BK_OK);
	CHECK(g.calls == 1 && g.status == BK_OK);
	/* The sender is not sent its own room message. */
	CHECK(a->ngot == 0);
	CHECK(b->ngot == 1 && has(b, 0, "\"room\":\"r1\""));
	free_session(a);
	free_session(b);
	commit_turn(eng, 1);
}

static void test_replay(void)
{
	struct tsession *a = open_session("al", ROLE_USER), *c;
	struct got_result g;
	int64_t s0;

	/* Five messages for "cy", who is offline. */
	for (int i = 0; i < 5; i++)
		send_to(a, "cy", NULL, "0", NULL, &g);
	commit_turn(eng, 1);
	s0 = g.seq - 5;
	c = open_session("cy", ROLE_USER);
	broker_resume(&c->s, s0 + 2, 1, 1, NULL, NULL);
	run_loop();
	/* Resume from s0 + 2: the last three, in seq order, then resumed. */
	CHECK(c->ngot == 4);
	CHECK(msg_seq(c, 0) == s0 + 3 && msg_seq(c, 1) == s0 + 4 &&
	      msg_seq(c, 2) == s0 + 5);
	CHECK(has(c, 3, "\"type\":\"resumed\"") &&
	      has(c, 3, "\"complete\":true"));
	forget(c);

	/* Held while replaying: the output is half full, so the replay
	 * waits; a live message meanwhile is held, then comes after
	 * "resumed", once. Three more while cy is offline: */
	free_session(c);
	for (int i = 0; i < 3; i++)
		send_to(a, "cy", NULL, "1", NULL, &g);
	commit_turn(eng, 1);
	c = open_session("cy", ROLE_USER);
	c->buffered = cfg.max_outbuf; /* nothing replayed yet */
	broker_resume(&c->s, s0 + 5, 1, 1, NULL, NULL);
	run_loop();
	CHECK(c->ngot == 0 && c->s.replaying && c->s.wait_drain);
	send_to(a, "cy", NULL, "2", NULL, &g); /* live: s0 + 9 */
	commit_turn(eng, 1);
	CHECK(c->ngot == 0 && session_held_bytes(&c->s) > 0);
	c->buffered = 0;
	session_drained(&c->s);
	run_loop();
	CHECK(c->ngot == 5);
	CHECK(msg_seq(c, 0) == s0 + 6 && msg_seq(c, 1) == s0 + 7 &&
	      msg_seq(c, 2) == s0 + 8);
	CHECK(has(c, 3, "\"type\":\"resumed\""));
	CHECK(msg_seq(c, 4) == s0 + 9);
	CHECK(c->s.rp == NULL && session_held_bytes(&c->s) == 0);
	/* Never twice: an old seq delivered live again is dropped. */
	CHECK(c->s.last_seq == s0 + 9);

	/* A replay already running: refused. */
	c->buffered = cfg.max_outbuf;
	broker_resume(&c->s, 0, 1, 1, NULL, NULL);
	{
		struct got_result r;
		struct bk_done d = done_for(&r);
		broker_resume(&c->s, 0, 1, 1, NULL, &d);
		CHECK(r.calls == 1 && r.status == BK_BAD_REQUEST);
	}

	/* The held list is bounded by --max-outbuf: past it, cut (1008). */
	cfg.max_outbuf = 200;
	for (int i = 0; i < 4; i++)
		send_to(a, "cy", NULL, "\"a long enough payload\"", NULL, &g);
	/* Delivered while the replay still runs (not a loop turn, which
	 * would let the replay finish first). */
	fake_engine_commit(eng, 1);
	broker_drain();
	CHECK(c->closed == 1008);
	CHECK(!c->s.open);
	cfg.max_outbuf = 1 << 20;
	free_session(a);
	free_session(c);
	commit_turn(eng, 1);
}

static void test_tasks(void)
{
	struct tsession *p = open_session("prod", ROLE_PRODUCER);
	struct got_result g, s, u;
	struct bk_done d;
	json_t *body;

	body = json_pack("{s:s, s:s, s:[s,s]}", "id", "t1", "title", "T",
			 "steps", "a", "b");
	d = done_for(&g);
	tasks_create(body, "prod", &d);
	json_decref(body);
	CHECK(g.calls == 0);
	/* Not committed yet: no such task to watch. */
	d = done_for(&s);
	tasks_subscribe(&p->s, "t1", 0, &d);
	CHECK(s.calls == 1 && s.status == BK_NOT_FOUND);
	commit_turn(eng, 1);
	CHECK(g.calls == 1 && g.status == BK_CREATED && g.seq == 1);
	CHECK(strstr(g.body, "\"id\":\"t1\"") != NULL);
	d = done_for(&s);
	tasks_subscribe(&p->s, "t1", 0, &d);
	CHECK(s.calls == 1 && s.status == BK_OK);
	/* An update: pushed to the subscriber after its commit. */
	body = json_pack("{s:i, s:s}", "step", 0, "status", "running");
	d = done_for(&u);
	tasks_update("t1", body, &d);
	json_decref(body);
	CHECK(p->ngot == 0 && u.calls == 0);
	commit_turn(eng, 1);
	CHECK(u.calls == 1 && u.status == BK_OK && u.seq == 2);
	CHECK(p->ngot == 1 && has(p, 0, "\"type\":\"task\"") &&
	      has(p, 0, "\"version\":2"));
	/* No change: completed at once, nothing pushed. */
	body = json_pack("{s:i, s:s}", "step", 0, "status", "running");
	d = done_for(&u);
	tasks_update("t1", body, &d);
	json_decref(body);
	CHECK(u.calls == 1 && u.seq == 2 && fake_engine_pending(eng) == 0);
	/* A create whose commit fails does not exist. */
	body = json_pack("{s:s, s:s}", "id", "t2", "title", "T2");
	d = done_for(&g);
	tasks_create(body, "prod", &d);
	json_decref(body);
	commit_turn(eng, 0);
	CHECK(g.calls == 1 && g.status == BK_UNAVAILABLE);
	CHECK(!tasks_exists("t2"));
	free_session(p);
	commit_turn(eng, 1);
}

/* Bounded turns (fanq.c): what a commit sends waits in the fan queue
 * until the loop turn after it. A message still queued when its
 * recipient's last session closes was not delivered: it is in the next
 * inbox, once. A task version committed after a message goes out after
 * it, and the producer's ack after both. */
static void test_turns(void)
{
	struct tsession *a = open_session("ta", ROLE_USER);
	struct tsession *b = open_session("tb", ROLE_USER);
	struct tsession *p = open_session("tp", ROLE_PRODUCER);
	struct got_result g, s, u;
	struct bk_done d;
	json_t *body;
	int64_t s0;

	/* The cursor: three messages committed, not yet fanned out. */
	send_to(a, "tb", NULL, "1", NULL, &g);
	commit_turn(eng, 1);
	s0 = g.seq;
	CHECK(b->ngot == 1 && msg_seq(b, 0) == s0);
	for (int i = 0; i < 3; i++)
		send_to(a, "tb", NULL, "2", NULL, &g);
	fake_engine_commit(eng, 1);
	CHECK(b->ngot == 1 && g.calls == 0); /* queued: no ack yet */
	free_session(b);		     /* tb's last session goes */
	commit_turn(eng, 1);
	CHECK(g.calls == 3 && g.seq == s0 + 3);
	b = open_session("tb", ROLE_USER);
	broker_resume(&b->s, -1, 0, 1, NULL, NULL); /* the offline inbox */
	run_loop();
	CHECK(b->ngot == 3);
	CHECK(msg_seq(b, 0) == s0 + 1 && msg_seq(b, 1) == s0 + 2 &&
	      msg_seq(b, 2) == s0 + 3);
	free_session(b);
	commit_turn(eng, 1);

	/* A message, then a task version, to the same user. */
	body = json_pack("{s:s, s:s, s:[s]}", "id", "tt", "title", "T", "steps",
			 "a");
	d = done_for(&g);
	tasks_create(body, "tp", &d);
	json_decref(body);
	commit_turn(eng, 1);
	d = done_for(&s);
	tasks_subscribe(&p->s, "tt", 0, &d);
	CHECK(s.calls == 1 && s.status == BK_OK);
	send_to(a, "tp", NULL, "3", NULL, &g);
	body = json_pack("{s:i, s:s}", "step", 0, "status", "running");
	d = done_for(&u);
	tasks_update("tt", body, &d);
	json_decref(body);
	fake_engine_commit(eng, 1);
	CHECK(p->ngot == 0 && g.calls == 0 && u.calls == 0);
	run_loop();
	CHECK(p->ngot == 2 && msg_seq(p, 0) == g.seq);
	CHECK(has(p, 1, "\"type\":\"task\"") && has(p, 1, "\"version\":2"));
	CHECK(g.calls == 1 && u.calls == 1 && u.seq == 2);
	free_session(a);
	free_session(p);
	commit_turn(eng, 1);
}

/* A fan-out cut short by the budget (4,096 member writes per turn): a
 * session the run already reached closes with its inbox cursor past what
 * it was sent (its next inbox repeats nothing); one it had not reached
 * closes with the cursor before the run (its next inbox has all of it). */
#define FILLER 4101
static void test_turn_budget(void)
{
	static struct tsession *f[FILLER];
	struct tsession *x = open_session("qx", ROLE_USER);
	struct tsession *s = open_session("qs", ROLE_USER);
	struct tsession *t;
	struct got_result g;
	int64_t first;

	broker_join(&x->s, "big", -1, NULL);
	broker_join(&s->s, "big", -1, NULL);
	f[0] = open_session("qf", ROLE_USER);
	broker_join(&f[0]->s, "big", -1, NULL);
	commit_turn(eng, 1);
	for (int i = 1; i < FILLER; i++)
		f[i] = open_session("qf", ROLE_USER); /* in the room at once */
	t = open_session("qt", ROLE_USER);
	broker_join(&t->s, "big", -1, NULL);
	commit_turn(eng, 1);
	/* The room's sessions: x, s, the filler, t. */
	send_to(s, NULL, "big", "1", NULL, &g);
	send_to(s, NULL, "big", "2", NULL, &g);
	fake_engine_commit(eng, 1);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK); /* one chunk */
	CHECK(x->ngot == 2 && t->ngot == 0 && g.calls == 0);
	first = msg_seq(x, 0);
	free_session(x);
	free_session(t);
	run_loop(); /* the rest of the run, then the acks */
	CHECK(g.calls == 2 && g.seq == first + 1);
	CHECK(f[FILLER - 1]->ngot == 2);
	x = open_session("qx", ROLE_USER);
	broker_resume(&x->s, -1, 0, 1, NULL, NULL);
	t = open_session("qt", ROLE_USER);
	broker_resume(&t->s, -1, 0, 1, NULL, NULL);
	run_loop();
	CHECK(x->ngot == 0);
	CHECK(t->ngot == 2 && msg_seq(t, 0) == first &&
	      msg_seq(t, 1) == first + 1);
	for (int i = 0; i < FILLER; i++)
		free_session(f[i]);
	free_session(x);
	free_session(t);
	free_session(s);
	commit_turn(eng, 1);
}

/* Run the loop for ms (the presence grace timer). */
static void run_for(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static int count(const struct tsession *t, const char *text)
{
	int n = 0;
	for (int i = 0; i < t->ngot; i++)
		n += strstr(t->got[i], text) != NULL;
	return n;
}

/* Presence counts sessions on other nodes too (the cluster engine's feed,
 * broker_presence_remote): a user online elsewhere is not announced gone
 * when its last session here closes, and is when the other node's goes. */
static void test_presence_remote(void)
{
	struct tsession *w = open_session("pw", ROLE_USER);
	struct tsession *z = open_session("pz", ROLE_USER);
	const char *leave = "{\"type\":\"presence.leave\",\"room\":\"pr\","
			    "\"uid\":\"pz\"}";
	const char *join = "{\"type\":\"presence.join\",\"room\":\"pr\","
			   "\"uid\":\"pz\"}";

	broker_join(&w->s, "pr", 1, NULL);
	broker_join(&z->s, "pr", -1, NULL);
	fake_engine_commit(eng, 1);
	CHECK(w->ngot == 1 && strcmp(w->got[0], join) == 0);
	broker_presence_remote("pz", 1);
	free_session(z);
	run_for(1700);
	CHECK(count(w, "presence.leave") == 0);
	broker_presence_remote("pz", -1);
	CHECK(count(w, "presence.leave") == 0); /* the grace period */
	run_for(1700);
	CHECK(w->ngot == 2 && strcmp(w->got[1], leave) == 0);
	/* Online on another node only: announced at once. */
	broker_presence_remote("pz", 2);
	CHECK(w->ngot == 3 && strcmp(w->got[2], join) == 0);
	broker_presence_remote("pz", -1);
	run_for(1700);
	CHECK(w->ngot == 3);
	broker_presence_remote("pz", -1);
	run_for(1700);
	CHECK(w->ngot == 4 && strcmp(w->got[3], leave) == 0);
	/* A count that would go below zero is not believed. */
	broker_presence_remote("pz", -1);
	broker_presence_remote("nobody", -1);
	run_for(100);
	CHECK(w->ngot == 4);
	free_session(w);
	fake_engine_commit(eng, 1);
}

/* The engine is told when a user's first session here opens and its last
 * closes (other nodes count it online), and what it feeds back through
 * on_presence is other nodes' sessions (broker_init listens). */
static void test_presence_engine(void)
{
	struct tsession *a1 = open_session("pe", ROLE_USER);
	struct tsession *a2 = open_session("pe", ROLE_USER);
	struct tsession *w = open_session("pew", ROLE_USER);
	const char *log = fake_engine_presence_log(eng);
	const char *p;

	CHECK(strstr(log, "+pe +pew ") != NULL);
	p = strstr(log, "+pe +pew ") + strlen("+pe +pew ");
	free_session(a1);
	CHECK(*p == '\0'); /* a2 still open: nothing to say */
	free_session(a2);
	CHECK(strcmp(p, "-pe ") == 0);
	/* pe is a member, offline; another node says it has pe online */
	a1 = open_session("pe", ROLE_USER);
	broker_join(&a1->s, "pe-room", -1, NULL);
	broker_join(&w->s, "pe-room", 1, NULL);
	fake_engine_commit(eng, 1);
	free_session(a1);
	run_for(1700);
	CHECK(count(w, "presence.leave") == 1);
	fake_engine_feed_presence(eng, "pe", 1);
	CHECK(count(w, "presence.join") == 1);
	struct got_result g;
	struct bk_done d = done_for(&g);
	broker_presence("pe-room", &d);
	CHECK(strstr(g.body, "\"pe\"") != NULL);
	fake_engine_feed_presence(eng, "pe", -1);
	run_for(1700);
	CHECK(count(w, "presence.leave") == 2);
	free_session(w);
	fake_engine_commit(eng, 1);
}

int main(void)
{
	base = event_base_new();
	eng = fake_engine_create();
	config_defaults(&cfg);
	cfg.max_outbuf = 1 << 20;
	CHECK(broker_init(base, &cfg, eng) == 0);

	test_direct();
	test_idempotency();
	test_rooms();
	test_replay();
	test_tasks();
	test_turns();
	test_turn_budget();
	test_presence_remote();
	test_presence_engine();

	broker_finish();
	fake_engine_destroy(eng);
	event_base_free(base);
	config_free(&cfg);
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
