/*
 * The broker's start and stop, and the one door the engine comes in by:
 * every committed event, in seq order (engine.h). What they make the
 * broker send goes out in that order through the fan queue (fanq.c).
 */
#include "broker_int.h"
#include "basestation/log.h"
#include "basestation/tasks.h"

#include <event2/event.h>
#include <string.h>

#define TASK_PRUNE_MS 1000

static void on_event(void *arg, const struct engine_event *ev)
{
	struct user *u;
	(void)arg;

	switch (ev->kind) {
	case ENGINE_MESSAGE:
		router_on_message(ev);
		break;
	case ENGINE_JOIN:
	case ENGINE_LEAVE:
		router_on_member(ev);
		break;
	case ENGINE_CURSOR:
		/* Another node's session of this user went: its cursor. */
		if (!ev->local && (u = registry_user(ev->cursor.uid, 0)) &&
		    ev->cursor.cursor > u->cursor)
			u->cursor = ev->cursor.cursor;
		break;
	case ENGINE_TASK:
	case ENGINE_TASK_DELETE:
		tasks_on_event(ev);
		break;
	case ENGINE_TOKEN_ISSUE:
		break; /* looked up in the store when it is used */
	case ENGINE_TOKEN_CHANGE:
		session_tokens_changed(ev);
		break;
	}
}

/* Other nodes' sessions (a cluster engine's core NATS feed). */
static void on_presence(void *arg, const char *uid, int delta)
{
	(void)arg;
	broker_presence_remote(uid, delta);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	tasks_prune(now_ms());
}

int broker_init(struct event_base *base, const struct config *cfg,
		struct engine *e)
{
	static const struct engine_loader loader = {
		.member = registry_load_member,
		.task = tasks_load_row,
	};
	struct timeval prune = {TASK_PRUNE_MS / 1000, 0};

	memset(&bk, 0, sizeof(bk));
	bk.cfg = cfg;
	bk.engine = e;
	bk.base = base;
	/* Members only: other users' records are made when they connect. */
	if (engine_load(e, &loader, NULL) < 0)
		return -1;
	tasks_loaded();
	bk.fanned = engine_committed(e);
	engine_listen(e, on_event, NULL);
	replay_init();
	presence_init();
	fanq_init(base);
	engine_listen_presence(e, on_presence, NULL);
	bk.prune_ev = event_new(base, -1, EV_PERSIST, prune_cb, NULL);
	if (bk.prune_ev == NULL)
		fatal("event_new failed");
	event_add(bk.prune_ev, &prune);
	return 0;
}

void broker_finish(void)
{
	if (bk.engine) {
		engine_listen(bk.engine, NULL, NULL);
		engine_listen_presence(bk.engine, NULL, NULL);
	}
	if (bk.prune_ev)
		event_free(bk.prune_ev);
	bk.prune_ev = NULL;
	fanq_stop(); /* the last deliveries, while tasks and rooms are here */
	replay_stop();
	presence_stop();
	tasks_free();
	registry_free();
}

void broker_drain(void)
{
	fanq_drain();
}

int broker_authenticate(const char *tok, size_t len, int64_t now,
			struct auth_identity *id)
{
	unsigned char hash[32];

	if (len == 0 || len > AUTH_TOKEN_MAX)
		return -1;
	if (bk.cfg->jwt_secret && memchr(tok, '.', len) &&
	    auth_jwt_verify(bk.cfg->jwt_secret, tok, len, now, id) == 0)
		return 0;
	if (auth_token_hash(tok, len, hash) < 0)
		return -2;
	return engine_token(bk.engine, hash, now, id);
}

const char *broker_epoch(void)
{
	return engine_epoch(bk.engine);
}

int64_t broker_committed(void)
{
	return engine_committed(bk.engine);
}

int broker_users_online(void)
{
	return bk.users_online;
}

size_t broker_nusers(void)
{
	return HASH_COUNT(bk.users);
}

size_t broker_nrooms(void)
{
	return HASH_COUNT(bk.rooms);
}

const char *broker_uid(const struct session *s)
{
	return s->user ? s->user->uid : NULL;
}

int broker_session_nrooms(const struct session *s)
{
	return s->user ? s->user->nrooms : 0;
}

const char *broker_session_room(const struct session *s, int i)
{
	return s->user->rooms[i]->name;
}

int broker_is_member(const char *uid, const char *room)
{
	struct user *u = registry_user(uid, 0);
	struct room *r = registry_room(room, 0);

	return u && r && registry_is_member(u, r);
}
