#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/evp.h>

#include "rc.h"
#include "util.h"
#include "config.h"
#include "provider.h"

enum kind { K_INT, K_STR, K_SIZE, K_AUTH };

struct key {
	const char *name;
	enum kind kind;
	size_t off;
	long min, max;
};

#define OFF(f) offsetof(struct config, f)
static const struct key keys[] = {
	{"port", K_INT, OFF(port), 1, 65535},
	{"listen", K_STR, OFF(listen), 0, 0},
	{"data_dir", K_STR, OFF(data_dir), 0, 0},
	{"workers", K_INT, OFF(workers), 1, 64},
	{"threads", K_INT, OFF(threads), 1, 64},
	{"auth", K_AUTH, OFF(auth), 0, 0},
	{"jwt_secret", K_STR, OFF(jwt_secret), 0, 0},
	{"body_limit", K_SIZE, OFF(body_limit), 1024, 64L << 20},
	{"provider", K_STR, OFF(provider), 0, 0},
	{"openai_base_url", K_STR, OFF(openai_base_url), 0, 0},
	{"openai_api_key", K_STR, OFF(openai_api_key), 0, 0},
	{"openai_model", K_STR, OFF(openai_model), 0, 0},
	{"n8n_webhook_url", K_STR, OFF(n8n_webhook_url), 0, 0},
	{"builtin_delay_ms", K_INT, OFF(builtin_delay_ms), 0, 60000},
	{"connect_timeout_s", K_INT, OFF(connect_timeout_s), 1, 3600},
	{"reply_timeout_s", K_INT, OFF(reply_timeout_s), 1, 86400},
	{"sse_heartbeat_s", K_INT, OFF(sse_heartbeat_s), 1, 3600},
	{"ws_ping_s", K_INT, OFF(ws_ping_s), 1, 3600},
	{"client_buffer", K_SIZE, OFF(client_buffer), 4096, 256L << 20},
	{"ws_max_message", K_SIZE, OFF(ws_max_message), 1024, 16L << 20},
	{"max_connections", K_INT, OFF(max_connections), 0, 1L << 24},
	{"max_connections_per_addr", K_INT, OFF(max_connections_per_addr), 0, 1L << 24},
	{"ws_fragment_timeout_s", K_INT, OFF(ws_fragment_timeout_s), 1, 3600},
	{"ws_pending_max", K_SIZE, OFF(ws_pending_max), 65536, 1L << 32},
	{"socket_group", K_STR, OFF(socket_group), 0, 0},
	{"max_runs", K_INT, OFF(max_runs), 1, 100000},
	{"drain_timeout_s", K_INT, OFF(drain_timeout_s), 1, 3600},
};

static int
set_str(char **dst, const char *v, char *err)
{
	char *d = strdup(v);

	if (!d) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	free(*dst);
	*dst = d;
	return RC_OK;
}

static int
config_set(struct config *c, const char *name, const char *v, const char *where, char *err)
{
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct key *k = &keys[i];
		void *f = (char *)c + k->off;
		int64_t n;

		if (strcmp(k->name, name) != 0)
			continue;
		switch (k->kind) {
		case K_STR:
			return set_str((char **)f, v, err);
		case K_INT:
		case K_SIZE:
			if (parse_uint0(v, k->max, &n) != RC_OK || n < k->min) {
				snprintf(err, ERR_LEN, "%s: %s must be an integer from %ld to %ld",
					 where, name, k->min, k->max);
				return RC_ERR;
			}
			if (k->kind == K_INT)
				*(int *)f = (int)n;
			else
				*(size_t *)f = (size_t)n;
			return RC_OK;
		case K_AUTH:
			if (strcmp(v, "off") == 0) {
				c->auth = AUTH_OFF;
			} else if (strcmp(v, "jwt") == 0) {
				c->auth = AUTH_JWT;
			} else {
				snprintf(err, ERR_LEN, "%s: auth must be off or jwt", where);
				return RC_ERR;
			}
			return RC_OK;
		}
	}
	snprintf(err, ERR_LEN, "%s: unknown setting '%s'", where, name);
	return RC_ERR;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
config_file(struct config *c, const char *path, char *err)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[ERR_LEN / 2];
	int lineno = 0, rc = RC_OK;

	if (!f) {
		/* a file that is named must be there: a typo must not run on the defaults */
		snprintf(err, ERR_LEN, "settings file %.180s: %.50s", path, strerror(errno));
		return RC_ERR;
	}
	while (rc == RC_OK && fgets(line, sizeof(line), f)) {
		char *s = trim(line), *eq;

		lineno++;
		if (!*s || *s == '#')
			continue;
		snprintf(where, sizeof(where), "%.100s:%d", path, lineno);
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, ERR_LEN, "%s: expected key = value", where);
			rc = RC_ERR;
			break;
		}
		*eq = '\0';
		rc = config_set(c, trim(s), trim(eq + 1), where, err);
	}
	if (rc == RC_OK && ferror(f)) {
		/* a directory, or a read error */
		snprintf(err, ERR_LEN, "settings file %.180s: %.50s", path, strerror(errno));
		rc = RC_ERR;
	}
	fclose(f);
	return rc;
}

int
config_load(struct config *c, const char *path, char *err)
{
	size_t i;
	int rc;

	memset(c, 0, sizeof(*c));
	c->port = 8000;
	c->workers = 2;
	c->threads = 16;
	c->auth = AUTH_OFF;
	c->body_limit = 1048576;
	c->builtin_delay_ms = 50;
	c->connect_timeout_s = 10;
	c->reply_timeout_s = 300;
	c->sse_heartbeat_s = 15;
	c->ws_ping_s = 30;
	c->client_buffer = 1u << 20;
	c->ws_max_message = 64u << 10;
	c->ws_fragment_timeout_s = 30;
	c->ws_pending_max = 32u << 20;
	c->max_runs = 256;
	c->drain_timeout_s = 10;
	if (set_str(&c->listen, "127.0.0.1", err) || set_str(&c->data_dir, "./var", err) ||
	    set_str(&c->provider, provider_name(PROVIDER_DEFAULT), err) || set_str(&c->jwt_secret, "", err) ||
	    set_str(&c->openai_base_url, "https://api.openai.com/v1", err) ||
	    set_str(&c->openai_api_key, "", err) || set_str(&c->openai_model, "gpt-4o-mini", err) ||
	    set_str(&c->n8n_webhook_url, "", err))
		return RC_NOMEM;
	if (path && (rc = config_file(c, path, err)) != RC_OK)
		return rc;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char env[64], *v;
		size_t j;

		snprintf(env, sizeof(env), "AICHATD_%s", keys[i].name);
		for (j = 8; env[j]; j++)
			env[j] = (char)toupper((unsigned char)env[j]);
		v = getenv(env);
		if (v && (rc = config_set(c, keys[i].name, v, env, err)) != RC_OK)
			return rc;
	}
	if (!provider_known(c->provider)) {
		char names[128];
		snprintf(err, ERR_LEN, "provider must be %s",
			 provider_list(names, sizeof(names), ", ", " or "));
		return RC_ERR;
	}
	if (c->auth == AUTH_JWT && strlen(c->jwt_secret) < 16) {
		snprintf(err, ERR_LEN, "auth = jwt needs a jwt_secret of at least 16 characters");
		return RC_ERR;
	}
	if (asprintf(&c->db_path, "%s/aichatd.db", c->data_dir) < 0 ||
	    asprintf(&c->fcgi_socket, "%s/run/fcgi.sock", c->data_dir) < 0 ||
	    asprintf(&c->push_http_socket, "%s/run/push-http.sock", c->data_dir) < 0) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	return RC_OK;
}

void
config_free(struct config *c)
{
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (keys[i].kind == K_STR)
			free(*(char **)((char *)c + keys[i].off));
	free(c->db_path);
	free(c->fcgi_socket);
	free(c->push_http_socket);
	memset(c, 0, sizeof(*c));
}

static void
print_quoted(const char *name, const char *v)
{
	printf("%s='", name);
	for (; *v; v++) {
		if (*v == '\'')
			fputs("'\\''", stdout);
		else
			putchar(*v);
	}
	puts("'");
}

void
config_print_env(const struct config *c)
{
	char n[32];

	snprintf(n, sizeof(n), "%d", c->port);
	print_quoted("AICHATD_PORT", n);
	print_quoted("AICHATD_LISTEN", c->listen);
	print_quoted("AICHATD_DATA_DIR", c->data_dir);
	snprintf(n, sizeof(n), "%zu", c->body_limit);
	print_quoted("AICHATD_BODY_LIMIT", n);
	print_quoted("AICHATD_FCGI_SOCKET", c->fcgi_socket);
	print_quoted("AICHATD_PUSH_HTTP_SOCKET", c->push_http_socket);
	print_quoted("AICHATD_AUTH", c->auth == AUTH_JWT ? "jwt" : "off");
}

/* The gid of socket_group: RC_OK with *gid, or -1 in *gid when none is set. */
static int
socket_gid(const struct config *c, gid_t *gid, char *err)
{
	struct group g, *found = NULL;
	char buf[16384];
	int64_t n;

	*gid = (gid_t)-1;
	if (!c->socket_group || !*c->socket_group)
		return RC_OK;
	if (getgrnam_r(c->socket_group, &g, buf, sizeof(buf), &found) == 0 && found) {
		*gid = found->gr_gid;
		return RC_OK;
	}
	if (parse_uint0(c->socket_group, INT32_MAX, &n) == RC_OK) {
		*gid = (gid_t)n;
		return RC_OK;
	}
	snprintf(err, ERR_LEN, "socket_group: no group named '%s'", c->socket_group);
	utf8_cut(err, ERR_LEN - 1);
	return RC_ERR;
}

static void
set_mode(const char *path, mode_t mode, gid_t gid, int must_exist)
{
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0 && errno != ENOENT)
		fprintf(stderr, "aichatd: warning: cannot give %s to group %ld: %s\n", path,
			(long)gid, strerror(errno));
	if (chmod(path, mode) != 0 && (must_exist || errno != ENOENT))
		fprintf(stderr, "aichatd: warning: cannot make %s mode %04o: %s\n", path,
			(unsigned)mode, strerror(errno));
}

int
config_private_files(const struct config *c, char *err)
{
	static const char *const db_files[] = {"", "-wal", "-shm"};
	char path[4096];
	mode_t dir_mode;
	gid_t gid;
	size_t i;

	umask(077);
	if (socket_gid(c, &gid, err) != RC_OK)
		return RC_ERR;
	dir_mode = gid == (gid_t)-1 ? 0700 : 0710;
	set_mode(c->data_dir, dir_mode, gid, 1);
	snprintf(path, sizeof(path), "%s/run", c->data_dir);
	set_mode(path, dir_mode, gid, 0);
	for (i = 0; i < sizeof(db_files) / sizeof(db_files[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", c->db_path, db_files[i]);
		set_mode(path, 0600, (gid_t)-1, 0);
	}
	return RC_OK;
}

int
config_share_socket(const struct config *c, const char *path, char *err)
{
	gid_t gid;

	if (socket_gid(c, &gid, err) != RC_OK)
		return RC_ERR;
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) {
		snprintf(err, ERR_LEN, "cannot give %s to group %s: %s", path, c->socket_group,
			 strerror(errno));
		utf8_cut(err, ERR_LEN - 1);
		return RC_ERR;
	}
	if (chmod(path, 0660) != 0) {
		snprintf(err, ERR_LEN, "cannot make %s mode 0660: %s", path, strerror(errno));
		utf8_cut(err, ERR_LEN - 1);
		return RC_ERR;
	}
	return RC_OK;
}

/* ---- one identity for the pool and the daemon ---- */

#define STAMP_LEN 160

static void
stamp_path(const struct config *c, const char *who, char *out, size_t n)
{
	snprintf(out, n, "%s/run/%s.auth", c->data_dir, who);
}

/* "auth=off", or "auth=jwt secret_sha256=<hex>": what must agree, never the secret. */
static void
stamp_text(const struct config *c, char *out, size_t n)
{
	static const char tag[] = "aichatd auth stamp\n";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	EVP_MD_CTX *ctx;
	size_t o;

	if (c->auth != AUTH_JWT) {
		snprintf(out, n, "auth=off");
		return;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, tag, sizeof(tag) - 1) != 1 ||
	    EVP_DigestUpdate(ctx, c->jwt_secret, strlen(c->jwt_secret)) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		mdlen = 0; /* then "jwt" with no hash: it agrees with no one's */
	EVP_MD_CTX_free(ctx);
	o = (size_t)snprintf(out, n, "auth=jwt secret_sha256=");
	for (i = 0; i < mdlen && o + 3 <= n; i++)
		o += (size_t)snprintf(out + o, n - o, "%02x", md[i]);
}

/* Read a stamp file: 1 with pid and the stamp, 0 when absent or not well formed. */
static int
stamp_read(const char *path, long *pid, char *stamp, size_t n)
{
	char buf[STAMP_LEN + 64], *nl;
	FILE *f = fopen(path, "r");
	size_t len;

	if (!f)
		return 0;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	if (sscanf(buf, "pid=%ld", pid) != 1 || *pid <= 0)
		return 0;
	nl = strchr(buf, '\n');
	if (!nl)
		return 0;
	snprintf(stamp, n, "%s", nl + 1);
	stamp[strcspn(stamp, "\n")] = '\0';
	return 1;
}

int
config_identity_check(const struct config *c, const char *other, char *err)
{
	char path[4096], theirs[STAMP_LEN], mine[STAMP_LEN];
	long pid;

	stamp_path(c, other, path, sizeof(path));
	if (!stamp_read(path, &pid, theirs, sizeof(theirs)))
		return RC_OK;
	if (pid == (long)getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH))
		return RC_OK; /* left by a process that is gone */
	stamp_text(c, mine, sizeof(mine));
	if (strcmp(mine, theirs) == 0)
		return RC_OK;
	snprintf(err, ERR_LEN,
		 "the %s (pid %ld) runs with auth = %s, this one with auth = %s%s: "
		 "start both with the same settings",
		 strcmp(other, "pool") == 0 ? "FastCGI pool" : "push daemon", pid,
		 strncmp(theirs, "auth=jwt", 8) == 0 ? "jwt" : "off",
		 c->auth == AUTH_JWT ? "jwt" : "off",
		 strncmp(theirs, mine, 8) == 0 ? " (another jwt_secret)" : "");
	return RC_CONFLICT;
}

int
config_identity_publish(const struct config *c, const char *who, char *err)
{
	char path[4096], tmp[4200], stamp[STAMP_LEN], text[STAMP_LEN + 64];
	int fd, n;
	ssize_t w;

	stamp_path(c, who, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	stamp_text(c, stamp, sizeof(stamp));
	n = snprintf(text, sizeof(text), "pid=%ld\n%s\n", (long)getpid(), stamp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, ERR_LEN, "cannot write %.200s: %.40s", tmp, strerror(errno));
		return RC_ERR;
	}
	w = write(fd, text, (size_t)n);
	if (close(fd) != 0 || w != n || rename(tmp, path) != 0) {
		snprintf(err, ERR_LEN, "cannot write %.200s: %.40s", path, strerror(errno));
		unlink(tmp);
		return RC_ERR;
	}
	return RC_OK;
}

void
config_identity_withdraw(const struct config *c, const char *who)
{
	char path[4096], stamp[STAMP_LEN];
	long pid;

	stamp_path(c, who, path, sizeof(path));
	if (stamp_read(path, &pid, stamp, sizeof(stamp)) && pid == (long)getpid())
		unlink(path);
}

int
config_identity_claim(const struct config *c, const char *who, const char *other, char *err)
{
	int rc;

	/* look before writing, so that a refused program leaves the other's file alone; and
	 * again after, so that of two programs starting at once, one sees the other */
	if ((rc = config_identity_check(c, other, err)) != RC_OK)
		return rc;
	if ((rc = config_identity_publish(c, who, err)) != RC_OK)
		return rc;
	if ((rc = config_identity_check(c, other, err)) != RC_OK)
		config_identity_withdraw(c, who);
	return rc;
}

void
config_changed(const struct config *a, const struct config *b, char *out, size_t n)
{
	size_t i, o = 0;

	if (n)
		*out = '\0';
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const void *x = (const char *)a + keys[i].off, *y = (const char *)b + keys[i].off;
		int same;

		switch (keys[i].kind) {
		case K_STR:
			same = strcmp(*(char *const *)x ? *(char *const *)x : "",
				      *(char *const *)y ? *(char *const *)y : "") == 0;
			break;
		case K_SIZE:
			same = *(const size_t *)x == *(const size_t *)y;
			break;
		case K_AUTH:
			same = a->auth == b->auth;
			break;
		default:
			same = *(const int *)x == *(const int *)y;
			break;
		}
		if (!same && o + strlen(keys[i].name) + 2 < n)
			o += (size_t)snprintf(out + o, n - o, "%s%s", o ? " " : "", keys[i].name);
	}
}
