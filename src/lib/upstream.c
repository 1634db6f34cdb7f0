/* upstream: a reply's lines, its pieces and its failure (see upstream.h); the syntaxes
 * are in upstream-openai.c and upstream-n8n.c. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <jansson.h>

#include "rc.h"
#include "pool.h"
#include "jsonpool.h"
#include "util.h"
#include "upstream.h"

void
upstream_init(struct upstream *u, const struct upstream_syntax *syntax, size_t max,
	      void (*piece)(void *ctx, const char *s, size_t n), void *ctx)
{
	memset(u, 0, sizeof(*u));
	u->syntax = syntax;
	u->max = max;
	u->piece = piece;
	u->ctx = ctx;
	buf_init(&u->line, UPSTREAM_LINE_MAX);
}

void
upstream_free(struct upstream *u)
{
	buf_free(&u->line);
	free(u->travel_plan);
	u->travel_plan = NULL;
}

void
upstream_failf(struct upstream *u, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(u->fail, sizeof(u->fail), fmt, ap);
	va_end(ap);
	utf8_cut(u->fail, sizeof(u->fail) - 1);
}

int
upstream_emit(struct upstream *u, const char *s, size_t n)
{
	if (!n)
		return 0;
	if (u->len + n > u->max) {
		upstream_failf(u, "AI 服务调用失败: reply longer than %zu bytes", u->max);
		return -1;
	}
	u->len += n;
	u->piece(u->ctx, s, n);
	return 0;
}

/* One line to the syntax. The JSON values a line makes live no longer than its handling:
 * they come from a scratch pool (see jsonpool.h), freed in one go after it, which takes
 * the allocator off a path that runs for every piece of every reply. */
static void
line_call(struct upstream *u)
{
	static _Thread_local struct pool *scratch;

	if (!scratch)
		scratch = pool_create();
	json_pool_use(scratch);
	u->syntax->line(u, u->line.s, u->line.len);
	json_pool_use(NULL);
	if (scratch)
		pool_reset(scratch);
	buf_reset(&u->line);
}

int
upstream_feed(struct upstream *u, const char *p, size_t n)
{
	if (u->fail[0])
		return RC_ERR;
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;

		if (buf_add(&u->line, p, take) != RC_OK) {
			upstream_failf(u, "AI 服务调用失败: upstream line longer than %u bytes",
				       UPSTREAM_LINE_MAX);
			return RC_ERR;
		}
		if (!nl)
			break;
		if (u->line.len && u->line.s[u->line.len - 1] == '\r')
			u->line.s[--u->line.len] = '\0';
		line_call(u);
		if (u->fail[0])
			return RC_ERR;
		p = nl + 1;
		n -= take + 1;
	}
	return RC_OK;
}

void
upstream_end(struct upstream *u)
{
	if (u->line.len)
		line_call(u); /* a last line without its newline */
	u->syntax->end(u);
}

void
upstream_document(struct upstream *u, char *s, size_t len)
{
	u->syntax->document(u, s, len);
}

const char *
upstream_sse_data(const char *line)
{
	if (strncmp(line, "data:", 5) != 0)
		return NULL;
	line += 5;
	if (*line == ' ')
		line++;
	return line;
}

void
upstream_error_message(const char *body, size_t len, char *out, size_t size)
{
	json_t *j = json_loadb(body ? body : "", len, 0, NULL), *e;
	const char *m = NULL;

	if (json_is_object(j)) {
		e = json_object_get(j, "error");
		m = json_string_value(json_object_get(e, "message"));
		if (!m)
			m = json_string_value(e);
		if (!m)
			m = json_string_value(json_object_get(j, "message"));
		if (!m)
			m = json_string_value(json_object_get(j, "detail"));
	}
	if (m)
		utf8_mend(out, size, m, strlen(m));
	else
		utf8_mend(out, size, body ? body : "", len);
	json_decref(j);
}
