/*
 * What is kept: the rows of the store as plain structs, shared by the
 * store (which reads and writes them), the engines (which carry them as
 * events) and the broker (which makes them and reads them back). Strings
 * point into someone else's memory: a statement's row during a callback, a
 * caller's buffers during a call. No SQLite type appears here.
 */
#ifndef BASESTATION_RECORDS_H
#define BASESTATION_RECORDS_H

#include <stddef.h>
#include <stdint.h>

/* One relayed message. */
struct msg_record {
	int64_t seq;
	int64_t ts;
	const char *sender;
	const char *to;	  /* NULL for a room message */
	const char *room; /* NULL for a direct message */
	const char *data; /* JSON text */
	size_t data_len;
};

/* One task's latest state (the tasks table). */
struct task_record {
	const char *id, *title, *owner;
	const char *watchers; /* JSON array of uids */
	const char *status;
	const char *steps;   /* JSON array of {name,status,started_at,...} */
	const char *note;    /* NULL: none */
	int64_t done, total; /* -1: not used */
	int64_t version, created_at, updated_at;
	int64_t finished_at; /* 0: not finished */
};

/* One opaque token (only its SHA-256 is ever stored). */
struct token_record {
	unsigned char hash[32];
	char prefix[9]; /* first 8 hex chars of the hash, for logs */
	const char *uid;
	int role; /* enum auth_role */
	int64_t created_at;
	int64_t expires_at; /* 0: never */
	int64_t revoked_at; /* 0: valid */
};

#endif
