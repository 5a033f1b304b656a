/* Sockets per remote address and port (--max-per-ip), for both ports. */
#include "basestation/addr.h"
#include "basestation/net.h"
#include "basestation/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uthash.h>

struct ipcount {
	char ip[ADDR_TEXT_MAX]; /* the address, an IPv6 one as its /64 */
	int n[2];		/* by enum ip_port */
	UT_hash_handle hh;
};

static struct ipcount *ips;

/* What --max-per-ip counts by: the address, but an IPv6 address by its
 * /64, the block one subscriber or host is given (one client could
 * otherwise take a fresh address per socket). ip is canonical text. */
static void ip_key(const char *ip, char *key, size_t n)
{
	struct addr a;

	if (addr_parse(ip, 0, &a) == 0 && a.family == AF_INET6) {
		a.bits = 64;
		memset(a.b + 8, 0, 8);
		addr_format(&a, key, n);
	} else {
		snprintf(key, n, "%s", ip);
	}
}

int net_ip_count(const char *ip, enum ip_port port)
{
	struct ipcount *e;
	char key[ADDR_TEXT_MAX];
	ip_key(ip, key, sizeof(key));
	HASH_FIND_STR(ips, key, e);
	return e ? e->n[port] : 0;
}

struct ipcount *net_ip_hold(const char *ip, enum ip_port port)
{
	struct ipcount *e;
	char key[ADDR_TEXT_MAX];
	ip_key(ip, key, sizeof(key));
	HASH_FIND_STR(ips, key, e);
	if (e == NULL) {
		e = xcalloc(1, sizeof(*e));
		snprintf(e->ip, sizeof(e->ip), "%s", key);
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
