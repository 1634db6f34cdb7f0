/*
 * The push daemon's parts, shared between pushd.c (runs, the control socket) and hub.c
 * (the connections nginx hands over: WebSocket, SSE, E's stream). Not used by the workers.
 */
#ifndef AICHATD_PUSHD_H
#define AICHATD_PUSHD_H

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "store.h"
#include "llm.h"

#define HISTORY_WINDOW 20 /* earlier messages sent to the model as context */

/* A reply being made. */
struct job_run {
	struct job_run *next;     /* in the by-id table */
	struct job_run *next_msg; /* in the by-message table */
	int64_t id;
	struct pool *pool;        /* the job's strings */
	struct run_job job;
	struct buf content;       /* the reply so far */
	struct buf raw;           /* the upstream's bytes as received (E's stream) */
	char raw_type[128];       /* the upstream's content type */
	int raw_wanted;           /* the upstream's bytes are kept and streamed (n8n, and the
	                           * runs of E's stream) */
	size_t sent;              /* bytes of content fanned out (whole UTF-8 characters) */
	uint64_t started;         /* uv_now() */
	struct llm_call *call;
	int ended;                /* its end is decided and waits to be written; it is fanned
	                           * out (hub_done) once written */
	struct run_end end;       /* that end (strings in pool or content) */
	char *error_detail;       /* a failure as the operation log tells it (in pool), or NULL */
	int begun;                /* its reply is being made: it holds one of max_runs slots */
};

#define PUSHD_LOG_MAX 1200 /* bytes of a run's line in the operation log */

extern struct config pushd_cfg;
extern uv_loop_t *pushd_loop;
extern struct store *pushd_store;

struct job_run *runs_find(int64_t id);
/* The run writing the reply message msg_id (its string id), or NULL. */
struct job_run *runs_find_msg(const char *msg_id);
/* Take a run from the database now (no-op when it is running or has ended). */
void runs_start(int64_t id);
/* The same, for E's stream: the upstream's bytes are kept and passed on (hub_raw). */
void runs_start_streamed(int64_t id);
/* End a run as stopped: the upstream transfer is closed, the partial reply is kept. */
void runs_stop(struct job_run *r);
/* Stop run id, running or still queued. Returns its final status (RUN_STOPPED, or 1 or 2
 * when it had ended), or -1 when there is no such run. */
int runs_stop_id(int64_t id);
/* 1 when run id is known not to have begun: loaded and waiting for a slot, or queued in the
 * database behind the runs this daemon has taken. */
int runs_queued(int64_t id);

/* writer.c: the thread that makes the hot writes (see there) */
enum witem_kind { W_POST, W_END };
/* A worker's post (made by the writer from its link conn); its strings, and its run's job,
 * in pool. */
struct wpost {
	struct store_post_op op;
	void *conn;
	struct pool *pool;
	struct store_post in;
	struct store_posted out;
	char err[ERR_LEN];
	struct run_job job;
	int job_rc;
	void *origin;   /* a post from the loop (writer_post): the hub's connection to answer */
};
struct witem {
	struct witem *next;
	enum witem_kind kind;
	struct wpost *post;      /* W_POST */
	/* W_END: the run whose end (run->end) is written, and a log line (malloc'd, or NULL) */
	struct job_run *run;
	char *log;
};
/* Start the thread, with its own connection to the database and the post socket the
 * workers send their posts to; cb gets back, on the loop's thread, each end once it is
 * written and each post that started a run (with its job). */
int writer_start(uv_loop_t *loop, const struct config *cfg, void (*cb)(struct witem *it),
		 char *err);
/* Queue an item (the loop's thread only). */
void writer_put(struct witem *it);
/* Queue a post made on the loop (a WebSocket send, origin set): written with the workers'
 * next batch and handed back like theirs, whatever its outcome. RC_OK, or RC_ERR once the
 * writer has stopped (the caller keeps the item). */
int writer_post(struct witem *it);
/* Write what is queued, hand it back, and end the thread. */
void writer_stop(void);
/* An item; a W_POST gets its pool. */
struct witem *witem_new(enum witem_kind kind);
void witem_free(struct witem *it);

/* hub.c: the connections from nginx */
int hub_listen(const char *path, char *err);
/* Fan-out of a run's events to its subscribers. hub_chunk sends what r->content holds
 * past r->sent in whole UTF-8 characters (the piece s, n was just appended to it). */
void hub_chunk(struct job_run *r, const char *s, size_t n);
/* n new bytes of the upstream's reply, already appended to r->raw (when it had room) */
void hub_raw(struct job_run *r, const char *s, size_t n);
/* The end, once the writer has committed it (end_written): what it announces is durable. */
void hub_done(struct job_run *r, int status, const char *error);
/* A WebSocket's post (writer_post), back from the writer: answer its client. */
void hub_posted(struct witem *it);
/* "ws N sse N stream N dropped N" */
void hub_stats(char *out, size_t len);
void hub_close_all(void);
/* D's and E's synchronous sends held here (hub.c, "sync"): run id's end is committed, so
 * answer its waiters; and, once a second, answer those whose run ended out of sight or
 * whose time is up. */
void hub_sync_end(int64_t run_id);
void hub_sync_check(void);

#endif
