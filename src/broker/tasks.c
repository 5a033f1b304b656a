/*
 * Tasks and progress. A task is a title, an owner, watchers, ordered steps
 * and/or done/total counters, and a version that grows by one per change.
 * The latest snapshot lives in memory and in SQLite; every change is
 * written in the loop turn's transaction and pushed after the commit, each
 * version framed once and shared by all subscribers.
 */
#include "basestation/tasks.h"
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "basestation/metrics.h"
#include "basestation/shbuf.h"
#include "basestation/store.h"

#include <event2/http.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TASK_MAX_STEPS	  256
#define TASK_MAX_WATCHERS 256
#define TASK_TITLE_MAX	  512
#define TASK_NOTE_MAX	  4096
#define TASK_PRUNE_BATCH  100

enum step_status { STEP_PENDING, STEP_RUNNING, STEP_FINISH, STEP_FAILED };
static const char *step_names[] = {"pending", "running", "finish", "failed"};

enum task_status { T_PENDING, T_RUNNING, T_DONE, T_FAILED, T_CANCELED };
static const char *task_names[] = {"pending", "running", "done", "failed",
				   "canceled"};

struct step {
	char *name;
	enum step_status status;
	int64_t started_at, finished_at;
};

struct tsub {
	struct conn *c;
	int64_t version; /* last version this subscriber was sent */
	int seed;	 /* the seed documents' shape */
};

struct task {
	char *id;
	UT_hash_handle hh;
	char *title, *owner, *note;
	json_t *watchers; /* array of uid strings */
	enum task_status status;
	int explicit_status; /* status set by the producer, not derived */
	struct step *steps;
	int nsteps;
	int64_t done, total; /* -1: not used */
	int64_t version, created_at, updated_at, finished_at;
	json_t *snap; /* last committed snapshot */
	struct tsub *subs;
	int nsubs, capsubs;
};

size_t tasks_count(void)
{
	return HASH_COUNT(srv->tasks);
}

static struct task *task_find(const char *id)
{
	struct task *t;
	HASH_FIND_STR(srv->tasks, id, t);
	return t;
}

static int parse_name(const char *s, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int task_final(const struct task *t)
{
	return t->status == T_DONE || t->status == T_FAILED ||
	       t->status == T_CANCELED;
}

/* ---- snapshots ---- */

static json_t *task_snapshot(const struct task *t, int64_t now)
{
	json_t *steps = json_array();
	json_t *o;

	for (int i = 0; i < t->nsteps; i++) {
		const struct step *s = &t->steps[i];
		json_t *d = json_null();
		if (s->started_at && s->finished_at)
			d = json_integer(s->finished_at - s->started_at);
		else if (s->started_at && s->status == STEP_RUNNING)
			/* counting, unless the task itself is over */
			d = json_integer((task_final(t) && t->finished_at
						  ? t->finished_at
						  : now) -
					 s->started_at);
		json_array_append_new(
			steps,
			json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", s->name,
				  "status", step_names[s->status], "started_at",
				  s->started_at ? json_integer(s->started_at)
						: json_null(),
				  "finished_at",
				  s->finished_at ? json_integer(s->finished_at)
						 : json_null(),
				  "duration", d));
	}
	o = json_pack(
		"{s:s, s:s, s:s, s:s, s:O, s:o, s:o, s:o, s:o, s:I, "
		"s:I, s:I}",
		"id", t->id, "title", t->title, "status", task_names[t->status],
		"owner", t->owner, "watchers", t->watchers, "steps", steps,
		"done", t->done >= 0 ? json_integer(t->done) : json_null(),
		"total", t->total >= 0 ? json_integer(t->total) : json_null(),
		"note", t->note ? json_string(t->note) : json_null(), "version",
		(json_int_t)t->version, "created_at", (json_int_t)t->created_at,
		"updated_at", (json_int_t)t->updated_at);
	return o;
}

/* The seed documents' shape: {"type":"undone"|"finish","message",
 * "list":[{"name","status":"finish"|"unfinish","duration"}]}. */
static json_t *seed_shape(const json_t *snap, int push)
{
	json_t *list = json_array(), *steps = json_object_get(snap, "steps");
	const char *st = json_string_value(json_object_get(snap, "status"));
	int done = strcmp(st, "done") == 0;
	size_t i;
	json_t *s, *o;

	json_array_foreach(steps, i, s)
	{
		const char *ss =
			json_string_value(json_object_get(s, "status"));
		json_t *d = json_object_get(s, "duration");
		json_array_append_new(
			list, json_pack("{s:O, s:s, s:O}", "name",
					json_object_get(s, "name"), "status",
					strcmp(ss, "finish") == 0 ? "finish"
								  : "unfinish",
					"duration", d ? d : json_null()));
	}
	o = json_pack("{s:s, s:s, s:o, s:O, s:O}", "type",
		      done ? "finish" : "undone", "message",
		      done ? "已完成" : "未完成", "list", list, "id",
		      json_object_get(snap, "id"), "version",
		      json_object_get(snap, "version"));
	if (push)
		json_object_set_new(o, "projectStatus",
				    json_string(done ? "done" : "undone"));
	return o;
}

static struct shbuf *frame_of(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	struct shbuf *f = shbuf_frame_text(s, strlen(s));
	free(s);
	return f;
}

/* {"type":"task","task":snapshot} */
static struct shbuf *task_frame(const json_t *snap)
{
	json_t *o = json_pack("{s:s, s:O}", "type", "task", "task", snap);
	struct shbuf *f = frame_of(o);
	json_decref(o);
	return f;
}

/* ---- persistence ---- */

static char *steps_json(const struct task *t)
{
	json_t *a = json_array();
	char *s;
	for (int i = 0; i < t->nsteps; i++)
		json_array_append_new(
			a,
			json_pack("{s:s, s:s, s:I, s:I}", "name",
				  t->steps[i].name, "status",
				  step_names[t->steps[i].status], "started_at",
				  (json_int_t)t->steps[i].started_at,
				  "finished_at",
				  (json_int_t)t->steps[i].finished_at));
	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

static int task_save(struct task *t)
{
	char *steps = steps_json(t);
	char *w = json_dumps(t->watchers, JSON_COMPACT);
	int rc = store_task_put(srv->store, t->id, t->title, t->owner, w,
				task_names[t->status], steps, t->done, t->total,
				t->note, t->version, t->created_at,
				t->updated_at, t->finished_at);
	free(steps);
	free(w);
	return rc;
}

static void task_free(struct task *t)
{
	for (int i = 0; i < t->nsteps; i++)
		free(t->steps[i].name);
	free(t->steps);
	free(t->id);
	free(t->title);
	free(t->owner);
	free(t->note);
	json_decref(t->watchers);
	json_decref(t->snap);
	free(t->subs);
	free(t);
}

static void load_row(void *arg, sqlite3_stmt *row)
{
	struct task *t = xcalloc(1, sizeof(*t));
	json_t *steps, *s;
	size_t i;
	(void)arg;

	t->id = xstrdup((const char *)sqlite3_column_text(row, 0));
	t->title = xstrdup((const char *)sqlite3_column_text(row, 1));
	t->owner = xstrdup((const char *)sqlite3_column_text(row, 2));
	t->watchers =
		json_loads((const char *)sqlite3_column_text(row, 3), 0, NULL);
	if (!json_is_array(t->watchers)) {
		json_decref(t->watchers);
		t->watchers = json_array();
	}
	int st = parse_name((const char *)sqlite3_column_text(row, 4),
			    task_names, 5);
	t->status = st < 0 ? T_PENDING : (enum task_status)st;
	t->explicit_status = t->status == T_CANCELED;
	steps = json_loads((const char *)sqlite3_column_text(row, 5), 0, NULL);
	if (json_is_array(steps) && json_array_size(steps) > 0) {
		t->steps = calloc(json_array_size(steps), sizeof(*t->steps));
		json_array_foreach(steps, i, s)
		{
			struct step *p = &t->steps[t->nsteps++];
			const char *sv =
				json_string_value(json_object_get(s, "status"));
			int ss = parse_name(sv ? sv : "pending", step_names, 4);
			p->name = xstrdup(
				json_string_value(json_object_get(s, "name")));
			p->status =
				ss < 0 ? STEP_PENDING : (enum step_status)ss;
			p->started_at = json_integer_value(
				json_object_get(s, "started_at"));
			p->finished_at = json_integer_value(
				json_object_get(s, "finished_at"));
		}
	}
	json_decref(steps);
	t->done = sqlite3_column_type(row, 6) == SQLITE_NULL
			  ? -1
			  : sqlite3_column_int64(row, 6);
	t->total = sqlite3_column_type(row, 7) == SQLITE_NULL
			   ? -1
			   : sqlite3_column_int64(row, 7);
	if (sqlite3_column_type(row, 8) != SQLITE_NULL)
		t->note = xstrdup((const char *)sqlite3_column_text(row, 8));
	t->version = sqlite3_column_int64(row, 9);
	t->created_at = sqlite3_column_int64(row, 10);
	t->updated_at = sqlite3_column_int64(row, 11);
	t->finished_at = sqlite3_column_int64(row, 12);
	t->snap = task_snapshot(t, now_ms());
	HASH_ADD_KEYPTR(hh, srv->tasks, t->id, strlen(t->id), t);
}

void tasks_load(void)
{
	if (store_load_tasks(srv->store, load_row, NULL) < 0)
		fatal("cannot load tasks from the store");
}

void tasks_free(void)
{
	struct task *t, *tmp;
	HASH_ITER(hh, srv->tasks, t, tmp)
	{
		HASH_DEL(srv->tasks, t);
		task_free(t);
	}
}

/* ---- who may see a task ---- */

static int may_watch(const struct task *t, const char *uid, enum auth_role role)
{
	size_t i;
	json_t *w;
	if (role == ROLE_ADMIN || strcmp(t->owner, uid) == 0)
		return 1;
	json_array_foreach(t->watchers, i, w)
	{
		if (strcmp(json_string_value(w), uid) == 0)
			return 1;
	}
	return 0;
}

/* ---- validation and changes ---- */

/* Fill *t from a create request. NULL on success, else the error text. */
static const char *task_from_json(struct task *t, json_t *b,
				  const char *default_owner)
{
	json_t *id = json_object_get(b, "id"),
	       *title = json_object_get(b, "title");
	json_t *steps = json_object_get(b, "steps"),
	       *total = json_object_get(b, "total");
	json_t *owner = json_object_get(b, "owner");
	json_t *watchers = json_object_get(b, "watchers"), *v;
	size_t i;

	if (id && !json_is_null(id)) {
		if (!json_is_string(id) ||
		    !commands_valid_name(json_string_value(id), 128) ||
		    strchr(json_string_value(id), '/') ||
		    strchr(json_string_value(id), '?'))
			return "'id' must be 1..128 bytes without control "
			       "characters, '/' or '?'";
		t->id = xstrdup(json_string_value(id));
	} else {
		unsigned char r[8];
		char hex[20];
		RAND_bytes(r, sizeof(r));
		for (int k = 0; k < 8; k++)
			snprintf(hex + 2 * k, 3, "%02x", r[k]);
		t->id = xstrdup(hex);
	}
	if (!json_is_string(title) || json_string_length(title) == 0 ||
	    json_string_length(title) > TASK_TITLE_MAX)
		return "'title' must be a non-empty string";
	t->title = xstrdup(json_string_value(title));
	if (owner && !json_is_null(owner)) {
		if (!json_is_string(owner) ||
		    !commands_valid_name(json_string_value(owner),
					 AUTH_UID_MAX))
			return "'owner' must be a uid";
		t->owner = xstrdup(json_string_value(owner));
	} else if (default_owner) {
		t->owner = xstrdup(default_owner);
	} else {
		return "'owner' is required";
	}
	t->watchers = json_array();
	if (watchers && !json_is_null(watchers)) {
		if (!json_is_array(watchers) ||
		    json_array_size(watchers) > TASK_MAX_WATCHERS)
			return "'watchers' must be an array of uids";
		json_array_foreach(watchers, i, v)
		{
			if (!json_is_string(v) ||
			    !commands_valid_name(json_string_value(v),
						 AUTH_UID_MAX))
				return "'watchers' must be an array of uids";
			json_array_append(t->watchers, v);
		}
	}
	t->done = t->total = -1;
	if (total && !json_is_null(total)) {
		if (!json_is_integer(total) || json_integer_value(total) < 0)
			return "'total' must be an integer >= 0";
		t->total = json_integer_value(total);
		t->done = 0;
	}
	if (steps && !json_is_null(steps)) {
		if (!json_is_array(steps) ||
		    json_array_size(steps) > TASK_MAX_STEPS)
			return "'steps' must be an array of at most 256 names";
		t->steps =
			calloc(json_array_size(steps) + 1, sizeof(*t->steps));
		json_array_foreach(steps, i, v)
		{
			/* a name, or {"name": ...} */
			json_t *n = json_is_object(v)
					    ? json_object_get(v, "name")
					    : v;
			if (!json_is_string(n) || json_string_length(n) == 0 ||
			    json_string_length(n) > 256)
				return "each step must be a non-empty name";
			t->steps[t->nsteps++].name =
				xstrdup(json_string_value(n));
		}
	}
	return NULL;
}

static void derive_status(struct task *t)
{
	int finished = 0, running = 0, failed = 0;

	if (t->explicit_status)
		return;
	for (int i = 0; i < t->nsteps; i++) {
		finished += t->steps[i].status == STEP_FINISH;
		running += t->steps[i].status == STEP_RUNNING;
		failed += t->steps[i].status == STEP_FAILED;
	}
	if (failed)
		t->status = T_FAILED;
	else if ((t->nsteps > 0 && finished == t->nsteps) ||
		 (t->nsteps == 0 && t->total > 0 && t->done >= t->total))
		t->status = T_DONE;
	else if (t->nsteps > 0 && t->total > 0 && t->done >= t->total &&
		 finished == t->nsteps)
		t->status = T_DONE;
	else if (running || finished || t->done > 0)
		t->status = T_RUNNING;
	else
		t->status = T_PENDING;
}

/*
 * Apply an update {step?, status?, done?, total?, note?} to t. Returns NULL
 * on success (with *changed set), else an error text; t is unchanged on
 * error.
 */
static const char *task_apply(struct task *t, json_t *b, int *changed)
{
	json_t *step = json_object_get(b, "step"),
	       *status = json_object_get(b, "status");
	json_t *done = json_object_get(b, "done"),
	       *total = json_object_get(b, "total");
	json_t *note = json_object_get(b, "note");
	int64_t now = now_ms(), nd = t->done, nt = t->total;
	int si = -1, ss = -1, ts = -1;

	*changed = 0;
	if (step && !json_is_null(step)) {
		if (!json_is_integer(step) || json_integer_value(step) < 0 ||
		    json_integer_value(step) >= t->nsteps)
			return "'step' is not a step index of this task";
		si = (int)json_integer_value(step);
		if (!json_is_string(status))
			return "'status' is required with 'step'";
		const char *sv = json_string_value(status);
		ss = parse_name(sv, step_names, 4);
		if (ss < 0 &&
		    (strcmp(sv, "done") == 0 || strcmp(sv, "finished") == 0))
			ss = STEP_FINISH;
		if (ss < 0)
			return "step 'status' must be pending, running, finish "
			       "or failed";
		enum step_status cur = t->steps[si].status;
		if (cur == STEP_FINISH && ss != STEP_FINISH)
			return "a finished step cannot change its status";
		if (cur != STEP_PENDING && ss == STEP_PENDING)
			return "a started step cannot go back to pending";
	} else if (status && !json_is_null(status)) {
		if (!json_is_string(status) ||
		    (ts = parse_name(json_string_value(status), task_names,
				     5)) < 0)
			return "task 'status' must be pending, running, done, "
			       "failed or canceled";
	}
	if (total && !json_is_null(total)) {
		if (!json_is_integer(total) || json_integer_value(total) < 0)
			return "'total' must be an integer >= 0";
		nt = json_integer_value(total);
		if (nd < 0)
			nd = 0;
	}
	if (done && !json_is_null(done)) {
		if (!json_is_integer(done) || json_integer_value(done) < 0)
			return "'done' must be an integer >= 0";
		nd = json_integer_value(done);
		if (nt < 0)
			return "'done' needs a 'total'";
	}
	if (nt >= 0 && nd > nt)
		return "'done' cannot exceed 'total'";
	if (note && !json_is_null(note) &&
	    (!json_is_string(note) || json_string_length(note) > TASK_NOTE_MAX))
		return "'note' must be a string of at most 4096 bytes";

	/* Valid: apply. */
	if (si >= 0 && (int)t->steps[si].status != ss) {
		struct step *s = &t->steps[si];
		if (ss == STEP_RUNNING && !s->started_at)
			s->started_at = now;
		if (ss == STEP_FINISH || ss == STEP_FAILED) {
			if (!s->started_at)
				s->started_at = now;
			s->finished_at = now;
		}
		s->status = (enum step_status)ss;
		t->explicit_status = 0;
		*changed = 1;
	}
	if (ts >= 0 && (int)t->status != ts) {
		t->status = (enum task_status)ts;
		t->explicit_status =
			ts == T_CANCELED || ts == T_FAILED || ts == T_DONE;
		*changed = 1;
	}
	if (nd != t->done || nt != t->total) {
		t->done = nd;
		t->total = nt;
		*changed = 1;
	}
	if (note) {
		const char *nv =
			json_is_string(note) ? json_string_value(note) : NULL;
		if ((nv == NULL) != (t->note == NULL) ||
		    (nv && strcmp(nv, t->note) != 0)) {
			free(t->note);
			t->note = nv ? xstrdup(nv) : NULL;
			*changed = 1;
		}
	}
	if (*changed) {
		int was_final = task_final(t);
		if (ts < 0)
			derive_status(t);
		t->version++;
		t->updated_at = now;
		if (task_final(t) && (!was_final || !t->finished_at))
			t->finished_at = now;
		else if (!task_final(t))
			t->finished_at = 0;
	}
	return NULL;
}

/* Store the new version and queue its push. The reply to the producer
 * (conn ack or HTTP snapshot) goes out after the commit. */
static int task_commit(struct task *t, struct conn *c, json_t *ref,
		       struct evhttp_request *req, int http_status)
{
	struct post *p;

	if (server_write_begin() < 0 || task_save(t) < 0)
		return -1;
	metrics.task_updates++;
	p = xcalloc(1, sizeof(*p));
	p->kind = POST_TASK;
	p->task = t;
	p->seq = t->version;
	p->conn_id = c ? c->id : 0;
	p->ref = ref ? json_incref(ref) : NULL;
	p->req = req;
	p->http_status = http_status;
	p->http_body = task_snapshot(t, t->updated_at);
	p->frame = task_frame(p->http_body);
	server_post(p);
	return 0;
}

static void push_to(struct tsub *s, struct post *p, struct shbuf **seed)
{
	if (s->version >= p->seq)
		return;
	s->version = p->seq;
	if (!s->seed) {
		conn_send_frame(s->c, p->frame);
		return;
	}
	if (*seed == NULL) {
		json_t *o = seed_shape(p->http_body, 1);
		*seed = frame_of(o);
		json_decref(o);
	}
	conn_send_frame(s->c, *seed);
}

static void sub_remove(struct task *t, int i)
{
	struct conn *c = t->subs[i].c;
	t->subs[i] = t->subs[--t->nsubs];
	for (int k = 0; k < c->nsubs; k++)
		if (c->subs[k] == t) {
			c->subs[k] = c->subs[--c->nsubs];
			break;
		}
}

static void drop_uncommitted(struct task *t)
{
	HASH_DEL(srv->tasks, t);
	task_free(t);
}

void tasks_post_commit(struct post *p, int ok)
{
	/* The task may be gone since (pruned, or an earlier post of this
	 * batch dropped it): the frame and the body are the post's own. */
	const char *id = json_string_value(json_object_get(p->http_body, "id"));
	struct task *t = task_find(id) == p->task ? p->task : NULL;
	struct shbuf *seed = NULL;
	struct conn *c;

	if (!ok) {
		/* A create that never committed does not exist. */
		if (t && t->snap == NULL)
			drop_uncommitted(t);
		if (p->req)
			http_error(p->req, 503, "commit failed");
		else if ((c = conn_find(p->conn_id)) != NULL)
			conn_send_error(c, p->ref, "internal", "commit failed");
		return;
	}
	if (t) {
		json_decref(t->snap);
		t->snap = json_incref(p->http_body);
		for (int i = 0; i < t->nsubs;) {
			struct tsub *s = &t->subs[i];
			if (s->c->state != CONN_OPEN) {
				i++;
				continue;
			}
			push_to(s, p, &seed);
			/* The seed shape stops once the task is done. */
			if (s->seed && task_final(t) &&
			    json_integer_value(json_object_get(
				    p->http_body, "version")) == t->version)
				sub_remove(t, i);
			else
				i++;
		}
	}
	shbuf_unref(seed);
	if (p->req) {
		http_reply_json(p->req, p->http_status,
				json_incref(p->http_body));
	} else if ((c = conn_find(p->conn_id)) != NULL) {
		json_t *o;
		if (p->http_status == 201) { /* task.create: the snapshot */
			o = json_pack("{s:s, s:O}", "type", "task", "task",
				      p->http_body);
		} else {
			o = json_pack("{s:s, s:O, s:I}", "type", "ack", "task",
				      json_object_get(p->http_body, "id"),
				      "version", (json_int_t)p->seq);
		}
		if (p->ref)
			json_object_set(o, "ref", p->ref);
		conn_send_json(c, o);
	}
}

/* ---- commands ---- */

static struct task *create(json_t *b, const char *default_owner,
			   const char **err, int *conflict)
{
	struct task *t = xcalloc(1, sizeof(*t));
	int64_t now = now_ms();

	*conflict = 0;
	*err = task_from_json(t, b, default_owner);
	if (*err == NULL && task_find(t->id)) {
		*err = "a task with this id exists";
		*conflict = 1;
	}
	if (*err) {
		task_free(t);
		return NULL;
	}
	t->version = 1;
	t->created_at = t->updated_at = now;
	t->status = T_PENDING;
	HASH_ADD_KEYPTR(hh, srv->tasks, t->id, strlen(t->id), t);
	t->snap = NULL;
	log_info("task.create", "task=%s owner=%s steps=%d total=%lld",
		 log_val(t->id), log_val(t->owner), t->nsteps,
		 (long long)t->total);
	return t;
}

void tasks_ws_create(struct conn *c, json_t *msg, json_t *ref)
{
	const char *err;
	int conflict;
	struct task *t;

	if (c->role != ROLE_PRODUCER && c->role != ROLE_ADMIN) {
		conn_send_error(c, ref, "forbidden",
				"task.create needs the producer role");
		return;
	}
	t = create(msg, c->user->uid, &err, &conflict);
	if (t == NULL) {
		conn_send_error(c, ref, "bad_request", "%s", err);
		return;
	}
	if (task_commit(t, c, ref, NULL, 201) < 0) {
		drop_uncommitted(t);
		conn_send_error(c, ref, "internal", "store unavailable");
	}
}

void tasks_ws_update(struct conn *c, json_t *msg, json_t *ref)
{
	json_t *id = json_object_get(msg, "task");
	struct task *t;
	const char *err;
	int changed;

	if (c->role != ROLE_PRODUCER && c->role != ROLE_ADMIN) {
		conn_send_error(c, ref, "forbidden",
				"task.update needs the producer role");
		return;
	}
	if (!json_is_string(id)) {
		conn_send_error(c, ref, "bad_request",
				"field 'task' must be a task id");
		return;
	}
	t = task_find(json_string_value(id));
	if (t == NULL) {
		conn_send_error(c, ref, "not_found", "no task '%.128s'",
				json_string_value(id));
		return;
	}
	err = task_apply(t, msg, &changed);
	if (err) {
		conn_send_error(c, ref, "bad_request", "%s", err);
		return;
	}
	if (!changed) {
		json_t *o = json_pack("{s:s, s:s, s:I}", "type", "ack", "task",
				      t->id, "version", (json_int_t)t->version);
		if (ref)
			json_object_set(o, "ref", ref);
		conn_send_json(c, o);
		return;
	}
	if (task_commit(t, c, ref, NULL, 200) < 0)
		conn_send_error(c, ref, "internal", "store unavailable");
}

void tasks_ws_subscribe(struct conn *c, const char *id, json_t *ref, int seed)
{
	struct task *t = task_find(id);
	struct tsub *s = NULL;
	json_t *o;

	if (t == NULL || t->snap == NULL) {
		conn_send_error(c, ref, "not_found", "no task '%.128s'", id);
		return;
	}
	if (!may_watch(t, c->user->uid, c->role)) {
		conn_send_error(c, ref, "forbidden",
				"only the owner, watchers and admins may "
				"watch this task");
		return;
	}
	/* A connection may watch a task both ways (a `subscribe` and the
	 * seed page's {"id":X}); each kind is its own subscription. */
	for (int i = 0; i < t->nsubs; i++)
		if (t->subs[i].c == c && t->subs[i].seed == seed)
			s = &t->subs[i];
	if (s == NULL && !(seed && task_final(t))) {
		if (t->nsubs == t->capsubs) {
			t->capsubs = t->capsubs ? t->capsubs * 2 : 4;
			t->subs = xrealloc(t->subs, sizeof(*t->subs) *
							    (size_t)t->capsubs);
		}
		s = &t->subs[t->nsubs++];
		s->c = c;
		s->seed = seed;
		if (c->nsubs == c->capsubs) {
			c->capsubs = c->capsubs ? c->capsubs * 2 : 4;
			c->subs = xrealloc(c->subs, sizeof(*c->subs) *
							    (size_t)c->capsubs);
		}
		c->subs[c->nsubs++] = t;
	}
	/* The current (committed) snapshot first; later versions follow. */
	if (s) {
		s->version =
			json_integer_value(json_object_get(t->snap, "version"));
	}
	if (seed) {
		o = seed_shape(t->snap, 0);
	} else {
		o = json_pack("{s:s, s:O}", "type", "task", "task", t->snap);
		if (ref)
			json_object_set(o, "ref", ref);
	}
	conn_send_json(c, o);
}

void tasks_ws_unsubscribe(struct conn *c, const char *id, json_t *ref)
{
	struct task *t = task_find(id);
	json_t *o;

	/* Every subscription of c to t, of either kind. */
	for (int i = 0; t && i < t->nsubs;) {
		if (t->subs[i].c == c)
			sub_remove(t, i);
		else
			i++;
	}
	o = json_pack("{s:s, s:s}", "type", "unsubscribed", "task", id);
	if (ref)
		json_object_set(o, "ref", ref);
	conn_send_json(c, o);
}

void tasks_unsubscribe_all(struct conn *c)
{
	while (c->nsubs > 0) {
		struct task *t = c->subs[0];
		int i;
		for (i = 0; i < t->nsubs && t->subs[i].c != c; i++)
			;
		if (i < t->nsubs)
			sub_remove(t, i);
		else
			c->subs[0] = c->subs[--c->nsubs];
	}
	free(c->subs);
	c->subs = NULL;
	c->capsubs = 0;
}

/* ---- HTTP ---- */

void tasks_http_create(struct evhttp_request *req, json_t *body)
{
	const char *err;
	int conflict;
	struct task *t = create(body, NULL, &err, &conflict);

	if (t == NULL) {
		http_error(req, conflict ? 409 : 400, err);
		return;
	}
	if (task_commit(t, NULL, NULL, req, 201) < 0) {
		drop_uncommitted(t);
		http_error(req, 503, "store unavailable");
	}
}

void tasks_http_get(struct evhttp_request *req, const char *id)
{
	struct task *t = task_find(id);
	if (t == NULL || t->snap == NULL) {
		http_error(req, 404, "no such task");
		return;
	}
	http_reply_json(req, 200, task_snapshot(t, now_ms()));
}

void tasks_http_progress(struct evhttp_request *req, const char *id,
			 json_t *body)
{
	struct task *t = task_find(id);
	const char *err;
	int changed;

	if (t == NULL) {
		http_error(req, 404, "no such task");
		return;
	}
	err = task_apply(t, body, &changed);
	if (err) {
		http_error(req, 400, err);
		return;
	}
	if (!changed) {
		http_reply_json(req, 200, task_snapshot(t, now_ms()));
		return;
	}
	if (task_commit(t, NULL, NULL, req, 200) < 0)
		http_error(req, 503, "store unavailable");
}

void tasks_prune(int64_t now)
{
	struct task *t, *tmp;
	int n = 0;

	if (srv->cfg->task_retention <= 0)
		return;
	HASH_ITER(hh, srv->tasks, t, tmp)
	{
		if (n >= TASK_PRUNE_BATCH)
			break;
		if (!task_final(t) || t->finished_at == 0 ||
		    now - t->finished_at < srv->cfg->task_retention * 1000)
			continue;
		if (server_write_begin() < 0 ||
		    store_task_del(srv->store, t->id) < 0)
			return;
		log_info("task.prune", "task=%s", log_val(t->id));
		while (t->nsubs > 0)
			sub_remove(t, 0);
		HASH_DEL(srv->tasks, t);
		task_free(t);
		n++;
	}
}

int tasks_local_create(json_t *body)
{
	const char *err;
	int conflict;
	struct task *t = create(body, NULL, &err, &conflict);
	if (t == NULL) {
		log_warn("task.local", "msg=%s", log_val(err));
		return -1;
	}
	if (task_commit(t, NULL, NULL, NULL, 201) < 0) {
		drop_uncommitted(t);
		return -1;
	}
	return 0;
}

int tasks_local_update(const char *id, json_t *body)
{
	struct task *t = task_find(id);
	const char *err;
	int changed;
	if (t == NULL)
		return -1;
	err = task_apply(t, body, &changed);
	if (err) {
		log_warn("task.local", "task=%s msg=%s", log_val(id),
			 log_val(err));
		return -1;
	}
	return changed ? task_commit(t, NULL, NULL, NULL, 200) : 0;
}

int tasks_exists(const char *id)
{
	return task_find(id) != NULL;
}
