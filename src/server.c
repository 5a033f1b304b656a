/*
 * Composition: the broker process made of its layers, and undone again.
 * Creates the loop, the engine, the broker, the connections and the
 * listeners, fits the socket caps to the descriptor limit, handles the
 * signals, and stops in order; it provides no service of its own.
 */
#include "basestation/auth_hook.h"
#include "basestation/broker.h"
#include "basestation/conn.h"
#include "basestation/demo.h"
#include "basestation/engine.h"
#include "basestation/engine_local.h"
#include "basestation/engine_nats.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/net.h"
#include "basestation/proto.h"
#include "basestation/server.h"
#include "basestation/tls.h"
#include "bs_config.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define STOP_GRACE_MS 3000
#define TRIM_S	      60
/* Descriptors kept from clients: see fit_caps(). */
#define FD_RESERVE 64
/* WebSocket sockets allowed beyond --max-connections: handshakes in
 * flight, refusals and closes being written. */
#define HANDSHAKE_MARGIN 1024

static struct {
	struct event_base *base;
	struct engine *engine;
	struct evconnlistener *listener;
	struct event *trim_ev, *sig_term, *sig_int, *sig_hup;
	struct tls_ctx *tls; /* --tls-cert, NULL when plain */
	const struct config *cfg;
	struct auth_hook *hook; /* --auth-url, NULL when not set */
	int stopping;
} proc;

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	(void)arg;
	net_listen_ok(l);
	conn_accept(fd, sa, salen);
}

/* Output buffers come and go every loop turn (see server_run); what is
 * really unused goes back to the kernel once a minute. */
static void trim_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	malloc_trim(1 << 20);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval grace = {STOP_GRACE_MS / 1000,
				(STOP_GRACE_MS % 1000) * 1000};
	(void)fd;
	(void)what;
	(void)arg;

	if (proc.stopping) {
		event_base_loopbreak(proc.base);
		return;
	}
	proc.stopping = 1;
	log_info("server.stopping", "connections=%d", conns_open());
	if (proc.listener)
		net_listen_pause(proc.listener, 1);
	/* Pending writes (cursors, membership) go to disk now. */
	event_base_loopexit(proc.base, &grace);
	broker_drain();
	conns_stop();
	engine_flush(proc.engine);
	broker_drain();
}

/* SIGHUP: the certificate and key are read again (a renewal). New
 * connections get the new pair; open ones keep theirs; a pair that does
 * not load is logged and the running one stays. */
static void hup_cb(evutil_socket_t fd, short what, void *arg)
{
	char err[512];
	(void)fd;
	(void)what;
	(void)arg;

	if (proc.tls == NULL)
		return;
	if (tls_ctx_reload(proc.tls, proc.cfg->tls_cert, proc.cfg->tls_key, err,
			   sizeof(err)) < 0)
		log_error("tls.reload.error", "cert=%s key=%s msg=%s",
			  log_val(proc.cfg->tls_cert),
			  log_val(proc.cfg->tls_key), log_val(err));
	else
		log_info("tls.reloaded", "cert=%s key=%s",
			 log_val(proc.cfg->tls_cert),
			 log_val(proc.cfg->tls_key));
}

/* --tls-cert: one context for both listeners. 0 ok or plain, -1 logged. */
static int tls_start(const struct config *cfg)
{
	char err[512];

	if (cfg->tls_cert == NULL)
		return 0;
	proc.tls =
		tls_ctx_create(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
	if (proc.tls == NULL) {
		log_error("tls.error", "cert=%s key=%s msg=%s",
			  log_val(cfg->tls_cert), log_val(cfg->tls_key),
			  log_val(err));
		return -1;
	}
	log_info("tls.loaded", "cert=%s key=%s", log_val(cfg->tls_cert),
		 log_val(cfg->tls_key));
	conns_set_tls(proc.tls);
	http_set_tls(proc.tls);
	return 0;
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
 * to answer 503 when everything else is taken; with --auth-url, the
 * sockets of its requests in flight too. The HTTP port gets
 * --max-http-conns connections (at most an eighth of the rest), each
 * counted twice (its socket and a static file it may be sending), and
 * HTTP_ACCEPT_BATCH sockets accepted before they are judged; the WebSocket
 * port gets what is left, at most --max-connections plus HANDSHAKE_MARGIN
 * for handshakes in flight. So accepting never takes the descriptors the
 * broker needs, and a full port never starves the other. */
static int fit_caps(const struct config *cfg, int http_on)
{
	struct rlimit rl;
	long long limit = 1 << 20, budget, ws;
	int open = count_open_fds();

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && (long long)rl.rlim_cur < limit)
		limit = (long long)rl.rlim_cur;
	if (open < 0)
		open = 64;
	budget = limit - open - FD_RESERVE;
	if (proc.hook) /* its sockets, and evdns's */
		budget -= AUTH_HOOK_MAX_INFLIGHT + 1;
	if (budget < 32) {
		log_error("server.limits",
			  "nofile=%lld open=%d reserve=%d msg=%s", limit, open,
			  FD_RESERVE,
			  log_val("descriptor limit too low (ulimit -n)"));
		return -1;
	}
	int http_conns_max = 0, ws_sockets_max;

	if (http_on) {
		long long h = cfg->max_http_conns;
		if (h > budget / 8 / HTTP_FDS_PER_CONN)
			h = budget / 8 / HTTP_FDS_PER_CONN;
		if (h < 1)
			h = 1;
		http_conns_max = (int)h;
		budget -= h * HTTP_FDS_PER_CONN + HTTP_ACCEPT_BATCH;
		http_set_cap(http_conns_max);
	}
	ws = (long long)cfg->max_connections + HANDSHAKE_MARGIN;
	ws_sockets_max = (int)(ws < budget ? ws : budget);
	conns_set_cap(ws_sockets_max);
	log_info("server.limits",
		 "nofile=%lld open=%d reserve=%d ws_sockets=%d http_conns=%d "
		 "max_per_ip=%d",
		 limit, open, FD_RESERVE, ws_sockets_max, http_conns_max,
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
	struct timeval trim = {TRIM_S, 0};
	char err[512];
	const char *web_root;
	int rc = 1, ws_port = 0, http_port = 0;
	int http_on = cfg->http[0] && strcmp(cfg->http, "off") != 0;

	memset(&proc, 0, sizeof(proc));
	proc.cfg = cfg;
	log_min_level = (enum log_level)cfg->log_level;
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	/* Output buffers come and go every loop turn; without this glibc
	 * gives the top of the heap back to the kernel after each turn and
	 * faults it in again on the next (~100k page faults/s under load).
	 * trim_cb trims what is really unused, once a minute. */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);

#if BS_HAVE_NATS
	if (cfg->cluster && engine_nats_init() < 0)
		fatal("cannot set up libnats and libevent's pthread locking");
#endif
	proc.base = event_base_new();
	if (proc.base == NULL)
		fatal("event_base_new failed");
#if BS_HAVE_NATS
	if (cfg->cluster)
		proc.engine =
			engine_nats_create(proc.base, cfg, err, sizeof(err));
	else
#endif
		proc.engine =
			engine_local_create(proc.base, cfg, err, sizeof(err));
	if (proc.engine == NULL) {
		log_error(cfg->cluster ? "cluster.open" : "store.open",
			  "db=%s msg=%s", log_val(cfg->db), log_val(err));
		event_base_free(proc.base);
		return 1;
	}
	if (broker_init(proc.base, cfg, proc.engine) < 0)
		fatal("cannot load rooms and tasks from the store");
	proto_init(cfg);
	conns_init(proc.base, cfg);
	net_init(proc.base, cfg);
	proc.trim_ev = event_new(proc.base, -1, EV_PERSIST, trim_cb, NULL);
	proc.sig_term = evsignal_new(proc.base, SIGTERM, stop_cb, NULL);
	proc.sig_int = evsignal_new(proc.base, SIGINT, stop_cb, NULL);
	event_add(proc.trim_ev, &trim);
	event_add(proc.sig_term, NULL);
	event_add(proc.sig_int, NULL);
	/* also without TLS: a SIGHUP meant for a reload never kills */
	proc.sig_hup = evsignal_new(proc.base, SIGHUP, hup_cb, NULL);
	event_add(proc.sig_hup, NULL);
	if (cfg->auth_url &&
	    (proc.hook = auth_hook_create(proc.base, cfg->auth_url,
					  cfg->auth_cache, AUTH_HOOK_TIMEOUT_MS,
					  err, sizeof(err))) == NULL) {
		/* not the URL: its query may hold a key */
		log_error("auth.hook.error", "msg=%s", log_val(err));
		goto out;
	}
	conns_set_hook(proc.hook);
	if (tls_start(cfg) < 0)
		goto out;

	proc.listener = net_listen(cfg->listen, "ws", accept_cb, &ws_port);
	if (proc.listener == NULL) {
		log_error("listen.error", "addr=%s msg=%s",
			  log_val(cfg->listen), log_val(strerror(errno)));
		goto out;
	}
	web_root = find_web_root(cfg->web_root);
	if (http_on &&
	    http_start(proc.base, cfg, proc.engine, web_root, &http_port) < 0) {
		log_error("listen.error", "addr=%s msg=%s", log_val(cfg->http),
			  log_val(strerror(errno)));
		goto out;
	}
	if (fit_caps(cfg, http_on) < 0)
		goto out;
	/* The ready line names the ports: printed at any log level. */
	log_event_always(LOG_INFO, "server.ready",
			 "ws=%s ws_port=%d http=%s http_port=%d db=%s epoch=%s "
			 "seq=%lld version=%s",
			 log_val(cfg->listen), ws_port, log_val(cfg->http),
			 http_port, log_val(cfg->db), engine_epoch(proc.engine),
			 (long long)engine_committed(proc.engine), BS_VERSION);
	if (cfg->demo &&
	    demo_start(proc.base, proc.engine, cfg, ws_port, http_port) < 0)
		goto out;
	event_base_dispatch(proc.base);
	rc = 0;
	log_info("server.stopped", "connections=%d", conns_open());
out:
	demo_stop();
	/* Whatever is left: close without ceremony, then commit. */
	conns_finish();
	auth_hook_destroy(proc.hook); /* after the connections: none waits */
	proc.hook = NULL;
	engine_flush(proc.engine);
	broker_drain(); /* its acks, while HTTP requests are still here */
	http_stop();
	if (proc.listener) {
		net_listen_forget(proc.listener);
		evconnlistener_free(proc.listener);
	}
	net_finish();
	event_free(proc.trim_ev);
	event_free(proc.sig_term);
	event_free(proc.sig_int);
	event_free(proc.sig_hup);
	broker_finish();
	engine_destroy(proc.engine);
	conns_set_tls(NULL);
	http_set_tls(NULL);
	if (proc.tls)
		tls_ctx_destroy(proc.tls); /* after every connection */
	event_base_free(proc.base);
	return rc;
}
