/*
 * `serve --demo`: demo users with sign-in links, and an in-process producer
 * that runs staged jobs so the progress panel moves with no other program.
 */
#include "basestation/broker.h"
#include "basestation/http.h"
#include "basestation/log.h"
#include "basestation/store.h"
#include "basestation/tasks.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEMO_STEP_MS 2500

static struct event *demo_ev;
static int demo_job, demo_step;

static const char *const demo_users[] = {"alice", "bob"};
static const char *const demo_steps[] = {"下载图片 download", "压缩 compress",
					 "上传 upload", "通知 notify"};

static void new_job(void)
{
	char id[32], title[64];
	json_t *b, *steps = json_array();

	/* Jobs of an earlier run stay in the database: number after them. */
	do
		snprintf(id, sizeof(id), "demo-%d", ++demo_job);
	while (tasks_exists(id));
	snprintf(title, sizeof(title), "Demo job #%d", demo_job);
	for (size_t i = 0; i < 4; i++)
		json_array_append_new(steps, json_string(demo_steps[i]));
	b = json_pack("{s:s, s:s, s:s, s:o, s:[s,s], s:i}", "id", id, "title",
		      title, "owner", "alice", "steps", steps, "watchers",
		      "bob", "demo-admin", "total", 40);
	tasks_local_create(b);
	json_decref(b);
	demo_step = 0;
}

/* One tick: start or finish the current step of the current job. Task "2"
 * (the seed page's running job) restarts with each demo job. */
static void demo_tick(evutil_socket_t fd, short what, void *arg)
{
	char id[32];
	json_t *b;
	(void)fd;
	(void)what;
	(void)arg;

	if (demo_job == 0 || demo_step >= 8) {
		new_job();
		return;
	}
	snprintf(id, sizeof(id), "demo-%d", demo_job);
	b = json_pack("{s:i, s:s, s:i}", "step", demo_step / 2, "status",
		      demo_step % 2 == 0 ? "running" : "finish", "done",
		      (demo_step + 1) * 5);
	tasks_local_update(id, b);
	json_decref(b);
	demo_step++;
}

static void seed_tasks(void)
{
	/* The seed page asks for {"id":1} (finished) and {"id":2}. */
	if (!tasks_exists("1")) {
		json_t *b = json_pack("{s:s, s:s, s:s, s:[s,s,s], s:[s,s]}",
				      "id", "1", "title", "流程1", "owner",
				      "alice", "steps", "准备", "执行", "完成",
				      "watchers", "bob", "demo-admin");
		tasks_local_create(b);
		json_decref(b);
		for (int i = 0; i < 3; i++) {
			b = json_pack("{s:i, s:s}", "step", i, "status",
				      "finish");
			tasks_local_update("1", b);
			json_decref(b);
		}
	}
}

int demo_start(void)
{
	struct timeval tv = {DEMO_STEP_MS / 1000, (DEMO_STEP_MS % 1000) * 1000};
	char token[128];
	int64_t exp;

	if (server_write_begin() < 0)
		return -1;
	printf("\nbasestation demo — open these links in two browser "
	       "windows:\n");
	for (size_t i = 0; i < 2; i++) {
		if (store_token_issue(srv->store, demo_users[i], ROLE_USER,
				      86400, token, sizeof(token), &exp) < 0)
			return -1;
		printf("  %-6s http://127.0.0.1:%d/?uid=%s&token=%s&ws=%d\n",
		       demo_users[i], srv->http_port, demo_users[i], token,
		       srv->ws_port);
	}
	if (store_token_issue(srv->store, "demo-admin", ROLE_ADMIN, 86400,
			      token, sizeof(token), &exp) == 0)
		printf("  admin  http://127.0.0.1:%d/?uid=demo-admin&token=%s"
		       "&ws=%d\n",
		       srv->http_port, token, srv->ws_port);
	if (srv->cfg->admin_key)
		printf("  console http://127.0.0.1:%d/admin (the --admin-key "
		       "value; scripts/demo uses demo-admin-key)\n",
		       srv->http_port);
	printf("\n");
	fflush(stdout);
	seed_tasks();
	demo_ev = event_new(srv->base, -1, EV_PERSIST, demo_tick, NULL);
	event_add(demo_ev, &tv);
	log_info("demo.start", "users=alice,bob");
	return 0;
}

void demo_stop(void)
{
	if (demo_ev) {
		event_free(demo_ev);
		demo_ev = NULL;
	}
}
