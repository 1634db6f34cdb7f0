/*
 * request: one request context, rebuilt on every FCGX_Accept_r and filled in named phases:
 *   1. env    (req_load)      method, path, query and headers copied out of libfcgi
 *   2. body   (req_load)      the request body, read up to the configured limit
 *   3. route  (router)        the matching route row and its path parameters
 *   4. user   (router)        the caller's identity when auth is on
 *   5. reply  (handlers)      status, extra headers, body, or an error to render
 *   6. send   (req_send)      the reply written back to libfcgi
 * then req_reset() clears it for the next request. Nothing in a req points into libfcgi's
 * memory: every string is copied into r->pool, which req_reset() empties.
 */
#ifndef AICHATD_REQ_H
#define AICHATD_REQ_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "buf.h"

struct pool;
struct store;
struct config;
struct route;
struct FCGX_Request;

/* The five dialects (docs/API.md): each has its own error body. */
enum dialect { D_IM, D_AICHAT, D_CHAX, D_V1, D_WORKFLOW };

#define REQ_MAX_PARAMS 4
#define REQ_MAX_QUERY 32

struct req {
	/* long-lived, set once per thread */
	struct pool *pool;
	struct store *store;
	const struct config *cfg;

	/* env */
	const char *method;  /* "GET", ... */
	char *path;          /* the raw path, without the query */
	char *query;         /* the raw query string, "" when none */
	int nq;              /* decoded query parameters */
	const char *qk[REQ_MAX_QUERY], *qv[REQ_MAX_QUERY];
	char *content_type;
	char *authorization; /* the Authorization header, NULL when none */
	int64_t content_length; /* -1 when not given */
	char *remote_addr;   /* REMOTE_ADDR (the client's address as nginx saw it), or NULL */
	int64_t started_ns;  /* time_mono_ns() when the request was read */

	/* body */
	char *body;      /* NUL-terminated; NULL when none */
	size_t body_len;
	int body_too_big;

	/* route */
	const struct route *route;
	enum dialect dialect;
	char *params[REQ_MAX_PARAMS]; /* percent-decoded path parameters */
	json_t *json;                 /* the parsed body object, for routes that take one */

	/* user */
	const char *user;  /* the token's subject; NULL when auth is off */
	int admin;

	/* reply */
	int status;
	struct buf headers; /* extra header lines, each ending in "\r\n" */
	struct buf out;     /* the body */
	const char *ctype;  /* NULL: application/json */
	int err_status;     /* nonzero once an error was set */
	int err_code;       /* the im dialect's business code, or 0 for the HTTP status */
	const char *err_msg;
};

/* Phases 1 and 2: copy method, path, query and headers out of fr into r->pool, then read
 * the body (at most cfg->body_limit bytes; past that body_too_big is set and the rest is
 * read and dropped). r must have been reset. */
void req_load(struct req *r, struct FCGX_Request *fr);
/* Phase 6: write r's status, headers and body to fr. */
void req_send(struct req *r, struct FCGX_Request *fr);
/* Empty r for the next request: its pool is reset and everything else cleared, but the
 * pool, store and settings stay set, and the buffers keep their memory. Before the first
 * request r holds only those (pool, store, cfg, out and headers initialised). */
void req_reset(struct req *r);

/* Set an error to be rendered in the dialect's error body; returns -1 for `return`. */
int req_fail(struct req *r, int status, int code, const char *msg);
/* Serialise j (its reference is stolen) as the JSON body with the given status. */
int req_json(struct req *r, int status, json_t *j);
/* Decode r->query into qk/qv. RC_ERR on a bad escape, a NUL, invalid UTF-8 or more than
 * REQ_MAX_QUERY parameters. */
int req_parse_query(struct req *r);
/* The value of a query parameter, percent-decoded, or NULL when absent; "" when empty. */
const char *req_query(struct req *r, const char *name);
/* Add a response header line ("Name: value"). */
void req_header(struct req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
