/*
 * RFC 6455 codec: handshake parser, frame parser, frame writer, UTF-8.
 *
 * Nothing here does I/O. Bytes go in, results come out; results point into
 * the caller's buffer or into the parser's own message buffer.
 */
#ifndef BASESTATION_WS_H
#define BASESTATION_WS_H

#include <stddef.h>
#include <stdint.h>

/* ---- close codes (RFC 6455 §7.4.1) ---- */
enum {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005, /* never sent on the wire */
	WS_CLOSE_BAD_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
};

#define WS_CTL_MAX 125 /* largest control frame payload */

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

/* ---- UTF-8 (incremental, Hoehrmann-style DFA) ---- */
#define WS_UTF8_ACCEPT 0u
#define WS_UTF8_REJECT 1u /* sticky */

/* Feed bytes; returns the new state. ACCEPT means "at a code point
 * boundary", REJECT means invalid (sticky), anything else means "inside a
 * multi-byte sequence". */
uint32_t ws_utf8_feed(uint32_t state, const uint8_t *s, size_t n);
/* 1 if the whole buffer is valid UTF-8, else 0. */
int ws_utf8_valid(const uint8_t *s, size_t n);
/* Decode the sequence at s (n > 0 bytes left): its length (1..4) with the
 * code point in *cp, or 0 when it is not well-formed UTF-8 (overlong,
 * surrogate, out of range, truncated). */
size_t ws_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* ---- frame parser ---- */

enum ws_event_type {
	WS_EV_NONE = 0, /* all input consumed, need more bytes */
	WS_EV_TEXT,	/* a complete text message: data/len */
	WS_EV_PING,	/* data/len = payload (<= 125) */
	WS_EV_PONG,	/* data/len = payload (<= 125) */
	WS_EV_CLOSE,	/* close_code (1005 if absent), data/len = reason */
	WS_EV_ERROR,	/* close_code = 1002/1003/1007/1009; parser is dead */
	WS_EV_BINARY,	/* a complete binary message (binary_ok only) */
};

struct ws_event {
	enum ws_event_type type;
	uint16_t close_code;
	uint8_t compressed;  /* WS_EV_TEXT: RSV1 was set (rsv1_ok only); data
				is the deflate payload, NOT UTF-8-checked: the
				caller inflates and validates it */
	const uint8_t *data; /* valid until the next ws_parser_feed call */
	size_t len;
};

struct ws_parser {
	/* configuration */
	size_t max_message;   /* max total payload of one (possibly fragmented)
				 message; larger -> WS_EV_ERROR 1009 */
	uint32_t max_frames;  /* frames per message, 0 = unlimited;
				 more -> WS_EV_ERROR 1009 */
	uint32_t frames_read; /* complete frames so far, any opcode (wraps):
				 what the caller counts as life */
	uint8_t require_mask : 1; /* 1 on the server: unmasked -> 1002 */
	uint8_t rsv1_ok : 1;	  /* permessage-deflate negotiated: RSV1
				     allowed on a message's first frame
				     (default 0: any RSV bit -> 1002) */
	uint8_t binary_ok : 1;	  /* binary messages delivered as
				     WS_EV_BINARY, not UTF-8-checked
				     (default 0: refused, 1003) */
	/* state (private); ordered so that an idle connection's parser has
	 * no padding */
	uint8_t state;
	uint8_t hdr_len;
	uint8_t hdr_need;
	uint8_t hdr[14];
	uint8_t opcode; /* opcode of the current frame */
	uint8_t fin;
	uint8_t masked;
	uint8_t mask[4];
	uint8_t mask_pos;
	uint8_t in_message; /* a fragmented text message is in progress */
	uint8_t compressed; /* the current message had RSV1 */
	uint8_t binary;	    /* the current message is binary */
	uint8_t dead;
	uint8_t ctl_len;
	uint32_t frames;    /* frames of the current message */
	uint32_t utf8;	    /* UTF-8 DFA state for the current message */
	uint64_t remaining; /* payload bytes left in the current frame */
	uint8_t *ctl;	    /* payload of the current control frame (heap,
			       WS_CTL_MAX, only while one is read) */
	uint8_t *msg;	    /* message buffer (heap, grown on demand) */
	size_t msg_len;
	size_t msg_cap;
};

/* Set up a parser; no allocation happens until a data frame arrives. */
void ws_parser_init(struct ws_parser *p, size_t max_message, int require_mask);
/* Free the message buffer. The struct may be re-initialised afterwards. */
void ws_parser_finish(struct ws_parser *p);

/*
 * Consume bytes from buf until one event is complete or the input ends.
 * Returns the number of bytes consumed (0..len) and fills *ev. When
 * ev->type is WS_EV_NONE every byte was consumed. The caller loops until it
 * has consumed everything or got WS_EV_ERROR / WS_EV_CLOSE. Data in *ev
 * stays valid until the next call. After WS_EV_ERROR every further call
 * returns 0 with WS_EV_ERROR again.
 *
 * The size of a data frame is checked against max_message when its header
 * is complete, before any payload is buffered. A text message's UTF-8 is
 * checked as its bytes arrive, across fragments (1007 at the first bad
 * byte). A binary message is refused on its first header (1003), unless
 * binary_ok is set: then it is collected like a text message, without the
 * UTF-8 check, and delivered as WS_EV_BINARY. A close
 * frame's code must be valid per RFC 6455 §7.4 and its reason valid UTF-8,
 * otherwise 1002 (bad code / 1-byte payload) or 1007 (bad reason).
 *
 * With rsv1_ok set (permessage-deflate, RFC 7692 §6), RSV1 on the first
 * frame of a data message marks it compressed: its payload is collected
 * without the UTF-8 check, up to WS_COMPRESSED_MAX(max_message) bytes, and
 * delivered with ev->compressed = 1. RSV1 on a continuation or control
 * frame, RSV2 or RSV3, or RSV1 while rsv1_ok is 0 are 1002.
 */
size_t ws_parser_feed(struct ws_parser *p, const uint8_t *buf, size_t len,
		      struct ws_event *ev);

/* The largest compressed payload buffered for a message limited to max
 * inflated bytes: deflate can expand incompressible data slightly (zlib by
 * 5 bytes per stored block, fixed Huffman codes by up to 1/8), and the
 * limit that matters is checked on the inflated bytes. */
#define WS_COMPRESSED_MAX(max)                                                 \
	((max) > (SIZE_MAX - 64) / 9 * 8 ? SIZE_MAX : (max) + (max) / 8 + 64)

/* Make *buf (capacity *cap) hold need bytes: capacity doubles from first
 * and stops at limit, or at need when need > limit. 0, or -1 out of memory
 * (the buffer is kept). Shared by the parser and the deflate buffers. */
int ws_buf_reserve(uint8_t **buf, size_t *cap, size_t need, size_t limit,
		   size_t first);

/* Bytes of memory the parser holds on the heap right now. */
size_t ws_parser_heap(const struct ws_parser *p);
/* 1 while a frame or a fragmented message is incomplete: part of a header
 * or payload read, or fragments of a message still to come. */
int ws_parser_partial(const struct ws_parser *p);

/* Write an unmasked server frame header (FIN set) for opcode and payload
 * length into out (>= 10 bytes). Returns the header length (2, 4 or 10). */
size_t ws_frame_header(uint8_t *out, enum ws_opcode op, uint64_t len);
/* The same with RSV1 set: the header of a permessage-deflate message whose
 * payload (len bytes) is the output of ws_deflate_message(). */
size_t ws_frame_header_rsv1(uint8_t *out, enum ws_opcode op, uint64_t len);

/* Write a masked client frame header (FIN set) with the given key into out
 * (>= 14 bytes); the caller masks the payload with ws_mask(). Used by tests,
 * the load generator and fuzz drivers. */
size_t ws_frame_header_masked(uint8_t *out, enum ws_opcode op, uint64_t len,
			      const uint8_t key[4]);
void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* ---- handshake ---- */

#define WS_HS_MAX_BYTES	     8192 /* request line + headers */
#define WS_HS_MAX_HEADERS    64
#define WS_HS_MAX_EXTENSIONS 8 /* Sec-WebSocket-Extensions headers kept */

struct ws_str {
	const char *p; /* points into the request buffer; NOT NUL-terminated */
	size_t n;
};

struct ws_request {
	struct ws_str method;
	struct ws_str target; /* full request target: path + '?' + query */
	struct ws_str path;   /* target up to '?' */
	struct ws_str query;  /* after '?', may be empty */
	int http_minor;	      /* 1 for HTTP/1.1; -1 when not HTTP/1.x */
	int http_major;
	/* the headers we care about (last one wins, except as noted) */
	struct ws_str host;
	struct ws_str upgrade;
	struct ws_str connection;   /* all Connection headers, the last one */
	int connection_has_upgrade; /* any Connection header token "upgrade" */
	int upgrade_is_websocket;   /* Upgrade header contains "websocket" */
	struct ws_str key;
	struct ws_str version;
	struct ws_str origin;
	struct ws_str protocol; /* Sec-WebSocket-Protocol (comma list) */
	struct ws_str authorization;
	struct ws_str forwarded_for; /* X-Forwarded-For */
	/* Every Sec-WebSocket-Extensions header, in order (offers are in the
	 * client's preference order across headers); past
	 * WS_HS_MAX_EXTENSIONS the rest are ignored. */
	struct ws_str extensions[WS_HS_MAX_EXTENSIONS];
	int n_extensions;
	struct ws_str last_event_id; /* Last-Event-ID (an SSE reconnect) */
	int header_count;
	unsigned seen;	   /* WS_HDR_* bits: headers given at least once */
	unsigned repeated; /* WS_HDR_* bits: given more than once */
};

/* Headers that may appear at most once (RFC 9112 §3.2, RFC 6455 §4.2.1,
 * §11.3.1, §11.3.5, RFC 6454 §7.3 for Origin). */
enum {
	WS_HDR_HOST = 1u << 0,
	WS_HDR_UPGRADE = 1u << 1,
	WS_HDR_KEY = 1u << 2,
	WS_HDR_VERSION = 1u << 3,
	WS_HDR_ORIGIN = 1u << 4,
};

enum {
	WS_HS_NEED_MORE = -2,
	WS_HS_BAD = -1, /* malformed, too large or too many headers: 400 */
};

/*
 * Parse an HTTP/1.x request head from buf. Returns the number of bytes of
 * the head (through the blank line) on success, WS_HS_NEED_MORE when the
 * blank line has not arrived yet (and len < WS_HS_MAX_BYTES), WS_HS_BAD on
 * a malformed request, a head over WS_HS_MAX_BYTES or more than
 * WS_HS_MAX_HEADERS headers. Accepts CRLF and bare LF line ends. Fields in
 * *req point into buf.
 */
int ws_request_parse(const char *buf, size_t len, struct ws_request *req);

/* ws_request_check_path for the contract's path, "/ws". */
int ws_request_check(const struct ws_request *req);

/* The HTTP part of the checks below, for a plain GET of path (an SSE
 * stream): 0, 400 (not GET, not HTTP/1.1, no Host or two) or 404. */
int ws_request_check_http(const struct ws_request *req, const char *path);

/*
 * Check a parsed request against RFC 6455 §4.2.1 and the contract. Returns
 * 0 when it is a valid upgrade request for path, otherwise the HTTP
 * status to refuse with: 400 (not GET, not HTTP/1.1, no Host or two, bad
 * Upgrade, Connection, Sec-WebSocket-Key not base64 of 16 bytes, Upgrade,
 * Sec-WebSocket-Key, Sec-WebSocket-Version or Origin given twice), 404
 * (another path), 426 (Sec-WebSocket-Version missing or not 13). 400 wins over
 * 404 for a non-GET, a version other than 1.1 and Host; 404 is checked
 * before the WebSocket headers.
 */
int ws_request_check_path(const struct ws_request *req, const char *path);

/* Sec-WebSocket-Accept for a key: out gets 28 chars + NUL (29 bytes). */
void ws_accept_key(const char *key, size_t keylen, char out[29]);

/*
 * Find query parameter name in query (a=b&c=d form), percent-decode and
 * '+'-decode its value into out (NUL-terminated, at most outsz-1 bytes).
 * Returns the decoded length, -1 when absent, -2 when malformed or too long.
 */
int ws_query_get(const char *query, size_t qlen, const char *name, char *out,
		 size_t outsz);

/* The reason phrase of an HTTP status ("Not Found"), for the refusals of
 * the upgrade and the HTTP API alike. */
const char *ws_http_reason(int status);

/* Case-insensitive comparison of a ws_str with a C string. */
int ws_str_ieq(struct ws_str s, const char *lit);

#endif
