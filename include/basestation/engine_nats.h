/*
 * The cluster engine (src/engine/nats.c): the broker on NATS JetStream,
 * --cluster (protocol §7). Built only with libnats (BS_HAVE_NATS).
 */
#ifndef BASESTATION_ENGINE_NATS_H
#define BASESTATION_ENGINE_NATS_H

#include "basestation/settings.h"

#include <stddef.h>

struct engine;
struct event_base;

/* Once, BEFORE the event_base is created (libevent's pthread locking). 0,
 * or -1. */
int engine_nats_init(void);

/* Connect to cfg->cluster, make sure the stream cfg->stream exists, open
 * the replica cfg->db and apply the stream to it until it has caught up
 * (this runs the loop, at most 30 s: call it before anything listens).
 * NULL with err filled when it cannot. */
struct engine *engine_nats_create(struct event_base *base,
				  const struct config *cfg, char *err,
				  size_t errsz);

#endif
