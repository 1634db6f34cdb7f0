/* upstream_openai: OpenAI's chat completions, streamed as SSE or sent whole (upstream.h). */
#include <string.h>
#include <jansson.h>

#include "upstream.h"

/* One choice's text and end from a chunk (or a whole, non-streamed reply). */
static void
take_choice(struct upstream *u, json_t *j)
{
	json_t *choice = json_array_get(json_object_get(j, "choices"), 0), *err;
	json_t *delta, *content, *finish;

	if ((err = json_object_get(j, "error"))) {
		const char *m = json_string_value(json_object_get(err, "message"));
		if (!m)
			m = json_string_value(err);
		upstream_failf(u, "AI 服务调用失败: %s", m ? m : "upstream error");
		return;
	}
	if (!choice)
		return;
	delta = json_object_get(choice, "delta");
	if (!delta)
		delta = json_object_get(choice, "message");
	content = json_object_get(delta, "content");
	if (json_is_string(content) &&
	    upstream_emit(u, json_string_value(content), json_string_length(content)) != 0)
		return;
	finish = json_object_get(choice, "finish_reason");
	if (finish && !json_is_null(finish))
		u->finished = 1;
}

static void
on_line(struct upstream *u, char *line, size_t len)
{
	const char *data = upstream_sse_data(line);
	json_t *j;

	(void)len;
	if (!data || u->fail[0])
		return; /* comments, event names, ids, blank separators */
	if (strcmp(data, "[DONE]") == 0) {
		u->finished = 1;
		return;
	}
	j = json_loads(data, 0, NULL);
	if (!j) {
		upstream_failf(u, "AI 服务调用失败: malformed stream chunk");
		return;
	}
	take_choice(u, j);
	json_decref(j);
}

static void
on_end(struct upstream *u)
{
	if (!u->finished && !u->fail[0])
		upstream_failf(u, "AI 服务调用失败: stream ended before [DONE]");
}

/* the server answered with one JSON document instead of a stream */
static void
on_document(struct upstream *u, char *s, size_t len)
{
	json_t *j = json_loadb(s, len, 0, NULL);

	if (!j) {
		upstream_failf(u, "AI 服务调用失败: malformed JSON reply");
		return;
	}
	take_choice(u, j);
	json_decref(j);
	if (!u->fail[0] && !u->len && !u->finished)
		upstream_failf(u, "AI 服务调用失败: reply has no content");
}

const struct upstream_syntax upstream_openai = {
	on_line,     /* line */
	on_end,      /* end */
	on_document, /* document */
};
