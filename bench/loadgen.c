/*
 * loadgen: a WebSocket load generator for basestation and its peers
 * (bench/peers/). One thread, one libevent loop, raw non-blocking sockets,
 * its own minimal RFC 6455 framing (client frames masked, server frames
 * parsed in place from one shared read buffer), so that it costs less per
 * delivered message than the servers it measures.
 *
 * Modes (--mode):
 *   fanout  N subscribers join room r; one publisher (also a member) sends
 *           {"type":"publish","room":"r","data":{"t":NS,"p":"pad"}} either
 *           closed-loop with --inflight K publishes awaiting their ack, or
 *           open-loop at --rate R publishes/s.
 *   direct  --senders S connections send {"type":"send","to":uid,...} to N
 *           receivers (sender i -> receiver i mod N), K in flight each, or
 *           open-loop at --rate R sends/s over all senders.
 *   idle    N connections that only connect; reports the server's RSS per
 *           connection ((VmRSS after - VmRSS before) / N).
 *   task    one producer creates task --task ID, N subscribers subscribe
 *           (basestation: role admin), the producer sends task.update at
 *           --rate R/s (default 1000) with the send time in "note"; counts
 *           every version each subscriber sees and the ones it missed.
 *
 * Phases: setup (connect everything, paced, bounded by --setup-timeout),
 * warm-up (--warmup s of traffic, not counted), the measured window
 * (--duration s: deliveries, latencies, server CPU from /proc/PID/stat,
 * own CPU from getrusage), drain (no new sends, up to --drain s for the
 * outstanding acks and deliveries). Sends are also bounded in count
 * (--max-sends). Output: one JSON line on stdout; human text on stderr.
 *
 * Tokens: --jwt-secret S mints HS256 JWTs (sub = uid, role claim) with
 * OpenSSL; --token-file F takes "uid token" lines in connection order;
 * otherwise the token is the uid itself (the peers accept any token).
 *
 * --tls: every connection is TLS (OpenSSL client, non-blocking handshake
 * on the same socket, no certificate check: the bench makes its own).
 * --deflate: the upgrade offers permessage-deflate as browsers do; the
 * count of connections that got it is reported (deflate_negotiated).
 * Compressed messages are inflated (every --inflate-every'th one when the
 * server keeps no context; the others are counted as deliveries without
 * being looked into) and "bytes_in_per_delivery" says what arrived per
 * delivery, WebSocket framing included (TLS records not).
 * --port2 P: subscribers (fanout, task) and receivers (direct) connect to
 * P instead of --port (a second cluster node); --server-pid2 samples it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define RX_SIZE	    (256 * 1024)
#define PAYLOAD_MAX 65536
#define HS_MAX	    8192
#define MAX_ERRLOG  5

enum mode { M_FANOUT, M_DIRECT, M_IDLE, M_TASK };
enum role { R_SUB, R_PUB, R_SEND, R_RECV, R_PROD, R_IDLE };
enum cstate {
	CS_NEW,
	CS_CONNECTING, /* TCP connect in progress */
	CS_TLS,	       /* TLS handshake in progress */
	CS_HANDSHAKE,  /* upgrade request sent */
	CS_UPGRADED,   /* 101 received, waiting for the connect frame */
	CS_OPEN,       /* join / subscribe / create sent */
	CS_READY,
	CS_DEAD
};
enum phase { PH_SETUP, PH_WARMUP, PH_WINDOW, PH_DRAIN, PH_DONE };

static const char *const mode_names[] = {"fanout", "direct", "idle", "task"};

struct conn {
	int fd;
	int idx;
	uint8_t role;
	uint8_t state;
	uint8_t wr_armed;
	uint8_t in_dirty;
	uint8_t pmd;	 /* permessage-deflate negotiated */
	uint8_t pmd_nct; /* ... and the server keeps no context */
	uint8_t port2;	 /* connects to --port2 */
	SSL *ssl;	 /* --tls */
	z_stream *zs;	 /* inflater of a server that keeps context */
	struct event *rev, *wev;
	struct conn *dnext; /* on the dirty list: has unflushed output */
	/* partial inbound frame (or handshake bytes) */
	uint8_t *rbuf;
	uint32_t rlen, rcap;
	/* unflushed outbound bytes */
	uint8_t *wbuf;
	uint32_t wlen, woff, wcap;
	/* requests awaiting their reply: FIFO of send times (ns) */
	int64_t *ring;
	uint32_t ring_head, ring_n, ring_cap;
	int64_t last_version; /* task subscribers: last version seen */
	int target;	      /* direct senders: receiver index */
	char uid[40];
};

/* ---- configuration ---- */

static struct {
	enum mode mode;
	const char *host;
	int port;
	const char *path;
	int n;	     /* subscribers / receivers / idle connections */
	int senders; /* direct */
	int inflight;
	double rate;
	int payload;
	double duration, warmup, drain, setup_timeout;
	long long max_sends;
	int server_pid;
	const char *jwt_secret;
	const char *token_file;
	const char *uid_prefix;
	const char *room;
	const char *task;
	const char *label;
	int src_ips;
	int max_pending;
	int quiet;
	const char *watch_file;
	int tls;
	int deflate;
	int inflate_every;
	int payload_json;
	int port2;
	int server_pid2;
} cfg = {
	.mode = M_FANOUT,
	.host = "127.0.0.1",
	.port = 8080,
	.path = "/ws",
	.n = 100,
	.senders = 100,
	.inflight = -1,
	.rate = -1,
	.payload = 128,
	.duration = 5,
	.warmup = 1,
	.drain = 2,
	.setup_timeout = 60,
	.max_sends = 50000000,
	.uid_prefix = "",
	.room = "r",
	.task = "bench",
	.label = "",
	.src_ips = 64,
	.max_pending = 256,
	.inflate_every = 1,
};

/* ---- state ---- */

static struct event_base *base;
static struct conn *conns;
static int nconns;
static int next_start, pending, nready, ndead;
static enum phase phase = PH_SETUP;
static struct conn *dirty;
static char **file_uids, **file_tokens;
static int nfile;
static char *pad;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static struct sockaddr_in server_addr, server_addr2;
static SSL_CTX *tls_ctx;
static z_stream zs_nct; /* shared inflater for servers without context */
static uint8_t *zout;	/* inflated message */
static int ndeflate;	/* connections that negotiated permessage-deflate */
static char *json_body; /* --payload-json: the records, made once */
static size_t json_len;
static int64_t t_start, t_setup_done, t_window0, t_window1, t_drain0;
static long long sends_issued; /* open loop: sends issued since start */
static int rr_sender;	       /* open loop round robin */
static int *sender_idx, nsenders;
static int64_t prod_version; /* task: newest version acked */
static int64_t task_done_ctr;

/* counters: total and in the window */
struct counters {
	uint64_t sent, acked, delivered, errors, error_frames, closed,
		conn_failures, versions_missed, skipped, bytes_in, compressed,
		inflated, zbytes_in;
};
static struct counters tot, win0, win1;

/* latency histograms (ns), log-linear, < 1.6% error */
#define H_SUB	  64
#define H_BUCKETS (2 * H_SUB + 58 * H_SUB)
struct hist {
	uint64_t b[H_BUCKETS];
	uint64_t n, max;
	double sum;
};
static struct hist h_deliv, h_ack;

/* server and own resource use */
struct usage {
	double srv_cpu, own_cpu, srv2_cpu;
	long srv_rss_kib, srv_hwm_kib, srv2_rss_kib, srv2_hwm_kib;
};
static struct usage u0, u1;
static long srv_rss_start_kib = -1;

/* --watch-file: its size every 50 ms (the peak), at the end of the window
 * and at the end; -1 when never seen. */
static long long watch_peak = -1, watch_window_end = -1;
static int64_t watch_last_ns;

static long long watch_size(void)
{
	struct stat sb;
	return stat(cfg.watch_file, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void watch_sample(int64_t now)
{
	if (cfg.watch_file == NULL || now - watch_last_ns < 50000000)
		return;
	watch_last_ns = now;
	long long sz = watch_size();
	if (sz > watch_peak)
		watch_peak = sz;
}

static int errlogged;

/* ---- small helpers ---- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt,
								...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
	va_list ap;
	if (cfg.quiet)
		return;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (p == NULL && n)
		die("out of memory");
	return p;
}

static uint32_t rnd32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static void hist_add(struct hist *h, int64_t v)
{
	uint64_t x = v < 0 ? 0 : (uint64_t)v;
	size_t i;
	if (x < 2 * H_SUB) {
		i = (size_t)x;
	} else {
		int msb = 63 - __builtin_clzll(x);
		int shift = msb - 6; /* top 7 bits: [64, 127] */
		i = 2 * H_SUB + (size_t)(shift - 1) * H_SUB +
		    (size_t)((x >> shift) - H_SUB);
		if (i >= H_BUCKETS)
			i = H_BUCKETS - 1;
	}
	h->b[i]++;
	h->n++;
	h->sum += (double)x;
	if (x > h->max)
		h->max = x;
}

/* Midpoint of bucket i, in ns. */
static double hist_value(size_t i)
{
	if (i < 2 * H_SUB)
		return (double)i;
	size_t k = i - 2 * H_SUB;
	int shift = (int)(k / H_SUB) + 1;
	uint64_t top = (k % H_SUB) + H_SUB;
	return (double)(top << shift) + (double)(1ULL << shift) / 2.0;
}

static double hist_q(const struct hist *h, double q)
{
	uint64_t want, acc = 0;
	if (h->n == 0)
		return 0;
	want = (uint64_t)(q * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	for (size_t i = 0; i < H_BUCKETS; i++) {
		acc += h->b[i];
		if (acc > want) {
			double v = hist_value(i);
			return v > (double)h->max ? (double)h->max : v;
		}
	}
	return (double)h->max;
}

/* ---- /proc and rusage ---- */

static double proc_cpu(int pid)
{
	char path[64], buf[2048], *p;
	FILE *f;
	size_t n;
	unsigned long long ut = 0, st = 0;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL)
		return -1;
	p += 2; /* field 3 (state) */
	for (int field = 3; field < 14 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p == NULL || sscanf(p, "%llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void proc_mem(int pid, long *rss, long *hwm)
{
	char path[64], line[256];
	FILE *f;

	*rss = *hwm = -1;
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0)
			*rss = strtol(line + 6, NULL, 10);
		else if (strncmp(line, "VmHWM:", 6) == 0)
			*hwm = strtol(line + 6, NULL, 10);
	}
	fclose(f);
}

static double own_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void sample(struct usage *u)
{
	u->srv_cpu = proc_cpu(cfg.server_pid);
	u->own_cpu = own_cpu();
	proc_mem(cfg.server_pid, &u->srv_rss_kib, &u->srv_hwm_kib);
	u->srv2_cpu = proc_cpu(cfg.server_pid2);
	proc_mem(cfg.server_pid2, &u->srv2_rss_kib, &u->srv2_hwm_kib);
}

/* ---- tokens ---- */

static size_t b64url(const unsigned char *in, size_t n, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqr"
				  "stuvwxyz0123456789-_";
	size_t o = 0, i;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

/* HS256 JWT for uid with an optional role claim. */
static void mint_jwt(const char *uid, const char *role, char *out, size_t outsz)
{
	char claims[256], body[512], sig64[64];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t hl, bl;
	long long exp = (long long)time(NULL) + 86400;

	if (role)
		snprintf(claims, sizeof(claims),
			 "{\"sub\":\"%s\",\"role\":\"%s\",\"exp\":%lld}", uid,
			 role, exp);
	else
		snprintf(claims, sizeof(claims),
			 "{\"sub\":\"%s\",\"exp\":%lld}", uid, exp);
	hl = b64url(
		(const unsigned char *)"{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
		27, body);
	body[hl++] = '.';
	bl = b64url((const unsigned char *)claims, strlen(claims), body + hl);
	if (HMAC(EVP_sha256(), cfg.jwt_secret, (int)strlen(cfg.jwt_secret),
		 (const unsigned char *)body, hl + bl, mac, &maclen) == NULL)
		die("HMAC failed");
	b64url(mac, maclen, sig64);
	snprintf(out, outsz, "%s.%s", body, sig64);
}

static void load_token_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *u = strtok(line, " \t\r\n"), *t = strtok(NULL, " \t\r\n");
		if (u == NULL || t == NULL)
			continue;
		file_uids = xrealloc(file_uids,
				     sizeof(char *) * (size_t)(nfile + 1));
		file_tokens = xrealloc(file_tokens,
				       sizeof(char *) * (size_t)(nfile + 1));
		file_uids[nfile] = strdup(u);
		file_tokens[nfile] = strdup(t);
		nfile++;
	}
	fclose(f);
}

/* ---- output path ---- */

static void conn_fail(struct conn *c, const char *why);
static void write_cb(evutil_socket_t fd, short what, void *arg);

static void arm_write(struct conn *c)
{
	if (!c->wr_armed) {
		c->wr_armed = 1;
		event_add(c->wev, NULL);
	}
}

/* The socket, or TLS on it: > 0 bytes moved, 0 end of stream, -1 would
 * block (TLS that wants to write has armed the write event), -2 failed. */
static ssize_t tls_result(struct conn *c)
{
	switch (SSL_get_error(c->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
		return -1;
	case SSL_ERROR_WANT_WRITE:
		arm_write(c);
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		return -2;
	}
}

static ssize_t io_read(struct conn *c, void *buf, size_t n)
{
	ssize_t r;
	size_t got = 0;

	if (c->ssl) {
		ERR_clear_error();
		if (SSL_read_ex(c->ssl, buf, n, &got) == 1)
			return (ssize_t)got;
		return tls_result(c);
	}
	do
		r = read(c->fd, buf, n);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
	return r;
}

static ssize_t io_write(struct conn *c, const void *buf, size_t n)
{
	ssize_t r;
	size_t put = 0;

	if (c->ssl) {
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, buf, n, &put) == 1)
			return (ssize_t)put;
		r = tls_result(c);
		return r == 0 ? -2 : r;
	}
	do
		r = write(c->fd, buf, n);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
	return r;
}

static void wreserve(struct conn *c, size_t add)
{
	if (c->woff && c->woff == c->wlen)
		c->woff = c->wlen = 0;
	if (c->wlen + add <= c->wcap)
		return;
	if (c->woff) {
		memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
		c->wlen -= c->woff;
		c->woff = 0;
		if (c->wlen + add <= c->wcap)
			return;
	}
	while (c->wcap < c->wlen + add)
		c->wcap = c->wcap ? c->wcap * 2 : 1024;
	c->wbuf = xrealloc(c->wbuf, c->wcap);
}

static void mark_dirty(struct conn *c)
{
	if (!c->in_dirty) {
		c->in_dirty = 1;
		c->dnext = dirty;
		dirty = c;
	}
}

/* Queue one masked text frame. */
static void queue_text(struct conn *c, const char *s, size_t n)
{
	uint8_t *p;
	uint32_t key = rnd32();
	uint8_t k[4];
	size_t h = n < 126 ? 2 : n < 65536 ? 4 : 10;

	wreserve(c, h + 4 + n);
	p = c->wbuf + c->wlen;
	p[0] = 0x81;
	if (n < 126) {
		p[1] = (uint8_t)(0x80 | n);
	} else if (n < 65536) {
		p[1] = 0x80 | 126;
		p[2] = (uint8_t)(n >> 8);
		p[3] = (uint8_t)n;
	} else {
		p[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			p[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
	}
	p += h;
	memcpy(k, &key, 4);
	memcpy(p, k, 4);
	p += 4;
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)s[i] ^ k[i & 3];
	c->wlen += (uint32_t)(h + 4 + n);
	mark_dirty(c);
}

static void queue_control(struct conn *c, uint8_t op, const uint8_t *d,
			  size_t n)
{
	uint8_t *p;
	uint32_t key = rnd32();
	uint8_t k[4];
	if (n > 125)
		n = 125;
	wreserve(c, 6 + n);
	p = c->wbuf + c->wlen;
	p[0] = (uint8_t)(0x80 | op);
	p[1] = (uint8_t)(0x80 | n);
	memcpy(k, &key, 4);
	memcpy(p + 2, k, 4);
	for (size_t i = 0; i < n; i++)
		p[6 + i] = d[i] ^ k[i & 3];
	c->wlen += (uint32_t)(6 + n);
	mark_dirty(c);
}

static void flush(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t w = io_write(c, c->wbuf + c->woff, c->wlen - c->woff);
		if (w > 0) {
			c->woff += (uint32_t)w;
			continue;
		}
		if (w == -1) {
			arm_write(c);
			return;
		}
		conn_fail(c, "write failed");
		return;
	}
	c->woff = c->wlen = 0;
	if (c->wbuf && c->wcap > 65536 && c->state == CS_READY) {
		free(c->wbuf);
		c->wbuf = NULL;
		c->wcap = 0;
	}
}

static void flush_dirty(void)
{
	while (dirty) {
		struct conn *c = dirty;
		dirty = c->dnext;
		c->in_dirty = 0;
		if (c->state != CS_DEAD && !c->wr_armed)
			flush(c);
	}
}

/* ---- requests ---- */

static void ring_push(struct conn *c, int64_t t)
{
	if (c->ring_n == c->ring_cap) {
		uint32_t ncap = c->ring_cap ? c->ring_cap * 2 : 16;
		int64_t *r = xrealloc(NULL, sizeof(int64_t) * ncap);
		for (uint32_t i = 0; i < c->ring_n; i++)
			r[i] = c->ring[(c->ring_head + i) % c->ring_cap];
		free(c->ring);
		c->ring = r;
		c->ring_head = 0;
		c->ring_cap = ncap;
	}
	c->ring[(c->ring_head + c->ring_n) % c->ring_cap] = t;
	c->ring_n++;
}

static int ring_pop(struct conn *c, int64_t *t)
{
	if (c->ring_n == 0)
		return 0;
	*t = c->ring[c->ring_head];
	c->ring_head = (c->ring_head + 1) % c->ring_cap;
	c->ring_n--;
	return 1;
}

static int sending(void)
{
	return (phase == PH_WARMUP || phase == PH_WINDOW) &&
	       (long long)tot.sent < cfg.max_sends;
}

/* One request from c: publish, send or task.update. */
static void send_one(struct conn *c)
{
	static char buf[PAYLOAD_MAX + 1024];
	int n = 0, pl;
	int64_t t = now_ns();

	switch (c->role) {
	case R_PUB:
	case R_SEND: {
		char head[160];
		int hl;
		if (c->role == R_PUB)
			hl = snprintf(head, sizeof(head),
				      "{\"type\":\"publish\",\"room\":\"%s\","
				      "\"data\":",
				      cfg.room);
		else
			hl = snprintf(
				head, sizeof(head),
				"{\"type\":\"send\",\"to\":\"%s\",\"data\":",
				conns[c->target].uid);
		/* data = {"t":NS,"p":"xxx"} padded to cfg.payload bytes;
		 * --payload-json: {"t":NS,"items":[...],"p":"x"} */
		char data[32];
		int dl = snprintf(data, sizeof(data), "{\"t\":%" PRId64 ",", t);
		memcpy(buf, head, (size_t)hl);
		memcpy(buf + hl, data, (size_t)dl);
		n = hl + dl;
		if (json_body) {
			memcpy(buf + n, "\"items\":", 8);
			memcpy(buf + n + 8, json_body, json_len);
			n += 8 + (int)json_len;
			buf[n++] = ',';
		}
		memcpy(buf + n, "\"p\":\"", 5);
		n += 5;
		pl = cfg.payload - (n - hl) - 2;
		if (pl < 0)
			pl = 0;
		memcpy(buf + n, pad, (size_t)pl);
		n += pl;
		memcpy(buf + n, "\"}}", 3);
		n += 3;
		break;
	}
	case R_PROD:
		task_done_ctr++;
		n = snprintf(buf, sizeof(buf),
			     "{\"type\":\"task.update\",\"task\":\"%s\","
			     "\"done\":%lld,"
			     "\"total\":1000000000,\"note\":\"%" PRId64 "\"}",
			     cfg.task, (long long)task_done_ctr, t);
		break;
	default:
		return;
	}
	queue_text(c, buf, (size_t)n);
	ring_push(c, t);
	tot.sent++;
}

/* ---- connection setup ---- */

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void kick(void);
static void maybe_start(void);

static const char *role_claim(const struct conn *c)
{
	if (c->role == R_PROD)
		return "producer";
	if (cfg.mode == M_TASK && c->role == R_SUB)
		return "admin";
	return NULL;
}

static void send_handshake(struct conn *c)
{
	char tok[1024], req[2048];
	const char *t = c->uid;
	int n;

	if (cfg.jwt_secret) {
		mint_jwt(c->uid, role_claim(c), tok, sizeof(tok));
		t = tok;
	} else if (nfile) {
		t = file_tokens[c->idx];
	}
	n = snprintf(
		req, sizeof(req),
		"GET %s?token=%s&uid=%s HTTP/1.1\r\n"
		"Host: %s:%d\r\n"
		"Upgrade: websocket\r\n"
		"Connection: Upgrade\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		"Sec-WebSocket-Version: 13\r\n%s\r\n",
		cfg.path, t, c->uid, cfg.host, c->port2 ? cfg.port2 : cfg.port,
		cfg.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
			      "client_max_window_bits\r\n"
			    : "");
	wreserve(c, (size_t)n);
	memcpy(c->wbuf + c->wlen, req, (size_t)n);
	c->wlen += (uint32_t)n;
	c->state = CS_HANDSHAKE;
	flush(c);
}

/* One step of the TLS handshake; the upgrade request once it is done. */
static void tls_step(struct conn *c)
{
	char why[200];
	int r;

	ERR_clear_error();
	r = SSL_connect(c->ssl);
	if (r == 1) {
		send_handshake(c);
		return;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return;
	case SSL_ERROR_WANT_WRITE:
		arm_write(c);
		return;
	default:
		snprintf(why, sizeof(why), "TLS handshake: ");
		ERR_error_string_n(ERR_get_error(), why + strlen(why),
				   sizeof(why) - strlen(why));
		conn_fail(c, why);
	}
}

/* TCP is up: TLS first with --tls, else the upgrade request. */
static void connected(struct conn *c)
{
	if (!cfg.tls) {
		send_handshake(c);
		return;
	}
	ERR_clear_error();
	c->ssl = SSL_new(tls_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		conn_fail(c, "SSL_new failed");
		return;
	}
	SSL_set_connect_state(c->ssl);
	c->state = CS_TLS;
	tls_step(c);
}

static void start_conn(struct conn *c)
{
	struct sockaddr_in src;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		pending++;
		conn_fail(c, "socket() failed");
		return;
	}
	c->fd = fd;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cfg.src_ips > 1 &&
	    ntohl(server_addr.sin_addr.s_addr) >> 24 == 127) {
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
			   sizeof(one));
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr =
			htonl(0x7f000001u + (uint32_t)(c->idx % cfg.src_ips));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			note("bind to 127.x failed: %s", strerror(errno));
	}
	c->rev = event_new(base, fd, EV_READ | EV_PERSIST, read_cb, c);
	c->wev = event_new(base, fd, EV_WRITE, write_cb, c);
	if (c->rev == NULL || c->wev == NULL)
		die("event_new failed");
	pending++;
	c->state = CS_CONNECTING;
	event_add(c->rev, NULL);
	if (connect(fd,
		    (struct sockaddr *)(c->port2 ? &server_addr2
						 : &server_addr),
		    sizeof(server_addr)) == 0) {
		connected(c);
	} else if (errno == EINPROGRESS) {
		c->wr_armed = 1;
		event_add(c->wev, NULL);
	} else {
		conn_fail(c, strerror(errno));
	}
}

static void conn_ready(struct conn *c)
{
	if (c->state == CS_READY)
		return;
	c->state = CS_READY;
	nready++;
	pending--;
	if (c->rcap > 4096 && c->rlen == 0) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rcap = 0;
	}
	kick();
	maybe_start();
}

static void conn_fail(struct conn *c, const char *why)
{
	int was = c->state;
	if (was == CS_DEAD)
		return;
	if (errlogged < MAX_ERRLOG) {
		errlogged++;
		note("connection %s (#%d): %s", c->uid, c->idx, why);
	}
	if (c->rev) {
		event_free(c->rev);
		c->rev = NULL;
	}
	if (c->wev) {
		event_free(c->wev);
		c->wev = NULL;
	}
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->zs) {
		inflateEnd(c->zs);
		free(c->zs);
		c->zs = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = CS_DEAD;
	ndead++;
	if (was == CS_READY) {
		nready--;
		tot.closed++;
	} else {
		tot.conn_failures++;
		pending--;
	}
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = c->rcap = 0;
	c->woff = c->wlen = 0;
	kick();
	maybe_start();
}

/* Start connections while few are in setup. Task subscribers wait for the
 * producer to have created the task. */
static void kick(void)
{
	while (next_start < nconns && pending < cfg.max_pending) {
		struct conn *c = &conns[next_start];
		if (cfg.mode == M_TASK && c->role == R_SUB &&
		    conns[0].state != CS_READY)
			return;
		next_start++;
		start_conn(c);
	}
}

static void on_connect_frame(struct conn *c)
{
	char buf[512];
	int n;

	c->state = CS_OPEN;
	switch (c->role) {
	case R_SUB:
		if (cfg.mode == M_TASK)
			n = snprintf(buf, sizeof(buf),
				     "{\"type\":\"subscribe\",\"task\":\"%s\"}",
				     cfg.task);
		else
			n = snprintf(buf, sizeof(buf),
				     "{\"type\":\"join\",\"room\":\"%s\"}",
				     cfg.room);
		queue_text(c, buf, (size_t)n);
		break;
	case R_PUB:
		n = snprintf(buf, sizeof(buf),
			     "{\"type\":\"join\",\"room\":\"%s\"}", cfg.room);
		queue_text(c, buf, (size_t)n);
		break;
	case R_PROD:
		n = snprintf(
			buf, sizeof(buf),
			"{\"type\":\"task.create\",\"id\":\"%s\",\"title\":"
			"\"loadgen\",\"total\":1000000000}",
			cfg.task);
		queue_text(c, buf, (size_t)n);
		break;
	default:
		conn_ready(c);
		break;
	}
}

/* ---- inbound ---- */

static int64_t parse_i64(const uint8_t *p, const uint8_t *end)
{
	int64_t v = 0;
	int n = 0;
	while (p < end && *p >= '0' && *p <= '9' && n++ < 18)
		v = v * 10 + (*p++ - '0');
	return v;
}

static const uint8_t *find(const uint8_t *p, size_t n, const char *lit)
{
	return memmem(p, n, lit, strlen(lit));
}

static int in_window(void)
{
	return phase == PH_WINDOW;
}

static void on_reply(struct conn *c, int ok, const uint8_t *p, size_t n)
{
	int64_t t0;
	if (!ring_pop(c, &t0))
		return;
	if (!ok)
		return;
	tot.acked++;
	if (in_window())
		hist_add(&h_ack, now_ns() - t0);
	if (c->role == R_PROD) {
		const uint8_t *v = find(p, n, "\"version\":");
		if (v) {
			int64_t ver = parse_i64(v + 10, p + n);
			if (ver > prod_version)
				prod_version = ver;
		}
	}
	if (cfg.rate <= 0 && sending())
		send_one(c);
}

static void on_text(struct conn *c, const uint8_t *p, size_t n)
{
	const uint8_t *t = find(p, n < 48 ? n : 48, "\"type\":\"");
	const uint8_t *end = p + n;
	size_t tl;

	if (t == NULL) {
		tot.error_frames++;
		return;
	}
	t += 8;
	tl = 0;
	while (t + tl < end && t[tl] != '"')
		tl++;

	if (tl == 7 && memcmp(t, "message", 7) == 0) {
		tot.delivered++;
		if (in_window()) {
			const uint8_t *ts = find(p, n, "\"t\":");
			if (ts)
				hist_add(&h_deliv,
					 now_ns() - parse_i64(ts + 4, end));
		}
	} else if (tl == 3 && memcmp(t, "ack", 3) == 0) {
		on_reply(c, 1, p, n);
	} else if (tl == 4 && memcmp(t, "task", 4) == 0) {
		const uint8_t *v = find(p, n, "\"version\":");
		int64_t ver = v ? parse_i64(v + 10, end) : 0;
		if (c->state != CS_READY) {
			c->last_version = ver;
			if (c->role == R_PROD && ver > prod_version)
				prod_version = ver;
			conn_ready(c);
			return;
		}
		if (c->role != R_SUB)
			return;
		tot.delivered++;
		if (c->last_version && ver > c->last_version + 1)
			tot.versions_missed +=
				(uint64_t)(ver - c->last_version - 1);
		if (ver > c->last_version)
			c->last_version = ver;
		if (in_window()) {
			const uint8_t *nt = find(p, n, "\"note\":\"");
			if (nt)
				hist_add(&h_deliv,
					 now_ns() - parse_i64(nt + 8, end));
		}
	} else if (tl == 7 && memcmp(t, "connect", 7) == 0) {
		if (c->state == CS_UPGRADED)
			on_connect_frame(c);
	} else if (tl == 6 && memcmp(t, "joined", 6) == 0) {
		conn_ready(c);
	} else if (tl == 5 && memcmp(t, "error", 5) == 0) {
		tot.errors++;
		if (errlogged < MAX_ERRLOG) {
			errlogged++;
			note("error frame on %s: %.*s", c->uid,
			     (int)(n > 300 ? 300 : n), (const char *)p);
		}
		if (c->state == CS_READY)
			on_reply(c, 0, p, n);
		else if (c->role == R_PROD)
			conn_ready(c); /* e.g. the task exists already */
	}
	/* pong, resumed, left, ...: nothing to do */
}

/* The 101's Sec-WebSocket-Extensions: did the server take permessage-deflate,
 * and does it keep its compression context between messages? */
static void read_extensions(struct conn *c, const uint8_t *buf, size_t n)
{
	char hs[HS_MAX + 1], *h, *eol;

	if (n > HS_MAX)
		n = HS_MAX;
	memcpy(hs, buf, n);
	hs[n] = '\0';
	for (h = hs; (h = strcasestr(h, "\nsec-websocket-extensions:"));
	     h = eol) {
		eol = strchr(h + 1, '\n');
		if (eol == NULL)
			eol = hs + n;
		*eol = '\0';
		if (strcasestr(h, "permessage-deflate") == NULL)
			continue;
		c->pmd = 1;
		c->pmd_nct =
			strcasestr(h, "server_no_context_takeover") != NULL;
		break;
	}
	if (!c->pmd)
		return;
	ndeflate++;
	if (c->pmd_nct)
		return;
	c->zs = calloc(1, sizeof(*c->zs));
	if (c->zs == NULL || inflateInit2(c->zs, -15) != Z_OK)
		die("inflateInit2 failed");
}

/* Inflate one message (RFC 7692 §7.2.2: append 00 00 ff ff) into zout;
 * its length, or -1. */
static long inflate_msg(z_stream *z, const uint8_t *p, size_t n)
{
	static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
	int r;

	z->next_out = zout;
	z->avail_out = RX_SIZE;
	z->next_in = (uint8_t *)p;
	z->avail_in = (uInt)n;
	r = inflate(z, Z_SYNC_FLUSH);
	if (r != Z_OK && r != Z_BUF_ERROR)
		return -1;
	z->next_in = (uint8_t *)tail;
	z->avail_in = 4;
	r = inflate(z, Z_SYNC_FLUSH);
	if ((r != Z_OK && r != Z_BUF_ERROR) || z->avail_in || z->avail_out == 0)
		return -1;
	return (long)(RX_SIZE - z->avail_out);
}

/* A compressed text message. A server that keeps context needs every one
 * inflated; otherwise every --inflate-every'th is, and the rest count as
 * deliveries unread (only messages are long enough to be compressed). */
static void on_compressed(struct conn *c, const uint8_t *p, size_t n)
{
	z_stream *z = c->zs;
	long len;

	tot.compressed++;
	tot.zbytes_in += n;
	if (z == NULL) {
		if (tot.compressed % (uint64_t)cfg.inflate_every) {
			if (c->state == CS_READY)
				tot.delivered++;
			return;
		}
		z = &zs_nct;
		inflateReset(z);
	}
	len = inflate_msg(z, p, n);
	if (len < 0) {
		conn_fail(c, "inflate failed");
		return;
	}
	tot.inflated++;
	on_text(c, zout, (size_t)len);
}

/* Parse frames from buf; returns the bytes consumed (whole frames). */
static size_t process(struct conn *c, uint8_t *buf, size_t len)
{
	size_t off = 0;

	if (c->state == CS_HANDSHAKE) {
		uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);
		if (e == NULL) {
			if (len >= HS_MAX)
				conn_fail(c, "handshake reply too large");
			return 0;
		}
		if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
			char why[160];
			uint8_t *nl = memchr(buf, '\r', len);
			snprintf(why, sizeof(why), "refused: %.*s",
				 (int)(nl ? nl - buf : 40), (const char *)buf);
			conn_fail(c, why);
			return len;
		}
		off = (size_t)(e + 4 - buf);
		if (cfg.deflate)
			read_extensions(c, buf, off);
		c->state = CS_UPGRADED;
	}
	while (off + 2 <= len && c->state != CS_DEAD) {
		uint8_t b0 = buf[off], b1 = buf[off + 1];
		uint8_t op = b0 & 0x0f;
		size_t h = 2;
		uint64_t pl = b1 & 0x7f;
		if (b1 & 0x80) {
			conn_fail(c, "masked server frame");
			return len;
		}
		if (pl == 126) {
			if (off + 4 > len)
				break;
			pl = (uint64_t)buf[off + 2] << 8 | buf[off + 3];
			h = 4;
		} else if (pl == 127) {
			if (off + 10 > len)
				break;
			pl = 0;
			for (int i = 0; i < 8; i++)
				pl = pl << 8 | buf[off + 2 + i];
			h = 10;
		}
		if (pl > RX_SIZE / 2) {
			conn_fail(c, "frame too large");
			return len;
		}
		if (off + h + pl > len)
			break;
		uint8_t *p = buf + off + h;
		switch (op) {
		case 0x0:
		case 0x1:
			if ((b0 & 0x40) && c->pmd)
				on_compressed(c, p, (size_t)pl);
			else
				on_text(c, p, (size_t)pl);
			break;
		case 0x8:
			conn_fail(c,
				  pl >= 2 ? "closed by the server" : "closed");
			if (errlogged < MAX_ERRLOG && pl >= 2)
				note("close code %u: %.*s", p[0] << 8 | p[1],
				     (int)pl - 2, (const char *)p + 2);
			return len;
		case 0x9:
			queue_control(c, 0xA, p, (size_t)pl);
			break;
		default:
			break;
		}
		off += h + (size_t)pl;
	}
	return off;
}

static uint8_t rx[RX_SIZE];

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	size_t have = 0;

	(void)what;
	if (c->rlen) {
		memcpy(rx, c->rbuf, c->rlen);
		have = c->rlen;
		c->rlen = 0;
	}
	(void)fd;
	if (c->state == CS_TLS) {
		tls_step(c);
		flush_dirty();
		return;
	}
	for (;;) {
		ssize_t r = io_read(c, rx + have, RX_SIZE - have);
		if (r == -1)
			break;
		if (r <= 0) {
			conn_fail(c, r == 0   ? "closed by the server (EOF)"
				     : c->ssl ? "TLS read failed"
					      : strerror(errno));
			return;
		}
		tot.bytes_in += (uint64_t)r;
		int full = (size_t)r == RX_SIZE - have;
		have += (size_t)r;
		size_t used = process(c, rx, have);
		if (c->state == CS_DEAD)
			return;
		if (used < have)
			memmove(rx, rx + used, have - used);
		have -= used;
		/* TLS: read until OpenSSL wants more, it may hold a record */
		if (!full && c->ssl == NULL)
			break;
	}
	if (have) {
		if (c->rcap < have) {
			c->rcap = (uint32_t)have < 256 ? 256 : (uint32_t)have;
			c->rbuf = xrealloc(c->rbuf, c->rcap);
		}
		memcpy(c->rbuf, rx, have);
		c->rlen = (uint32_t)have;
	}
	flush_dirty();
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)what;
	c->wr_armed = 0;
	if (c->state == CS_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			conn_fail(c, strerror(err));
			return;
		}
		connected(c);
		return;
	}
	if (c->state == CS_TLS) {
		tls_step(c);
		return;
	}
	flush(c);
	flush_dirty();
}

/* ---- phases ---- */

static struct event *tick_ev;

static void begin_traffic(void)
{
	phase = PH_WARMUP;
	t_setup_done = now_ns();
	note("setup done: %d connections ready, %d failed, %.2f s", nready,
	     ndead, (double)(t_setup_done - t_start) / 1e9);
	if (cfg.rate <= 0) {
		for (int i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			if (c->state != CS_READY ||
			    (c->role != R_PUB && c->role != R_SEND &&
			     c->role != R_PROD))
				continue;
			for (int k = 0; k < cfg.inflight && sending(); k++)
				send_one(c);
		}
		flush_dirty();
	}
}

static void maybe_start(void)
{
	if (phase == PH_SETUP && nready + ndead == nconns && nready > 0)
		begin_traffic();
}

static void snapshot(struct counters *k, struct usage *u)
{
	*k = tot;
	sample(u);
}

static void open_loop_sends(int64_t now)
{
	double el = (double)(now - t_setup_done) / 1e9;
	long long due = (long long)(el * cfg.rate) - sends_issued;
	if (nsenders == 0)
		return;
	while (due-- > 0 && sending()) {
		struct conn *c = NULL;
		for (int tries = 0; tries < nsenders; tries++) {
			struct conn *x = &conns[sender_idx[rr_sender]];
			rr_sender = (rr_sender + 1) % nsenders;
			if (x->state == CS_READY) {
				c = x;
				break;
			}
		}
		sends_issued++;
		if (c == NULL)
			break;
		if (c->ring_n >= 1000000) {
			tot.skipped++;
			continue;
		}
		send_one(c);
	}
	flush_dirty();
}

static int64_t outstanding(void)
{
	int64_t n = 0;
	for (int i = 0; i < nconns; i++)
		if (conns[i].state == CS_READY)
			n += conns[i].ring_n;
	return n;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = now_ns();
	(void)fd;
	(void)what;
	(void)arg;

	watch_sample(now);
	switch (phase) {
	case PH_SETUP:
		if ((double)(now - t_start) / 1e9 > cfg.setup_timeout) {
			note("setup timed out: %d of %d ready, %d failed",
			     nready, nconns, ndead);
			phase = PH_DONE;
			event_base_loopbreak(base);
		}
		return;
	case PH_WARMUP:
		if (cfg.rate > 0)
			open_loop_sends(now);
		if ((double)(now - t_setup_done) / 1e9 >= cfg.warmup) {
			phase = PH_WINDOW;
			t_window0 = now;
			snapshot(&win0, &u0);
		}
		return;
	case PH_WINDOW:
		if (cfg.rate > 0)
			open_loop_sends(now);
		if ((double)(now - t_window0) / 1e9 >= cfg.duration) {
			t_window1 = now_ns();
			snapshot(&win1, &u1);
			if (cfg.watch_file)
				watch_window_end = watch_size();
			phase = PH_DRAIN;
			t_drain0 = t_window1;
		}
		return;
	case PH_DRAIN: {
		double el = (double)(now - t_drain0) / 1e9;
		int done = outstanding() == 0;
		if (cfg.mode == M_TASK && done) {
			/* every subscriber caught up with the last version? */
			for (int i = 1; i < nconns && done; i++)
				if (conns[i].state == CS_READY &&
				    conns[i].last_version < prod_version)
					done = 0;
		}
		if ((done && el >= 0.2) || el >= cfg.drain) {
			phase = PH_DONE;
			event_base_loopbreak(base);
		}
		return;
	}
	case PH_DONE:
		return;
	}
}

static void watchdog(int sig)
{
	static const char msg[] =
		"loadgen: watchdog: run exceeded its time bound\n";
	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
	}
	_exit(3);
}

/* ---- report ---- */

static void hist_json(FILE *f, const char *name, const struct hist *h)
{
	fprintf(f,
		"\"%s\":{\"count\":%" PRIu64
		",\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
		"\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}",
		name, h->n, h->n ? h->sum / (double)h->n / 1e3 : 0,
		hist_q(h, 0.5) / 1e3, hist_q(h, 0.9) / 1e3,
		hist_q(h, 0.99) / 1e3, hist_q(h, 0.999) / 1e3,
		(double)h->max / 1e3);
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static int report(void)
{
	int ok = phase == PH_DONE && t_window1 > 0;
	double win = ok ? (double)(t_window1 - t_window0) / 1e9 : 0;
	uint64_t deliv = win1.delivered - win0.delivered;
	uint64_t acked = win1.acked - win0.acked;
	uint64_t sent = win1.sent - win0.sent;
	double scpu = (u0.srv_cpu >= 0 && u1.srv_cpu >= 0)
			      ? u1.srv_cpu - u0.srv_cpu
			      : -1;
	double ocpu = u1.own_cpu - u0.own_cpu;
	int64_t missing = 0;
	FILE *f = stdout;

	if (cfg.mode == M_TASK) {
		for (int i = 1; i < nconns; i++)
			if (conns[i].state == CS_READY &&
			    conns[i].last_version < prod_version)
				missing += prod_version - conns[i].last_version;
	}
	fprintf(f, "{\"mode\":\"%s\",\"label\":", mode_names[cfg.mode]);
	json_str(f, cfg.label);
	fprintf(f,
		",\"ok\":%s,\"conns\":%d,\"senders\":%d,\"inflight\":%d,"
		"\"rate\":%g,"
		"\"payload\":%d,\"window_s\":%.3f,\"setup_s\":%.3f,\"ready\":%"
		"d,"
		"\"conn_failures\":%" PRIu64 ",\"closed\":%" PRIu64
		",\"errors\":%" PRIu64 ",\"bad_frames\":%" PRIu64
		",\"skipped\":%" PRIu64 ",",
		ok ? "true" : "false", cfg.n,
		cfg.mode == M_DIRECT ? cfg.senders
				     : (cfg.mode == M_IDLE ? 0 : 1),
		cfg.inflight, cfg.rate > 0 ? cfg.rate : 0, cfg.payload, win,
		t_setup_done ? (double)(t_setup_done - t_start) / 1e9 : -1,
		nready, tot.conn_failures, tot.closed, tot.errors,
		tot.error_frames, tot.skipped);
	fprintf(f,
		"\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
		",\"delivered\":%" PRIu64 ",\"sent_per_s\":%.1f,\"acked_per_"
					  "s\":%.1f,\"delivered_per_s\":%.1f,"
		"\"total\":{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
		",\"delivered\":%" PRIu64 "},",
		sent, acked, deliv, win > 0 ? sent / win : 0,
		win > 0 ? acked / win : 0, win > 0 ? deliv / win : 0, tot.sent,
		tot.acked, tot.delivered);
	if (cfg.mode == M_TASK)
		fprintf(f,
			"\"last_version\":%" PRId64
			",\"versions_missed\":%" PRIu64
			",\"versions_missing_at_end\":%" PRId64 ",",
			prod_version, tot.versions_missed, missing);
	hist_json(f, "latency_us", &h_deliv);
	fputc(',', f);
	hist_json(f, "ack_latency_us", &h_ack);
	fprintf(f,
		",\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_util\":%.3f,"
		"\"cpu_us_per_delivery\":%.4f,\"cpu_us_per_ack\":%.4f,"
		"\"rss_start_kib\":%ld,\"rss_before_kib\":%ld,\"rss_kib\":%ld,"
		"\"hwm_kib\":%ld",
		cfg.server_pid, scpu, win > 0 && scpu >= 0 ? scpu / win : -1,
		deliv && scpu >= 0 ? scpu * 1e6 / (double)deliv : -1,
		acked && scpu >= 0 ? scpu * 1e6 / (double)acked : -1,
		srv_rss_start_kib, u0.srv_rss_kib, u1.srv_rss_kib,
		u1.srv_hwm_kib);
	if (cfg.mode == M_IDLE && srv_rss_start_kib >= 0 &&
	    u1.srv_rss_kib >= 0 && nready > 0)
		fprintf(f, ",\"rss_per_conn_kib\":%.3f",
			(double)(u1.srv_rss_kib - srv_rss_start_kib) / nready);
	fputc('}', f);
	if (cfg.server_pid2 > 0) {
		double c2 = (u0.srv2_cpu >= 0 && u1.srv2_cpu >= 0)
				    ? u1.srv2_cpu - u0.srv2_cpu
				    : -1;
		fprintf(f,
			",\"server2\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_util\":%"
			".3f,"
			"\"cpu_us_per_delivery\":%.4f,\"cpu_us_per_ack\":%.4f,"
			"\"rss_kib\":%ld,\"hwm_kib\":%ld}",
			cfg.server_pid2, c2, win > 0 && c2 >= 0 ? c2 / win : -1,
			deliv && c2 >= 0 ? c2 * 1e6 / (double)deliv : -1,
			acked && c2 >= 0 ? c2 * 1e6 / (double)acked : -1,
			u1.srv2_rss_kib, u1.srv2_hwm_kib);
	}
	{
		uint64_t bin = win1.bytes_in - win0.bytes_in;
		fprintf(f,
			",\"tls\":%s,\"deflate_negotiated\":%d,\"bytes_in\":"
			"%" PRIu64 ",\"bytes_in_per_delivery\":%.1f,"
				   "\"compressed\":%" PRIu64
			",\"inflated\":%" PRIu64
			",\"compressed_bytes\":%" PRIu64,
			cfg.tls ? "true" : "false", ndeflate, bin,
			deliv ? (double)bin / (double)deliv : -1,
			win1.compressed - win0.compressed, tot.inflated,
			win1.zbytes_in - win0.zbytes_in);
	}
	fprintf(f, ",\"loadgen\":{\"cpu_s\":%.3f,\"cpu_util\":%.3f}", ocpu,
		win > 0 ? ocpu / win : 0);
	if (cfg.watch_file) {
		long long end = watch_size();
		if (end > watch_peak)
			watch_peak = end;
		fprintf(f,
			",\"watch\":{\"peak_bytes\":%lld,\"window_end_bytes\":%"
			"lld,"
			"\"end_bytes\":%lld}",
			watch_peak, watch_window_end, end);
	}
	fputs("}\n", f);
	fflush(f);

	note("%s %s: %d conns ready, window %.2f s: sent %.0f/s, acked %.0f/s, "
	     "delivered %.0f/s; latency p50 %.0f us p99 %.0f us p99.9 %.0f us; "
	     "server CPU %.2f s (%.3f us/delivery), RSS %ld KiB; loadgen CPU "
	     "%.2f s; "
	     "errors %" PRIu64 ", failures %" PRIu64 ", closed %" PRIu64,
	     mode_names[cfg.mode], cfg.label, nready, win,
	     win > 0 ? sent / win : 0, win > 0 ? acked / win : 0,
	     win > 0 ? deliv / win : 0, hist_q(&h_deliv, 0.5) / 1e3,
	     hist_q(&h_deliv, 0.99) / 1e3, hist_q(&h_deliv, 0.999) / 1e3, scpu,
	     deliv && scpu >= 0 ? scpu * 1e6 / (double)deliv : -1,
	     u1.srv_rss_kib, ocpu, tot.errors, tot.conn_failures, tot.closed);
	return ok ? 0 : 1;
}

/* ---- main ---- */

/* --payload-json: records of the kind an API sends (ids, names, numbers,
 * states, short texts), made once from the generator's PRNG, as many as
 * fit in about size - 64 bytes; send_one pads the rest. */
static void make_json_body(size_t size)
{
	static const char *const words[] = {
		"alpha",   "bravo",  "charlie", "delta",    "echo",
		"foxtrot", "golf",   "hotel",	"india",    "juliet",
		"kilo",	   "lima",   "mike",	"november", "oscar",
		"papa",	   "quebec", "romeo",	"sierra",   "tango"};
	static const char *const states[] = {"queued", "running", "done",
					     "failed"};
	char rec[512];
	size_t cap = size + 1, n = 1;
#define W() words[rnd32() % (sizeof(words) / sizeof(words[0]))]

	json_body = xrealloc(NULL, cap + 1);
	json_body[0] = '[';
	for (int id = 0;; id++) {
		int l = snprintf(
			rec, sizeof(rec),
			"%s{\"id\":%d,\"user\":\"user-%05u\",\"score\":%u.%02u,"
			"\"state\":\"%s\",\"tags\":[\"%s\",\"%s\"],"
			"\"text\":\"%s %s %s %s\"}",
			id ? "," : "", 1000 + id * 7 + (int)(rnd32() % 7),
			rnd32() % 100000, rnd32() % 1000, rnd32() % 100,
			states[rnd32() % 4], W(), W(), W(), W(), W(), W());
		if (n + (size_t)l + 1 + 64 > size)
			break;
		memcpy(json_body + n, rec, (size_t)l);
		n += (size_t)l;
	}
#undef W
	json_body[n++] = ']';
	json_body[n] = '\0';
	json_len = n;
}

static void usage(void)
{
	fputs("usage: loadgen --mode fanout|direct|idle|task [options]\n"
	      "  --host H --port P --path /ws   server (default "
	      "127.0.0.1:8080/ws)\n"
	      "  --conns N        subscribers / receivers / idle connections "
	      "(100)\n"
	      "  --senders S      direct: sending connections (100)\n"
	      "  --inflight K     closed loop: requests awaiting their ack, "
	      "per sender\n"
	      "                   (fanout 64, direct 8, task 1)\n"
	      "  --rate R         open loop: requests per second over all "
	      "senders\n"
	      "                   (task default 1000; 0 = closed loop)\n"
	      "  --payload B      bytes of the \"data\" object (128)\n"
	      "  --duration S --warmup S --drain S --setup-timeout S  (5, 1, "
	      "2, 60)\n"
	      "  --max-sends N    bound on requests sent (50000000)\n"
	      "  --server-pid PID server to sample (/proc/PID/stat, "
	      "/proc/PID/status)\n"
	      "  --jwt-secret S   mint HS256 JWTs; --token-file F: \"uid "
	      "token\" lines;\n"
	      "                   neither: the token is the uid\n"
	      "  --uid-prefix P --room R --task ID --label TEXT\n"
	      "  --src-ips N      spread source addresses over 127.0.0.1..N "
	      "(64)\n"
	      "  --max-pending N  connections in setup at once (256)\n"
	      "  --watch-file F   report F's size: peak (sampled every 50 ms), "
	      "at the\n"
	      "                   end of the window, at the end (a database's "
	      "-wal)\n"
	      "  --tls            TLS on every connection (no certificate "
	      "check)\n"
	      "  --deflate        offer permessage-deflate "
	      "(client_max_window_bits)\n"
	      "  --inflate-every N  inflate every Nth compressed message, "
	      "count the\n"
	      "                   others unread (1; all when the server keeps "
	      "context)\n"
	      "  --payload-json   \"data\" carries JSON records (compressible "
	      "like an\n"
	      "                   API response) before the padding\n"
	      "  --port2 P        subscribers / receivers connect to P "
	      "(another node)\n"
	      "  --server-pid2 PID  the node on --port2, sampled like "
	      "--server-pid\n"
	      "  --quiet\n",
	      stderr);
	exit(2);
}

static void raise_nofile(int need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)need + 16)
		note("warning: fd limit %llu < %d connections",
		     (unsigned long long)rl.rlim_cur, need);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"mode", 1, 0, 'm'},
		{"host", 1, 0, 'H'},
		{"port", 1, 0, 'p'},
		{"path", 1, 0, 'P'},
		{"conns", 1, 0, 'n'},
		{"senders", 1, 0, 's'},
		{"inflight", 1, 0, 'k'},
		{"rate", 1, 0, 'r'},
		{"payload", 1, 0, 'b'},
		{"duration", 1, 0, 'd'},
		{"warmup", 1, 0, 'w'},
		{"drain", 1, 0, 'D'},
		{"setup-timeout", 1, 0, 'T'},
		{"max-sends", 1, 0, 'M'},
		{"server-pid", 1, 0, 'S'},
		{"jwt-secret", 1, 0, 'j'},
		{"token-file", 1, 0, 'f'},
		{"uid-prefix", 1, 0, 'u'},
		{"room", 1, 0, 'R'},
		{"task", 1, 0, 't'},
		{"label", 1, 0, 'l'},
		{"src-ips", 1, 0, 'i'},
		{"max-pending", 1, 0, 'x'},
		{"quiet", 0, 0, 'q'},
		{"watch-file", 1, 0, 'W'},
		{"tls", 0, 0, 'L'},
		{"deflate", 0, 0, 'Z'},
		{"inflate-every", 1, 0, 'I'},
		{"payload-json", 0, 0, 'J'},
		{"port2", 1, 0, '2'},
		{"server-pid2", 1, 0, '3'},
		{"help", 0, 0, 'h'},
		{0, 0, 0, 0},
	};
	int o;
	struct timeval tv = {0, 1000};

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			if (strcmp(optarg, "fanout") == 0)
				cfg.mode = M_FANOUT;
			else if (strcmp(optarg, "direct") == 0)
				cfg.mode = M_DIRECT;
			else if (strcmp(optarg, "idle") == 0)
				cfg.mode = M_IDLE;
			else if (strcmp(optarg, "task") == 0)
				cfg.mode = M_TASK;
			else
				usage();
			break;
		case 'H':
			cfg.host = optarg;
			break;
		case 'p':
			cfg.port = atoi(optarg);
			break;
		case 'P':
			cfg.path = optarg;
			break;
		case 'n':
			cfg.n = atoi(optarg);
			break;
		case 's':
			cfg.senders = atoi(optarg);
			break;
		case 'k':
			cfg.inflight = atoi(optarg);
			break;
		case 'r':
			cfg.rate = atof(optarg);
			break;
		case 'b':
			cfg.payload = atoi(optarg);
			break;
		case 'd':
			cfg.duration = atof(optarg);
			break;
		case 'w':
			cfg.warmup = atof(optarg);
			break;
		case 'D':
			cfg.drain = atof(optarg);
			break;
		case 'T':
			cfg.setup_timeout = atof(optarg);
			break;
		case 'M':
			cfg.max_sends = atoll(optarg);
			break;
		case 'S':
			cfg.server_pid = atoi(optarg);
			break;
		case 'j':
			cfg.jwt_secret = optarg;
			break;
		case 'f':
			cfg.token_file = optarg;
			break;
		case 'u':
			cfg.uid_prefix = optarg;
			break;
		case 'R':
			cfg.room = optarg;
			break;
		case 't':
			cfg.task = optarg;
			break;
		case 'l':
			cfg.label = optarg;
			break;
		case 'i':
			cfg.src_ips = atoi(optarg);
			break;
		case 'x':
			cfg.max_pending = atoi(optarg);
			break;
		case 'q':
			cfg.quiet = 1;
			break;
		case 'W':
			cfg.watch_file = optarg;
			break;
		case 'L':
			cfg.tls = 1;
			break;
		case 'Z':
			cfg.deflate = 1;
			break;
		case 'I':
			cfg.inflate_every = atoi(optarg);
			break;
		case 'J':
			cfg.payload_json = 1;
			break;
		case '2':
			cfg.port2 = atoi(optarg);
			break;
		case '3':
			cfg.server_pid2 = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc || cfg.n < 0 || cfg.senders < 1 || cfg.port <= 0 ||
	    cfg.duration <= 0 || cfg.payload < 16 ||
	    cfg.payload > PAYLOAD_MAX || cfg.src_ips < 1 ||
	    cfg.max_pending < 1 || cfg.inflate_every < 1 || cfg.port2 < 0)
		usage();
	if (cfg.inflight < 0)
		cfg.inflight = cfg.mode == M_FANOUT   ? 64
			       : cfg.mode == M_DIRECT ? 8
						      : 1;
	if (cfg.rate < 0)
		cfg.rate = cfg.mode == M_TASK ? 1000 : 0;
	if (cfg.mode == M_DIRECT && cfg.n < 1)
		usage();

	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, watchdog);
	alarm((unsigned)(cfg.setup_timeout + cfg.warmup + cfg.duration +
			 cfg.drain + 15));

	memset(&server_addr, 0, sizeof(server_addr));
	server_addr.sin_family = AF_INET;
	server_addr.sin_port = htons((uint16_t)cfg.port);
	if (inet_pton(AF_INET, cfg.host, &server_addr.sin_addr) != 1)
		die("--host must be an IPv4 address");
	server_addr2 = server_addr;
	server_addr2.sin_port = htons((uint16_t)cfg.port2);
	if (cfg.tls) {
		tls_ctx = SSL_CTX_new(TLS_client_method());
		if (tls_ctx == NULL)
			die("SSL_CTX_new failed");
		/* the bench's own certificate: nothing to verify; buffers
		 * released when empty, as the servers do, so that the
		 * generator's memory stays small at many connections */
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(tls_ctx,
				 SSL_MODE_RELEASE_BUFFERS |
					 SSL_MODE_ENABLE_PARTIAL_WRITE |
					 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		SSL_CTX_set_options(tls_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	}
	zout = xrealloc(NULL, RX_SIZE);
	if (inflateInit2(&zs_nct, -15) != Z_OK)
		die("inflateInit2 failed");
	if (cfg.payload_json)
		make_json_body((size_t)cfg.payload);
	if (cfg.token_file)
		load_token_file(cfg.token_file);

	pad = malloc((size_t)cfg.payload + 1);
	memset(pad, 'x', (size_t)cfg.payload);
	pad[cfg.payload] = '\0';
	rng ^= (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);

	/* lay out the connections */
	switch (cfg.mode) {
	case M_FANOUT:
	case M_TASK:
		nconns = cfg.n + 1;
		break;
	case M_DIRECT:
		nconns = cfg.n + cfg.senders;
		break;
	case M_IDLE:
		nconns = cfg.n;
		break;
	}
	if (nfile && nfile < nconns)
		die("--token-file has %d entries, %d needed", nfile, nconns);
	raise_nofile(nconns);
	conns = calloc((size_t)nconns, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		c->fd = -1;
		c->idx = i;
		switch (cfg.mode) {
		case M_FANOUT:
			c->role = i == 0 ? R_PUB : R_SUB;
			break;
		case M_TASK:
			c->role = i == 0 ? R_PROD : R_SUB;
			break;
		case M_DIRECT:
			c->role = i < cfg.n ? R_RECV : R_SEND;
			c->target = (i - cfg.n) % cfg.n;
			break;
		case M_IDLE:
			c->role = R_IDLE;
			break;
		}
		c->port2 = cfg.port2 > 0 &&
			   (c->role == R_SUB || c->role == R_RECV);
		if (nfile) {
			snprintf(c->uid, sizeof(c->uid), "%s", file_uids[i]);
		} else {
			static const char *const pfx[] = {"s", "p",    "d",
							  "r", "prod", "i"};
			snprintf(c->uid, sizeof(c->uid), "%s%s%d",
				 cfg.uid_prefix, pfx[c->role],
				 c->role == R_SEND  ? i - cfg.n
				 : c->role == R_SUB ? i - 1
						    : i);
		}
	}

	sender_idx = calloc((size_t)nconns, sizeof(int));
	for (int i = 0; i < nconns; i++)
		if (conns[i].role == R_PUB || conns[i].role == R_SEND ||
		    conns[i].role == R_PROD)
			sender_idx[nsenders++] = i;

	base = event_base_new();
	if (base == NULL)
		die("event_base_new failed");
	tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(tick_ev, &tv);

	proc_mem(cfg.server_pid, &srv_rss_start_kib, &(long){0});
	t_start = now_ns();
	note("%s: %d connections to %s:%d", mode_names[cfg.mode], nconns,
	     cfg.host, cfg.port);
	kick();
	event_base_dispatch(base);
	alarm(0);
	if (phase != PH_DONE || t_window1 == 0) {
		/* setup failed: still one JSON line, with ok:false */
		phase = PH_DONE;
		t_window1 = 0;
	}
	return report();
}
