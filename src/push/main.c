/*
 * aichatd-push: the push daemon. One libuv pushd_loop that takes AI runs from the database,
 * makes each reply through a provider (llm.h), keeps the partial content in memory as it
 * grows (the workers read it with the "content" command; nothing is saved until the end),
 * ends each run in the database, and answers the workers' wake-ups, waits, stops and
 * content requests (push-proto.h).
 *
 * Runs are durable: the database is the queue. At start every run still marked running is
 * taken again (its reply is made anew), unless it is older than the longest a reply may
 * take, in which case it is failed, so no run stays running forever.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <uv.h>
#include <jansson.h>

#include "rc.h"
#include "jsonpool.h"
#include "buf.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "store.h"
#include "llm.h"
#include "push-proto.h"
#include "pushd.h"

#define POLL_MS 1000          /* the database is looked at this often without wake-ups */
#define POLL_BATCH 256
/* Runs in flight at once: max_runs (AICHATD_MAX_RUNS); the rest wait in the database. */
#define CONN_MAX 4096

struct waiter;


struct conn {
	uv_pipe_t pipe;
	struct buf in;
	struct conn *next_waiting;
	int64_t waiting; /* run id, 0 when not waiting */
	int stop_status; /* answer "stopped" (with this status) rather than "done"; -1: no */
	int closing;
};

struct config pushd_cfg;
uv_loop_t *pushd_loop;
struct store *pushd_store;
static uv_pipe_t server;
static uv_timer_t poll_timer;
static uv_signal_t sigterm, sigint;
static uv_idle_t poll_soon;
static struct job_run *runs_by_id[1024];
static struct job_run *runs_by_msg[1024];
static int nruns, nconns;
/* Every run with an id up to max_seen has begun or ended: the queue is the runs still
 * open (status 0) past it, taken oldest first as slots free. nactive counts the runs that
 * have begun and not yet been freed (their end written); backlog says runs may wait in
 * the queue, so that a new one must take its turn behind them. */
static int64_t max_seen;
static int nactive, backlog;
static int64_t started_ms; /* when this daemon started (time_now_ms) */
static int load_failed;    /* the last run_load() could not read its run */
static struct conn *waiting; /* connections waiting for a run's end */
static int stopping;

static void
logf_(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "aichatd-push: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static struct job_run **
run_slot(int64_t id)
{
	struct job_run **p = &runs_by_id[(uint64_t)id % (sizeof(runs_by_id) / sizeof(runs_by_id[0]))];

	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static unsigned
msg_hash(const char *k)
{
	unsigned h = 2166136261u;

	while (*k)
		h = (h ^ (unsigned char)*k++) * 16777619u;
	return h % (sizeof(runs_by_msg) / sizeof(runs_by_msg[0]));
}

struct job_run *
runs_find(int64_t id)
{
	return *run_slot(id);
}

struct job_run *
runs_find_msg(const char *msg_id)
{
	struct job_run *r = runs_by_msg[msg_hash(msg_id)];

	while (r && strcmp(r->job.ai_msg_id, msg_id) != 0)
		r = r->next_msg;
	return r;
}

/* ---- waiters ---- */

static void
conn_free(struct conn *c)
{
	buf_free(&c->in);
	free(c);
	nconns--;
}

static void
conn_closed(uv_handle_t *h)
{
	conn_free(h->data);
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

static size_t utf8_whole(const char *s, size_t len);

/* Answer "content <n>\n" and the n bytes of a running reply's content so far (whole UTF-8
 * characters), copied: the run may be gone before the write is. */
static void
conn_content(struct conn *c, const struct job_run *r)
{
	size_t n = utf8_whole(r->content.s, r->content.len);
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

/* Tell everyone waiting for run id that it ended with status. */
static void
notify(int64_t id, int status)
{
	struct conn **p = &waiting;

	hub_sync_end(id); /* D's and E's sends held in the hub */

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

/* ---- runs ---- */

static void on_poll_soon(uv_idle_t *h);

static void
run_free(struct job_run *r)
{
	struct job_run **p = run_slot(r->id);

	if (*p == r)
		*p = r->next;
	if (r->job.ai_msg_id) {
		struct job_run **m = &runs_by_msg[msg_hash(r->job.ai_msg_id)];
		while (*m && *m != r)
			m = &(*m)->next_msg;
		if (*m)
			*m = r->next_msg;
	}
	buf_free(&r->content);
	buf_free(&r->raw);
	pool_destroy(r->pool);
	if (r->begun) {
		nactive--;
		if (backlog && !stopping)
			uv_idle_start(&poll_soon, on_poll_soon); /* the next in the queue */
	}
	free(r);
	nruns--;
}

static void
run_on_chunk(void *ctx, const char *s, size_t n)
{
	struct job_run *r = ctx;

	if (buf_add(&r->content, s, n) != RC_OK)
		return; /* the provider stops at LLM_REPLY_MAX before this cap is reached */
	hub_chunk(r, s, n);
}

/* The content as shown: cut back to whole UTF-8 characters (a piece may end inside one). */
static size_t
utf8_whole(const char *s, size_t len)
{
	size_t i = len, back = 0;

	while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i > 0) {
		unsigned char lead = (unsigned char)s[i - 1];
		size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
		if (need > back + 1)
			return i - 1;
	}
	return len;
}

/* A run's end, written: announce it to the subscribers (only now: a client that reads
 * what an event announced the moment it arrives finds it stored), tell its waiters, and
 * let it go. */
static void
end_written(struct job_run *r)
{
	hub_done(r, r->end.status, r->end.error);
	notify(r->id, r->end.status);
	run_free(r);
}

static void
run_end(struct job_run *r, int code, const char *error, const char *travel_plan)
{
	struct run_end *e = &r->end;
	struct witem *it;

	memset(e, 0, sizeof(*e));
	e->run_id = r->id;
	e->ai_msg = r->job.ai_msg;
	e->status = code == RUN_STOPPED ? RUN_STOPPED : code ? RUN_FAILED : RUN_DONE;
	e->len = utf8_whole(r->content.s, r->content.len);
	if (!utf8_valid(r->content.s, e->len)) {
		code = LLM_E_FAILED;
		e->status = RUN_FAILED;
		error = "AI 服务调用失败: the reply is not valid UTF-8";
		e->len = 0;
	}
	r->content.len = e->len; /* what subscribers are told is what is saved */
	r->content.s[e->len] = '\0';
	e->content = r->content.s;
	e->error_code = e->status == RUN_FAILED ? code : 0;
	e->error = e->status == RUN_FAILED ? pool_strdup(r->pool, error ? error : "AI 服务调用失败") : NULL;
	e->duration_ms = (int64_t)(uv_now(pushd_loop) - r->started);
	e->travel_plan = pool_strdup(r->pool, travel_plan);
	/* the metadata (provider, model) is made by the writer */
	/* the subscribers are told once it is written (end_written); the ones that come
	 * meanwhile wait for it too */
	r->ended = 1;
	/* written by the writer, with whatever else ended meanwhile */
	if (!(it = witem_new(W_END))) {
		logf_("run %lld: out of memory for its end", (long long)r->id);
		return; /* it stays running in the database: the next start ends it */
	}
	it->run = r;
	/* the log keeps the failure's detail (curl's message, with the upstream's host), cut on
	 * a character boundary */
	if (e->status == RUN_FAILED &&
	    asprintf(&it->log, "AI run %s (%s) failed [%d]: %s", r->job.record_id,
		     r->job.cfg.provider, e->error_code,
		     r->error_detail ? r->error_detail : e->error ? e->error : "") < 0)
		it->log = NULL;
	else if (it->log)
		utf8_cut(it->log, PUSHD_LOG_MAX);
	writer_put(it);
}

static void
run_on_done(void *ctx, int code, const char *error, const char *travel_plan, const char *detail)
{
	struct job_run *r = ctx;

	r->call = NULL;
	r->error_detail = pool_strdup(r->pool, detail);
	run_end(r, code, error, travel_plan);
}

static void
run_on_raw(void *ctx, const char *ctype, const char *s, size_t n)
{
	struct job_run *r = ctx;

	if (!r->raw_type[0])
		snprintf(r->raw_type, sizeof(r->raw_type), "%s", ctype);
	/* only E's workflow runs are streamed raw; past its cap, only late subscribers miss
	 * the early bytes */
	if (!r->raw_wanted)
		return;
	buf_add(&r->raw, s, n);
	hub_raw(r, s, n);
}

static const struct llm_cb run_cb = {run_on_chunk, run_on_raw, run_on_done};
/* the same, for the runs whose upstream bytes nobody streams (all but n8n's) */
static const struct llm_cb run_cb_noraw = {run_on_chunk, NULL, run_on_done};

/* Load run id into memory, not begun yet. With pool, its job was loaded by the writer into
 * *job and pool, which the run takes over; without, it is loaded here. streamed: E's
 * stream passes its upstream's bytes on. NULL when it is already in memory, has ended, or
 * cannot be loaded (then the next poll tries again). */
static struct job_run *
run_load(int64_t id, struct pool *pool, const struct run_job *job, int streamed)
{
	struct job_run *r;
	char err[ERR_LEN];
	int rc = RC_OK;

	if (*run_slot(id)) {
		pool_destroy(pool);
		return NULL; /* already being made */
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->pool = pool ? pool : pool_create())) {
		free(r);
		pool_destroy(pool);
		return NULL;
	}
	r->id = id;
	r->raw_wanted = streamed;
	buf_init(&r->content, LLM_REPLY_MAX + 16);
	buf_init(&r->raw, LLM_REPLY_MAX);
	buf_reserve(&r->content, 1024); /* most replies, without a realloc per doubling */
	r->started = uv_now(pushd_loop);
	if (job) {
		r->job = *job;
	} else {
		rc = store_run_job(pushd_store, r->pool, id, pushd_cfg.provider, &r->job, err);
		if (rc == RC_OK && llm_wants_history(r->job.cfg.provider))
			rc = store_run_history(pushd_store, r->pool, &r->job, HISTORY_WINDOW, err);
	}
	r->next = NULL;
	*run_slot(id) = r;
	nruns++;
	if (rc == RC_NOTFOUND) {
		run_free(r); /* ended meanwhile */
		return NULL;
	}
	if (rc != RC_OK) {
		logf_("run %lld: cannot load: %s", (long long)id, err);
		load_failed = 1;
		run_free(r);
		if (id <= max_seen)
			max_seen = id - 1; /* the next poll tries it again */
		backlog = 1;
		return NULL;
	}
	/* an earlier attempt (before a restart) saved parts of another reply: start clean */
	if (r->job.restarted)
		store_run_reset(pushd_store, r->job.ai_msg, err);
	r->next_msg = runs_by_msg[msg_hash(r->job.ai_msg_id)];
	runs_by_msg[msg_hash(r->job.ai_msg_id)] = r;
	return r;
}

/* Begin a loaded run: it takes a slot, and its provider starts. */
static void
run_go(struct job_run *r)
{
	char err[ERR_LEN];
	int64_t age_limit = ((int64_t)pushd_cfg.reply_timeout_s + pushd_cfg.connect_timeout_s + 30) * 1000;

	r->begun = 1;
	nactive++;
	r->started = uv_now(pushd_loop); /* its duration counts from here, not from its wait */
	if (r->job.created_at < started_ms && time_now_ms() - r->job.created_at > age_limit) {
		/* left running by a daemon that died long ago: no reply could still be on time
		 * (a run this daemon saw queued may wait longer: it is made all the same) */
		run_end(r, LLM_E_TIMEOUT, "AI 回复超时: interrupted by a restart", NULL);
		return;
	}
	r->raw_wanted = r->raw_wanted || llm_provider_find(r->job.cfg.provider)->streams_raw;
	r->call = llm_start(pushd_loop, &pushd_cfg, &r->job, r->raw_wanted ? &run_cb : &run_cb_noraw,
			    r, err);
	if (!r->call)
		run_end(r, LLM_E_FAILED, err, NULL);
}

/* A slot for a run that has just come, ahead of none: no queue, and room. */
static int
slot_free(void)
{
	return !backlog && nactive < pushd_cfg.max_runs;
}

/* Let the queue move: a poll at the loop's next turn, if a slot is free. */
static void
queue_moves(void)
{
	backlog = 1;
	if (nactive < pushd_cfg.max_runs && !stopping)
		uv_idle_start(&poll_soon, on_poll_soon);
}

/* A run someone is waiting on (a WebSocket send, E's stream, a stop): in memory now, so
 * that its events and its end reach them; begun now if it is its turn, else when the
 * queue reaches it. */
static void
run_start(int64_t id, int streamed)
{
	struct job_run *r = run_load(id, NULL, NULL, streamed);

	if (!r)
		return;
	if (slot_free()) {
		if (id == max_seen + 1)
			max_seen = id;
		run_go(r);
	} else {
		queue_moves();
	}
}

void
runs_start(int64_t id)
{
	run_start(id, 0);
}

void
runs_start_streamed(int64_t id)
{
	run_start(id, 1);
}

int
runs_queued(int64_t id)
{
	struct job_run *r = runs_find(id);

	return r ? !r->begun && !r->ended : id > max_seen;
}

void
runs_stop(struct job_run *r)
{
	llm_cancel(r->call);
	r->call = NULL;
	run_end(r, RUN_STOPPED, NULL, NULL);
}

int
runs_stop_id(int64_t id)
{
	struct job_run *r = runs_find(id);
	char err[ERR_LEN];
	int status;

	if (!r) {
		if (store_run_status(pushd_store, id, &status, err) != RC_OK)
			return -1;
		if (status != RUN_RUNNING)
			return status;
		runs_start(id); /* queued: load it, to end it as stopped */
		r = runs_find(id);
		if (!r) {
			if (store_run_status(pushd_store, id, &status, err) != RC_OK)
				return -1;
			return status;
		}
	}
	if (r->ended)
		return r->end.status;
	runs_stop(r);
	return RUN_STOPPED;
}

/* Take runs from the queue (the database's open runs past max_seen), oldest first, while
 * slots are free. */
static void
poll_runs(void)
{
	struct pool *p;
	int64_t *ids, retry = 0;
	char err[ERR_LEN];
	int n = 0, i, limit, full = 0;

	if (nactive >= pushd_cfg.max_runs) {
		backlog = 1; /* an end frees a slot and polls again */
		return;
	}
	if (!(p = pool_create()))
		return;
	do {
		limit = pushd_cfg.max_runs - nactive;
		if (limit > POLL_BATCH)
			limit = POLL_BATCH;
		if (limit < 16)
			limit = 16; /* some listed may be running already */
		if (store_runs_open(pushd_store, p, max_seen, limit, &ids, &n, err) != RC_OK) {
			logf_("cannot list runs: %s", err);
			full = 1;
			break;
		}
		for (i = 0; i < n && !stopping; i++) {
			struct job_run *r = runs_find(ids[i]);

			if (!r || (!r->begun && !r->ended)) {
				if (nactive >= pushd_cfg.max_runs) {
					full = 1;
					break;
				}
				load_failed = 0;
				if (!r && !(r = run_load(ids[i], NULL, NULL, 0))) {
					if (load_failed && !retry)
						retry = ids[i]; /* not loaded: again at the next poll */
				} else {
					run_go(r);
				}
			}
			max_seen = ids[i];
		}
		pool_reset(p);
	} while (!full && n == limit && !stopping);
	pool_destroy(p);
	if (retry && retry <= max_seen)
		max_seen = retry - 1;
	backlog = full || retry;
}

/* Answer waiters whose run ended outside this daemon's sight. */
static void
check_waiters(void)
{
	struct conn *c, *next;
	char err[ERR_LEN];
	int status;

	for (c = waiting; c; c = next) {
		next = c->next_waiting;
		if (*run_slot(c->waiting))
			continue;
		if (store_run_status(pushd_store, c->waiting, &status, err) == RC_NOTFOUND)
			status = RUN_FAILED;
		else if (status == RUN_RUNNING)
			continue;
		notify(c->waiting, status);
	}
}

static void
on_poll_soon(uv_idle_t *h)
{
	uv_idle_stop(h);
	poll_runs();
}

static void
on_poll_timer(uv_timer_t *t)
{
	(void)t;
	poll_runs();
	check_waiters();
	hub_sync_check();
}

/* ---- posts from the workers, and what the writer hands back ---- */

/* A post that started a run, written and answered: start the run with the job the writer
 * made. */
static void
post_written(struct witem *it)
{
	struct wpost *p = it->post;

	struct job_run *r;

	if (p->op.rc != RC_OK || !p->in.run || stopping)
		return;
	if (!slot_free()) {
		/* it waits its turn in the database; E's stream's in memory too, so that its
		 * upstream's bytes are kept once it begins, whoever takes it first */
		if (p->in.run == 2 && p->job_rc == RC_OK) {
			run_load(p->out.run_id, p->pool, &p->job, 1);
			p->pool = NULL; /* run_load's, whatever it made of it */
		}
		queue_moves();
		return;
	}
	if (p->out.run_id == max_seen + 1)
		max_seen = p->out.run_id; /* what the next poll need not look at again */
	/* run 2: a post of E's stream, whose upstream bytes are passed on */
	if (p->job_rc == RC_OK) {
		r = run_load(p->out.run_id, p->pool, &p->job, p->in.run == 2);
		p->pool = NULL; /* the run's now */
		if (r)
			run_go(r);
	} else {
		/* loaded here then, or by a later poll */
		run_start(p->out.run_id, p->in.run == 2);
	}
}

static void
on_written_item(struct witem *it)
{
	switch (it->kind) {
	case W_POST:
		if (it->post->origin)
			hub_posted(it); /* message_sent before the run's first event */
		post_written(it);
		break;
	case W_END:
		end_written(it->run);
		break;
	}
	witem_free(it);
}

/* ---- the control socket ---- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char slab[4096];

	(void)h;
	(void)suggested;
	*b = uv_buf_init(slab, sizeof(slab));
}

static void
conn_line(struct conn *c, char *line)
{
	int64_t id;

	if (strcmp(line, "wake") == 0) {
		uv_idle_start(&poll_soon, on_poll_soon);
	} else if (strncmp(line, "wait ", 5) == 0 && parse_uint(line + 5, INT64_MAX, &id) == 0) {
		char err[ERR_LEN];
		int status;

		if (c->waiting)
			return;
		if (!*run_slot(id)) {
			if (store_run_status(pushd_store, id, &status, err) != RC_OK) {
				conn_say(c, "done %lld 2\n", (long long)id);
				return;
			}
			if (status != RUN_RUNNING) {
				conn_say(c, "done %lld %d\n", (long long)id, status);
				return;
			}
			uv_idle_start(&poll_soon, on_poll_soon);
		}
		c->waiting = id;
		c->next_waiting = waiting;
		waiting = c;
	} else if (strncmp(line, "stop ", 5) == 0 && parse_uint(line + 5, INT64_MAX, &id) == 0) {
		int status = runs_stop_id(id);

		if (c->waiting || !*run_slot(id)) {
			conn_say(c, "stopped %lld %d\n", (long long)id, status);
			return;
		}
		/* the caller reads the stopped reply next: answer once its end is written */
		c->waiting = id;
		c->stop_status = status;
		c->next_waiting = waiting;
		waiting = c;
	} else if (strncmp(line, "content ", 8) == 0) {
		/* a worker reads an unfinished reply: what is written of it so far */
		struct job_run *r = runs_find_msg(line + 8);

		if (r)
			conn_content(c, r);
		else
			conn_say(c, "none\n");
	} else if (strcmp(line, "stats") == 0) {
		char hub[256];
		hub_stats(hub, sizeof(hub));
		conn_say(c, "runs %d upstream %d %s active %d backlog %d\n", nruns, llm_active(), hub,
			 nactive, backlog);
	} else {
		conn_close(c);
	}
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
	uv_pipe_init(pushd_loop, &c->pipe, 0);
	c->pipe.data = c;
	nconns++;
	if (uv_accept(srv, (uv_stream_t *)&c->pipe) != 0 || nconns > CONN_MAX) {
		conn_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* ---- start and stop ---- */

static void
close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, h->type == UV_NAMED_PIPE && h->data ? conn_closed : NULL);
}

static void
on_signal(uv_signal_t *s, int sig)
{
	size_t i;

	(void)s;
	(void)sig;
	if (stopping)
		return;
	stopping = 1;
	logf_("stopping; %d runs stay in the database for the next start", nruns);
	writer_stop(); /* the posts and ends queued are written and handed back */
	/* the runs stay "running" in the database: the next start makes them anew */
	for (i = 0; i < sizeof(runs_by_id) / sizeof(runs_by_id[0]); i++) {
		while (runs_by_id[i]) {
			struct job_run *r = runs_by_id[i];
			llm_cancel(r->call);
			run_free(r);
		}
	}
	llm_shutdown();
	hub_close_all();
	uv_walk(pushd_loop, close_walk, NULL);
}

static const char pushd_usage[] =
	"usage: aichatd-push [-c CONFIG] [--help | --version]\n"
	"Runs the push daemon: WebSockets, SSE streams and AI runs, on the sockets in\n"
	"$AICHATD_DATA_DIR/run/. Settings: the file named by -c or AICHATD_CONFIG (it must\n"
	"exist when named), then the AICHATD_<KEY> environment variables.\n";

int
main(int argc, char **argv)
{
	const char *conf = getenv("AICHATD_CONFIG");
	char err[ERR_LEN], path[4096];
	struct rlimit rl;
	int rc, i = 1;

	if (conf && !*conf)
		conf = NULL; /* set but empty: none named */
	if (argc > 2 && strcmp(argv[1], "-c") == 0) {
		conf = argv[2];
		i = 3;
	}
	/* before the settings: these touch no file at all */
	if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
		fputs(pushd_usage, stdout);
		return 0;
	}
	if (i < argc && strcmp(argv[i], "--version") == 0) {
		printf("aichatd-push %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (i < argc) {
		fputs(pushd_usage, stderr);
		return 2;
	}
	if (config_load(&pushd_cfg, conf, err) != RC_OK) {
		logf_("%s", err);
		return 1;
	}
	/* one identity with the pool: a daemon that checks tokens differently from the pool
	 * beside it would let WebSocket clients in on other terms (docs/ARCHITECTURE.md) */
	if (config_identity_claim(&pushd_cfg, "push", "pool", err) != RC_OK) {
		logf_("%s; not starting", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* every descriptor the hard limit allows: the connection caps are made from it */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want == RLIM_INFINITY ? (rlim_t)1 << 20 : want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			logf_("cannot raise the descriptor limit: %s", strerror(errno));
	}
	/* files only for their owner, whichever program creates them */
	if (config_private_files(&pushd_cfg, err) != RC_OK) {
		logf_("%s", err);
		return 1;
	}
	pushd_loop = uv_default_loop();
	started_ms = time_now_ms();
	pushd_store = store_open(pushd_cfg.db_path, err);
	if (!pushd_store || store_migrate(pushd_store, err) != RC_OK) {
		logf_("%s", err);
		return 1;
	}
	json_pool_install(); /* jansson's values from a scratch pool where one is named */
	if (llm_init(pushd_loop, err) != RC_OK) {
		logf_("%s", err);
		return 1;
	}
	/* the post socket first: the control socket's presence says the daemon is ready */
	if (writer_start(pushd_loop, &pushd_cfg, on_written_item, err) != RC_OK) {
		logf_("%s", err);
		return 1;
	}
	push_socket_path(&pushd_cfg, path, sizeof(path));
	unlink(path);
	uv_pipe_init(pushd_loop, &server, 0);
	if ((rc = uv_pipe_bind(&server, path)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&server, 1024, on_connection)) != 0) {
		logf_("cannot listen on %s: %s", path, uv_strerror(rc));
		return 1;
	}
	chmod(path, 0600); /* the workers only, which run as this user */
	if (hub_listen(pushd_cfg.push_http_socket, err) != RC_OK) {
		logf_("%s", err);
		return 1;
	}
	uv_timer_init(pushd_loop, &poll_timer);
	uv_timer_start(&poll_timer, on_poll_timer, POLL_MS, POLL_MS);
	uv_idle_init(pushd_loop, &poll_soon);
	uv_signal_init(pushd_loop, &sigterm);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_init(pushd_loop, &sigint);
	uv_signal_start(&sigint, on_signal, SIGINT);
	logf_("listening on %s", path);
	/* whatever a previous daemon left running is taken again now */
	poll_runs();
	uv_run(pushd_loop, UV_RUN_DEFAULT);
	unlink(path);
	config_identity_withdraw(&pushd_cfg, "push");
	uv_loop_close(pushd_loop);
	store_close(pushd_store);
	config_free(&pushd_cfg);
	return 0;
}
