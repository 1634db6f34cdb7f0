/*
 * llm: the AI providers, driven by the push daemon's event loop (libuv). Each call streams
 * its reply through chunk() and ends with exactly one done(), unless llm_cancel() came
 * first, after which neither is called again.
 *   builtin  offline and deterministic: the reply is made from the message and streamed
 *            in pieces with builtin_delay_ms between them (llm-builtin.c)
 *   openai   any OpenAI-compatible /chat/completions endpoint, stream: true (llm-openai.c)
 *   n8n      a webhook: JSON reply (output, reply or text) or a streamed one (llm-n8n.c)
 * openai and n8n run as libcurl multi transfers on the same loop (llm-curl.c).
 */
#ifndef AICHATD_LLM_H
#define AICHATD_LLM_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "store.h"

#define LLM_E_FAILED 2001  /* dialect A's "AI call failed" */
#define LLM_E_TIMEOUT 2002 /* dialect A's "AI reply timed out" */
#define LLM_REPLY_MAX (1u << 20) /* a reply longer than this fails the run */
#define LLM_ERROR_MAX 400  /* bytes of a failure's message as clients see it (whole characters) */
#define LLM_DETAIL_MAX 1000 /* bytes of its detail, for the operation log */

struct llm_cb {
	/* a piece of the reply, UTF-8 (a piece may end inside a character) */
	void (*chunk)(void *ctx, const char *s, size_t n);
	/* the upstream's bytes as they arrive, with its content type, before any parsing
	 * (the builtin provider makes them: a text/event-stream of `data: {"content":...}`
	 * events, one a piece, and `data: [DONE]`): for E's stream */
	void (*raw)(void *ctx, const char *ctype, const char *s, size_t n);
	/* the end: code 0 on success, else LLM_E_FAILED or LLM_E_TIMEOUT with a message;
	 * travel_plan is a JSON object's text when the workflow sent one (else NULL). On a
	 * failure, error is what clients are shown (well-formed UTF-8, at most LLM_ERROR_MAX
	 * bytes: the kind of failure, an HTTP status, the upstream's own message, but never
	 * the upstream's host, port or key) and detail what the operation log keeps for admins
	 * (curl's own message, with the host and port; never the key; at most LLM_DETAIL_MAX
	 * bytes). The strings are valid only during the call. */
	void (*done)(void *ctx, int code, const char *error, const char *travel_plan,
		     const char *detail);
};

struct llm_call;

/* Start making the reply for job (which must stay valid until done or cancel). Returns
 * NULL with err filled when the call cannot start; done() is then never called. */
struct llm_call *llm_start(uv_loop_t *loop, const struct config *cfg, const struct run_job *job,
			   const struct llm_cb *cb, void *ctx, char *err);
/* Stop a call: no callback follows; its resources are released. */
void llm_cancel(struct llm_call *c);

/* Whether a provider sends the conversation's earlier messages (job->history). */
int llm_wants_history(const char *provider);

/* Set up and tear down the curl side (call once per process, on the loop's thread). */
int llm_init(uv_loop_t *loop, char *err);
void llm_shutdown(void);
/* Transfers in flight (for status counters). */
int llm_active(void);

/* The builtin provider's reply for a message: deterministic. Caller frees with free(). */
char *llm_builtin_reply(const char *content);

#endif
