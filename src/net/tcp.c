/* The plain TCP transport (transport.h): recv, writev, shutdown, close. */
#include "basestation/transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static int retriable(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

static ssize_t tcp_read(struct transport *t, void *buf, size_t n)
{
	ssize_t r = recv(t->fd, buf, n, 0);
	if (r < 0)
		return retriable(errno) ? NET_WANT_READ : NET_ERROR;
	return r;
}

static ssize_t tcp_writev(struct transport *t, const struct iovec *iov,
			  int iovcnt)
{
	ssize_t r = writev(t->fd, iov, iovcnt);
	if (r < 0)
		return retriable(errno) ? NET_WANT_WRITE : NET_ERROR;
	return r;
}

static int tcp_shutdown(struct transport *t)
{
	shutdown(t->fd, SHUT_WR);
	return 0;
}

static void tcp_close(struct transport *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
}

const struct transport_ops net_tcp_ops = {
	.name = "tcp",
	.read = tcp_read,
	.writev = tcp_writev,
	.shutdown = tcp_shutdown,
	.close = tcp_close,
};

void net_tcp_init(struct transport *t, int fd)
{
	t->ops = &net_tcp_ops;
	t->sent = NULL;
	t->sent_arg = NULL;
	t->fd = fd;
	t->impl = NULL;
}
