/*
 * provider: the AI providers' names, spelled here and nowhere else. Both programs use
 * them: the workers check a model config's provider and seed one model config per
 * provider (src/fcgi), the settings check the default provider (config.c), and the push
 * daemon's table of providers (src/push/llm.c, whose header says how to add one) has one
 * row per name, in this order.
 */
#ifndef AICHATD_PROVIDER_H
#define AICHATD_PROVIDER_H

#include <stddef.h>

enum provider {
	PROVIDER_BUILTIN, /* offline and deterministic: the default */
	PROVIDER_OPENAI,  /* any OpenAI-compatible /chat/completions endpoint */
	PROVIDER_N8N,     /* an n8n webhook */
	PROVIDER_COUNT
};

/* The provider of conversations whose settings name none. */
#define PROVIDER_DEFAULT PROVIDER_BUILTIN

/* The name of p ("builtin", "openai", "n8n"): a static string; NULL for no provider. */
const char *provider_name(enum provider p);
/* The provider called name (exactly, case and all), or -1 (also for NULL). */
int provider_find(const char *name);
/* 1 when name is a provider's name, else 0. */
int provider_known(const char *name);
/* The names as a message lists them, each but the last followed by sep and the last by
 * last before it ("builtin, openai or n8n" for ", " and " or "), into out (size bytes,
 * cut on a character boundary when it does not fit). Returns out. */
char *provider_list(char *out, size_t size, const char *sep, const char *last);

#endif
