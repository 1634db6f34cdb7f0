/* the routing table: literal segments before parameters, 404 versus 405, dialects */
#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "router.h"
#include "api.h"

void
t_router(void)
{
	struct pool *p = pool_create();
	char *params[REQ_MAX_PARAMS] = {0}, allow[96];
	const struct route *rt;
	int status;

	rt = router_match("GET", "/api/message/list", p, params, &status, allow, sizeof(allow));
	CHECK(rt && rt->handler == im_list); /* never taken for a message id */
	rt = router_match("GET", "/api/message/msg_1", p, params, &status, allow, sizeof(allow));
	CHECK(rt && rt->handler == im_get);
	CHECK_STR(params[0], "msg_1");
	rt = router_match("GET", "/api/chat/sessions/a%2Fb/messages/7", p, params, &status, allow,
			  sizeof(allow));
	CHECK(rt && rt->handler == aichat_message_get);
	CHECK_STR(params[0], "a/b"); /* decoded after splitting */
	CHECK_STR(params[1], "7");
	rt = router_match("DELETE", "/api/message/send", p, params, &status, allow, sizeof(allow));
	CHECK(!rt && status == 405);
	CHECK(strstr(allow, "POST") != NULL);
	rt = router_match("GET", "/api/nothing", p, params, &status, allow, sizeof(allow));
	CHECK(!rt && status == 404);
	rt = router_match("GET", "/api/message/", p, params, &status, allow, sizeof(allow));
	CHECK(!rt && status == 404); /* an empty segment is no id */
	rt = router_match("GET", "/api/message/%zz", p, params, &status, allow, sizeof(allow));
	CHECK(!rt && status == 400); /* a bad escape matches nothing */
	rt = router_match("GET", "/api/message/%ff", p, params, &status, allow, sizeof(allow));
	CHECK(!rt && status == 400); /* nor does invalid UTF-8: a 400, not a 405 */
	rt = router_match("GET", "/api/chat/sessions/%FF%FE", p, params, &status, allow,
			  sizeof(allow));
	CHECK(!rt && status == 400); /* though DELETE and PATCH have the same pattern */
	rt = router_match("PUT", "/api/v1/model-configs/x", p, params, &status, allow,
			  sizeof(allow));
	CHECK(rt && (rt->flags & R_ADMIN) && (rt->flags & R_JSON));
	rt = router_match("GET", "/health", p, params, &status, allow, sizeof(allow));
	CHECK(rt && (rt->flags & R_PUBLIC));

	CHECK(router_dialect("/health") == D_IM);
	CHECK(router_dialect("/api/message/x") == D_IM);
	CHECK(router_dialect("/api/ai/records") == D_IM);
	CHECK(router_dialect("/api/chat/session") == D_AICHAT);
	CHECK(router_dialect("/aichat/x") == D_AICHAT);
	CHECK(router_dialect("/ai/chat") == D_CHAX);
	CHECK(router_dialect("/aichatx") == D_AICHAT);
	CHECK(router_dialect("/api/v1/logs") == D_V1);
	CHECK(router_dialect("/api/chat/history") == D_WORKFLOW);
	CHECK(router_dialect("/api/chat/historyx") == D_AICHAT);
	pool_destroy(p);
}
