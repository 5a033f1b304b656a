/*
 * IP addresses as the broker compares and counts them: parsed, never as
 * text. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack
 * listener reports for IPv4 peers) is the IPv4 address; the text of an
 * address is inet_ntop's canonical form, so "0::1" and "::1" are one
 * address.
 */
#ifndef BASESTATION_ADDR_H
#define BASESTATION_ADDR_H

#include <stddef.h>

struct sockaddr;

/* Longest text addr_format writes, NUL included (IPv6, and "/64"). */
#define ADDR_TEXT_MAX 48

struct addr {
	int family;	     /* AF_INET or AF_INET6 */
	unsigned char b[16]; /* 4 or 16 bytes, network order */
	int bits;	     /* prefix length: 32 or 128 for one address */
};

/* Parse an address, or with allow_prefix a network "ADDR/BITS" (bits 0..32
 * for IPv4, 0..128 for IPv6; an IPv4-mapped network counts 96 bits less).
 * Bits beyond the prefix are cleared. 0 ok, -1 not one. */
int addr_parse(const char *s, int allow_prefix, struct addr *out);
/* From an accepted socket's address; -1 for other families. */
int addr_from_sockaddr(const struct sockaddr *sa, struct addr *out);
/* Canonical text of a (with "/BITS" when it is a network). */
void addr_format(const struct addr *a, char *out, size_t n);
/* 1 when address a lies in network net. */
int addr_in(const struct addr *a, const struct addr *net);

#endif
