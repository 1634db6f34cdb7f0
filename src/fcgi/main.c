/*
 * aichatd: the FastCGI program. `aichatd serve` is a master that applies migrations, opens
 * the FastCGI socket and keeps a pool of worker processes on it, each running several
 * accept loops (threads) with their own SQLite connection. nginx talks to the socket.
 * Here: the master, the workers' accept loops (each request's phases, request.h, around
 * router_dispatch()) and the other subcommands.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcgiapp.h>

#include "config.h"
#include "rc.h"
#include "buf.h"
#include "pool.h"
#include "store.h"
#include "provider.h"
#include "request.h"
#include "router.h"
#include "token.h"
#include "jsonpool.h"
#include "admin.h"
#include "nginx-conf.h"
#include "metrics.h"

#define RESPONSE_CAP (16u << 20)

static struct config cfg;
static int fcgi_sock = -1;
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "aichatd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
accept_loop(void *arg)
{
	struct req r;
	FCGX_Request fr;
	char err[ERR_LEN];
	int rc;

	(void)arg;
	memset(&r, 0, sizeof(r));
	r.pool = pool_create();
	r.store = store_open(cfg.db_path, err);
	if (!r.pool || !r.store)
		die("worker: %s", r.store ? "out of memory" : err);
	r.cfg = &cfg;
	buf_init(&r.out, RESPONSE_CAP);
	buf_init(&r.headers, 64 * 1024);
	FCGX_InitRequest(&fr, fcgi_sock, 0);
	for (;;) {
		req_reset(&r);
		pthread_mutex_lock(&accept_lock);
		rc = FCGX_Accept_r(&fr);
		pthread_mutex_unlock(&accept_lock);
		if (rc < 0) {
			if (rc == -EINTR || errno == EINTR)
				continue;
			break;
		}
		req_load(&r, &fr);
		router_dispatch(&r);
		req_send(&r, &fr);
		FCGX_Finish_r(&fr);
	}
	return NULL;
}

static void
worker_main(void)
{
	pthread_t *t = calloc((size_t)cfg.threads, sizeof(*t));
	int i;

	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN); /* Ctrl-C reaches the master, which stops us in order */
	signal(SIGPIPE, SIG_IGN);
	if (!t)
		die("%s", "out of memory");
	json_pool_install();
	for (i = 1; i < cfg.threads; i++)
		if (pthread_create(&t[i], NULL, accept_loop, NULL) != 0)
			die("%s", "cannot start a thread");
	accept_loop(NULL);
	_exit(1);
}

static volatile sig_atomic_t stopping;

static void
on_stop(int sig)
{
	(void)sig;
	stopping = 1;
}

/* The data directory and run_dir, for their owner only (see config_private_files()). */
static void
mkdirs(void)
{
	char path[4096], err[ERR_LEN];

	umask(077);
	snprintf(path, sizeof(path), "%s", cfg.data_dir);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		die("cannot create %s", path);
	snprintf(path, sizeof(path), "%s", cfg.run_dir);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		die("cannot create %s", path);
	if (config_private_files(&cfg, err) != RC_OK)
		die("%s", err);
}

/* Migrations, the model configs the operator's settings name, and a start entry. */
static void
prepare_store(void)
{
	char err[ERR_LEN], msg[256];
	struct store *st = store_open(cfg.db_path, err);
	/* one a provider, each named after it */
	char *b = (char *)provider_name(PROVIDER_BUILTIN);
	char *o = (char *)provider_name(PROVIDER_OPENAI);
	char *n = (char *)provider_name(PROVIDER_N8N);
	struct mcfg m[PROVIDER_COUNT] = {
		[PROVIDER_BUILTIN] = {b, b, b, "1", "{\"temperature\":0}", "", 0},
		[PROVIDER_OPENAI] = {o, o, cfg.openai_model, "", "{\"temperature\":0.7}", "", 0},
		[PROVIDER_N8N] = {n, n, "n8n-workflow", "", "{}", "", 0},
	};
	int i;

	if (!st)
		die("%s", err);
	if (store_migrate(st, err) != RC_OK)
		die("%s", err);
	for (i = 0; i < PROVIDER_COUNT; i++)
		if (store_mcfg_ensure(st, &m[i], err) != RC_OK)
			die("%s", err);
	snprintf(msg, sizeof(msg), "aichatd %s started: %d workers x %d threads, auth %s",
		 PACKAGE_VERSION, cfg.workers, cfg.threads, cfg.auth == AUTH_JWT ? "jwt" : "off");
	store_log(st, "info", msg);
	store_close(st);
}

static pid_t
spawn_worker(void)
{
	pid_t pid = fork();

	if (pid == 0)
		worker_main();
	return pid;
}

static int
serve(void)
{
	pid_t *pids;
	struct sigaction sa;
	char why[ERR_LEN];
	int i, alive;
	time_t last_death = 0;

	mkdirs();
	{
		/* one identity with the push daemon: never beside one that checks tokens
		 * differently (see docs/ARCHITECTURE.md) */
		char err[ERR_LEN];
		if (config_identity_claim(&cfg, "pool", "push", err) != RC_OK)
			die("%s", err);
	}
	prepare_store();
	if (FCGX_Init() != 0)
		die("%s", "FCGX_Init failed");
	unlink(cfg.fcgi_socket);
	fcgi_sock = FCGX_OpenSocket(cfg.fcgi_socket, 1024);
	if (fcgi_sock < 0)
		die("cannot listen on %s", cfg.fcgi_socket);
	/* nginx's user reaches it through socket_group (as php-fpm's listen.group) */
	if (config_share_socket(&cfg, cfg.fcgi_socket, why) != RC_OK)
		die("%s", why);
	/* the counters all workers add to, mapped before the first fork (metrics.h) */
	if (metrics_init(router_table, why) != RC_OK)
		die("%s", why);
	pids = calloc((size_t)cfg.workers, sizeof(*pids));
	if (!pids)
		die("%s", "out of memory");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	for (i = 0; i < cfg.workers; i++)
		pids[i] = spawn_worker();
	fprintf(stderr, "aichatd: %d workers on %s\n", cfg.workers, cfg.fcgi_socket);
	while (!stopping) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);

		if (pid < 0)
			continue; /* EINTR: a stop signal, looked at above */
		for (i = 0; i < cfg.workers; i++) {
			if (pids[i] != pid)
				continue;
			fprintf(stderr, "aichatd: worker %d exited (status %d), restarting\n",
				(int)pid, status);
			/* a worker that keeps dying must not spin the machine */
			if (time(NULL) == last_death)
				sleep(1);
			last_death = time(NULL);
			if (!stopping)
				pids[i] = spawn_worker();
		}
	}
	for (i = 0; i < cfg.workers; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	do {
		alive = 0;
		for (i = 0; i < cfg.workers; i++) {
			if (pids[i] > 0 && waitpid(pids[i], NULL, 0) == pids[i])
				pids[i] = 0;
			alive |= pids[i] > 0;
		}
	} while (alive && errno == EINTR);
	unlink(cfg.fcgi_socket);
	config_identity_withdraw(&cfg, "pool");
	{
		char err[ERR_LEN];
		struct store *st = store_open(cfg.db_path, err);
		if (st) {
			store_log(st, "info", "aichatd stopped");
			store_close(st);
		}
	}
	free(pids);
	return 0;
}

/* The subcommands main() runs itself; admin.c's follow them in the usage. */
static int
cmd_serve(const struct config *c, int argc, char **argv)
{
	(void)c;
	(void)argv;
	return argc == 1 ? serve() : 2;
}

static int
cmd_env(const struct config *c, int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return 2;
	config_print_env(c);
	return 0;
}

static int
cmd_nginx_conf(const struct config *c, int argc, char **argv)
{
	char err[ERR_LEN];

	(void)argv;
	if (argc != 1)
		return 2;
	if (nginx_conf_write(c, stdout, err) != RC_OK) {
		fprintf(stderr, "aichatd: %s\n", err);
		return 1;
	}
	return 0;
}

static const struct admin_cmd main_commands[] = {
	{"serve", "", "run the FastCGI pool (migrates the database first)",
	 "Runs the FastCGI pool on RUN_DIR/fcgi.sock (DATA_DIR/run by default): applies the migrations (refusing a\n"
	 "database newer than the program), then keeps WORKERS worker processes. SIGTERM or\n"
	 "SIGINT stops it.\n",
	 cmd_serve},
	{"env", "", "print the settings the scripts need, as shell lines",
	 "Prints AICHATD_PORT, _LISTEN, _DATA_DIR, _BODY_LIMIT, _FCGI_SOCKET,\n"
	 "_PUSH_HTTP_SOCKET and _AUTH as shell assignments (scripts/stack evaluates them).\n",
	 cmd_env},
	{"nginx-conf", "", "print the nginx snippet for the settings in force",
	 "Prints the locations to include in an nginx server {} block for the settings in force:\n"
	 "the FastCGI socket and the push daemon's socket (run_dir), the body limit and the\n"
	 "timeouts, with the FastCGI parameters inline (nothing is included from the data\n"
	 "directory), so that it can live in /etc/nginx/snippets/.\n",
	 cmd_nginx_conf},
	{NULL, NULL, NULL, NULL, NULL},
};

static const struct admin_cmd *const command_tables[] = {main_commands, admin_commands};

static const struct admin_cmd *
find_command(const char *name)
{
	const struct admin_cmd *k;
	size_t t;

	for (t = 0; t < sizeof(command_tables) / sizeof(command_tables[0]); t++)
		for (k = command_tables[t]; k->name; k++)
			if (strcmp(k->name, name) == 0)
				return k;
	return NULL;
}

static void
usage(FILE *out)
{
	const struct admin_cmd *k;
	char left[64];
	size_t t;

	fprintf(out, "usage: aichatd [-c CONFIG] COMMAND [ARGS]\n");
	for (t = 0; t < sizeof(command_tables) / sizeof(command_tables[0]); t++)
		for (k = command_tables[t]; k->name; k++) {
			snprintf(left, sizeof(left), "%s %s", k->name, k->args);
			if (strlen(left) > 28)
				fprintf(out, "  %s\n  %-28s %s\n", left, "", k->summary);
			else
				fprintf(out, "  %-28s %s\n", left, k->summary);
		}
	fprintf(out,
		"  %-28s %s\n  %-28s %s\n  %-28s %s\n", "version", "print the version number",
		"--version", "print the program's name and version", "--help, -h",
		"print this text");
	fprintf(out,
		"COMMAND --help prints what a command does. Settings: the file named by -c or\n"
		"AICHATD_CONFIG (it must exist when named), else %s\n"
		"(read when present), then the AICHATD_<KEY> environment variables. See\n"
		"aichatd(8) and aichatd.conf(5).\n", config_default_file());
}

int
main(int argc, char **argv)
{
	const char *conf = getenv("AICHATD_CONFIG");
	const struct admin_cmd *k;
	char err[ERR_LEN];
	int i = 1;

	if (conf && !*conf)
		conf = NULL; /* set but empty: none named, the default file */
	if (argc > 2 && strcmp(argv[1], "-c") == 0) {
		conf = argv[2];
		i = 3;
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	/* before the settings: these touch no file at all */
	if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[i], "version") == 0) {
		puts(PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(argv[i], "--version") == 0) {
		printf("aichatd %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (!(k = find_command(argv[i]))) {
		usage(stderr);
		return 2;
	}
	if (i + 1 < argc && (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0)) {
		printf("usage: aichatd [-c CONFIG] %s %s\n%s", k->name, k->args, k->help);
		return 0;
	}
	if (config_load(&cfg, conf, err) != RC_OK)
		die("%s", err);
	i = k->run(&cfg, argc - i, argv + i);
	if (i == 2 && (k->run == cmd_serve || k->run == cmd_env || k->run == cmd_nginx_conf))
		usage(stderr);
	return i;
}
