/*
 * api: the handlers, one file per dialect, and the shared chrome they use.
 *   api-im.c       im: /api/message, /api/ai, /health
 *   api-aichat.c   aichat: /api/chat/session*, /api/chat/message*, /aichat
 *   api-chax.c     chax: /ai
 *   api-v1.c       v1: /api/v1
 *   api-workflow.c workflow: /api/chat/send, /history, /stream
 *   api-shared.c   pagination, body fields, identity, times, the success envelope, posts,
 *                  hand-overs to the push daemon and synchronous sends
 *
 * A handler is `int <dialect>_<what>(struct req *r)`. When it runs, the router has matched
 * its route (r->params holds the pattern's :name segments, percent-decoded), decoded the
 * query (req_query()), checked the token when auth = jwt (r->user, r->admin) and parsed
 * the body if the route's flags say so (r->json). It answers with req_json() (or
 * api_success(), api_hand_over(), ...) and returns 0, or sets an error with req_fail() and
 * returns its -1: the router renders the error in the route's dialect. What it allocates
 * comes from r->pool, which lives until the next request.
 *
 * Adding a route, in the way git's builtin.h says how to add a command:
 *   1. The handler, in api-<dialect>.c, named <dialect>_<what>. Its SQL is a store_*
 *      function (store.h); none is written in a handler.
 *   2. Its prototype below, under its dialect.
 *   3. A row in routes[] in router.c: method, pattern, handler, dialect, flags. A pattern
 *      is literal segments and ":name" segments, each capturing one non-empty segment (at
 *      most REQ_MAX_PARAMS); rows are tried in order and the first match wins; HEAD is
 *      answered by the GET row.
 *   4. Only for a path prefix no route has yet: router_dialect() in router.c, so that the
 *      prefix's 404s and 405s come in its dialect's body (unknown prefixes are aichat's),
 *      and a location in conf/aichatd-locations.conf.in with that dialect's error_page
 *      lines, or nginx never passes the path to the pool.
 *   5. Tests in tests/integration/test_<dialect>.py: @test functions named after the
 *      handler they exercise, <handler>_<what they check> (im_send_validation_codes).
 *   6. A row in docs/ROUTES.md, under the dialect: what the route takes and answers; and
 *      a line in docs/API.md where it decides something the dialect's rules left open.
 *
 * The route flags (enum route_flags, router.h), or'ed in a row's last field. With none, a
 * route needs a token when auth = jwt and its body, if any, is not parsed (r->json NULL).
 *   R_PUBLIC    no token is asked for, even when auth = jwt (r->user stays NULL); without
 *               it, auth = jwt makes a missing or invalid token a 401.
 *   R_ADMIN     when auth = jwt, the token's role must be "admin" (r->admin), else a 403;
 *               with auth off it stops nobody, and on an R_PUBLIC row it is not checked.
 *   R_JSON      the body must be a JSON object: it is parsed into r->json (the handler
 *               reads its fields with api_field()); an absent or empty body, JSON that
 *               does not parse, or a value that is not an object is a 400.
 *   R_JSON_OPT  as R_JSON, but an absent or empty body reads as {}.
 * router_dispatch() checks, in this order, each failure in the route's dialect's body: the
 * route (404; 405 with Allow; 400 for a path parameter that does not decode: a bad escape,
 * a NUL or invalid UTF-8), the body's size (413 past body_limit), the query (400), the
 * token (401, then R_ADMIN's 403), the body (R_JSON's 400); then the handler runs.
 */
#ifndef AICHATD_API_H
#define AICHATD_API_H

#include <jansson.h>

#include "limits.h"
#include "request.h"
#include "store.h"

#define TITLE_MAX 200
#define PAGE_MAX 2147483647LL
#define PAGE_SIZE_MAX 100
#define DEFAULT_USER "default_user"
/* The im dialect's business codes (its error body's "code") for content it refuses; its
 * run errors are enum run_error's (store.h). */
enum im_code { IM_CONTENT_EMPTY = 1001, IM_CONTENT_LONG = 1002 };

/* im (api-im.c) */
int im_send(struct req *r);
int im_get(struct req *r);
int im_list(struct req *r);
int im_records(struct req *r);
int im_health(struct req *r);
/* GET /metrics: Prometheus' text format, for metrics_allow's addresses (metrics.c) */
int metrics_get(struct req *r);
/* aichat (api-aichat.c) */
int aichat_session_create(struct req *r);
int aichat_session_get(struct req *r);
int aichat_sessions_list(struct req *r);
int aichat_session_delete(struct req *r);
int aichat_session_rename(struct req *r);
int aichat_message_post(struct req *r);
int aichat_message_get(struct req *r);
int aichat_messages_list(struct req *r);
int aichat_message_delete(struct req *r);
int aichat_message_edit(struct req *r);
int aichat_view_list(struct req *r);
int aichat_view_listshow(struct req *r);
int aichat_view_session(struct req *r);
/* chax (api-chax.c) */
int chax_record_list(struct req *r);
int chax_message_list(struct req *r);
int chax_message_content(struct req *r);
int chax_chat(struct req *r);
int chax_stream(struct req *r);
int chax_stop(struct req *r);
/* v1 (api-v1.c) */
int v1_session_create(struct req *r);
int v1_messages_list(struct req *r);
int v1_mcfg_list(struct req *r);
int v1_mcfg_put(struct req *r);
int v1_logs(struct req *r);
int v1_send(struct req *r);
int v1_send_result(struct req *r);
/* workflow (api-workflow.c) */
int workflow_history(struct req *r);
int workflow_send(struct req *r);
int workflow_send_result(struct req *r);
int workflow_stream(struct req *r);

/* ---- shared chrome (api-shared.c) ---- */

/* Pagination from the query string: page parameter `pname`, size parameter `sname` (and
 * its alias `alias`, may be NULL), default size `def`. On a bad value writes the 400 and
 * returns -1. */
int api_page_query(struct req *r, const char *pname, const char *sname, const char *alias,
		   int64_t def, int64_t *page, int64_t *size, struct page *pg);
/* The same from the JSON body (integers, or strings holding them). */
int api_page_json(struct req *r, const char *pname, const char *sname, const char *alias,
		  int64_t def, int64_t *page, int64_t *size, struct page *pg);

/* A string field of r->json: *out is NULL when absent or null. A present field of another
 * type writes a 400 (`msg`, or a generic one) and returns -1. */
int api_field(struct req *r, const char *name, const char **out);
/* limit_content(), writing the dialect's 400 (im's IM_CONTENT_EMPTY and IM_CONTENT_LONG,
 * chax's English) when the content breaks them: 0 ok, -1 after the error. */
int api_content_ok(struct req *r, const char *s);

/* The user a request acts for, given an optional user id from the body or path: with auth
 * on, a different id is a 403 (returns NULL after writing it); with auth off, the given id
 * or DEFAULT_USER. */
const char *api_acting_user(struct req *r, const char *given);
/* The same for a user id the route requires: absent (or empty) with no token, it is a 400
 * (returns NULL after writing it); with a token, absent means the token's subject. */
const char *api_required_user(struct req *r, const char *given);
/* The visibility filter for the store: the token's user, or NULL with auth off. */
#define api_owner(r) ((r)->user)

/* A conversation named by a client (im's session_id, workflow's sessionId): found
 * (*have = 1), or never used (*have = 0: lists as empty); -1 after writing a 404 with
 * `gone` when it is deleted or someone else's. */
int api_named_conv(struct req *r, const char *id, struct conv *c, int *have, const char *gone);
/* Wait for a run to end (sync sends). 0 with out filled (out->status RUN_DONE, RUN_FAILED,
 * or still RUN_RUNNING with error_code RUN_ERR_TIMEOUT when the time ran out); -1 after
 * writing a 500. */
int api_wait_run(struct req *r, int64_t run_id, struct run_result *out);
/* Hand the connection to the push daemon through nginx's internal location (target is
 * the daemon's path, e.g. "sse/<msgId>"): the worker is free as soon as it answers. */
int api_hand_over(struct req *r, const char *target);
/* v1's and workflow's synchronous sends, which hold no worker while the reply is made.
 * After the post, api_sync_hand_over() answers X-Accel-Redirect to nginx's
 * /_aichatd_sync/<kind>/<run> (kind 'd' for v1, 'e' for workflow), which the push daemon
 * holds until the run's end is committed; it then redirects nginx to
 * /_aichatd_result/<kind>/<run>, whose route (the same handler as the daemon-less fallback
 * /_aichatd_sync/<kind>/<run>) reads the result with api_sync_result().
 * api_posted_via_daemon() says whether the thread's last api_post() went through the
 * daemon: a send the daemon could not take waits in its worker as before. */
int api_posted_via_daemon(void);
int api_sync_hand_over(struct req *r, char kind, int64_t run_id);
/* The ended run of the path's :run, the caller's (else a 404 with `gone`): 0 with out
 * filled as api_wait_run() fills it (on /_aichatd_result/ it does not wait: a run still
 * open has timed out), or -1 after an error was written. */
int api_sync_result(struct req *r, struct run_result *out, const char *gone);
/* Answer 200 with the success envelope aichat and v1 share, {"code":200,"message":"success",
 * "data":data}. data's reference is stolen; NULL (a value that could not be made) gives
 * "data":null. 0, or -1 after the error was set. */
int api_success(struct req *r, json_t *data);
/* A timestamp as the dialect renders it. New reference. */
json_t *api_time(enum dialect d, int64_t ms);
/* A string the store gave back, as a JSON string without checking its UTF-8 again (all
 * that is stored was checked on the way in: request bodies by jansson, replies by the
 * daemon); NULL gives null. */
json_t *api_stored(const char *s);
/* json_string() of possibly NULL text: null for NULL. New reference. */
json_t *api_str_or_null(const char *s);
/* Post a message (store_post) and wake the push daemon for its run: 0, or -1 after
 * writing 404 `gone` (no such conversation for this caller) or a 500. */
int api_post(struct req *r, const struct store_post *in, struct store_posted *out,
	     const char *gone);
/* A message read from the store: when it is an unfinished reply, its content becomes what
 * the push daemon holds of it so far (the database keeps a reply only once it ends). When
 * the daemon no longer runs it, it has ended meanwhile and m is read again; when the daemon
 * cannot be reached, m stays as read. */
void api_msg_so_far(struct req *r, struct msg *m);
/* A store failure that is not "not found": log it and write a 500. Returns -1. */
int api_store_fail(struct req *r, int rc, const char *err);

#endif
