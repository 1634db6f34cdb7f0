"""Isolation under auth = jwt: a connection belongs to its token's user, and never sees or
stops another user's run, whatever the order (a socket opened on an id before anyone used
it, after the conversation exists, during a run). The same for chax's SSE stream and workflow's
stream, which workers authorise before the hand-over to the daemon.

Two users with their own tokens: A owns the conversation, B tries. Starts its own stack
(run.py's SELF_MODULES), stopped in teardown():
  jwt  auth = jwt, builtin provider (150 ms a piece), the workflow dialect's n8n webhook =
       the fake's
"""

import json
import os
import sys
import time
import uuid

from harness import REPO, make_jwt, ok_env, ok_json, poll, q, qs, test, uniq
import test_live as tl
import test_ws as tw

sys.path.insert(0, os.path.join(REPO, "tests", "fake"))
import fake_upstream as fu  # noqa: E402

SECRET = "wsjwt-secret-" + uuid.uuid4().hex


def stack():
    f = tw._stacks.resource("jwt-fake", lambda: fu.FakeUpstream().start(), lambda f: f.stop())
    env = {"AICHATD_PROVIDER": "builtin", "AICHATD_BUILTIN_DELAY_MS": "150",
           "AICHATD_N8N_WEBHOOK_URL": f.webhook("output")}
    return tw.start_stack("jwt", env, auth="jwt", secret=SECRET)


def teardown():
    return tw.stop_stacks("test_ws_jwt")


def token(sub):
    now = int(time.time())
    return make_jwt({"sub": sub, "iat": now, "exp": now + 3600}, SECRET)


class Users:
    def __init__(self, st):
        self.st = st
        self.a, self.b = uniq("ua"), uniq("ub")
        self.ta, self.tb = token(self.a), token(self.b)
        self.ca, self.cb = st.c.with_token(self.ta), st.c.with_token(self.tb)


def quiet(w, seconds, what):
    """Everything w receives in seconds: must be nothing of the conversation."""
    end = time.time() + seconds
    got = []
    while time.time() < end:
        a = w.recv_raw(max(0.05, end - time.time()))
        if "msg" in a:
            got.append(json.loads(a["msg"]))
        elif a.get("closed"):
            break
    leaked = [tl.short(m) for m in got if m.get("type") in ("ai_chunk", "ai_reply") or
              m.get("session_id") and m.get("type") != "error"]
    assert not leaked, "%s: the other user's socket received %r" % (what, leaked[:3])
    return got


def im_long_send(u, conv):
    return ok_json(u.ca.post("/api/message/send", json={
        "content": tl.long_text(uniq("jw")), "session_id": conv}), "A's send")


def check_aichat_stop_refused(u, wb, wa, ai_msg_id):
    wb.send({"type": "stop", "message_id": ai_msg_id})
    m = wb.recv(5)
    assert m.get("type") == "error", "B's stop of A's run answered %r, expected an error" % (m,)
    got = wa.until("ai_reply", 20)
    reply = got[-1]
    assert reply["stopped"] is False, "A's run was stopped by B's stop: %r" % (tl.short(reply),)
    return reply


@test
def ws_presubscribed_before_creation_gets_nothing(_):
    st = stack()
    u = Users(st)
    conv = uniq("jwpre")
    wb = tl.ws_open(st, conv, u.tb)  # an id nobody has used: the socket opens, claims nothing
    try:
        im_long_send(u, conv)  # A's message stores the id: A's conversation
        with tl.ws_open(st, conv, u.ta) as wa:
            first = [m for m in wa.until("ai_chunk", 10) if m["type"] == "ai_chunk"][0]
            reply = check_aichat_stop_refused(u, wb, wa, first["message_id"])
        assert reply["content"], "A's reply is empty"
        quiet(wb, 0.5, "pre-subscribed before A created the conversation")
        stored = tl.chax_content(u.ca, reply["message_id"])
        assert stored["content"] == reply["content"], "A's stored reply %r" % (stored,)
    finally:
        wb.kill()


@test
def ws_both_presubscribed_owner_sends_on_the_socket(_):
    st = stack()
    u = Users(st)
    conv = uniq("jwboth")
    wb = tl.ws_open(st, conv, u.tb)
    wa = tl.ws_open(st, conv, u.ta)
    try:
        wa.send({"type": "send_message", "content": tl.long_text(uniq("jwa"))})
        sent = wa.recv(5)
        assert sent.get("type") == "message_sent", "A's send: %r" % (sent,)
        first = [m for m in wa.until("ai_chunk", 10) if m["type"] == "ai_chunk"][0]
        check_aichat_stop_refused(u, wb, wa, first["message_id"])
        quiet(wb, 0.5, "both sockets opened before A's socket send")
        # B cannot post into A's conversation either
        wb.send({"type": "send_message", "content": "B 的消息"})
        m = wb.recv(5)
        assert m.get("type") == "error", "B's send into A's conversation: %r" % (m,)
        lst = ok_json(u.ca.get("/api/message/list" + qs(session_id=conv, page_size=100)))
        assert "B 的消息" not in [x["msg_content"] for x in lst["messages"]], lst
    finally:
        wa.kill()
        wb.kill()


@test
def ws_subscribed_after_creation_and_during_a_run_refused(_):
    st = stack()
    u = Users(st)
    conv = uniq("jwafter")
    im_long_send(u, conv)  # a run under way
    w = tl.WS(tl.ws_url(st, conv, u.tb))
    try:
        assert w.answer.get("status") == 404, "B's socket during A's run: %r" % (w.answer,)
    finally:
        w.kill()
    with tl.ws_open(st, conv, u.ta) as wa:
        wa.until("ai_reply", 20)
    w = tl.WS(tl.ws_url(st, conv, u.tb))
    try:
        assert w.answer.get("status") == 404, "B's socket after A's run: %r" % (w.answer,)
    finally:
        w.kill()


@test
def ws_first_message_owns_the_id(_):
    st = stack()
    u = Users(st)
    conv = uniq("jwsquat")
    wa = tl.ws_open(st, conv, u.ta)  # A waits on the id first
    try:
        with tl.ws_open(st, conv, u.tb) as wb:
            wb.send({"type": "send_message", "content": "B 先发 %s" % uniq()})
            sent = wb.recv(5)
            assert sent.get("type") == "message_sent", "B's first send: %r" % (sent,)
            wb.until("ai_reply", 20)
        # B's message stored the id: B's conversation; A's early socket sees none of it
        quiet(wa, 0.3, "A's socket opened before B's message")
        wa.send({"type": "send_message", "content": "A 的消息"})
        m = wa.recv(5)
        assert m.get("type") == "error", "A's send into B's conversation: %r" % (m,)
        r = u.ca.post("/api/message/send", json={"content": "A 也发", "session_id": conv})
        assert r.status != 200, "A's REST send into B's conversation: %d %r" % (
            r.status, r.body[:200])
    finally:
        wa.kill()


@test
def sse_of_another_users_message_refused(_):
    st = stack()
    u = Users(st)
    j = ok_json(u.ca.post("/ai/chat", json={"content": tl.long_text(uniq("jwsse"))}),
                "A's /ai/chat")
    mid = j["msgId"]
    # during the run, and after it
    for when in ("during the run", "after the run"):
        r = u.cb.get("/ai/message/stream/" + q(mid))
        assert r.status == 404, "B's stream of A's reply %s: %d %r" % (when, r.status,
                                                                        r.body[:200])
        if when == "during the run":
            tl.chax_finished(u.ca, j["conversationId"], mid, 20)
    r = u.cb.post("/ai/message/stop/" + q(mid), json={})
    assert r.status == 404, "B's stop of A's message: %d" % r.status
    # the daemon's side of the hand-over is nginx's internal location: not for clients
    for path in ("/_aichatd_push/sse/" + q(mid), "/_aichatd_push/estream/1"):
        r = u.cb.get(path)
        assert r.status == 404 and b"data:" not in r.body, "B on %s: %d %r" % (
            path, r.status, r.body[:200])


@test
def workflow_stream_of_another_users_session_refused(_):
    st = stack()
    u = Users(st)
    sid = uniq("jwe")
    body = {"sessionId": sid, "userId": u.a, "chatInput": "[case:live_estream] A 的 %s" % uniq()}
    with tl.Curl(st.url("/api/chat/stream"), headers={"Authorization": "Bearer " + u.ta},
                 data=json.dumps(body, ensure_ascii=False)) as cu:
        # B, during A's stream, on A's session
        time.sleep(0.3)
        r = u.cb.post("/api/chat/stream", json={"sessionId": sid, "userId": u.b,
                                               "chatInput": "B 的"})
        assert r.status in (403, 404), "B's stream on A's session during A's: %d %r" % (
            r.status, r.body[:200])
        assert cu.wait_exit(20, "A's stream") == 0 and cu.status() == 200, cu.snapshot()[:300]
    r = u.cb.post("/api/chat/stream", json={"sessionId": sid, "userId": u.b, "chatInput": "B"})
    assert r.status in (403, 404), "B's stream on A's session after it: %d %r" % (
        r.status, r.body[:200])
    h = ok_env(u.ca.get("/api/chat/history?sessionId=" + q(sid)), "A's workflow history")
    users = [x["userMessage"] for x in h["messages"]]
    assert users == [body["chatInput"]], "A's workflow history: %r" % (users,)


@test
def ws_stop_before_any_event_refused(_):
    st = stack()
    u = Users(st)
    conv = uniq("jwstop")
    wb = tl.ws_open(st, conv, u.tb)  # before the conversation exists
    try:
        im_long_send(u, conv)
        # the reply's id from A's chax list at once: B's socket has had no event yet
        lst = ok_json(u.ca.get("/ai/message/list/" + q(conv)), "A's chax list")
        ai = [m for m in lst if m["role"] == "assistant"][0]
        wb.send({"type": "stop", "message_id": ai["msgId"]})
        m = wb.recv(5)
        assert m.get("type") == "error", "B's stop of A's run, sent before any event: %r" % (
            tl.short(m),)
        done = tl.chax_finished(u.ca, conv, ai["msgId"], 20)
        r = ok_json(u.ca.get("/api/ai/records" + qs(session_id=conv)), "A's records")
        rec = [x for x in r["records"] if x["ai_message_id"] == ai["msgId"]][0]
        assert rec["status"] == 1, "A's run after B's stop: record %r (1: done, not stopped)" % (
            rec,)
        assert tl.chax_content(u.ca, done["msgId"])["content"], "A's reply is empty"
        quiet(wb, 0.3, "a socket whose stop was refused")
    finally:
        wb.kill()
