/*
 * The n8n provider: POST {sessionId, userId, chatInput} to the webhook. A JSON answer gives
 * the reply in output, reply or text (an array's first item too) and may carry a travelPlan
 * object; any other answer is read as a stream: n8n's JSON lines ({"type":"item",
 * "content":...}), SSE data lines, or plain text.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "jsonpool.h"
#include "util.h"
#include "llm-int.h"

static const char *
reply_text(json_t *o)
{
	static const char *const fields[] = {"output", "reply", "text", "content", "message"};
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *v = json_object_get(o, fields[i]);
		if (json_is_string(v))
			return json_string_value(v);
	}
	return NULL;
}

static void
keep_plan(struct llm_call *c, json_t *o)
{
	json_t *plan = json_object_get(o, "travelPlan");

	if (json_is_object(plan) && !c->travel_plan)
		c->travel_plan = json_pool_text(plan, JSON_COMPACT);
}

static void
on_line(struct llm_call *c, char *line, size_t len)
{
	const char *data = llm_sse_data(line);
	const char *type, *text;
	json_t *j;

	if (c->fail[0])
		return;
	if (!data && len && line[0] != '{') {
		/* plain text: the line is the reply, newline included */
		if (!utf8_valid(line, len)) {
			llm_failf(c, "AI 服务调用失败: reply is not UTF-8");
			return;
		}
		if (llm_emit(c, line, len) == 0)
			llm_emit(c, "\n", 1);
		return;
	}
	if (!data)
		data = line;
	if (!*data || strcmp(data, "[DONE]") == 0)
		return;
	j = json_loads(data, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		llm_failf(c, "AI 服务调用失败: malformed stream line");
		return;
	}
	type = json_string_value(json_object_get(j, "type"));
	if (type && strcmp(type, "error") == 0) {
		text = reply_text(j);
		llm_failf(c, "AI 服务调用失败: %s", text ? text : "workflow error");
	} else if (type && strcmp(type, "item") == 0) {
		text = json_string_value(json_object_get(j, "content"));
		if (text)
			llm_emit(c, text, strlen(text));
	} else if (!type || strcmp(type, "begin") != 0) {
		if (type && strcmp(type, "end") == 0)
			c->finished = 1;
		else if ((text = reply_text(j)))
			llm_emit(c, text, strlen(text));
	}
	keep_plan(c, j);
	json_decref(j);
}

static void
on_end(struct llm_call *c)
{
	json_t *j, *o;
	const char *text;

	if (c->stream)
		return;
	j = json_loadb(c->whole.s, c->whole.len, 0, NULL);
	if (!j) {
		/* not one document: JSON lines under a JSON content type, as n8n streams them */
		char *line = c->whole.s, *nl;
		while (!c->fail[0] && line < c->whole.s + c->whole.len) {
			nl = memchr(line, '\n', c->whole.len - (size_t)(line - c->whole.s));
			if (nl)
				*nl = '\0';
			if (*line && *line != '\r')
				on_line(c, line, strlen(line));
			if (!nl)
				break;
			line = nl + 1;
		}
		if (!c->fail[0] && !c->reply_len)
			llm_failf(c, "AI 服务调用失败: malformed workflow reply");
		return;
	}
	o = json_is_array(j) ? json_array_get(j, 0) : j;
	if (!json_is_object(o)) {
		llm_failf(c, "AI 服务调用失败: malformed workflow reply");
	} else if (!(text = reply_text(o))) {
		llm_failf(c, "AI 服务调用失败: workflow reply has no output, reply or text");
	} else {
		llm_emit(c, text, strlen(text));
		keep_plan(c, o);
	}
	json_decref(j);
}

int
llm_n8n_start(struct llm_call *c, char *err)
{
	const struct run_job *job = c->job;
	const char *url = c->cfg->n8n_webhook_url;
	json_t *req;

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
	c->on_line = on_line;
	c->on_end = on_end;
	return llm_http_start(c, url, err);
}
