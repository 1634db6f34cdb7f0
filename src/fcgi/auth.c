#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <errno.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "config.h"
#include "store.h"
#include "oplog.h"
#include "token.h"
#include "request.h"
#include "auth.h"

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
			oplog(r->store, "warning", "%s", msg);
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
	oplog(r->store, "warning", "%s", msg);
}

int
auth_request(struct req *r)
{
	const char *token = NULL, *why = "no token";
	char sub[TOKEN_SUB_MAX + 1];
	int admin = 0;

	if (r->authorization) {
		token = token_bearer(r->authorization);
		if (!token)
			why = "Authorization is not Bearer";
	} else {
		token = req_query(r, "access_token");
	}
	if (token && token_verify(token, r->cfg->jwt_secret, time(NULL), sub, &admin, &why) ==
			     RC_OK) {
		r->user = pool_strdup(r->pool, sub);
		r->admin = admin;
		return r->user ? RC_OK : RC_DENIED;
	}
	auth_log_failure(r, why);
	return RC_DENIED;
}
