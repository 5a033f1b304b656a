/*
 * The cluster engine (src/engine/nats.c): the broker on NATS JetStream,
 * --cluster (protocol §7). Built only with libnats (BS_HAVE_NATS).
 */
#ifndef BASESTATION_ENGINE_NATS_H
#define BASESTATION_ENGINE_NATS_H

#include "basestation/auth.h"
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

/* The token commands of the CLI on a cluster (servers: a comma list,
 * stream: its name): the token's row, or its revocation, is published to
 * the stream, and these return once JetStream has stored it (every node
 * applies it; a revocation closes the token's sessions there). Run
 * before any event_base of the process. issue: 0 (token in out, expiry
 * in *expires_at); revoke: 0 published, -1 TOKEN cannot be a token;
 * both -2 when JetStream was not reached or did not store it within 5 s,
 * or the stream does not exist (err). */
int engine_nats_token_issue(const char *servers, const char *stream,
			    const char *uid, enum auth_role role, int64_t ttl_s,
			    char *out, size_t outsz, int64_t *expires_at,
			    char *err, size_t errsz);
int engine_nats_token_revoke(const char *servers, const char *stream,
			     const char *token, char *err, size_t errsz);

#endif
