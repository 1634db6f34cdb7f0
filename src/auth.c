#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <time.h>
#include <errno.h>
#include <jwt.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "store.h"
#include "req.h"
#include "auth.h"

#define TOKEN_MAX 8192

int
auth_verify(const char *token, const char *secret, int64_t now, char *sub, int *admin,
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
	if (!s || !*s || strlen(s) > AUTH_SUB_MAX || !utf8_valid(s, strlen(s))) {
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

/* Auth failures go to the operation log: at most AUTH_LOG_RATE a second per thread, so a
 * flood of bad tokens cannot flood the log; the rest are counted, and the count is logged
 * with the next failure after the second is over. */
#define AUTH_LOG_RATE 20
#define AUTH_LOG_PATH 300 /* bytes of the path in the line */
static void
auth_log_failure(struct req *r, const char *why)
{
	static _Thread_local time_t window;
	static _Thread_local int count, suppressed;
	time_t now = time(NULL);
	char msg[512], path[AUTH_LOG_PATH + 1], method[24];

	if (now != window) {
		if (suppressed) {
			snprintf(msg, sizeof(msg), "auth failure: %d more in one second not logged",
				 suppressed);
			store_log(r->store, "warning", msg);
		}
		window = now;
		count = suppressed = 0;
	}
	if (++count > AUTH_LOG_RATE) {
		suppressed++;
		return;
	}
	/* the path as the client sent it, mended and cut on a character boundary: a long or
	 * ill-formed path must not make the line unreadable (a client could hide its traces) */
	utf8_mend(path, AUTH_LOG_PATH + 1, r->path, strlen(r->path));
	utf8_mend(method, sizeof(method), r->method, strlen(r->method));
	snprintf(msg, sizeof(msg), "auth failure: %s on %s %s", why, method, path);
	store_log(r->store, "warning", msg);
}

int
auth_request(struct req *r)
{
	const char *token = NULL, *why = "no token";
	char sub[AUTH_SUB_MAX + 1];
	int admin = 0;

	if (r->authorization) {
		const char *h = r->authorization;
		while (*h == ' ')
			h++;
		if (strncasecmp(h, "Bearer ", 7) == 0) {
			token = h + 7;
			while (*token == ' ')
				token++;
		} else {
			why = "Authorization is not Bearer";
		}
	} else {
		token = req_query(r, "access_token");
	}
	if (token && auth_verify(token, r->cfg->jwt_secret, time(NULL), sub, &admin, &why) ==
			     RC_OK) {
		r->user = pool_strdup(r->pool, sub);
		r->admin = admin;
		return r->user ? RC_OK : RC_DENIED;
	}
	auth_log_failure(r, why);
	return RC_DENIED;
}

char *
auth_mint(const char *secret, const char *sub, const char *role, long ttl_s)
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
