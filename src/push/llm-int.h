/* llm internals shared by the provider files (see llm.h); not for the rest of the program. */
#ifndef AICHATD_LLM_INT_H
#define AICHATD_LLM_INT_H

#include "llm.h"

/* A call: the first member of each provider's own call struct (its row's call_size). */
struct llm_call {
	const struct llm_provider *provider; /* its row */
	const struct llm_cb *cb;
	void *ctx;
	const struct config *cfg;
	const struct run_job *job;
	int ended; /* done() was called, or the call was cancelled */
};

/* The rows of the table (llm.c), one in each provider's file. */
extern const struct llm_provider llm_builtin, llm_openai, llm_n8n;

/* End the call once: done(code, error, travel_plan, detail), then the row's release. On a
 * failure error and detail must already be as llm_cb.done promises them (the curl
 * transport's llm_http_finish makes them so). */
static inline void
llm_finish(struct llm_call *c, int code, const char *error, const char *travel_plan,
	   const char *detail)
{
	if (c->ended)
		return;
	c->ended = 1;
	c->cb->done(c->ctx, code, error, travel_plan, detail);
	c->provider->release(c);
}

#endif
