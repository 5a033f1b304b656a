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
	/* Release it and close the fd. With submit(): only once inflight()
	 * is 0. */
	void (*close)(struct transport *t);

	/* Asynchronous writes; NULL in a synchronous transport (writev).
	 * submit: queue iov[0..iovcnt) (every byte, in order after what was
	 * queued before) for this turn's submission; 0, or NET_ERROR. The
	 * bytes stay the caller's and must not move or change until the
	 * sent callback has reported them. */
	int (*submit)(struct transport *t, const struct iovec *iov, int iovcnt);
	/* Writes queued or in the kernel whose completion has not come:
	 * until it is 0 the fd stays open and the owner of the callback
	 * (and of the bytes) must stay alive. */
	unsigned (*inflight)(const struct transport *t);
	/* Cancel what is queued or in flight: the completions still come
	 * (with NET_ERROR), soon. */
	void (*cancel)(struct transport *t);
	/* Submit what is queued now (every connection's) and report the
	 * completions that are there already. */
	void (*kick)(struct transport *t);
};

/* A submitted write is over: written bytes of it went out (from its first
 * byte on); err is 0 when all of it did, NET_ERROR when the rest will not
 * (the peer is gone, or cancelled). Called from the loop, never from
 * inside submit(); it may submit again. */
typedef void (*transport_sent_cb)(void *arg, size_t written, int err);

struct transport {
	const struct transport_ops *ops;
	int fd;
	void *impl;		/* the transport's own (a TLS connection) */
	transport_sent_cb sent; /* asynchronous transports only */
	void *sent_arg;
};

/* A plain TCP socket (already non-blocking). */
void net_tcp_init(struct transport *t, int fd);
/* Its calls, for transports built on it (net/uring_tp.c). */
extern const struct transport_ops net_tcp_ops;

/* A TLS server connection (net/tls_transport.c) on a non-blocking socket,
 * with the pair ctx holds now; the transport owns fd from here on. -1 when
 * out of memory (the caller still owns fd). */
struct tls_ctx;
int net_tls_init(struct transport *t, struct tls_ctx *ctx, int fd);

/* The I/O path of plain TCP connections, chosen once at start (--io):
 * io_uring when want_uring and the kernel has it (probed with a real ring;
 * BASESTATION_TEST_URING_FAIL=1 makes the probe fail, a test hook), else
 * epoll (libevent readiness and writev). Logged as event=io. 1 when io_uring
 * is on. */
struct event_base;
int net_io_start(struct event_base *base, int want_uring);
/* "uring" or "epoll". */
const char *net_io_name(void);
/* A plain TCP socket on io_uring writes (only after net_io_start() said
 * 1); sent gets every completion of its writes. */
void net_uring_init(struct transport *t, int fd, transport_sent_cb sent,
		    void *arg);
/* Wait (bounded, ~2 s) for the completions of every write still in
 * flight, after cancelling them: at exit. */
void net_io_drain(void);
/* Free the ring (after every io_uring connection is closed). */
void net_io_finish(void);

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
