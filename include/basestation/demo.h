/* `serve --demo` (src/demo.c): demo users and an in-process producer. */
#ifndef BASESTATION_DEMO_H
#define BASESTATION_DEMO_H

#include "basestation/settings.h"

struct engine;
struct event_base;

int demo_start(struct event_base *base, struct engine *e,
	       const struct config *cfg, int ws_port, int http_port);
void demo_stop(void);

#endif
