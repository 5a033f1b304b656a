/*
 * The unit tests' assertion macros: a failed CHECK prints file:line and the
 * condition, counts, and the test goes on; main() returns non-zero when
 * `failures` is not zero. One test program per file, so static is right.
 */
#ifndef BASESTATION_TEST_CHECK_H
#define BASESTATION_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int failures;

/* CHECK reported at a given line (for helpers called from many places). */
#define CHECK_AT(line, c)                                                      \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				line, #c);                                     \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK(c) CHECK_AT(__LINE__, c)

/* A whole file, NUL-terminated (*len without the NUL); NULL on error. */
static inline char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto fail;
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto fail;
	}
	buf[n] = '\0';
	if (len != NULL)
		*len = (size_t)n;
fail:
	fclose(f);
	return buf;
}

#endif
