"""AICHATD_AUTH=jwt: tokens, ownership, body user ids, admin routes, preflight.
Run against a stack started with AICHATD_AUTH=jwt and AICHATD_JWT_SECRET=ctx.secret."""

import hashlib
import hmac
import json
import time

from harness import (im_send, b64url, aichat_msg, err_im, err_chax, err_env, expect, make_jwt,
                     ok_env, ok_json, q, qs, test, uniq)


def tok(s, sub, role=None, **claims):
    p = {"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 3600}
    if role:
        p["role"] = role
    p.update(claims)
    for k in [k for k, v in p.items() if v is None]:
        del p[k]
    return make_jwt(p, s.secret)


def user(s, name=None, role=None):
    sub = name or uniq("user")
    return sub, s.c.with_token(tok(s, sub, role))


def hs512(payload, secret):
    h = b64url(json.dumps({"alg": "HS512", "typ": "JWT"}).encode())
    p = b64url(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), (h + "." + p).encode(), hashlib.sha512).digest()
    return h + "." + p + "." + b64url(sig)


def logs_total(c):
    return ok_env(c.get("/api/v1/logs"))["total"]


@test
def health_needs_no_token(s):
    r = s.c.get("/health")
    j = ok_json(r)
    assert j.get("status") == "ok"


def unauth_checks(c):
    """(what, response, dialect) for one request per dialect, with client c."""
    return [
        ("im list", c.get("/api/message/list?session_id=x"), "im"),
        ("im send", c.post("/api/message/send", json={"session_id": "x", "content": "y"}), "im"),
        ("im records", c.get("/api/ai/records?session_id=x"), "im"),
        ("aichat list", c.post("/api/chat/sessions", json={}), "aichat"),
        ("aichat create", c.post("/api/chat/session", json={}), "aichat"),
        ("aichat list", c.get("/aichat/getsessionlist/x"), "aichat"),
        ("chax records", c.get("/ai/record/list"), "chax"),
        ("chax chat", c.post("/ai/chat", json={"content": "x"}), "chax"),
        ("v1 configs", c.get("/api/v1/model-configs"), "v1"),
        ("v1 create", c.post("/api/v1/sessions", json={}), "v1"),
        ("v1 logs", c.get("/api/v1/logs"), "v1"),
        ("workflow history", c.get("/api/chat/history?sessionId=x"), "workflow"),
    ]


def check_401(what, r, d):
    try:
        if d == "im":
            err_im(r, 401)
        elif d == "chax":
            err_chax(r, 401)
        elif d == "workflow":
            err_env(r, 401, "请先登录")
        else:
            err_env(r, 401)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (what, e))


@test
def missing_token_is_401_each_dialect(s):
    for what, r, d in unauth_checks(s.c):
        check_401(what, r, d)


@test
def bad_tokens_are_401(s):
    now = int(time.time())
    good = tok(s, "mallory")
    h, p, sig = good.split(".")
    other = tok(s, "admin", role="admin").split(".")
    bad = {
        "wrong secret": make_jwt({"sub": "mallory", "exp": now + 3600}, s.secret + "x"),
        "expired": tok(s, "mallory", exp=now - 3600, iat=now - 7200),
        "not yet valid": tok(s, "mallory", nbf=now + 3600),
        "alg none": make_jwt({"sub": "mallory", "exp": now + 3600}, s.secret,
                             header={"alg": "none", "typ": "JWT"}),
        "no sub": make_jwt({"exp": now + 3600}, s.secret),
        "sub too long": tok(s, "u" * 129),
        "empty sub": tok(s, ""),
        "payload swapped": h + "." + other[1] + "." + sig,
        "signature stripped": h + "." + p + ".",
        "HS512 with the secret": hs512({"sub": "mallory", "exp": now + 3600}, s.secret),
        "garbage": "abc.def.ghi",
        "not a jwt": "hello",
    }
    for name, t in bad.items():
        c = s.c.with_token(t)
        check_401("%s, chax" % name, c.get("/ai/record/list"), "chax")
        check_401("%s, aichat" % name, c.post("/api/chat/sessions", json={}), "aichat")
        check_401("%s, im" % name, c.get("/api/message/list?session_id=x"), "im")
    for hdr in ("Bearer", "Bearer ", "Basic " + good, good, "Token " + good):
        c = s.c.with_headers({"Authorization": hdr})
        check_401("Authorization %r" % hdr[:20], c.get("/api/v1/model-configs"), "v1")
    # a sub of exactly 128 characters is fine
    c = s.c.with_token(tok(s, "u" * 128))
    assert isinstance(ok_env(c.post("/api/chat/sessions", json={})), list)


@test
def valid_token_and_access_token_query(s):
    sub, c = user(s)
    recs = ok_json(c.get("/ai/record/list"))
    assert recs == [], "a new user sees conversations: %r" % recs[:2]
    t = tok(s, sub)
    assert ok_json(s.c.get("/ai/record/list?access_token=" + q(t))) == []
    ok_env(s.c.get("/api/v1/model-configs?access_token=" + q(t)))
    ok_env(s.c.get("/api/chat/history" + qs(sessionId=uniq("e"), access_token=t)))
    check_401("bad access_token", s.c.get("/ai/record/list?access_token=abc"), "chax")


@test
def sender_is_the_token_subject(s):
    sub, c = user(s)
    m = im_send(c, uniq("named"), "我是谁")
    assert m["from_user_id"] == sub, "from_user_id %r, expected the token's sub %r" % (
        m["from_user_id"], sub)
    sess = ok_env(c.post("/api/chat/session", json={}))
    assert sess["user_id"] == sub, "aichat owner %r" % sess["user_id"]
    d = ok_env(c.post("/api/v1/sessions", json={}))
    assert ok_env(c.get("/api/chat/sessions/" + d["session_id"]))["user_id"] == sub
    conv = ok_json(c.post("/ai/chat", json={"content": "谁的"}))
    assert ok_env(c.get("/api/chat/sessions/" + conv["conversationId"]))["user_id"] == sub


@test
def other_users_conversation_is_404(s):
    alice, ca = user(s, uniq("alice"))
    bob, cb = user(s, uniq("bob"))
    sess = ok_env(ca.post("/api/chat/session", json={"title": "alice 的会话"}))
    sid = sess["session_id"]
    am = aichat_msg(ca, sid, "alice 的回答")
    um = aichat_msg(ca, sid, "alice 的问题", "user")
    amsg = ok_json(ca.get("/api/message/%d" % am["message_id"]))
    checks = [
        ("aichat get", cb.get("/api/chat/sessions/" + sid), "aichat"),
        ("aichat messages", cb.get("/api/chat/sessions/%s/messages" % sid), "aichat"),
        ("aichat one message",
         cb.get("/api/chat/sessions/%s/messages/%d" % (sid, am["message_id"])),
         "aichat"),
        ("aichat post", cb.post("/api/chat/message", json={"session_id": sid, "content": "x",
                                                           "role": "assistant"}), "aichat"),
        ("aichat title", cb.patch("/api/chat/sessions/" + sid, json={"new_title": "x"}), "aichat"),
        ("aichat edit", cb.patch("/api/chat/messages/%d" % um["message_id"],
                                 json={"new_content": "x"}), "aichat"),
        ("aichat delete message", cb.delete("/api/chat/messages/%d" % am["message_id"]), "aichat"),
        ("aichat delete", cb.delete("/api/chat/sessions/" + sid), "aichat"),
        ("aichat delete", cb.delete("/aichat/deletesession/" + sid), "aichat"),
        ("aichat detail", cb.get("/aichat/sessions/" + sid), "aichat"),
        ("aichat messages", cb.get("/aichat/sessions/%s/messages" % sid), "aichat"),
        ("im list", cb.get("/api/message/list" + qs(session_id=sid)), "im"),
        ("im message", cb.get("/api/message/" + amsg["message_id"]), "im"),
        ("im message int", cb.get("/api/message/%d" % am["message_id"]), "im"),
        ("im records", cb.get("/api/ai/records" + qs(session_id=sid)), "im"),
        ("im send", cb.post("/api/message/send", json={"session_id": sid, "content": "x"}), "im"),
        ("chax list", cb.get("/ai/message/list/" + sid), "chax"),
        ("chax content", cb.get("/ai/message/content/" + amsg["message_id"]), "chax"),
        ("chax chat", cb.post("/ai/chat", json={"conversationId": sid, "content": "x"}), "chax"),
        ("v1 messages", cb.get("/api/v1/sessions/%s/messages" % sid), "v1"),
        ("workflow history", cb.get("/api/chat/history" + qs(sessionId=sid)), "workflow"),
    ]
    for what, r, d in checks:
        try:
            if d == "im":
                err_im(r, 404)
            elif d == "chax":
                err_chax(r, 404)
            else:
                err_env(r, 404)
        except AssertionError as e:
            raise AssertionError("bob, %s: %s" % (what, e))
    assert sid not in [x["session_id"] for x in ok_env(cb.post("/api/chat/sessions", json={}))]
    assert sid not in [x["conversationId"] for x in ok_json(cb.get("/ai/record/list"))]
    # alice's conversation is untouched and still hers
    got = ok_env(ca.get("/api/chat/sessions/" + sid))
    assert (got["title"], got["user_id"]) == ("alice 的会话", alice), "%r" % got
    assert got["message_count"] >= 2
    assert sid in [x["session_id"] for x in ok_env(ca.post("/api/chat/sessions", json={}))]
    assert sid in [x["conversationId"] for x in ok_json(ca.get("/ai/record/list"))]
    one = ok_env(ca.get("/api/chat/sessions/%s/messages/%d" % (sid, um["message_id"])))
    assert one["content"] == "alice 的问题"


@test
def client_named_id_belongs_to_its_creator(s):
    _, ca = user(s)
    _, cb = user(s)
    name = uniq("named")
    im_send(ca, name, "alice 起的名字")
    err_im(cb.post("/api/message/send", json={"session_id": name, "content": "x"}), 404)
    err_im(cb.get("/api/message/list" + qs(session_id=name)), 404)
    err_env(cb.get("/api/chat/history" + qs(sessionId=name)), 404)
    j = ok_json(ca.get("/api/message/list" + qs(session_id=name)))
    assert [m["msg_content"] for m in j["messages"] if m["msg_type"] == "TEXT"] == \
        ["alice 起的名字"]
    # an unused name lists empty for anyone
    j = ok_json(cb.get("/api/message/list" + qs(session_id=uniq("free"))))
    assert j["total"] == 0 and j["messages"] == []


@test
def body_user_id_differing_from_token_is_403(s):
    alice, ca = user(s)
    bob = uniq("bob")
    checks = [
        ("aichat create", ca.post("/api/chat/session", json={"user_id": bob})),
        ("aichat create", ca.post("/aichat/createsession", json={"user_id": bob})),
        ("aichat list", ca.post("/api/chat/sessions", json={"user_id": bob})),
        ("aichat list", ca.get("/aichat/getsessionlist/" + bob)),
        ("aichat show", ca.get("/aichat/getsessionlistshow/" + bob)),
        ("v1 create", ca.post("/api/v1/sessions", json={"user_id": bob})),
    ]
    for what, r in checks:
        try:
            err_env(r, 403)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (what, e))
    sess = ok_env(ca.post("/api/chat/session", json={"user_id": alice}))
    assert sess["user_id"] == alice
    assert [x["session_id"] for x in ok_env(ca.post("/api/chat/sessions",
                                                    json={"user_id": alice}))] == \
        [sess["session_id"]]
    d = ok_env(ca.get("/aichat/getsessionlist/" + alice))
    assert d["total"] == 1
    ok_env(ca.post("/api/v1/sessions", json={"user_id": alice}))


@test
def admin_routes(s):
    _, cu = user(s)
    _, cadm = user(s, role="admin")
    models = ok_env(cu.get("/api/v1/model-configs"))["models"]
    assert models, "no model configs"
    cfg = models[0]
    cid = q(cfg["config_id"])
    err_env(cu.put("/api/v1/model-configs/" + cid, json={"model_version": "hack"}), 403)
    err_env(cu.get("/api/v1/logs"), 403)
    err_env(s.c.with_token(tok(s, uniq("u"), role="user")).get("/api/v1/logs"), 403)
    got = [m for m in ok_env(cu.get("/api/v1/model-configs"))["models"]
           if m["config_id"] == cfg["config_id"]][0]
    assert got["model_version"] == cfg["model_version"], "non-admin PUT changed the config"
    data = ok_env(cadm.put("/api/v1/model-configs/" + cid,
                           json={"model_version": cfg["model_version"]}))
    assert data.get("config_id") == cfg["config_id"]
    before = logs_total(cadm)
    check_401("bad token", s.c.with_token("abc.def.ghi").get("/api/v1/logs"), "v1")
    after = logs_total(cadm)
    assert after > before, "auth failure not in /api/v1/logs (total %d -> %d)" % (
        before, after)


@test
def preflight_needs_no_token(s):
    r = s.c.options("/ai/chat", headers={"Origin": "http://example.com",
                                         "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers":
                                         "authorization,content-type"})
    expect(r, 204, "OPTIONS /ai/chat without a token")
    assert r.header("Access-Control-Allow-Origin") == "*"
    hdrs = {t.strip().lower() for t in (r.header("Access-Control-Allow-Headers") or "").split(",")}
    assert {"authorization", "content-type"} <= hdrs, "Allow-Headers %r" % (
        r.header("Access-Control-Allow-Headers"),)
