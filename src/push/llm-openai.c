/* The openai provider: POST {base}/chat/completions with stream: true, read the SSE reply. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "jsonpool.h"
#include "util.h"
#include "llm-int.h"

/* One choice's text and end from a chunk (or a whole, non-streamed reply). */
static void
take_choice(struct llm_call *c, json_t *j)
{
	json_t *choice = json_array_get(json_object_get(j, "choices"), 0), *err;
	json_t *delta, *content, *finish;

	if ((err = json_object_get(j, "error"))) {
		const char *m = json_string_value(json_object_get(err, "message"));
		if (!m)
			m = json_string_value(err);
		llm_failf(c, "AI 服务调用失败: %s", m ? m : "upstream error");
		return;
	}
	if (!choice)
		return;
	delta = json_object_get(choice, "delta");
	if (!delta)
		delta = json_object_get(choice, "message");
	content = json_object_get(delta, "content");
	if (json_is_string(content) &&
	    llm_emit(c, json_string_value(content), json_string_length(content)) != 0)
		return;
	finish = json_object_get(choice, "finish_reason");
	if (finish && !json_is_null(finish))
		c->finished = 1;
}

static void
on_line(struct llm_call *c, char *line, size_t len)
{
	const char *data = llm_sse_data(line);
	json_t *j;

	(void)len;
	if (!data || c->fail[0])
		return; /* comments, event names, ids, blank separators */
	if (strcmp(data, "[DONE]") == 0) {
		c->finished = 1;
		return;
	}
	j = json_loads(data, 0, NULL);
	if (!j) {
		llm_failf(c, "AI 服务调用失败: malformed stream chunk");
		return;
	}
	take_choice(c, j);
	json_decref(j);
}

static void
on_end(struct llm_call *c)
{
	if (!c->stream) {
		/* the server answered with one JSON document instead of a stream */
		json_t *j = json_loadb(c->whole.s, c->whole.len, 0, NULL);
		if (!j) {
			llm_failf(c, "AI 服务调用失败: malformed JSON reply");
			return;
		}
		take_choice(c, j);
		json_decref(j);
		if (!c->fail[0] && !c->reply_len && !c->finished)
			llm_failf(c, "AI 服务调用失败: reply has no content");
		return;
	}
	if (!c->finished && !c->fail[0])
		llm_failf(c, "AI 服务调用失败: stream ended before [DONE]");
}

int
llm_openai_start(struct llm_call *c, char *err)
{
	const struct run_job *job = c->job;
	json_t *req, *msgs, *params;
	const char *key = c->cfg->openai_api_key, *model = job->cfg.model_name;
	char url[2048], *auth = NULL;
	size_t blen = strlen(c->cfg->openai_base_url);
	int i;

	if (!model || !*model || strcmp(model, "openai") == 0)
		model = c->cfg->openai_model;
	msgs = json_array();
	if (job->cfg.system_prompt && *job->cfg.system_prompt)
		json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content",
						      job->cfg.system_prompt));
	for (i = 0; i < job->nhistory; i++)
		json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", job->history[i].role,
						      "content", job->history[i].content));
	json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", job->content));
	req = json_object();
	/* the config's parameters (temperature, top_p, max_tokens...) first, so the fields
	 * the protocol needs cannot be overridden by them */
	params = json_loads(job->cfg.parameters ? job->cfg.parameters : "{}", 0, NULL);
	if (json_is_object(params))
		json_object_update(req, params);
	json_decref(params);
	json_object_set_new(req, "model", json_string(model));
	json_object_set_new(req, "messages", msgs);
	json_object_set_new(req, "stream", json_true());
	c->body = json_pool_text(req, JSON_COMPACT);
	json_decref(req);
	if (c->body) /* the parameters' reals as they were written: 0.7, not 0.69999999999999996 */
		c->body[num_shorten_json(c->body, strlen(c->body))] = '\0';
	while (blen && c->cfg->openai_base_url[blen - 1] == '/')
		blen--;
	snprintf(url, sizeof(url), "%.*s/chat/completions", (int)blen, c->cfg->openai_base_url);
	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	c->headers = curl_slist_append(c->headers, "Accept: text/event-stream");
	if (*key && asprintf(&auth, "Authorization: Bearer %s", key) >= 0) {
		c->headers = curl_slist_append(c->headers, auth);
		free(auth);
	}
	if (!c->body || !c->headers) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	c->on_line = on_line;
	c->on_end = on_end;
	return llm_http_start(c, url, err);
}
