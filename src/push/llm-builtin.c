/* The builtin provider: offline and deterministic, streamed in pieces on a timer. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "jsonpool.h"
#include "util.h"
#include "llm-int.h"

#define QUOTE_MAX 200 /* code points of the message quoted back */
#define PIECE 12      /* code points per piece */

/* A builtin call: queued by due time on the provider's one timer. Its reply is short (the
 * quote is at most QUOTE_MAX code points), far below LLM_REPLY_MAX, so its pieces go to
 * chunk() without being counted. */
struct builtin_call {
	struct llm_call call; /* first: see llm_provider.call_size */
	struct builtin_call *tick_prev, *tick_next;
	uint64_t due;
	int queued; /* in the queue (or, once ended, on the list freed after a tick) */
	char *reply;
	size_t len; /* strlen(reply) */
	size_t pos;
};

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

/*
 * One timer for every builtin call: the calls wait in a queue ordered by the time their
 * next piece is due (a call goes back to the tail after each piece, one delay later, so
 * the order holds by itself), and the timer is set for the head. A timer per call cost
 * two heap operations per piece, a fifth of the daemon's loop with thousands of replies.
 */
static uv_timer_t ticker;
static int ticker_ready, in_tick;
static struct builtin_call *head, *tail, *dead;

static void
unqueue(struct builtin_call *c)
{
	if (c->tick_prev)
		c->tick_prev->tick_next = c->tick_next;
	else
		head = c->tick_next;
	if (c->tick_next)
		c->tick_next->tick_prev = c->tick_prev;
	else
		tail = c->tick_prev;
	c->tick_prev = c->tick_next = NULL;
	c->queued = 0;
}

/* Queue c by c->due: from the tail, where it almost always belongs. */
static void
enqueue(struct builtin_call *c)
{
	struct builtin_call *after = tail;

	while (after && after->due > c->due)
		after = after->tick_prev;
	c->tick_prev = after;
	c->tick_next = after ? after->tick_next : head;
	if (c->tick_next)
		c->tick_next->tick_prev = c;
	else
		tail = c;
	if (after)
		after->tick_next = c;
	else
		head = c;
	c->queued = 1;
}

static void on_ticker(uv_timer_t *t);

static void
call_free(struct builtin_call *c)
{
	free(c->reply);
	free(c);
}

static void
arm(uv_loop_t *loop)
{
	uint64_t now = uv_now(loop);

	if (!head)
		uv_timer_stop(&ticker);
	else
		uv_timer_start(&ticker, on_ticker, head->due > now ? head->due - now : 0, 0);
}

static uint64_t
delay_of(const struct builtin_call *c)
{
	int ms = c->call.cfg->builtin_delay_ms;

	return ms > 0 ? (uint64_t)ms : 1;
}

/* The upstream bytes of a piece for workflow's stream, as a server-sent event
 * `data: {"content":"<piece>"}`; `data: [DONE]` after the last (docs/API.md). */
static void
raw_piece(struct builtin_call *c, const char *s, size_t n)
{
	const struct llm_cb *cb = c->call.cb;
	static const char ctype[] = "text/event-stream; charset=utf-8";
	json_t *j = json_pack("{s:s%}", "content", s, n);
	char *data = j ? json_pool_text(j, JSON_COMPACT) : NULL, *ev = NULL;
	int len;

	json_decref(j);
	if (data && (len = asprintf(&ev, "data: %s\n\n", data)) > 0)
		cb->raw(c->call.ctx, ctype, ev, (size_t)len);
	free(ev);
	free(data);
	if (!c->call.ended && c->pos + n >= c->len)
		cb->raw(c->call.ctx, ctype, "data: [DONE]\n\n", 14);
}

/* The next piece of c; the end after the last. */
static void
piece(struct builtin_call *c)
{
	size_t n;

	n = utf8_prefix(c->reply + c->pos, PIECE);
	if (c->call.cb->raw)
		raw_piece(c, c->reply + c->pos, n);
	if (c->call.ended)
		return;
	c->call.cb->chunk(c->call.ctx, c->reply + c->pos, n);
	if (c->call.ended)
		return;
	c->pos += n;
	if (c->pos >= c->len)
		llm_finish(&c->call, 0, NULL, NULL, NULL);
}

static void
on_ticker(uv_timer_t *t)
{
	uint64_t now = uv_now(t->loop);
	struct builtin_call *c;

	in_tick = 1;
	while (head && head->due <= now) {
		c = head;
		unqueue(c);
		piece(c); /* may end c, or cancel others: ended calls go on the dead list */
		if (!c->call.ended) {
			c->due = now + delay_of(c);
			enqueue(c);
		}
	}
	in_tick = 0;
	while ((c = dead)) {
		dead = c->tick_next;
		call_free(c);
	}
	arm(t->loop);
}

static int
builtin_start(struct llm_call *call, uv_loop_t *loop, char *err)
{
	struct builtin_call *c = (struct builtin_call *)call;

	c->reply = llm_builtin_reply(call->job->content);
	if (!c->reply) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	c->len = strlen(c->reply);
	if (!ticker_ready) {
		uv_timer_init(loop, &ticker);
		uv_unref((uv_handle_t *)&ticker); /* the replies keep the loop alive, not it */
		ticker_ready = 1;
	}
	/* the first piece after one delay too: every reply takes a while, like a model */
	c->due = uv_now(loop) + delay_of(c);
	enqueue(c);
	if (head == c)
		arm(loop);
	return RC_OK;
}

static void
builtin_release(struct llm_call *call)
{
	struct builtin_call *c = (struct builtin_call *)call;

	if (c->queued)
		unqueue(c);
	if (in_tick) {
		/* the tick may still hold it: freed when the tick is over */
		c->tick_next = dead;
		dead = c;
		return;
	}
	call_free(c);
}

const struct llm_provider llm_builtin = {
	PROVIDER_BUILTIN,            /* id */
	sizeof(struct builtin_call), /* call_size */
	0,                           /* wants_history */
	0,                           /* streams_raw */
	NULL,                        /* transport: none, its one timer is made on first use */
	builtin_start,               /* start */
	builtin_release,             /* release */
};
