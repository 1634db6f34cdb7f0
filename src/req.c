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

static int
json_to_buf(const char *data, size_t len, void *b)
{
	return buf_add(b, data, len) == RC_OK ? 0 : -1;
}

int
req_json(struct req *r, int status, json_t *j)
{
	if (!j)
		return req_fail(r, 500, 0, "out of memory");
	buf_reset(&r->out);
	if (json_dump_callback(j, json_to_buf, &r->out, JSON_COMPACT) != 0) {
		json_decref(j);
		return req_fail(r, 500, 0, "response too large");
	}
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
