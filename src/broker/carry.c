/* A completion that carries a result made now to a caller that waits for
 * the engine: replies that must not overtake a commit (and, in fanq.c,
 * results that must not overtake a fan-out). */
#include "broker_int.h"
#include "basestation/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct carried {
	struct bk_done caller;
	struct bk_result r;
	char mem[]; /* name, msg, then body */
};

static void carried_fn(const struct bk_done *d, const struct bk_result *r)
{
	struct carried *c = d->ptr;

	if (r->status != BK_OK) {
		c->r.status = BK_UNAVAILABLE;
		c->r.msg = r->msg;
		c->r.body = NULL;
		c->r.body_len = 0;
	}
	bk_complete(&c->caller, &c->r);
	free(c);
}

struct bk_done carry(const struct bk_done *caller, const struct bk_result *r)
{
	size_t nl = r->name ? strlen(r->name) + 1 : 0;
	size_t ml = r->msg ? strlen(r->msg) + 1 : 0;
	struct carried *c = xmalloc(sizeof(*c) + nl + ml + r->body_len + 1);
	struct bk_done d = {.fn = carried_fn, .ptr = c};

	if (caller)
		c->caller = *caller;
	else
		memset(&c->caller, 0, sizeof(c->caller));
	c->r = *r;
	if (r->name) {
		memcpy(c->mem, r->name, nl);
		c->r.name = c->mem;
	}
	if (r->msg) {
		memcpy(c->mem + nl, r->msg, ml);
		c->r.msg = c->mem + nl;
	}
	if (r->body) {
		memcpy(c->mem + nl + ml, r->body, r->body_len);
		c->mem[nl + ml + r->body_len] = '\0';
		c->r.body = c->mem + nl + ml;
	}
	return d;
}

void carry_drop(const struct bk_done *d)
{
	free(d->ptr);
}
