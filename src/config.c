/* Defaults, flags and environment for `basestation serve`. */
#include "basestation/addr.h"
#include "basestation/config.h"
#include "basestation/auth_hook.h"
#include "basestation/log.h"
#include "basestation/xalloc.h"
#include "bs_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_kind {
	OPT_STR,
	OPT_INT,
	OPT_SIZE,
	OPT_DBL,
	OPT_I64,
	OPT_BOOL,
	OPT_ORIGIN,
	OPT_PROXY,
	OPT_LEVEL,
	OPT_SYNC,
	OPT_IO,
	OPT_ONOFF
};

struct opt {
	const char *flag; /* without leading -- */
	const char *env;  /* NULL: no environment variable */
	enum opt_kind kind;
	size_t off;
	const char *arg;
	const char *help;
};

#define O(f) offsetof(struct config, f)
static const struct opt opts[] = {
	{"listen", "BASESTATION_LISTEN", OPT_STR, O(listen), "ADDR:PORT",
	 "WebSocket listener (default 0.0.0.0:8080; port 0 picks one)"},
	{"http", "BASESTATION_HTTP", OPT_STR, O(http), "ADDR:PORT",
	 "HTTP API, admin, metrics and pages (default 127.0.0.1:8081; off)"},
	{"db", "BASESTATION_DB", OPT_STR, O(db), "PATH",
	 "SQLite database (default ./basestation.db)"},
	{"api-key", "BASESTATION_API_KEY", OPT_STR, O(api_key), "KEY",
	 "key for /api/* (default none: /api answers 401)"},
	{"admin-key", "BASESTATION_ADMIN_KEY", OPT_STR, O(admin_key), "KEY",
	 "key for /admin/* (default none: /admin answers 401)"},
	{"origin", "BASESTATION_ORIGINS", OPT_ORIGIN, 0, "URL",
	 "allowed browser Origin, repeatable, * = any (default: the Host's "
	 "hostname)"},
	{"jwt-secret", "BASESTATION_JWT_SECRET", OPT_STR, O(jwt_secret),
	 "SECRET", "also accept HS256 JWTs signed with SECRET (sub = uid)"},
	{"auth-url", "BASESTATION_AUTH_URL", OPT_STR, O(auth_url), "URL",
	 "ask this http(s) backend about tokens the broker does not know "
	 "(POST {token,uid,remote,origin}; 200 {uid,role,expires_at} admits)"},
	{"auth-cache", "BASESTATION_AUTH_CACHE", OPT_INT, O(auth_cache),
	 "SECONDS",
	 "reuse a 200 from --auth-url this long, 0 = never "
	 "(default 30)"},
	{"tls-cert", "BASESTATION_TLS_CERT", OPT_STR, O(tls_cert), "FILE",
	 "TLS on both listeners: PEM certificate chain, leaf first (with "
	 "--tls-key; SIGHUP reloads both)"},
	{"tls-key", "BASESTATION_TLS_KEY", OPT_STR, O(tls_key), "FILE",
	 "PEM private key of --tls-cert (not encrypted)"},
	{"heartbeat", "BASESTATION_HEARTBEAT", OPT_INT, O(heartbeat), "SECONDS",
	 "server ping interval (default 25)"},
	{"idle-timeout", "BASESTATION_IDLE_TIMEOUT", OPT_INT, O(idle_timeout),
	 "SECONDS",
	 "drop a client that sends no complete frame this long (default 60)"},
	{"handshake-timeout", "BASESTATION_HANDSHAKE_TIMEOUT", OPT_INT,
	 O(handshake_timeout), "SECONDS",
	 "drop a client whose request head is not complete (default 10)"},
	{"message-timeout", "BASESTATION_MESSAGE_TIMEOUT", OPT_INT,
	 O(message_timeout), "SECONDS",
	 "close (1008) a client whose started message or frame is not "
	 "complete within this, 0 = never (default 10)"},
	{"max-message", "BASESTATION_MAX_MESSAGE", OPT_SIZE, O(max_message),
	 "BYTES", "largest message accepted (default 65536)"},
	{"max-frames", "BASESTATION_MAX_FRAMES", OPT_INT, O(max_frames), "N",
	 "frames in one fragmented message (default 1024)"},
	{"compression", "BASESTATION_COMPRESSION", OPT_ONOFF, O(compression),
	 "on|off",
	 "accept permessage-deflate when a client offers it (default on)"},
	{"compression-min", "BASESTATION_COMPRESSION_MIN", OPT_INT,
	 O(compression_min), "BYTES",
	 "send shorter messages uncompressed (default 256)"},
	{"max-outbuf", "BASESTATION_MAX_OUTBUF", OPT_SIZE, O(max_outbuf),
	 "BYTES",
	 "close a client with more buffered output, bytes in flight to the "
	 "kernel included (default 1048576)"},
	{"io", "BASESTATION_IO", OPT_IO, O(io_uring), "uring|epoll",
	 "how plain TCP connections write: one io_uring submission per loop "
	 "turn (default; epoll with a logged fallback where the kernel has "
	 "no io_uring) or a writev per connection on epoll; TLS connections "
	 "always write through OpenSSL"},
	{"max-connections", "BASESTATION_MAX_CONNECTIONS", OPT_INT,
	 O(max_connections), "N",
	 "WebSocket connections in total (default "
	 "100000; 503 beyond)"},
	{"max-per-ip", "BASESTATION_MAX_PER_IP", OPT_INT, O(max_per_ip), "N",
	 "connections per remote address (an IPv6 one by its /64) on each "
	 "port, handshakes included (default 0 = unlimited)"},
	{"max-http-conns", "BASESTATION_MAX_HTTP_CONNS", OPT_INT,
	 O(max_http_conns), "N",
	 "HTTP connections at once (default 256, fewer when the descriptor "
	 "limit is low; 503 beyond)"},
	{"http-request-timeout", "BASESTATION_HTTP_REQUEST_TIMEOUT", OPT_INT,
	 O(http_request_timeout), "SECONDS",
	 "deadline for a whole HTTP request, head and body; 0 = none "
	 "(default 30)"},
	{"rate", "BASESTATION_RATE", OPT_DBL, O(rate), "N",
	 "messages per second per connection, 0 = unlimited (default 10000)"},
	{"burst", "BASESTATION_BURST", OPT_DBL, O(burst), "N",
	 "rate limit bucket size (default 20000)"},
	{"retention-age", "BASESTATION_RETENTION_AGE", OPT_I64,
	 O(retention_age), "SECONDS",
	 "delete messages older than this, 0 = never (default 604800)"},
	{"retention-count", "BASESTATION_RETENTION_COUNT", OPT_I64,
	 O(retention_count), "N",
	 "keep at most N messages, 0 = unlimited (default 1000000)"},
	{"task-retention", "BASESTATION_TASK_RETENTION", OPT_I64,
	 O(task_retention), "SECONDS",
	 "keep finished tasks this long (default 604800)"},
	{"task-idle-retention", "BASESTATION_TASK_IDLE_RETENTION", OPT_I64,
	 O(task_idle_retention), "SECONDS",
	 "delete unfinished tasks not updated for this long, 0 = never "
	 "(default 604800)"},
	{"max-tasks", "BASESTATION_MAX_TASKS", OPT_INT, O(max_tasks), "N",
	 "tasks held at once; past it the oldest finished one goes, else "
	 "too_large (default 10000)"},
	{"max-tasks-per-producer", "BASESTATION_MAX_TASKS_PER_PRODUCER",
	 OPT_INT, O(max_tasks_per_producer), "N",
	 "tasks one WebSocket producer (uid) created that are held; past it "
	 "its oldest finished one goes, else too_large; 0 = only "
	 "--max-tasks (default 1000)"},
	{"max-steps", "BASESTATION_MAX_STEPS", OPT_INT, O(max_steps), "N",
	 "steps of one task (default 100)"},
	{"max-rooms", "BASESTATION_MAX_ROOMS", OPT_INT, O(max_rooms), "N",
	 "rooms one user may join (default 256)"},
	{"max-replay", "BASESTATION_MAX_REPLAY", OPT_INT, O(max_replay), "N",
	 "messages replayed per resume with since; the offline inbox is "
	 "always whole (default 10000)"},
	{"max-http-body", "BASESTATION_MAX_HTTP_BODY", OPT_INT,
	 O(max_http_body), "BYTES",
	 "largest HTTP request body (default "
	 "1048576)"},
	{"admin-sql-max-bytes", "BASESTATION_ADMIN_SQL_MAX_BYTES", OPT_SIZE,
	 O(admin_sql_max_bytes), "BYTES",
	 "largest /admin/sql result, 413 beyond (default 16777216)"},
	{"trusted-proxy", "BASESTATION_TRUSTED_PROXIES", OPT_PROXY, 0,
	 "ADDR[/BITS]",
	 "honour X-Forwarded-For from this address or network, repeatable"},
	{"web-root", "BASESTATION_WEB_ROOT", OPT_STR, O(web_root), "DIR",
	 "folder of the demo and admin pages"},
	{"sync", "BASESTATION_SYNC", OPT_SYNC, O(sync_full), "normal|full",
	 "SQLite synchronous mode (default normal: acked survives a crash; "
	 "full: also power loss)"},
	{"log-level", "BASESTATION_LOG_LEVEL", OPT_LEVEL, O(log_level), "LEVEL",
	 "debug, info, warn or error (default info)"},
	{"cluster", "BASESTATION_CLUSTER", OPT_STR, O(cluster), "URLS",
	 "run as one node of a cluster on these NATS JetStream servers "
	 "(nats://H:P,...)"},
	{"node", "BASESTATION_NODE", OPT_STR, O(node), "NAME",
	 "this node's name in the cluster and in GET /admin/nodes (default "
	 "<hostname>-<ws port>)"},
	{"stream", "BASESTATION_STREAM", OPT_STR, O(stream), "NAME",
	 "JetStream stream of the cluster (default basestation)"},
	{"replicas", "BASESTATION_REPLICAS", OPT_INT, O(replicas), "N",
	 "replicas of the stream when it is created (default 3, or the "
	 "number of --cluster URLs if fewer)"},
	{"demo", "BASESTATION_DEMO", OPT_BOOL, O(demo), NULL,
	 "create demo users, print their links, run a demo producer"},
};
#undef O

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->listen = xstrdup("0.0.0.0:8080");
	c->http = xstrdup("127.0.0.1:8081");
	c->db = xstrdup("./basestation.db");
	c->stream = xstrdup("basestation");
	c->heartbeat = 25;
	c->idle_timeout = 60;
	c->handshake_timeout = 10;
	c->message_timeout = 10;
	c->max_message = 65536;
	c->max_frames = 1024;
	c->compression = 1;
	c->compression_min = 256;
	c->max_outbuf = 1 << 20;
	c->io_uring = 1;
	c->max_connections = 100000;
	c->rate = 10000;
	c->burst = 20000;
	c->retention_age = 7 * 86400;
	c->retention_count = 1000000;
	c->task_retention = 7 * 86400;
	c->task_idle_retention = 7 * 86400;
	c->max_tasks = 10000;
	c->max_tasks_per_producer = 1000;
	c->max_steps = 100;
	c->max_rooms = 256;
	c->max_replay = 10000;
	c->max_http_body = 1 << 20;
	c->max_http_conns = 256;
	c->http_request_timeout = 30;
	c->admin_sql_max_bytes = 16 << 20;
	c->auth_cache = 30;
	c->log_level = LOG_INFO;
}

static int add_list(char **list, int *n, const char *v, FILE *err,
		    const char *what)
{
	if (*n >= CONFIG_MAX_LIST) {
		fprintf(err, "basestation: too many %s values\n", what);
		return -1;
	}
	list[(*n)++] = xstrdup(v);
	return 0;
}

/* A --trusted-proxy value: an address or a network (net/listener.c matches
 * peers against it). */
static int addr_parse_ok(const char *v)
{
	struct addr a;
	return addr_parse(v, 1, &a) == 0;
}

static int parse_num(const char *v, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end != '\0' || d < lo || d > hi)
		return -1;
	*out = d;
	return 0;
}

/* --cluster and its companions; the node's default name. */
static int cluster_check(struct config *c, FILE *err)
{
	char host[256];
	const char *port;

	if (c->cluster && c->cluster[0] == '\0') {
		free(c->cluster); /* BASESTATION_CLUSTER= : one node */
		c->cluster = NULL;
	}
	/* Named on one node too: GET /admin/nodes lists it. */
	if (c->node == NULL || c->node[0] == '\0') {
		port = strrchr(c->listen, ':');
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "node");
		host[sizeof(host) - 1] = '\0';
		free(c->node);
		c->node = xmalloc(strlen(host) + 16);
		sprintf(c->node, "%s-%s", host, port ? port + 1 : "8080");
	}
	if (c->cluster == NULL)
		return 0;
	if (!BS_HAVE_NATS) {
		fprintf(err, "basestation: --cluster: this build has no "
			     "libnats (install libnats-dev and rebuild)\n");
		return -1;
	}
	if (c->replicas < 0 || c->replicas > 5) {
		fprintf(err, "basestation: --replicas must be 1..5\n");
		return -1;
	}
	if (c->stream == NULL || c->stream[0] == '\0' ||
	    strpbrk(c->stream, ". *>\t") != NULL) {
		fprintf(err, "basestation: --stream: a name without '.', "
			     "'*', '>' or spaces\n");
		return -1;
	}
	return 0;
}

/* Store value v for option o. Comma lists are split for env values. */
static int set_opt(struct config *c, const struct opt *o, const char *v,
		   int from_env, FILE *err)
{
	char *base = (char *)c;
	double d;

	switch (o->kind) {
	case OPT_STR: {
		char **dst = (char **)(base + o->off);
		free(*dst);
		*dst = xstrdup(v);
		return 0;
	}
	case OPT_BOOL:
		*(int *)(base + o->off) =
			!(strcmp(v, "0") == 0 || strcmp(v, "false") == 0 ||
			  strcmp(v, "no") == 0 || *v == '\0');
		return 0;
	case OPT_INT:
		if (parse_num(v, 0, 1e9, &d) < 0 || d != (int)d)
			goto bad;
		*(int *)(base + o->off) = (int)d;
		return 0;
	case OPT_SIZE:
		if (parse_num(v, 1, 1e12, &d) < 0 || d != (double)(size_t)d)
			goto bad;
		*(size_t *)(base + o->off) = (size_t)d;
		return 0;
	case OPT_I64:
		if (parse_num(v, 0, 1e15, &d) < 0 || d != (double)(int64_t)d)
			goto bad;
		*(int64_t *)(base + o->off) = (int64_t)d;
		return 0;
	case OPT_DBL:
		if (parse_num(v, 0, 1e9, &d) < 0)
			goto bad;
		*(double *)(base + o->off) = d;
		return 0;
	case OPT_LEVEL: {
		int l = log_level_parse(v);
		if (l < 0)
			goto bad;
		c->log_level = l;
		return 0;
	}
	case OPT_ONOFF:
		if (strcmp(v, "on") == 0)
			*(int *)(base + o->off) = 1;
		else if (strcmp(v, "off") == 0)
			*(int *)(base + o->off) = 0;
		else
			goto bad;
		return 0;
	case OPT_IO:
		if (strcmp(v, "uring") == 0)
			c->io_uring = 1;
		else if (strcmp(v, "epoll") == 0)
			c->io_uring = 0;
		else
			goto bad;
		return 0;
	case OPT_SYNC:
		if (strcmp(v, "normal") == 0)
			c->sync_full = 0;
		else if (strcmp(v, "full") == 0)
			c->sync_full = 1;
		else
			goto bad;
		return 0;
	case OPT_ORIGIN:
	case OPT_PROXY: {
		char tmp[1024], *save = NULL, *tok;
		if (!from_env) {
			tok = (char *)v;
			goto one;
		}
		snprintf(tmp, sizeof(tmp), "%s", v);
		for (tok = strtok_r(tmp, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			while (isspace((unsigned char)*tok))
				tok++;
			if (*tok == '\0')
				continue;
		one:
			if (o->kind == OPT_ORIGIN) {
				if (strcmp(tok, "*") == 0)
					c->origin_any = 1;
				else if (add_list(c->origins, &c->norigins, tok,
						  err, "--origin") < 0)
					return -1;
			} else if (!addr_parse_ok(tok)) {
				fprintf(err,
					"basestation: invalid value for %s: %s "
					"(an IP address or ADDR/BITS)\n",
					from_env ? o->env : "--trusted-proxy",
					tok);
				return -1;
			} else if (add_list(c->trusted_proxies, &c->ntrusted,
					    tok, err, "--trusted-proxy") < 0) {
				return -1;
			}
			if (!from_env)
				break;
		}
		return 0;
	}
	}
bad:
	fprintf(err, "basestation: invalid value for %s%s: %s\n",
		from_env ? "" : "--", from_env ? o->env : o->flag, v);
	return -1;
}

int config_from_env(struct config *c, FILE *err)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
		if (v && set_opt(c, &opts[i], v, 1, err) < 0)
			return -1;
	}
	return 0;
}

int config_from_args(struct config *c, int argc, char **argv, FILE *err)
{
	int env_origins = c->norigins, env_proxies = c->ntrusted;
	int seen_origin = 0, seen_proxy = 0;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		const struct opt *o = NULL;
		size_t nlen;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			config_usage(stdout);
			return 1;
		}
		if (strncmp(a, "--", 2) != 0) {
			fprintf(err,
				"basestation serve: unexpected argument: "
				"%s\n",
				a);
			return -1;
		}
		a += 2;
		nlen = strcspn(a, "=");
		if (a[nlen] == '=')
			val = a + nlen + 1;
		for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (strlen(opts[k].flag) == nlen &&
			    strncmp(opts[k].flag, a, nlen) == 0)
				o = &opts[k];
		if (o == NULL) {
			fprintf(err, "basestation serve: unknown flag: %s\n",
				argv[i]);
			return -1;
		}
		if (o->kind == OPT_BOOL && val == NULL) {
			val = "1";
		} else if (val == NULL) {
			if (i + 1 >= argc) {
				fprintf(err,
					"basestation serve: --%s needs a "
					"value\n",
					o->flag);
				return -1;
			}
			val = argv[++i];
		}
		/* A flag replaces the environment's list, it does not add. */
		if (o->kind == OPT_ORIGIN && !seen_origin++) {
			for (int k = 0; k < env_origins; k++)
				free(c->origins[k]);
			c->norigins = 0;
			c->origin_any = 0;
		}
		if (o->kind == OPT_PROXY && !seen_proxy++) {
			for (int k = 0; k < env_proxies; k++)
				free(c->trusted_proxies[k]);
			c->ntrusted = 0;
		}
		if (set_opt(c, o, val, 0, err) < 0)
			return -1;
	}
	if (c->idle_timeout > 0 && c->heartbeat >= c->idle_timeout)
		fprintf(err,
			"basestation: warning: --heartbeat %d is not below "
			"--idle-timeout %d\n",
			c->heartbeat, c->idle_timeout);
	if (c->burst < 1)
		c->burst = 1;
	if (c->auth_url && c->auth_url[0] == '\0') {
		free(c->auth_url); /* BASESTATION_AUTH_URL= : no hook */
		c->auth_url = NULL;
	}
	if (c->tls_cert && c->tls_cert[0] == '\0') {
		free(c->tls_cert); /* BASESTATION_TLS_CERT= : plain */
		c->tls_cert = NULL;
	}
	if (c->tls_key && c->tls_key[0] == '\0') {
		free(c->tls_key);
		c->tls_key = NULL;
	}
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		fprintf(err, "basestation: --tls-cert and --tls-key "
			     "(BASESTATION_TLS_CERT, BASESTATION_TLS_KEY) go "
			     "together\n");
		return -1;
	}
	if (c->auth_url) {
		char why[128];
		if (auth_hook_url_check(c->auth_url, why, sizeof(why)) < 0) {
			fprintf(err,
				"basestation: invalid --auth-url "
				"(BASESTATION_AUTH_URL): %s\n",
				why);
			return -1;
		}
	}
	if (cluster_check(c, err) < 0)
		return -1;
	return 0;
}

void config_usage(FILE *f)
{
	fputs("usage: basestation serve [flags]\n\n"
	      "Run the broker. SIGTERM/SIGINT stop it gracefully.\n\n"
	      "flags (environment variable in brackets; flags win):\n",
	      f);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", opts[i].flag,
			 opts[i].arg ? " " : "",
			 opts[i].arg ? opts[i].arg : "");
		fprintf(f, "  %-30s %s", left, opts[i].help);
		if (opts[i].env)
			fprintf(f, " [%s]", opts[i].env);
		fputc('\n', f);
	}
	fputs("  --help                         this text\n", f);
}

void config_free(struct config *c)
{
	free(c->listen);
	free(c->http);
	free(c->db);
	free(c->cluster);
	free(c->node);
	free(c->stream);
	free(c->api_key);
	free(c->admin_key);
	free(c->jwt_secret);
	free(c->auth_url);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->web_root);
	for (int i = 0; i < c->norigins; i++)
		free(c->origins[i]);
	for (int i = 0; i < c->ntrusted; i++)
		free(c->trusted_proxies[i]);
	memset(c, 0, sizeof(*c));
}
