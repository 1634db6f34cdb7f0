/*
 * The runs (see runs.h): the tables of the runs in memory, the queue, and each run's life
 * from its load to its end.
 *
 * Runs are durable: the database is the queue. At start every run still marked running is
 * taken again (its reply is made anew), unless it is older than the longest a reply may
 * take, in which case it is failed, so no run stays running forever.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <uv.h>

#include "rc.h"
#include "buf.h"
#include "pool.h"
#include "util.h"
#include "hash.h"
#include "config.h"
#include "store.h"
#include "llm.h"
#include "log.h"
#include "writer.h"
#include "runs.h"
#include "stats.h"

#define POLL_BATCH 256
#define RUN_BUCKETS 1024

static uv_loop_t *loop;
static const struct config *cfg;
static struct store *store;
static const struct runs_events *events;
static uv_idle_t poll_soon;
static struct job_run *runs_by_id[RUN_BUCKETS];
static struct job_run *runs_by_msg[RUN_BUCKETS];
static int nruns;
/* Every run with an id up to max_seen has begun or ended: the queue is the runs still
 * open (status running) past it, taken oldest first as slots free. nactive counts the runs
 * that have begun and not yet been freed (their end written); backlog says runs may wait
 * in the queue, so that a new one must take its turn behind them. */
static int64_t max_seen;
static int nactive, backlog;
static int64_t started_ms; /* when this daemon started (time_now_ms) */
static uv_timer_t lease_timer; /* renews this daemon's leases, takes orphaned runs */
static int load_failed;    /* the last run_load() could not read its run */
static int stopping;

static struct job_run **
run_slot(int64_t id)
{
	struct job_run **p = &runs_by_id[(uint64_t)id % RUN_BUCKETS];

	while (*p && (*p)->id != id)
		p = &(*p)->next;
	return p;
}

static struct job_run **
msg_bucket(const char *msg_id)
{
	return &runs_by_msg[hash_str(msg_id) % RUN_BUCKETS];
}

struct job_run *
runs_find(int64_t id)
{
	return *run_slot(id);
}

struct job_run *
runs_find_msg(const char *msg_id)
{
	struct job_run *r = *msg_bucket(msg_id);

	while (r && strcmp(r->job.ai_msg_id, msg_id) != 0)
		r = r->next_msg;
	return r;
}

static void on_poll_soon(uv_idle_t *h);

void
runs_wake(void)
{
	if (!stopping)
		uv_idle_start(&poll_soon, on_poll_soon);
}

static void
run_free(struct job_run *r)
{
	struct job_run **p = run_slot(r->id);

	if (*p == r)
		*p = r->next;
	if (r->job.ai_msg_id) {
		struct job_run **m = msg_bucket(r->job.ai_msg_id);
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
		if (backlog)
			runs_wake(); /* the next in the queue */
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
	events->chunk(r, s, n);
}

void
runs_end_written(struct job_run *r)
{
	stats_run_ended(r);
	events->ended(r);
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
	/* the content as shown: cut back to whole characters (a piece may end inside one) */
	e->len = utf8_fit(r->content.s, r->content.len, r->content.len);
	if (!utf8_valid(r->content.s, e->len)) {
		code = RUN_ERR_AI;
		e->status = RUN_FAILED;
		error = "AI 服务调用失败: the reply is not valid UTF-8";
		e->len = 0;
	}
	r->content.len = e->len; /* what subscribers are told is what is saved */
	r->content.s[e->len] = '\0';
	e->content = r->content.s;
	e->error_code = e->status == RUN_FAILED ? code : 0;
	e->error = e->status == RUN_FAILED ? pool_strdup(r->pool, error ? error : "AI 服务调用失败") : NULL;
	e->duration_ms = (int64_t)(uv_now(loop) - r->started);
	e->travel_plan = pool_strdup(r->pool, travel_plan);
	/* the metadata (provider, model) is made by the writer; the subscribers are told once
	 * it is written (runs_end_written), and the ones that come meanwhile wait for it too */
	r->ended = 1;
	/* written by the writer, with whatever else ended meanwhile */
	if (!(it = witem_new(W_END))) {
		log_line("run %lld: out of memory for its end", (long long)r->id);
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
		utf8_cut(it->log, RUNS_LOG_MAX);
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
	/* only workflow's streamed runs are passed on raw; past its cap, only late subscribers
	 * miss the early bytes */
	if (!r->raw_wanted)
		return;
	buf_add(&r->raw, s, n);
	events->raw(r, s, n);
}

static const struct llm_cb run_cb = {run_on_chunk, run_on_raw, run_on_done};
/* the same, for the runs whose upstream bytes nobody streams (all but n8n's) */
static const struct llm_cb run_cb_noraw = {run_on_chunk, NULL, run_on_done};

/* How long a run stays this daemon's without a renewal (store.h, "Owners and leases"). */
static int64_t
lease_ms(void)
{
	return (int64_t)cfg->lease_s * 1000;
}

/* Load run id into memory, not begun yet. With pool, its job was loaded by the writer into
 * *job and pool, which the run takes over; without, it is loaded here. streamed:
 * workflow's stream passes its upstream's bytes on. NULL when it is already in memory, has
 * ended, or cannot be loaded (then the next poll tries again). */
static struct job_run *
run_load(int64_t id, struct pool *pool, const struct run_job *job, int streamed)
{
	struct job_run *r, **m;
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
	r->started = uv_now(loop);
	if (job) {
		r->job = *job;
	} else {
		/* a run found in the store: made here only once it is this daemon's */
		rc = store_run_claim(store, id, cfg->node_id, lease_ms(), err);
		if (rc == RC_OK)
			rc = store_run_job(store, r->pool, id, cfg->provider, &r->job, err);
		if (rc == RC_OK && llm_wants_history(r->job.cfg.provider))
			rc = store_run_history(store, r->pool, &r->job, HISTORY_WINDOW, err);
	}
	r->next = NULL;
	*run_slot(id) = r;
	nruns++;
	if (rc == RC_NOTFOUND || rc == RC_CONFLICT) {
		/* ended meanwhile, or another daemon's (which makes it; the lease scan takes it
		 * should that daemon stop renewing) */
		run_free(r);
		return NULL;
	}
	if (rc != RC_OK) {
		log_line("run %lld: cannot load: %s", (long long)id, err);
		load_failed = 1;
		run_free(r);
		if (id <= max_seen)
			max_seen = id - 1; /* the next poll tries it again */
		backlog = 1;
		return NULL;
	}
	/* an earlier attempt (before a restart) saved parts of another reply: start clean */
	if (r->job.restarted)
		store_run_reset(store, r->job.ai_msg, err);
	m = msg_bucket(r->job.ai_msg_id);
	r->next_msg = *m;
	*m = r;
	return r;
}

/* Begin a loaded run: it takes a slot, and its provider starts. */
static void
run_go(struct job_run *r)
{
	char err[ERR_LEN];
	int64_t age_limit = ((int64_t)cfg->reply_timeout_s + cfg->connect_timeout_s + 30) * 1000;

	r->begun = 1;
	nactive++;
	r->started = uv_now(loop); /* its duration counts from here, not from its wait */
	if (r->job.created_at < started_ms && time_now_ms() - r->job.created_at > age_limit) {
		/* left running by a daemon that died long ago: no reply could still be on time
		 * (a run this daemon saw queued may wait longer: it is made all the same) */
		run_end(r, RUN_ERR_TIMEOUT, "AI 回复超时: interrupted by a restart", NULL);
		return;
	}
	r->raw_wanted = r->raw_wanted || llm_provider_find(r->job.cfg.provider)->streams_raw;
	r->call = llm_start(loop, cfg, &r->job, r->raw_wanted ? &run_cb : &run_cb_noraw, r, err);
	if (!r->call)
		run_end(r, RUN_ERR_AI, err, NULL);
}

/* A slot for a run that has just come, ahead of none: no queue, and room. */
static int
slot_free(void)
{
	return !backlog && nactive < cfg->max_runs;
}

/* Let the queue move: a poll at the loop's next turn, if a slot is free. */
static void
queue_moves(void)
{
	backlog = 1;
	if (nactive < cfg->max_runs)
		runs_wake();
}

/* A run someone is waiting on (a WebSocket send, workflow's stream, a stop): in memory
 * now, so that its events and its end reach them; begun now if it is its turn, else when
 * the queue reaches it. */
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
		if (store_run_status(store, id, &status, err) != RC_OK)
			return -1;
		if (status != RUN_RUNNING)
			return status;
		runs_start(id); /* queued: load it, to end it as stopped */
		r = runs_find(id);
		if (!r) {
			if (store_run_status(store, id, &status, err) != RC_OK)
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
void
runs_poll(void)
{
	struct pool *p;
	int64_t *ids, retry = 0;
	char err[ERR_LEN];
	int n = 0, i, limit, full = 0;

	if (nactive >= cfg->max_runs) {
		backlog = 1; /* an end frees a slot and polls again */
		return;
	}
	if (!(p = pool_create()))
		return;
	do {
		limit = cfg->max_runs - nactive;
		if (limit > POLL_BATCH)
			limit = POLL_BATCH;
		if (limit < 16)
			limit = 16; /* some listed may be running already */
		if (store_runs_open(store, p, max_seen, limit, &ids, &n, err) != RC_OK) {
			log_line("cannot list runs: %s", err);
			full = 1;
			break;
		}
		for (i = 0; i < n && !stopping; i++) {
			struct job_run *r = runs_find(ids[i]);

			if (!r || (!r->begun && !r->ended)) {
				if (nactive >= cfg->max_runs) {
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

/* Every third of the lease: renew the leases of the runs this daemon makes, then take
 * the runs whose owner stopped renewing (its host died), as many as slots are free, and
 * make them again from the start. */
static void
on_lease_timer(uv_timer_t *h)
{
	struct pool *p;
	int64_t *ids;
	char err[ERR_LEN];
	int n = 0, i, room;

	(void)h;
	if (stopping)
		return;
	if (store_runs_renew(store, cfg->node_id, lease_ms(), NULL, err) != RC_OK)
		log_line("cannot renew the runs' leases: %s", err);
	room = cfg->max_runs - nactive;
	if (room <= 0 || !(p = pool_create()))
		return;
	if (room > POLL_BATCH)
		room = POLL_BATCH;
	if (store_runs_orphaned(store, p, cfg->node_id, lease_ms(), room, &ids, &n, err) != RC_OK)
		log_line("cannot look for orphaned runs: %s", err);
	for (i = 0; i < n && !stopping; i++) {
		struct job_run *r = run_load(ids[i], NULL, NULL, 0);

		if (r) {
			log_line("run %lld: taken over from a daemon that stopped renewing its lease",
				 (long long)ids[i]);
			run_go(r);
		}
	}
	pool_destroy(p);
}

static void
on_poll_soon(uv_idle_t *h)
{
	uv_idle_stop(h);
	runs_poll();
}

/* A post that started a run, written and answered: start the run with the job the writer
 * made. */
void
runs_post_written(struct witem *it)
{
	struct wpost *p = it->post;
	struct job_run *r;

	if (p->op.rc != RC_OK || !p->in.run || stopping)
		return;
	if (!slot_free()) {
		/* it waits its turn in the database; workflow's stream's in memory too, so that
		 * its upstream's bytes are kept once it begins, whoever takes it first */
		if (p->in.run == 2 && p->job_rc == RC_OK) {
			run_load(p->out.run_id, p->pool, &p->job, 1);
			p->pool = NULL; /* run_load's, whatever it made of it */
		}
		queue_moves();
		return;
	}
	if (p->out.run_id == max_seen + 1)
		max_seen = p->out.run_id; /* what the next poll need not look at again */
	/* run 2: a post of workflow's stream, whose upstream bytes are passed on */
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

void
runs_counts(int *runs, int *active, int *queued)
{
	*runs = nruns;
	*active = nactive;
	*queued = backlog;
}

void
runs_init(uv_loop_t *l, const struct config *c, struct store *st, int64_t started,
	  const struct runs_events *ev)
{
	loop = l;
	cfg = c;
	store = st;
	started_ms = started;
	events = ev;
	uv_idle_init(loop, &poll_soon);
	uv_timer_init(loop, &lease_timer);
	uv_timer_start(&lease_timer, on_lease_timer, (uint64_t)lease_ms() / 3,
		       (uint64_t)lease_ms() / 3);
	uv_unref((uv_handle_t *)&lease_timer);
}

int
runs_shutdown(void)
{
	stopping = 1;
	uv_idle_stop(&poll_soon);
	uv_timer_stop(&lease_timer);
	return nruns;
}

void
runs_free_all(void)
{
	size_t i;

	for (i = 0; i < RUN_BUCKETS; i++) {
		while (runs_by_id[i]) {
			struct job_run *r = runs_by_id[i];
			llm_cancel(r->call);
			run_free(r);
		}
	}
}
