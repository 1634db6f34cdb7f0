#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "pool.h"
#include "config.h"
#include "auth.h"
#include "store.h"
#include "api.h"
#include "router.h"
#include "url.h"
#include "util.h"
#include "metrics.h"

static const struct route routes[] = {
	/* im */
	{"GET", "/health", im_health, D_IM, R_PUBLIC},
	/* Prometheus' scrape: no token; metrics_allow's addresses instead (metrics.c) */
	{"GET", "/metrics", metrics_get, D_IM, R_PUBLIC},
	{"POST", "/api/message/send", im_send, D_IM, R_JSON},
	{"GET", "/api/message/list", im_list, D_IM, 0},
	{"GET", "/api/message/:id", im_get, D_IM, 0},
	{"GET", "/api/ai/records", im_records, D_IM, 0},
	/* aichat */
	{"POST", "/api/chat/session", aichat_session_create, D_AICHAT, R_JSON},
	{"POST", "/api/chat/sessions", aichat_sessions_list, D_AICHAT, R_JSON_OPT},
	{"GET", "/api/chat/sessions/:sid", aichat_session_get, D_AICHAT, 0},
	{"DELETE", "/api/chat/sessions/:sid", aichat_session_delete, D_AICHAT, 0},
	{"PATCH", "/api/chat/sessions/:sid", aichat_session_rename, D_AICHAT, R_JSON},
	{"GET", "/api/chat/sessions/:sid/messages", aichat_messages_list, D_AICHAT, 0},
	{"GET", "/api/chat/sessions/:sid/messages/:mid", aichat_message_get, D_AICHAT, 0},
	{"POST", "/api/chat/message", aichat_message_post, D_AICHAT, R_JSON},
	{"DELETE", "/api/chat/messages/:mid", aichat_message_delete, D_AICHAT, 0},
	{"PATCH", "/api/chat/messages/:mid", aichat_message_edit, D_AICHAT, R_JSON},
	{"GET", "/aichat/getsessionlist/:uid", aichat_view_list, D_AICHAT, 0},
	{"GET", "/aichat/getsessionlistshow/:uid", aichat_view_listshow, D_AICHAT, 0},
	{"POST", "/aichat/createsession", aichat_session_create, D_AICHAT, R_JSON},
	{"GET", "/aichat/sessions/:sid", aichat_view_session, D_AICHAT, 0},
	{"PATCH", "/aichat/sessions/:sid", aichat_session_rename, D_AICHAT, R_JSON},
	{"DELETE", "/aichat/deletesession/:sid", aichat_session_delete, D_AICHAT, 0},
	{"GET", "/aichat/sessions/:sid/messages", aichat_messages_list, D_AICHAT, 0},
	/* chax */
	{"GET", "/ai/record/list", chax_record_list, D_CHAX, 0},
	{"GET", "/ai/message/list/:cid", chax_message_list, D_CHAX, 0},
	{"GET", "/ai/message/content/:mid", chax_message_content, D_CHAX, 0},
	{"POST", "/ai/chat", chax_chat, D_CHAX, R_JSON},
	{"GET", "/ai/message/stream/:mid", chax_stream, D_CHAX, 0},
	{"POST", "/ai/message/stop/:mid", chax_stop, D_CHAX, 0},
	/* v1 */
	{"POST", "/api/v1/sessions", v1_session_create, D_V1, R_JSON_OPT},
	{"GET", "/api/v1/sessions/:sid/messages", v1_messages_list, D_V1, 0},
	{"POST", "/api/v1/sessions/:sid/messages", v1_send, D_V1, R_JSON},
	{"GET", "/api/v1/model-configs", v1_mcfg_list, D_V1, 0},
	{"PUT", "/api/v1/model-configs/:id", v1_mcfg_put, D_V1, R_JSON | R_ADMIN},
	{"GET", "/api/v1/logs", v1_logs, D_V1, R_ADMIN},
	/* workflow */
	{"GET", "/api/chat/history", workflow_history, D_WORKFLOW, 0},
	{"POST", "/api/chat/send", workflow_send, D_WORKFLOW, R_JSON},
	{"POST", "/api/chat/stream", workflow_stream, D_WORKFLOW, R_JSON},
	/* internal (nginx's internal locations only, never reachable from outside): v1's and
	 * workflow's sync sends answered once the push daemon saw their run's end committed,
	 * and the fallback that waits here when the daemon could not hold them */
	{"GET", "/_aichatd_result/d/:run", v1_send_result, D_V1, 0},
	{"GET", "/_aichatd_result/e/:run", workflow_send_result, D_WORKFLOW, 0},
	{"GET", "/_aichatd_sync/d/:run", v1_send_result, D_V1, 0},
	{"GET", "/_aichatd_sync/e/:run", workflow_send_result, D_WORKFLOW, 0},
};

_Static_assert(sizeof(routes) / sizeof(routes[0]) <= ROUTER_ROUTES_MAX, "ROUTER_ROUTES_MAX");

const struct route *
router_table(size_t *n)
{
	*n = sizeof(routes) / sizeof(routes[0]);
	return routes;
}

static int
has_prefix(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

enum dialect
router_dialect(const char *path)
{
	if (has_prefix(path, "/health") || has_prefix(path, "/api/message") ||
	    has_prefix(path, "/api/ai"))
		return D_IM;
	if (has_prefix(path, "/api/v1"))
		return D_V1;
	if (has_prefix(path, "/api/chat/send") || has_prefix(path, "/api/chat/history") ||
	    has_prefix(path, "/api/chat/stream"))
		return D_WORKFLOW;
	if (has_prefix(path, "/ai"))
		return D_CHAX;
	return D_AICHAT;
}

/* Match one pattern; captured segments are decoded into params. 1 on a match; -1 when the
 * path has the pattern's shape but a captured segment does not decode (bad escape, NUL or
 * invalid UTF-8). */
static int
match(const char *pat, const char *path, struct pool *p, char **params)
{
	int np = 0, bad = 0;

	while (*pat && *path) {
		const char *pe, *se;

		if (*pat != '/' || *path != '/')
			return 0;
		pat++;
		path++;
		pe = strchr(pat, '/');
		if (!pe)
			pe = pat + strlen(pat);
		se = strchr(path, '/');
		if (!se)
			se = path + strlen(path);
		if (*pat == ':') {
			if (se == path || np == REQ_MAX_PARAMS)
				return 0;
			if (params) {
				params[np] = url_unescape(p, path, (size_t)(se - path), 0);
				if (!params[np])
					bad = 1;
			}
			np++;
		} else if ((size_t)(pe - pat) != (size_t)(se - path) ||
			   memcmp(pat, path, (size_t)(pe - pat)) != 0) {
			return 0;
		}
		pat = pe;
		path = se;
	}
	if (*pat != '\0' || *path != '\0')
		return 0;
	return bad ? -1 : 1;
}

const struct route *
router_match(const char *method, const char *path, struct pool *p, char **params, int *status,
	     char *allow, size_t allow_len)
{
	size_t i, used = 0;
	int m;

	*status = 404;
	allow[0] = '\0';
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];

		if (strcmp(rt->method, method) == 0) {
			m = match(rt->pattern, path, p, params);
			if (m > 0)
				return rt;
			if (m < 0) {
				/* the route, but an id no row can have: not a method problem */
				*status = 400;
				return NULL;
			}
		} else if (match(rt->pattern, path, p, NULL)) {
			*status = 405;
			if (!strstr(allow, rt->method) && used + strlen(rt->method) + 3 < allow_len)
				used += (size_t)snprintf(allow + used, allow_len - used, "%s%s",
							 used ? ", " : "", rt->method);
		}
	}
	return NULL;
}

static const char *
default_message(enum dialect d, int status)
{
	int c = d == D_CHAX;

	switch (status) {
	case 400: return c ? "Bad Request" : "请求参数错误";
	case 401: return c ? "Unauthorized" : "请先登录";
	case 403: return c ? "Forbidden" : "禁止访问";
	case 404: return c ? "Not Found" : "资源不存在";
	case 405: return c ? "Method Not Allowed" : "请求方法不允许";
	case 413: return c ? "Request body too large" : "请求体过大";
	case 503: return c ? "Service unavailable" : "服务暂不可用";
	default: return c ? "Internal server error" : "服务器内部错误";
	}
}

void
router_render_error(struct req *r)
{
	const char *msg = r->err_msg ? r->err_msg : default_message(r->dialect, r->err_status);
	int status = r->err_status;
	json_t *j;

	switch (r->dialect) {
	case D_IM:
		j = json_pack("{s:i,s:s}", "code", r->err_code ? r->err_code : status, "message",
			      msg);
		break;
	case D_CHAX:
		j = json_pack("{s:s}", "error", msg);
		break;
	default:
		j = json_pack("{s:i,s:s,s:n}", "code", status, "message", msg, "data");
		break;
	}
	r->err_status = 0;
	if (req_json(r, status, j) != 0) {
		/* not even the error could be rendered: a fixed body */
		buf_reset(&r->out);
		buf_adds(&r->out, "{\"code\":500,\"message\":\"out of memory\",\"data\":null}");
		r->status = 500;
	}
}

/* Parse the body into r->json: a JSON object, or a 400. */
static int
parse_body(struct req *r, int optional)
{
	json_error_t e;
	const char *bad = r->dialect == D_CHAX ? "invalid JSON body" : "请求体不是合法的 JSON";

	if (!r->body || r->body_len == 0) {
		if (!optional)
			return req_fail(r, 400, 0, bad);
		r->json = json_object();
	} else {
		r->json = json_loadb(r->body, r->body_len, 0, &e);
	}
	if (!r->json)
		return req_fail(r, 400, 0, bad);
	if (!json_is_object(r->json))
		return req_fail(r, 400, 0,
				r->dialect == D_CHAX ? "JSON body must be an object" :
						    "请求体必须是 JSON 对象");
	return 0;
}

void
router_dispatch(struct req *r)
{
	const struct route *rt;
	const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
	char allow[96];
	int status;

	r->dialect = router_dialect(r->path);
	rt = router_match(method, r->path, r->pool, r->params, &status, allow, sizeof(allow));
	if (!rt) {
		if (status == 405)
			req_header(r, "Allow: %s", allow);
		req_fail(r, status, 0,
			 status != 400 ? NULL :
			 r->dialect == D_CHAX ? "path parameter is not valid UTF-8" :
					     "路径参数不是合法的 UTF-8");
		goto out;
	}
	r->route = rt;
	r->dialect = rt->dialect;
	if (r->body_too_big) {
		req_fail(r, 413, 0, NULL);
		goto out;
	}
	if (req_parse_query(r) != RC_OK) {
		req_fail(r, 400, 0, r->dialect == D_CHAX ? "malformed query string" : "查询参数格式错误");
		goto out;
	}
	if (r->cfg->auth == AUTH_JWT && !(rt->flags & R_PUBLIC)) {
		if (auth_request(r) != RC_OK) {
			req_fail(r, 401, 0, NULL);
			goto out;
		}
		if ((rt->flags & R_ADMIN) && !r->admin) {
			req_fail(r, 403, 0,
				 r->dialect == D_CHAX ? "admin role required" : "需要管理员权限");
			goto out;
		}
	}
	if ((rt->flags & R_JSON) && parse_body(r, (rt->flags & R_JSON_OPT) == R_JSON_OPT) != 0)
		goto out;
	rt->handler(r);
out:
	if (r->err_status)
		router_render_error(r);
	metrics_request(r->route, r->status, r->started_ns ? time_mono_ns() - r->started_ns : 0);
}
