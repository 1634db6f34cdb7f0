/*
 * fake-stream: a small OpenAI-compatible upstream for benchmarks. Every POST (any path)
 * gets an SSE reply of PIECES chunks, one every INTERVAL ms, then "data: [DONE]". Written
 * in C on libuv so that hundreds of streams at once cost the machine little next to the
 * stack being measured.
 *
 * usage: fake-stream PORT [PIECES [INTERVAL_MS]]     (listens on 127.0.0.1)
 * It prints "ready" when listening and, on SIGTERM, the number of replies it completed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <uv.h>

#define REQ_MAX (1 << 20)

struct client {
	uv_tcp_t tcp;
	uv_timer_t timer;
	char *req;
	size_t len;
	int piece;
	int started;
	int closing;
};

static uv_loop_t *loop;
static int pieces = 50, interval = 20;
static long completed, accepted;

static void
on_written(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

static void
send_text(struct client *c, const char *s, size_t n)
{
	uv_write_t *w;
	char *copy;
	uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
	int done = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);

	/* straight out when the socket has room, as it nearly always has */
	if (done == (int)n)
		return;
	if (done > 0) {
		s += done;
		n -= (size_t)done;
	}
	w = malloc(sizeof(*w));
	copy = malloc(n);
	if (!w || !copy) {
		free(w);
		free(copy);
		return;
	}
	memcpy(copy, s, n);
	w->data = copy;
	b = uv_buf_init(copy, (unsigned)n);
	if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
		free(copy);
		free(w);
	}
}

/* one chunk of the chunked transfer encoding, in one write (the fake's own cost is part of
 * what a benchmark measures, so it stays small) */
static void
send_chunk(struct client *c, const char *s)
{
	char buf[512];
	size_t n = strlen(s);
	int h = snprintf(buf, sizeof(buf), "%zx\r\n%s\r\n", n, s);

	if (h > 0 && (size_t)h < sizeof(buf))
		send_text(c, buf, (size_t)h);
}

static void
on_timer_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	free(c->req);
	free(c);
}

static void
on_tcp_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void
client_close(struct client *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

static void
on_shutdown(uv_shutdown_t *s, int status)
{
	struct client *c = s->data;

	(void)status;
	free(s);
	client_close(c);
}

static void
on_tick(uv_timer_t *t)
{
	struct client *c = t->data;
	char line[160];

	if (c->piece < pieces) {
		snprintf(line, sizeof(line),
			 "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"piece %d \"}}]}\n\n",
			 c->piece);
		send_chunk(c, line);
		c->piece++;
		return;
	}
	uv_timer_stop(t);
	send_chunk(c, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
	send_chunk(c, "data: [DONE]\n\n");
	send_text(c, "0\r\n\r\n", 5);
	completed++;
	{
		uv_shutdown_t *s = malloc(sizeof(*s));
		if (!s) {
			client_close(c);
			return;
		}
		s->data = c;
		if (uv_shutdown(s, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
			free(s);
			client_close(c);
		}
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char slab[65536];

	(void)h;
	(void)suggested;
	*b = uv_buf_init(slab, sizeof(slab));
}

/* The request is complete once its headers and Content-Length bytes of body are in. */
static int
request_complete(struct client *c)
{
	char *end = NULL, *cl;
	size_t i, body, want = 0;

	for (i = 3; i < c->len; i++) {
		if (memcmp(c->req + i - 3, "\r\n\r\n", 4) == 0) {
			end = c->req + i + 1;
			break;
		}
	}
	if (!end)
		return 0;
	body = c->len - (size_t)(end - c->req);
	c->req[end - c->req - 1] = '\0';
	cl = strcasestr(c->req, "\r\ncontent-length:");
	if (cl)
		want = strtoul(cl + 17, NULL, 10);
	c->req[end - c->req - 1] = '\n';
	return body >= want;
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct client *c = s->data;
	char *p;
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
				   "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";

	if (n < 0) {
		client_close(c);
		return;
	}
	if (c->started || n == 0)
		return;
	if (c->len + (size_t)n > REQ_MAX || !(p = realloc(c->req, c->len + (size_t)n + 1))) {
		client_close(c);
		return;
	}
	c->req = p;
	memcpy(c->req + c->len, b->base, (size_t)n);
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (!request_complete(c))
		return;
	c->started = 1;
	send_text(c, head, sizeof(head) - 1);
	uv_timer_start(&c->timer, on_tick, (uint64_t)interval, (uint64_t)interval);
}

static void
on_connection(uv_stream_t *srv, int status)
{
	struct client *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	uv_tcp_init(loop, &c->tcp);
	uv_timer_init(loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
		client_close(c);
		return;
	}
	accepted++;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void
on_signal(uv_signal_t *s, int sig)
{
	(void)sig;
	printf("accepted %ld completed %ld\n", accepted, completed);
	fflush(stdout);
	uv_signal_stop(s);
	uv_stop(loop);
}

int
main(int argc, char **argv)
{
	uv_tcp_t server;
	uv_signal_t sig;
	struct sockaddr_in addr;

	if (argc < 2) {
		fprintf(stderr, "usage: fake-stream PORT [PIECES [INTERVAL_MS]]\n");
		return 2;
	}
	if (argc > 2)
		pieces = atoi(argv[2]);
	if (argc > 3)
		interval = atoi(argv[3]);
	signal(SIGPIPE, SIG_IGN);
	loop = uv_default_loop();
	uv_tcp_init(loop, &server);
	uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
	if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) != 0 ||
	    uv_listen((uv_stream_t *)&server, 4096, on_connection) != 0) {
		fprintf(stderr, "fake-stream: cannot listen on port %s\n", argv[1]);
		return 1;
	}
	uv_signal_init(loop, &sig);
	uv_signal_start(&sig, on_signal, SIGTERM);
	printf("ready\n");
	fflush(stdout);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}
