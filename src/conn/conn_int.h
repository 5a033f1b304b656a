/*
 * A WebSocket connection (private to src/conn/): the socket (through its
 * transport), the request head while in the handshake, the frame parser,
 * the output. The broker's half, the session, is embedded: the broker
 * reaches it through the sink in send.c and never sees the rest.
 *
 *   conn.c     accept, reads, frames in, timers, reaping -> upgrade, send
 *   upgrade.c  the handshake and its policy              -> sse, open, send
 *   sse.c      an SSE stream: the same socket and output, events out
 *                                                        -> open, send
 *   open.c     the open state, either kind               -> send
 *   send.c     frames out, back-pressure, the sink, close
 *   state.c    the state below
 */
#ifndef BASESTATION_CONN_INT_H
#define BASESTATION_CONN_INT_H

#include "basestation/auth_hook.h"
#include "basestation/deflate.h"
#include "basestation/settings.h"
#include "basestation/session.h"
#include "basestation/transport.h"
#include "basestation/ws.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stddef.h>
#include <stdint.h>

struct auth_hook;
struct auth_hook_wait;
struct tls_ctx;
struct evbuffer;
struct ipcount;

/* A handshake waiting for --auth-url, then its answer (upgrade.c). */
struct conn_hook {
	struct auth_hook_wait *wait; /* NULL once answered */
	char prefix[9];		     /* of the token asked about */
	enum auth_hook_status status;
	struct auth_identity id;
};

enum conn_state {
	CONN_HANDSHAKE, /* reading the HTTP request head */
	CONN_REFUSING,	/* writing an HTTP refusal, then close */
	CONN_OPEN,
	CONN_CLOSING, /* close frame queued; waiting for the flush */
	CONN_DEAD,    /* queued for destruction */
};

struct conn {
	struct session s;	  /* the broker's half */
	struct conn *next, *prev; /* cs.all */
	struct transport tp;
	short watching;		/* EV_READ, or EV_READ | EV_WRITE */
	unsigned in_flush : 1;	/* on cs.flush */
	unsigned shut : 1;	/* our side half-closed after the close */
	unsigned tp_ready : 1;	/* the transport's handshake is done */
	unsigned slow : 1;	/* cut as a slow consumer: longer linger */
	unsigned reap_wait : 1; /* dead, freed when its writes complete */
	unsigned sent_err : 1;	/* an asynchronous write failed */
	struct event ev;
	struct evbuffer *out; /* pending output; NULL when none */
	/* Submitted to an asynchronous transport (io_uring) and not reported
	 * written yet: its chains (msgbuf references among them) stay put
	 * until the completion drains them. NULL when none. */
	struct evbuffer *sent;
	char *hs; /* request head while in the handshake */
	uint32_t hs_len;
	enum conn_state state;
	struct conn *fnext; /* flush list */
	struct conn *qnext; /* reap list */
	struct ipcount *ip;
	char remote[48];
	int64_t since_ms;  /* wall clock, connected at */
	int64_t last_rx;   /* monotonic ms of the last frame received */
	int64_t msg_since; /* monotonic ms a frame or message still
			      incomplete began; 0 = none */
	int64_t last_ping; /* monotonic ms of the last ping sent */
	int64_t deadline;  /* monotonic ms: handshake or close deadline */
	struct ws_parser parser;
	struct ws_pmd pmd;	/* permessage-deflate as negotiated (2 bytes) */
	struct conn_hook *hook; /* a --auth-url check of the handshake */
	struct sse *sse;	/* an SSE stream (sse.c), not a WebSocket */
};

struct conns {
	const struct config *cfg;
	struct event_base *base;
	struct conn *all;   /* every socket, handshakes too */
	struct conn *flush; /* with output to write this turn */
	struct conn *reap;
	struct event *flush_ev, *reap_ev, *tick_ev;
	event_callback_fn io_cb; /* every connection's event (conn.c) */
	struct auth_hook *hook;	 /* --auth-url, NULL when not set */
	struct tls_ctx *tls;	 /* --tls-cert, NULL: plain sockets */
	int uring;		 /* plain sockets write through io_uring */
	/* The answer of --auth-url for a paused handshake (conn.c). */
	auth_hook_cb hook_answer;
	uint64_t next_id;
	int nconns;   /* open WebSocket connections */
	int nsockets; /* all accepted sockets */
	int sockets_max;
	unsigned stopping : 1;
};

extern struct conns cs;

static inline struct conn *conn_of(struct session *s)
{
	return (struct conn *)((char *)s - offsetof(struct conn, s));
}

/* ---- send.c ---- */
/* The output buffer, created on first use; c joins the flush list. */
struct evbuffer *conn_out(struct conn *c);
/* Write what the transport takes; wait for EV_WRITE when it takes no
 * more. */
void conn_write_out(struct conn *c);
/* Write the output queued this loop turn (one writev per connection). */
void conn_flush_all(void);
uint64_t conn_out_buffered(const struct conn *c);
/* Change what the event waits for. */
void conn_watch(struct conn *c, short what);
/* Ping or pong (counted against --max-outbuf like any output). */
void conn_send_ping_pong(struct conn *c, enum ws_opcode op, const void *p,
			 size_t n);
/* Queue a close frame; the session leaves routing; linger. */
void conn_close(struct conn *c, uint16_t code, const char *reason);
/* c enters the open state, counted (conn_left, below in send.c, counts it
 * out: the count of open connections changes in this file only). */
void conn_entered(struct conn *c);
/* Mark dead; freed by the reap event. */
void conn_kill(struct conn *c);
/* 1 when c cannot be freed yet: writes of it are in flight (they are
 * cancelled; the last completion queues c for the reap again). */
int conn_busy(struct conn *c);
/* The completion of c's asynchronous write (transport_sent_cb). */
void conn_sent(void *arg, size_t written, int err);
/* Forget a --auth-url check: its callback will not run. */
void conn_hook_free(struct conn *c);
/* Free the buffer outgoing messages are compressed in (at exit). */
void conn_deflate_finish(void);
/* 1 when c has more buffered than --max-outbuf allows with adding bytes
 * more: then it was cut as a slow consumer. */
int conn_check_slow(struct conn *c, size_t adding);
/* Count n bytes of one message out in /metrics. */
void conn_count_out(size_t n);
/* The sink the broker delivers through. */
extern const struct session_sink conn_sink;

/* ---- upgrade.c ---- */
/* upgrade_handshake(), beside 0 (more bytes needed) and 1 (done). */
#define HS_PAUSED 2
/* Parse and judge the request head in c->hs. Returns 1 when the
 * connection was upgraded (*head_len = bytes of the head) or refused, 0
 * when more bytes are needed, HS_PAUSED while --auth-url is asked (it runs
 * again on the answer, cs.hook_answer). */
int upgrade_handshake(struct conn *c, size_t *head_len);
/* An HTTP refusal, then close. */
void upgrade_refuse(struct conn *c, int status, const char *why);

/* ---- open.c ---- */
/* The authenticated client enters the open state (either kind). */
void conn_open(struct conn *c, const struct auth_identity *id);

/* ---- sse.c ---- */
/* The path of an SSE stream on the WebSocket port (contract §9). */
#define SSE_PATH "/sse"
/* Judge the stream's rooms and tasks for id: 0, or 403 / 400 with *why.
 * Keeps what it parsed in c->sse. */
int sse_check(struct conn *c, const struct ws_request *req,
	      const struct auth_identity *id, const char **why);
/* Accepted: the response head, the session opened on the SSE sink, its
 * replay (Last-Event-ID, since= or the inbox) and task snapshots. */
void sse_start(struct conn *c, const struct ws_request *req,
	       const struct auth_identity *id, int origin_ok);
/* A comment line, every --heartbeat. */
void sse_heartbeat(struct conn *c);
void sse_free(struct conn *c);

#endif
