/*
 * permessage-deflate (RFC 7692) codec: extension negotiation, inflate of
 * one received message, deflate of one outgoing message.
 *
 * Nothing here does I/O. The server always answers with
 * server_no_context_takeover and client_no_context_takeover, so no
 * compression state survives a message: one inflate stream and one deflate
 * stream serve the whole process (the loop is single-threaded), reset per
 * message, and a connection holds nothing but its struct ws_pmd (2 bytes).
 */
#ifndef BASESTATION_DEFLATE_H
#define BASESTATION_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* ---- negotiation (Sec-WebSocket-Extensions) ---- */

/* What a connection agreed to. */
struct ws_pmd {
	uint8_t on;	     /* 1: permessage-deflate in use */
	uint8_t window_bits; /* LZ77 window the server deflates with, 9..15:
				server_max_window_bits when offered, else 15 */
};

/* Room for the longest response value ws_pmd_negotiate writes, NUL
 * included. */
#define WS_PMD_RESPONSE_MAX 104

enum {
	WS_PMD_MALFORMED = -1, /* not an extension list: ignore the header */
	WS_PMD_DECLINED = 0,   /* no acceptable permessage-deflate offer */
	WS_PMD_ACCEPTED = 1,
};

/*
 * Pick the first acceptable permessage-deflate offer from one
 * Sec-WebSocket-Extensions header value (a comma list of offers, RFC 6455
 * §9.1 grammar with RFC 7230 tokens, quoted strings and optional
 * whitespace; empty list elements are skipped). An offer is declined when a
 * parameter is unknown, repeated, or has an invalid value (RFC 7692 §7.1),
 * or when it asks for server_max_window_bits=8, which zlib cannot produce
 * for raw deflate. Other extensions are ignored.
 *
 * On WS_PMD_ACCEPTED *pmd is filled and resp holds the response value:
 * "permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover" plus "; server_max_window_bits=N" when the
 * offer had it. client_max_window_bits is never answered: the server
 * inflates with a 15-bit window, which decodes whatever the client uses.
 * Otherwise *pmd is zeroed and resp is "". A request with several
 * Sec-WebSocket-Extensions headers: call once per header, in order, and
 * stop at the first ACCEPTED (offers are in the client's preference order
 * across headers).
 */
int ws_pmd_negotiate(const char *value, size_t len, struct ws_pmd *pmd,
		     char resp[WS_PMD_RESPONSE_MAX]);

/* ---- output buffer ---- */

/* A growing byte buffer owned by the caller (typically one per process,
 * reused for every message and trimmed afterwards). */
struct ws_zbuf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* Free the buffer when it holds more than keep bytes of capacity (after a
 * large message); always sets len to 0. */
void ws_zbuf_trim(struct ws_zbuf *b, size_t keep);
void ws_zbuf_free(struct ws_zbuf *b);

/* ---- inflate (client -> server) ---- */

/* Most deflate streams in one message (a block with BFINAL set ends one;
 * bytes after it start the next, RFC 7692 §7.2.3.4); more is 1007. Each
 * new stream copies up to 32 KiB of history, so this bounds the work. */
#define WS_INFLATE_MAX_STREAMS 64

/* One message being inflated. Fields are private. */
struct ws_inflate {
	struct ws_zbuf *out;
	size_t limit;
	uint32_t utf8; /* DFA state, when checking */
	uint16_t err;  /* sticky result */
	uint8_t check_utf8;
	uint8_t ended;	 /* the current stream reached its final block */
	uint8_t fed;	 /* any payload byte was fed */
	uint8_t streams; /* deflate streams begun in this message */
};

/*
 * Inflate one message: out (emptied first) receives the bytes, never more
 * than limit of them, and out grows to at most limit bytes of capacity (a
 * message one byte longer is 1009 without allocating that byte). With utf8
 * set the output is validated as it is produced (1007 at the first bad
 * byte).
 *
 * The process has ONE inflate stream: begin, feed and end for one message
 * must run within one loop callback, without another message started in
 * between (starting one while another is open aborts). ws_inflate_message
 * does all three. The RFC 7692 §7.2.2 tail (00 00 ff ff) is appended by
 * end; the inflated data must end on a block boundary or at a final block.
 * A zero-length payload is the empty message.
 *
 * Each returns 0 or the close code to fail the connection with:
 * WS_CLOSE_TOO_BIG (1009) when the inflated message would exceed limit,
 * WS_CLOSE_BAD_DATA (1007) for corrupt deflate data or (utf8 set) invalid
 * UTF-8, WS_CLOSE_INTERNAL (1011) out of memory. An error is sticky until
 * end, which returns it and releases the stream; always call end.
 */
void ws_inflate_begin(struct ws_inflate *st, struct ws_zbuf *out, size_t limit,
		      int utf8);
uint16_t ws_inflate_feed(struct ws_inflate *st, const uint8_t *in, size_t len);
uint16_t ws_inflate_end(struct ws_inflate *st);
uint16_t ws_inflate_message(const uint8_t *in, size_t len, size_t limit,
			    int utf8, struct ws_zbuf *out);

/* ---- deflate (server -> client) ---- */

/* zlib level for outgoing messages (zlib's default trade-off). */
#define WS_DEFLATE_LEVEL 6

/*
 * Compress one whole message for sending with RSV1 set: raw deflate with a
 * 2^window_bits window (9..15; see struct ws_pmd), no context from earlier
 * messages, sync flush with the trailing 00 00 ff ff removed (RFC 7692
 * §7.2.1). The output depends only on (in, len, window_bits), so a message
 * compressed once serves every recipient that negotiated the same window.
 * Returns 1 with the payload in out (emptied first), 0 when len < min (send
 * it uncompressed, RSV1 clear; out untouched), -1 out of memory or a bad
 * window_bits. Frame it with ws_frame_header_rsv1().
 */
int ws_deflate_message(const uint8_t *in, size_t len, size_t min,
		       int window_bits, struct ws_zbuf *out);

/* ---- the shared streams ---- */

/* Bytes of heap held by the shared inflate and deflate streams right now
 * (counted by their allocator). */
size_t ws_deflate_heap(void);
/* Free the shared streams (at exit; they are recreated on demand). Must not
 * be called while an inflate is open. */
void ws_deflate_cleanup(void);

#endif
