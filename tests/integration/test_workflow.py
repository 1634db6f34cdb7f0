"""Dialect workflow: GET /api/chat/history. (/api/chat/send and /stream need a reply:
not covered here.)"""

from harness import (BAD_PAGES, BAD_SIZES, WORKFLOW_ITEM_KEYS, im_send, aichat_msg, aichat_session,
                     check_im_time, err_env, is_int, keys_exact, ok_env, q, qs, test, uniq)


def history(c, sid, query=""):
    data = ok_env(c.get("/api/chat/history?sessionId=" + q(sid) + query), "GET history")
    keys_exact(data, ("sessionId", "total", "messages"), "history data")
    assert data["sessionId"] == sid and is_int(data["total"]) and \
        isinstance(data["messages"], list), "data %r" % (data,)
    return data


@test
def workflow_history_unknown_session_is_empty(s):
    sid = uniq("e")
    data = history(s.c, sid)
    assert data == {"sessionId": sid, "total": 0, "messages": []}, "%r" % data


@test
def workflow_history_needs_session_id(s):
    err_env(s.c.get("/api/chat/history"), 400, "会话ID不能为空")
    err_env(s.c.get("/api/chat/history?sessionId="), 400, "会话ID不能为空")
    err_env(s.c.get("/api/chat/history" + qs(sessionId="x" * 49)), 400)


@test
def workflow_history_pairs_from_im(s):
    sid = uniq("e")
    m = im_send(s.c, sid, "我想去上海旅游")
    data = history(s.c, sid)
    assert data["total"] == 1 and len(data["messages"]) == 1, "%r" % data
    it = data["messages"][0]
    keys_exact(it, WORKFLOW_ITEM_KEYS, "history item")
    assert (it["id"], it["sessionId"], it["userId"], it["userMessage"]) == (
        m["id"], sid, "default_user", "我想去上海旅游"), "item %r" % it
    assert it["aiResponse"] is None or isinstance(it["aiResponse"], str)
    check_im_time(it["timestamp"], what="timestamp")
    check_im_time(it["createdAt"], what="createdAt")
    assert it["createdAt"] == m["created_at"], "createdAt %r vs im created_at %r" % (
        it["createdAt"], m["created_at"])


@test
def workflow_history_order_and_pagination(s):
    sid = aichat_session(s.c)["session_id"]
    ids = [aichat_msg(s.c, sid, "q%d" % i, "user")["message_id"] for i in range(1, 4)]
    data = history(s.c, sid)
    assert data["total"] == 3, "total %r (pairs = user messages)" % data["total"]
    assert [x["userMessage"] for x in data["messages"]] == ["q1", "q2", "q3"]
    assert [x["id"] for x in data["messages"]] == ids
    data = history(s.c, sid, "&page=2&page_size=1")
    assert [x["userMessage"] for x in data["messages"]] == ["q2"] and data["total"] == 3
    data = history(s.c, sid, "&page=4&page_size=1")
    assert data["messages"] == [] and data["total"] == 3
    for v in BAD_PAGES:
        err_env(s.c.get("/api/chat/history?sessionId=%s&page=%s" % (sid, q(v))), 400)
    for v in BAD_SIZES:
        err_env(s.c.get("/api/chat/history?sessionId=%s&page_size=%s" % (sid, q(v))), 400)


@test
def workflow_history_deleted_session_is_404(s):
    sid = uniq("edel")
    im_send(s.c, sid, "x")
    ok_env(s.c.delete("/api/chat/sessions/" + q(sid)))
    err_env(s.c.get("/api/chat/history?sessionId=" + q(sid)), 404)


@test
def workflow_wrong_method_and_unknown_route(s):
    r = s.c.post("/api/chat/history", json={})
    err_env(r, 405)
    assert "GET" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    err_env(s.c.get("/api/chat/history/extra"), 404)
    err_env(s.c.get("/api/no-such-thing"), 404)
