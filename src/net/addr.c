/* IP addresses parsed, normalised and matched against networks. */
#include "basestation/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0,    0,
					    0, 0, 0, 0, 0xff, 0xff};

/* An IPv6 address that is an IPv4 one in disguise becomes that one. */
static void unmap(struct addr *a)
{
	if (a->family == AF_INET6 && memcmp(a->b, v4_mapped, 12) == 0) {
		memmove(a->b, a->b + 12, 4);
		memset(a->b + 4, 0, 12);
		a->family = AF_INET;
		a->bits = a->bits >= 96 ? a->bits - 96 : 0;
	}
}

static void clear_host_bits(struct addr *a)
{
	int len = a->family == AF_INET ? 4 : 16;
	for (int i = 0; i < len; i++) {
		int keep = a->bits - 8 * i;
		if (keep <= 0)
			a->b[i] = 0;
		else if (keep < 8)
			a->b[i] &= (unsigned char)(0xff << (8 - keep));
	}
}

int addr_parse(const char *s, int allow_prefix, struct addr *out)
{
	char host[64];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	long bits = -1;

	memset(out, 0, sizeof(*out));
	if (hl == 0 || hl >= sizeof(host) || (slash && !allow_prefix))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, out->b) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, host, out->b) == 1)
		out->family = AF_INET6;
	else
		return -1;
	out->bits = out->family == AF_INET ? 32 : 128;
	if (slash) {
		char *end;
		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		bits = strtol(slash + 1, &end, 10);
		if (*end || bits > out->bits)
			return -1;
		out->bits = (int)bits;
	}
	unmap(out);
	clear_host_bits(out);
	return 0;
}

int addr_from_sockaddr(const struct sockaddr *sa, struct addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		memcpy(out->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		out->family = AF_INET;
		out->bits = 32;
	} else if (sa->sa_family == AF_INET6) {
		memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr,
		       16);
		out->family = AF_INET6;
		out->bits = 128;
		unmap(out);
	} else {
		return -1;
	}
	return 0;
}

void addr_format(const struct addr *a, char *out, size_t n)
{
	char text[INET6_ADDRSTRLEN];
	int full = a->bits == (a->family == AF_INET ? 32 : 128);

	if (inet_ntop(a->family, a->b, text, sizeof(text)) == NULL)
		snprintf(text, sizeof(text), "?");
	if (full)
		snprintf(out, n, "%s", text);
	else
		snprintf(out, n, "%s/%d", text, a->bits);
}

int addr_in(const struct addr *a, const struct addr *net)
{
	int whole = net->bits / 8, rest = net->bits % 8;

	if (a->family != net->family)
		return 0;
	if (memcmp(a->b, net->b, (size_t)whole) != 0)
		return 0;
	return rest == 0 ||
	       ((a->b[whole] ^ net->b[whole]) & (0xff << (8 - rest))) == 0;
}
