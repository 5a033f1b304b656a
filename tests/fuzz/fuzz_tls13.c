/*
 * libFuzzer harness for the TLS 1.3 record reader (src/net/tls13.c): the
 * server side of a tls13 on one end of a socketpair, fixed traffic secrets
 * (client 0x11.., server 0x22..), the input as what the client sends.
 *
 * Byte 0: bit 0 the mode, bits 1-2 the cipher suite (0x1301 + n % 3),
 * bits 3-4 the read size (64 KiB as the server, 1, 100, 16 KiB).
 *  - raw (bit 0 clear): the rest goes to the server as is, arbitrary
 *    ciphertext records (the generated corpus holds valid ones);
 *  - sealed (bit 0 set): the rest is chunks [type][pad][len:2][content],
 *    each sealed here as one record under the client's current key
 *    (content, type, pad zero bytes; a KeyUpdate we seal moves our key on),
 *    or, when type has bit 7 set, the content written unsealed (junk
 *    between records). This reaches what lies behind the tag check.
 * Invariants: every result is a byte count within the buffer, 0, a WANT or
 * TLS_ERROR; the bytes delivered are a prefix of the application data the
 * sealed records carried; nothing is read after an error or the end; what
 * the server writes is a sequence of well-formed protected records.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "basestation/tls.h"

#include "fuzz.h"

#define OUT_MAX (1 << 20)

struct writer {
	const EVP_MD *md;
	const EVP_CIPHER *cipher;
	size_t hlen, klen;
	uint8_t secret[48], key[32], iv[12];
	uint64_t seq;
};

static void expand(const struct writer *w, const uint8_t *secret,
		   const char *label, uint8_t *out, size_t n)
{
	REQUIRE(tls13_expand_label(w->md, secret, w->hlen, label, out, n) == 0);
}

static void writer_keys(struct writer *w)
{
	expand(w, w->secret, "key", w->key, w->klen);
	expand(w, w->secret, "iv", w->iv, 12);
	w->seq = 0;
}

/* Seal content || type || pad zeros into out: its length. */
static size_t seal(struct writer *w, uint8_t type, const uint8_t *content,
		   size_t n, size_t pad, uint8_t *out)
{
	static uint8_t inner[70000];
	size_t in = n + 1 + pad, ct = in + 16;
	uint8_t nonce[12];
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	int l;

	memcpy(inner, content, n);
	inner[n] = type;
	memset(inner + n + 1, 0, pad);
	out[0] = 23;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(ct >> 8);
	out[4] = (uint8_t)ct;
	memcpy(nonce, w->iv, 12);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (uint8_t)(w->seq >> (56 - 8 * i));
	REQUIRE(x && EVP_EncryptInit_ex(x, w->cipher, NULL, w->key, nonce));
	REQUIRE(EVP_EncryptUpdate(x, NULL, &l, out, 5));
	REQUIRE(EVP_EncryptUpdate(x, out + 5, &l, inner, (int)in));
	REQUIRE(EVP_EncryptFinal_ex(x, out + 5 + l, &l));
	REQUIRE(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16,
				    out + 5 + in));
	EVP_CIPHER_CTX_free(x);
	w->seq++;
	return 5 + ct;
}

static uint8_t out[OUT_MAX], appdata[OUT_MAX], got[OUT_MAX + 65536];
static size_t srv_have; /* of check_server_bytes's record */
static uint8_t rec[5 + 70000 + 16];

/* What the server wrote: whole protected records, each within limits. */
static void check_server_bytes(int fd)
{
	static uint8_t b[1 << 18];
	size_t have = srv_have;
	ssize_t r;

	while ((r = read(fd, b + have, sizeof(b) - have)) > 0) {
		size_t off = 0;
		have += (size_t)r;
		while (have - off >= 5) {
			size_t len = (size_t)b[off + 3] << 8 | b[off + 4];
			REQUIRE(b[off] == 23 && len >= 17 &&
				len <= 16384 + 256);
			if (have - off < 5 + len)
				break;
			off += 5 + len;
		}
		memmove(b, b + off, have - off);
		have -= off;
	}
	srv_have = have;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned caps[4] = {65536, 1, 100, 16384};
	uint8_t csec[48], ssec[48];
	struct writer w = {0};
	struct tls13 *t;
	size_t olen = 0, alen = 0, glen = 0, sent = 0, cap;
	unsigned suite;
	int sv[2], mode, dead = 0, eof = 0;

	if (size < 1)
		return 0;
	mode = data[0] & 1;
	suite = 0x1301 + ((data[0] >> 1) & 3) % 3;
	cap = caps[(data[0] >> 3) & 3];
	w.md = suite == 0x1302 ? EVP_sha384() : EVP_sha256();
	w.cipher = suite == 0x1301   ? EVP_aes_128_gcm()
		   : suite == 0x1302 ? EVP_aes_256_gcm()
				     : EVP_chacha20_poly1305();
	w.hlen = (size_t)EVP_MD_get_size(w.md);
	w.klen = suite == 0x1301 ? 16 : 32;
	memset(csec, 0x11, sizeof(csec));
	memset(ssec, 0x22, sizeof(ssec));
	memcpy(w.secret, csec, w.hlen);
	writer_keys(&w);

	/* what the client sends, and the application data it seals */
	if (mode == 0) {
		olen = size - 1 < OUT_MAX ? size - 1 : OUT_MAX;
		memcpy(out, data + 1, olen);
	} else {
		size_t i = 1;
		while (i + 4 <= size) {
			uint8_t type = data[i], pad = data[i + 1];
			size_t n = (size_t)data[i + 2] << 8 | data[i + 3], r;
			i += 4;
			if (n > size - i)
				n = size - i;
			if (n > 70000 - 1 - 256)
				n = 70000 - 1 - 256;
			if (type & 0x80) {
				r = n;
				if (olen + r > OUT_MAX)
					break;
				memcpy(out + olen, data + i, n);
			} else {
				/* the type the server finds: with type 0 the
				 * last non-zero byte of the content */
				uint8_t et = type;
				size_t en = n;
				r = seal(&w, type, data + i, n, pad, rec);
				if (olen + r > OUT_MAX)
					break;
				memcpy(out + olen, rec, r);
				if (type == 0) {
					while (en && data[i + en - 1] == 0)
						en--;
					et = en ? data[i + --en] : 0;
				}
				if (et == 23) {
					memcpy(appdata + alen, data + i, en);
					alen += en;
				}
				if (et == 22 && en == 5 && data[i] == 24) {
					uint8_t s[48];
					expand(&w, w.secret, "traffic upd", s,
					       w.hlen);
					memcpy(w.secret, s, w.hlen);
					writer_keys(&w);
				}
			}
			olen += r;
			i += n;
		}
	}

	srv_have = 0;
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	REQUIRE(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0 &&
		fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
	t = tls13_new(sv[0], suite, csec, w.hlen, ssec, w.hlen);
	REQUIRE(t != NULL);
	/* a wrong length is refused */
	REQUIRE(tls13_new(sv[0], suite, csec, w.hlen - 1, ssec, w.hlen) ==
		NULL);

	for (int round = 0; round < 100000 && !dead && !eof; round++) {
		ssize_t r;
		if (sent < olen) {
			r = write(sv[1], out + sent, olen - sent);
			if (r > 0)
				sent += (size_t)r;
		} else if (sent == olen) {
			shutdown(sv[1], SHUT_WR);
			sent++;
		}
		for (;;) {
			size_t c = cap;
			r = tls13_read(t, got + glen, c);
			REQUIRE(r == TLS_ERROR || r == TLS_WANT_READ ||
				(r >= 0 && (size_t)r <= c));
			if (r > 0) {
				/* a prefix of the sealed application data */
				REQUIRE(mode == 0 ||
					(glen + (size_t)r <= alen &&
					 memcmp(got + glen, appdata + glen,
						(size_t)r) == 0));
				glen += (size_t)r;
				continue;
			}
			if (r == 0) {
				eof = 1;
				REQUIRE(tls13_read(t, got, cap) == 0);
			}
			if (r == TLS_ERROR)
				dead = 1;
			break;
		}
		check_server_bytes(sv[1]);
	}
	REQUIRE(dead || eof);
	if (!dead) {
		int r = tls13_shutdown(t);
		REQUIRE(r == 0 || r == TLS_WANT_WRITE || r == TLS_ERROR);
	}
	check_server_bytes(sv[1]);
	tls13_free(t);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
