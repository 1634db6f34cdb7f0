/*
 * metrics: the pool's counters for GET /metrics (docs/METRICS.md), in one region of memory
 * the master maps (MAP_SHARED, anonymous) before it forks its workers, so that every
 * worker adds to the same C11 atomics and the figures add up across them and outlive a
 * worker's restart. Requests by route and status, their latencies, sends, SQLite busy
 * waits; the workers register themselves at fork (their resident memory is shown). The
 * push daemon's figures are asked of it when /metrics is read (push-client.h).
 */
#ifndef AICHATD_METRICS_H
#define AICHATD_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct route;
struct buf;
struct config;

/* The master, before its workers are forked: map the region, count the store's busy waits
 * in it, and have every process forked after register as a worker. table: the router's
 * router_table() (passed in, so that this file does not call the router, which calls it).
 * RC_OK, or RC_ERR with err. */
int metrics_init(const struct route *(*table)(size_t *n), char *err);
/* One request answered: its route row (NULL: none matched), status and time in the pool.
 * A few atomic adds; nothing without metrics_init() (other subcommands, the unit tests). */
void metrics_request(const struct route *rt, int status, int64_t ns);
/* A send stored (a message with a reply to make), by dialect (enum dialect). */
void metrics_send(int dialect);
/* The pool's figures, and the daemon's (asked of it under cfg), in the text format into
 * out. RC_OK; RC_ERR when the region is not mapped. */
int metrics_render(const struct config *cfg, struct buf *out);
/* The route's handler (api.h: metrics_get) is here too: 403 for a REMOTE_ADDR not in
 * metrics_allow, else metrics_render()'s text. */

#endif
