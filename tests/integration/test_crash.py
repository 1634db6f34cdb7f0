"""Crash and restart (started by run.py as a SELF_MODULE: it runs its own stacks).

One stack with slow builtin replies (AICHATD_BUILTIN_DELAY_MS=200) takes ~20 messages through
im and chax, and more while the kills happen; with replies in flight, one FastCGI worker (a
child of `aichatd serve`) and then the push daemon (the stack's `aichatd-push` child) get
SIGKILL. A killed daemon is not restarted by anything: scripts/stack ends the whole stack
when one of its processes exits. A new stack on the same data dir must then show every
message the API acknowledged (200), end every run (status 1 or 2, none left 0) within
~15 s, and leave no chax message unfinished.
"""

import os
import shutil
import signal
import tempfile
import threading
import time

from harness import (Client, Stack, StackError, ok_json, q, test, uniq, proc_alive, proc_argv,
                     proc_children)

ENV = {"AICHATD_PROVIDER": "builtin", "AICHATD_BUILTIN_DELAY_MS": "200"}
SETTLE_S = 15

_st = {}  # the scenario's outcome, shared by the checks below
_stacks = []  # stacks whose crash reports count (the restarted one)
_killed = []  # stacks killed on purpose (their logs tell of it; not checked)


def teardown():
    checks = []
    for s in _killed:
        s.stop(cleanup=False)
    for s in _stacks:
        s.stop(cleanup=False)
        checks.append(("test_crash.no_crash_reports_after_restart", s.crash_reports()))
    for s in _stacks + _killed:
        s.cleanup()
    if _st.get("data_dir"):
        shutil.rmtree(_st["data_dir"], ignore_errors=True)
    del _stacks[:], _killed[:]
    _st.clear()
    return checks


# --------------------------------------------------------------------------------------
# processes, from /proc (never by name)


def stack_procs(stack):
    """(daemon pid, pool master pid, [worker pids]) of a running stack."""
    daemon = master = None
    for p in proc_children(stack.proc.pid):
        a = proc_argv(p)
        if not a:
            continue
        name = os.path.basename(a[0])
        if name == "aichatd-push":
            daemon = p
        elif name == "aichatd" and "serve" in a:
            master = p
    workers = proc_children(master) if master else []
    return daemon, master, workers


# --------------------------------------------------------------------------------------
# the scenario


def _scenario():
    if "error" in _st:
        raise AssertionError(_st["error"])
    if "done" in _st:
        return _st
    try:
        _run()
    except Exception as e:  # noqa: BLE001
        _st["error"] = "the crash scenario failed: %s: %s" % (type(e).__name__, e)
        raise AssertionError(_st["error"])
    _st["done"] = True
    return _st


def _run():
    data_dir = tempfile.mkdtemp(prefix="aichatd-crash-")
    _st["data_dir"] = data_dir
    s1 = Stack(extra_env=ENV, data_dir=data_dir, workers=2)
    _killed.append(s1)
    s1.start()
    c = Client(s1.port)
    acked_im, acked_chax = [], []  # (session, message json) / (conversation json)
    lock = threading.Lock()
    im_sids = [uniq("crash") for _ in range(4)]
    convs = []

    def send_im(i):
        sid = im_sids[i % len(im_sids)]
        content = "崩溃测试 im%d %s" % (i, uniq("m"))
        try:
            r = c.post("/api/message/send", json={"session_id": sid, "content": content})
        except OSError:
            return
        if r.status == 200 and r.json:
            with lock:
                acked_im.append((sid, content, r.json))

    def send_chax(i):
        content = "崩溃测试 chax%d %s" % (i, uniq("m"))
        body = {"content": content}
        with lock:
            if convs and i % 2:
                body["conversationId"] = convs[i % len(convs)]
        try:
            r = c.post("/ai/chat", json=body)
        except OSError:
            return
        if r.status == 200 and r.json:
            with lock:
                acked_chax.append((content, r.json))
                if r.json["conversationId"] not in convs:
                    convs.append(r.json["conversationId"])

    for i in range(10):
        send_im(i)
        send_chax(i)
    assert len(acked_im) == 10 and len(acked_chax) == 10, \
        "before any kill, %d/10 im and %d/10 chax sends were acknowledged" % (
            len(acked_im), len(acked_chax))
    stop = threading.Event()

    def background():
        i = 100
        while not stop.is_set():
            send_im(i)
            send_chax(i)
            i += 1
            time.sleep(0.02)
    bg = threading.Thread(target=background, daemon=True)
    bg.start()
    time.sleep(0.5)
    daemon, master, workers = stack_procs(s1)
    assert daemon and master and workers, "cannot find the processes (daemon %r, pool %r, " \
        "workers %r) among the children of the stack %d" % (daemon, master, workers,
                                                            s1.proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    time.sleep(0.4)
    assert s1.alive(), "the stack ended when a FastCGI worker was killed:\n%s" % s1.log_tail()
    open_runs = 0
    for sid in im_sids:
        r = c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid))
        open_runs += sum(1 for x in (r.json or {}).get("records", []) if x["status"] == 0)
    _st["in_flight"] = open_runs
    os.kill(daemon, signal.SIGKILL)
    t_kill = time.time()
    while s1.alive() and time.time() - t_kill < 10:
        time.sleep(0.05)
    _st["stack_ended_by_itself"] = not s1.alive()
    stop.set()
    bg.join(10)
    s1.stop(cleanup=False)
    for p in (daemon, master):
        _st.setdefault("leftover", [])
        if proc_alive(p):
            _st["leftover"].append(p)
    s2 = Stack(extra_env=ENV, data_dir=data_dir, workers=2)
    _stacks.append(s2)
    try:
        s2.start()
    except StackError as e:
        raise AssertionError("the stack did not start again on the crashed data: %s" % e)
    _st.update(c=Client(s2.port), acked_im=acked_im, acked_chax=acked_chax, im_sids=im_sids,
               convs=list(convs), s2=s2)


@test
def crash_kill_worker_and_daemon_then_restart(_):
    st = _scenario()
    assert st["stack_ended_by_itself"], "scripts/stack kept running after its push " \
        "daemon was killed (it should end the stack)"
    assert not st["leftover"], "processes %r outlived their stack" % st["leftover"]
    assert len(st["acked_im"]) >= 10 and len(st["acked_chax"]) >= 10
    assert st["in_flight"] > 0, "no im run was in flight when the daemon was killed " \
        "(the scenario tested nothing)"


@test
def crash_acknowledged_messages_survive(_):
    st = _scenario()
    c = st["c"]
    missing = []
    for sid, content, m in st["acked_im"]:
        r = c.get("/api/message/" + q(m["message_id"]))
        if r.status != 200 or (r.json or {}).get("msg_content") != content:
            missing.append("im %s: %r" % (m["message_id"], r))
    for content, j in st["acked_chax"]:
        for mid in (j["userMsgId"], j["msgId"]):
            r = c.get("/ai/message/content/" + q(mid))
            if r.status != 200:
                missing.append("chax %s: %r" % (mid, r))
        r = c.get("/ai/message/content/" + q(j["userMsgId"]))
        if r.status == 200 and r.json["content"] != content:
            missing.append("chax %s content %r" % (j["userMsgId"], r.json["content"]))
    assert not missing, "%d acknowledged message(s) lost after the crash, e.g. %s" % (
        len(missing), "; ".join(missing[:3]))


def _records(c, sid):
    j = ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid)), "records")
    return j["records"]


@test
def crash_every_run_ends(_):
    st = _scenario()
    c = st["c"]
    sids = st["im_sids"] + st["convs"]
    # every acknowledged user message has its run
    want = {m["message_id"] for _, _, m in st["acked_im"]} | {
        j["userMsgId"] for _, j in st["acked_chax"]}
    end = time.time() + SETTLE_S
    while True:
        recs = [r for sid in sids for r in _records(c, sid)]
        open_ = [r["record_id"] for r in recs if r["status"] == 0]
        if not open_ or time.time() >= end:
            break
        time.sleep(0.2)
    assert not open_, "%d of %d runs still status 0 %d s after the restart, e.g. %s" % (
        len(open_), len(recs), SETTLE_S, open_[:3])
    bad = [(r["record_id"], r["status"]) for r in recs if r["status"] not in (1, 2)]
    assert not bad, "runs with status other than 1 or 2: %r" % bad[:5]
    have = {r["user_message_id"] for r in recs}
    lost = sorted(want - have)
    assert not lost, "%d acknowledged message(s) have no run: %s" % (len(lost), lost[:3])


@test
def crash_chax_messages_all_finished(_):
    st = _scenario()
    c = st["c"]
    end = time.time() + SETTLE_S
    while True:
        left = []
        for conv in st["convs"]:
            for m in ok_json(c.get("/ai/message/list/" + q(conv)), "chax list"):
                if m["unfinished"] is not False:
                    left.append(m["msgId"])
        if not left or time.time() >= end:
            break
        time.sleep(0.2)
    assert not left, "%d chax message(s) still unfinished %d s after the restart, e.g. %s" % (
        len(left), SETTLE_S, left[:3])
    for _, j in st["acked_chax"]:
        r = ok_json(c.get("/ai/message/content/" + q(j["msgId"])), "chax content")
        msgs = {m["msgId"]: m for m in ok_json(c.get("/ai/message/list/" +
                                                     q(j["conversationId"])))}
        m = msgs.get(j["msgId"])
        assert m is not None, "reply %s is not listed" % j["msgId"]
        assert r["content"] or m["error"], "reply %s ended empty and without an error" % (
            j["msgId"],)
