/*
 * /admin/connections (the live pool map) and /admin/sql (read-only).
 *
 * A query may run up to its time limit, so /admin/sql runs each one on a
 * worker thread and the loop keeps serving meanwhile. A job owns copies of
 * its SQL, parameters and database path; the worker touches nothing else
 * (no libevent, no log, no broker state) and hands the job back through a
 * pipe, and the loop thread answers the request.
 */
#include "basestation/broker.h"
#include "basestation/conn.h"
#include "basestation/http.h"
#include "basestation/inspect.h"
#include "basestation/log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Queries running at once; more answer 503. */
#define SQL_MAX_JOBS 4

static struct event_base *base;
static const char *db_path;

void admin_init(struct event_base *b, const char *db)
{
	base = b;
	db_path = db;
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
	struct evhttp_request *req;
	char *db, *sql;
	json_t *params; /* a deep copy: shares nothing with the loop */
	struct inspect_limits lim;
	json_t *result; /* set by the worker; NULL: refused, see err */
	char err[512];
	struct sql_job *next;
};

static struct {
	int fd[2];	      /* worker -> loop: finished jobs (pointers) */
	struct event *ev;     /* read end, on the loop */
	struct sql_job *jobs; /* running */
	int njobs;
} pool = {{-1, -1}, NULL, NULL, 0};

static void job_free(struct sql_job *j)
{
	free(j->db);
	free(j->sql);
	json_decref(j->params);
	json_decref(j->result);
	free(j);
}

static void *sql_worker(void *arg)
{
	struct sql_job *j = arg;
	ssize_t n;

	j->result = inspect_query(j->db, j->sql, j->params, &j->lim, j->err,
				  sizeof(j->err));
	/* A pointer is less than PIPE_BUF: written whole or not at all; the
	 * write end blocks, and at most SQL_MAX_JOBS are ever in the pipe. */
	do
		n = write(pool.fd[1], &j, sizeof(j));
	while (n < 0 && errno == EINTR);
	return NULL;
}

/* Unlink j from the running list and wait for its thread (which has
 * finished or is about to). */
static void job_reap(struct sql_job *j)
{
	struct sql_job **pp;

	for (pp = &pool.jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			pool.njobs--;
			break;
		}
	pthread_join(j->thread, NULL);
}

/* Answer the request of a finished job. evhttp_send_reply also copes with
 * a request whose client went away meanwhile (libevent detached it). */
static void job_reply(struct sql_job *j)
{
	if (j->result == NULL) {
		log_info("admin.sql", "refused=%s", log_val(j->err));
		http_error(j->req, 400, j->err);
		return;
	}
	http_reply_json(j->req, 200, j->result);
	j->result = NULL;
}

static void sql_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sql_job *j;

	(void)what;
	(void)arg;
	while (read(fd, &j, sizeof(j)) == (ssize_t)sizeof(j)) {
		job_reap(j);
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

void admin_sql_stop(void)
{
	struct sql_job *j;

	/* Each worker ends within its time limit, with its answer. */
	while ((j = pool.jobs) != NULL) {
		job_reap(j);
		job_reply(j);
		job_free(j);
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
		http_error(req, 503, "too many queries running; try again");
		goto out;
	}
	j = calloc(1, sizeof(*j));
	if (j == NULL)
		goto nomem;
	j->req = req;
	j->lim = (struct inspect_limits){
		.max_rows = 1000, .time_ms = 2000, .max_sql = 16384};
	if (json_is_integer(mr) && json_integer_value(mr) > 0 &&
	    json_integer_value(mr) < 100000)
		j->lim.max_rows = (int)json_integer_value(mr);
	j->db = strdup(db_path);
	j->sql = strdup(json_string_value(sql));
	if (params && !json_is_null(params))
		j->params = json_deep_copy(params);
	if (j->db == NULL || j->sql == NULL ||
	    (params && !json_is_null(params) && j->params == NULL) ||
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
