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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <poll.h>
#include <fcntl.h>
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
#include "oplog.h"
#include "pidlock.h"

#define RESPONSE_CAP (16u << 20)

static struct config cfg;
static int fcgi_sock = -1;
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;
	char msg[ERR_LEN * 2];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	oplog_stderr("error", "%s", msg);
	exit(1);
}

/* ---- the workers ---- */

/* Set by each worker for itself: readable once it is told to stop (SIGTERM). */
static int wake_fd[2] = {-1, -1};
/* The master's end of the worker's "ready" pipe: a byte once every accept loop has its
 * store open, then closed. */
static int ready_fd = -1;
static int ready_count;
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;

/* One connection from the shared listening socket (non-blocking: the other workers poll it
 * too), or -1 once the worker is told to stop. The accept lock is held: one thread of a
 * worker waits here, the others wait for the lock. */
static int
take_connection(void)
{
	struct pollfd p[2] = {{fcgi_sock, POLLIN, 0}, {wake_fd[0], POLLIN, 0}};

	for (;;) {
		int fd;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (p[1].revents)
			return -1; /* stopping: what waits in the backlog is another worker's */
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(fcgi_sock, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			poll(&p[1], 1, 100); /* out of descriptors: a pause, not a spin */
		/* else EAGAIN (another worker took it), ECONNABORTED, EINTR: look again */
	}
}

static void
thread_ready(void)
{
	char c = 'r';

	pthread_mutex_lock(&ready_lock);
	if (++ready_count == cfg.threads && ready_fd >= 0) {
		if (write(ready_fd, &c, 1) != 1)
			oplog_stderr("warning", "worker %ld: cannot say it is ready", (long)getpid());
		close(ready_fd);
		ready_fd = -1;
	}
	pthread_mutex_unlock(&ready_lock);
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
	r.store = store_open(cfg.store_target, err);
	if (!r.pool || !r.store)
		die("worker: %s", r.store ? "out of memory" : err);
	r.cfg = &cfg;
	buf_init(&r.out, RESPONSE_CAP);
	buf_init(&r.headers, 64 * 1024);
	/* no listening socket of libfcgi's own: the connection is ours (take_connection), and
	 * FCGX_Accept_r reads the request on it (a kept one, nginx's fastcgi_keep_conn, too) */
	FCGX_InitRequest(&fr, -1, 0);
	thread_ready();
	for (;;) {
		req_reset(&r);
		if (fr.ipcFd < 0) {
			pthread_mutex_lock(&accept_lock);
			fr.ipcFd = take_connection();
			pthread_mutex_unlock(&accept_lock);
			if (fr.ipcFd < 0)
				break;
			/* else FCGX_Accept_r's first step (finishing the last request) closes it;
			 * the request's own flags set it again */
			fr.keepConnection = 1;
		}
		rc = FCGX_Accept_r(&fr);
		if (rc < 0)
			continue; /* closed before its request came: the connection is gone */
		req_load(&r, &fr);
		router_dispatch(&r);
		req_send(&r, &fr);
		FCGX_Finish_r(&fr);
	}
	FCGX_Free(&fr, 1);
	req_reset(&r);
	buf_free(&r.out);
	buf_free(&r.headers);
	store_close(r.store);
	pool_destroy(r.pool);
	return NULL;
}

/*
 * A worker: cfg.threads accept loops, and this thread waiting for SIGTERM (from the master
 * stopping or replacing it, or from the kernel when the master dies). Then no connection is
 * taken any more, the requests in flight are finished, and the worker exits; one that is
 * not done within drain_timeout_s is ended by SIGALRM.
 */
static void
worker_main(pid_t master, int ready)
{
	pthread_t *t = calloc((size_t)cfg.threads, sizeof(*t));
	sigset_t stop;
	int i, sig;
	char c = 's';

	/* the master's death is our SIGTERM; and it may have died before we got here */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != master)
		_exit(1);
	ready_fd = ready;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);  /* the master reloads; we are replaced */
	signal(SIGINT, SIG_IGN);  /* Ctrl-C reaches the master, which stops us in order */
	signal(SIGCHLD, SIG_DFL);
	signal(SIGALRM, SIG_DFL); /* the end of the drain */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	/* SIGTERM for this thread's sigwait alone: the accept loops' reads and writes are
	 * never interrupted by it */
	pthread_sigmask(SIG_SETMASK, &stop, NULL);
	if (!t || pipe2(wake_fd, O_CLOEXEC) != 0)
		die("%s", "out of memory");
	json_pool_install();
	for (i = 0; i < cfg.threads; i++)
		if (pthread_create(&t[i], NULL, accept_loop, NULL) != 0)
			die("%s", "cannot start a thread");
	while (sigwait(&stop, &sig) != 0)
		;
	alarm((unsigned)cfg.drain_timeout_s);
	if (write(wake_fd[1], &c, 1) != 1)
		_exit(1);
	for (i = 0; i < cfg.threads; i++)
		pthread_join(t[i], NULL);
	free(t);
	_exit(0);
}

/* ---- the master ---- */

static int stopping; /* the master's: SIGTERM or SIGINT taken */

static void
on_signal(int sig)
{
	(void)sig; /* taken by sigtimedwait; the handler only keeps SIGCHLD from being ignored */
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

/* Migrations and the model configs the operator's settings name. */
static void
prepare_store(void)
{
	char err[ERR_LEN];
	struct store *st = store_open(cfg.store_target, err);
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
	store_close(st);
}

/* An entry of the operation log from the master, which holds no connection. */
static void
master_log(const char *level, const char *msg)
{
	char err[ERR_LEN];
	struct store *st = store_open(cfg.store_target, err);

	oplog(st, level, "%s", msg);
	if (st)
		store_close(st);
}

/* The master's children: the workers in service and the ones draining. Reloads add
 * draining ones; at most KIDS_MAX at a time (a reload is refused when it would pass it). */
#define KIDS_MAX 256
struct kid {
	pid_t pid;
	int draining;
};
static struct kid kids[KIDS_MAX];
static int nkids;

/* Start a worker and wait (up to READY_MS) until its accept loops take connections: its
 * PID, or -1 when it died or did not get there (then it is stopped). */
#define READY_MS 10000
static pid_t
spawn_worker(void)
{
	struct pollfd p;
	pid_t pid, master = getpid();
	int fds[2], n = -1;
	char c;

	if (nkids >= KIDS_MAX || pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		worker_main(master, fds[1]);
	}
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		return -1;
	}
	kids[nkids].pid = pid;
	kids[nkids++].draining = 0;
	p.fd = fds[0];
	p.events = POLLIN;
	do
		n = poll(&p, 1, READY_MS);
	while (n < 0 && errno == EINTR);
	n = n == 1 ? (int)read(fds[0], &c, 1) : -1;
	close(fds[0]);
	if (n != 1) {
		kids[nkids - 1].draining = 1; /* reaped with the others, not replaced */
		kill(pid, SIGKILL);
		return -1;
	}
	return pid;
}

static void
drain(pid_t pid)
{
	int i;

	for (i = 0; i < nkids; i++)
		if (kids[i].pid == pid)
			kids[i].draining = 1;
	kill(pid, SIGTERM);
}

static int
in_service(void)
{
	int i, n = 0;

	for (i = 0; i < nkids; i++)
		n += !kids[i].draining;
	return n;
}

/* What the pool cannot change while it runs: the data directory (the database, the
 * sockets), the store's server (database_url) and the others beyond one machine, the
 * sockets' group, and the identity shared with the push daemon (auth and
 * jwt_secret: the daemon beside us checks tokens the same way, see config_identity_claim). */
static int
keep_restart_only(struct config *n, char *kept, size_t len)
{
	char **olds[] = {&cfg.data_dir, &cfg.socket_group, &cfg.jwt_secret, &cfg.run_dir,
			 &cfg.database_url, &cfg.redis_url, &cfg.node_id,
			 &cfg.db_path, &cfg.fcgi_socket, &cfg.push_http_socket, &cfg.store_target};
	char **news[] = {&n->data_dir, &n->socket_group, &n->jwt_secret, &n->run_dir,
			 &n->database_url, &n->redis_url, &n->node_id,
			 &n->db_path, &n->fcgi_socket, &n->push_http_socket, &n->store_target};
	static const char *const names[] = {"data_dir", "socket_group", "jwt_secret", "run_dir",
					    "database_url", "redis_url", "node_id"};
	size_t i, o = 0;

	*kept = '\0';
	for (i = 0; i < sizeof(olds) / sizeof(olds[0]); i++) {
		const char *a = *olds[i] ? *olds[i] : "", *b = *news[i] ? *news[i] : "";
		char *d;

		if (strcmp(a, b) == 0)
			continue;
		if (i < sizeof(names) / sizeof(names[0]))
			o += (size_t)snprintf(kept + o, len - o, "%s%s", o ? " " : "", names[i]);
		if (!(d = strdup(a)))
			return RC_NOMEM;
		free(*news[i]);
		*news[i] = d; /* the derived paths go with data_dir and run_dir */
	}
	if (n->auth != cfg.auth) {
		snprintf(kept + o, len - o, "%sauth", o ? " " : "");
		n->auth = cfg.auth;
	}
	return RC_OK;
}

/*
 * SIGHUP: the settings file and the environment read again; then each worker replaced in
 * turn: a new one started (on the new settings) and ready on the shared socket, then an old
 * one told to drain. Connections wait in the socket's backlog meanwhile, never refused.
 */
static void
reload(const char *conf_path)
{
	struct config n, old;
	char err[ERR_LEN], msg[900], changed[400], kept[100];
	pid_t *olds;
	int i, nold = 0, started = 0;

	if (config_load(&n, conf_path, err) != RC_OK) {
		snprintf(msg, sizeof(msg), "reload refused, the running settings stay: %s", err);
		config_free(&n);
		master_log("error", msg);
		return;
	}
	if (keep_restart_only(&n, kept, sizeof(kept)) != RC_OK) {
		config_free(&n);
		master_log("error", "reload refused: out of memory");
		return;
	}
	config_changed(&cfg, &n, changed, sizeof(changed));
	olds = calloc((size_t)nkids + 1, sizeof(*olds));
	if (!olds || nkids + n.workers > KIDS_MAX) {
		free(olds);
		config_free(&n);
		master_log("error", "reload refused: too many workers are still draining");
		return;
	}
	for (i = 0; i < nkids; i++)
		if (!kids[i].draining)
			olds[nold++] = kids[i].pid;
	old = cfg;
	cfg = n; /* the new workers' settings */
	for (i = 0; i < n.workers || i < nold; i++) {
		if (i < n.workers) {
			if (spawn_worker() < 0)
				break;
			started++;
		}
		if (i < nold)
			drain(olds[i]);
	}
	if (started < n.workers) {
		/* a new worker would not start: the old settings come back, and with them the
		 * workers that had been replaced */
		for (i = 0; i < nkids; i++)
			if (!kids[i].draining)
				drain(kids[i].pid);
		cfg = old;
		while (in_service() < cfg.workers && spawn_worker() > 0)
			;
		snprintf(msg, sizeof(msg), "reload failed: a worker on the new settings did not "
			 "start; %d workers on the running settings", in_service());
		config_free(&n);
		free(olds);
		master_log("error", msg);
		return;
	}
	snprintf(msg, sizeof(msg),
		 "settings reloaded: %s%s; %d workers replaced by %d x %d threads%s%s", changed,
		 *changed ? " changed" : "nothing changed", nold, cfg.workers, cfg.threads,
		 *kept ? "; needs a restart, kept at its running value: " : "", kept);
	config_free(&old);
	free(olds);
	master_log(*kept ? "warning" : "info", msg);
}

/* A worker that passed drain_timeout_s is said (SIGALRM ended it). */
static void
drain_ended(pid_t pid, int status)
{
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		oplog_stderr("warning", "worker %d: requests still in flight after drain_timeout_s "
			     "(%d s); ended", (int)pid, cfg.drain_timeout_s);
}

/* Children that ended: draining ones are gone for good; one in service is said, and
 * replaced by top_up(). */
static void
reap(void)
{
	int status, i, was_draining;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		was_draining = -1;
		for (i = 0; i < nkids; i++) {
			if (kids[i].pid != pid)
				continue;
			was_draining = kids[i].draining;
			kids[i] = kids[--nkids];
			break;
		}
		if (was_draining < 0)
			continue;
		if (was_draining)
			drain_ended(pid, status);
		if (was_draining || stopping)
			continue;
		oplog_stderr("warning", "worker %d exited (status %d), restarting", (int)pid, status);
	}
}

/* As many workers in service as the settings say: one started a turn, at most one a
 * second (a worker that keeps dying, or cannot start, must not spin the machine). */
static void
top_up(void)
{
	static time_t last;

	if (stopping || in_service() >= cfg.workers)
		return;
	if (time(NULL) == last)
		sleep(1);
	last = time(NULL);
	if (spawn_worker() < 0)
		oplog_stderr("warning", "a worker did not start; trying again");
}

static int
serve(const char *conf_path)
{
	sigset_t set;
	struct sigaction sa;
	char err[ERR_LEN], msg[ERR_LEN + 128];
	int i, sig;

	/* a daemon that checks tokens otherwise is the worse news: said first (this only
	 * reads its stamp) */
	if (config_identity_check(&cfg, "push", err) != RC_OK)
		die("%s", err);
	/* before anything in the data directory is touched: one pool on it */
	if (pidlock_take(cfg.data_dir, "pool", err) < 0)
		die("%s; not starting", err);
	mkdirs();
	/* one identity with the push daemon: never beside one that checks tokens differently
	 * (see docs/ARCHITECTURE.md) */
	if (config_identity_claim(&cfg, "pool", "push", err) != RC_OK)
		die("%s", err);
	prepare_store();
	if (FCGX_Init() != 0)
		die("%s", "FCGX_Init failed");
	unlink(cfg.fcgi_socket);
	fcgi_sock = FCGX_OpenSocket(cfg.fcgi_socket, 1024);
	if (fcgi_sock < 0)
		die("cannot listen on %s", cfg.fcgi_socket);
	/* every worker polls it: a connection another took is EAGAIN, not a wait */
	if (fcntl(fcgi_sock, F_SETFL, fcntl(fcgi_sock, F_GETFL) | O_NONBLOCK) != 0)
		die("cannot make %s non-blocking", cfg.fcgi_socket);
	/* nginx's user reaches it through socket_group (as php-fpm's listen.group) */
	if (config_share_socket(&cfg, cfg.fcgi_socket, err) != RC_OK)
		die("%s", err);
	/* the counters all workers add to, mapped before the first fork (metrics.h) */
	if (metrics_init(router_table, err) != RC_OK)
		die("%s", err);
	/* the master's signals are taken in turn by sigtimedwait below (no race with a
	 * flag); the workers set their own */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < cfg.workers; i++)
		if (spawn_worker() < 0)
			oplog_stderr("warning", "a worker did not start; trying again");
	snprintf(msg, sizeof(msg), "aichatd %s started: %d workers x %d threads, auth %s, on %s",
		 PACKAGE_VERSION, cfg.workers, cfg.threads, cfg.auth == AUTH_JWT ? "jwt" : "off",
		 cfg.fcgi_socket);
	master_log("info", msg);
	while (!stopping) {
		struct timespec ts = {1, 0};

		reap();
		top_up();
		sig = sigtimedwait(&set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT)
			stopping = 1;
		else if (sig == SIGHUP)
			reload(conf_path);
	}
	/* each worker finishes what it has (drain_timeout_s at most) */
	for (i = 0; i < nkids; i++)
		kill(kids[i].pid, SIGTERM);
	while (nkids > 0) {
		int status;
		pid_t pid = waitpid(-1, &status, 0);

		if (pid < 0 && errno != EINTR)
			break;
		for (i = 0; i < nkids; i++) {
			if (kids[i].pid != pid)
				continue;
			drain_ended(pid, status);
			kids[i] = kids[--nkids];
			break;
		}
	}
	unlink(cfg.fcgi_socket);
	config_identity_withdraw(&cfg, "pool");
	master_log("info", "aichatd stopped");
	return 0;
}

/* The subcommands main() runs itself; admin.c's follow them in the usage. */
/* the settings file main() was given (NULL: the default one), read again at reload */
static const char *conf_named;

static int
cmd_serve(const struct config *c, int argc, char **argv)
{
	(void)c;
	(void)argv;
	return argc == 1 ? serve(conf_named) : 2;
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

	oplog_init("aichatd");
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
	conf_named = conf;
	i = k->run(&cfg, argc - i, argv + i);
	if (i == 2 && (k->run == cmd_serve || k->run == cmd_env || k->run == cmd_nginx_conf))
		usage(stderr);
	return i;
}
