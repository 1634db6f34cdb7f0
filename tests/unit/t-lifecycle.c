/* What the reloads and the lock files rest on: config_changed() and pidlock_take(). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "rc.h"
#include "config.h"
#include "pidlock.h"
#include "unit.h"

void
t_lifecycle(void)
{
	struct config a, b;
	char err[ERR_LEN], out[256], dir[] = "/tmp/aichatd-unit-lockXXXXXX", want[64], path[512];
	int fd, fd2;

	/* the names of what differs, never the values */
	CHECK(config_load(&a, NULL, err) == RC_OK && config_load(&b, NULL, err) == RC_OK);
	config_changed(&a, &b, out, sizeof(out));
	CHECK_STR(out, "");
	b.threads = a.threads + 1;
	b.body_limit = a.body_limit + 1;
	free(b.jwt_secret);
	b.jwt_secret = strdup("a-secret-nobody-sees");
	b.auth = AUTH_JWT;
	config_changed(&a, &b, out, sizeof(out));
	CHECK_STR(out, "threads auth jwt_secret body_limit");
	CHECK(!strstr(out, "a-secret"));
	config_changed(&a, &b, out, 10); /* what fits, whole names only */
	CHECK_STR(out, "threads");
	config_free(&a);
	config_free(&b);

	/* one holder; the second is refused with the holder's PID */
	CHECK(mkdtemp(dir) != NULL);
	fd = pidlock_take(dir, "pool", err);
	CHECK(fd >= 0);
	fd2 = pidlock_take(dir, "pool", err);
	CHECK(fd2 < 0);
	snprintf(want, sizeof(want), "is held by pid %ld", (long)getpid());
	CHECK(strstr(err, want) != NULL);
	/* another name is another lock */
	fd2 = pidlock_take(dir, "push", err);
	CHECK(fd2 >= 0);
	close(fd);
	fd = pidlock_take(dir, "pool", err); /* released: taken again */
	CHECK(fd >= 0);
	close(fd);
	close(fd2);
	snprintf(path, sizeof(path), "%s/pool.lock", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/push.lock", dir);
	unlink(path);
	rmdir(dir);
}
