"""Required fields under auth = jwt: a missing user id is the token's subject; a different
one is a 403. Path ids that are not UTF-8 and nginx's own errors get the dialect's body
with a token too. Run against a stack started with AICHATD_AUTH=jwt."""

from harness import err_env, make_jwt, ok_env, ok_json, test, uniq
from test_fields import nginx_error_checks, path_id_checks
import time


def client_of(s, sub, role=None):
    p = {"sub": sub, "exp": int(time.time()) + 3600}
    if role:
        p["role"] = role
    return s.c.with_token(make_jwt(p, s.secret))


@test
def missing_user_id_is_token_subject(s):
    u, other = uniq("ju"), uniq("jo")
    c, co = client_of(s, u), client_of(s, other)
    for path in ("/api/chat/session", "/aichat/createsession"):
        assert ok_env(c.post(path, json={}))["user_id"] == u
        assert ok_env(c.post(path, json={"user_id": ""}))["user_id"] == u
        err_env(c.post(path, json={"user_id": other}), 403)
    theirs = ok_env(co.post("/api/chat/session", json={}))["session_id"]
    lst = ok_env(c.post("/api/chat/sessions", json={}))
    assert len(lst) == 4 and all(x["user_id"] == u for x in lst), lst
    assert theirs not in [x["session_id"] for x in lst]
    err_env(c.post("/api/chat/sessions", json={"user_id": other}), 403)
    sid = ok_env(c.post("/api/v1/sessions", json={}))["session_id"]
    assert ok_env(c.get("/api/chat/sessions/" + sid))["user_id"] == u
    err_env(c.post("/api/v1/sessions", json={"user_id": other}), 403)
    # v1's send: a missing user_id is the token's subject too
    d = ok_env(c.post("/api/v1/sessions/%s/messages" % sid, json={"message": "hi"}))
    assert d["ai_message"]["content"], d
    a = ok_json(c.get("/api/message/list?session_id=" + sid))["messages"]
    assert a[0]["from_user_id"] == u, a
    err_env(c.post("/api/v1/sessions/%s/messages" % sid,
                   json={"user_id": other, "message": "hi"}), 403)
    # no token at all is still a 401, not a 400 for the missing field
    err_env(s.c.post("/api/chat/session", json={}), 401)


@test
def path_ids_not_utf8_with_token(s):
    path_id_checks(s, client_of(s, uniq("jp"), "admin"))


@test
def nginx_errors_in_dialect_with_auth(s):
    nginx_error_checks(s)
