"""Connections capped before descriptors run out: the push daemon raises its descriptor limit
to the hard limit, caps its connections in all and per client address (nginx's X-Real-IP),
answers one over a cap at once with 503 in the route's shape, and its writer does not spin
when the descriptors are gone anyway.

The daemon is started under a low `ulimit -n` through a wrapper: a build directory whose
src/aichatd-push is a script that lowers the limits and execs the real one (scripts/stack
takes its binaries from AICHATD_BUILD_DIR). Starts its own stacks, stopped in teardown():
  fds     soft 96, hard 320 descriptors; the caps computed from them (per address set high)
  caps    max_connections 30, max_connections_per_addr 5
  emfile  soft = hard = 160 descriptors and max_connections above them: the daemon runs
          out (nginx's "connect() to unix:" and "upstream prematurely closed" lines are
          then expected and not counted as crashes for this stack)
"""

import os
import shutil
import stat
import tempfile
import threading
import time

from harness import REPO, Stack, ok_json, poll, q, qs, test, uniq
import test_live as tl
import test_ws as tw

_dirs = []


def wrapper_build(soft, hard):
    """A build directory whose aichatd-push runs under RLIMIT_NOFILE soft/hard."""
    real = os.path.abspath(os.path.join(REPO, os.environ.get("AICHATD_BUILD_DIR") or "build"))
    d = tempfile.mkdtemp(prefix="aichatd-ulimit-")
    _dirs.append(d)
    os.mkdir(os.path.join(d, "src"))
    os.symlink(os.path.join(real, "src", "aichatd"), os.path.join(d, "src", "aichatd"))
    path = os.path.join(d, "src", "aichatd-push")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nulimit -Sn %d && ulimit -Hn %d || exit 1\nexec '%s' \"$@\"\n" % (
            soft, hard, os.path.join(real, "src", "aichatd-push")))
    os.chmod(path, stat.S_IRWXU)
    return d


def stack(kind):
    env = {"AICHATD_PROVIDER": "builtin", "AICHATD_BUILTIN_DELAY_MS": "20",
           "AICHATD_N8N_WEBHOOK_URL": "", "AICHATD_THREADS": "2"}
    if kind == "fds" and "fds" not in tw._stacks:
        env.update({"AICHATD_BUILD_DIR": wrapper_build(96, 320),
                    "AICHATD_MAX_CONNECTIONS_PER_ADDR": "10000"})
    elif kind == "caps":
        env.update({"AICHATD_MAX_CONNECTIONS": "30", "AICHATD_MAX_CONNECTIONS_PER_ADDR": "5"})
    elif kind == "emfile" and "emfile" not in tw._stacks:
        env.update({"AICHATD_BUILD_DIR": wrapper_build(160, 160),
                    "AICHATD_MAX_CONNECTIONS": "5000",
                    "AICHATD_MAX_CONNECTIONS_PER_ADDR": "5000"})
    return tw.start_stack(kind, env, workers=2)


EXPECTED_WHEN_OUT_OF_FDS = ("connect() to unix:", "upstream prematurely closed")


def teardown():
    checks = []
    for name, lines in tw.stop_stacks("test_ws_limits"):
        if name.endswith("_emfile"):
            lines = [x for x in lines if not any(m in x for m in EXPECTED_WHEN_OUT_OF_FDS)]
        checks.append((name, lines))
    while _dirs:
        shutil.rmtree(_dirs.pop(), ignore_errors=True)
    return checks


def open_ws(port, path, headers=None):
    """A handshake: (RawWS, status, seconds it took)."""
    t0 = time.time()
    r = tl.RawWS(port, path, headers=headers)
    return r, r.status, time.time() - t0


def body_of(r):
    """The body of a refused handshake (Content-Length bytes after the head)."""
    end = time.time() + 2
    while time.time() < end:
        try:
            b = r.sock.recv(4096)
        except OSError:
            break
        if not b:
            break
        r.buf += b
    return r.buf


def close_all(socks):
    for r in socks:
        r.close()
    del socks[:]


@test
def descriptor_limit_raised_and_caps_computed(_):
    st = stack("fds")
    pid = tw.pushd_pid(st)
    soft, hard = tw.nofile(pid)
    assert soft == hard == 320, "the daemon's descriptor limit is %d/%d, expected the soft " \
        "limit raised to the hard one (320)" % (soft, hard)
    p = st.push()
    mc = p.get("max_connections")
    assert isinstance(mc, int) and 16 <= mc < 320 - 64, "max_connections %r with 320 " \
        "descriptors: %r" % (mc, p)


@test
def over_the_cap_refused_at_once_under_a_low_ulimit(_):
    st = stack("fds")
    pid = tw.pushd_pid(st)
    cap = st.push().get("max_connections")
    assert isinstance(cap, int), "no max_connections in the daemon's counters"
    socks, codes, slow = [], {}, []
    try:
        for i in range(cap + 100):
            r, status, took = open_ws(st.port, "/ws/" + q(uniq("fd")))
            socks.append(r)
            codes[status] = codes.get(status, 0) + 1
            if took > 1.0:
                slow.append((i, status, round(took, 2)))
            if status == 503 and codes[503] == 1:
                b = body_of(r)
                assert b'"code":503' in b, "the refusal's body %r" % (b[:200],)
        assert codes.get(101) == cap and codes.get(503) == 100, \
            "%d connections with max_connections %d: %r" % (cap + 100, cap, codes)
        assert not slow, "handshakes that took over 1 s: %r" % (slow[:5],)
        # the rest of the service keeps answering, and the writer is not spinning
        c0, t0 = tw.cpu_s(pid), time.time()
        r = st.c.get("/health")
        assert r.status == 200, "/health %d" % r.status
        for k in range(4):  # new accept loops: new links to the writer
            t = time.time()
            m = ok_json(st.c.post("/api/message/send", json={
                "content": "还在吗 %d" % k, "session_id": uniq("fdsend")}), "im's send")
            assert time.time() - t < 3, "im's send took %.1f s" % (time.time() - t)
        ok_json(st.c.get("/api/message/list" + qs(session_id=m["session_id"])), "im's list")
        live = [x for x in socks if x.status == 101][0]
        tl.RawWS.read_json(live)  # connected
        live.send_frame(1, b'{"type":"send_message","content":"ws still works"}')
        while True:
            j = live.read_json()
            if j.get("type") == "message_sent":
                break
        time.sleep(max(0, 2.0 - (time.time() - t0)))
        used = tw.cpu_s(pid) - c0
        print("# at the cap (%d): %r; the daemon's CPU %.2f s in %.1f s" % (
            cap, codes, used, time.time() - t0))
        assert used < 0.5, "the daemon used %.2f s of CPU in %.1f s at the cap" % (
            used, time.time() - t0)
    finally:
        close_all(socks)
    poll(lambda: st.push().get("ws") == 0, 8, "the connections gone")
    r, status, _ = open_ws(st.port, "/ws/" + q(uniq("fdafter")))
    r.close()
    assert status == 101, "after the others left: %r" % status


@test
def caps_per_address_and_in_all(_):
    st = stack("caps")  # 30 in all, 5 per address
    sock = os.path.join(st.stack.data_dir, "run", "push-http.sock")
    socks = []
    try:
        got = []
        for _ in range(6):
            r, s, _ = open_ws(st.port, "/ws/" + q(uniq("pa")))
            socks.append(r)
            got.append(s)
        assert got == [101] * 5 + [503], "six sockets from one address (cap 5): %r" % (got,)
        b = body_of(socks[-1])
        assert b'"code":503' in b, "the refusal's body: %r" % (b[:200],)
    finally:
        close_all(socks)
    poll(lambda: st.push().get("ws") == 0, 8, "ws back to 0")
    try:
        for i in range(5):
            r, s, _ = open_ws(st.port, "/ws/" + q(uniq("pa")))
            socks.append(r)
            assert s == 101
        # an SSE stream from the same address is over the cap too: 503 in chax's shape
        j = ok_json(st.c.post("/ai/chat", json={"content": "sse cap"}), "/ai/chat")
        r = st.c.get("/ai/message/stream/" + q(j["msgId"]))
        assert r.status == 503 and isinstance(r.json, dict) and "error" in r.json, \
            "an SSE stream over the per-address cap: %d %r" % (r.status, r.body[:200])
        socks[0].close()
        poll(lambda: st.push().get("ws") == 4, 5, "one socket fewer")
        r, s, _ = open_ws(st.port, "/ws/" + q(uniq("pa")))
        socks.append(r)
        assert s == 101, "a place freed by a closed socket: %r" % s
        close_all(socks)
        poll(lambda: st.push().get("ws") == 0, 8, "ws back to 0")
        # other addresses (as nginx names them) have their own 5; 30 in all
        got = {}
        for i in range(31):
            ip = "10.0.%d.%d" % (i // 5, i % 5 + 1) if i < 30 else "10.9.9.9"
            r, s, _ = open_ws(sock, "/ws/" + q(uniq("ip")), {"X-Real-IP": ip})
            socks.append(r)
            got[s] = got.get(s, 0) + 1
        assert got == {101: 30, 503: 1}, "31 sockets from 31 addresses (30 in all): %r" % got
        close_all(socks)
        poll(lambda: st.push().get("ws") == 0, 8, "ws back to 0")
        # nginx names the client: five from 127.0.0.1 straight to the daemon fill its place
        for i in range(5):
            r, s, _ = open_ws(sock, "/ws/" + q(uniq("lo")), {"X-Real-IP": "127.0.0.1"})
            socks.append(r)
            assert s == 101
        r, s, _ = open_ws(st.port, "/ws/" + q(uniq("lo")))
        socks.append(r)
        assert s == 503, "a sixth from 127.0.0.1 through nginx: %r (is X-Real-IP set?)" % s
    finally:
        close_all(socks)


@test
def writer_does_not_spin_out_of_descriptors(_):
    st = stack("emfile")  # 160 descriptors, caps above them
    pid = tw.pushd_pid(st)
    socks, codes = [], {}
    try:
        for i in range(220):
            try:
                r, s, _ = open_ws(st.port, "/ws/" + q(uniq("em")))
            except OSError:
                continue
            socks.append(r)
            codes[s] = codes.get(s, 0) + 1
        assert codes.get(101, 0) < 220, "220 sockets fit in 160 descriptors? %r" % codes
        # a send from a fresh accept loop needs a new link to the writer: out of
        # descriptors, it is refused at once (the worker answers), never left pending
        # while the writer's poll() spins on it
        res = {}

        def send():
            t = time.time()
            try:
                res["status"] = st.c.post("/api/message/send", json={
                    "content": "满了", "session_id": uniq("em")}).status
            except OSError as e:
                res["status"] = repr(e)
            res["took"] = time.time() - t

        c0, t0, w0 = tw.cpu_s(pid), time.time(), tw.thread_cpu_s(pid, "aichatd-writer")
        th = threading.Thread(target=send, daemon=True)
        th.start()
        time.sleep(2.5)
        used = tw.cpu_s(pid) - c0
        w1 = tw.thread_cpu_s(pid, "aichatd-writer")
        th.join(40)
        print("# out of descriptors: %r; a send answered %r in %.2f s; the daemon's CPU "
              "%.2f s in %.1f s (its writer thread: %s)" % (
                  codes, res.get("status"), res.get("took", -1), used, 2.5,
                  "%.2f s" % (w1 - w0) if w0 is not None and w1 is not None else "unnamed"))
        assert used < 0.5, "out of descriptors the daemon used %.2f s of CPU in 2.5 s" % used
        assert res.get("took", 99) < 5, "im's send out of descriptors took %.1f s (answered " \
            "%r)" % (res.get("took", -1), res.get("status"))
    finally:
        close_all(socks)
    poll(lambda: st.push().get("ws") == 0, 10, "the sockets gone")
    t = time.time()
    ok_json(st.c.post("/api/message/send", json={"content": "又好了", "session_id": uniq("em")}),
            "im's send once descriptors are free")
    assert time.time() - t < 5
