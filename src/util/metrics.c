/* Prometheus exposition of the global counters. */
#include "basestation/metrics.h"

#include <event2/buffer.h>
#include <inttypes.h>

struct metrics metrics;

static const double commit_le[METRICS_COMMIT_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
	0.01,	0.025,	 0.05,	 0.1,	0.25,	1.0};

void metrics_commit_observe(double seconds)
{
	metrics.commits++;
	metrics.commit_sum += seconds;
	for (int i = 0; i < METRICS_COMMIT_BUCKETS; i++)
		if (seconds <= commit_le[i]) {
			metrics.commit_bucket[i]++;
			break;
		}
}

static void counter(struct evbuffer *o, const char *name, const char *help,
		    uint64_t v)
{
	evbuffer_add_printf(o,
			    "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n",
			    name, help, name, name, v);
}

static void gauge(struct evbuffer *o, const char *name, const char *help,
		  uint64_t v)
{
	evbuffer_add_printf(o,
			    "# HELP %s %s\n# TYPE %s gauge\n%s %" PRIu64 "\n",
			    name, help, name, name, v);
}

static void render_cluster(struct evbuffer *o, const struct metrics_cluster *c)
{
	gauge(o, "basestation_replica_applied_seq",
	      "The replica's last applied stream seq.", c->applied_seq);
	gauge(o, "basestation_replica_lag",
	      "Stream messages not yet applied to this node's replica.",
	      c->replica_lag);
	counter(o, "basestation_cluster_publishes_total",
		"Events published to the stream.", c->published);
	counter(o, "basestation_cluster_publish_failures_total",
		"Publishes not acked by JetStream in time.", c->failed);
	evbuffer_add_printf(o,
			    "# HELP basestation_cluster_publish_ack_seconds "
			    "Publish to PubAck.\n"
			    "# TYPE basestation_cluster_publish_ack_seconds "
			    "summary\n"
			    "basestation_cluster_publish_ack_seconds_sum %.6f\n"
			    "basestation_cluster_publish_ack_seconds_count "
			    "%" PRIu64 "\n",
			    (double)c->ack_us_sum / 1e6, c->acked);
	gauge(o, "basestation_cluster_publish_ack_max_microseconds",
	      "Longest publish to PubAck since the start.", c->ack_us_max);
	counter(o, "basestation_cluster_consumer_restarts_total",
		"Ordered consumer recreated (stalled or slow).",
		c->consumer_restarts);
	counter(o, "basestation_cluster_consumer_redelivered_total",
		"Stream messages the consumer delivered again (skipped).",
		c->consumer_redelivered);
	gauge(o, "basestation_cluster_nodes",
	      "Other nodes heard from (heartbeats).", c->live_nodes);
	gauge(o, "basestation_cluster_remote_online",
	      "Users online on other nodes, summed over the nodes.",
	      c->live_remote_uids);
	counter(o, "basestation_cluster_presence_resyncs_total",
		"Presence snapshots asked of other nodes (a change missed).",
		c->live_resyncs);
	counter(o, "basestation_cluster_live_dropped_total",
		"Heartbeat and presence input refused (bounds, bad ids).",
		c->live_dropped);
	counter(o, "basestation_cluster_core_dropped_total",
		"Core NATS messages dropped: too many waiting for the loop.",
		c->core_dropped);
}

static void render_wal(struct evbuffer *o, const struct metrics_wal *w)
{
	static const char *modes[CKPT_MODES] = {"passive", "restart",
						"truncate"};
	static const char *results[CKPT_RESULTS] = {"ok", "busy", "error"};
	const memory_order rx = memory_order_relaxed;

	evbuffer_add_printf(o, "# HELP basestation_wal_checkpoints_total WAL "
			       "checkpoints run, by mode and result.\n"
			       "# TYPE basestation_wal_checkpoints_total "
			       "counter\n");
	for (int i = 0; i < CKPT_MODES; i++)
		for (int k = 0; k < CKPT_RESULTS; k++)
			evbuffer_add_printf(
				o,
				"basestation_wal_checkpoints_total{mode=\"%s\","
				"result=\"%s\"} %" PRIu64 "\n",
				modes[i], results[k],
				atomic_load_explicit(&w->checkpoints[i][k],
						     rx));
	evbuffer_add_printf(o,
			    "# HELP basestation_wal_checkpoint_seconds_total "
			    "Time spent in WAL checkpoints, by mode.\n"
			    "# TYPE basestation_wal_checkpoint_seconds_total "
			    "counter\n");
	for (int i = 0; i < CKPT_MODES; i++)
		evbuffer_add_printf(
			o,
			"basestation_wal_checkpoint_seconds_total{mode=\"%s\"} "
			"%.6f\n",
			modes[i],
			(double)atomic_load_explicit(&w->checkpoint_us[i], rx) /
				1e6);
	counter(o, "basestation_wal_checkpointed_frames_total",
		"WAL frames (pages) copied into the database file.",
		atomic_load_explicit(&w->frames_copied, rx));
	gauge(o, "basestation_wal_frames",
	      "Frames in the WAL after the last commit.",
	      atomic_load_explicit(&w->frames, rx));
	gauge(o, "basestation_wal_bytes",
	      "Size of the -wal file at the last checkpoint pass.",
	      atomic_load_explicit(&w->bytes, rx));
}

static void render_io(struct evbuffer *o, struct metrics_io *io)
{
	evbuffer_add_printf(o,
			    "# HELP basestation_io_path The I/O path of plain "
			    "TCP connections (--io).\n"
			    "# TYPE basestation_io_path gauge\n"
			    "basestation_io_path{io=\"%s\"} 1\n",
			    io->uring ? "uring" : "epoll");
	if (!io->uring)
		return;
	if (io->refresh)
		io->refresh(io);
	counter(o, "basestation_io_uring_submits_total",
		"io_uring_enter calls that submitted requests.", io->submits);
	counter(o, "basestation_io_uring_sqes_total",
		"Requests (sends) submitted to io_uring.", io->sqes);
	counter(o, "basestation_io_uring_cqes_total",
		"io_uring completions reaped.", io->cqes);
	counter(o, "basestation_io_uring_partial_total",
		"io_uring sends resumed after a short completion.",
		io->partial);
	gauge(o, "basestation_io_uring_inflight",
	      "Sends queued or in the kernel, not completed yet.",
	      io->inflight);
}

void metrics_render(struct evbuffer *o, uint64_t connections,
		    uint64_t users_online, uint64_t users, uint64_t rooms,
		    uint64_t tasks, uint64_t last_seq)
{
	static const char *reasons[REFUSE_N] = {
		"bad_request", "unauthorized", "forbidden", "not_found",
		"version",     "limit",	       "timeout"};
	static const int statuses[REFUSE_N] = {400, 401, 403, 404, 426, 503, 0};
	const struct metrics *m = &metrics;
	uint64_t cum = 0;

	gauge(o, "basestation_connections", "Open WebSocket connections.",
	      connections);
	gauge(o, "basestation_users_online",
	      "Users with at least one connection.", users_online);
	gauge(o, "basestation_users",
	      "Users held in memory: connected or a member of a room.", users);
	gauge(o, "basestation_rooms", "Rooms with at least one member.", rooms);
	gauge(o, "basestation_tasks", "Tasks stored.", tasks);
	gauge(o, "basestation_last_seq", "Newest message sequence number.",
	      last_seq);
	counter(o, "basestation_connections_opened_total",
		"WebSocket connections accepted.", m->conns_opened);
	counter(o, "basestation_connections_closed_total",
		"WebSocket connections closed.", m->conns_closed);
	evbuffer_add_printf(o, "# HELP basestation_connections_refused_total "
			       "Upgrades refused, by reason and HTTP status.\n"
			       "# TYPE basestation_connections_refused_total "
			       "counter\n");
	for (int i = 0; i < REFUSE_N; i++)
		evbuffer_add_printf(o,
				    "basestation_connections_refused_total{"
				    "reason=\"%s\",status=\"%d\"} %" PRIu64
				    "\n",
				    reasons[i], statuses[i], m->refused[i]);
	counter(o, "basestation_messages_in_total",
		"WebSocket messages received.", m->msgs_in);
	counter(o, "basestation_messages_out_total", "WebSocket messages sent.",
		m->msgs_out);
	counter(o, "basestation_bytes_in_total", "WebSocket bytes received.",
		m->bytes_in);
	counter(o, "basestation_bytes_out_total",
		"WebSocket bytes queued to "
		"send.",
		m->bytes_out);
	counter(o, "basestation_messages_stored_total",
		"Messages committed to the store.", m->stored);
	counter(o, "basestation_acks_total", "Acks sent after commit.",
		m->acks);
	counter(o, "basestation_replayed_total",
		"Messages sent from the store on resume or inbox.",
		m->replayed);
	evbuffer_add_printf(o,
			    "# HELP basestation_drops_total Connections or "
			    "messages dropped, by reason.\n"
			    "# TYPE basestation_drops_total counter\n"
			    "basestation_drops_total{reason=\"slow_consumer\"} "
			    "%" PRIu64 "\n"
			    "basestation_drops_total{reason=\"rate_limit\"} "
			    "%" PRIu64 "\n"
			    "basestation_drops_total{reason=\"retention\"} "
			    "%" PRIu64 "\n"
			    "basestation_drops_total{reason=\"idle\"} "
			    "%" PRIu64 "\n"
			    "basestation_drops_total{reason=\"protocol\"} "
			    "%" PRIu64 "\n",
			    m->drop_slow, m->drop_rate, m->retention,
			    m->idle_close, m->protocol_close);
	counter(o, "basestation_deflate_messages_total",
		"Outgoing messages compressed (once per message, for all its "
		"recipients).",
		m->deflated);
	counter(o, "basestation_inflate_messages_total",
		"Compressed messages received.", m->inflated);
	counter(o, "basestation_rate_limited_total",
		"Frames answered with rate_limited.", m->rate_limited);
	counter(o, "basestation_errors_sent_total", "Error frames sent.",
		m->errors_sent);
	counter(o, "basestation_task_updates_total", "Task changes stored.",
		m->task_updates);
	counter(o, "basestation_http_requests_total", "HTTP requests served.",
		m->http_requests);
	evbuffer_add_printf(o,
			    "# HELP basestation_db_commit_seconds Time to "
			    "commit one group of writes.\n"
			    "# TYPE basestation_db_commit_seconds histogram\n");
	for (int i = 0; i < METRICS_COMMIT_BUCKETS; i++) {
		cum += m->commit_bucket[i];
		evbuffer_add_printf(
			o,
			"basestation_db_commit_seconds_bucket{le=\"%g\"}"
			" %" PRIu64 "\n",
			commit_le[i], cum);
	}
	evbuffer_add_printf(o,
			    "basestation_db_commit_seconds_bucket{le=\"+Inf\"} "
			    "%" PRIu64 "\n"
			    "basestation_db_commit_seconds_sum %.6f\n"
			    "basestation_db_commit_seconds_count %" PRIu64 "\n",
			    m->commits, m->commit_sum, m->commits);
	render_wal(o, &m->wal);
	render_io(o, &metrics.io);
	if (m->cluster.on)
		render_cluster(o, &m->cluster);
}
