/*
 * The settings of `basestation serve` as plain data: every layer reads its
 * own from here. Parsed by src/config.c (config.h): flags win over
 * environment variables, which win over defaults.
 */
#ifndef BASESTATION_SETTINGS_H
#define BASESTATION_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LIST 32

struct config {
	char *listen;	 /* ws listener ADDR:PORT */
	char *http;	 /* http listener ADDR:PORT, "" or "off" = none */
	char *db;	 /* sqlite path */
	char *api_key;	 /* NULL: /api answers 401 */
	char *admin_key; /* NULL: /admin answers 401 */
	char *jwt_secret;
	char *auth_url; /* connect hook (contract §10), NULL = none */
	int auth_cache; /* s a 200 from auth_url is reused */
	char *tls_cert; /* PEM chain for both listeners, NULL = plain */
	char *tls_key;	/* its PEM key (set together with tls_cert) */
	char *web_root;
	char *origins[CONFIG_MAX_LIST];
	int norigins;
	int origin_any;
	char *trusted_proxies[CONFIG_MAX_LIST];
	int ntrusted;
	int heartbeat;	       /* s */
	int idle_timeout;      /* s */
	int message_timeout;   /* s for a started message, 0 = none */
	int handshake_timeout; /* s */
	size_t max_message;
	int max_frames;	     /* frames per message */
	int compression;     /* permessage-deflate accepted when offered */
	int compression_min; /* bytes: shorter messages go uncompressed */
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
	int io_uring; /* --io: 1 uring (default, when the kernel has it), 0
			 epoll */
	int log_level;
	int demo;

	/* tasks, with task_retention above */
	int64_t task_idle_retention; /* s an unfinished task nobody updates */
	int max_tasks;		     /* tasks held at once */
	int max_tasks_per_producer;  /* held, one WebSocket producer's */
	int max_steps;		     /* steps of one task */

	/* cluster mode (protocol §7); cluster NULL: one node */
	char *cluster; /* comma list of nats:// URLs */
	char *node;    /* this node's name; NULL: <hostname>-<ws port> */
	char *stream;  /* JetStream stream */
	int replicas;  /* 0: 3, or fewer when fewer URLs */
};

#endif
