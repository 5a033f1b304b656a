/*
 * Configuration of `basestation serve`: defaults, flags, environment.
 * Flags win over environment variables, which win over defaults.
 */
#ifndef BASESTATION_CONFIG_H
#define BASESTATION_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_LIST 32

struct config {
	char *listen;	 /* ws listener ADDR:PORT */
	char *http;	 /* http listener ADDR:PORT, "" or "off" = none */
	char *db;	 /* sqlite path */
	char *api_key;	 /* NULL: /api answers 401 */
	char *admin_key; /* NULL: /admin answers 401 */
	char *jwt_secret;
	char *web_root;
	char *origins[CONFIG_MAX_LIST];
	int norigins;
	int origin_any;
	char *trusted_proxies[CONFIG_MAX_LIST];
	int ntrusted;
	int heartbeat;	       /* s */
	int idle_timeout;      /* s */
	int handshake_timeout; /* s */
	int message_timeout;   /* s for a started message, 0 = none */
	size_t max_message;
	int max_frames; /* frames per message */
	size_t max_outbuf;
	int max_connections;
	int max_per_ip;
	double rate;		 /* messages/s per connection, 0 = unlimited */
	double burst;		 /* bucket size */
	int64_t retention_age;	 /* s, 0 = keep forever */
	int64_t retention_count; /* messages, 0 = unlimited */
	int64_t task_retention;	 /* s a finished task is kept */
	int max_rooms;		 /* rooms per user */
	int max_replay;		 /* messages per resume */
	int max_http_body;
	int max_http_conns;	    /* HTTP connections at once */
	int http_request_timeout;   /* s for a whole request, 0 = none */
	size_t admin_sql_max_bytes; /* bytes of one /admin/sql result */
	int sync_full;
	int log_level;
	int demo;

	/* tasks, with task_retention above */
	int64_t task_idle_retention; /* s an unfinished task nobody updates */
	int max_tasks;		     /* tasks held at once */
	int max_steps;		     /* steps of one task */
};

void config_defaults(struct config *c);
/* Apply BASESTATION_* environment variables. 0 ok, -1 bad value (message
 * printed to err). */
int config_from_env(struct config *c, FILE *err);
/* Parse serve flags from argv[0..argc). 0 ok, 1 --help printed, -1 usage
 * error (message printed to err). */
int config_from_args(struct config *c, int argc, char **argv, FILE *err);
void config_usage(FILE *f);
void config_free(struct config *c);

/* Split "host:port" ("[v6]:port" too). 0 ok, -1 malformed. host gets a
 * NUL-terminated copy (hostsz >= 64). */
int config_split_addr(const char *addr, char *host, size_t hostsz, int *port);

#endif
