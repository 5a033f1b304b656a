/*
 * The broker process: listeners, the loop turn's group commit, timers,
 * signals, start-up and graceful stop.
 */
#include "basestation/addr.h"
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/store.h"
#include "basestation/tasks.h"
#include "bs_config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define TICK_MS	      200
#define PRUNE_MS      1000
#define STOP_GRACE_MS 3000
/* Descriptors kept from clients: see fit_caps(). */
#define FD_RESERVE 64
/* WebSocket sockets allowed beyond --max-connections: handshakes in
 * flight, refusals and closes being written. */
#define HANDSHAKE_MARGIN 1024

struct server *srv;

int server_write_begin(void)
{
	if (store_in_tx(srv->store))
		return 0;
	if (store_begin(srv->store) < 0)
		return -1;
	/* Runs after the callbacks already active in this loop turn. */
	event_active(srv->commit_ev, EV_TIMEOUT, 0);
	return 0;
}

void server_post(struct post *p)
{
	p->next = NULL;
	*srv->post_tail = p;
	srv->post_tail = &p->next;
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	int ok;
	(void)fd;
	(void)what;
	(void)arg;
	if (!store_in_tx(srv->store)) {
		router_post_commit(1);
		return;
	}
	ok = store_commit(srv->store) == 0;
	if (ok)
		srv->committed_seq = srv->last_seq;
	else
		srv->last_seq = srv->committed_seq;
	router_post_commit(ok);
	conn_flush_all();
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	conn_flush_all();
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	conn_tick(mono_ms());
}

void server_prune_soon(void)
{
	/* A zero timeout fires after the next turn's I/O: pruning keeps pace
	 * with storing without starving the connections. */
	static const struct timeval next_turn = {0, 0};
	if (srv->prune_step_ev && !evtimer_pending(srv->prune_step_ev, NULL))
		evtimer_add(srv->prune_step_ev, &next_turn);
}

/* A retention step; while steps find something to delete, the next one
 * runs on the next loop turn. */
static void prune_step_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (router_prune())
		server_prune_soon();
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	static int ticks;
	if (!evtimer_pending(srv->prune_step_ev, NULL))
		prune_step_cb(-1, 0, NULL);
	router_sweep();
	tasks_prune(now_ms());
	if (++ticks % 60 == 0)
		malloc_trim(1 << 20);
}

static void replay_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	router_replay_continue();
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	conn_reap();
	if (srv->stopping && srv->nsockets == 0)
		event_base_loopbreak(srv->base);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	(void)arg;
	server_listen_ok(l);
	conn_accept(fd, sa, salen);
}

/* ---- listeners: back-off on accept errors ---- */

/* Pauses after an accept error (EMFILE, ENFILE, ENOBUFS): doubling while
 * errors go on, so a descriptor shortage costs a log line and a few
 * syscalls per pause instead of a loop spinning on accept(). */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1600

struct listen_guard {
	struct evconnlistener *l; /* NULL: slot free */
	struct event *resume_ev;
	const char *name;
	int backoff_ms;
	unsigned held : 1;   /* in a back-off */
	unsigned paused : 1; /* by its owner: server_listen_pause() */
	uint64_t errors;
};

static struct listen_guard guards[2];

static struct listen_guard *guard_of(struct evconnlistener *l)
{
	for (size_t i = 0; i < sizeof(guards) / sizeof(guards[0]); i++)
		if (guards[i].l == l)
			return &guards[i];
	return NULL;
}

static void guard_apply(struct listen_guard *g)
{
	if (g->held || g->paused)
		evconnlistener_disable(g->l);
	else
		evconnlistener_enable(g->l);
}

static void listener_resume(evutil_socket_t fd, short what, void *arg)
{
	struct listen_guard *g = arg;
	(void)fd;
	(void)what;
	g->held = 0;
	guard_apply(g);
}

/* Called by the listener with the cbarg of its accept callback, which for
 * the HTTP port is evhttp's: the guard is found by the listener. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct listen_guard *g = guard_of(l);
	struct timeval tv;
	(void)arg;

	if (g == NULL) {
		evconnlistener_disable(l);
		return;
	}
	g->errors++;
	log_error("listen.error", "port=%s msg=%s errors=%llu pause_ms=%d",
		  g->name, log_val(strerror(err)),
		  (unsigned long long)g->errors, g->backoff_ms);
	g->held = 1;
	guard_apply(g);
	tv.tv_sec = g->backoff_ms / 1000;
	tv.tv_usec = (g->backoff_ms % 1000) * 1000;
	evtimer_add(g->resume_ev, &tv);
	if (g->backoff_ms < BACKOFF_MAX_MS)
		g->backoff_ms *= 2;
}

void server_listen_ok(struct evconnlistener *l)
{
	struct listen_guard *g = guard_of(l);
	if (g)
		g->backoff_ms = BACKOFF_MIN_MS;
}

void server_listen_pause(struct evconnlistener *l, int paused)
{
	struct listen_guard *g = guard_of(l);
	if (g && g->paused != (paused != 0)) {
		g->paused = paused != 0;
		guard_apply(g);
	}
}

void server_listen_forget(struct evconnlistener *l)
{
	struct listen_guard *g = guard_of(l);
	if (g == NULL)
		return;
	event_free(g->resume_ev);
	memset(g, 0, sizeof(*g));
}

/* ---- refusing at accept ---- */

static struct {
	struct event *ev;
	uint64_t n[2]; /* by enum ip_port, since the last log line */
} shed;

static void shed_log_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warn("conn.shed", "ws=%llu http=%llu window_ms=1000",
		 (unsigned long long)shed.n[IP_WS],
		 (unsigned long long)shed.n[IP_HTTP]);
	shed.n[IP_WS] = shed.n[IP_HTTP] = 0;
}

void server_refuse_fd(evutil_socket_t fd, enum ip_port port, const char *why)
{
	char buf[4096];
	int len;

	/* What the client sent already is read and dropped (a request head
	 * fits in one read), so that the close which follows sends a FIN and
	 * not a reset, which could destroy the answer in flight. */
	(void)!recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (port == IP_WS)
		len = snprintf(buf, sizeof(buf),
			       "HTTP/1.1 503 Service Unavailable\r\n"
			       "Content-Type: text/plain; charset=utf-8\r\n"
			       "Content-Length: %zu\r\n"
			       "Connection: close\r\n\r\n%s\n",
			       strlen(why) + 1, why);
	else
		len = snprintf(buf, sizeof(buf),
			       "HTTP/1.1 503 Service Unavailable\r\n"
			       "Content-Type: application/json\r\n"
			       "Retry-After: 1\r\n"
			       "Content-Length: %zu\r\n"
			       "Connection: close\r\n\r\n{\"error\":\"%s\"}",
			       strlen(why) + 12, why);
	if (len > 0 && (size_t)len < sizeof(buf))
		(void)!send(fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	shed.n[port]++;
	if (shed.ev && !evtimer_pending(shed.ev, NULL)) {
		struct timeval tv = {1, 0};
		evtimer_add(shed.ev, &tv);
	}
}

/* Compared as parsed addresses and networks (config.c checked that each
 * entry parses), never as text: "::ffff:127.0.0.1" from a dual-stack
 * listener is 127.0.0.1. */
int server_trusted_proxy(const char *ip)
{
	struct addr a, net;

	if (srv->cfg->ntrusted == 0 || addr_parse(ip, 0, &a) < 0)
		return 0;
	for (int i = 0; i < srv->cfg->ntrusted; i++)
		if (addr_parse(srv->cfg->trusted_proxies[i], 1, &net) == 0 &&
		    addr_in(&a, &net))
			return 1;
	return 0;
}

/* Canonical text, IPv4 peers of a dual-stack listener as IPv4: the same
 * peer is one key for --max-per-ip and one address in the logs. */
void server_addr_string(const struct sockaddr *sa, char *out, size_t n)
{
	struct addr a;

	if (addr_from_sockaddr(sa, &a) == 0)
		addr_format(&a, out, n);
	else
		snprintf(out, n, "unix");
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c, *tmp;
	struct timeval grace = {STOP_GRACE_MS / 1000,
				(STOP_GRACE_MS % 1000) * 1000};
	(void)fd;
	(void)what;
	(void)arg;

	if (srv->stopping) {
		event_base_loopbreak(srv->base);
		return;
	}
	srv->stopping = 1;
	log_info("server.stopping", "connections=%d", srv->nconns);
	if (srv->listener)
		server_listen_pause(srv->listener, 1);
	HASH_ITER(hh, srv->conns, c, tmp)
	{
		if (c->state == CONN_OPEN)
			conn_close(c, WS_CLOSE_GOING_AWAY,
				   "server shutting down");
		else if (c->state == CONN_HANDSHAKE)
			conn_close_now(c);
	}
	/* Pending writes (cursors, membership) go to disk now. */
	commit_cb(-1, 0, NULL);
	event_base_loopexit(srv->base, &grace);
	if (srv->nsockets == 0)
		event_base_loopbreak(srv->base);
}

struct evconnlistener *server_listen(const char *addr, const char *name,
				     evconnlistener_cb cb, int *port_out)
{
	char host[64];
	int port;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct evconnlistener *l;
	struct listen_guard *g = guard_of(NULL);
	memset(&ss, 0, sizeof(ss));

	if (g == NULL || config_split_addr(addr, host, sizeof(host), &port) < 0)
		return NULL;
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return NULL;
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (strcmp(host, "localhost") == 0)
			snprintf(host, sizeof(host), "127.0.0.1");
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return NULL;
		sl = sizeof(*s4);
	}
	l = evconnlistener_new_bind(srv->base, cb, NULL,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
					    LEV_OPT_CLOSE_ON_EXEC,
				    4096, (struct sockaddr *)&ss, (int)sl);
	if (l == NULL)
		return NULL;
	sl = sizeof(ss);
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &sl);
	*port_out = ntohs(ss.ss_family == AF_INET6
				  ? ((struct sockaddr_in6 *)&ss)->sin6_port
				  : ((struct sockaddr_in *)&ss)->sin_port);
	evconnlistener_set_error_cb(l, accept_error_cb);
	g->l = l;
	g->name = name;
	g->backoff_ms = BACKOFF_MIN_MS;
	g->resume_ev = evtimer_new(srv->base, listener_resume, g);
	return l;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Descriptors open now (-1 when that cannot be told). */
static int count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

/* Fit the socket caps to RLIMIT_NOFILE, once the database is open and
 * both ports listen. Of the descriptors not open yet, FD_RESERVE are never
 * given to clients: the checkpoint thread's and the admin SQL queries'
 * database connections, SQLite's temporary files, the one an accept needs
 * to answer 503 when everything else is taken. The HTTP port gets
 * --max-http-conns connections (at most an eighth of the rest), each
 * counted twice (its socket and a static file it may be sending), and
 * HTTP_ACCEPT_BATCH sockets accepted before they are judged; the WebSocket
 * port gets what is left, at most --max-connections plus HANDSHAKE_MARGIN
 * for handshakes in flight. So accepting never takes the descriptors the
 * broker needs, and a full port never starves the other. */
static int fit_caps(struct server *s)
{
	const struct config *cfg = s->cfg;
	struct rlimit rl;
	long long limit = 1 << 20, budget, ws;
	int open = count_open_fds();

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur < limit)
		limit = (long long)rl.rlim_cur;
	if (open < 0)
		open = 64;
	budget = limit - open - FD_RESERVE;
	if (budget < 32) {
		log_error("server.limits",
			  "nofile=%lld open=%d reserve=%d msg=%s", limit, open,
			  FD_RESERVE,
			  log_val("descriptor limit too low (ulimit -n)"));
		return -1;
	}
	s->http_conns_max = 0;
	if (s->http) {
		long long h = cfg->max_http_conns;
		if (h > budget / 8 / HTTP_FDS_PER_CONN)
			h = budget / 8 / HTTP_FDS_PER_CONN;
		if (h < 1)
			h = 1;
		s->http_conns_max = (int)h;
		budget -= h * HTTP_FDS_PER_CONN + HTTP_ACCEPT_BATCH;
	}
	ws = (long long)cfg->max_connections + HANDSHAKE_MARGIN;
	s->ws_sockets_max = (int)(ws < budget ? ws : budget);
	log_info("server.limits",
		 "nofile=%lld open=%d reserve=%d ws_sockets=%d http_conns=%d "
		 "max_per_ip=%d",
		 limit, open, FD_RESERVE, s->ws_sockets_max, s->http_conns_max,
		 cfg->max_per_ip);
	return 0;
}

static const char *find_web_root(const char *configured)
{
	static char path[4096];
	const char *cands[] = {configured, BS_SOURCE_ROOT "/web",
			       BS_DATADIR "/web"};
	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		if (cands[i] == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/index.html", cands[i]);
		if (access(path, R_OK) == 0)
			return cands[i];
	}
	return configured ? configured : BS_DATADIR "/web";
}

int server_run(struct config *cfg)
{
	struct server s;
	char err[512];
	int rc = 1;

	memset(&s, 0, sizeof(s));
	srv = &s;
	s.cfg = cfg;
	s.post_tail = &s.post_head;
	log_min_level = (enum log_level)cfg->log_level;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* Output buffers come and go every loop turn; without this glibc
	 * gives the top of the heap back to the kernel after each turn and
	 * faults it in again on the next (~100k page faults/s under load).
	 * prune_cb trims what is really unused, once a minute. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);

	s.store = store_open(cfg->db, cfg->sync_full, err, sizeof(err));
	if (s.store == NULL) {
		log_error("store.open", "db=%s msg=%s", log_val(cfg->db),
			  log_val(err));
		return 1;
	}
	s.last_seq = s.committed_seq = store_max_seq(s.store);
	s.pruned_max_seq = store_counter_get(s.store, "pruned_max_seq");
	/* Token changes from before this start concern no connection. */
	s.token_seq = auth_token_changes_head(store_db(s.store));
	if (s.token_seq < 0)
		s.token_seq = 0;
	metrics.retention =
		(uint64_t)store_counter_get(s.store, "pruned_total");
	registry_load();
	tasks_load();

	s.base = event_base_new();
	if (s.base == NULL)
		fatal("event_base_new failed");
	s.commit_ev = event_new(s.base, -1, 0, commit_cb, NULL);
	s.replay_ev = event_new(s.base, -1, 0, replay_cb, NULL);
	s.reap_ev = event_new(s.base, -1, 0, reap_cb, NULL);
	s.flush_ev = event_new(s.base, -1, 0, flush_cb, NULL);
	s.stop_ev = event_new(s.base, -1, 0, stop_cb, NULL);
	s.tick_ev = event_new(s.base, -1, EV_PERSIST, tick_cb, NULL);
	s.prune_ev = event_new(s.base, -1, EV_PERSIST, prune_cb, NULL);
	s.prune_step_ev = evtimer_new(s.base, prune_step_cb, NULL);
	s.sig_term = evsignal_new(s.base, SIGTERM, stop_cb, NULL);
	s.sig_int = evsignal_new(s.base, SIGINT, stop_cb, NULL);
	shed.ev = evtimer_new(s.base, shed_log_cb, NULL);
	struct timeval tick = {0, TICK_MS * 1000}, prune = {PRUNE_MS / 1000, 0};
	event_add(s.tick_ev, &tick);
	event_add(s.prune_ev, &prune);
	event_add(s.sig_term, NULL);
	event_add(s.sig_int, NULL);

	s.listener = server_listen(cfg->listen, "ws", accept_cb, &s.ws_port);
	if (s.listener == NULL) {
		log_error("listen.error", "addr=%s msg=%s",
			  log_val(cfg->listen), log_val(strerror(errno)));
		goto out;
	}
	s.web_root = (char *)find_web_root(cfg->web_root);
	if (cfg->http[0] && strcmp(cfg->http, "off") != 0) {
		if (http_start(cfg->http, &s.http_port) < 0) {
			log_error("listen.error", "addr=%s msg=%s",
				  log_val(cfg->http), log_val(strerror(errno)));
			goto out;
		}
	}
	if (fit_caps(&s) < 0)
		goto out;
	/* The ready line names the ports: printed at any log level. */
	enum log_level saved = log_min_level;
	log_min_level = LOG_DEBUG;
	log_info("server.ready",
		 "ws=%s ws_port=%d http=%s http_port=%d db=%s epoch=%s "
		 "seq=%lld version=%s",
		 log_val(cfg->listen), s.ws_port, log_val(cfg->http),
		 s.http_port, log_val(cfg->db), store_epoch(s.store),
		 (long long)s.committed_seq, BS_VERSION);
	log_min_level = saved;
	if (cfg->demo && demo_start() < 0)
		goto out;
	event_base_dispatch(s.base);
	rc = 0;
	log_info("server.stopped", "connections=%d", s.nconns);
out:
	demo_stop();
	/* Whatever is left: close without ceremony, then commit. */
	{
		struct conn *c, *tmp;
		HASH_ITER(hh, s.conns, c, tmp)
		conn_close_now(c);
		conn_reap();
	}
	commit_cb(-1, 0, NULL);
	http_stop();
	if (s.listener) {
		server_listen_forget(s.listener);
		evconnlistener_free(s.listener);
	}
	if (shed.ev && shed.n[IP_WS] + shed.n[IP_HTTP] > 0)
		shed_log_cb(-1, 0, NULL);
	event_free(shed.ev);
	shed.ev = NULL;
	event_free(s.commit_ev);
	event_free(s.replay_ev);
	event_free(s.reap_ev);
	event_free(s.flush_ev);
	event_free(s.stop_ev);
	event_free(s.tick_ev);
	event_free(s.prune_ev);
	event_free(s.prune_step_ev);
	event_free(s.sig_term);
	event_free(s.sig_int);
	tasks_free();
	registry_free();
	store_close(s.store);
	event_base_free(s.base);
	srv = NULL;
	return rc;
}
