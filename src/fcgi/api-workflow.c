/* The workflow dialect (seed 004): the n8n workflow chat, /api/chat/send, /history, /stream. */
#include <string.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "push-client.h"
#include "api.h"
#include "provider.h"
#include "texts.h"

int
workflow_history(struct req *r)
{
	const char *sid = req_query(r, "sessionId");
	struct conv c;
	struct pair *rows = NULL;
	struct page pg;
	int64_t page, size, total = 0;
	char err[ERR_LEN];
	int n = 0, i, rc, have;
	json_t *a;

	if (!sid || !*sid)
		return req_fail(r, 400, 0, "会话ID不能为空");
	if (utf8_count(sid) > SESSION_ID_MAX)
		return req_fail(r, 400, 0, "会话ID长度不能超过48个字符");
	if (api_page_query(r, "page", "page_size", "pageSize", 100, &page, &size, &pg))
		return -1;
	if (api_named_conv(r, sid, &c, &have, "会话不存在"))
		return -1;
	if (have &&
	    (rc = store_pairs(r->store, r->pool, &c, pg, &rows, &n, &total, err)) != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++) {
		const struct pair *x = &rows[i];
		json_array_append_new(a, json_pack("{s:I,s:s,s:s,s:s,s:o,s:o,s:o}", "id",
						   (json_int_t)x->id, "sessionId", sid, "userId",
						   x->user_id, "userMessage", x->user_message,
						   "aiResponse", api_str_or_null(x->ai_response),
						   "timestamp", api_time(D_WORKFLOW, x->created_at),
						   "createdAt", api_time(D_WORKFLOW, x->created_at)));
	}
	return req_json(r, 200, json_pack("{s:i,s:s,s:{s:s,s:I,s:o}}", "code", 200, "message",
					  "success", "data", "sessionId", sid, "total",
					  (json_int_t)total, "messages", a));
}

/* Validate workflow's send and stream body into in: sessionId, userId and chatInput are
 * required (with auth = jwt a missing userId is the token's user). 0, or -1 after an error
 * was written. The strings stay the request's. */
static int
workflow_body(struct req *r, struct store_post *in)
{
	const char *sid, *uid, *input, *user;

	if (api_field(r, "sessionId", &sid) || api_field(r, "userId", &uid) ||
	    api_field(r, "chatInput", &input))
		return -1;
	if (!r->user && (!uid || !*uid))
		return req_fail(r, 400, 0, "用户ID不能为空");
	if (!(user = api_acting_user(r, uid)))
		return -1;
	if (api_content_ok(r, input))
		return -1;
	if (!sid || !*sid)
		return req_fail(r, 400, 0, "会话ID不能为空");
	if (utf8_count(sid) > SESSION_ID_MAX)
		return req_fail(r, 400, 0, "会话ID长度不能超过48个字符");
	memset(in, 0, sizeof(*in));
	in->conv_id = sid;
	in->owner = api_owner(r);
	in->create = 1;
	in->conv_user = user;
	in->title = sid;
	/* E talks to its workflow whenever one is set up; else to the default provider */
	in->model_config = in->run_config =
		*r->cfg->n8n_webhook_url ? provider_name(PROVIDER_N8N) : NULL;
	in->sender = user;
	in->role = "user";
	in->content = input;
	in->run = 1;
	return 0;
}

/* Validate workflow's send body, store the user message and start the run: 0, or -1 after
 * an error was written. */
static int
workflow_post(struct req *r, struct store_posted *out)
{
	struct store_post in;

	if (workflow_body(r, &in) || api_post(r, &in, out, "会话不存在"))
		return -1;
	return 0;
}

/* workflow's 500 for a send whose run failed or timed out: "send failed: <reason>", in the
 * dialect's Chinese (texts.h: the push daemon's stream answers a failed run in the same
 * words). */
static int
workflow_send_failed(struct req *r, const char *reason)
{
	return req_fail(r, 500, 0, pool_printf(r->pool, TEXT_WORKFLOW_SEND_FAILED, reason));
}

/* workflow's answer to a send, once its run has ended (or its time ran out). */
static int
workflow_send_answer(struct req *r, const struct run_result *res)
{
	json_t *plan = NULL;

	if (res->status != RUN_DONE)
		return workflow_send_failed(r, res->error ? res->error : "AI 回复超时");
	if (res->travel_plan)
		plan = json_loads(res->travel_plan, 0, NULL);
	return req_json(r, 200, json_pack("{s:i,s:s,s:{s:s,s:o,s:o}}", "code", 200, "message",
					  "success", "data", "reply", res->reply.content,
					  "travelPlanId",
					  res->travel_plan_id ? json_integer(res->travel_plan_id) :
								json_null(),
					  "travelPlan", plan ? plan : json_null()));
}

int
workflow_send(struct req *r)
{
	struct store_posted out;
	struct run_result res;

	if (workflow_post(r, &out))
		return -1;
	if (api_posted_via_daemon())
		/* answered by workflow_send_result */
		return api_sync_hand_over(r, 'e', out.run_id);
	/* the daemon could not take the post: wait here, as a send once always did */
	if (api_wait_run(r, out.run_id, &res))
		return -1;
	return workflow_send_answer(r, &res);
}

int
workflow_send_result(struct req *r)
{
	struct run_result res;

	if (api_sync_result(r, &res, "会话不存在"))
		return -1;
	return workflow_send_answer(r, &res);
}

/* Why the provider workflow's stream would use cannot be used at all, or NULL: n8n when a
 * webhook is set, else the default provider; openai needs a base URL, and a key when that
 * URL is OpenAI's own. */
static const char *
workflow_unusable(const struct config *cfg)
{
	if (*cfg->n8n_webhook_url || provider_find(cfg->provider) != PROVIDER_OPENAI)
		return NULL; /* n8n with its webhook, or builtin: always there */
	if (!*cfg->openai_base_url)
		return "no openai_base_url is configured";
	if (!*cfg->openai_api_key && strstr(cfg->openai_base_url, "://api.openai.com"))
		return "no openai_api_key is configured for api.openai.com";
	return NULL;
}

int
workflow_stream(struct req *r)
{
	struct store_post in;
	struct store_posted out;
	const char *why;

	if (workflow_body(r, &in))
		return -1;
	if ((why = workflow_unusable(r->cfg))) {
		/* the dialect's own answer here: plain text, not the JSON envelope */
		r->status = 503;
		r->ctype = "text/plain; charset=utf-8";
		buf_printf(&r->out, "AI 工作流未启用或配置错误 (%s)\n", why);
		return 0;
	}
	in.run = 2; /* the daemon passes the upstream's bytes on as they come */
	if (api_post(r, &in, &out, "会话不存在"))
		return -1;
	return api_hand_over(r, pool_printf(r->pool, "estream/%lld", (long long)out.run_id));
}
