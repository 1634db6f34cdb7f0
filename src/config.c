#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <ctype.h>
#include <errno.h>

#include "rc.h"
#include "util.h"
#include "config.h"

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
	{"max_runs", K_INT, OFF(max_runs), 1, 100000},
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
			if (parse_uint(v, k->max, &n) != RC_OK || n < k->min) {
				if (!(k->min == 0 && strcmp(v, "0") == 0)) {
					snprintf(err, ERR_LEN, "%s: %s must be an integer from %ld to %ld",
						 where, name, k->min, k->max);
					return RC_ERR;
				}
				n = 0;
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
		if (errno == ENOENT)
			return RC_OK;
		snprintf(err, ERR_LEN, "%s: %s", path, strerror(errno));
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
	c->max_runs = 256;
	if (set_str(&c->listen, "127.0.0.1", err) || set_str(&c->data_dir, "./var", err) ||
	    set_str(&c->provider, "builtin", err) || set_str(&c->jwt_secret, "", err) ||
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
	if (strcmp(c->provider, "builtin") && strcmp(c->provider, "openai") &&
	    strcmp(c->provider, "n8n")) {
		snprintf(err, ERR_LEN, "provider must be builtin, openai or n8n");
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
