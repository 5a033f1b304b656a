/*
 * The broker process: listeners, the loop turn's group commit, timers,
 * signals, start-up and graceful stop.
 */
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/store.h"
#include "basestation/tasks.h"
#include "bs_config.h"

#include <arpa/inet.h>
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

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	static int ticks;
	router_prune();
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
	(void)l;
	(void)arg;
	conn_accept(fd, sa, salen);
}

static void listener_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (!srv->stopping)
		evconnlistener_enable(arg);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	(void)arg;
	log_error("listen.error", "msg=%s", log_val(strerror(err)));
	/* EMFILE and friends: back off a moment instead of spinning. */
	evconnlistener_disable(l);
	struct timeval tv = {0, 100000};
	event_base_once(srv->base, -1, EV_TIMEOUT, listener_resume, l, &tv);
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
		evconnlistener_disable(srv->listener);
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

static struct evconnlistener *listen_on(const char *addr, int *port_out)
{
	char host[64];
	int port;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct evconnlistener *l;
	memset(&ss, 0, sizeof(ss));

	if (config_split_addr(addr, host, sizeof(host), &port) < 0)
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
	l = evconnlistener_new_bind(srv->base, accept_cb, NULL,
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
	s.sig_term = evsignal_new(s.base, SIGTERM, stop_cb, NULL);
	s.sig_int = evsignal_new(s.base, SIGINT, stop_cb, NULL);
	struct timeval tick = {0, TICK_MS * 1000}, prune = {PRUNE_MS / 1000, 0};
	event_add(s.tick_ev, &tick);
	event_add(s.prune_ev, &prune);
	event_add(s.sig_term, NULL);
	event_add(s.sig_int, NULL);

	s.listener = listen_on(cfg->listen, &s.ws_port);
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
	if (s.listener)
		evconnlistener_free(s.listener);
	event_free(s.commit_ev);
	event_free(s.replay_ev);
	event_free(s.reap_ev);
	event_free(s.flush_ev);
	event_free(s.stop_ev);
	event_free(s.tick_ev);
	event_free(s.prune_ev);
	event_free(s.sig_term);
	event_free(s.sig_int);
	tasks_free();
	registry_free();
	store_close(s.store);
	event_base_free(s.base);
	srv = NULL;
	return rc;
}
