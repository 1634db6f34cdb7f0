/*
 * aichatd-push: the push daemon's main. One libuv loop, and on it: the runs (runs.c: AI
 * replies taken from the database, the queue), the control socket the workers use
 * (control.c), and the connections nginx hands over (the hub, hub.h); the writer thread
 * (writer.c) makes the hot writes. This file reads the settings, opens the store, starts
 * the parts, wires the runs' events to the connections and the waiters, and stops it all
 * on SIGTERM or SIGINT.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/resource.h>
#include <uv.h>
#include <jansson.h>

#include "rc.h"
#include "jsonpool.h"
#include "buf.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "store.h"
#include "llm.h"
#include "push-proto.h"
#include "log.h"
#include "oplog.h"
#include "pidlock.h"
#include "writer.h"
#include "runs.h"
#include "control.h"
#include "hub.h"

#define POLL_MS 1000 /* the database is looked at this often without wake-ups */

static struct config cfg;
static uv_loop_t *loop;
static struct store *store;
static uv_timer_t poll_timer;
static uv_signal_t sigterm, sigint, sighup;
static const char *conf_path;
static int stopping;

/* ---- what the runs tell the connections and the waiters ---- */

static void
run_ended(struct job_run *r)
{
	hub_done(r); /* its subscribers */
	sync_ended(r->id); /* v1's and workflow's sends held in the hub */
	control_ended(r->id, r->end.status); /* the workers waiting for it */
}

static const struct runs_events run_events = {hub_chunk, hub_raw, run_ended};

/* What the writer hands back: a post (a WebSocket's is answered before its run's first
 * event), or an end, written. */
static void
on_written_item(struct witem *it)
{
	switch (it->kind) {
	case W_POST:
		if (it->post->origin)
			ws_posted(it);
		runs_post_written(it);
		break;
	case W_END:
		runs_end_written(it->run);
		break;
	}
	witem_free(it);
}

static void
on_poll_timer(uv_timer_t *t)
{
	(void)t;
	runs_poll();
	control_check_waiters();
	sync_check();
}

/* ---- start and stop ---- */

static void
close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void
on_signal(uv_signal_t *s, int sig)
{
	(void)s;
	(void)sig;
	if (stopping)
		return;
	stopping = 1;
	oplog(store, "info", "aichatd-push stopping; %d runs stay in the database for the next start",
	      runs_shutdown());
	writer_stop(); /* the posts and ends queued are written and handed back */
	/* the runs stay "running" in the database: the next start makes them anew */
	runs_free_all();
	llm_shutdown();
	hub_close_all();
	control_close_all();
	uv_walk(loop, close_walk, NULL);
}

/* A string setting taken from the new settings: the old text is freed (nothing keeps a
 * pointer to it past the loop's turn: the runs and the connections read the settings when
 * they use them). */
static void
take_str(char **live, char **fresh)
{
	free(*live);
	*live = *fresh;
	*fresh = NULL;
}

/*
 * SIGHUP: the settings file and the environment read again, and what can change live
 * applied: the providers' settings, the timeouts, the heartbeats, the limits. The data
 * directory, run_dir, the sockets' group, auth and jwt_secret, workers and threads need a
 * restart.
 */
static void
on_reload(uv_signal_t *s, int sig)
{
	struct config n;
	char err[ERR_LEN], changed[400], kept[200];
	size_t o = 0;

	(void)s;
	(void)sig;
	if (stopping)
		return;
	if (config_load(&n, conf_path, err) != RC_OK) {
		oplog(store, "error", "aichatd-push: reload refused, the running settings stay: %s",
		      err);
		config_free(&n);
		return;
	}
	/* the computed caps compare as computed */
	if (!n.max_connections)
		n.max_connections = cfg.max_connections;
	if (!n.max_connections_per_addr)
		n.max_connections_per_addr = cfg.max_connections_per_addr;
	config_changed(&cfg, &n, changed, sizeof(changed));
	*kept = '\0';
#define KEEP(f)                                                                                \
	if (strcmp(cfg.f ? cfg.f : "", n.f ? n.f : "") != 0)                                 \
		o += (size_t)snprintf(kept + o, sizeof(kept) - o, "%s" #f, o ? " " : "");
	KEEP(data_dir)
	KEEP(socket_group)
	KEEP(jwt_secret)
	KEEP(run_dir)
#undef KEEP
	if (cfg.auth != n.auth)
		o += (size_t)snprintf(kept + o, sizeof(kept) - o, "%sauth", o ? " " : "");
	if (cfg.workers != n.workers || cfg.threads != n.threads)
		snprintf(kept + o, sizeof(kept) - o, "%sworkers/threads (for the computed caps)",
			 o ? " " : "");
	take_str(&cfg.provider, &n.provider);
	take_str(&cfg.openai_base_url, &n.openai_base_url);
	take_str(&cfg.openai_api_key, &n.openai_api_key);
	take_str(&cfg.openai_model, &n.openai_model);
	take_str(&cfg.n8n_webhook_url, &n.n8n_webhook_url);
	cfg.builtin_delay_ms = n.builtin_delay_ms;
	cfg.connect_timeout_s = n.connect_timeout_s;
	cfg.reply_timeout_s = n.reply_timeout_s;
	cfg.sse_heartbeat_s = n.sse_heartbeat_s;
	cfg.ws_ping_s = n.ws_ping_s;
	cfg.client_buffer = n.client_buffer;
	cfg.ws_max_message = n.ws_max_message;
	cfg.ws_fragment_timeout_s = n.ws_fragment_timeout_s;
	cfg.ws_pending_max = n.ws_pending_max;
	cfg.max_connections = n.max_connections;
	cfg.max_connections_per_addr = n.max_connections_per_addr;
	cfg.max_runs = n.max_runs;
	cfg.drain_timeout_s = n.drain_timeout_s;
	writer_set_provider(cfg.provider);
	hub_reconfigure(); /* the heartbeat timer's period */
	config_free(&n);
	oplog(store, *kept ? "warning" : "info", "aichatd-push: settings reloaded: %s%s%s%s",
	      *changed ? changed : "nothing changed", *changed ? " (applied where live)" : "",
	      *kept ? "; needs a restart, kept at its running value: " : "", kept);
	runs_poll(); /* max_runs may have grown */
}

static void
pushd_usage(FILE *out)
{
	fprintf(out,
		"usage: aichatd-push [-c CONFIG] [--help | --version]\n"
		"Runs the push daemon: WebSockets, SSE streams and AI runs, on the sockets in\n"
		"run_dir ($AICHATD_DATA_DIR/run/ unless set). Settings: the file named by -c or\n"
		"AICHATD_CONFIG (it must exist when named), else %s (read when\n"
		"present), then the AICHATD_<KEY> environment variables. SIGHUP reloads what can\n"
		"change live; see aichatd-push(8).\n",
		config_default_file());
}

int
main(int argc, char **argv)
{
	const char *conf = getenv("AICHATD_CONFIG");
	char err[ERR_LEN], path[4096];
	struct rlimit rl;
	int i = 1;

	oplog_init("aichatd-push");
	if (conf && !*conf)
		conf = NULL; /* set but empty: none named */
	if (argc > 2 && strcmp(argv[1], "-c") == 0) {
		conf = argv[2];
		i = 3;
	}
	/* before the settings: these touch no file at all */
	if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
		pushd_usage(stdout);
		return 0;
	}
	if (i < argc && strcmp(argv[i], "--version") == 0) {
		printf("aichatd-push %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (i < argc) {
		pushd_usage(stderr);
		return 2;
	}
	conf_path = conf;
	if (config_load(&cfg, conf, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	/* a pool that checks tokens otherwise is the worse news: said first (this only reads
	 * its stamp) */
	if (config_identity_check(&cfg, "pool", err) != RC_OK) {
		log_line("%s; not starting", err);
		return 1;
	}
	/* before anything in the data directory is touched: one daemon on it */
	if (pidlock_take(cfg.data_dir, "push", err) < 0) {
		log_line("%s; not starting", err);
		return 1;
	}
	/* one identity with the pool: a daemon that checks tokens differently from the pool
	 * beside it would let WebSocket clients in on other terms (docs/ARCHITECTURE.md) */
	if (config_identity_claim(&cfg, "push", "pool", err) != RC_OK) {
		log_line("%s; not starting", err);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* every descriptor the hard limit allows: the connection caps are made from it */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want == RLIM_INFINITY ? (rlim_t)1 << 20 : want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_line("cannot raise the descriptor limit: %s", strerror(errno));
	}
	/* files only for their owner, whichever program creates them */
	if (config_private_files(&cfg, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	loop = uv_default_loop();
	store = store_open(cfg.store_target, err);
	if (!store || store_migrate(store, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	runs_init(loop, &cfg, store, time_now_ms(), &run_events);
	json_pool_install(); /* jansson's values from a scratch pool where one is named */
	if (llm_init(loop, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	/* the post socket, then the control socket, then the HTTP socket: the last one's
	 * presence says the daemon is ready (scripts/stack waits for it) */
	if (writer_start(loop, &cfg, on_written_item, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	push_socket_path(&cfg, path, sizeof(path));
	if (control_listen(loop, store, path, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	if (hub_listen(loop, &cfg, store, err) != RC_OK) {
		log_line("%s", err);
		return 1;
	}
	uv_timer_init(loop, &poll_timer);
	uv_timer_start(&poll_timer, on_poll_timer, POLL_MS, POLL_MS);
	uv_signal_init(loop, &sigterm);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_init(loop, &sigint);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_signal_init(loop, &sighup);
	uv_signal_start(&sighup, on_reload, SIGHUP);
	oplog(store, "info", "aichatd-push %s started: control socket %s, at most %d runs at once",
	      PACKAGE_VERSION, path, cfg.max_runs);
	/* whatever a previous daemon left running is taken again now */
	runs_poll();
	uv_run(loop, UV_RUN_DEFAULT);
	unlink(path);
	config_identity_withdraw(&cfg, "push");
	uv_loop_close(loop);
	oplog(store, "info", "aichatd-push stopped");
	store_close(store);
	config_free(&cfg);
	return 0;
}
