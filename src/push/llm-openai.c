/* The openai provider: POST {base}/chat/completions with stream: true, its answer read as
 * upstream_openai (src/lib/upstream-openai.c). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "jsonpool.h"
#include "util.h"
#include "llm-curl.h"

static int
openai_start(struct llm_call *call, uv_loop_t *loop, char *err)
{
	struct llm_http_call *c = (struct llm_http_call *)call;
	const struct run_job *job = call->job;
	const struct config *cfg = call->cfg;
	json_t *req, *msgs, *params;
	const char *key = cfg->openai_api_key, *model = job->cfg.model_name;
	char url[2048], *auth = NULL;
	size_t blen = strlen(cfg->openai_base_url);
	int i;

	(void)loop;
	/* no model, or the provider's own name for one: the setting's */
	if (!model || !*model || strcmp(model, provider_name(PROVIDER_OPENAI)) == 0)
		model = cfg->openai_model;
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
	while (blen && cfg->openai_base_url[blen - 1] == '/')
		blen--;
	snprintf(url, sizeof(url), "%.*s/chat/completions", (int)blen, cfg->openai_base_url);
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
	return llm_http_start(call, url, &upstream_openai, err);
}

const struct llm_provider llm_openai = {
	PROVIDER_OPENAI,              /* id */
	sizeof(struct llm_http_call), /* call_size */
	1,                            /* wants_history: the earlier messages go as messages */
	0,                            /* streams_raw */
	&llm_http,                    /* transport */
	openai_start,                 /* start */
	llm_http_release,             /* release */
};
