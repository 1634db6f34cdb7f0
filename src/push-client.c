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

void
push_wake(const struct config *cfg)
{
	int fd = push_connect(cfg, 1);

	if (fd < 0)
		return;
	if (send(fd, "wake\n", 5, MSG_NOSIGNAL) < 0) {
		/* the daemon's next poll finds the run anyway */
	}
	close(fd);
}

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
push_wait(const struct config *cfg, int64_t run_id, int timeout_ms)
{
	char line[PUSH_LINE_MAX], want[64];
	int64_t end = mono_ms() + timeout_ms;
	size_t got = 0;
	int fd = push_connect(cfg, 0), n;

	if (fd < 0)
		return RC_ERR;
	n = snprintf(line, sizeof(line), "wait %lld\n", (long long)run_id);
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n) {
		close(fd);
		return RC_ERR;
	}
	snprintf(want, sizeof(want), "done %lld ", (long long)run_id);
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		int64_t left = end - mono_ms();
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
			if (errno == EINTR && left > 0)
				continue;
			break;
		}
		r = recv(fd, line + got, sizeof(line) - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		line[got] = '\0';
		if (strchr(line, '\n')) {
			close(fd);
			return strncmp(line, want, strlen(want)) == 0 ? RC_OK : RC_ERR;
		}
		if (got == sizeof(line) - 1)
			break;
	}
	close(fd);
	return RC_ERR;
}
