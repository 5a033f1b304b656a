/*
 * A session's life in the broker (session.h): opened once its transport
 * has authenticated it, closed when the transport closes, finished just
 * before the transport frees it. The token it came with is watched: it is
 * closed with 4001 when the token expires or is revoked (contract §10).
 */
#include "broker_int.h"
#include "basestation/log.h"

#include <stdlib.h>
#include <string.h>

/* Close code for a connection whose token was revoked or expired. */
#define CLOSE_TOKEN 4001

void session_init(struct session *s, const struct session_sink *sink,
		  uint64_t id)
{
	s->sink = sink;
	s->id = id;
}

void session_open(struct session *s, const struct auth_identity *id)
{
	s->role = id->role;
	s->token_exp = id->expires_at;
	s->token_opaque = id->opaque ? 1 : 0;
	if (id->opaque)
		memcpy(s->token_hash, id->hash, sizeof(s->token_hash));
	s->rate.tokens = bk.cfg->burst;
	s->rate.at = mono_ms();
	registry_attach(s, id->uid);
	s->open = 1;
	if (s->user->nsessions == 1) /* other nodes count it online */
		engine_presence(bk.engine, s->user->uid, 1);
	presence_update(s->user);
}

/* The seq up to which every message for s has been queued to it: its
 * replay position; else every message fanned out so far (bk.fanned: the
 * fan queue's oldest entry has not gone to anyone yet), or further when s
 * was sent a later one (a member-major run reaches some sessions of a
 * room first; the queue is in seq order, so s was sent all before it). */
static int64_t queued_upto(const struct session *s)
{
	if (s->replaying)
		return s->last_seq;
	return s->last_seq > bk.fanned ? s->last_seq : bk.fanned;
}

/* The seq up to which s has been given its messages whole: they left its
 * output for the kernel (a message still buffered has not). */
static int64_t delivered_upto(const struct session *s)
{
	return s->sink->buffered(s) == 0 ? queued_upto(s) : s->sent_seq;
}

/* When the user's last session goes, the inbox cursor moves to what that
 * session was given whole: messages still in its output are in the next
 * inbox (at least once: a message in the kernel's buffers when the peer
 * reset may come again). */
void session_close(struct session *s)
{
	struct user *u;

	if (!s->open)
		return;
	s->open = 0;
	if ((u = registry_detach(s)) == NULL)
		return;
	engine_presence(bk.engine, u->uid, 0);
	presence_update(u); /* presence.leave after the grace period */
	int64_t cur = delivered_upto(s);
	if (cur > u->cursor)
		u->cursor = cur;
	/* The record goes when nothing needs it; the cursor stays in the
	 * store. If this write is lost (refused, or its commit fails), the
	 * stored cursor is older: the next inbox repeats messages, it never
	 * skips one. */
	struct engine_event ev = {.kind = ENGINE_CURSOR, .session = s->id};
	ev.cursor.uid = u->uid;
	ev.cursor.cursor = u->cursor;
	engine_submit(bk.engine, &ev, NULL, NULL);
	registry_release(u);
}

void session_finish(struct session *s)
{
	session_close(s);
	replay_forget(s);
	tasks_unsubscribe_all(s);
}

void session_drained(struct session *s)
{
	s->sent_seq = queued_upto(s);
	replay_drained(s);
}

int session_check_expiry(struct session *s, int64_t wall_ms)
{
	if (!s->open || s->token_exp == 0 || wall_ms < s->token_exp)
		return 0;
	s->sink->close(s, CLOSE_TOKEN, "token expired");
	return 1;
}

struct session *session_find(uint64_t id)
{
	struct session *s;
	HASH_FIND(hh, bk.sessions, &id, sizeof(id), s);
	return s;
}

static int by_hash(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* Tokens changed (the engine judged each): one walk over the open
 * sessions closes those whose token no longer admits them. */
void session_tokens_changed(const struct engine_event *ev)
{
	struct session *s, *tmp;

	if (ev->tokens.n <= 0)
		return;
	HASH_ITER(hh, bk.sessions, s, tmp)
	{
		const struct engine_token_state *t;

		if (!s->token_opaque)
			continue;
		t = bsearch(s->token_hash, ev->tokens.v, (size_t)ev->tokens.n,
			    sizeof(*t), by_hash);
		if (t == NULL)
			continue;
		if (t->state == 0)
			s->token_exp = t->expires_at; /* maybe longer */
		else if (t->state == AUTH_TOKEN_EXPIRED)
			s->sink->close(s, CLOSE_TOKEN, "token expired");
		else
			s->sink->close(s, CLOSE_TOKEN, "token revoked");
	}
}
