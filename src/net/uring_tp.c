/*
 * The io_uring transport (transport.h, --io uring): plain TCP whose writes
 * go through the loop's one ring (net/uring.c). A connection's writes of a
 * turn are queued with submit(); the ring submits every connection's in
 * one io_uring_enter at the end of the turn, reaps the completions that
 * came inline, and the rest wake the loop through the ring's eventfd. Each
 * completion reaches the connection through its sent callback; the tag of
 * a write is its struct transport, which the owner keeps alive until
 * inflight() is 0. Reads, shutdown and close are the tcp transport's.
 *
 * Which path runs is chosen once, by net_io_start(): a ring is created
 * there (io_uring_queue_init and the opcodes it needs probed on it); when
 * that fails, epoll with an event=io ... fallback line.
 */
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/transport.h"
#include "bs_config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if BS_HAVE_URING
#include "net/uring.h"
#endif

/* Test hook: the probe fails as on a kernel without io_uring. */
#define FAIL_HOOK "BASESTATION_TEST_URING_FAIL"

static struct {
	int on;
#if BS_HAVE_URING
	struct uring *u;
	struct transport_ops ops;
#endif
} io;

const char *net_io_name(void)
{
	return io.on ? "uring" : "epoll";
}

#if BS_HAVE_URING

/* The ring's counters for /metrics, when it renders. */
static void refresh_stats(struct metrics_io *m)
{
	const struct uring_stats *st = uring_stats(io.u);

	m->submits = st->submits;
	m->sqes = st->sqes;
	m->cqes = st->cqes;
	m->partial = st->partial;
	m->inflight = uring_outstanding(io.u);
}

static void on_write(void *arg, const struct uring_done *d)
{
	struct transport *t = (struct transport *)(uintptr_t)d->tag;

	(void)arg;
	t->sent(t->sent_arg, d->written, d->res == 0 ? 0 : NET_ERROR);
}

static int up_submit(struct transport *t, const struct iovec *iov, int n)
{
	return uring_write(io.u, t->fd, iov, n, (uint64_t)(uintptr_t)t) == 0
		       ? 0
		       : NET_ERROR;
}

static unsigned up_inflight(const struct transport *t)
{
	return t->fd < 0 ? 0 : uring_pending(io.u, t->fd);
}

static void up_cancel(struct transport *t)
{
	if (t->fd >= 0)
		uring_cancel(io.u, t->fd);
}

static void up_kick(struct transport *t)
{
	(void)t;
	uring_submit(io.u);
}

/* Only with nothing in flight (transport.h): the fd's ring state goes
 * before the number can be reused. */
static void up_close(struct transport *t)
{
	if (t->fd >= 0)
		uring_forget(io.u, t->fd);
	net_tcp_ops.close(t);
}

void net_uring_init(struct transport *t, int fd, transport_sent_cb sent,
		    void *arg)
{
	net_tcp_init(t, fd);
	t->ops = &io.ops;
	t->sent = sent;
	t->sent_arg = arg;
}

static struct uring *ring_new(struct event_base *base, char *why, size_t n)
{
	const char *hook = getenv(FAIL_HOOK);
	struct uring_opts o;

	if (hook && *hook && strcmp(hook, "0") != 0) {
		snprintf(why, n,
			 "io_uring_queue_init: failed by %s (test hook)",
			 FAIL_HOOK);
		return NULL;
	}
	memset(&o, 0, sizeof(o));
	o.on_write = on_write;
	/* zc_min 0: SEND_ZC never wins on loopback (docs/perf-notes.md);
	 * fixed files were inside the noise and cost two registrations per
	 * connection. */
	return uring_new(base, &o, why, n);
}

int net_io_start(struct event_base *base, int want_uring)
{
	char why[200] = "";

	io.on = 0;
	if (!want_uring) {
		log_info("io", "io=epoll");
		return 0;
	}
	if ((io.u = ring_new(base, why, sizeof(why))) == NULL) {
		log_warn("io",
			 "io=epoll requested=uring fallback=epoll reason=%s",
			 log_val(why));
		return 0;
	}
	io.ops = net_tcp_ops;
	io.ops.name = "uring";
	io.ops.submit = up_submit;
	io.ops.inflight = up_inflight;
	io.ops.cancel = up_cancel;
	io.ops.kick = up_kick;
	io.ops.close = up_close;
	io.on = 1;
	metrics.io.uring = 1;
	metrics.io.refresh = refresh_stats;
	log_info("io", "io=uring send_zc=off");
	return 1;
}

void net_io_drain(void)
{
	if (io.u)
		uring_quiesce(io.u);
}

void net_io_finish(void)
{
	if (io.u == NULL)
		return;
	uring_free(io.u);
	io.u = NULL;
	io.on = 0;
	metrics.io.refresh = NULL;
}

#else /* built without liburing: epoll only */

void net_uring_init(struct transport *t, int fd, transport_sent_cb sent,
		    void *arg)
{
	(void)sent;
	(void)arg;
	net_tcp_init(t, fd); /* unreachable: net_io_start() said 0 */
}

int net_io_start(struct event_base *base, int want_uring)
{
	(void)base;
	if (want_uring)
		log_warn("io",
			 "io=epoll requested=uring fallback=epoll reason=%s",
			 log_val("built without liburing"));
	else
		log_info("io", "io=epoll");
	return 0;
}

void net_io_drain(void)
{
}

void net_io_finish(void)
{
}

#endif
