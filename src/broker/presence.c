/*
 * Presence events (contract §10): a connection that joined a room with
 * "presence":true is sent {"type":"presence.join"|"presence.leave",
 * "room","uid"} when a member comes online (its first session anywhere:
 * WebSocket or SSE, this node or another) or an online user joins, and
 * when its last session goes or it leaves the room.
 *
 * A user is online while nsessions (here) + remote (other nodes, fed by
 * broker_presence_remote) > 0, and "present" once presence.join was
 * announced. Going offline does not announce at once: the user goes on
 * one grace list, in the order it went (every entry waits the same
 * PRESENCE_GRACE_MS, so the list is sorted by deadline), under one timer
 * armed for the head. Coming back before the deadline takes it off the
 * list and nothing is sent, so a reconnect within 1 s is silent, and the
 * leave is sent at most 3 s after the close. The list is intrusive (links
 * in struct user): a user flapping allocates nothing per flap, and holds
 * at most its one record while on the list.
 *
 * A subscriber is never sent events about its own user: while it is open
 * its user is online, and its user's joins and leaves of the room come
 * before its subscription or end it. The frame is built once per room
 * and event and goes through the one delivery loop (fanout.c).
 */
#include "broker_int.h"
#include "basestation/log.h"
#include "basestation/msgbuf.h"

#include <event2/event.h>

/* At least 1 s (a return within 1 s sends nothing, with room for the new
 * connection's handshake), at most 3 s after the close. */
#define PRESENCE_GRACE_MS 1500

static int online(const struct user *u)
{
	return u->nsessions + u->remote > 0;
}

static void presence_one(void *elem, void *arg)
{
	session_send(*(struct session **)elem, arg);
}

static void announce_room(struct room *r, const char *type,
			  const struct user *u)
{
	struct msgbuf *m;

	if (r == NULL || r->npsubs == 0)
		return;
	m = payload_presence(type, r->name, u->uid);
	fanout((void *const *)&r->psubs, sizeof(struct session *), &r->npsubs,
	       presence_one, m);
	msgbuf_unref(m);
}

/* In every room of u. A delivery may cut a slow subscriber (never one of
 * u's: see above), which changes no membership, so u->rooms holds still. */
static void announce(const struct user *u, const char *type)
{
	for (int i = 0; i < u->nrooms; i++)
		announce_room(u->rooms[i], type, u);
}

static void gone_unlink(struct user *u)
{
	if (u->gprev)
		u->gprev->gnext = u->gnext;
	else
		bk.gone_head = u->gnext;
	if (u->gnext)
		u->gnext->gprev = u->gprev;
	else
		bk.gone_tail = u->gprev;
	u->gnext = u->gprev = NULL;
	u->pending = 0;
}

static void gone_arm(int64_t now)
{
	int64_t wait;
	struct timeval tv;

	if (bk.gone_head == NULL || bk.gone_ev == NULL)
		return;
	wait = bk.gone_head->gone_at + PRESENCE_GRACE_MS - now;
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000 * 1000);
	evtimer_add(bk.gone_ev, &tv);
}

static void gone_cb(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = mono_ms();
	struct user *u;

	(void)fd;
	(void)what;
	(void)arg;
	/* Take each off the list before announcing: a cut subscriber that
	 * was its user's last session is appended meanwhile. */
	while ((u = bk.gone_head) && u->gone_at + PRESENCE_GRACE_MS <= now) {
		gone_unlink(u);
		u->present = 0;
		announce(u, "presence.leave");
		registry_release(u);
	}
	gone_arm(now);
}

void presence_update(struct user *u)
{
	if (online(u)) {
		if (u->pending)
			gone_unlink(u); /* back in time: nothing to say */
		else if (!u->present) {
			u->present = 1;
			announce(u, "presence.join");
		}
		return;
	}
	if (!u->present || u->pending)
		return;
	if (u->nrooms == 0) {
		u->present = 0; /* nobody to tell */
		return;
	}
	u->pending = 1;
	u->gone_at = mono_ms();
	u->gnext = NULL;
	u->gprev = bk.gone_tail;
	if (bk.gone_tail)
		bk.gone_tail->gnext = u;
	else
		bk.gone_head = u;
	bk.gone_tail = u;
	if (bk.gone_head == u)
		gone_arm(u->gone_at);
}

void presence_joined(struct user *u, struct room *r)
{
	if (u->present)
		announce_room(r, "presence.join", u);
}

void presence_left(struct user *u, const char *room)
{
	if (u->present)
		announce_room(registry_room(room, 0), "presence.leave", u);
}

void broker_presence_remote(const char *uid, int delta)
{
	struct user *u = registry_user(uid, delta > 0);

	if (u == NULL)
		return;
	u->remote += delta;
	if (u->remote < 0) {
		log_warn("presence.remote", "uid=%s count=%d", log_val(uid),
			 u->remote);
		u->remote = 0;
	}
	presence_update(u);
	registry_release(u);
}

void presence_init(void)
{
	bk.gone_ev = evtimer_new(bk.base, gone_cb, NULL);
	if (bk.gone_ev == NULL)
		fatal("event_new failed");
}

/* Stopping: nothing more is announced; the records go with the
 * registry. */
void presence_stop(void)
{
	while (bk.gone_head)
		gone_unlink(bk.gone_head);
	if (bk.gone_ev)
		event_free(bk.gone_ev);
	bk.gone_ev = NULL;
}
