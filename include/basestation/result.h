/*
 * What a broker operation answers, whoever asked: a status, a seq (a
 * message's seq, a task's version), what it was about, a body (JSON text)
 * and, for a refusal, why. The operation knows no transport:
 * proto/render.c turns a result into a WebSocket reply, http/ into a
 * status and JSON.
 *
 * The caller says where the result goes with a bk_done, passed by value
 * and copied by whoever keeps it; its fn runs exactly once, maybe before
 * the operation returns (a refusal), maybe loop turns later (after the
 * commit). Everything in the result is valid only during that call.
 */
#ifndef BASESTATION_RESULT_H
#define BASESTATION_RESULT_H

#include <stddef.h>
#include <stdint.h>

enum bk_status {
	BK_OK,
	BK_CREATED,
	BK_BAD_REQUEST,
	BK_FORBIDDEN,
	BK_NOT_FOUND,
	BK_CONFLICT,	/* e.g. a task id in use */
	BK_TOO_LARGE,	/* a field past a limit */
	BK_UNAVAILABLE, /* the store or the engine failed */
	/* Between the engine and the broker only (never rendered as such):
	 * a task change made from a state that was not the latest (another
	 * node's change came first); the broker validates it again. */
	BK_STALE,
};

struct bk_result {
	enum bk_status status;
	int64_t seq;
	const char *name; /* a room, a task id; NULL when none */
	const char *body; /* JSON text; NULL when none */
	size_t body_len;
	const char *msg; /* why, for a refusal */
};

struct bk_done {
	void (*fn)(const struct bk_done *d, const struct bk_result *r);
	void *ptr; /* the caller's own: a ref, a request */
	void *aux;
	uint64_t id; /* the caller's own: a session id */
	int kind;    /* the caller's own: which operation */
};

/* Run d (NULL, or one without fn: nobody waits). */
static inline void bk_complete(const struct bk_done *d,
			       const struct bk_result *r)
{
	if (d && d->fn)
		d->fn(d, r);
}

/* Complete d with a refusal. */
static inline void bk_refuse(const struct bk_done *d, enum bk_status st,
			     const char *msg)
{
	struct bk_result r = {.status = st, .msg = msg};
	bk_complete(d, &r);
}

#endif
