/*
 * Who is online: conn id -> conn (srv->conns), uid -> user -> its
 * connections, room -> members and their live connections. Membership is
 * durable (the members table) and loaded at start, so routing never asks
 * the database who is in a room.
 *
 * Records live exactly as long as something needs them, so what a client
 * can make the broker hold is bounded by what it is entitled to (its
 * connections, its --max-rooms memberships): a room while it has a member
 * (its connections are those of members), a user while it has a connection
 * or a membership. Nothing else keeps a pointer to either across loop
 * turns: queued posts name their room or recipient and look it up at
 * fan-out. A user's inbox cursor is in the users table, written when its
 * last connection goes, and read back when the record is made again.
 */
#include "basestation/addr.h"
#include "basestation/broker.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "basestation/metrics.h"
#include "basestation/store.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct user *registry_user(const char *uid, int create)
{
	struct user *u;
	int64_t cursor = 0;

	HASH_FIND_STR(srv->users, uid, u);
	if (u || !create)
		return u;
	/* No row (a new user): inbox from the start. A read error does the
	 * same: messages delivered twice rather than lost. */
	if (store_user_get(srv->store, uid, &cursor) < 0)
		cursor = 0;
	u = xcalloc(1, sizeof(*u));
	u->uid = xstrdup(uid);
	u->cursor = cursor;
	HASH_ADD_KEYPTR(hh, srv->users, u->uid, strlen(u->uid), u);
	return u;
}

struct room *registry_room(const char *name, int create)
{
	struct room *r;
	HASH_FIND_STR(srv->rooms, name, r);
	if (r || !create)
		return r;
	r = xcalloc(1, sizeof(*r));
	r->name = xstrdup(name);
	HASH_ADD_KEYPTR(hh, srv->rooms, r->name, strlen(r->name), r);
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
	HASH_DEL(srv->rooms, r);
	free(r->conns);
	free(r->name);
	free(r);
}

static void user_free(struct user *u)
{
	HASH_DEL(srv->users, u);
	free(u->rooms);
	free(u->uid);
	free(u);
}

size_t registry_nusers(void)
{
	return HASH_COUNT(srv->users);
}

size_t registry_nrooms(void)
{
	return HASH_COUNT(srv->rooms);
}

static void room_add_conn(struct room *r, struct conn *c)
{
	if (r->nconns == r->capconns) {
		r->capconns = r->capconns ? r->capconns * 2 : 4;
		r->conns = xrealloc(r->conns,
				    sizeof(*r->conns) * (size_t)r->capconns);
	}
	r->conns[r->nconns++] = c;
}

static void room_del_conn(struct room *r, struct conn *c)
{
	for (int i = 0; i < r->nconns; i++)
		if (r->conns[i] == c) {
			/* Keep order: fan-out order is join order. */
			memmove(&r->conns[i], &r->conns[i + 1],
				sizeof(*r->conns) *
					(size_t)(r->nconns - i - 1));
			r->nconns--;
			return;
		}
}

void registry_attach(struct conn *c, const char *uid)
{
	struct user *u = registry_user(uid, 1);

	c->user = u;
	c->uprev = NULL;
	c->unext = u->conns;
	if (u->conns)
		u->conns->uprev = c;
	u->conns = c;
	if (u->nconns++ == 0)
		srv->users_online++;
	for (int i = 0; i < u->nrooms; i++)
		room_add_conn(u->rooms[i], c);
}

/* Remove c from routing. When the user's last connection goes, the inbox
 * cursor moves to what that connection was given whole (to the kernel):
 * messages still in its output buffer are in the next inbox. */
void registry_detach(struct conn *c)
{
	struct user *u = c->user;

	if (u == NULL)
		return;
	for (int i = 0; i < u->nrooms; i++)
		room_del_conn(u->rooms[i], c);
	if (c->uprev)
		c->uprev->unext = c->unext;
	else
		u->conns = c->unext;
	if (c->unext)
		c->unext->uprev = c->uprev;
	c->unext = c->uprev = NULL;
	c->user = NULL;
	srv->nconns--;
	metrics.conns_closed++;
	if (--u->nconns == 0) {
		srv->users_online--;
		/* At least once: a message that was buffered, or in the
		 * kernel's buffers when the peer reset, may come again. */
		int64_t cur = conn_delivered_seq(c);
		if (cur > u->cursor)
			u->cursor = cur;
		/* The record goes when nothing needs it; the cursor stays in
		 * the users table. If this write is lost (no transaction, or
		 * its commit fails), the stored cursor is older: the next
		 * inbox repeats messages, it never skips one. */
		if (server_write_begin() == 0)
			store_user_put(srv->store, u->uid, u->cursor, now_ms());
		if (u->nrooms == 0)
			user_free(u);
	}
}

int registry_is_member(const struct user *u, const struct room *r)
{
	for (int i = 0; i < u->nrooms; i++)
		if (u->rooms[i] == r)
			return 1;
	return 0;
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
	for (struct conn *c = u->conns; c; c = c->unext)
		room_add_conn(r, c);
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
	for (struct conn *c = u->conns; c; c = c->unext)
		room_del_conn(r, c);
	/* Its last member gone, the room has no connection either. */
	if (r->nmembers == 0)
		room_free(r);
	return 1;
}

/* What --max-per-ip counts by: the address, but an IPv6 address by its
 * /64, the block one subscriber or host is given (one client could
 * otherwise take a fresh address per socket). ip is canonical text. */
static void ip_key(const char *ip, char *key, size_t n)
{
	struct addr a;

	if (addr_parse(ip, 0, &a) == 0 && a.family == AF_INET6) {
		a.bits = 64;
		memset(a.b + 8, 0, 8);
		addr_format(&a, key, n);
	} else {
		snprintf(key, n, "%s", ip);
	}
}

int registry_ip_count(const char *ip, enum ip_port port)
{
	struct ipcount *e;
	char key[ADDR_TEXT_MAX];
	ip_key(ip, key, sizeof(key));
	HASH_FIND_STR(srv->ips, key, e);
	return e ? e->n[port] : 0;
}

struct ipcount *registry_ip_hold(const char *ip, enum ip_port port)
{
	struct ipcount *e;
	char key[ADDR_TEXT_MAX];
	ip_key(ip, key, sizeof(key));
	HASH_FIND_STR(srv->ips, key, e);
	if (e == NULL) {
		e = xcalloc(1, sizeof(*e));
		snprintf(e->ip, sizeof(e->ip), "%s", key);
		HASH_ADD_STR(srv->ips, ip, e);
	}
	e->n[port]++;
	return e;
}

void registry_ip_put(struct ipcount *e, enum ip_port port)
{
	e->n[port]--;
	if (e->n[IP_WS] <= 0 && e->n[IP_HTTP] <= 0) {
		HASH_DEL(srv->ips, e);
		free(e);
	}
}

static void load_member(void *arg, const char *room, const char *uid,
			int64_t joined_seq)
{
	(void)arg;
	struct user *u = registry_user(uid, 1);
	struct room *r = registry_room(room, 1);
	registry_join(u, r, joined_seq);
}

/* Members only: other users' records are made when they connect. */
void registry_load(void)
{
	if (store_load_members(srv->store, load_member, NULL) < 0)
		fatal("cannot load rooms from the store");
}

void registry_free(void)
{
	struct user *u, *ut;
	struct room *r, *rt;
	struct ipcount *e, *et;

	HASH_ITER(hh, srv->rooms, r, rt)
	{
		room_free(r);
	}
	HASH_ITER(hh, srv->users, u, ut)
	{
		user_free(u);
	}
	HASH_ITER(hh, srv->ips, e, et)
	{
		HASH_DEL(srv->ips, e);
		free(e);
	}
}
