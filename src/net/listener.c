/*
 * Listening sockets and what happens at the accept: a back-off on accept
 * errors, the 503 written to a socket refused before anything is read,
 * the trusted proxies, addresses as text.
 */
#include "basestation/addr.h"
#include "basestation/log.h"
#include "basestation/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static struct event_base *base;
static const struct config *cfg;

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
	unsigned paused : 1; /* by its owner: net_listen_pause() */
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

void net_listen_ok(struct evconnlistener *l)
{
	struct listen_guard *g = guard_of(l);
	if (g)
		g->backoff_ms = BACKOFF_MIN_MS;
}

void net_listen_pause(struct evconnlistener *l, int paused)
{
	struct listen_guard *g = guard_of(l);
	if (g && g->paused != (paused != 0)) {
		g->paused = paused != 0;
		guard_apply(g);
	}
}

void net_listen_forget(struct evconnlistener *l)
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

void net_refuse_fd(evutil_socket_t fd, enum ip_port port, const char *why)
{
	char buf[4096];
	int len;

	/* What the client sent already is read and dropped (a request head
	 * fits in one read), so that the close which follows sends a FIN and
	 * not a reset, which could destroy the answer in flight. */
	(void)!recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (why == NULL)
		len = -1;
	else if (port == IP_WS)
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
int net_trusted_proxy(const char *ip)
{
	struct addr a, net;

	if (cfg->ntrusted == 0 || addr_parse(ip, 0, &a) < 0)
		return 0;
	for (int i = 0; i < cfg->ntrusted; i++)
		if (addr_parse(cfg->trusted_proxies[i], 1, &net) == 0 &&
		    addr_in(&a, &net))
			return 1;
	return 0;
}

/* Canonical text, IPv4 peers of a dual-stack listener as IPv4: the same
 * peer is one key for --max-per-ip and one address in the logs. */
void net_addr_string(const struct sockaddr *sa, char *out, size_t n)
{
	struct addr a;

	if (addr_from_sockaddr(sa, &a) == 0)
		addr_format(&a, out, n);
	else
		snprintf(out, n, "unix");
}

struct evconnlistener *net_listen(const char *addr, const char *name,
				  evconnlistener_cb cb, int *port_out)
{
	char host[64];
	int port;
	struct sockaddr_storage ss;
	socklen_t sl;
	struct evconnlistener *l;
	struct listen_guard *g = guard_of(NULL);
	memset(&ss, 0, sizeof(ss));

	if (g == NULL || net_split_addr(addr, host, sizeof(host), &port) < 0)
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
	l = evconnlistener_new_bind(base, cb, NULL,
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
	g->resume_ev = evtimer_new(base, listener_resume, g);
	return l;
}

int net_split_addr(const char *addr, char *host, size_t hostsz, int *port)
{
	const char *colon;
	char *end;
	size_t hl;
	long p;

	if (addr[0] == '[') {
		const char *rb = strchr(addr, ']');
		if (rb == NULL || rb[1] != ':')
			return -1;
		hl = (size_t)(rb - addr - 1);
		if (hl >= hostsz)
			return -1;
		memcpy(host, addr + 1, hl);
		colon = rb + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - addr);
		if (hl >= hostsz)
			return -1;
		memcpy(host, addr, hl);
	}
	host[hl] = '\0';
	if (hl == 0)
		snprintf(host, hostsz, "0.0.0.0");
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
		return -1;
	*port = (int)p;
	return 0;
}

void net_init(struct event_base *b, const struct config *c)
{
	base = b;
	cfg = c;
	shed.ev = evtimer_new(base, shed_log_cb, NULL);
}

void net_finish(void)
{
	if (shed.ev && shed.n[IP_WS] + shed.n[IP_HTTP] > 0)
		shed_log_cb(-1, 0, NULL);
	if (shed.ev)
		event_free(shed.ev);
	shed.ev = NULL;
	net_ip_clear();
}
