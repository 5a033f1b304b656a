/*
 * The connect hook (--auth-url, contract §10): a token the broker does not
 * know is put to the application's own backend as
 *   POST URL {"token","uid"?,"remote","origin"?}
 * and its 200 {"uid","role"?,"expires_at"?} admits the connection. The call
 * never blocks the loop (libevent's HTTP client; a host name is resolved
 * with evdns). Answers:
 *   200 with a valid body          AUTH_HOOK_OK (cached, see below)
 *   any other status               AUTH_HOOK_REFUSED (401)
 *   200 whose expires_at is past   AUTH_HOOK_REFUSED (401)
 *   no answer within timeout_ms, connection refused or reset, DNS or TLS
 *   failure, a 200 whose body is not {"uid": valid uid, "role": "user" |
 *   "producer" | "admin" | null, "expires_at": ms >= 0 | null}, or more
 *   than AUTH_HOOK_MAX_INFLIGHT requests in flight  AUTH_HOOK_UNAVAILABLE (503)
 *
 * Only 200 answers are cached: for min(cache_seconds, expires_at), keyed by
 * SHA-256 over the token, the remote address and the origin (the backend was
 * told all three), at most AUTH_HOOK_CACHE_MAX entries (the least recently
 * used goes first). Checks of one key while its request is in flight wait
 * for that request. The token is never stored (only that hash) and never
 * logged (only the first 8 hex digits of its SHA-256, as for opaque tokens).
 */
#ifndef BASESTATION_AUTH_HOOK_H
#define BASESTATION_AUTH_HOOK_H

#include <stddef.h>

#include "basestation/auth.h"

struct event_base;
struct auth_hook;
struct auth_hook_wait;

#define AUTH_HOOK_TIMEOUT_MS   2000  /* contract §10 */
#define AUTH_HOOK_MAX_INFLIGHT 64    /* requests (sockets) at once */
#define AUTH_HOOK_MAX_ANSWER   65536 /* bytes of the answer's body */
/* Answers cached at most (tests/unit/test_hook.c builds with 4). */
#ifndef AUTH_HOOK_CACHE_MAX
#define AUTH_HOOK_CACHE_MAX 10000
#endif

enum auth_hook_status {
	AUTH_HOOK_OK = 0,
	AUTH_HOOK_REFUSED,     /* 401 */
	AUTH_HOOK_UNAVAILABLE, /* 503 */
	AUTH_HOOK_PENDING,     /* auth_hook_check only: the callback tells */
};

/* The answer to a pending check. id is the identity when st is
 * AUTH_HOOK_OK (uid, role, expires_at in ms or 0 = never, prefix; opaque
 * 0), zeroed otherwise; it is valid during the call only. The wait handle
 * is gone when this runs: do not cancel it. */
typedef void (*auth_hook_cb)(void *arg, enum auth_hook_status st,
			     const struct auth_identity *id);

/* What the backend is told. uid and origin may be NULL (not sent). */
struct auth_hook_query {
	const char *token;
	size_t token_len;
	const char *uid; /* NUL-terminated: the uid the client asked for */
	const char *remote;
	const char *origin;
	size_t origin_len;
};

/* Check url without using it: "http://HOST[:PORT][/PATH[?QUERY]]" or
 * "https://...", HOST a name or an IP address ([v6]), no user info and no
 * fragment. 0 ok; -1 with a message in err. */
int auth_hook_url_check(const char *url, char *err, size_t errsz);

/* A hook for url (see auth_hook_url_check) on base. cache_seconds 0: no
 * caching. A host name needs /etc/resolv.conf, read here, once. NULL on
 * failure, with a message in err. */
struct auth_hook *auth_hook_create(struct event_base *base, const char *url,
				   int cache_seconds, int timeout_ms, char *err,
				   size_t errsz);
/* Free everything: requests in flight are dropped and their callbacks never
 * run. Call it before base is freed. */
void auth_hook_destroy(struct auth_hook *h);

/*
 * Judge q's token. Returns AUTH_HOOK_OK (from the cache; *id filled),
 * AUTH_HOOK_REFUSED or AUTH_HOOK_UNAVAILABLE at once, or AUTH_HOOK_PENDING:
 * then *wait is a handle and cb(arg, ...) runs exactly once, later, from the
 * event loop (never from inside this call), unless auth_hook_cancel(*wait)
 * is called first. A token that cannot be put in JSON (not UTF-8) or is
 * longer than AUTH_TOKEN_MAX is refused without asking.
 */
enum auth_hook_status auth_hook_check(struct auth_hook *h,
				      const struct auth_hook_query *q,
				      struct auth_identity *id, auth_hook_cb cb,
				      void *arg, struct auth_hook_wait **wait);
/* The waiter is gone (a client that left): its callback will not run. The
 * request itself goes on, so that a 200 is cached for the next try. */
void auth_hook_cancel(struct auth_hook_wait *wait);

#endif
