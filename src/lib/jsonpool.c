/* jsonpool: jansson's allocations from a named pool (see jsonpool.h). */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <jansson.h>

#include "pool.h"
#include "jsonpool.h"

/*
 * jansson's memory, in the workers: while a request is being served, its JSON values come
 * from the request pool (a bump allocation; freeing is a no-op, the pool's reset frees
 * them), which takes the malloc/free pair per value off the hot path. A 16-byte header says
 * which allocator a block came from, so a value made outside a request is freed normally.
 */
static _Thread_local struct pool *named;

#define JSON_HDR 16

static void json_release(void *p);

static void *
json_alloc(size_t n)
{
	unsigned char *m;

	if (n > SIZE_MAX - JSON_HDR)
		return NULL;
	if (named) {
		m = pool_alloc(named, n + JSON_HDR);
		if (m)
			m[0] = 1;
	} else {
		m = malloc(n + JSON_HDR);
		if (m)
			m[0] = 0;
	}
	return m ? m + JSON_HDR : NULL;
}

char *
json_pool_text(const json_t *j, size_t flags)
{
	char *t = json_dumps(j, flags), *out = t ? strdup(t) : NULL;

	json_release(t);
	return out;
}

static void
json_release(void *p)
{
	unsigned char *m;

	if (!p)
		return;
	m = (unsigned char *)p - JSON_HDR;
	if (m[0] == 0)
		free(m);
}

void
json_pool_install(void)
{
	json_set_alloc_funcs(json_alloc, json_release);
}

void
json_pool_use(struct pool *p)
{
	named = p;
}
