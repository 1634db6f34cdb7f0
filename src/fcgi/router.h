/*
 * router: the static routing table and the one dispatcher that applies each row's policy
 * flags (auth, admin, JSON body) before calling its handler, and renders every error in
 * the route's dialect. Adding a route: api.h.
 */
#ifndef AICHATD_ROUTER_H
#define AICHATD_ROUTER_H

#include "request.h"

/* What the router checks before a route's handler runs; api.h says each one precisely. */
enum route_flags {
	R_PUBLIC = 1 << 0,            /* no token needed even when auth is on */
	R_ADMIN = 1 << 1,             /* needs a token with role "admin" when auth is on */
	R_JSON = 1 << 2,              /* the body must be a JSON object: into r->json */
	R_JSON_OPT = R_JSON | 1 << 3, /* the same, but an empty body reads as {} */
};

struct route {
	const char *method;
	const char *pattern; /* segments; ":name" captures one segment */
	int (*handler)(struct req *r);
	enum dialect dialect;
	unsigned flags;
};

/* The table's rows, n of them (at most ROUTER_ROUTES_MAX): for the metrics, which count
 * requests by row. */
#define ROUTER_ROUTES_MAX 64
const struct route *router_table(size_t *n);
/* Match method and path against the table. Returns the row, or NULL with *status 404 (no
 * path matched), 405 (the path matched for other methods, listed in allow) or 400 (the
 * method's route matched but a path parameter is not a decodable UTF-8 string). */
const struct route *router_match(const char *method, const char *path, struct pool *p,
				 char **params, int *status, char *allow, size_t allow_len);
/* The dialect that owns a path, by prefix (for 404s and nginx's own errors). */
enum dialect router_dialect(const char *path);
/* Route, check policy, run the handler and leave the response in r. */
void router_dispatch(struct req *r);
/* Render r's error (err_status, err_code, err_msg) into r->out in r->dialect's shape. */
void router_render_error(struct req *r);

#endif
