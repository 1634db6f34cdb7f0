/*
 * One connection of the live bus to Redis, kept up (see bus-int.h): hiredis' async context
 * on the loop through its libuv adapter, a small state machine (down, resolving,
 * connecting, connected, ready) with one timer for the back-off and the connect timeout.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <netdb.h>
#include <hiredis/adapters/libuv.h>

#include "rc.h"
#include "util.h"
#include "log.h"
#include "bus-int.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 2000

static void link_try(struct bus_link *l);

int
bus_addr_parse(struct bus_addr *a, const char *url, char *err)
{
	const char *h, *end, *colon;
	int64_t port = 6379;

	memset(a, 0, sizeof(*a));
	if (strncmp(url, "unix:/", 6) == 0) {
		if ((a->path = strdup(url + 5)))
			return 0;
		snprintf(err, ERR_LEN, "out of memory");
		return -1;
	}
	if (strncmp(url, "redis://", 8) != 0)
		goto bad;
	h = url + 8;
	if (*h == '[') {
		if (!(end = strchr(h, ']')))
			goto bad;
		a->host = strndup(h + 1, (size_t)(end - h - 1));
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			goto bad;
	} else {
		colon = strchr(h, ':');
		a->host = strndup(h, colon ? (size_t)(colon - h) : strlen(h));
	}
	if (!a->host || !*a->host || strpbrk(a->host, "/@?#"))
		goto bad;
	if (colon && (strlen(colon + 1) > 5 || parse_uint(colon + 1, 65535, &port) != RC_OK))
		goto bad;
	a->port = (int)port;
	return 0;
bad:
	snprintf(err, ERR_LEN, "redis_url %.100s: expected redis://HOST[:PORT] or unix:/PATH", url);
	return -1;
}

void
bus_addr_free(struct bus_addr *a)
{
	free(a->host);
	free(a->path);
	a->host = a->path = NULL;
}

static void
on_retry(uv_timer_t *t)
{
	link_try(t->data);
}

/* l's connection is gone (its context freed or being freed): try again after the back-off */
static void
link_lost(struct bus_link *l, const char *why)
{
	int was = l->state != L_DOWN && l->state != L_RESOLVING;

	l->ac = NULL;
	l->state = L_DOWN;
	if (l->closing)
		return;
	if (!l->logged_down) {
		log_line("redis bus: %s connection down: %s (retrying)", l->name,
			 why ? why : "closed");
		l->logged_down = 1;
	}
	if (was && l->lost)
		l->lost(l);
	uv_timer_stop(&l->timer);
	uv_timer_start(&l->timer, on_retry, l->backoff_ms, 0);
	l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

void
bus_link_drop(struct bus_link *l, const char *why)
{
	redisAsyncContext *ac = l->ac;

	l->ac = NULL; /* on_disconnect, called within, is then not ours to handle */
	if (ac)
		redisAsyncFree(ac);
	link_lost(l, why);
}

void
bus_link_ready(struct bus_link *l)
{
	uv_timer_stop(&l->timer);
	l->state = L_READY;
	l->backoff_ms = BACKOFF_MIN_MS;
	l->logged_down = 0;
}

static void
on_connect_timeout(uv_timer_t *t)
{
	struct bus_link *l = t->data;

	if (l->state == L_CONNECTING || l->state == L_CONNECTED)
		bus_link_drop(l, "not ready in time");
}

static void
on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct bus_link *l = ac->data;

	if (l->ac != ac)
		return;
	if (status != REDIS_OK) {
		link_lost(l, ac->errstr); /* hiredis frees ac after this */
		return;
	}
	redisEnableKeepAlive(&ac->c);
	if (l->ever)
		l->reconnects++;
	l->ever = 1;
	l->state = L_CONNECTED;
	l->last_reply = uv_now(l->loop);
	uv_timer_stop(&l->timer);
	uv_timer_start(&l->timer, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
	if (l->connected)
		l->connected(l);
}

static void
on_disconnect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct bus_link *l = ac->data;

	(void)status;
	if (l->ac != ac)
		return; /* dropped by us */
	link_lost(l, ac->errstr[0] ? ac->errstr : "closed by the server");
}

static void
link_connect(struct bus_link *l, const char *ip)
{
	redisAsyncContext *ac = l->addr->path ? redisAsyncConnectUnix(l->addr->path)
					      : redisAsyncConnect(ip, l->addr->port);
	char why[128];

	if (!ac) {
		link_lost(l, "out of memory");
		return;
	}
	if (ac->err) {
		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		link_lost(l, why);
		return;
	}
	ac->data = l;
	if (redisLibuvAttach(ac, l->loop) != REDIS_OK) {
		redisAsyncFree(ac);
		link_lost(l, "cannot watch its socket");
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	l->ac = ac;
	l->state = L_CONNECTING;
	uv_timer_stop(&l->timer);
	uv_timer_start(&l->timer, on_connect_timeout, CONNECT_TIMEOUT_MS, 0);
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct bus_link *l = req->data;
	char ip[64] = "";

	l->gai_busy = 0;
	if (status == 0 && res) {
		if (res->ai_family == AF_INET6)
			uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
		else
			uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
	}
	if (res)
		uv_freeaddrinfo(res);
	if (l->closing) {
		if (l->released)
			l->released(l);
		return;
	}
	if (!*ip)
		link_lost(l, status ? uv_strerror(status) : "no address");
	else
		link_connect(l, ip);
}

/* Connect l: at once to an address or a socket; a host name is resolved first. */
static void
link_try(struct bus_link *l)
{
	struct addrinfo hints;
	unsigned char bin[16];
	int rc;

	if (l->closing || l->state != L_DOWN)
		return;
	if (l->addr->path || uv_inet_pton(AF_INET, l->addr->host, bin) == 0 ||
	    uv_inet_pton(AF_INET6, l->addr->host, bin) == 0) {
		link_connect(l, l->addr->host);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	l->gai.data = l;
	if ((rc = uv_getaddrinfo(l->loop, &l->gai, on_resolved, l->addr->host, NULL, &hints))) {
		link_lost(l, uv_strerror(rc));
		return;
	}
	l->gai_busy = 1;
	l->state = L_RESOLVING;
}

void
bus_link_start(struct bus_link *l, uv_loop_t *loop, const struct bus_addr *addr)
{
	l->loop = loop;
	l->addr = addr;
	l->backoff_ms = BACKOFF_MIN_MS;
	l->state = L_DOWN;
	uv_timer_init(loop, &l->timer);
	l->timer.data = l;
	link_try(l);
}

static void
on_timer_closed(uv_handle_t *h)
{
	struct bus_link *l = h->data;

	if (l->released)
		l->released(l);
}

int
bus_link_close(struct bus_link *l)
{
	redisAsyncContext *ac = l->ac;
	int n = 1;

	l->closing = 1;
	l->ac = NULL;
	l->state = L_DOWN;
	if (ac)
		redisAsyncFree(ac);
	if (l->gai_busy) {
		uv_cancel((uv_req_t *)&l->gai); /* its callback comes all the same */
		n++;
	}
	uv_close((uv_handle_t *)&l->timer, on_timer_closed);
	return n;
}
