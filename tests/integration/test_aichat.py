"""Dialect aichat: /api/chat/session*, /api/chat/message*, /aichat/*."""

import time

from harness import (AICHAT_MSG_KEYS, AICHAT_SESSION_KEYS, BAD_PAGES, BAD_SIZES, BIG_N, aichat_msg,
                     aichat_session, big_conv, check_uuid4, check_z_time, contents, err_env, is_int,
                     keys_exact, ok_env, ok_json, q, qs, test, uniq)


def check_session(sess, recent=True):
    keys_exact(sess, AICHAT_SESSION_KEYS, "aichat session")
    assert isinstance(sess["session_id"], str) and sess["session_id"]
    assert isinstance(sess["user_id"], str) and isinstance(sess["title"], str)
    assert is_int(sess["message_count"]) and sess["message_count"] >= 0
    check_z_time(sess["created_at"], recent, "created_at")
    check_z_time(sess["updated_at"], recent, "updated_at")
    assert sess["is_deleted"] is False, "is_deleted %r" % (sess["is_deleted"],)


def check_msg(m, recent=True):
    keys_exact(m, AICHAT_MSG_KEYS, "aichat message")
    assert is_int(m["message_id"]) and m["message_id"] > 0, "message_id %r" % (m["message_id"],)
    assert m["role"] in ("user", "assistant", "system"), "role %r" % (m["role"],)
    assert isinstance(m["content"], str)
    check_z_time(m["created_at"], recent, "created_at")
    check_z_time(m["updated_at"], recent, "updated_at")
    assert m["is_deleted"] is False


def get_session(c, sid):
    return ok_env(c.get("/api/chat/sessions/" + q(sid)), "GET session")


def list_sessions(c, **body):
    data = ok_env(c.post("/api/chat/sessions", json=body), "POST /api/chat/sessions")
    assert isinstance(data, list), "data is not a bare array: %r" % (data,)
    return data


def msg_items(c, sid, query="", prefix="/api/chat/sessions/"):
    data = ok_env(c.get(prefix + q(sid) + "/messages" + query), "GET messages")
    keys_exact(data, ("items", "total", "page", "page_size"), "aichat message page")
    return data


@test
def aichat_session_create_shape(s):
    u = uniq("bu")
    sess = aichat_session(s.c, user_id=u, title="技术讨论")
    check_session(sess)
    check_uuid4(sess["session_id"], "session_id")
    assert (sess["user_id"], sess["title"], sess["message_count"]) == (u, "技术讨论", 0), sess


@test
def aichat_session_create_defaults(s):
    u = uniq("bu")
    sess = aichat_session(s.c, user_id=u)
    check_session(sess)
    assert sess["user_id"] == u, "owner %r" % sess["user_id"]
    assert sess["title"] == "新会话", "default title %r" % sess["title"]
    err_env(s.c.post("/api/chat/session", json={}), 400)  # user_id is required
    assert get_session(s.c, sess["session_id"]) == sess


@test
def aichat_session_create_validation(s):
    p = "/api/chat/session"
    err_env(s.c.post(p, json={"title": ""}), 400)
    err_env(s.c.post(p, json={"title": "题" * 201}), 400)
    err_env(s.c.post(p, json={"title": 5}), 400)
    err_env(s.c.post(p, json={"user_id": 5}), 400)
    sess = aichat_session(s.c, title="题" * 200)
    assert sess["title"] == "题" * 200


@test
def aichat_session_get_and_unknown(s):
    sess = aichat_session(s.c, user_id=uniq("bu"), title="t")
    got = get_session(s.c, sess["session_id"])
    check_session(got)
    assert got == sess, "GET %r != created %r" % (got, sess)
    err_env(s.c.get("/api/chat/sessions/" + q(uniq("nosuch"))), 404, "会话不存在")


@test
def aichat_message_post_assistant_and_system(s):
    sess = aichat_session(s.c, title="m")
    sid = sess["session_id"]
    m1 = aichat_msg(s.c, sid, "如何学习Python？", "assistant")
    check_msg(m1)
    assert (m1["session_id"], m1["role"], m1["content"]) == (sid, "assistant", "如何学习Python？")
    m2 = aichat_msg(s.c, sid, "You are helpful.", "system")
    check_msg(m2)
    assert m2["role"] == "system" and m2["message_id"] > m1["message_id"]
    assert get_session(s.c, sid)["message_count"] == 2


@test
def aichat_message_post_user_is_stored_and_returned(s):
    sid = aichat_session(s.c, title="u")["session_id"]
    m = aichat_msg(s.c, sid, "用户的问题", "user")
    check_msg(m)
    assert (m["role"], m["content"], m["session_id"]) == ("user", "用户的问题", sid)
    got = ok_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (q(sid), m["message_id"])))
    assert got["content"] == "用户的问题" and got["role"] == "user" and \
        got["message_id"] == m["message_id"], "GET single: %r" % got
    # role defaults to user
    r = ok_env(s.c.post("/api/chat/message", json={"session_id": sid, "content": "默认角色"}))
    assert r["role"] == "user", "default role %r" % r["role"]
    items = msg_items(s.c, sid)["items"]
    assert items[0]["message_id"] == m["message_id"], "first message %r" % items[0]
    users = [i["content"] for i in items if i["role"] == "user"]
    assert users == ["用户的问题", "默认角色"], "user messages %r" % users


@test
def aichat_message_post_validation(s):
    sid = aichat_session(s.c)["session_id"]
    p = "/api/chat/message"
    err_env(s.c.post(p, json={"session_id": sid, "content": "x", "role": "bot"}), 400)
    err_env(s.c.post(p, json={"session_id": sid, "content": "", "role": "assistant"}), 400)
    err_env(s.c.post(p, json={"session_id": sid, "content": " \n ", "role": "assistant"}), 400)
    err_env(s.c.post(p, json={"session_id": sid, "content": "中" * 5001, "role": "assistant"}),
            400)
    err_env(s.c.post(p, json={"session_id": sid, "content": 123, "role": "assistant"}), 400)
    err_env(s.c.post(p, json={"session_id": sid, "content": "x", "role": 1}), 400)
    err_env(s.c.post(p, json={"content": "x", "role": "assistant"}), 400)
    err_env(s.c.post(p, json={"session_id": uniq("nosuch"), "content": "x", "role": "assistant"}),
            404, "会话不存在")
    assert get_session(s.c, sid)["message_count"] == 0
    m = aichat_msg(s.c, sid, "中" * 5000, "assistant")
    assert m["content"] == "中" * 5000


@test
def aichat_message_get_must_belong(s):
    s1 = aichat_session(s.c)["session_id"]
    s2 = aichat_session(s.c)["session_id"]
    m = aichat_msg(s.c, s1, "mine")
    got = ok_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (s1, m["message_id"])))
    check_msg(got)
    for k in ("message_id", "session_id", "role", "content", "created_at"):
        assert got[k] == m[k], "GET single %s %r != posted %r" % (k, got[k], m[k])
    err_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (s2, m["message_id"])), 404,
            "消息不存在")
    err_env(s.c.get("/api/chat/sessions/%s/messages/999999999" % s1), 404, "消息不存在")
    err_env(s.c.get("/api/chat/sessions/%s/messages/abc" % s1), 404, "消息不存在")
    err_env(s.c.get("/api/chat/sessions/%s/messages/0" % s1), 404, "消息不存在")


@test
def aichat_messages_list_pagination(s):
    sid = big_conv(s)
    for prefix in ("/api/chat/sessions/", "/aichat/sessions/"):
        d = msg_items(s.c, sid, "", prefix)
        assert (d["total"], d["page"], d["page_size"]) == (BIG_N, 1, 50), "%s defaults %r" % (
            prefix, {k: d[k] for k in ("total", "page", "page_size")})
        assert [m["content"] for m in d["items"]] == contents(1, 50)
        for m in d["items"]:
            check_msg(m, recent=False)
        d = msg_items(s.c, sid, "?page=3", prefix)
        assert [m["content"] for m in d["items"]] == contents(101, 105)
        d = msg_items(s.c, sid, "?pageSize=10&page=11", prefix)
        assert d["page_size"] == 10 and [m["content"] for m in d["items"]] == contents(101, 105), \
            "pageSize alias: %r" % d
        d = msg_items(s.c, sid, "?page_size=10&page=12", prefix)
        assert (d["items"], d["total"], d["page"]) == ([], BIG_N, 12), "past the end: %r" % d


@test
def aichat_messages_list_bad_pagination(s):
    sid = big_conv(s)
    for prefix in ("/api/chat/sessions/", "/aichat/sessions/"):
        for v in BAD_PAGES:
            err_env(s.c.get(prefix + sid + "/messages?page=" + q(v)), 400)
        for v in BAD_SIZES:
            err_env(s.c.get(prefix + sid + "/messages?page_size=" + q(v)), 400)
            err_env(s.c.get(prefix + sid + "/messages?pageSize=" + q(v)), 400)


@test
def aichat_messages_list_unknown_session_404(s):
    err_env(s.c.get("/api/chat/sessions/%s/messages" % uniq("nosuch")), 404, "会话不存在")
    err_env(s.c.get("/aichat/sessions/%s/messages" % uniq("nosuch")), 404, "会话不存在")


@test
def aichat_message_edit_user_message(s):
    sid = aichat_session(s.c)["session_id"]
    m = aichat_msg(s.c, sid, "原来的内容", "user")
    d = ok_env(s.c.patch("/api/chat/messages/%d" % m["message_id"],
                         json={"new_content": "更新后的消息内容"}))
    assert d == "消息编辑成功", "data %r" % (d,)
    got = ok_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (sid, m["message_id"])))
    assert got["content"] == "更新后的消息内容", "after edit %r" % got
    a = ok_json(s.c.get("/api/message/%d" % m["message_id"]))
    assert a["msg_content"] == "更新后的消息内容", "im sees %r" % a


@test
def aichat_message_edit_non_user_message_is_403(s):
    sid = aichat_session(s.c)["session_id"]
    for role in ("assistant", "system"):
        m = aichat_msg(s.c, sid, "不可编辑", role)
        err_env(s.c.patch("/api/chat/messages/%d" % m["message_id"],
                          json={"new_content": "x"}), 403, "只能编辑用户消息")
        got = ok_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (sid, m["message_id"])))
        assert got["content"] == "不可编辑"


@test
def aichat_message_edit_validation(s):
    sid = aichat_session(s.c)["session_id"]
    m = aichat_msg(s.c, sid, "x", "user")
    p = "/api/chat/messages/%d" % m["message_id"]
    err_env(s.c.patch(p, json={}), 400)
    err_env(s.c.patch(p, json={"new_content": ""}), 400)
    err_env(s.c.patch(p, json={"new_content": "  "}), 400)
    err_env(s.c.patch(p, json={"new_content": 7}), 400)
    err_env(s.c.patch(p, json={"new_content": "中" * 5001}), 400)
    ok_env(s.c.patch(p, json={"new_content": "中" * 5000}))
    err_env(s.c.patch("/api/chat/messages/999999999", json={"new_content": "y"}), 404)


@test
def aichat_message_delete(s):
    sid = aichat_session(s.c)["session_id"]
    m1 = aichat_msg(s.c, sid, "keep")
    m2 = aichat_msg(s.c, sid, "drop", "system")
    m3 = aichat_msg(s.c, sid, "keep too")
    d = ok_env(s.c.delete("/api/chat/messages/%d" % m2["message_id"]))
    assert d == "消息删除成功", "data %r" % (d,)
    err_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (sid, m2["message_id"])), 404,
            "消息不存在")
    err_env(s.c.delete("/api/chat/messages/%d" % m2["message_id"]), 404)
    err_env(s.c.patch("/api/chat/messages/%d" % m2["message_id"], json={"new_content": "z"}),
            404)
    items = msg_items(s.c, sid)["items"]
    ids = [i["message_id"] for i in items]
    assert m2["message_id"] not in ids and m1["message_id"] in ids and m3["message_id"] in ids
    assert len(items) == 2
    sess = get_session(s.c, sid)
    assert sess["message_count"] == 2, "message_count %r, visible 2" % (sess["message_count"],)


@test
def aichat_session_rename_updates_title(s):
    sid = aichat_session(s.c, title="旧标题")["session_id"]
    d = ok_env(s.c.patch("/api/chat/sessions/" + sid, json={"new_title": "更新后的标题"}))
    assert d == "标题更新成功", "data %r" % (d,)
    assert get_session(s.c, sid)["title"] == "更新后的标题"
    err_env(s.c.patch("/api/chat/sessions/" + sid, json={"new_title": ""}), 400)
    err_env(s.c.patch("/api/chat/sessions/" + sid, json={"new_title": "t" * 201}), 400)
    err_env(s.c.patch("/api/chat/sessions/" + sid, json={"new_title": 3}), 400)
    err_env(s.c.patch("/api/chat/sessions/" + uniq("nosuch"), json={"new_title": "x"}), 404,
            "会话不存在")
    assert get_session(s.c, sid)["title"] == "更新后的标题"


@test
def aichat_session_delete(s):
    u = uniq("bdel")
    sid = aichat_session(s.c, user_id=u)["session_id"]
    m = aichat_msg(s.c, sid, "x")
    d = ok_env(s.c.delete("/api/chat/sessions/" + sid))
    assert d == "会话删除成功", "data %r" % (d,)
    err_env(s.c.get("/api/chat/sessions/" + sid), 404, "会话不存在")
    err_env(s.c.delete("/api/chat/sessions/" + sid), 404)
    err_env(s.c.patch("/api/chat/sessions/" + sid, json={"new_title": "x"}), 404)
    err_env(s.c.post("/api/chat/message", json={"session_id": sid, "content": "x",
                                                "role": "assistant"}), 404, "会话不存在")
    err_env(s.c.get("/api/chat/sessions/%s/messages" % sid), 404)
    err_env(s.c.get("/api/chat/sessions/%s/messages/%d" % (sid, m["message_id"])), 404)
    err_env(s.c.get("/aichat/sessions/" + sid), 404)
    assert list_sessions(s.c, user_id=u) == []


@test
def aichat_view_list_newest_updated_first(s):
    u = uniq("bord")
    s1 = aichat_session(s.c, user_id=u, title="one")["session_id"]
    time.sleep(0.02)
    s2 = aichat_session(s.c, user_id=u, title="two")["session_id"]
    time.sleep(0.02)
    s3 = aichat_session(s.c, user_id=u, title="three")["session_id"]
    time.sleep(0.02)
    aichat_msg(s.c, s1, "bump")
    lst = list_sessions(s.c, user_id=u)
    assert [x["session_id"] for x in lst] == [s1, s3, s2], "order %r" % (
        [x["title"] for x in lst],)
    for x in lst:
        check_session(x)
        assert x["user_id"] == u
    assert lst[0]["message_count"] == 1 and lst[1]["message_count"] == 0
    d = ok_env(s.c.get("/aichat/getsessionlist/" + u))
    keys_exact(d, ("items", "total", "page", "page_size"), "getsessionlist data")
    assert [x["session_id"] for x in d["items"]] == [s1, s3, s2]
    assert (d["total"], d["page"], d["page_size"]) == (3, 1, 20), "%r" % d


@test
def aichat_view_list_pagination(s):
    u = uniq("bpag")
    sids = []
    for i in range(3):
        sids.append(aichat_session(s.c, user_id=u, title="p%d" % i)["session_id"])
        time.sleep(0.02)
    sids.reverse()
    assert [x["session_id"] for x in list_sessions(s.c, user_id=u, page=1, page_size=2)] == \
        sids[:2]
    assert [x["session_id"] for x in list_sessions(s.c, user_id=u, page=2, page_size=2)] == \
        sids[2:]
    assert list_sessions(s.c, user_id=u, page=3, page_size=2) == []
    assert [x["session_id"] for x in list_sessions(s.c, user_id=u, page=2, pageSize=1)] == \
        sids[1:2], "pageSize alias"
    d = ok_env(s.c.get("/aichat/getsessionlist/%s?page=2&page_size=2" % u))
    assert [x["session_id"] for x in d["items"]] == sids[2:] and d["total"] == 3
    d = ok_env(s.c.get("/aichat/getsessionlist/%s?page=9" % u))
    assert d["items"] == [] and d["total"] == 3 and d["page"] == 9
    for bad in (0, -1, 1.5, "abc", True, 99999999999999999999):
        err_env(s.c.post("/api/chat/sessions", json={"user_id": u, "page": bad}), 400)
    for bad in (0, -1, 101, 2.5, "x", 99999999999999999999):
        err_env(s.c.post("/api/chat/sessions", json={"user_id": u, "page_size": bad}), 400)
    for v in BAD_PAGES:
        err_env(s.c.get("/aichat/getsessionlist/%s?page=%s" % (u, q(v))), 400)
    for v in BAD_SIZES:
        err_env(s.c.get("/aichat/getsessionlist/%s?page_size=%s" % (u, q(v))), 400)


@test
def aichat_sessions_list_is_one_users_newest_first(s):
    u = uniq("ua")
    a = aichat_session(s.c, user_id=u)["session_id"]
    b = aichat_session(s.c, user_id=u)["session_id"]
    other = aichat_session(s.c, user_id=uniq("ub"))["session_id"]
    lst = list_sessions(s.c, user_id=u, page_size=100)
    ids = [x["session_id"] for x in lst]
    assert ids == [b, a], "one user's sessions, newest first: %r (other %s)" % (ids, other)
    ups = [x["updated_at"] for x in lst]
    assert ups == sorted(ups, reverse=True), "not newest-updated first: %r" % ups[:10]
    err_env(s.c.post("/api/chat/sessions", json={"page_size": 100}), 400)  # user_id required


@test
def aichat_view_listshow(s):
    u = uniq("bshow")
    d = ok_env(s.c.get("/aichat/getsessionlistshow/" + u))
    assert d == {"items": [], "total": 0, "page": 1, "page_size": 20, "messages": [],
                 "latest_session_id": None}, "empty user: %r" % d
    s1 = aichat_session(s.c, user_id=u, title="s1")["session_id"]
    aichat_msg(s.c, s1, "a1")
    aichat_msg(s.c, s1, "a2", "system")
    time.sleep(0.02)
    s2 = aichat_session(s.c, user_id=u, title="s2")["session_id"]
    aichat_msg(s.c, s2, "b1")
    time.sleep(0.02)
    aichat_msg(s.c, s1, "a3")
    d = ok_env(s.c.get("/aichat/getsessionlistshow/" + u))
    keys_exact(d, ("items", "total", "page", "page_size", "messages", "latest_session_id"),
               "getsessionlistshow data")
    assert d["latest_session_id"] == s1, "latest %r" % d["latest_session_id"]
    assert [x["session_id"] for x in d["items"]] == [s1, s2]
    assert [m["content"] for m in d["messages"]] == ["a1", "a2", "a3"], "messages %r" % (
        d["messages"],)
    for m in d["messages"]:
        check_msg(m)


@test
def aichat_view_session_latest_50(s):
    sid = big_conv(s)
    d = ok_env(s.c.get("/aichat/sessions/" + sid))
    keys_exact(d, AICHAT_SESSION_KEYS + ("messages",), "aichat session")
    assert d["session_id"] == sid and d["message_count"] == BIG_N, "%r" % (
        {k: d[k] for k in AICHAT_SESSION_KEYS},)
    assert [m["content"] for m in d["messages"]] == contents(BIG_N - 49, BIG_N), \
        "latest 50 oldest first: got %r..%r" % (d["messages"][0]["content"],
                                                d["messages"][-1]["content"])


@test
def aichat_session_create_twin_routes(s):
    u = uniq("btw")
    sess = ok_env(s.c.post("/aichat/createsession", json={"user_id": u, "title": "孪生"}))
    check_session(sess)
    check_uuid4(sess["session_id"])
    assert (sess["user_id"], sess["title"]) == (u, "孪生")
    sid = sess["session_id"]
    assert ok_env(s.c.patch("/aichat/sessions/" + sid, json={"new_title": "新标题"})) == \
        "标题更新成功"
    assert get_session(s.c, sid)["title"] == "新标题"
    err_env(s.c.patch("/aichat/sessions/" + sid, json={"new_title": ""}), 400)
    err_env(s.c.post("/aichat/createsession", json={"user_id": u, "title": "x" * 201}), 400)
    assert ok_env(s.c.delete("/aichat/deletesession/" + sid)) == "会话删除成功"
    err_env(s.c.get("/aichat/sessions/" + sid), 404, "会话不存在")
    err_env(s.c.delete("/aichat/deletesession/" + sid), 404)


@test
def aichat_session_get_message_count_counts_visible(s):
    sid = aichat_session(s.c)["session_id"]
    ms = [aichat_msg(s.c, sid, "c%d" % i) for i in range(4)]
    assert get_session(s.c, sid)["message_count"] == 4
    ok_env(s.c.delete("/api/chat/messages/%d" % ms[1]["message_id"]))
    ok_env(s.c.delete("/api/chat/messages/%d" % ms[2]["message_id"]))
    assert get_session(s.c, sid)["message_count"] == 2
    d = msg_items(s.c, sid)
    assert d["total"] == 2 and [m["content"] for m in d["items"]] == ["c0", "c3"]
    assert ok_env(s.c.get("/aichat/sessions/" + sid))["message_count"] == 2


@test
def aichat_wrong_method_and_unknown_route(s):
    r = s.c.get("/api/chat/session")
    err_env(r, 405)
    assert "POST" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    err_env(s.c.put("/api/chat/message", json={}), 405)
    err_env(s.c.get("/api/chat/sessions"), 405)
    err_env(s.c.post("/aichat/getsessionlist/x", json={}), 405)
    err_env(s.c.get("/aichat/no-such-route"), 404)
    err_env(s.c.get("/api/chat/sessions/a/b/c/d"), 404)
    err_env(s.c.get("/api/chat/messages/1"), 405)


@test
def aichat_view_list_user_ids_with_spaces_and_chinese(s):
    u = "用户 一号/" + uniq("x")
    sid = aichat_session(s.c, user_id=u)["session_id"]
    assert get_session(s.c, sid)["user_id"] == u
    d = ok_env(s.c.get("/aichat/getsessionlist/" + q(u)))
    assert [x["session_id"] for x in d["items"]] == [sid], "getsessionlist %r" % d
    assert [x["session_id"] for x in list_sessions(s.c, user_id=u)] == [sid]
