/*
 * prom: Prometheus' text exposition format (version 0.0.4) and the histogram both programs
 * keep. A histogram's buckets are C11 atomics, so that one can live in memory shared by
 * processes (the pool's workers) or be fed from another thread (the daemon's writer), and
 * an observation is a few atomic adds: no lock, no system call.
 */
#ifndef AICHATD_PROM_H
#define AICHATD_PROM_H

#include <stdint.h>

struct buf;

#define PROM_CTYPE "text/plain; version=0.0.4; charset=utf-8"
#define PROM_BUCKETS_MAX 16

/* Counts per bucket (not cumulative; the last one is +Inf) and the sum of the observed
 * values, in the caller's integer unit (nanoseconds, items). All zero is empty. */
struct prom_hist {
	_Atomic uint64_t n[PROM_BUCKETS_MAX + 1];
	_Atomic uint64_t sum;
};

/* Upper bounds in the caller's unit, ascending, at most PROM_BUCKETS_MAX of them. */
struct prom_bounds {
	int n;
	uint64_t le[PROM_BUCKETS_MAX];
	double scale; /* the caller's units in one base unit (1e9 for ns: seconds) */
};
/* Seconds, for request latencies and run durations, counted in nanoseconds. */
extern const struct prom_bounds prom_seconds;

void prom_observe(struct prom_hist *h, const struct prom_bounds *b, uint64_t v);
/* A family's "# HELP" and "# TYPE" lines (help: one line, no backslash). */
void prom_head(struct buf *out, const char *name, const char *type, const char *help);
/* One sample: name{labels} value (labels: "" for none, else `k="v",...` with values that
 * need no escaping). */
void prom_sample(struct buf *out, const char *name, const char *labels, double v);
/* A histogram's _bucket (cumulative, with le), _sum and _count lines, count being the
 * buckets' total, so that the lines agree whatever is observed meanwhile. */
void prom_hist_put(struct buf *out, const char *name, const char *labels,
		   const struct prom_hist *h, const struct prom_bounds *b);
/* Observations in h (the buckets' total). */
uint64_t prom_hist_count(const struct prom_hist *h);
/* The resident memory of process pid (0: this one) in bytes, from /proc; -1 when it
 * cannot be read. */
int64_t prom_rss(long pid);

#endif
