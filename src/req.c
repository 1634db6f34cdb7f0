#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "req.h"

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

/*
 * jansson's memory, in the workers: while a request is being served, its JSON values come
 * from the request pool (a bump allocation; freeing is a no-op, the pool's reset frees
 * them), which takes the malloc/free pair per value off the hot path. A 16-byte header says
 * which allocator a block came from, so a value made outside a request is freed normally.
 */
static _Thread_local struct pool *json_pool;

#define JSON_HDR 16

static void json_release(void *p);

static void *
json_alloc(size_t n)
{
	unsigned char *m;

	if (n > SIZE_MAX - JSON_HDR)
		return NULL;
	if (json_pool) {
		m = pool_alloc(json_pool, n + JSON_HDR);
		if (m)
			m[0] = 1;
	} else {
		m = malloc(n + JSON_HDR);
		if (m)
			m[0] = 0;
	}
	return m ? m + JSON_HDR : NULL;
}

char *
req_json_text(const json_t *j, size_t flags)
{
	char *t = json_dumps(j, flags), *out = t ? strdup(t) : NULL;

	json_release(t);
	return out;
}

static void
json_release(void *p)
{
	unsigned char *m;

	if (!p)
		return;
	m = (unsigned char *)p - JSON_HDR;
	if (m[0] == 0)
		free(m);
}

void
req_json_memory(void)
{
	json_set_alloc_funcs(json_alloc, json_release);
}

void
req_json_pool(struct pool *p)
{
	json_pool = p;
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

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
req_unescape(struct pool *p, const char *s, size_t len, int form)
{
	char *d = pool_alloc(p, len + 1);
	size_t i, o = 0;

	if (!d)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] == '%') {
			int hi, lo;
			if (i + 2 >= len)
				return NULL;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return NULL;
			d[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (form && s[i] == '+') {
			d[o++] = ' ';
		} else {
			d[o++] = s[i];
		}
	}
	d[o] = '\0';
	if (memchr(d, '\0', o) || !utf8_valid(d, o))
		return NULL;
	return d;
}

int
req_parse_query(struct req *r)
{
	const char *q = r->query, *amp, *eq;

	r->nq = 0;
	while (*q) {
		amp = strchr(q, '&');
		if (!amp)
			amp = q + strlen(q);
		if (amp > q) {
			if (r->nq == REQ_MAX_QUERY)
				return RC_ERR;
			eq = memchr(q, '=', (size_t)(amp - q));
			if (!eq)
				eq = amp;
			r->qk[r->nq] = req_unescape(r->pool, q, (size_t)(eq - q), 1);
			r->qv[r->nq] = eq == amp ? "" :
				req_unescape(r->pool, eq + 1, (size_t)(amp - eq - 1), 1);
			if (!r->qk[r->nq] || !r->qv[r->nq])
				return RC_ERR;
			r->nq++;
		}
		q = *amp ? amp + 1 : amp;
	}
	return RC_OK;
}

const char *
req_query(struct req *r, const char *name)
{
	int i;

	/* the first occurrence wins */
	for (i = 0; i < r->nq; i++)
		if (strcmp(r->qk[i], name) == 0)
			return r->qv[i];
	return NULL;
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
