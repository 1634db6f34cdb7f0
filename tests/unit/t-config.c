/* config: where each setting came from (default, file:line, environment, computed), the
 * default file that may be absent against a named one that must exist, and the masking
 * of secrets in `aichatd config`. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "rc.h"
#include "config.h"
#include "unit.h"

/* The value and source config_show() gives for key name; 1 when found. */
static int
shown(const struct config *c, const char *name, char *value, char *source)
{
	const char *n;
	size_t i;

	for (i = 0; (n = config_show(c, i, value, 512, source, 512)); i++)
		if (strcmp(n, name) == 0)
			return 1;
	return 0;
}

void
t_config(void)
{
	char path[] = "/tmp/aichatd-t-config-XXXXXX", err[ERR_LEN], v[512], src[512], want[600];
	struct config c;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	CHECK(fd >= 0);
	f = fdopen(fd, "w");
	fputs("# comment\nport = 9001\n\nworkers = 3\njwt_secret = s3cret-s3cret-s3cret\n"
	      "n8n_webhook_url = https://n8n.example/webhook/0123-key?x=1\n"
	      "openai_base_url = https://bob:hunter2@llm.example/v1?api_key=k1&model=m\n", f);
	fclose(f);
	unsetenv("AICHATD_PORT");
	setenv("AICHATD_WORKERS", "5", 1);
	CHECK(config_read(&c, path, 0, err) == RC_OK);
	CHECK(c.port == 9001 && c.workers == 5);
	CHECK(shown(&c, "port", v, src));
	CHECK_STR(v, "9001");
	snprintf(want, sizeof(want), "file %s:2", path);
	CHECK_STR(src, want);
	CHECK(shown(&c, "workers", v, src));
	CHECK_STR(v, "5");
	CHECK_STR(src, "environment AICHATD_WORKERS");
	CHECK(shown(&c, "threads", v, src));
	CHECK_STR(v, "16");
	CHECK_STR(src, "default");
	CHECK(shown(&c, "db_path", v, src));
	CHECK_STR(src, "computed from data_dir");
	CHECK(shown(&c, "fcgi_socket", v, src));
	CHECK_STR(src, "computed from run_dir");
	/* secrets: never the value */
	CHECK(shown(&c, "jwt_secret", v, src));
	CHECK_STR(v, "********");
	CHECK(shown(&c, "n8n_webhook_url", v, src));
	CHECK_STR(v, "https://n8n.example/********");
	CHECK(shown(&c, "openai_base_url", v, src));
	CHECK_STR(v, "https://bob:********@llm.example/v1?api_key=********&model=********");
	CHECK(shown(&c, "openai_api_key", v, src));
	CHECK_STR(v, ""); /* unset shows as unset */
	CHECK(!shown(&c, "no_such_key", v, src));
	config_free(&c);
	unsetenv("AICHATD_WORKERS");

	/* the default file may be absent; a named one must exist */
	unlink(path);
	CHECK(config_read(&c, path, 1, err) == RC_OK);
	CHECK(c.port == 8000 && !c.file_read && c.file_optional);
	config_free(&c);
	CHECK(config_read(&c, path, 0, err) != RC_OK);
	CHECK(strstr(err, path) != NULL);
	config_free(&c);
	CHECK(strstr(config_default_file(), "/aichatd/aichatd.conf") != NULL);
}
