/*
 * Counters for GET /metrics (Prometheus text format 0.0.4).
 * One global instance; the loop is single-threaded, so plain integers,
 * except struct metrics_wal, which the checkpoint thread writes.
 */
#ifndef BASESTATION_METRICS_H
#define BASESTATION_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

struct evbuffer;

enum refuse_reason {
	REFUSE_BAD_REQUEST, /* 400 */
	REFUSE_UNAUTHORIZED,
	REFUSE_FORBIDDEN,
	REFUSE_NOT_FOUND,
	REFUSE_VERSION,
	REFUSE_LIMIT,
	REFUSE_TIMEOUT,
	REFUSE_N
};

#define METRICS_COMMIT_BUCKETS 12

enum metrics_ckpt_mode {
	CKPT_PASSIVE,
	CKPT_RESTART,
	CKPT_TRUNCATE,
	CKPT_MODES
};
enum metrics_ckpt_result { CKPT_OK, CKPT_BUSY, CKPT_ERROR, CKPT_RESULTS };

/* WAL checkpoints (src/store/wal.c). Written by the checkpoint thread and
 * the loop's wal hook, read by /metrics: atomics, relaxed order. */
struct metrics_wal {
	_Atomic uint64_t checkpoints[CKPT_MODES][CKPT_RESULTS];
	_Atomic uint64_t checkpoint_us[CKPT_MODES]; /* time spent, by mode */
	_Atomic uint64_t frames_copied;		    /* into the database file */
	_Atomic uint64_t frames; /* in the log after the last commit */
	_Atomic uint64_t bytes;	 /* of the -wal file, at the last pass */
};

struct metrics {
	uint64_t conns_opened;
	uint64_t conns_closed;
	uint64_t refused[REFUSE_N];
	uint64_t msgs_in, msgs_out;   /* WebSocket messages */
	uint64_t bytes_in, bytes_out; /* WebSocket payload+header bytes */
	uint64_t stored;	      /* messages committed */
	uint64_t acks;
	uint64_t drop_slow;	 /* connections closed as slow consumers */
	uint64_t drop_rate;	 /* connections closed for flooding */
	uint64_t rate_limited;	 /* frames answered rate_limited */
	uint64_t retention;	 /* messages removed by retention */
	uint64_t protocol_close; /* connections closed for protocol errors */
	uint64_t idle_close;
	uint64_t errors_sent;
	uint64_t task_updates;
	uint64_t http_requests;
	uint64_t replayed;
	uint64_t deflated; /* outgoing messages compressed (once each) */
	uint64_t inflated; /* compressed messages received */
	uint64_t commits;
	uint64_t commit_bucket[METRICS_COMMIT_BUCKETS]; /* cumulative later */
	double commit_sum;				/* seconds */
	struct metrics_wal wal;
	/* The I/O path of plain TCP connections (net/uring_tp.c sets them):
	 * io_uring's submissions (io_uring_enter calls that submitted),
	 * requests, completions, sends resumed after a short write, sends
	 * not completed yet; refresh() fills them in before a render. */
	struct metrics_io {
		int uring; /* 1: --io uring is on; 0: epoll */
		uint64_t submits, sqes, cqes, partial, inflight;
		void (*refresh)(struct metrics_io *io);
	} io;
	/* cluster mode (engine/nats.c sets them; rendered when on) */
	struct metrics_cluster {
		int on;
		uint64_t applied_seq; /* the replica's last applied seq */
		uint64_t replica_lag; /* stream's last seq - applied_seq */
		uint64_t published, acked, failed;
		uint64_t ack_us_sum; /* publish to PubAck, over acked */
		uint64_t ack_us_max;
		/* the ordered consumer: recreated by the link, and messages
		 * it delivered again (not newer than the last one) */
		uint64_t consumer_restarts, consumer_redelivered;
		/* engine/nats_live.c: other live nodes, uids online on them
		 * (summed over nodes), snaps asked for, refused input */
		uint64_t live_nodes, live_remote_uids;
		uint64_t live_resyncs, live_dropped;
		uint64_t core_dropped; /* core NATS: the loop's queue full */
	} cluster;
};

extern struct metrics metrics;

void metrics_commit_observe(double seconds);

/* Append the exposition text. gauges are passed in by the caller. */
void metrics_render(struct evbuffer *out, uint64_t connections,
		    uint64_t users_online, uint64_t users, uint64_t rooms,
		    uint64_t tasks, uint64_t last_seq);

#endif
