/* The broker process (src/server.c): `basestation serve`. */
#ifndef BASESTATION_SERVER_H
#define BASESTATION_SERVER_H

#include "basestation/settings.h"

/* Run until SIGTERM/SIGINT. 0 after a clean stop, 1 when it could not
 * start. */
int server_run(struct config *cfg);

#endif
