/*
 * Who is online: session id -> session (bk.sessions), uid -> user -> its
 * sessions, room -> members and their live sessions. Membership is
 * durable (the engine's store) and loaded at start, so routing never asks
 * the database who is in a room.
 *
 * Records live exactly as long as something needs them, so what a client
 * can make the broker hold is bounded by what it is entitled to (its
 * connections, its --max-rooms memberships): a room while it has a member
 * (its sessions are those of members), a user while it has a session or a
 * membership. Nothing else keeps a pointer to either across loop turns:
 * events name their room or recipient and look it up at fan-out. A user's
 * inbox cursor is in the store, written when its last session goes, and
 * read back when the record is made again.
 */
#include "broker_int.h"
#include "basestation/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct user *registry_user(const char *uid, int create)
{
	struct user *u;
	int64_t cursor = 0;

	HASH_FIND_STR(bk.users, uid, u);
	if (u || !create)
		return u;
	/* No row (a new user): inbox from the start. A read error does the
	 * same: messages delivered twice rather than lost. */
	if (engine_cursor(bk.engine, uid, &cursor) < 0)
		cursor = 0;
	/* One allocation: a user record per connected uid, the uid after it. */
	size_t n = strlen(uid);
	u = xcalloc(1, sizeof(*u) + n + 1);
	u->uid = memcpy(u + 1, uid, n + 1);
	u->cursor = cursor;
	HASH_ADD_KEYPTR(hh, bk.users, u->uid, strlen(u->uid), u);
	return u;
}

struct room *registry_room(const char *name, int create)
{
	struct room *r;
	HASH_FIND_STR(bk.rooms, name, r);
	if (r || !create)
		return r;
	r = xcalloc(1, sizeof(*r));
	r->name = xstrdup(name);
	r->gen = ++bk.room_gen;
	HASH_ADD_KEYPTR(hh, bk.rooms, r->name, strlen(r->name), r);
	return r;
}

static void room_free(struct room *r)
{
	struct member *m, *mt;

	HASH_ITER(hh, r->members, m, mt)
	{
		HASH_DEL(r->members, m);
		free(m);
	}
	HASH_DEL(bk.rooms, r);
	free(r->sessions);
	free(r->psubs);
	free(r->name);
	free(r);
}

static void user_free(struct user *u)
{
	HASH_DEL(bk.users, u);
	free(u->rooms);
	free(u);
}

/* An array of sessions in join order (fan-out order). */
static void sessions_add(struct session ***v, int *n, int *cap,
			 struct session *s)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		*v = xrealloc(*v, sizeof(**v) * (size_t)*cap);
	}
	(*v)[(*n)++] = s;
}

/* 1 removed, 0 not there. */
static int sessions_del(struct session **v, int *n, struct session *s)
{
	for (int i = 0; i < *n; i++)
		if (v[i] == s) {
			/* Keep order: fan-out order is join order. */
			memmove(&v[i], &v[i + 1],
				sizeof(*v) * (size_t)(*n - i - 1));
			(*n)--;
			return 1;
		}
	return 0;
}

static void room_add(struct room *r, struct session *s)
{
	sessions_add(&r->sessions, &r->nsessions, &r->capsessions, s);
	r->gen = ++bk.room_gen;
}

/* s is out of r: its presence subscription ends with it. */
static void room_del(struct room *r, struct session *s)
{
	if (sessions_del(r->sessions, &r->nsessions, s))
		r->gen = ++bk.room_gen;
	if (r->npsubs)
		sessions_del(r->psubs, &r->npsubs, s);
}

void registry_presence_sub(struct room *r, struct session *s, int on)
{
	sessions_del(r->psubs, &r->npsubs, s); /* at most once */
	if (on)
		sessions_add(&r->psubs, &r->npsubs, &r->cappsubs, s);
}

void registry_attach(struct session *s, const char *uid)
{
	struct user *u = registry_user(uid, 1);

	s->user = u;
	s->uprev = NULL;
	s->unext = u->sessions;
	if (u->sessions)
		u->sessions->uprev = s;
	u->sessions = s;
	if (u->nsessions++ == 0)
		bk.users_online++;
	for (int i = 0; i < u->nrooms; i++)
		room_add(u->rooms[i], s);
	HASH_ADD(hh, bk.sessions, id, sizeof(s->id), s);
}

struct user *registry_detach(struct session *s)
{
	struct user *u = s->user;

	if (u == NULL)
		return NULL;
	HASH_DEL(bk.sessions, s);
	for (int i = 0; i < u->nrooms; i++)
		room_del(u->rooms[i], s);
	if (s->uprev)
		s->uprev->unext = s->unext;
	else
		u->sessions = s->unext;
	if (s->unext)
		s->unext->uprev = s->uprev;
	s->unext = s->uprev = NULL;
	s->user = NULL;
	if (--u->nsessions > 0)
		return NULL;
	bk.users_online--;
	return u;
}

void registry_release(struct user *u)
{
	/* Presence holds it while announced online (the grace period) or
	 * online on another node. */
	if (u->nsessions == 0 && u->nrooms == 0 && !u->present &&
	    u->remote == 0)
		user_free(u);
}

int registry_is_member(const struct user *u, const struct room *r)
{
	for (int i = 0; i < u->nrooms; i++)
		if (u->rooms[i] == r)
			return 1;
	return 0;
}

const struct member *registry_member(struct user *u, const struct room *r)
{
	struct member *m;

	HASH_FIND_PTR(r->members, &u, m);
	return m;
}

int registry_join(struct user *u, struct room *r, int64_t joined_seq)
{
	struct member *m;

	if (registry_is_member(u, r))
		return 0;
	m = xcalloc(1, sizeof(*m));
	m->user = u;
	m->joined_seq = joined_seq;
	HASH_ADD_PTR(r->members, user, m);
	r->nmembers++;
	if (u->nrooms == u->caprooms) {
		u->caprooms = u->caprooms ? u->caprooms * 2 : 4;
		u->rooms = xrealloc(u->rooms,
				    sizeof(*u->rooms) * (size_t)u->caprooms);
	}
	u->rooms[u->nrooms++] = r;
	for (struct session *s = u->sessions; s; s = s->unext)
		room_add(r, s);
	return 1;
}

int registry_leave(struct user *u, struct room *r)
{
	struct member *m;
	int i;

	HASH_FIND_PTR(r->members, &u, m);
	if (m == NULL)
		return 0;
	HASH_DEL(r->members, m);
	free(m);
	r->nmembers--;
	for (i = 0; i < u->nrooms && u->rooms[i] != r; i++)
		;
	if (i < u->nrooms)
		u->rooms[i] = u->rooms[--u->nrooms];
	for (struct session *s = u->sessions; s; s = s->unext)
		room_del(r, s);
	/* Its last member gone, the room has no session either. */
	if (r->nmembers == 0)
		room_free(r);
	return 1;
}

void registry_load_member(void *arg, const char *room, const char *uid,
			  int64_t joined_seq)
{
	(void)arg;
	registry_join(registry_user(uid, 1), registry_room(room, 1),
		      joined_seq);
}

void registry_free(void)
{
	struct user *u, *ut;
	struct room *r, *rt;

	HASH_ITER(hh, bk.rooms, r, rt)
	{
		room_free(r);
	}
	HASH_ITER(hh, bk.users, u, ut)
	{
		user_free(u);
	}
	bk.sessions = NULL;
}
