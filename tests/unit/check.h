/*
 * The unit tests' assertion macros: a failed CHECK prints file:line and the
 * condition, counts, and the test goes on; main() returns non-zero when
 * `failures` is not zero. One test program per file, so static is right.
 */
#ifndef BASESTATION_TEST_CHECK_H
#define BASESTATION_TEST_CHECK_H

#include <stdio.h>

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

#endif
