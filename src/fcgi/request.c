/* request: the phases of a request's life (request.h) and the helpers handlers answer with. */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <fcgiapp.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "url.h"
#include "config.h"
#include "jsonpool.h"
#include "request.h"

#define DRAIN_MAX (64u << 20) /* the most of a refused body read and dropped */

static char *
param(struct pool *p, FCGX_Request *fr, const char *name)
{
	return pool_strdup(p, FCGX_GetParam(name, fr->envp));
}

void
req_load(struct req *r, struct FCGX_Request *fr)
{
	char *uri, *q, *cl;
	size_t cap = r->cfg->body_limit, total = 0;
	int64_t v;
	char chunk[16384];
	int n;

	r->started_ns = time_mono_ns();
	r->method = param(r->pool, fr, "REQUEST_METHOD");
	if (!r->method)
		r->method = "GET";
	uri = param(r->pool, fr, "REQUEST_URI");
	if (!uri)
		uri = pool_strdup(r->pool, "/");
	q = uri ? strchr(uri, '?') : NULL;
	if (q)
		*q++ = '\0';
	r->path = uri;
	r->query = q ? q : "";
	r->content_type = param(r->pool, fr, "CONTENT_TYPE");
	r->authorization = param(r->pool, fr, "HTTP_AUTHORIZATION");
	r->remote_addr = param(r->pool, fr, "REMOTE_ADDR");
	cl = FCGX_GetParam("CONTENT_LENGTH", fr->envp);
	r->content_length = -1;
	if (parse_uint0(cl, INT64_MAX, &v) == RC_OK)
		r->content_length = v;
	if (r->content_length > (int64_t)cap) {
		r->body_too_big = 1;
	} else if (r->content_length != 0) {
		struct buf b;
		buf_init(&b, cap);
		while ((n = FCGX_GetStr(chunk, sizeof(chunk), fr->in)) > 0) {
			if (buf_add(&b, chunk, (size_t)n) != RC_OK) {
				r->body_too_big = 1;
				break;
			}
		}
		if (!r->body_too_big && b.len) {
			r->body = pool_strndup(r->pool, b.s, b.len);
			r->body_len = b.len;
		}
		buf_free(&b);
	}
	if (r->body_too_big) {
		/* read the rest so the peer's write does not fail before it reads our 413 */
		while (total < DRAIN_MAX && (n = FCGX_GetStr(chunk, sizeof(chunk), fr->in)) > 0)
			total += (size_t)n;
	}
}

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

void
req_send(struct req *r, struct FCGX_Request *fr)
{
	FCGX_FPrintF(fr->out, "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %lu\r\n%s",
		     r->status, status_text(r->status),
		     r->ctype ? r->ctype : "application/json; charset=utf-8",
		     (unsigned long)r->out.len,
		     /* API answers are never cached; a hand-over's headers come from the daemon */
		     r->ctype ? "" : "Cache-Control: no-store\r\n");
	if (r->headers.len)
		FCGX_PutStr(r->headers.s, (int)r->headers.len, fr->out);
	FCGX_PutStr("\r\n", 2, fr->out);
	FCGX_PutStr(r->out.s, (int)r->out.len, fr->out);
}

void
req_reset(struct req *r)
{
	struct pool *pool = r->pool;
	struct store *st = r->store;
	const struct config *cfg = r->cfg;
	struct buf out = r->out, headers = r->headers;

	if (r->json)
		json_decref(r->json);
	pool_reset(pool);
	json_pool_use(pool);
	memset(r, 0, sizeof(*r));
	r->pool = pool;
	r->store = st;
	r->cfg = cfg;
	r->out = out;
	r->headers = headers;
	buf_reset(&r->out);
	buf_reset(&r->headers);
	r->status = 200;
}

int
req_fail(struct req *r, int status, int code, const char *msg)
{
	/* the first error wins: a handler's precise message is not overwritten */
	if (!r->err_status) {
		r->err_status = status;
		r->err_code = code;
		r->err_msg = msg;
	}
	return -1;
}

int
req_json(struct req *r, int status, json_t *j)
{
	size_t room = 16384, need;

	if (!j)
		return req_fail(r, 500, 0, "out of memory");
	buf_reset(&r->out);
	/* straight into the response buffer; once more with room enough if it did not fit */
	for (;;) {
		if (buf_reserve(&r->out, room) != RC_OK) {
			json_decref(j);
			return req_fail(r, 500, 0, "response too large");
		}
		need = json_dumpb(j, r->out.s, room, JSON_COMPACT);
		if (need == 0) {
			json_decref(j);
			return req_fail(r, 500, 0, "response not serialisable");
		}
		if (need <= room)
			break;
		room = need;
	}
	buf_setlen(&r->out, need);
	json_decref(j);
	r->status = status;
	return 0;
}

int
req_parse_query(struct req *r)
{
	return url_query_parse(r->pool, r->query, r->qk, r->qv, REQ_MAX_QUERY, &r->nq);
}

const char *
req_query(struct req *r, const char *name)
{
	return url_query_get(r->nq, r->qk, r->qv, name);
}

void
req_header(struct req *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(&r->headers, fmt, ap);
	va_end(ap);
	buf_adds(&r->headers, "\r\n");
}
