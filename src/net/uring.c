/*
 * io_uring batch writer and reader: see uring.h for the contract. One ring
 * per loop; per fd, a queue of writes not submitted yet and the count of
 * requests in flight; the fds with something to submit are listed in
 * `ready`, in the order they became ready.
 */
#include "net/uring.h"

#include <errno.h>
#include <limits.h>
#include <event2/event.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* The ZC notification's "the kernel copied" report (kernel 6.2; not in
 * liburing 2.3's header). */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define INLINE_IOV 4
#define CHAIN_MAX  64 /* linked writes per fd per submission */
#define BGID	   1  /* the provided-buffer group of the receives */
#define SEND_FLAGS (MSG_NOSIGNAL | MSG_WAITALL)

enum kind { K_IGNORE, K_WRITE, K_RECV };

/* The user_data of requests whose completions mean nothing here (cancels,
 * the start-up probe's): reaped and dropped. */
static uint8_t ignore_tag = K_IGNORE;

struct op {
	uint8_t kind; /* K_WRITE: first, as in struct rcv */
	uint8_t zc, copied, failed;
	int fd;
	int err;
	unsigned notifs; /* ZC notifications still to come */
	unsigned parts;
	uint64_t seq; /* order on its fd */
	uint64_t tag;
	size_t len, written;
	int niov, first;
	struct iovec *iov;
	struct iovec inl[INLINE_IOV];
	struct msghdr msg;
	struct op *next;
};

struct rcv {
	uint8_t kind; /* K_RECV */
	uint8_t stopping;
	int fd;
	uint64_t tag;
};

struct ufd {
	struct op *head, *tail; /* queued, not submitted, in order */
	struct op *resume;	/* to go again before head, by seq */
	unsigned inflight;	/* write requests whose result is to come */
	unsigned pending;	/* writes not completed to the caller */
	uint64_t seq;
	int err; /* sticky: the fd failed; later writes fail with it */
	uint8_t ready, cancelling, fixed;
	struct rcv *recv;
	uint8_t recv_armed, recv_rearm;
};

struct uring {
	struct io_uring ring;
	struct uring_opts o;
	unsigned features;
	struct event_base *base;
	struct event *efd_ev, *submit_ev;
	int efd;
	struct ufd *fds;
	int nfds;
	int *ready;
	int nready, cap_ready;
	struct op *failed, **failed_tail; /* completed without a CQE */
	struct op *free_ops;
	struct io_uring_buf_ring *br;
	size_t br_len;
	uint8_t *rbuf;
	struct uring_stats st;
};

static void set_why(char *why, size_t n, const char *what, int err)
{
	if (why && n)
		snprintf(why, n, "%s: %s", what, strerror(err));
}

int uring_supported(char *why, size_t whylen)
{
	static const int need[] = {IORING_OP_SEND, IORING_OP_SENDMSG,
				   IORING_OP_ASYNC_CANCEL};
	struct io_uring ring;
	struct io_uring_probe *p;
	int rc;

	if ((rc = io_uring_queue_init(8, &ring, 0)) < 0) {
		set_why(why, whylen, "io_uring_queue_init", -rc);
		return -1;
	}
	p = io_uring_get_probe_ring(&ring);
	io_uring_queue_exit(&ring);
	if (p == NULL) {
		set_why(why, whylen, "io_uring probe", ENOSYS);
		return -1;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!io_uring_opcode_supported(p, need[i])) {
			if (why && whylen)
				snprintf(why, whylen,
					 "io_uring lacks opcode %d", need[i]);
			io_uring_free_probe(p);
			return -1;
		}
	io_uring_free_probe(p);
	return 0;
}

/* ---- per-fd state ---- */

static struct ufd *ufd_of(struct uring *u, int fd)
{
	if (fd >= u->nfds) {
		int n = u->nfds ? u->nfds : 256;
		struct ufd *f;
		while (n <= fd)
			n *= 2;
		f = realloc(u->fds, (size_t)n * sizeof(*f));
		if (f == NULL)
			return NULL;
		memset(f + u->nfds, 0, (size_t)(n - u->nfds) * sizeof(*f));
		u->fds = f;
		u->nfds = n;
	}
	return &u->fds[fd];
}

static void mark_ready(struct uring *u, int fd)
{
	struct ufd *f = &u->fds[fd];
	if (f->ready)
		return;
	if (u->nready == u->cap_ready) {
		int n = u->cap_ready ? u->cap_ready * 2 : 256;
		int *r = realloc(u->ready, (size_t)n * sizeof(*r));
		if (r == NULL)
			return; /* picked up at its next write */
		u->ready = r;
		u->cap_ready = n;
	}
	f->ready = 1;
	u->ready[u->nready++] = fd;
	event_active(u->submit_ev, EV_TIMEOUT, 0);
}

/* The registered file slot of fd (slot == fd), installed on first use. */
static int use_fixed(struct uring *u, int fd, struct ufd *f)
{
	if (!(u->features & URING_F_FIXED_FILES) || fd >= u->o.fixed_files)
		return 0;
	if (!f->fixed &&
	    io_uring_register_files_update(&u->ring, (unsigned)fd, &fd, 1) == 1)
		f->fixed = 1;
	return f->fixed;
}

/* ---- writes ---- */

static struct op *op_get(struct uring *u)
{
	struct op *op = u->free_ops;
	if (op)
		u->free_ops = op->next;
	else if ((op = malloc(sizeof(*op))) == NULL)
		return NULL;
	memset(op, 0, sizeof(*op));
	op->kind = K_WRITE;
	return op;
}

static void op_put(struct uring *u, struct op *op)
{
	if (op->iov != op->inl)
		free(op->iov);
	op->next = u->free_ops;
	u->free_ops = op;
}

int uring_write(struct uring *u, int fd, const struct iovec *iov, int iovcnt,
		uint64_t tag)
{
	struct ufd *f;
	struct op *op;

	if (fd < 0 || iovcnt < 1 || iovcnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	if ((f = ufd_of(u, fd)) == NULL || (op = op_get(u)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	op->iov = iovcnt <= INLINE_IOV ? op->inl
				       : malloc((size_t)iovcnt * sizeof(*iov));
	if (op->iov == NULL) {
		op->iov = op->inl;
		op_put(u, op);
		errno = ENOMEM;
		return -1;
	}
	memcpy(op->iov, iov, (size_t)iovcnt * sizeof(*iov));
	op->niov = iovcnt;
	for (int i = 0; i < iovcnt; i++)
		op->len += iov[i].iov_len;
	op->fd = fd;
	op->tag = tag;
	op->zc = (u->features & URING_F_SEND_ZC) && u->o.zc_min > 0 &&
		 op->len >= u->o.zc_min;
	if (f->tail)
		f->tail->next = op;
	else
		f->head = op;
	f->tail = op;
	f->pending++;
	if (f->inflight == 0)
		mark_ready(u, fd);
	return 0;
}

/* The iovecs past the first n bytes. */
static void op_advance(struct op *op, size_t n)
{
	while (n > 0 && op->first < op->niov) {
		struct iovec *v = &op->iov[op->first];
		if (n >= v->iov_len) {
			n -= v->iov_len;
			op->first++;
		} else {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
	while (op->first < op->niov && op->iov[op->first].iov_len == 0)
		op->first++;
}

static void prep_write(struct uring *u, struct io_uring_sqe *sqe, struct op *op,
		       int fixed)
{
	int n = op->niov - op->first;
	struct iovec *v = &op->iov[op->first];

	if (n == 1) {
		if (op->zc) {
			io_uring_prep_send_zc(sqe, op->fd, v->iov_base,
					      v->iov_len, SEND_FLAGS, 0);
			sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		} else {
			io_uring_prep_send(sqe, op->fd, v->iov_base, v->iov_len,
					   SEND_FLAGS);
		}
	} else {
		memset(&op->msg, 0, sizeof(op->msg));
		op->msg.msg_iov = v;
		op->msg.msg_iovlen = (size_t)n;
		if (op->zc) {
			io_uring_prep_sendmsg_zc(sqe, op->fd, &op->msg,
						 SEND_FLAGS);
			sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		} else {
			io_uring_prep_sendmsg(sqe, op->fd, &op->msg,
					      SEND_FLAGS);
		}
	}
	if (fixed) {
		sqe->fd = op->fd; /* slot == fd */
		sqe->flags |= IOSQE_FIXED_FILE;
	}
	io_uring_sqe_set_data(sqe, op);
	op->parts++;
	if (op->zc)
		u->st.zc++;
}

/* A write is over: to the caller once its ZC notifications are in too. */
static void op_finish(struct uring *u, struct op *op)
{
	struct ufd *f = &u->fds[op->fd];
	struct uring_done d;

	if (op->notifs > 0)
		return;
	d.tag = op->tag;
	d.fd = op->fd;
	d.res = op->err;
	d.len = op->len;
	d.written = op->written;
	d.parts = op->parts;
	d.zc = op->zc;
	d.zc_copied = op->copied;
	f->pending--;
	op_put(u, op);
	u->o.on_write(u->o.arg, &d);
}

static void op_fail(struct uring *u, struct op *op, int err)
{
	op->err = err;
	op->failed = 1;
	op->next = NULL;
	*u->failed_tail = op;
	u->failed_tail = &op->next;
}

/* Back on the fd's resume list, in seq order (a chain's CQEs need not
 * arrive in order). */
static void op_resume(struct ufd *f, struct op *op)
{
	struct op **pp = &f->resume;
	while (*pp && (*pp)->seq < op->seq)
		pp = &(*pp)->next;
	op->next = *pp;
	*pp = op;
}

/* Submit what the fds on the ready list have. */
static int submit_ready(struct uring *u)
{
	int submitted = 0, i, rc;

	for (i = 0; i < u->nready; i++) {
		int fd = u->ready[i], n = 0, fixed;
		struct ufd *f = &u->fds[fd];
		struct op *op;

		f->ready = 0;
		if (f->inflight > 0)
			continue; /* again when its chain is over */
		if (f->resume) {
			struct op *last = f->resume;
			while (last->next)
				last = last->next;
			last->next = f->head;
			if (f->head == NULL)
				f->tail = last;
			f->head = f->resume;
			f->resume = NULL;
		}
		if (f->err || f->cancelling) {
			while ((op = f->head) != NULL) {
				f->head = op->next;
				op_fail(u, op, f->err ? f->err : -ECANCELED);
			}
			f->tail = NULL;
			continue;
		}
		for (op = f->head; op && n < CHAIN_MAX; op = op->next)
			n++;
		if (n == 0)
			continue;
		/* A chain must not straddle two submissions: a link does not
		 * carry over the end of one. */
		if (io_uring_sq_space_left(&u->ring) < (unsigned)n) {
			rc = io_uring_submit(&u->ring);
			if (rc < 0) {
				f->ready = 1; /* keep it listed */
				memmove(u->ready, u->ready + i,
					(size_t)(u->nready - i) * sizeof(int));
				u->nready -= i;
				return rc;
			}
			u->st.submits++;
			u->st.sqes += (uint64_t)rc;
			submitted += rc;
		}
		fixed = use_fixed(u, fd, f);
		for (int k = 0; k < n; k++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
			op = f->head;
			f->head = op->next;
			op->next = NULL;
			op->seq = f->seq++;
			prep_write(u, sqe, op, fixed);
			if (k + 1 < n)
				sqe->flags |= IOSQE_IO_LINK;
			f->inflight++;
		}
		if (f->head == NULL)
			f->tail = NULL;
		else
			mark_ready(u, fd); /* the rest: next submission */
	}
	/* Entries added while looping (the rest of a long queue) stay. */
	if (i > 0)
		memmove(u->ready, u->ready + i,
			(size_t)(u->nready - i) * sizeof(int));
	u->nready -= i;
	return submitted;
}

static void arm_recv(struct uring *u, struct ufd *f);

int uring_submit(struct uring *u)
{
	int n, rc, total;

	/* Inline completions are reaped right below: no eventfd wake-up for
	 * them (a shared-memory flag, no syscall). */
	io_uring_cq_eventfd_toggle(&u->ring, false);
	n = submit_ready(u);
	total = n < 0 ? 0 : n;
	if (io_uring_sq_ready(&u->ring) > 0) {
		rc = io_uring_submit(&u->ring);
		if (rc > 0) {
			u->st.submits++;
			u->st.sqes += (uint64_t)rc;
			total += rc;
		} else if (rc < 0 && n >= 0) {
			n = rc;
		}
	}
	uring_reap(u);
	io_uring_cq_eventfd_toggle(&u->ring, true);
	/* What came after the last look, before the flag was back. */
	if (io_uring_cq_ready(&u->ring) > 0)
		uring_reap(u);
	return n < 0 ? n : total;
}

/* ---- completions ---- */

static void write_cqe(struct uring *u, struct op *op,
		      const struct io_uring_cqe *c)
{
	int fd = op->fd;
	struct ufd *f = &u->fds[fd];

	if (c->flags & IORING_CQE_F_NOTIF) {
		if ((uint32_t)c->res & IORING_NOTIF_USAGE_ZC_COPIED) {
			if (!op->copied)
				u->st.zc_copied++;
			op->copied = 1;
		}
		op->notifs--;
		if (op->failed || op->written == op->len)
			op_finish(u, op);
		return;
	}
	if (c->flags & IORING_CQE_F_MORE)
		op->notifs++; /* SEND_ZC: the notification follows */
	f->inflight--;
	if (c->res >= 0) {
		op->written += (size_t)c->res;
		op_advance(op, (size_t)c->res);
		if (op->written < op->len) {
			u->st.partial++;
			op_resume(f, op);
		} else {
			op_finish(u, op);
		}
	} else if (c->res == -ECANCELED && !f->cancelling && !f->err) {
		op_resume(f, op); /* a linked write before it broke */
	} else {
		if (c->res != -ECANCELED)
			f->err = c->res;
		op->err = f->err ? f->err : c->res;
		op->failed = 1;
		op_finish(u, op);
	}
	/* The callback may have grown the table: f again. */
	f = &u->fds[fd];
	if (f->inflight == 0 && (f->resume || f->head))
		mark_ready(u, fd);
}

static void recv_cqe(struct uring *u, struct rcv *r,
		     const struct io_uring_cqe *c)
{
	int more = (c->flags & IORING_CQE_F_MORE) != 0, fd = r->fd;
	struct ufd *f;

	if (c->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = c->flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *p = u->rbuf + (size_t)bid * u->o.rbuf_size;
		/* The kernel wrote it behind memcheck's back. */
		if (c->res > 0)
			VALGRIND_MAKE_MEM_DEFINED(p, (size_t)c->res);
		if (c->res > 0 && !r->stopping)
			u->o.on_read(u->o.arg, r->tag, r->fd, p, c->res);
		io_uring_buf_ring_add(u->br, p, u->o.rbuf_size,
				      (unsigned short)bid,
				      io_uring_buf_ring_mask(u->o.rbufs), 0);
		io_uring_buf_ring_advance(u->br, 1);
	}
	if (more)
		return;
	if (r->stopping || c->res == 0 || (c->res < 0 && c->res != -ENOBUFS)) {
		u->fds[fd].recv_armed = 0;
		u->fds[fd].recv = NULL;
		if (!r->stopping)
			u->o.on_read(u->o.arg, r->tag, fd, NULL,
				     c->res == -ECANCELED ? 0 : c->res);
		free(r);
		return;
	}
	f = &u->fds[fd];
	f->recv_armed = 0;
	/* Out of buffers (ENOBUFS), or the kernel ended the multishot after
	 * data: the buffers are back, arm it again. */
	u->st.recv_rearms++;
	arm_recv(u, f);
}

unsigned uring_reap(struct uring *u)
{
	struct io_uring_cqe *cqes[128];
	unsigned total = 0, n;
	struct op *op;

	do {
		n = io_uring_peek_batch_cqe(&u->ring, cqes, 128);
		for (unsigned i = 0; i < n; i++) {
			void *p = io_uring_cqe_get_data(cqes[i]);
			if (*(uint8_t *)p == K_WRITE)
				write_cqe(u, p, cqes[i]);
			else if (*(uint8_t *)p == K_RECV)
				recv_cqe(u, p, cqes[i]);
		}
		io_uring_cq_advance(&u->ring, n);
		total += n;
	} while (n == 128);
	while ((op = u->failed) != NULL) {
		u->failed = op->next;
		if (u->failed == NULL)
			u->failed_tail = &u->failed;
		op_finish(u, op);
	}
	u->st.cqes += total;
	return total;
}

/* ---- receives ---- */

static void arm_recv(struct uring *u, struct ufd *f)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	struct rcv *r = f->recv;

	if (sqe == NULL) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (sqe == NULL)
		return;
	io_uring_prep_recv_multishot(sqe, r->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	if (use_fixed(u, r->fd, f)) {
		sqe->fd = r->fd;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
	io_uring_sqe_set_data(sqe, r);
	f->recv_armed = 1;
	event_active(u->submit_ev, EV_TIMEOUT, 0);
}

int uring_recv_start(struct uring *u, int fd, uint64_t tag)
{
	struct ufd *f;

	if (!(u->features & URING_F_RECV_MULTISHOT) || u->o.on_read == NULL) {
		errno = ENOTSUP;
		return -1;
	}
	if (fd < 0 || (f = ufd_of(u, fd)) == NULL) {
		errno = fd < 0 ? EINVAL : ENOMEM;
		return -1;
	}
	if (f->recv) {
		errno = EBUSY;
		return -1;
	}
	if ((f->recv = calloc(1, sizeof(*f->recv))) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	f->recv->kind = K_RECV;
	f->recv->fd = fd;
	f->recv->tag = tag;
	arm_recv(u, f);
	return 0;
}

void uring_cancel(struct uring *u, int fd)
{
	struct io_uring_sqe *sqe;
	struct ufd *f;

	if (fd < 0 || fd >= u->nfds)
		return;
	f = &u->fds[fd];
	f->cancelling = 1;
	if (f->recv)
		f->recv->stopping = 1;
	if (f->head || f->resume)
		mark_ready(u, fd); /* fails them at the next submission */
	if (f->inflight == 0 && !f->recv_armed)
		return;
	if ((sqe = io_uring_get_sqe(&u->ring)) == NULL) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	if (sqe == NULL)
		return;
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data(sqe, &ignore_tag);
	event_active(u->submit_ev, EV_TIMEOUT, 0);
}

unsigned uring_pending(const struct uring *u, int fd)
{
	const struct ufd *f;
	if (fd < 0 || fd >= u->nfds)
		return 0;
	f = &u->fds[fd];
	return f->pending + (f->recv != NULL);
}

void uring_forget(struct uring *u, int fd)
{
	struct ufd *f;
	int none = -1;

	if (fd < 0 || fd >= u->nfds)
		return;
	f = &u->fds[fd];
	if (f->fixed)
		io_uring_register_files_update(&u->ring, (unsigned)fd, &none,
					       1);
	if (!f->ready)
		memset(f, 0, sizeof(*f));
	else {
		f->err = f->cancelling = f->fixed = 0;
		f->seq = 0;
	}
}

/* ---- set-up ---- */

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct uring *u = arg;
	uint64_t v;
	(void)what;
	if (read(fd, &v, sizeof(v)) == sizeof(v) &&
	    io_uring_cq_ready(&u->ring) > 0)
		u->st.eventfd_wakeups++;
	uring_reap(u);
}

static void submit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	uring_submit(arg);
}

/* Provided buffers for the multishot receives. */
static int setup_rbufs(struct uring *u)
{
	struct io_uring_buf_reg reg;
	unsigned n = u->o.rbufs;

	u->br_len = (size_t)n * sizeof(struct io_uring_buf);
	u->br = mmap(NULL, u->br_len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED) {
		u->br = NULL;
		return -1;
	}
	if ((u->rbuf = malloc((size_t)n * u->o.rbuf_size)) == NULL)
		return -1;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)u->br;
	reg.ring_entries = n;
	reg.bgid = BGID;
	if (io_uring_register_buf_ring(&u->ring, &reg, 0) < 0)
		return -1;
	io_uring_buf_ring_init(u->br);
	for (unsigned i = 0; i < n; i++)
		io_uring_buf_ring_add(u->br,
				      u->rbuf + (size_t)i * u->o.rbuf_size,
				      u->o.rbuf_size, (unsigned short)i,
				      io_uring_buf_ring_mask(n), (int)i);
	io_uring_buf_ring_advance(u->br, (int)n);
	return 0;
}

/* A completion within 200 ms, for the start-up probe: 0 or -errno. */
static int wait_brief(struct io_uring *ring, struct io_uring_cqe **c)
{
	struct __kernel_timespec ts = {0, 200 * 1000 * 1000};
	return io_uring_wait_cqe_timeout(ring, c, &ts);
}

/* What this kernel really does, tried on a loopback TCP pair: a SEND_ZC
 * with its usage report, a multishot receive that stays armed. */
static void probe_features(struct uring *u, const struct io_uring_probe *p)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int l = -1, a = -1, b = -1, zc = 0, ms = 0;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *c;
	char byte = 'z';

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l, 1) < 0 || getsockname(l, (struct sockaddr *)&sa, &sl) < 0)
		goto out;
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a < 0 || connect(a, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    (b = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		goto out;
	if (io_uring_opcode_supported(p, IORING_OP_SEND_ZC) &&
	    (sqe = io_uring_get_sqe(&u->ring)) != NULL) {
		io_uring_prep_send_zc(sqe, a, &byte, 1, MSG_NOSIGNAL, 0);
		sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
		io_uring_sqe_set_data(sqe, &ignore_tag);
		io_uring_submit(&u->ring);
		/* The result, then (F_MORE) the notification. */
		for (int i = 0; i < 2; i++) {
			if (wait_brief(&u->ring, &c) < 0)
				break;
			if (i == 0 &&
			    (c->res != 1 || !(c->flags & IORING_CQE_F_MORE))) {
				io_uring_cqe_seen(&u->ring, c);
				break;
			}
			if (i == 1 && (c->flags & IORING_CQE_F_NOTIF))
				zc = 1;
			io_uring_cqe_seen(&u->ring, c);
		}
	}
	if (u->o.on_read && io_uring_opcode_supported(p, IORING_OP_RECV) &&
	    setup_rbufs(u) == 0 && (sqe = io_uring_get_sqe(&u->ring)) != NULL) {
		io_uring_prep_recv_multishot(sqe, b, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BGID;
		io_uring_sqe_set_data(sqe, &ignore_tag);
		io_uring_submit(&u->ring);
		if (!zc && send(a, &byte, 1, MSG_NOSIGNAL) != 1)
			goto out;
		/* The byte (sent above, or by the ZC send) arrives with
		 * F_MORE: the receive stays armed. */
		if (wait_brief(&u->ring, &c) == 0) {
			ms = c->res == 1 && (c->flags & IORING_CQE_F_MORE) &&
			     (c->flags & IORING_CQE_F_BUFFER);
			if (c->flags & IORING_CQE_F_BUFFER) {
				unsigned bid =
					c->flags >> IORING_CQE_BUFFER_SHIFT;
				io_uring_buf_ring_add(
					u->br,
					u->rbuf + (size_t)bid * u->o.rbuf_size,
					u->o.rbuf_size, (unsigned short)bid,
					io_uring_buf_ring_mask(u->o.rbufs), 0);
				io_uring_buf_ring_advance(u->br, 1);
			}
			io_uring_cqe_seen(&u->ring, c);
		}
		/* Closing ends it: wait for its last completion. */
		close(a);
		a = -1;
		for (int i = 0; i < 4; i++) {
			if (wait_brief(&u->ring, &c) < 0)
				break;
			int last = !(c->flags & IORING_CQE_F_MORE) &&
				   !(c->flags & IORING_CQE_F_NOTIF);
			io_uring_cqe_seen(&u->ring, c);
			if (last)
				break;
		}
	}
out:
	/* Anything still to come carries ignore_tag: dropped when reaped. */
	while (io_uring_peek_cqe(&u->ring, &c) == 0)
		io_uring_cqe_seen(&u->ring, c);
	if (zc)
		u->features |= URING_F_SEND_ZC;
	if (ms)
		u->features |= URING_F_RECV_MULTISHOT;
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	if (l >= 0)
		close(l);
}

struct uring *uring_new(struct event_base *base, const struct uring_opts *o,
			char *why, size_t whylen)
{
	struct io_uring_params params;
	struct io_uring_probe *p = NULL;
	struct uring *u;
	unsigned entries;
	int rc;

	if (o == NULL || o->on_write == NULL || base == NULL) {
		set_why(why, whylen, "uring_new", EINVAL);
		return NULL;
	}
	if (uring_supported(why, whylen) < 0)
		return NULL;
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		set_why(why, whylen, "uring_new", ENOMEM);
		return NULL;
	}
	u->o = *o;
	u->efd = -1;
	u->base = base;
	u->failed_tail = &u->failed;
	if (u->o.rbufs == 0 || (u->o.rbufs & (u->o.rbufs - 1)))
		u->o.rbufs = 64;
	if (u->o.rbuf_size == 0)
		u->o.rbuf_size = 16 * 1024;
	entries = u->o.entries ? u->o.entries : 4096;
	/* Room for every request and, with SEND_ZC, its notification; the
	 * kernel keeps what does not fit (IORING_FEAT_NODROP) all the same. */
	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER |
		       IORING_SETUP_COOP_TASKRUN;
	params.cq_entries = entries * 4;
	rc = io_uring_queue_init_params(entries, &u->ring, &params);
	if (rc == -EINVAL) {
		memset(&params, 0, sizeof(params));
		params.flags = IORING_SETUP_CQSIZE;
		params.cq_entries = entries * 4;
		rc = io_uring_queue_init_params(entries, &u->ring, &params);
	}
	if (rc < 0) {
		set_why(why, whylen, "io_uring_queue_init", -rc);
		free(u);
		return NULL;
	}
	if ((p = io_uring_get_probe_ring(&u->ring)) == NULL) {
		set_why(why, whylen, "io_uring probe", ENOSYS);
		goto fail;
	}
	probe_features(u, p);
	io_uring_free_probe(p);
	if (u->o.fixed_files > 0 &&
	    io_uring_register_files_sparse(&u->ring,
					   (unsigned)u->o.fixed_files) == 0)
		u->features |= URING_F_FIXED_FILES;
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0 || (rc = io_uring_register_eventfd(&u->ring, u->efd))) {
		set_why(why, whylen, "io_uring eventfd",
			u->efd < 0 ? errno : -rc);
		goto fail;
	}
	u->efd_ev = event_new(base, u->efd, EV_READ | EV_PERSIST, efd_cb, u);
	u->submit_ev = event_new(base, -1, 0, submit_cb, u);
	if (u->efd_ev == NULL || u->submit_ev == NULL ||
	    event_add(u->efd_ev, NULL) < 0) {
		set_why(why, whylen, "io_uring event", ENOMEM);
		goto fail;
	}
	return u;
fail:
	if (u->efd_ev)
		event_free(u->efd_ev);
	if (u->submit_ev)
		event_free(u->submit_ev);
	if (u->efd >= 0)
		close(u->efd);
	io_uring_queue_exit(&u->ring);
	if (u->br)
		munmap(u->br, u->br_len);
	free(u->rbuf);
	free(u);
	return NULL;
}

unsigned uring_features(const struct uring *u)
{
	return u->features;
}

const struct uring_stats *uring_stats(const struct uring *u)
{
	return &u->st;
}

unsigned uring_outstanding(const struct uring *u)
{
	unsigned n = 0;
	for (int fd = 0; fd < u->nfds; fd++)
		n += uring_pending(u, fd);
	return n;
}

void uring_quiesce(struct uring *u)
{
	for (int fd = 0; fd < u->nfds; fd++)
		if (uring_pending(u, fd))
			uring_cancel(u, fd);
	uring_submit(u);
	/* Bounded: a cancelled request completes at once; 2 s at most. */
	for (int i = 0; i < 200 && uring_outstanding(u) > 0; i++) {
		struct __kernel_timespec ts = {0, 10 * 1000 * 1000};
		struct io_uring_cqe *c;
		if (io_uring_wait_cqe_timeout(&u->ring, &c, &ts) == 0)
			u->st.waits++;
		uring_submit(u);
	}
}

void uring_free(struct uring *u)
{
	struct op *op;

	if (u == NULL)
		return;
	uring_quiesce(u);
	for (int fd = 0; fd < u->nfds; fd++)
		free(u->fds[fd].recv);
	free(u->fds);
	free(u->ready);
	while ((op = u->free_ops) != NULL) {
		u->free_ops = op->next;
		free(op);
	}
	event_free(u->efd_ev);
	event_free(u->submit_ev);
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	if (u->br)
		munmap(u->br, u->br_len);
	free(u->rbuf);
	free(u);
}
