/*
 * Read-only SQL for operators (see inspect.h). Layers, each sufficient on
 * its own for the common cases:
 *   1. a fresh SQLITE_OPEN_READONLY connection, PRAGMA query_only=ON,
 *      SQLITE_DBCONFIG_DEFENSIVE, no extension loading, no ATTACH;
 *   2. an authorizer that allows reads only (allowlist);
 *   3. exactly one statement, and sqlite3_stmt_readonly();
 *   4. a time limit (a watchdog thread that interrupts the statement, a
 *      progress handler, and checks between values), a row limit and a
 *      byte limit on the result, counted while rows are read, with
 *      SQLITE_LIMIT_LENGTH bounding any single value to that budget.
 */
#include "basestation/inspect.h"
#include "basestation/ws.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#define INSPECT_BUSY_MS	     1000
#define INSPECT_PROGRESS_OPS 1000

struct auth_ctx {
	char denied[96]; /* first denied action, "" if none */
	bool saw_select;
	bool pragma_query; /* statement is a read-only form of a pragma whose
			      VM is not flagged read-only (journal_mode) */
};

/*
 * The time limit, three ways, since none is enough alone:
 *  - a watchdog thread calls sqlite3_interrupt() at the deadline, which the
 *    VM honours at its next jump, however few opcodes a row takes (a row
 *    of one expensive function call is a handful of opcodes);
 *  - the progress handler reads the clock every INSPECT_PROGRESS_OPS
 *    opcodes: the first sqlite3_step() of a statement clears a pending
 *    interrupt, so one that lands just before it would otherwise be lost;
 *  - the row loop checks between values, so copying and encoding them is
 *    bounded too.
 * A single call that SQLite cannot interrupt (one function over a long
 * value) is bounded by SQLITE_LIMIT_LENGTH: its inputs and output are at
 * most the byte budget. The HTTP side answers at 1.25x the limit whatever
 * the worker does (admin.c).
 */
struct deadline {
	int64_t at_ns;
	atomic_bool fired;
	sqlite3 *db;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop;
	pthread_t thread;
};

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((format(printf, 3, 4))) static void
set_err(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errsz == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

/* ---- authorizer ---- */

static bool name_in(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcasecmp(name, *list) == 0)
			return true;
	return false;
}

/* Introspection pragmas whose argument is a table/index name. */
static const char *const pragmas_with_arg[] = {
	"table_info",  "table_xinfo",	   "index_list", "index_info",
	"index_xinfo", "foreign_key_list", "table_list", NULL,
};

/* Pragmas allowed only in their query form (no value). */
static const char *const pragmas_query[] = {
	"user_version",	   "schema_version",
	"application_id",  "page_count",
	"page_size",	   "freelist_count",
	"journal_mode",	   "encoding",
	"compile_options", "function_list",
	"module_list",	   "pragma_list",
	"collation_list",  NULL,
};

/* Functions with side effects or reach outside the database. */
static const char *const functions_denied[] = {
	"load_extension",
	"readfile",
	"writefile",
	"edit",
	"fts3_tokenizer",
	"fts5",
	"eval",
	"icu_load_collation",
	"lsdir",
	"sqlite_dbdata_ptr",
	NULL,
};

static const char *const functions_sqlite_allowed[] = {
	"sqlite_version",
	"sqlite_source_id",
	"sqlite_compileoption_used",
	"sqlite_compileoption_get",
	NULL,
};

static const char *action_name(int action)
{
	switch (action) {
	case SQLITE_CREATE_INDEX:
		return "CREATE INDEX";
	case SQLITE_CREATE_TABLE:
		return "CREATE TABLE";
	case SQLITE_CREATE_TEMP_INDEX:
		return "CREATE TEMP INDEX";
	case SQLITE_CREATE_TEMP_TABLE:
		return "CREATE TEMP TABLE";
	case SQLITE_CREATE_TEMP_TRIGGER:
		return "CREATE TEMP TRIGGER";
	case SQLITE_CREATE_TEMP_VIEW:
		return "CREATE TEMP VIEW";
	case SQLITE_CREATE_TRIGGER:
		return "CREATE TRIGGER";
	case SQLITE_CREATE_VIEW:
		return "CREATE VIEW";
	case SQLITE_DELETE:
		return "DELETE";
	case SQLITE_DROP_INDEX:
		return "DROP INDEX";
	case SQLITE_DROP_TABLE:
		return "DROP TABLE";
	case SQLITE_DROP_TEMP_INDEX:
		return "DROP TEMP INDEX";
	case SQLITE_DROP_TEMP_TABLE:
		return "DROP TEMP TABLE";
	case SQLITE_DROP_TEMP_TRIGGER:
		return "DROP TEMP TRIGGER";
	case SQLITE_DROP_TEMP_VIEW:
		return "DROP TEMP VIEW";
	case SQLITE_DROP_TRIGGER:
		return "DROP TRIGGER";
	case SQLITE_DROP_VIEW:
		return "DROP VIEW";
	case SQLITE_INSERT:
		return "INSERT";
	case SQLITE_PRAGMA:
		return "PRAGMA";
	case SQLITE_READ:
		return "READ";
	case SQLITE_SELECT:
		return "SELECT";
	case SQLITE_TRANSACTION:
		return "TRANSACTION";
	case SQLITE_UPDATE:
		return "UPDATE";
	case SQLITE_ATTACH:
		return "ATTACH";
	case SQLITE_DETACH:
		return "DETACH";
	case SQLITE_ALTER_TABLE:
		return "ALTER TABLE";
	case SQLITE_REINDEX:
		return "REINDEX";
	case SQLITE_ANALYZE:
		return "ANALYZE";
	case SQLITE_CREATE_VTABLE:
		return "CREATE VIRTUAL TABLE";
	case SQLITE_DROP_VTABLE:
		return "DROP VIRTUAL TABLE";
	case SQLITE_FUNCTION:
		return "FUNCTION";
	case SQLITE_SAVEPOINT:
		return "SAVEPOINT";
	case SQLITE_RECURSIVE:
		return "RECURSIVE";
	default:
		return "UNKNOWN";
	}
}

static bool function_allowed(const char *fn)
{
	if (fn == NULL)
		return false;
	if (strncasecmp(fn, "sqlite_", 7) == 0)
		return name_in(fn, functions_sqlite_allowed);
	return !name_in(fn, functions_denied);
}

static bool pragma_allowed(struct auth_ctx *c, const char *name,
			   const char *arg)
{
	if (name == NULL)
		return false;
	if (name_in(name, pragmas_with_arg))
		return true;
	if (arg == NULL && name_in(name, pragmas_query)) {
		if (strcasecmp(name, "journal_mode") == 0)
			c->pragma_query = true;
		return true;
	}
	return false;
}

static bool is_schema_table(const char *name)
{
	static const char *const names[] = {
		"sqlite_master",
		"sqlite_temp_master",
		"sqlite_schema",
		"sqlite_temp_schema",
		NULL,
	};

	return name != NULL && name_in(name, names);
}

static int authorize(void *arg, int action, const char *a3, const char *a4,
		     const char *db, const char *trigger)
{
	struct auth_ctx *c = arg;
	bool ok;

	(void)trigger;
	switch (action) {
	case SQLITE_SELECT:
		c->saw_select = true;
		ok = true;
		break;
	case SQLITE_READ:
	case SQLITE_RECURSIVE:
		ok = true;
		break;
	case SQLITE_FUNCTION:
		ok = function_allowed(a4);
		break;
	case SQLITE_PRAGMA:
		ok = pragma_allowed(c, a3, a4);
		break;
	case SQLITE_UPDATE:
		/* SQLite 3.40 reports an UPDATE of sqlite_master while it
		 * declares an eponymous virtual table (json_each, pragma_*,
		 * dbstat) for the first time on a connection, inside a
		 * SELECT. Nothing is written: that code is never run, a real
		 * UPDATE of sqlite_master is refused by SQLite itself, and
		 * the statement must still pass sqlite3_stmt_readonly(). */
		ok = c->saw_select && a3 != NULL &&
		     strcasecmp(a3, "sqlite_master") == 0 && db != NULL &&
		     strcmp(db, "main") == 0;
		break;
	default:
		ok = false;
		break;
	}
	if (ok)
		return SQLITE_OK;
	if (c->denied[0] == '\0') {
		/* CREATE/DROP/ANALYZE are first checked as a write of the
		 * schema table, and SQLite stops at the first denial */
		if ((action == SQLITE_INSERT || action == SQLITE_UPDATE ||
		     action == SQLITE_DELETE) &&
		    is_schema_table(a3))
			snprintf(c->denied, sizeof(c->denied), "schema change");
		else if (action == SQLITE_PRAGMA || action == SQLITE_FUNCTION)
			snprintf(c->denied, sizeof(c->denied), "%s %s",
				 action_name(action),
				 action == SQLITE_PRAGMA ? (a3 ? a3 : "?")
							 : (a4 ? a4 : "?"));
		else
			snprintf(c->denied, sizeof(c->denied), "%s",
				 action_name(action));
	}
	return SQLITE_DENY;
}

/* ---- time limit ---- */

static bool deadline_passed(struct deadline *d)
{
	if (atomic_load(&d->fired))
		return true;
	if (mono_ns() < d->at_ns)
		return false;
	atomic_store(&d->fired, true);
	return true;
}

static int progress(void *arg)
{
	return deadline_passed(arg);
}

static void *watchdog(void *arg)
{
	struct deadline *d = arg;
	struct timespec at = {.tv_sec = (time_t)(d->at_ns / 1000000000),
			      .tv_nsec = (long)(d->at_ns % 1000000000)};
	int rc = 0;

	pthread_mutex_lock(&d->mu);
	while (!d->stop && rc == 0) /* 0: signalled or spurious */
		rc = pthread_cond_timedwait(&d->cv, &d->mu, &at);
	if (!d->stop) {
		atomic_store(&d->fired, true);
		/* under mu: deadline_stop() waits for it before the
		 * connection is closed */
		sqlite3_interrupt(d->db);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Arm the watchdog for db. 0 ok, -1 (nothing to stop) on failure. */
static int deadline_start(struct deadline *d, sqlite3 *db)
{
	pthread_condattr_t ca;
	int rc;

	d->db = db;
	d->stop = false;
	if (pthread_condattr_init(&ca) != 0)
		return -1;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return -1;
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		pthread_cond_destroy(&d->cv);
		return -1;
	}
	if (pthread_create(&d->thread, NULL, watchdog, d) != 0) {
		pthread_mutex_destroy(&d->mu);
		pthread_cond_destroy(&d->cv);
		return -1;
	}
	return 0;
}

/* Disarm and join the watchdog; after this nothing touches d->db. */
static void deadline_stop(struct deadline *d)
{
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
	pthread_join(d->thread, NULL);
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
}

/* ---- statement checks and parameters ---- */

/* 1 if p holds only whitespace, semicolons and comments. */
static int tail_is_empty(const char *p)
{
	for (;;) {
		if (*p == '\0')
			return 1;
		if (*p == ';' || *p == ' ' || (*p >= '\t' && *p <= '\r')) {
			p++;
		} else if (p[0] == '-' && p[1] == '-') {
			p = strchr(p, '\n');
			if (p == NULL)
				return 1;
		} else if (p[0] == '/' && p[1] == '*') {
			p = strstr(p + 2, "*/");
			if (p == NULL)
				return 1; /* unterminated: comment to the end */
			p += 2;
		} else {
			return 0;
		}
	}
}

static int bind_value(sqlite3_stmt *st, int idx, const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_NULL:
		return sqlite3_bind_null(st, idx);
	case JSON_TRUE:
		return sqlite3_bind_int(st, idx, 1);
	case JSON_FALSE:
		return sqlite3_bind_int(st, idx, 0);
	case JSON_INTEGER:
		return sqlite3_bind_int64(st, idx, json_integer_value(v));
	case JSON_REAL:
		return sqlite3_bind_double(st, idx, json_real_value(v));
	case JSON_STRING:
		return sqlite3_bind_text64(st, idx, json_string_value(v),
					   json_string_length(v),
					   SQLITE_TRANSIENT, SQLITE_UTF8);
	case JSON_OBJECT:
	case JSON_ARRAY:
		break;
	}
	return SQLITE_MISMATCH;
}

/* Index of the named parameter key: as given if it starts with ':', '@' or
 * '$', else tried with each of those prefixes. 0 if none. */
static int named_index(sqlite3_stmt *st, const char *key)
{
	static const char prefixes[] = ":@$";
	char buf[256];
	size_t len = strlen(key);
	int i, idx;

	if (len == 0)
		return 0;
	if (strchr(prefixes, key[0]) != NULL)
		return sqlite3_bind_parameter_index(st, key);
	if (len + 2 > sizeof(buf))
		return 0;
	memcpy(buf + 1, key, len + 1);
	for (i = 0; prefixes[i] != '\0'; i++) {
		buf[0] = prefixes[i];
		idx = sqlite3_bind_parameter_index(st, buf);
		if (idx > 0)
			return idx;
	}
	return 0;
}

static int bind_params(sqlite3_stmt *st, json_t *params, char *err,
		       size_t errsz)
{
	int n = sqlite3_bind_parameter_count(st);
	const char *key, *name;
	bool *bound = NULL;
	json_t *v;
	size_t i;
	int idx, rc = -1;

	if (params == NULL || json_is_null(params)) {
		if (n > 0) {
			set_err(err, errsz,
				"statement has %d parameter(s), none given", n);
			return -1;
		}
		return 0;
	}
	if (json_is_array(params)) {
		if (json_array_size(params) != (size_t)n) {
			set_err(err, errsz,
				"statement has %d parameter(s), %zu given", n,
				json_array_size(params));
			return -1;
		}
		json_array_foreach(params, i, v)
		{
			if (bind_value(st, (int)i + 1, v) != SQLITE_OK) {
				set_err(err, errsz,
					"parameter %zu: unsupported value",
					i + 1);
				return -1;
			}
		}
		return 0;
	}
	if (!json_is_object(params)) {
		set_err(err, errsz, "params must be an array or an object");
		return -1;
	}

	bound = calloc((size_t)n + 1, sizeof(*bound));
	if (bound == NULL) {
		set_err(err, errsz, "out of memory");
		return -1;
	}
	json_object_foreach(params, key, v)
	{
		idx = named_index(st, key);
		if (idx <= 0) {
			set_err(err, errsz, "no such parameter: %s", key);
			goto fail;
		}
		if (bind_value(st, idx, v) != SQLITE_OK) {
			set_err(err, errsz, "parameter %s: unsupported value",
				key);
			goto fail;
		}
		bound[idx] = true;
	}
	for (idx = 1; idx <= n; idx++) {
		if (bound[idx])
			continue;
		name = sqlite3_bind_parameter_name(st, idx);
		if (name == NULL || name[0] == '?')
			set_err(err, errsz,
				"positional parameter ?%d needs an array of "
				"params",
				idx);
		else
			set_err(err, errsz, "missing parameter: %s", name);
		goto fail;
	}
	rc = 0;
fail:
	free(bound);
	return rc;
}

/* ---- values ---- */

/* Length of the valid UTF-8 sequence at s (n > 0 bytes left), 0 if
 * invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	return ws_utf8_decode(s, n, &cp);
}

/* A JSON string of text that may not be valid UTF-8 (each invalid byte
 * becomes U+FFFD). */
static json_t *text_value(const unsigned char *s, size_t n)
{
	json_t *j = json_stringn((const char *)s, n);
	unsigned char *buf;
	size_t i = 0, o = 0, k;

	if (j != NULL || s == NULL)
		return j;
	buf = malloc(n * 3 + 1);
	if (buf == NULL)
		return NULL;
	while (i < n) {
		k = utf8_seq(s + i, n - i);
		if (k == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(buf + o, s + i, k);
			o += k;
			i += k;
		}
	}
	j = json_stringn((const char *)buf, o);
	free(buf);
	return j;
}

static json_t *blob_value(const unsigned char *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	json_t *j;
	char *buf;
	size_t i;

	buf = malloc(n * 2 + 1);
	if (buf == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		buf[2 * i] = hex[b[i] >> 4];
		buf[2 * i + 1] = hex[b[i] & 0x0f];
	}
	buf[2 * n] = '\0';
	j = json_pack("{s:s%}", "$blob", buf, n * 2);
	free(buf);
	return j;
}

static json_t *column_value(sqlite3_stmt *st, int i)
{
	double d;

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return json_integer(sqlite3_column_int64(st, i));
	case SQLITE_FLOAT:
		d = sqlite3_column_double(st, i);
		if (isfinite(d))
			return json_real(d);
		/* JSON has no infinities (SQLite stores no NaN) */
		return json_string(d > 0 ? "Infinity" : "-Infinity");
	case SQLITE_TEXT:
		return text_value(sqlite3_column_text(st, i),
				  (size_t)sqlite3_column_bytes(st, i));
	case SQLITE_BLOB:
		return blob_value(sqlite3_column_blob(st, i),
				  (size_t)sqlite3_column_bytes(st, i));
	default:
		return json_null();
	}
}

/* The fewest bytes column i's value takes in the result text, known
 * before it is copied: text is quoted, a blob is {"$blob":"<hex>"}. */
static size_t value_min_bytes(sqlite3_stmt *st, int i)
{
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_TEXT:
		return (size_t)sqlite3_column_bytes(st, i) + 2;
	case SQLITE_BLOB:
		return 2 * (size_t)sqlite3_column_bytes(st, i) + 12;
	default:
		return 1;
	}
}

/* ---- result text ---- */

/* The result being written; it never holds more than max bytes. */
struct out {
	char *p;
	size_t n, cap, max;
	int status; /* 0, or 413 / 500 once an append failed */
};

static int out_add(struct out *o, const char *s, size_t n)
{
	size_t want, cap;
	char *p;

	if (o->status != 0)
		return -1;
	if (n > o->max - o->n) {
		o->status = 413;
		return -1;
	}
	want = o->n + n + 1;
	if (want > o->cap) {
		cap = o->cap * 2 > 4096 ? o->cap * 2 : 4096;
		if (cap < want)
			cap = want;
		if (cap > o->max + 1)
			cap = o->max + 1;
		p = realloc(o->p, cap);
		if (p == NULL) {
			o->status = 500;
			return -1;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->n, s, n);
	o->n += n;
	o->p[o->n] = '\0';
	return 0;
}

static int out_lit(struct out *o, const char *s)
{
	return out_add(o, s, strlen(s));
}

static int out_cb(const char *buf, size_t size, void *data)
{
	return out_add(data, buf, size);
}

/* Append v (stolen) as compact JSON, written straight into o. */
static int out_json(struct out *o, json_t *v)
{
	int rc = -1;

	if (v == NULL) {
		if (o->status == 0)
			o->status = 500;
	} else if (json_dump_callback(v, out_cb, o,
				      JSON_COMPACT | JSON_ENCODE_ANY) == 0) {
		rc = 0;
	} else if (o->status == 0) {
		o->status = 500;
	}
	json_decref(v);
	return rc;
}

/* ---- query ---- */

static sqlite3 *open_readonly(const char *db_path, int time_ms,
			      size_t max_bytes, char *err, size_t errsz)
{
	sqlite3 *db = NULL;
	int rc;

	rc = sqlite3_open_v2(db_path, &db,
			     SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		set_err(err, errsz, "cannot open database: %s",
			db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(db, time_ms < INSPECT_BUSY_MS ? time_ms
							   : INSPECT_BUSY_MS);
	if (sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0,
			      NULL) != SQLITE_OK ||
	    sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) !=
		    SQLITE_OK ||
	    sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL) !=
		    SQLITE_OK) {
		set_err(err, errsz, "cannot configure database connection");
		goto fail;
	}
	sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
	/* No string or blob (nor a row SQLite builds to sort or group) may
	 * be larger than the whole result may be: zeroblob(1e9) fails at
	 * once with SQLITE_TOOBIG instead of allocating, and one function
	 * call, which nothing interrupts, works on bounded values. */
	sqlite3_limit(db, SQLITE_LIMIT_LENGTH,
		      max_bytes < INT_MAX ? (int)max_bytes : INT_MAX);
	if (sqlite3_exec(db, "PRAGMA query_only=ON", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		set_err(err, errsz, "cannot configure database connection: %s",
			sqlite3_errmsg(db));
		goto fail;
	}
	return db;
fail:
	sqlite3_close(db);
	return NULL;
}

/* The limits with the defaults filled in. */
static struct inspect_limits limits_of(const struct inspect_limits *lim)
{
	struct inspect_limits l = {
		.max_rows = INSPECT_DEFAULT_MAX_ROWS,
		.time_ms = INSPECT_DEFAULT_TIME_MS,
		.max_sql = INSPECT_DEFAULT_MAX_SQL,
		.max_bytes = INSPECT_DEFAULT_MAX_BYTES,
	};

	if (lim != NULL) {
		if (lim->max_rows > 0)
			l.max_rows = lim->max_rows;
		if (lim->time_ms > 0)
			l.time_ms = lim->time_ms;
		if (lim->max_sql > 0)
			l.max_sql = lim->max_sql;
		if (lim->max_bytes > 0)
			l.max_bytes = lim->max_bytes;
	}
	return l;
}

/* Compile sql on db into *st and check it is one read-only statement.
 * 0 ok, else 400 with err. */
static int prepare_checked(sqlite3 *db, const char *sql, size_t sqllen,
			   struct auth_ctx *actx, struct deadline *dl,
			   int time_ms, sqlite3_stmt **st, char *err,
			   size_t errsz)
{
	const char *tail = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, (int)sqllen, st, &tail);
	if (rc != SQLITE_OK) {
		if (actx->denied[0] != '\0')
			set_err(err, errsz, "not authorized: %s", actx->denied);
		else if (atomic_load(&dl->fired))
			set_err(err, errsz, "interrupted: time limit %d ms",
				time_ms);
		else
			set_err(err, errsz, "%s", sqlite3_errmsg(db));
		return 400;
	}
	if (*st == NULL) {
		set_err(err, errsz, "empty statement");
		return 400;
	}
	if (actx->denied[0] != '\0') { /* a denial always fails prepare */
		set_err(err, errsz, "not authorized: %s", actx->denied);
		return 400;
	}
	if (tail != NULL && !tail_is_empty(tail)) {
		set_err(err, errsz, "only one statement allowed");
		return 400;
	}
	if (!sqlite3_stmt_readonly(*st) && !actx->pragma_query) {
		set_err(err, errsz,
			"not authorized: statement is not read-only");
		return 400;
	}
	return 0;
}

/* Step st and write {"columns":…,"rows":[…],"truncated":…,"elapsed_ms":…}
 * and a newline into o, checking the time and byte limits between values.
 * 200, or 400 / 413 / 500 with err. */
static int write_result(sqlite3 *db, sqlite3_stmt *st,
			const struct inspect_limits *l, struct deadline *dl,
			int64_t start, struct out *o, char *err, size_t errsz)
{
	int ncol = sqlite3_column_count(st), nrows = 0, i, rc;
	json_t *columns = json_array();
	bool truncated = false;
	const char *name;
	char tail[96];

	for (i = 0; columns != NULL && i < ncol; i++) {
		name = sqlite3_column_name(st, i);
		if (name == NULL ||
		    json_array_append_new(
			    columns, text_value((const unsigned char *)name,
						strlen(name))) != 0) {
			json_decref(columns);
			columns = NULL;
		}
	}
	if (out_lit(o, "{\"columns\":") < 0 || out_json(o, columns) < 0 ||
	    out_lit(o, ",\"rows\":[") < 0)
		goto fail;
	for (;;) {
		if (deadline_passed(dl))
			goto late;
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			if (rc == SQLITE_INTERRUPT || deadline_passed(dl))
				goto late;
			if (rc == SQLITE_TOOBIG) {
				o->status = 413;
				goto fail;
			}
			set_err(err, errsz, "%s", sqlite3_errmsg(db));
			return rc == SQLITE_NOMEM ? 500 : 400;
		}
		if (nrows >= l->max_rows) {
			truncated = true;
			break;
		}
		if (out_lit(o, nrows++ ? ",[" : "[") < 0)
			goto fail;
		for (i = 0; i < ncol; i++) {
			if (deadline_passed(dl))
				goto late;
			if (value_min_bytes(st, i) + 1 > o->max - o->n) {
				o->status = 413; /* not even copied */
				goto fail;
			}
			if ((i > 0 && out_lit(o, ",") < 0) ||
			    out_json(o, column_value(st, i)) < 0)
				goto fail;
		}
		if (out_lit(o, "]") < 0)
			goto fail;
	}
	snprintf(tail, sizeof(tail),
		 "],\"truncated\":%s,\"elapsed_ms\":%lld}\n",
		 truncated ? "true" : "false",
		 (long long)((mono_ns() - start) / 1000000));
	if (out_lit(o, tail) < 0)
		goto fail;
	return 200;
late:
	set_err(err, errsz, "interrupted: time limit %d ms", l->time_ms);
	return 400;
fail:
	if (o->status == 413)
		set_err(err, errsz, "result too large: more than %zu bytes",
			l->max_bytes);
	else
		set_err(err, errsz, "out of memory");
	return o->status == 413 ? 413 : 500;
}

char *inspect_query_text(const char *db_path, const char *sql, json_t *params,
			 const struct inspect_limits *lim, size_t *len,
			 int *status, char *err, size_t errsz)
{
	struct inspect_limits l = limits_of(lim);
	struct auth_ctx actx = {0};
	struct deadline dl = {0};
	struct out o = {0};
	int64_t start = mono_ns();
	bool armed = false;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	size_t sqllen;
	int code = 400;

	set_err(err, errsz, "%s", "");
	if (len != NULL)
		*len = 0;
	if (db_path == NULL || sql == NULL) {
		set_err(err, errsz, "no database or no statement");
		goto out;
	}
	sqllen = strlen(sql);
	if (sqllen > l.max_sql || sqllen > INT32_MAX) {
		set_err(err, errsz, "statement too long (max %zu bytes)",
			l.max_sql);
		goto out;
	}
	if (tail_is_empty(sql)) {
		set_err(err, errsz, "empty statement");
		goto out;
	}

	db = open_readonly(db_path, l.time_ms, l.max_bytes, err, errsz);
	if (db == NULL)
		goto out;
	if (sqlite3_set_authorizer(db, authorize, &actx) != SQLITE_OK) {
		set_err(err, errsz, "cannot install authorizer");
		goto out;
	}
	dl.at_ns = start + (int64_t)l.time_ms * 1000000;
	sqlite3_progress_handler(db, INSPECT_PROGRESS_OPS, progress, &dl);
	if (deadline_start(&dl, db) < 0) {
		set_err(err, errsz, "cannot start the query's watchdog");
		code = 500;
		goto out;
	}
	armed = true;

	code = prepare_checked(db, sql, sqllen, &actx, &dl, l.time_ms, &st, err,
			       errsz);
	if (code != 0)
		goto out;
	code = 400;
	if (bind_params(st, params, err, errsz) != 0)
		goto out;
	o.max = l.max_bytes;
	code = write_result(db, st, &l, &dl, start, &o, err, errsz);
out:
	if (armed)
		deadline_stop(&dl);
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (status != NULL)
		*status = code;
	if (code != 200) {
		free(o.p);
		return NULL;
	}
	set_err(err, errsz, "%s", "");
	if (len != NULL)
		*len = o.n;
	return o.p;
}

json_t *inspect_query(const char *db_path, const char *sql, json_t *params,
		      const struct inspect_limits *lim, char *err, size_t errsz)
{
	size_t len = 0;
	int status = 0;
	char *text = inspect_query_text(db_path, sql, params, lim, &len,
					&status, err, errsz);
	json_t *r;

	if (text == NULL)
		return NULL;
	r = json_loadb(text, len, 0, NULL);
	free(text);
	if (r == NULL)
		set_err(err, errsz, "out of memory");
	return r;
}

/* ---- text table ---- */

enum { ALIGN_LEFT, ALIGN_RIGHT };

/* Display form of a value: control characters escaped, so that data
 * cannot move the cursor or inject terminal escapes. Caller frees. */
static char *cell_text(const json_t *v, int *align)
{
	char num[64], *out, *p;
	const char *s;
	size_t n, i;
	unsigned char c;

	*align = ALIGN_LEFT;
	switch (json_typeof(v)) {
	case JSON_NULL:
		return strdup("");
	case JSON_TRUE:
		return strdup("true");
	case JSON_FALSE:
		return strdup("false");
	case JSON_INTEGER:
		*align = ALIGN_RIGHT;
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		return strdup(num);
	case JSON_REAL:
		*align = ALIGN_RIGHT;
		snprintf(num, sizeof(num), "%.15g", json_real_value(v));
		if (strtod(num, NULL) != json_real_value(v))
			snprintf(num, sizeof(num), "%.17g", json_real_value(v));
		return strdup(num);
	case JSON_OBJECT:
		s = json_string_value(json_object_get(v, "$blob"));
		if (s != NULL) {
			out = malloc(strlen(s) + 4);
			if (out != NULL)
				sprintf(out, "x'%s'", s);
			return out;
		}
		return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	case JSON_ARRAY:
		return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	case JSON_STRING:
		break;
	}

	s = json_string_value(v);
	n = json_string_length(v);
	out = malloc(n * 4 + 1);
	if (out == NULL)
		return NULL;
	p = out;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '\n') {
			*p++ = '\\';
			*p++ = 'n';
		} else if (c == '\t') {
			*p++ = '\\';
			*p++ = 't';
		} else if (c < 0x20 || c == 0x7f) {
			p += sprintf(p, "\\x%02x", c);
		} else if (c == 0xc2 && i + 1 < n &&
			   (unsigned char)s[i + 1] < 0xa0) {
			/* C1 control U+0080..U+009F */
			p += sprintf(p, "\\x%02x", (unsigned char)s[++i]);
		} else {
			*p++ = (char)c;
		}
	}
	*p = '\0';
	return out;
}

/* Width in columns: code points (no East Asian width handling). */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

static void put_cell(FILE *f, const char *s, size_t width, int align, bool last)
{
	size_t w = text_width(s), pad = width > w ? width - w : 0;

	if (align == ALIGN_RIGHT)
		fprintf(f, " %*s%s", (int)pad, "", s);
	else if (last)
		fprintf(f, " %s", s);
	else
		fprintf(f, " %s%*s", s, (int)pad, "");
	if (!last)
		fputs(" |", f);
}

void inspect_print_table(FILE *f, const json_t *result)
{
	const json_t *columns = json_object_get(result, "columns");
	const json_t *rows = json_object_get(result, "rows");
	size_t ncol = json_array_size(columns), nrow = json_array_size(rows);
	size_t *width = NULL, r, c, k;
	char **cells = NULL;
	int *align = NULL;
	const char *name;
	bool last;

	if (f == NULL || !json_is_array(columns) || !json_is_array(rows))
		return;
	width = calloc(ncol + 1, sizeof(*width));
	align = calloc((ncol + 1) * (nrow + 1), sizeof(*align));
	cells = calloc((ncol + 1) * (nrow + 1), sizeof(*cells));
	if (width == NULL || align == NULL || cells == NULL)
		goto out;

	for (c = 0; c < ncol; c++) {
		name = json_string_value(json_array_get(columns, c));
		width[c] = text_width(name ? name : "");
	}
	for (r = 0; r < nrow; r++) {
		for (c = 0; c < ncol; c++) {
			k = r * ncol + c;
			cells[k] = cell_text(
				json_array_get(json_array_get(rows, r), c),
				&align[k]);
			if (cells[k] == NULL)
				goto out;
			if (text_width(cells[k]) > width[c])
				width[c] = text_width(cells[k]);
		}
	}

	for (c = 0; c < ncol; c++) {
		name = json_string_value(json_array_get(columns, c));
		put_cell(f, name ? name : "", width[c], ALIGN_LEFT,
			 c + 1 == ncol);
	}
	if (ncol > 0)
		fputc('\n', f);
	for (c = 0; c < ncol; c++) {
		for (k = 0; k < width[c] + 2; k++)
			fputc('-', f);
		if (c + 1 < ncol)
			fputc('+', f);
	}
	if (ncol > 0)
		fputc('\n', f);
	for (r = 0; r < nrow; r++) {
		for (c = 0; c < ncol; c++) {
			k = r * ncol + c;
			last = c + 1 == ncol;
			put_cell(f, cells[k], width[c], align[k], last);
		}
		fputc('\n', f);
	}
	fprintf(f, "(%zu row%s)\n", nrow, nrow == 1 ? "" : "s");
	if (json_is_true(json_object_get(result, "truncated")))
		fputs("(truncated)\n", f);
out:
	if (cells != NULL)
		for (k = 0; k < ncol * nrow; k++)
			free(cells[k]);
	free(cells);
	free(align);
	free(width);
}
