/*
 * Read-only SQL for operators: POST /admin/sql and `basestation sql`.
 *
 * Read-only by construction: a separate SQLITE_OPEN_READONLY connection,
 * PRAGMA query_only, an authorizer that allows reads only, exactly one
 * statement, sqlite3_stmt_readonly(), a time limit (progress handler) and a
 * row limit.
 */
#ifndef BASESTATION_INSPECT_H
#define BASESTATION_INSPECT_H

#include <jansson.h>
#include <stdio.h>

/* Used when lim is NULL or a field of it is <= 0 (0 for max_sql). */
#define INSPECT_DEFAULT_MAX_ROWS 1000
#define INSPECT_DEFAULT_TIME_MS	 2000
#define INSPECT_DEFAULT_MAX_SQL	 65536

struct inspect_limits {
	int max_rows;	/* rows beyond this are cut and truncated=true */
	int time_ms;	/* statement is interrupted after this */
	size_t max_sql; /* bytes of SQL text */
};

/*
 * Run one read-only statement against the database at db_path. params is
 * NULL, a JSON array (positional ?1..) or an object (named :name / @name /
 * $name). On success returns a new object
 *   {"columns":[names],"rows":[[...]],"truncated":bool,"elapsed_ms":n}
 * (integers as JSON integers, reals as reals, text as strings, blobs as
 * {"$blob":"<hex>"} , NULL as null). On failure returns NULL and writes a
 * one-line reason to err (e.g. "not authorized: INSERT", "only one
 * statement allowed", "interrupted: time limit 2000 ms").
 */
json_t *inspect_query(const char *db_path, const char *sql, json_t *params,
		      const struct inspect_limits *lim, char *err,
		      size_t errsz);

/* Print a result of inspect_query as an aligned text table (psql-like,
 * with a "(N rows)" footer and "(truncated)" when cut). */
void inspect_print_table(FILE *f, const json_t *result);

#endif
