/*
 * Unit test for the write key's record limit of src/net/tls13.c (RFC 8446
 * §5.5), built in with TLS13_REKEY_RECORDS=4 so that it shows: a server
 * tls13 on a socketpair writes 50 records; the bytes on the wire hold a
 * KeyUpdate (a 22-byte record: 5 bytes of message, the type, the tag)
 * before every fifth data record, and a second tls13 with the client's
 * view of the secrets reads every data byte back in order, following the
 * KeyUpdates (so the nonces restart at 0 under each new key).
 */
#include "check.h"
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "basestation/tls.h"

#define RECORDS 50

int main(void)
{
	static unsigned char wire[1 << 16], back[1 << 16];
	unsigned suites[3] = {0x1301, 0x1302, 0x1303};

	for (int s = 0; s < 3; s++) {
		size_t hl = suites[s] == 0x1302 ? 48 : 32;
		unsigned char c48[48], s48[48];
		int a[2], b[2], kus = 0, datas = 0;
		size_t n = 0, off = 0, got = 0;
		struct tls13 *srv, *cli;
		ssize_t r;

		memset(c48, 0x11, sizeof(c48));
		memset(s48, 0x22, sizeof(s48));
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
		fcntl(a[0], F_SETFL, O_NONBLOCK);
		fcntl(b[1], F_SETFL, O_NONBLOCK);
		srv = tls13_new(a[0], suites[s], c48, hl, s48, hl);
		/* the client: reads with the server's secret */
		cli = tls13_new(b[1], suites[s], s48, hl, c48, hl);
		CHECK(srv != NULL && cli != NULL);
		if (srv == NULL || cli == NULL)
			return 1;
		for (int i = 0; i < RECORDS; i++) {
			char m[16];
			struct iovec v = {m,
					  (size_t)snprintf(m, sizeof(m),
							   "record %02d;", i)};
			CHECK(tls13_writev(srv, &v, 1) == (ssize_t)v.iov_len);
		}
		r = read(a[1], wire, sizeof(wire));
		CHECK(r > 0);
		n = r > 0 ? (size_t)r : 0;
		/* the records on the wire: data are 10 + 1 + 16 = 27 bytes */
		while (off + 5 <= n) {
			size_t len = (size_t)wire[off + 3] << 8 | wire[off + 4];
			CHECK(wire[off] == 23);
			if (len == 22)
				kus++;
			else if (len == 27)
				datas++;
			else
				CHECK(!"a record of another length");
			off += 5 + len;
		}
		CHECK(off == n);
		CHECK(datas == RECORDS);
		/* before records 4, 8, ... 48 */
		CHECK(kus == (RECORDS - 1) / 4);
		CHECK(write(b[0], wire, n) == (ssize_t)n);
		close(b[0]);
		while ((r = tls13_read(cli, back + got, sizeof(back) - got)) >
		       0)
			got += (size_t)r;
		CHECK(r == 0);
		CHECK(got == RECORDS * 10);
		for (int i = 0; i < RECORDS && got == RECORDS * 10; i++) {
			char m[16];
			snprintf(m, sizeof(m), "record %02d;", i);
			CHECK(memcmp(back + 10 * i, m, 10) == 0);
		}
		tls13_free(srv);
		tls13_free(cli);
		close(a[0]);
		close(a[1]);
		close(b[1]);
	}
	return failures ? 1 : 0;
}
