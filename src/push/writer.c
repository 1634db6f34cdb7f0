/*
 * The push daemon's writer: one thread with one database connection that makes every
 * write of the hot paths, so the database has a single writer under load and its page
 * cache is never emptied by another writer's commit.
 *
 * It serves the post socket itself: each worker thread keeps a link to it and sends one
 * post at a time (push.h), and the writer polls the links, so a post never waits behind
 * the loop's streaming. Every post read in one turn goes into one transaction (in
 * savepoints only when one fails, see store_post_batch()), with the replies' ends the
 * loop handed it meanwhile (writer_put); once it commits, each worker gets its answer.
 * With no post waiting, ends are written at most every LINGER_NS, many to a transaction.
 * Then it makes the job of every run a post started and hands those, and the ends, back
 * to the loop through a uv_async: the loop starts the runs, answers the waiters and frees
 * what ended.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <pthread.h>
#include <time.h>
#include <stdint.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <fcntl.h>
#include <unistd.h>
#include <uv.h>
#include <jansson.h>

#include "rc.h"
#include "pool.h"
#include "store.h"
#include "llm.h"
#include "provider.h"
#include "config.h"
#include "buf.h"
#include "push-proto.h"
#include "jsonpool.h"
#include "util.h"
#include "log.h"
#include "oplog.h"
#include "runs.h"
#include "writer.h"
#include "stats.h"

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct witem *queue, **queue_tail = &queue;   /* loop -> writer */
static struct witem *done, **done_tail = &done;      /* writer -> loop */
static struct witem *lposts, **lposts_tail = &lposts; /* loop -> writer: posts */
static int stop, running, sleeping, lposts_woken;
/* With no post to share their commit, the loop's items (reply ends) are written at most
 * this often. */
#define LINGER_NS (5 * 1000000)
static uv_async_t done_async;
static void (*on_done)(struct witem *it);
static struct store *wst;
/* this daemon as the owner of the runs it makes, and their lease (store.h) */
static const char *node_id;
static int64_t lease;
/* a provider_name() (static): the loop sets it (writer_set_provider), this thread reads it */
static _Atomic(const char *) default_provider;

static void
logf_(const char *what, const char *err)
{
	log_line("writer: %s: %s", what, err);
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
	char *text = meta ? json_pool_text(meta, JSON_COMPACT) : NULL; /* malloc'd */
	int rc;

	json_decref(meta);
	e.metadata = text;
	e.owner = node_id; /* written only while the run is still this daemon's */
	rc = store_run_finish(wst, &e, err);
	free(text);
	return rc;
}

/* Write the ends of list (the loop's items, all W_END) inside the open transaction. 0 when
 * one failed, with err (the transaction is then to be rolled back); with alone, each in a
 * transaction of its own, and a failure is logged and skipped. */
static int
write_ends(struct witem *list, int alone, char *err)
{
	struct witem *it;
	int rc;

	for (it = list; it; it = it->next) {
		rc = write_end(it, err);
		if (rc == RC_NOTFOUND)
			rc = RC_OK; /* ended meanwhile (a stop from elsewhere) */
		if (rc == RC_OK && it->log)
			oplog(wst, "error", "%s", it->log);
		if (rc != RC_OK && alone)
			logf_("cannot save a reply", err);
		else if (rc != RC_OK)
			return 0;
	}
	return 1;
}

/* The replies' ends: one transaction, or one each when the batch fails. */
static void
write_runs(struct witem *list)
{
	char err[ERR_LEN];

	if (store_begin(wst, err) == RC_OK && write_ends(list, 0, err) &&
	    store_commit(wst, err) == RC_OK)
		return;
	store_rollback(wst);
	/* rolled back: once more, each on its own, so that one cannot sink the rest */
	logf_("a batch of reply writes failed; writing them one by one", err);
	write_ends(list, 1, err);
}

/* ---- the checkpointer ---- */

/*
 * The WAL's pages are copied into the database file by a thread of their own, with passive
 * checkpoints every CKPT_MS: they copy what the readers of the moment allow and never block
 * the writer, which before did the copying and the fsync itself (a 5 ms stall of every
 * send, several times a second). The RESTART checkpoint at 4,096 pages (src/lib/sqlite/db.c)
 * stays, to rewind the WAL; it now finds the copying done and only waits for the readers.
 */
#define CKPT_MS 100

static pthread_t ckpt_thread;
static struct store *ckpt_st;

static void *
ckpt_main(void *arg)
{
	(void)arg;
	for (;;) {
		int pages, copied;
		pthread_mutex_lock(&lock);
		if (stop) {
			pthread_mutex_unlock(&lock);
			break;
		}
		pthread_mutex_unlock(&lock);
		usleep(CKPT_MS * 1000);
		store_checkpoint(ckpt_st, &pages, &copied);
	}
	return NULL;
}

/* ---- the workers' links ---- */

#define LINKS_MAX 4096

/* A worker thread's connection to the post socket: one post at a time, each answered
 * before the next is sent. */
struct link {
	int fd;
	struct buf in;  /* what was read and not yet taken as a frame */
	struct buf out; /* what of an answer the socket had no room for */
	int dead;       /* closed once the batch it is in is answered */
};

static struct link *links[LINKS_MAX];
static int nlinks, listen_fd = -1, wake_fd = -1;
static char sock_path[4096];

static void
link_free(struct link *l)
{
	close(l->fd);
	buf_free(&l->in);
	buf_free(&l->out);
	free(l);
}

static void
link_flush(struct link *l)
{
	while (l->out.len && !l->dead) {
		ssize_t n = send(l->fd, l->out.s, l->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			buf_consume(&l->out, (size_t)n);
		else if (n < 0 && errno == EINTR)
			continue;
		else if (n < 0 && errno == EAGAIN)
			break; /* the rest when the socket has room */
		else
			l->dead = 1;
	}
}

/* Frame a post's answer and send it, or queue what the socket has no room for. */
static void
answer(struct witem *it)
{
	struct wpost *p = it->post;
	struct link *l = p->conn;

	if (!l || l->dead)
		return; /* a post from the loop is answered there (hub_posted) */
	if (push_posted_encode(p->op.rc, p->err, &p->in, &p->out, &l->out) != RC_OK) {
		l->dead = 1; /* the worker reads no answer as a failed post */
		return;
	}
	link_flush(l);
}

/* Take the whole frames read on l as posts, onto *tail. */
static void
link_frames(struct link *l, struct witem ***tail)
{
	char *nl;
	size_t line, body;

	while (!l->dead && (nl = memchr(l->in.s, '\n', l->in.len))) {
		struct witem *it;

		line = (size_t)(nl - l->in.s);
		if (push_frame_len(l->in.s, line, "post", &body) != RC_OK) {
			l->dead = 1; /* not a worker's post */
			return;
		}
		if (l->in.len - line - 1 < body)
			return; /* the rest is on its way */
		it = witem_new(W_POST);
		if (!it || push_post_decode(nl + 1, body, it->post->pool, &it->post->in) != RC_OK) {
			witem_free(it);
			l->dead = 1;
			return;
		}
		it->post->conn = l;
		**tail = it;
		*tail = &it->next;
		buf_consume(&l->in, line + 1 + body);
	}
	if (l->in.len > PUSH_LINE_MAX && !memchr(l->in.s, '\n', l->in.len))
		l->dead = 1; /* a header longer than any */
}

static void
link_read(struct link *l, struct witem ***tail)
{
	for (;;) {
		ssize_t n;

		if (buf_reserve(&l->in, 16384) != RC_OK) {
			l->dead = 1;
			return;
		}
		n = recv(l->fd, l->in.s + l->in.len, l->in.alloc - l->in.len - 1, MSG_DONTWAIT);
		if (n > 0) {
			buf_setlen(&l->in, l->in.len + (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno != EAGAIN)
			l->dead = 1;
		break;
	}
	link_frames(l, tail);
}

/*
 * Out of descriptors (EMFILE), a pending link would make poll() report the socket ready
 * forever: the thread took a whole core while the posts waited. A descriptor is kept spare
 * for this: closed, the link taken and closed at once (its worker then stores the post
 * itself), the spare opened again; and the socket is left alone for ACCEPT_PAUSE_MS.
 */
#define ACCEPT_PAUSE_MS 100
static int spare_fd = -1;
static int64_t accept_paused_until;

static void
accept_out_of_fds(void)
{
	static int64_t last_log;
	int64_t now = time_mono_ns();
	int fd;

	if (spare_fd >= 0) {
		close(spare_fd);
		spare_fd = -1;
		while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
			close(fd);
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	accept_paused_until = now + (int64_t)ACCEPT_PAUSE_MS * 1000000;
	if (now - last_log > 1000000000) {
		last_log = now;
		logf_("accept", "out of descriptors: a worker's link was refused");
	}
}

static void
accept_links(void)
{
	int fd;

	while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0 ||
	       errno == EINTR || errno == ECONNABORTED) {
		if (fd < 0)
			continue;
		struct link *l = nlinks < LINKS_MAX ? calloc(1, sizeof(*l)) : NULL;
		if (!l) {
			close(fd);
			continue;
		}
		l->fd = fd;
		buf_init(&l->in, PUSH_POST_MAX + PUSH_LINE_MAX);
		buf_init(&l->out, 0);
		links[nlinks++] = l;
	}
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
		accept_out_of_fds();
}

static void
drop_dead_links(void)
{
	int i;

	for (i = 0; i < nlinks;) {
		if (links[i]->dead) {
			link_free(links[i]);
			links[i] = links[--nlinks];
		} else {
			i++;
		}
	}
}

/* ---- batches ---- */

/* Write the posts and the loop's ends: all in one transaction (one commit: the pages both
 * touch, the tails of the messages and runs, are written once), answered as soon as it
 * commits; when that fails, the posts in a transaction of their own (with a savepoint
 * each if one fails) and the ends in another. Then the job of each run a post started,
 * read on this connection, whose cache is warm. */
static void
write_batch(struct witem *posts, struct witem *items)
{
	struct store_post_op *ops = NULL, **tail = &ops;
	struct witem *it;
	char err[ERR_LEN];
	int merged = 0;
	size_t n = 0;

	for (it = items; it; it = it->next)
		n++;
	for (it = posts; it; it = it->next) {
		struct wpost *p = it->post;

		n++;
		memset(&p->op, 0, sizeof(p->op));
		p->op.in = &p->in;
		p->op.p = p->pool;
		p->op.out = &p->out;
		p->op.err = p->err;
		p->in.run_owner = node_id; /* this daemon makes the runs it stores */
		p->in.lease_ms = lease;
		*tail = &p->op;
		tail = &p->op.next;
	}
	if (ops && items && store_begin(wst, err) == RC_OK) {
		/* the ends first: a post then counts the replies that ended before it */
		merged = write_ends(items, 0, err) && store_post_batch_in(wst, ops) == RC_OK &&
			 store_commit(wst, err) == RC_OK;
		if (!merged)
			store_rollback(wst);
	}
	stats_batch(n);
	if (ops && !merged)
		store_post_batch(wst, ops);
	for (it = posts; it; it = it->next)
		answer(it);
	if (items && !merged)
		write_runs(items);
	for (it = posts; it; it = it->next) {
		struct wpost *p = it->post;

		if (p->op.rc != RC_OK || !p->in.run)
			continue;
		p->job_rc = store_post_job(wst, p->pool, &p->in, &p->out, default_provider, &p->job,
					   err);
		if (p->job_rc == RC_OK && llm_wants_history(p->job.cfg.provider))
			p->job_rc = store_run_history(wst, p->pool, &p->job, HISTORY_WINDOW, err);
	}
}

/* Hand to the loop what it must see (runs that posts started, ends); free the rest. */
static void
hand_back(struct witem *list)
{
	struct witem *it, *next, *back = NULL, **back_tail = &back;

	for (it = list; it; it = next) {
		next = it->next;
		it->next = NULL;
		if (it->kind == W_END || (it->kind == W_POST && it->post->origin) ||
		    (it->kind == W_POST && it->post->op.rc == RC_OK && it->post->in.run)) {
			if (it->post)
				it->post->conn = NULL; /* the link may be gone by the time the loop looks */
			*back_tail = it;
			back_tail = &it->next;
		} else {
			witem_free(it);
		}
	}
	if (!back)
		return;
	pthread_mutex_lock(&lock);
	*done_tail = back;
	done_tail = back_tail;
	pthread_mutex_unlock(&lock);
	uv_async_send(&done_async);
}

static void *
writer_main(void *arg)
{
	static struct pollfd pf[2 + LINKS_MAX];
	int64_t last_items = 0;

	(void)arg;
	for (;;) {
		struct witem *posts = NULL, **ptail = &posts, *items = NULL, *it;
		int64_t now = time_mono_ns();
		int timeout = -1, n, i, quit, paused;

		/* the loop's ends go with the next posts, or at most every LINGER_NS, many to a
		 * commit (each commit empties every reader's page cache); posts never wait */
		pthread_mutex_lock(&lock);
		quit = stop;
		if (queue)
			timeout = now >= last_items + LINGER_NS
					  ? 0
					  : (int)((last_items + LINGER_NS - now + 999999) / 1000000);
		if (lposts)
			timeout = 0;
		sleeping = timeout < 0;
		pthread_mutex_unlock(&lock);
		/* out of descriptors a moment ago: the post socket waits (accept_out_of_fds) */
		paused = now < accept_paused_until;
		if (paused) {
			int left = (int)((accept_paused_until - now + 999999) / 1000000);
			if (timeout < 0 || left < timeout)
				timeout = left;
		}

		n = 0;
		pf[n++] = (struct pollfd){wake_fd, POLLIN, 0};
		pf[n++] = (struct pollfd){paused ? -1 : listen_fd, POLLIN, 0};
		for (i = 0; i < nlinks; i++)
			pf[n++] = (struct pollfd){links[i]->fd,
						  (short)(POLLIN | (links[i]->out.len ? POLLOUT : 0)), 0};
		if (!quit && poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
			logf_("poll", strerror(errno));

		pthread_mutex_lock(&lock);
		sleeping = 0;
		pthread_mutex_unlock(&lock);
		if (pf[0].revents) {
			uint64_t v;
			if (read(wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				logf_("wake", strerror(errno));
		}
		/* the links first (pf[2..] are links[0..nlinks) of before any accept) */
		for (i = 0; i < n - 2; i++) {
			if (pf[i + 2].revents & POLLOUT)
				link_flush(links[i]);
			if (pf[i + 2].revents & (POLLIN | POLLHUP | POLLERR))
				link_read(links[i], &ptail);
		}
		if (pf[1].revents)
			accept_links();

		now = time_mono_ns();
		pthread_mutex_lock(&lock);
		quit = stop;
		if (lposts) {
			/* the loop's posts (WebSocket sends) join the workers' */
			*ptail = lposts;
			ptail = lposts_tail;
			lposts = NULL;
			lposts_tail = &lposts;
		}
		lposts_woken = 0;
		if (queue && (quit || posts || now >= last_items + LINGER_NS)) {
			items = queue;
			queue = NULL;
			queue_tail = &queue;
		}
		pthread_mutex_unlock(&lock);

		if (posts || items) {
			write_batch(posts, items);
			if (items)
				last_items = time_mono_ns();
			for (it = posts; it && it->next; it = it->next)
				;
			if (it)
				it->next = items; /* one list to hand back */
			hand_back(posts ? posts : items);
		}
		drop_dead_links();
		if (quit) {
			pthread_mutex_lock(&lock);
			n = queue != NULL || lposts != NULL;
			pthread_mutex_unlock(&lock);
			if (!n)
				break;
		}
	}
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

/* The post socket: where the workers' links connect (push_post_socket_path()). */
static int
listen_posts(const char *path, char *err)
{
	struct sockaddr_un a;

	if (push_sockaddr(&a, path) != RC_OK) {
		snprintf(err, ERR_LEN, "socket path too long: %.200s", path);
		return RC_ERR;
	}
	unlink(path);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(listen_fd, 1024) != 0) {
		snprintf(err, ERR_LEN, "cannot listen on %.200s: %s", path, strerror(errno));
		utf8_cut(err, ERR_LEN - 1);
		return RC_ERR;
	}
	chmod(path, 0600); /* the workers only, which run as this user */
	snprintf(sock_path, sizeof(sock_path), "%s", path);
	return RC_OK;
}

int
writer_start(uv_loop_t *loop, const struct config *cfg, void (*cb)(struct witem *it),
	     char *err)
{
	char path[4096];

	node_id = cfg->node_id; /* restart-only: the settings loaded at start live on */
	lease = (int64_t)cfg->lease_s * 1000;
	if (!(wst = store_open(cfg->store_target, err)))
		return RC_ERR;
	store_cache_kib(wst, 4096); /* the tails of the tables it appends to */
	store_defer_touches(wst);
	writer_set_provider(cfg->provider);
	on_done = cb;
	push_post_socket_path(cfg, path, sizeof(path));
	if (listen_posts(path, err) != RC_OK)
		return RC_ERR;
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if ((wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		snprintf(err, ERR_LEN, "eventfd: %s", strerror(errno));
		return RC_ERR;
	}
	uv_async_init(loop, &done_async, on_async);
	if (!(ckpt_st = store_open(cfg->store_target, err)))
		return RC_ERR;
	if (pthread_create(&thread, NULL, writer_main, NULL) != 0 ||
	    pthread_create(&ckpt_thread, NULL, ckpt_main, NULL) != 0) {
		snprintf(err, ERR_LEN, "cannot start the writer's threads");
		return RC_ERR;
	}
	/* named, for top -H and /proc/<pid>/task/<tid>/comm */
	pthread_setname_np(thread, "aichatd-writer");
	pthread_setname_np(ckpt_thread, "aichatd-ckpt");
	running = 1;
	return RC_OK;
}

static void
wake(void)
{
	uint64_t one = 1;

	if (write(wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		logf_("wake", strerror(errno));
}

void
writer_put(struct witem *it)
{
	int asleep;

	it->next = NULL;
	pthread_mutex_lock(&lock);
	*queue_tail = it;
	queue_tail = &it->next;
	/* a writer waiting with no time limit is woken; one lingering takes it when it ends */
	asleep = sleeping;
	sleeping = 0;
	pthread_mutex_unlock(&lock);
	if (asleep)
		wake();
}

int
writer_post(struct witem *it)
{
	int wake_it;

	it->next = NULL;
	pthread_mutex_lock(&lock);
	if (stop || !running) {
		pthread_mutex_unlock(&lock);
		return RC_ERR;
	}
	*lposts_tail = it;
	lposts_tail = &it->next;
	/* posts never linger: the writer is woken once for all that come before it looks */
	wake_it = !lposts_woken;
	lposts_woken = 1;
	sleeping = 0;
	pthread_mutex_unlock(&lock);
	if (wake_it)
		wake();
	return RC_OK;
}

void
writer_stop(void)
{
	if (!running)
		return;
	pthread_mutex_lock(&lock);
	stop = 1;
	pthread_mutex_unlock(&lock);
	wake();
	pthread_join(thread, NULL); /* it writes what was queued before it stops */
	pthread_join(ckpt_thread, NULL);
	store_close(ckpt_st);
	ckpt_st = NULL;
	running = 0;
	deliver();
	while (nlinks)
		link_free(links[--nlinks]);
	close(listen_fd);
	if (spare_fd >= 0)
		close(spare_fd);
	spare_fd = -1;
	unlink(sock_path);
	close(wake_fd);
	store_close(wst);
	wst = NULL;
}

struct witem *
witem_new(enum witem_kind kind)
{
	struct witem *it = calloc(1, sizeof(*it));

	if (!it)
		return NULL;
	it->kind = kind;
	if (kind == W_POST &&
	    (!(it->post = calloc(1, sizeof(*it->post))) || !(it->post->pool = pool_create()))) {
		free(it->post);
		free(it);
		return NULL;
	}
	return it;
}

void
witem_free(struct witem *it)
{
	if (!it)
		return;
	if (it->post) {
		pool_destroy(it->post->pool); /* NULL once a run took it */
		free(it->post);
	}
	free(it->log);
	free(it);
}

void
writer_set_provider(const char *name)
{
	int p = provider_find(name);

	if (p >= 0)
		default_provider = provider_name((enum provider)p);
}
