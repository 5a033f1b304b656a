/*
 * `serve --demo`: demo users with sign-in links, and an in-process producer
 * that runs staged jobs so the progress panel moves with no other program.
 */
#include "basestation/demo.h"
#include "basestation/engine.h"
#include "basestation/log.h"
#include "basestation/records.h"
#include "basestation/tasks.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEMO_STEP_MS 2500

static struct event *demo_ev;
static int demo_job, demo_step;

/* A refused change is logged; nobody else waits for it. */
static void local_done(const struct bk_done *d, const struct bk_result *r)
{
	(void)d;
	if (r->status != BK_OK && r->status != BK_CREATED)
		log_warn("task.local", "task=%s msg=%s",
			 log_val(r->name ? r->name : "-"),
			 log_val(r->msg ? r->msg : "failed"));
}

static const struct bk_done demo_done = {.fn = local_done};

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
	tasks_create(b, NULL, &demo_done);
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
	tasks_update(id, b, &demo_done);
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
		tasks_create(b, NULL, &demo_done);
		json_decref(b);
		for (int i = 0; i < 3; i++) {
			b = json_pack("{s:i, s:s}", "step", i, "status",
				      "finish");
			tasks_update("1", b, &demo_done);
			json_decref(b);
		}
	}
}

/* A demo user's link, printed once its token is durable. */
struct link {
	char uid[16], token[128];
	int ws_port, http_port;
	const char *admin_key; /* set on the last link: the console line */
};

static void link_done(const struct bk_done *d, const struct bk_result *r)
{
	struct link *l = d->ptr;

	if (r->status == BK_OK)
		printf("  %-6s http://127.0.0.1:%d/?uid=%s&token=%s&ws=%d\n",
		       strcmp(l->uid, "demo-admin") == 0 ? "admin" : l->uid,
		       l->http_port, l->uid, l->token, l->ws_port);
	else
		log_error("demo.token", "uid=%s msg=%s", log_val(l->uid),
			  log_val(r->msg ? r->msg : "failed"));
	if (d->kind) {
		if (l->admin_key)
			printf("  console http://127.0.0.1:%d/admin (the "
			       "--admin-key value; scripts/demo uses "
			       "demo-admin-key)\n",
			       l->http_port);
		printf("\n");
	}
	fflush(stdout);
	free(l);
}

static int issue_link(struct engine *e, const char *uid, enum auth_role role,
		      int ws_port, int http_port, const char *admin_key,
		      int last)
{
	struct engine_event ev = {.kind = ENGINE_TOKEN_ISSUE};
	struct link *l = calloc(1, sizeof(*l));
	struct bk_done d = {.fn = link_done, .ptr = l, .kind = last};

	if (l == NULL)
		return -1;
	snprintf(l->uid, sizeof(l->uid), "%s", uid);
	l->ws_port = ws_port;
	l->http_port = http_port;
	l->admin_key = admin_key;
	if (auth_token_new(l->uid, role, 86400, now_ms(), l->token,
			   sizeof(l->token), &ev.token) < 0 ||
	    engine_submit(e, &ev, &d, NULL) < 0) {
		free(l);
		return -1;
	}
	return 0;
}

int demo_start(struct event_base *base, struct engine *e,
	       const struct config *cfg, int ws_port, int http_port)
{
	struct timeval tv = {DEMO_STEP_MS / 1000, (DEMO_STEP_MS % 1000) * 1000};

	/* The links are printed once the tokens are committed (the first
	 * turn of the loop), in this order. */
	printf("\nbasestation demo — open these links in two browser "
	       "windows:\n");
	fflush(stdout);
	for (size_t i = 0; i < 2; i++)
		if (issue_link(e, demo_users[i], ROLE_USER, ws_port, http_port,
			       NULL, 0) < 0)
			return -1;
	if (issue_link(e, "demo-admin", ROLE_ADMIN, ws_port, http_port,
		       cfg->admin_key, 1) < 0)
		return -1;
	seed_tasks();
	demo_ev = event_new(base, -1, EV_PERSIST, demo_tick, NULL);
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
