/*
 * HTTP/1.x upgrade request parsing and RFC 6455 §4.2 handshake checks.
 *
 * The parser is strict (RFC 9112 grammar, no obs-fold, no control bytes)
 * and re-entrant over a growing buffer: the caller passes everything it has
 * received so far. It never reads past len and never writes into buf.
 */
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "basestation/ws.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int mem_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return 0;
	return 1;
}

int ws_str_ieq(struct ws_str s, const char *lit)
{
	size_t n = strlen(lit);

	return s.n == n && mem_ieq(s.p, lit, n);
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return 1;
	return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field value byte: VCHAR, SP, HTAB or obs-text. */
static int is_value_char(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static struct ws_str trim(const char *p, size_t n)
{
	struct ws_str s;

	while (n && is_ows(p[0])) {
		p++;
		n--;
	}
	while (n && is_ows(p[n - 1]))
		n--;
	s.p = p;
	s.n = n;
	return s;
}

/* 1 if the comma-separated list s contains token (case-insensitive). */
static int list_has(struct ws_str s, const char *token)
{
	size_t i = 0;

	while (i <= s.n) {
		size_t j = i;
		while (j < s.n && s.p[j] != ',')
			j++;
		if (ws_str_ieq(trim(s.p + i, j - i), token))
			return 1;
		i = j + 1;
	}
	return 0;
}

/* "METHOD SP target SP HTTP/d.d"; 0 on success, -1 when malformed. */
static int parse_request_line(const char *s, size_t n, struct ws_request *req)
{
	size_t i = 0, start;

	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ' ')
		return -1;
	req->method.p = s;
	req->method.n = i;

	start = ++i;
	while (i < n && (unsigned char)s[i] > 0x20 &&
	       (unsigned char)s[i] < 0x7F)
		i++;
	if (i == start || i == n || s[i] != ' ')
		return -1;
	req->target.p = s + start;
	req->target.n = i - start;
	i++;

	if (n - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || s[i + 5] < '0' ||
	    s[i + 5] > '9' || s[i + 6] != '.' || s[i + 7] < '0' ||
	    s[i + 7] > '9')
		return -1;
	req->http_major = s[i + 5] - '0';
	req->http_minor = req->http_major == 1 ? s[i + 7] - '0' : -1;

	req->path = req->target;
	req->query.p = req->target.p + req->target.n;
	req->query.n = 0;
	for (size_t k = 0; k < req->target.n; k++) {
		if (req->target.p[k] == '?') {
			req->path.n = k;
			req->query.p = req->target.p + k + 1;
			req->query.n = req->target.n - k - 1;
			break;
		}
	}
	return 0;
}

static int name_is(const char *name, size_t n, const char *lit)
{
	return strlen(lit) == n && mem_ieq(name, lit, n);
}

/* Note a header that may appear only once; a second one is refused by
 * ws_request_check (the last would otherwise silently win). */
static void once(struct ws_request *req, unsigned bit)
{
	if (req->seen & bit)
		req->repeated |= bit;
	req->seen |= bit;
}

/* "name: value"; 0 on success, -1 when malformed. */
static int parse_header(const char *s, size_t n, struct ws_request *req)
{
	size_t i = 0;
	struct ws_str v;

	/* a leading SP/HTAB is obs-fold (or junk): refused */
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ':')
		return -1;
	for (size_t k = i + 1; k < n; k++)
		if (!is_value_char((unsigned char)s[k]))
			return -1;
	v = trim(s + i + 1, n - i - 1);

	if (++req->header_count > WS_HS_MAX_HEADERS)
		return -1;
	if (name_is(s, i, "Host")) {
		req->host = v;
		once(req, WS_HDR_HOST);
	} else if (name_is(s, i, "Upgrade")) {
		req->upgrade = v;
		once(req, WS_HDR_UPGRADE);
		if (list_has(v, "websocket"))
			req->upgrade_is_websocket = 1;
	} else if (name_is(s, i, "Connection")) {
		req->connection = v;
		if (list_has(v, "upgrade"))
			req->connection_has_upgrade = 1;
	} else if (name_is(s, i, "Sec-WebSocket-Key")) {
		req->key = v;
		once(req, WS_HDR_KEY);
	} else if (name_is(s, i, "Sec-WebSocket-Version")) {
		req->version = v;
		once(req, WS_HDR_VERSION);
	} else if (name_is(s, i, "Origin")) {
		req->origin = v;
		once(req, WS_HDR_ORIGIN);
	} else if (name_is(s, i, "Sec-WebSocket-Protocol")) {
		req->protocol = v;
	} else if (name_is(s, i, "Authorization")) {
		req->authorization = v;
	} else if (name_is(s, i, "X-Forwarded-For")) {
		req->forwarded_for = v;
	} else if (name_is(s, i, "Sec-WebSocket-Extensions")) {
		if (req->n_extensions < WS_HS_MAX_EXTENSIONS)
			req->extensions[req->n_extensions++] = v;
	} else if (name_is(s, i, "Last-Event-ID")) {
		req->last_event_id = v;
	}
	return 0;
}

int ws_request_parse(const char *buf, size_t len, struct ws_request *req)
{
	size_t lim = len < WS_HS_MAX_BYTES ? len : WS_HS_MAX_BYTES;
	size_t pos = 0;
	int first = 1;

	memset(req, 0, sizeof(*req));
	req->http_major = -1;
	req->http_minor = -1;

	for (;;) {
		const char *nl;
		size_t n;

		nl = lim > pos ? memchr(buf + pos, '\n', lim - pos) : NULL;
		if (!nl)
			return len >= WS_HS_MAX_BYTES ? WS_HS_BAD
						      : WS_HS_NEED_MORE;
		n = (size_t)(nl - (buf + pos));
		if (n && buf[pos + n - 1] == '\r')
			n--;
		if (first) {
			if (parse_request_line(buf + pos, n, req))
				return WS_HS_BAD;
			first = 0;
		} else if (n == 0) {
			return (int)(nl - buf) + 1;
		} else if (parse_header(buf + pos, n, req)) {
			return WS_HS_BAD;
		}
		pos = (size_t)(nl - buf) + 1;
	}
}

/* 1 if s is the base64 encoding of exactly 16 bytes. */
static int key_valid(struct ws_str s)
{
	unsigned char out[18];

	if (s.n != 24 || s.p[22] != '=' || s.p[23] != '=')
		return 0;
	for (size_t i = 0; i < 22; i++) {
		char c = s.p[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return 0;
	}
	/* 24 chars decode to 18 bytes, the last two being padding */
	return EVP_DecodeBlock(out, (const unsigned char *)s.p, 24) == 18;
}

int ws_request_check(const struct ws_request *req)
{
	return ws_request_check_path(req, "/ws");
}

int ws_request_check_http(const struct ws_request *req, const char *path)
{
	size_t pl = strlen(path);

	if (req->method.n != 3 || memcmp(req->method.p, "GET", 3) != 0)
		return 400;
	if (req->http_major != 1 || req->http_minor < 1)
		return 400;
	/* RFC 9112 §3.2: an HTTP/1.1 request without Host, or with two, is
	 * a 400 whatever it asks for (an empty Host is allowed). */
	if (!(req->seen & WS_HDR_HOST) || (req->repeated & WS_HDR_HOST))
		return 400;
	if (req->path.n != pl || memcmp(req->path.p, path, pl) != 0)
		return 404;
	return 0;
}

int ws_request_check_path(const struct ws_request *req, const char *path)
{
	int st = ws_request_check_http(req, path);

	if (st)
		return st;
	/* RFC 6455 §11.3.1, §11.3.5: Sec-WebSocket-Key and -Version only
	 * once; and one Upgrade, one Origin: which of two would the server
	 * have answered, or judged? */
	if (req->repeated != 0)
		return 400;
	if (!req->upgrade_is_websocket || !req->connection_has_upgrade)
		return 400;
	if (req->version.n != 2 || memcmp(req->version.p, "13", 2) != 0)
		return 426;
	if (!key_valid(req->key))
		return 400;
	return 0;
}

void ws_accept_key(const char *key, size_t keylen, char out[29])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char tmp[128];
	size_t glen = sizeof(ws_guid) - 1;

	if (keylen <= sizeof(tmp) - glen) {
		memcpy(tmp, key, keylen);
		memcpy(tmp + keylen, ws_guid, glen);
		SHA1((const unsigned char *)tmp, keylen + glen, md);
	} else {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		unsigned int mdlen = 0;
		if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
		    !EVP_DigestUpdate(ctx, key, keylen) ||
		    !EVP_DigestUpdate(ctx, ws_guid, glen) ||
		    !EVP_DigestFinal_ex(ctx, md, &mdlen))
			memset(md, 0, sizeof(md));
		EVP_MD_CTX_free(ctx);
	}
	EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
	out[28] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode a form-urlencoded value; -2 when malformed, NUL or too long. */
static int decode_value(const char *s, size_t n, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return -2;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi, lo;
			if (n - i < 3)
				return -2;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				return -2; /* no NUL in a C string */
			c = hi << 4 | lo;
			i += 2;
		} else if (c == 0) {
			return -2;
		}
		if (o + 1 >= outsz || o >= INT_MAX)
			return -2;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

int ws_query_get(const char *query, size_t qlen, const char *name, char *out,
		 size_t outsz)
{
	size_t nlen = strlen(name), i = 0;

	if (nlen == 0)
		return -1;
	while (i < qlen) {
		const char *seg = query + i, *amp, *eq;
		size_t slen, klen;

		amp = memchr(seg, '&', qlen - i);
		slen = amp ? (size_t)(amp - seg) : qlen - i;
		eq = memchr(seg, '=', slen);
		klen = eq ? (size_t)(eq - seg) : slen;
		if (klen == nlen && memcmp(seg, name, nlen) == 0) {
			if (!eq)
				return decode_value("", 0, out, outsz);
			return decode_value(eq + 1, slen - nlen - 1, out,
					    outsz);
		}
		i += slen + 1;
	}
	return -1;
}

const char *ws_http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 413:
		return "Payload Too Large";
	case 426:
		return "Upgrade Required";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}
