/*
 * Read-only SQL for operators: POST /admin/sql and `basestation sql`.
 *
 * Read-only by construction: a separate SQLITE_OPEN_READONLY connection,
 * PRAGMA query_only, an authorizer that allows reads only, exactly one
 * statement, sqlite3_stmt_readonly(), a time limit (a watchdog thread that
 * interrupts the statement, and a progress handler), a row limit and a
 * limit on the bytes of the result.
 *
 * Thread-safe: a query touches nothing but its own connection and buffers,
 * so it may run on a worker thread while the event loop goes on.
 */
#ifndef BASESTATION_INSPECT_H
#define BASESTATION_INSPECT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

/* Used when lim is NULL or a field of it is <= 0 (0 for the sizes). */
#define INSPECT_DEFAULT_MAX_ROWS  1000
#define INSPECT_DEFAULT_TIME_MS	  2000
#define INSPECT_DEFAULT_MAX_SQL	  65536
#define INSPECT_DEFAULT_MAX_BYTES (16 * 1024 * 1024)

struct inspect_limits {
	int max_rows;	  /* rows beyond this are cut and truncated=true */
	int time_ms;	  /* statement is interrupted after this */
	size_t max_sql;	  /* bytes of SQL text */
	size_t max_bytes; /* bytes of the result's JSON text (newline
			     included); also the largest single value */
};

/*
 * Run one read-only statement against the database at db_path and encode
 * its result as compact JSON text followed by a newline:
 *   {"columns":[names],"rows":[[...]],"truncated":bool,"elapsed_ms":n}
 * (integers as JSON integers, reals as reals, text as strings, blobs as
 * {"$blob":"<hex>"}, NULL as null). params is NULL, a JSON array
 * (positional ?1..) or an object (named :name / @name / $name).
 *
 * The byte limit is counted while rows are read: stepping stops as soon as
 * the text would pass lim->max_bytes, and no value larger than that is
 * ever copied. The time limit bounds the whole call, the encoding too.
 *
 * Returns the text (malloc'd, NUL-terminated, *len bytes) with *status
 * 200, or NULL with *status set and a one-line reason in err:
 *   400 refused or failed ("not authorized: INSERT", "only one statement
 *       allowed", "interrupted: time limit 2000 ms", SQL errors);
 *   413 the result is larger than max_bytes;
 *   500 out of memory or no thread for the watchdog.
 */
char *inspect_query_text(const char *db_path, const char *sql, json_t *params,
			 const struct inspect_limits *lim, size_t *len,
			 int *status, char *err, size_t errsz);

/* inspect_query_text, parsed: the result object, or NULL (see err). */
json_t *inspect_query(const char *db_path, const char *sql, json_t *params,
		      const struct inspect_limits *lim, char *err,
		      size_t errsz);

/* Print a result of inspect_query as an aligned text table (psql-like,
 * with a "(N rows)" footer and "(truncated)" when cut). */
void inspect_print_table(FILE *f, const json_t *result);

#endif
