/* the upstream parsers: OpenAI's SSE and n8n's answers, bytes in, pieces out (upstream.c) */
#include <stdlib.h>

#include "unit.h"
#include "rc.h"
#include "buf.h"
#include "jsonpool.h"
#include "upstream.h"

struct got {
	struct buf text;
	int pieces;
};

static void
on_piece(void *ctx, const char *s, size_t n)
{
	struct got *g = ctx;

	buf_add(&g->text, s, n);
	g->pieces++;
}

static void
start(struct upstream *u, struct got *g, const struct upstream_syntax *syn, size_t max)
{
	buf_init(&g->text, 0);
	g->pieces = 0;
	upstream_init(u, syn, max, on_piece, g);
}

static void
stop(struct upstream *u, struct got *g)
{
	upstream_free(u);
	buf_free(&g->text);
}

/* A whole stream fed in reads cut at every byte `at` (0: in one read), then ended. */
static void
stream(struct upstream *u, const char *s, size_t at)
{
	size_t len = strlen(s), i;

	if (!at) {
		upstream_feed(u, s, len);
	} else {
		for (i = 0; i < len; i += at)
			upstream_feed(u, s + i, len - i < at ? len - i : at);
	}
	if (!u->fail[0])
		upstream_end(u);
}

/* A document, as the transport hands it over: writable and NUL-terminated. */
static void
document(struct upstream *u, const char *s)
{
	char *d = strdup(s);

	upstream_document(u, d, strlen(d));
	free(d);
}

#define OA_CHUNK(text) \
	"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" text \
	"\"},\"finish_reason\":null}]}\n\n"
#define OA_FINISH "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"

static const char oa_normal[] =
	": keep-alive\n"
	"event: message\n"
	"id: 1\n"
	"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n"
	OA_CHUNK("你好") OA_CHUNK(", world") OA_FINISH "data: [DONE]\n\n";

static void
t_openai(void)
{
	struct upstream u;
	struct got g;
	size_t at, len = strlen(oa_normal);
	int all = 1;
	char big[64];

	/* the same reply however the stream is cut, through characters and "\r\n" too */
	for (at = 0; at <= len; at++) {
		start(&u, &g, &upstream_openai, 1 << 20);
		stream(&u, oa_normal, at);
		if (u.fail[0] || !u.finished || strcmp(g.text.s, "你好, world") != 0 || g.pieces != 2)
			all = 0;
		stop(&u, &g);
	}
	CHECK(all);

	/* CRLF lines, "data:" with no space, the end without its newline */
	start(&u, &g, &upstream_openai, 1 << 20);
	stream(&u, "data:{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
		   "data: {\"choices\":[{\"delta\":{\"content\":\"b\\r\\n\"}}]}\r\n\r\ndata: [DONE]", 7);
	CHECK(!u.fail[0] && u.finished);
	CHECK_STR(g.text.s, "ab\r\n");
	stop(&u, &g);

	/* a finish_reason is an end without [DONE]; neither is a stream cut short */
	start(&u, &g, &upstream_openai, 1 << 20);
	stream(&u, OA_CHUNK("x") OA_FINISH, 0);
	CHECK(!u.fail[0] && u.finished);
	stop(&u, &g);
	start(&u, &g, &upstream_openai, 1 << 20);
	stream(&u, OA_CHUNK("x"), 0);
	CHECK_STR(u.fail, "AI 服务调用失败: stream ended before [DONE]");
	CHECK_STR(g.text.s, "x");
	stop(&u, &g);

	/* bad JSON stops the reply: that read and every later one refused */
	start(&u, &g, &upstream_openai, 1 << 20);
	CHECK(upstream_feed(&u, OA_CHUNK("a") "data: {\"choices\":\n" OA_CHUNK("b"),
			    strlen(OA_CHUNK("a") "data: {\"choices\":\n" OA_CHUNK("b"))) == RC_ERR);
	CHECK_STR(u.fail, "AI 服务调用失败: malformed stream chunk");
	CHECK(upstream_feed(&u, OA_CHUNK("c"), strlen(OA_CHUNK("c"))) == RC_ERR);
	CHECK_STR(g.text.s, "a");
	stop(&u, &g);

	/* invalid UTF-8 in a chunk is bad JSON to jansson */
	start(&u, &g, &upstream_openai, 1 << 20);
	stream(&u, OA_CHUNK("a\xff") "data: [DONE]\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: malformed stream chunk");
	CHECK(g.pieces == 0);
	stop(&u, &g);

	/* the upstream's error object, in the stream and as a string */
	start(&u, &g, &upstream_openai, 1 << 20);
	stream(&u, "data: {\"error\":{\"message\":\"rate limited\",\"type\":\"x\"}}\n\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: rate limited");
	stop(&u, &g);
	start(&u, &g, &upstream_openai, 1 << 20);
	stream(&u, "data: {\"error\":\"overloaded\"}\n\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: overloaded");
	stop(&u, &g);

	/* the reply's cap: a piece past it fails the reply and is not passed on */
	start(&u, &g, &upstream_openai, 8);
	stream(&u, OA_CHUNK("12345") OA_CHUNK("678") OA_CHUNK("9") "data: [DONE]\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: reply longer than 8 bytes");
	CHECK_STR(g.text.s, "12345678");
	stop(&u, &g);

	/* a line of UPSTREAM_LINE_MAX bytes is read; one byte more fails */
	{
		size_t n = UPSTREAM_LINE_MAX;
		char *line = malloc(n + 2);

		memset(line, 'x', n + 1);
		line[0] = ':';
		line[n] = '\n';
		start(&u, &g, &upstream_openai, 1 << 20);
		CHECK(upstream_feed(&u, line, n / 2) == RC_OK);
		CHECK(upstream_feed(&u, line + n / 2, n + 1 - n / 2) == RC_OK && !u.fail[0]);
		stop(&u, &g);
		line[n] = 'x';
		line[n + 1] = '\n';
		start(&u, &g, &upstream_openai, 1 << 20);
		CHECK(upstream_feed(&u, line, n + 2) == RC_ERR);
		snprintf(big, sizeof(big), "AI 服务调用失败: upstream line longer than %u bytes",
			 UPSTREAM_LINE_MAX);
		CHECK_STR(u.fail, big);
		stop(&u, &g);
		free(line);
	}

	/* a whole completion instead of a stream */
	start(&u, &g, &upstream_openai, 1 << 20);
	document(&u, "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"整段\"},"
		     "\"finish_reason\":\"stop\"}]}");
	CHECK(!u.fail[0] && u.finished);
	CHECK_STR(g.text.s, "整段");
	stop(&u, &g);
	start(&u, &g, &upstream_openai, 1 << 20);
	document(&u, "{\"choices\":[]}");
	CHECK_STR(u.fail, "AI 服务调用失败: reply has no content");
	stop(&u, &g);
	start(&u, &g, &upstream_openai, 1 << 20);
	document(&u, "{\"choices\":[{\"message\":");
	CHECK_STR(u.fail, "AI 服务调用失败: malformed JSON reply");
	stop(&u, &g);
	start(&u, &g, &upstream_openai, 1 << 20);
	document(&u, "{\"error\":{\"message\":\"no such model\"}}");
	CHECK_STR(u.fail, "AI 服务调用失败: no such model");
	stop(&u, &g);
}

static const char n8n_lines[] =
	"{\"type\":\"begin\",\"metadata\":{}}\n"
	"{\"type\":\"item\",\"content\":\"去\"}\n"
	"{\"type\":\"item\",\"content\":\"京都\"}\r\n"
	"{\"type\":\"end\",\"travelPlan\":{\"days\":3}}\n";

static void
t_n8n(void)
{
	struct upstream u;
	struct got g;
	size_t at, len = strlen(n8n_lines);
	int all = 1;

	/* n8n's JSON lines, however cut: the items, the end, the travel plan */
	for (at = 0; at <= len; at++) {
		start(&u, &g, &upstream_n8n, 1 << 20);
		stream(&u, n8n_lines, at);
		if (u.fail[0] || !u.finished || strcmp(g.text.s, "去京都") != 0 ||
		    !u.travel_plan || strcmp(u.travel_plan, "{\"days\":3}") != 0)
			all = 0;
		stop(&u, &g);
	}
	CHECK(all);

	/* the same as SSE data lines, [DONE] and blank separators ignored */
	start(&u, &g, &upstream_n8n, 1 << 20);
	stream(&u, "data: {\"type\":\"item\",\"content\":\"a\"}\n\n"
		   "data: {\"output\":\"b\"}\n\ndata: [DONE]\n\n", 3);
	CHECK(!u.fail[0] && !u.finished);
	CHECK_STR(g.text.s, "ab");
	stop(&u, &g);

	/* plain text: each line is the reply's, its newline too (a last one without) */
	start(&u, &g, &upstream_n8n, 1 << 20);
	stream(&u, "第一行\r\n[not json]\nlast", 2);
	CHECK(!u.fail[0]);
	CHECK_STR(g.text.s, "第一行\n[not json]\nlast\n");
	stop(&u, &g);

	/* plain text that is not UTF-8 */
	start(&u, &g, &upstream_n8n, 1 << 20);
	stream(&u, "ok\nbad \xc3\x28 byte\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: reply is not UTF-8");
	CHECK_STR(g.text.s, "ok\n");
	stop(&u, &g);

	/* a line that opens JSON and is none, and the workflow's own error */
	start(&u, &g, &upstream_n8n, 1 << 20);
	stream(&u, "{\"type\":\"item\",\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: malformed stream line");
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	stream(&u, "{\"type\":\"error\",\"content\":\"node failed\"}\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: node failed");
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	stream(&u, "{\"type\":\"error\"}\n", 0);
	CHECK_STR(u.fail, "AI 服务调用失败: workflow error");
	stop(&u, &g);

	/* documents: the reply's fields in order, an array's first item, the plan */
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, "{\"text\":\"t\",\"output\":\"o\",\"travelPlan\":{\"city\":\"京都\"}}");
	CHECK(!u.fail[0]);
	CHECK_STR(g.text.s, "o");
	CHECK_STR(u.travel_plan, "{\"city\":\"京都\"}");
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, "[{\"reply\":\"r\"},{\"reply\":\"ignored\"}]");
	CHECK_STR(g.text.s, "r");
	CHECK(!u.travel_plan);
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, "{\"travelPlan\":{}}");
	CHECK_STR(u.fail, "AI 服务调用失败: workflow reply has no output, reply or text");
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, "[\"output\"]");
	CHECK_STR(u.fail, "AI 服务调用失败: malformed workflow reply");
	stop(&u, &g);

	/* JSON lines sent as application/json: read line by line */
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, n8n_lines);
	CHECK(!u.fail[0] && u.finished);
	CHECK_STR(g.text.s, "去京都");
	CHECK_STR(u.travel_plan, "{\"days\":3}");
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, "{\"type\":\"begin\"}\n{\"type\":\"end\"}\n");
	CHECK_STR(u.fail, "AI 服务调用失败: malformed workflow reply");
	stop(&u, &g);
	start(&u, &g, &upstream_n8n, 1 << 20);
	document(&u, "{\"type\":\"item\",\"content\":\"a\"}\n{oops\n{\"type\":\"item\",\"content\":\"b\"}");
	CHECK_STR(u.fail, "AI 服务调用失败: malformed stream line");
	CHECK_STR(g.text.s, "a");
	stop(&u, &g);

	/* the cap holds for a document too */
	start(&u, &g, &upstream_n8n, 3);
	document(&u, "{\"output\":\"four\"}");
	CHECK_STR(u.fail, "AI 服务调用失败: reply longer than 3 bytes");
	CHECK(g.pieces == 0);
	stop(&u, &g);
}

static void
errmsg(const char *body, char *out, size_t size)
{
	upstream_error_message(body, strlen(body), out, size);
}

static void
t_pieces(void)
{
	char out[64];

	CHECK_STR(upstream_sse_data("data: x"), "x");
	CHECK_STR(upstream_sse_data("data:x"), "x");
	CHECK_STR(upstream_sse_data("data:  x"), " x");
	CHECK_STR(upstream_sse_data("data:"), "");
	CHECK(upstream_sse_data("event: data") == NULL);
	CHECK(upstream_sse_data(": data: x") == NULL);

	errmsg("{\"error\":{\"message\":\"bad key\",\"code\":401}}", out, sizeof(out));
	CHECK_STR(out, "bad key");
	errmsg("{\"error\":\"gone\"}", out, sizeof(out));
	CHECK_STR(out, "gone");
	errmsg("{\"message\":\"m\",\"detail\":\"d\"}", out, sizeof(out));
	CHECK_STR(out, "m");
	errmsg("{\"detail\":\"Not Found\"}", out, sizeof(out));
	CHECK_STR(out, "Not Found");
	errmsg("<h1>502 \xff</h1>", out, sizeof(out));
	CHECK_STR(out, "<h1>502 \xef\xbf\xbd</h1>");
	upstream_error_message(NULL, 0, out, sizeof(out));
	CHECK_STR(out, "");
}

void
t_upstream(void)
{
	/* jansson's memory as the daemon has it (a scratch pool per line), for these only:
	 * libjwt, which the token tests use, frees jansson's text with plain free() */
	json_pool_install();
	t_openai();
	t_n8n();
	t_pieces();
	json_set_alloc_funcs(malloc, free);
}
