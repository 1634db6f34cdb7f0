/*
 * The n8n provider: POST {sessionId, userId, chatInput} to the webhook. A JSON answer gives
 * the reply in output, reply or text (an array's first item too) and may carry a travelPlan
 * object; any other answer is read as a stream: n8n's JSON lines ({"type":"item",
 * "content":...}), SSE data lines, or plain text (upstream_n8n, src/lib/upstream-n8n.c).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "jsonpool.h"
#include "llm-curl.h"

static int
n8n_start(struct llm_call *call, uv_loop_t *loop, char *err)
{
	struct llm_http_call *c = (struct llm_http_call *)call;
	const struct run_job *job = call->job;
	const char *url = call->cfg->n8n_webhook_url;
	json_t *req;

	(void)loop;
	if (!*url) {
		snprintf(err, ERR_LEN, "AI 服务调用失败: no n8n webhook is configured");
		return RC_ERR;
	}
	req = json_pack("{s:s,s:s,s:s}", "sessionId", job->conv_id, "userId", job->user_id,
			"chatInput", job->content);
	c->body = req ? json_pool_text(req, JSON_COMPACT) : NULL;
	json_decref(req);
	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (!c->body || !c->headers) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	return llm_http_start(call, url, &upstream_n8n, err);
}

const struct llm_provider llm_n8n = {
	PROVIDER_N8N,                 /* id */
	sizeof(struct llm_http_call), /* call_size */
	0,                            /* wants_history: the workflow keeps its own, by sessionId */
	1,                            /* streams_raw: workflow's stream passes n8n's bytes on */
	&llm_http,                    /* transport */
	n8n_start,                    /* start */
	llm_http_release,             /* release */
};
