/* The chrome every dialect shares: pagination, body fields, identity, times, errors. */
#include <string.h>
#include <stdio.h>
#include <time.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "push-client.h"
#include "metrics.h"
#include "api.h"

static const char *
bad_page_msg(struct req *r)
{
	return r->dialect == D_CHAX ? "invalid page or page_size" : "分页参数不合法";
}

/* Validate page and size (already parsed) into pg; 0, or -1 after writing the 400. */
static int
page_finish(struct req *r, int64_t page, int64_t size, int64_t *pp, int64_t *ps,
	    struct page *pg)
{
	if (page < 1 || page > PAGE_MAX || size < 1 || size > PAGE_SIZE_MAX)
		return req_fail(r, 400, 0, bad_page_msg(r));
	*pp = page;
	*ps = size;
	pg->limit = size;
	pg->offset = (page - 1) * size;
	return 0;
}

static int
page_text(const char *s, int64_t max, int64_t *out)
{
	return s ? parse_uint(s, max, out) : RC_OK;
}

int
api_page_query(struct req *r, const char *pname, const char *sname, const char *alias,
	       int64_t def, int64_t *page, int64_t *size, struct page *pg)
{
	const char *ps = req_query(r, pname), *ss = req_query(r, sname);
	int64_t p = 1, s = def;

	if (!ss && alias)
		ss = req_query(r, alias);
	if (page_text(ps, PAGE_MAX, &p) != RC_OK || page_text(ss, PAGE_SIZE_MAX, &s) != RC_OK)
		return req_fail(r, 400, 0, bad_page_msg(r));
	return page_finish(r, p, s, page, size, pg);
}

/* An integer field of the body: absent or null keeps *out; 0 ok, -1 bad. */
static int
json_int_field(json_t *o, const char *name, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, name);

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return *out >= 1 && *out <= max ? 0 : -1;
	}
	if (json_is_string(v))
		return parse_uint(json_string_value(v), max, out) == RC_OK ? 0 : -1;
	return -1;
}

int
api_page_json(struct req *r, const char *pname, const char *sname, const char *alias,
	      int64_t def, int64_t *page, int64_t *size, struct page *pg)
{
	int64_t p = 1, s = def;
	const char *sn = sname;

	if (alias && !json_object_get(r->json, sname))
		sn = alias;
	if (json_int_field(r->json, pname, PAGE_MAX, &p) != 0 ||
	    json_int_field(r->json, sn, PAGE_SIZE_MAX, &s) != 0)
		return req_fail(r, 400, 0, bad_page_msg(r));
	return page_finish(r, p, s, page, size, pg);
}

int
api_field(struct req *r, const char *name, const char **out)
{
	json_t *v = json_object_get(r->json, name);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		const char *m = r->dialect == D_CHAX ?
			pool_printf(r->pool, "%s must be a string", name) :
			pool_printf(r->pool, "%s 必须是字符串", name);
		return req_fail(r, 400, 0, m);
	}
	*out = json_string_value(v);
	return 0;
}

int
api_content_ok(struct req *r, const char *s)
{
	switch (limit_content(s)) {
	case CONTENT_EMPTY:
		return req_fail(r, 400, r->dialect == D_IM ? IM_CONTENT_EMPTY : 0,
				r->dialect == D_CHAX ? "content is required" : "消息内容不能为空");
	case CONTENT_LONG:
		return req_fail(r, 400, r->dialect == D_IM ? IM_CONTENT_LONG : 0,
				r->dialect == D_CHAX ? "content is too long" : "消息内容过长");
	case CONTENT_OK:
		break;
	}
	return 0;
}

const char *
api_acting_user(struct req *r, const char *given)
{
	if (given && utf8_count(given) > USER_ID_MAX) {
		req_fail(r, 400, 0, r->dialect == D_CHAX ? "user id is too long" : "用户ID过长");
		return NULL;
	}
	if (given && !*given)
		given = NULL;
	if (r->user) {
		if (given && strcmp(given, r->user) != 0) {
			req_fail(r, 403, 0,
				 r->dialect == D_CHAX ? "user id does not match the token" :
							"用户ID与令牌不符");
			return NULL;
		}
		return r->user;
	}
	return given && *given ? given : DEFAULT_USER;
}

const char *
api_required_user(struct req *r, const char *given)
{
	if ((!given || !*given) && !r->user) {
		req_fail(r, 400, 0, r->dialect == D_CHAX ? "user_id is required" : "用户ID不能为空");
		return NULL;
	}
	return api_acting_user(r, given);
}

int
api_success(struct req *r, json_t *data)
{
	return req_json(r, 200, json_pack("{s:i,s:s,s:o}", "code", 200, "message", "success",
					  "data", data ? data : json_null()));
}

json_t *
api_stored(const char *s)
{
	return s ? json_string_nocheck(s) : json_null();
}

json_t *
api_time(enum dialect d, int64_t ms)
{
	char t[32];

	if (d == D_CHAX)
		return json_integer(ms);
	time_iso(t, ms, d == D_AICHAT || d == D_V1);
	return json_string_nocheck(t); /* ASCII */
}

json_t *
api_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

void
api_msg_so_far(struct req *r, struct msg *m)
{
	char err[ERR_LEN], *text;
	struct msg again;
	size_t len;
	int rc;

	if (!m->unfinished)
		return;
	rc = push_content(r->cfg, r->pool, m->msg_id, &text, &len);
	if (rc == RC_OK)
		m->content = text; /* whole UTF-8 characters, from the daemon's checked reply */
	else if (rc == RC_NOTFOUND &&
		 store_msg_get(r->store, r->pool, m->id, api_owner(r), &again, err) == RC_OK)
		*m = again;
}

static _Thread_local int posted_via; /* the last api_post()'s post went to the daemon */

int
api_post(struct req *r, const struct store_post *in, struct store_posted *out, const char *gone)
{
	char err[ERR_LEN];
	/* through the daemon, which batches the writes of every worker and starts the run */
	int rc = push_post(r->cfg, r->pool, in, out, err);

	posted_via = rc != RC_UNAVAIL;
	if (rc == RC_UNAVAIL) {
		/* no daemon: write it here; the run waits in the database for the daemon */
		rc = store_post(r->store, r->pool, in, out, err);
		if (rc == RC_OK && in->run)
			push_wake(r->cfg);
	}
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, gone);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	if (in->run)
		metrics_send(r->dialect);
	return 0;
}

int
api_posted_via_daemon(void)
{
	return posted_via;
}

int
api_store_fail(struct req *r, int rc, const char *err)
{
	fprintf(stderr, "aichatd: %s %s: store error %d: %s\n", r->method, r->path, rc, err);
	if (rc == RC_UNAVAIL) /* the database server is down: a retry later may succeed */
		return req_fail(r, 503, 0, "the database is not reachable");
	return req_fail(r, 500, 0, NULL);
}

int
api_named_conv(struct req *r, const char *id, struct conv *c, int *have, const char *gone)
{
	char err[ERR_LEN];
	int rc = store_conv_get(r->store, r->pool, id, api_owner(r), c, err);

	*have = rc == RC_OK;
	if (rc == RC_NOTFOUND)
		rc = store_conv_taken(r->store, id, err) == RC_NOTFOUND ? RC_OK : RC_NOTFOUND;
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, gone);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return 0;
}

/* A run still running when its caller stops waiting: answered as timed out. */
static int
time_ran_out(struct run_result *out)
{
	out->error_code = RUN_ERR_TIMEOUT;
	out->error = "AI 回复超时";
	return 0;
}

int
api_wait_run(struct req *r, int64_t run_id, struct run_result *out)
{
	/* the daemon ends every run within connect + reply timeouts; a little slack on top */
	int64_t limit = ((int64_t)r->cfg->connect_timeout_s + r->cfg->reply_timeout_s + 5) * 1000;
	int64_t start = time_now_ms(), left;
	char err[ERR_LEN];
	int rc;

	for (;;) {
		left = limit - (time_now_ms() - start);
		if (left > 0 && push_wait(r->cfg, run_id, (int)left) != RC_OK) {
			/* the daemon is not there (or restarting): look again shortly */
			struct timespec ts = {0, 200 * 1000000L};
			nanosleep(&ts, NULL);
		}
		rc = store_run_result(r->store, r->pool, run_id, out, err);
		if (rc != RC_OK)
			return api_store_fail(r, rc, err);
		if (out->status != RUN_RUNNING)
			return 0;
		if (time_now_ms() - start >= limit)
			return time_ran_out(out);
	}
}

int
api_sync_hand_over(struct req *r, char kind, int64_t run_id)
{
	/* the query goes along, so that a token given as ?access_token= still authorises the
	 * result route */
	req_header(r, "X-Accel-Redirect: /_aichatd_sync/%c/%lld%s%s", kind, (long long)run_id,
		   *r->query ? "?" : "", r->query);
	r->status = 200;
	r->ctype = "text/plain; charset=utf-8";
	buf_reset(&r->out);
	return 0;
}

int
api_sync_result(struct req *r, struct run_result *out, const char *gone)
{
	char err[ERR_LEN];
	int64_t run_id;
	int rc;

	if (parse_uint(r->params[0], INT64_MAX, &run_id) != RC_OK)
		return req_fail(r, 404, 0, gone);
	rc = store_run_result(r->store, r->pool, run_id, out, err);
	if (rc == RC_NOTFOUND || (rc == RC_OK && r->user && strcmp(out->owner, r->user) != 0))
		return req_fail(r, 404, 0, gone);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	if (out->status != RUN_RUNNING)
		return 0;
	if (strncmp(r->path, "/_aichatd_sync/", 15) == 0)
		return api_wait_run(r, run_id, out); /* no daemon held it: wait here */
	/* the daemon let it go unended: its time ran out, as api_wait_run() says it */
	return time_ran_out(out);
}

int
api_hand_over(struct req *r, const char *target)
{
	if (!target)
		return req_fail(r, 500, 0, NULL);
	req_header(r, "X-Accel-Redirect: /_aichatd_push/%s", target);
	r->status = 200;
	r->ctype = "text/plain; charset=utf-8";
	buf_reset(&r->out);
	return 0;
}
