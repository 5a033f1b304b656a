/*
 * /admin/connections (the live pool map), /admin/nodes (the broker's
 * nodes) and /admin/sql (read-only).
 *
 * A query may run up to its time limit and its result may be megabytes,
 * so /admin/sql runs each one on a worker thread, which also encodes the
 * result (inspect_query_text), and the loop keeps serving meanwhile. A job
 * owns copies of its SQL, parameters and database path; the worker touches
 * nothing else (no libevent, no log, no broker state) and hands the job
 * back through a pipe with the finished text, which the loop thread sends
 * by reference. A timer answers a job whose worker overruns its limit.
 */
#include "bs_config.h"
#include "basestation/broker.h"
#include "basestation/conn.h"
#include "basestation/engine.h"
#include "basestation/http.h"
#include "basestation/inspect.h"
#include "basestation/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Queries running at once; more answer 503. */
#define SQL_MAX_JOBS 4
/* A query's time limit, and when the loop answers whatever its worker is
 * doing (the contract allows 1.5x). */
#define SQL_TIME_MS   2000
#define SQL_ANSWER_MS (SQL_TIME_MS * 5 / 4)

static struct event_base *base;
static const struct config *cfg;
static struct engine *engine;
static int64_t started_ms; /* this node's start, for /admin/nodes */

void admin_init(struct event_base *b, const struct config *c, struct engine *e)
{
	base = b;
	cfg = c;
	engine = e;
	started_ms = now_ms();
}

static void one_node(void *arg, const struct engine_node *n)
{
	json_array_append_new(
		arg,
		json_pack("{s:s, s:I, s:I, s:I, s:s, s:I, s:I}", "node",
			  n->node, "connections", (json_int_t)n->connections,
			  "applied_seq", (json_int_t)n->applied_seq, "lag",
			  (json_int_t)n->lag, "version", n->version, "since",
			  (json_int_t)n->since_ms, "age_ms",
			  (json_int_t)n->age_ms));
}

/* Protocol §7. One node describes itself: what it has applied is all
 * there is (lag 0). */
void admin_nodes(struct evhttp_request *req)
{
	json_t *list = json_array();

	if (!engine_nodes(engine, one_node, list)) {
		struct engine_node self = {
			.node = cfg->node,
			.version = BS_VERSION,
			.since_ms = started_ms,
			.connections = conns_open(),
			.applied_seq = broker_committed(),
		};
		one_node(list, &self);
	}
	http_reply_json(req, 200, json_pack("{s:o}", "nodes", list));
}

static void one_connection(void *arg, const struct conn_info *i)
{
	const struct session *s = i->s;
	json_t *rooms = json_array();

	for (int k = 0; k < broker_session_nrooms(s); k++)
		json_array_append_new(rooms,
				      json_string(broker_session_room(s, k)));
	json_array_append_new(
		arg, json_pack("{s:I, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:i}",
			       "conn", (json_int_t)s->id, "uid", broker_uid(s),
			       "role", auth_role_name(s->role), "remote",
			       i->remote, "since", (json_int_t)i->since_ms,
			       "rooms", rooms, "out_buffered",
			       (json_int_t)i->out_buffered, "last_seq",
			       (json_int_t)s->last_seq, "tasks", s->nsubs));
}

void admin_connections(struct evhttp_request *req)
{
	json_t *list = json_array();

	conns_each(one_connection, list);
	http_reply_json(req, 200,
			json_pack("{s:o, s:i}", "connections", list, "count",
				  conns_open()));
}

struct sql_job {
	pthread_t thread;
	struct evhttp_request *req; /* NULL once answered */
	struct event *timer;	    /* answers when the worker overruns */
	int64_t answer_by;	    /* mono_ms() of that */
	char *db, *sql;
	json_t *params; /* a deep copy: shares nothing with the loop */
	struct inspect_limits lim;
	/* set by the worker: the finished JSON text, or NULL and err */
	char *body;
	size_t len;
	int status;
	char err[512];
	struct sql_job *next;
};

static struct {
	int fd[2];	      /* worker -> loop: finished jobs (pointers) */
	struct event *ev;     /* read end, on the loop */
	struct sql_job *jobs; /* running */
	int njobs;
	int abandoned; /* workers left running at stop (see admin_sql_stop) */
} pool = {{-1, -1}, NULL, NULL, 0, 0};

static void job_free(struct sql_job *j)
{
	if (j->timer)
		event_free(j->timer);
	free(j->db);
	free(j->sql);
	json_decref(j->params);
	free(j->body);
	free(j);
}

/* The worker runs the query and encodes its result: the loop only ever
 * sees a finished buffer. */
static void *sql_worker(void *arg)
{
	struct sql_job *j = arg;
	ssize_t n;

	j->body = inspect_query_text(j->db, j->sql, j->params, &j->lim, &j->len,
				     &j->status, j->err, sizeof(j->err));
	/* A pointer is less than PIPE_BUF: written whole or not at all; the
	 * write end blocks, and at most SQL_MAX_JOBS are ever in the pipe. */
	do
		n = write(pool.fd[1], &j, sizeof(j));
	while (n < 0 && errno == EINTR);
	return NULL;
}

/* Unlink j from the running list. */
static void job_unlink(struct sql_job *j)
{
	struct sql_job **pp;

	for (pp = &pool.jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			pool.njobs--;
			break;
		}
}

static void free_body(const void *data, size_t len, void *arg)
{
	(void)len;
	(void)arg;
	free((void *)data);
}

/* Answer the request of a job, once. evhttp_send_reply also copes with a
 * request whose client went away meanwhile (libevent detached it and
 * frees it with the reply). The body is handed over, not copied. */
static void job_reply(struct sql_job *j)
{
	struct evbuffer *b;

	if (j->req == NULL)
		return;
	if (j->body == NULL) {
		log_info("admin.sql", "status=%d refused=%s", j->status,
			 log_val(j->err));
		http_error(j->req, j->status, j->err);
	} else if ((b = evbuffer_new()) == NULL ||
		   evbuffer_add_reference(b, j->body, j->len, free_body, NULL) <
			   0) {
		evbuffer_free(b);
		http_error(j->req, 500, "out of memory");
	} else {
		j->body = NULL; /* b owns it */
		http_send_json(j->req, 200, b);
		evbuffer_free(b);
	}
	j->req = NULL;
}

/* The time limit passed by a quarter and the worker is still inside one
 * call SQLite cannot interrupt: answer now; the worker finishes (and still
 * counts against SQL_MAX_JOBS) on its own. */
static void job_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sql_job *j = arg;
	char msg[64];

	(void)fd;
	(void)what;
	if (j->req == NULL)
		return;
	/* j->body, status and err are the worker's until it hands j back:
	 * the answer is made here, from nothing it writes */
	log_warn("admin.sql", "overran=%dms", j->lim.time_ms);
	snprintf(msg, sizeof(msg), "interrupted: time limit %d ms",
		 j->lim.time_ms);
	http_error(j->req, 400, msg);
	j->req = NULL;
}

static void sql_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sql_job *j;

	(void)what;
	(void)arg;
	while (read(fd, &j, sizeof(j)) == (ssize_t)sizeof(j)) {
		job_unlink(j);
		pthread_join(j->thread, NULL); /* it has written: it ends */
		job_reply(j);
		job_free(j);
	}
}

static int pool_init(void)
{
	if (pool.ev)
		return 0;
	if (pipe2(pool.fd, O_CLOEXEC) < 0)
		return -1;
	if (evutil_make_socket_nonblocking(pool.fd[0]) < 0 ||
	    (pool.ev = event_new(base, pool.fd[0], EV_READ | EV_PERSIST,
				 sql_done_cb, NULL)) == NULL ||
	    event_add(pool.ev, NULL) < 0) {
		admin_sql_stop();
		return -1;
	}
	return 0;
}

/* Wait for j's worker until j->answer_by. 0 joined, -1 still running. */
static int job_join_by(struct sql_job *j)
{
	struct timespec ts;
	int64_t left = j->answer_by - mono_ms();

	clock_gettime(CLOCK_REALTIME, &ts);
	if (left > 0) {
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
	}
	return pthread_timedjoin_np(j->thread, NULL, &ts) == 0 ? 0 : -1;
}

void admin_sql_stop(void)
{
	struct sql_job *j;

	/* Each worker ends within its time limit, with its answer; one stuck
	 * in a call SQLite cannot interrupt is left to the exit, with its
	 * job and the pipe it will write to. */
	while ((j = pool.jobs) != NULL) {
		job_unlink(j);
		if (job_join_by(j) < 0) {
			job_timeout_cb(-1, 0, j);
			event_free(j->timer);
			j->timer = NULL;
			pool.abandoned++;
			continue;
		}
		job_reply(j);
		job_free(j);
	}
	if (pool.abandoned > 0) {
		log_warn("admin.sql", "abandoned=%d", pool.abandoned);
		return;
	}
	if (pool.fd[0] >= 0) { /* drain: every job was answered above */
		while (read(pool.fd[0], &j, sizeof(j)) == (ssize_t)sizeof(j))
			;
	}
	if (pool.ev)
		event_free(pool.ev);
	pool.ev = NULL;
	for (int i = 0; i < 2; i++) {
		if (pool.fd[i] >= 0)
			close(pool.fd[i]);
		pool.fd[i] = -1;
	}
}

void admin_sql(struct evhttp_request *req)
{
	static const struct timeval answer_in = {.tv_sec = SQL_ANSWER_MS / 1000,
						 .tv_usec = SQL_ANSWER_MS %
							    1000 * 1000};
	json_t *b = http_body_json(req), *sql, *params, *mr;
	struct sql_job *j;

	if (b == NULL)
		return;
	sql = json_object_get(b, "sql");
	params = json_object_get(b, "params");
	mr = json_object_get(b, "max_rows");
	if (!json_is_string(sql) ||
	    strlen(json_string_value(sql)) != json_string_length(sql)) {
		http_error(req, 400, "'sql' must be a string without NUL");
		goto out;
	}
	if (params && !json_is_null(params) && !json_is_array(params) &&
	    !json_is_object(params)) {
		http_error(req, 400, "'params' must be an array or an object");
		goto out;
	}
	if (pool_init() < 0) {
		http_error(req, 500, "cannot start a query");
		goto out;
	}
	if (pool.njobs >= SQL_MAX_JOBS) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "Retry-After", "1");
		http_error(req, 503, "too many queries running; try again");
		goto out;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		goto nomem;
	j->req = req;
	j->lim = (struct inspect_limits){.max_rows = 1000,
					 .time_ms = SQL_TIME_MS,
					 .max_sql = 16384,
					 .max_bytes = cfg->admin_sql_max_bytes};
	if (json_is_integer(mr) && json_integer_value(mr) > 0 &&
	    json_integer_value(mr) < 100000)
		j->lim.max_rows = (int)json_integer_value(mr);
	j->answer_by = mono_ms() + SQL_ANSWER_MS;
	j->db = strdup(cfg->db);
	j->sql = strdup(json_string_value(sql));
	if (params && !json_is_null(params))
		j->params = json_deep_copy(params);
	j->timer = evtimer_new(base, job_timeout_cb, j);
	if (j->db == NULL || j->sql == NULL ||
	    (params && !json_is_null(params) && j->params == NULL) ||
	    j->timer == NULL || evtimer_add(j->timer, &answer_in) < 0 ||
	    pthread_create(&j->thread, NULL, sql_worker, j) != 0) {
		job_free(j);
		goto nomem;
	}
	j->next = pool.jobs;
	pool.jobs = j;
	pool.njobs++;
	goto out;
nomem:
	http_error(req, 500, "cannot start a query");
out:
	json_decref(b);
}
