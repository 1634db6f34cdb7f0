"""Dialect chax: /ai/record/list, /ai/message/list/:id, /ai/message/content/:id,
POST /ai/chat, CORS."""

import time

from harness import (BAD_PAGES, BAD_SIZES, BIG_N, CHAX_CONV_KEYS, CHAX_MSG_KEYS, aichat_msg,
                     aichat_session, big_conv, check_ms, check_msgid, check_uuid4, contents,
                     err_chax, expect, keys_exact, ok_json, q, test, uniq)


def chax_chat(c, content, conv=None):
    body = {"content": content}
    if conv is not None:
        body["conversationId"] = conv
    j = ok_json(c.post("/ai/chat", json=body), "POST /ai/chat")
    keys_exact(j, CHAX_CONV_KEYS + ("userMsgId", "msgId"), "POST /ai/chat answer")
    return j


def chax_list(c, conv, query=""):
    r = c.get("/ai/message/list/" + q(conv) + query)
    j = ok_json(r, "GET /ai/message/list")
    assert isinstance(j, list), "not a bare array: %r" % (j,)
    total = r.header("X-Total-Count")
    assert total is not None and total.isdigit(), "X-Total-Count %r" % (total,)
    return j, int(total)


def chax_records(c, query=""):
    r = c.get("/ai/record/list" + query)
    j = ok_json(r, "GET /ai/record/list")
    assert isinstance(j, list), "not a bare array: %r" % (j,)
    total = r.header("X-Total-Count")
    assert total is not None and total.isdigit(), "X-Total-Count %r" % (total,)
    return j, int(total)


def check_cmsg(m):
    keys_exact(m, CHAX_MSG_KEYS, "chax message")
    check_msgid(m["msgId"], recent=False)
    assert m["role"] in ("user", "assistant", "system")
    assert m["visiableInClient"] is True, "visiableInClient %r" % (m["visiableInClient"],)
    assert isinstance(m["unfinished"], bool), "unfinished %r is not a boolean" % (
        m["unfinished"],)
    assert isinstance(m["error"], str), "error %r is not a string" % (m["error"],)


@test
def chax_chat_creates_conversation(s):
    j = chax_chat(s.c, "你好   世界\n\t再见")
    check_uuid4(j["conversationId"], "conversationId")
    assert j["title"] == "你好 世界 再见", "title %r (white space collapsed)" % j["title"]
    check_ms(j["createTimestamp"], what="createTimestamp")
    check_ms(j["updateTimestamp"], what="updateTimestamp")
    assert j["updateTimestamp"] >= j["createTimestamp"]
    check_msgid(j["userMsgId"], what="userMsgId")
    check_msgid(j["msgId"], what="msgId")
    assert j["userMsgId"] != j["msgId"]


@test
def chax_chat_title_is_first_30_code_points(s):
    text = "一二三四五六七八九十" * 4
    j = chax_chat(s.c, text)
    assert j["title"] == text[:30], "title %r" % j["title"]


@test
def chax_message_list_and_content(s):
    j = chax_chat(s.c, "请介绍一下你自己")
    msgs, total = chax_list(s.c, j["conversationId"])
    assert total == 2 and len(msgs) == 2, "expected user + assistant, got %r" % (msgs,)
    u, a = msgs
    check_cmsg(u)
    check_cmsg(a)
    assert (u["msgId"], u["role"], u["unfinished"], u["error"]) == (
        j["userMsgId"], "user", False, ""), "user message %r" % u
    assert (a["msgId"], a["role"]) == (j["msgId"], "assistant"), "assistant message %r" % a
    r = ok_json(s.c.get("/ai/message/content/" + j["userMsgId"]))
    assert r == {"content": "请介绍一下你自己", "error": ""}, "user content %r" % r
    r = ok_json(s.c.get("/ai/message/content/" + j["msgId"]))
    keys_exact(r, ("content", "error"), "assistant content")
    assert isinstance(r["content"], str) and isinstance(r["error"], str)


@test
def chax_chat_into_existing_conversation(s):
    sess = aichat_session(s.c, title="既有会话")
    sid = sess["session_id"]
    aichat_msg(s.c, sid, "earlier", "system")
    j = chax_chat(s.c, "继续", sid)
    assert j["conversationId"] == sid and j["title"] == "既有会话", "answer %r" % j
    msgs, total = chax_list(s.c, sid)
    assert total == 3, "total %r" % total
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[1]["msgId"] == j["userMsgId"] and msgs[2]["msgId"] == j["msgId"]


@test
def chax_chat_validation(s):
    err_chax(s.c.post("/ai/chat", json={}), 400, "content is required")
    err_chax(s.c.post("/ai/chat", json={"content": ""}), 400, "content is required")
    err_chax(s.c.post("/ai/chat", json={"content": " \n\t "}), 400, "content is required")
    err_chax(s.c.post("/ai/chat", json={"content": "中" * 5001}), 400, "content is too long")
    err_chax(s.c.post("/ai/chat", json={"content": 123}), 400)
    err_chax(s.c.post("/ai/chat", json={"content": "x", "conversationId": 5}), 400)
    err_chax(s.c.post("/ai/chat", json={"content": "x", "conversationId": uniq("nosuch")}), 404,
          "Conversation not found")
    err_chax(s.c.post("/ai/chat", body=b'{"content": "x"'), 400, "invalid JSON body")


@test
def chax_chat_accepts_5000_chinese(s):
    j = chax_chat(s.c, "中" * 5000)
    r = ok_json(s.c.get("/ai/message/content/" + j["userMsgId"]))
    assert r["content"] == "中" * 5000


@test
def chax_message_content_and_list_unknown_ids_are_404(s):
    err_chax(s.c.get("/ai/message/list/" + uniq("nosuch")), 404, "Conversation not found")
    err_chax(s.c.get("/ai/message/content/msg_20000101000000_deadbeef"), 404, "Message not found")
    err_chax(s.c.get("/ai/message/content/nothing"), 404, "Message not found")


@test
def chax_record_list_shape_and_order(s):
    j = chax_chat(s.c, "first conversation")
    # aichat sessions get no AI reply, so nothing but the bump below changes their order
    s1 = aichat_session(s.c, title="older")["session_id"]
    time.sleep(0.02)
    s2 = aichat_session(s.c, title="newer")["session_id"]
    recs, total = chax_records(s.c)
    assert total >= 3 and len(recs) <= 100
    for r in recs:
        keys_exact(r, CHAX_CONV_KEYS, "chax conversation")
        assert isinstance(r["conversationId"], str) and isinstance(r["title"], str)
        check_ms(r["createTimestamp"], recent=False)
        check_ms(r["updateTimestamp"], recent=False)
    ids = [r["conversationId"] for r in recs]
    assert j["conversationId"] in ids, "a chax conversation is missing from the list"
    assert ids.index(s2) < ids.index(s1), "newer conversation not listed first"
    ups = [r["updateTimestamp"] for r in recs]
    assert ups == sorted(ups, reverse=True), "not newest-updated first: %r" % ups[:10]
    # bump the older one: it moves ahead of the newer
    time.sleep(0.02)
    chax_chat(s.c, "bump", s1)
    ids = [r["conversationId"] for r in chax_records(s.c)[0]]
    assert ids.index(s1) < ids.index(s2), "a new message did not move its conversation up"


@test
def chax_record_list_pagination(s):
    chax_chat(s.c, "p1")
    chax_chat(s.c, "p2")
    recs, total = chax_records(s.c, "?page_size=1")
    assert len(recs) == 1 and total >= 2, "page_size=1: %d items, total %d" % (len(recs), total)
    recs2, total2 = chax_records(s.c, "?page=2&page_size=1")
    assert len(recs2) == 1 and recs2[0]["conversationId"] != recs[0]["conversationId"]
    recs, total3 = chax_records(s.c, "?page=2147483647&page_size=100")
    assert recs == [] and total3 >= total, "past the end: %r, total %d" % (recs, total3)
    for v in BAD_PAGES:
        err_chax(s.c.get("/ai/record/list?page=" + q(v)), 400)
    for v in BAD_SIZES:
        err_chax(s.c.get("/ai/record/list?page_size=" + q(v)), 400)


@test
def chax_message_list_pagination(s):
    sid = big_conv(s)
    msgs, total = chax_list(s.c, sid)
    assert total == BIG_N and len(msgs) == 100, "default page: %d items, total %d" % (
        len(msgs), total)
    for m in msgs:
        check_cmsg(m)
    # map msgIds to contents for a few
    first = ok_json(s.c.get("/ai/message/content/" + msgs[0]["msgId"]))
    last = ok_json(s.c.get("/ai/message/content/" + msgs[99]["msgId"]))
    assert (first["content"], last["content"]) == ("m001", "m100"), "oldest first: %r %r" % (
        first, last)
    assert msgs[6]["role"] == "system" and msgs[0]["role"] == "assistant"
    msgs, total = chax_list(s.c, sid, "?page=2")
    assert len(msgs) == BIG_N - 100 and total == BIG_N
    msgs, total = chax_list(s.c, sid, "?page=21&page_size=5")
    got = [ok_json(s.c.get("/ai/message/content/" + m["msgId"]))["content"] for m in msgs]
    assert got == contents(101, 105), "page 21 of 5: %r" % got
    msgs, total = chax_list(s.c, sid, "?page=3")
    assert msgs == [] and total == BIG_N
    for v in BAD_PAGES:
        err_chax(s.c.get("/ai/message/list/%s?page=%s" % (sid, q(v))), 400)
    for v in BAD_SIZES:
        err_chax(s.c.get("/ai/message/list/%s?page_size=%s" % (sid, q(v))), 400)


def header_tokens(v):
    return {t.strip().lower() for t in (v or "").split(",") if t.strip()}


@test
def chax_cors_preflight(s):
    for path in ("/ai/chat", "/ai/message/content/msg_20250101000000_abcdef12",
                 "/ai/record/list"):
        r = s.c.options(path, headers={
            "Origin": "http://example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        expect(r, 204, "OPTIONS " + path)
        assert r.header("Access-Control-Allow-Origin") == "*", "Allow-Origin %r" % (
            r.header("Access-Control-Allow-Origin"),)
        methods = header_tokens(r.header("Access-Control-Allow-Methods"))
        need = {"get", "post", "put", "delete", "options"}
        assert need <= methods, "Allow-Methods %r" % r.header("Access-Control-Allow-Methods")
        hdrs = header_tokens(r.header("Access-Control-Allow-Headers"))
        need = {"authorization", "content-type", "accept", "last-event-id", "cache-control",
                "x-requested-with"}
        assert need <= hdrs, "Allow-Headers %r lacks %s" % (
            r.header("Access-Control-Allow-Headers"), sorted(need - hdrs))
        cred = r.header("Access-Control-Allow-Credentials")
        assert cred is None or cred.lower() != "true", "Allow-Credentials %r" % cred


@test
def chax_cors_on_responses(s):
    r = s.c.get("/ai/record/list", headers={"Origin": "http://example.com"})
    expect(r, 200)
    assert r.header("Access-Control-Allow-Origin") == "*", "GET /ai/record/list ACAO %r" % (
        r.header("Access-Control-Allow-Origin"),)
    r = s.c.post("/ai/chat", json={}, headers={"Origin": "http://example.com"})
    err_chax(r, 400)
    assert r.header("Access-Control-Allow-Origin") == "*", "400 from /ai/chat ACAO %r" % (
        r.header("Access-Control-Allow-Origin"),)


@test
def chax_wrong_method_and_unknown_route(s):
    r = s.c.delete("/ai/chat")
    err_chax(r, 405)
    assert "POST" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    r = s.c.post("/ai/record/list", json={})
    err_chax(r, 405)
    assert "GET" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    err_chax(s.c.put("/ai/message/content/x", json={}), 405)
    err_chax(s.c.get("/ai/no-such-route"), 404)
    err_chax(s.c.get("/ai/message/list"), 404)
