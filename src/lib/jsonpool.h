/*
 * jsonpool: where jansson's memory comes from. Both programs install it once per process,
 * before any thread starts; a thread then names the pool its JSON values come from while it
 * serves a request or parses a piece of a reply (NULL: plain malloc). Every JSON value made
 * while a pool is named must be gone by that pool's reset.
 */
#ifndef AICHATD_JSONPOOL_H
#define AICHATD_JSONPOOL_H

#include <stddef.h>
#include <jansson.h>

struct pool;

void json_pool_install(void);
void json_pool_use(struct pool *p);
/* json_dumps() into plain malloc'd memory (the caller frees it with free()), valid
 * whatever pool is named: use it, not json_dumps(), for text that is kept. */
char *json_pool_text(const json_t *j, size_t flags);

#endif
