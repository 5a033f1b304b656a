/*
 * The TLS transport (transport.h) on a struct tls_conn (tls.h): the
 * handshake step, reads and gathered writes through OpenSSL, close_notify
 * at the shutdown. The TLS results are the transport's (same values).
 */
#include "basestation/tls.h"
#include "basestation/transport.h"

#include <unistd.h>

_Static_assert((int)TLS_ERROR == (int)NET_ERROR &&
		       (int)TLS_WANT_READ == (int)NET_WANT_READ &&
		       (int)TLS_WANT_WRITE == (int)NET_WANT_WRITE,
	       "tls.h and transport.h results differ");

static const struct transport_ops tls13_ops;

/* Done: a TLS 1.3 connection moves onto tls13's records (its SSL object,
 * ~13 KiB, is freed); any other stays on OpenSSL. */
static int tls_tp_handshake(struct transport *t)
{
	int r = tls_conn_handshake(t->impl);
	struct tls13 *x;

	if (r == 0 && (x = tls13_takeover(t->impl, t->fd)) != NULL) {
		t->impl = x;
		t->ops = &tls13_ops;
	}
	return r;
}

static ssize_t tls_tp_read(struct transport *t, void *buf, size_t n)
{
	return tls_conn_read(t->impl, buf, n);
}

static ssize_t tls_tp_writev(struct transport *t, const struct iovec *iov,
			     int iovcnt)
{
	return tls_conn_writev(t->impl, iov, iovcnt);
}

static size_t tls_tp_pending(const struct transport *t)
{
	return tls_conn_pending(t->impl);
}

static int tls_tp_shutdown(struct transport *t)
{
	return tls_conn_shutdown(t->impl);
}

static void tls_tp_close(struct transport *t)
{
	if (t->impl)
		tls_conn_free(t->impl);
	t->impl = NULL;
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

static const struct transport_ops tls_ops = {
	.name = "tls",
	.handshake = tls_tp_handshake,
	.read = tls_tp_read,
	.writev = tls_tp_writev,
	.pending = tls_tp_pending,
	.shutdown = tls_tp_shutdown,
	.close = tls_tp_close,
};

int net_tls_init(struct transport *t, struct tls_ctx *ctx, int fd)
{
	struct tls_conn *c = tls_conn_create(ctx, fd);

	if (c == NULL)
		return -1;
	t->ops = &tls_ops;
	t->fd = fd;
	t->impl = c;
	t->sent = NULL;
	t->sent_arg = NULL;
	return 0;
}

/* ---- after the takeover ---- */

static ssize_t tls13_tp_read(struct transport *t, void *buf, size_t n)
{
	return tls13_read(t->impl, buf, n);
}

static ssize_t tls13_tp_writev(struct transport *t, const struct iovec *iov,
			       int iovcnt)
{
	return tls13_writev(t->impl, iov, iovcnt);
}

static size_t tls13_tp_pending(const struct transport *t)
{
	return tls13_pending(t->impl);
}

static int tls13_tp_shutdown(struct transport *t)
{
	return tls13_shutdown(t->impl);
}

static void tls13_tp_close(struct transport *t)
{
	tls13_free(t->impl);
	t->impl = NULL;
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

static const struct transport_ops tls13_ops = {
	.name = "tls",
	.read = tls13_tp_read,
	.writev = tls13_tp_writev,
	.pending = tls13_tp_pending,
	.shutdown = tls13_tp_shutdown,
	.close = tls13_tp_close,
};
