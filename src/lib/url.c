/* url: percent-decoding of paths and query strings (see url.h). */
#include <stdint.h>
#include <string.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "url.h"

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
url_unescape(struct pool *p, const char *s, size_t len, int form)
{
	char *d = pool_alloc(p, len + 1);
	size_t i, o = 0;

	if (!d)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] == '%') {
			int hi, lo;
			if (i + 2 >= len)
				return NULL;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return NULL;
			d[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (form && s[i] == '+') {
			d[o++] = ' ';
		} else {
			d[o++] = s[i];
		}
	}
	d[o] = '\0';
	if (memchr(d, '\0', o) || !utf8_valid(d, o))
		return NULL;
	return d;
}

int
url_query_parse(struct pool *p, const char *q, const char **keys, const char **vals, int max,
		int *n)
{
	const char *amp, *eq;

	*n = 0;
	while (*q) {
		amp = strchr(q, '&');
		if (!amp)
			amp = q + strlen(q);
		if (amp > q) {
			if (*n == max)
				return RC_ERR;
			eq = memchr(q, '=', (size_t)(amp - q));
			if (!eq)
				eq = amp;
			keys[*n] = url_unescape(p, q, (size_t)(eq - q), 1);
			vals[*n] = eq == amp ? "" :
				url_unescape(p, eq + 1, (size_t)(amp - eq - 1), 1);
			if (!keys[*n] || !vals[*n])
				return RC_ERR;
			(*n)++;
		}
		q = *amp ? amp + 1 : amp;
	}
	return RC_OK;
}

const char *
url_query_get(int n, const char **keys, const char **vals, const char *name)
{
	int i;

	/* the first occurrence wins */
	for (i = 0; i < n; i++)
		if (strcmp(keys[i], name) == 0)
			return vals[i];
	return NULL;
}
