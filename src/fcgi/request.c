#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "url.h"
#include "request.h"

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
