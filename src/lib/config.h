/*
 * config: settings from a "key = value" file, each overridden by the environment variable
 * AICHATD_<KEY> (upper case). The file is the one named (-c, AICHATD_CONFIG), else the
 * default, $(sysconfdir)/aichatd/aichatd.conf, which may be absent. Loaded at start and,
 * into a fresh struct, at a reload (SIGHUP: each program applies what can change live
 * and keeps the rest); a loaded struct is read-only. Each value remembers where it came from (aichatd config shows it).
 */
#ifndef AICHATD_CONFIG_H
#define AICHATD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum auth_mode { AUTH_OFF, AUTH_JWT };

/* Where a setting's value came from. */
enum config_origin { ORIGIN_DEFAULT, ORIGIN_FILE, ORIGIN_ENV };
/* At least the number of settings in config.c's table (a static assertion checks it). */
#define CONFIG_KEYS_MAX 64

struct config {
	int port;             /* nginx listen port (127.0.0.1 unless listen is set) */
	char *listen;         /* nginx listen address */
	char *data_dir;       /* state: database, sockets, logs, nginx temp */
	char *run_dir;        /* the sockets and the pool's and daemon's .auth files
				 * (default $data_dir/run; /run/aichatd under systemd) */
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
	/* the push daemon's connections (WebSocket, SSE, workflow's stream): in all and per
	 * client address (nginx's X-Real-IP); 0: computed at start from the descriptors it has */
	int max_connections;
	int max_connections_per_addr;
	int ws_fragment_timeout_s; /* an unfinished WebSocket message is closed after this */
	size_t ws_pending_max;     /* bytes held for all unfinished WebSocket messages */
	char *socket_group;   /* the group given the sockets nginx reaches (NULL or "": none) */
	int max_runs;         /* AI runs streaming at once in the push daemon; the rest queue */
	/* provenance, by the index of config.c's table: the origin of each value and, for
	 * ORIGIN_FILE, its line in file */
	enum config_origin origin[CONFIG_KEYS_MAX];
	int origin_line[CONFIG_KEYS_MAX];
	char *file;        /* the settings file looked for (NULL: none) */
	int file_optional; /* it is the default one, which may be absent */
	int file_read;     /* it was there and was read */
	char *metrics_allow;  /* who may read /metrics: addresses and CIDRs (addr.h) */
	int drain_timeout_s;  /* a stopping worker's requests in flight may take this long */
	/* beyond one machine (docs/SCALING.md): the store on a PostgreSQL server (a libpq
	 * URL; "": SQLite in the data directory), the live bus between hosts' daemons on Redis
	 * ("": none, one host), this daemon's name as the owner of the runs it makes
	 * ("": hostname:data_dir), and how long a run stays its owner's unrenewed */
	char *database_url;
	char *redis_url;
	char *node_id;
	int lease_s;
	char *store_target; /* derived: database_url when set, else db_path (store_open()) */
};

/* The settings file read when none is named: AICHATD_SYSCONFDIR "/aichatd/aichatd.conf"
 * (configure's --sysconfdir; /etc/aichatd/aichatd.conf in the Debian package). */
const char *config_default_file(void);
/* Load defaults, then the file at path (NULL: the default file, read when it exists),
 * then the environment. A path that is given must name a readable file: missing or
 * unreadable, it is an error naming it. Returns 0, or -1 with a message in err (ERR_LEN
 * bytes). Free with config_free(), also after a failure. */
int config_load(struct config *c, const char *path, char *err);
/* The same with the file at path (NULL: none), which may be absent when optional. */
int config_read(struct config *c, const char *path, int optional, char *err);
/* Setting i (0, 1, ... in the table's order, then the computed paths): its name, with
 * its value as text in value (secrets masked: jwt_secret and openai_api_key as ********,
 * a URL's password, query values and, for n8n_webhook_url, path) and where it came from in
 * source ("default", "file PATH:LINE", "environment AICHATD_X", "computed from
 * data_dir" or "computed from run_dir"). NULL past the last. */
const char *config_show(const struct config *c, size_t i, char *value, size_t vn,
			char *source, size_t sn);
/* Every setting as "key = value  # source", one a line, after a line naming the file. */
void config_print(const struct config *c, FILE *out);
void config_free(struct config *c);
/* Print the settings nginx and the scripts need as shell assignments (quoted). */
void config_print_env(const struct config *c);

/* Files only for their owner: set the umask to 077, and make the data directory and
 * run_dir 0700 (0710 with group socket_group when one is set, so that its members, nginx's
 * user, reach the sockets and read nothing) and the database with its -wal and -shm,
 * where they exist, 0600. A mode that cannot be set is a warning on stderr; RC_ERR (with
 * err) only for a socket_group that names no group. */
int config_private_files(const struct config *c, char *err);
/* A socket nginx connects to (the FastCGI socket, push-http.sock): mode 0660, and group
 * socket_group when one is set. RC_OK, or RC_ERR with err. */
int config_share_socket(const struct config *c, const char *path, char *err);
/*
 * One identity for the pool and the push daemon. Each writes its effective auth settings
 * (the mode and a SHA-256 of the secret, never the secret; with its PID) to
 * $run_dir/<who>.auth (who: "pool" or "push"), and refuses to run beside a live
 * process of the other kind whose settings differ.
 */
/* Check the other's file, write ours, check again: RC_OK, or RC_CONFLICT (or RC_ERR) with
 * a message in err; on a conflict after writing, ours is removed again. */
int config_identity_claim(const struct config *c, const char *who, const char *other,
			  char *err);
/* RC_OK when the other's file is absent, left by a process that is gone, or agrees;
 * RC_CONFLICT with a message naming both settings when they differ. */
int config_identity_check(const struct config *c, const char *other, char *err);
/* Write our file (mode 0600, replaced atomically). RC_OK or RC_ERR. */
int config_identity_publish(const struct config *c, const char *who, char *err);
/* Remove our file, if it is still ours. */
void config_identity_withdraw(const struct config *c, const char *who);
/* The names of the settings whose values differ between a and b, space-separated, into
 * out (n bytes; "" when none): never their values, which may be secrets. */
void config_changed(const struct config *a, const struct config *b, char *out, size_t n);

#endif
