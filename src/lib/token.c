/* token: HS256 JWTs with libjwt (see token.h). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <errno.h>
#include <jwt.h>

#include "rc.h"
#include "util.h"
#include "token.h"

#define TOKEN_MAX 8192

int
token_verify(const char *token, const char *secret, int64_t now, char *sub, int *admin,
	    const char **why)
{
	jwt_t *jwt = NULL;
	const char *s, *role;
	long exp, nbf;
	int rc = RC_DENIED;

	*why = "malformed token";
	if (!token || !*token || strlen(token) > TOKEN_MAX)
		return RC_DENIED;
	if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
	    !jwt) {
		*why = "bad signature or malformed token";
		goto out;
	}
	/* the algorithm is pinned: "none" and the others are refused whatever the header says */
	if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
		*why = "algorithm is not HS256";
		goto out;
	}
	errno = 0;
	exp = jwt_get_grant_int(jwt, "exp");
	if (errno != ENOENT && (errno != 0 || exp <= now)) {
		*why = "token expired";
		goto out;
	}
	errno = 0;
	nbf = jwt_get_grant_int(jwt, "nbf");
	if (errno != ENOENT && (errno != 0 || nbf > now)) {
		*why = "token not valid yet";
		goto out;
	}
	s = jwt_get_grant(jwt, "sub");
	if (!s || !*s || strlen(s) > TOKEN_SUB_MAX || !utf8_valid(s, strlen(s))) {
		*why = "token has no usable sub";
		goto out;
	}
	strcpy(sub, s);
	role = jwt_get_grant(jwt, "role");
	*admin = role && strcmp(role, "admin") == 0;
	rc = RC_OK;
out:
	jwt_free(jwt);
	return rc;
}

const char *
token_bearer(const char *h)
{
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return h;
}

char *
token_mint(const char *secret, const char *sub, const char *role, long ttl_s)
{
	jwt_t *jwt = NULL;
	char *tok = NULL, *out = NULL;
	long now = (long)time(NULL);

	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_grant(jwt, "sub", sub) || (role && jwt_add_grant(jwt, "role", role)) ||
	    jwt_add_grant_int(jwt, "iat", now) ||
	    (ttl_s > 0 && jwt_add_grant_int(jwt, "exp", now + ttl_s)) ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)))
		goto out;
	tok = jwt_encode_str(jwt);
	if (tok)
		out = strdup(tok);
out:
	free(tok);
	jwt_free(jwt);
	return out;
}
