/*
 * A transport: the byte stream under a connection (Redis's
 * ConnectionType). net/tcp.c is a plain socket; a TLS transport
 * (net/tls.c) adds a handshake step, its own buffers (pending) and
 * close_notify, behind the same calls. The connection layer owns the fd's
 * event: a call that cannot go on says what it waits for.
 */
#ifndef BASESTATION_TRANSPORT_H
#define BASESTATION_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Results of the calls below (byte counts are >= 0). */
enum {
	NET_ERROR = -1,	     /* fatal: close the connection */
	NET_WANT_READ = -2,  /* wait until the fd is readable, call again */
	NET_WANT_WRITE = -3, /* wait until the fd is writable, call again */
};

struct transport;

struct transport_ops {
	const char *name;
	/* One handshake step: 0 when done, NET_WANT_READ / _WRITE, or
	 * NET_ERROR. NULL: nothing to do (tcp). */
	int (*handshake)(struct transport *t);
	/* Bytes into buf: > 0, 0 at the end of the stream, NET_WANT_READ /
	 * _WRITE, NET_ERROR. */
	ssize_t (*read)(struct transport *t, void *buf, size_t n);
	/* Bytes taken from iov (> 0, maybe fewer than offered), NET_WANT_*
	 * when none, NET_ERROR. After a WANT, call again with the same bytes
	 * at the head of iov. */
	ssize_t (*writev)(struct transport *t, const struct iovec *iov,
			  int iovcnt);
	/* Bytes read and buffered inside the transport that the fd will not
	 * signal again (TLS records); NULL: never any. */
	size_t (*pending)(const struct transport *t);
	/* After the last write: half-close (tcp) or close_notify (TLS). 0
	 * done, NET_WANT_WRITE to retry, NET_ERROR. */
	int (*shutdown)(struct transport *t);
	/* Release it and close the fd. */
	void (*close)(struct transport *t);
};

struct transport {
	const struct transport_ops *ops;
	int fd;
	void *impl; /* the transport's own (a TLS connection) */
};

/* A plain TCP socket (already non-blocking). */
void net_tcp_init(struct transport *t, int fd);

/* A TLS server connection (net/tls_transport.c) on a non-blocking socket,
 * with the pair ctx holds now; the transport owns fd from here on. -1 when
 * out of memory (the caller still owns fd). */
struct tls_ctx;
int net_tls_init(struct transport *t, struct tls_ctx *ctx, int fd);

static inline ssize_t transport_read(struct transport *t, void *buf, size_t n)
{
	return t->ops->read(t, buf, n);
}

static inline ssize_t transport_writev(struct transport *t,
				       const struct iovec *iov, int iovcnt)
{
	return t->ops->writev(t, iov, iovcnt);
}

static inline size_t transport_pending(const struct transport *t)
{
	return t->ops->pending ? t->ops->pending(t) : 0;
}

static inline int transport_shutdown(struct transport *t)
{
	return t->ops->shutdown(t);
}

static inline void transport_close(struct transport *t)
{
	t->ops->close(t);
}

#endif
