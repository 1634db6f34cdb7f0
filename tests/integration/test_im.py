"""Dialect im: /api/message/*, /api/ai/records, /health."""

import calendar
import time

from harness import (IM_MSG_KEYS, IM_REC_KEYS, BAD_PAGES, BAD_SIZES, BIG_N, VERSION, im_send,
                     aichat_msg, aichat_session, big_conv, check_im_time, check_msgid, check_recid,
                     contents, err_im, is_int, keys_exact, ok_env, ok_json, parse_im_time, q, qs,
                     test, uniq)


def check_im_msg(m, recent=True):
    keys_exact(m, IM_MSG_KEYS, "im message")
    assert is_int(m["id"]) and m["id"] > 0, "id %r is not a positive integer" % (m["id"],)
    check_msgid(m["message_id"], recent)
    check_im_time(m["created_at"], recent, "created_at")
    assert m["msg_type"] in ("TEXT", "AI_REPLY", "SYSTEM"), "msg_type %r" % (m["msg_type"],)
    assert isinstance(m["msg_content"], str)
    assert isinstance(m["session_id"], str) and isinstance(m["from_user_id"], str)


@test
def im_health(s):
    r = s.c.get("/health")
    j = ok_json(r, "GET /health")
    assert j.get("status") == "ok", "status %r" % (j.get("status"),)
    assert j.get("version") == VERSION, "version %r, expected %r" % (j.get("version"), VERSION)
    assert j.get("database") == "ok", "database %r (docs/API.md: \"database\":\"ok\")" % (
        j.get("database"),)


@test
def im_send_returns_stored_message(s):
    sid = uniq("a")
    t0 = time.time()
    m = im_send(s.c, sid, "你好，我想咨询一个问题")
    check_im_msg(m)
    assert m["session_id"] == sid, "session_id %r" % m["session_id"]
    assert m["from_user_id"] == "default_user", "from_user_id %r" % m["from_user_id"]
    assert m["msg_type"] == "TEXT", "msg_type %r" % m["msg_type"]
    assert m["msg_content"] == "你好，我想咨询一个问题"
    # the msg_ id's timestamp and created_at name the same UTC second (give or take one)
    ts = calendar.timegm(time.strptime(m["message_id"][4:18], "%Y%m%d%H%M%S"))
    assert abs(ts - parse_im_time(m["created_at"])) <= 1, "message_id %r vs created_at %r" % (
        m["message_id"], m["created_at"])
    assert parse_im_time(m["created_at"]) >= int(t0) - 1


@test
def im_send_ids_are_unique_and_increasing(s):
    sid = uniq("a")
    m1 = im_send(s.c, sid, "one")
    m2 = im_send(s.c, sid, "two")
    assert m2["id"] > m1["id"], "ids %r then %r" % (m1["id"], m2["id"])
    assert m1["message_id"] != m2["message_id"]


@test
def im_get_by_string_and_integer_id(s):
    sid = uniq("a")
    m = im_send(s.c, sid, "查询我")
    r1 = ok_json(s.c.get("/api/message/" + m["message_id"]), "GET by string id")
    assert r1 == m, "GET by string id %r != sent %r" % (r1, m)
    r2 = ok_json(s.c.get("/api/message/%d" % m["id"]), "GET by integer id")
    assert r2 == m, "GET by integer id %r != sent %r" % (r2, m)


@test
def im_get_unknown_is_404(s):
    err_im(s.c.get("/api/message/msg_20000101000000_deadbeef"), 404)
    err_im(s.c.get("/api/message/999999999"), 404)
    err_im(s.c.get("/api/message/no-such-thing"), 404)
    err_im(s.c.get("/api/message/0"), 404)
    err_im(s.c.get("/api/message/-1"), 404)


@test
def im_list_is_never_a_message_id(s):
    # /api/message/list without session_id: 1003, not "message 'list' not found"
    err_im(s.c.get("/api/message/list"), 400, 1003)
    err_im(s.c.get("/api/message/list?session_id="), 400, 1003)
    err_im(s.c.get("/api/message/list" + qs(session_id="x" * 49)), 400, 1003)


@test
def im_list_shape_user_messages_oldest_first(s):
    sid = uniq("a")
    m1 = im_send(s.c, sid, "第一条")
    m2 = im_send(s.c, sid, "第二条")
    j = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    keys_exact(j, ("messages", "total", "page", "page_size"), "im list")
    assert j["page"] == 1 and j["page_size"] == 20, "page %r page_size %r (defaults 1, 20)" % (
        j["page"], j["page_size"])
    msgs = j["messages"]
    assert isinstance(msgs, list) and is_int(j["total"])
    assert j["total"] == len(msgs), "total %r but %d messages" % (j["total"], len(msgs))
    for m in msgs:
        check_im_msg(m)
        assert m["session_id"] == sid
        if m["msg_type"] == "AI_REPLY":
            assert m["from_user_id"] == "ai_bot", "AI_REPLY from %r" % m["from_user_id"]
    assert msgs[0] == m1, "first message %r, expected %r" % (msgs[0], m1)
    texts = [m for m in msgs if m["msg_type"] == "TEXT"]
    assert texts == [m1, m2], "TEXT messages %r" % texts
    ids = [m["id"] for m in msgs]
    assert ids == sorted(ids), "not oldest first: ids %r" % ids


@test
def im_list_unknown_client_named_session_is_empty(s):
    r = s.c.get("/api/message/list" + qs(session_id=uniq("never")))
    j = ok_json(r)
    assert j == {"messages": [], "total": 0, "page": 1, "page_size": 20}, "got %r" % j


@test
def im_list_renders_roles(s):
    sess = aichat_session(s.c, title="roles")
    sid = sess["session_id"]
    a = aichat_msg(s.c, sid, "assistant says", "assistant")
    sy = aichat_msg(s.c, sid, "system says", "system")
    j = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    assert j["total"] == 2, "total %r" % j["total"]
    m0, m1 = j["messages"]
    assert (m0["id"], m0["msg_type"], m0["from_user_id"], m0["msg_content"]) == (
        a["message_id"], "AI_REPLY", "ai_bot", "assistant says"), "assistant as %r" % m0
    assert (m1["id"], m1["msg_type"], m1["from_user_id"], m1["msg_content"]) == (
        sy["message_id"], "SYSTEM", "system", "system says"), "system as %r" % m1


@test
def im_list_pagination(s):
    sid = big_conv(s)
    base = "/api/message/list?session_id=" + q(sid)
    j = ok_json(s.c.get(base))
    assert (j["total"], j["page"], j["page_size"]) == (BIG_N, 1, 20), "%r" % (
        {k: j[k] for k in ("total", "page", "page_size")},)
    assert [m["msg_content"] for m in j["messages"]] == contents(1, 20)
    j = ok_json(s.c.get(base + "&page=6"))
    assert [m["msg_content"] for m in j["messages"]] == contents(101, 105), "page 6: %r" % (
        [m["msg_content"] for m in j["messages"]],)
    j = ok_json(s.c.get(base + "&page=7"))
    assert j == {"messages": [], "total": BIG_N, "page": 7, "page_size": 20}, "page 7: %r" % j
    j = ok_json(s.c.get(base + "&page_size=100"))
    assert len(j["messages"]) == 100 and j["page_size"] == 100
    j = ok_json(s.c.get(base + "&page=2&page_size=100"))
    assert [m["msg_content"] for m in j["messages"]] == contents(101, 105)
    j = ok_json(s.c.get(base + "&page=2147483647&page_size=100"))
    assert j["messages"] == [] and j["total"] == BIG_N, "page 2147483647: %r" % j


@test
def im_list_bad_pagination_is_400(s):
    sid = big_conv(s)
    for v in BAD_PAGES:
        err_im(s.c.get("/api/message/list?session_id=%s&page=%s" % (q(sid), q(v))), 400)
    for v in BAD_SIZES:
        err_im(s.c.get("/api/message/list?session_id=%s&page_size=%s" % (q(sid), q(v))), 400)


@test
def im_send_validation_codes(s):
    sid = uniq("a")
    p = "/api/message/send"
    err_im(s.c.post(p, json={"session_id": sid}), 400, 1001, "消息内容不能为空")
    err_im(s.c.post(p, json={"session_id": sid, "content": ""}), 400, 1001)
    err_im(s.c.post(p, json={"session_id": sid, "content": "  \n\t "}), 400, 1001)
    err_im(s.c.post(p, json={"session_id": sid, "content": "中" * 5001}), 400, 1002)
    err_im(s.c.post(p, json={"content": "hi"}), 400, 1003)
    err_im(s.c.post(p, json={"content": "hi", "session_id": ""}), 400, 1003)
    err_im(s.c.post(p, json={"content": "hi", "session_id": "s" * 49}), 400, 1003)
    # nothing was stored by the rejected sends
    j = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))
    assert j["total"] == 0, "rejected sends stored messages: %r" % j


@test
def im_send_limits_count_code_points(s):
    sid = "会" * 48  # 48 code points, 144 bytes
    m = im_send(s.c, sid, "中" * 5000)
    assert m["session_id"] == sid
    assert m["msg_content"] == "中" * 5000, "content length %d" % len(m["msg_content"])
    got = ok_json(s.c.get("/api/message/" + m["message_id"]))
    assert got["msg_content"] == "中" * 5000
    err_im(s.c.post("/api/message/send", json={"session_id": "会" * 49, "content": "x"}),
          400, 1003)


@test
def im_records_empty_shape(s):
    j = ok_json(s.c.get("/api/ai/records" + qs(session_id=uniq("norec"))))
    assert j == {"records": [], "total": 0, "page": 1, "page_size": 20}, "got %r" % j


@test
def im_records_validation(s):
    err_im(s.c.get("/api/ai/records"), 400, 1003)
    err_im(s.c.get("/api/ai/records?session_id="), 400, 1003)
    sid = uniq("rec")
    for v in BAD_PAGES:
        err_im(s.c.get("/api/ai/records?session_id=%s&page=%s" % (sid, q(v))), 400)
    for v in BAD_SIZES:
        err_im(s.c.get("/api/ai/records?session_id=%s&page_size=%s" % (sid, q(v))), 400)


@test
def im_records_after_send_shape(s):
    sid = uniq("rec")
    m = im_send(s.c, sid, "记录我")
    j = ok_json(s.c.get("/api/ai/records" + qs(session_id=sid)))
    keys_exact(j, ("records", "total", "page", "page_size"), "im records")
    assert j["total"] == len(j["records"]) and j["total"] <= 1, "records %r" % j
    for rec in j["records"]:
        keys_exact(rec, IM_REC_KEYS, "im record")
        check_recid(rec["record_id"])
        assert rec["session_id"] == sid
        assert rec["user_message_id"] == m["message_id"], "user_message_id %r" % (
            rec["user_message_id"],)
        assert rec["status"] in (0, 1, 2) and is_int(rec["status"])
        check_im_time(rec["created_at"])
    j = ok_json(s.c.get("/api/ai/records" + qs(session_id=sid, page=2)))
    assert j["records"] == [] and j["page"] == 2


@test
def im_send_to_deleted_conversation_is_404(s):
    sid = uniq("adel")
    m = im_send(s.c, sid, "before delete")
    ok_env(s.c.delete("/api/chat/sessions/" + q(sid)), "aichat delete")
    err_im(s.c.post("/api/message/send", json={"session_id": sid, "content": "after"}), 404,
          message="会话不存在")
    err_im(s.c.get("/api/message/list" + qs(session_id=sid)), 404)
    err_im(s.c.get("/api/message/" + m["message_id"]), 404)
    err_im(s.c.get("/api/message/%d" % m["id"]), 404)
    err_im(s.c.get("/api/ai/records" + qs(session_id=sid)), 404)


@test
def im_wrong_method_and_unknown_route(s):
    r = s.c.delete("/api/message/send")
    err_im(r, 405)
    assert "POST" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    r = s.c.post("/api/message/list", json={})
    err_im(r, 405)
    assert "GET" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    err_im(s.c.put("/health", json={}), 405)
    err_im(s.c.post("/api/ai/records", json={}), 405)
    err_im(s.c.get("/api/ai/nothing-here"), 404)
    err_im(s.c.get("/api/message/list/extra/segments"), 404)
