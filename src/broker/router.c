/*
 * Where a message goes: direct messages and rooms. A message is an
 * ENGINE_MESSAGE event: the engine gives it its seq and makes it durable;
 * once it hands the event back committed, router_on_message queues it for
 * fan-out in bounded turns (fanq.c: one payload, shared by every
 * recipient), and once it is out the sender's operation completes (its
 * ack). Nobody ever sees a seq that a crash could undo. Joining and leaving are
 * events too; the broker applies its own at once (a publish right after a join
 * finds the member) and another node's when the engine hands it over.
 */
#include "broker_int.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/msgbuf.h"
#include "basestation/sb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void broker_send(struct session *from, const char *from_uid, const char *to,
		 const char *room, const char *data, size_t len,
		 const json_t *ref, const struct bk_done *done)
{
	struct engine_event ev = {.kind = ENGINE_MESSAGE};
	const char *why;
	char *key = NULL, msg[192];

	if (from && room) {
		struct room *r = registry_room(room, 0);
		if (r == NULL || !registry_is_member(from->user, r)) {
			snprintf(msg, sizeof(msg),
				 "join room '%s' before publishing", room);
			bk_refuse(done, BK_FORBIDDEN, msg);
			return;
		}
	}
	if (ref)
		key = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
	ev.session = from ? from->id : 0;
	ev.idem = key;
	ev.msg.sender = from_uid;
	ev.msg.to = room ? NULL : to;
	ev.msg.room = room;
	ev.msg.data = data;
	ev.msg.data_len = len;
	if (fanq_submit(&ev, done, &why) < 0)
		bk_refuse(done, BK_UNAVAILABLE, why);
	free(key);
}

void router_on_message(const struct engine_event *ev)
{
	struct msgbuf *m = payload_message(&ev->msg);

	metrics.stored++;
	/* Recipients are looked up when the message goes out, not when it
	 * was submitted: a session that opened in between has replayed up to
	 * the last commit, and a room or user record may have come or gone. */
	fanq_push(ev, m);
	msgbuf_unref(m);
}

void router_on_member(const struct engine_event *ev)
{
	struct user *u;
	struct room *r;

	if (ev->local)
		return; /* applied when it was submitted */
	if (ev->kind == ENGINE_JOIN) {
		u = registry_user(ev->member.uid, 1);
		r = registry_room(ev->member.room, 1);
		if (registry_join(u, r, ev->seq))
			presence_joined(u, r);
		return;
	}
	u = registry_user(ev->member.uid, 0);
	r = registry_room(ev->member.room, 0);
	if (u && r && registry_leave(u, r))
		presence_left(u, ev->member.room);
	if (u)
		registry_release(u);
}

/* ---- rooms ---- */

/* Submit a membership change whose completion names the room. 0 ok, -1
 * refused (done completed with the reason). */
static int member_submit(enum engine_kind kind, struct session *s,
			 const char *name, const struct bk_done *done)
{
	struct engine_event ev = {.kind = kind, .session = s->id};
	struct bk_result ok = {.status = BK_OK, .name = name};
	struct bk_done d = carry(done, &ok);
	const char *why;

	ev.member.uid = s->user->uid;
	ev.member.room = name;
	if (fanq_submit(&ev, &d, &why) == 0)
		return 0;
	carry_drop(&d);
	bk_refuse(done, BK_UNAVAILABLE, why);
	return -1;
}

void broker_join(struct session *s, const char *name, int presence,
		 const struct bk_done *done)
{
	struct user *u = s->user;
	struct room *r = registry_room(name, 0);
	struct bk_result ok = {.status = BK_OK, .name = name};
	char msg[64];

	if (r && registry_is_member(u, r)) {
		if (presence >= 0)
			registry_presence_sub(r, s, presence);
		/* Nothing to store; the reply still keeps request order. */
		struct bk_done d = carry(done, &ok);
		fanq_sync(&d);
		return;
	}
	/* Refusals make no record: the room exists once it has a member. */
	if (u->nrooms >= bk.cfg->max_rooms) {
		snprintf(msg, sizeof(msg), "at most %d rooms per user",
			 bk.cfg->max_rooms);
		bk_refuse(done, BK_FORBIDDEN, msg);
		return;
	}
	if (member_submit(ENGINE_JOIN, s, name, done) < 0)
		return;
	r = registry_room(name, 1);
	registry_join(u, r, engine_committed(bk.engine));
	/* The others first: s subscribes after its own join. */
	presence_joined(u, r);
	if (presence > 0)
		registry_presence_sub(r, s, 1);
	log_info("room.join", "room=%s uid=%s", log_val(name), log_val(u->uid));
}

void broker_leave(struct session *s, const char *name,
		  const struct bk_done *done)
{
	struct user *u = s->user;
	struct room *r = registry_room(name, 0);
	struct bk_result ok = {.status = BK_OK, .name = name};

	if (r == NULL || !registry_is_member(u, r)) {
		bk_complete(done, &ok);
		return;
	}
	if (member_submit(ENGINE_LEAVE, s, name, done) < 0)
		return;
	/* Its sessions' subscriptions end with it; then the others hear. */
	registry_leave(u, r);
	presence_left(u, name);
	log_info("room.leave", "room=%s uid=%s", log_val(name),
		 log_val(u->uid));
}

void broker_presence(const char *name, const struct bk_done *done)
{
	struct room *r = registry_room(name, 0);
	struct bk_result res = {.status = BK_OK, .name = name};
	struct member *m, *tmp;
	struct sb b;
	int n = 0;

	sb_init(&b, 64);
	sb_add(&b, "[", 1);
	if (r) {
		HASH_ITER(hh, r->members, m, tmp)
		{
			if (m->user->nsessions + m->user->remote == 0)
				continue;
			if (n++)
				sb_add(&b, ",", 1);
			sb_add_jstr(&b, m->user->uid);
		}
	}
	sb_add(&b, "]", 1);
	res.body = b.p;
	res.body_len = b.n;
	bk_complete(done, &res);
	sb_free(&b);
}

void broker_resume(struct session *s, int64_t since, int report, int epoch_ok,
		   const json_t *ref, const struct bk_done *done)
{
	if (replay_start(s, since, report, epoch_ok, ref) < 0)
		bk_refuse(done, BK_BAD_REQUEST, "a replay is already running");
	else
		bk_refuse(done, BK_OK, NULL);
}
