/* One program of each kind on a data directory (see pidlock.h). */
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "rc.h"
#include "pidlock.h"

int
pidlock_take(const char *data_dir, const char *name, char *err)
{
	char path[4096], text[32];
	ssize_t n;
	int fd, len;

	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, ERR_LEN, "cannot create %.120s: %.40s", data_dir, strerror(errno));
		return -1;
	}
	/* in the data directory itself: two programs of a kind on one database must meet
	 * here even when their run_dirs differ */
	snprintf(path, sizeof(path), "%s/%s.lock", data_dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, ERR_LEN, "cannot open %.120s: %.40s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		long pid = 0;

		n = pread(fd, text, sizeof(text) - 1, 0);
		text[n > 0 ? n : 0] = '\0';
		if (sscanf(text, "%ld", &pid) != 1)
			pid = 0;
		close(fd);
		if (e == EWOULDBLOCK && pid > 0)
			snprintf(err, ERR_LEN, "%.120s is held by pid %ld: another %s runs on %.60s",
				 path, pid, name, data_dir);
		else if (e == EWOULDBLOCK)
			snprintf(err, ERR_LEN, "%.120s is held: another %s runs on %.60s", path,
				 name, data_dir);
		else
			snprintf(err, ERR_LEN, "cannot lock %.120s: %.40s", path, strerror(e));
		return -1;
	}
	/* ours: the PID, for the next one to name */
	len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
		snprintf(err, ERR_LEN, "cannot write %.120s: %.40s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}
