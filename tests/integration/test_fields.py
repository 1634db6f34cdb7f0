"""Required fields, path ids that are not UTF-8, and nginx's own errors, with auth off.

- The user id each dialect's API (docs/API.md) lists as required (aichat's session create and list,
  /aichat/createsession, v1's session create) is a 400 in the dialect's body when it is
  missing: before, a session was made for `default_user` and aichat's list showed every user's
  sessions.
- A path id that decodes to invalid UTF-8 (or a bad escape) is a 400 or 404 in the
  dialect's body in every dialect, never the 405 the router gave when another method had
  the same pattern.
- nginx's own 400 (a path that climbs above the root), 414 (a long URL) and 494 (a long
  header) come in the route's dialect as JSON, not as nginx's HTML page.
"""

from harness import (aichat_session, err_im, err_chax, err_env, ok_env, raw_exchange, test, uniq)

CLIMB = "..%2F" * 8 + "etc%2Fpasswd"
LONG = "a" * 9000  # over large_client_header_buffers (8 KiB)


def err_for(dialect, r, statuses):
    assert r.status in statuses, "status %d, expected one of %s: %r" % (
        r.status, statuses, r.body[:200])
    if dialect == "im":
        return err_im(r, r.status)
    if dialect == "chax":
        return err_chax(r, r.status)
    return err_env(r, r.status)


# --------------------------------------------------------------------------------------
# required user ids


@test
def aichat_session_create_needs_user_id(s):
    for path in ("/api/chat/session", "/aichat/createsession"):
        err_env(s.c.post(path, json={}), 400)
        err_env(s.c.post(path, json={"title": "t"}), 400)
        err_env(s.c.post(path, json={"user_id": None}), 400)
        err_env(s.c.post(path, json={"user_id": ""}), 400)
        u = uniq("fu")
        sess = ok_env(s.c.post(path, json={"user_id": u}))
        assert sess["user_id"] == u, sess


@test
def aichat_sessions_list_needs_user_id(s):
    u, other = uniq("fl"), uniq("fo")
    mine = aichat_session(s.c, user_id=u)["session_id"]
    theirs = aichat_session(s.c, user_id=other)["session_id"]
    for body in ({}, {"page": 1, "page_size": 100}, {"user_id": ""}, {"user_id": None}):
        r = s.c.post("/api/chat/sessions", json=body)
        err_env(r, 400, what="list without user_id (%r)" % (body,))
    ids = [x["session_id"] for x in ok_env(s.c.post("/api/chat/sessions",
                                                      json={"user_id": u}))]
    assert ids == [mine] and theirs not in ids, ids


@test
def v1_session_create_needs_user_id(s):
    err_env(s.c.post("/api/v1/sessions", json={}), 400)
    err_env(s.c.post("/api/v1/sessions", body=b""), 400)
    err_env(s.c.post("/api/v1/sessions", json={"model_config_id": "builtin"}), 400)
    u = uniq("fd")
    sid = ok_env(s.c.post("/api/v1/sessions", json={"user_id": u}))["session_id"]
    assert ok_env(s.c.get("/api/chat/sessions/" + sid))["user_id"] == u


@test
def v1_send_needs_user_id(s):
    # the send's body names its sender (user_id, as the session's): without it, a 400 and
    # nothing is stored or answered
    sid = ok_env(s.c.post("/api/v1/sessions", json={"user_id": uniq("fs")}))["session_id"]
    path = "/api/v1/sessions/%s/messages" % sid
    for body in ({"message": "hi"}, {"user_id": "", "message": "hi"}, {"user_id": None, "message": "hi"}):
        err_env(s.c.post(path, json=body), 400, "用户ID不能为空")
    assert ok_env(s.c.get(path))["total"] == 0
    u = uniq("fs")
    d = ok_env(s.c.post(path, json={"user_id": u, "message": "hi"}))
    assert d["ai_message"]["content"], d
    a = s.c.get("/api/message/list?session_id=" + sid).json["messages"]
    assert a[0]["from_user_id"] == u, a


@test
def other_required_fields_stay_required(s):
    # im: content and session_id; aichat: session_id and content; chax: content; aichat's edits
    err_im(s.c.post("/api/message/send", json={"content": "x"}), 400, 1003)
    err_im(s.c.post("/api/message/send", json={"session_id": uniq("fa")}), 400, 1001)
    err_im(s.c.get("/api/message/list"), 400, 1003)
    err_im(s.c.get("/api/ai/records"), 400, 1003)
    err_env(s.c.post("/api/chat/message", json={"content": "x"}), 400)
    sid = aichat_session(s.c, user_id=uniq("fb"))["session_id"]
    err_env(s.c.post("/api/chat/message", json={"session_id": sid}), 400)
    err_env(s.c.patch("/api/chat/sessions/" + sid, json={}), 400)
    err_chax(s.c.post("/ai/chat", json={}), 400, "content is required")


# --------------------------------------------------------------------------------------
# path ids that are not UTF-8

BAD_IDS = ("%FF%FE", "%C3", "%ED%A0%80", "%zz", "a%00b")
PATH_ROUTES = [
    ("aichat", "GET", "/api/chat/sessions/{}"),
    ("im", "GET", "/api/message/{}"),
    ("aichat", "DELETE", "/api/chat/sessions/{}"),
    ("aichat", "PATCH", "/api/chat/sessions/{}"),
    ("aichat", "GET", "/api/chat/sessions/{}/messages"),
    ("aichat", "GET", "/api/chat/sessions/x/messages/{}"),
    ("aichat", "DELETE", "/api/chat/messages/{}"),
    ("aichat", "PATCH", "/api/chat/messages/{}"),
    ("aichat", "GET", "/aichat/getsessionlist/{}"),
    ("aichat", "GET", "/aichat/getsessionlistshow/{}"),
    ("aichat", "GET", "/aichat/sessions/{}"),
    ("aichat", "PATCH", "/aichat/sessions/{}"),
    ("aichat", "DELETE", "/aichat/deletesession/{}"),
    ("aichat", "GET", "/aichat/sessions/{}/messages"),
    ("chax", "GET", "/ai/message/list/{}"),
    ("chax", "GET", "/ai/message/content/{}"),
    ("chax", "GET", "/ai/message/stream/{}"),
    ("chax", "POST", "/ai/message/stop/{}"),
    ("v1", "GET", "/api/v1/sessions/{}/messages"),
    ("v1", "POST", "/api/v1/sessions/{}/messages"),
    ("v1", "PUT", "/api/v1/model-configs/{}"),
]


def path_id_checks(s, client):
    for dialect, method, pat in PATH_ROUTES:
        for bad in BAD_IDS:
            path = pat.format(bad)
            body = {"new_title": "t", "new_content": "t", "user_id": "default_user",
                    "message": "hi", "model_name": "m"}
            r = client.req(method, path, json=body)
            assert r.status != 405, "%s %s: 405 for a bad id" % (method, path)
            err_for(dialect, r, (400, 404))


@test
def path_ids_not_utf8(s):
    path_id_checks(s, s.c)


# --------------------------------------------------------------------------------------
# nginx's own errors

NGINX_PATHS = [
    ("im", "/api/message/"), ("im", "/api/ai/records/"), ("im", "/health/"),
    ("aichat", "/api/chat/sessions/"), ("aichat", "/aichat/sessions/"),
    ("chax", "/ai/message/content/"), ("v1", "/api/v1/sessions/"),
    ("workflow", "/api/chat/history/"),
]


def parse_raw(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def check_nginx_error(dialect, data, status, what):
    import json
    assert data, "%s: no answer" % what
    code, hdrs, body = parse_raw(data)
    assert code == status, "%s: status %d, expected %d: %r" % (what, code, status, body[:120])
    assert hdrs.get("content-type", "").startswith("application/json"), \
        "%s: content type %r, body %r" % (what, hdrs.get("content-type"), body[:120])
    j = json.loads(body.decode("utf-8"))
    if dialect == "im":
        assert set(j) == {"code", "message"} and j["code"] == status, (what, j)
    elif dialect == "chax":
        assert set(j) == {"error"} and j["error"], (what, j)
        assert hdrs.get("access-control-allow-origin") == "*", (what, hdrs)
    else:
        assert set(j) == {"code", "message", "data"} and j["code"] == status and \
            j["data"] is None, (what, j)


def nginx_error_checks(s):
    for dialect, prefix in NGINX_PATHS:
        for method in ("GET", "POST"):
            req = ("%s %s%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % (method, prefix, CLIMB)).encode()
            check_nginx_error(dialect, raw_exchange(s.port, req), 400,
                              "%s %s.. above the root" % (method, prefix))
        req = ("GET %s%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
               % (prefix, LONG)).encode()
        check_nginx_error(dialect, raw_exchange(s.port, req), 414, "long URL " + prefix)
        req = ("GET %sx HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\nConnection: close\r\n\r\n"
               % (prefix, LONG)).encode()
        check_nginx_error(dialect, raw_exchange(s.port, req), 400, "long header " + prefix)
    # a request line nginx cannot read at all has no dialect: the shared envelope
    check_nginx_error("aichat", raw_exchange(s.port, b"GARBAGE\r\n\r\n"), 400, "garbage line")


@test
def nginx_errors_in_dialect(s):
    nginx_error_checks(s)
