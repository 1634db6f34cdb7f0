/* upstream_n8n: an n8n webhook's answer, one JSON document or a stream of JSON lines, SSE
 * data lines or plain text (upstream.h). */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "jsonpool.h"
#include "util.h"
#include "upstream.h"

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
keep_plan(struct upstream *u, json_t *o)
{
	json_t *plan = json_object_get(o, "travelPlan");

	if (json_is_object(plan) && !u->travel_plan)
		u->travel_plan = json_pool_text(plan, JSON_COMPACT);
}

static void
on_line(struct upstream *u, char *line, size_t len)
{
	const char *data = upstream_sse_data(line);
	const char *type, *text;
	json_t *j;

	if (u->fail[0])
		return;
	if (!data && len && line[0] != '{') {
		/* plain text: the line is the reply, newline included */
		if (!utf8_valid(line, len)) {
			upstream_failf(u, "AI 服务调用失败: reply is not UTF-8");
			return;
		}
		if (upstream_emit(u, line, len) == 0)
			upstream_emit(u, "\n", 1);
		return;
	}
	if (!data)
		data = line;
	if (!*data || strcmp(data, "[DONE]") == 0)
		return;
	j = json_loads(data, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		upstream_failf(u, "AI 服务调用失败: malformed stream line");
		return;
	}
	type = json_string_value(json_object_get(j, "type"));
	if (type && strcmp(type, "error") == 0) {
		text = reply_text(j);
		upstream_failf(u, "AI 服务调用失败: %s", text ? text : "workflow error");
	} else if (type && strcmp(type, "item") == 0) {
		text = json_string_value(json_object_get(j, "content"));
		if (text)
			upstream_emit(u, text, strlen(text));
	} else if (!type || strcmp(type, "begin") != 0) {
		if (type && strcmp(type, "end") == 0)
			u->finished = 1;
		else if ((text = reply_text(j)))
			upstream_emit(u, text, strlen(text));
	}
	keep_plan(u, j);
	json_decref(j);
}

static void
on_end(struct upstream *u)
{
	(void)u; /* a stream may end without its "end" line */
}

static void
on_document(struct upstream *u, char *s, size_t len)
{
	json_t *j, *o;
	const char *text;

	j = json_loadb(s, len, 0, NULL);
	if (!j) {
		/* not one document: JSON lines under a JSON content type, as n8n streams them */
		char *line = s, *nl;
		while (!u->fail[0] && line < s + len) {
			nl = memchr(line, '\n', len - (size_t)(line - s));
			if (nl)
				*nl = '\0';
			if (*line && *line != '\r')
				on_line(u, line, strlen(line));
			if (!nl)
				break;
			line = nl + 1;
		}
		if (!u->fail[0] && !u->len)
			upstream_failf(u, "AI 服务调用失败: malformed workflow reply");
		return;
	}
	o = json_is_array(j) ? json_array_get(j, 0) : j;
	if (!json_is_object(o)) {
		upstream_failf(u, "AI 服务调用失败: malformed workflow reply");
	} else if (!(text = reply_text(o))) {
		upstream_failf(u, "AI 服务调用失败: workflow reply has no output, reply or text");
	} else {
		upstream_emit(u, text, strlen(text));
		keep_plan(u, o);
	}
	json_decref(j);
}

const struct upstream_syntax upstream_n8n = {
	on_line,     /* line */
	on_end,      /* end */
	on_document, /* document */
};
