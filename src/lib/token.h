/*
 * token: HS256 JWT checks and minting with libjwt, shared by the workers (auth.c, and
 * `aichatd token`) and the push daemon (WebSocket and SSE handovers). The algorithm is
 * pinned to HS256; "exp" and "nbf" are honoured when present; "sub" names the user and
 * "role": "admin" makes an admin.
 */
#ifndef AICHATD_TOKEN_H
#define AICHATD_TOKEN_H

#include <stdint.h>

#define TOKEN_SUB_MAX 128

/* Verify token with secret at time now (seconds). On RC_OK, sub (TOKEN_SUB_MAX + 1 bytes)
 * holds the subject and *admin is 1 for role "admin". RC_DENIED otherwise, with a reason. */
int token_verify(const char *token, const char *secret, int64_t now, char *sub, int *admin,
		 const char **why);
/* The token of an Authorization header's value ("Bearer <jwt>", the scheme in any case,
 * spaces around it skipped), or NULL when the scheme is not Bearer. */
const char *token_bearer(const char *header);
/* A signed HS256 token for sub (role may be NULL, ttl_s 0 for no expiry): the caller frees
 * it with free(). NULL on failure. For operators and tests (`aichatd token`). */
char *token_mint(const char *secret, const char *sub, const char *role, long ttl_s);

#endif
