/*
 * push: how the FastCGI workers reach the push daemon, over its Unix socket
 * ($DATA/run/push.sock), one text line per command:
 *   "wake\n"          runs were added to the database: look now (no answer)
 *   "wait <run>\n"    answer "done <run> <status>\n" once the run has ended
 *   "stop <run>\n"    end the run as stopped: "stopped <run> <final status>\n"
 *   "stats\n"         "runs N upstream N ws N sse N stream N dropped N\n"
 * The database is the queue: a lost wake-up only delays a run until the daemon's next
 * poll, and a waiter that cannot reach the daemon falls back to polling the database.
 */
#ifndef AICHATD_PUSH_H
#define AICHATD_PUSH_H

#include <stddef.h>
#include <stdint.h>

struct config;

#define PUSH_LINE_MAX 256

/* The socket path for a data dir, into out (at least 4096 bytes). */
void push_socket_path(const struct config *cfg, char *out, size_t len);
/* Best effort: tell the daemon to look for new runs now. Never blocks. */
void push_wake(const struct config *cfg);
/* Wait up to timeout_ms for the daemon to say the run ended. RC_OK when it did; RC_ERR
 * when the daemon could not be reached or the time ran out (check the database). */
int push_wait(const struct config *cfg, int64_t run_id, int timeout_ms);

/* Stop a run; *status is its final status (3 stopped, or 1/2 when it had already ended,
 * -1 when there is no such run). RC_ERR when the daemon could not be reached. */
int push_stop(const struct config *cfg, int64_t run_id, int *status);
/* The daemon's counters line into out. RC_OK or RC_ERR. */
int push_stats(const struct config *cfg, char *out, size_t len);

#endif
