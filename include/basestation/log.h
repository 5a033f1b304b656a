/*
 * One line per event, key=value fields:
 *   ts=2026-11-23T15:56:09.123Z level=info event=conn.open conn=7 uid=alice
 * Values with spaces or quotes are written quoted by log_val().
 */
#ifndef BASESTATION_LOG_H
#define BASESTATION_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_min_level;

/* "debug"/"info"/"warn"/"error" -> level; -1 when unknown. */
int log_level_parse(const char *s);

/* fmt is the rest of the line: "key=%s key2=%d". */
void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same, whatever log_min_level says (the ready line names the ports).
 * log_min_level is never written once threads run. */
void log_event_always(enum log_level lvl, const char *event, const char *fmt,
		      ...) __attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...)                                                     \
	do {                                                                   \
		if (log_min_level <= LOG_DEBUG)                                \
			log_event(LOG_DEBUG, ev, __VA_ARGS__);                 \
	} while (0)
#define log_info(ev, ...)  log_event(LOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_event(LOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_event(LOG_ERROR, ev, __VA_ARGS__)

/* Quote a value for a log field if it needs it; returns a pointer to one of
 * a few rotating static buffers (safe for up to 4 uses in one call). Values
 * are cut at 200 bytes and control characters escaped. */
const char *log_val(const char *s);

/* Milliseconds since the Unix epoch (wall clock) and monotonic. */
int64_t now_ms(void);
int64_t mono_ms(void);
/* Fatal: impossible state. Logs and aborts. */
void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
