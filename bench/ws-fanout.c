/*
 * ws-fanout: the fan-out client of `scripts/bench connections`, in C on libuv, so that the
 * client measuring the spread costs the 2-core machine little next to nginx and the daemon
 * (the Node client, bench/fanout.js, used 75-80% of a CPU for 1,000 subscribers).
 *
 *   ws-fanout URL NSUBS REPLIES SESSION [PUSHD_PID [NGINX_WORKER_PID...]]
 *
 * NSUBS WebSocket subscribers of /ws/SESSION; then REPLIES replies, one after another
 * (POST /api/message/send), after one that warms up and is not counted. Chunk k of a reply
 * is the k-th ai_chunk every subscriber got for it; its spread is the last arrival minus
 * the first (CLOCK_MONOTONIC). A subscriber's reply is complete when its ai_reply content
 * is the concatenation of its chunks. Prints "key value" lines, as bench/fanout.js does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <uv.h>

#define MAX_CHUNKS 1024
#define MAX_REPLIES 64

struct sub {
	uv_tcp_t tcp;
	char *in;
	size_t len, cap;
	int upgraded, connected, got_reply, closed;
	int nchunks;
	char *text; /* this reply's chunk contents, as sent (JSON-escaped) */
	size_t tlen, tcap;
};

static uv_loop_t *loop;
static struct sub *subs;
static int nsubs, nreplies, cur = -2, nready, ndone, unexpected, mismatched, complete;
static char host[64], session[128];
static int port;
static int64_t t0, first_at[MAX_CHUNKS], last_at[MAX_CHUNKS], busy_ms, sub_start;
static int seen[MAX_CHUNKS], maxk;
static double spreads[MAX_CHUNKS * MAX_REPLIES];
static int nspreads;
static char first_ms[2048], reply_ms[2048];
static pid_t watch[16];
static int nwatch;
static long cpu0[16], cpu0_self;
static uv_timer_t pause_timer, deadline;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long
cpu_ms(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (!(f = fopen(path, "r")))
		return 0;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return 0;
	}
	fclose(f);
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

static void
fail(const char *why)
{
	printf("error %s\n", why);
	fflush(stdout);
	exit(1);
}

/* A blocking POST of a reply (the measuring loop waits for it anyway). */
static void
post_reply(int r)
{
	struct sockaddr_in a;
	char body[256], req[512], resp[64];
	int fd = socket(AF_INET, SOCK_STREAM, 0), n, blen;

	blen = snprintf(body, sizeof(body),
			"{\"session_id\":\"%s\",\"content\":\"Fan-out reply %d: tell me a story.\"}",
			session, r);
	n = snprintf(req, sizeof(req),
		     "POST /api/message/send HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
		     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		     host, port, blen, body);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &a.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    write(fd, req, (size_t)n) != n)
		fail("cannot send a reply request");
	n = (int)read(fd, resp, sizeof(resp) - 1);
	close(fd);
	if (n < 12 || strncmp(resp + 9, "200", 3) != 0)
		fail("the send did not answer 200");
}

static void start_reply(void);

static void
on_pause(uv_timer_t *t)
{
	(void)t;
	start_reply();
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
quantile(double q)
{
	int i;

	if (!nspreads)
		return 0;
	i = (int)(q * (nspreads - 1) + 0.5);
	return spreads[i];
}

static void
finish(void)
{
	long c1[16], self;
	long push = 0, ngx = 0;
	int i;

	self = cpu_ms(getpid());
	for (i = 0; i < nwatch; i++)
		c1[i] = cpu_ms(watch[i]);
	if (nwatch)
		push = c1[0] - cpu0[0];
	for (i = 1; i < nwatch; i++)
		ngx += c1[i] - cpu0[i];
	qsort(spreads, (size_t)nspreads, sizeof(double), cmp_double);
	printf("subscribers %d\n", nsubs);
	printf("subscribe_s %.1f\n", (double)sub_start / 1e9);
	printf("busy_s %.1f\n", busy_ms / 1000.0);
	printf("cpu_push_pct %.0f\n", busy_ms ? push * 100.0 / busy_ms : 0);
	printf("cpu_nginx_pct %.0f\n", busy_ms ? ngx * 100.0 / busy_ms : 0);
	printf("cpu_client_pct %.0f\n", busy_ms ? (self - cpu0_self) * 100.0 / busy_ms : 0);
	printf("replies %d\n", nreplies);
	printf("chunks %d\n", nspreads);
	printf("chunks_per_reply %.1f\n", nreplies ? (double)nspreads / nreplies : 0);
	printf("deliveries %ld\n", (long)nspreads * nsubs);
	printf("complete %d\n", complete);
	printf("incomplete %d\n", nsubs * nreplies - complete);
	printf("mismatched %d\n", mismatched);
	printf("spread_p50 %.2f\n", quantile(0.5));
	printf("spread_p99 %.2f\n", quantile(0.99));
	printf("spread_max %.2f\n", nspreads ? spreads[nspreads - 1] : 0);
	printf("first_chunk_ms %s\n", first_ms);
	printf("reply_ms %s\n", reply_ms);
	printf("unexpected_closes %d\n", unexpected);
	printf("errors {}\n");
	fflush(stdout);
	exit(0);
}

/* Every subscriber has this reply's ai_reply: score it, then the next after a pause. */
static void
reply_done(void)
{
	int64_t last = t0;
	int k, i;

	if (cur >= 0) {
		for (k = 0; k < maxk; k++) {
			if (!seen[k])
				continue;
			spreads[nspreads++] = (double)(last_at[k] - first_at[k]) / 1e6;
			if (last_at[k] > last)
				last = last_at[k];
		}
		for (i = 0; i < nsubs; i++)
			if (subs[i].nchunks != maxk)
				mismatched++;
		snprintf(first_ms + strlen(first_ms), sizeof(first_ms) - strlen(first_ms), "%s%.0f",
			 cur ? "," : "", seen[0] ? (double)(first_at[0] - t0) / 1e6 : -1.0);
		snprintf(reply_ms + strlen(reply_ms), sizeof(reply_ms) - strlen(reply_ms), "%s%.0f",
			 cur ? "," : "", (double)(last - t0) / 1e6);
		busy_ms += (last - t0) / 1000000;
	}
	if (cur + 1 >= nreplies)
		finish();
	uv_timer_start(&pause_timer, on_pause, 300, 0);
}

static void
start_reply(void)
{
	int i;

	cur++;
	if (cur == 0) {
		for (i = 0; i < nwatch; i++)
			cpu0[i] = cpu_ms(watch[i]);
		cpu0_self = cpu_ms(getpid());
	}
	ndone = 0;
	maxk = 0;
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < nsubs; i++) {
		subs[i].got_reply = 0;
		subs[i].nchunks = 0;
		subs[i].tlen = 0;
	}
	t0 = now_ns();
	post_reply(cur);
}

static void
add_text(struct sub *s, const char *p, size_t n)
{
	if (s->tlen + n > s->tcap) {
		s->tcap = (s->tlen + n) * 2 + 64;
		s->text = realloc(s->text, s->tcap);
		if (!s->text)
			fail("out of memory");
	}
	memcpy(s->text + s->tlen, p, n);
	s->tlen += n;
}

/* The raw (escaped) value of "content" in a JSON text message. */
static const char *
content_of(const char *m, size_t len, size_t *n)
{
	const char *p = memmem(m, len, "\"content\":\"", 11), *e;

	if (!p)
		return NULL;
	p += 11;
	for (e = p; e < m + len && *e != '"'; e++)
		if (*e == '\\')
			e++;
	*n = (size_t)(e - p);
	return p;
}

static void
on_text(struct sub *s, const char *m, size_t len, int64_t at)
{
	const char *c;
	size_t n;

	if (memmem(m, len, "\"type\":\"connected\"", 18)) {
		if (!s->connected++ && ++nready == nsubs) {
			sub_start = now_ns() - sub_start;
			start_reply();
		}
		return;
	}
	if (cur < -1)
		return;
	if (memmem(m, len, "\"type\":\"ai_chunk\"", 17)) {
		int k = s->nchunks++;
		if (k < MAX_CHUNKS) {
			if (!seen[k] || at < first_at[k])
				first_at[k] = at;
			if (!seen[k] || at > last_at[k])
				last_at[k] = at;
			seen[k] = 1;
			if (k + 1 > maxk)
				maxk = k + 1;
		}
		if ((c = content_of(m, len, &n)))
			add_text(s, c, n);
	} else if (memmem(m, len, "\"type\":\"ai_reply\"", 17) && !s->got_reply) {
		s->got_reply = 1;
		c = content_of(m, len, &n);
		if (cur >= 0 && c && n == s->tlen && memcmp(c, s->text, n) == 0)
			complete++;
		if (++ndone == nsubs)
			reply_done();
	}
}

static void
on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	static char slab[65536];

	(void)h;
	(void)sz;
	*b = uv_buf_init(slab, sizeof(slab));
}

static void
on_write(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void
send_raw(struct sub *s, const char *data, size_t n)
{
	struct {
		uv_write_t w;
		char d[256];
	} *r = malloc(sizeof(*r));
	uv_buf_t b;

	if (!r || n > sizeof(r->d))
		return;
	memcpy(r->d, data, n);
	b = uv_buf_init(r->d, (unsigned)n);
	uv_write(&r->w, (uv_stream_t *)&s->tcp, &b, 1, on_write);
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
	struct sub *s = st->data;
	int64_t at = now_ns();
	size_t off = 0;

	if (n < 0) {
		if (!s->closed++)
			unexpected++;
		uv_close((uv_handle_t *)st, NULL);
		return;
	}
	if (s->len + (size_t)n > s->cap) {
		s->cap = (s->len + (size_t)n) * 2;
		s->in = realloc(s->in, s->cap);
		if (!s->in)
			fail("out of memory");
	}
	memcpy(s->in + s->len, b->base, (size_t)n);
	s->len += (size_t)n;
	if (!s->upgraded) {
		char *e = memmem(s->in, s->len, "\r\n\r\n", 4);
		if (!e)
			return;
		if (s->len < 12 || strncmp(s->in + 9, "101", 3) != 0)
			fail("the WebSocket handshake was refused");
		s->upgraded = 1;
		off = (size_t)(e - s->in) + 4;
	}
	for (;;) {
		unsigned char *h = (unsigned char *)s->in + off;
		size_t avail = s->len - off, hl = 2;
		uint64_t plen;
		int op, i;

		if (avail < 2)
			break;
		plen = h[1] & 0x7f;
		if (plen == 126)
			hl = 4;
		else if (plen == 127)
			hl = 10;
		if (avail < hl)
			break;
		if (plen == 126)
			plen = (uint64_t)h[2] << 8 | h[3];
		else if (plen == 127)
			for (plen = 0, i = 0; i < 8; i++)
				plen = plen << 8 | h[2 + i];
		if (avail < hl + plen)
			break;
		op = h[0] & 0x0f;
		if (op == 1)
			on_text(s, (const char *)h + hl, (size_t)plen, at);
		else if (op == 9)
			send_raw(s, "\x8a\x80\0\0\0\0", 6); /* pong, masked with a zero key */
		else if (op == 8 && !s->closed++)
			unexpected++;
		off += hl + (size_t)plen;
	}
	memmove(s->in, s->in + off, s->len - off);
	s->len -= off;
}

static void
on_connect(uv_connect_t *c, int status)
{
	struct sub *s = c->data;
	char req[512];
	int n;

	free(c);
	if (status < 0)
		fail("cannot connect a subscriber");
	n = snprintf(req, sizeof(req),
		     "GET /ws/%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: 13\r\n\r\n",
		     session, host, port);
	{
		struct {
			uv_write_t w;
			char d[512];
		} *r = malloc(sizeof(*r));
		uv_buf_t b;

		if (!r)
			fail("out of memory");
		memcpy(r->d, req, (size_t)n);
		b = uv_buf_init(r->d, (unsigned)n);
		uv_write(&r->w, (uv_stream_t *)&s->tcp, &b, 1, on_write);
	}
	uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
}

static void
on_deadline(uv_timer_t *t)
{
	(void)t;
	fail("timed out");
}

int
main(int argc, char **argv)
{
	struct sockaddr_in a;
	int i;

	if (argc < 5 || sscanf(argv[1], "http://%63[^:]:%d", host, &port) != 2) {
		fprintf(stderr, "usage: ws-fanout URL NSUBS REPLIES SESSION [PUSHD_PID [NGINX_PID...]]\n");
		return 2;
	}
	nsubs = atoi(argv[2]);
	nreplies = atoi(argv[3]);
	snprintf(session, sizeof(session), "%s", argv[4]);
	if (nsubs < 1 || nreplies < 1 || nreplies > MAX_REPLIES)
		return 2;
	for (i = 5; i < argc && nwatch < 16; i++)
		watch[nwatch++] = (pid_t)atoi(argv[i]);
	signal(SIGPIPE, SIG_IGN);
	loop = uv_default_loop();
	subs = calloc((size_t)nsubs, sizeof(*subs));
	if (!subs)
		return 1;
	uv_ip4_addr(host, port, &a);
	uv_timer_init(loop, &pause_timer);
	uv_timer_init(loop, &deadline);
	uv_timer_start(&deadline, on_deadline, 180000, 0);
	sub_start = now_ns();
	for (i = 0; i < nsubs; i++) {
		uv_connect_t *c = malloc(sizeof(*c));
		if (!c)
			return 1;
		uv_tcp_init(loop, &subs[i].tcp);
		subs[i].tcp.data = &subs[i];
		c->data = &subs[i];
		uv_tcp_connect(c, &subs[i].tcp, (const struct sockaddr *)&a, on_connect);
	}
	return uv_run(loop, UV_RUN_DEFAULT);
}
