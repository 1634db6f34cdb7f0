/*
 * config: settings from a "key = value" file (conf/aichatd.conf), each overridden by the
 * environment variable AICHATD_<KEY> (upper case). Loaded once at start; read-only after.
 */
#ifndef AICHATD_CONFIG_H
#define AICHATD_CONFIG_H

#include <stddef.h>

enum auth_mode { AUTH_OFF, AUTH_JWT };

struct config {
	int port;             /* nginx listen port (127.0.0.1 unless listen is set) */
	char *listen;         /* nginx listen address */
	char *data_dir;       /* state: database, sockets, logs, nginx temp */
	int workers;          /* FastCGI worker processes */
	int threads;          /* accept loops (threads) per worker */
	enum auth_mode auth;
	char *jwt_secret;
	size_t body_limit;    /* bytes */
	char *provider;       /* default provider: builtin | openai | n8n */
	char *openai_base_url;
	char *openai_api_key;
	char *openai_model;
	char *n8n_webhook_url;
	int builtin_delay_ms;
	int connect_timeout_s;
	int reply_timeout_s;
	int sse_heartbeat_s;  /* comment lines on quiet SSE streams */
	int ws_ping_s;        /* WebSocket pings; a client silent for two is closed */
	size_t client_buffer; /* unsent bytes a push connection may queue before it is dropped */
	size_t ws_max_message; /* largest WebSocket message accepted */
	/* derived */
	char *db_path;
	char *fcgi_socket;
	char *push_http_socket; /* nginx's way to the push daemon (WebSocket, SSE) */
	int max_runs;         /* AI runs streaming at once in the push daemon; the rest queue */
};

/* Load defaults, then the file at path (NULL or missing: skipped when not required),
 * then the environment. Returns 0, or -1 with a message in err (ERR_LEN bytes). */
int config_load(struct config *c, const char *path, char *err);
void config_free(struct config *c);
/* Print the settings nginx and the scripts need as shell assignments (quoted). */
void config_print_env(const struct config *c);

#endif
