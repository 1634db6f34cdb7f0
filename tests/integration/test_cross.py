"""One store, five dialects: what one dialect writes, the others list and read."""

import time

from harness import (im_send, aichat_msg, aichat_session, err_im, err_chax, err_env, ok_env,
                     ok_json, parse_im_time, parse_z_time, q, qs, test, uniq)


def chax_list(c, sid):
    r = c.get("/ai/message/list/" + q(sid))
    j = ok_json(r, "chax message list")
    return j, int(r.header("X-Total-Count") or -1)


def chax_records(c):
    return ok_json(c.get("/ai/record/list"), "chax record list")


def v1_msgs(c, sid):
    return ok_env(c.get("/api/v1/sessions/%s/messages?page_size=100" % q(sid)), "v1 messages")


def history(c, sid):
    return ok_env(c.get("/api/chat/history?sessionId=" + q(sid)), "workflow history")


@test
def im_send_is_visible_everywhere(s):
    sid = "测试 会话-" + uniq("x")  # client-named, with a space and non-ASCII
    m = im_send(s.c, sid, "跨方言的消息")
    # aichat
    sess = ok_env(s.c.get("/api/chat/sessions/" + q(sid)), "aichat session detail")
    assert sess["session_id"] == sid and sess["user_id"] == "default_user", "aichat %r" % sess
    assert sess["message_count"] >= 1
    items = ok_env(s.c.get("/api/chat/sessions/%s/messages" % q(sid)))["items"]
    assert (items[0]["message_id"], items[0]["role"], items[0]["content"]) == (
        m["id"], "user", "跨方言的消息"), "aichat first %r" % items[0]
    # chax
    msgs, _ = chax_list(s.c, sid)
    assert (msgs[0]["msgId"], msgs[0]["role"]) == (m["message_id"], "user"), "chax %r" % msgs[0]
    got = ok_json(s.c.get("/ai/message/content/" + m["message_id"]))
    assert got == {"content": "跨方言的消息", "error": ""}, "chax content %r" % got
    assert sid in [r["conversationId"] for r in chax_records(s.c)]
    # v1
    dm = v1_msgs(s.c, sid)["messages"][0]
    assert (dm["message_id"], dm["type"], dm["content"]) == (
        m["message_id"], "user", "跨方言的消息"), "v1 %r" % dm
    # workflow
    h = history(s.c, sid)["messages"][0]
    assert (h["id"], h["userMessage"], h["userId"]) == (m["id"], "跨方言的消息", "default_user")


@test
def aichat_created_is_visible_everywhere(s):
    u = uniq("xb")
    sess = aichat_session(s.c, user_id=u, title="aichat 创建的会话")
    sid = sess["session_id"]
    a1 = aichat_msg(s.c, sid, "系统提示", "system")
    a2 = aichat_msg(s.c, sid, "助手说话", "assistant")
    # im
    j = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    assert j["total"] == 2
    assert [(m["id"], m["msg_content"], m["msg_type"]) for m in j["messages"]] == [
        (a1["message_id"], "系统提示", "SYSTEM"), (a2["message_id"], "助手说话", "AI_REPLY")]
    one = ok_json(s.c.get("/api/message/%d" % a2["message_id"]))
    assert one["session_id"] == sid and one["from_user_id"] == "ai_bot"
    # chax
    recs = [r for r in chax_records(s.c) if r["conversationId"] == sid]
    assert len(recs) == 1 and recs[0]["title"] == "aichat 创建的会话", "chax record %r" % recs
    msgs, total = chax_list(s.c, sid)
    assert total == 2 and [m["role"] for m in msgs] == ["system", "assistant"]
    assert [m["msgId"] for m in msgs] == [m["message_id"] for m in j["messages"]]
    # v1
    d = v1_msgs(s.c, sid)
    assert d["total"] == 2 and [m["type"] for m in d["messages"]] == ["system", "ai"]
    # workflow: no user message, no pair
    u1 = aichat_msg(s.c, sid, "用户提问", "user")
    h = history(s.c, sid)
    assert h["total"] == 1 and h["messages"][0]["id"] == u1["message_id"] and \
        h["messages"][0]["userMessage"] == "用户提问", "workflow %r" % h


@test
def chax_created_is_visible_everywhere(s):
    j = ok_json(s.c.post("/ai/chat", json={"content": "chax 开始的对话"}))
    sid = j["conversationId"]
    sess = ok_env(s.c.get("/api/chat/sessions/" + sid))
    assert sess["title"] == j["title"] and sess["user_id"] == "default_user", "aichat %r" % sess
    a = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    # the assistant placeholder may be left out of other dialects while it is unfinished
    assert a["total"] in (1, 2) and a["total"] == len(a["messages"]), "im list %r" % a
    m0 = a["messages"][0]
    assert (m0["message_id"], m0["msg_type"], m0["msg_content"]) == (
        j["userMsgId"], "TEXT", "chax 开始的对话"), "im first %r" % m0
    if a["total"] == 2:
        m1 = a["messages"][1]
        assert (m1["message_id"], m1["msg_type"], m1["from_user_id"]) == (
            j["msgId"], "AI_REPLY", "ai_bot"), "im second %r" % m1
    d = v1_msgs(s.c, sid)
    assert d["messages"][0]["message_id"] == j["userMsgId"] and \
        d["messages"][0]["type"] == "user", "v1 %r" % d["messages"][:1]
    assert [m["message_id"] for m in d["messages"][1:]] in ([], [j["msgId"]])
    h = history(s.c, sid)
    assert h["total"] == 1 and h["messages"][0]["userMessage"] == "chax 开始的对话"
    assert h["messages"][0]["id"] == ok_json(s.c.get("/api/message/" + j["userMsgId"]))["id"]
    # times agree: chax ms, aichat Z
    assert j["createTimestamp"] // 1000 == parse_z_time(sess["created_at"]), \
        "chax %r vs aichat %r" % (j["createTimestamp"], sess["created_at"])


@test
def v1_created_is_visible_everywhere(s):
    u = uniq("xd")
    sid = ok_env(s.c.post("/api/v1/sessions", json={"user_id": u}))["session_id"]
    lst = ok_env(s.c.post("/api/chat/sessions", json={"user_id": u}))
    assert [x["session_id"] for x in lst] == [sid], "aichat list %r" % lst
    assert sid in [r["conversationId"] for r in chax_records(s.c)]
    assert chax_list(s.c, sid) == ([], 0)
    a = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    assert a["total"] == 0 and a["messages"] == []
    assert history(s.c, sid)["total"] == 0
    m = im_send(s.c, sid, "im 写入 v1 的会话")
    assert ok_env(s.c.get("/api/chat/sessions/" + sid))["user_id"] == u
    assert v1_msgs(s.c, sid)["messages"][0]["message_id"] == m["message_id"]


@test
def times_agree_across_dialects(s):
    sid = aichat_session(s.c)["session_id"]
    bm = aichat_msg(s.c, sid, "time")
    am = ok_json(s.c.get("/api/message/%d" % bm["message_id"]))
    assert am["created_at"] + "Z" == bm["created_at"], "im %r vs aichat %r" % (
        am["created_at"], bm["created_at"])
    dm = v1_msgs(s.c, sid)["messages"][0]
    assert dm["created_time"] == bm["created_at"], "v1 %r vs aichat %r" % (
        dm["created_time"], bm["created_at"])
    assert parse_im_time(am["created_at"]) == parse_z_time(bm["created_at"])


@test
def soft_deleted_conversation_is_gone_everywhere(s):
    u = uniq("xdel")
    sid = aichat_session(s.c, user_id=u, title="将被删除")["session_id"]
    bm = aichat_msg(s.c, sid, "内容")
    am = ok_json(s.c.get("/api/message/%d" % bm["message_id"]))
    ok_env(s.c.delete("/api/chat/sessions/" + sid))
    err_env(s.c.get("/api/chat/sessions/" + sid), 404, "会话不存在")
    assert ok_env(s.c.get("/aichat/getsessionlist/" + u))["items"] == []
    err_im(s.c.get("/api/message/list" + qs(session_id=sid)), 404)
    err_im(s.c.get("/api/message/" + am["message_id"]), 404)
    err_im(s.c.get("/api/ai/records" + qs(session_id=sid)), 404)
    err_im(s.c.post("/api/message/send", json={"session_id": sid, "content": "x"}), 404)
    err_chax(s.c.get("/ai/message/list/" + sid), 404, "Conversation not found")
    err_chax(s.c.get("/ai/message/content/" + am["message_id"]), 404, "Message not found")
    err_chax(s.c.post("/ai/chat", json={"conversationId": sid, "content": "x"}), 404,
          "Conversation not found")
    assert sid not in [r["conversationId"] for r in chax_records(s.c)]
    err_env(s.c.get("/api/v1/sessions/%s/messages" % sid), 404)
    err_env(s.c.get("/api/chat/history?sessionId=" + sid), 404)
    lst = ok_env(s.c.post("/api/chat/sessions", json={"user_id": "default_user",
                                                        "page_size": 100}))
    assert sid not in [x["session_id"] for x in lst]


@test
def soft_deleted_message_is_gone_everywhere(s):
    sid = aichat_session(s.c)["session_id"]
    keep = aichat_msg(s.c, sid, "keep")
    drop = aichat_msg(s.c, sid, "drop", "system")
    am = ok_json(s.c.get("/api/message/%d" % drop["message_id"]))
    ok_env(s.c.delete("/api/chat/messages/%d" % drop["message_id"]))
    err_im(s.c.get("/api/message/%d" % drop["message_id"]), 404)
    err_im(s.c.get("/api/message/" + am["message_id"]), 404)
    err_chax(s.c.get("/ai/message/content/" + am["message_id"]), 404, "Message not found")
    a = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    assert a["total"] == 1 and [m["id"] for m in a["messages"]] == [keep["message_id"]]
    msgs, total = chax_list(s.c, sid)
    assert total == 1 and am["message_id"] not in [m["msgId"] for m in msgs]
    d = v1_msgs(s.c, sid)
    assert d["total"] == 1 and len(d["messages"]) == 1
    assert ok_env(s.c.get("/api/chat/sessions/" + sid))["message_count"] == 1


@test
def counts_agree_across_dialects(s):
    sid = aichat_session(s.c)["session_id"]
    ms = [aichat_msg(s.c, sid, "n%d" % i, "assistant") for i in range(5)]
    ok_env(s.c.delete("/api/chat/messages/%d" % ms[2]["message_id"]))
    b = ok_env(s.c.get("/api/chat/sessions/" + sid))["message_count"]
    a = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))["total"]
    _, c = chax_list(s.c, sid)
    d = v1_msgs(s.c, sid)["total"]
    bt = ok_env(s.c.get("/api/chat/sessions/%s/messages" % sid))["total"]
    assert (b, bt, a, c, d) == (4, 4, 4, 4, 4), "message_count %r, aichat total %r, im %r, " \
        "chax %r, v1 %r" % (b, bt, a, c, d)


@test
def new_message_from_any_dialect_moves_conversation_up(s):
    # one user per bump: the bumped conversation's own AI reply may land later and only
    # bumps it again, so the expected order holds whenever it lands
    for bump in ("im", "chax"):
        u = uniq("xup")
        s1 = aichat_session(s.c, user_id=u)["session_id"]
        time.sleep(0.02)
        s2 = aichat_session(s.c, user_id=u)["session_id"]
        time.sleep(0.02)
        if bump == "im":
            im_send(s.c, s1, "im bumps s1")
        else:
            ok_json(s.c.post("/ai/chat", json={"conversationId": s1, "content": "chax bumps s1"}))
        lst = ok_env(s.c.post("/api/chat/sessions", json={"user_id": u}))
        assert [x["session_id"] for x in lst] == [s1, s2], "after %s message: %r" % (bump, lst)
        recs = [r["conversationId"] for r in chax_records(s.c) if r["conversationId"] in (s1, s2)]
        assert recs == [s1, s2], "chax record list after %s message: %r" % (bump, recs)
