"""GET /metrics (docs/METRICS.md): Prometheus' text format through nginx from loopback,
`promtool check metrics` clean on it, and the figures moving as the traffic does, added up
over all of the pool's workers and joined by the push daemon's.

This module starts its own stacks (run.py's SELF_MODULES), lazily, and stops them in
teardown():
  main     3 workers, builtin provider, metrics_allow at its default (loopback)
  denied   metrics_allow = 192.0.2.7 (TEST-NET-1: never this test's address)
  slow     1 worker, builtin pieces 1 s apart (a reply that runs while it is looked at)
  restart  2 workers, one killed by PID (its master's restart line is expected there)
promtool comes from Debian's package prometheus, unpacked by `scripts/setup --test` into
/var/cache/aichatd-tools (AICHATD_TOOLS_DIR), or from PATH.
"""

import base64
import signal
import os
import re
import shutil
import socket
import subprocess
import time

from harness import REPO, VERSION, Client, Stack, StackCache, expect, im_send, ok_json, poll, q, test, uniq

WORKERS = 3
_stacks = StackCache("test_metrics")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


_killed = []  # worker PIDs this module killed: their master's restart lines are expected


def teardown():
    checks = []
    for name, lines in _stacks.teardown():
        if name.endswith("_restart"):
            lines = [x for x in lines if not any(
                "worker %d exited (status 9)" % pid in x for pid in _killed)]
        checks.append((name, lines))
    del _killed[:]
    return checks


def _main():
    return Stack(workers=WORKERS, extra_env={"AICHATD_BUILTIN_DELAY_MS": "5",
                                             "AICHATD_PROVIDER": "builtin"}).start()


def main():
    return _stacks.get("main", _main)


def promtool():
    tools = os.environ.get("AICHATD_TOOLS_DIR") or "/var/cache/aichatd-tools"
    p = os.path.join(tools, "usr", "bin", "promtool")
    if os.access(p, os.X_OK):
        return p
    p = shutil.which("promtool")
    assert p, "promtool not found in %s/usr/bin or on PATH (run scripts/setup --test)" % tools
    return p


def scrape(port):
    """(response, {(name, frozenset of label pairs): value})"""
    r = Client(port).get("/metrics")
    expect(r, 200, "GET /metrics")
    samples = {}
    for line in r.body.decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return r, samples


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples, name):
    return [(dict(k[1]), v) for k, v in samples.items() if k[0] == name]


def list_count(port):
    _, s = scrape(port)
    return val(s, "aichatd_http_requests_total", method="GET", route="/api/message/list",
               code="200")


@test
def metrics_format_passes_promtool(_ctx):
    st = main()
    c = Client(st.port)
    sid = uniq("m")
    im_send(c, sid, "hello metrics")
    ok_json(c.get("/api/message/list?session_id=%s" % q(sid)), "list")
    c.get("/api/no/such/route")
    r, s = scrape(st.port)
    ct = r.header("Content-Type") or ""
    assert ct.startswith("text/plain; version=0.0.4"), "Content-Type %r" % ct
    text = r.body.decode("utf-8")
    for fam in ("aichatd_http_requests_total", "aichatd_http_request_duration_seconds",
                "aichatd_sends_total", "aichatd_process_resident_memory_bytes",
                "aichatd_push_runs_total", "aichatd_push_run_duration_seconds",
                "aichatd_push_connections", "aichatd_push_writer_batch_size",
                "aichatd_push_sqlite_busy_waits_total", "aichatd_pool_sqlite_busy_waits_total",
                "aichatd_push_runs_waiting"):
        assert "# TYPE %s " % fam in text and "# HELP %s " % fam in text, "no family %s" % fam
    assert val(s, "aichatd_build_info", version=VERSION) == 1, "no build info for %s" % VERSION
    assert val(s, "aichatd_push_up") == 1, "the daemon's figures are missing"
    assert val(s, "aichatd_http_requests_total", method="", route="unmatched", code="404") >= 1
    # route labels are the router's patterns, never raw paths
    for labels, _ in series(s, "aichatd_http_requests_total"):
        assert labels["route"] == "unmatched" or labels["route"].startswith("/"), labels
        assert sid not in labels["route"], "a raw path as a label: %r" % labels
    p = subprocess.run([promtool(), "check", "metrics"], input=r.body, capture_output=True,
                       timeout=60)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, "promtool check metrics: status %d: %s" % (p.returncode, out[:2000])
    assert "error" not in out.lower(), "promtool: %s" % out[:2000]


@test
def metrics_request_counter_rises_by_exactly_the_requests_made(_ctx):
    st = main()
    c = Client(st.port)
    sid = uniq("cnt")
    before = list_count(st.port)
    n = 9  # more than the workers: several of them answer
    for _ in range(n):
        ok_json(c.get("/api/message/list?session_id=%s" % q(sid)), "list")
    after = list_count(st.port)
    assert after - before == n, "the counter rose by %r for %d lists" % (after - before, n)
    _, s = scrape(st.port)
    cnt = val(s, "aichatd_http_request_duration_seconds_count", method="GET",
              route="/api/message/list")
    inf = val(s, "aichatd_http_request_duration_seconds_bucket", method="GET",
              route="/api/message/list", le="+Inf")
    assert cnt >= after and inf == cnt, "histogram count %r, +Inf %r, counter %r" % (cnt, inf, after)


@test
def metrics_send_counts_the_send_and_its_run_by_provider_and_outcome(_ctx):
    st = main()
    c = Client(st.port)
    _, s0 = scrape(st.port)
    sid = uniq("send")
    m = im_send(c, sid, "count me")

    def reply():
        for x in ok_json(c.get("/api/message/list?session_id=%s" % q(sid)), "list")["messages"]:
            if x["msg_type"] == "AI_REPLY" and x["message_id"] != m["message_id"]:
                return x
        return None
    rep = poll(reply, 15, "the AI reply")

    def ended():
        _, s = scrape(st.port)
        if val(s, "aichatd_push_runs_total", provider="builtin", outcome="done") > \
                val(s0, "aichatd_push_runs_total", provider="builtin", outcome="done"):
            return s
        return None
    s1 = poll(ended, 10, "the run counted as done")
    assert val(s1, "aichatd_sends_total", dialect="im") - \
        val(s0, "aichatd_sends_total", dialect="im") == 1, "sends did not rise by one"
    runs = val(s1, "aichatd_push_runs_total", provider="builtin", outcome="done") - \
        val(s0, "aichatd_push_runs_total", provider="builtin", outcome="done")
    assert runs == 1, "runs rose by %r" % runs
    chars = val(s1, "aichatd_push_run_output_characters_total", provider="builtin") - \
        val(s0, "aichatd_push_run_output_characters_total", provider="builtin")
    assert chars == len(rep["msg_content"]), "characters out rose by %r for a reply of %d" % (
        chars, len(rep["msg_content"]))
    d = val(s1, "aichatd_push_run_duration_seconds_count", provider="builtin") - \
        val(s0, "aichatd_push_run_duration_seconds_count", provider="builtin")
    assert d == 1, "run durations observed %r" % d
    assert val(s1, "aichatd_push_writer_batch_size_count") > \
        val(s0, "aichatd_push_writer_batch_size_count"), "no writer batch counted"


def ws_open(port, conv):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /ws/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13"
                  "\r\n\r\n" % (q(conv), port, key)).encode())
    got = b""
    while b"\r\n\r\n" not in got:
        b = sock.recv(4096)
        assert b, "handshake cut: %r" % got
        got += b
    assert b" 101 " in got.split(b"\r\n")[0], "handshake %r" % got[:200]
    return sock


@test
def metrics_open_websocket_shows_in_the_connections_gauge(_ctx):
    st = main()

    def ws_count(want):
        def f():
            _, s = scrape(st.port)
            v = val(s, "aichatd_push_connections", kind="ws")
            return v == want and (v,) or None
        return f
    poll(ws_count(0), 10, "no WebSocket open")
    socks = [ws_open(st.port, uniq("ws")) for _ in range(2)]
    try:
        poll(ws_count(2), 10, "two WebSockets in the gauge")
    finally:
        for s in socks:
            s.close()
    poll(ws_count(0), 10, "the gauge back to 0 once they closed")


@test
def metrics_memory_of_each_process(_ctx):
    st = main()
    _, s = scrape(st.port)
    mem = series(s, "aichatd_process_resident_memory_bytes")
    roles = {}
    for labels, v in mem:
        assert v > 0, "memory %r for %r" % (v, labels)
        roles.setdefault(labels["role"], set()).add(labels["pid"])
    assert len(roles.get("master", ())) == 1, "master lines %r" % roles
    assert len(roles.get("push", ())) == 1, "push daemon lines %r" % roles
    workers = roles.get("worker", set())
    assert len(workers) == WORKERS, "worker lines for %r, expected %d" % (workers, WORKERS)
    master = next(iter(roles["master"]))
    for pid in workers:
        with open("/proc/%s/stat" % pid) as f:
            ppid = f.read().rsplit(")", 1)[1].split()[1]
        assert ppid == master, "worker %s is not the master's child" % pid
    assert val(s, "aichatd_pool_workers") == WORKERS


@test
def metrics_refused_to_an_address_not_allowed(_ctx):
    st = _stacks.get("denied", lambda: Stack(
        workers=1, extra_env={"AICHATD_METRICS_ALLOW": "192.0.2.7 10.0.0.0/8"}).start())
    r = Client(st.port).get("/metrics")
    expect(r, 403, "GET /metrics from loopback with metrics_allow = 192.0.2.7 10.0.0.0/8")
    assert b"aichatd_" not in r.body, "figures in a refusal: %r" % r.body[:200]
    expect(Client(st.port).get("/health"), 200, "GET /health beside it")
    with open(os.path.join(st.data_dir, "nginx", "aichatd-locations.conf")) as f:
        conf = f.read()
    assert "allow 192.0.2.7; allow 10.0.0.0/8;" in conf, "the allow lines are not rendered"


@test
def metrics_allow_that_is_not_an_address_list_stops_the_start(_ctx):
    build = os.environ.get("AICHATD_BUILD_DIR") or "build"
    build = build if os.path.isabs(build) else os.path.join(REPO, build)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATD_")}
    for bad in ("127.0.0.1; allow all", "", "10.0.0.0/33", "localhost"):
        env["AICHATD_METRICS_ALLOW"] = bad
        p = subprocess.run([os.path.join(build, "src", "aichatd"), "env"], env=env,
                           capture_output=True, timeout=10, cwd="/tmp")
        assert p.returncode != 0, "metrics_allow %r accepted" % bad
        assert b"metrics_allow" in p.stderr, "no message naming it: %r" % p.stderr


def fcgi_get(sock_path, uri, remote_addr):
    """One GET straight to the pool's FastCGI socket (as nginx would send it, but with the
    REMOTE_ADDR given): (status, body)."""
    def rec(kind, content):
        return bytes([1, kind, 0, 1, len(content) >> 8, len(content) & 255, 0, 0]) + content

    def pair(k, v):
        k, v = k.encode(), v.encode()
        return bytes([len(k), len(v)]) + k + v
    params = b"".join(pair(k, v) for k, v in (
        ("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri), ("QUERY_STRING", ""),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", remote_addr), ("CONTENT_LENGTH", "")))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    try:
        s.sendall(rec(1, bytes([0, 1, 0, 0, 0, 0, 0, 0])) + rec(4, params) + rec(4, b"") +
                  rec(5, b""))
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    out, i = b"", 0
    while i + 8 <= len(data):
        kind, n, pad = data[i + 1], (data[i + 4] << 8) | data[i + 5], data[i + 6]
        if kind == 6:
            out += data[i + 8:i + 8 + n]
        i += 8 + n + pad
    head, _, body = out.partition(b"\r\n\r\n")
    m = re.search(rb"^Status: (\d+)", head, re.M)
    return (int(m.group(1)) if m else 200), body


@test
def metrics_the_program_refuses_an_address_not_allowed_on_its_own(_ctx):
    # past nginx, as from an nginx configured by hand without the allow lines
    st = main()
    sock = os.path.join(st.data_dir, "run", "fcgi.sock")
    status, body = fcgi_get(sock, "/metrics", "203.0.113.5")
    assert status == 403, "REMOTE_ADDR 203.0.113.5 answered %d: %r" % (status, body[:200])
    assert b"aichatd_" not in body
    status, body = fcgi_get(sock, "/metrics", "::1")
    assert status == 200 and b"aichatd_build_info" in body, "::1 answered %d" % status


@test
def metrics_open_sse_stream_shows_in_the_gauge_and_a_stop_counts_as_stopped(_ctx):
    # builtin pieces a second apart: the reply runs while the stream is looked at
    st = _stacks.get("slow", lambda: Stack(workers=1, extra_env={
        "AICHATD_BUILTIN_DELAY_MS": "1000", "AICHATD_PROVIDER": "builtin"}).start())
    c = Client(st.port)
    _, s0 = scrape(st.port)
    j = ok_json(c.post("/ai/chat", json={"content": "a slow one"}), "POST /ai/chat")
    mid = j["msgId"]
    sock = socket.create_connection(("127.0.0.1", st.port), timeout=10)
    try:
        sock.sendall(("GET /ai/message/stream/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Accept: text/event-stream\r\n\r\n" % q(mid)).encode())
        got = b""
        while b"\r\n\r\n" not in got:
            b = sock.recv(4096)
            assert b, "the stream was cut: %r" % got
            got += b
        assert b" 200 " in got.split(b"\r\n")[0], "stream answered %r" % got[:200]

        def sse_open():
            _, s = scrape(st.port)
            return val(s, "aichatd_push_connections", kind="sse") == 1
        poll(sse_open, 10, "the open SSE stream in aichatd_push_connections{kind=\"sse\"}")
        expect(c.post("/ai/message/stop/%s" % q(mid)), 200, "stop")
    finally:
        sock.close()

    def stopped():
        _, s = scrape(st.port)
        return (val(s, "aichatd_push_runs_total", provider="builtin", outcome="stopped") -
                val(s0, "aichatd_push_runs_total", provider="builtin", outcome="stopped") == 1 and
                val(s, "aichatd_push_connections", kind="sse") == 0) and s
    s1 = poll(stopped, 10, "the stop counted and the stream gone")
    assert val(s1, "aichatd_sends_total", dialect="chax") - \
        val(s0, "aichatd_sends_total", dialect="chax") == 1


@test
def metrics_counters_outlive_a_worker_restart(_ctx):
    st = _stacks.get("restart", lambda: Stack(workers=2).start())
    c = Client(st.port)
    for _ in range(5):
        ok_json(c.get("/api/message/list?session_id=%s" % q(uniq("r"))), "list")
    before = list_count(st.port)
    assert before >= 5, "counter %r after 5 lists" % before
    _, s = scrape(st.port)
    old = sorted(int(l["pid"]) for l, _ in series(s, "aichatd_process_resident_memory_bytes")
                 if l["role"] == "worker")
    assert len(old) == 2, "workers %r" % old
    _killed.append(old[0])
    os.kill(old[0], signal.SIGKILL)

    def replaced():
        _, s = scrape(st.port)
        now = sorted(int(l["pid"]) for l, _ in
                     series(s, "aichatd_process_resident_memory_bytes") if l["role"] == "worker")
        return len(now) == 2 and old[0] not in now and now
    poll(replaced, 15, "the killed worker replaced in the memory lines")
    after = list_count(st.port)
    assert after == before, "the list counter went from %r to %r over a restart" % (before, after)
    ok_json(c.get("/api/message/list?session_id=%s" % q(uniq("r"))), "list")
    assert list_count(st.port) == before + 1
