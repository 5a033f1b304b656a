/*
 * WAL checkpoints for the store: a thread with a connection of its own, so
 * that the loop's COMMIT never pays for copying the log into the database,
 * and a bound on the log.
 *
 * The loop's connection never checkpoints. Its wal hook sees the length of
 * the log after every commit and wakes the thread each time the log has
 * grown by WAL_KICK_BYTES; the thread also wakes every WAL_TIMER_MS. A pass:
 *
 *  1. PASSIVE: copies what it can; never blocks the writer or a reader.
 *  2. When nothing was committed since the previous pass and everything is
 *     copied: TRUNCATE, which empties the file.
 *  3. Else, when the log is WAL_RESTART_BYTES or longer: PASSIVE again (at
 *     most WAL_CATCHUP_PASSES times) until no more than WAL_CATCHUP_BYTES
 *     are left to copy and a pass took less than WAL_QUICK_MS, then
 *     RESTART (when the passes did not get there, the RESTART waits for
 *     the next pass, unless the log is past twice WAL_RESTART_BYTES: then
 *     it runs anyway, the loop's wait being the price of the bound).
 *     RESTART takes the writer lock, copies the rest, fsyncs and
 *     waits for the readers of the log, so that the next commit writes from
 *     the start of the file; the loop's next write waits for all that, so
 *     the bulk is copied before. It waits up to WAL_WAIT_MS for the lock or
 *     a reader, but gives up once the loop has waited WAL_BUSY_MS for it.
 *     While it holds the lock the loop waits up to WAL_HOLD_MAX_MS rather
 *     than STORE_BUSY_MS: the copy and its fsyncs take what the disk
 *     takes, and a write failed for them would be an error the broker made
 *     for itself. After a RESTART that could not reset the log (busy), the
 *     next waits for WAL_RESTART_BYTES more.
 *
 * What each checkpoint did goes to /metrics (struct metrics_wal) and, when
 * notable, to the log (event=store.checkpoint).
 */
#ifndef BASESTATION_WAL_H
#define BASESTATION_WAL_H

#include <sqlite3.h>
#include <stdint.h>

#define WAL_TIMER_MS	   500
#define WAL_KICK_BYTES	   (4 << 20)
#define WAL_RESTART_BYTES  (16 << 20)
#define WAL_CATCHUP_BYTES  (1 << 20)
#define WAL_CATCHUP_PASSES 4
#define WAL_QUICK_MS	   50
#define WAL_BUSY_MS	   10
#define WAL_WAIT_MS	   200
#define WAL_HOLD_MAX_MS	   1000

struct wal;

/* The loop connection's busy handler: retries every 100 µs (every 1 ms
 * after the first 5 ms) and gives up budget_ms after the first retry, or
 * after WAL_HOLD_MAX_MS while the checkpointer runs a RESTART or TRUNCATE.
 * (SQLite's own sqlite3_busy_timeout sleeps 1, 2, 5, 10 ms..., so a lock
 * held for 1 ms could cost the loop 3 ms.) b must outlive the connection's
 * use of it; wal_start links it to the checkpointer. */
struct wal_busy {
	int64_t budget_us;
	int64_t start_us;
	struct wal *wal; /* set by wal_start */
};
void wal_busy_set(sqlite3 *db, struct wal_busy *b, int budget_ms);

/* Open the checkpoint connection on path, install the wal hook on the
 * loop's connection loop_db (which then no longer checkpoints by itself),
 * link loop_busy (loop_db's busy handler) to the thread and start it.
 * NULL when any of it fails: loop_db keeps SQLite's automatic checkpoints
 * then. */
struct wal *wal_start(const char *path, sqlite3 *loop_db,
		      struct wal_busy *loop_busy);
/* Stop and join the thread (a pass under way finishes first), close its
 * connection, remove the hook and the link. NULL is a no-op. */
void wal_stop(struct wal *w);

#endif
