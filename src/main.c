/*
 * basestation: one executable, subcommands.
 * Exit codes: 0 ok, 1 runtime error, 2 usage error.
 */
#include "basestation/auth.h"
#include "basestation/config.h"
#include "basestation/engine_local.h"
#include "basestation/inspect.h"
#include "basestation/log.h"
#include "basestation/server.h"
#include "bs_config.h"
#if BS_HAVE_NATS
#include "basestation/engine_nats.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: basestation <command> [flags]\n\n"
	      "A WebSocket relay broker: messages between users and rooms,\n"
	      "stored in SQLite and delivered on return; live task "
	      "progress.\n\n"
	      "commands:\n"
	      "  serve [flags]                       run the broker\n"
	      "  token issue --uid U [--role R] [--ttl SECONDS] [--db PATH]\n"
	      "                                      print a new token\n"
	      "  token revoke TOKEN [--db PATH]      revoke a token\n"
	      "  token ... --cluster URLS [--stream NAME]\n"
	      "                                      the same on a cluster\n"
	      "  sql [--json] \"SELECT ...\" [--db PATH]\n"
	      "                                      read-only query\n"
	      "  version                             print the version\n\n"
	      "`basestation <command> --help` tells more.\n",
	      f);
}

/* --db from the flags, else BASESTATION_DB, else the default. */
static const char *db_path(const char *flag)
{
	const char *e = getenv("BASESTATION_DB");
	return flag ? flag : (e && *e ? e : "./basestation.db");
}

static int cmd_serve(int argc, char **argv)
{
	struct config cfg;
	int rc;

	config_defaults(&cfg);
	if (config_from_env(&cfg, stderr) < 0) {
		config_free(&cfg);
		return 2;
	}
	rc = config_from_args(&cfg, argc, argv, stderr);
	if (rc != 0) {
		config_free(&cfg);
		return rc > 0 ? 0 : 2;
	}
	rc = server_run(&cfg);
	config_free(&cfg);
	return rc;
}

static void token_usage(FILE *f)
{
	fputs("usage: basestation token issue --uid UID [--role user|producer|"
	      "admin] [--ttl SECONDS]\n"
	      "                         [--db PATH | --cluster URLS [--stream "
	      "NAME]]\n"
	      "       basestation token revoke TOKEN [--db PATH | --cluster "
	      "URLS [--stream NAME]]\n\n"
	      "issue prints the new token alone on stdout; only its SHA-256 is "
	      "stored.\n--ttl 0 (the default) never expires. --db defaults to "
	      "$BASESTATION_DB or ./basestation.db.\nBoth work while the "
	      "broker runs: they wait up to 5 s for the database's write "
	      "lock.\nWith --cluster (nats://H:P[,...]) the token or its "
	      "revocation goes to the cluster's\nJetStream stream (--stream, "
	      "default $BASESTATION_STREAM or basestation), for every\nnode; "
	      "exit 1 when JetStream has not stored it within 5 s.\n",
	      f);
}

/* The token commands, on the database or the cluster's stream. */
static int token_issue(const char *cluster, const char *stream, const char *db,
		       const char *uid, enum auth_role role, int64_t ttl,
		       char *out, size_t outsz, int64_t *exp, char *err,
		       size_t errsz)
{
#if BS_HAVE_NATS
	if (cluster)
		return engine_nats_token_issue(cluster, stream, uid, role, ttl,
					       out, outsz, exp, err, errsz);
#else
	(void)cluster;
	(void)stream;
#endif
	return engine_local_token_issue(db_path(db), uid, role, ttl, out, outsz,
					exp, err, errsz);
}

/* 1 revoked (published, on a cluster), 0 no such valid token, -1, -2 as
 * engine_local_token_revoke. */
static int token_revoke(const char *cluster, const char *stream, const char *db,
			const char *tok, char *err, size_t errsz)
{
#if BS_HAVE_NATS
	if (cluster) {
		int rc = engine_nats_token_revoke(cluster, stream, tok, err,
						  errsz);
		return rc == 0 ? 1 : rc == -1 ? 0 : rc;
	}
#else
	(void)cluster;
	(void)stream;
#endif
	return engine_local_token_revoke(db_path(db), tok, err, errsz);
}

static int cmd_token(int argc, char **argv)
{
	const char *uid = NULL, *role = "user", *db = NULL, *tok = NULL;
	const char *cluster = NULL, *stream = getenv("BASESTATION_STREAM");
	long long ttl = 0;
	int issue;

	if (argc < 1 || strcmp(argv[0], "--help") == 0 ||
	    strcmp(argv[0], "-h") == 0) {
		token_usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (strcmp(argv[0], "issue") == 0)
		issue = 1;
	else if (strcmp(argv[0], "revoke") == 0)
		issue = 0;
	else {
		fprintf(stderr, "basestation token: unknown action '%s'\n",
			argv[0]);
		token_usage(stderr);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			token_usage(stdout);
			return 0;
		}
		if (strcmp(a, "--uid") == 0 && v && issue) {
			uid = v;
			i++;
		} else if (strcmp(a, "--role") == 0 && v && issue) {
			role = v;
			i++;
		} else if (strcmp(a, "--ttl") == 0 && v && issue) {
			char *e;
			errno = 0;
			ttl = strtoll(v, &e, 10);
			if (errno || *e || ttl < 0) {
				fprintf(stderr,
					"basestation token: bad --ttl\n");
				return 2;
			}
			i++;
		} else if (strcmp(a, "--db") == 0 && v) {
			db = v;
			i++;
		} else if (strcmp(a, "--cluster") == 0 && v) {
			cluster = v;
			i++;
		} else if (strcmp(a, "--stream") == 0 && v) {
			stream = v;
			i++;
		} else if (!issue && tok == NULL && a[0] != '-') {
			tok = a;
		} else {
			fprintf(stderr, "basestation token: unexpected '%s'\n",
				a);
			token_usage(stderr);
			return 2;
		}
	}
	if (cluster && db) {
		fprintf(stderr,
			"basestation token: --db and --cluster exclude each "
			"other\n");
		return 2;
	}
	if (cluster && !BS_HAVE_NATS) {
		fprintf(stderr, "basestation: --cluster: this build has no "
				"libnats (install libnats-dev and rebuild)\n");
		return 1;
	}
	if (stream == NULL || *stream == '\0')
		stream = "basestation";
	if (issue) {
		char out[128];
		int64_t exp;
		int r = auth_role_parse(role);
		if (uid == NULL || !auth_uid_valid(uid, strlen(uid))) {
			fprintf(stderr, "basestation token issue: --uid is "
					"required (1..128 bytes, no control "
					"characters)\n");
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "basestation token issue: --role must "
					"be user, producer or admin\n");
			return 2;
		}
		char err[512];
		int rc = token_issue(cluster, stream, db, uid,
				     (enum auth_role)r, ttl, out, sizeof(out),
				     &exp, err, sizeof(err));
		if (rc == -2) {
			fprintf(stderr, "basestation: %s\n", err);
			return 1;
		}
		if (rc < 0) {
			fprintf(stderr, "basestation: could not store the "
					"token\n");
			return 1;
		}
		printf("%s\n", out);
		return 0;
	}
	if (tok == NULL) {
		fprintf(stderr,
			"basestation token revoke: TOKEN is required\n");
		return 2;
	}
	char err[512];
	int rc = token_revoke(cluster, stream, db, tok, err, sizeof(err));
	if (rc == -2) {
		fprintf(stderr, "basestation: %s\n", err);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "basestation: database error\n");
		return 1;
	}
	if (rc == 0) {
		fprintf(stderr, "basestation: no such valid token\n");
		return 1;
	}
	fprintf(stderr, "revoked\n");
	return 0;
}

static int cmd_sql(int argc, char **argv)
{
	const char *db = NULL, *sql = NULL;
	int as_json = 0, max_rows = 1000;
	struct inspect_limits lim = {0}; /* 0: default byte limit */
	char err[512];
	json_t *res;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0 && i + 1 < argc && sql == NULL) {
			sql = argv[++i]; /* SQL that starts with '-' */
		} else if (strcmp(argv[i], "--help") == 0 ||
			   strcmp(argv[i], "-h") == 0) {
			puts("usage: basestation sql [--json] [--max-rows N] "
			     "[--db PATH] [--] \"SELECT ...\"\n\n"
			     "Run one read-only statement on its own read-only "
			     "connection;\nworks while the broker runs. "
			     "Writes, "
			     "ATTACH, writing PRAGMAs and\nmore than one "
			     "statement are refused. Time limit 5 s, result "
			     "limit 16 MiB.");
			return 0;
		} else if (strcmp(argv[i], "--json") == 0) {
			as_json = 1;
		} else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
			db = argv[++i];
		} else if (strcmp(argv[i], "--max-rows") == 0 && i + 1 < argc) {
			char *e;
			long v;
			errno = 0;
			v = strtol(argv[++i], &e, 10);
			if (errno || *e || e == argv[i] || v <= 0 ||
			    v > 1000000) {
				fprintf(stderr, "basestation sql: bad "
						"--max-rows\n");
				return 2;
			}
			max_rows = (int)v;
		} else if (argv[i][0] == '-' &&
			   strpbrk(argv[i], " \t\n") == NULL) {
			/* a flag: unknown, or one missing its value (SQL
			 * holds a space or comes after "--") */
			fprintf(stderr,
				"basestation sql: bad or incomplete "
				"option '%s'\n",
				argv[i]);
			return 2;
		} else if (sql == NULL) {
			sql = argv[i];
		} else {
			fprintf(stderr, "basestation sql: unexpected '%s'\n",
				argv[i]);
			return 2;
		}
	}
	if (sql == NULL) {
		fprintf(stderr,
			"usage: basestation sql [--json] \"SELECT ...\" "
			"[--db PATH]\n");
		return 2;
	}
	lim.max_rows = max_rows;
	lim.time_ms = 5000;
	lim.max_sql = 1 << 20;
	res = inspect_query(db_path(db), sql, NULL, &lim, err, sizeof(err));
	if (res == NULL) {
		fprintf(stderr, "basestation sql: %s\n", err);
		return 1;
	}
	if (as_json) {
		json_dumpf(res, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		inspect_print_table(stdout, res);
	}
	json_decref(res);
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (cmd == NULL) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
	    strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("basestation %s\n", BS_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(cmd, "token") == 0)
		return cmd_token(argc - 2, argv + 2);
	if (strcmp(cmd, "sql") == 0)
		return cmd_sql(argc - 2, argv + 2);
	fprintf(stderr, "basestation: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
