/*
 * AI-reply load for `scripts/bench replies`: keeps TARGET replies running in the push
 * daemon. The C twin of bench/replies.js (same arguments, same output), light on the CPU
 * it shares with what it measures: the Node client took a fifth of a core, this one a few
 * percent.
 *
 *   replies URL TARGET PUSHD_PID PREFIX FLAGDIR
 *
 * Every 100 ms it reads GET /health?detail=1 (push.runs, push.upstream) and the daemon's
 * VmRSS, and asks for TARGET - runs - (sends not yet answered) new POST /api/message/send,
 * each into a session of its own (PREFIX + n), made by SENDERS threads over keep-alive
 * connections. It prints "ready" once TARGET * 0.9 replies run. The window in which it
 * records samples opens when FLAGDIR/window-start exists and closes at FLAGDIR/window-end;
 * then it stops sending, waits for every reply to end (60 s at most) and prints its summary
 * as "key value" lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>

#define SENDERS 16
#define SAMPLES_MAX 100000

static const char *base, *prefix, *flagdir;
static int target, pid;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long queued, pending, seq, sent, ok, failed, window_sent, stop;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
rss_kb(void)
{
	char path[64], line[256];
	long kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	if (!(f = fopen(path, "r")))
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int
exists(const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", flagdir, name);
	return access(path, F_OK) == 0;
}

struct body {
	char *s;
	size_t len;
};

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t add = size * n;
	char *s = realloc(b->s, b->len + add + 1);

	if (!s)
		return 0;
	memcpy(s + b->len, p, add);
	b->len += add;
	s[b->len] = '\0';
	b->s = s;
	return add;
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

static void *
sender(void *arg)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
	char url[1024], body[512];
	long status, n;

	(void)arg;
	snprintf(url, sizeof(url), "%s/api/message/send", base);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	for (;;) {
		pthread_mutex_lock(&lock);
		while (!queued && !stop)
			pthread_cond_wait(&cond, &lock);
		if (stop) {
			pthread_mutex_unlock(&lock);
			break;
		}
		queued--;
		n = seq++;
		pthread_mutex_unlock(&lock);

		snprintf(body, sizeof(body),
			 "{\"session_id\":\"%s%ld\",\"content\":\"Benchmark reply %s%ld: what is the "
			 "weather like in Hangzhou this weekend?\"}",
			 prefix, n, prefix, n);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		status = 0;
		if (curl_easy_perform(h) == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		pthread_mutex_lock(&lock);
		pending--;
		if (status == 200)
			ok++;
		else
			failed++;
		pthread_mutex_unlock(&lock);
	}
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	return NULL;
}

static int
cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* As bench/common.js's quantile(): the ceil(q * n)-th smallest. */
static long
quantile(long *v, int n, double q)
{
	int i;

	if (!n)
		return 0;
	qsort(v, (size_t)n, sizeof(*v), cmp_long);
	i = (int)(q * n + 0.999999999) - 1;
	return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static long runs_s[SAMPLES_MAX], up_s[SAMPLES_MAX];

int
main(int argc, char **argv)
{
	pthread_t th[SENDERS];
	CURL *hh;
	char url[1024];
	struct body b = {NULL, 0};
	double started, window_start = 0, window_end = 0, drain_start = 0;
	long idle_rss, peak_rss = 0, runs_at_peak = 0, after_rss = 0, health_errors = 0;
	int phase = 0, ready = 0, drained = 0, nsamples = 0, i, code = 0;
	long runs_min = 0, runs_max = 0;

	if (argc != 6) {
		fprintf(stderr, "usage: replies URL TARGET PUSHD_PID PREFIX FLAGDIR\n");
		return 2;
	}
	base = argv[1];
	target = atoi(argv[2]);
	pid = atoi(argv[3]);
	prefix = argv[4];
	flagdir = argv[5];
	setvbuf(stdout, NULL, _IOLBF, 0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	for (i = 0; i < SENDERS; i++)
		pthread_create(&th[i], NULL, sender, NULL);
	hh = curl_easy_init();
	snprintf(url, sizeof(url), "%s/health?detail=1", base);
	curl_easy_setopt(hh, CURLOPT_URL, url);
	curl_easy_setopt(hh, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(hh, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(hh, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(hh, CURLOPT_NOSIGNAL, 1L);
	idle_rss = rss_kb();
	started = now_s();

	for (;; usleep(100000)) {
		json_t *j = NULL, *push;
		long runs, up, rss, deficit;

		b.len = 0;
		if (curl_easy_perform(hh) == CURLE_OK && b.s)
			j = json_loads(b.s, 0, NULL);
		push = json_object_get(j, "push");
		if (!push || !json_string_value(json_object_get(push, "status")) ||
		    strcmp(json_string_value(json_object_get(push, "status")), "ok") != 0) {
			json_decref(j);
			if (++health_errors > 50) {
				printf("error health: no push counters\n");
				code = 1;
				break;
			}
			continue;
		}
		runs = (long)json_integer_value(json_object_get(push, "runs"));
		up = (long)json_integer_value(json_object_get(push, "upstream"));
		json_decref(j);
		rss = rss_kb();
		if (phase == 0 && exists("window-start")) {
			phase = 1;
			window_start = now_s();
		}
		if (phase == 1 && exists("window-end")) {
			phase = 2;
			window_end = drain_start = now_s();
		}
		pthread_mutex_lock(&lock);
		if (phase != 2) {
			deficit = target - runs - pending;
			if (deficit > 0) {
				queued += deficit;
				pending += deficit;
				sent += deficit;
				if (phase == 1)
					window_sent += deficit;
				pthread_cond_broadcast(&cond);
			}
		}
		pthread_mutex_unlock(&lock);
		if (phase == 0 && !ready && runs >= 0.9 * target) {
			ready = 1;
			printf("ready\n");
		}
		if (phase == 0 && now_s() - started > 60) {
			printf("error only %ld replies running after 60 s\n", runs);
			code = 1;
			break;
		}
		if (phase == 1 && nsamples < SAMPLES_MAX) {
			runs_s[nsamples] = runs;
			up_s[nsamples] = up;
			if (!nsamples || runs < runs_min)
				runs_min = runs;
			if (!nsamples || runs > runs_max)
				runs_max = runs;
			nsamples++;
			if (rss > peak_rss) {
				peak_rss = rss;
				runs_at_peak = runs;
			}
		}
		if (phase == 2) {
			long p;
			pthread_mutex_lock(&lock);
			p = pending;
			pthread_mutex_unlock(&lock);
			if (runs == 0 && p == 0) {
				drained = 1;
				after_rss = rss;
				break;
			}
			if (now_s() - drain_start > 60) {
				after_rss = rss;
				break;
			}
		}
	}
	pthread_mutex_lock(&lock);
	stop = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	for (i = 0; i < SENDERS; i++)
		pthread_join(th[i], NULL);

	printf("sent %ld\nok %ld\nfailed %ld\nhealth_errors %ld\n", sent - queued, ok, failed,
	       health_errors);
	printf("window_s %.1f\nwindow_sent %ld\nsamples %d\n", window_end - window_start,
	       window_sent, nsamples);
	printf("runs_min %ld\nruns_med %ld\nruns_max %ld\n", runs_min,
	       quantile(runs_s, nsamples, 0.5), runs_max);
	printf("up_med %ld\n", quantile(up_s, nsamples, 0.5));
	printf("rss_idle_kb %ld\nrss_peak_kb %ld\nruns_at_peak %ld\nrss_after_kb %ld\n", idle_rss,
	       peak_rss, runs_at_peak, after_rss);
	printf("drained %d\ndrain_s %.1f\n", drained, drain_start ? now_s() - drain_start : 0.0);
	free(b.s);
	curl_easy_cleanup(hh);
	curl_global_cleanup();
	return code;
}
