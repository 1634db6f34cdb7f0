/* The im dialect (seed 000): the lightweight IM service. /api/message, /api/ai, /health. */
#include <stdlib.h>
#include <string.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "push-client.h"
#include "api.h"

#define E_SESSION 1003

static json_t *
im_message(const struct msg *m)
{
	const char *type = "TEXT", *from = m->user_id;

	if (strcmp(m->role, "assistant") == 0) {
		type = "AI_REPLY";
		from = "ai_bot";
	} else if (strcmp(m->role, "system") == 0) {
		type = "SYSTEM";
		from = "system";
	}
	json_t *o = json_object();

	/* the list's hot path: keys set without a second look, strings as stored */
	json_object_set_new_nocheck(o, "id", json_integer(m->id));
	json_object_set_new_nocheck(o, "message_id", api_stored(m->msg_id));
	json_object_set_new_nocheck(o, "session_id", api_stored(m->conv_id));
	json_object_set_new_nocheck(o, "from_user_id", api_stored(from));
	json_object_set_new_nocheck(o, "msg_type", json_string_nocheck(type));
	json_object_set_new_nocheck(o, "msg_content", api_stored(m->content));
	json_object_set_new_nocheck(o, "created_at", api_time(D_IM, m->created_at));
	return o;
}

/* A session id (1-48 code points) from a string; writes 1003 and returns -1 when bad. */
static int
im_session_ok(struct req *r, const char *sid)
{
	if (!limit_session_id(sid))
		return req_fail(r, 400, E_SESSION,
				sid && *sid ? "会话ID长度不能超过48个字符" : "会话ID不能为空");
	return 0;
}

int
im_send(struct req *r)
{
	const char *content, *sid, *user;
	struct store_post in;
	struct store_posted out;

	if (api_field(r, "content", &content) || api_field(r, "session_id", &sid))
		return -1;
	if (api_content_ok(r, content))
		return -1;
	if (im_session_ok(r, sid))
		return -1;
	user = api_acting_user(r, NULL);
	memset(&in, 0, sizeof(in));
	in.conv_id = sid;
	in.owner = api_owner(r);
	in.create = 1;
	in.conv_user = user;
	in.title = sid;
	in.sender = user;
	in.role = "user";
	in.content = content;
	in.run = 1;
	if (api_post(r, &in, &out, "会话不存在"))
		return -1;
	return req_json(r, 200, im_message(&out.msg));
}

int
im_get(struct req *r)
{
	const char *id = r->params[0];
	struct msg m;
	char err[ERR_LEN];
	int64_t n;
	int rc;

	if (parse_uint(id, INT64_MAX, &n) == RC_OK)
		rc = store_msg_get(r->store, r->pool, n, api_owner(r), &m, err);
	else
		rc = store_msg_get_by_msgid(r->store, r->pool, id, api_owner(r), &m, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "消息不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	api_msg_so_far(r, &m);
	return req_json(r, 200, im_message(&m));
}

/* The conversation of a list request: 0 and found (*have = 1) or absent (*have = 0, an
 * empty list); -1 after writing an error. */
static int
im_conv(struct req *r, struct conv *c, int *have, struct page *pg, int64_t *page,
	int64_t *size)
{
	const char *sid = req_query(r, "session_id");

	if (im_session_ok(r, sid) || api_page_query(r, "page", "page_size", NULL, 20, page, size, pg))
		return -1;
	return api_named_conv(r, sid, c, have, "会话不存在");
}

int
im_list(struct req *r)
{
	struct conv c;
	struct page pg;
	struct msg *rows = NULL;
	int64_t page, size, total = 0;
	char err[ERR_LEN];
	int have, n = 0, i, rc;
	json_t *arr;

	if (im_conv(r, &c, &have, &pg, &page, &size))
		return -1;
	if (have && (rc = store_msg_list(r->store, r->pool, &c, pg, 0, &rows, &n, &total, err)))
		return api_store_fail(r, rc, err);
	arr = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(arr, im_message(&rows[i]));
	return req_json(r, 200, json_pack("{s:o,s:I,s:I,s:I}", "messages", arr, "total",
					  (json_int_t)total, "page", (json_int_t)page, "page_size",
					  (json_int_t)size));
}

int
im_records(struct req *r)
{
	struct conv c;
	struct page pg;
	struct run *rows = NULL;
	int64_t page, size, total = 0;
	char err[ERR_LEN];
	int have, n = 0, i, rc;
	json_t *arr;

	if (im_conv(r, &c, &have, &pg, &page, &size))
		return -1;
	if (have && (rc = store_run_list(r->store, r->pool, &c, pg, &rows, &n, &total, err)))
		return api_store_fail(r, rc, err);
	arr = json_array();
	for (i = 0; i < n; i++) {
		const struct run *x = &rows[i];
		json_array_append_new(
			arr, json_pack("{s:I,s:s,s:s,s:s,s:o,s:i,s:o,s:o,s:o}", "id",
				       (json_int_t)x->id, "record_id", x->record_id, "session_id",
				       x->conv_id, "user_message_id", x->user_msg_id, "ai_message_id",
				       api_str_or_null(x->ai_msg_id), "status", x->status,
				       "duration_ms",
				       x->duration_ms < 0 ? json_null() : json_integer(x->duration_ms),
				       "error_message", api_str_or_null(x->error_message), "created_at",
				       api_time(D_IM, x->created_at)));
	}
	return req_json(r, 200, json_pack("{s:o,s:I,s:I,s:I}", "records", arr, "total",
					  (json_int_t)total, "page", (json_int_t)page, "page_size",
					  (json_int_t)size));
}

int
im_health(struct req *r)
{
	char err[ERR_LEN];
	int64_t v;

	const char *detail = req_query(r, "detail");
	char stats[PUSH_LINE_MAX];
	json_t *j;
	int push_ok;

	if (store_version(r->store, &v, err) != RC_OK)
		return req_json(r, 503, json_pack("{s:s,s:s,s:s}", "status", "error", "version",
						  PACKAGE_VERSION, "database", err));
	/* the push daemon: without it no reply is made and no push reaches a client, so the
	 * pool is degraded (503, docs/API.md) */
	push_ok = push_stats(r->cfg, stats, sizeof(stats)) == RC_OK;
	if (push_ok)
		j = json_pack("{s:s,s:s,s:s}", "status", "ok", "version", PACKAGE_VERSION,
			      "database", "ok");
	else
		j = json_pack("{s:s,s:s,s:s,s:s}", "status", "degraded", "reason",
			      "the push daemon is unreachable (its control socket does not answer): "
			      "no AI reply is made and no push is sent",
			      "version", PACKAGE_VERSION, "database", "ok");
	if (j && detail && strcmp(detail, "1") == 0) {
		/* the push daemon's counters: runs, upstream transfers, connections, drops */
		json_t *push = json_object();
		if (push_ok) {
			char *tok, *save = NULL, *name = NULL;
			for (tok = strtok_r(stats, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
				if (!name) {
					name = tok;
					continue;
				}
				json_object_set_new(push, name, json_integer(atoll(tok)));
				name = NULL;
			}
			json_object_set_new(push, "status", json_string("ok"));
		} else {
			json_object_set_new(push, "status", json_string("unreachable"));
		}
		json_object_set_new(j, "push", push);
	}
	return req_json(r, push_ok ? 200 : 503, j);
}
