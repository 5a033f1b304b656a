/* /admin/connections (the live pool map) and /admin/sql (read-only). */
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/inspect.h"
#include "basestation/log.h"

#include <event2/http.h>
#include <string.h>

void admin_connections(struct evhttp_request *req)
{
	json_t *list = json_array();
	struct conn *c, *tmp;

	HASH_ITER(hh, srv->conns, c, tmp)
	{
		json_t *rooms;
		if (c->state != CONN_OPEN || c->user == NULL)
			continue;
		rooms = json_array();
		for (int i = 0; i < c->user->nrooms; i++)
			json_array_append_new(
				rooms, json_string(c->user->rooms[i]->name));
		json_array_append_new(
			list,
			json_pack(
				"{s:I, s:s, s:s, s:s, s:I, s:o, s:I, s:I, s:i}",
				"conn", (json_int_t)c->id, "uid", c->user->uid,
				"role", auth_role_name(c->role), "remote",
				c->remote, "since", (json_int_t)c->since_ms,
				"rooms", rooms, "out_buffered",
				(json_int_t)conn_out_buffered(c), "last_seq",
				(json_int_t)c->last_seq, "tasks", c->nsubs));
	}
	http_reply_json(req, 200,
			json_pack("{s:o, s:i}", "connections", list, "count",
				  srv->nconns));
}

void admin_sql(struct evhttp_request *req)
{
	json_t *b = http_body_json(req), *sql, *params, *res;
	struct inspect_limits lim = {
		.max_rows = 1000, .time_ms = 2000, .max_sql = 16384};
	char err[512];

	if (b == NULL)
		return;
	sql = json_object_get(b, "sql");
	params = json_object_get(b, "params");
	if (!json_is_string(sql)) {
		http_error(req, 400, "'sql' must be a string");
		goto out;
	}
	if (params && !json_is_null(params) && !json_is_array(params) &&
	    !json_is_object(params)) {
		http_error(req, 400, "'params' must be an array or an object");
		goto out;
	}
	if (json_is_integer(json_object_get(b, "max_rows"))) {
		json_int_t m =
			json_integer_value(json_object_get(b, "max_rows"));
		if (m > 0 && m < 100000)
			lim.max_rows = (int)m;
	}
	res = inspect_query(srv->cfg->db, json_string_value(sql),
			    json_is_null(params) ? NULL : params, &lim, err,
			    sizeof(err));
	if (res == NULL) {
		log_info("admin.sql", "refused=%s", log_val(err));
		http_error(req, 400, err);
		goto out;
	}
	http_reply_json(req, 200, res);
out:
	json_decref(b);
}
