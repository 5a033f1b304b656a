/*
 * WebSocket connections (src/conn/): the sockets accepted on the
 * WebSocket port, each a transport, a frame parser, an output buffer and
 * the broker's session. Never freed inside their own callbacks: a dead
 * connection is reaped by its own event once the stack has unwound.
 */
#ifndef BASESTATION_CONN_H
#define BASESTATION_CONN_H

#include "basestation/settings.h"

#include <stdint.h>

struct event_base;
struct session;
struct sockaddr;

/* Set up: the flush, reap and tick events. */
void conns_init(struct event_base *base, const struct config *cfg);
/* The cap on sockets of the WebSocket port (fitted to RLIMIT_NOFILE). */
void conns_set_cap(int sockets_max);
/* --auth-url (auth_hook.h): tokens the broker does not know are put to
 * it during the handshake; NULL: none. */
struct auth_hook;
void conns_set_hook(struct auth_hook *h);
/* --tls-cert (tls.h): sockets accepted from now on speak TLS with the pair
 * t holds at their accept; NULL: plain. */
struct tls_ctx;
void conns_set_tls(struct tls_ctx *t);
/* A socket just accepted on the WebSocket port. */
void conn_accept(int fd, const struct sockaddr *sa, int salen);
/* Stopping: open connections are closed with 1001, handshakes dropped,
 * no new upgrade. The loop breaks once the last socket is reaped. */
void conns_stop(void);
/* Drop every connection at once and free them. */
void conns_close_all(void);
void conns_finish(void);

/* Open WebSocket connections, and every accepted socket. */
int conns_open(void);
int conns_sockets(void);

/* One open connection, for /admin/connections. */
struct conn_info {
	const struct session *s;
	const char *remote;
	int64_t since_ms;
	uint64_t out_buffered;
};
void conns_each(void (*fn)(void *arg, const struct conn_info *i), void *arg);

#endif
