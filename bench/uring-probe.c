/*
 * uring-probe: what one send to each of N loopback TCP connections costs
 * the sender, by mechanism (issue 17, item 3). A reader process drains all
 * connections with epoll; the writer (this process, one thread) runs
 * "turns": one frame of --size bytes to every connection, like a broker
 * fanning one publish out to a room. Per mechanism it reports the writer's
 * CPU per send (utime + stime from getrusage over the measured turns,
 * which includes the loopback receive that the kernel runs in the sender's
 * softirq) and the system calls it made per send.
 *
 * Mechanisms (--modes, comma-separated; default all that the kernel has):
 *   writev        one writev(2) per connection (today's epoll path)
 *   send          one send(2) per connection
 *   uring-writev  one io_uring submission of N IORING_OP_WRITEV
 *   uring-send    the same with IORING_OP_SEND
 *   uring-send-ff IORING_OP_SEND on registered (fixed) files
 *   zc            IORING_OP_SEND_ZC (one notification per send)
 *   zc-fixed      SEND_ZC from a registered buffer, on fixed files
 *   uring-mod     through src/net/uring.c (uring_write per connection,
 *                 uring_submit, completions in a libevent loop)
 * Every send of a turn points at one shared buffer, as a broker's shared
 * frame does. A short write (the reader fell behind) is finished before
 * the next turn and counted. --frames K puts K frames in each send (K
 * iovecs, as a loop turn that carries K publishes does): CPU per delivery
 * is then CPU per send / K.
 *
 *   uring-probe [--conns 1000] [--size 150] [--frames 1] [--turns 400]
 *               [--rate 200] [--repeat 3] [--modes LIST]
 * --rate: turns per second (0: back to back). Output: one line per
 * measurement, the mechanisms interleaved so that drift on a shared
 * machine affects all alike, then min / median / max per mechanism.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/uring.h"

enum mode {
	M_WRITEV,
	M_SEND,
	M_URING_WRITEV,
	M_URING_SEND,
	M_URING_SEND_FF,
	M_ZC,
	M_ZC_FIXED,
	M_MOD,
	M_COUNT
};
static const char *const mode_names[M_COUNT] = {
	"writev",	 "send", "uring-writev", "uring-send",
	"uring-send-ff", "zc",	 "zc-fixed",	 "uring-mod"};

static int nconns = 1000, frame_size = 150, nframes = 1, turns = 400,
	   repeat = 3;
static size_t unit;	   /* bytes per send: nframes * frame_size */
static struct iovec *fiov; /* nframes iovecs, all on frame */
static uint8_t *scratch;   /* the rest of a short send comes from here */
static double rate = 200;
static int *wfd;       /* writer ends */
static uint8_t *frame; /* the shared frame */
static struct io_uring ring;
static int have_ring, have_zc;
static uint64_t sent_bytes;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(double *user, double *sys)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	*user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	*sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	return *user + *sys;
}

/* ---- the reader: drains every connection until all are closed ---- */

static void reader(int *rfd, int report)
{
	int ep = epoll_create1(0), open = nconns;
	static uint8_t buf[256 * 1024];
	struct epoll_event evs[256];
	uint64_t got = 0;

	/* Its own name, so that perf can tell it from the writer. */
	prctl(PR_SET_NAME, "probe-reader");
	if (ep < 0)
		die("epoll_create1");
	for (int i = 0; i < nconns; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.fd = rfd[i]};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, rfd[i], &e) < 0)
			die("epoll_ctl");
	}
	while (open > 0) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("epoll_wait");
		for (int i = 0; i < n; i++) {
			ssize_t r = recv(evs[i].data.fd, buf, sizeof(buf),
					 MSG_DONTWAIT);
			if (r > 0)
				got += (uint64_t)r;
			else if (r == 0 ||
				 (errno != EAGAIN && errno != EINTR)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, evs[i].data.fd,
					  NULL);
				close(evs[i].data.fd);
				open--;
			}
		}
	}
	if (write(report, &got, sizeof(got)) != sizeof(got))
		die("write");
	_exit(0);
}

/* ---- writers ---- */

struct counts {
	uint64_t syscalls, short_writes, copied; /* copied: ZC fell back */
};

/* The rest of a short plain write, blocking on poll: rare, counted. */
static void finish_plain(int fd, size_t off, struct counts *k)
{
	k->short_writes++;
	while (off < unit) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t n;
		poll(&p, 1, 1000);
		n = send(fd, scratch + off, unit - off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		k->syscalls += 2;
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EAGAIN)
			die("send (rest)");
	}
}

static void turn_plain(enum mode m, struct counts *k)
{
	struct msghdr msg = {.msg_iov = fiov, .msg_iovlen = (size_t)nframes};
	for (int i = 0; i < nconns; i++) {
		ssize_t n;
		if (m == M_WRITEV)
			n = writev(wfd[i], fiov, nframes);
		else if (nframes == 1)
			n = send(wfd[i], frame, unit,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		else
			n = sendmsg(wfd[i], &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		k->syscalls++;
		if (n < 0 && errno != EAGAIN)
			die("writev");
		if (n < 0 || (size_t)n < unit)
			finish_plain(wfd[i], n < 0 ? 0 : (size_t)n, k);
	}
	sent_bytes += (uint64_t)nconns * unit;
}

/* The ZC notification's "the kernel copied" bit (kernel 6.2; not in
 * liburing 2.3's header). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

static void prep(enum mode m, int i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	/* Read by the kernel at submission (IORING_FEAT_SUBMIT_STABLE): one
	 * for all. */
	static struct msghdr msg;

	if (sqe == NULL) {
		fprintf(stderr, "submission queue full\n");
		exit(1);
	}
	msg.msg_iov = fiov;
	msg.msg_iovlen = (size_t)nframes;
	switch (m) {
	case M_URING_WRITEV:
		io_uring_prep_writev(sqe, wfd[i], fiov, (unsigned)nframes, 0);
		break;
	case M_URING_SEND:
	case M_URING_SEND_FF:
		if (nframes == 1)
			io_uring_prep_send(sqe, m == M_URING_SEND ? wfd[i] : i,
					   frame, unit, MSG_NOSIGNAL);
		else
			io_uring_prep_sendmsg(sqe,
					      m == M_URING_SEND ? wfd[i] : i,
					      &msg, MSG_NOSIGNAL);
		if (m == M_URING_SEND_FF)
			sqe->flags |= IOSQE_FIXED_FILE;
		break;
	case M_ZC:
		if (nframes == 1)
			io_uring_prep_send_zc(sqe, wfd[i], frame, unit,
					      MSG_NOSIGNAL, 0);
		else
			io_uring_prep_sendmsg_zc(sqe, wfd[i], &msg,
						 MSG_NOSIGNAL);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		break;
	case M_ZC_FIXED:
		io_uring_prep_send_zc_fixed(sqe, i, frame, unit, MSG_NOSIGNAL,
					    0, 0);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		sqe->flags |= IOSQE_FIXED_FILE;
		break;
	default:
		abort();
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)i);
}

/* One submission of every send; then every completion (and, for ZC, every
 * notification), peeked without a syscall while any are there. */
static void turn_uring(enum mode m, struct counts *k)
{
	int zc = m == M_ZC || m == M_ZC_FIXED;
	int want = nconns * (zc ? 2 : 1), got = 0;
	struct io_uring_cqe *cqes[256];

	for (int i = 0; i < nconns; i++)
		prep(m, i);
	if (io_uring_submit(&ring) != nconns)
		die("io_uring_submit");
	k->syscalls++;
	while (got < want) {
		unsigned n = io_uring_peek_batch_cqe(&ring, cqes, 256);
		if (n == 0) {
			struct io_uring_cqe *c;
			k->syscalls++;
			if (io_uring_wait_cqe(&ring, &c) < 0)
				die("io_uring_wait_cqe");
			continue;
		}
		for (unsigned j = 0; j < n; j++) {
			struct io_uring_cqe *c = cqes[j];
			int i = (int)c->user_data;
			got++;
			if (c->flags & IORING_CQE_F_NOTIF) {
				if ((uint32_t)c->res &
				    IORING_NOTIF_USAGE_ZC_COPIED)
					k->copied++;
				continue;
			}
			if (zc && !(c->flags & IORING_CQE_F_MORE))
				got++; /* no notification follows */
			if (c->res < 0) {
				errno = -c->res;
				die("send (ring)");
			}
			if ((size_t)c->res < unit)
				finish_plain(wfd[i], (size_t)c->res, k);
		}
		io_uring_cq_advance(&ring, n);
	}
	sent_bytes += (uint64_t)nconns * unit;
}

/* ---- the same through src/net/uring.c ---- */

static struct event_base *base;
static struct uring *mod;
static int mod_done;

static void mod_written(void *arg, const struct uring_done *d)
{
	(void)arg;
	if (d->res < 0) {
		errno = -d->res;
		die("uring_write");
	}
	mod_done++;
}

static void turn_mod(struct counts *k)
{
	const struct uring_stats *st = uring_stats(mod);
	uint64_t s0 = st->submits + st->waits + 2 * st->eventfd_wakeups;

	mod_done = 0;
	for (int i = 0; i < nconns; i++)
		if (uring_write(mod, wfd[i], fiov, nframes, (uint64_t)i) < 0)
			die("uring_write");
	uring_submit(mod);
	/* What did not complete inline wakes the loop through the eventfd. */
	while (mod_done < nconns)
		event_base_loop(base, EVLOOP_ONCE);
	k->syscalls += st->submits + st->waits + 2 * st->eventfd_wakeups - s0;
	sent_bytes += (uint64_t)nconns * unit;
}

static void turn(enum mode m, struct counts *k)
{
	if (m <= M_SEND)
		turn_plain(m, k);
	else if (m == M_MOD)
		turn_mod(k);
	else
		turn_uring(m, k);
}

static int ring_setup(void)
{
	struct io_uring_params p;
	struct io_uring_probe *pr;
	unsigned entries = 1;

	while (entries < (unsigned)nconns)
		entries <<= 1;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_COOP_TASKRUN;
	p.cq_entries = entries * 4;
	if (io_uring_queue_init_params(entries, &ring, &p) < 0) {
		p.flags = IORING_SETUP_CQSIZE;
		if (io_uring_queue_init_params(entries, &ring, &p) < 0)
			return -1;
	}
	pr = io_uring_get_probe_ring(&ring);
	if (pr == NULL)
		return -1;
	have_zc = io_uring_opcode_supported(pr, IORING_OP_SEND_ZC);
	io_uring_free_probe(pr);
	if (io_uring_register_files(&ring, wfd, (unsigned)nconns) < 0)
		return -1;
	struct iovec b = {.iov_base = frame, .iov_len = (size_t)frame_size};
	if (have_zc && io_uring_register_buffers(&ring, &b, 1) < 0)
		have_zc = 0;
	return 0;
}

static void sleep_until(double t)
{
	struct timespec ts;
	double now = now_s();
	if (t <= now)
		return;
	ts.tv_sec = (time_t)(t - now);
	ts.tv_nsec = (long)((t - now - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

struct result {
	double us_per_send, user_share, sys_per_send, wall;
	uint64_t short_writes, copied;
};

static struct result measure(enum mode m)
{
	struct counts k = {0};
	struct result r;
	double u0, s0, u1, s1, t0, c0, c1;
	int warm = turns / 10 + 1;

	for (int t = 0; t < warm; t++)
		turn(m, &k);
	memset(&k, 0, sizeof(k));
	t0 = now_s();
	c0 = cpu_s(&u0, &s0);
	for (int t = 0; t < turns; t++) {
		if (rate > 0)
			sleep_until(t0 + t / rate);
		turn(m, &k);
	}
	c1 = cpu_s(&u1, &s1);
	r.wall = now_s() - t0;
	r.us_per_send = (c1 - c0) * 1e6 / ((double)turns * nconns);
	r.user_share = (u1 - u0) / ((c1 - c0) > 0 ? (c1 - c0) : 1);
	r.sys_per_send = (double)k.syscalls / ((double)turns * nconns);
	r.short_writes = k.short_writes;
	r.copied = k.copied;
	return r;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void connect_all(int *rfd)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l, 4096) < 0 || getsockname(l, (struct sockaddr *)&sa, &sl))
		die("listen");
	for (int i = 0; i < nconns; i++) {
		wfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (wfd[i] < 0)
			die("socket");
		if (connect(wfd[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
		    errno != EINPROGRESS)
			die("connect");
		rfd[i] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
		if (rfd[i] < 0)
			die("accept");
		/* As a broker's sockets are. */
		setsockopt(wfd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	close(l);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"conns", 1, 0, 'n'},  {"size", 1, 0, 's'},
		{"turns", 1, 0, 't'},  {"rate", 1, 0, 'r'},
		{"repeat", 1, 0, 'R'}, {"modes", 1, 0, 'm'},
		{"frames", 1, 0, 'f'}, {0, 0, 0, 0},
	};
	int want[M_COUNT], o, pipefd[2], *rfd, status;
	struct result res[M_COUNT][32];
	struct rlimit rl;
	pid_t child;
	uint64_t got;

	for (int m = 0; m < M_COUNT; m++)
		want[m] = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			nconns = atoi(optarg);
			break;
		case 's':
			frame_size = atoi(optarg);
			break;
		case 't':
			turns = atoi(optarg);
			break;
		case 'r':
			rate = atof(optarg);
			break;
		case 'R':
			repeat = atoi(optarg);
			break;
		case 'f':
			nframes = atoi(optarg);
			break;
		case 'm': {
			char *s = optarg, *tok;
			for (int m = 0; m < M_COUNT; m++)
				want[m] = 0;
			while ((tok = strsep(&s, ",")) != NULL) {
				int m;
				for (m = 0; m < M_COUNT; m++)
					if (strcmp(tok, mode_names[m]) == 0)
						break;
				if (m == M_COUNT) {
					fprintf(stderr, "unknown mode %s\n",
						tok);
					return 2;
				}
				want[m] = 1;
			}
			break;
		}
		default:
			fprintf(stderr,
				"usage: uring-probe [--conns N] [--size B] "
				"[--frames K] [--turns T] [--rate R] "
				"[--repeat K] [--modes LIST]\n");
			return 2;
		}
	}
	if (nconns < 1 || nconns > 16384 || frame_size < 1 || turns < 1 ||
	    repeat < 1 || repeat > 32 || nframes < 1 || nframes > 64)
		return 2;
	unit = (size_t)nframes * (size_t)frame_size;
	signal(SIGPIPE, SIG_IGN);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	wfd = calloc((size_t)nconns, sizeof(int));
	rfd = calloc((size_t)nconns, sizeof(int));
	frame = aligned_alloc(4096, ((size_t)frame_size + 4095) / 4096 * 4096);
	fiov = calloc((size_t)nframes, sizeof(*fiov));
	scratch = calloc(1, unit);
	if (!wfd || !rfd || !frame || !fiov || !scratch)
		die("alloc");
	for (int i = 0; i < nframes; i++) {
		fiov[i].iov_base = frame;
		fiov[i].iov_len = (size_t)frame_size;
	}
	memset(frame, 'x', (size_t)frame_size);
	frame[0] = 0x81; /* a text frame's first byte, for the look of it */
	connect_all(rfd);
	if (pipe(pipefd) < 0)
		die("pipe");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		for (int i = 0; i < nconns; i++)
			close(wfd[i]);
		close(pipefd[0]);
		reader(rfd, pipefd[1]);
	}
	for (int i = 0; i < nconns; i++)
		close(rfd[i]);
	close(pipefd[1]);
	have_ring = ring_setup() == 0;
	if (!have_ring)
		fprintf(stderr, "io_uring unavailable: only plain modes\n");
	for (int m = M_URING_WRITEV; m < M_COUNT; m++)
		if ((!have_ring ||
		     ((m == M_ZC || m == M_ZC_FIXED) && !have_zc) ||
		     (m == M_ZC_FIXED && nframes > 1)) &&
		    want[m]) {
			fprintf(stderr, "%s: not supported here, skipped\n",
				mode_names[m]);
			want[m] = 0;
		}
	if (want[M_MOD]) {
		struct uring_opts uo = {.entries = 4096,
					.on_write = mod_written};
		char why[160];
		base = event_base_new();
		mod = base ? uring_new(base, &uo, why, sizeof(why)) : NULL;
		if (mod == NULL) {
			fprintf(stderr, "uring-mod: %s, skipped\n", why);
			want[M_MOD] = 0;
		}
	}

	printf("# conns %d size %d frames/send %d turns %d rate %g repeat %d\n",
	       nconns, frame_size, nframes, turns, rate, repeat);
	printf("%-14s %4s %10s %9s %6s %9s %7s %8s %7s\n", "mode", "rep",
	       "us/send", "us/deliv", "user%", "sys/send", "wall_s", "short",
	       "copied");
	for (int k = 0; k < repeat; k++)
		for (int m = 0; m < M_COUNT; m++) {
			if (!want[m])
				continue;
			res[m][k] = measure((enum mode)m);
			printf("%-14s %4d %10.3f %9.3f %6.1f %9.4f %7.2f %8llu "
			       "%7llu\n",
			       mode_names[m], k + 1, res[m][k].us_per_send,
			       res[m][k].us_per_send / nframes,
			       100 * res[m][k].user_share,
			       res[m][k].sys_per_send, res[m][k].wall,
			       (unsigned long long)res[m][k].short_writes,
			       (unsigned long long)res[m][k].copied);
			fflush(stdout);
		}
	printf("# summary: us of writer CPU per send, min / median / max "
	       "(per delivery: / %d)\n",
	       nframes);
	for (int m = 0; m < M_COUNT; m++) {
		double v[32];
		if (!want[m])
			continue;
		for (int k = 0; k < repeat; k++)
			v[k] = res[m][k].us_per_send;
		qsort(v, (size_t)repeat, sizeof(double), cmp_double);
		printf("%-14s size %6d x %2d  %7.3f / %7.3f / %7.3f us\n",
		       mode_names[m], frame_size, nframes, v[0], v[repeat / 2],
		       v[repeat - 1]);
	}
	if (mod) {
		uring_free(mod);
		event_base_free(base);
	}
	if (have_ring)
		io_uring_queue_exit(&ring);
	for (int i = 0; i < nconns; i++)
		close(wfd[i]);
	if (read(pipefd[0], &got, sizeof(got)) != sizeof(got))
		die("read");
	waitpid(child, &status, 0);
	/* Check the effect: every byte sent reached the reader. */
	if (got != sent_bytes) {
		fprintf(stderr, "reader got %llu bytes, %llu sent\n",
			(unsigned long long)got,
			(unsigned long long)sent_bytes);
		return 1;
	}
	printf("# reader received all %llu bytes\n", (unsigned long long)got);
	return 0;
}
