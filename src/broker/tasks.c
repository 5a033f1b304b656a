/*
 * Tasks and progress. A task is a title, an owner, watchers, ordered steps
 * and/or done/total counters, and a version that grows by one per change.
 * The latest state lives in memory and, through the engine, in the store:
 * every change is an ENGINE_TASK event carrying its record and this
 * version's snapshot; once the engine hands it back committed, the
 * snapshot is pushed to the subscribers (framed once, shared by all) and
 * then the producer's operation completes. One path per operation,
 * whoever asked (WebSocket, HTTP, the demo): results, not replies.
 */
#include "broker_int.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/msgbuf.h"
#include "basestation/names.h"
#include "basestation/sb.h"
#include "basestation/tasks.h"
#include "basestation/xalloc.h"

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
/* A change that lost to another node's is validated again against the
 * new state this many times before it answers unavailable. Each try is
 * about a coin toss against a producer on another node that sends its
 * next change as soon as it is answered: 8 tries lost in a row about once
 * in 256 changes (tests/cluster/tasks.test.mjs saw it under load); 32
 * make it a matter of a skewed machine, not of chance. */
#define TASK_STALE_TRIES 32
/* How long a node that does not know a task waits for its replica
 * (protocol §7). */
#define TASK_SETTLE_MS 1000

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
	struct session *s; /* first: fanout() */
	int64_t version;   /* last version this subscriber was sent */
	int seed;	   /* the seed documents' shape */
};

/*
 * Only the live state is kept: snapshots are built when sent, as JSON text
 * (a queued change carries its own). A task is in bk.tasks and on one of
 * two lists, oldest first: finished tasks by finished_at (retention and
 * eviction under --max-tasks), the others by updated_at (idle retention).
 * It is freed once removed and no pending operation refers to it.
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
	int refs;	     /* bk.tasks, plus one per pending change */
	/* Linear engines: bumped whenever the memory is set back to the
	 * stored state (a reload, another node's change), which drops every
	 * change of it not stored yet. */
	int gen;
	unsigned gone : 1; /* removed: only pending operations refer to it */
	unsigned on_done : 1;
	int64_t done, total;	    /* -1: not used */
	int64_t version, committed; /* committed: 0 until the create is */
	int64_t created_at, updated_at, finished_at;
	struct tsub *subs;
	int nsubs, capsubs;
	struct quota *quota; /* its producer's count, while it is held */
};

/* --max-tasks-per-producer: the tasks each WebSocket producer (by uid)
 * created and the broker still holds, finished or not, so that one token
 * can take neither every slot of --max-tasks from the others nor the
 * memory of them all. A task counts until it leaves memory (a task that
 * finishes and starts again counts once throughout); at the limit the
 * producer's own oldest finished task goes to make room. A record per uid
 * with at least one; kept in memory only: a restart forgets whose the
 * tasks were (tasks made over HTTP, with the API key, count for nobody). */
struct quota {
	UT_hash_handle hh;
	int n;
	char uid[];
};
static struct quota *quotas;

static void quota_release(struct task *t)
{
	struct quota *q = t->quota;

	t->quota = NULL;
	if (q && --q->n == 0) {
		HASH_DEL(quotas, q);
		free(q);
	}
}

/* Why a request was refused. */
enum task_err { TE_OK, TE_BAD, TE_LARGE, TE_EXISTS, TE_STORE };

static struct task *done_list, *live_list;

static struct task *task_find(const char *id)
{
	struct task *t;
	HASH_FIND_STR(bk.tasks, id, t);
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

/* The row of t now; its strings point into t, watchers into *w and the
 * steps into *steps (the caller frees both). */
static struct task_record task_record_of(const struct task *t, char **w,
					 char **steps)
{
	*steps = steps_json(t);
	*w = json_dumps(t->watchers, JSON_COMPACT);
	return (struct task_record){
		.id = t->id,
		.title = t->title,
		.owner = t->owner,
		.watchers = *w,
		.status = task_names[t->status],
		.steps = *steps,
		.note = t->note,
		.done = t->done,
		.total = t->total,
		.version = t->version,
		.created_at = t->created_at,
		.updated_at = t->updated_at,
		.finished_at = t->finished_at,
	};
}

/* {"type":"task","task":snap}: a version pushed to subscribers. */
static struct msgbuf *task_payload(const char *snap, size_t n)
{
	struct sb b;
	struct msgbuf *m;

	sb_init(&b, n + 32);
	sb_adds(&b, "{\"type\":\"task\",\"task\":");
	sb_add(&b, snap, n);
	sb_add(&b, "}", 1);
	m = msgbuf_copy(b.p, b.n);
	sb_free(&b);
	return m;
}

/* The seed shape of a snapshot as JSON text (the caller frees it). */
static char *seed_text(const char *snap, size_t n, int push)
{
	json_t *o = seed_shape(snap, n, push);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
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
	HASH_ADD_KEYPTR(hh, bk.tasks, t->id, strlen(t->id), t);
	task_place(t);
}

static void sub_remove(struct task *t, int i);

/* Out of the table, the lists and every subscription; freed when the
 * last pending operation is done with it. */
static void task_unlink(struct task *t)
{
	while (t->nsubs > 0)
		sub_remove(t, 0);
	quota_release(t);
	HASH_DEL(bk.tasks, t);
	DL_DELETE(*list_of(t->on_done), t);
	t->prev = t->next = NULL;
	t->gone = 1;
	task_unref(t);
}

/* Delete t from the store (through the engine) and from memory. */
static int task_delete(struct task *t, const char *why)
{
	struct engine_event ev = {.kind = ENGINE_TASK_DELETE, .task_id = t->id};

	if (engine_submit(bk.engine, &ev, NULL, NULL) < 0)
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
/* Set t (id aside) from a stored row: at start, and for a change that
 * another node made. */
static void task_fill(struct task *t, const struct task_record *r)
{
	json_t *steps, *s;
	size_t i;
	char err[96];

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
	t->note = r->note ? xstrdup(r->note) : NULL;
	t->version = t->committed = r->version;
	t->created_at = r->created_at;
	t->updated_at = r->updated_at;
	t->finished_at = r->finished_at;
	if (task_final(t) && t->finished_at == 0)
		t->finished_at = t->updated_at;
}

/* What task_fill set, freed (the subscriptions and links stay). */
static void task_empty(struct task *t)
{
	free(t->names);
	free(t->steps);
	free(t->title);
	free(t->owner);
	free(t->note);
	json_decref(t->watchers);
	t->names = NULL;
	t->steps = NULL;
	t->nsteps = 0;
	t->note = NULL;
}

void tasks_load_row(void *arg, const struct task_record *r)
{
	struct task *t = xcalloc(1, sizeof(*t));
	(void)arg;

	t->id = xstrdup(r->id);
	task_fill(t, r);
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

void tasks_loaded(void)
{
	DL_SORT(done_list, by_finished);
	DL_SORT(live_list, by_updated);
}

void tasks_free(void)
{
	struct task *t, *tmp;
	HASH_ITER(hh, bk.tasks, t, tmp)
	{
		task_unlink(t);
	}
	done_list = live_list = NULL;
}

/* ---- who may see a task ---- */

static int may_watch(const struct task *t, const char *uid,
		     enum auth_role role);

int tasks_may_watch(const char *id, const char *uid, enum auth_role role)
{
	struct task *t = task_find(id);

	if (t == NULL || t->committed == 0)
		return -1;
	return may_watch(t, uid, role);
}

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
		    !name_ok(json_string_value(id), 128) ||
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
		    !name_ok(json_string_value(owner), AUTH_UID_MAX))
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
			    !name_ok(json_string_value(v), AUTH_UID_MAX))
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
		if (json_array_size(steps) > (size_t)bk.cfg->max_steps)
			return refuse(err, errsz, TE_LARGE,
				      "at most %d steps (--max-steps)",
				      bk.cfg->max_steps);
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

static void sub_remove(struct task *t, int i)
{
	struct session *s = t->subs[i].s;
	t->subs[i] = t->subs[--t->nsubs];
	for (int k = 0; k < s->nsubs; k++)
		if (s->subs[k] == t) {
			s->subs[k] = s->subs[--s->nsubs];
			break;
		}
}

static enum bk_status status_of(enum task_err e)
{
	switch (e) {
	case TE_OK:
		return BK_OK;
	case TE_LARGE:
		return BK_TOO_LARGE;
	case TE_EXISTS:
		return BK_CONFLICT;
	case TE_STORE:
		return BK_UNAVAILABLE;
	case TE_BAD:
		break;
	}
	return BK_BAD_REQUEST;
}

/* ---- a change, through the engine ---- */

/* A change waiting for its commit: the producer's completion, the task (a
 * reference: it may be removed meanwhile) and this version's snapshot. */
struct pending {
	struct bk_done caller;
	struct task *t;
	int64_t version;
	int created;
	/* Linear engines: the request, to validate it again when it comes
	 * back BK_STALE (tries so far). Any engine: t->gen when it was made
	 * (pending_rollback). */
	json_t *body;
	char *owner;
	int tries, gen;
	size_t snap_len;
	char snap[];
};

/* A request, the same path from the start (the next try of a stale one). */
static void create_try(const json_t *body, const char *default_owner,
		       const struct bk_done *done, int tries);
static void update_try(const char *id, const json_t *body,
		       const struct bk_done *done, int tries);
static void tasks_get_try(const char *id, const struct bk_done *done,
			  int settled);
static void subscribe_try(struct session *s, const char *id, int seed,
			  const struct bk_done *done, int settled);

/* Set t (id aside) from a row, keeping its subscriptions. */
static void task_refill(struct task *t, const struct task_record *r)
{
	task_empty(t);
	task_fill(t, r);
	task_place(t);
	t->gen++;
}

struct reload {
	struct task *t;
	int found;
};

static void reload_row(void *arg, const struct task_record *r)
{
	struct reload *rl = arg;

	rl->found = 1;
	task_refill(rl->t, r);
}

/* t back to its stored state (a linear engine's: the replica's), dropping
 * its changes not stored; a task with no row any more is removed. 0, or
 * -1 when the store cannot say (t unchanged). */
static int task_reload(struct task *t)
{
	struct reload rl = {.t = t};

	if (engine_task(bk.engine, t->id, reload_row, &rl) < 0)
		return -1;
	if (!rl.found) {
		t->gen++;
		task_unlink(t);
	}
	return 0;
}

/* A change that was not stored (any engine: a commit that failed, or a
 * linear engine's refusal): the memory goes back to the stored state, once
 * for all the changes made from the same state (the later ones were made
 * from this one's). Otherwise GET and new subscribers would be answered a
 * state a restart loses, and the next version would skip one. 0, or -1
 * when the store cannot say (t unchanged). */
static int pending_rollback(struct pending *p)
{
	struct task *t = p->t;

	if (t->gone || p->gen != t->gen)
		return 0;
	return task_reload(t);
}

/* A linear engine's answer for a change that was not stored, rolled back:
 * a stale one is validated again. 1 when it was tried again (the caller
 * is done with p), 0 otherwise. */
static int pending_again(struct pending *p, const struct bk_result *r)
{
	struct task *t = p->t;

	if (r->status != BK_STALE || p->tries + 1 >= TASK_STALE_TRIES)
		return 0;
	log_info("task.retry", "task=%s version=%lld tries=%d", log_val(t->id),
		 (long long)p->version, p->tries + 1);
	if (p->created)
		create_try(p->body, p->owner, &p->caller, p->tries + 1);
	else
		update_try(t->id, p->body, &p->caller, p->tries + 1);
	return 1;
}

static void pending_free(struct pending *p)
{
	task_unref(p->t);
	json_decref(p->body);
	free(p->owner);
	free(p);
}

static void pending_done(const struct bk_done *d, const struct bk_result *r)
{
	struct pending *p = d->ptr;
	struct task *t = p->t;
	struct bk_result res = {
		.status = p->created ? BK_CREATED : BK_OK,
		.seq = p->version,
		.name = t->id,
		.body = p->snap,
		.body_len = p->snap_len,
	};

	if (r->status != BK_OK && pending_rollback(p) == 0 &&
	    bk.engine->linear_tasks && pending_again(p, r)) {
		pending_free(p);
		return;
	}
	if (r->status != BK_OK) {
		/* A create that never committed does not exist. */
		if (p->created && !t->gone && t->committed == 0)
			task_unlink(t);
		res.status = BK_UNAVAILABLE;
		res.msg = r->status == BK_STALE
				  ? "the task was changed concurrently too "
				    "often: try again"
				  : r->msg;
		res.body = NULL;
		res.body_len = 0;
	}
	bk_complete(&p->caller, &res);
	pending_free(p);
}

/* Hand t's new version to the engine with its record and snapshot: the
 * push and done come after the commit. 0 ok; -1 the engine refused it
 * (done not run). */
static int task_submit(struct task *t, int created, const struct bk_done *done,
		       const json_t *body, const char *owner, int tries,
		       const char **why)
{
	struct engine_event ev = {.kind = ENGINE_TASK};
	struct pending *p;
	struct bk_done d;
	struct sb snap;
	char *w, *steps;
	int rc;

	task_place(t);
	sb_init(&snap, 256 + (size_t)t->nsteps * 96);
	snap_build(&snap, t, t->updated_at);
	ev.task.rec = task_record_of(t, &w, &steps);
	ev.task.snap = snap.p;
	ev.task.snap_len = snap.n;
	p = xmalloc(sizeof(*p) + snap.n + 1);
	/* The task's state settles at the commit; the producer's answer
	 * waits behind the fan queue like the push (fanq.c). */
	p->caller = fanq_wait(done);
	p->t = t;
	t->refs++;
	p->version = t->version;
	p->created = created;
	p->body = NULL;
	p->owner = NULL;
	if (bk.engine->linear_tasks) {
		p->body = json_incref((json_t *)body);
		p->owner = owner ? xstrdup(owner) : NULL;
	}
	p->tries = tries;
	p->gen = t->gen;
	p->snap_len = snap.n;
	memcpy(p->snap, snap.p, snap.n + 1);
	d = (struct bk_done){.fn = pending_done, .ptr = p};
	*why = "store unavailable";
	rc = engine_submit(bk.engine, &ev, &d, why);
	if (rc < 0) {
		t->refs--;
		fanq_wait_drop(&p->caller);
		json_decref(p->body);
		free(p->owner);
		free(p);
	} else {
		metrics.task_updates++;
	}
	free(w);
	free(steps);
	sb_free(&snap);
	return rc;
}

struct push {
	struct task *t;
	int64_t version;
	const char *snap;
	size_t snap_len;
	struct msgbuf *plain, *seed; /* made on first use */
};

static void push_one(void *elem, void *arg)
{
	struct tsub *sub = elem;
	struct push *p = arg;
	struct task *t = p->t;

	if (!sub->s->open)
		return;
	if (sub->version < p->version) {
		sub->version = p->version;
		if (!sub->seed) {
			if (p->plain == NULL)
				p->plain = task_payload(p->snap, p->snap_len);
			session_send(sub->s, p->plain);
		} else {
			if (p->seed == NULL) {
				char *s = seed_text(p->snap, p->snap_len, 1);
				p->seed = msgbuf_copy(s, strlen(s));
				free(s);
			}
			session_send(sub->s, p->seed);
		}
	}
	/* The seed shape stops once the task is done. */
	if (sub->seed && task_final(t) && p->version == t->version)
		sub_remove(t, (int)(sub - t->subs));
}

/* Another node's change: make or update t from its row when it is newer
 * than what is stored here. It replaces changes of t made here and not
 * stored yet: those were made from an older state, and the engine answers
 * them BK_STALE (linear_tasks). */
static struct task *apply_remote(struct task *t, const struct task_record *r)
{
	if (t == NULL) {
		t = xcalloc(1, sizeof(*t));
		t->id = xstrdup(r->id);
		task_fill(t, r);
		task_add(t);
	} else if (r->version > t->committed) {
		task_refill(t, r);
	}
	return t;
}

/* Version `version` (snapshot snap) to t's subscribers; the deliveries. */
static size_t push_version(struct task *t, int64_t version, const char *snap,
			   size_t snap_len)
{
	struct push p = {t, version, snap, snap_len, NULL, NULL};
	size_t n = (size_t)t->nsubs;

	fanout((void *const *)&t->subs, sizeof(struct tsub), &t->nsubs,
	       push_one, &p);
	msgbuf_unref(p.plain);
	msgbuf_unref(p.seed);
	return n;
}

/* A push waiting in the fan queue behind messages committed before it. */
struct queued_push {
	struct task *t; /* a reference */
	int64_t version;
	size_t snap_len;
	char snap[];
};

static size_t queued_push_fn(void *arg)
{
	struct queued_push *q = arg;
	size_t n = 0;

	/* Removed meanwhile: its subscriptions went with it. */
	if (!q->t->gone)
		n = push_version(q->t, q->version, q->snap, q->snap_len);
	task_unref(q->t);
	free(q);
	return n;
}

void tasks_on_event(const struct engine_event *ev)
{
	const struct task_record *r = &ev->task.rec;
	struct queued_push *q;
	struct task *t;

	if (ev->kind == ENGINE_TASK_DELETE) {
		if (!ev->local && (t = task_find(ev->task_id)) != NULL)
			task_unlink(t);
		return;
	}
	t = task_find(r->id);
	/* A change of ours that the memory no longer holds (set back after
	 * an answer "maybe stored" that was stored after all) counts as
	 * another node's. */
	if (!ev->local ||
	    (bk.engine->linear_tasks && (t == NULL || r->version > t->version)))
		t = apply_remote(t, r);
	/* Gone since (pruned, evicted), or another task of the same id. */
	if (t == NULL || t->created_at != r->created_at)
		return;
	if (r->version > t->committed)
		t->committed = r->version;
	/* Subscribers get versions and messages in commit order: behind
	 * the messages still in the fan queue, if any. Who is subscribed is
	 * looked at when it goes out; a subscriber's version skips what its
	 * snapshot already showed. */
	if (!fanq_busy()) {
		push_version(t, r->version, ev->task.snap, ev->task.snap_len);
		return;
	}
	q = xmalloc(sizeof(*q) + ev->task.snap_len + 1);
	q->t = t;
	t->refs++;
	q->version = r->version;
	q->snap_len = ev->task.snap_len;
	memcpy(q->snap, ev->task.snap, ev->task.snap_len);
	q->snap[q->snap_len] = '\0';
	fanq_call(ev->seq, queued_push_fn, q);
}

/* ---- operations ---- */

/* Room for one more task under --max-tasks: the oldest finished task goes
 * early when needed (finished tasks are history, like messages under
 * --retention-count); unfinished ones are never evicted. */
static enum task_err make_room(char *err, size_t errsz)
{
	int max = bk.cfg->max_tasks;

	if ((int)HASH_COUNT(bk.tasks) >= max && done_list &&
	    task_delete(done_list, "max-tasks") < 0)
		return refuse(err, errsz, TE_STORE, "store unavailable");
	if ((int)HASH_COUNT(bk.tasks) >= max)
		return refuse(err, errsz, TE_LARGE,
			      "at most %d unfinished tasks (--max-tasks)", max);
	return TE_OK;
}

/* Room for one more task of q's producer: its oldest finished task goes
 * (the finished list is oldest first; a walk of at most --max-tasks), else
 * too_large. */
static enum task_err quota_room(struct quota *q, char *err, size_t errsz)
{
	struct task *t;

	DL_FOREACH(done_list, t)
	{
		if (t->quota == q)
			return task_delete(t, "max-tasks-per-producer") < 0
				       ? refuse(err, errsz, TE_STORE,
						"store unavailable")
				       : TE_OK;
	}
	return refuse(err, errsz, TE_LARGE,
		      "at most %d unfinished tasks per producer "
		      "(--max-tasks-per-producer)",
		      bk.cfg->max_tasks_per_producer);
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
	struct quota *q = NULL;
	int per = bk.cfg->max_tasks_per_producer;
	if (*e == TE_OK && default_owner && per > 0) {
		HASH_FIND_STR(quotas, default_owner, q);
		if (q && q->n >= per)
			*e = quota_room(q, err, errsz);
	}
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
	if (default_owner && per > 0) {
		/* again: making room may have freed the record */
		HASH_FIND_STR(quotas, default_owner, q);
		if (q == NULL) {
			size_t n = strlen(default_owner);
			q = xcalloc(1, sizeof(*q) + n + 1);
			memcpy(q->uid, default_owner, n + 1);
			HASH_ADD_STR(quotas, uid, q);
		}
		q->n++;
		t->quota = q;
	}
	log_info("task.create", "task=%s owner=%s steps=%d total=%lld",
		 log_val(t->id), log_val(t->owner), t->nsteps,
		 (long long)t->total);
	return t;
}

struct row_snap {
	struct sb *b;
	int64_t version;
};

static void row_snap(void *arg, const struct task_record *r)
{
	struct row_snap *rs = arg;
	struct task tmp = {.id = (char *)r->id};

	task_fill(&tmp, r);
	snap_build(rs->b, &tmp, now_ms());
	rs->version = tmp.version;
	task_empty(&tmp);
}

/* t's snapshot into b, returning its version. With a linear engine and a
 * change of t not stored yet, the stored one (the replica's): a change
 * here may still lose to another node's. */
static int64_t stored_snapshot(const struct task *t, struct sb *b)
{
	struct row_snap rs = {.b = b};

	if (bk.engine->linear_tasks && t->committed < t->version &&
	    engine_task(bk.engine, t->id, row_snap, &rs) == 1)
		return rs.version;
	snap_build(b, t, now_ms());
	return t->version;
}

/* Complete done with t's snapshot now. */
static void complete_snapshot(const struct task *t, const struct bk_done *done)
{
	struct sb b;
	struct bk_result r = {
		.status = BK_OK, .seq = t->version, .name = t->id};

	sb_init(&b, 256 + (size_t)t->nsteps * 96);
	snap_build(&b, t, now_ms());
	r.body = b.p;
	r.body_len = b.n;
	bk_complete(done, &r);
	sb_free(&b);
}

void tasks_create(const json_t *body, const char *default_owner,
		  const struct bk_done *done)
{
	create_try(body, default_owner, done, 0);
}

static void create_try(const json_t *body, const char *default_owner,
		       const struct bk_done *done, int tries)
{
	const char *why;
	char err[160];
	enum task_err e;
	struct task *t =
		create((json_t *)body, default_owner, &e, err, sizeof(err));

	if (t == NULL) {
		bk_refuse(done, status_of(e), err);
		return;
	}
	if (task_submit(t, 1, done, body, default_owner, tries, &why) < 0) {
		/* A create that could not be stored. */
		task_unlink(t);
		bk_refuse(done, BK_UNAVAILABLE, why);
	}
}

/* ---- a task this node does not know (yet) ---- */

enum { LATER_UPDATE, LATER_GET, LATER_SUBSCRIBE };

/* An operation on a task not known here, asked again once the replica
 * has what the cluster had stored when it came (at most TASK_SETTLE_MS):
 * the task may have been created on another node a moment ago. */
struct later {
	struct bk_done caller;
	int op, seed;
	uint64_t session;
	json_t *body;
	char id[];
};

static void later_done(const struct bk_done *d, const struct bk_result *r)
{
	struct later *l = d->ptr;
	struct session *s = NULL;
	(void)r;

	switch (l->op) {
	case LATER_UPDATE:
		update_try(l->id, l->body, &l->caller, -1);
		break;
	case LATER_GET:
		tasks_get_try(l->id, &l->caller, 1);
		break;
	case LATER_SUBSCRIBE:
		HASH_FIND(hh, bk.sessions, &l->session, sizeof(l->session), s);
		if (s && s->open)
			subscribe_try(s, l->id, l->seed, &l->caller, 1);
		else
			bk_refuse(&l->caller, BK_NOT_FOUND, "session gone");
		break;
	}
	json_decref(l->body);
	free(l);
}

/* 1 when the operation waits for the replica (a linear engine, first
 * time), 0 when the caller answers not_found now. */
static int later(int op, const char *id, const json_t *body, struct session *s,
		 int seed, const struct bk_done *done)
{
	size_t n = strlen(id) + 1;
	struct later *l;
	struct bk_done d;

	if (!bk.engine->linear_tasks)
		return 0;
	l = xmalloc(sizeof(*l) + n);
	l->caller = *done;
	l->op = op;
	l->seed = seed;
	l->session = s ? s->id : 0;
	l->body = body ? json_incref((json_t *)body) : NULL;
	memcpy(l->id, id, n);
	d = (struct bk_done){.fn = later_done, .ptr = l};
	engine_settle(bk.engine, TASK_SETTLE_MS, &d);
	return 1;
}

/* tries -1: the first try, after the replica settled. */
static void update_try(const char *id, const json_t *body,
		       const struct bk_done *done, int tries)
{
	struct task *t = task_find(id);
	const char *err;
	char msg[160];
	enum task_err e;
	int changed;

	if ((t == NULL || t->committed == 0) && tries == 0 &&
	    later(LATER_UPDATE, id, body, NULL, 0, done))
		return;
	if (tries < 0)
		tries = 0;
	if (t == NULL) {
		snprintf(msg, sizeof(msg), "no task '%.128s'", id);
		bk_refuse(done, BK_NOT_FOUND, msg);
		return;
	}
	err = task_apply(t, (json_t *)body, &changed, &e);
	if (err) {
		bk_refuse(done, status_of(e), err);
		return;
	}
	if (!changed) {
		complete_snapshot(t, done);
	} else if (task_submit(t, 0, done, body, NULL, tries, &err) < 0) {
		/* Refused before the commit (the store busy, say): the memory
		 * goes back to what was submitted before, as after a failed
		 * commit (pending_rollback). */
		(void)task_reload(t);
		bk_refuse(done, BK_UNAVAILABLE, err);
	}
}

void tasks_update(const char *id, const json_t *body,
		  const struct bk_done *done)
{
	update_try(id, body, done, 0);
}

static void tasks_get_try(const char *id, const struct bk_done *done,
			  int settled)
{
	struct task *t = task_find(id);
	struct sb b;
	struct bk_result r = {.status = BK_OK, .name = id};

	if ((t == NULL || t->committed == 0) && !settled &&
	    later(LATER_GET, id, NULL, NULL, 0, done))
		return;
	if (t == NULL || t->committed == 0) {
		bk_refuse(done, BK_NOT_FOUND, "no such task");
		return;
	}
	sb_init(&b, 256 + (size_t)t->nsteps * 96);
	r.seq = stored_snapshot(t, &b);
	r.body = b.p;
	r.body_len = b.n;
	bk_complete(done, &r);
	sb_free(&b);
}

void tasks_get(const char *id, const struct bk_done *done)
{
	tasks_get_try(id, done, 0);
}

void tasks_subscribe(struct session *s, const char *id, int seed,
		     const struct bk_done *done)
{
	subscribe_try(s, id, seed, done, 0);
}

static void subscribe_try(struct session *s, const char *id, int seed,
			  const struct bk_done *done, int settled)
{
	struct task *t = task_find(id);
	struct tsub *sub = NULL;
	struct bk_result r = {.status = BK_OK, .name = id};
	struct sb snap;
	char msg[160], *text = NULL;

	if ((t == NULL || t->committed == 0) && !settled &&
	    later(LATER_SUBSCRIBE, id, NULL, s, seed, done))
		return;
	if (t == NULL || t->committed == 0) {
		snprintf(msg, sizeof(msg), "no task '%.128s'", id);
		bk_refuse(done, BK_NOT_FOUND, msg);
		return;
	}
	if (!may_watch(t, s->user->uid, s->role)) {
		bk_refuse(done, BK_FORBIDDEN,
			  "only the owner, watchers and admins may watch this "
			  "task");
		return;
	}
	/* A session may watch a task both ways (a `subscribe` and the seed
	 * page's {"id":X}); each kind is its own subscription. */
	for (int i = 0; i < t->nsubs; i++)
		if (t->subs[i].s == s && t->subs[i].seed == seed)
			sub = &t->subs[i];
	if (sub == NULL && !(seed && task_final(t))) {
		if (t->nsubs == t->capsubs) {
			t->capsubs = t->capsubs ? t->capsubs * 2 : 4;
			t->subs = xrealloc(t->subs, sizeof(*t->subs) *
							    (size_t)t->capsubs);
		}
		sub = &t->subs[t->nsubs++];
		sub->s = s;
		sub->seed = seed;
		if (s->nsubs == s->capsubs) {
			s->capsubs = s->capsubs ? s->capsubs * 2 : 4;
			s->subs = xrealloc(s->subs, sizeof(*s->subs) *
							    (size_t)s->capsubs);
		}
		s->subs[s->nsubs++] = t;
	}
	/* The current snapshot first; later versions follow. */
	sb_init(&snap, 256 + (size_t)t->nsteps * 96);
	r.seq = stored_snapshot(t, &snap);
	if (sub)
		sub->version = r.seq;
	if (seed) {
		text = seed_text(snap.p, snap.n, 0);
		r.body = text;
		r.body_len = strlen(text);
	} else {
		r.body = snap.p;
		r.body_len = snap.n;
	}
	/* Nobody sees a version a crash could undo: with a change of t still
	 * pending, after its commit (a linear engine's snapshot is the
	 * stored one already); and not ahead of deliveries committed
	 * before it (the fan queue). */
	if ((t->committed >= t->version || bk.engine->linear_tasks) &&
	    !fanq_busy()) {
		bk_complete(done, &r);
	} else {
		struct bk_done d = carry(done, &r);
		fanq_sync(&d);
	}
	free(text);
	sb_free(&snap);
}

void tasks_unsubscribe(struct session *s, const char *id,
		       const struct bk_done *done)
{
	struct task *t = task_find(id);
	struct bk_result r = {.status = BK_OK, .name = id};

	/* Every subscription of s to t, of either kind. */
	for (int i = 0; t && i < t->nsubs;) {
		if (t->subs[i].s == s)
			sub_remove(t, i);
		else
			i++;
	}
	bk_complete(done, &r);
}

void tasks_unsubscribe_all(struct session *s)
{
	while (s->nsubs > 0) {
		struct task *t = s->subs[0];
		int i;
		for (i = 0; i < t->nsubs && t->subs[i].s != s; i++)
			;
		if (i < t->nsubs)
			sub_remove(t, i);
		else
			s->subs[0] = s->subs[--s->nsubs];
	}
	free(s->subs);
	s->subs = NULL;
	s->capsubs = 0;
}

/*
 * A few at a time from the heads of the lists (oldest first), so a call
 * costs O(batch) whatever the number of tasks: finished tasks past
 * --task-retention, unfinished ones untouched for --task-idle-retention,
 * and finished ones over --max-tasks (when it was lowered).
 */
void tasks_prune(int64_t now)
{
	const struct config *cfg = bk.cfg;
	int n = 0;

	while (n < TASK_PRUNE_BATCH && done_list &&
	       (int)HASH_COUNT(bk.tasks) > cfg->max_tasks) {
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

size_t tasks_count(void)
{
	return HASH_COUNT(bk.tasks);
}

int tasks_exists(const char *id)
{
	return task_find(id) != NULL;
}
