/*
 * The broker's in-memory state: connections, users, rooms, the pending
 * writes of the current loop turn. One thread, one event loop; nothing here
 * is locked.
 */
#ifndef BASESTATION_BROKER_H
#define BASESTATION_BROKER_H

#include <jansson.h>
#include <stdint.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <uthash.h>

#include "basestation/auth.h"
#include "basestation/commands.h"
#include "basestation/config.h"
#include "basestation/ws.h"

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct evhttp;
struct evhttp_request;
struct shbuf;
struct sockaddr;
struct store;
struct task;

enum conn_state {
	CONN_HANDSHAKE, /* reading the HTTP request head */
	CONN_REFUSING,	/* writing an HTTP refusal, then close */
	CONN_OPEN,
	CONN_CLOSING, /* close frame queued; waiting for the flush */
	CONN_DEAD,    /* queued for destruction */
};

/* A message held back while its connection replays from the store. */
struct held {
	struct held *next;
	int64_t seq;
	struct shbuf *frame;
};

struct conn {
	uint64_t id;
	UT_hash_handle hh; /* srv->conns, by id */
	int fd;
	short watching;	       /* EV_READ, or EV_READ | EV_WRITE */
	unsigned in_flush : 1; /* on srv->flush */
	unsigned shut : 1;     /* our side half-closed after the close */
	struct event ev;
	struct evbuffer *out; /* pending output; NULL when none */
	char *hs;	      /* request head while in the handshake */
	uint32_t hs_len;
	struct conn *fnext; /* flush list */
	enum conn_state state;
	enum auth_role role;
	struct user *user;
	struct conn *unext, *uprev; /* the user's connections */
	struct conn *qnext;	    /* reap list */
	struct conn *rnext;	    /* replay queue */
	struct ipcount *ip;
	char remote[48];
	int64_t since_ms;  /* wall clock, connected at */
	int64_t last_rx;   /* monotonic ms of the last frame received */
	int64_t msg_since; /* monotonic ms a frame or message still
			      incomplete began; 0 = none */
	int64_t last_ping; /* monotonic ms of the last ping sent */
	int64_t deadline;  /* monotonic ms: handshake or close deadline */
	int64_t last_seq;  /* highest message seq queued on this conn */
	int64_t sent_seq;  /* conn_delivered_seq() when its output last
			      drained: what went whole to the kernel */
	/* replay (resume or offline inbox) */
	unsigned replaying : 1;
	unsigned replay_report : 1; /* send "resumed" at the end */
	unsigned replay_complete : 1;
	unsigned in_replay_queue : 1;
	unsigned wait_drain : 1;
	unsigned slow : 1;
	unsigned seed_shape : 1;   /* some subscriptions use the seed shape */
	unsigned token_opaque : 1; /* token_hash names its opaque token */
	/* the token it authenticated with: closed 4001 when it is revoked
	 * or expires (contract §10) */
	int64_t token_exp; /* wall clock ms, 0 = never */
	unsigned char token_hash[32];
	int64_t replay_since;
	int64_t replay_upto;
	int replay_count;
	json_t *replay_ref;
	struct held *held_head, *held_tail;
	uint64_t held_bytes; /* bounded by --max-outbuf like the output */
	/* rate limit: token bucket */
	double tokens;
	int64_t tokens_at;
	int strikes;
	/* task subscriptions */
	struct task **subs;
	uint8_t *sub_seed; /* per subscription: 1 = seed shape */
	int nsubs, capsubs;
	struct ws_parser parser;
};

struct member {
	struct user *user;
	int64_t joined_seq;
	UT_hash_handle hh; /* room->members, by user pointer */
};

struct room {
	char *name;
	UT_hash_handle hh; /* srv->rooms, by name */
	struct member *members;
	int nmembers;
	struct conn **conns; /* live connections of members */
	int nconns, capconns;
};

struct user {
	char *uid;
	UT_hash_handle hh; /* srv->users, by uid */
	struct conn *conns;
	int nconns;
	struct room **rooms;
	int nrooms, caprooms;
	int64_t cursor; /* offline inbox: delivered up to here */
};

/* The two listening ports; --max-per-ip applies to each on its own. */
enum ip_port { IP_WS, IP_HTTP };

/* Sockets from one remote address, by port: on the WebSocket port from the
 * accept on (handshakes too) until the socket is closed; on the HTTP port
 * for as long as the connection lasts. */
struct ipcount {
	char ip[48]; /* the address, an IPv6 one as its /64 (registry.c) */
	int n[2];    /* by enum ip_port */
	UT_hash_handle hh;
};

/* Work to do once the current transaction is committed. */
enum post_kind {
	POST_MESSAGE, /* fan out frame, then ack */
	POST_ACK,     /* duplicate: ack only */
	POST_TASK,    /* push task version to subscribers */
	POST_REPLY,   /* send a prepared frame to one connection, or
			 http_body with http_status to req */
};

struct post {
	struct post *next;
	enum post_kind kind;
	int64_t seq;
	uint64_t conn_id; /* sender: gets the ack, excluded from the room */
	json_t *ref;
	struct shbuf *frame;
	/* Recipient, owned, looked up at fan-out: a room or user record may
	 * come and go while the post waits for its commit. */
	char *to_uid;		    /* direct message */
	char *room_name;	    /* room message */
	struct task *task;	    /* holds a reference (tasks.c) */
	struct evhttp_request *req; /* HTTP caller waiting for the commit */
	int http_status;
	json_t *http_body; /* POST_REPLY to req */
	char *snap;	   /* POST_TASK: this version's snapshot, JSON text */
	size_t snap_len;
};

struct server {
	struct config *cfg;
	struct event_base *base;
	struct store *store;
	struct evconnlistener *listener;
	struct evhttp *http;
	struct event *commit_ev, *tick_ev, *replay_ev, *reap_ev, *prune_ev;
	struct event *flush_ev;
	struct event *prune_step_ev; /* the next retention step, next turn */
	struct conn *flush; /* connections with output to write this turn */
	struct event *sig_term, *sig_int, *stop_ev;
	uint64_t next_conn_id;
	struct conn *conns;
	struct user *users;
	struct room *rooms;
	struct ipcount *ips;
	struct task *tasks;
	int nconns;   /* open WebSocket connections */
	int nsockets; /* all accepted sockets, incl. handshakes */
	/* Caps fitted to RLIMIT_NOFILE at start (server.c): sockets on the
	 * WebSocket port (nsockets), connections on the HTTP port. */
	int ws_sockets_max;
	int http_conns_max;
	int users_online;
	int64_t last_seq;      /* last seq handed out */
	int64_t committed_seq; /* last seq known committed */
	int64_t pruned_max_seq;
	int64_t token_seq; /* token_changes read up to this seq */
	struct post *post_head, **post_tail;
	struct conn *replay_head, *replay_tail;
	struct conn *reap;
	int stopping;
	int ws_port, http_port;
	char *web_root;
};

extern struct server *srv;

/* ---- server.c ---- */
int server_run(struct config *cfg);
/* Open the write transaction of this loop turn (scheduling its commit). 0
 * ok, -1 database error. */
int server_write_begin(void);
void server_post(struct post *p);
/* Run a retention step (router_prune) on the next loop turn. */
void server_prune_soon(void);
/* Listen on addr ("host:port", port 0 picks one) for accepted sockets to
 * go to cb (NULL: set later, by evhttp_bind_listener). An accept error
 * (EMFILE...) pauses the listener for a back-off, logged once per pause.
 * name ("ws", "http") is for the log. NULL on failure (errno set). */
struct evconnlistener *server_listen(const char *addr, const char *name,
				     evconnlistener_cb cb, int *port_out);
/* An accept worked: the next error backs off from the shortest pause. */
void server_listen_ok(struct evconnlistener *l);
/* Stop (1) or go on (0) taking connections; a back-off still applies. */
void server_listen_pause(struct evconnlistener *l, int paused);
/* Drop what server_listen() keeps for l, before l itself is freed. */
void server_listen_forget(struct evconnlistener *l);
/* Answer a socket just accepted with a 503 (text on the WebSocket port,
 * JSON with Retry-After on the HTTP port) without reading its request; the
 * caller closes it. Logged once a second with a count, not per socket. */
void server_refuse_fd(evutil_socket_t fd, enum ip_port port, const char *why);
/* 1 when ip is one of the --trusted-proxy addresses. */
int server_trusted_proxy(const char *ip);
/* The numeric address of sa ("unix" for other families). */
void server_addr_string(const struct sockaddr *sa, char *out, size_t n);

/* ---- conn.c ---- */
void conn_accept(int fd, const struct sockaddr *sa, int salen);
/* Queue a complete frame; cuts slow consumers. */
void conn_send_frame(struct conn *c, struct shbuf *frame);
/* Queue one text frame holding s (n bytes of JSON). */
void conn_send_text(struct conn *c, const char *s, size_t n);
/* Serialize obj (stolen) as a text frame and queue it. */
void conn_send_json(struct conn *c, json_t *obj);
void conn_send_error(struct conn *c, const json_t *ref, const char *code,
		     const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void conn_close(struct conn *c, uint16_t code, const char *reason);
/* The rate limit: one token per text message, ping or pong. 0 go on; -1 refused
 * (answered rate_limited with ref, or closed 1008 for flooding). */
int conn_rate_check(struct conn *c, const json_t *ref);
/* Close c as a slow consumer (1008), counted and logged. */
void conn_cut_slow(struct conn *c, uint64_t buffered);
/* Drop the TCP connection without a close frame. */
void conn_close_now(struct conn *c);
void conn_tick(int64_t now);
/* Write the output queued this loop turn (one writev per connection). */
void conn_flush_all(void);
void conn_reap(void);
uint64_t conn_out_buffered(const struct conn *c);
/* The seq up to which c has been given its messages whole: they left its
 * output buffer for the kernel (a message still buffered has not). Where
 * the user's next inbox starts when c is its last connection. */
int64_t conn_delivered_seq(const struct conn *c);
struct conn *conn_find(uint64_t id);

/* ---- registry.c ---- */
/* Find a record; with create, make it if missing (a new user's inbox
 * cursor is read from the store). A record is freed once nothing needs it
 * (see registry.c), so a created one must be attached or joined at once.
 * Never keep a pointer to either across loop turns. */
struct user *registry_user(const char *uid, int create);
struct room *registry_room(const char *name, int create);
void registry_attach(struct conn *c, const char *uid);
/* Frees c's user when this was its last connection and it is in no room. */
void registry_detach(struct conn *c);
/* 1 added, 0 already a member */
int registry_join(struct user *u, struct room *r, int64_t joined_seq);
/* 1 removed, 0 not a member. Frees r when u was its last member. */
int registry_leave(struct user *u, struct room *r);
/* Records held now (the /metrics gauges). */
size_t registry_nusers(void);
size_t registry_nrooms(void);
int registry_is_member(const struct user *u, const struct room *r);
/* Sockets counted for ip on port (0 when none). */
int registry_ip_count(const char *ip, enum ip_port port);
/* Count one more socket from ip on port; the entry to give back with
 * registry_ip_put(), which frees it once nothing from ip is counted. */
struct ipcount *registry_ip_hold(const char *ip, enum ip_port port);
void registry_ip_put(struct ipcount *ip, enum ip_port port);
void registry_load(void);
void registry_free(void);

/* ---- router.c ---- */
/* Relay a message; the reply comes after commit (ack or HTTP). */
/* data_raw (may be NULL) is data's JSON text as received: stored and
 * framed as is, instead of serializing data again. */
void router_send(struct conn *from, const char *from_uid, const char *to_uid,
		 const char *room, json_t *data, const char *data_raw,
		 size_t data_raw_len, json_t *ref, struct evhttp_request *req);
void router_join(struct conn *c, const char *room, json_t *ref);
void router_leave(struct conn *c, const char *room, json_t *ref);
void router_presence(struct conn *c, const char *room, json_t *ref);
/* Start a replay for c of messages after since (resume) or after the
 * user's inbox cursor (inbox). */
void router_replay_start(struct conn *c, int64_t since, int report,
			 int epoch_ok, json_t *ref);
void router_replay_continue(void);
/* c's output drained while its replay waited for room. */
void router_replay_continue_conn(struct conn *c);
/* Called by the server after the commit (ok = 1) or failure (ok = 0). */
void router_post_commit(int ok);
/* The seq up to which every message for c has been queued on it: its
 * replay position, else every message fanned out so far. */
int64_t router_delivered(const struct conn *c);
/* One retention step (--retention-age, --retention-count, idempotency
 * keys older than 24 h) in the loop turn's transaction. 1 when it deleted
 * something: call again on the next loop turn. */
int router_prune(void);
/* Once a second: delete, a few rows at a time, tokens expired a day ago,
 * token changes already read and inbox cursors nothing needs. */
void router_sweep(void);
/* Deliver frame (seq) to c, holding it while c replays. */
void router_deliver(struct conn *c, int64_t seq, struct shbuf *frame);

/* ---- commands.c ---- */
void commands_handle(struct conn *c, const uint8_t *data, size_t len);

#endif
