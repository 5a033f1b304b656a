/*
 * What the libFuzzer harnesses share: the entry point's prototype and
 * REQUIRE, which reports a failed invariant and aborts (libFuzzer and the
 * corpus driver both treat the abort as a crash).
 */
#ifndef BASESTATION_FUZZ_H
#define BASESTATION_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                             \
	do {                                                                   \
		if (!(c)) {                                                    \
			fprintf(stderr, "%s:%d: invariant failed: %s\n",       \
				__FILE__, __LINE__, #c);                       \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
