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
#include "basestation/sb.h"
#include "basestation/shbuf.h"
#include "basestation/store.h"

#include <event2/http.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

/* Fixed bounds on one task; the number of steps is --max-steps and the
 * number of tasks --max-tasks. Past any of them: too_large (HTTP 400). */
#define TASK_MAX_WATCHERS 256
#define TASK_TITLE_MAX	  256
#define TASK_NOTE_MAX	  4096
#define TASK_STEP_MAX	  256 /* bytes of a step name */
#define TASK_PRUNE_BATCH  100

enum step_status { STEP_PENDING, STEP_RUNNING, STEP_FINISH, STEP_FAILED };
static const char *step_names[] = {"pending", "running", "finish", "failed"};

enum task_status { T_PENDING, T_RUNNING, T_DONE, T_FAILED, T_CANCELED };
static const char *task_names[] = {"pending", "running", "done", "failed",
				   "canceled"};

/* 24 bytes; the names of all steps are one block per task (t->names). */
struct step {
	uint32_t name; /* offset in t->names */
	uint8_t status;
	int64_t started_at, finished_at;
};

struct tsub {
	struct conn *c;
	int64_t version; /* last version this subscriber was sent */
	int seed;	 /* the seed documents' shape */
};

/*
 * Only the live state is kept: snapshots are built when sent, as JSON text
 * (a queued change carries its own). A task is in srv->tasks and on one of
 * two lists, oldest first: finished tasks by finished_at (retention and
 * eviction under --max-tasks), the others by updated_at (idle retention).
 * It is freed once removed and no queued post refers to it.
 */
struct task {
	char *id;
	UT_hash_handle hh;
	struct task *prev, *next; /* finished or unfinished list */
	char *title, *owner, *note;
	json_t *watchers; /* array of uid strings */
	char *names;	  /* step names, each NUL-terminated */
	struct step *steps;
	int nsteps;
	enum task_status status;
	int explicit_status; /* status set by the producer, not derived */
	int refs;	     /* srv->tasks, plus one per queued post */
	unsigned gone : 1;   /* removed: only posts still refer to it */
	unsigned on_done : 1;
	int64_t done, total;	    /* -1: not used */
	int64_t version, committed; /* committed: 0 until the create is */
	int64_t created_at, updated_at, finished_at;
	struct tsub *subs;
	int nsubs, capsubs;
};

/* Why a request was refused. */
enum task_err { TE_OK, TE_BAD, TE_LARGE, TE_EXISTS, TE_STORE };

static struct task *done_list, *live_list;

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

static const char *step_name(const struct task *t, int i)
{
	return t->names + t->steps[i].name;
}

/* ---- snapshots, as JSON text ---- */

static void add_int_or_null(struct sb *b, int64_t v, int is_null)
{
	if (is_null)
		sb_adds(b, "null");
	else
		sb_addi(b, v);
}

/* The snapshot of §5: times in ms; a running step's duration counts up to
 * now, or to the end of the task when it is over. */
static void snap_build(struct sb *b, const struct task *t, int64_t now)
{
	size_t i;
	json_t *w;

	sb_adds(b, "{\"id\":");
	sb_add_jstr(b, t->id);
	sb_adds(b, ",\"title\":");
	sb_add_jstr(b, t->title);
	sb_adds(b, ",\"status\":\"");
	sb_adds(b, task_names[t->status]);
	sb_adds(b, "\",\"owner\":");
	sb_add_jstr(b, t->owner);
	sb_adds(b, ",\"watchers\":[");
	json_array_foreach(t->watchers, i, w)
	{
		if (i)
			sb_add(b, ",", 1);
		sb_add_jstr(b, json_string_value(w));
	}
	sb_adds(b, "],\"steps\":[");
	for (int k = 0; k < t->nsteps; k++) {
		const struct step *s = &t->steps[k];
		int64_t end = 0;
		if (s->started_at && s->finished_at)
			end = s->finished_at;
		else if (s->started_at && s->status == STEP_RUNNING)
			end = task_final(t) && t->finished_at ? t->finished_at
							      : now;
		sb_adds(b, k ? ",{\"name\":" : "{\"name\":");
		sb_add_jstr(b, step_name(t, k));
		sb_adds(b, ",\"status\":\"");
		sb_adds(b, step_names[s->status]);
		sb_adds(b, "\",\"started_at\":");
		add_int_or_null(b, s->started_at, !s->started_at);
		sb_adds(b, ",\"finished_at\":");
		add_int_or_null(b, s->finished_at, !s->finished_at);
		sb_adds(b, ",\"duration\":");
		add_int_or_null(b, end - s->started_at, !end);
		sb_add(b, "}", 1);
	}
	sb_adds(b, "],\"done\":");
	add_int_or_null(b, t->done, t->done < 0);
	sb_adds(b, ",\"total\":");
	add_int_or_null(b, t->total, t->total < 0);
	sb_adds(b, ",\"note\":");
	if (t->note)
		sb_add_jstr(b, t->note);
	else
		sb_adds(b, "null");
	sb_adds(b, ",\"version\":");
	sb_addi(b, t->version);
	sb_adds(b, ",\"created_at\":");
	sb_addi(b, t->created_at);
	sb_adds(b, ",\"updated_at\":");
	sb_addi(b, t->updated_at);
	sb_add(b, "}", 1);
}

/* ,"ref":… when there is one. */
static void add_ref(struct sb *b, const json_t *ref)
{
	char *s;
	if (ref && (s = json_dumps(ref, JSON_ENCODE_ANY)) != NULL) {
		sb_adds(b, ",\"ref\":");
		sb_adds(b, s);
		free(s);
	}
}

/* {"type":"task","task":snap[,"ref":…]} */
static void task_msg(struct sb *b, const char *snap, size_t n,
		     const json_t *ref)
{
	sb_init(b, n + 48);
	sb_adds(b, "{\"type\":\"task\",\"task\":");
	sb_add(b, snap, n);
	add_ref(b, ref);
	sb_add(b, "}", 1);
}

/* The seed documents' shape: {"type":"undone"|"finish","message",
 * "list":[{"name","status":"finish"|"unfinish","duration"}]}, from a
 * snapshot's text. */
static json_t *seed_shape(const char *snap, size_t n, int push)
{
	json_t *sj = json_loadb(snap, n, 0, NULL);
	json_t *list = json_array(), *steps = json_object_get(sj, "steps");
	const char *st = json_string_value(json_object_get(sj, "status"));
	int done = st && strcmp(st, "done") == 0;
	size_t i;
	json_t *s, *o;

	json_array_foreach(steps, i, s)
	{
		const char *ss =
			json_string_value(json_object_get(s, "status"));
		json_t *d = json_object_get(s, "duration");
		json_array_append_new(
			list,
			json_pack("{s:O, s:s, s:O}", "name",
				  json_object_get(s, "name"), "status",
				  ss && strcmp(ss, "finish") == 0 ? "finish"
								  : "unfinish",
				  "duration", d ? d : json_null()));
	}
	o = json_pack("{s:s, s:s, s:o, s:O, s:O}", "type",
		      done ? "finish" : "undone", "message",
		      done ? "已完成" : "未完成", "list", list, "id",
		      json_object_get(sj, "id"), "version",
		      json_object_get(sj, "version"));
	if (push)
		json_object_set_new(o, "projectStatus",
				    json_string(done ? "done" : "undone"));
	json_decref(sj);
	return o;
}

static struct shbuf *frame_of(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT);
	struct shbuf *f = shbuf_frame_text(s, strlen(s));
	free(s);
	return f;
}

/* ---- persistence ---- */

static char *steps_json(const struct task *t)
{
	struct sb b;

	sb_init(&b, 2 + (size_t)t->nsteps * 80);
	sb_add(&b, "[", 1);
	for (int i = 0; i < t->nsteps; i++) {
		sb_adds(&b, i ? ",{\"name\":" : "{\"name\":");
		sb_add_jstr(&b, step_name(t, i));
		sb_adds(&b, ",\"status\":\"");
		sb_adds(&b, step_names[t->steps[i].status]);
		sb_adds(&b, "\",\"started_at\":");
		sb_addi(&b, t->steps[i].started_at);
		sb_adds(&b, ",\"finished_at\":");
		sb_addi(&b, t->steps[i].finished_at);
		sb_add(&b, "}", 1);
	}
	sb_add(&b, "]", 1);
	return b.p;
}

static int task_save(struct task *t)
{
	char *steps = steps_json(t);
	char *w = json_dumps(t->watchers, JSON_COMPACT);
	struct task_record r = {
		.id = t->id,
		.title = t->title,
		.owner = t->owner,
		.watchers = w,
		.status = task_names[t->status],
		.steps = steps,
		.note = t->note,
		.done = t->done,
		.total = t->total,
		.version = t->version,
		.created_at = t->created_at,
		.updated_at = t->updated_at,
		.finished_at = t->finished_at,
	};
	int rc = store_task_put(srv->store, &r);
	free(steps);
	free(w);
	return rc;
}

static void task_free(struct task *t)
{
	free(t->names);
	free(t->steps);
	free(t->id);
	free(t->title);
	free(t->owner);
	free(t->note);
	json_decref(t->watchers);
	free(t->subs);
	free(t);
}

static void task_unref(struct task *t)
{
	if (--t->refs == 0)
		task_free(t);
}

static struct task **list_of(int finished)
{
	return finished ? &done_list : &live_list;
}

/* Put t at the end of the list it belongs on now. A finished task moves
 * only when it finishes (the list is by finished_at); an unfinished one on
 * every change (by updated_at). */
static void task_place(struct task *t)
{
	int fin = task_final(t);

	if (fin && t->on_done && t->prev)
		return;
	if (t->prev) /* on a list (utlist: the head's prev is the tail) */
		DL_DELETE(*list_of(t->on_done), t);
	t->on_done = (unsigned)fin;
	DL_APPEND(*list_of(fin), t);
}

static void task_add(struct task *t)
{
	t->refs = 1;
	HASH_ADD_KEYPTR(hh, srv->tasks, t->id, strlen(t->id), t);
	task_place(t);
}

static void sub_remove(struct task *t, int i);

/* Out of the table, the lists and every subscription; freed when the
 * last queued post is done with it. */
static void task_unlink(struct task *t)
{
	while (t->nsubs > 0)
		sub_remove(t, 0);
	HASH_DEL(srv->tasks, t);
	DL_DELETE(*list_of(t->on_done), t);
	t->prev = t->next = NULL;
	t->gone = 1;
	task_unref(t);
}

/* Delete t from the store (in the loop turn's transaction) and memory. */
static int task_delete(struct task *t, const char *why)
{
	if (server_write_begin() < 0 || store_task_del(srv->store, t->id) < 0)
		return -1;
	log_info("task.prune", "task=%s status=%s why=%s", log_val(t->id),
		 task_names[t->status], why);
	task_unlink(t);
	return 0;
}

/* Set t's steps from a JSON array of names (or {"name":…}); the names go
 * into one block. TE_OK, else err is filled. */
static enum task_err steps_from_json(struct task *t, json_t *steps, char *err,
				     size_t errsz)
{
	size_t i, total = 0, n = json_array_size(steps);
	json_t *v;

	json_array_foreach(steps, i, v)
	{
		json_t *nm = json_is_object(v) ? json_object_get(v, "name") : v;
		if (!json_is_string(nm) || json_string_length(nm) == 0) {
			snprintf(err, errsz,
				 "each step must be a non-empty name");
			return TE_BAD;
		}
		if (json_string_length(nm) > TASK_STEP_MAX) {
			snprintf(err, errsz, "a step name is at most %d bytes",
				 TASK_STEP_MAX);
			return TE_LARGE;
		}
		total += strlen(json_string_value(nm)) + 1;
	}
	if (n == 0)
		return TE_OK;
	t->names = xmalloc(total);
	t->steps = xcalloc(n, sizeof(*t->steps));
	total = 0;
	json_array_foreach(steps, i, v)
	{
		json_t *nm = json_is_object(v) ? json_object_get(v, "name") : v;
		const char *s = json_string_value(nm);
		size_t len = strlen(s) + 1;
		memcpy(t->names + total, s, len);
		t->steps[t->nsteps++].name = (uint32_t)total;
		total += len;
	}
	return TE_OK;
}

static void load_row(void *arg, const struct task_record *r)
{
	struct task *t = xcalloc(1, sizeof(*t));
	json_t *steps, *s;
	size_t i;
	char err[96];
	(void)arg;

	t->id = xstrdup(r->id);
	t->title = xstrdup(r->title);
	t->owner = xstrdup(r->owner);
	t->watchers = r->watchers ? json_loads(r->watchers, 0, NULL) : NULL;
	if (!json_is_array(t->watchers)) {
		json_decref(t->watchers);
		t->watchers = json_array();
	}
	int st = r->status ? parse_name(r->status, task_names, 5) : -1;
	t->status = st < 0 ? T_PENDING : (enum task_status)st;
	t->explicit_status = t->status == T_CANCELED;
	/* Rows written before the step limits are loaded as they are. */
	steps = r->steps ? json_loads(r->steps, 0, NULL) : NULL;
	if (json_is_array(steps) &&
	    steps_from_json(t, steps, err, sizeof(err)) == TE_OK) {
		json_array_foreach(steps, i, s)
		{
			struct step *p = &t->steps[i];
			const char *sv =
				json_string_value(json_object_get(s, "status"));
			int ss = parse_name(sv ? sv : "pending", step_names, 4);
			p->status = ss < 0 ? STEP_PENDING : (uint8_t)ss;
			p->started_at = json_integer_value(
				json_object_get(s, "started_at"));
			p->finished_at = json_integer_value(
				json_object_get(s, "finished_at"));
		}
	}
	json_decref(steps);
	t->done = r->done;
	t->total = r->total;
	if (r->note)
		t->note = xstrdup(r->note);
	t->version = t->committed = r->version;
	t->created_at = r->created_at;
	t->updated_at = r->updated_at;
	t->finished_at = r->finished_at;
	if (task_final(t) && t->finished_at == 0)
		t->finished_at = t->updated_at;
	task_add(t);
}

static int by_finished(const struct task *a, const struct task *b)
{
	return (a->finished_at > b->finished_at) -
	       (a->finished_at < b->finished_at);
}

static int by_updated(const struct task *a, const struct task *b)
{
	return (a->updated_at > b->updated_at) -
	       (a->updated_at < b->updated_at);
}

void tasks_load(void)
{
	if (store_load_tasks(srv->store, load_row, NULL) < 0)
		fatal("cannot load tasks from the store");
	DL_SORT(done_list, by_finished);
	DL_SORT(live_list, by_updated);
}

void tasks_free(void)
{
	struct task *t, *tmp;
	HASH_ITER(hh, srv->tasks, t, tmp)
	{
		task_unlink(t);
	}
	done_list = live_list = NULL;
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

static enum task_err refuse(char *err, size_t errsz, enum task_err e,
			    const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static enum task_err refuse(char *err, size_t errsz, enum task_err e,
			    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
	return e;
}

/* Fill *t from a create request. TE_OK, else err is filled. */
static enum task_err task_from_json(struct task *t, json_t *b,
				    const char *default_owner, char *err,
				    size_t errsz)
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
			return refuse(err, errsz, TE_BAD,
				      "'id' must be 1..128 bytes without "
				      "control characters, '/' or '?'");
		t->id = xstrdup(json_string_value(id));
	} else {
		unsigned char r[8];
		char hex[20];
		RAND_bytes(r, sizeof(r));
		for (int k = 0; k < 8; k++)
			snprintf(hex + 2 * k, 3, "%02x", r[k]);
		t->id = xstrdup(hex);
	}
	if (!json_is_string(title) || json_string_length(title) == 0)
		return refuse(err, errsz, TE_BAD,
			      "'title' must be a non-empty string");
	if (json_string_length(title) > TASK_TITLE_MAX)
		return refuse(err, errsz, TE_LARGE,
			      "'title' is at most %d bytes", TASK_TITLE_MAX);
	t->title = xstrdup(json_string_value(title));
	if (owner && !json_is_null(owner)) {
		if (!json_is_string(owner) ||
		    !commands_valid_name(json_string_value(owner),
					 AUTH_UID_MAX))
			return refuse(err, errsz, TE_BAD,
				      "'owner' must be a uid");
		t->owner = xstrdup(json_string_value(owner));
	} else if (default_owner) {
		t->owner = xstrdup(default_owner);
	} else {
		return refuse(err, errsz, TE_BAD, "'owner' is required");
	}
	t->watchers = json_array();
	if (watchers && !json_is_null(watchers)) {
		if (!json_is_array(watchers))
			return refuse(err, errsz, TE_BAD,
				      "'watchers' must be an array of uids");
		if (json_array_size(watchers) > TASK_MAX_WATCHERS)
			return refuse(err, errsz, TE_LARGE,
				      "at most %d watchers", TASK_MAX_WATCHERS);
		json_array_foreach(watchers, i, v)
		{
			if (!json_is_string(v) ||
			    !commands_valid_name(json_string_value(v),
						 AUTH_UID_MAX))
				return refuse(err, errsz, TE_BAD,
					      "'watchers' must be an array of "
					      "uids");
			json_array_append(t->watchers, v);
		}
	}
	t->done = t->total = -1;
	if (total && !json_is_null(total)) {
		if (!json_is_integer(total) || json_integer_value(total) < 0)
			return refuse(err, errsz, TE_BAD,
				      "'total' must be an integer >= 0");
		t->total = json_integer_value(total);
		t->done = 0;
	}
	if (steps && !json_is_null(steps)) {
		if (!json_is_array(steps))
			return refuse(err, errsz, TE_BAD,
				      "'steps' must be an array of names");
		if (json_array_size(steps) > (size_t)srv->cfg->max_steps)
			return refuse(err, errsz, TE_LARGE,
				      "at most %d steps (--max-steps)",
				      srv->cfg->max_steps);
		return steps_from_json(t, steps, err, errsz);
	}
	return TE_OK;
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
 * on success (with *changed set), else an error text and *e (TE_BAD or
 * TE_LARGE); t is unchanged on error.
 */
static const char *task_apply(struct task *t, json_t *b, int *changed,
			      enum task_err *e)
{
	json_t *step = json_object_get(b, "step"),
	       *status = json_object_get(b, "status");
	json_t *done = json_object_get(b, "done"),
	       *total = json_object_get(b, "total");
	json_t *note = json_object_get(b, "note");
	int64_t now = now_ms(), nd = t->done, nt = t->total;
	int si = -1, ss = -1, ts = -1;

	*changed = 0;
	*e = TE_BAD;
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
		int cur = t->steps[si].status;
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
	if (note && !json_is_null(note) && !json_is_string(note))
		return "'note' must be a string or null";
	if (json_is_string(note) && json_string_length(note) > TASK_NOTE_MAX) {
		*e = TE_LARGE;
		return "'note' is at most 4096 bytes";
	}

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
		s->status = (uint8_t)ss;
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
 * (conn ack or HTTP snapshot) goes out after the commit; the post carries
 * this version's snapshot text and a reference to t. */
static int task_commit(struct task *t, struct conn *c, json_t *ref,
		       struct evhttp_request *req, int http_status)
{
	struct post *p;
	struct sb b;

	task_place(t);
	if (server_write_begin() < 0 || task_save(t) < 0)
		return -1;
	metrics.task_updates++;
	p = xcalloc(1, sizeof(*p));
	p->kind = POST_TASK;
	p->task = t;
	t->refs++;
	p->seq = t->version;
	p->conn_id = c ? c->id : 0;
	p->ref = ref ? json_incref(ref) : NULL;
	p->req = req;
	p->http_status = http_status;
	sb_init(&b, 256 + (size_t)t->nsteps * 96);
	snap_build(&b, t, t->updated_at);
	p->snap = b.p;
	p->snap_len = b.n;
	server_post(p);
	return 0;
}

/* Frames are made on first use, once per post for all subscribers. */
static void push_to(struct tsub *s, struct post *p, struct shbuf **frame,
		    struct shbuf **seed)
{
	struct sb b;

	if (s->version >= p->seq)
		return;
	s->version = p->seq;
	if (!s->seed) {
		if (*frame == NULL) {
			task_msg(&b, p->snap, p->snap_len, NULL);
			*frame = shbuf_frame_text(b.p, b.n);
			sb_free(&b);
		}
		conn_send_frame(s->c, *frame);
		return;
	}
	if (*seed == NULL) {
		json_t *o = seed_shape(p->snap, p->snap_len, 1);
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

void tasks_post_commit(struct post *p, int ok)
{
	/* The task may be gone since (pruned, evicted, or an earlier post of
	 * this batch dropped it): its reference keeps it readable. */
	struct task *t = p->task;
	struct shbuf *frame = NULL, *seed = NULL;
	struct conn *c;

	p->task = NULL;
	if (!ok) {
		/* A create that never committed does not exist. */
		if (!t->gone && t->committed == 0)
			task_unlink(t);
		if (p->req)
			http_error(p->req, 503, "commit failed");
		else if ((c = conn_find(p->conn_id)) != NULL)
			conn_send_error(c, p->ref, "internal", "commit failed");
		task_unref(t);
		return;
	}
	if (p->seq > t->committed)
		t->committed = p->seq;
	for (int i = 0; i < t->nsubs;) {
		struct tsub *s = &t->subs[i];
		if (s->c->state != CONN_OPEN) {
			i++;
			continue;
		}
		push_to(s, p, &frame, &seed);
		/* The seed shape stops once the task is done. */
		if (s->seed && task_final(t) && p->seq == t->version)
			sub_remove(t, i);
		else
			i++;
	}
	shbuf_unref(frame);
	shbuf_unref(seed);
	if (p->req) {
		http_reply_text(p->req, p->http_status, p->snap, p->snap_len);
	} else if ((c = conn_find(p->conn_id)) != NULL) {
		if (p->http_status == 201) { /* task.create: the snapshot */
			struct sb b;
			task_msg(&b, p->snap, p->snap_len, p->ref);
			conn_send_text(c, b.p, b.n);
			sb_free(&b);
		} else {
			json_t *o = json_pack("{s:s, s:s, s:I}", "type", "ack",
					      "task", t->id, "version",
					      (json_int_t)p->seq);
			if (p->ref)
				json_object_set(o, "ref", p->ref);
			conn_send_json(c, o);
		}
	}
	task_unref(t);
}

/* ---- commands ---- */

/* Room for one more task under --max-tasks: the oldest finished task goes
 * early when needed (finished tasks are history, like messages under
 * --retention-count); unfinished ones are never evicted. */
static enum task_err make_room(char *err, size_t errsz)
{
	int max = srv->cfg->max_tasks;

	if ((int)HASH_COUNT(srv->tasks) >= max && done_list &&
	    task_delete(done_list, "max-tasks") < 0)
		return refuse(err, errsz, TE_STORE, "store unavailable");
	if ((int)HASH_COUNT(srv->tasks) >= max)
		return refuse(err, errsz, TE_LARGE,
			      "at most %d unfinished tasks (--max-tasks)", max);
	return TE_OK;
}

static struct task *create(json_t *b, const char *default_owner,
			   enum task_err *e, char *err, size_t errsz)
{
	struct task *t = xcalloc(1, sizeof(*t));
	int64_t now = now_ms();

	*e = task_from_json(t, b, default_owner, err, errsz);
	if (*e == TE_OK && task_find(t->id))
		*e = refuse(err, errsz, TE_EXISTS,
			    "a task with this id exists");
	if (*e == TE_OK)
		*e = make_room(err, errsz);
	if (*e != TE_OK) {
		task_free(t);
		return NULL;
	}
	t->version = 1;
	t->created_at = t->updated_at = now;
	t->status = T_PENDING;
	task_add(t);
	log_info("task.create", "task=%s owner=%s steps=%d total=%lld",
		 log_val(t->id), log_val(t->owner), t->nsteps,
		 (long long)t->total);
	return t;
}

/* Drop a create that could not be stored. */
static void drop_uncommitted(struct task *t)
{
	task_unlink(t);
}

static const char *ws_code(enum task_err e)
{
	return e == TE_LARGE   ? "too_large"
	       : e == TE_STORE ? "internal"
			       : "bad_request";
}

/* HTTP: 400 for bad fields ({"error","code":"too_large"} past a limit),
 * 409 for an id in use, 503 when the store fails. */
static void http_refuse(struct evhttp_request *req, enum task_err e,
			const char *msg)
{
	if (e == TE_LARGE)
		http_reply_json(req, 400,
				json_pack("{s:s, s:s}", "error", msg, "code",
					  "too_large"));
	else
		http_error(req,
			   e == TE_EXISTS  ? 409
			   : e == TE_STORE ? 503
					   : 400,
			   msg);
}

void tasks_ws_create(struct conn *c, json_t *msg, json_t *ref)
{
	char err[160];
	enum task_err e;
	struct task *t;

	if (c->role != ROLE_PRODUCER && c->role != ROLE_ADMIN) {
		conn_send_error(c, ref, "forbidden",
				"task.create needs the producer role");
		return;
	}
	t = create(msg, c->user->uid, &e, err, sizeof(err));
	if (t == NULL) {
		conn_send_error(c, ref, ws_code(e), "%s", err);
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
	enum task_err e;
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
	err = task_apply(t, msg, &changed, &e);
	if (err) {
		conn_send_error(c, ref, ws_code(e), "%s", err);
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

/* Send text to c now if t has nothing uncommitted, else after the commit
 * that carries t's pending change: nobody sees a version a crash could
 * undo. */
static void send_committed(struct conn *c, const struct task *t,
			   const json_t *ref, const char *text, size_t n)
{
	struct post *p;

	if (t->committed >= t->version || server_write_begin() < 0) {
		conn_send_text(c, text, n);
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->kind = POST_REPLY;
	p->conn_id = c->id;
	p->ref = ref ? json_incref((json_t *)ref) : NULL;
	p->frame = shbuf_frame_text(text, n);
	server_post(p);
}

void tasks_ws_subscribe(struct conn *c, const char *id, json_t *ref, int seed)
{
	struct task *t = task_find(id);
	struct tsub *s = NULL;
	struct sb snap, msg;

	if (t == NULL || t->committed == 0) {
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
	/* The current snapshot first; later versions follow. */
	if (s)
		s->version = t->version;
	sb_init(&snap, 256 + (size_t)t->nsteps * 96);
	snap_build(&snap, t, now_ms());
	if (seed) {
		json_t *o = seed_shape(snap.p, snap.n, 0);
		char *text = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		send_committed(c, t, NULL, text, strlen(text));
		free(text);
	} else {
		task_msg(&msg, snap.p, snap.n, ref);
		send_committed(c, t, ref, msg.p, msg.n);
		sb_free(&msg);
	}
	sb_free(&snap);
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

static void http_snapshot(struct evhttp_request *req, const struct task *t)
{
	struct sb b;
	sb_init(&b, 256 + (size_t)t->nsteps * 96);
	snap_build(&b, t, now_ms());
	http_reply_text(req, 200, b.p, b.n);
	sb_free(&b);
}

void tasks_http_create(struct evhttp_request *req, json_t *body)
{
	char err[160];
	enum task_err e;
	struct task *t = create(body, NULL, &e, err, sizeof(err));

	if (t == NULL) {
		http_refuse(req, e, err);
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
	if (t == NULL || t->committed == 0) {
		http_error(req, 404, "no such task");
		return;
	}
	http_snapshot(req, t);
}

void tasks_http_progress(struct evhttp_request *req, const char *id,
			 json_t *body)
{
	struct task *t = task_find(id);
	const char *err;
	enum task_err e;
	int changed;

	if (t == NULL) {
		http_error(req, 404, "no such task");
		return;
	}
	err = task_apply(t, body, &changed, &e);
	if (err) {
		http_refuse(req, e, err);
		return;
	}
	if (!changed) {
		http_snapshot(req, t);
		return;
	}
	if (task_commit(t, NULL, NULL, req, 200) < 0)
		http_error(req, 503, "store unavailable");
}

/*
 * A few at a time from the heads of the lists (oldest first), so a call
 * costs O(batch) whatever the number of tasks: finished tasks past
 * --task-retention, unfinished ones untouched for --task-idle-retention,
 * and finished ones over --max-tasks (when it was lowered).
 */
void tasks_prune(int64_t now)
{
	const struct config *cfg = srv->cfg;
	int n = 0;

	while (n < TASK_PRUNE_BATCH && done_list &&
	       (int)HASH_COUNT(srv->tasks) > cfg->max_tasks) {
		if (task_delete(done_list, "max-tasks") < 0)
			return;
		n++;
	}
	while (n < TASK_PRUNE_BATCH && cfg->task_retention > 0 && done_list &&
	       now - done_list->finished_at >= cfg->task_retention * 1000) {
		if (task_delete(done_list, "retention") < 0)
			return;
		n++;
	}
	while (n < TASK_PRUNE_BATCH && cfg->task_idle_retention > 0 &&
	       live_list &&
	       now - live_list->updated_at >= cfg->task_idle_retention * 1000) {
		if (task_delete(live_list, "idle") < 0)
			return;
		n++;
	}
}

int tasks_local_create(json_t *body)
{
	char err[160];
	enum task_err e;
	struct task *t = create(body, NULL, &e, err, sizeof(err));
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
	enum task_err e;
	int changed;
	if (t == NULL)
		return -1;
	err = task_apply(t, body, &changed, &e);
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
