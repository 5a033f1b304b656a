/* Sockets per remote address and port (--max-per-ip), for both ports. */
#include "basestation/net.h"
#include "basestation/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <uthash.h>

struct ipcount {
	char ip[48];
	int n[2]; /* by enum ip_port */
	UT_hash_handle hh;
};

static struct ipcount *ips;

int net_ip_count(const char *ip, enum ip_port port)
{
	struct ipcount *e;
	HASH_FIND_STR(ips, ip, e);
	return e ? e->n[port] : 0;
}

struct ipcount *net_ip_hold(const char *ip, enum ip_port port)
{
	struct ipcount *e;
	HASH_FIND_STR(ips, ip, e);
	if (e == NULL) {
		e = xcalloc(1, sizeof(*e));
		snprintf(e->ip, sizeof(e->ip), "%s", ip);
		HASH_ADD_STR(ips, ip, e);
	}
	e->n[port]++;
	return e;
}

void net_ip_put(struct ipcount *e, enum ip_port port)
{
	e->n[port]--;
	if (e->n[IP_WS] <= 0 && e->n[IP_HTTP] <= 0) {
		HASH_DEL(ips, e);
		free(e);
	}
}

void net_ip_clear(void)
{
	struct ipcount *e, *et;
	HASH_ITER(hh, ips, e, et)
	{
		HASH_DEL(ips, e);
		free(e);
	}
}

const char *net_ip_addr(const struct ipcount *e)
{
	return e->ip;
}
