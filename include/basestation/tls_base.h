/*
 * What both TLS layers share: net/tls.c (OpenSSL: contexts, handshakes,
 * TLS 1.2) and net/tls13.c (TLS 1.3 records of our own after the
 * handshake). Their result codes, the largest record, and the reason for
 * the last failure.
 */
#ifndef BASESTATION_TLS_BASE_H
#define BASESTATION_TLS_BASE_H

/* Results of the connection calls (bytes are >= 0). */
enum {
	TLS_ERROR = -1,	     /* fatal: log tls_error(), close the fd */
	TLS_WANT_READ = -2,  /* wait until the fd is readable, call again */
	TLS_WANT_WRITE = -3, /* wait until the fd is writable, call again */
};

/* Plaintext bytes in one record (RFC 8446 §5.1: 2^14). */
#define TLS_RECORD_MAX 16384

/* Set the reason tls_error reports. */
void tls_set_error(const char *why);

/* The reason for the last TLS_ERROR (OpenSSL's error queue, drained), or
 * "" when there is none. The string is static: valid until the next call. */
const char *tls_error(void);

#endif
