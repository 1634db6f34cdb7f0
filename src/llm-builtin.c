/* The builtin provider: offline and deterministic, streamed in pieces on a timer. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "util.h"
#include "llm-int.h"

#define QUOTE_MAX 200 /* code points of the message quoted back */
#define PIECE 12      /* code points per piece */

char *
llm_builtin_reply(const char *content)
{
	size_t q = utf8_prefix(content, QUOTE_MAX);
	const char *more = content[q] ? "…" : "";
	char *out = NULL;

	if (asprintf(&out,
		     "你好！我是 aichatd 的内置助手，离线运行。你说的是：「%.*s%s」"
		     "（共 %zu 个字符）。这条回复分段生成，用来演示流式输出。",
		     (int)q, content, more, utf8_count(content)) < 0)
		return NULL;
	return out;
}

static void
on_tick(uv_timer_t *t)
{
	struct llm_call *c = t->data;
	size_t len = strlen(c->reply), n;

	if (c->ended)
		return;
	n = utf8_prefix(c->reply + c->pos, PIECE);
	if (c->cb->raw)
		c->cb->raw(c->ctx, "text/plain; charset=utf-8", c->reply + c->pos, n);
	llm_emit(c, c->reply + c->pos, n);
	c->pos += n;
	if (c->pos >= len) {
		uv_timer_stop(t);
		llm_finish(c, 0, NULL);
	}
}

int
llm_builtin_start(struct llm_call *c, uv_loop_t *loop, char *err)
{
	uint64_t delay = (uint64_t)c->cfg->builtin_delay_ms;

	c->reply = llm_builtin_reply(c->job->content);
	if (!c->reply) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->timer_live = 1;
	/* the first piece after one delay too: every reply takes a while, like a model */
	uv_timer_start(&c->timer, on_tick, delay ? delay : 1, delay ? delay : 1);
	return RC_OK;
}

static void
on_closed(uv_handle_t *h)
{
	struct llm_call *c = h->data;

	free(c->reply);
	free(c);
}

void
llm_builtin_stop(struct llm_call *c)
{
	uv_timer_stop(&c->timer);
	c->timer_live = 0;
	uv_close((uv_handle_t *)&c->timer, on_closed);
}
