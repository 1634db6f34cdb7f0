/* llm: the table of providers and the entry points of llm.h. */
#include <stdlib.h>
#include <stdio.h>

#include "rc.h"
#include "llm-int.h"

/* One row a provider, at its enum provider's index (llm_init checks). */
static const struct llm_provider *const providers[] = {
	[PROVIDER_BUILTIN] = &llm_builtin,
	[PROVIDER_OPENAI] = &llm_openai,
	[PROVIDER_N8N] = &llm_n8n,
};

_Static_assert(sizeof(providers) / sizeof(providers[0]) == PROVIDER_COUNT,
	       "every provider has its row");

const struct llm_provider *
llm_provider_find(const char *name)
{
	int i = provider_find(name);

	return providers[i >= 0 ? i : PROVIDER_DEFAULT];
}

int
llm_wants_history(const char *provider)
{
	return llm_provider_find(provider)->wants_history;
}

struct llm_call *
llm_start(uv_loop_t *loop, const struct config *cfg, const struct run_job *job,
	  const struct llm_cb *cb, void *ctx, char *err)
{
	const struct llm_provider *p = llm_provider_find(job->cfg.provider);
	struct llm_call *c = calloc(1, p->call_size);

	if (!c) {
		snprintf(err, ERR_LEN, "out of memory");
		return NULL;
	}
	c->provider = p;
	c->cb = cb;
	c->ctx = ctx;
	c->cfg = cfg;
	c->job = job;
	if (p->start(c, loop, err) != RC_OK) {
		c->ended = 1;
		p->release(c);
		return NULL;
	}
	return c;
}

void
llm_cancel(struct llm_call *c)
{
	if (!c || c->ended)
		return;
	c->ended = 1;
	c->provider->release(c);
}

/* Whether row i's transport is also an earlier row's (each is set up once). */
static int
transport_seen(int i)
{
	int j;

	for (j = 0; j < i; j++)
		if (providers[j]->transport == providers[i]->transport)
			return 1;
	return 0;
}

int
llm_check(char *err)
{
	int i;

	for (i = 0; i < PROVIDER_COUNT; i++) {
		if (!providers[i] || providers[i]->id != (enum provider)i) {
			snprintf(err, ERR_LEN, "the provider table has no row for %s at its place",
				 provider_name(i));
			return RC_ERR;
		}
	}
	return RC_OK;
}

int
llm_init(uv_loop_t *loop, char *err)
{
	int i;

	if (llm_check(err) != RC_OK)
		return RC_ERR;
	for (i = 0; i < PROVIDER_COUNT; i++)
		if (providers[i]->transport && !transport_seen(i) &&
		    providers[i]->transport->init(loop, err) != RC_OK)
			return RC_ERR;
	return RC_OK;
}

void
llm_shutdown(void)
{
	int i;

	for (i = 0; i < PROVIDER_COUNT; i++)
		if (providers[i]->transport && !transport_seen(i))
			providers[i]->transport->shutdown();
}

int
llm_active(void)
{
	int i, n = 0;

	for (i = 0; i < PROVIDER_COUNT; i++)
		if (providers[i]->transport && !transport_seen(i))
			n += providers[i]->transport->active();
	return n;
}
