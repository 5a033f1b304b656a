/* Structured logging: one line per event on stderr. */
#include "basestation/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum log_level log_min_level = LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *log_val(const char *s)
{
	static char bufs[4][256];
	static int next;
	char *b = bufs[next++ & 3];
	size_t o = 0;
	int quote = 0;

	if (s == NULL)
		return "-";
	if (*s == '\0')
		quote = 1;
	for (const char *p = s; *p; p++)
		if (*p == ' ' || *p == '"' || *p == '=' ||
		    (unsigned char)*p < 0x20)
			quote = 1;
	if (!quote)
		return s;
	b[o++] = '"';
	for (const char *p = s; *p && o < 240 && p - s < 200; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			b[o++] = '\\';
			b[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(b + o, 256 - o, "\\x%02x", c);
		} else {
			b[o++] = (char)c;
		}
	}
	b[o++] = '"';
	b[o] = '\0';
	return b;
}

static void log_line(enum log_level lvl, const char *event, const char *fmt,
		     va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n,
			      ".%03ldZ level=%s event=%s", ts.tv_nsec / 1000000,
			      level_names[lvl], event);
	if (fmt && *fmt && n < sizeof(line) - 2) {
		line[n++] = ' ';
		int k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (k > 0)
			n += (size_t)k;
		if (n > sizeof(line) - 2)
			n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
{
	va_list ap;

	if (lvl < log_min_level)
		return;
	va_start(ap, fmt);
	log_line(lvl, event, fmt, ap);
	va_end(ap);
}

void log_event_always(enum log_level lvl, const char *event, const char *fmt,
		      ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(lvl, event, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	fputs("fatal: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}
