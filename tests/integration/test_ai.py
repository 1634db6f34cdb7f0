"""AI replies through every dialect, for each provider: builtin, openai and n8n (both
against tests/fake/fake_upstream.py), the failure paths, model-config changes at run time.

This module starts its own stacks (run.py's SELF_MODULES), one per provider set-up, lazily,
and stops them in teardown():
  builtin  AICHATD_PROVIDER=builtin; its `openai` config points at a closed port
  openai   AICHATD_PROVIDER=openai against the fake, AICHATD_REPLY_TIMEOUT_S=2
  n8n      AICHATD_PROVIDER=n8n against the fake's /webhook/output
Which answer the fake gives is chosen by a "[case:NAME]" marker in the message, or by the
model name "fake-NAME" (see fake_upstream.py).
"""

import os
import sys
import threading
import time
import uuid

from harness import (CHAX_MSG_KEYS, poll, REPO, Client, Stack, StackCache, im_send, aichat_msg,
                     aichat_session, check_msgid, err_env, free_port, is_int, keys_exact, ok_env,
                     ok_json, q, test, uniq)

sys.path.insert(0, os.path.join(REPO, "tests", "fake"))
import fake_upstream as fu  # noqa: E402

API_KEY = "sk-it-" + uuid.uuid4().hex  # must never come back from the API
REPLY_TIMEOUT_S = 2
NORMAL = fu.OPENAI_CASES["normal"]["reply"]
N8N_OUTPUT = fu.N8N_CASES["output"]["reply"]

_stacks = StackCache("test_ai")


def fake():
    return _stacks.resource("fake", lambda: fu.FakeUpstream().start(), lambda f: f.stop())


def _env(kind):
    f = fake()
    env = {"AICHATD_BUILTIN_DELAY_MS": "10", "AICHATD_OPENAI_API_KEY": API_KEY,
           "AICHATD_OPENAI_MODEL": "fake-normal", "AICHATD_CONNECT_TIMEOUT_S": "3",
           "AICHATD_OPENAI_BASE_URL": f.openai_base(), "AICHATD_N8N_WEBHOOK_URL": "",
           "AICHATD_REPLY_TIMEOUT_S": "30"}
    if kind == "builtin":
        env["AICHATD_PROVIDER"] = "builtin"
        # nothing listens there: a conversation using the `openai` config is refused
        env["AICHATD_OPENAI_BASE_URL"] = "http://127.0.0.1:%d/v1" % free_port()
    elif kind == "openai":
        env["AICHATD_PROVIDER"] = "openai"
        env["AICHATD_REPLY_TIMEOUT_S"] = str(REPLY_TIMEOUT_S)
    elif kind == "n8n":
        env["AICHATD_PROVIDER"] = "n8n"
        env["AICHATD_N8N_WEBHOOK_URL"] = f.webhook("output")
    return env


class St:
    def __init__(self, stack, env):
        self.stack = stack
        self.env = env
        self.c = Client(stack.port)


def _start(kind):
    env = _env(kind)
    s = Stack(extra_env=env)
    s.start()
    return St(s, env)


def stack(kind):
    return _stacks.get(kind, lambda: _start(kind))


def teardown():
    return _stacks.teardown()


# --------------------------------------------------------------------------------------
# helpers


def im_list(c, sid):
    j = ok_json(c.get("/api/message/list?session_id=%s&page_size=100" % q(sid)),
                "GET /api/message/list")
    return j["messages"]


def im_records(c, sid):
    j = ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid)),
                "GET /api/ai/records")
    return j["records"]


def im_record_of(c, sid, user_msg_id, timeout=10.0, ended=True):
    """The im record of the run a user message started (ended: once its status is not 0)."""
    def look():
        for r in im_records(c, sid):
            if r["user_message_id"] == user_msg_id and (not ended or r["status"] != 0):
                return r
        return None
    return poll(look, timeout, "the im record of %s %s" % (
        user_msg_id, "ending" if ended else "appearing"))


def im_exchange(c, sid, content, timeout=10.0):
    """im: send, poll the list until the reply is there, check its record. Returns (reply
    text, record)."""
    m = im_send(c, sid, content)
    rec = im_record_of(c, sid, m["message_id"], timeout)
    assert rec["status"] == 1, "im record status %r (error %r), expected 1" % (
        rec["status"], rec["error_message"])
    assert is_int(rec["duration_ms"]) and rec["duration_ms"] > 0, \
        "im record duration_ms %r, expected > 0" % (rec["duration_ms"],)
    check_msgid(rec["ai_message_id"], what="im record ai_message_id")
    assert rec["error_message"] in (None, ""), "error_message %r on a done run" % (
        rec["error_message"],)

    def reply():
        for x in im_list(c, sid):
            if x["message_id"] == rec["ai_message_id"]:
                return x
        return None
    r = poll(reply, 3, "the AI_REPLY %s in /api/message/list" % rec["ai_message_id"])
    assert r["msg_type"] == "AI_REPLY" and r["from_user_id"] == "ai_bot", "reply %r" % (r,)
    ids = [x["message_id"] for x in im_list(c, sid)]
    assert ids.index(m["message_id"]) < ids.index(r["message_id"]), \
        "the reply is listed before its message: %r" % ids
    return r["msg_content"], rec


def aichat_exchange(c, content, timeout=10.0):
    sid = aichat_session(c)["session_id"]
    um = aichat_msg(c, sid, content, "user")

    def reply():
        data = ok_env(c.get("/api/chat/sessions/%s/messages" % q(sid)), "aichat message list")
        a = [m for m in data["items"] if m["role"] == "assistant"]
        return a or None
    got = poll(reply, timeout, "aichat's assistant reply")
    assert len(got) == 1, "aichat lists %d assistant messages" % len(got)
    assert got[0]["message_id"] > um["message_id"]
    return got[0]["content"], sid


def chax_chat(c, content, conv=None):
    body = {"content": content}
    if conv:
        body["conversationId"] = conv
    return ok_json(c.post("/ai/chat", json=body), "POST /ai/chat")


def chax_msg(c, conv, msg_id):
    lst = ok_json(c.get("/ai/message/list/%s" % q(conv)), "GET /ai/message/list")
    for m in lst:
        if m["msgId"] == msg_id:
            return m
    raise AssertionError("%s not in /ai/message/list/%s: %r" % (msg_id, conv, lst))


def chax_wait(c, conv, msg_id, timeout=10.0):
    m = poll(lambda: (lambda x: x if x["unfinished"] is False else None)(chax_msg(c, conv, msg_id)),
             timeout, "chax message %s finished" % msg_id)
    keys_exact(m, CHAX_MSG_KEYS, "chax message")
    cont = ok_json(c.get("/ai/message/content/" + q(msg_id)), "GET /ai/message/content")
    keys_exact(cont, ("content", "error"), "chax content")
    return m, cont


def chax_exchange(c, content, timeout=10.0):
    j = chax_chat(c, content)
    m, cont = chax_wait(c, j["conversationId"], j["msgId"], timeout)
    assert m["error"] == "" and cont["error"] == "", "chax error %r / %r" % (m["error"],
                                                                          cont["error"])
    assert m["role"] == "assistant"
    return cont["content"], j["conversationId"]


def v1_session(c, user, cfg=None):
    body = {"user_id": user}
    if cfg:
        body["model_config_id"] = cfg
    return ok_env(c.post("/api/v1/sessions", json=body), "POST /api/v1/sessions")["session_id"]


def v1_send(c, sid, user, message):
    return c.post("/api/v1/sessions/%s/messages" % q(sid),
                  json={"user_id": user, "message": message})


def v1_exchange(c, content, cfg=None):
    user = uniq("du")
    sid = v1_session(c, user, cfg)
    data = ok_env(v1_send(c, sid, user, content), "v1 send")
    check_msgid(data["user_message"]["message_id"], what="v1 user_message.message_id")
    check_msgid(data["ai_message"]["message_id"], what="v1 ai_message.message_id")
    lst = ok_env(c.get("/api/v1/sessions/%s/messages" % q(sid)), "v1 message list")
    got = [(m["type"], m["content"]) for m in lst["messages"]]
    assert got == [("user", content), ("ai", data["ai_message"]["content"])], \
        "v1 list %r" % (got,)
    return data["ai_message"]["content"], sid, user


def workflow_send(c, sid, user, text):
    return c.post("/api/chat/send", json={"sessionId": sid, "userId": user, "chatInput": text})


def workflow_exchange(c, content):
    sid, user = uniq("es"), uniq("eu")
    data = ok_env(workflow_send(c, sid, user, content), "workflow send")
    keys_exact(data, ("reply", "travelPlanId", "travelPlan"), "workflow send data")
    h = ok_env(c.get("/api/chat/history?sessionId=" + q(sid)), "workflow history")
    pairs = [(x["userMessage"], x["aiResponse"]) for x in h["messages"]]
    assert pairs == [(content, data["reply"])], "workflow history %r" % (pairs,)
    return data, sid, user


def logs_mention(c, *needles):
    j = ok_env(c.get("/api/v1/logs?level=error&page_size=100"), "GET /api/v1/logs")
    for e in j["logs"]:
        if any(n and n in e["message"] for n in needles):
            assert e["level"] == "error"
            return e
    raise AssertionError("no error log mentions %r; newest: %r" % (
        needles, [e["message"] for e in j["logs"][:3]]))


def upstream(tok, kind, n=1, timeout=5.0):
    got = fake().wait_for(tok, kind, timeout, n)
    assert len(got) >= n, "the fake saw %d %s request(s) carrying %s, expected %d" % (
        len(got), kind, tok, n)
    return got


def check_openai_req(rec, model="fake-normal"):
    b = rec["body"]
    assert isinstance(b, dict), "the OpenAI request body is not JSON: %r" % rec["raw"][:200]
    assert rec["path"] == "/v1/chat/completions", "path %r" % rec["path"]
    assert b.get("stream") is True, "stream %r, expected true" % (b.get("stream"),)
    assert b.get("model") == model, "model %r, expected %r" % (b.get("model"), model)
    assert rec["headers"].get("authorization") == "Bearer " + API_KEY, \
        "Authorization %r" % (rec["headers"].get("authorization"),)
    msgs = b.get("messages")
    assert isinstance(msgs, list) and msgs and msgs[-1].get("role") == "user", \
        "messages %r" % (msgs,)
    return b


def check_n8n_req(rec, sid, user, content):
    assert rec["body"] == {"sessionId": sid, "userId": user, "chatInput": content}, \
        "n8n body %r, expected exactly {sessionId, userId, chatInput} = %r" % (
            rec["body"], (sid, user, content))
    assert rec["headers"].get("content-type", "").startswith("application/json")


# --------------------------------------------------------------------------------------
# The five dialects, for each provider


def _provider_tests(kind):
    """The five dialects for one provider: the reply each gives, and what went upstream."""

    def expect_reply(got, what):
        assert isinstance(got, str) and got.strip(), "%s: empty reply %r" % (what, got)
        if kind == "openai":
            assert got == NORMAL, "%s: reply %r, expected the fake's %r" % (what, got, NORMAL)
        elif kind == "n8n":
            assert got == N8N_OUTPUT, "%s: reply %r, expected the fake's %r" % (
                what, got, N8N_OUTPUT)

    def upstream_check(tok, content, sid, user, n=1):
        if kind == "builtin":
            assert not fake().find(tok), "builtin went upstream"
            return
        recs = upstream(tok, kind, n)
        for r in recs:
            if kind == "openai":
                b = check_openai_req(r)
                assert b["messages"][-1]["content"] == content, "last message %r" % (
                    b["messages"][-1],)
            else:
                check_n8n_req(r, sid, user, content)

    def t_im(_):
        st = stack(kind)
        tok = uniq("a")
        content = "im 你好 %s" % tok
        sid = uniq("as")
        got, _rec = im_exchange(st.c, sid, content)
        expect_reply(got, "im")
        upstream_check(tok, content, sid, "default_user")
        if kind == "builtin":
            sid2 = uniq("as")
            again, _ = im_exchange(st.c, sid2, content)
            assert again == got, "builtin is not deterministic: %r then %r" % (got, again)
            other, _ = im_exchange(st.c, sid2, content + "!")
            assert other != got, "builtin gives the same reply to different messages"

    def t_aichat(_):
        st = stack(kind)
        tok = uniq("b")
        content = "aichat 你好 %s" % tok
        got, sid = aichat_exchange(st.c, content)
        expect_reply(got, "aichat")
        upstream_check(tok, content, sid, "default_user")

    def t_chax(_):
        st = stack(kind)
        tok = uniq("c")
        content = "chax 你好 %s" % tok
        got, conv = chax_exchange(st.c, content)
        expect_reply(got, "chax")
        upstream_check(tok, content, conv, "default_user")

    def t_v1(_):
        st = stack(kind)
        tok = uniq("d")
        content = "v1 你好 %s" % tok
        got, sid, user = v1_exchange(st.c, content)
        expect_reply(got, "v1")
        upstream_check(tok, content, sid, user)

    def t_workflow(_):
        st = stack(kind)
        tok = uniq("e")
        content = "workflow 你好 %s" % tok
        data, sid, user = workflow_exchange(st.c, content)
        expect_reply(data["reply"], "workflow")
        assert data["travelPlanId"] is None and data["travelPlan"] is None, \
            "travel plan without one upstream: %r" % (data,)
        upstream_check(tok, content, sid, user)

    for word, fn in zip(("im", "aichat", "chax", "v1", "workflow"),
                        (t_im, t_aichat, t_chax, t_v1, t_workflow)):
        fn.__name__ = "%s_dialect_%s_reply" % (kind, word)
        fn.__qualname__ = fn.__name__
        test(fn)


for _kind in ("builtin", "openai", "n8n"):
    _provider_tests(_kind)


# --------------------------------------------------------------------------------------
# openai: what goes upstream, the stream shapes, config changes


def _configs(c):
    r = c.get("/api/v1/model-configs")
    data = ok_env(r, "GET /api/v1/model-configs")
    return {m["config_id"]: m for m in data["models"]}, r


def _put_cfg(c, cfg, body):
    ok_env(c.put("/api/v1/model-configs/" + cfg, json=body), "PUT model-configs/" + cfg)


@test
def openai_request_carries_history_model_and_parameters(_):
    st = stack("openai")
    cfg = _configs(st.c)[0]["openai"]
    sid, tok = uniq("hist"), uniq("h")
    first, second = "第一句 %s" % tok, "第二句 %s" % tok
    r1, _ = im_exchange(st.c, sid, first)
    im_exchange(st.c, sid, second)
    req = [r for r in upstream(second, "openai") if fu.user_text(r) == second][0]
    b = check_openai_req(req, cfg["model_name"])
    want = [{"role": "user", "content": first}, {"role": "assistant", "content": r1},
            {"role": "user", "content": second}]
    if cfg["system_prompt"]:
        want.insert(0, {"role": "system", "content": cfg["system_prompt"]})
    got = [{"role": m.get("role"), "content": m.get("content")} for m in b["messages"]]
    assert got == want, "messages %r, expected %r" % (got, want)
    for k, v in cfg["parameters"].items():
        assert b.get(k) == v, "parameter %s: %r upstream, %r in the config" % (k, b.get(k), v)


@test
def openai_system_prompt_and_parameters_from_config(_):
    st = stack("openai")
    before = _configs(st.c)[0]["openai"]
    tok = uniq("sp")
    prompt = "你是测试助手 %s" % tok
    try:
        _put_cfg(st.c, "openai", {"system_prompt": prompt, "parameters": {
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 77, "stream": False,
            "messages": []}})
        content = "用系统提示 %s" % tok
        got, _, _ = v1_exchange(st.c, content)
        assert got == NORMAL, "reply %r" % got
        b = check_openai_req(upstream(content, "openai")[0])
        assert b["messages"][0] == {"role": "system", "content": prompt}, \
            "first message %r, expected the config's system prompt" % (b["messages"][0],)
        assert b["messages"][-1] == {"role": "user", "content": content}
        assert (b.get("temperature"), b.get("top_p"), b.get("max_tokens")) == (0.2, 0.9, 77), \
            "parameters upstream %r" % ({k: b.get(k) for k in ("temperature", "top_p",
                                                                "max_tokens")},)
    finally:
        _put_cfg(st.c, "openai", {"system_prompt": before["system_prompt"],
                                  "parameters": before["parameters"]})


def _stream_shape(case):
    def t(_):
        st = stack("openai")
        tok = uniq(case)
        got, _ = im_exchange(st.c, uniq("shape"), "[case:%s] %s" % (case, tok))
        want = fu.OPENAI_CASES[case]["reply"]
        assert got == want, "reply %r, expected %r" % (got, want)
    t.__name__ = t.__qualname__ = "openai_stream_%s" % case
    test(t)


for _case in ("split", "crlf", "json"):
    _stream_shape(_case)


@test
def openai_slow_stream_is_readable_while_it_grows(_):
    st = stack("openai")
    j = chax_chat(st.c, "[case:slow] %s" % uniq("slow"))
    want = fu.OPENAI_CASES["slow"]["reply"]
    seen = []
    end = time.time() + 10
    while time.time() < end:
        cont = ok_json(st.c.get("/ai/message/content/" + q(j["msgId"])))
        if not seen or seen[-1] != cont["content"]:
            seen.append(cont["content"])
        if chax_msg(st.c, j["conversationId"], j["msgId"])["unfinished"] is False:
            break
        time.sleep(0.03)
    m, cont = chax_wait(st.c, j["conversationId"], j["msgId"])
    assert cont["content"] == want and m["error"] == "", "final %r %r" % (cont, m)
    partial = [s for s in seen if s and s != want]
    assert partial, "never saw the reply part-way (contents seen: %r)" % (seen,)
    assert all(want.startswith(s) for s in seen), "a content seen is not a prefix: %r" % seen


@test
def every_dialect_reads_a_growing_reply_as_the_daemon_holds_it(_):
    # the database has a reply only once it ends: im's and aichat's reads of one message ask the
    # daemon for the content so far, like chax's content route
    st = stack("openai")
    j = chax_chat(st.c, "[case:slow] %s" % uniq("grow"))
    want = fu.OPENAI_CASES["slow"]["reply"]
    seen_im, seen_aichat = [], []
    end = time.time() + 10
    while time.time() < end:
        a = ok_json(st.c.get("/api/message/" + q(j["msgId"])), "im GET message")
        b = ok_env(st.c.get("/api/chat/sessions/%s/messages/%d" % (q(j["conversationId"]),
                                                                    a["id"])), "aichat GET message")
        seen_im.append(a["msg_content"])
        seen_aichat.append(b["content"])
        if seen_im[-1] == want and seen_aichat[-1] == want:
            break
        time.sleep(0.03)
    for name, seen in (("im", seen_im), ("aichat", seen_aichat)):
        assert seen[-1] == want, "%s's last read %r, expected %r" % (name, seen[-1], want)
        assert all(want.startswith(s) for s in seen), "%s read a non-prefix: %r" % (name, seen)
        assert [s for s in seen if s and s != want], \
            "%s never read the reply part-way: %r" % (name, seen)


@test
def openai_model_name_change_takes_effect_without_restart(_):
    st = stack("openai")
    before = _configs(st.c)[0]["openai"]
    tok = uniq("mn")
    try:
        _put_cfg(st.c, "openai", {"model_name": "fake-split"})
        assert _configs(st.c)[0]["openai"]["model_name"] == "fake-split"
        want = fu.OPENAI_CASES["split"]["reply"]
        got, _, _ = v1_exchange(st.c, "v1 %s" % tok)
        assert got == want, "v1 reply %r, expected the fake-split case %r" % (got, want)
        # several im messages: whichever worker takes them, the daemon uses the new model
        for i in range(3):
            got, _ = im_exchange(st.c, uniq("mn"), "im%d %s" % (i, tok))
            assert got == want, "im reply %r" % got
        reqs = upstream(tok, "openai", 4)
        assert [r["body"]["model"] for r in reqs] == ["fake-split"] * 4, \
            "models upstream %r" % ([r["body"]["model"] for r in reqs],)
    finally:
        _put_cfg(st.c, "openai", {"model_name": before["model_name"]})
    got, _, _ = v1_exchange(st.c, "back %s" % uniq("mn"))
    assert got == NORMAL, "after changing back: %r" % got


@test
def config_provider_change_takes_effect_for_the_next_message(_):
    st = stack("openai")
    before = _configs(st.c)[0]["builtin"]
    user = uniq("pu")
    sid = v1_session(st.c, user, "builtin")
    t1, t2 = uniq("p1"), uniq("p2")
    try:
        r1 = ok_env(v1_send(st.c, sid, user, "内置 %s" % t1), "v1 send (builtin)")
        assert r1["ai_message"]["content"] and not fake().find(t1), \
            "a builtin conversation went upstream"
        _put_cfg(st.c, "builtin", {"provider": "openai", "model_name": "fake-json"})
        r2 = ok_env(v1_send(st.c, sid, user, "改成 openai %s" % t2), "v1 send (now openai)")
        assert r2["ai_message"]["content"] == fu.OPENAI_CASES["json"]["reply"], \
            "reply %r after the provider change" % (r2["ai_message"]["content"],)
        b = check_openai_req(upstream(t2, "openai")[0], "fake-json")
        hist = [m["content"] for m in b["messages"][:-1]]
        assert "内置 %s" % t1 in hist and r1["ai_message"]["content"] in hist, \
            "the earlier builtin exchange is not in the history sent: %r" % (hist,)
    finally:
        _put_cfg(st.c, "builtin", {"provider": before["provider"],
                                   "model_name": before["model_name"]})


@test
def no_api_key_in_any_response(_):
    st = stack("openai")
    models, r = _configs(st.c)
    for needle in (API_KEY.encode(), API_KEY[6:].encode()):
        assert needle not in r.body, "GET /api/v1/model-configs shows the API key"
    for m in models.values():
        bad = [k for k in m if "key" in k.lower() or "secret" in k.lower()]
        assert not bad, "config %s has fields %r" % (m["config_id"], bad)
    for path in ("/api/v1/logs?page_size=100", "/api/v1/model-configs", "/health"):
        assert API_KEY.encode() not in st.c.get(path).body, "%s shows the API key" % path
    # and the key is really in use upstream, so its absence above means something
    reqs = fake().requests("openai")
    assert reqs and reqs[-1]["headers"].get("authorization") == "Bearer " + API_KEY


# --------------------------------------------------------------------------------------
# failures: every dialect sees them


def _failure(stack_kind, case, timeout=False):
    def t(_):
        st = stack(stack_kind)
        c = st.c
        tok = uniq("f")
        text = "[case:%s] %s" % (case, tok)
        t0 = time.time()
        im_sid = uniq("fa")
        am = im_send(c, im_sid, text + " im")
        cj = chax_chat(c, text + " chax")
        duser = uniq("fd")
        dsid = v1_session(c, duser)
        out = {}

        def run(name, fn):
            try:
                out[name] = fn()
            except Exception as e:  # noqa: BLE001
                out[name] = e
        th = [threading.Thread(target=run, args=("d", lambda: v1_send(c, dsid, duser,
                                                                       text + " v1"))),
              threading.Thread(target=run, args=("e", lambda: workflow_send(
                  c, uniq("fe"), uniq("u"), text + " workflow")))]
        for x in th:
            x.start()
        for x in th:
            x.join(60)
        problems = []

        def check(what, fn):
            try:
                fn()
            except AssertionError as e:
                problems.append("%s: %s" % (what, e))

        def im_check():
            rec = im_record_of(c, im_sid, am["message_id"], 15)
            assert rec["status"] == 2, "record status %r, expected 2 (failed)" % rec["status"]
            assert isinstance(rec["error_message"], str) and rec["error_message"], \
                "record error_message %r" % (rec["error_message"],)
            hint = (fu.OPENAI_CASES if stack_kind == "openai" else fu.N8N_CASES)[case]["error"]
            if hint:
                assert hint in rec["error_message"], "error_message %r does not say %r" % (
                    rec["error_message"], hint)
            check_msgid(rec["ai_message_id"], what="ai_message_id")
            assert is_int(rec["duration_ms"]) and rec["duration_ms"] >= 0
            logs_mention(c, rec["record_id"])

        def chax_check():
            m, cont = chax_wait(c, cj["conversationId"], cj["msgId"], 15)
            assert m["unfinished"] is False and m["error"], "chax message %r" % (m,)
            assert cont["error"], "chax content %r has no error" % (cont,)

        def v1_check():
            r = out.get("d")
            assert not isinstance(r, Exception), "v1 send raised %r" % (r,)
            err_env(r, 504 if timeout else 502, what="v1 send")

        def workflow_check():
            r = out.get("e")
            assert not isinstance(r, Exception), "workflow send raised %r" % (r,)
            j = err_env(r, 500, what="workflow send")
            assert j["message"].startswith("发送消息失败"), \
                "workflow message %r" % j["message"]

        check("im", im_check)
        check("chax", chax_check)
        check("v1", v1_check)
        check("workflow", workflow_check)
        if timeout:
            took = time.time() - t0
            assert took < REPLY_TIMEOUT_S + 8, "the hang took %.1f s to fail" % took
            for r in fake().find(tok):
                ca = r["closed_after"]
                if ca is None or ca > REPLY_TIMEOUT_S + 3:
                    problems.append("the daemon kept a hung upstream connection open "
                                    "(closed after %r s)" % (ca,))
                    break
        assert not problems, "; ".join(problems)
    t.__name__ = t.__qualname__ = "%s_failure_%s" % (stack_kind, case)
    test(t)


for _case in ("500", "malformed", "error", "cut"):
    _failure("openai", _case)
_failure("openai", "hang", timeout=True)


@test
def openai_refused_connection_fails_the_run_clearly(_):
    st = stack("builtin")  # its `openai` config points at a closed port
    user = uniq("ru")
    sid = v1_session(st.c, user, "openai")
    t0 = time.time()
    r = v1_send(st.c, sid, user, "refused %s" % uniq("r"))
    took = time.time() - t0
    j = err_env(r, 502, what="v1 send to a closed port")
    assert "connect" in j["message"].lower(), "v1 message %r does not say it could not " \
        "connect" % j["message"]
    assert took < 5, "a refused connection took %.1f s to fail" % took
    recs = im_records(st.c, sid)
    assert len(recs) == 1 and recs[0]["status"] == 2, "records %r" % (recs,)
    assert "connect" in (recs[0]["error_message"] or "").lower(), \
        "record error_message %r" % (recs[0]["error_message"],)
    logs_mention(st.c, recs[0]["record_id"])


# --------------------------------------------------------------------------------------
# n8n: reply shapes, the travel plan, failures


def _n8n_shape(case):
    def t(_):
        st = stack("n8n")
        text = "[case:%s] %s" % (case, uniq("n"))
        sid = uniq("ns")
        got, _ = im_exchange(st.c, sid, text)
        want = fu.N8N_CASES[case]["reply"]
        assert got == want, "reply %r, expected %r" % (got, want)
        check_n8n_req(upstream(text, "n8n")[0], sid, "default_user", text)
    t.__name__ = t.__qualname__ = "n8n_reply_%s" % case
    test(t)


for _case in ("array", "stream", "ndjson"):
    _n8n_shape(_case)


@test
def workflow_send_n8n_travel_plan(_):
    st = stack("n8n")
    text = "[case:travel] 帮我规划上海三日游 %s" % uniq("t")
    data, sid, user = workflow_exchange(st.c, text)
    assert data["reply"] == fu.N8N_CASES["travel"]["reply"], "reply %r" % (data["reply"],)
    assert is_int(data["travelPlanId"]) and data["travelPlanId"] > 0, \
        "travelPlanId %r" % (data["travelPlanId"],)
    assert data["travelPlan"] == fu.N8N_CASES["travel"]["travelPlan"], "travelPlan %r" % (data["travelPlan"],)
    check_n8n_req(upstream(text, "n8n")[0], sid, user, text)
    data2 = ok_env(workflow_send(st.c, sid, user, text + " again"), "workflow send again")
    assert is_int(data2["travelPlanId"]) and data2["travelPlanId"] != data["travelPlanId"], \
        "second travelPlanId %r" % (data2["travelPlanId"],)


_failure("n8n", "500")
