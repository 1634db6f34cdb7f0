/* llm internals shared by the provider files; not for the rest of the program. */
#ifndef AICHATD_LLM_INT_H
#define AICHATD_LLM_INT_H

#include <curl/curl.h>
#include <jansson.h>

#include "buf.h"
#include "llm.h"

#define LLM_LINE_MAX (256u << 10) /* one SSE or JSON line */
#define LLM_ERRBODY_MAX 300       /* bytes of an error body's message kept for the message */

struct llm_call {
	const struct llm_cb *cb;
	void *ctx;
	const struct config *cfg;
	const struct run_job *job;
	int ended;       /* done() was called, or the call was cancelled */
	size_t reply_len;

	/* builtin: queued by due time on the provider's one timer */
	struct llm_call *tick_prev, *tick_next;
	uint64_t due;
	int queued;      /* in the queue (or, once ended, on the list freed after a tick) */
	char *reply;
	size_t builtin_len; /* strlen(reply) */
	size_t pos;

	/* http (openai, n8n) */
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	char errbuf[CURL_ERROR_SIZE];
	long http_status;
	char ctype[128];
	struct buf line;   /* an incomplete line carried to the next read */
	struct buf whole;  /* the body, for JSON replies and error messages */
	int stream;        /* the reply is a stream (SSE or JSON lines), not one JSON */
	int finished;      /* the provider saw its end marker */
	char *travel_plan; /* malloc'd JSON text */
	char fail[1024];   /* a provider-detected failure, ends the call as LLM_E_FAILED */
	/* provider hooks */
	void (*on_line)(struct llm_call *c, char *line, size_t len);
	void (*on_end)(struct llm_call *c); /* after a transfer that succeeded at HTTP level */
};

/* Pass a piece of reply on (counting it against LLM_REPLY_MAX). 0, or -1 when too long. */
int llm_emit(struct llm_call *c, const char *s, size_t n);
/* End the call once: done(code, error, travel_plan, detail), then release it. error is
 * cut, mended and cleared of the upstream's host, port and key here; detail (NULL: the
 * same as error) only cut, mended and cleared of the key. */
void llm_finish(struct llm_call *c, int code, const char *error, const char *detail);

/* Set c->fail (the call then fails as LLM_E_FAILED), cut on a character boundary. */
void llm_failf(struct llm_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Start an HTTP POST of c->body to url with c->headers on the shared multi handle. */
int llm_http_start(struct llm_call *c, const char *url, char *err);

/* Provider set-up: fill body, headers and hooks, then call llm_http_start. */
int llm_openai_start(struct llm_call *c, char *err);
int llm_n8n_start(struct llm_call *c, char *err);
int llm_builtin_start(struct llm_call *c, uv_loop_t *loop, char *err);
/* Take a builtin call off the timer and free it (now, or after the tick that runs). */
void llm_builtin_release(struct llm_call *c);

/* The "data:" payload of an SSE line, or NULL when the line is not a data line. */
const char *llm_sse_data(const char *line);

#endif
