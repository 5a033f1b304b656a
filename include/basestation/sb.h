/* A growable string for building JSON text by hand on hot paths. */
#ifndef BASESTATION_SB_H
#define BASESTATION_SB_H

#include <stddef.h>
#include <stdint.h>

struct sb {
	char *p;
	size_t n, cap;
};

void sb_init(struct sb *b, size_t reserve);
void sb_free(struct sb *b);
void sb_add(struct sb *b, const char *s, size_t n);
void sb_adds(struct sb *b, const char *s);
void sb_addi(struct sb *b, int64_t v);
/* A JSON string literal (quotes included) for UTF-8 text s. */
void sb_add_jstr(struct sb *b, const char *s);

#endif
