/*
 * TLS 1.3 records of our own once the handshake is done (RFC 8446 §5).
 *
 * Why: OpenSSL 3.0 keeps about 13 KiB per SSL object at rest (struct ssl_st
 * alone is 7.6 KiB), fifteen times what a plain connection costs, and no
 * option shrinks it (docs/benchmarks.md, "TLS memory per idle connection").
 * A connection past its handshake needs only two AEAD keys, their IVs and
 * sequence numbers, and the traffic secrets for KeyUpdate. tls13_takeover
 * moves a TLS 1.3 connection onto that state and frees the SSL object; a
 * connection it cannot take (TLS 1.2, a cipher suite other than the three
 * below, bytes OpenSSL already holds, a KeyUpdate that did not go out at
 * once) stays on OpenSSL as before.
 *
 * OpenSSL keeps the handshake, the certificates and the AEAD primitives
 * (EVP). Ours: record framing and size limits, nonces (IV xor sequence
 * number), the inner content type and padding, alerts (the peer's
 * close_notify ends the stream and is answered with ours, any other alert is
 * fatal; each error of the peer's gets its fatal alert, RFC 8446 §6.2),
 * KeyUpdate (requests answered once per read, our write key renewed every
 * TLS13_REKEY_RECORDS records), and refusing anything else a client may not
 * send after its Finished. The traffic secrets come from OpenSSL's keylog
 * callback (3.0 has no other way to read them); they never leave memory and are
 * wiped when the connection goes.
 *
 * The write sequence number must start where OpenSSL's ended, and OpenSSL
 * has sent its NewSessionTickets under the first key (how many is its
 * business): so the takeover first has OpenSSL send a KeyUpdate, and we
 * start on the next key at 0. The read side starts at the client's first
 * application record (OpenSSL reads exactly one record at a time without
 * read-ahead; SSL_has_pending says it holds nothing).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include "basestation/tls.h"
#include "basestation/tls_base.h"

#define HDR	  5
#define TAG	  16
#define PLAIN_MAX TLS_RECORD_MAX    /* 2^14 */
#define CT_MAX	  (PLAIN_MAX + 256) /* RFC 8446 §5.2 */
#define SEC_MAX	  EVP_MAX_MD_SIZE
/* Our write key is renewed (a KeyUpdate of our own) after this many
 * records: RFC 8446 §5.5 allows AES-GCM about 2^24.5 full-size records per
 * key; this keeps a wide margin and makes the 64-bit sequence number unable
 * to wrap. */
#ifndef TLS13_REKEY_RECORDS /* tests/unit/test_tls13.c lowers it */
#define TLS13_REKEY_RECORDS (1ull << 23)
#endif

/* Alert descriptions (RFC 8446 §6). */
enum {
	AL_CLOSE_NOTIFY = 0,
	AL_UNEXPECTED_MESSAGE = 10,
	AL_BAD_RECORD_MAC = 20,
	AL_RECORD_OVERFLOW = 22,
	AL_ILLEGAL_PARAMETER = 47,
	AL_DECODE_ERROR = 50,
	AL_INTERNAL_ERROR = 80,
};

/* ---- the secrets, caught during the handshake ---- */

struct secrets {
	uint8_t c[SEC_MAX], s[SEC_MAX];
	uint8_t clen, slen;
};

static int ex_index = -1;

static void secrets_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
			 long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (ptr) {
		OPENSSL_cleanse(ptr, sizeof(struct secrets));
		free(ptr);
	}
}

static int unhex(const char *h, uint8_t *out, size_t max)
{
	size_t n = 0;
	for (; h[0] && h[1] && n < max; h += 2) {
		int hi = OPENSSL_hexchar2int((unsigned char)h[0]),
		    lo = OPENSSL_hexchar2int((unsigned char)h[1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
	}
	return h[0] ? -1 : (int)n;
}

/* "LABEL <client random> <secret>": keep the two application traffic
 * secrets of generation 0. */
static void keylog(const SSL *ssl, const char *line)
{
	struct secrets *k;
	const char *sp;
	uint8_t *dst;
	uint8_t *len;
	int n;

	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		sp = line + 24;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		sp = line + 24;
	else
		return;
	sp = strchr(sp, ' ');
	if (sp == NULL)
		return;
	k = SSL_get_ex_data(ssl, ex_index);
	if (k == NULL) {
		k = calloc(1, sizeof(*k));
		if (k == NULL || !SSL_set_ex_data((SSL *)ssl, ex_index, k)) {
			free(k);
			return;
		}
	}
	dst = line[0] == 'C' ? k->c : k->s;
	len = line[0] == 'C' ? &k->clen : &k->slen;
	n = unhex(sp + 1, dst, SEC_MAX);
	*len = n > 0 ? (uint8_t)n : 0;
}

int tls13_ctx_setup(SSL_CTX *ctx)
{
	if (ex_index < 0)
		ex_index =
			SSL_get_ex_new_index(0, NULL, NULL, NULL, secrets_free);
	if (ex_index < 0)
		return -1;
	SSL_CTX_set_keylog_callback(ctx, keylog);
	return 0;
}

/* ---- keys ---- */

struct dir {
	EVP_CIPHER_CTX *x;
	uint8_t secret[SEC_MAX];
	uint8_t iv[12];
	uint64_t seq;
};

struct tls13 {
	int fd;
	uint8_t hlen, klen;
	/* 1 the peer's TCP close, 2 its close_notify (answered with ours when
	 * the end is reported) */
	uint8_t eof;
	/* a KeyUpdate(update_not_requested) of ours is due before our next
	 * data record: asked for by the peer (however many times: one answer,
	 * RFC 8446 §4.6.3) or our key's record limit */
	uint8_t ku_owed;
	const EVP_MD *md;
	const EVP_CIPHER *cipher;
	struct dir rd, wr;
	/* the start of a record not yet whole */
	uint8_t *rin;
	uint32_t rlen;
	/* decrypted bytes the caller has not taken yet */
	uint8_t *plain;
	uint32_t plen, poff;
	/* sealed bytes not yet on the wire, and how many of the caller's
	 * bytes they carry (reported once they are out) */
	uint8_t *out;
	uint32_t olen, ooff, oplain;
};

int tls13_expand_label(const struct evp_md_st *md, const uint8_t *secret,
		       size_t hlen, const char *label, uint8_t *out, size_t n)
{
	uint8_t info[64], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t ll = strlen(label), i = 0;

	if (ll > sizeof(info) - 10)
		return -1;
	info[i++] = (uint8_t)(n >> 8);
	info[i++] = (uint8_t)n;
	info[i++] = (uint8_t)(6 + ll);
	memcpy(info + i, "tls13 ", 6);
	i += 6;
	memcpy(info + i, label, ll);
	i += ll;
	info[i++] = 0; /* empty context */
	info[i++] = 1; /* T(1) */
	if (HMAC(md, secret, (int)hlen, info, i, mac, &maclen) == NULL ||
	    maclen < n)
		return -1;
	memcpy(out, mac, n);
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

static int expand(const struct tls13 *t, const uint8_t *secret,
		  const char *label, uint8_t *out, size_t n)
{
	return tls13_expand_label(t->md, secret, t->hlen, label, out, n);
}

/* Key and IV of d from d->secret; sequence number 0. */
static int rekey(const struct tls13 *t, struct dir *d, int enc)
{
	uint8_t key[32];
	int ok = expand(t, d->secret, "key", key, t->klen) == 0 &&
		 expand(t, d->secret, "iv", d->iv, 12) == 0 &&
		 EVP_CipherInit_ex(d->x, t->cipher, NULL, key, NULL, enc) == 1;

	OPENSSL_cleanse(key, sizeof(key));
	d->seq = 0;
	return ok ? 0 : -1;
}

/* The next generation of d's secret (KeyUpdate, RFC 8446 §7.2). */
static int next_key(const struct tls13 *t, struct dir *d, int enc)
{
	uint8_t s[SEC_MAX];

	if (expand(t, d->secret, "traffic upd", s, t->hlen) < 0)
		return -1;
	memcpy(d->secret, s, t->hlen);
	OPENSSL_cleanse(s, sizeof(s));
	return rekey(t, d, enc);
}

static void nonce(const struct dir *d, uint8_t n[12])
{
	memcpy(n, d->iv, 12);
	for (int i = 0; i < 8; i++)
		n[4 + i] ^= (uint8_t)(d->seq >> (56 - 8 * i));
}

void tls13_free(struct tls13 *t)
{
	if (t == NULL)
		return;
	EVP_CIPHER_CTX_free(t->rd.x);
	EVP_CIPHER_CTX_free(t->wr.x);
	free(t->rin);
	free(t->plain);
	free(t->out);
	OPENSSL_cleanse(t, sizeof(*t));
	free(t);
}

struct tls13 *tls13_new(int fd, unsigned suite, const unsigned char *rsecret,
			size_t rlen, const unsigned char *wsecret, size_t wlen)
{
	struct tls13 *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	switch (suite) {
	case 0x1301:
		t->cipher = EVP_aes_128_gcm();
		t->md = EVP_sha256();
		t->klen = 16;
		break;
	case 0x1302:
		t->cipher = EVP_aes_256_gcm();
		t->md = EVP_sha384();
		t->klen = 32;
		break;
	case 0x1303:
		t->cipher = EVP_chacha20_poly1305();
		t->md = EVP_sha256();
		t->klen = 32;
		break;
	default:
		goto fail;
	}
	t->hlen = (uint8_t)EVP_MD_get_size(t->md);
	if (rlen != t->hlen || wlen != t->hlen)
		goto fail;
	t->fd = fd;
	t->rd.x = EVP_CIPHER_CTX_new();
	t->wr.x = EVP_CIPHER_CTX_new();
	if (t->rd.x == NULL || t->wr.x == NULL)
		goto fail;
	memcpy(t->rd.secret, rsecret, t->hlen);
	memcpy(t->wr.secret, wsecret, t->hlen);
	if (rekey(t, &t->rd, 0) < 0 || rekey(t, &t->wr, 1) < 0)
		goto fail;
	return t;
fail:
	tls13_free(t);
	return NULL;
}

struct tls13 *tls13_takeover(struct tls_conn *c, int fd)
{
	SSL *s = (SSL *)c;
	struct secrets *k = ex_index < 0 ? NULL : SSL_get_ex_data(s, ex_index);
	struct tls13 *t = NULL;
	const SSL_CIPHER *ci = SSL_get_current_cipher(s);

	if (k == NULL || ci == NULL || SSL_version(s) != TLS1_3_VERSION ||
	    SSL_has_pending(s) || SSL_in_init(s))
		return NULL;
	t = tls13_new(fd, SSL_CIPHER_get_id(ci) & 0xffff, k->c, k->clen, k->s,
		      k->slen);
	/* we write on the key after the KeyUpdate OpenSSL sends below */
	if (t == NULL || next_key(t, &t->wr, 1) < 0)
		goto fail;
	/* OpenSSL moves its write side to the key we just made; until that
	 * went out whole the connection stays OpenSSL's */
	ERR_clear_error();
	if (SSL_key_update(s, SSL_KEY_UPDATE_NOT_REQUESTED) != 1 ||
	    SSL_do_handshake(s) != 1 ||
	    SSL_get_key_update_type(s) != SSL_KEY_UPDATE_NONE ||
	    SSL_has_pending(s)) {
		ERR_clear_error();
		goto fail;
	}
	SSL_free(s); /* the fd stays open: SSL_set_fd's BIO does not own it */
	return t;
fail:
	tls13_free(t);
	return NULL;
}

/* ---- records ---- */

static uint8_t sealed[HDR + PLAIN_MAX + 1 + TAG]; /* one record, sealed */

/* Seal one record of n plaintext bytes taken from iov (from *i, *off on)
 * and the inner content type into out; its length. */
static long seal(struct tls13 *t, uint8_t type, const struct iovec *iov,
		 int iovcnt, int *i, size_t *off, size_t n, uint8_t *out)
{
	uint8_t iv[12];
	uint8_t *p = out + HDR;
	size_t ct = n + 1 + TAG;
	int l, ok;

	if (t->wr.x == NULL) { /* our last alert went out: nothing after it */
		tls_set_error("TLS 1.3: write after close_notify");
		return -1;
	}
	if (t->wr.seq ==
	    UINT64_MAX) { /* never: TLS13_REKEY_RECORDS comes first */
		tls_set_error("TLS 1.3: write sequence number exhausted");
		return -1;
	}
	out[0] = 23;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(ct >> 8);
	out[4] = (uint8_t)ct;
	nonce(&t->wr, iv);
	ok = EVP_CipherInit_ex(t->wr.x, NULL, NULL, NULL, iv, 1) == 1 &&
	     EVP_CipherUpdate(t->wr.x, NULL, &l, out, HDR) == 1;
	while (ok && n) {
		size_t take = iov[*i].iov_len - *off;
		if (take > n)
			take = n;
		ok = EVP_CipherUpdate(t->wr.x, p, &l,
				      (const uint8_t *)iov[*i].iov_base + *off,
				      (int)take) == 1;
		p += l;
		n -= take;
		*off += take;
		if (*off == iov[*i].iov_len) {
			(*i)++;
			*off = 0;
		}
	}
	(void)iovcnt;
	ok = ok && EVP_CipherUpdate(t->wr.x, p, &l, &type, 1) == 1;
	p += ok ? l : 0;
	ok = ok && EVP_CipherFinal_ex(t->wr.x, p, &l) == 1;
	p += ok ? l : 0;
	ok = ok &&
	     EVP_CIPHER_CTX_ctrl(t->wr.x, EVP_CTRL_AEAD_GET_TAG, TAG, p) == 1;
	if (!ok) {
		tls_set_error("TLS 1.3 seal failed");
		return -1;
	}
	t->wr.seq++;
	return (long)(HDR + ct);
}

/* Keep b[0..n) to send after what is already kept: at most one data
 * record is ever kept (the caller waits for the fd before offering more),
 * so more than two records' worth is a peer that asks for KeyUpdates and
 * does not read the answers. */
static int keep(struct tls13 *t, const uint8_t *b, size_t n)
{
	size_t have = t->olen - t->ooff;
	uint8_t *o;

	if (have + n > 2 * sizeof(sealed)) {
		tls_set_error("TLS 1.3: the peer does not read");
		return -1;
	}
	o = malloc(have + n);
	if (o == NULL) {
		tls_set_error("out of memory");
		return -1;
	}
	if (have)
		memcpy(o, t->out + t->ooff, have);
	memcpy(o + have, b, n);
	free(t->out);
	t->out = o;
	t->olen = (uint32_t)(have + n);
	t->ooff = 0;
	return 0;
}

/* Write what is kept: 0 all out, NET_WANT_WRITE, NET_ERROR. */
static int flush_kept(struct tls13 *t)
{
	while (t->ooff < t->olen) {
		ssize_t w = write(t->fd, t->out + t->ooff, t->olen - t->ooff);
		if (w > 0) {
			t->ooff += (uint32_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return TLS_WANT_WRITE;
		tls_set_error(w < 0 ? strerror(errno) : "write returned 0");
		return TLS_ERROR;
	}
	free(t->out);
	t->out = NULL;
	t->olen = t->ooff = 0;
	return 0;
}

/* A control record (alert, KeyUpdate): sealed now, sent after what is
 * kept, as far as the socket takes it now. */
static int send_control(struct tls13 *t, uint8_t type, const uint8_t *b,
			size_t n)
{
	struct iovec v = {(void *)b, n};
	int i = 0;
	size_t off = 0;
	long len = seal(t, type, &v, 1, &i, &off, n, sealed);

	if (len < 0 || keep(t, sealed, (size_t)len) < 0)
		return TLS_ERROR;
	return flush_kept(t);
}

/* The KeyUpdate we owe, if any, while nothing waits for the socket (it
 * goes after what is kept otherwise, from writev): 0, TLS_WANT_WRITE (it is
 * kept), TLS_ERROR. At most one is ever kept. */
static int answer_ku(struct tls13 *t)
{
	static const uint8_t upd[5] = {24, 0, 0, 1, 0};
	int r;

	if (!t->ku_owed || t->wr.x == NULL || t->olen > t->ooff)
		return 0;
	/* sealed under the old key, then we move on */
	r = send_control(t, 22, upd, sizeof(upd));
	if (r == TLS_ERROR)
		return r;
	t->ku_owed = 0;
	if (next_key(t, &t->wr, 1) < 0) {
		tls_set_error("TLS 1.3: key update failed");
		return TLS_ERROR;
	}
	return r;
}

/* A fatal error (RFC 8446 §6.2): our alert goes out after what is kept, as
 * far as the socket takes it now, and nothing after it; TLS_ERROR with why
 * as the reason. */
static int fatal(struct tls13 *t, uint8_t desc, const char *why)
{
	const uint8_t a[2] = {2, desc};

	if (t->wr.x != NULL) {
		(void)send_control(t, 21, a, sizeof(a));
		EVP_CIPHER_CTX_free(t->wr.x);
		t->wr.x = NULL;
	}
	tls_set_error(why);
	return TLS_ERROR;
}

/* The peer's close_notify has been reported as the end: ours, once (RFC
 * 8446 §6.1: each side sends one before closing its write side). */
static void answer_close(struct tls13 *t)
{
	static const uint8_t close_notify[2] = {1, AL_CLOSE_NOTIFY};

	if (t->eof != 2 || t->wr.x == NULL)
		return;
	(void)send_control(t, 21, close_notify, sizeof(close_notify));
	EVP_CIPHER_CTX_free(t->wr.x);
	t->wr.x = NULL;
}

ssize_t tls13_writev(struct tls13 *t, const struct iovec *iov, int iovcnt)
{
	ssize_t total = 0;
	int i = 0;
	size_t off = 0;

	if (t->olen > t->ooff) {
		int r = flush_kept(t);
		if (r)
			return r;
		/* the caller offers those bytes again at the head of iov */
		if (t->oplain) {
			total = t->oplain;
			t->oplain = 0;
			return total;
		}
	}
	for (;;) {
		size_t n = 0, o = off;
		long len;
		ssize_t w;
		int r;

		for (int j = i; j < iovcnt && n < PLAIN_MAX; j++, o = 0)
			n += iov[j].iov_len - o;
		if (n == 0)
			break;
		if (n > PLAIN_MAX)
			n = PLAIN_MAX;
		/* a KeyUpdate due goes before the data (kept at most: the
		 * data waits for it) */
		if (t->wr.seq >= TLS13_REKEY_RECORDS)
			t->ku_owed = 1;
		r = answer_ku(t);
		if (r == TLS_ERROR)
			return total ? total : TLS_ERROR;
		if (r == TLS_WANT_WRITE)
			return total ? total : TLS_WANT_WRITE;
		len = seal(t, 23, iov, iovcnt, &i, &off, n, sealed);
		if (len < 0)
			return total ? total : TLS_ERROR;
		do
			w = write(t->fd, sealed, (size_t)len);
		while (w < 0 && errno == EINTR);
		if (w == len) {
			total += (ssize_t)n;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			tls_set_error(strerror(errno));
			return total ? total : TLS_ERROR;
		}
		/* sealed (its sequence number is spent): kept, and counted
		 * as taken when it is out */
		if (w < 0)
			w = 0;
		if (keep(t, sealed + w, (size_t)(len - w)) < 0)
			return total ? total : TLS_ERROR;
		t->oplain = (uint32_t)n;
		return total ? total : TLS_WANT_WRITE;
	}
	return total;
}

/* Append decrypted bytes: into buf while it has room, the rest kept. */
static int deliver(struct tls13 *t, const uint8_t *p, size_t n, uint8_t *buf,
		   size_t cap, size_t *got)
{
	size_t k = cap - *got < n ? cap - *got : n;

	memcpy(buf + *got, p, k);
	*got += k;
	if (k < n) {
		uint8_t *q = realloc(t->plain, t->plen + (n - k));
		if (q == NULL) {
			tls_set_error("out of memory");
			return -1;
		}
		memcpy(q + t->plen, p + k, n - k);
		t->plain = q;
		t->plen += (uint32_t)(n - k);
	}
	return 0;
}

/* A handshake message after the handshake: KeyUpdate only. */
/* A handshake message after the handshake: KeyUpdate only, whole and
 * alone in its record (a message after it would span the key change,
 * RFC 8446 §5.1; we take no KeyUpdate split over records). Anything else
 * (NewSessionTicket, post-handshake auth, ...) is unexpected_message. A
 * requested update is owed, not sent here: many requests, one answer. */
static int on_handshake(struct tls13 *t, const uint8_t *p, size_t n)
{
	if (n < 4 || p[0] != 24)
		return fatal(t, AL_UNEXPECTED_MESSAGE,
			     "TLS 1.3: unexpected handshake message");
	if (n != 5 || p[1] || p[2] || p[3] != 1)
		return fatal(t, AL_DECODE_ERROR, "TLS 1.3: bad KeyUpdate");
	if (p[4] > 1)
		return fatal(t, AL_ILLEGAL_PARAMETER,
			     "TLS 1.3: bad KeyUpdate request");
	if (next_key(t, &t->rd, 0) < 0)
		return fatal(t, AL_INTERNAL_ERROR,
			     "TLS 1.3: key update failed");
	if (p[4] == 1)
		t->ku_owed = 1;
	return 0;
}

static uint8_t rx[65536 + HDR + CT_MAX];

/* One whole record at h (header and len bytes), decrypted in place and
 * acted on: 0 or TLS_ERROR (after our alert, fatal()). */
static int on_record(struct tls13 *t, uint8_t *h, size_t len, uint8_t *buf,
		     size_t cap, size_t *got)
{
	uint8_t *p = h + HDR, iv[12];
	size_t n = len - TAG;
	int l, ok;

	nonce(&t->rd, iv);
	ok = EVP_CipherInit_ex(t->rd.x, NULL, NULL, NULL, iv, 0) == 1 &&
	     EVP_CIPHER_CTX_ctrl(t->rd.x, EVP_CTRL_AEAD_SET_TAG, TAG, p + n) ==
		     1 &&
	     EVP_CipherUpdate(t->rd.x, NULL, &l, h, HDR) == 1 &&
	     EVP_CipherUpdate(t->rd.x, p, &l, p, (int)n) == 1 &&
	     EVP_CipherFinal_ex(t->rd.x, p + l, &l) == 1;
	if (!ok) {
		ERR_clear_error();
		return fatal(t, AL_BAD_RECORD_MAC, "TLS 1.3: bad record MAC");
	}
	/* the next record would reuse nonce 0 (2^64 records: never) */
	if (++t->rd.seq == 0)
		return fatal(t, AL_INTERNAL_ERROR,
			     "TLS 1.3: read sequence number exhausted");
	/* TLSInnerPlaintext, padding included, is at most 2^14 + 1 (§5.4) */
	if (n > PLAIN_MAX + 1)
		return fatal(t, AL_RECORD_OVERFLOW,
			     "TLS 1.3: inner plaintext too long");
	/* the inner type is the last non-zero byte */
	while (n && p[n - 1] == 0)
		n--;
	if (n == 0)
		return fatal(t, AL_UNEXPECTED_MESSAGE,
			     "TLS 1.3: no inner content type");
	n--;
	switch (p[n]) {
	case 23:
		return deliver(t, p, n, buf, cap, got) < 0 ? TLS_ERROR : 0;
	case 21:
		if (n != 2)
			return fatal(t, AL_DECODE_ERROR, "TLS 1.3: bad alert");
		if (p[1] == AL_CLOSE_NOTIFY) {
			t->eof = 2;
			return 0;
		}
		{
			char why[64];
			snprintf(why, sizeof(why),
				 "TLS 1.3: alert %d from the peer", p[1]);
			tls_set_error(why);
		}
		/* nothing goes out after a peer's error alert */
		EVP_CIPHER_CTX_free(t->wr.x);
		t->wr.x = NULL;
		return TLS_ERROR;
	case 22:
		return on_handshake(t, p, n);
	default:
		return fatal(t, AL_UNEXPECTED_MESSAGE,
			     "TLS 1.3: unexpected inner content type");
	}
}

ssize_t tls13_read(struct tls13 *t, void *vbuf, size_t cap)
{
	uint8_t *buf = vbuf;
	size_t have, off = 0, got = 0;
	ssize_t r;

	if (t->plen > t->poff) {
		size_t k = t->plen - t->poff < cap ? t->plen - t->poff : cap;
		memcpy(buf, t->plain + t->poff, k);
		t->poff += (uint32_t)k;
		if (t->poff == t->plen) {
			free(t->plain);
			t->plain = NULL;
			t->plen = t->poff = 0;
		}
		return (ssize_t)k;
	}
	if (t->eof) {
		answer_close(t);
		return 0;
	}
	have = t->rlen;
	if (have)
		memcpy(rx, t->rin, have);
	do
		r = read(t->fd, rx + have, sizeof(rx) - have);
	while (r < 0 && errno == EINTR);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return TLS_WANT_READ;
	if (r < 0) {
		tls_set_error(strerror(errno));
		return TLS_ERROR;
	}
	if (r == 0) {
		/* the peer's TCP close: the end, unless mid-record */
		if (have) {
			tls_set_error("TLS 1.3: stream ends inside a record");
			return TLS_ERROR;
		}
		t->eof = 1;
		return 0;
	}
	have += (size_t)r;
	while (!t->eof && have - off >= HDR) {
		uint8_t *h = rx + off;
		size_t len = (size_t)h[3] << 8 | h[4];

		/* after the handshake only protected records (§5: a
		 * change_cipher_spec now is unexpected_message) */
		if (h[0] != 23)
			return fatal(t, AL_UNEXPECTED_MESSAGE,
				     "TLS 1.3: unexpected record type");
		if (len > CT_MAX)
			return fatal(t, AL_RECORD_OVERFLOW,
				     "TLS 1.3: record too long");
		if (len < TAG + 1)
			return fatal(t, AL_DECODE_ERROR,
				     "TLS 1.3: record too short");
		if (have - off < HDR + len)
			break;
		if (on_record(t, h, len, buf, cap, &got) < 0)
			return TLS_ERROR;
		off += HDR + len;
	}
	/* the peer's requested KeyUpdates of this batch: one answer */
	if (answer_ku(t) == TLS_ERROR)
		return TLS_ERROR;
	/* keep an unfinished record's start */
	free(t->rin);
	t->rin = NULL;
	t->rlen = 0;
	if (!t->eof && have > off) {
		t->rin = malloc(have - off);
		if (t->rin == NULL) {
			tls_set_error("out of memory");
			return TLS_ERROR;
		}
		memcpy(t->rin, rx + off, have - off);
		t->rlen = (uint32_t)(have - off);
	}
	if (got)
		return (ssize_t)got;
	if (t->eof)
		answer_close(t);
	return t->eof ? 0 : TLS_WANT_READ;
}

size_t tls13_pending(const struct tls13 *t)
{
	return t->plen - t->poff;
}

int tls13_shutdown(struct tls13 *t)
{
	static const uint8_t close_notify[2] = {1, AL_CLOSE_NOTIFY};

	if (t->olen > t->ooff) {
		int r = flush_kept(t);
		if (r)
			return r;
		if (t->oplain) /* bytes the caller no longer sends */
			t->oplain = 0;
	}
	if (t->wr.x == NULL)
		return 0;
	{
		int r = send_control(t, 21, close_notify, sizeof(close_notify));
		/* sealed once: a retry only flushes */
		EVP_CIPHER_CTX_free(t->wr.x);
		t->wr.x = NULL;
		return r == TLS_ERROR ? TLS_ERROR : r;
	}
}
