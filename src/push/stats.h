/*
 * stats: the push daemon's figures for the pool's GET /metrics (docs/METRICS.md): counters
 * kept as things happen (runs ended, by provider and outcome, their durations and output;
 * the writer's batches, counted on its thread) and, rendered with them, the gauges its
 * caller reads from the parts when asked (control.c's "metrics" command). Every family is
 * named aichatd_push_*: the pool passes on only those.
 */
#ifndef AICHATD_STATS_H
#define AICHATD_STATS_H

#include <stddef.h>

struct buf;
struct job_run;

/* The moment's gauges, read by the caller from the hub, the runs and the providers. */
struct stats_gauges {
	long ws, sse, stream, other; /* connections held, by kind (other: handovers, syncs) */
	long dropped, refused;       /* counters the hub keeps */
	int runs, active, backlog;   /* runs in memory, begun, and runs waiting in the database */
	int max_runs;
	int upstream;                /* upstream transfers open */
	size_t ws_pending;           /* bytes held by unfinished WebSocket messages */
};

/* A run's end is written (r->end): counted by provider and outcome (the loop's thread). */
void stats_run_ended(const struct job_run *r);
/* A WebSocket send stored (the loop's thread). */
void stats_ws_send(void);
/* The writer wrote a batch of n items (its thread). */
void stats_batch(size_t n);
/* Everything, in Prometheus' text format, appended to out. */
void stats_render(struct buf *out, const struct stats_gauges *g);

#endif
