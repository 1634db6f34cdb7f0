/*
 * The push daemon's writer: one thread with one database connection that makes every
 * write of the hot paths, so the database has a single writer under load and its page
 * cache is never emptied by another writer's commit.
 *
 * The loop thread hands it items (writer_put); the writer takes all that are queued,
 * writes them in as few transactions as it can (the workers' posts in one, each in a
 * savepoint; the replies' parts and ends in another), loads the job of every run a post
 * started, and hands the items back through a uv_async, on whose callback the loop
 * answers the workers, starts the runs and frees what ended. While the writer works on a
 * batch, the loop goes on streaming, and the next batch queues up behind it.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <errno.h>
#include <sys/socket.h>
#include <uv.h>
#include <jansson.h>

#include "rc.h"
#include "pool.h"
#include "store.h"
#include "llm.h"
#include "push.h"
#include "req.h"
#include "pushd.h"

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond; /* on CLOCK_MONOTONIC, set up by writer_start() */
static struct witem *queue, **queue_tail = &queue;   /* loop -> writer */
static struct witem *done, **done_tail = &done;      /* writer -> loop */
static int stop, running, posts_queued;
/* Without a post queued, a batch starts no sooner than this after the last one. */
#define LINGER_NS (5 * 1000000)
static int64_t last_commit;
static uv_async_t done_async;
static void (*on_done)(struct witem *it);
static struct store *wst;
static const char *default_provider;

static void
logf_(const char *what, const char *err)
{
	fprintf(stderr, "aichatd-push: writer: %s: %s\n", what, err);
}

/* A run's end, with the reply's metadata: which provider and model made it, how long it
 * took. */
static int
write_end(struct witem *it, char *err)
{
	const struct job_run *r = it->run;
	struct run_end e = r->end;
	json_t *meta = json_pack("{s:s,s:s,s:s,s:I}", "provider", r->job.cfg.provider, "model",
				 r->job.cfg.model_name, "config_id", r->job.cfg.config_id,
				 "duration_ms", (json_int_t)e.duration_ms);
	char *text = meta ? req_json_text(meta, JSON_COMPACT) : NULL; /* malloc'd */
	int rc;

	json_decref(meta);
	e.metadata = text;
	rc = store_run_finish(wst, &e, err);
	free(text);
	return rc;
}

/* The replies' parts and ends: one transaction, or one each when the batch fails. */
static void
write_runs(struct witem *list)
{
	char err[ERR_LEN];
	struct witem *it;
	int ok, pass;

	for (it = list; it && it->kind == W_POST; it = it->next)
		;
	if (!it)
		return;
	for (pass = 0; pass < 2; pass++) {
		ok = pass == 1 || store_begin(wst, err) == RC_OK;
		for (it = list; ok && it; it = it->next) {
			int rc = RC_OK;
			if (it->kind == W_PROGRESS) {
				rc = store_run_progress(wst, it->ai_msg, it->seq, it->text, it->len, err);
			} else if (it->kind == W_END) {
				rc = write_end(it, err);
				if (rc == RC_NOTFOUND)
					rc = RC_OK; /* ended meanwhile (a stop from elsewhere) */
				if (rc == RC_OK && it->log)
					store_log(wst, "error", it->log);
			}
			if (rc != RC_OK && pass == 1)
				logf_("cannot save a reply", err);
			else if (rc != RC_OK)
				ok = 0;
		}
		if (pass == 1)
			break;
		if (ok && store_commit(wst, err) == RC_OK)
			break;
		store_rollback(wst);
		/* rolled back: once more, each on its own, so that one cannot sink the rest */
		logf_("a batch of reply writes failed; writing them one by one", err);
	}
}

/* Frame a post's answer and send what the socket takes now (an answer is usually a few
 * hundred bytes, and a link carries one post at a time); the loop sends any rest. The loop
 * keeps the socket open while the item is out here. */
static void
answer(struct witem *it)
{
	struct buf *a = &it->answer;

	if (push_posted_encode(it->op.rc, it->err, &it->in, &it->out, a) != RC_OK || it->fd < 0)
		return;
	while (it->answered < a->len) {
		ssize_t n = send(it->fd, a->s + it->answered, a->len - it->answered,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			it->answered += (size_t)n;
		else if (n < 0 && errno == EINTR)
			continue;
		else
			break;
	}
}

static void
write_batch(struct witem *list)
{
	struct store_post_op *ops = NULL, **tail = &ops;
	struct witem *it;
	char err[ERR_LEN];

	for (it = list; it; it = it->next) {
		if (it->kind != W_POST)
			continue;
		memset(&it->op, 0, sizeof(it->op));
		it->op.in = &it->in;
		it->op.p = it->pool;
		it->op.out = &it->out;
		it->op.err = it->err;
		*tail = &it->op;
		tail = &it->op.next;
	}
	if (ops)
		store_post_batch(wst, ops);
	/* the answers are framed and sent from here, off the loop's thread */
	for (it = list; it; it = it->next)
		if (it->kind == W_POST)
			answer(it);
	write_runs(list);
	/* the job of each run a post started, read on this connection, whose cache is warm */
	for (it = list; it; it = it->next) {
		if (it->kind != W_POST || it->op.rc != RC_OK || !it->in.run)
			continue;
		it->job_rc = store_post_job(wst, it->pool, &it->in, &it->out, default_provider,
					    &it->job, err);
		if (it->job_rc == RC_OK && llm_wants_history(it->job.cfg.provider))
			it->job_rc = store_run_history(wst, it->pool, &it->job, HISTORY_WINDOW, err);
	}
}

/* The writer's clock for lingering: CLOCK_MONOTONIC, which the condition variable is set
 * to wait on. */
static int64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec
abs_time(int64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};

	return ts;
}

static void *
writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		struct witem *list;

		while (!queue && !stop)
			pthread_cond_wait(&cond, &lock);
		if (!queue)
			break;
		/* reply parts and ends may wait a little to share a commit (each commit empties
		 * every reader's page cache); posts may not, a worker thread waits on each */
		while (!stop && !posts_queued && mono_ns() < last_commit + LINGER_NS) {
			struct timespec until = abs_time(last_commit + LINGER_NS);
			pthread_cond_timedwait(&cond, &lock, &until);
		}
		list = queue;
		queue = NULL;
		queue_tail = &queue;
		posts_queued = 0;
		pthread_mutex_unlock(&lock);

		write_batch(list);
		last_commit = mono_ns();

		pthread_mutex_lock(&lock);
		*done_tail = list;
		while (*done_tail)
			done_tail = &(*done_tail)->next;
		uv_async_send(&done_async);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* On the loop: hand back what the writer finished. */
static void
deliver(void)
{
	struct witem *list, *next;

	pthread_mutex_lock(&lock);
	list = done;
	done = NULL;
	done_tail = &done;
	pthread_mutex_unlock(&lock);
	for (; list; list = next) {
		next = list->next;
		list->next = NULL;
		on_done(list);
	}
}

static void
on_async(uv_async_t *h)
{
	(void)h;
	deliver();
}

int
writer_start(uv_loop_t *loop, const char *db_path, const char *provider,
	     void (*cb)(struct witem *it), char *err)
{
	if (!(wst = store_open(db_path, err)))
		return RC_ERR;
	default_provider = provider;
	on_done = cb;
	uv_async_init(loop, &done_async, on_async);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (pthread_create(&thread, NULL, writer_main, NULL) != 0) {
		snprintf(err, ERR_LEN, "cannot start the writer thread");
		store_close(wst);
		wst = NULL;
		return RC_ERR;
	}
	running = 1;
	return RC_OK;
}

void
writer_put(struct witem *it)
{
	it->next = NULL;
	pthread_mutex_lock(&lock);
	*queue_tail = it;
	queue_tail = &it->next;
	if (it->kind == W_POST)
		posts_queued++;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}

void
writer_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	stop = 1;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL); /* it writes what was queued before it stops */
	running = 0;
	deliver();
	store_close(wst);
	wst = NULL;
}

struct witem *
witem_new(enum witem_kind kind, size_t text_len)
{
	struct witem *it = calloc(1, sizeof(*it) + text_len + 1);

	if (!it)
		return NULL;
	it->kind = kind;
	if (kind == W_POST && !(it->pool = pool_create())) {
		free(it);
		return NULL;
	}
	buf_init(&it->answer, PUSH_POST_MAX + PUSH_LINE_MAX);
	return it;
}

void
witem_free(struct witem *it)
{
	if (!it)
		return;
	if (it->pool)
		pool_destroy(it->pool);
	free(it->log);
	buf_free(&it->answer);
	free(it);
}
