/*
 * The JetStream link (src/cluster/jetstream.c) against a real JetStream
 * cluster. Run by tests/cluster/jetstream.test.mjs, which starts three
 * nats-server processes and passes them in the environment:
 *   JS_URLS   nats://127.0.0.1:P,...   (client URLs)
 *   JS_NAMES  n1,n2,n3                 (server_name of each URL)
 *   JS_PIDS   pid,pid,pid              (for the failover scenario)
 *   JS_STREAM a stream name unique to this run
 * Usage: jetstream-test
 *   order|dedupe|expect|retention|epoch|outage|recreate|reconnect|failover
 * One line per check ("ok - ..." / "not ok - ..."); exit 0 when all hold.
 * Every callback checks that it runs on the loop's thread.
 */
#include "basestation/jetstream.h"

#include <event2/event.h>
#include <nats/nats.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static struct event_base *base;
static pthread_t loop_thread;
static int failures, checks;
static uint64_t off_loop; /* callbacks seen on another thread */

static void check(int cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("%s - ", cond ? "ok" : "not ok");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
	checks++;
	if (!cond)
		failures++;
}

static void on_loop(void)
{
	if (!pthread_equal(pthread_self(), loop_thread))
		off_loop++;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The loop's longest gap between two 20 ms ticks: a loop that blocked
 * in libnats (which holds its connection lock for a connect attempt,
 * up to 2 s) would show it. */
static int64_t last_tick, max_stall;
/* last_tick for the loop's watchdog thread */
static _Atomic int64_t alive_ms;

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	int64_t now = now_ms();
	if (last_tick && now - last_tick > max_stall)
		max_stall = now - last_tick;
	last_tick = now;
	atomic_store(&alive_ms, now);
}

/* A loop that has not ticked for LOOP_DEAD_MS is stuck (a deadlock
 * between the loop and a libnats thread): say so and exit, rather than
 * wait for the harness's SIGKILL. No scenario stalls the loop that long
 * (the "reconnect" one stalls it 12 s). */
#define LOOP_DEAD_MS 40000
static void *loop_watchdog(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
		int64_t alive = atomic_load(&alive_ms);
		if (alive && now_ms() - alive > LOOP_DEAD_MS) {
			printf("not ok - the loop has not run for %d s (stuck: "
			       "a deadlock with a libnats thread?)\n",
			       LOOP_DEAD_MS / 1000);
			fflush(stdout);
			_exit(1);
		}
	}
	return NULL;
}

/* Runs the loop until *flag or timeout_ms; true when the flag was set. */
static bool run_until(const bool *flag, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	while (!*flag && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	return *flag;
}

static void run_for(int ms)
{
	bool never = false;
	run_until(&never, ms);
}

/* ---- environment ---- */

static char *urls[8], *names[8];
static pid_t pids[8];
static int nservers;
static const char *stream_name;

static int split(const char *env, char **out, int max)
{
	const char *v = getenv(env);
	int n = 0;
	if (!v)
		return 0;
	char *copy = strdup(v), *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t && n < max;
	     t = strtok_r(NULL, ",", &save))
		out[n++] = strdup(t);
	free(copy);
	return n;
}

/* ---- a link and what it reported ---- */

struct probe {
	struct bsjs *l;
	bool ready, fatal;
	struct bsjs_stream_info si;
	char fatal_text[256];
	int connects, disconnects;
	enum bsjs_conn_state state;
	char url[128];
	/* consumer */
	uint64_t cons_n, cons_first, cons_last, cons_gaps, cons_disorder;
	uint64_t cons_target;
	bool cons_done;
	int64_t *by_index; /* payload index -> seq seen (0: not yet) */
	uint64_t dup_payloads;
	size_t nidx;
};

static void on_event(void *arg, const struct bsjs_event *ev)
{
	struct probe *p = arg;
	on_loop();
	switch (ev->type) {
	case BSJS_EV_STATE:
		p->state = ev->state;
		if (ev->state == BSJS_CONNECTED) {
			p->connects++;
			snprintf(p->url, sizeof(p->url), "%s",
				 ev->url ? ev->url : "");
		} else if (ev->state == BSJS_DISCONNECTED) {
			p->disconnects++;
		}
		printf("# state %d %s\n", ev->state, ev->url ? ev->url : "");
		break;
	case BSJS_EV_READY:
		p->ready = true;
		p->si = *ev->stream;
		printf("# ready epoch=%s created=%d leader=%s first=%" PRIu64
		       " last=%" PRIu64 "\n",
		       p->si.epoch, p->si.created, p->si.leader,
		       p->si.first_seq, p->si.last_seq);
		break;
	case BSJS_EV_FATAL:
		p->fatal = true;
		snprintf(p->fatal_text, sizeof(p->fatal_text), "%s", ev->text);
		printf("# fatal %s\n", ev->text);
		break;
	case BSJS_EV_WARN:
		printf("# warn %s\n", ev->text);
		break;
	}
	fflush(stdout);
}

struct link_opts {
	const char *stream;
	int replicas;
	int64_t max_msgs;
	int publish_timeout_ms;
	int max_inflight;
	int consumer_max_pending;
	const char *const *servers; /* default: urls */
	int nservers;
};

static struct probe *probe_open(const struct link_opts *o)
{
	struct probe *p = calloc(1, sizeof(*p));
	char err[256];
	struct bsjs_config cfg = {
		.servers = o->servers ? o->servers : (const char **)urls,
		.nservers = o->servers ? o->nservers : nservers,
		.no_randomize = o->servers != NULL,
		.name = "jetstream-test",
		.stream = o->stream ? o->stream : stream_name,
		.replicas = o->replicas ? o->replicas : 3,
		.max_msgs = o->max_msgs,
		.duplicate_window_ms = 120000,
		.publish_timeout_ms = o->publish_timeout_ms,
		.max_inflight = o->max_inflight,
		.consumer_max_pending = o->consumer_max_pending,
		.on_event = on_event,
		.arg = p,
	};
	p->l = bsjs_create(base, &cfg, err, sizeof(err));
	if (!p->l) {
		check(0, "bsjs_create: %s", err);
		exit(1);
	}
	return p;
}

static void probe_close(struct probe *p)
{
	bsjs_destroy(p->l);
	free(p->by_index);
	free(p);
}

static void want_ready(struct probe *p)
{
	bool ok = run_until(&p->ready, 30000);
	check(ok, "stream ready (epoch %s, created %d)", p->si.epoch,
	      p->si.created);
	if (!ok)
		exit(1);
}

/* ---- publishing ---- */

struct pubrec {
	int status;
	uint64_t seq;
	bool dup;
	int js_code;
	bool done;
	int attempts;
};

static struct pubrec *recs;
static size_t nrecs, ndone, nok;
static bool all_done;
static void (*after_ack)(size_t ndone);

static void on_ack(void *arg, const struct bsjs_ack *a)
{
	struct pubrec *r = arg;
	on_loop();
	if (r->done) {
		check(0, "a publish completed twice");
		return;
	}
	r->done = true;
	r->status = a->status;
	r->seq = a->seq;
	r->dup = a->duplicate;
	r->js_code = a->js_code;
	r->attempts = a->attempts;
	ndone++;
	if (a->status == BSJS_OK)
		nok++;
	else if (ndone - nok <= 5)
		printf("# publish failed: %s (%s, js %d, attempts %d)\n",
		       bsjs_status_name(a->status), a->text, a->js_code,
		       a->attempts);
	if (after_ack)
		after_ack(ndone);
	if (ndone == nrecs)
		all_done = true;
}

static void recs_reset(size_t n)
{
	free(recs);
	recs = calloc(n, sizeof(*recs));
	nrecs = n;
	ndone = nok = 0;
	all_done = false;
}

/* Publishes one message and waits for its answer. */
static struct pubrec publish_one(struct probe *p, const char *subject,
				 const char *data, const char *msg_id,
				 int64_t expect)
{
	recs_reset(1);
	struct bsjs_pub pub = {.subject = subject,
			       .data = data,
			       .len = strlen(data),
			       .msg_id = msg_id,
			       .expect_last_subject_seq = expect};
	if (bsjs_publish(p->l, &pub, on_ack, &recs[0]) != 0)
		check(0, "bsjs_publish refused %s", subject);
	run_until(&all_done, 15000);
	return recs[0];
}

/* Publishes n messages "i" (i = first..first+n-1) with ids "<prefix>-i";
 * recs[i - first] gets the answers. */
static void publish_range(struct probe *p, size_t first, size_t n,
			  const char *prefix)
{
	recs_reset(n);
	char subject[128], data[32], id[64];
	for (size_t i = first; i < first + n; i++) {
		snprintf(subject, sizeof(subject), "%s.m.%zu", stream_name,
			 i % 16);
		snprintf(data, sizeof(data), "%zu", i);
		snprintf(id, sizeof(id), "%s-%zu", prefix, i);
		struct bsjs_pub pub = {.subject = subject,
				       .data = data,
				       .len = strlen(data),
				       .msg_id = id,
				       .expect_last_subject_seq = -1};
		if (bsjs_publish(p->l, &pub, on_ack, &recs[i - first]) != 0)
			check(0, "bsjs_publish refused message %zu", i);
	}
}

static void publish_n(struct probe *p, size_t n, const char *prefix)
{
	publish_range(p, 0, n, prefix);
}

/* ---- consuming ---- */

static void on_batch(void *arg, const struct bsjs_msg *m, size_t n)
{
	struct probe *p = arg;
	on_loop();
	for (size_t i = 0; i < n; i++) {
		if (p->cons_n == 0)
			p->cons_first = m[i].seq;
		else if (m[i].seq <= p->cons_last)
			p->cons_disorder++;
		else if (m[i].seq != p->cons_last + 1)
			p->cons_gaps++;
		p->cons_last = m[i].seq;
		p->cons_n++;
		if (p->by_index) {
			char buf[32];
			size_t len = m[i].len < sizeof(buf) - 1
					     ? m[i].len
					     : sizeof(buf) - 1;
			memcpy(buf, m[i].data, len);
			buf[len] = '\0';
			size_t idx = strtoull(buf, NULL, 10);
			if (idx < p->nidx) {
				if (p->by_index[idx])
					p->dup_payloads++;
				p->by_index[idx] = (int64_t)m[i].seq;
			}
		}
	}
	if (p->cons_target && p->cons_n >= p->cons_target)
		p->cons_done = true;
}

static void consume(struct probe *p, uint64_t from, uint64_t target,
		    size_t nidx)
{
	p->cons_n = p->cons_first = p->cons_last = 0;
	p->cons_gaps = p->cons_disorder = p->dup_payloads = 0;
	p->cons_target = target;
	p->cons_done = false;
	free(p->by_index);
	p->by_index = nidx ? calloc(nidx, sizeof(int64_t)) : NULL;
	p->nidx = nidx;
	if (bsjs_consume(p->l, from, on_batch, p) != 0)
		check(0, "bsjs_consume refused");
}

/* ---- stream info ---- */

struct inforec {
	bool done;
	int status;
	struct bsjs_stream_info si;
};

static void on_info(void *arg, int status, const struct bsjs_stream_info *si)
{
	struct inforec *r = arg;
	on_loop();
	r->done = true;
	r->status = status;
	if (si)
		r->si = *si;
}

static struct inforec info(struct probe *p)
{
	struct inforec r = {0};
	if (bsjs_stream_info(p->l, on_info, &r) != 0)
		check(0, "bsjs_stream_info refused");
	run_until(&r.done, 15000);
	return r;
}

/* ---- core NATS ---- */

struct corerec {
	int n;
	int disorder;
	char last[32];
};

static void on_core(void *arg, const char *subject, const void *data,
		    size_t len)
{
	struct corerec *r = arg;
	on_loop();
	(void)subject;
	char buf[32];
	snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)data);
	if (atoi(buf) != r->n)
		r->disorder++;
	r->n++;
	snprintf(r->last, sizeof(r->last), "%s", buf);
}

/* ---- scenarios ---- */

static void scenario_order(void)
{
	const size_t N = 20000;
	/* All N are queued at once and a deadline counts from the call: give
	 * them time (under ASan on a loaded machine, a few thousand acks/s).
	 * A small consumer queue makes the delivery thread wait (flow
	 * control). */
	struct probe *a =
		probe_open(&(struct link_opts){.publish_timeout_ms = 60000,
					       .max_inflight = 1024,
					       .consumer_max_pending = 64});
	want_ready(a);
	check(a->si.created && strlen(a->si.epoch) == 32,
	      "the first link created the stream, epoch %s", a->si.epoch);
	check(a->state == BSJS_CONNECTED && a->url[0], "connected to %s",
	      a->url);

	publish_n(a, N, "order");
	consume(a, 1, N, N);
	bool done = run_until(&all_done, 60000);
	check(done && nok == N, "%zu of %zu async publishes acked", nok, N);
	bool got = run_until(&a->cons_done, 60000);
	check(got && a->cons_n == N,
	      "ordered consumer got %" PRIu64 " of %zu messages", a->cons_n, N);
	check(a->cons_first == 1 && a->cons_gaps == 0 &&
		      a->cons_disorder == 0 && a->dup_payloads == 0,
	      "in order from seq 1, no gap (first %" PRIu64 ", gaps %" PRIu64
	      ", out of order %" PRIu64 ", duplicates %" PRIu64 ")",
	      a->cons_first, a->cons_gaps, a->cons_disorder, a->dup_payloads);
	size_t match = 0;
	for (size_t i = 0; i < N; i++)
		if (recs[i].done && recs[i].status == BSJS_OK &&
		    a->by_index[i] == (int64_t)recs[i].seq)
			match++;
	check(match == N,
	      "each message arrived at the seq its PubAck named (%zu of %zu)",
	      match, N);
	struct bsjs_stats st;
	bsjs_get_stats(a->l, &st);
	printf("# stats: acked %" PRIu64 " retries %" PRIu64
	       " mean ack latency %" PRIu64 " us, max %" PRIu64
	       " us, consumer waits %" PRIu64 "\n",
	       st.acked, st.retries,
	       st.acked ? st.ack_latency_us_sum / st.acked : 0,
	       st.ack_latency_us_max, st.consumer_waits);
	check(st.published == N && st.acked == N && st.inflight == 0 &&
		      st.waiting == 0,
	      "stats: %" PRIu64 " published, %" PRIu64 " acked, none left",
	      st.published, st.acked);

	/* A second node: same stream, same epoch, consumer from the middle. */
	struct probe *b = probe_open(&(struct link_opts){0});
	want_ready(b);
	check(!b->si.created && strcmp(b->si.epoch, a->si.epoch) == 0,
	      "a second link finds the stream and its epoch");
	uint64_t from = N / 2;
	consume(b, from, N - from + 1, 0);
	got = run_until(&b->cons_done, 30000);
	check(got && b->cons_first == from && b->cons_last == N &&
		      b->cons_gaps == 0,
	      "consumer from seq %" PRIu64 " got %" PRIu64 "..%" PRIu64
	      " (%" PRIu64 " messages)",
	      from, b->cons_first, b->cons_last, b->cons_n);
	bsjs_consume_stop(b->l);
	uint64_t before = b->cons_n;
	char subj[128];
	snprintf(subj, sizeof(subj), "%s.after", stream_name);
	struct pubrec pr = publish_one(a, subj, "after-stop", NULL, -1);
	run_for(500);
	check(pr.status == BSJS_OK && b->cons_n == before,
	      "no batch after bsjs_consume_stop");

	/* Core NATS: ephemeral, delivered on the loop, in order. */
	struct corerec cr = {0};
	char core_subj[128];
	snprintf(core_subj, sizeof(core_subj), "core.%s.hb", stream_name);
	struct bsjs_sub *s = bsjs_subscribe(b->l, core_subj, on_core, &cr);
	check(s != NULL, "core subscribe");
	run_for(300); /* the SUB reaches the server */
	for (int i = 0; i < 50; i++) {
		char d[16];
		snprintf(d, sizeof(d), "%d", i);
		bsjs_core_publish(a->l, core_subj, d, strlen(d));
	}
	int64_t end = now_ms() + 10000;
	while (cr.n < 50 && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	check(cr.n == 50 && cr.disorder == 0,
	      "core subscriber got %d of 50 in order", cr.n);
	bsjs_unsubscribe(s);
	run_for(300);
	int seen = cr.n;
	bsjs_core_publish(a->l, core_subj, "late", 4);
	run_for(500);
	check(cr.n == seen, "nothing after bsjs_unsubscribe");
	struct inforec ir = info(a);
	check(ir.status == BSJS_OK && ir.si.last_seq == N + 1 &&
		      ir.si.msgs == N + 1,
	      "stream info: last_seq %" PRIu64 ", %" PRIu64 " messages",
	      ir.si.last_seq, ir.si.msgs);
	probe_close(b);
	probe_close(a);
}

static void scenario_dedupe(void)
{
	struct probe *a = probe_open(&(struct link_opts){0});
	want_ready(a);
	char subj[128];
	snprintf(subj, sizeof(subj), "%s.d", stream_name);
	struct pubrec r1 = publish_one(a, subj, "first", "ref-1", -1);
	check(r1.status == BSJS_OK && !r1.dup, "first publish: seq %" PRIu64,
	      r1.seq);
	struct pubrec r2 = publish_one(a, subj, "second", "ref-1", -1);
	check(r2.status == BSJS_OK && r2.dup && r2.seq == r1.seq,
	      "same Msg-Id again: duplicate %d, seq %" PRIu64 " (first %" PRIu64
	      ")",
	      r2.dup, r2.seq, r1.seq);
	struct pubrec r3 = publish_one(a, subj, "third", "ref-2", -1);
	check(r3.status == BSJS_OK && !r3.dup && r3.seq == r1.seq + 1,
	      "another Msg-Id: seq %" PRIu64, r3.seq);
	consume(a, 1, 2, 0);
	run_until(&a->cons_done, 15000);
	run_for(500);
	check(a->cons_n == 2,
	      "the stream holds 2 messages, not 3 (%" PRIu64 ")", a->cons_n);
	struct inforec ir = info(a);
	check(ir.status == BSJS_OK && ir.si.msgs == 2,
	      "stream info: %" PRIu64 " messages", ir.si.msgs);
	probe_close(a);
}

static void scenario_expect(void)
{
	struct probe *a = probe_open(&(struct link_opts){0});
	want_ready(a);
	char t1[128], t2[128];
	snprintf(t1, sizeof(t1), "%s.task.1", stream_name);
	snprintf(t2, sizeof(t2), "%s.task.2", stream_name);
	struct pubrec c = publish_one(a, t1, "v1", NULL, 0);
	check(c.status == BSJS_OK,
	      "expect 0 on a new subject: stored at %" PRIu64, c.seq);
	struct pubrec x = publish_one(a, t1, "v1 again", NULL, 0);
	check(x.status == BSJS_EWRONGSEQ && x.js_code == 10071,
	      "expect 0 again: %s (js %d)", bsjs_status_name(x.status),
	      x.js_code);
	struct pubrec u = publish_one(a, t1, "v2", NULL, (int64_t)c.seq);
	check(u.status == BSJS_OK && u.seq > c.seq,
	      "expect %" PRIu64 ": stored at %" PRIu64, c.seq, u.seq);
	struct pubrec y = publish_one(a, t1, "v2 from another node", NULL,
				      (int64_t)c.seq);
	check(y.status == BSJS_EWRONGSEQ && y.attempts == 1,
	      "a stale expectation (%" PRIu64 ") is refused, not retried: %s",
	      c.seq, bsjs_status_name(y.status));
	struct pubrec o = publish_one(a, t2, "other", NULL, 0);
	check(o.status == BSJS_OK, "expect 0 holds per subject");
	/* A resend of a stored update (same Msg-Id, same expectation) after
	 * a lost PubAck. */
	struct pubrec m1 = publish_one(a, t1, "v3", "upd-3", (int64_t)u.seq);
	struct pubrec m2 = publish_one(a, t1, "v3", "upd-3", (int64_t)u.seq);
	check(m1.status == BSJS_OK, "update with Msg-Id stored at %" PRIu64,
	      m1.seq);
	printf("# resend of a stored update: %s dup=%d seq=%" PRIu64 "\n",
	       bsjs_status_name(m2.status), m2.dup, m2.seq);
	check((m2.status == BSJS_OK && m2.dup && m2.seq == m1.seq) ||
		      m2.status == BSJS_EWRONGSEQ,
	      "its resend is not stored twice (%s)",
	      bsjs_status_name(m2.status));
	probe_close(a);
}

static void scenario_retention(void)
{
	struct probe *a = probe_open(&(struct link_opts){.max_msgs = 100});
	want_ready(a);
	publish_n(a, 300, "ret");
	run_until(&all_done, 30000);
	check(nok == 300, "300 published into a stream of max_msgs 100");
	struct inforec ir = info(a);
	check(ir.status == BSJS_OK && ir.si.first_seq == 201 &&
		      ir.si.last_seq == 300 && ir.si.msgs == 100 &&
		      ir.si.max_msgs == 100,
	      "stream info: first %" PRIu64 " last %" PRIu64 " msgs %" PRIu64
	      " max_msgs %" PRId64,
	      ir.si.first_seq, ir.si.last_seq, ir.si.msgs, ir.si.max_msgs);
	consume(a, 1, 100, 0);
	run_until(&a->cons_done, 15000);
	check(a->cons_first == 201 && a->cons_n == 100,
	      "a consumer from seq 1 starts at the first kept seq (%" PRIu64
	      "): the caller sees it fell behind",
	      a->cons_first);
	probe_close(a);
}

/* libnats without the loop: delete or make a stream behind the link. */
static int admin_sync(const char *op, const char *stream)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsStatus s = natsConnection_ConnectTo(&nc, urls[0]);
	if (s == NATS_OK)
		s = natsConnection_JetStream(&js, nc, NULL);
	if (s == NATS_OK && strcmp(op, "delete") == 0) {
		s = js_DeleteStream(js, stream, NULL, NULL);
	} else if (s == NATS_OK && strcmp(op, "delete-consumers") == 0) {
		jsConsumerNamesList *cl = NULL;
		s = js_ConsumerNames(&cl, js, stream, NULL, NULL);
		for (int i = 0; s == NATS_OK && cl && i < cl->Count; i++)
			s = js_DeleteConsumer(js, stream, cl->List[i], NULL,
					      NULL);
		if (s == NATS_OK && (!cl || cl->Count == 0))
			s = NATS_NOT_FOUND; /* there was no consumer */
		jsConsumerNamesList_Destroy(cl);
	} else if (s == NATS_OK) {
		char subj[128];
		snprintf(subj, sizeof(subj), "%s.>", stream);
		const char *subjects[1] = {subj};
		jsStreamConfig cfg;
		jsStreamConfig_Init(&cfg);
		cfg.Name = stream;
		cfg.Subjects = subjects;
		cfg.SubjectsLen = 1;
		jsStreamInfo *si = NULL;
		s = js_AddStream(&si, js, &cfg, NULL, NULL);
		jsStreamInfo_Destroy(si);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return s == NATS_OK ? 0 : -1;
}

static void scenario_epoch(void)
{
	struct probe *a = probe_open(&(struct link_opts){0});
	want_ready(a);
	struct probe *b = probe_open(&(struct link_opts){0});
	want_ready(b);
	check(a->si.created && !b->si.created &&
		      strcmp(a->si.epoch, b->si.epoch) == 0,
	      "two links, one epoch %s", a->si.epoch);
	char e1[33];
	snprintf(e1, sizeof(e1), "%s", a->si.epoch);
	probe_close(b);
	probe_close(a);

	check(admin_sync("delete", stream_name) == 0, "stream deleted");
	struct probe *c = probe_open(&(struct link_opts){0});
	want_ready(c);
	check(c->si.created && strcmp(c->si.epoch, e1) != 0,
	      "made again, it has a new epoch %s", c->si.epoch);
	probe_close(c);

	char other[128];
	snprintf(other, sizeof(other), "%s_plain", stream_name);
	check(admin_sync("create", other) == 0, "a stream made without a link");
	struct probe *d = probe_open(&(struct link_opts){.stream = other});
	run_until(&d->fatal, 15000);
	check(d->fatal && !d->ready && strstr(d->fatal_text, "epoch"),
	      "the link refuses it: %s", d->fatal_text);
	recs_reset(1);
	char subj[160];
	snprintf(subj, sizeof(subj), "%s.x", other);
	struct bsjs_pub pub = {.subject = subj,
			       .data = "x",
			       .len = 1,
			       .expect_last_subject_seq = -1};
	bsjs_publish(d->l, &pub, on_ack, &recs[0]);
	probe_close(d); /* the pending publish completes as closed */
	check(recs[0].done && recs[0].status == BSJS_ECLOSED,
	      "bsjs_destroy completes a pending publish: %s",
	      bsjs_status_name(recs[0].status));
	admin_sync("delete", other);

	/* A server list libnats refuses: FATAL, and publishes fail "not
	 * stored" at their deadline. */
	const char *bad[1] = {"nats://127.0.0.1:notaport"};
	struct probe *f = probe_open(&(struct link_opts){
		.servers = bad, .nservers = 1, .publish_timeout_ms = 500});
	recs_reset(1);
	bsjs_publish(f->l, &pub, on_ack, &recs[0]);
	run_until(&f->fatal, 10000);
	run_until(&all_done, 5000);
	check(f->fatal && recs[0].done && recs[0].status == BSJS_EUNAVAIL,
	      "a server list libnats refuses: fatal (%s), the publish %s",
	      f->fatal_text, bsjs_status_name(recs[0].status));
	probe_close(f);
}

/* The link's JetStream consumer deleted behind its back: the link's
 * watchdog makes a new one before libnats would (missed heartbeats), and
 * nothing is missed. */
static void scenario_recreate(void)
{
	struct probe *a = probe_open(&(struct link_opts){0});
	want_ready(a);
	consume(a, 1, 20, 20);
	publish_range(a, 0, 10, "re");
	run_until(&all_done, 15000);
	int64_t end = now_ms() + 15000;
	while (a->cons_n < 10 && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	check(nok == 10 && a->cons_n == 10, "10 published and consumed");
	check(admin_sync("delete-consumers", stream_name) == 0,
	      "the link's consumer deleted");
	publish_range(a, 10, 10, "re");
	run_until(&all_done, 15000);
	bool got = run_until(&a->cons_done, 40000);
	struct bsjs_stats st;
	bsjs_get_stats(a->l, &st);
	printf("# link restarts %" PRIu64 "\n", st.consumer_restarts);
	check(got && a->cons_n == 20 && a->cons_gaps == 0 &&
		      a->dup_payloads == 0 && a->cons_disorder == 0,
	      "a new consumer delivered the other 10, no gap (%" PRIu64
	      " of 20)",
	      a->cons_n);
	/* libnats alone notices after 10-20 s (missed heartbeats); the
	 * link's watchdog within 3-6 s of the last delivery. */
	check(st.consumer_restarts >= 1,
	      "the link's watchdog made it (%" PRIu64 " restarts)",
	      st.consumer_restarts);
	probe_close(a);
}

/* kill -9 of the stream leader mid-burst. */
static pid_t kill_pid;
static size_t kill_at;
static bool killed;
static int64_t killed_ms;

static void maybe_kill(size_t n)
{
	if (!killed && n >= kill_at) {
		killed = true;
		killed_ms = now_ms();
		kill(kill_pid, SIGKILL);
		printf("# killed pid %d after %zu acks\n", (int)kill_pid, n);
	}
}

static void scenario_failover(void)
{
	const size_t N = 6000;
	/* Who leads the stream? */
	struct probe *s = probe_open(&(struct link_opts){0});
	want_ready(s);
	/* A stream just made may have no leader yet (an election under load):
	 * ask again for up to 20 s. */
	struct inforec ir = info(s);
	for (int64_t end = now_ms() + 20000;
	     (ir.status != BSJS_OK || !ir.si.leader[0]) && now_ms() < end;) {
		run_for(250);
		ir = info(s);
	}
	probe_close(s);
	int li = -1;
	for (int i = 0; i < nservers; i++)
		if (names[i] && strcmp(names[i], ir.si.leader) == 0)
			li = i;
	check(li >= 0 && pids[li] > 0, "stream leader %s (pid %d)",
	      ir.si.leader, li >= 0 ? (int)pids[li] : -1);
	if (li < 0)
		return;
	/* Connected to the leader, so that the link must reconnect too. */
	const char *order[8];
	int n = 0;
	order[n++] = urls[li];
	for (int i = 0; i < nservers; i++)
		if (i != li)
			order[n++] = urls[i];
	struct probe *a =
		probe_open(&(struct link_opts){.publish_timeout_ms = 60000,
					       .max_inflight = 256,
					       .servers = order,
					       .nservers = n});
	want_ready(a);
	check(strstr(a->url, strrchr(urls[li], ':')) != NULL,
	      "connected to the leader (%s)", a->url);
	kill_pid = pids[li];
	kill_at = N / 3;
	after_ack = maybe_kill;
	consume(a, 1, N, N);
	publish_n(a, N, "fo");
	int64_t t0 = now_ms();
	/* Bounded so that the whole scenario reports before the harness's
	 * 190 s: 135 s for the publishes and the consumer together (at most
	 * 90 s of it for the publishes). Under load (10-20 on 2 cores) a new
	 * consumer took up to 30 s after the election. */
	bool done = run_until(&all_done, 90000);
	after_ack = NULL;
	printf("# all publishes completed %.1f s after the kill\n",
	       (double)(now_ms() - killed_ms) / 1000.0);
	check(killed, "the leader was killed mid-burst");
	check(done && nok == N, "%zu of %zu publishes acked (%.1f s)", nok, N,
	      (double)(now_ms() - t0) / 1000.0);
	int64_t left = 135000 - (now_ms() - t0);
	bool got = run_until(&a->cons_done, left > 45000 ? (int)left : 45000);
	run_for(1000);
	size_t missing = 0, wrong = 0;
	for (size_t i = 0; i < N; i++) {
		if (recs[i].status != BSJS_OK)
			continue;
		if (!a->by_index[i])
			missing++;
		else if (a->by_index[i] != (int64_t)recs[i].seq)
			wrong++;
	}
	check(got && missing == 0 && wrong == 0,
	      "every acked message reached the consumer at its seq "
	      "(%zu missing, %zu at another seq)",
	      missing, wrong);
	check(a->cons_n == N && a->dup_payloads == 0 && a->cons_gaps == 0 &&
		      a->cons_disorder == 0,
	      "exactly %zu messages, in order, no gap, none twice (got %" PRIu64
	      ", gaps %" PRIu64 ", duplicates %" PRIu64 ")",
	      N, a->cons_n, a->cons_gaps, a->dup_payloads);
	check(a->disconnects >= 1 && a->connects >= 2 &&
		      a->state == BSJS_CONNECTED,
	      "the link reported the disconnect and the reconnect (to %s)",
	      a->url);
	struct bsjs_stats st;
	bsjs_get_stats(a->l, &st);
	printf("# stats: retries %" PRIu64 " duplicates %" PRIu64
	       " max ack latency %" PRIu64 " ms consumer restarts %" PRIu64
	       "\n",
	       st.retries, st.duplicates, st.ack_latency_us_max / 1000,
	       st.consumer_restarts);
	probe_close(a);
}

/* The loop stalled while libnats reconnects: what a loop descheduled under
 * load does when the server it is connected to dies. The link is connected
 * to server 0, which is killed; the loop then sleeps 12 s. Meanwhile
 * libnats's own threads see the connection go, reconnect to another server
 * and call back (those callbacks only queue for the loop). When the link
 * read and wrote its socket on the loop (an event-loop adapter), this was
 * where libnats's reconnect thread and the loop could wait for each other
 * for good (loop_watchdog reports that). After the stall the link reports
 * the reconnect and publishes are acked. The harness restarts server 0
 * afterwards. */
static void scenario_reconnect(void)
{
	const char *order[8];
	int n = 0;
	for (int i = 0; i < nservers; i++)
		order[n++] = urls[i];
	struct probe *a = probe_open(&(struct link_opts){
		.publish_timeout_ms = 60000, .servers = order, .nservers = n});
	want_ready(a);
	check(strstr(a->url, strrchr(urls[0], ':')) != NULL,
	      "connected to server 0 (%s)", a->url);
	char subject[128];
	snprintf(subject, sizeof(subject), "%s.warm", stream_name);
	struct pubrec r = publish_one(a, subject, "warm", "warm-1", -1);
	check(r.status == BSJS_OK, "a publish acked before the kill (%s)",
	      bsjs_status_name(r.status));
	int connects = a->connects;
	max_stall = 0;
	int64_t t0 = now_ms();
	kill(pids[0], SIGKILL);
	printf("# killed pid %d (server 0); the loop sleeps 12 s\n",
	       (int)pids[0]);
	struct timespec stall = {.tv_sec = 12};
	while (nanosleep(&stall, &stall) < 0 && errno == EINTR)
		;
	run_for(200);
	bool back = false;
	while (!back && now_ms() - t0 < 60000) {
		event_base_loop(base, EVLOOP_ONCE);
		back = a->connects > connects && a->state == BSJS_CONNECTED;
	}
	printf("# reconnect reported %.1f s after the kill, the loop's "
	       "longest stall %" PRId64 " ms\n",
	       (double)(now_ms() - t0) / 1000.0, max_stall);
	check(max_stall >= 11000, "the loop stalled (%" PRId64 " ms)",
	      max_stall);
	check(back && strstr(a->url, strrchr(urls[0], ':')) == NULL,
	      "the link reconnected to another server (%s)", a->url);
	publish_n(a, 200, "rc");
	bool done = run_until(&all_done, 60000);
	check(done && nok == 200, "%zu of 200 publishes acked after it", nok);
	probe_close(a);
}

/* Every JetStream server frozen (SIGSTOP: no RST, no FIN, as behind a
 * partition), then thawed. */
static void signal_all(int sig)
{
	for (int i = 0; i < nservers; i++)
		if (pids[i] > 0)
			kill(pids[i], sig);
}

/* kill() only queues SIGSTOP: wait until every thread of every server is
 * stopped (state T), at most 5 s. */
static bool all_stopped(void)
{
	int64_t end = now_ms() + 5000;
	for (;;) {
		bool all = true;
		for (int i = 0; i < nservers && all; i++) {
			char dir[64];
			snprintf(dir, sizeof(dir), "/proc/%d/task",
				 (int)pids[i]);
			DIR *d = opendir(dir);
			struct dirent *e;
			while (d && (e = readdir(d)) && all) {
				if (e->d_name[0] == '.')
					continue;
				char path[400], buf[256];
				snprintf(path, sizeof(path), "%s/%s/stat", dir,
					 e->d_name);
				FILE *f = fopen(path, "r");
				size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f)
					     : 0;
				if (f)
					fclose(f);
				buf[n] = '\0';
				const char *st = strrchr(buf, ')');
				if (st && st[1] == ' ' && st[2] != 'T' &&
				    st[2] != 't')
					all = false;
			}
			if (d)
				closedir(d);
		}
		if (all)
			return true;
		if (now_ms() > end)
			return false;
		struct timespec ts = {0, 5000000};
		nanosleep(&ts, NULL);
	}
}

/* Publishes messages first..first+n-1 one by one until each is acked,
 * resending with the same Msg-Id what was not (at most `rounds` times);
 * seqs[i] gets the acked seq. Returns how many acks were duplicates. */
static size_t publish_until_acked(struct probe *p, size_t first, size_t n,
				  int rounds, size_t *acked, int64_t *seqs)
{
	size_t dups = 0;
	*acked = 0;
	for (size_t i = 0; i < n; i++)
		seqs[i] = 0;
	for (int r = 0; r < rounds && *acked < n; r++) {
		for (size_t i = 0; i < n; i++) {
			if (seqs[i])
				continue;
			publish_range(p, first + i, 1, "out");
			run_until(&all_done, 15000);
			if (recs[0].status == BSJS_OK) {
				seqs[i] = (int64_t)recs[0].seq;
				dups += recs[0].dup;
				(*acked)++;
			}
		}
	}
	return dups;
}

/* While JetStream is frozen, the loop goes on publishing (core NATS and
 * JetStream) every 100 ms, as a broker under traffic would. */
static struct bsjs *pulse_link;
static uint64_t pulse_answers;

static void on_pulse_ack(void *arg, const struct bsjs_ack *a)
{
	(void)arg;
	(void)a;
	on_loop();
	pulse_answers++;
}

static void pulse(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	char subj[128];
	snprintf(subj, sizeof(subj), "core.%s.pulse", stream_name);
	bsjs_core_publish(pulse_link, subj, "p", 1);
	/* Not a stream subject (nothing stored), but the same path. */
	snprintf(subj, sizeof(subj), "core.%s.pulse_js", stream_name);
	struct bsjs_pub pub = {.subject = subj,
			       .data = "p",
			       .len = 1,
			       .expect_last_subject_seq = -1};
	bsjs_publish(pulse_link, &pub, on_pulse_ack, NULL);
}

/* JetStream unreachable (all servers frozen), then back. */
static void scenario_outage(void)
{
	enum { N1 = 100, N2 = 50, N3 = 50, N = N1 + N2 + N3 };
	struct probe *a =
		probe_open(&(struct link_opts){.publish_timeout_ms = 3000});
	want_ready(a);
	consume(a, 1, N, N);
	publish_range(a, 0, N1, "out");
	run_until(&all_done, 30000);
	check(nok == N1, "%zu of %d acked before the outage", nok, N1);

	signal_all(SIGSTOP);
	check(all_stopped(), "every JetStream server stopped");
	max_stall = 0;
	int64_t t0 = now_ms();
	publish_range(a, N1, N2, "out");
	run_until(&all_done, 15000);
	int64_t took = now_ms() - t0;
	size_t timeouts = 0;
	for (size_t i = 0; i < N2; i++)
		timeouts += recs[i].status == BSJS_ETIMEOUT;
	check(ndone == N2 && nok == 0 && took < 4500,
	      "JetStream frozen: all %d publishes answered, none ok, in "
	      "%" PRId64
	      " ms (deadline 3000; %zu timeout = maybe stored, the rest "
	      "unavailable)",
	      N2, took, timeouts);
	int64_t end = now_ms() + 15000;
	while (a->disconnects == 0 && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	check(a->disconnects >= 1 && a->state == BSJS_DISCONNECTED,
	      "the link reported the lost connection (pings unanswered)");
	/* libnats tries to reconnect meanwhile (each attempt holds its
	 * connection lock until the frozen server's INFO times out). */
	pulse_link = a->l;
	struct event *pe = event_new(base, -1, EV_PERSIST, pulse, NULL);
	struct timeval ptv = {0, 100000};
	event_add(pe, &ptv);
	run_for(6000); /* three connect attempts */
	event_free(pe);
	printf("# longest loop stall while JetStream was frozen: %" PRId64
	       " ms\n",
	       max_stall);
	check(max_stall < 1500,
	      "the loop kept running while libnats reconnected (longest "
	      "stall %" PRId64 " ms)",
	      max_stall);

	signal_all(SIGCONT);
	end = now_ms() + 30000;
	while (a->state != BSJS_CONNECTED && now_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	check(a->state == BSJS_CONNECTED, "reconnected to %s", a->url);

	/* The client's "resend with the same ref", then new messages. */
	int64_t seqs2[N2], seqs3[N3];
	size_t acked2 = 0, acked3 = 0;
	size_t dups = publish_until_acked(a, N1, N2, 10, &acked2, seqs2);
	check(acked2 == N2,
	      "%zu of %d resent with their Msg-Id acked (%zu as duplicates: "
	      "stored although the first answer was not ok)",
	      acked2, N2, dups);
	publish_until_acked(a, N1 + N2, N3, 10, &acked3, seqs3);
	check(acked3 == N3, "%zu of %d new messages acked after the outage",
	      acked3, N3);
	bool got = run_until(&a->cons_done, 60000);
	run_for(500);
	struct bsjs_stats st;
	bsjs_get_stats(a->l, &st);
	struct inforec ir = info(a);
	printf("# consumer: last seq %" PRIu64 ", stream last seq %" PRIu64
	       ", restarts %" PRIu64 ", waits %" PRIu64 "\n",
	       a->cons_last, ir.si.last_seq, st.consumer_restarts,
	       st.consumer_waits);
	check(got && a->cons_n == N && a->dup_payloads == 0 &&
		      a->cons_gaps == 0 && a->cons_disorder == 0,
	      "the consumer resumed: %" PRIu64 " of %d messages, each once, "
	      "in order, no gap",
	      a->cons_n, N);
	size_t at_seq = 0;
	for (size_t i = 0; i < N2; i++)
		at_seq += seqs2[i] && a->by_index[N1 + i] == seqs2[i];
	check(at_seq == N2,
	      "each resent message is in the stream once, at the seq its ack "
	      "named (%zu of %d)",
	      at_seq, N2);
	probe_close(a);
}

int main(int argc, char **argv)
{
	/* Line by line: what a run printed survives the harness's SIGKILL. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2) {
		fprintf(stderr, "usage: jetstream-test "
				"order|dedupe|expect|retention|epoch|outage|"
				"recreate|reconnect|failover\n");
		return 2;
	}
	nservers = split("JS_URLS", urls, 8);
	split("JS_NAMES", names, 8);
	char *p[8] = {0};
	int np = split("JS_PIDS", p, 8);
	for (int i = 0; i < np; i++) {
		pids[i] = (pid_t)atoi(p[i]);
		free(p[i]);
	}
	stream_name = getenv("JS_STREAM");
	if (nservers == 0 || !stream_name) {
		fprintf(stderr, "JS_URLS and JS_STREAM are required\n");
		return 2;
	}
	if (bsjs_global_init() != 0) {
		fprintf(stderr, "bsjs_global_init failed\n");
		return 1;
	}
	base = event_base_new();
	loop_thread = pthread_self();
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = {0, 20000};
	event_add(t, &tv);
	pthread_t wd;
	if (pthread_create(&wd, NULL, loop_watchdog, NULL) == 0)
		pthread_detach(wd);

	const char *sc = argv[1];
	if (strcmp(sc, "order") == 0)
		scenario_order();
	else if (strcmp(sc, "dedupe") == 0)
		scenario_dedupe();
	else if (strcmp(sc, "expect") == 0)
		scenario_expect();
	else if (strcmp(sc, "retention") == 0)
		scenario_retention();
	else if (strcmp(sc, "epoch") == 0)
		scenario_epoch();
	else if (strcmp(sc, "failover") == 0)
		scenario_failover();
	else if (strcmp(sc, "outage") == 0)
		scenario_outage();
	else if (strcmp(sc, "recreate") == 0)
		scenario_recreate();
	else if (strcmp(sc, "reconnect") == 0)
		scenario_reconnect();
	else {
		fprintf(stderr, "unknown scenario %s\n", sc);
		return 2;
	}
	check(off_loop == 0,
	      "every callback ran on the loop's thread (%" PRIu64 " did not)",
	      off_loop);

	event_free(t);
	event_base_free(base);
	bsjs_global_finish();
	free(recs);
	for (int i = 0; i < 8; i++) {
		free(urls[i]);
		free(names[i]);
	}
	printf("# %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
