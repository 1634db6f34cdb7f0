/* JSON rendering per dialect, content rules, query decoding */
#include <stdlib.h>

#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "config.h"
#include "router.h"
#include "api.h"

static char *
repeat(const char *unit, int n)
{
	size_t l = strlen(unit);
	char *s = malloc(l * (size_t)n + 1);
	int i;

	for (i = 0; i < n; i++)
		memcpy(s + l * (size_t)i, unit, l);
	s[l * (size_t)n] = '\0';
	return s;
}

static const char *
render(struct req *r, enum dialect d, int status, int code, const char *msg)
{
	buf_reset(&r->out);
	r->dialect = d;
	r->err_status = 0;
	req_fail(r, status, code, msg);
	router_render_error(r);
	return r->out.s;
}

void
t_json(void)
{
	struct req r;
	struct config cfg;
	char *s5000 = repeat("中", 5000), *s5001 = repeat("中", 5001);
	json_t *t;

	memset(&r, 0, sizeof(r));
	memset(&cfg, 0, sizeof(cfg));
	r.pool = pool_create();
	r.cfg = &cfg;
	buf_init(&r.out, 1 << 20);
	buf_init(&r.headers, 4096);

	/* one error shape per dialect (docs/API.md, "Errors"), the status always matching */
	CHECK_STR(render(&r, D_IM, 400, 1001, "消息内容不能为空"),
		  "{\"code\":1001,\"message\":\"消息内容不能为空\"}");
	CHECK(r.status == 400);
	CHECK_STR(render(&r, D_IM, 404, 0, "消息不存在"), "{\"code\":404,\"message\":\"消息不存在\"}");
	CHECK_STR(render(&r, D_AICHAT, 404, 0, "会话不存在"),
		  "{\"code\":404,\"message\":\"会话不存在\",\"data\":null}");
	CHECK(r.status == 404);
	CHECK_STR(render(&r, D_CHAX, 400, 0, "content is required"),
		  "{\"error\":\"content is required\"}");
	CHECK_STR(render(&r, D_V1, 401, 0, NULL),
		  "{\"code\":401,\"message\":\"请先登录\",\"data\":null}");
	CHECK_STR(render(&r, D_WORKFLOW, 413, 0, NULL),
		  "{\"code\":413,\"message\":\"请求体过大\",\"data\":null}");
	CHECK(r.status == 413);
	CHECK_STR(render(&r, D_CHAX, 405, 0, NULL), "{\"error\":\"Method Not Allowed\"}");
	/* the first error wins */
	r.err_status = 0;
	req_fail(&r, 400, 1002, "first");
	req_fail(&r, 500, 0, "second");
	CHECK(r.err_status == 400 && strcmp(r.err_msg, "first") == 0);
	r.err_status = 0;

	/* times per dialect */
	t = api_time(D_IM, 1737979200000LL);
	CHECK_STR(json_string_value(t), "2025-01-27T12:00:00");
	json_decref(t);
	t = api_time(D_AICHAT, 1704067200000LL);
	CHECK_STR(json_string_value(t), "2024-01-01T00:00:00Z");
	json_decref(t);
	t = api_time(D_CHAX, 1704067200123LL);
	CHECK(json_integer_value(t) == 1704067200123LL);
	json_decref(t);

	/* 5000 characters, not bytes: 5000 Chinese characters pass, 5001 do not */
	CHECK(limit_content(s5000) == CONTENT_OK);
	CHECK(limit_content(s5001) == CONTENT_LONG);
	CHECK(limit_content("") == CONTENT_EMPTY);
	CHECK(limit_content(" \n\t") == CONTENT_EMPTY);
	CHECK(limit_content(NULL) == CONTENT_EMPTY);
	CHECK(limit_content("x") == CONTENT_OK);
	/* session ids: 1 to 48 characters, not bytes */
	CHECK(limit_session_id("a") == 1);
	CHECK(limit_session_id("") == 0);
	CHECK(limit_session_id(NULL) == 0);
	CHECK(limit_session_id("中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中") == 1);
	CHECK(limit_session_id("中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中中") == 0);

	/* the response body keeps UTF-8 as is and escapes what JSON needs */
	CHECK(req_json(&r, 200, json_pack("{s:s}", "k", "中\"\n")) == 0);
	CHECK_STR(r.out.s, "{\"k\":\"中\\\"\\n\"}");

	/* query strings: decoded once, first occurrence wins, bad escapes refused */
	r.query = "session_id=a%20b&page=2&page=3&x=%E4%B8%AD&flag&y=1+2";
	CHECK(req_parse_query(&r) == RC_OK);
	CHECK_STR(req_query(&r, "session_id"), "a b");
	CHECK_STR(req_query(&r, "page"), "2");
	CHECK_STR(req_query(&r, "x"), "中");
	CHECK_STR(req_query(&r, "flag"), "");
	CHECK_STR(req_query(&r, "y"), "1 2");
	CHECK(req_query(&r, "nope") == NULL);
	r.query = "a=%zz";
	CHECK(req_parse_query(&r) == RC_ERR);
	r.query = "a=%00";
	CHECK(req_parse_query(&r) == RC_ERR);
	r.query = "a=%ff%fe";
	CHECK(req_parse_query(&r) == RC_ERR);
	r.query = "a=%4";
	CHECK(req_parse_query(&r) == RC_ERR);

	/* acting user with auth off: given, or the default */
	r.user = NULL;
	CHECK_STR(api_acting_user(&r, "u1"), "u1");
	CHECK_STR(api_acting_user(&r, NULL), DEFAULT_USER);
	/* with auth on: a different id is a 403 */
	r.user = "alice";
	r.dialect = D_AICHAT;
	CHECK_STR(api_acting_user(&r, "alice"), "alice");
	CHECK(api_acting_user(&r, "bob") == NULL && r.err_status == 403);

	free(s5000);
	free(s5001);
	buf_free(&r.out);
	buf_free(&r.headers);
	pool_destroy(r.pool);
}
