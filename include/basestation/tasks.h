/*
 * Tasks and progress: snapshots in SQLite, versions pushed to subscribers.
 */
#ifndef BASESTATION_TASKS_H
#define BASESTATION_TASKS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct post;
struct evhttp_request;

void tasks_load(void);
void tasks_free(void);
size_t tasks_count(void);

/* WebSocket commands. */
void tasks_ws_subscribe(struct conn *c, const char *id, json_t *ref,
			int seed_shape);
void tasks_ws_unsubscribe(struct conn *c, const char *id, json_t *ref);
void tasks_ws_create(struct conn *c, json_t *msg, json_t *ref);
void tasks_ws_update(struct conn *c, json_t *msg, json_t *ref);
void tasks_unsubscribe_all(struct conn *c);

/* HTTP: reply to req after the commit (or at once on error). */
void tasks_http_create(struct evhttp_request *req, json_t *body);
void tasks_http_get(struct evhttp_request *req, const char *id);
void tasks_http_progress(struct evhttp_request *req, const char *id,
			 json_t *body);

/* After the commit: push the version to subscribers, answer the caller. */
void tasks_post_commit(struct post *p, int ok);
/* Remove finished tasks older than the retention, a few at a time. */
void tasks_prune(int64_t now);

/* In-process producers (the demo): no reply. 0 ok, -1 refused. */
int tasks_local_create(json_t *body);
int tasks_local_update(const char *id, json_t *body);
int tasks_exists(const char *id);

#endif
