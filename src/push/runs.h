/*
 * The runs: the replies being made. The database is the queue (a run is open while its
 * status is running); this file takes runs from it as max_runs slots free, makes each
 * reply through a provider (llm.h), keeps its content in memory as it grows (nothing is
 * saved until the end), and has the writer (writer.h) save each end.
 *
 * What happens to a run is told through the events the daemon's main registers
 * (runs_init): the connections' fan-out and the control socket's waiters hear of it there,
 * so this file calls neither.
 */
#ifndef AICHATD_RUNS_H
#define AICHATD_RUNS_H

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "store.h"
#include "llm.h"

#define HISTORY_WINDOW 20 /* earlier messages sent to the model as context */
#define RUNS_LOG_MAX 1200 /* bytes of a run's line in the operation log */

struct witem;

/* A reply being made. */
struct job_run {
	struct job_run *next;     /* in the by-id table */
	struct job_run *next_msg; /* in the by-message table */
	int64_t id;
	struct pool *pool;        /* the job's strings */
	struct run_job job;
	struct buf content;       /* the reply so far */
	struct buf raw;           /* the upstream's bytes as received (workflow's stream) */
	char raw_type[128];       /* the upstream's content type */
	int raw_wanted;           /* the upstream's bytes are kept and streamed (n8n, and the
	                           * runs of workflow's stream) */
	size_t sent;              /* bytes of content fanned out (whole UTF-8 characters) */
	uint64_t started;         /* uv_now() */
	struct llm_call *call;
	int ended;                /* its end is decided and waits to be written; it is
	                           * announced (runs_events.ended) once written */
	struct run_end end;       /* that end (strings in pool or content) */
	char *error_detail;       /* a failure as the operation log tells it (in pool), or NULL */
	int begun;                /* its reply is being made: it holds one of max_runs slots */
};

/* What a run does, told on the loop's thread. The run is valid during the call. */
struct runs_events {
	/* n bytes s were appended to r->content */
	void (*chunk)(struct job_run *r, const char *s, size_t n);
	/* n bytes of the upstream's reply, already appended to r->raw (when it had room);
	 * only for the runs whose bytes are wanted raw */
	void (*raw)(struct job_run *r, const char *s, size_t n);
	/* r's end (r->end) is committed: what it announces is durable; r is freed after */
	void (*ended)(struct job_run *r);
};

/* Set up the runs of this daemon: its loop, its settings and store (kept, not copied: they
 * outlive the loop), and its events (kept). started_ms: when the daemon started
 * (time_now_ms), to tell runs left by an earlier daemon. */
void runs_init(uv_loop_t *loop, const struct config *cfg, struct store *st, int64_t started_ms,
	       const struct runs_events *ev);
/* Take the runs waiting in the database while slots are free (at start, and on every
 * timer tick); runs_wake() does it at the loop's next turn. */
void runs_poll(void);
void runs_wake(void);

struct job_run *runs_find(int64_t id);
/* The run writing the reply message msg_id (its string id), or NULL. */
struct job_run *runs_find_msg(const char *msg_id);
/* Take a run from the database now (no-op when it is running or has ended). */
void runs_start(int64_t id);
/* The same, for workflow's stream: the upstream's bytes are kept and passed on (raw). */
void runs_start_streamed(int64_t id);
/* End a run as stopped: the upstream transfer is closed, the partial reply is kept. */
void runs_stop(struct job_run *r);
/* Stop run id, running or still queued. Returns its final status (RUN_STOPPED, or
 * RUN_DONE or RUN_FAILED when it had ended), or -1 when there is no such run. */
int runs_stop_id(int64_t id);
/* 1 when run id is known not to have begun: loaded and waiting for a slot, or queued in the
 * database behind the runs this daemon has taken. */
int runs_queued(int64_t id);

/* What the writer hands back (writer.h): a post, written and answered (a run it started
 * begins, or waits its turn), and an end, written (announced, then the run is freed). */
void runs_post_written(struct witem *it);
void runs_end_written(struct job_run *r);

/* The counts the control socket's stats show: runs in memory, runs begun (holding a
 * slot), and whether runs wait in the queue. */
void runs_counts(int *runs, int *active, int *backlog);
/* Shutting down: take no more runs (what the writer still hands back is announced, not
 * begun). Returns how many runs are in memory. */
int runs_shutdown(void);
/* Then free every run in memory: the ones running stay so in the database, and the next
 * start makes them anew. */
void runs_free_all(void);

#endif
