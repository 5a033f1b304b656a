/*
 * TLS server contexts and non-blocking connections on OpenSSL.
 *
 * A struct tls_conn is the SSL object itself (no wrapper allocation).
 * Every call clears OpenSSL's per-thread error queue first and drains it on
 * failure into one static string (tls_error), so a stale error can never be
 * blamed on the next connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "basestation/tls.h"

struct tls_ctx {
	SSL_CTX *cur; /* used by tls_conn_create; old ones live on in their
			 SSL objects' references */
};

/* Keep the first queued OpenSSL error (the root cause) as the reason,
 * prefixed by what was being done; empty the queue. */
static void set_error(const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[200];

	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	else if (errno)
		snprintf(reason, sizeof(reason), "%s", strerror(errno));
	else
		snprintf(reason, sizeof(reason), "unknown error");
	char line[256];
	snprintf(line, sizeof(line), "%s%s%s", what, what[0] ? ": " : "",
		 reason);
	tls_set_error(line);
	ERR_clear_error();
}

/* A passphrase prompt would block the loop: encrypted keys fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

static SSL_CTX *load(const char *cert_file, const char *key_file, char *err,
		     size_t errsz)
{
	SSL_CTX *ctx;
	char what[200];

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		set_error("SSL_CTX_new");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* no renegotiation (a client-driven CPU cost); a TCP close without
	 * close_notify is an ordinary end of stream for WebSocket clients */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE |
					 SSL_OP_NO_COMPRESSION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS |
				      SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* tickets only: no session cache to hold per-client memory */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* no 0-RTT (OpenSSL's default, said here): early data is replayable,
	 * and tls13.c takes the records over from the client's Finished on */
	SSL_CTX_set_max_early_data(ctx, 0);
	/* TLS 1.3 connections leave OpenSSL after the handshake (tls13.c) */
	if (tls13_ctx_setup(ctx) < 0) {
		set_error("SSL_get_ex_new_index");
		goto fail;
	}
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		snprintf(what, sizeof(what), "certificate %s", cert_file);
		set_error(what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_error()) ==
		    X509_R_KEY_VALUES_MISMATCH)
			snprintf(what, sizeof(what),
				 "key %s does not match certificate %s",
				 key_file, cert_file);
		else
			snprintf(what, sizeof(what), "key %s", key_file);
		set_error(what);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(what, sizeof(what),
			 "key %s does not match certificate %s", key_file,
			 cert_file);
		set_error(what);
		goto fail;
	}
	return ctx;
fail:
	if (errsz)
		snprintf(err, errsz, "%s", tls_error());
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_ctx *tls_ctx_create(const char *cert_file, const char *key_file,
			       char *err, size_t errsz)
{
	struct tls_ctx *t;
	SSL_CTX *ctx = load(cert_file, key_file, err, errsz);

	if (ctx == NULL)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		SSL_CTX_free(ctx);
		if (errsz)
			snprintf(err, errsz, "out of memory");
		return NULL;
	}
	t->cur = ctx;
	return t;
}

int tls_ctx_reload(struct tls_ctx *t, const char *cert_file,
		   const char *key_file, char *err, size_t errsz)
{
	SSL_CTX *ctx = load(cert_file, key_file, err, errsz);

	if (ctx == NULL)
		return -1;
	/* drop our reference; SSL objects made from it keep theirs */
	SSL_CTX_free(t->cur);
	t->cur = ctx;
	return 0;
}

void tls_ctx_destroy(struct tls_ctx *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->cur);
	free(t);
}

/* ---- connections ---- */

#define SSL_OF(c) ((SSL *)(c))

SSL *tls_ctx_ssl_new(struct tls_ctx *t)
{
	SSL *s;

	ERR_clear_error();
	s = SSL_new(t->cur);
	if (s == NULL) {
		set_error("SSL_new");
		return NULL;
	}
	SSL_set_accept_state(s);
	return s;
}

struct tls_conn *tls_conn_create(struct tls_ctx *t, int fd)
{
	SSL *s = tls_ctx_ssl_new(t);

	if (s == NULL)
		return NULL;
	if (SSL_set_fd(s, fd) != 1) {
		set_error("SSL_set_fd");
		SSL_free(s);
		return NULL;
	}
	return (struct tls_conn *)s;
}

/* Map a failed SSL call. Fatal errors also mark the connection so that
 * shutdown sends nothing (OpenSSL forbids SSL_shutdown after them). */
static int failed(SSL *s, int r, const char *what)
{
	int e = SSL_get_error(s, r);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		if (e != SSL_ERROR_SYSCALL)
			errno = 0;
		set_error(what);
		SSL_set_quiet_shutdown(s, 1);
		return TLS_ERROR;
	}
}

int tls_conn_handshake(struct tls_conn *c)
{
	int r, code;

	ERR_clear_error();
	errno = 0;
	r = SSL_do_handshake(SSL_OF(c));
	if (r == 1)
		return 0;
	code = failed(SSL_OF(c), r, "handshake");
	/* a peer that closes during the handshake has not completed it */
	if (code == 0) {
		tls_set_error("handshake: closed by peer");
		return TLS_ERROR;
	}
	return code;
}

ssize_t tls_conn_read(struct tls_conn *c, void *buf, size_t n)
{
	size_t got = 0;

	ERR_clear_error();
	errno = 0;
	if (SSL_read_ex(SSL_OF(c), buf, n, &got) == 1)
		return (ssize_t)got;
	return failed(SSL_OF(c), 0, "read");
}

size_t tls_conn_pending(const struct tls_conn *c)
{
	return (size_t)SSL_pending((const SSL *)c);
}

/* Gather buffer for small pieces: one record's worth, static because the
 * loop is single-threaded and the bytes are consumed by SSL_write before
 * it returns (a retried record is re-gathered from the caller's bytes:
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER). */
static unsigned char gather[TLS_RECORD_MAX];

ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov, int iovcnt)
{
	SSL *s = SSL_OF(c);
	ssize_t total = 0;
	size_t off = 0; /* into iov[i] */
	int i = 0;

	while (i < iovcnt) {
		size_t left = iov[i].iov_len - off, n, w = 0;
		const unsigned char *p;

		if (left == 0) {
			i++;
			off = 0;
			continue;
		}
		if (left >= TLS_RECORD_MAX || i == iovcnt - 1) {
			p = (const unsigned char *)iov[i].iov_base + off;
			n = left;
		} else {
			size_t o = off;
			int j = i;
			for (n = 0; j < iovcnt && n < TLS_RECORD_MAX;) {
				size_t take = iov[j].iov_len - o;
				if (take > TLS_RECORD_MAX - n)
					take = TLS_RECORD_MAX - n;
				memcpy(gather + n,
				       (const unsigned char *)iov[j].iov_base +
					       o,
				       take);
				n += take;
				o += take;
				if (o == iov[j].iov_len) {
					j++;
					o = 0;
				}
			}
			p = gather;
		}
		ERR_clear_error();
		errno = 0;
		if (SSL_write_ex(s, p, n, &w) != 1) {
			int code = failed(s, 0, "write");
			if (code == 0) /* close_notify seen: cannot write */
				code = TLS_ERROR;
			return total ? total : code;
		}
		total += (ssize_t)w;
		/* partial-write mode: w is one record, maybe less than n */
		while (w) {
			size_t l = iov[i].iov_len - off;
			if (w < l) {
				off += w;
				w = 0;
			} else {
				w -= l;
				i++;
				off = 0;
			}
		}
	}
	return total;
}

int tls_conn_shutdown(struct tls_conn *c)
{
	int r, code;

	/* nothing to close during the handshake (OpenSSL refuses it) */
	if (SSL_in_init(SSL_OF(c)))
		return 0;
	ERR_clear_error();
	errno = 0;
	r = SSL_shutdown(SSL_OF(c));
	if (r >= 0) /* 1 both sides, 0 ours sent: we do not wait */
		return 0;
	code = failed(SSL_OF(c), r, "shutdown");
	return code == TLS_WANT_READ ? 0 : code;
}

void tls_conn_free(struct tls_conn *c)
{
	SSL_free(SSL_OF(c));
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return SSL_get_version((const SSL *)c);
}
