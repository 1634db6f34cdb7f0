/*
 * buf: one growable byte buffer with a size cap (in the manner of git's strbuf and curl's
 * dynbuf). The contents are always NUL-terminated, so b->s is a C string when no NUL was
 * appended. A buffer whose cap would be exceeded, or whose allocation failed, becomes
 * "failed": every later append is refused with RC_NOMEM and the contents stay as they were
 * before the failing call.
 *
 * A zeroed struct buf is not usable: call buf_init() first. The buffer owns b->s: release
 * it with buf_free() (or take it with buf_detach()).
 */
#ifndef AICHATD_BUF_H
#define AICHATD_BUF_H

#include <stddef.h>
#include <stdarg.h>

struct buf {
	char *s;      /* NUL-terminated contents; never NULL after buf_init() */
	size_t len;   /* bytes used, not counting the NUL */
	size_t alloc; /* bytes allocated */
	size_t cap;   /* the most len may reach; 0 means no cap */
	int failed;   /* set once a cap or an allocation failed */
};

/* Initialise an empty buffer that will never hold more than cap bytes (0: no cap). */
void buf_init(struct buf *b, size_t cap);
/* Free the contents; the buffer is then as after buf_init() with the same cap. */
void buf_free(struct buf *b);
/* Forget the contents but keep the memory (for reuse across requests). */
void buf_reset(struct buf *b);
/* Take the contents: the caller frees the result with free(); the buffer is emptied. */
char *buf_detach(struct buf *b, size_t *len);

/* Append; each returns RC_OK, or RC_NOMEM when the cap or memory ran out. */
int buf_add(struct buf *b, const void *data, size_t len);
int buf_adds(struct buf *b, const char *s);
int buf_addch(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Make room for n more bytes after len (within the cap): RC_OK or RC_NOMEM. The caller may
 * then write up to n bytes at b->s + b->len and add them with buf_setlen(). */
int buf_reserve(struct buf *b, size_t n);
/* Set the length after writing into reserved room (len <= the room reserved). */
void buf_setlen(struct buf *b, size_t len);
/* Drop the first n bytes (n > len drops all). */
void buf_consume(struct buf *b, size_t n);

#endif
