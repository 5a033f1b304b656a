/*
 * TLS server side on OpenSSL: a reloadable context (certificate chain and
 * key) and a non-blocking per-connection API shaped like a transport
 * (handshake step, read, writev, shutdown). Knows nothing of WebSocket or
 * libevent; the caller owns the fd and the event loop.
 *
 * Policy: TLS 1.2 and 1.3 only, no renegotiation, session tickets on (no
 * server-side session cache: resumption costs the server no memory),
 * SSL_MODE_RELEASE_BUFFERS so an idle connection holds no record buffers,
 * encrypted keys refused (a passphrase prompt would block the loop).
 * OpenSSL writes to the fd with write(2): the process must ignore SIGPIPE
 * (server.c does).
 */
#ifndef BASESTATION_TLS_H
#define BASESTATION_TLS_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "basestation/tls_base.h"

/* ---- context ---- */

struct tls_ctx;

/* Load a PEM certificate chain (leaf first) and its PEM private key, and
 * check that they belong together. NULL on failure with a one-line reason
 * in err (errsz > 0). */
struct tls_ctx *tls_ctx_create(const char *cert_file, const char *key_file,
			       char *err, size_t errsz);

/* Load a new pair (SIGHUP). On success new connections use it at once;
 * connections already made keep the pair they started with (each SSL holds
 * a reference to its SSL_CTX, freed with the last of them). On failure
 * returns -1 with the reason in err and the running pair stays. */
int tls_ctx_reload(struct tls_ctx *t, const char *cert_file,
		   const char *key_file, char *err, size_t errsz);

void tls_ctx_destroy(struct tls_ctx *t);

struct ssl_st;
/* A new server SSL object (accept state, no fd) from the current pair, for
 * code that drives OpenSSL through libevent instead: the evhttp listener's
 * evhttp_set_bevcb callback passes it to bufferevent_openssl_socket_new.
 * NULL when out of memory (reason in tls_error). */
struct ssl_st *tls_ctx_ssl_new(struct tls_ctx *t);

/* ---- connections ---- */

struct tls_conn; /* an SSL object; no other allocation */

/* Results: TLS_ERROR, TLS_WANT_READ, TLS_WANT_WRITE (tls_base.h). */

/* A server connection on a connected non-blocking socket; the caller keeps
 * owning fd (tls_conn_free does not close it). NULL when out of memory. */
struct tls_conn *tls_conn_create(struct tls_ctx *t, int fd);

/* One handshake step: 0 when complete, TLS_WANT_READ, TLS_WANT_WRITE or
 * TLS_ERROR (which includes a refused protocol version). The caller bounds
 * the time with its handshake timeout. */
int tls_conn_handshake(struct tls_conn *c);

/* Decrypted bytes into buf: > 0, 0 at the end of the stream (close_notify
 * or the peer's TCP close), TLS_WANT_READ / TLS_WANT_WRITE, TLS_ERROR.
 * OpenSSL may hold decrypted bytes the fd no longer signals: read until
 * TLS_WANT_READ, or when stopping early (fairness), check tls_conn_pending
 * and come back without waiting for the fd. */
ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t n);
/* Bytes decrypted and waiting in OpenSSL's buffer. */
size_t tls_conn_pending(const struct tls_conn *c);

/* Write from iov: small pieces are gathered into one record (one
 * SSL_write, one header and tag) up to TLS_RECORD_MAX bytes; a larger first
 * piece is written as is. Returns the bytes taken (> 0, possibly fewer than
 * offered), TLS_WANT_WRITE / TLS_WANT_READ when nothing could be written,
 * or TLS_ERROR. After a WANT, call again with the same bytes at the head
 * of iov (more may follow); the unsent bytes stay the caller's. */
ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov,
			int iovcnt);

/* Send close_notify without waiting for the peer's: 0 sent (or nothing to
 * send after an error), TLS_WANT_WRITE to retry, TLS_ERROR. */
int tls_conn_shutdown(struct tls_conn *c);

void tls_conn_free(struct tls_conn *c);

/* "TLSv1.3" etc., for logs. */
const char *tls_conn_version(const struct tls_conn *c);

/* ---- TLS 1.3 records of our own after the handshake (net/tls13.c) ---- */

struct ssl_ctx_st;
/* Catch the application traffic secrets of each connection of ctx during
 * its handshake (the keylog callback); -1 when OpenSSL refuses. */
int tls13_ctx_setup(struct ssl_ctx_st *ctx);

struct tls13;
/* After tls_conn_handshake returned 0: move c onto tls13's own record
 * layer and free c (its fd stays open), or NULL: c stays as it was (not
 * TLS 1.3, another cipher suite, bytes already in OpenSSL, or the KeyUpdate
 * that starts our keys could not go out at once). */
struct tls13 *tls13_takeover(struct tls_conn *c, int fd);
/* The record layer alone, on fd, for cipher suite (0x1301..0x1303) with
 * the traffic secrets (the hash's length each) read and written from
 * sequence number 0: the second half of tls13_takeover, and the fuzz
 * harness's way in (tests/fuzz/fuzz_tls13.c). NULL: another suite, a
 * wrong length, out of memory. */
struct tls13 *tls13_new(int fd, unsigned suite, const unsigned char *rsecret,
			size_t rlen, const unsigned char *wsecret, size_t wlen);
/* As tls_conn_read / _pending / _writev / _shutdown above. */
ssize_t tls13_read(struct tls13 *t, void *buf, size_t n);
size_t tls13_pending(const struct tls13 *t);
ssize_t tls13_writev(struct tls13 *t, const struct iovec *iov, int iovcnt);
int tls13_shutdown(struct tls13 *t);
/* Wipe the keys and free it (not the fd). */
void tls13_free(struct tls13 *t);
/* HKDF-Expand-Label(secret, label, "", n) for n <= the hash length (hlen
 * bytes of secret): one HMAC block (RFC 8446 §7.1, RFC 5869 §2.3). 0, or
 * -1. The fuzz harness derives its records' keys with it. */
struct evp_md_st;
int tls13_expand_label(const struct evp_md_st *md, const unsigned char *secret,
		       size_t hlen, const char *label, unsigned char *out,
		       size_t n);

#endif
