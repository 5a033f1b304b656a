/*
 * The connect hook (src/auth/hook.c, built in here with a cache of
 * AUTH_HOOK_CACHE_MAX = 4) against an evhttp backend on the same loop:
 * the cache's bound and order (least recently used goes first), its expiry
 * by expires_at, cancelled waits whose callback never runs (the request
 * still fills the cache), coalesced checks, refusals not cached, a stop
 * with a check in flight. The black-box test drives the same through the
 * broker; what it cannot see cheaply (10,000 entries) is seen here.
 */
#include "check.h"

#include "basestation/auth_hook.h"
#include "basestation/log.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static struct event_base *base;

/* The backend: hits per token; "deny*" answers 403, "exp*" a 200 that
 * expires in 300 ms, anything else 200 {"uid": the token}. */
#define MAX_TOKENS 32
static char seen[MAX_TOKENS][32];
static int seen_hits[MAX_TOKENS], nseen;

static int hits(const char *tok)
{
	for (int i = 0; i < nseen; i++)
		if (strcmp(seen[i], tok) == 0)
			return seen_hits[i];
	return 0;
}

static void backend_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct evbuffer *out = evbuffer_new();
	size_t len = evbuffer_get_length(in);
	json_t *o =
		json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
	const char *tok = json_string_value(json_object_get(o, "token"));
	int i;
	(void)arg;

	if (tok == NULL)
		tok = "";
	for (i = 0; i < nseen && strcmp(seen[i], tok) != 0; i++)
		;
	if (i == nseen && nseen < MAX_TOKENS)
		snprintf(seen[nseen++], sizeof(seen[0]), "%s", tok);
	if (i < MAX_TOKENS)
		seen_hits[i]++;
	if (strncmp(tok, "deny", 4) == 0) {
		evhttp_send_reply(req, 403, "Forbidden", NULL);
	} else {
		if (strncmp(tok, "exp", 3) == 0)
			evbuffer_add_printf(
				out, "{\"uid\":\"%s\",\"expires_at\":%lld}",
				tok, (long long)now_ms() + 300);
		else
			evbuffer_add_printf(out, "{\"uid\":\"%s\"}", tok);
		evhttp_send_reply(req, 200, "OK", out);
	}
	evbuffer_free(out);
	json_decref(o);
}

struct answer {
	int called;
	enum auth_hook_status st;
	struct auth_identity id;
};

static void answer_cb(void *arg, enum auth_hook_status st,
		      const struct auth_identity *id)
{
	struct answer *a = arg;
	a->called++;
	a->st = st;
	a->id = *id;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

/* Run the loop until *flag is set or ms pass (ms always, when flag is
 * NULL). */
static void run(const int *flag, int ms)
{
	int timed_out = 0;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *t = evtimer_new(base, stop_cb, &timed_out);

	evtimer_add(t, &tv);
	while (!timed_out && !(flag && *flag))
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

static enum auth_hook_status check(struct auth_hook *h, const char *tok,
				   struct answer *a, struct auth_hook_wait **w)
{
	struct auth_hook_query q = {tok,	 strlen(tok), NULL,
				    "127.0.0.1", NULL,	      0};
	struct auth_hook_wait *dummy;

	memset(a, 0, sizeof(*a));
	return auth_hook_check(h, &q, &a->id, answer_cb, a, w ? w : &dummy);
}

/* A check that misses the cache and gets its answer: the status. */
static enum auth_hook_status fetch(struct auth_hook *h, const char *tok)
{
	struct answer a;
	enum auth_hook_status st = check(h, tok, &a, NULL);

	if (st != AUTH_HOOK_PENDING)
		return (enum auth_hook_status) - 1;
	CHECK(a.called == 0); /* never from inside auth_hook_check */
	run(&a.called, 3000);
	CHECK(a.called == 1);
	return a.st;
}

int main(void)
{
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	struct auth_hook *h;
	struct answer a, b;
	struct auth_hook_wait *w1, *w2;
	char url[64], err[128], tok[8];

	base = event_base_new();
	http = evhttp_new(base);
	evhttp_set_gencb(http, backend_cb, NULL);
	bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
	CHECK(bound != NULL);
	getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin,
		    &sl);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/auth",
		 ntohs(sin.sin_port));
	h = auth_hook_create(base, url, 60, 2000, err, sizeof(err));
	CHECK(h != NULL);

	/* A miss, then a hit from the cache (no second request). */
	CHECK(fetch(h, "a0") == AUTH_HOOK_OK);
	CHECK(check(h, "a0", &a, NULL) == AUTH_HOOK_OK);
	CHECK(strcmp(a.id.uid, "a0") == 0 && a.id.role == ROLE_USER);
	CHECK(hits("a0") == 1);

	/* Four entries at most: a4 pushes out a0, the oldest. */
	for (int i = 1; i <= 4; i++) {
		snprintf(tok, sizeof(tok), "a%d", i);
		CHECK(fetch(h, tok) == AUTH_HOOK_OK);
	}
	CHECK(check(h, "a1", &a, NULL) == AUTH_HOOK_OK); /* a1 used again */
	CHECK(fetch(h, "a0") == AUTH_HOOK_OK);		 /* asked again... */
	CHECK(hits("a0") == 2);
	CHECK(check(h, "a1", &a, NULL) == AUTH_HOOK_OK); /* ...pushing out */
	CHECK(fetch(h, "a2") == AUTH_HOOK_OK);		 /* a2, not a1 */
	CHECK(hits("a2") == 2);

	/* A cancelled wait: no callback, and the 200 is still cached. */
	CHECK(check(h, "b0", &a, &w1) == AUTH_HOOK_PENDING);
	auth_hook_cancel(w1);
	run(NULL, 300);
	CHECK(a.called == 0);
	CHECK(hits("b0") == 1);
	CHECK(check(h, "b0", &a, NULL) == AUTH_HOOK_OK);

	/* Two checks of one token share one request; one of them leaves. */
	CHECK(check(h, "c0", &a, &w1) == AUTH_HOOK_PENDING);
	CHECK(check(h, "c0", &b, &w2) == AUTH_HOOK_PENDING);
	auth_hook_cancel(w1);
	run(&b.called, 3000);
	CHECK(a.called == 0 && b.called == 1 && b.st == AUTH_HOOK_OK);
	CHECK(hits("c0") == 1);

	/* A refusal is not cached. */
	CHECK(fetch(h, "deny0") == AUTH_HOOK_REFUSED);
	CHECK(fetch(h, "deny0") == AUTH_HOOK_REFUSED);
	CHECK(hits("deny0") == 2);

	/* Cached until expires_at when that comes before --auth-cache. */
	CHECK(fetch(h, "exp0") == AUTH_HOOK_OK);
	CHECK(check(h, "exp0", &a, NULL) == AUTH_HOOK_OK);
	CHECK(a.id.expires_at > now_ms());
	run(NULL, 400);
	CHECK(fetch(h, "exp0") == AUTH_HOOK_OK);
	CHECK(hits("exp0") == 2);

	/* Stopped with a check in flight: its callback never runs. */
	CHECK(check(h, "d0", &a, &w1) == AUTH_HOOK_PENDING);
	auth_hook_destroy(h);
	run(NULL, 100);
	CHECK(a.called == 0);

	/* Nothing listens: unavailable (at once or from the callback). */
	evhttp_free(http);
	h = auth_hook_create(base, url, 60, 2000, err, sizeof(err));
	CHECK(h != NULL);
	{
		enum auth_hook_status st = check(h, "e0", &a, NULL);
		if (st == AUTH_HOOK_PENDING) {
			run(&a.called, 3000);
			st = a.st;
		}
		CHECK(st == AUTH_HOOK_UNAVAILABLE);
	}
	auth_hook_destroy(h);

	/* URLs. */
	CHECK(auth_hook_url_check("http://127.0.0.1:1/x?y=1", err,
				  sizeof(err)) == 0);
	CHECK(auth_hook_url_check("https://[::1]/", err, sizeof(err)) == 0);
	CHECK(auth_hook_url_check("HTTP://auth.internal", err, sizeof(err)) ==
	      0);
	CHECK(auth_hook_url_check("ftp://x/", err, sizeof(err)) < 0);
	CHECK(auth_hook_url_check("http://", err, sizeof(err)) < 0);
	CHECK(auth_hook_url_check("http://u:p@host/", err, sizeof(err)) < 0);
	CHECK(auth_hook_url_check("http://host/#f", err, sizeof(err)) < 0);
	CHECK(auth_hook_url_check("http://host:0/", err, sizeof(err)) < 0);
	CHECK(auth_hook_url_check("/relative", err, sizeof(err)) < 0);

	event_base_free(base);
	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
