/* prom: Prometheus' text format and histograms (prom.h). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "prom.h"

/* 0.5 ms to 60 s: a list answered from the cache and an AI reply both land inside */
const struct prom_bounds prom_seconds = {
	15,
	{500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000,
	 500000000, 1000000000, 2500000000, 10000000000, 30000000000, 60000000000},
	1e9,
};

void
prom_observe(struct prom_hist *h, const struct prom_bounds *b, uint64_t v)
{
	int i = 0;

	while (i < b->n && v > b->le[i])
		i++;
	h->n[i]++;
	h->sum += v;
}

void
prom_head(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
prom_sample(struct buf *out, const char *name, const char *labels, double v)
{
	buf_printf(out, "%s%s%s%s %.15g\n", name, *labels ? "{" : "", labels, *labels ? "}" : "",
		   v);
}

uint64_t
prom_hist_count(const struct prom_hist *h)
{
	uint64_t c = 0;
	int i;

	for (i = 0; i <= PROM_BUCKETS_MAX; i++)
		c += h->n[i];
	return c;
}

void
prom_hist_put(struct buf *out, const char *name, const char *labels,
	      const struct prom_hist *h, const struct prom_bounds *b)
{
	uint64_t cum = 0, n[PROM_BUCKETS_MAX + 1];
	const char *sep = *labels ? "," : "";
	int i;

	/* one read of each bucket: the lines below agree with each other */
	for (i = 0; i <= PROM_BUCKETS_MAX; i++)
		n[i] = h->n[i];
	for (i = 0; i < b->n; i++) {
		cum += n[i];
		buf_printf(out, "%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep,
			   (double)b->le[i] / b->scale, (unsigned long long)cum);
	}
	for (; i <= PROM_BUCKETS_MAX; i++)
		cum += n[i];
	buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		   (unsigned long long)cum);
	buf_printf(out, "%s_sum%s%s%s %.15g\n", name, *labels ? "{" : "", labels,
		   *labels ? "}" : "", (double)h->sum / b->scale);
	buf_printf(out, "%s_count%s%s%s %llu\n", name, *labels ? "{" : "", labels,
		   *labels ? "}" : "", (unsigned long long)cum);
}

int64_t
prom_rss(long pid)
{
	char path[64];
	long pages = 0, size;
	FILE *f;
	int ok;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%ld/statm", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/statm");
	if (!(f = fopen(path, "r")))
		return -1;
	ok = fscanf(f, "%ld %ld", &size, &pages) == 2;
	fclose(f);
	return ok ? (int64_t)pages * sysconf(_SC_PAGESIZE) : -1;
}
