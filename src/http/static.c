/*
 * Static pages from the web root: / (demo), /admin (console) and their
 * assets, plus /client/ (the JavaScript client library). Paths are decoded
 * once, refused when they hold "..", a segment that starts with a dot (dot
 * files: .env, .git, editor swap files), an empty segment, NUL or a
 * backslash, and the resolved file (symlinks followed) must lie inside its
 * root.
 */
#include "basestation/http.h"
#include "basestation/log.h"
#include "bs_config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *web_root;

void static_init(const char *root)
{
	web_root = root;
}

static const struct {
	const char *ext, *type;
} types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".json", "application/json"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
};

static const char *content_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

static const char *client_root(void)
{
	static char root[PATH_MAX];
	const char *cands[] = {BS_SOURCE_ROOT "/clients/js",
			       BS_DATADIR "/clients/js"};
	char probe[PATH_MAX];
	for (size_t i = 0; i < 2; i++) {
		snprintf(probe, sizeof(probe), "%s/basestation.js", cands[i]);
		if (access(probe, R_OK) == 0) {
			snprintf(root, sizeof(root), "%s", cands[i]);
			return root;
		}
	}
	return cands[1];
}

/* Map a request path to a file: full path in out. 0 ok, -1 refused. */
static int resolve(const char *path, char *out, size_t outsz)
{
	size_t declen = 0;
	char *dec = evhttp_uridecode(path, 0, &declen);
	const char *root = web_root, *rel;
	char joined[PATH_MAX], real_root[PATH_MAX], real_file[PATH_MAX];
	int rc = -1;

	if (dec == NULL)
		return -1;
	if (dec[0] != '/' || strstr(dec, "..") || strstr(dec, "/.") ||
	    strchr(dec, '\\') || strlen(dec) != declen || strstr(dec, "//"))
		goto out;
	rel = dec;
	if (strcmp(dec, "/") == 0)
		rel = "/index.html";
	else if (strcmp(dec, "/admin") == 0 || strcmp(dec, "/admin/") == 0)
		rel = "/admin/index.html";
	else if (strncmp(dec, "/client/", 8) == 0) {
		root = client_root();
		rel = dec + 7;
	}
	if (snprintf(joined, sizeof(joined), "%s%s", root, rel) >=
	    (int)sizeof(joined))
		goto out;
	if (realpath(root, real_root) == NULL ||
	    realpath(joined, real_file) == NULL)
		goto out;
	size_t rl = strlen(real_root);
	if (strncmp(real_file, real_root, rl) != 0 || real_file[rl] != '/')
		goto out;
	snprintf(out, outsz, "%s", real_file);
	rc = 0;
out:
	free(dec);
	return rc;
}

int static_exists(const char *path)
{
	char file[PATH_MAX];
	struct stat st;
	return resolve(path, file, sizeof(file)) == 0 && stat(file, &st) == 0 &&
	       S_ISREG(st.st_mode);
}

void static_serve(struct evhttp_request *req, const char *path)
{
	char file[PATH_MAX];
	struct stat st;
	struct evbuffer *b;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	int fd;

	/* Regular files only. A FIFO, socket or device in the web root is
	 * not opened at all (opening a FIFO for reading waits for a writer,
	 * on the loop thread), and O_NONBLOCK covers one swapped in after
	 * the stat; fstat decides on what was actually opened. */
	if (resolve(path, file, sizeof(file)) < 0 || stat(file, &st) < 0 ||
	    !S_ISREG(st.st_mode) ||
	    (fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		http_error(req, 404, "not found");
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > 16 * 1024 * 1024) {
		close(fd);
		http_error(req, 404, "not found");
		return;
	}
	b = evbuffer_new();
	evhttp_add_header(h, "Content-Type", content_type(file));
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	/* evbuffer_add_file owns fd on success. */
	if (st.st_size == 0 || evbuffer_add_file(b, fd, 0, st.st_size) < 0)
		close(fd);
	http_send(req, 200, b);
	evbuffer_free(b);
}
