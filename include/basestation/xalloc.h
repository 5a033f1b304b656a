/* Allocation that cannot fail: out of memory is fatal (logged, abort). */
#ifndef BASESTATION_XALLOC_H
#define BASESTATION_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t size);
/* A copy of s; NULL copies as "". */
char *xstrdup(const char *s);

#endif
