"""Hostile input: malformed JSON, non-objects, wrong types, invalid UTF-8, oversized bodies,
unknown routes, wrong methods, odd HTTP. The stack must answer each in the dialect's error
body and keep serving."""

import json
import socket
import threading
import time

from harness import (BODY_LIMIT, im_send, aichat_session, err_im, err_chax, err_env, expect, ok_env,
                     ok_json, q, qs, raw_exchange, request, test, uniq)

MALFORMED = [b'{"content": "x",', b"{", b"not json", b'{"content": "x"}}', b'{"a":1} {"b":2}',
             b"{'content': 'x'}", b'{"content": "x" "session_id": "y"}', b"\xef\xbb\xbf{]"]
NON_OBJECTS = [b"[]", b'"a string"', b"42", b"null", b"true", b'[{"content":"x"}]']


def _cid(s):
    if "cid" not in s.cache:
        data = ok_env(s.c.get("/api/v1/model-configs"))
        s.cache["cid"] = data["models"][0]["config_id"]
    return s.cache["cid"]


def endpoints(s):
    """(name, method, path, body builder from a JSON value fragment, error checker)."""
    bsid = s.cache.get("hsid")
    if bsid is None:
        bsid = s.cache["hsid"] = aichat_session(s.c)["session_id"]
    cid = q(_cid(s))
    return [
        ("im send", "POST", "/api/message/send",
         lambda f: b'{"session_id":"hostile","content":' + f + b"}", "im"),
        ("aichat create session", "POST", "/api/chat/session",
         lambda f: b'{"user_id":"h","title":' + f + b"}", "aichat"),
        ("aichat message", "POST", "/api/chat/message",
         lambda f: b'{"session_id":"' + bsid.encode() + b'","role":"assistant","content":' + f
         + b"}", "aichat"),
        ("aichat title", "PATCH", "/api/chat/sessions/" + bsid,
         lambda f: b'{"new_title":' + f + b"}", "aichat"),
        ("chax chat", "POST", "/ai/chat", lambda f: b'{"content":' + f + b"}", "chax"),
        ("v1 session", "POST", "/api/v1/sessions", lambda f: b'{"user_id":' + f + b"}", "v1"),
        ("v1 config", "PUT", "/api/v1/model-configs/" + cid,
         lambda f: b'{"system_prompt":' + f + b"}", "v1"),
    ]


def check_err(dialect, r, status, what, im_codes=None):
    try:
        if dialect == "im":
            err_im(r, status, im_codes)
        elif dialect == "chax":
            err_chax(r, status)
        else:
            err_env(r, status)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (what, e))


@test
def malformed_json_each_dialect(s):
    for name, method, path, _, d in endpoints(s):
        for body in MALFORMED:
            r = s.c.req(method, path, body=body)
            check_err(d, r, 400, "%s with %r" % (name, body))
            if d == "chax":
                assert r.json["error"] == "invalid JSON body", "%s: %r" % (name, r.json)


@test
def non_object_json_each_dialect(s):
    for name, method, path, _, d in endpoints(s):
        for body in NON_OBJECTS:
            check_err(d, s.c.req(method, path, body=body), 400, "%s with %r" % (name, body))


@test
def wrong_json_types_each_dialect(s):
    for name, method, path, build, d in endpoints(s):
        for frag in (b"123", b"true", b"[\"x\"]", b'{"x":1}', b"1.5"):
            check_err(d, s.c.req(method, path, body=build(frag)), 400,
                      "%s with field %r" % (name, frag), im_codes={400, 1001})
    err_im(s.c.post("/api/message/send", json={"session_id": 123, "content": "x"}), 400,
          {400, 1003})
    err_im(s.c.post("/api/message/send", json={"session_id": ["x"], "content": "x"}), 400,
          {400, 1003})


@test
def invalid_utf8_each_dialect(s):
    bad = [b'"\xff\xfe"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"abc\xe4\xb8"', b'"\xf8\x88\x80\x80\x80"']
    for name, method, path, build, d in endpoints(s):
        for frag in bad:
            check_err(d, s.c.req(method, path, body=build(frag)), 400,
                      "%s with bytes %r" % (name, frag))


@test
def nul_escape_is_malformed(s):
    for name, method, path, build, d in endpoints(s):
        check_err(d, s.c.req(method, path, body=build(b'"a\\u0000b"')), 400,
                  "%s with \\u0000" % name)


@test
def deep_nesting_and_lone_surrogate_do_not_crash(s):
    r = s.c.post("/api/message/send", body=b'{"content":' + b"[" * 100000 + b"}")
    err_im(r, 400)
    r = s.c.post("/ai/chat", body=b'{"content":"' + b"\\ud800" + b'"}')
    assert r.status in (200, 400), "lone surrogate: %r" % r
    r = s.c.post("/api/message/send", body=b'{"content":"x","session_id":"h","n":'
                 + b"9" * 5000 + b"}")
    assert r.status in (200, 400), "5000-digit number: %r" % r
    expect(s.c.get("/health"), 200)


@test
def code_points_not_bytes(s):
    sid = aichat_session(s.c)["session_id"]
    # 5000 astral characters, sent as JSON surrogate-pair escapes: 5000 code points
    body = json.dumps({"session_id": sid, "content": "😀" * 5000}, ensure_ascii=True).encode()
    m = ok_json(s.c.post("/api/message/send", body=body), "5000 emoji (escaped)")
    assert m["msg_content"] == "😀" * 5000, "stored %d code points" % len(m["msg_content"])
    body = json.dumps({"session_id": sid, "content": "😀" * 5001}, ensure_ascii=True).encode()
    err_im(s.c.post("/api/message/send", body=body), 400, 1002)
    # raw UTF-8, 4 bytes each
    m = ok_env(s.c.post("/api/chat/message", json={"session_id": sid, "role": "assistant",
                                                   "content": "😀" * 5000}))
    assert m["content"] == "😀" * 5000
    err_env(s.c.post("/api/chat/message", json={"session_id": sid, "role": "assistant",
                                                "content": "😀" * 5001}), 400)
    ok_json(s.c.post("/ai/chat", json={"conversationId": sid, "content": "é" * 5000}))
    err_chax(s.c.post("/ai/chat", json={"conversationId": sid, "content": "é" * 5001}), 400,
          "content is too long")


@test
def body_over_limit_each_dialect(s):
    big = b"a" * (BODY_LIMIT + BODY_LIMIT // 2)
    for name, method, path, build, d in endpoints(s):
        r = s.c.req(method, path, body=build(b'"' + big + b'"'))
        check_err(d, r, 413, "%s with a %d-byte body" % (name, len(big)))


@test
def body_limit_boundary(s):
    sid = uniq("lim")
    head = json.dumps({"session_id": sid, "content": "边界"}).encode()
    exact = head + b" " * (BODY_LIMIT - len(head))
    assert len(exact) == BODY_LIMIT
    r = s.c.post("/api/message/send", body=exact)
    m = ok_json(r, "a body of exactly the limit")
    assert m["msg_content"] == "边界" and m["session_id"] == sid
    err_im(s.c.post("/api/message/send", body=exact + b" "), 413)


@test
def chunked_bodies(s):
    sid = uniq("chk")
    body = json.dumps({"session_id": sid, "content": "分块"}).encode()
    m = ok_json(s.c.post("/api/message/send", body=body, chunked=True), "chunked body")
    assert m["msg_content"] == "分块"
    big = b'{"session_id":"x","content":"' + b"a" * (BODY_LIMIT + BODY_LIMIT // 2) + b'"}'
    err_im(s.c.post("/api/message/send", body=big, chunked=True), 413)
    err_chax(s.c.post("/ai/chat", body=big, chunked=True), 413)


@test
def unknown_routes(s):
    checks = [
        ("GET", "/api/zzz", "env"), ("POST", "/api/v2/sessions", "env"),
        ("GET", "/api/chat", "env"), ("GET", "/api", "env"), ("GET", "/aichat", "env"),
        ("GET", "/ai", "chax"), ("GET", "/api/message", "im"), ("GET", "/api/ai", "im"),
        ("GET", "/api/message/" + "a" * 3000, "im"),
        ("GET", "/api/message/99999999999999999999999", "im"),
        ("PATCH", "/api/chat/messages/99999999999999999999", "env"),
        ("GET", "/api/chat/sessions/x/messages/-1", "env"),
    ]
    bad = []
    for method, path, d in checks:
        kw = {"json": {"new_content": "x"}} if method in ("POST", "PATCH") else {}
        r = s.c.req(method, path, **kw)
        try:
            if d == "im":
                err_im(r, 404)
            elif d == "chax":
                err_chax(r, 404)
            else:
                err_env(r, 404)
        except AssertionError:
            bad.append("%s %s -> %d %s" % (method, path[:40], r.status,
                                           r.body[:40].decode("utf-8", "replace")))
    r = s.c.get("/api/message/%ff%fe")
    try:
        assert r.status in (400, 404)
        err_im(r, r.status)
    except AssertionError:
        bad.append("GET /api/message/%%ff%%fe -> %r" % r)
    # nginx itself refuses a %00 in the path, before any location: any 400 will do
    r = s.c.get("/api/message/%00")
    if r.status not in (400, 404):
        bad.append("GET /api/message/%%00 -> %d" % r.status)
    r = s.c.get("/no/such/path")
    if r.status != 404:
        bad.append("GET /no/such/path -> %d" % r.status)
    assert not bad, "not a 404 in the dialect's error body: " + "; ".join(bad)


@test
def odd_query_strings(s):
    sid = uniq("qs")
    im_send(s.c, sid, "q")
    for extra in ("&page=1&page=2", "&page=%00", "&page_size=%31%30", "&%zz=1", "&page"):
        r = s.c.get("/api/message/list" + qs(session_id=sid) + extra)
        assert r.status in (200, 400), "%s: %r" % (extra, r)
        if r.status == 400:
            err_im(r, 400)
    r = s.c.get("/api/message/list?session_id=" + q(sid) + "&page_size=%31%30")
    j = ok_json(r, "percent-encoded digits")
    assert j["page_size"] == 10


@test
def garbage_http_then_still_serving(s):
    raw_exchange(s.port, b"GARBAGE\r\n\r\n")
    raw_exchange(s.port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    raw_exchange(s.port, b"POST /api/message/send HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    raw_exchange(s.port, b"\x00\x01\x02\xff" * 100)
    expect(s.c.get("/health"), 200)


@test
def stalled_clients_do_not_block_the_pool(s):
    socks = []
    try:
        for _ in range(12):
            k = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            k.sendall(b"POST /api/message/send HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"co")
            socks.append(k)
        time.sleep(0.2)
        t0 = time.time()
        r = request(s.port, "GET", "/health", timeout=5)
        expect(r, 200)
        m = im_send(s.c, uniq("stall"), "still here")
        assert m["msg_content"] == "still here"
        assert time.time() - t0 < 5, "requests took %.1fs with stalled clients" % (
            time.time() - t0)
    finally:
        for k in socks:
            k.close()


@test
def concurrent_writes(s):
    sid = aichat_session(s.c)["session_id"]
    results, errors = [], []

    def worker(i):
        try:
            r = s.c.post("/api/chat/message", json={"session_id": sid, "role": "assistant",
                                                    "content": "c%02d" % i})
            results.append(r)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert not errors, "transport errors: %r" % errors[:3]
    bad = [r for r in results if r.status != 200]
    assert not bad, "%d of 40 failed, e.g. %r" % (len(bad), bad[:1])
    ids = {r.json["data"]["message_id"] for r in results}
    assert len(ids) == 40, "message ids not distinct"
    sess = ok_env(s.c.get("/api/chat/sessions/" + sid))
    assert sess["message_count"] == 40, "message_count %r after 40 writes" % (
        sess["message_count"],)
    j = ok_json(s.c.get("/api/message/list" + qs(session_id=sid, page_size=100)))
    assert sorted(m["msg_content"] for m in j["messages"]) == ["c%02d" % i for i in range(40)]


@test
def zz_stack_still_serving(s):
    assert s.stack.alive(), "the stack process exited"
    r = s.c.get("/health")
    j = ok_json(r, "GET /health after the hostile tests")
    assert j.get("status") == "ok"
    m = im_send(s.c, uniq("after"), "还活着")
    assert ok_json(s.c.get("/api/message/" + m["message_id"]))["msg_content"] == "还活着"
