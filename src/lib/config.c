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
#include "addr.h"

#ifndef AICHATD_SYSCONFDIR
#error "AICHATD_SYSCONFDIR (the configure --sysconfdir) comes from Makefile.am"
#endif

enum kind { K_INT, K_STR, K_SIZE, K_AUTH };
/* how `aichatd config` shows a value: as it is, masked (a secret), or a URL with its
 * credentials masked (user:password@, query values; SHOW_URL_PATH: the path too, as an
 * n8n webhook's path is itself the key to the workflow) */
enum show { SHOW_PLAIN, SHOW_SECRET, SHOW_URL, SHOW_URL_PATH };

/* One line per setting: a new key is its struct config field and one line here. */
struct key {
	const char *name;
	enum kind kind;
	size_t off;
	long min, max;
	const char *def; /* the default, as a file would spell it */
	enum show show;
};

#define OFF(f) offsetof(struct config, f)
static const struct key keys[] = {
	{"port", K_INT, OFF(port), 1, 65535, "8000", SHOW_PLAIN},
	{"listen", K_STR, OFF(listen), 0, 0, "127.0.0.1", SHOW_PLAIN},
	{"data_dir", K_STR, OFF(data_dir), 0, 0, "./var", SHOW_PLAIN},
	{"run_dir", K_STR, OFF(run_dir), 0, 0, "", SHOW_PLAIN},
	{"workers", K_INT, OFF(workers), 1, 64, "2", SHOW_PLAIN},
	{"threads", K_INT, OFF(threads), 1, 64, "16", SHOW_PLAIN},
	{"auth", K_AUTH, OFF(auth), 0, 0, "off", SHOW_PLAIN},
	{"jwt_secret", K_STR, OFF(jwt_secret), 0, 0, "", SHOW_SECRET},
	{"body_limit", K_SIZE, OFF(body_limit), 1024, 64L << 20, "1048576", SHOW_PLAIN},
	{"provider", K_STR, OFF(provider), 0, 0, "builtin", SHOW_PLAIN},
	{"openai_base_url", K_STR, OFF(openai_base_url), 0, 0, "https://api.openai.com/v1",
	 SHOW_URL},
	{"openai_api_key", K_STR, OFF(openai_api_key), 0, 0, "", SHOW_SECRET},
	{"openai_model", K_STR, OFF(openai_model), 0, 0, "gpt-4o-mini", SHOW_PLAIN},
	{"n8n_webhook_url", K_STR, OFF(n8n_webhook_url), 0, 0, "", SHOW_URL_PATH},
	{"builtin_delay_ms", K_INT, OFF(builtin_delay_ms), 0, 60000, "50", SHOW_PLAIN},
	{"connect_timeout_s", K_INT, OFF(connect_timeout_s), 1, 3600, "10", SHOW_PLAIN},
	{"reply_timeout_s", K_INT, OFF(reply_timeout_s), 1, 86400, "300", SHOW_PLAIN},
	{"sse_heartbeat_s", K_INT, OFF(sse_heartbeat_s), 1, 3600, "15", SHOW_PLAIN},
	{"ws_ping_s", K_INT, OFF(ws_ping_s), 1, 3600, "30", SHOW_PLAIN},
	{"client_buffer", K_SIZE, OFF(client_buffer), 4096, 256L << 20, "1048576", SHOW_PLAIN},
	{"ws_max_message", K_SIZE, OFF(ws_max_message), 1024, 16L << 20, "65536", SHOW_PLAIN},
	{"max_connections", K_INT, OFF(max_connections), 0, 1L << 24, "0", SHOW_PLAIN},
	{"max_connections_per_addr", K_INT, OFF(max_connections_per_addr), 0, 1L << 24, "0",
	 SHOW_PLAIN},
	{"ws_fragment_timeout_s", K_INT, OFF(ws_fragment_timeout_s), 1, 3600, "30", SHOW_PLAIN},
	{"ws_pending_max", K_SIZE, OFF(ws_pending_max), 65536, 1L << 32, "33554432", SHOW_PLAIN},
	{"socket_group", K_STR, OFF(socket_group), 0, 0, "", SHOW_PLAIN},
	{"max_runs", K_INT, OFF(max_runs), 1, 100000, "256", SHOW_PLAIN},
	{"metrics_allow", K_STR, OFF(metrics_allow), 0, 0, "127.0.0.1 ::1", SHOW_PLAIN},
	{"drain_timeout_s", K_INT, OFF(drain_timeout_s), 1, 3600, "10", SHOW_PLAIN},
	{"database_url", K_STR, OFF(database_url), 0, 0, "", SHOW_URL},
	{"redis_url", K_STR, OFF(redis_url), 0, 0, "", SHOW_URL},
	{"node_id", K_STR, OFF(node_id), 0, 0, "", SHOW_PLAIN},
	{"lease_s", K_INT, OFF(lease_s), 2, 3600, "10", SHOW_PLAIN},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX in config.h");

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

/* Set key name from v; where says where v came from for messages, and origin/line are
 * recorded as the value's provenance. */
static int
config_set(struct config *c, const char *name, const char *v, const char *where,
	   enum config_origin origin, int line, char *err)
{
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		void *f = (char *)c + k->off;
		int64_t n;

		if (strcmp(k->name, name) != 0)
			continue;
		c->origin[i] = origin;
		c->origin_line[i] = line;
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
config_file(struct config *c, const char *path, int optional, char *err)
{
	FILE *f = fopen(path, "r");
	char line[4096], where[ERR_LEN / 2];
	int lineno = 0, rc = RC_OK;

	if (!f && optional && errno == ENOENT)
		return RC_OK; /* the default file: absent, the defaults and the environment */
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
		rc = config_set(c, trim(s), trim(eq + 1), where, ORIGIN_FILE, lineno, err);
	}
	if (rc == RC_OK && ferror(f)) {
		/* a directory, or a read error */
		snprintf(err, ERR_LEN, "settings file %.180s: %.50s", path, strerror(errno));
		rc = RC_ERR;
	}
	if (rc == RC_OK)
		c->file_read = 1;
	fclose(f);
	return rc;
}

const char *
config_default_file(void)
{
	return AICHATD_SYSCONFDIR "/aichatd/aichatd.conf";
}

int
config_load(struct config *c, const char *path, char *err)
{
	return config_read(c, path ? path : config_default_file(), path == NULL, err);
}

int
config_read(struct config *c, const char *path, int optional, char *err)
{
	size_t i;
	int rc;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < NKEYS; i++)
		if ((rc = config_set(c, keys[i].name, keys[i].def, "default", ORIGIN_DEFAULT, 0,
				     err)) != RC_OK)
			return rc;
	if (path && set_str(&c->file, path, err) != RC_OK)
		return RC_NOMEM;
	c->file_optional = optional;
	if (path && (rc = config_file(c, path, optional, err)) != RC_OK)
		return rc;
	for (i = 0; i < NKEYS; i++) {
		char env[64], *v;
		size_t j;

		snprintf(env, sizeof(env), "AICHATD_%s", keys[i].name);
		for (j = 8; env[j]; j++)
			env[j] = (char)toupper((unsigned char)env[j]);
		v = getenv(env);
		if (v && (rc = config_set(c, keys[i].name, v, env, ORIGIN_ENV, 0, err)) != RC_OK)
			return rc;
	}
	if (!provider_known(c->provider)) {
		char names[128];
		snprintf(err, ERR_LEN, "provider must be %s",
			 provider_list(names, sizeof(names), ", ", " or "));
		return RC_ERR;
	}
	/* nginx is given it as allow lines: nothing else may reach its configuration */
	if (addr_list_check(c->metrics_allow, err) != RC_OK)
		return RC_ERR;
	if (c->auth == AUTH_JWT && strlen(c->jwt_secret) < 16) {
		snprintf(err, ERR_LEN, "auth = jwt needs a jwt_secret of at least 16 characters");
		return RC_ERR;
	}
	if (*c->database_url && strncmp(c->database_url, "postgresql://", 13) != 0 &&
	    strncmp(c->database_url, "postgres://", 11) != 0) {
		snprintf(err, ERR_LEN, "database_url must be a postgresql:// URL (or empty: SQLite)");
		return RC_ERR;
	}
	if (*c->redis_url && strncmp(c->redis_url, "redis://", 8) != 0 &&
	    strncmp(c->redis_url, "unix:/", 6) != 0) {
		snprintf(err, ERR_LEN, "redis_url must be redis://HOST:PORT or unix:/PATH (or empty)");
		return RC_ERR;
	}
	if (strlen(c->node_id) > 200 || strpbrk(c->node_id, " \t\r\n")) {
		snprintf(err, ERR_LEN, "node_id must be at most 200 characters with no space");
		return RC_ERR;
	}
	if (!*c->node_id) {
		char host[256] = "localhost";

		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		free(c->node_id);
		if (asprintf(&c->node_id, "%.100s:%.99s", host, c->data_dir) < 0)
			c->node_id = NULL;
	}
	/* run_dir: unset or empty, the data directory's run/ */
	if (!c->run_dir || !*c->run_dir) {
		free(c->run_dir);
		if (asprintf(&c->run_dir, "%s/run", c->data_dir) < 0)
			c->run_dir = NULL;
	}
	if (!c->run_dir || asprintf(&c->db_path, "%s/aichatd.db", c->data_dir) < 0 ||
	    asprintf(&c->fcgi_socket, "%s/fcgi.sock", c->run_dir) < 0 ||
	    asprintf(&c->push_http_socket, "%s/push-http.sock", c->run_dir) < 0 || !c->node_id ||
	    !(c->store_target = strdup(*c->database_url ? c->database_url : c->db_path))) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	return RC_OK;
}

void
config_free(struct config *c)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (keys[i].kind == K_STR)
			free(*(char **)((char *)c + keys[i].off));
	free(c->file);
	free(c->db_path);
	free(c->store_target);
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
	print_quoted("AICHATD_RUN_DIR", c->run_dir);
	snprintf(n, sizeof(n), "%zu", c->body_limit);
	print_quoted("AICHATD_BODY_LIMIT", n);
	print_quoted("AICHATD_FCGI_SOCKET", c->fcgi_socket);
	print_quoted("AICHATD_PUSH_HTTP_SOCKET", c->push_http_socket);
	print_quoted("AICHATD_AUTH", c->auth == AUTH_JWT ? "jwt" : "off");
	print_quoted("AICHATD_METRICS_ALLOW", c->metrics_allow);
}

/* ---- the settings in force and where each came from (aichatd config) ---- */

#define MASK "********"

/* url with its credentials masked: the password of user:password@, each query value, and
 * with path_too the path (everything after the authority). */
static void
mask_url(const char *url, int path_too, char *out, size_t n)
{
	const char *auth = strstr(url, "://"), *end, *at, *colon, *p;
	size_t o = 0;

#define PUT(s, len)                                                                           \
	do {                                                                                  \
		size_t l_ = (len);                                                            \
		if (o + l_ < n) {                                                             \
			memcpy(out + o, (s), l_);                                             \
			o += l_;                                                              \
		}                                                                             \
	} while (0)
	if (!auth) { /* not a URL: nothing tells which part is a key, so all of it */
		snprintf(out, n, "%s", *url ? MASK : "");
		return;
	}
	auth += 3;
	end = auth + strcspn(auth, "/?#");
	PUT(url, (size_t)(auth - url));
	at = memchr(auth, '@', (size_t)(end - auth));
	if (at) {
		colon = memchr(auth, ':', (size_t)(at - auth));
		PUT(auth, (size_t)((colon ? colon : at) - auth));
		if (colon)
			PUT(":" MASK, sizeof(MASK));
		PUT("@", 1);
		auth = at + 1;
	}
	PUT(auth, (size_t)(end - auth));
	if (*end && path_too) {
		PUT("/" MASK, sizeof(MASK));
	} else if (*end) {
		p = end + strcspn(end, "?#");
		PUT(end, (size_t)(p - end));
		if (*p == '?') {
			/* name=value&...: the names stay */
			PUT("?", 1);
			for (p++; *p && *p != '#';) {
				size_t nl = strcspn(p, "=&#");
				PUT(p, nl);
				p += nl;
				if (*p == '=') {
					PUT("=" MASK, sizeof(MASK));
					p += 1 + strcspn(p + 1, "&#");
				}
				if (*p == '&')
					PUT(p++, 1);
			}
		}
	}
	out[o < n ? o : n - 1] = '\0';
#undef PUT
}

static void
show_value(const struct config *c, const struct key *k, char *out, size_t n)
{
	const void *f = (const char *)c + k->off;
	const char *v;

	switch (k->kind) {
	case K_INT:
		snprintf(out, n, "%d", *(const int *)f);
		return;
	case K_SIZE:
		snprintf(out, n, "%zu", *(const size_t *)f);
		return;
	case K_AUTH:
		snprintf(out, n, "%s", c->auth == AUTH_JWT ? "jwt" : "off");
		return;
	case K_STR:
		break;
	}
	v = *(char *const *)f ? *(char *const *)f : "";
	switch (k->show) {
	case SHOW_PLAIN:
		snprintf(out, n, "%s", v);
		break;
	case SHOW_SECRET:
		snprintf(out, n, "%s", *v ? MASK : "");
		break;
	case SHOW_URL:
	case SHOW_URL_PATH:
		mask_url(v, k->show == SHOW_URL_PATH, out, n);
		break;
	}
}

const char *
config_show(const struct config *c, size_t i, char *value, size_t vn, char *source,
	    size_t sn)
{
	static const struct {
		const char *name;
		size_t off;
		const char *from;
	} derived[] = {
		{"db_path", OFF(db_path), "data_dir"},
		{"fcgi_socket", OFF(fcgi_socket), "run_dir"},
		{"push_http_socket", OFF(push_http_socket), "run_dir"},
	};
	const struct key *k;
	char env[64];
	size_t j;

	if (i >= NKEYS) {
		i -= NKEYS;
		if (i >= sizeof(derived) / sizeof(derived[0]))
			return NULL;
		snprintf(value, vn, "%s", *(char *const *)((const char *)c + derived[i].off));
		snprintf(source, sn, "computed from %s", derived[i].from);
		return derived[i].name;
	}
	k = &keys[i];
	show_value(c, k, value, vn);
	switch (c->origin[i]) {
	case ORIGIN_DEFAULT:
		snprintf(source, sn, "default");
		break;
	case ORIGIN_FILE:
		snprintf(source, sn, "file %s:%d", c->file ? c->file : "?", c->origin_line[i]);
		break;
	case ORIGIN_ENV:
		snprintf(env, sizeof(env), "AICHATD_%s", k->name);
		for (j = 8; env[j]; j++)
			env[j] = (char)toupper((unsigned char)env[j]);
		snprintf(source, sn, "environment %s", env);
		break;
	}
	if ((k->off == OFF(max_connections) || k->off == OFF(max_connections_per_addr)) &&
	    *(const int *)((const char *)c + k->off) == 0)
		snprintf(source + strlen(source), sn - strlen(source),
			 "; 0: computed by aichatd-push at start");
	return k->name;
}

void
config_print(const struct config *c, FILE *out)
{
	char value[1024], source[600];
	const char *name;
	size_t i;

	if (!c->file)
		fprintf(out, "# settings file: none\n");
	else
		fprintf(out, "# settings file: %s (%s%s)\n", c->file,
			c->file_optional ? "the default" : "named",
			c->file_read ? "" : ", absent: not read");
	for (i = 0; (name = config_show(c, i, value, sizeof(value), source, sizeof(source)));
	     i++)
		fprintf(out, "%s = %s  # %s\n", name, *value ? value : "\"\"", source);
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
	size_t i, n;
	int inside;

	umask(077);
	if (socket_gid(c, &gid, err) != RC_OK)
		return RC_ERR;
	dir_mode = gid == (gid_t)-1 ? 0700 : 0710;
	/* the data directory lets the group through only to a run_dir inside it */
	n = strlen(c->data_dir);
	inside = strncmp(c->run_dir, c->data_dir, n) == 0 && c->run_dir[n] == '/';
	set_mode(c->data_dir, inside ? dir_mode : 0700, inside ? gid : (gid_t)-1, 1);
	set_mode(c->run_dir, dir_mode, gid, 0);
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
	snprintf(out, n, "%s/%s.auth", c->run_dir, who);
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
