/*
 * The transport layer's listeners and counts: listening sockets with a
 * back-off on accept errors, refusing a socket at the accept, and sockets
 * counted per remote address on each port (--max-per-ip).
 */
#ifndef BASESTATION_NET_H
#define BASESTATION_NET_H

#include "basestation/settings.h"

#include <event2/listener.h>
#include <stddef.h>

struct event_base;
struct sockaddr;

/* The two listening ports; --max-per-ip applies to each on its own. */
enum ip_port { IP_WS, IP_HTTP };

/* Sockets from one remote address, by port: on the WebSocket port from the
 * accept on (handshakes too) until the socket is closed; on the HTTP port
 * for as long as the connection lasts. */
struct ipcount;

void net_init(struct event_base *base, const struct config *cfg);
/* Log what is left of the refusals and free what net_init made. */
void net_finish(void);

/* Split "host:port" ("[v6]:port" too). 0 ok, -1 malformed. host gets a
 * NUL-terminated copy (hostsz >= 64). */
int net_split_addr(const char *addr, char *host, size_t hostsz, int *port);

/* Listen on addr ("host:port", port 0 picks one) for accepted sockets to
 * go to cb (NULL: set later, by evhttp_bind_listener). An accept error
 * (EMFILE...) pauses the listener for a back-off, logged once per pause.
 * name ("ws", "http") is for the log. NULL on failure (errno set). */
struct evconnlistener *net_listen(const char *addr, const char *name,
				  evconnlistener_cb cb, int *port_out);
/* An accept worked: the next error backs off from the shortest pause. */
void net_listen_ok(struct evconnlistener *l);
/* Stop (1) or go on (0) taking connections; a back-off still applies. */
void net_listen_pause(struct evconnlistener *l, int paused);
/* Drop what net_listen() keeps for l, before l itself is freed. */
void net_listen_forget(struct evconnlistener *l);

/* Answer a socket just accepted with a 503 (text on the WebSocket port,
 * JSON with Retry-After on the HTTP port) without reading its request; the
 * caller closes it. Logged once a second with a count, not per socket.
 * why NULL: no answer (a TLS port, where one would need the handshake
 * first), only the close. */
void net_refuse_fd(evutil_socket_t fd, enum ip_port port, const char *why);
/* 1 when ip is one of the --trusted-proxy addresses. */
int net_trusted_proxy(const char *ip);
/* The numeric address of sa ("unix" for other families). */
void net_addr_string(const struct sockaddr *sa, char *out, size_t n);

/* Sockets counted for ip on port (0 when none). */
int net_ip_count(const char *ip, enum ip_port port);
/* Count one more socket from ip on port; the entry to give back with
 * net_ip_put(), which frees it once nothing from ip is counted. */
struct ipcount *net_ip_hold(const char *ip, enum ip_port port);
void net_ip_put(struct ipcount *ip, enum ip_port port);
/* The address an entry counts. */
const char *net_ip_addr(const struct ipcount *e);
/* Forget every count (at the end). */
void net_ip_clear(void);

#endif
