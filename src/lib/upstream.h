/*
 * upstream: the parsers of what an AI provider's upstream answers; bytes in, pieces of the
 * reply out, no I/O. The daemon's curl transport (src/push/llm-curl.c) feeds them what it
 * receives; tests/unit/t-upstream.c feeds them cases. One struct upstream per reply:
 *
 *	upstream_init(&u, &upstream_openai, LLM_REPLY_MAX, piece, ctx);
 *	upstream_feed(&u, p, n) ...          a streamed reply, bytes as they come, then
 *	upstream_end(&u);                    at its end (a last line without its newline too)
 *   or
 *	upstream_document(&u, body, len);    a reply that is one JSON document
 *
 * and then u.fail ("" when the reply is good) and u.travel_plan; upstream_free(&u).
 * A stream is read line by line: lines end with "\n", an "\r" before it is dropped.
 *
 * The syntaxes:
 *   upstream_openai  OpenAI's chat completions: SSE lines `data: {chunk}`, the text in
 *                    choices[0].delta.content, the end `data: [DONE]` (or a choice's
 *                    finish_reason); a stream that stops before it fails. A document is
 *                    one completion (choices[0].message.content). An "error" object
 *                    fails the reply with its message.
 *   upstream_n8n     an n8n webhook: JSON lines ({"type": "begin" | "item" | "end" |
 *                    "error", "content": ...}), SSE data lines of the same, or plain text
 *                    (each line is the reply's, its newline too). A document gives the
 *                    reply in output, reply, text, content or message (of an array's
 *                    first item too), or is JSON lines itself. A travelPlan object on any
 *                    line or in the document is kept in u.travel_plan.
 */
#ifndef AICHATD_UPSTREAM_H
#define AICHATD_UPSTREAM_H

#include <stddef.h>

#include "buf.h"

#define UPSTREAM_LINE_MAX (256u << 10) /* one line of a stream: a longer one fails the reply */
#define UPSTREAM_FAIL_MAX 1024         /* bytes of u.fail, with its NUL */

struct upstream;

/* A syntax: what a line, a stream's end and a document mean (the two above). */
struct upstream_syntax {
	/* one line of a stream, NUL-terminated at len, without its newline (writable) */
	void (*line)(struct upstream *u, char *line, size_t len);
	/* the stream ended (after its last line) */
	void (*end)(struct upstream *u);
	/* the whole reply, one JSON document (or what claims to be: writable, s[len] is NUL) */
	void (*document)(struct upstream *u, char *s, size_t len);
};

extern const struct upstream_syntax upstream_openai, upstream_n8n;

struct upstream {
	const struct upstream_syntax *syntax;
	/* a piece of the reply: UTF-8 (a piece of a stream may end inside a character), valid
	 * only during the call: it points into the line or a JSON value, never copied */
	void (*piece)(void *ctx, const char *s, size_t n);
	void *ctx;
	size_t max;        /* the reply's most bytes: a longer one fails */
	size_t len;        /* the reply's bytes passed on so far */
	int finished;      /* the upstream sent its end */
	char *travel_plan; /* a travelPlan object's JSON text, or NULL; freed by upstream_free */
	char fail[UPSTREAM_FAIL_MAX]; /* why the reply failed (for clients), or "" */
	struct buf line;   /* an incomplete line, carried to the next feed */
};

/* Set u up for one reply in syntax, at most max bytes, its pieces to piece(ctx, ...). */
void upstream_init(struct upstream *u, const struct upstream_syntax *syntax, size_t max,
		   void (*piece)(void *ctx, const char *s, size_t n), void *ctx);
/* Free what u holds (u.travel_plan too); u may then be set up again. */
void upstream_free(struct upstream *u);

/* Bytes of a streamed reply. RC_OK, or RC_ERR once u.fail is set (the rest is ignored). */
int upstream_feed(struct upstream *u, const char *p, size_t n);
/* The stream's end: its last line if it had no newline, then the syntax's end check. */
void upstream_end(struct upstream *u);
/* A reply sent whole as one JSON document (s[len] must be a NUL; s is written into). */
void upstream_document(struct upstream *u, char *s, size_t len);

/* Pass a piece of the reply on, counted against u.max: 0, or -1 when it no longer fits
 * (u.fail is then set). For the syntaxes. */
int upstream_emit(struct upstream *u, const char *s, size_t n);
/* Set u.fail (the reply then fails), cut on a character boundary. */
void upstream_failf(struct upstream *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The payload of an SSE line ("data:" and one space after it dropped), or NULL when the
 * line is no data line (a comment, an event name, an id, a blank separator). */
const char *upstream_sse_data(const char *line);
/* The upstream's own message in an error body: error.message (OpenAI's), a string
 * "error", "message" or "detail", else the body itself; mended into out (size bytes) as
 * well-formed UTF-8. */
void upstream_error_message(const char *body, size_t len, char *out, size_t size);

#endif
