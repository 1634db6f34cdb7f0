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
#include "push.h"

void
push_socket_path(const struct config *cfg, char *out, size_t len)
{
	snprintf(out, len, "%s/run/push.sock", cfg->data_dir);
}

static int
push_connect(const struct config *cfg, int nonblock)
{
	struct sockaddr_un a;
	char path[4096];
	int fd;

	push_socket_path(cfg, path, sizeof(path));
	if (strlen(path) >= sizeof(a.sun_path))
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	strcpy(a.sun_path, path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Each thread keeps its wake-up connection open: a wake is then one send(), not a connect,
 * a send and a close on both sides. A daemon that restarted is reconnected to once. */
void
push_wake(const struct config *cfg)
{
	static _Thread_local int fd = -1;
	int tries;

	for (tries = 0; tries < 2; tries++) {
		if (fd < 0 && (fd = push_connect(cfg, 1)) < 0)
			return; /* no daemon now: its start-up poll finds the run */
		if (send(fd, "wake\n", 5, MSG_NOSIGNAL | MSG_DONTWAIT) == 5 || errno == EAGAIN)
			return; /* a full socket means wakes are already waiting to be read */
		close(fd);
		fd = -1;
	}
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Send one command line and read one answer line into out. RC_OK or RC_ERR. */
static int
push_ask(const struct config *cfg, const char *cmd, char *out, size_t outlen, int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;
	size_t got = 0, n = strlen(cmd);
	int fd = push_connect(cfg, 0);

	if (fd < 0)
		return RC_ERR;
	if (send(fd, cmd, n, MSG_NOSIGNAL) != (ssize_t)n) {
		close(fd);
		return RC_ERR;
	}
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		int64_t left = end - mono_ms();
		ssize_t r;
		char *nl;

		if (left <= 0)
			break;
		if (poll(&p, 1, (int)left) <= 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		r = recv(fd, out + got, outlen - 1 - got, 0);
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
push_stats(const struct config *cfg, char *out, size_t len)
{
	return push_ask(cfg, "stats\n", out, len, 1000);
}
