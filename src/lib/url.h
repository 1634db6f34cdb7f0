/*
 * url: percent-decoding, shared by the workers' requests (request.c) and the daemon's
 * handover parser. Decoded text lives in a pool and is always valid UTF-8 with no NUL.
 */
#ifndef AICHATD_URL_H
#define AICHATD_URL_H

#include <stddef.h>

struct pool;

/* Percent-decode s (and '+' as space when form is set) into pool p; NULL on a bad escape
 * or when the result has a NUL byte or is not UTF-8. */
char *url_unescape(struct pool *p, const char *s, size_t len, int form);
/* Decode the query string q ("a=1&b=2", no '?') into keys/vals (at most max pairs, their
 * count in *n; a key without '=' has the value ""). RC_ERR on a bad escape, a NUL, invalid
 * UTF-8 or more than max parameters. */
int url_query_parse(struct pool *p, const char *q, const char **keys, const char **vals, int max,
		    int *n);
/* The value of the first parameter called name, or NULL when absent. */
const char *url_query_get(int n, const char **keys, const char **vals,
			  const char *name);

#endif
