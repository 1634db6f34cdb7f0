#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdint.h>

#include "rc.h"
#include "pool.h"

#define POOL_BLOCK 16384
#define POOL_ALIGN 16

struct pool_block {
	struct pool_block *next;
	size_t size, used;
	_Alignas(POOL_ALIGN) unsigned char data[];
};

struct pool_cleanup {
	struct pool_cleanup *next;
	void (*fn)(void *);
	void *data;
};

struct pool {
	struct pool_block *blocks; /* the block being filled first */
	struct pool_block *first;  /* kept across resets */
	struct pool_cleanup *cleanups;
};

static struct pool_block *
pool_block_new(size_t size)
{
	struct pool_block *b = malloc(sizeof(*b) + size);

	if (!b)
		return NULL;
	b->next = NULL;
	b->size = size;
	b->used = 0;
	return b;
}

struct pool *
pool_create(void)
{
	struct pool *p = malloc(sizeof(*p));

	if (!p)
		return NULL;
	p->cleanups = NULL;
	p->blocks = p->first = pool_block_new(POOL_BLOCK);
	if (!p->blocks) {
		free(p);
		return NULL;
	}
	return p;
}

static void
pool_run_cleanups(struct pool *p)
{
	struct pool_cleanup *c = p->cleanups;

	/* the cleanup records live in the pool itself: read next before anything is freed */
	while (c) {
		struct pool_cleanup *next = c->next;
		c->fn(c->data);
		c = next;
	}
	p->cleanups = NULL;
}

void
pool_reset(struct pool *p)
{
	struct pool_block *b, *next;

	pool_run_cleanups(p);
	for (b = p->blocks; b; b = next) {
		next = b->next;
		if (b != p->first)
			free(b);
	}
	p->blocks = p->first;
	p->first->next = NULL;
	p->first->used = 0;
}

void
pool_destroy(struct pool *p)
{
	if (!p)
		return;
	pool_reset(p);
	free(p->blocks);
	free(p);
}

void *
pool_alloc(struct pool *p, size_t n)
{
	struct pool_block *b = p->blocks, *nb;
	size_t off;

	if (n > SIZE_MAX - 2 * POOL_ALIGN)
		return NULL;
	n = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
	off = b->used;
	if (off + n <= b->size) {
		b->used = off + n;
		return b->data + off;
	}
	nb = pool_block_new(n > POOL_BLOCK / 4 ? n : POOL_BLOCK);
	if (!nb)
		return NULL;
	if (n > POOL_BLOCK / 4) {
		/* a big allocation gets its own block, kept behind the current one */
		nb->used = n;
		nb->next = b->next;
		b->next = nb;
		return nb->data;
	}
	nb->next = b;
	p->blocks = nb;
	nb->used = n;
	return nb->data;
}

char *
pool_strndup(struct pool *p, const char *s, size_t n)
{
	char *d;

	if (!s)
		return NULL;
	d = pool_alloc(p, n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *
pool_strdup(struct pool *p, const char *s)
{
	return s ? pool_strndup(p, s, strlen(s)) : NULL;
}

char *
pool_printf(struct pool *p, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *d;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	d = pool_alloc(p, (size_t)n + 1);
	if (!d)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

int
pool_cleanup(struct pool *p, void (*fn)(void *), void *data)
{
	struct pool_cleanup *c = pool_alloc(p, sizeof(*c));

	if (!c)
		return RC_NOMEM;
	c->fn = fn;
	c->data = data;
	c->next = p->cleanups;
	p->cleanups = c;
	return RC_OK;
}
