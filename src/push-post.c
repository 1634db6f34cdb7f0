/*
 * The "post" command between a worker and the push daemon (push.h): a store_post out as
 * one JSON line, its store_posted back as another. Both sides use these four functions,
 * so the two ends cannot drift apart. JSON (jansson) rather than a binary layout: the
 * fields are strings of any length, and the lines can be read in a trace.
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <jansson.h>

#include "rc.h"
#include "buf.h"
#include "pool.h"
#include "push.h"
#include "store.h"

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int
dump_to_buf(const char *s, size_t n, void *arg)
{
	return buf_add(arg, s, n) == RC_OK ? 0 : -1;
}

/* Append "<verb> <j>\n" to line; takes j. */
static int
put_line(struct buf *line, const char *verb, json_t *j)
{
	int rc = RC_NOMEM;

	if (!j)
		return RC_NOMEM;
	if (buf_adds(line, verb) == RC_OK && buf_addch(line, ' ') == RC_OK &&
	    json_dump_callback(j, dump_to_buf, line, JSON_COMPACT) == 0)
		rc = buf_addch(line, '\n');
	json_decref(j);
	return rc;
}

int
push_post_encode(const struct store_post *in, struct buf *line)
{
	json_t *j = json_object();

	if (!j)
		return RC_NOMEM;
	json_object_set_new(j, "conv_id", str_or_null(in->conv_id));
	json_object_set_new(j, "owner", str_or_null(in->owner));
	json_object_set_new(j, "create", json_boolean(in->create));
	json_object_set_new(j, "conv_user", str_or_null(in->conv_user));
	json_object_set_new(j, "title", str_or_null(in->title));
	json_object_set_new(j, "model_config", str_or_null(in->model_config));
	json_object_set_new(j, "sender", str_or_null(in->sender));
	json_object_set_new(j, "role", str_or_null(in->role));
	json_object_set_new(j, "content", str_or_null(in->content));
	json_object_set_new(j, "metadata", str_or_null(in->metadata));
	json_object_set_new(j, "run", json_boolean(in->run));
	json_object_set_new(j, "run_config", str_or_null(in->run_config));
	return put_line(line, "post", j);
}

/* A string member into the pool: RC_OK (NULL for null or absent), RC_ERR for another
 * type, RC_NOMEM. */
static int
get_str(struct pool *p, const json_t *j, const char *key, char **out)
{
	const json_t *v = json_object_get(j, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return RC_OK;
	if (!json_is_string(v))
		return RC_ERR;
	*out = pool_strndup(p, json_string_value(v), json_string_length(v));
	return *out ? RC_OK : RC_NOMEM;
}

static int
get_int(const json_t *j, const char *key, int64_t *out)
{
	const json_t *v = json_object_get(j, key);

	if (!json_is_integer(v))
		return RC_ERR;
	*out = json_integer_value(v);
	return RC_OK;
}

#define TRY(x)                                                                                   \
	do {                                                                                     \
		if ((rc = (x)) != RC_OK)                                                         \
			goto out;                                                                \
	} while (0)

int
push_post_decode(const char *text, size_t len, struct pool *p, struct store_post *in)
{
	json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	char *s[10];
	int rc = RC_ERR;

	memset(in, 0, sizeof(*in));
	if (!json_is_object(j))
		goto out;
	TRY(get_str(p, j, "conv_id", &s[0]));
	TRY(get_str(p, j, "owner", &s[1]));
	TRY(get_str(p, j, "conv_user", &s[2]));
	TRY(get_str(p, j, "title", &s[3]));
	TRY(get_str(p, j, "model_config", &s[4]));
	TRY(get_str(p, j, "sender", &s[5]));
	TRY(get_str(p, j, "role", &s[6]));
	TRY(get_str(p, j, "content", &s[7]));
	TRY(get_str(p, j, "metadata", &s[8]));
	TRY(get_str(p, j, "run_config", &s[9]));
	rc = RC_ERR;
	if (!s[5] || !s[6] || !s[7])
		goto out; /* sender, role and content are always set */
	in->conv_id = s[0];
	in->owner = s[1];
	in->conv_user = s[2];
	in->title = s[3];
	in->model_config = s[4];
	in->sender = s[5];
	in->role = s[6];
	in->content = s[7];
	in->metadata = s[8];
	in->run_config = s[9];
	in->create = json_is_true(json_object_get(j, "create"));
	in->run = json_is_true(json_object_get(j, "run"));
	rc = RC_OK;
out:
	json_decref(j);
	return rc;
}

static json_t *
conv_json(const struct conv *c)
{
	return json_pack("{s:I,s:o,s:o,s:o,s:o,s:I,s:I,s:I}", "seq", (json_int_t)c->seq, "id",
			 str_or_null(c->id), "user_id", str_or_null(c->user_id), "title",
			 str_or_null(c->title), "model_config", str_or_null(c->model_config),
			 "msg_count", (json_int_t)c->msg_count, "created_at",
			 (json_int_t)c->created_at, "updated_at", (json_int_t)c->updated_at);
}

static json_t *
msg_json(const struct msg *m)
{
	return json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:b,s:b,s:I,s:I}", "id",
			 (json_int_t)m->id, "msg_id", str_or_null(m->msg_id), "conv_id",
			 str_or_null(m->conv_id), "user_id", str_or_null(m->user_id), "role",
			 str_or_null(m->role), "content", str_or_null(m->content), "error",
			 str_or_null(m->error), "metadata", str_or_null(m->metadata), "unfinished",
			 m->unfinished, "visible", m->visible, "created_at",
			 (json_int_t)m->created_at, "updated_at", (json_int_t)m->updated_at);
}

int
push_posted_encode(int result, const char *err, const struct store_post *in,
		   const struct store_posted *out, struct buf *line)
{
	json_t *j;

	if (result != RC_OK)
		return put_line(line, "posted",
				json_pack("{s:i,s:s}", "rc", result, "error", err ? err : ""));
	j = json_pack("{s:i,s:o,s:o}", "rc", RC_OK, "conv", conv_json(&out->conv), "msg",
		      msg_json(&out->msg));
	if (j && in->run) {
		json_object_set_new(j, "reply", msg_json(&out->reply));
		json_object_set_new(j, "run_id", json_integer(out->run_id));
		json_object_set_new(j, "record_id", str_or_null(out->record_id));
	}
	return put_line(line, "posted", j);
}

static int
conv_get(struct pool *p, const json_t *j, struct conv *c)
{
	int rc;

	if (!json_is_object(j))
		return RC_ERR;
	TRY(get_int(j, "seq", &c->seq));
	TRY(get_str(p, j, "id", &c->id));
	TRY(get_str(p, j, "user_id", &c->user_id));
	TRY(get_str(p, j, "title", &c->title));
	TRY(get_str(p, j, "model_config", &c->model_config));
	TRY(get_int(j, "msg_count", &c->msg_count));
	TRY(get_int(j, "created_at", &c->created_at));
	TRY(get_int(j, "updated_at", &c->updated_at));
	rc = c->id && c->user_id && c->title ? RC_OK : RC_ERR;
out:
	return rc;
}

static int
msg_get(struct pool *p, const json_t *j, struct msg *m)
{
	int rc;

	if (!json_is_object(j))
		return RC_ERR;
	TRY(get_int(j, "id", &m->id));
	TRY(get_str(p, j, "msg_id", &m->msg_id));
	TRY(get_str(p, j, "conv_id", &m->conv_id));
	TRY(get_str(p, j, "user_id", &m->user_id));
	TRY(get_str(p, j, "role", &m->role));
	TRY(get_str(p, j, "content", &m->content));
	TRY(get_str(p, j, "error", &m->error));
	TRY(get_str(p, j, "metadata", &m->metadata));
	TRY(get_int(j, "created_at", &m->created_at));
	TRY(get_int(j, "updated_at", &m->updated_at));
	m->unfinished = json_is_true(json_object_get(j, "unfinished"));
	m->visible = json_is_true(json_object_get(j, "visible"));
	rc = m->msg_id && m->conv_id && m->user_id && m->role && m->content ? RC_OK : RC_ERR;
out:
	return rc;
}

int
push_posted_decode(const char *text, size_t len, struct pool *p, int run,
		   struct store_posted *out, char *err)
{
	json_t *j = json_loadb(text, len, 0, NULL);
	int64_t result;
	int rc = RC_ERR;

	memset(out, 0, sizeof(*out));
	snprintf(err, ERR_LEN, "the push daemon's answer is malformed");
	if (!json_is_object(j) || get_int(j, "rc", &result) != RC_OK)
		goto out;
	if (result != RC_OK) {
		const char *e = json_string_value(json_object_get(j, "error"));
		snprintf(err, ERR_LEN, "%s", e ? e : "");
		/* only the store's own results pass; anything else is the answer's fault */
		rc = result == RC_NOTFOUND || result == RC_NOMEM || result == RC_CONFLICT ||
				     result == RC_DENIED
			     ? (int)result
			     : RC_ERR;
		goto out;
	}
	TRY(conv_get(p, json_object_get(j, "conv"), &out->conv));
	TRY(msg_get(p, json_object_get(j, "msg"), &out->msg));
	if (run) {
		TRY(msg_get(p, json_object_get(j, "reply"), &out->reply));
		TRY(get_int(j, "run_id", &out->run_id));
		TRY(get_str(p, j, "record_id", &out->record_id));
		rc = out->record_id ? RC_OK : RC_ERR;
	}
out:
	json_decref(j);
	return rc;
}
