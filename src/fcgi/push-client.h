/*
 * push-client: how the FastCGI workers reach the push daemon (the protocol is
 * push-proto.h's). Each thread keeps one connection to each of the daemon's sockets.
 */
#ifndef AICHATD_PUSH_CLIENT_H
#define AICHATD_PUSH_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "push-proto.h"

struct config;

#define PUSH_POST_TIMEOUT_MS 30000

struct buf;
struct pool;
struct store_post;
struct store_posted;

/* Best effort: tell the daemon to look for new runs now. Never blocks. */
void push_wake(const struct config *cfg);
/* Post through the daemon: the store's result (RC_OK with out filled from pool p,
 * RC_NOTFOUND, RC_ERR with err). RC_UNAVAIL when the daemon could not be reached and nothing
 * was sent (the caller then posts itself); RC_ERR when the daemon went away after the post
 * was sent, as it may or may not have been stored. */
int push_post(const struct config *cfg, struct pool *p, const struct store_post *in,
	      struct store_posted *out, char *err);

/* Wait up to timeout_ms for the daemon to say the run ended. RC_OK when it did; RC_ERR
 * when the daemon could not be reached or the time ran out (check the database). */
int push_wait(const struct config *cfg, int64_t run_id, int timeout_ms);

/* Stop a run; *status is its final status (enum run_status, store.h): RUN_STOPPED, or
 * RUN_DONE or RUN_FAILED when it had already ended; -1 when there is no such run. RC_ERR
 * when the daemon could not be reached. */
int push_stop(const struct config *cfg, int64_t run_id, int *status);
/* A running reply's content so far, as the daemon holds it (whole UTF-8 characters), into
 * *out (from pool p) and *len: RC_OK; RC_NOTFOUND when the daemon runs no reply of message
 * msg_id (it ended, and the database has it whole, or it has not begun); RC_ERR when the
 * daemon could not be reached or answered wrong. */
#define PUSH_CONTENT_TIMEOUT_MS 5000
int push_content(const struct config *cfg, struct pool *p, const char *msg_id, char **out,
		 size_t *len);
/* The daemon's counters line into out. RC_OK or RC_ERR. */
int push_stats(const struct config *cfg, char *out, size_t len);
/* The daemon's figures for /metrics (Prometheus' text, its aichatd_push_* families) into
 * out, whose cap bounds them: RC_OK, or RC_ERR when the daemon could not be reached, was
 * too slow (PUSH_METRICS_TIMEOUT_MS) or said more than out holds. */
#define PUSH_METRICS_TIMEOUT_MS 2000
int push_metrics(const struct config *cfg, struct buf *out);

#endif
