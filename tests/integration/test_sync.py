"""The run cap (AICHATD_MAX_RUNS) and synchronous sends that hold no worker.

- At most max_runs AI runs stream at once; the others wait in the database and start as
  runs end, oldest first. A burst of sends against a slow fake upstream
  (tests/fake/fake_upstream.py, which counts the requests it serves at once) never has more
  than the cap upstream, every run completes, in order; a queued run can be read (empty so
  far), streamed, stopped, and survives a restart of the stack.
- v1's and workflow's sends are held by the push daemon, not by a FastCGI thread: with 4 accept
  loops in all and 200 v1 sends waiting on a slow upstream, /health and im's list still
  answer within 50 ms at p99; and a client that reads the conversation the moment a send
  answers sees the reply.

This module starts its own stacks (run.py's SELF_MODULES) and stops them in teardown().
"""

import os
import sys
import threading
import time

from harness import (REPO, Client, Stack, StackCache, im_send, err_env, ok_env, ok_json, poll, q,
                     test, uniq, request)

sys.path.insert(0, os.path.join(REPO, "tests", "fake"))
import fake_upstream as fu  # noqa: E402

_stacks = StackCache("test_sync")  # every Stack started, by number, for teardown


def fake():
    return _stacks.resource("fake", lambda: fu.FakeUpstream().start(), lambda f: f.stop())


def start(env, data_dir=None, workers=None):
    f = fake()
    e = {"AICHATD_PROVIDER": "openai", "AICHATD_OPENAI_BASE_URL": f.openai_base(),
         "AICHATD_OPENAI_API_KEY": "sk-sync-test", "AICHATD_N8N_WEBHOOK_URL": "",
         "AICHATD_CONNECT_TIMEOUT_S": "3", "AICHATD_REPLY_TIMEOUT_S": "30",
         "AICHATD_BUILTIN_DELAY_MS": "10"}
    e.update(env)
    s = Stack(extra_env=e, data_dir=data_dir, workers=workers)
    _stacks.add(str(len(_stacks.order)), s)
    s.start()
    return s


def teardown():
    return _stacks.teardown()


def records(c, sid):
    return ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid)),
                   "GET /api/ai/records")["records"]


def all_done(c, sids, n_each, timeout):
    def look():
        for sid in sids:
            recs = records(c, sid)
            if len(recs) < n_each or any(r["status"] == 0 for r in recs):
                return None
        return True
    poll(look, timeout, "every run of %d sessions ending" % len(sids), every=0.25)
    bad = [r for sid in sids for r in records(c, sid) if r["status"] != 1]
    assert not bad, "%d runs did not complete: %r" % (len(bad), bad[:3])


def burst(c, tok, n, per_session=100):
    """n im sends, one after the other (so their runs' ids follow their numbers)."""
    sids = []
    for i in range(n):
        if i % per_session == 0:
            sids.append(uniq("cap"))
        im_send(c, sids[-1], "%s #%d" % (tok, i))
    return sids


def arrival_order(tok, n):
    got = fake().wait_for(tok, "openai", timeout=5, n=n)
    seen = {}
    for r in got:
        k = int(fu.user_text(r).rsplit("#", 1)[1])
        seen.setdefault(k, r["t"])
    assert len(seen) == n, "the upstream saw %d of the %d runs" % (len(seen), n)
    return seen


def _cap_burst(cap, model, n=400):
    s = start({"AICHATD_OPENAI_MODEL": model} if cap is None else
              {"AICHATD_OPENAI_MODEL": model, "AICHATD_MAX_RUNS": str(cap)})
    limit = cap or 256
    c = Client(s.port)
    f = fake()
    f.reset_inflight()
    tok = uniq("burst")
    t0 = time.time()
    sids = burst(c, tok, n)
    sent = time.time() - t0
    all_done(c, sids, 100, 120)
    most = f.max_inflight
    assert most <= limit, "the upstream served %d requests at once; the cap is %d" % (
        most, limit)
    t = arrival_order(tok, n)
    # started oldest first: a run never reaches the upstream before one sent `limit`
    # sends earlier (runs started together may arrive in any order among themselves)
    late = [(i, j) for i in range(n) for j in range(i + limit, n) if t[j] < t[i]]
    assert not late, "runs started out of order, e.g. #%d after #%d" % (late[0][0],
                                                                       late[0][1])
    return most, sent


@test
def run_cap_16_holds_a_burst_of_400(_):
    most, sent = _cap_burst(16, "fake-pace")
    assert most >= 8, "only %d at once: the burst did not fill the cap" % most


@test
def run_cap_default_256_holds_a_burst_of_400(_):
    most, sent = _cap_burst(None, "fake-hold")
    # the sends took `sent` s, the replies 4 s each: without the cap all 400 would overlap
    assert sent > 4 or most >= 200, "only %d at once in %.1f s of sends" % (most, sent)


def chax_content(c, msg_id):
    return ok_json(c.get("/ai/message/content/" + q(msg_id)), "GET /ai/message/content")


def chax_unfinished(c, conv, msg_id):
    for m in ok_json(c.get("/ai/message/list/%s" % q(conv)), "chax list"):
        if m["msgId"] == msg_id:
            return m["unfinished"]
    raise AssertionError("%s not listed" % msg_id)


def sse_events(port, msg_id, out, timeout=30):
    """Read chax's stream of msg_id into out (a list of (event, data)) until it ends."""
    import http.client
    import json
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/ai/message/stream/" + q(msg_id))
        r = conn.getresponse()
        ev = None
        for raw in r:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                out.append((ev, json.loads(line[6:])))
                if ev in ("done", "error"):
                    return
    finally:
        conn.close()


@test
def run_cap_queued_run_reads_streams_and_stops(_):
    s = start({"AICHATD_OPENAI_MODEL": "fake-normal", "AICHATD_MAX_RUNS": "1"})
    c = Client(s.port)
    f = fake()
    f.reset_inflight()
    tok = uniq("q")
    im_send(c, uniq("blk"), "[case:hold] blocker %s" % tok)
    fake().wait_for("blocker " + tok, "openai", timeout=5)
    t_block = time.time()
    # queued behind the blocker (4 s): read, streamed, and another one stopped
    j = ok_json(c.post("/ai/chat", json={"content": "[case:pace] queued %s" % tok}), "chax chat")
    cont = chax_content(c, j["msgId"])
    assert cont == {"content": "", "error": ""}, "queued content %r" % (cont,)
    assert chax_unfinished(c, j["conversationId"], j["msgId"]) is True
    evs = []
    th = threading.Thread(target=sse_events, args=(s.port, j["msgId"], evs))
    th.start()
    k = ok_json(c.post("/ai/chat", json={"content": "[case:pace] stopped %s" % tok}), "chax chat")
    r = ok_json(c.post("/ai/message/stop/" + q(k["msgId"]), json={}), "stop a queued run")
    assert r["stopped"] is True and r["unfinished"] is False and r["content"] == "", \
        "stop answer %r" % (r,)
    assert time.time() - t_block < 3.5, "the checks took too long to be before the blocker ended"
    assert not fake().find("queued " + tok), "the queued run reached the upstream early"
    th.join(30)
    assert evs and evs[0] == ("init", {"type": "init", "content": ""}), "first event %r" % (
        evs[:1],)
    assert evs[-1][0] == "done" and evs[-1][1]["content"] == fu.OPENAI_CASES["pace"]["reply"], \
        "stream events %r" % (evs,)
    assert chax_content(c, j["msgId"])["content"] == fu.OPENAI_CASES["pace"]["reply"]
    assert chax_unfinished(c, k["conversationId"], k["msgId"]) is False
    assert not fake().find("stopped " + tok), "a stopped queued run still went upstream"
    assert f.max_inflight <= 1, "%d runs upstream at once with a cap of 1" % f.max_inflight


@test
def run_cap_restart_loses_no_queued_run(_):
    env = {"AICHATD_OPENAI_MODEL": "fake-pace", "AICHATD_MAX_RUNS": "4"}
    s1 = start(env)
    f = fake()
    f.reset_inflight()
    tok = uniq("rs")
    sids = burst(Client(s1.port), tok, 60, per_session=30)
    s1.stop(cleanup=False)  # most runs are still queued
    # the stopped daemon closed its upstream requests; the fake sees it at its next write
    poll(lambda: f.inflight == 0 or None, 5, "the fake seeing the old runs go")
    f.reset_inflight()
    s2 = start(env, data_dir=s1.data_dir)
    c = Client(s2.port)
    all_done(c, sids, 30, 60)
    assert f.max_inflight <= 4, "%d at once with a cap of 4" % f.max_inflight
    seen = {int(fu.user_text(r).rsplit("#", 1)[1]) for r in f.find(tok, "openai")}
    assert seen == set(range(60)), "runs never made: %r" % sorted(set(range(60)) - seen)


# --------------------------------------------------------------------------------------
# synchronous sends


def v1_session(c, user):
    return ok_env(c.post("/api/v1/sessions", json={"user_id": user}), "v1 session")["session_id"]


def v1_send(c, sid, user, text, timeout=60):
    return request(c.port, "POST", "/api/v1/sessions/%s/messages" % q(sid),
                   json_body={"user_id": user, "message": text}, timeout=timeout)


def timed_get(port, path):
    t0 = time.time()
    try:
        r = request(port, "GET", path, timeout=2)
        status = r.status
    except OSError:
        status = None
    return (time.time() - t0) * 1000, status


def p99(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * 0.99))]


@test
def sync_sends_leave_the_pool_free(_):
    s = start({"AICHATD_OPENAI_MODEL": "fake-hold", "AICHATD_THREADS": "4"}, workers=1)
    c = Client(s.port)
    asid = uniq("free")
    im_send(c, asid, "a message to list")
    f = fake()
    tok = uniq("pool")
    user = uniq("du")
    sids = [v1_session(c, user) for _ in range(200)]
    out = [None] * 200

    def send(i):
        try:
            out[i] = v1_send(c, sids[i], user, "%s #%d" % (tok, i))
        except Exception as e:  # noqa: BLE001
            out[i] = e
    th = [threading.Thread(target=send, args=(i,)) for i in range(200)]
    for t in th:
        t.start()
    waiting = f.wait_for(tok, "openai", timeout=8, n=200)
    health, lst = [], []
    for _ in range(100):
        health.append(timed_get(s.port, "/health"))
        lst.append(timed_get(s.port, "/api/message/list?session_id=" + q(asid)))
    still = sum(1 for x in out if x is None)
    for t in th:
        t.join(60)
    bad = [x for x in health + lst if x[1] != 200]
    sys.stdout.write("# %d v1 sends upstream, %d unanswered during the probe; /health p99 "
                     "%.1f ms, max %.1f; im list p99 %.1f ms, max %.1f\n" % (
                         len(waiting), still, p99([x[0] for x in health]),
                         max(x[0] for x in health), p99([x[0] for x in lst]),
                         max(x[0] for x in lst)))
    assert not bad, "%d probes failed while sends waited (e.g. %r)" % (len(bad), bad[:3])
    assert len(waiting) >= 200, "only %d of 200 sends reached the upstream at once" % (
        len(waiting),)
    assert still >= 150, "the probe was not made while the sends waited (%d waiting)" % still
    assert p99([x[0] for x in health]) < 50, "/health p99 %.1f ms" % p99([x[0] for x in health])
    assert p99([x[0] for x in lst]) < 50, "im list p99 %.1f ms" % p99([x[0] for x in lst])
    reply = fu.OPENAI_CASES["hold"]["reply"]
    for i, r in enumerate(out):
        assert not isinstance(r, Exception) and r is not None, "send %d: %r" % (i, r)
        d = ok_env(r, "v1 send %d" % i)
        assert d["ai_message"]["content"] == reply, "send %d answered %r" % (i, d)


_builtin = None


def builtin():
    global _builtin
    if _builtin is None:
        _builtin = start({"AICHATD_PROVIDER": "builtin"})
    return Client(_builtin.port)


@test
def v1_send_answer_comes_after_the_commit(_):
    c = builtin()
    user = uniq("du")
    sid = v1_session(c, user)
    for i in range(30):
        d = ok_env(v1_send(c, sid, user, "第 %d 条" % i), "v1 send")
        lst = ok_env(c.get("/api/v1/sessions/%s/messages?page_num=%d&page_size=2" % (
            q(sid), i + 1)), "v1 list")["messages"]
        got = [(m["message_id"], m["type"], m["content"]) for m in lst]
        assert got == [(d["user_message"]["message_id"], "user", "第 %d 条" % i),
                       (d["ai_message"]["message_id"], "ai", d["ai_message"]["content"])], \
            "round %d: the list right after the answer %r" % (i, got)


@test
def workflow_send_answer_comes_after_the_commit(_):
    c = builtin()
    sid, user = uniq("es"), uniq("eu")
    for i in range(30):
        d = ok_env(c.post("/api/chat/send", json={"sessionId": sid, "userId": user,
                                                    "chatInput": "问题 %d" % i}), "workflow send")
        h = ok_env(c.get("/api/chat/history?sessionId=%s&page=%d&page_size=1" % (q(sid), i + 1)),
                   "workflow history")["messages"]
        assert [(x["userMessage"], x["aiResponse"]) for x in h] == [("问题 %d" % i,
                                                                    d["reply"])], \
            "round %d: history right after the answer %r" % (i, h)


@test
def sync_send_errors_keep_their_shape(_):
    c = builtin()
    # 404 for a session nobody made, 400 for a bad body: answered before any hand-over
    err_env(v1_send(c, uniq("nosuch"), "u", "hi"), 404, "会话不存在")
    user = uniq("du")
    sid = v1_session(c, user)
    err_env(v1_send(c, sid, user, ""), 400)
    # the internal routes are not reachable from outside
    for path in ("/_aichatd_result/d/1", "/_aichatd_sync/d/1", "/_aichatd_result/e/1"):
        r = c.get(path)
        assert r.status == 404, "GET %s answered %d" % (path, r.status)
