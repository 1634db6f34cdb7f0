/* Dialect E (seed 004): the n8n workflow chat under /api/chat/send, /history, /stream. */
#include <string.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "api.h"

int
wf_history(struct req *r)
{
	const char *sid = req_query(r, "sessionId");
	struct conv c;
	struct pair *rows = NULL;
	struct page pg;
	int64_t page, size, total = 0;
	char err[ERR_LEN];
	int n = 0, i, rc, have;
	json_t *a;

	if (!sid || !*sid)
		return req_fail(r, 400, 0, "会话ID不能为空");
	if (utf8_count(sid) > SESSION_ID_MAX)
		return req_fail(r, 400, 0, "会话ID长度不能超过48个字符");
	if (api_page_query(r, "page", "page_size", "pageSize", 100, &page, &size, &pg))
		return -1;
	if (api_named_conv(r, sid, &c, &have, "会话不存在"))
		return -1;
	if (have &&
	    (rc = store_pairs(r->store, r->pool, &c, pg, &rows, &n, &total, err)) != RC_OK)
		return api_store_fail(r, rc, err);
	a = json_array();
	for (i = 0; i < n; i++) {
		const struct pair *x = &rows[i];
		json_array_append_new(a, json_pack("{s:I,s:s,s:s,s:s,s:o,s:o,s:o}", "id",
						   (json_int_t)x->id, "sessionId", sid, "userId",
						   x->user_id, "userMessage", x->user_message,
						   "aiResponse", api_str_or_null(x->ai_response),
						   "timestamp", api_time(D_E, x->created_at),
						   "createdAt", api_time(D_E, x->created_at)));
	}
	return req_json(r, 200, json_pack("{s:i,s:s,s:{s:s,s:I,s:o}}", "code", 200, "message",
					  "success", "data", "sessionId", sid, "total",
					  (json_int_t)total, "messages", a));
}
