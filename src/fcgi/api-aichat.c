/* The aichat dialect (seed 001): sessions and messages under /api/chat, views under /aichat. */
#include <string.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "push-client.h"
#include "api.h"

#define LATEST 50
#define DEFAULT_TITLE "新会话"

static json_t *
session_json(const struct conv *c)
{
	return json_pack("{s:s,s:s,s:s,s:I,s:o,s:o,s:b}", "session_id", c->id, "user_id",
			 c->user_id, "title", c->title, "message_count", (json_int_t)c->msg_count,
			 "created_at", api_time(D_AICHAT, c->created_at), "updated_at",
			 api_time(D_AICHAT, c->updated_at), "is_deleted", 0);
}

static json_t *
message_json(const struct msg *m)
{
	return json_pack("{s:I,s:s,s:s,s:s,s:o,s:o,s:b}", "message_id", (json_int_t)m->id,
			 "session_id", m->conv_id, "role", m->role, "content", m->content,
			 "created_at", api_time(D_AICHAT, m->created_at), "updated_at",
			 api_time(D_AICHAT, m->updated_at), "is_deleted", 0);
}

static json_t *
messages_json(const struct msg *rows, int n)
{
	json_t *a = json_array();
	int i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, message_json(&rows[i]));
	return a;
}

/* The visible conversation named by the first path parameter, or a written 404. */
static int
find_session(struct req *r, struct conv *c)
{
	char err[ERR_LEN];
	int rc = store_conv_get(r->store, r->pool, r->params[0], api_owner(r), c, err);

	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "会话不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return 0;
}

/* A title field: absent gives def (may be NULL); -1 after a written 400. */
static int
title_field(struct req *r, const char *name, const char *def, const char **out)
{
	if (api_field(r, name, out))
		return -1;
	if (!*out) {
		*out = def;
		if (!def)
			return req_fail(r, 400, 0, "标题不能为空");
		return 0;
	}
	if (utf8_blank(*out))
		return req_fail(r, 400, 0, "标题不能为空");
	if (utf8_count(*out) > TITLE_MAX)
		return req_fail(r, 400, 0, "标题过长");
	return 0;
}

int
aichat_session_create(struct req *r)
{
	const char *uid, *title, *user;
	struct conv c;
	char err[ERR_LEN];
	int rc;

	if (api_field(r, "user_id", &uid) || title_field(r, "title", DEFAULT_TITLE, &title))
		return -1;
	if (!(user = api_required_user(r, uid)))
		return -1;
	rc = store_conv_create(r->store, r->pool, NULL, user, title, NULL, &c, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, session_json(&c));
}

int
aichat_session_get(struct req *r)
{
	struct conv c;

	if (find_session(r, &c))
		return -1;
	return api_success(r, session_json(&c));
}

/* List a user's sessions (user NULL: everybody's); with_page adds the paging fields. */
static int
list_sessions(struct req *r, const char *user, struct page pg, int64_t page, int64_t size,
	      int bare, int show)
{
	struct conv *rows = NULL;
	struct msg *msgs = NULL;
	int64_t total;
	char err[ERR_LEN];
	int n, nm = 0, i, rc;
	json_t *a, *data;

	rc = store_conv_list(r->store, r->pool, user, pg, &rows, &n, &total, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, session_json(&rows[i]));
	if (bare)
		return api_success(r, a);
	data = json_pack("{s:o,s:I,s:I,s:I}", "items", a, "total", (json_int_t)total, "page",
			 (json_int_t)page, "page_size", (json_int_t)size);
	if (show) {
		/* the latest 50 messages of the most recently updated session (not of this page) */
		struct conv *latest = NULL;
		struct page first = {0, 1};
		int nl = 0;

		if (page == 1 && n > 0) {
			latest = &rows[0];
			nl = 1;
		} else if ((rc = store_conv_list(r->store, r->pool, user, first, &latest, &nl,
						 &total, err)) != RC_OK) {
			json_decref(data);
			return api_store_fail(r, rc, err);
		}
		if (nl && (rc = store_msg_latest(r->store, r->pool, latest, LATEST, &msgs, &nm,
						 err)) != RC_OK) {
			json_decref(data);
			return api_store_fail(r, rc, err);
		}
		json_object_set_new(data, "latest_session_id",
				    nl ? json_string(latest->id) : json_null());
		json_object_set_new(data, "messages", messages_json(msgs, nm));
	}
	return api_success(r, data);
}

int
aichat_sessions_list(struct req *r)
{
	const char *uid;
	struct page pg;
	int64_t page, size;

	if (api_field(r, "user_id", &uid) ||
	    api_page_json(r, "page", "page_size", "pageSize", 20, &page, &size, &pg))
		return -1;
	/* required: with no token, a missing user_id would list every user's sessions */
	if (!(uid = api_required_user(r, uid)))
		return -1;
	return list_sessions(r, uid, pg, page, size, 1, 0);
}

static int
view_list(struct req *r, int show)
{
	struct page pg;
	int64_t page, size;

	if (!api_acting_user(r, r->params[0]) ||
	    api_page_query(r, "page", "page_size", "pageSize", 20, &page, &size, &pg))
		return -1;
	return list_sessions(r, r->params[0], pg, page, size, 0, show);
}

int
aichat_view_list(struct req *r)
{
	return view_list(r, 0);
}

int
aichat_view_listshow(struct req *r)
{
	return view_list(r, 1);
}

int
aichat_view_session(struct req *r)
{
	struct conv c;
	struct msg *rows = NULL;
	char err[ERR_LEN];
	int n, rc;
	json_t *s;

	if (find_session(r, &c))
		return -1;
	rc = store_msg_latest(r->store, r->pool, &c, LATEST, &rows, &n, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	s = session_json(&c);
	json_object_set_new(s, "messages", messages_json(rows, n));
	return api_success(r, s);
}

int
aichat_session_delete(struct req *r)
{
	char err[ERR_LEN];
	int rc = store_conv_delete(r->store, r->params[0], api_owner(r), err);

	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "会话不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, json_string("会话删除成功"));
}

int
aichat_session_rename(struct req *r)
{
	const char *title;
	char err[ERR_LEN];
	int rc;

	if (title_field(r, "new_title", NULL, &title))
		return -1;
	rc = store_conv_rename(r->store, r->params[0], api_owner(r), title, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "会话不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, json_string("标题更新成功"));
}

int
aichat_message_post(struct req *r)
{
	const char *sid, *content, *role;
	struct store_post in;
	struct store_posted out;

	if (api_field(r, "session_id", &sid) || api_field(r, "content", &content) ||
	    api_field(r, "role", &role))
		return -1;
	if (!sid || !*sid)
		return req_fail(r, 400, 0, "会话ID不能为空");
	if (api_content_ok(r, content))
		return -1;
	if (!role)
		role = "user";
	if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))
		return req_fail(r, 400, 0, "role 必须是 user、assistant 或 system");
	memset(&in, 0, sizeof(in));
	in.conv_id = sid;
	in.owner = api_owner(r);
	in.role = role;
	in.content = content;
	if (strcmp(role, "assistant") == 0)
		in.sender = "ai_bot";
	else if (strcmp(role, "system") == 0)
		in.sender = "system";
	else
		in.sender = api_acting_user(r, NULL);
	/* a user message starts an AI reply; assistant and system messages are stored as given */
	in.run = strcmp(role, "user") == 0;
	if (api_post(r, &in, &out, "会话不存在"))
		return -1;
	return api_success(r, message_json(&out.msg));
}

/* The visible message named by path parameter i (an integer id), or a written 404. */
static int
find_message(struct req *r, int i, struct msg *m)
{
	char err[ERR_LEN];
	int64_t id;
	int rc;

	if (parse_uint(r->params[i], INT64_MAX, &id) != RC_OK)
		return req_fail(r, 404, 0, "消息不存在");
	rc = store_msg_get(r->store, r->pool, id, api_owner(r), m, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "消息不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return 0;
}

int
aichat_message_get(struct req *r)
{
	struct conv c;
	struct msg m;

	if (find_session(r, &c) || find_message(r, 1, &m))
		return -1;
	if (strcmp(m.conv_id, c.id) != 0)
		return req_fail(r, 404, 0, "消息不存在");
	api_msg_so_far(r, &m);
	return api_success(r, message_json(&m));
}

int
aichat_messages_list(struct req *r)
{
	struct conv c;
	struct page pg;
	struct msg *rows = NULL;
	int64_t page, size, total;
	char err[ERR_LEN];
	int n, rc;

	if (find_session(r, &c) ||
	    api_page_query(r, "page", "page_size", "pageSize", 50, &page, &size, &pg))
		return -1;
	rc = store_msg_list(r->store, r->pool, &c, pg, 0, &rows, &n, &total, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, json_pack("{s:o,s:I,s:I,s:I}", "items", messages_json(rows, n),
					"total", (json_int_t)total, "page", (json_int_t)page,
					"page_size", (json_int_t)size));
}

int
aichat_message_delete(struct req *r)
{
	struct msg m;
	char err[ERR_LEN];
	int rc;

	if (find_message(r, 0, &m))
		return -1;
	rc = store_msg_delete(r->store, m.id, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "消息不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, json_string("消息删除成功"));
}

int
aichat_message_edit(struct req *r)
{
	const char *content;
	struct msg m;
	char err[ERR_LEN];
	int rc;

	if (api_field(r, "new_content", &content) || api_content_ok(r, content) ||
	    find_message(r, 0, &m))
		return -1;
	if (strcmp(m.role, "user") != 0)
		return req_fail(r, 403, 0, "只能编辑用户消息");
	rc = store_msg_edit(r->store, m.id, content, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "消息不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, json_string("消息编辑成功"));
}
