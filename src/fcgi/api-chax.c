/* The chax dialect (seed 002): ChaxAI under /ai. Errors are {"error": "..."}. */
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "push-client.h"
#include "api.h"

#define TITLE_CHARS 30

static json_t *
conv_json(const struct conv *c)
{
	return json_pack("{s:s,s:s,s:I,s:I}", "conversationId", c->id, "title", c->title,
			 "createTimestamp", (json_int_t)c->created_at, "updateTimestamp",
			 (json_int_t)c->updated_at);
}

static void
total_header(struct req *r, int64_t total)
{
	req_header(r, "X-Total-Count: %lld", (long long)total);
}

int
chax_record_list(struct req *r)
{
	struct conv *rows = NULL;
	struct page pg;
	int64_t page, size, total;
	char err[ERR_LEN];
	int n, i, rc;
	json_t *a;

	if (api_page_query(r, "page", "page_size", "pageSize", 100, &page, &size, &pg))
		return -1;
	rc = store_conv_list(r->store, r->pool, api_owner(r), pg, &rows, &n, &total, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, conv_json(&rows[i]));
	total_header(r, total);
	return req_json(r, 200, a);
}

int
chax_message_list(struct req *r)
{
	struct conv c;
	struct msg *rows = NULL;
	struct page pg;
	int64_t page, size, total;
	char err[ERR_LEN];
	int n, i, rc;
	json_t *a;

	rc = store_conv_get(r->store, r->pool, r->params[0], api_owner(r), &c, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "Conversation not found");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	if (api_page_query(r, "page", "page_size", "pageSize", 100, &page, &size, &pg))
		return -1;
	rc = store_msg_list(r->store, r->pool, &c, pg, 1, &rows, &n, &total, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s,s:s,s:b,s:b,s:s}", "msgId",
						   rows[i].msg_id, "role", rows[i].role,
						   "visiableInClient", rows[i].visible, "unfinished",
						   rows[i].unfinished, "error",
						   rows[i].error ? rows[i].error : ""));
	total_header(r, total);
	return req_json(r, 200, a);
}

int
chax_message_content(struct req *r)
{
	struct msg m;
	char err[ERR_LEN];
	int rc;

	rc = store_msg_get_by_msgid(r->store, r->pool, r->params[0], api_owner(r), &m, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "Message not found");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	api_msg_so_far(r, &m);
	return req_json(r, 200, json_pack("{s:s,s:s}", "content", m.content, "error",
					  m.error ? m.error : ""));
}

/* A title from the first words of the content: white space collapsed, at most
 * TITLE_CHARS code points. */
static char *
title_from(struct pool *p, const char *s)
{
	char *t = pool_alloc(p, strlen(s) + 1), *o = t;
	int space = 0;

	if (!t)
		return NULL;
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' ||
		    *s == '\v') {
			space = 1;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = 0;
		*o++ = *s;
	}
	*o = '\0';
	t[utf8_prefix(t, TITLE_CHARS)] = '\0';
	return t;
}

int
chax_chat(struct req *r)
{
	const char *cid, *content;
	struct store_post in;
	struct store_posted out;
	json_t *j;

	if (api_field(r, "conversationId", &cid) || api_field(r, "content", &content))
		return -1;
	if (api_content_ok(r, content))
		return -1;
	if (cid && !*cid)
		cid = NULL;
	memset(&in, 0, sizeof(in));
	in.conv_id = cid;
	in.owner = api_owner(r);
	in.create = 0;
	in.conv_user = api_acting_user(r, NULL);
	in.title = title_from(r->pool, content);
	in.sender = in.conv_user;
	in.role = "user";
	in.content = content;
	in.run = 1;
	if (!in.title)
		return req_fail(r, 500, 0, NULL);
	if (api_post(r, &in, &out, "Conversation not found"))
		return -1;
	j = conv_json(&out.conv);
	json_object_set_new(j, "userMsgId", json_string(out.msg.msg_id));
	json_object_set_new(j, "msgId", json_string(out.reply.msg_id));
	return req_json(r, 200, j);
}

/* The Last-Event-ID given as ?last_event_id=, for the daemon's query: percent-encoded,
 * NULL when absent or longer than any id the daemon gives (it starts over then). */
static const char *
last_id_query(struct req *r)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *last = req_query(r, "last_event_id");
	char *out, *o;

	if (!last || !*last || strlen(last) > 150)
		return NULL;
	if (!(out = o = pool_alloc(r->pool, 3 * strlen(last) + 1)))
		return NULL;
	for (; *last; last++) {
		unsigned char ch = (unsigned char)*last;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '_' || ch == '-' || ch == '.' || ch == ':') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = '\0';
	return out;
}

int
chax_stream(struct req *r)
{
	const char *last = last_id_query(r);
	struct msg m;
	char err[ERR_LEN];
	int rc;

	rc = store_msg_get_by_msgid(r->store, r->pool, r->params[0], api_owner(r), &m, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "Message not found");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	/* EventSource cannot send Last-Event-ID on its first connect: the query says it then;
	 * the header, when present, reaches the daemon by itself (and wins) */
	if (last)
		return api_hand_over(r, pool_printf(r->pool, "sse/%s?last_event_id=%s", m.msg_id, last));
	return api_hand_over(r, pool_printf(r->pool, "sse/%s", m.msg_id));
}

int
chax_stop(struct req *r)
{
	struct msg m;
	char err[ERR_LEN];
	int64_t run_id;
	int rc, status, stopped = 0;

	rc = store_msg_get_by_msgid(r->store, r->pool, r->params[0], api_owner(r), &m, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "Message not found");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	rc = store_run_of_reply(r->store, m.id, &run_id, &status, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 400, 0, "not an AI reply");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	if (status == RUN_RUNNING) {
		if (push_stop(r->cfg, run_id, &status) != RC_OK)
			return req_fail(r, 503, 0, "the push daemon is not reachable");
		stopped = status == RUN_STOPPED;
		rc = store_msg_get_by_msgid(r->store, r->pool, r->params[0], api_owner(r), &m, err);
		if (rc != RC_OK)
			return api_store_fail(r, rc, err);
	}
	return req_json(r, 200, json_pack("{s:s,s:b,s:b,s:s}", "msgId", m.msg_id, "stopped",
					  stopped, "unfinished", m.unfinished, "content",
					  m.content));
}
