/*
 * auth: HS256 JWT checks with libjwt (contract section 5). The token comes from the
 * Authorization header ("Bearer <jwt>") or, for browsers' EventSource and WebSocket, the
 * access_token query parameter.
 */
#ifndef AICHATD_AUTH_H
#define AICHATD_AUTH_H

#include <stdint.h>

struct req;

#define AUTH_SUB_MAX 128

/* Verify token with secret at time now (seconds). On RC_OK, sub (AUTH_SUB_MAX + 1 bytes)
 * holds the subject and *admin is 1 for role "admin". RC_DENIED otherwise, with a reason. */
int auth_verify(const char *token, const char *secret, int64_t now, char *sub, int *admin,
		const char **why);
/* Check r's token and fill r->user and r->admin. RC_OK or RC_DENIED (logged). */
int auth_request(struct req *r);
/* A signed HS256 token for sub (role may be NULL, ttl_s 0 for no expiry): the caller frees
 * it with free(). NULL on failure. For operators and tests (`aichatd token`). */
char *auth_mint(const char *secret, const char *sub, const char *role, long ttl_s);

#endif
