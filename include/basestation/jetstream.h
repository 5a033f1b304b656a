/*
 * JetStream link: one libnats connection to a NATS cluster, bridged to the
 * broker's libevent loop. It is the groundwork of the cluster engine
 * (engine/nats.c): that file maps engine events to stream messages; this
 * one knows nothing of the broker and hands out no libnats or SQLite type.
 *
 * What it does:
 *   - connects to a server list and reconnects forever with a capped
 *     backoff (100 ms doubling to 2 s, with jitter); state changes are
 *     reported on the loop;
 *   - makes sure the stream exists (subjects "<stream>.>", file storage,
 *     replicas, max_age / max_msgs, duplicate window) and reads its epoch:
 *     a random id written into the stream's description when the link
 *     creates it (nats-server 2.9 has no stream metadata; a message on a
 *     subject would be deleted by max_age/max_msgs, the description is
 *     not). A stream deleted and made again has a new epoch;
 *   - publishes asynchronously with an optional Nats-Msg-Id and an optional
 *     Nats-Expected-Last-Subject-Sequence, retries what is safe to retry
 *     until a deadline, and completes each publish once, on the loop;
 *   - runs one ordered consumer over the whole stream from a given seq and
 *     hands its messages to the loop in batches, in stream order;
 *   - reads the stream's state (first/last seq: a replica whose last applied
 *     seq + 1 is below first_seq has fallen behind retention);
 *   - core NATS publish/subscribe for ephemeral subjects (heartbeats,
 *     presence), messages delivered on the loop.
 *
 * Threads. "The loop" is the thread that runs the event_base given to
 * bsjs_create. Every function here is called on the loop, and every
 * callback runs on the loop. libnats calls back on threads of its own;
 * those callbacks only append to one mutex-protected queue and
 * event_active() the loop. Nothing here blocks the loop: publishes and
 * subscriptions are handed to a sender thread (libnats holds its
 * connection lock while it reconnects, up to the connect timeout), and the
 * JetStream API requests (stream lookup and creation, stream info, ordered
 * consumer creation) run on an admin thread. The libnats socket is read
 * and written by libnats's own reader and flusher threads, not the loop: an
 * event-loop adapter puts libnats's reconnect thread and the loop on one
 * socket and one lock (the stock libevent adapter deadlocked them on a
 * reconnect; the link's own lost its read events after a failover, once
 * in many runs), and it made the loop parse the NATS protocol.
 *
 * Callbacks must not call bsjs_destroy. Every other function may be called
 * from a callback.
 */
#ifndef BASESTATION_CLUSTER_JETSTREAM_H
#define BASESTATION_CLUSTER_JETSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bsjs;
struct bsjs_sub;

/* Once per process, BEFORE the event_base is created: switches libevent
 * to pthread locking (evthread_use_pthreads) so that other threads may wake
 * the loop, and opens libnats. 0, or -1 when either fails. */
int bsjs_global_init(void);
/* Once, after every link is destroyed: waits (at most 5 s) for libnats's
 * threads to end and frees what they could still have touched. */
void bsjs_global_finish(void);

/* Outcome of a publish or a request. Whether the message may be in the
 * stream matters to the caller (spec: `unavailable` means "maybe
 * stored", and a resend with the same Msg-Id is stored once). */
enum bsjs_status {
	BSJS_OK = 0,
	BSJS_ETIMEOUT,	/* no answer before the deadline: maybe stored */
	BSJS_EUNAVAIL,	/* JetStream not reached until the deadline: not
			   stored */
	BSJS_EWRONGSEQ, /* Expected-Last-Subject-Sequence did not hold: not
			   stored (js_code 10071) */
	BSJS_EREJECTED, /* JetStream refused it (text says why): not stored */
	BSJS_ECLOSED,	/* the link was destroyed first: maybe stored */
};
/* "ok", "timeout", "unavailable", "wrong_last_sequence", "rejected",
 * "closed". */
const char *bsjs_status_name(int status);

enum bsjs_conn_state {
	BSJS_CONNECTING,   /* no server reached yet */
	BSJS_CONNECTED,	   /* a server answers (JetStream may still not) */
	BSJS_DISCONNECTED, /* lost it; reconnecting */
	BSJS_CLOSED,	   /* bsjs_destroy ran (never reported) */
};

struct bsjs_stream_info {
	char epoch[33];	    /* 32 hex digits */
	char leader[64];    /* the stream leader's server name, "" if none */
	uint64_t first_seq; /* 0 or last_seq + 1 when the stream is empty */
	uint64_t last_seq;
	uint64_t msgs;
	int replicas;
	int64_t max_age_ms; /* 0: no limit */
	int64_t max_msgs;   /* 0: no limit */
	bool created;	    /* READY only: this link created the stream */
};

enum bsjs_event_type {
	/* state changed; url is the server now connected to (CONNECTED) */
	BSJS_EV_STATE,
	/* the stream exists and its epoch is known (once per link). Publishes
	 * wait for this; bsjs_consume and bsjs_stream_info too. */
	BSJS_EV_READY,
	/* the stream exists but cannot be used: its subjects do not include
	 * "<stream>.>", or it has no epoch in its description (it was not
	 * made by a link), or JetStream refuses the config. Nothing more is
	 * tried; publishes fail at their deadline. */
	BSJS_EV_FATAL,
	/* something worth a log line: a retried stream or consumer setup, a
	 * libnats async error (missed heartbeats, slow consumer). */
	BSJS_EV_WARN,
};

struct bsjs_event {
	enum bsjs_event_type type;
	enum bsjs_conn_state state;	       /* STATE */
	const char *url;		       /* STATE: CONNECTED, else NULL */
	const struct bsjs_stream_info *stream; /* READY */
	const char *text;		       /* FATAL, WARN; NULL otherwise */
};

struct bsjs_config {
	const char *const *servers; /* "nats://host:port", at least one */
	int nservers;
	bool no_randomize;  /* try servers in the given order (tests) */
	const char *name;   /* connection name shown by nats-server, or NULL */
	const char *stream; /* stream name; its subjects are "<stream>.>" */
	/* A stream that does not exist is BSJS_EV_FATAL instead of made (a
	 * one-shot client must not make it with its own limits). */
	bool no_create;
	/* Used only when the link creates the stream: */
	int replicas;		     /* 1..5 */
	int64_t max_age_ms;	     /* 0: no limit */
	int64_t max_msgs;	     /* 0: no limit */
	int64_t duplicate_window_ms; /* 0: JetStream's default (2 min) */
	/* Publishing: */
	int publish_timeout_ms; /* whole deadline of a publish; 0: 5000 */
	int attempt_timeout_ms; /* wait for one PubAck; 0: 2000 */
	int max_inflight; /* publishes handed to libnats at once; 0: 4096 */
	/* Consumer messages queued for the loop before libnats's delivery
	 * thread waits (so that JetStream's flow control holds the server
	 * back instead of memory growing); 0: 8192. */
	int consumer_max_pending;
	/* Called on the loop for every event; may be NULL. */
	void (*on_event)(void *arg, const struct bsjs_event *ev);
	void *arg;
};

/* Creates the link; returns at once (before or after the loop started).
 * The sender thread makes the first connection attempt (libnats's is
 * synchronous: up to the connect timeout, 2 s, per unreachable server),
 * then libnats retries in the background; the admin thread then looks the
 * stream up or creates it: BSJS_EV_STATE and BSJS_EV_READY say how far it
 * got (BSJS_EV_FATAL if libnats refuses the server list). The config's
 * strings are copied. NULL on a bad config or when libnats or libevent
 * cannot allocate (err says why). */
struct bsjs *bsjs_create(struct event_base *base, const struct bsjs_config *cfg,
			 char *err, size_t errsz);
/* Closes the connection, joins the link's threads and frees it. Every
 * publish not yet completed completes with BSJS_ECLOSED, every pending
 * stream-info request with BSJS_ECLOSED, before this returns. Subscriptions
 * (bsjs_subscribe) must not be used afterwards. Blocks the loop while the
 * threads finish what they are in: about 1 s at most (libnats flushes what
 * is buffered), or a first connection attempt still under way. Not from a
 * callback. */
void bsjs_destroy(struct bsjs *l);

enum bsjs_conn_state bsjs_state(const struct bsjs *l);
/* The stream's epoch once READY, else NULL. */
const char *bsjs_epoch(const struct bsjs *l);

/* ---- publishing into the stream ---- */

struct bsjs_pub {
	const char *subject; /* "<stream>.something" */
	const void *data;
	size_t len;
	/* Nats-Msg-Id, or NULL. JetStream drops a second message with the
	 * same id within the duplicate window and answers the first one's
	 * seq with duplicate set. A publish that timed out is retried only
	 * when it has an id (a retry could otherwise store it twice). */
	const char *msg_id;
	/* Nats-Expected-Last-Subject-Sequence: -1 no check; 0 the subject
	 * has no message yet; N its last message has seq N.
	 * nats-server 2.9 (clustered) checks this BEFORE the Msg-Id: the
	 * resend of a stored message with the same expectation answers
	 * BSJS_EWRONGSEQ, not a duplicate (tests/cluster, "expect"). So an
	 * EWRONGSEQ with attempts > 1 may be this publish's own earlier
	 * attempt: the caller looks its Msg-Id up in what it has applied. */
	int64_t expect_last_subject_seq;
};

struct bsjs_ack {
	int status;	  /* enum bsjs_status */
	uint64_t seq;	  /* BSJS_OK: the stream sequence */
	bool duplicate;	  /* BSJS_OK: the Msg-Id was already stored at seq */
	int js_code;	  /* JetStream's error code, 0 if none */
	const char *text; /* why, never NULL (valid during the callback) */
	int attempts;	  /* times handed to JetStream */
};

typedef void (*bsjs_ack_cb)(void *arg, const struct bsjs_ack *ack);

/* Publishes one message asynchronously. The subject, data and id are
 * copied. cb runs exactly once, on the loop, never inside this call:
 *   BSJS_OK        with the PubAck's seq (and duplicate);
 *   BSJS_EWRONGSEQ / BSJS_EREJECTED as JetStream answered (not retried);
 *   BSJS_ETIMEOUT  / BSJS_EUNAVAIL when the deadline (publish_timeout_ms
 *                  from this call) passed first. Until then, no-responders
 *                  and "JetStream temporarily unavailable" answers,
 *                  a full reconnect buffer and (with a msg_id) PubAck
 *                  timeouts are retried with a backoff (100 ms doubling
 *                  to 1 s); a leader election (4-9 s on 2.9) is waited out
 *                  when the deadline allows;
 *   BSJS_ECLOSED   from bsjs_destroy.
 * Publishes wait in the link until the stream is READY and while
 * max_inflight are in flight. Returns 0, or -1 (cb not called) when the
 * subject is empty or the data is larger than INT_MAX. */
int bsjs_publish(struct bsjs *l, const struct bsjs_pub *p, bsjs_ack_cb cb,
		 void *arg);

/* ---- the ordered consumer ---- */

struct bsjs_msg {
	uint64_t seq;	     /* stream sequence */
	int64_t time_ns;     /* when the stream stored it (Unix, ns) */
	const char *subject; /* NUL-terminated */
	const void *data;
	size_t len;
};

/* n >= 1 messages, seqs strictly increasing within and across batches of
 * one consumer; valid during the callback only. Seqs may skip (messages
 * removed by max_age/max_msgs); compare the first one with the start. */
typedef void (*bsjs_batch_cb)(void *arg, const struct bsjs_msg *msgs, size_t n);

/* Starts the link's one ordered consumer over the whole stream at
 * start_seq (1 or 0: from the first message kept). Created on the admin
 * thread once READY, retried with a backoff while JetStream refuses;
 * libnats recreates it from the last received seq + 1 when it misses
 * heartbeats or sees a gap; the link does (from the last delivered seq + 1)
 * when libnats reports the subscription as a slow consumer (it would have
 * dropped messages), and when it delivered nothing for 3-6 s while the
 * stream has newer messages (a watchdog: one stream-info request per 3 s
 * without progress, once the consumer was created: a create that fails is
 * retried as said above). Each create waits up to 6 s for JetStream. A
 * consumer the link replaces is not deleted (JetStream removes an ephemeral
 * consumer without interest by itself).
 * Returns -1 if a consumer is already running. */
int bsjs_consume(struct bsjs *l, uint64_t start_seq, bsjs_batch_cb cb,
		 void *arg);
/* Stops it: no batch is delivered after this returns. The JetStream
 * consumer is deleted on the admin thread. A no-op without a consumer. */
void bsjs_consume_stop(struct bsjs *l);

/* ---- the stream's state ---- */

typedef void (*bsjs_info_cb)(void *arg, int status,
			     const struct bsjs_stream_info *si);
/* Asks JetStream for the stream's state (on the admin thread, after
 * READY). cb runs once on the loop: BSJS_OK with si, or BSJS_EUNAVAIL /
 * BSJS_EREJECTED (si NULL) when JetStream does not answer within 3 s or
 * the stream is gone, BSJS_ECLOSED from bsjs_destroy. 0, or -1 when out
 * of memory (cb not called). */
int bsjs_stream_info(struct bsjs *l, bsjs_info_cb cb, void *arg);

/* ---- core NATS (ephemeral, not stored) ---- */

typedef void (*bsjs_core_cb)(void *arg, const char *subject, const void *data,
			     size_t len);

/* Subscribes to a subject (wildcards allowed); messages arrive on the loop
 * in the order the server sent them. Lost while disconnected; resubscribed
 * after a reconnect; dropped (bsjs_stats.core_dropped) while 16384 of the
 * link's core messages wait for the loop. NULL on a bad subject. */
struct bsjs_sub *bsjs_subscribe(struct bsjs *l, const char *subject,
				bsjs_core_cb cb, void *arg);
/* No callback for s after this returns; frees s (later, once libnats has
 * let go of it). */
void bsjs_unsubscribe(struct bsjs_sub *s);
/* Fire and forget (buffered while reconnecting, up to libnats's 8 MiB
 * reconnect buffer). 0, or -1 on a bad subject or oversized data. */
int bsjs_core_publish(struct bsjs *l, const char *subject, const void *data,
		      size_t len);

/* ---- figures for /metrics ---- */

struct bsjs_stats {
	uint64_t published; /* bsjs_publish calls */
	uint64_t acked;	    /* completed BSJS_OK (duplicates included) */
	uint64_t duplicates;
	uint64_t retries;	     /* attempts after the first */
	uint64_t failed;	     /* completed with an error */
	uint64_t ack_latency_us_sum; /* over `acked`, call to callback */
	uint64_t ack_latency_us_max;
	uint64_t consumed;	    /* consumer messages delivered */
	uint64_t consumer_dropped;  /* not newer than the last delivered */
	uint64_t consumer_restarts; /* by the link (slow consumer, stalled) */
	uint64_t consumer_waits; /* delivery thread held back (flow control) */
	uint64_t core_dropped;	 /* core messages dropped: queue full */
	uint64_t inflight;	 /* publishes in libnats now */
	uint64_t waiting;	 /* publishes waiting in the link now */
};
void bsjs_get_stats(const struct bsjs *l, struct bsjs_stats *st);

#endif
