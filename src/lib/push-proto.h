/*
 * push-proto: how the FastCGI workers talk to the push daemon, over its Unix socket
 * ($DATA/run/push.sock), one text line per command:
 *   "wake\n"          runs were added to the database: look now (no answer)
 *   "wait <run>\n"    answer "done <run> <status>\n" once the run has ended
 *   "stop <run>\n"    end the run as stopped: "stopped <run> <final status>\n"
 *   "content <msgId>\n"  "content <n>\n" and n bytes: a running reply's text so far
 *                     (whole UTF-8 characters), or "none\n" when no reply of msgId runs
 *   "stats\n"         "runs N upstream N ws N sse N stream N dropped N active N backlog N\n"
 *                     (active: runs begun, of max_runs; backlog 1: runs wait in the queue)
 *   "metrics\n"       "metrics <n>\n" and n bytes (n <= PUSH_METRICS_MAX): the daemon's
 *                     figures in Prometheus' text format, its own families only (named
 *                     aichatd_push_*), which the pool's GET /metrics passes on
 * The database is the queue: a lost wake-up only delays a run until the daemon's next
 * poll, and a waiter that cannot reach the daemon falls back to polling the database.
 *
 * Posts go to the daemon's post socket ($DATA/run/post.sock), served by its writer thread,
 * so that the database has one writer under load: the posts of all workers that arrive
 * while the writer is busy share its next transaction, on a connection whose page cache no
 * other writer empties. On it, a post is "post <n>\n" and n bytes (a store_post, framed
 * as push-proto.c says); the answer, once it is committed, is "posted <n>\n" and n bytes
 * (its store_posted); the writer then starts the run. A worker that cannot reach the
 * daemon writes the post itself (store_post) and its run waits for the daemon's start.
 */
#ifndef AICHATD_PUSH_PROTO_H
#define AICHATD_PUSH_PROTO_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct buf;
struct pool;
struct store_post;
struct store_posted;
struct sockaddr_un;

#define PUSH_LINE_MAX 256
#define PUSH_POST_MAX (4 << 20) /* the longest post line; longer posts are written directly */
#define PUSH_CONTENT_MAX (2u << 20) /* the longest "content" answer */
#define PUSH_METRICS_MAX (256u << 10) /* the longest "metrics" answer */

/* The socket paths for a data dir, into out (at least 4096 bytes): the control socket,
 * and the post socket (served by the daemon's writer thread). */
void push_socket_path(const struct config *cfg, char *out, size_t len);
void push_post_socket_path(const struct config *cfg, char *out, size_t len);
/* Fill a with path: RC_OK, or RC_ERR when the path does not fit sun_path. */
int push_sockaddr(struct sockaddr_un *a, const char *path);

/* The post command's frames (push-proto.c): each encoder appends one whole frame, header
 * line included; each decoder takes the n bytes after the header and puts strings in pool
 * p. push_frame_len() reads n from a header line ("<verb> <n>", newline excluded). */
int push_frame_len(const char *line, size_t len, const char *verb, size_t *n);
int push_post_encode(const struct store_post *in, struct buf *line);
int push_post_decode(const char *json, size_t len, struct pool *p, struct store_post *in);
int push_posted_encode(int rc, const char *err, const struct store_post *in,
		       const struct store_posted *out, struct buf *line);
int push_posted_decode(const char *json, size_t len, struct pool *p, int run,
		       struct store_posted *out, char *err);

#endif
