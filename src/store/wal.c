/*
 * The WAL checkpoint thread (see src/store/wal.h for the passes
 * and their bounds).
 *
 * Three facts of SQLite shape this file:
 *  - sqlite3_wal_checkpoint_v2 on a connection that has not read the
 *    database yet does nothing and says SQLITE_OK with *pnLog = -1 (the
 *    pager has not opened the log): the connection reads first, and a pass
 *    that sees -1 counts an error and reads again.
 *  - PASSIVE copies frames but never resets the log; with a writer that
 *    commits every loop turn it never catches up, so the log only grows.
 *    Only the writer's next commit after a complete checkpoint, or RESTART
 *    and TRUNCATE, start it over.
 *  - RESTART and TRUNCATE hold the writer lock while they copy, fsync and
 *    wait for readers: the loop's BEGIN waits that long, and a write fails
 *    when its busy handler gives up (STORE_BUSY_MS for a lock held by
 *    another process, WAL_HOLD_MAX_MS for ours).
 */
#include "wal.h"
#include "basestation/log.h"
#include "basestation/metrics.h"
#include "basestation/xalloc.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAL_LOG_MS 10000 /* at most one info and one warning line per */

struct wal_limit {
	int64_t last_ms;
	int suppressed;
};

struct wal {
	char *wal_path;
	sqlite3 *loop_db;
	sqlite3 *db; /* the thread's own connection */
	struct wal_busy *loop_busy;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop, kicked;     /* under lock */
	_Atomic int hold;     /* a RESTART or TRUNCATE is running */
	_Atomic int stopping; /* wal_stop: no more passes */
	/* The loop's busy handler: when its wait began, when it last ran. */
	_Atomic int64_t loop_wait_start, loop_wait_last;

	/* Loop thread only (the wal hook). */
	int kick_frames, kick_at, hook_frames;
	_Atomic uint64_t commits;
	_Atomic int frames; /* in the log after the last commit */

	/* Checkpoint thread only. */
	int wal_fd; /* read only: the header tells one log from the next */
	int64_t frame_bytes;
	int restart_frames, catchup_frames;
	int restart_at; /* frames: restart_frames, more after a busy RESTART */
	uint64_t gen;	/* header of the log the last checkpoint saw */
	int last_ckpt;
	uint64_t commits_seen;
	int64_t wait_start, wait_last; /* of ckpt_busy_cb, this checkpoint */
	int64_t last_us;	       /* how long the last checkpoint took */
	struct wal_limit info, warn;
};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void busy_sleep(int64_t waited_us)
{
	struct timespec ts = {0, waited_us < 5000 ? 100000 : 1000000};
	nanosleep(&ts, NULL);
}

static int loop_busy_cb(void *arg, int n)
{
	struct wal_busy *b = arg;
	struct wal *w = b->wal;
	int64_t now = mono_us();
	const memory_order rx = memory_order_relaxed;

	if (n == 0)
		b->start_us = now;
	if (w) {
		if (n == 0)
			atomic_store_explicit(&w->loop_wait_start, now, rx);
		atomic_store_explicit(&w->loop_wait_last, now, rx);
	}
	if (now - b->start_us >= b->budget_us &&
	    (w == NULL || !atomic_load_explicit(&w->hold, rx) ||
	     now - b->start_us >= WAL_HOLD_MAX_MS * 1000))
		return 0;
	busy_sleep(now - b->start_us);
	return 1;
}

void wal_busy_set(sqlite3 *db, struct wal_busy *b, int budget_ms)
{
	b->budget_us = (int64_t)budget_ms * 1000;
	b->start_us = 0;
	sqlite3_busy_handler(db, loop_busy_cb, b);
}

/* The checkpoint connection's: wait up to WAL_WAIT_MS (for the writer
 * lock while the loop commits, or for a reader), but not while the loop
 * has been waiting for us WAL_BUSY_MS already. */
static int ckpt_busy_cb(void *arg, int n)
{
	struct wal *w = arg;
	int64_t now = mono_us();
	const memory_order rx = memory_order_relaxed;
	int64_t last = atomic_load_explicit(&w->loop_wait_last, rx);
	int64_t since = atomic_load_explicit(&w->loop_wait_start, rx);

	if (n == 0)
		w->wait_start = now;
	w->wait_last = now;
	if (now - w->wait_start >= WAL_WAIT_MS * 1000 ||
	    (now - last < 2000 && now - since >= WAL_BUSY_MS * 1000))
		return 0;
	busy_sleep(now - w->wait_start);
	return 1;
}

/* Called by SQLite on the loop thread after every commit of loop_db with
 * the number of frames in the log. Wakes the thread every kick_frames. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct wal *w = arg;
	(void)db;
	(void)name;

	atomic_store_explicit(&metrics.wal.frames, (uint64_t)frames,
			      memory_order_relaxed);
	atomic_store_explicit(&w->frames, frames, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->commits, 1, memory_order_relaxed);
	if (frames < w->hook_frames) /* the log started over */
		w->kick_at = w->kick_frames;
	w->hook_frames = frames;
	if (frames >= w->kick_at) {
		w->kick_at = frames + w->kick_frames;
		pthread_mutex_lock(&w->lock);
		w->kicked = 1;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
	return SQLITE_OK;
}

/* Which log this is: the checkpoint sequence number and salt-1 of the
 * header, both changed whenever the log starts over; 0 when empty. */
static uint64_t wal_gen(struct wal *w)
{
	unsigned char h[8];
	uint64_t g = 0;
	if (w->wal_fd < 0 || pread(w->wal_fd, h, sizeof(h), 12) != sizeof(h))
		return 0;
	for (int i = 0; i < 8; i++)
		g = g << 8 | h[i];
	return g;
}

/* 1 when a line may go out now (and how many were held back before it in
 * *held); at most one per WAL_LOG_MS. */
static int wal_may_log(struct wal_limit *l, int *held)
{
	int64_t now = mono_us() / 1000;
	if (l->last_ms && now - l->last_ms < WAL_LOG_MS) {
		l->suppressed++;
		return 0;
	}
	*held = l->suppressed;
	l->suppressed = 0;
	l->last_ms = now;
	return 1;
}

/* Make the connection read the database, so that its pager has opened
 * the log; learn the page size. */
static int wal_read(struct wal *w)
{
	sqlite3_stmt *st = NULL;
	int pgsz = 0;
	if (sqlite3_prepare_v2(w->db, "PRAGMA page_size", -1, &st, NULL) ==
		    SQLITE_OK &&
	    sqlite3_exec(w->db, "SELECT count(*) FROM sqlite_schema", NULL,
			 NULL, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		pgsz = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (pgsz <= 0)
		return -1;
	w->frame_bytes = pgsz + 24;
	w->restart_frames = (int)(WAL_RESTART_BYTES / w->frame_bytes);
	w->restart_at = w->restart_frames;
	w->catchup_frames = (int)(WAL_CATCHUP_BYTES / w->frame_bytes);
	return 0;
}

/* Frames committed after the first ckpt ones, as the loop last saw. */
static int wal_left(struct wal *w, int ckpt)
{
	int n = atomic_load_explicit(&w->frames, memory_order_relaxed);
	return n > ckpt ? n - ckpt : 0;
}

/* One checkpoint: run it, count it, log it if notable. Returns SQLite's
 * code; *log and *ckpt are the frames in the log and those copied. */
static int wal_checkpoint(struct wal *w, int mode, int *log, int *ckpt)
{
	static const char *names[CKPT_MODES] = {"passive", "restart",
						"truncate"};
	const memory_order rx = memory_order_relaxed;
	int m = mode == SQLITE_CHECKPOINT_PASSIVE   ? CKPT_PASSIVE
		: mode == SQLITE_CHECKPOINT_RESTART ? CKPT_RESTART
						    : CKPT_TRUNCATE;
	uint64_t gen = wal_gen(w);
	int64_t t0 = mono_us(), us;
	int64_t waited;
	int rc, res, copied = 0, held;

	if (mode != SQLITE_CHECKPOINT_PASSIVE) {
		/* Restarts the handler's count (SQLite only does so for
		 * statements). */
		sqlite3_busy_handler(w->db, ckpt_busy_cb, w);
		atomic_store(&w->hold, 1);
	}
	w->wait_start = w->wait_last = 0;
	*log = *ckpt = -1;
	rc = sqlite3_wal_checkpoint_v2(w->db, "main", mode, log, ckpt);
	atomic_store(&w->hold, 0);
	us = w->last_us = mono_us() - t0;
	waited = w->wait_last - w->wait_start;
	res = rc == SQLITE_OK		   ? CKPT_OK
	      : (rc & 0xff) == SQLITE_BUSY ? CKPT_BUSY
					   : CKPT_ERROR;
	if (res == CKPT_OK && (*log < 0 || *ckpt < 0)) {
		/* The pager has no log open: nothing was done. */
		res = CKPT_ERROR;
		wal_read(w);
	}
	if (*log >= 0 && *ckpt >= 0) {
		/* *ckpt counts from the start of the log, which may be a new
		 * one since the last look; a TRUNCATE says 0 and 0 once done
		 * (it follows a PASSIVE that copied everything). */
		int base = gen == w->gen && *ckpt >= w->last_ckpt ? w->last_ckpt
								  : 0;
		copied = *ckpt - base;
		w->gen = gen;
		w->last_ckpt = *ckpt;
	}
	atomic_fetch_add_explicit(&metrics.wal.checkpoints[m][res], 1, rx);
	atomic_fetch_add_explicit(&metrics.wal.checkpoint_us[m], (uint64_t)us,
				  rx);
	atomic_fetch_add_explicit(&metrics.wal.frames_copied, (uint64_t)copied,
				  rx);

	if (res == CKPT_ERROR) {
		if (wal_may_log(&w->warn, &held))
			log_error("store.checkpoint",
				  "mode=%s result=error rc=%d wal_frames=%d "
				  "msg=\"%s\" suppressed=%d",
				  names[m], rc, *log,
				  rc == SQLITE_OK ? "no log open"
						  : sqlite3_errstr(rc),
				  held);
	} else if (m != CKPT_PASSIVE &&
		   (res == CKPT_BUSY || us >= 50000 ||
		    *log * w->frame_bytes >= 2 * WAL_RESTART_BYTES)) {
		/* The log could not be reset, or was long, or the loop waited
		 * long for the writer lock. */
		if (wal_may_log(&w->warn, &held))
			log_warn("store.checkpoint",
				 "mode=%s result=%s wal_frames=%d copied=%d "
				 "left=%d ms=%.1f waited_ms=%.1f suppressed=%d",
				 names[m], res == CKPT_OK ? "ok" : "busy", *log,
				 copied, wal_left(w, *ckpt), (double)us / 1000,
				 (double)waited / 1000, held);
	} else if (m == CKPT_RESTART) {
		if (log_min_level <= LOG_DEBUG)
			log_debug("store.checkpoint",
				  "mode=restart result=ok wal_frames=%d "
				  "copied=%d ms=%.1f waited_ms=%.1f",
				  *log, copied, (double)us / 1000,
				  (double)waited / 1000);
		else if (wal_may_log(&w->info, &held))
			log_info("store.checkpoint",
				 "mode=restart result=ok wal_frames=%d "
				 "copied=%d ms=%.1f suppressed=%d",
				 *log, copied, (double)us / 1000, held);
	} else {
		log_debug("store.checkpoint",
			  "mode=%s result=%s wal_frames=%d copied=%d left=%d "
			  "ms=%.1f",
			  names[m], res == CKPT_OK ? "ok" : "busy", *log,
			  copied, wal_left(w, *ckpt), (double)us / 1000);
	}
	return rc;
}

static void wal_pass(struct wal *w, int kicked)
{
	uint64_t commits =
		atomic_load_explicit(&w->commits, memory_order_relaxed);
	int idle = !kicked && commits == w->commits_seen;
	int log, ckpt;
	struct stat sb;

	w->commits_seen = commits;
	if (w->wal_fd < 0)
		w->wal_fd = open(w->wal_path, O_RDONLY | O_CLOEXEC);
	if (wal_checkpoint(w, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt) !=
	    SQLITE_OK)
		goto out;
	if (log < w->restart_frames) /* the log started over */
		w->restart_at = w->restart_frames;
	if (idle && log > 0 && ckpt == log) {
		/* First: a log past the bound that nobody writes to would
		 * otherwise get a RESTART (that does nothing) every pass. */
		wal_checkpoint(w, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt);
	} else if (log >= w->restart_at) {
		/* Copy the bulk without the writer lock while that gains
		 * (what is left is what the loop committed meanwhile), and
		 * again after a slow pass: its fsyncs were slow, and the
		 * RESTART's would be paid by the loop. */
		int left = wal_left(w, ckpt), was = INT_MAX;
		for (int i = 0; i < WAL_CATCHUP_PASSES &&
				((left > w->catchup_frames && left < was) ||
				 w->last_us > WAL_QUICK_MS * 1000);
		     i++) {
			/* Stopping: the last connection's close copies the
			 * rest; more passes would only add to the wait. */
			if (atomic_load(&w->stopping))
				goto out;
			was = left;
			if (wal_checkpoint(w, SQLITE_CHECKPOINT_PASSIVE, &log,
					   &ckpt) != SQLITE_OK)
				goto out;
			left = wal_left(w, ckpt);
		}
		/* Not caught up: the RESTART would copy the rest while the
		 * loop waits. Try again on the next pass, unless the log is
		 * past twice its bound: then the disk comes first. */
		if ((left > w->catchup_frames ||
		     w->last_us > WAL_QUICK_MS * 1000) &&
		    log < 2 * w->restart_frames)
			goto out;
		/* A reader that holds the log would make every try cost the
		 * loop WAL_BUSY_MS: after a busy one, wait for another
		 * WAL_RESTART_BYTES. */
		if (atomic_load(&w->stopping))
			goto out;
		if (wal_checkpoint(w, SQLITE_CHECKPOINT_RESTART, &log, &ckpt) ==
		    SQLITE_OK)
			w->restart_at = w->restart_frames;
		else if (log >= 0)
			w->restart_at = log + w->restart_frames;
	}
out:
	if (w->wal_fd >= 0 && fstat(w->wal_fd, &sb) == 0)
		atomic_store_explicit(&metrics.wal.bytes, (uint64_t)sb.st_size,
				      memory_order_relaxed);
}

static void *wal_main(void *arg)
{
	struct wal *w = arg;
	struct timespec ts;

	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		if (!w->kicked) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_nsec += WAL_TIMER_MS * 1000000L;
			ts.tv_sec += ts.tv_nsec / 1000000000L;
			ts.tv_nsec %= 1000000000L;
			pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		}
		if (w->stop)
			break;
		int kicked = w->kicked;
		w->kicked = 0;
		pthread_mutex_unlock(&w->lock);
		wal_pass(w, kicked);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void wal_free(struct wal *w)
{
	if (w->wal_fd >= 0)
		close(w->wal_fd);
	sqlite3_close(w->db);
	free(w->wal_path);
	free(w);
}

struct wal *wal_start(const char *path, sqlite3 *loop_db,
		      struct wal_busy *loop_busy)
{
	struct wal *w = xcalloc(1, sizeof(*w));
	pthread_condattr_t ca;
	int ok;

	w->wal_fd = -1;
	w->loop_db = loop_db;
	w->loop_busy = loop_busy;
	if (!sqlite3_threadsafe() ||
	    sqlite3_open_v2(path, &w->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		goto fail;
	sqlite3_busy_handler(w->db, ckpt_busy_cb, w);
	if (wal_read(w) < 0)
		goto fail;
	w->kick_frames = (int)(WAL_KICK_BYTES / w->frame_bytes);
	w->kick_at = w->kick_frames;
	size_t n = strlen(path) + 5;
	w->wal_path = xmalloc(n);
	snprintf(w->wal_path, n, "%s-wal", path);
	/* Only read: SQLite takes no locks on the -wal file, so this
	 * descriptor's close drops none of SQLite's. */
	w->wal_fd = open(w->wal_path, O_RDONLY | O_CLOEXEC);

	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	sqlite3_wal_hook(loop_db, wal_hook, w);
	loop_busy->wal = w;
	ok = pthread_create(&w->thread, NULL, wal_main, w) == 0;
	if (!ok) {
		loop_busy->wal = NULL;
		sqlite3_wal_autocheckpoint(loop_db, 1000);
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
		goto fail;
	}
	return w;
fail:
	log_warn(
		"store.checkpoint",
		"msg=\"no checkpoint thread: the loop checkpoints by itself\"");
	wal_free(w);
	return NULL;
}

void wal_stop(struct wal *w)
{
	if (w == NULL)
		return;
	atomic_store(&w->stopping, 1);
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	sqlite3_wal_hook(w->loop_db, NULL, NULL);
	w->loop_busy->wal = NULL;
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	wal_free(w);
}
