/*
 * Unit tests: opaque tokens (issue/verify/revoke/expiry, made by
 * src/auth/token.c and kept by src/store/tokens.c), roles, uids,
 * constant-time comparison, HS256 JWT verification.
 */
#include "check.h"
#include "basestation/auth.h"
#include "store/tokens.h"
#include "bs_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SECRET "test-secret-0123456789"

static sqlite3 *open_db(void)
{
	char *schema = read_file(BS_SOURCE_ROOT "/schema/001_init.sql", NULL);
	sqlite3 *db = NULL;

	if (schema == NULL) {
		fprintf(stderr, "cannot read schema\n");
		exit(1);
	}
	if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
	    sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK) {
		fprintf(stderr, "schema: %s\n", sqlite3_errmsg(db));
		exit(1);
	}
	free(schema);
	return db;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* header.payload.signature with the given digest (NULL: HS256). */
static void make_jwt_md(const EVP_MD *md, const char *secret,
			const char *header, const char *payload, char *out)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n;

	auth_b64url_encode((const unsigned char *)header, strlen(header), out);
	n = strlen(out);
	out[n++] = '.';
	auth_b64url_encode((const unsigned char *)payload, strlen(payload),
			   out + n);
	n = strlen(out);
	HMAC(md ? md : EVP_sha256(), secret, (int)strlen(secret),
	     (const unsigned char *)out, n, mac, &maclen);
	out[n++] = '.';
	auth_b64url_encode(mac, maclen, out + n);
}

static void make_jwt(const char *header, const char *payload, char *out)
{
	make_jwt_md(NULL, SECRET, header, payload, out);
}

static int jwt(const char *token, int64_t now, struct auth_identity *id)
{
	return auth_jwt_verify(SECRET, token, strlen(token), now, id);
}

static void test_roles(void)
{
	CHECK(auth_role_parse("user") == ROLE_USER);
	CHECK(auth_role_parse("producer") == ROLE_PRODUCER);
	CHECK(auth_role_parse("admin") == ROLE_ADMIN);
	CHECK(auth_role_parse("Admin") == -1);
	CHECK(auth_role_parse("") == -1);
	CHECK(auth_role_parse("root") == -1);
	CHECK(auth_role_parse(NULL) == -1);
	CHECK(strcmp(auth_role_name(ROLE_USER), "user") == 0);
	CHECK(strcmp(auth_role_name(ROLE_PRODUCER), "producer") == 0);
	CHECK(strcmp(auth_role_name(ROLE_ADMIN), "admin") == 0);
	CHECK(strcmp(auth_role_name((enum auth_role)9), "unknown") == 0);
}

static void test_uid(void)
{
	char big[AUTH_UID_MAX + 2];

	CHECK(auth_uid_valid("alice", 5));
	CHECK(auth_uid_valid("user-42_x.y@z", 13));
	CHECK(auth_uid_valid("zo\xc3\xab", 4));			  /* zoë */
	CHECK(auth_uid_valid("\xe6\x97\xa5\xf0\x9f\x98\x80", 7)); /* 日😀 */
	CHECK(!auth_uid_valid("", 0));
	CHECK(!auth_uid_valid(NULL, 3));
	CHECK(!auth_uid_valid("a b", 3));
	CHECK(!auth_uid_valid("a\tb", 3));
	CHECK(!auth_uid_valid("a\nb", 3));
	CHECK(!auth_uid_valid("a\x7f", 2));
	CHECK(!auth_uid_valid("a\0b", 3));
	CHECK(!auth_uid_valid("\xff", 1));
	CHECK(!auth_uid_valid("\xc0\xaf", 2));	       /* overlong '/' */
	CHECK(!auth_uid_valid("\xed\xa0\x80", 3));     /* surrogate */
	CHECK(!auth_uid_valid("\xc2\x85", 2));	       /* C1 NEL */
	CHECK(!auth_uid_valid("\xc3", 1));	       /* truncated */
	CHECK(!auth_uid_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	memset(big, 'a', sizeof(big));
	CHECK(auth_uid_valid(big, AUTH_UID_MAX));
	CHECK(!auth_uid_valid(big, AUTH_UID_MAX + 1));
}

static void test_ct_equal(void)
{
	char out[9];

	CHECK(auth_ct_equal("abc", 3, "abc", 3) == 1);
	CHECK(auth_ct_equal("abc", 3, "abd", 3) == 0);
	CHECK(auth_ct_equal("abc", 3, "abcd", 4) == 0);
	CHECK(auth_ct_equal("", 0, "", 0) == 1);
	CHECK(auth_ct_equal("a", 1, "", 0) == 0);

	auth_hash_prefix("abc", 3, out); /* sha256("abc") = ba7816bf... */
	CHECK(strcmp(out, "ba7816bf") == 0);
}

static int is_b64url(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static int count_rows(sqlite3 *db, const char *sql, const char *arg)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (arg != NULL)
		sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

static void test_tokens(void)
{
	sqlite3 *db = open_db(), *empty = NULL;
	struct tokens ts, te;
	char tok[64], tok2[64], prefix[9], big[AUTH_TOKEN_MAX + 2];
	struct auth_identity id;
	int64_t exp = -1, now = now_ms();

	tokens_init(&ts, db);
	/* issue + verify */
	CHECK(tokens_issue(&ts, "alice", ROLE_PRODUCER, 0, tok, sizeof(tok),
			   &exp) == 0);
	CHECK(exp == 0);
	CHECK(strlen(tok) == 46);
	CHECK(strncmp(tok, "bs_", 3) == 0);
	CHECK(is_b64url(tok + 3));
	memset(&id, 0xaa, sizeof(id));
	CHECK(tokens_verify(&ts, tok, strlen(tok), now, &id) == 0);
	CHECK(strcmp(id.uid, "alice") == 0);
	CHECK(id.role == ROLE_PRODUCER);
	CHECK(id.expires_at == 0);
	auth_hash_prefix(tok, strlen(tok), prefix);
	CHECK(strcmp(id.prefix, prefix) == 0);

	/* only the hash is stored */
	CHECK(count_rows(db, "SELECT count(*) FROM tokens", NULL) == 1);
	CHECK(count_rows(db,
			 "SELECT count(*) FROM tokens WHERE length(hash) = 32 "
			 "AND typeof(hash) = 'blob' AND prefix = ?1",
			 prefix) == 1);
	CHECK(count_rows(db,
			 "SELECT count(*) FROM tokens WHERE instr(hash, ?1) "
			 "OR instr(prefix, ?1) OR instr(uid, ?1)",
			 tok) == 0);

	/* a second token differs */
	CHECK(tokens_issue(&ts, "bob", ROLE_ADMIN, 0, tok2, sizeof(tok2),
			   NULL) == 0);
	CHECK(strcmp(tok, tok2) != 0);
	CHECK(tokens_verify(&ts, tok2, strlen(tok2), now, &id) == 0);
	CHECK(strcmp(id.uid, "bob") == 0 && id.role == ROLE_ADMIN);

	/* unknown, empty, overlong, truncated, extended */
	CHECK(tokens_verify(&ts, "bs_nope", 7, now, &id) == -1);
	CHECK(tokens_check(&ts, "bs_nope", 7, now, &id) == AUTH_TOKEN_UNKNOWN);
	CHECK(tokens_verify(&ts, "", 0, now, &id) == -1);
	CHECK(tokens_verify(&ts, NULL, 0, now, &id) == -1);
	CHECK(tokens_verify(&ts, tok, strlen(tok) - 1, now, &id) == -1);
	memset(big, 'a', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	CHECK(tokens_verify(&ts, big, AUTH_TOKEN_MAX + 1, now, &id) == -1);
	CHECK(tokens_verify(&ts, big, AUTH_TOKEN_MAX, now, &id) == -1);
	{
		char longer[80];

		snprintf(longer, sizeof(longer), "%sx", tok);
		CHECK(tokens_verify(&ts, longer, strlen(longer), now, &id) ==
		      -1);
	}

	/* revoke */
	CHECK(tokens_revoke(&ts, tok, now_ms()) == 1);
	CHECK(tokens_verify(&ts, tok, strlen(tok), now, &id) == -1);
	CHECK(tokens_check(&ts, tok, strlen(tok), now, &id) ==
	      AUTH_TOKEN_REVOKED);
	CHECK(tokens_revoke(&ts, tok, now_ms()) == 0);
	CHECK(tokens_revoke(&ts, "bs_unknown", now_ms()) == 0);
	CHECK(tokens_revoke(&ts, "", now_ms()) == 0);
	CHECK(tokens_revoke(&ts, big, now_ms()) == 0);
	CHECK(tokens_verify(&ts, tok2, strlen(tok2), now, &id) == 0);

	/* expiry */
	CHECK(tokens_issue(&ts, "carol", ROLE_USER, 60, tok, sizeof(tok),
			   &exp) == 0);
	CHECK(exp >= now + 60000 && exp <= now_ms() + 60000);
	CHECK(tokens_verify(&ts, tok, strlen(tok), now, &id) == 0);
	CHECK(id.expires_at == exp && id.role == ROLE_USER);
	CHECK(tokens_verify(&ts, tok, strlen(tok), exp - 1, &id) == 0);
	CHECK(tokens_verify(&ts, tok, strlen(tok), exp, &id) == -1);
	CHECK(tokens_check(&ts, tok, strlen(tok), exp, &id) ==
	      AUTH_TOKEN_EXPIRED);
	CHECK(tokens_check(&ts, tok, strlen(tok), now, &id) == 0);
	CHECK(tokens_verify(&ts, tok, strlen(tok), exp + 1000000, &id) == -1);

	/* bad arguments */
	CHECK(tokens_issue(&ts, "a b", ROLE_USER, 0, tok, sizeof(tok), NULL) ==
	      -1);
	CHECK(tokens_issue(&ts, "", ROLE_USER, 0, tok, sizeof(tok), NULL) ==
	      -1);
	CHECK(tokens_issue(&ts, "dave", (enum auth_role)7, 0, tok, sizeof(tok),
			   NULL) == -1);
	CHECK(tokens_issue(&ts, "dave", ROLE_USER, -1, tok, sizeof(tok),
			   NULL) == -1);
	CHECK(tokens_issue(&ts, "dave", ROLE_USER, 0, tok, 20, NULL) == -1);
	CHECK(count_rows(db, "SELECT count(*) FROM tokens WHERE uid = ?1",
			 "dave") == 0);

	/* database errors */
	CHECK(sqlite3_open(":memory:", &empty) == SQLITE_OK);
	tokens_init(&te, empty);
	CHECK(tokens_verify(&te, tok2, strlen(tok2), now, &id) == -2);
	CHECK(tokens_revoke(&te, tok2, now_ms()) == -1);
	CHECK(tokens_issue(&te, "eve", ROLE_USER, 0, tok, sizeof(tok), NULL) ==
	      -1);
	tokens_finish(&te);
	tokens_finish(&ts);
	sqlite3_close(empty);
	sqlite3_close(db);
}

static void test_jwt(void)
{
	const char *hs = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	struct auth_identity id;
	int64_t now = 1700000000000; /* ms */
	char tok[1024], payload[512], alt[2100], *p;
	size_t n;

	/* valid */
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":1700003600}", tok);
	memset(&id, 0xaa, sizeof(id));
	CHECK(jwt(tok, now, &id) == 0);
	CHECK(strcmp(id.uid, "alice") == 0);
	CHECK(id.role == ROLE_USER);
	CHECK(id.expires_at == 1700003600000);
	{
		char prefix[9];

		auth_hash_prefix(tok, strlen(tok), prefix);
		CHECK(strcmp(id.prefix, prefix) == 0);
	}
	/* len is honoured: trailing bytes outside it are ignored */
	n = strlen(tok);
	snprintf(alt, sizeof(alt), "%sGARBAGE", tok);
	CHECK(auth_jwt_verify(SECRET, alt, n, now, &id) == 0);
	CHECK(auth_jwt_verify(SECRET, alt, strlen(alt), now, &id) == -1);

	/* no typ, no exp, real exp */
	make_jwt("{\"alg\":\"HS256\"}", "{\"sub\":\"bob\"}", tok);
	CHECK(jwt(tok, now, &id) == 0 && id.expires_at == 0);
	make_jwt(hs, "{\"sub\":\"bob\",\"exp\":1700000000.5}", tok);
	CHECK(jwt(tok, now, &id) == 0);
	make_jwt("{\"alg\":\"HS256\",\"typ\":5}", "{\"sub\":\"bob\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);

	/* role claim */
	make_jwt(hs, "{\"sub\":\"root\",\"role\":\"admin\"}", tok);
	CHECK(jwt(tok, now, &id) == 0 && id.role == ROLE_ADMIN);
	make_jwt(hs, "{\"sub\":\"p\",\"role\":\"producer\"}", tok);
	CHECK(jwt(tok, now, &id) == 0 && id.role == ROLE_PRODUCER);
	make_jwt(hs, "{\"sub\":\"root\",\"role\":\"superuser\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"root\",\"role\":2}", tok);
	CHECK(jwt(tok, now, &id) == -1);

	/* wrong secret, tampering */
	make_jwt_md(NULL, "other-secret", hs, "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == 0);
	CHECK(auth_jwt_verify(NULL, tok, strlen(tok), now, &id) == -1);
	CHECK(auth_jwt_verify("", tok, strlen(tok), now, &id) == -1);
	n = strlen(tok);
	tok[n - 5] = tok[n - 5] == 'A' ? 'B' : 'A';
	CHECK(jwt(tok, now, &id) == -1);
	{ /* payload swapped under a valid signature */
		char other[1024];
		const char *d1, *d2, *s1;

		make_jwt(hs, "{\"sub\":\"alice\"}", tok);
		make_jwt(hs, "{\"sub\":\"admin\",\"role\":\"admin\"}", other);
		d1 = strchr(other, '.');
		d2 = strchr(d1 + 1, '.');
		s1 = strrchr(tok, '.');
		snprintf(alt, sizeof(alt), "%.*s%s", (int)(d2 - other), other,
			 s1);
		CHECK(jwt(alt, now, &id) == -1);
	}
	/* non-canonical signature: low bits of the last char set */
	make_jwt(hs, "{\"sub\":\"alice\"}", tok);
	n = strlen(tok);
	p = strchr("AEIMQUYcgkosw048", tok[n - 1]);
	CHECK(p != NULL); /* canonical: the 2 spare bits are zero */
	tok[n - 1] = (char)(tok[n - 1] + 1);
	CHECK(jwt(tok, now, &id) == -1);

	/* algorithms */
	make_jwt("{\"alg\":\"none\"}", "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	p = strrchr(tok, '.');
	p[1] = '\0'; /* unsigned form: "h.p." */
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt_md(EVP_sha512(), SECRET, "{\"alg\":\"HS512\"}",
		    "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("{\"alg\":\"HS512\"}", "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("{\"alg\":\"RS256\"}", "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("{\"alg\":\"hs256\"}", "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("{\"typ\":\"JWT\"}", "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("[\"HS256\"]", "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
		 "{\"sub\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"sub\":\"alice\"}",
		 tok);
	CHECK(jwt(tok, now, &id) == -1);

	/* sub */
	make_jwt(hs, "{\"name\":\"alice\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":42}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"a b\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"a\\u0000b\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\",\"sub\":\"bob\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	snprintf(payload, sizeof(payload), "{\"sub\":\"%0*d\"}", AUTH_UID_MAX,
		 7);
	make_jwt(hs, payload, tok);
	CHECK(jwt(tok, now, &id) == 0 && strlen(id.uid) == AUTH_UID_MAX);
	snprintf(payload, sizeof(payload), "{\"sub\":\"%0*d\"}",
		 AUTH_UID_MAX + 1, 7);
	make_jwt(hs, payload, tok);
	CHECK(jwt(tok, now, &id) == -1);

	/* exp / nbf */
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":1699999999}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":1700000000}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	CHECK(jwt(tok, now - 1, &id) == 0);
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":\"1800000000\"}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":null}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":-9223372036854775807}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\",\"exp\":9223372036854775807}", tok);
	CHECK(jwt(tok, now, &id) == 0);
	make_jwt(hs, "{\"sub\":\"alice\",\"nbf\":1700000060}", tok);
	CHECK(jwt(tok, now, &id) == -1);
	CHECK(jwt(tok, 1700000060000, &id) == 0);
	make_jwt(hs, "{\"sub\":\"alice\",\"nbf\":1699999000}", tok);
	CHECK(jwt(tok, now, &id) == 0);
	make_jwt(hs, "{\"sub\":\"alice\",\"nbf\":1e300}", tok);
	CHECK(jwt(tok, now, &id) == -1);

	/* structure and encoding */
	make_jwt(hs, "{\"sub\":\"alice\"}", tok);
	p = strrchr(tok, '.');
	*p = '\0';
	CHECK(jwt(tok, now, &id) == -1); /* 2 parts */
	make_jwt(hs, "{\"sub\":\"alice\"}", tok);
	snprintf(alt, sizeof(alt), "%s.", tok);
	CHECK(jwt(alt, now, &id) == -1); /* 4 parts */
	snprintf(alt, sizeof(alt), "%s.abc", tok);
	CHECK(jwt(alt, now, &id) == -1);
	snprintf(alt, sizeof(alt), "%s=", tok);
	CHECK(jwt(alt, now, &id) == -1); /* padding */
	snprintf(alt, sizeof(alt), "%s", tok);
	alt[2] = '+';
	CHECK(jwt(alt, now, &id) == -1);
	snprintf(alt, sizeof(alt), " %s", tok);
	CHECK(jwt(alt, now, &id) == -1);
	CHECK(jwt("", now, &id) == -1);
	CHECK(jwt("..", now, &id) == -1);
	CHECK(jwt("a.b.c", now, &id) == -1);
	CHECK(jwt("!!!.???.###", now, &id) == -1);
	CHECK(auth_jwt_verify(SECRET, NULL, 0, now, &id) == -1);
	make_jwt(hs, "[\"alice\"]", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "\"alice\"", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\"", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "{\"sub\":\"alice\"} x", tok);
	CHECK(jwt(tok, now, &id) == -1);
	make_jwt(hs, "", tok);
	CHECK(jwt(tok, now, &id) == -1);
	/* header part with a byte count of 1 mod 4 */
	snprintf(alt, sizeof(alt), "eyJhb.%s", strchr(tok, '.') + 1);
	CHECK(jwt(alt, now, &id) == -1);
	{ /* size limit: a validly signed token just under AUTH_TOKEN_MAX
	   * passes, one just over it is refused */
		static char big[AUTH_TOKEN_MAX + 64], huge[AUTH_TOKEN_MAX * 2];

		snprintf(big, sizeof(big), "{\"sub\":\"alice\",\"x\":\"");
		n = strlen(big);
		memset(big + n, 'x', 2980);
		strcpy(big + n + 2980, "\"}");
		make_jwt(hs, big, huge);
		CHECK(strlen(huge) <= AUTH_TOKEN_MAX);
		CHECK(jwt(huge, now, &id) == 0);
		memset(big + n, 'x', 3020);
		strcpy(big + n + 3020, "\"}");
		make_jwt(hs, big, huge);
		CHECK(strlen(huge) > AUTH_TOKEN_MAX);
		CHECK(jwt(huge, now, &id) == -1);
	}
}

int main(void)
{
	test_roles();
	test_uid();
	test_ct_equal();
	test_tokens();
	test_jwt();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
