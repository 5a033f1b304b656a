/*
 * io_uring batch writer and reader (liburing), independent of the
 * connection code: a transport queues writes during a loop turn and the
 * whole turn leaves in one io_uring_submit; completions are reaped from the
 * shared ring without a system call and, when they come later (a socket
 * that was full drains, data arrives for a multishot receive), the ring's
 * eventfd wakes the libevent loop.
 *
 * Contract:
 * - uring_write() copies the iovec array but not the bytes: the buffers it
 *   points at belong to the caller and must stay valid and unchanged until
 *   that write's completion (on_write) has been called.
 * - Each write completes exactly once: every byte taken by the kernel
 *   (res == 0, written == len) or failed (res = -errno, written = the bytes
 *   that went before). Writes to one fd go out in the order they were
 *   queued: the ones queued in one turn are linked (IOSQE_IO_LINK), and a
 *   chain still in flight holds back the writes queued after it.
 * - Sends use MSG_WAITALL: the kernel finishes a short send itself before
 *   it completes the request. Without it a short send does not break a
 *   link, and the next linked send would leave the rest of the first one
 *   out of the stream. A write that still completes short is resumed here,
 *   ahead of everything queued after it on that fd (counted in
 *   stats.partial and in the write's `parts`).
 * - Writes of at least zc_min bytes use SEND_ZC where the kernel has it; the
 *   completion then waits for the kernel's notification that the buffers
 *   are free (on loopback the kernel copies anyway: zc_copied), so it may
 *   complete after writes queued behind it on that fd; other writes
 *   complete in the order they were queued on their fd.
 * - Before close(fd): uring_cancel(fd) if anything may be in flight, wait
 *   until uring_pending(fd) is 0, then uring_forget(fd).
 * - Callbacks run from uring_submit(), uring_reap() and the eventfd's
 *   event, never from uring_write(); they may queue writes.
 */
#ifndef BASESTATION_NET_URING_H
#define BASESTATION_NET_URING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct event_base;
struct uring;

struct uring_done {
	uint64_t tag; /* the caller's, from uring_write */
	int fd;
	int res;	/* 0, or -errno */
	size_t len;	/* bytes queued */
	size_t written; /* bytes the kernel took */
	unsigned parts; /* submissions it took (> 1: resumed after a short send)
			 */
	unsigned zc : 1;	/* sent with SEND_ZC */
	unsigned zc_copied : 1; /* ... and the kernel copied it all the same */
};

typedef void (*uring_write_cb)(void *arg, const struct uring_done *d);
/* n > 0: bytes read into p (valid during the call only); n == 0: end of
 * stream; n < 0: -errno. After n <= 0 the fd's receive is over. */
typedef void (*uring_read_cb)(void *arg, uint64_t tag, int fd, const void *p,
			      ssize_t n);

struct uring_opts {
	unsigned entries;   /* submission queue size (4096) */
	size_t zc_min;	    /* SEND_ZC from this many bytes on; 0: never */
	int fixed_files;    /* registered file slots (fds below it); 0: none */
	unsigned rbufs;	    /* provided receive buffers, a power of 2 (64) */
	unsigned rbuf_size; /* bytes each (16 KiB) */
	uring_write_cb on_write;
	uring_read_cb on_read;
	void *arg;
};

#define URING_F_SEND_ZC	       1u /* SEND_ZC usable (and usage reported) */
#define URING_F_RECV_MULTISHOT 2u /* multishot receive usable */
#define URING_F_FIXED_FILES    4u /* the registered file table is on */

struct uring_stats {
	uint64_t submits;	  /* io_uring_submit calls that sent SQEs */
	uint64_t sqes;		  /* requests submitted */
	uint64_t cqes;		  /* completions reaped */
	uint64_t waits;		  /* syscalls made only to reap */
	uint64_t partial;	  /* sends resumed after a short completion */
	uint64_t zc, zc_copied;	  /* SEND_ZC sends; those the kernel copied */
	uint64_t eventfd_wakeups; /* eventfd reads that found completions */
	uint64_t recv_rearms;	  /* multishot receives armed again */
};

/* 0 when io_uring can carry the transport here (ring, probe, the opcodes
 * it needs); -1 with the reason in why otherwise. */
int uring_supported(char *why, size_t whylen);

/* NULL with the reason when io_uring is not usable. o->on_write is
 * required; o->on_read only for uring_recv_start. */
struct uring *uring_new(struct event_base *base, const struct uring_opts *o,
			char *why, size_t whylen);
/* Cancels what is in flight and waits (bounded) for it; callbacks for the
 * cancelled writes run from here. */
void uring_free(struct uring *u);
/* Cancel everything queued or in flight and wait (bounded, 2 s) until its
 * completions have been dispatched; the ring stays usable. */
void uring_quiesce(struct uring *u);
unsigned uring_features(const struct uring *u);
const struct uring_stats *uring_stats(const struct uring *u);

/* Queue a write of iov[0..iovcnt) to fd; 0, or -1 (EINVAL, ENOMEM).
 * Submitted by uring_submit(), or at the end of this loop turn. */
int uring_write(struct uring *u, int fd, const struct iovec *iov, int iovcnt,
		uint64_t tag);
/* Submit every queued write (one io_uring_submit while the turn fits the
 * submission queue), then reap what completed inline. Returns the number
 * of requests submitted, or -errno. */
int uring_submit(struct uring *u);
/* Dispatch the completions there are, without a system call. */
unsigned uring_reap(struct uring *u);

/* Multishot receive on fd into the shared provided buffers; on_read gets
 * the data. 0, or -1 (ENOTSUP without multishot receive, EBUSY). */
int uring_recv_start(struct uring *u, int fd, uint64_t tag);
/* Cancel fd's receive and its queued and in-flight writes (they complete
 * with -ECANCELED). */
void uring_cancel(struct uring *u, int fd);
/* Requests not completed yet, on every fd (a walk of the fd table). */
unsigned uring_outstanding(const struct uring *u);
/* Requests on fd not completed yet (writes, and its receive). */
unsigned uring_pending(const struct uring *u, int fd);
/* fd is about to be closed: drop its registered file slot and state.
 * Only with uring_pending(fd) == 0. */
void uring_forget(struct uring *u, int fd);

#endif
