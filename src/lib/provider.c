/* provider: the providers' names (see provider.h). */
#include <string.h>
#include <stdio.h>

#include "util.h"
#include "provider.h"

static const char *const names[] = {
	[PROVIDER_BUILTIN] = "builtin",
	[PROVIDER_OPENAI] = "openai",
	[PROVIDER_N8N] = "n8n",
};

_Static_assert(sizeof(names) / sizeof(names[0]) == PROVIDER_COUNT,
	       "every provider has its name");

const char *
provider_name(enum provider p)
{
	return (unsigned)p < PROVIDER_COUNT ? names[p] : NULL;
}

int
provider_find(const char *name)
{
	int i;

	if (!name)
		return -1;
	for (i = 0; i < PROVIDER_COUNT; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

int
provider_known(const char *name)
{
	return provider_find(name) >= 0;
}

char *
provider_list(char *out, size_t size, const char *sep, const char *last)
{
	size_t o = 0;
	int i, n;

	if (!size)
		return out;
	out[0] = '\0';
	for (i = 0; i < PROVIDER_COUNT && o < size; i++) {
		const char *before = i == 0 ? "" : i == PROVIDER_COUNT - 1 ? last : sep;
		n = snprintf(out + o, size - o, "%s%s", before, names[i]);
		if (n < 0)
			break;
		o += (size_t)n;
	}
	utf8_cut(out, size - 1);
	return out;
}
