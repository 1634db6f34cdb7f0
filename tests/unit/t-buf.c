/* the growable buffer and its cap; the request pool */
#include <stdlib.h>
#include <stdint.h>

#include "unit.h"
#include "rc.h"
#include "buf.h"
#include "pool.h"

static void
count_cleanup(void *arg)
{
	(*(int *)arg)++;
}

void
t_buf(void)
{
	struct buf b;
	struct pool *p;
	char *s, big[5000];
	size_t len;
	int i, cleaned = 0;

	buf_init(&b, 10);
	CHECK(b.s && b.s[0] == '\0' && b.len == 0);
	CHECK(buf_adds(&b, "hello") == RC_OK && b.len == 5);
	CHECK(buf_printf(&b, "%d", 1234) == RC_OK);
	CHECK_STR(b.s, "hello1234");
	/* over the cap: refused, contents unchanged, and the buffer stays failed */
	CHECK(buf_adds(&b, "xy") == RC_NOMEM);
	CHECK_STR(b.s, "hello1234");
	CHECK(b.failed);
	CHECK(buf_addch(&b, 'z') == RC_NOMEM);
	buf_reset(&b);
	CHECK(!b.failed && b.len == 0 && buf_adds(&b, "ok") == RC_OK);
	buf_consume(&b, 1);
	CHECK_STR(b.s, "k");
	s = buf_detach(&b, &len);
	CHECK(s && len == 1 && strcmp(s, "k") == 0);
	free(s);
	buf_free(&b);

	/* growth past the first allocation keeps the contents */
	buf_init(&b, 0);
	for (i = 0; i < 1000; i++)
		buf_addch(&b, (char)('a' + i % 26));
	CHECK(b.len == 1000 && b.s[999] == (char)('a' + 999 % 26) && b.s[1000] == '\0');
	buf_free(&b);

	p = pool_create();
	CHECK(p != NULL);
	s = pool_strdup(p, "abc");
	CHECK_STR(s, "abc");
	CHECK(pool_strdup(p, NULL) == NULL);
	CHECK_STR(pool_printf(p, "%s-%d", "x", 7), "x-7");
	memset(big, 'q', sizeof(big));
	CHECK(pool_strndup(p, big, sizeof(big)) != NULL); /* a block of its own */
	for (i = 0; i < 2000; i++)
		CHECK(((uintptr_t)pool_alloc(p, (size_t)(i % 37 + 1)) & 15) == 0);
	CHECK(pool_cleanup(p, count_cleanup, &cleaned) == RC_OK);
	CHECK(pool_cleanup(p, count_cleanup, &cleaned) == RC_OK);
	pool_reset(p);
	CHECK(cleaned == 2);
	CHECK(pool_alloc(p, 10) != NULL);
	pool_reset(p);
	CHECK(cleaned == 2); /* cleanups run once */
	pool_destroy(p);
}
