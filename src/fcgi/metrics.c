/*
 * metrics: the pool's shared counters and GET /metrics (metrics.h). The region is mapped
 * once by the master; a worker's adds are atomic and lock-free, and /metrics reads them
 * (and asks the push daemon for its own figures) when it is scraped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mman.h>

#include "rc.h"
#include "buf.h"
#include "util.h"
#include "config.h"
#include "store.h"
#include "prom.h"
#include "addr.h"
#include "push-client.h"
#include "request.h"
#include "router.h"
#include "api.h"
#include "metrics.h"

/* The status codes counted by name (what the pool answers); any other by its class. */
static const int codes[] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429,
			    500, 502, 503, 504};
#define NCODES (sizeof(codes) / sizeof(codes[0]))
#define NSTATUS (NCODES + 5) /* and 1xx to 5xx */
#define UNMATCHED ROUTER_ROUTES_MAX /* the row of requests no route matched */
#define WORKER_SLOTS 256 /* workers at once (64 at most, twice during a reload), and slack */
#define NDIALECTS 5
#define PUSH_TEXT_MAX (PUSH_METRICS_MAX + PUSH_LINE_MAX) /* the daemon's answer, at most */

struct region {
	long master;
	_Atomic uint64_t requests[ROUTER_ROUTES_MAX + 1][NSTATUS];
	struct prom_hist latency[ROUTER_ROUTES_MAX + 1];
	_Atomic uint64_t sends[NDIALECTS];
	struct store_busy busy;
	_Atomic long workers[WORKER_SLOTS]; /* pids; 0: a free slot */
};

static struct region *shm;
static const struct route *table;
static size_t nroutes;
static const char *const dialects[NDIALECTS] = {"im", "aichat", "chax", "v1", "workflow"};

/* /proc/pid/stat's parent, or -1 when pid is gone. */
static long
parent_of(long pid)
{
	char path[64], text[512], *p;
	long ppid = -1;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (!(f = fopen(path, "r")))
		return -1;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	/* "pid (comm) state ppid ...": comm may hold anything, so read after its last ')' */
	if ((p = strrchr(text, ')')) && sscanf(p + 1, " %*c %ld", &ppid) != 1)
		ppid = -1;
	return ppid;
}

/* In each process forked after metrics_init(): a worker of this master takes a slot, one
 * a dead worker left if none is free. */
static void
on_fork_child(void)
{
	long me = (long)getpid(), pid;
	int i, pass;

	if (!shm || (long)getppid() != shm->master)
		return;
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < WORKER_SLOTS; i++) {
			pid = shm->workers[i];
			if (pass == 1 && pid && parent_of(pid) != shm->master) {
				/* its worker is gone: free the slot for this one */
			} else if (pid != 0) {
				continue;
			}
			if (atomic_compare_exchange_strong(&shm->workers[i], &pid, me))
				return;
		}
	}
}

int
metrics_init(const struct route *(*routes)(size_t *n), char *err)
{
	size_t n;
	void *m;

	if (shm)
		return RC_OK; /* a reload: the counters go on */
	m = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		snprintf(err, ERR_LEN, "metrics: cannot map %zu bytes: %s", sizeof(*shm),
			 strerror(errno));
		return RC_ERR;
	}
	shm = m; /* zeroed by the kernel */
	shm->master = (long)getpid();
	table = routes(&n);
	nroutes = n < ROUTER_ROUTES_MAX ? n : ROUTER_ROUTES_MAX;
	store_busy_count_in(&shm->busy);
	if (pthread_atfork(NULL, NULL, on_fork_child) != 0) {
		snprintf(err, ERR_LEN, "metrics: pthread_atfork failed");
		return RC_ERR;
	}
	return RC_OK;
}

static size_t
status_index(int status)
{
	size_t i;

	for (i = 0; i < NCODES; i++)
		if (codes[i] == status)
			return i;
	return status >= 100 && status < 600 ? NCODES + (size_t)(status / 100 - 1) : NCODES + 4;
}

void
metrics_request(const struct route *rt, int status, int64_t ns)
{
	size_t row = UNMATCHED;

	if (!shm)
		return;
	if (rt && rt >= table && rt < table + nroutes)
		row = (size_t)(rt - table);
	shm->requests[row][status_index(status)]++;
	prom_observe(&shm->latency[row], &prom_seconds, ns > 0 ? (uint64_t)ns : 0);
}

void
metrics_send(int dialect)
{
	if (shm && dialect >= 0 && dialect < NDIALECTS)
		shm->sends[dialect]++;
}

static void
status_label(size_t i, char *out, size_t len)
{
	if (i < NCODES)
		snprintf(out, len, "%d", codes[i]);
	else
		snprintf(out, len, "%dxx", (int)(i - NCODES) + 1);
}

static void
route_labels(size_t row, char *out, size_t len)
{
	if (row == UNMATCHED)
		snprintf(out, len, "method=\"\",route=\"unmatched\"");
	else
		snprintf(out, len, "method=\"%s\",route=\"%s\"", table[row].method, table[row].pattern);
}

static void
render_requests(struct buf *out)
{
	char labels[256], code[8], l2[300];
	size_t row, i;

	prom_head(out, "aichatd_http_requests_total", "counter",
		  "Requests answered by the pool, by route pattern (unmatched: none) and status.");
	for (row = 0; row <= UNMATCHED; row++) {
		if (row >= nroutes && row != UNMATCHED)
			continue;
		route_labels(row, labels, sizeof(labels));
		for (i = 0; i < NSTATUS; i++) {
			uint64_t v = shm->requests[row][i];
			if (!v)
				continue;
			status_label(i, code, sizeof(code));
			snprintf(l2, sizeof(l2), "%s,code=\"%s\"", labels, code);
			prom_sample(out, "aichatd_http_requests_total", l2, (double)v);
		}
	}
	prom_head(out, "aichatd_http_request_duration_seconds", "histogram",
		  "Time in the pool from reading a request to its reply being ready, by route.");
	for (row = 0; row <= UNMATCHED; row++) {
		if ((row >= nroutes && row != UNMATCHED) || !prom_hist_count(&shm->latency[row]))
			continue;
		route_labels(row, labels, sizeof(labels));
		prom_hist_put(out, "aichatd_http_request_duration_seconds", labels,
			      &shm->latency[row], &prom_seconds);
	}
}

/* The daemon's pid, from the identity file it keeps ($DATA/run/push.auth), or 0. */
static long
push_pid(const struct config *cfg)
{
	char path[4096], line[64];
	long pid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/run/push.auth", cfg->data_dir);
	if (!(f = fopen(path, "r")))
		return 0;
	if (!fgets(line, sizeof(line), f) || sscanf(line, "pid=%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

static void
memory_sample(struct buf *out, const char *role, long pid)
{
	int64_t rss = prom_rss(pid);
	char labels[64];

	if (rss < 0)
		return;
	snprintf(labels, sizeof(labels), "role=\"%s\",pid=\"%ld\"", role, pid);
	prom_sample(out, "aichatd_process_resident_memory_bytes", labels, (double)rss);
}

static void
render_processes(const struct config *cfg, struct buf *out)
{
	long pid;
	int i, live = 0;

	prom_head(out, "aichatd_process_resident_memory_bytes", "gauge",
		  "Resident memory of each process: the pool's master and workers, the push daemon.");
	memory_sample(out, "master", shm->master);
	for (i = 0; i < WORKER_SLOTS; i++) {
		if (!(pid = shm->workers[i]))
			continue;
		if (parent_of(pid) != shm->master) {
			/* a worker that died: its slot is free again */
			atomic_compare_exchange_strong(&shm->workers[i], &pid, 0);
			continue;
		}
		live++;
		memory_sample(out, "worker", pid);
	}
	if ((pid = push_pid(cfg)) > 0 && kill(pid, 0) == 0)
		memory_sample(out, "push", pid);
	prom_head(out, "aichatd_pool_workers", "gauge", "Worker processes of the pool alive.");
	prom_sample(out, "aichatd_pool_workers", "", live);
}

/* The daemon's part: its own families (aichatd_push_*), passed on line by line; any other
 * line is dropped, so that nothing it says can break the pool's families. 1 when it
 * answered. */
static int
render_push(const struct config *cfg, struct buf *out)
{
	struct buf text;
	size_t off = 0;
	int ok;

	buf_init(&text, PUSH_TEXT_MAX);
	ok = push_metrics(cfg, &text) == RC_OK;
	while (ok && off < text.len) {
		const char *s = text.s + off, *nl = memchr(s, '\n', text.len - off);
		size_t n = nl ? (size_t)(nl - s) : text.len - off;

		if (strncmp(s, "aichatd_push_", 13) == 0 || strncmp(s, "# HELP aichatd_push_", 20) == 0 ||
		    strncmp(s, "# TYPE aichatd_push_", 20) == 0) {
			buf_add(out, s, n);
			buf_addch(out, '\n');
		}
		off += n + 1;
	}
	buf_free(&text);
	return ok;
}

int
metrics_render(const struct config *cfg, struct buf *out)
{
	const struct store_busy *b = store_busy_counts();
	char labels[32];
	int i;

	if (!shm)
		return RC_ERR;
	prom_head(out, "aichatd_build_info", "gauge", "The version running, as a label; always 1.");
	buf_printf(out, "aichatd_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	render_requests(out);
	prom_head(out, "aichatd_sends_total", "counter",
		  "Sends over HTTP that stored a message with an AI reply to make, by dialect.");
	for (i = 0; i < NDIALECTS; i++) {
		snprintf(labels, sizeof(labels), "dialect=\"%s\"", dialects[i]);
		prom_sample(out, "aichatd_sends_total", labels, (double)shm->sends[i]);
	}
	prom_head(out, "aichatd_pool_sqlite_busy_waits_total", "counter",
		  "Statements of the pool's workers that found the database locked and waited.");
	prom_sample(out, "aichatd_pool_sqlite_busy_waits_total", "", (double)b->waits);
	prom_head(out, "aichatd_pool_sqlite_busy_wait_seconds_total", "counter",
		  "Time the pool's workers slept waiting for the database lock.");
	prom_sample(out, "aichatd_pool_sqlite_busy_wait_seconds_total", "", (double)b->sleep_ns / 1e9);
	prom_head(out, "aichatd_pool_sqlite_busy_timeouts_total", "counter",
		  "Statements of the pool's workers that gave up waiting (SQLITE_BUSY).");
	prom_sample(out, "aichatd_pool_sqlite_busy_timeouts_total", "", (double)b->timeouts);
	render_processes(cfg, out);
	i = render_push(cfg, out);
	prom_head(out, "aichatd_push_up", "gauge",
		  "1 when the push daemon answered for its figures (the aichatd_push_* families).");
	prom_sample(out, "aichatd_push_up", "", i);
	return RC_OK;
}

int
metrics_get(struct req *r)
{
	/* nginx lets only metrics_allow through; this is the same check, should the socket be
	 * reached another way (an nginx configured by hand without the allow lines) */
	if (!addr_allowed(r->cfg->metrics_allow, r->remote_addr))
		return req_fail(r, 403, 0, NULL);
	buf_reset(&r->out);
	if (metrics_render(r->cfg, &r->out) != RC_OK)
		return req_fail(r, 503, 0, "metrics are kept by aichatd serve only");
	r->status = 200;
	r->ctype = PROM_CTYPE;
	return 0;
}
