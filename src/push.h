/*
 * push: how the FastCGI workers reach the push daemon, over its Unix socket
 * ($DATA/run/push.sock), one text line per command:
 *   "wake\n"          runs were added to the database: look now (no answer)
 *   "wait <run>\n"    answer "done <run> <status>\n" once the run has ended
 *   "stop <run>\n"    end the run as stopped: "stopped <run> <final status>\n"
 *   "stats\n"         "runs N upstream N ws N sse N stream N dropped N active N backlog N\n"
 *                     (active: runs begun, of max_runs; backlog 1: runs wait in the queue)
 * The database is the queue: a lost wake-up only delays a run until the daemon's next
 * poll, and a waiter that cannot reach the daemon falls back to polling the database.
 *
 * Posts go to the daemon's post socket ($DATA/run/post.sock), served by its writer thread,
 * so that the database has one writer under load: the posts of all workers that arrive
 * while the writer is busy share its next transaction, on a connection whose page cache no
 * other writer empties. On it, a post is "post <n>\n" and n bytes (a store_post, framed
 * as push-post.c says); the answer, once it is committed, is "posted <n>\n" and n bytes
 * (its store_posted); the writer then starts the run. A worker that cannot reach the
 * daemon writes the post itself (store_post) and its run waits for the daemon's start.
 */
#ifndef AICHATD_PUSH_H
#define AICHATD_PUSH_H

#include <stddef.h>
#include <stdint.h>

struct config;

#define PUSH_LINE_MAX 256
#define PUSH_POST_MAX (4 << 20) /* the longest post line; longer posts are written directly */
#define PUSH_POST_TIMEOUT_MS 30000

struct buf;
struct pool;
struct store_post;
struct store_posted;

/* The socket paths for a data dir, into out (at least 4096 bytes): the control socket,
 * and the post socket (served by the daemon's writer thread). */
void push_socket_path(const struct config *cfg, char *out, size_t len);
void push_post_socket_path(const struct config *cfg, char *out, size_t len);
/* Best effort: tell the daemon to look for new runs now. Never blocks. */
void push_wake(const struct config *cfg);
/* Post through the daemon: the store's result (RC_OK with out filled from pool p,
 * RC_NOTFOUND, RC_ERR with err). RC_UNAVAIL when the daemon could not be reached and nothing
 * was sent (the caller then posts itself); RC_ERR when the daemon went away after the post
 * was sent, as it may or may not have been stored. */
int push_post(const struct config *cfg, struct pool *p, const struct store_post *in,
	      struct store_posted *out, char *err);

/* The post command's frames (push-post.c): each encoder appends one whole frame, header
 * line included; each decoder takes the n bytes after the header and puts strings in pool
 * p. push_frame_len() reads n from a header line ("<verb> <n>", newline excluded). */
int push_frame_len(const char *line, size_t len, const char *verb, size_t *n);
int push_post_encode(const struct store_post *in, struct buf *line);
int push_post_decode(const char *json, size_t len, struct pool *p, struct store_post *in);
int push_posted_encode(int rc, const char *err, const struct store_post *in,
		       const struct store_posted *out, struct buf *line);
int push_posted_decode(const char *json, size_t len, struct pool *p, int run,
		       struct store_posted *out, char *err);

/* Wait up to timeout_ms for the daemon to say the run ended. RC_OK when it did; RC_ERR
 * when the daemon could not be reached or the time ran out (check the database). */
int push_wait(const struct config *cfg, int64_t run_id, int timeout_ms);

/* Stop a run; *status is its final status (3 stopped, or 1/2 when it had already ended,
 * -1 when there is no such run). RC_ERR when the daemon could not be reached. */
int push_stop(const struct config *cfg, int64_t run_id, int *status);
/* A running reply's content so far, as the daemon holds it (whole UTF-8 characters), into
 * *out (from pool p) and *len: RC_OK; RC_NOTFOUND when the daemon runs no reply of message
 * msg_id (it ended, and the database has it whole, or it has not begun); RC_ERR when the
 * daemon could not be reached or answered wrong. */
#define PUSH_CONTENT_MAX (2u << 20)
#define PUSH_CONTENT_TIMEOUT_MS 5000
int push_content(const struct config *cfg, struct pool *p, const char *msg_id, char **out,
		 size_t *len);
/* The daemon's counters line into out. RC_OK or RC_ERR. */
int push_stats(const struct config *cfg, char *out, size_t len);

#endif
