/*
 * The control socket (see control.h). Each connection is a worker thread's link: it sends
 * a command line and reads the answer; "wait" and a "stop" of a run still running are
 * answered once the run's end is committed (control_ended).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <unistd.h>
#include <sys/stat.h>
#include <uv.h>

#include "rc.h"
#include "buf.h"
#include "util.h"
#include "store.h"
#include "llm.h"
#include "push-proto.h"
#include "runs.h"
#include "hub.h"
#include "control.h"
#include "stats.h"

#define CONN_MAX 4096 /* links at once: two per worker thread is the need */

struct conn {
	uv_pipe_t pipe;
	struct buf in;
	struct conn *prev, *next; /* every connection */
	struct conn *next_waiting;
	int64_t waiting; /* run id, 0 when not waiting */
	int stop_status; /* answer "stopped" (with this status) rather than "done"; -1: no */
	int closing;
};

static uv_loop_t *loop;
static struct store *store;
static uv_pipe_t server;
static struct conn *conns;   /* every connection */
static struct conn *waiting; /* connections waiting for a run's end */
static int nconns;

static void
conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	buf_free(&c->in);
	free(c);
	nconns--;
}

static void
conn_close(struct conn *c)
{
	struct conn **p;

	if (c->closing)
		return;
	c->closing = 1;
	for (p = &waiting; *p; p = &(*p)->next_waiting) {
		if (*p == c) {
			*p = c->next_waiting;
			break;
		}
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

struct wreq {
	uv_write_t w;
	char line[160];
};

static void
on_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void
conn_say(struct conn *c, const char *fmt, ...)
{
	struct wreq *r = malloc(sizeof(*r));
	va_list ap;
	uv_buf_t b;

	if (!r)
		return;
	va_start(ap, fmt);
	vsnprintf(r->line, sizeof(r->line), fmt, ap);
	va_end(ap);
	b = uv_buf_init(r->line, (unsigned)strlen(r->line));
	if (uv_write(&r->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0)
		free(r);
}

/* Answer "content <n>\n" and the n bytes of a running reply's content so far (whole UTF-8
 * characters), copied: the run may be gone before the write is. */
static void
conn_content(struct conn *c, const struct job_run *r)
{
	size_t n = utf8_fit(r->content.s, r->content.len, r->content.len);
	struct wreq *w = malloc(sizeof(*w) + n);
	uv_buf_t b[2];

	if (!w) {
		conn_close(c);
		return;
	}
	snprintf(w->line, sizeof(w->line), "content %zu\n", n);
	memcpy(w + 1, r->content.s, n);
	b[0] = uv_buf_init(w->line, (unsigned)strlen(w->line));
	b[1] = uv_buf_init((char *)(w + 1), (unsigned)n);
	if (uv_write(&w->w, (uv_stream_t *)&c->pipe, b, 2, on_written) != 0)
		free(w);
}

/* Answer "metrics <n>\n" and the daemon's figures (stats.h), in the text format. */
static void
conn_metrics(struct conn *c)
{
	struct stats_gauges g;
	struct buf text;
	struct wreq *w;
	uv_buf_t b[2];

	memset(&g, 0, sizeof(g));
	hub_counts(&g);
	runs_counts(&g.runs, &g.active, &g.backlog);
	g.upstream = llm_active();
	buf_init(&text, PUSH_METRICS_MAX);
	stats_render(&text, &g);
	if (!(w = malloc(sizeof(*w) + text.len))) {
		buf_free(&text);
		conn_close(c);
		return;
	}
	snprintf(w->line, sizeof(w->line), "metrics %zu\n", text.len);
	memcpy(w + 1, text.s, text.len);
	b[0] = uv_buf_init(w->line, (unsigned)strlen(w->line));
	b[1] = uv_buf_init((char *)(w + 1), (unsigned)text.len);
	if (uv_write(&w->w, (uv_stream_t *)&c->pipe, b, 2, on_written) != 0)
		free(w);
	buf_free(&text);
}

static void
wait_for(struct conn *c, int64_t id, int stop_status)
{
	c->waiting = id;
	c->stop_status = stop_status;
	c->next_waiting = waiting;
	waiting = c;
}

void
control_ended(int64_t id, int status)
{
	struct conn **p = &waiting;

	while (*p) {
		struct conn *c = *p;
		if (c->waiting == id) {
			*p = c->next_waiting;
			c->waiting = 0;
			if (c->stop_status >= 0)
				conn_say(c, "stopped %lld %d\n", (long long)id, c->stop_status);
			else
				conn_say(c, "done %lld %d\n", (long long)id, status);
			c->stop_status = -1;
		} else {
			p = &c->next_waiting;
		}
	}
}

void
control_check_waiters(void)
{
	struct conn *c, *next;
	char err[ERR_LEN];
	int status;

	for (c = waiting; c; c = next) {
		next = c->next_waiting;
		if (runs_find(c->waiting))
			continue;
		if (store_run_status(store, c->waiting, &status, err) == RC_NOTFOUND)
			status = RUN_FAILED;
		else if (status == RUN_RUNNING)
			continue;
		control_ended(c->waiting, status);
	}
}

static void
conn_line(struct conn *c, char *line)
{
	int64_t id;

	if (strcmp(line, "wake") == 0) {
		runs_wake();
	} else if (strncmp(line, "wait ", 5) == 0 && parse_uint(line + 5, INT64_MAX, &id) == 0) {
		char err[ERR_LEN];
		int status;

		if (c->waiting)
			return;
		if (!runs_find(id)) {
			if (store_run_status(store, id, &status, err) != RC_OK) {
				conn_say(c, "done %lld %d\n", (long long)id, RUN_FAILED);
				return;
			}
			if (status != RUN_RUNNING) {
				conn_say(c, "done %lld %d\n", (long long)id, status);
				return;
			}
			runs_wake();
		}
		wait_for(c, id, -1);
	} else if (strncmp(line, "stop ", 5) == 0 && parse_uint(line + 5, INT64_MAX, &id) == 0) {
		int status = runs_stop_id(id);

		if (c->waiting || !runs_find(id)) {
			conn_say(c, "stopped %lld %d\n", (long long)id, status);
			return;
		}
		/* the caller reads the stopped reply next: answer once its end is written */
		wait_for(c, id, status);
	} else if (strncmp(line, "content ", 8) == 0) {
		/* a worker reads an unfinished reply: what is written of it so far */
		struct job_run *r = runs_find_msg(line + 8);

		if (r)
			conn_content(c, r);
		else
			conn_say(c, "none\n");
	} else if (strcmp(line, "metrics") == 0) {
		conn_metrics(c);
	} else if (strcmp(line, "stats") == 0) {
		char hub[256];
		int runs, active, backlog;

		hub_stats(hub, sizeof(hub));
		runs_counts(&runs, &active, &backlog);
		conn_say(c, "runs %d upstream %d %s active %d backlog %d\n", runs, llm_active(), hub,
			 active, backlog);
	} else {
		conn_close(c);
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char slab[4096];

	(void)h;
	(void)suggested;
	*b = uv_buf_init(slab, sizeof(slab));
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;
	char *nl;

	if (n < 0) {
		conn_close(c);
		return;
	}
	if (buf_add(&c->in, b->base, (size_t)n) != RC_OK) {
		conn_close(c);
		return;
	}
	while (!c->closing && (nl = memchr(c->in.s, '\n', c->in.len))) {
		size_t line = (size_t)(nl - c->in.s);

		if (line > PUSH_LINE_MAX) {
			conn_close(c);
			return;
		}
		*nl = '\0';
		conn_line(c, c->in.s);
		if (!c->closing)
			buf_consume(&c->in, line + 1);
	}
	if (!c->closing && c->in.len > PUSH_LINE_MAX && !memchr(c->in.s, '\n', c->in.len))
		conn_close(c); /* a line longer than any command */
}

static void
on_connection(uv_stream_t *srv, int status)
{
	struct conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	buf_init(&c->in, 2 * PUSH_LINE_MAX);
	c->stop_status = -1;
	uv_pipe_init(loop, &c->pipe, 0);
	c->pipe.data = c;
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	if (uv_accept(srv, (uv_stream_t *)&c->pipe) != 0 || nconns > CONN_MAX) {
		conn_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

int
control_listen(uv_loop_t *l, struct store *st, const char *path, char *err)
{
	int rc;

	loop = l;
	store = st;
	unlink(path);
	uv_pipe_init(loop, &server, 0);
	if ((rc = uv_pipe_bind(&server, path)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&server, 1024, on_connection)) != 0) {
		snprintf(err, ERR_LEN, "cannot listen on %s: %s", path, uv_strerror(rc));
		return RC_ERR;
	}
	chmod(path, 0600); /* the workers only, which run as this user */
	return RC_OK;
}

void
control_close_all(void)
{
	while (conns)
		conn_close(conns);
	if (!uv_is_closing((uv_handle_t *)&server))
		uv_close((uv_handle_t *)&server, NULL);
}
