/* stats: the push daemon's counters and their text (stats.h). */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <unistd.h>

#include "buf.h"
#include "prom.h"
#include "provider.h"
#include "store.h"
#include "runs.h"
#include "stats.h"

enum outcome { O_DONE, O_FAILED, O_TIMEOUT, O_STOPPED, O_COUNT };
static const char *const outcomes[O_COUNT] = {"done", "failed", "timeout", "stopped"};

/* the loop's thread only */
static uint64_t runs[PROVIDER_COUNT][O_COUNT], out_bytes[PROVIDER_COUNT],
	out_chars[PROVIDER_COUNT], ws_sends;
static struct prom_hist durations[PROVIDER_COUNT];
/* the writer's thread adds, the loop's reads: atomics (prom.h) */
static struct prom_hist batches;
static const struct prom_bounds batch_bounds = {
	11, {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}, 1,
};

void
stats_run_ended(const struct job_run *r)
{
	const struct run_end *e = &r->end;
	int p = provider_find(r->job.cfg.provider), o;
	size_t i;

	if (p < 0 || p >= PROVIDER_COUNT)
		p = PROVIDER_DEFAULT; /* a config naming no provider runs on the default */
	o = e->status == RUN_DONE ? O_DONE : e->status == RUN_STOPPED ? O_STOPPED :
	    e->error_code == RUN_ERR_TIMEOUT ? O_TIMEOUT : O_FAILED;
	runs[p][o]++;
	prom_observe(&durations[p], &prom_seconds,
		     e->duration_ms > 0 ? (uint64_t)e->duration_ms * 1000000 : 0);
	out_bytes[p] += e->len;
	for (i = 0; i < e->len; i++)
		out_chars[p] += ((unsigned char)e->content[i] & 0xc0) != 0x80;
}

void
stats_ws_send(void)
{
	ws_sends++;
}

void
stats_batch(size_t n)
{
	prom_observe(&batches, &batch_bounds, n);
}

static void
gauge(struct buf *out, const char *name, const char *help, double v)
{
	prom_head(out, name, "gauge", help);
	prom_sample(out, name, "", v);
}

static void
counter(struct buf *out, const char *name, const char *help, double v)
{
	prom_head(out, name, "counter", help);
	prom_sample(out, name, "", v);
}

void
stats_render(struct buf *out, const struct stats_gauges *g)
{
	const struct store_busy *b = store_busy_counts();
	char l[96];
	int p, o;

	prom_head(out, "aichatd_push_runs_total", "counter",
		  "AI runs ended (their end written), by provider and outcome.");
	for (p = 0; p < PROVIDER_COUNT; p++)
		for (o = 0; o < O_COUNT; o++) {
			snprintf(l, sizeof(l), "provider=\"%s\",outcome=\"%s\"", provider_name(p),
				 outcomes[o]);
			prom_sample(out, "aichatd_push_runs_total", l, (double)runs[p][o]);
		}
	prom_head(out, "aichatd_push_run_duration_seconds", "histogram",
		  "AI runs' durations, from their start (a slot taken) to their end, by provider.");
	for (p = 0; p < PROVIDER_COUNT; p++) {
		snprintf(l, sizeof(l), "provider=\"%s\"", provider_name(p));
		prom_hist_put(out, "aichatd_push_run_duration_seconds", l, &durations[p],
			      &prom_seconds);
	}
	prom_head(out, "aichatd_push_run_output_characters_total", "counter",
		  "Characters (Unicode code points) of the replies runs ended with, by provider.");
	for (p = 0; p < PROVIDER_COUNT; p++) {
		snprintf(l, sizeof(l), "provider=\"%s\"", provider_name(p));
		prom_sample(out, "aichatd_push_run_output_characters_total", l, (double)out_chars[p]);
	}
	prom_head(out, "aichatd_push_run_output_bytes_total", "counter",
		  "Bytes (UTF-8) of the replies runs ended with, by provider.");
	for (p = 0; p < PROVIDER_COUNT; p++) {
		snprintf(l, sizeof(l), "provider=\"%s\"", provider_name(p));
		prom_sample(out, "aichatd_push_run_output_bytes_total", l, (double)out_bytes[p]);
	}
	gauge(out, "aichatd_push_runs_active", "AI runs being made (holding one of max_runs slots).",
	      g->active);
	gauge(out, "aichatd_push_runs_max", "The max_runs setting: runs made at once.", g->max_runs);
	gauge(out, "aichatd_push_runs_waiting",
	      "AI runs taken into memory that wait for a slot (the queue's head).",
	      g->runs > g->active ? g->runs - g->active : 0);
	gauge(out, "aichatd_push_runs_backlog",
	      "1 when more runs wait in the database than the daemon has taken, else 0.", g->backlog);
	gauge(out, "aichatd_push_upstream_transfers", "Upstream (openai, n8n) transfers open.",
	      g->upstream);
	prom_head(out, "aichatd_push_connections", "gauge",
		  "Connections the push daemon holds, by kind (other: handovers being read, sync sends).");
	prom_sample(out, "aichatd_push_connections", "kind=\"ws\"", (double)g->ws);
	prom_sample(out, "aichatd_push_connections", "kind=\"sse\"", (double)g->sse);
	prom_sample(out, "aichatd_push_connections", "kind=\"stream\"", (double)g->stream);
	prom_sample(out, "aichatd_push_connections", "kind=\"other\"", (double)g->other);
	counter(out, "aichatd_push_clients_dropped_total",
		"Clients dropped: too slow to read (client_buffer), or gone silent.", (double)g->dropped);
	counter(out, "aichatd_push_connections_refused_total",
		"Connections refused over max_connections or max_connections_per_addr.",
		(double)g->refused);
	gauge(out, "aichatd_push_ws_pending_bytes",
	      "Bytes held by unfinished WebSocket messages (of ws_pending_max).", (double)g->ws_pending);
	counter(out, "aichatd_push_ws_sends_total",
		"Sends over WebSocket that stored a message with an AI reply to make.", (double)ws_sends);
	prom_head(out, "aichatd_push_writer_batch_size", "histogram",
		  "Items (posts and run ends) the writer thread wrote per batch.");
	prom_hist_put(out, "aichatd_push_writer_batch_size", "", &batches, &batch_bounds);
	counter(out, "aichatd_push_sqlite_busy_waits_total",
		"Statements of the push daemon that found the database locked and waited.",
		(double)b->waits);
	counter(out, "aichatd_push_sqlite_busy_wait_seconds_total",
		"Time the push daemon slept waiting for the database lock.", (double)b->sleep_ns / 1e9);
	counter(out, "aichatd_push_sqlite_busy_timeouts_total",
		"Statements of the push daemon that gave up waiting (SQLITE_BUSY).", (double)b->timeouts);
}
