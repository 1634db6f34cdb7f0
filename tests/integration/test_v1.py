"""Dialect v1: /api/v1/sessions, /api/v1/sessions/{id}/messages,
/api/v1/model-configs, /api/v1/logs."""

import json
import time

from harness import (BAD_PAGES, BAD_SIZES, BIG_N, V1_CFG_KEYS, V1_LOG_KEYS, V1_MSG_KEYS, im_send,
                     aichat_msg, aichat_session, big_conv, check_msgid, check_uuid4, check_z_time,
                     contents, err_env, is_int, keys_exact, ok_env, ok_json, parse_z_time, q, qs,
                     test, uniq)


def v1_messages(c, sid, query=""):
    data = ok_env(c.get("/api/v1/sessions/%s/messages%s" % (q(sid), query)), "v1 messages")
    assert isinstance(data, dict) and "messages" in data and "total" in data, "data %r" % (
        data,)
    assert isinstance(data["messages"], list) and is_int(data["total"])
    return data


def configs(c):
    data = ok_env(c.get("/api/v1/model-configs"), "GET model-configs")
    assert isinstance(data, dict) and isinstance(data.get("models"), list), "data %r" % (data,)
    return data["models"]


def logs(c, query=""):
    data = ok_env(c.get("/api/v1/logs" + query), "GET logs")
    assert isinstance(data, dict) and isinstance(data.get("logs"), list) and \
        is_int(data.get("total")), "data %r" % (data,)
    return data


def find_keys(obj, path=""):
    """All object keys, recursively."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(k)
            out.extend(find_keys(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_keys(v))
    return out


@test
def v1_session_create(s):
    u = uniq("du")
    data = ok_env(s.c.post("/api/v1/sessions", json={"user_id": u}))
    check_uuid4(data.get("session_id"), "session_id")
    sess = ok_env(s.c.get("/api/chat/sessions/" + data["session_id"]))
    assert (sess["user_id"], sess["message_count"]) == (u, 0), "aichat sees %r" % sess
    d = v1_messages(s.c, data["session_id"])
    assert d["messages"] == [] and d["total"] == 0


@test
def v1_session_create_defaults_and_validation(s):
    u = uniq("du")
    data = ok_env(s.c.post("/api/v1/sessions", json={"user_id": u}))
    check_uuid4(data.get("session_id"))
    assert ok_env(s.c.get("/api/chat/sessions/" + data["session_id"]))["user_id"] == u
    err_env(s.c.post("/api/v1/sessions", json={}), 400)  # user_id is required
    err_env(s.c.post("/api/v1/sessions", json={"user_id": 5}), 400)
    err_env(s.c.post("/api/v1/sessions", json={"user_id": u, "model_config_id": uniq("nocfg")}),
            404)
    err_env(s.c.post("/api/v1/sessions", json=[]), 400)
    err_env(s.c.post("/api/v1/sessions", body=b"{nope"), 400)
    cfg = configs(s.c)[0]["config_id"]
    data = ok_env(s.c.post("/api/v1/sessions", json={"user_id": u, "model_config_id": cfg}))
    check_uuid4(data.get("session_id"))


@test
def v1_messages_list_shape_and_types(s):
    sid = aichat_session(s.c)["session_id"]
    a = aichat_msg(s.c, sid, "ai says", "assistant")
    sy = aichat_msg(s.c, sid, "system says", "system")
    d = v1_messages(s.c, sid)
    assert d["total"] == 2 and len(d["messages"]) == 2, "%r" % d
    alist = ok_json(s.c.get("/api/message/list" + qs(session_id=sid)))["messages"]
    for m, want_type, src, am in zip(d["messages"], ("ai", "system"), (a, sy), alist):
        keys_exact(m, V1_MSG_KEYS, "v1 message")
        check_msgid(m["message_id"])
        assert m["message_id"] == am["message_id"], "v1 message_id %r != im %r" % (
            m["message_id"], am["message_id"])
        assert m["type"] == want_type, "type %r, expected %r" % (m["type"], want_type)
        assert m["content"] == src["content"]
        assert m["metadata"] is None, "metadata %r" % (m["metadata"],)
        check_z_time(m["created_time"], what="created_time")


@test
def v1_messages_list_user_type(s):
    sid = uniq("dA")
    m = im_send(s.c, sid, "来自 im 的消息")
    d = v1_messages(s.c, sid)
    first = d["messages"][0]
    assert (first["message_id"], first["type"], first["content"]) == (
        m["message_id"], "user", "来自 im 的消息"), "first %r" % first
    for x in d["messages"][1:]:
        assert x["type"] == "ai", "reply type %r" % x["type"]


@test
def v1_messages_list_pagination(s):
    sid = big_conv(s)
    d = v1_messages(s.c, sid)
    assert d["total"] == BIG_N and [m["content"] for m in d["messages"]] == contents(1, 20), \
        "default page (20): %r" % [m["content"] for m in d["messages"]]
    assert d["messages"][6]["type"] == "system"
    d = v1_messages(s.c, sid, "?page_num=6")
    assert [m["content"] for m in d["messages"]] == contents(101, 105)
    d = v1_messages(s.c, sid, "?page_num=2&page_size=100")
    assert [m["content"] for m in d["messages"]] == contents(101, 105)
    d = v1_messages(s.c, sid, "?page_num=7")
    assert d["messages"] == [] and d["total"] == BIG_N
    for v in BAD_PAGES:
        err_env(s.c.get("/api/v1/sessions/%s/messages?page_num=%s" % (sid, q(v))), 400)
    for v in BAD_SIZES:
        err_env(s.c.get("/api/v1/sessions/%s/messages?page_size=%s" % (sid, q(v))), 400)


@test
def v1_messages_list_unknown_session_404(s):
    err_env(s.c.get("/api/v1/sessions/%s/messages" % uniq("nosuch")), 404)


@test
def v1_mcfg_list_shape(s):
    models = configs(s.c)
    assert models, "no model configs at all"
    for m in models:
        keys_exact(m, V1_CFG_KEYS, "model config")
        assert m["provider"] in ("builtin", "openai", "n8n"), "provider %r" % m["provider"]
        assert isinstance(m["parameters"], dict), "parameters %r is not an object" % (
            m["parameters"],)
        for k in ("config_id", "model_name", "model_version", "system_prompt"):
            assert isinstance(m[k], str), "%s %r" % (k, m[k])
        check_z_time(m["updated_time"], recent=False, what="updated_time")
        for k in find_keys(m):
            assert "key" not in k.lower() and "secret" not in k.lower(), \
                "a model config shows %r" % k


@test
def v1_mcfg_put_takes_effect(s):
    orig = configs(s.c)[0]
    cid = orig["config_id"]
    before = logs(s.c)["total"]
    time.sleep(1.0)  # updated_time has second resolution
    tag = uniq("v")
    try:
        params = dict(orig["parameters"])
        params["it_probe"] = 7
        data = ok_env(s.c.put("/api/v1/model-configs/" + q(cid),
                              json={"model_version": tag, "system_prompt": "测试提示",
                                    "parameters": json.dumps(params)}))
        assert data.get("config_id") == cid, "data %r" % (data,)
        check_z_time(data.get("updated_time"), what="updated_time")
        assert parse_z_time(data["updated_time"]) > parse_z_time(orig["updated_time"])
        got = [m for m in configs(s.c) if m["config_id"] == cid][0]
        assert got["model_version"] == tag, "model_version %r" % got["model_version"]
        assert got["system_prompt"] == "测试提示"
        assert got["parameters"] == params, "parameters %r, expected %r (string form)" % (
            got["parameters"], params)
        assert got["model_name"] == orig["model_name"] and got["provider"] == orig["provider"]
        # the change is in the operation log
        after = logs(s.c)["total"]
        assert after > before, "config change not logged (logs total %d -> %d)" % (
            before, after)
    finally:
        s.c.put("/api/v1/model-configs/" + q(cid), json={
            "model_name": orig["model_name"], "model_version": orig["model_version"],
            "parameters": orig["parameters"], "provider": orig["provider"],
            "system_prompt": orig["system_prompt"]})
    back = [m for m in configs(s.c) if m["config_id"] == cid][0]
    assert back["parameters"] == orig["parameters"] and back["model_version"] == \
        orig["model_version"], "restoring with an object parameters failed: %r" % back


@test
def v1_mcfg_put_validation(s):
    cid = q(configs(s.c)[0]["config_id"])
    p = "/api/v1/model-configs/"
    err_env(s.c.put(p + uniq("nocfg"), json={"model_version": "x"}), 404)
    err_env(s.c.put(p + cid, json={"provider": "bogus"}), 400)
    err_env(s.c.put(p + cid, json={"parameters": 5}), 400)
    err_env(s.c.put(p + cid, json={"parameters": "not json"}), 400)
    err_env(s.c.put(p + cid, json={"parameters": "[1, 2]"}), 400)
    err_env(s.c.put(p + cid, json={"model_name": 5}), 400)
    err_env(s.c.put(p + cid, json=[]), 400)
    err_env(s.c.put(p + cid, body=b'{"model_name": '), 400)


@test
def v1_logs_shape_and_order(s):
    d = logs(s.c)
    assert d["total"] >= 1 and d["logs"], "no log entries (start should be logged)"
    assert len(d["logs"]) <= 20
    for e in d["logs"]:
        keys_exact(e, V1_LOG_KEYS, "log entry")
        assert e["level"] in ("info", "warning", "error"), "level %r" % e["level"]
        assert isinstance(e["message"], str) and e["message"]
        check_z_time(e["created_time"], recent=False, what="created_time")
    times = [e["created_time"] for e in d["logs"]]
    assert times == sorted(times, reverse=True), "not newest first: %r" % times


@test
def v1_logs_filters(s):
    d = logs(s.c, "?level=info")
    assert d["logs"] and all(e["level"] == "info" for e in d["logs"]), "level=info: %r" % (
        d["logs"][:3],)
    total = logs(s.c)["total"]
    assert d["total"] <= total
    d = logs(s.c, "?level=error")
    assert all(e["level"] == "error" for e in d["logs"])
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    d = logs(s.c, "?start_time=" + q(future))
    assert d == {"logs": [], "total": 0} or (d["logs"] == [] and d["total"] == 0), "%r" % d
    d = logs(s.c, "?end_time=2000-01-01T00:00:00Z")
    assert d["logs"] == [] and d["total"] == 0
    d = logs(s.c, "?start_time=0")
    assert d["total"] >= total
    for t in ("2000-01-01 00:00", "2000-01-01T00:00:00", "2000-01-01T00:00Z",
              "2000-01-01T00:00"):
        d = logs(s.c, "?start_time=" + q(t))
        assert d["total"] >= total, "start_time %r: total %r" % (t, d["total"])
    d = logs(s.c, "?end_time=%d" % (int(time.time()) + 3600))
    assert d["total"] >= total
    d = logs(s.c, "?page_size=1")
    assert len(d["logs"]) == 1 and d["total"] >= total
    d = logs(s.c, "?page_num=2147483647")
    assert d["logs"] == [] and d["total"] >= total
    err_env(s.c.get("/api/v1/logs?level=debug"), 400)
    err_env(s.c.get("/api/v1/logs?start_time=yesterday"), 400)
    err_env(s.c.get("/api/v1/logs?end_time=2024-13-45T99:00:00Z"), 400)
    for v in BAD_PAGES:
        err_env(s.c.get("/api/v1/logs?page_num=" + q(v)), 400)
    for v in BAD_SIZES:
        err_env(s.c.get("/api/v1/logs?page_size=" + q(v)), 400)


@test
def v1_wrong_method_and_unknown_route(s):
    r = s.c.delete("/api/v1/model-configs")
    err_env(r, 405)
    assert "GET" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    r = s.c.get("/api/v1/sessions")
    err_env(r, 405)
    assert "POST" in (r.header("Allow") or ""), "Allow %r" % r.header("Allow")
    err_env(s.c.post("/api/v1/logs", json={}), 405)
    err_env(s.c.post("/api/v1/model-configs/x", json={}), 405)
    err_env(s.c.get("/api/v1/no-such-route"), 404)
    err_env(s.c.get("/api/v1/sessions/x/y/z"), 404)
