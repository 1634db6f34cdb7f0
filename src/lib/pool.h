/*
 * pool: per-request memory, freed all at once (in the manner of nginx's ngx_pool_t).
 * Everything allocated from a pool is valid until pool_reset() or pool_destroy(); the
 * caller never frees it one by one. Cleanups registered with pool_cleanup() run, newest
 * first, at pool_reset() and pool_destroy().
 */
#ifndef AICHATD_POOL_H
#define AICHATD_POOL_H

#include <stddef.h>

struct pool;

/* A new pool; NULL when out of memory. Destroy it with pool_destroy(). */
struct pool *pool_create(void);
/* Run the cleanups and free every allocation; the pool itself is freed too. */
void pool_destroy(struct pool *p);
/* Run the cleanups and forget every allocation, keeping the first block for reuse. */
void pool_reset(struct pool *p);

/* Memory aligned for any type; NULL when out of memory. Valid until the next reset. */
void *pool_alloc(struct pool *p, size_t n);
/* Copies of strings; NULL in, NULL out. */
char *pool_strdup(struct pool *p, const char *s);
char *pool_strndup(struct pool *p, const char *s, size_t n);
char *pool_printf(struct pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Register fn(data) to run at the next reset or destroy. RC_OK or RC_NOMEM. */
int pool_cleanup(struct pool *p, void (*fn)(void *), void *data);

#endif
