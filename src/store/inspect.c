/*
 * Read-only SQL for operators (see inspect.h). Layers, each sufficient on
 * its own for the common cases:
 *   1. a fresh SQLITE_OPEN_READONLY connection, PRAGMA query_only=ON,
 *      SQLITE_DBCONFIG_DEFENSIVE, no extension loading, no ATTACH;
 *   2. an authorizer that allows reads only (allowlist);
 *   3. exactly one statement, and sqlite3_stmt_readonly();
 *   4. a progress handler for the time limit, and a row limit.
 */
#include "basestation/inspect.h"
#include "basestation/ws.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sqlite3.h>

#define INSPECT_BUSY_MS	      1000
#define INSPECT_PROGRESS_OPS  1000
#define INSPECT_MAX_VALUE_LEN (64 * 1024 * 1024)

struct auth_ctx {
	char denied[96]; /* first denied action, "" if none */
	bool saw_select;
	bool pragma_query; /* statement is a read-only form of a pragma whose
			      VM is not flagged read-only (journal_mode) */
};

struct progress_ctx {
	int64_t deadline_ns;
	bool fired;
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

static int progress(void *arg)
{
	struct progress_ctx *p = arg;

	if (mono_ns() >= p->deadline_ns) {
		p->fired = true;
		return 1;
	}
	return 0;
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
	j = json_pack("{s:s#}", "$blob", buf, (int)(n * 2));
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

/* ---- query ---- */

static sqlite3 *open_readonly(const char *db_path, int time_ms, char *err,
			      size_t errsz)
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
	sqlite3_limit(db, SQLITE_LIMIT_LENGTH, INSPECT_MAX_VALUE_LEN);
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

json_t *inspect_query(const char *db_path, const char *sql, json_t *params,
		      const struct inspect_limits *lim, char *err, size_t errsz)
{
	struct auth_ctx actx = {0};
	struct progress_ctx pctx = {0};
	int max_rows = INSPECT_DEFAULT_MAX_ROWS,
	    time_ms = INSPECT_DEFAULT_TIME_MS;
	size_t max_sql = INSPECT_DEFAULT_MAX_SQL, sqllen;
	int64_t start = mono_ns();
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	json_t *columns = NULL, *rows = NULL, *row, *v, *result = NULL;
	const char *tail = NULL, *name;
	bool truncated = false;
	int ncol, i, rc;

	set_err(err, errsz, "%s", "");
	if (lim != NULL) {
		if (lim->max_rows > 0)
			max_rows = lim->max_rows;
		if (lim->time_ms > 0)
			time_ms = lim->time_ms;
		if (lim->max_sql > 0)
			max_sql = lim->max_sql;
	}
	if (db_path == NULL || sql == NULL) {
		set_err(err, errsz, "no database or no statement");
		return NULL;
	}
	sqllen = strlen(sql);
	if (sqllen > max_sql || sqllen > INT32_MAX) {
		set_err(err, errsz, "statement too long (max %zu bytes)",
			max_sql);
		return NULL;
	}
	if (tail_is_empty(sql)) {
		set_err(err, errsz, "empty statement");
		return NULL;
	}

	db = open_readonly(db_path, time_ms, err, errsz);
	if (db == NULL)
		return NULL;
	if (sqlite3_set_authorizer(db, authorize, &actx) != SQLITE_OK) {
		set_err(err, errsz, "cannot install authorizer");
		goto fail;
	}
	pctx.deadline_ns = start + (int64_t)time_ms * 1000000;
	sqlite3_progress_handler(db, INSPECT_PROGRESS_OPS, progress, &pctx);

	rc = sqlite3_prepare_v2(db, sql, (int)sqllen, &st, &tail);
	if (rc != SQLITE_OK) {
		if (actx.denied[0] != '\0')
			set_err(err, errsz, "not authorized: %s", actx.denied);
		else if (pctx.fired)
			set_err(err, errsz, "interrupted: time limit %d ms",
				time_ms);
		else
			set_err(err, errsz, "%s", sqlite3_errmsg(db));
		goto fail;
	}
	if (st == NULL) {
		set_err(err, errsz, "empty statement");
		goto fail;
	}
	if (actx.denied[0] != '\0') { /* a denial always fails prepare */
		set_err(err, errsz, "not authorized: %s", actx.denied);
		goto fail;
	}
	if (tail != NULL && !tail_is_empty(tail)) {
		set_err(err, errsz, "only one statement allowed");
		goto fail;
	}
	if (!sqlite3_stmt_readonly(st) && !actx.pragma_query) {
		set_err(err, errsz,
			"not authorized: statement is not read-only");
		goto fail;
	}
	if (bind_params(st, params, err, errsz) != 0)
		goto fail;

	columns = json_array();
	rows = json_array();
	if (columns == NULL || rows == NULL)
		goto nomem;
	ncol = sqlite3_column_count(st);
	for (i = 0; i < ncol; i++) {
		name = sqlite3_column_name(st, i);
		if (name == NULL)
			goto nomem;
		if (json_array_append_new(
			    columns, text_value((const unsigned char *)name,
						strlen(name))))
			goto nomem;
	}

	for (;;) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_ROW) {
			if (rc == SQLITE_INTERRUPT || pctx.fired)
				set_err(err, errsz,
					"interrupted: time limit %d ms",
					time_ms);
			else
				set_err(err, errsz, "%s", sqlite3_errmsg(db));
			goto fail;
		}
		if (json_array_size(rows) >= (size_t)max_rows) {
			truncated = true;
			break;
		}
		row = json_array();
		if (row == NULL || json_array_append_new(rows, row))
			goto nomem;
		for (i = 0; i < ncol; i++) {
			v = column_value(st, i);
			if (v == NULL || json_array_append_new(row, v))
				goto nomem;
		}
	}

	result = json_object();
	if (result == NULL || json_object_set(result, "columns", columns) ||
	    json_object_set(result, "rows", rows) ||
	    json_object_set_new(result, "truncated", json_boolean(truncated)) ||
	    json_object_set_new(result, "elapsed_ms",
				json_integer((mono_ns() - start) / 1000000)))
		goto nomem;
	set_err(err, errsz, "%s", "");
	goto out;
nomem:
	set_err(err, errsz, "out of memory");
fail:
	json_decref(result);
	result = NULL;
out:
	json_decref(columns);
	json_decref(rows);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return result;
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
