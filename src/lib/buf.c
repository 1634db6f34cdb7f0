#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdint.h>

#include "rc.h"
#include "buf.h"

static char buf_empty[1];

void
buf_init(struct buf *b, size_t cap)
{
	b->s = buf_empty;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
	b->failed = 0;
}

void
buf_free(struct buf *b)
{
	if (b->alloc)
		free(b->s);
	buf_init(b, b->cap);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	b->failed = 0;
	if (b->alloc)
		b->s[0] = '\0';
}

char *
buf_detach(struct buf *b, size_t *len)
{
	char *s;

	if (len)
		*len = b->len;
	if (b->alloc) {
		s = b->s;
	} else {
		s = calloc(1, 1);
	}
	buf_init(b, b->cap);
	return s;
}

static int
buf_grow(struct buf *b, size_t extra)
{
	size_t want, n;
	char *p;

	if (b->failed)
		return RC_NOMEM;
	if (extra > SIZE_MAX / 2 - b->len - 1 || (b->cap && b->len + extra > b->cap)) {
		b->failed = 1;
		return RC_NOMEM;
	}
	want = b->len + extra + 1;
	if (want <= b->alloc)
		return RC_OK;
	n = b->alloc ? b->alloc : 64;
	while (n < want)
		n *= 2;
	p = realloc(b->alloc ? b->s : NULL, n);
	if (!p) {
		b->failed = 1;
		return RC_NOMEM;
	}
	if (!b->alloc)
		p[0] = '\0';
	b->s = p;
	b->alloc = n;
	return RC_OK;
}

int
buf_reserve(struct buf *b, size_t n)
{
	return buf_grow(b, n);
}

void
buf_setlen(struct buf *b, size_t len)
{
	b->len = len;
	b->s[len] = '\0';
}

int
buf_add(struct buf *b, const void *data, size_t len)
{
	if (buf_grow(b, len) != RC_OK)
		return RC_NOMEM;
	if (len)
		memcpy(b->s + b->len, data, len);
	b->len += len;
	b->s[b->len] = '\0';
	return RC_OK;
}

int
buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int
buf_addch(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	if (b->failed)
		return RC_NOMEM;
	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0 || buf_grow(b, (size_t)n) != RC_OK)
		return RC_NOMEM;
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return RC_OK;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_reset(b);
		return;
	}
	memmove(b->s, b->s + n, b->len - n);
	b->len -= n;
	b->s[b->len] = '\0';
}
