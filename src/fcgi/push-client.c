#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <errno.h>
#include <unistd.h>
#include <poll.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "rc.h"
#include "config.h"
#include "push-client.h"
#include "util.h"
#include "buf.h"
#include "pool.h"
#include "store.h"

static int
connect_to(const char *path, int nonblock)
{
	struct sockaddr_un a;
	int fd;

	if (push_sockaddr(&a, path) != RC_OK)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
push_connect(const struct config *cfg, int nonblock)
{
	char path[4096];

	push_socket_path(cfg, path, sizeof(path));
	return connect_to(path, nonblock);
}

/* Each thread keeps its connections to the daemon open: one to the control socket for its
 * wake-ups (a wake is then one send(), not a connect, a send and a close on both sides),
 * one to the post socket for its posts. A daemon that restarted is reconnected to once. */
static _Thread_local int link_fd = -1, post_fd = -1;

static void
fd_close(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void
push_wake(const struct config *cfg)
{
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if (link_fd < 0 && (link_fd = push_connect(cfg, 1)) < 0)
			return; /* no daemon now: its start-up poll finds the run */
		if (send(link_fd, "wake\n", 5, MSG_NOSIGNAL | MSG_DONTWAIT) == 5 || errno == EAGAIN)
			return; /* a full socket means wakes are already waiting to be read */
		fd_close(&link_fd);
	}
}

static int64_t
mono_ms(void)
{
	return time_mono_ns() / 1000000;
}

/* Wait for fd to be ready for ev until the monotonic time end: 1 ready, 0 not in time or
 * failed. */
static int
wait_fd(int fd, short ev, int64_t end)
{
	for (;;) {
		struct pollfd p = {fd, ev, 0};
		int64_t left = end - mono_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(&p, 1, (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return 0;
	}
}

/* A new connection to the control socket with cmd sent on it, or -1. */
static int
ask_connect(const struct config *cfg, const char *cmd)
{
	size_t n = strlen(cmd);
	int fd = push_connect(cfg, 0);

	if (fd >= 0 && send(fd, cmd, n, MSG_NOSIGNAL) != (ssize_t)n) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* Send one command line and read one answer line into out. RC_OK or RC_ERR. */
static int
push_ask(const struct config *cfg, const char *cmd, char *out, size_t outlen, int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;
	size_t got = 0;
	int fd = ask_connect(cfg, cmd);

	if (fd < 0)
		return RC_ERR;
	while (wait_fd(fd, POLLIN, end)) {
		ssize_t r = recv(fd, out + got, outlen - 1 - got, 0);
		char *nl;

		if (r <= 0)
			break;
		got += (size_t)r;
		out[got] = '\0';
		if ((nl = strchr(out, '\n'))) {
			*nl = '\0';
			close(fd);
			return RC_OK;
		}
		if (got == outlen - 1)
			break;
	}
	close(fd);
	return RC_ERR;
}

int
push_wait(const struct config *cfg, int64_t run_id, int timeout_ms)
{
	char cmd[64], want[64], line[PUSH_LINE_MAX];

	snprintf(cmd, sizeof(cmd), "wait %lld\n", (long long)run_id);
	snprintf(want, sizeof(want), "done %lld ", (long long)run_id);
	if (push_ask(cfg, cmd, line, sizeof(line), timeout_ms) != RC_OK)
		return RC_ERR;
	return strncmp(line, want, strlen(want)) == 0 ? RC_OK : RC_ERR;
}

int
push_stop(const struct config *cfg, int64_t run_id, int *status)
{
	char cmd[64], want[64], line[PUSH_LINE_MAX];
	size_t n;

	snprintf(cmd, sizeof(cmd), "stop %lld\n", (long long)run_id);
	n = (size_t)snprintf(want, sizeof(want), "stopped %lld ", (long long)run_id);
	if (push_ask(cfg, cmd, line, sizeof(line), 5000) != RC_OK || strncmp(line, want, n) != 0)
		return RC_ERR;
	*status = atoi(line + n);
	return RC_OK;
}

int
push_content(const struct config *cfg, struct pool *p, const char *msg_id, char **out,
	     size_t *len)
{
	int64_t end = mono_ms() + PUSH_CONTENT_TIMEOUT_MS;
	char cmd[PUSH_LINE_MAX];
	struct buf b;
	size_t n = 0, head = 0;
	int fd, rc = RC_ERR, cl;

	cl = snprintf(cmd, sizeof(cmd), "content %s\n", msg_id);
	if (!*msg_id || cl >= (int)sizeof(cmd) || strchr(msg_id, '\n'))
		return RC_NOTFOUND; /* no message of ours has such an id */
	if ((fd = ask_connect(cfg, cmd)) < 0)
		return RC_ERR;
	buf_init(&b, PUSH_CONTENT_MAX + PUSH_LINE_MAX);
	while (wait_fd(fd, POLLIN, end)) {
		ssize_t r;
		char *nl;

		if (buf_reserve(&b, 4096) != RC_OK)
			break;
		r = recv(fd, b.s + b.len, b.alloc - b.len - 1, 0);
		if (r <= 0)
			break;
		buf_setlen(&b, b.len + (size_t)r);
		if (!head && (nl = memchr(b.s, '\n', b.len))) {
			head = (size_t)(nl - b.s) + 1;
			if (head == 5 && memcmp(b.s, "none\n", 5) == 0) {
				rc = RC_NOTFOUND;
				break;
			}
			if (push_frame_len(b.s, head - 1, "content", &n) != RC_OK ||
			    n > PUSH_CONTENT_MAX)
				break;
		} else if (!head && b.len > PUSH_LINE_MAX) {
			break;
		}
		if (head && b.len - head >= n) {
			*out = pool_strndup(p, b.s + head, n);
			*len = n;
			rc = *out ? RC_OK : RC_NOMEM;
			break;
		}
	}
	close(fd);
	buf_free(&b);
	return rc;
}

int
push_stats(const struct config *cfg, char *out, size_t len)
{
	return push_ask(cfg, "stats\n", out, len, 1000);
}

int
push_metrics(const struct config *cfg, struct buf *out)
{
	int64_t end = mono_ms() + PUSH_METRICS_TIMEOUT_MS;
	size_t n = 0, head = 0;
	int fd = ask_connect(cfg, "metrics\n"), rc = RC_ERR;
	char *nl;

	if (fd < 0)
		return RC_ERR;
	while (wait_fd(fd, POLLIN, end)) {
		ssize_t r;

		if (buf_reserve(out, 4096) != RC_OK)
			break; /* more than the caller takes */
		r = recv(fd, out->s + out->len, out->alloc - out->len - 1, 0);
		if (r <= 0)
			break;
		buf_setlen(out, out->len + (size_t)r);
		if (!head && (nl = memchr(out->s, '\n', out->len))) {
			head = (size_t)(nl - out->s) + 1;
			if (push_frame_len(out->s, head - 1, "metrics", &n) != RC_OK ||
			    n > PUSH_METRICS_MAX)
				break;
		} else if (!head && out->len > PUSH_LINE_MAX) {
			break;
		}
		if (head && out->len - head >= n) {
			memmove(out->s, out->s + head, n);
			buf_setlen(out, n);
			rc = RC_OK;
			break;
		}
	}
	close(fd);
	return rc;
}

/* Send all of line on the thread's post link. RC_OK; RC_UNAVAIL when nothing went out; RC_ERR
 * when it broke off part-way. */
static int
post_send(const struct buf *line, int64_t end)
{
	size_t off = 0;

	while (off < line->len) {
		ssize_t n = send(post_fd, line->s + off, line->len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN && wait_fd(post_fd, POLLOUT, end)) {
			continue;
		} else {
			return off == 0 ? RC_UNAVAIL : RC_ERR;
		}
	}
	return RC_OK;
}

int
push_post(const struct config *cfg, struct pool *p, const struct store_post *in,
	  struct store_posted *out, char *err)
{
	static _Thread_local struct buf line, answer;
	static _Thread_local int ready;
	int64_t end = mono_ms() + PUSH_POST_TIMEOUT_MS;
	int rc = RC_UNAVAIL, tries;
	char *nl, path[4096];

	if (!ready) {
		buf_init(&line, PUSH_POST_MAX);
		buf_init(&answer, PUSH_POST_MAX);
		ready = 1;
	}
	buf_reset(&line);
	buf_reset(&answer);
	if (push_post_encode(in, &line) != RC_OK)
		return RC_UNAVAIL; /* too long for a line: the caller writes it itself */
	push_post_socket_path(cfg, path, sizeof(path));
	for (tries = 0; tries < 2 && rc == RC_UNAVAIL; tries++) {
		if (post_fd < 0 && (post_fd = connect_to(path, 1)) < 0)
			return RC_UNAVAIL;
		if ((rc = post_send(&line, end)) != RC_OK)
			fd_close(&post_fd); /* a daemon that restarted since: once more, on a new link */
	}
	if (rc != RC_OK) {
		snprintf(err, ERR_LEN, "the push daemon went away while a post was sent");
		return rc;
	}
	/* the answer: one frame; nothing else comes on this link */
	for (;;) {
		size_t need = 0;
		ssize_t n;

		if ((nl = memchr(answer.s, '\n', answer.len))) {
			if (push_frame_len(answer.s, (size_t)(nl - answer.s), "posted", &need) != RC_OK)
				break;
			if (answer.len - (size_t)(nl + 1 - answer.s) >= need)
				return push_posted_decode(nl + 1, need, p, in->run, out, err);
		}
		if (buf_reserve(&answer, 4096) != RC_OK)
			break;
		n = recv(post_fd, answer.s + answer.len, answer.alloc - answer.len - 1, 0);
		if (n > 0)
			buf_setlen(&answer, answer.len + (size_t)n);
		else if (n == 0 || (errno != EINTR && (errno != EAGAIN || !wait_fd(post_fd, POLLIN, end))))
			break;
	}
	fd_close(&post_fd); /* a late answer must not be read as the next post's */
	snprintf(err, ERR_LEN, "no answer from the push daemon to a post");
	return RC_ERR;
}
