/*
 * The handover (see hub.h): the request nginx passes on, parsed with http-parser as far as
 * the hub needs it (the path, the query, and the few headers below), then handed to the
 * route's file. No body is read; a request over its bounds is answered 400.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "url.h"
#include "token.h"
#include "hconn.h"

#define HEADERS_MAX 16384
#define QUERY_PARAMS_MAX 64 /* parameters of a handed-over request's query read at most */


static int
on_url(http_parser *hp, const char *at, size_t len)
{
	struct hconn *c = hp->data;

	return buf_add(&c->req->url, at, len) == RC_OK ? 0 : -1;
}

static int
on_field(http_parser *hp, const char *at, size_t len)
{
	struct hconn *c = hp->data;
	struct hreq *q = c->req;

	q->header_bytes += len;
	if (q->header_bytes > HEADERS_MAX)
		return -1;
	/* the headers that matter are short: a name split across reads is not one of them */
	if (len == 7 && strncasecmp(at, "upgrade", 7) == 0)
		q->field = H_UPGRADE;
	else if (len == 17 && strncasecmp(at, "sec-websocket-key", 17) == 0)
		q->field = H_KEY;
	else if (len == 21 && strncasecmp(at, "sec-websocket-version", 21) == 0)
		q->field = H_VERSION;
	else if (len == 13 && strncasecmp(at, "authorization", 13) == 0)
		q->field = H_AUTH;
	else if (len == 13 && strncasecmp(at, "last-event-id", 13) == 0)
		q->field = H_LASTID;
	else if (len == 9 && strncasecmp(at, "x-real-ip", 9) == 0)
		q->field = H_REALIP;
	else
		q->field = H_NONE;
	return 0;
}

static void
append(char *dst, size_t size, const char *at, size_t len)
{
	size_t have = strlen(dst);

	if (have + len >= size)
		len = size - 1 - have;
	memcpy(dst + have, at, len);
	dst[have + len] = '\0';
}

static int
on_value(http_parser *hp, const char *at, size_t len)
{
	struct hconn *c = hp->data;
	struct hreq *q = c->req;

	q->header_bytes += len;
	if (q->header_bytes > HEADERS_MAX)
		return -1;
	switch (q->field) {
	case H_UPGRADE: append(q->upgrade, sizeof(q->upgrade), at, len); break;
	case H_KEY: append(q->key, sizeof(q->key), at, len); break;
	case H_VERSION: append(q->version, sizeof(q->version), at, len); break;
	case H_AUTH: append(q->auth, sizeof(q->auth), at, len); break;
	case H_LASTID: append(q->last_id, sizeof(q->last_id), at, len); break;
	case H_REALIP: append(q->real_ip, sizeof(q->real_ip), at, len); break;
	default: break;
	}
	return 0;
}

static int
on_headers_complete(http_parser *hp)
{
	struct hconn *c = hp->data;

	c->req->done = 1;
	return 1; /* no body is expected: stop here */
}

static const http_parser_settings settings = {
	.on_url = on_url,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers_complete,
};

/* The value of a query parameter, decoded into p, or NULL (also when the query is not
 * well formed: the pool's rule, url_query_parse). */
static const char *
query_param(struct pool *p, const char *query, const char *name)
{
	const char *keys[QUERY_PARAMS_MAX], *vals[QUERY_PARAMS_MAX];
	int n;

	if (!query || url_query_parse(p, query, keys, vals, QUERY_PARAMS_MAX, &n) != RC_OK)
		return NULL;
	return url_query_get(n, keys, vals, name);
}

/* A connection over a cap (hc_admit) is answered at once, 503 in the route's own shape,
 * and ends. 1 when it was refused. */
static int
over_cap(struct hconn *c, const char *path)
{
	if (!hc_admit(c, c->req->real_ip))
		return 0;
	if (strncmp(path, "/sse/", 5) == 0)
		hc_respond(c, 503, "Service Unavailable", "application/json",
			   "{\"error\":\"连接数已满，请稍后再试\"}");
	else if (strncmp(path, "/estream/", 9) == 0)
		hc_respond(c, 503, "Service Unavailable", "text/plain; charset=utf-8",
			   "连接数已满，请稍后再试\n");
	else
		hc_respond(c, 503, "Service Unavailable", "application/json",
			   "{\"code\":503,\"message\":\"连接数已满，请稍后再试\"}");
	return 1;
}

/* The request is read: answer it by its path (the routes of hub.h). rest: bytes the client
 * sent after the request (a WebSocket's first frames). */
static void
handle(struct hconn *c, const char *rest, size_t rest_len)
{
	struct hreq *q = c->req;
	struct pool *p = pool_create();
	char *path, *query, *seg;
	const char *token, *last;
	int64_t run_id;

	c->input = NULL; /* nothing more is read, unless the route says otherwise (ws_open) */
	if (!p) {
		hc_close(c);
		return;
	}
	path = pool_strdup(p, q->url.s);
	query = strchr(path, '?');
	if (query)
		*query++ = '\0';
	if (over_cap(c, path)) {
		/* answered */
	} else if (c->parser.method != HTTP_GET) {
		hc_respond(c, 405, "Method Not Allowed", "application/json",
			   "{\"code\":405,\"message\":\"请求方法不允许\"}");
	} else if (strncmp(path, "/ws/", 4) == 0 &&
		   (seg = url_unescape(p, path + 4, strlen(path + 4), 0)) && !strchr(seg, '/')) {
		/* the pool's rule (auth.c): the Authorization header when there is one, else
		 * ?access_token= (a browser's WebSocket cannot set headers) */
		token = q->auth[0] ? token_bearer(q->auth) : query_param(p, query, "access_token");
		ws_open(c, seg, token, p);
		if (!c->closing && c->kind == K_WS && rest_len)
			c->input(c, rest, rest_len);
	} else if (strncmp(path, "/sse/", 5) == 0 &&
		   (seg = url_unescape(p, path + 5, strlen(path + 5), 0)) && !strchr(seg, '/')) {
		last = q->last_id[0] ? q->last_id : query_param(p, query, "last_event_id");
		sse_open(c, seg, last, p);
	} else if (strncmp(path, "/sync/", 6) == 0 && (path[6] == 'd' || path[6] == 'e') &&
		   path[7] == '/' && parse_uint(path + 8, INT64_MAX, &run_id) == RC_OK) {
		sync_open(c, path[6], run_id, query);
	} else if (strncmp(path, "/estream/", 9) == 0 &&
		   parse_uint(path + 9, INT64_MAX, &run_id) == RC_OK) {
		stream_open(c, run_id, p);
	} else {
		hc_respond(c, 404, "Not Found", "application/json",
			   "{\"code\":404,\"message\":\"资源不存在\"}");
	}
	pool_destroy(p);
	if (c->req) {
		buf_free(&q->url);
		free(q);
		c->req = NULL;
	}
}

static void
http_input(struct hconn *c, const char *data, size_t n)
{
	size_t used;

	if (!c->req)
		return;
	used = http_parser_execute(&c->parser, &settings, data, n);
	if (c->req->done) {
		handle(c, data + used, n - used);
	} else if (c->parser.http_errno != HPE_OK || used != n) {
		c->input = NULL;
		hc_respond(c, 400, "Bad Request", "application/json",
			   "{\"code\":400,\"message\":\"请求不合法\"}");
	}
}

void
http_accept(uv_stream_t *srv, int status)
{
	struct hconn *c;
	struct hreq *q;

	if (status < 0 || !(q = calloc(1, sizeof(*q))))
		return;
	if (!(c = hc_new(http_input))) {
		free(q);
		return;
	}
	c->req = q;
	buf_init(&q->url, URL_MAX);
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	/* far over the cap (connections not yet counted by kind included): not even read, so
	 * that the descriptors left stay for the writer, the workers and the upstreams */
	if (uv_accept(srv, (uv_stream_t *)&c->pipe) != 0) {
		hc_close(c);
		return;
	}
	if (hub_n_conns > (long)hub_env.cfg->max_connections + REFUSE_SLACK) {
		hub_n_refused++;
		hc_close(c);
		return;
	}
	hc_read_start(c);
}
