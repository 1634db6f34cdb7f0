/* The v1 dialect (seed 003): /api/v1 sessions, model configs and the operation log. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "request.h"
#include "jsonpool.h"
#include "pool.h"
#include "util.h"
#include "push-client.h"
#include "oplog.h"
#include "provider.h"
#include "api.h"

#define MODEL_NAME_MAX 100
#define PROMPT_MAX 20000

/* The answer's reals as they were written (0.7, not 0.69999999999999996). */
static int
success_reals(struct req *r, json_t *data)
{
	if (api_success(r, data))
		return -1;
	buf_setlen(&r->out, num_shorten_json(r->out.s, r->out.len));
	return 0;
}

/* Stored JSON text back to a value; null when absent or unreadable. */
static json_t *
json_text(const char *s)
{
	json_t *j = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;

	return j ? j : json_null();
}

int
v1_session_create(struct req *r)
{
	const char *uid, *cfgid, *user;
	struct conv c;
	struct mcfg m;
	char err[ERR_LEN];
	int rc;

	if (api_field(r, "user_id", &uid) || api_field(r, "model_config_id", &cfgid))
		return -1;
	if (!(user = api_required_user(r, uid)))
		return -1;
	if (cfgid && *cfgid) {
		rc = store_mcfg_get(r->store, r->pool, cfgid, &m, err);
		if (rc == RC_NOTFOUND)
			return req_fail(r, 404, 0, "模型配置不存在");
		if (rc != RC_OK)
			return api_store_fail(r, rc, err);
	} else {
		cfgid = NULL;
	}
	rc = store_conv_create(r->store, r->pool, NULL, user, "新会话", cfgid, &c, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	return api_success(r, json_pack("{s:s}", "session_id", c.id));
}

static json_t *
message_json(const struct msg *m)
{
	const char *type = strcmp(m->role, "assistant") == 0 ? "ai" : m->role;

	return json_pack("{s:s,s:s,s:s,s:o,s:o}", "message_id", m->msg_id, "type", type,
			 "content", m->content, "created_time", api_time(D_V1, m->created_at),
			 "metadata", json_text(m->metadata));
}

int
v1_messages_list(struct req *r)
{
	struct conv c;
	struct page pg;
	struct msg *rows = NULL;
	int64_t page, size, total;
	char err[ERR_LEN];
	int n, i, rc;
	json_t *a;

	rc = store_conv_get(r->store, r->pool, r->params[0], api_owner(r), &c, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "会话不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	if (api_page_query(r, "page_num", "page_size", NULL, 20, &page, &size, &pg))
		return -1;
	rc = store_msg_list(r->store, r->pool, &c, pg, 0, &rows, &n, &total, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, message_json(&rows[i]));
	/* the metadata clients sent, with its reals as they wrote them */
	return success_reals(r, json_pack("{s:o,s:I,s:I,s:I}", "messages", a, "total",
					  (json_int_t)total, "page_num", (json_int_t)page,
					  "page_size", (json_int_t)size));
}

/*
 * Credentials never go into model configs (the upstream's key comes from the settings):
 * a key names one when one of its words (split at '_', '-', '.', ' ' and where a lower-case
 * letter meets an upper-case one), in any case, ends in "key", "token", "secret",
 * "password" or "passwd", or is "authorization", "credential" or "credentials". So
 * api_key, apiKey, APIKEY, x-api-key, access_token, Authorization and client_secret name
 * credentials; max_tokens, top_k and keywords do not.
 */
static int
word_is_secret(const char *w, size_t n, size_t whole_len)
{
	static const char *const ends[] = {"key", "token", "secret", "password", "passwd"};
	static const char *const whole[] = {"authorization", "credential", "credentials"};
	size_t i, l;

	for (i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
		if (n >= (l = strlen(ends[i])) && memcmp(w + n - l, ends[i], l) == 0)
			return 1;
	for (i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
		if (whole_len == strlen(whole[i]) && memcmp(w, whole[i], n) == 0)
			return 1;
	return 0;
}

static int
key_is_secret(const char *k)
{
	char w[64];
	size_t n = 0;
	int prev_lower = 0;

	for (;; k++) {
		unsigned char ch = (unsigned char)*k;
		int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			    (ch >= '0' && ch <= '9') || ch >= 0x80;
		int upper = ch >= 'A' && ch <= 'Z';

		if (!alnum || (upper && prev_lower)) {
			if (n && word_is_secret(w, n < sizeof(w) ? n : sizeof(w), n))
				return 1;
			n = 0;
		}
		if (!ch)
			return 0;
		if (alnum) {
			/* the word's last sizeof(w) characters: what its end is */
			if (n >= sizeof(w))
				memmove(w, w + 1, sizeof(w) - 1);
			w[n < sizeof(w) ? n : sizeof(w) - 1] = (char)(upper ? ch - 'A' + 'a' : ch);
			n++;
		}
		prev_lower = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
	}
}

/* The first key at any depth of v that names a credential, or NULL. */
static const char *
find_secret(json_t *v)
{
	const char *k, *found;
	json_t *x;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach(v, k, x) {
			if (key_is_secret(k))
				return k;
			if ((found = find_secret(x)))
				return found;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if ((found = find_secret(x)))
				return found;
	}
	return NULL;
}

/* Take every credential-like key out of v, at any depth (a config stored before they
 * were refused is shown without them). */
static void
drop_secrets(json_t *v)
{
	const char *k;
	json_t *x;
	void *tmp;
	size_t i;

	if (json_is_object(v)) {
		json_object_foreach_safe(v, tmp, k, x) {
			if (key_is_secret(k))
				json_object_del(v, k);
			else
				drop_secrets(x);
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			drop_secrets(x);
	}
}

static json_t *
mcfg_json(const struct mcfg *m)
{
	json_t *params = json_text(m->parameters);

	if (!json_is_object(params)) {
		json_decref(params);
		params = json_object();
	}
	drop_secrets(params);
	return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:o}", "config_id", m->config_id, "provider",
			 m->provider, "model_name", m->model_name, "model_version",
			 m->model_version, "parameters", params, "system_prompt", m->system_prompt,
			 "updated_time", api_time(D_V1, m->updated_at));
}

int
v1_mcfg_list(struct req *r)
{
	struct mcfg *rows = NULL;
	char err[ERR_LEN];
	int n, i, rc;
	json_t *a;

	rc = store_mcfg_list(r->store, r->pool, &rows, &n, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, mcfg_json(&rows[i]));
	return success_reals(r, json_pack("{s:o}", "models", a));
}

/* A bounded string field for a config; -1 after a written 400. */
static int
cfg_field(struct req *r, const char *name, size_t min, size_t max, const char **out)
{
	size_t n;

	if (api_field(r, name, out))
		return -1;
	if (!*out)
		return 0;
	n = utf8_count(*out);
	if (n < min || n > max)
		return req_fail(r, 400, 0, pool_printf(r->pool, "%s 长度不合法", name));
	return 0;
}

int
v1_mcfg_put(struct req *r)
{
	struct mcfg m;
	json_t *params = json_object_get(r->json, "parameters");
	const char *secret, *by = r->user ? r->user : "anonymous";
	char err[ERR_LEN], log[512];
	int64_t updated;
	int rc;

	memset(&m, 0, sizeof(m));
	m.config_id = r->params[0];
	if (cfg_field(r, "model_name", 1, MODEL_NAME_MAX, (const char **)&m.model_name) ||
	    cfg_field(r, "model_version", 0, MODEL_NAME_MAX, (const char **)&m.model_version) ||
	    cfg_field(r, "provider", 1, 16, (const char **)&m.provider) ||
	    cfg_field(r, "system_prompt", 0, PROMPT_MAX, (const char **)&m.system_prompt))
		return -1;
	if (m.provider && !provider_known(m.provider)) {
		char names[128];
		const char *msg = pool_printf(r->pool, "provider 必须是 %s",
					      provider_list(names, sizeof(names), "、", " 或 "));
		return req_fail(r, 400, 0, msg ? msg : "provider");
	}
	if (params && !json_is_null(params)) {
		json_t *obj = params;
		if (json_is_string(params))
			obj = json_loads(json_string_value(params), 0, NULL);
		if (!json_is_object(obj)) {
			if (obj != params)
				json_decref(obj);
			return req_fail(r, 400, 0, "parameters 必须是 JSON 对象");
		}
		/* a key is a setting, never a parameter: refused, and so never stored or shown */
		if ((secret = find_secret(obj))) {
			char *msg = pool_printf(r->pool, "parameters 不能包含密钥字段: %.*s",
						(int)utf8_fit(secret, strlen(secret), 64), secret);
			if (obj != params)
				json_decref(obj);
			return req_fail(r, 400, 0, msg);
		}
		m.parameters = json_pool_text(obj, JSON_COMPACT);
		if (obj != params)
			json_decref(obj);
		if (!m.parameters)
			return req_fail(r, 500, 0, NULL);
		pool_cleanup(r->pool, free, m.parameters);
		/* stored as written: 0.7, not jansson's 0.69999999999999996 */
		m.parameters[num_shorten_json(m.parameters, strlen(m.parameters))] = '\0';
	}
	rc = store_mcfg_update(r->store, &m, &updated, err);
	if (rc == RC_NOTFOUND)
		return req_fail(r, 404, 0, "模型配置不存在");
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	/* the names of the fields changed, never their values */
	snprintf(log, sizeof(log), "model config %.*s updated by %.*s%s%s%s%s%s",
		 (int)utf8_fit(m.config_id, strlen(m.config_id), 64), m.config_id,
		 (int)utf8_fit(by, strlen(by), 128), by, m.provider ? " provider" : "",
		 m.model_name ? " model_name" : "", m.model_version ? " model_version" : "",
		 m.parameters ? " parameters" : "", m.system_prompt ? " system_prompt" : "");
	oplog(r->store, "info", "%s", log);
	return api_success(r, json_pack("{s:s,s:o}", "config_id", m.config_id, "updated_time",
					api_time(D_V1, updated)));
}

int
v1_logs(struct req *r)
{
	const char *level = req_query(r, "level"), *from = req_query(r, "start_time"),
		   *to = req_query(r, "end_time");
	int64_t from_ms = -1, to_ms = -1, page, size, total;
	struct logent *rows = NULL;
	struct page pg;
	char err[ERR_LEN];
	int n, i, rc;
	json_t *a;

	if (level && !*level)
		level = NULL;
	if (level && strcmp(level, "info") && strcmp(level, "warning") && strcmp(level, "error"))
		return req_fail(r, 400, 0, "level 必须是 info、warning 或 error");
	if ((from && *from && time_parse(from, &from_ms) != RC_OK) ||
	    (to && *to && time_parse(to, &to_ms) != RC_OK))
		return req_fail(r, 400, 0, "时间格式不合法");
	if (api_page_query(r, "page_num", "page_size", NULL, 20, &page, &size, &pg))
		return -1;
	rc = store_log_list(r->store, r->pool, level, from_ms, to_ms, pg, &rows, &n, &total, err);
	if (rc != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:I,s:s,s:s,s:o}", "log_id",
						   (json_int_t)rows[i].id, "level", rows[i].level,
						   "message", rows[i].message, "created_time",
						   api_time(D_V1, rows[i].created_at)));
	return api_success(r, json_pack("{s:o,s:I,s:I,s:I}", "logs", a, "total",
					(json_int_t)total, "page_num", (json_int_t)page,
					"page_size", (json_int_t)size));
}

/* v1's answer to a send, once its run has ended (or its time ran out). */
static int
v1_send_answer(struct req *r, const struct run_result *res)
{
	if (res->status != RUN_DONE) {
		if (res->error_code == RUN_ERR_TIMEOUT)
			return req_fail(r, 504, 0, res->error ? res->error : "AI 回复超时");
		return req_fail(r, 502, 0, res->error ? res->error : "AI 服务调用失败");
	}
	return api_success(r, json_pack("{s:{s:s,s:o},s:{s:s,s:s,s:o,s:o}}", "user_message",
					"message_id", res->user_msg_id, "created_time",
					api_time(D_V1, res->user_msg_at), "ai_message",
					"message_id", res->reply.msg_id, "content",
					res->reply.content, "created_time",
					api_time(D_V1, res->reply.created_at), "metadata",
					json_text(res->reply.metadata)));
}

int
v1_send(struct req *r)
{
	const char *uid, *message, *user;
	json_t *meta = json_object_get(r->json, "metadata");
	struct store_post in;
	struct store_posted out;
	struct run_result res;
	char *meta_text = NULL;

	if (api_field(r, "user_id", &uid) || api_field(r, "message", &message))
		return -1;
	/* the dialect's body names the sender: required, or the token's subject */
	if (!(user = api_required_user(r, uid)))
		return -1;
	if (api_content_ok(r, message))
		return -1;
	if (meta && !json_is_null(meta)) {
		meta_text = json_pool_text(meta, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!meta_text)
			return req_fail(r, 500, 0, NULL);
		pool_cleanup(r->pool, free, meta_text);
	}
	memset(&in, 0, sizeof(in));
	in.conv_id = r->params[0];
	in.owner = api_owner(r);
	in.sender = user;
	in.role = "user";
	in.content = message;
	in.metadata = meta_text;
	in.run = 1;
	if (api_post(r, &in, &out, "会话不存在"))
		return -1;
	if (api_posted_via_daemon())
		return api_sync_hand_over(r, 'd', out.run_id); /* answered by v1_send_result */
	/* the daemon could not take the post: wait here, as a send once always did */
	if (api_wait_run(r, out.run_id, &res))
		return -1;
	return v1_send_answer(r, &res);
}

int
v1_send_result(struct req *r)
{
	struct run_result res;

	if (api_sync_result(r, &res, "会话不存在"))
		return -1;
	return v1_send_answer(r, &res);
}
