/*
 * The hub's connections (see hub.h and hconn.h): every connection from nginx, the caps on
 * them in all and per client address, the topics they subscribe to, and their output.
 * Every connection's unsent output is bounded by client_buffer: a client that does not read
 * is dropped without slowing the others.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "hash.h"
#include "hconn.h"

#define TOPICS 4096
#define ADDRS 1024

/* Connections per client address (nginx's X-Real-IP). */
struct addr {
	struct addr *next;
	int n;
	char ip[];
};

struct hub_env hub_env;
struct hconn *hub_all;
size_t hub_ntopics;
long hub_n_ws, hub_n_sse, hub_n_stream, hub_n_dropped, hub_n_refused, hub_n_conns;
static struct topic *topics[TOPICS];
static struct addr *addrs[ADDRS];

/* ---- connections per client address ---- */

static struct addr *
addr_get(const char *ip)
{
	struct addr **p = &addrs[hash_str(ip) % ADDRS], *a;

	for (a = *p; a; a = a->next)
		if (strcmp(a->ip, ip) == 0)
			return a;
	if (!(a = calloc(1, sizeof(*a) + strlen(ip) + 1)))
		return NULL;
	strcpy(a->ip, ip);
	a->next = *p;
	*p = a;
	return a;
}

static void
addr_put(struct addr *a)
{
	struct addr **p;

	if (--a->n > 0)
		return;
	for (p = &addrs[hash_str(a->ip) % ADDRS]; *p; p = &(*p)->next) {
		if (*p == a) {
			*p = a->next;
			free(a);
			return;
		}
	}
}

/*
 * The caps on connections (max_connections in all, max_connections_per_addr per client
 * address, which nginx sets as X-Real-IP).
 */
const char *
hc_admit(struct hconn *c, const char *ip)
{
	const char *why = NULL;
	struct addr *a = NULL;

	if (hub_n_ws + hub_n_sse + hub_n_stream >= hub_env.cfg->max_connections)
		why = "too many connections";
	else if (!(a = addr_get(ip)))
		why = "out of memory";
	else if (a->n >= hub_env.cfg->max_connections_per_addr)
		why = "too many connections from this address";
	if (!why) {
		a->n++;
		c->addr = a;
		return NULL;
	}
	if (a && !a->n) {
		a->n = 1; /* a new entry: let go of it */
		addr_put(a);
	}
	hub_n_refused++;
	return why;
}

/* ---- topics ---- */

struct topic *
topic_get(const char *key, int create)
{
	struct topic **p = &topics[hash_str(key) % TOPICS], *t;

	for (t = *p; t; t = t->next)
		if (strcmp(t->key, key) == 0)
			return t;
	if (!create || !(t = calloc(1, sizeof(*t) + strlen(key) + 1)))
		return NULL;
	strcpy(t->key, key);
	t->next = *p;
	*p = t;
	hub_ntopics++;
	return t;
}

static void
topic_drop_if_empty(struct topic *t)
{
	struct topic **p = &topics[hash_str(t->key) % TOPICS];

	if (t->subs)
		return;
	for (; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			free(t);
			hub_ntopics--;
			return;
		}
	}
}

int
topic_subscribe(struct hconn *c, const char *prefix, const char *id)
{
	char key[256];
	struct topic *t;

	snprintf(key, sizeof(key), "%s%s", prefix, id);
	t = topic_get(key, 1);
	if (!t)
		return -1;
	c->topic = t;
	c->sub_next = t->subs;
	t->subs = c;
	return 0;
}

void
topic_unsubscribe(struct hconn *c)
{
	struct hconn **p;

	if (!c->topic)
		return;
	for (p = &c->topic->subs; *p; p = &(*p)->sub_next) {
		if (*p == c) {
			*p = c->sub_next;
			break;
		}
	}
	topic_drop_if_empty(c->topic);
	c->topic = NULL;
}

void
topic_fan_out(struct topic *t, const char *s, size_t n, int end)
{
	struct hconn *c, *next;

	for (c = t->subs; c; c = next) {
		next = c->sub_next;
		if (hc_write(c, s, n) == 0 && end)
			hc_end(c);
	}
}

/* ---- the connection ---- */

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char slab[65536];

	(void)h;
	(void)suggested;
	*b = uv_buf_init(slab, sizeof(slab));
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hconn *c = s->data;

	if (n < 0) {
		hc_close(c);
		return;
	}
	if (n == 0 || c->closing || !c->input)
		return; /* SSE and stream clients have nothing more to say */
	c->input(c, b->base, (size_t)n);
}

void
hc_read_start(struct hconn *c)
{
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

struct hconn *
hc_new(void (*input)(struct hconn *c, const char *data, size_t n))
{
	struct hconn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	uv_pipe_init(hub_env.loop, &c->pipe, 0);
	c->pipe.data = c;
	c->kind = K_HTTP;
	c->input = input;
	c->next = hub_all;
	if (hub_all)
		hub_all->prev = c;
	hub_all = c;
	hub_n_conns++;
	return c;
}

static long *
kind_count(enum hkind kind)
{
	switch (kind) {
	case K_WS:
		return &hub_n_ws;
	case K_SSE:
		return &hub_n_sse;
	case K_STREAM:
		return &hub_n_stream;
	default:
		return NULL;
	}
}

void
hc_set_kind(struct hconn *c, enum hkind kind)
{
	long *n = kind_count(kind);

	c->kind = kind;
	if (n)
		(*n)++;
}

/* ---- output ---- */

struct wr {
	uv_write_t w;
	struct hconn *c;
	size_t n;
	char data[];
};

static void
on_written(uv_write_t *w, int status)
{
	struct wr *r = (struct wr *)w;

	(void)status;
	r->c->queued -= r->n;
	free(r);
}

int
hc_write(struct hconn *c, const char *s, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
	struct wr *r;
	int done = 0;

	if (c->closing)
		return -1;
	if (!n)
		return 0;
	c->last_out = uv_now(c->pipe.loop);
	if (!c->queued) {
		done = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
		if (done == (int)n)
			return 0;
		if (done < 0)
			done = 0;
	}
	/* the bound is on the backlog a message finds: a client that has not read what was
	 * queued before, past client_buffer, is dropped; one that reads takes every message,
	 * however large (the end of a reply carries its whole text, up to LLM_REPLY_MAX), so
	 * a connection holds at most client_buffer and one message */
	if (c->queued > hub_env.cfg->client_buffer) {
		hub_n_dropped++;
		hc_close(c);
		return -1;
	}
	r = malloc(sizeof(*r) + n - (size_t)done);
	if (!r) {
		hc_close(c);
		return -1;
	}
	r->c = c;
	r->n = n - (size_t)done;
	memcpy(r->data, s + done, r->n);
	b = uv_buf_init(r->data, (unsigned)r->n);
	if (uv_write(&r->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
		free(r);
		hc_close(c);
		return -1;
	}
	c->queued += r->n;
	return 0;
}

int
hc_writes(struct hconn *c, const char *s)
{
	return hc_write(c, s, strlen(s));
}

static void
on_closed(uv_handle_t *h)
{
	struct hconn *c = h->data;

	c->handle_closed = 1;
	if (!c->posts_pending)
		free(c); /* else when the writer's answers are back (ws_posted) */
}

void
hc_close(struct hconn *c)
{
	long *n = kind_count(c->kind);

	if (c->closing)
		return;
	c->closing = 1;
	topic_unsubscribe(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		hub_all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (n)
		(*n)--;
	hub_n_conns--;
	if (c->addr)
		addr_put(c->addr);
	c->addr = NULL;
	if (c->drop)
		c->drop(c);
	if (c->req) {
		buf_free(&c->req->url);
		free(c->req);
		c->req = NULL;
	}
	free(c->conv_id);
	free(c->user);
	uv_close((uv_handle_t *)&c->pipe, on_closed);
}

/* Close once what was queued has been written. */
static void
on_shutdown(uv_shutdown_t *s, int status)
{
	struct hconn *c = s->data;

	(void)status;
	free(s);
	hc_close(c);
}

void
hc_end(struct hconn *c)
{
	uv_shutdown_t *s;

	if (c->closing)
		return;
	topic_unsubscribe(c);
	s = malloc(sizeof(*s));
	if (!s) {
		hc_close(c);
		return;
	}
	s->data = c;
	if (uv_shutdown(s, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
		free(s);
		hc_close(c);
	}
}

void
hc_respond(struct hconn *c, int status, const char *reason, const char *ctype, const char *body)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		 "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
		 status, reason, ctype, strlen(body));
	if (hc_writes(c, head) == 0 && hc_writes(c, body) == 0)
		hc_end(c);
}
