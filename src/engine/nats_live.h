/*
 * The cluster engine's ephemeral side (nats_live.c): node heartbeats and
 * presence across nodes, on core NATS (not the stream) over the engine's
 * JetStream link. Private to src/engine/: nats.c creates it, forwards the
 * engine's presence and nodes operations to it, and destroys it before
 * the link.
 */
#ifndef BASESTATION_ENGINE_NATS_LIVE_H
#define BASESTATION_ENGINE_NATS_LIVE_H

#include "basestation/engine.h"

#include <stdint.h>

struct bsjs;
struct event_base;
struct live;

/* This node's replica figures, asked at each heartbeat. */
typedef void (*live_figures_fn)(void *arg, int64_t *applied_seq, int64_t *lag);

struct live_config {
	struct event_base *base;
	struct bsjs *link;
	/* whose on_presence is fed (read at each change: NULL until the
	 * broker listens, and again once it stopped) */
	struct engine *engine;
	const char *node;   /* --node, unique in the cluster */
	const char *stream; /* --stream: subjects _basestation.<stream>.live */
	const char *instance; /* this process (16 hex digits) */
	live_figures_fn figures;
	void *arg;
};

/* Subscribes and starts the heartbeat (every second). Strings copied. */
struct live *live_create(const struct live_config *c);
/* Stopping: says goodbye (the other nodes drop this one and its users at
 * once instead of after its heartbeats expire: best effort, a core
 * message) and says nothing more. Early, while the loop still runs, so
 * that libnats writes it out. */
void live_stop(struct live *l);
/* live_stop if not yet, unsubscribes, frees. Before bsjs_destroy. */
void live_destroy(struct live *l);
/* uid's sessions on this node: none -> some (1), some -> none (0). */
void live_presence(struct live *l, const char *uid, int online);
/* fn for this node, then for each other live node. */
void live_nodes(struct live *l, engine_node_fn fn, void *arg);

#endif
