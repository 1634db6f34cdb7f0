/*
 * auth: the identity of a worker's request when AICHATD_AUTH=jwt. The token comes from the
 * Authorization header ("Bearer <jwt>") or, for browsers' EventSource and WebSocket, the
 * access_token query parameter; the check itself is token.h's.
 */
#ifndef AICHATD_AUTH_H
#define AICHATD_AUTH_H

struct req;

/* Check r's token and fill r->user and r->admin. RC_OK or RC_DENIED (logged, rate-limited). */
int auth_request(struct req *r);

#endif
