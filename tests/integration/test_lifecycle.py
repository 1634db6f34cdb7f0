"""Reload and lifecycle (started by run.py as a SELF_MODULE: it runs its own stacks).

- SIGHUP to the pool's master, several times, under a steady load of sends and reads from
  several threads through nginx: every answer is a 200 with a well-formed body, and the
  workers are replaced (new PIDs, with the threads the new settings name); settings that do
  not load are refused and the workers stay.
- The daemon's SIGHUP applies what it can live (its connection cap, seen in /health).
- kill -9 of the master: no worker PID survives it.
- A second `aichatd serve` or `aichatd-push` on the same data directory refuses to start and
  names the PID that holds it; the running stack is untouched.
- SIGTERM to the master lets a send in flight (held in its worker while the daemon is
  stopped) get its whole answer; and a request that cannot finish is ended after
  drain_timeout_s.
- /health says "degraded" (503, with a reason) while the daemon is stopped (SIGSTOP by PID).
- Operation-log entries (start, reload, auth failures) are also lines on stderr with a level.

Processes are found from /proc as children of the stack's PID, never by name.
"""

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

from harness import (REPO, Client, Stack, make_jwt, ok_json, qs, test, uniq, proc_alive, proc_argv,
                     proc_children)

# the build scripts/stack runs (relative to the checkout, as the stack sees it)
BUILD = os.path.join(REPO, os.environ.get("AICHATD_BUILD_DIR", "build"))

_stacks = []  # stacks whose crash reports count
_killed = []  # stacks killed or signalled on purpose (their logs tell of it; not checked)
_files = []


def teardown():
    checks = []
    for s in _killed:
        s.stop(cleanup=False)
    for s in _stacks:
        s.stop(cleanup=False)
        checks.append(("test_lifecycle.no_crash_reports", s.crash_reports()))
    for s in _stacks + _killed:
        s.cleanup()
    for f in _files:
        try:
            os.unlink(f)
        except OSError:
            pass
    del _stacks[:], _killed[:], _files[:]
    return checks


# --------------------------------------------------------------------------------------
# processes, from /proc (never by name)


def procs(stack):
    """(daemon pid, pool master pid) of a running stack."""
    daemon = master = None
    for p in proc_children(stack.proc.pid):
        a = proc_argv(p)
        name = os.path.basename(a[0]) if a else ""
        if name == "aichatd-push":
            daemon = p
        elif name == "aichatd" and "serve" in a:
            master = p
    assert daemon and master, "the stack's daemon and pool master were not found"
    return daemon, master


def nthreads(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return 0


def wait_for(cond, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def settings_file(text):
    fd, path = tempfile.mkstemp(prefix="aichatd-lc-", suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _files.append(path)
    return path


def rewrite(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def log_text(stack):
    with open(stack.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def wait_log(stack, pattern, what, since=0, timeout=20):
    rx = re.compile(pattern)
    return wait_for(lambda: rx.search(log_text(stack)[since:]), what, timeout)


def start(kept, **kw):
    s = Stack(**kw).start()
    (_stacks if kept else _killed).append(s)
    return s


# --------------------------------------------------------------------------------------
# SIGHUP


@test
def lifecycle_reload_under_load_refuses_nothing(_):
    conf = settings_file("threads = 3\n")
    s = start(True, workers=2, extra_env={"AICHATD_CONFIG": conf})
    _, master = procs(s)
    c = Client(s.port)
    stop = threading.Event()
    bad, counts = [], [0]
    lock = threading.Lock()

    def load(i):
        sid = uniq("reload%d" % i)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if n % 2:
                    r = c.post("/api/message/send", json={"session_id": sid,
                                                          "content": "m%d" % n})
                    ok = r.status == 200 and isinstance(r.json, dict) and \
                        r.json.get("msg_content") == "m%d" % n
                else:
                    r = c.get("/api/message/list" + qs(session_id=sid))
                    ok = r.status == 200 and isinstance(r.json, dict) and \
                        isinstance(r.json.get("messages"), list) and \
                        isinstance(r.json.get("total"), int)
                if not ok:
                    with lock:
                        bad.append("%s: %d %r" % ("send" if n % 2 else "list", r.status,
                                                  r.body[:200]))
            except Exception as e:  # a refused or cut request
                with lock:
                    bad.append("%s: %s" % (type(e).__name__, e))
            with lock:
                counts[0] += 1

    ts = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    try:
        seen = set(proc_children(master))
        for k in range(4):
            before = set(proc_children(master))
            threads = 4 + k
            rewrite(conf, "threads = %d\n" % threads)
            os.kill(master, signal.SIGHUP)
            # the new workers: two, none of the ones before, each with its threads (and the
            # one waiting for its SIGTERM); the old ones may still drain meanwhile
            def fresh():
                new = [p for p in proc_children(master) if p not in before and proc_alive(p)]
                return len(new) == 2 and all(nthreads(p) == threads + 1 for p in new) and new
            new = wait_for(fresh, "reload %d's two new workers with %d threads" % (k + 1,
                                                                                   threads))
            seen.update(new)
            done = counts[0]
            wait_for(lambda: counts[0] >= done + 20, "requests after reload %d" % (k + 1))
            wait_for(lambda: not any(proc_alive(p) for p in before), "the old workers' exit")
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert not bad, "%d of %d requests failed during reloads, e.g. %s" % (
        len(bad), counts[0], bad[:3])
    assert len(seen) == 10, "workers seen: %d (2 at start and 2 for each of 4 reloads)" % len(
        seen)
    text = log_text(s)
    assert len(re.findall(r"aichatd\[%d\]: info: settings reloaded: threads changed" % master,
                          text)) == 4, "the reloads' log lines:\n" + s.log_tail()


@test
def lifecycle_reload_refuses_bad_settings(_):
    conf = settings_file("threads = 2\n")
    s = start(True, workers=2, extra_env={"AICHATD_CONFIG": conf})
    _, master = procs(s)
    before = sorted(proc_children(master))
    offset = len(log_text(s))
    rewrite(conf, "threads = 0\n")
    os.kill(master, signal.SIGHUP)
    wait_log(s, r"aichatd\[%d\]: error: reload refused, the running settings stay: .*threads"
             % master, "the refusal", since=offset)
    assert sorted(proc_children(master)) == before, "workers were replaced on bad settings"
    ok_json(Client(s.port).get("/health"), "GET /health after a refused reload")
    # restart-only settings are kept, the rest applied
    rewrite(conf, "threads = 3\nsocket_group = root\n")
    os.kill(master, signal.SIGHUP)
    wait_log(s, r"aichatd\[%d\]: warning: settings reloaded: threads changed.*needs a restart, "
             r"kept at its running value: socket_group" % master, "the partial reload",
             since=offset)
    ok_json(Client(s.port).get("/health"), "GET /health after a partial reload")


@test
def lifecycle_daemon_reload_applies_live_settings(_):
    conf = settings_file("max_connections = 500\n")
    s = start(True, workers=1, extra_env={"AICHATD_CONFIG": conf})
    daemon, _ = procs(s)
    c = Client(s.port)
    assert ok_json(c.get("/health?detail=1"))["push"]["max_connections"] == 500
    offset = len(log_text(s))
    rewrite(conf, "max_connections = 321\nsse_heartbeat_s = 5\n")
    os.kill(daemon, signal.SIGHUP)
    wait_log(s, r"aichatd-push\[%d\]: info: aichatd-push: settings reloaded: "
             r"sse_heartbeat_s max_connections" % daemon, "the daemon's reload line",
             since=offset)
    assert ok_json(c.get("/health?detail=1"))["push"]["max_connections"] == 321
    rewrite(conf, "max_connections = nope\n")
    os.kill(daemon, signal.SIGHUP)
    wait_log(s, r"aichatd-push\[%d\]: error: aichatd-push: reload refused" % daemon,
             "the daemon's refusal", since=offset)
    assert ok_json(c.get("/health?detail=1"))["push"]["max_connections"] == 321
    assert proc_alive(daemon)


# --------------------------------------------------------------------------------------
# the master's death, a second instance, SIGTERM


@test
def lifecycle_workers_die_with_their_master(_):
    s = start(False, workers=3)
    _, master = procs(s)
    workers = proc_children(master)
    assert len(workers) == 3 and all(proc_alive(p) for p in workers), workers
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: not any(proc_alive(p) for p in workers),
             "workers %r to exit after their master's SIGKILL" % workers)


def _second(program, s, args):
    env = dict(os.environ, AICHATD_DATA_DIR=s.data_dir, AICHATD_PORT=str(s.port))
    env.pop("AICHATD_CONFIG", None)
    return subprocess.run([os.path.join(BUILD, "src", program)] + args, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=20)


@test
def lifecycle_second_instances_refuse_naming_the_holder(_):
    s = start(True, workers=1)
    daemon, master = procs(s)
    sock = os.path.join(s.data_dir, "run", "fcgi.sock")
    ino = os.stat(sock).st_ino
    r = _second("aichatd", s, ["serve"])
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode != 0, "a second serve started: %s" % err
    assert "pool.lock is held by pid %d" % master in err, err
    assert os.stat(sock).st_ino == ino, "the second serve touched the socket"
    r = _second("aichatd-push", s, [])
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode != 0, "a second aichatd-push started: %s" % err
    assert "push.lock is held by pid %d" % daemon in err, err
    assert proc_alive(master) and proc_alive(daemon)
    ok_json(Client(s.port).get("/health"), "GET /health beside the refused ones")


def fcgi_connections(s):
    """The FastCGI socket's connections in /proc/net/unix (not the listening one): requests
    nginx has handed to a worker (nginx keeps no FastCGI connection between requests)."""
    sock = os.path.join(s.data_dir, "run", "fcgi.sock")
    n = 0
    with open("/proc/net/unix") as f:
        for line in f.read().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == sock and parts[5] == "03":
                n += 1
    return n


@test
def lifecycle_sigterm_lets_a_request_in_flight_finish(_):
    s = start(False, workers=1)
    daemon, master = procs(s)
    c = Client(s.port)
    out = {}

    def send():
        try:
            out["r"] = c.post("/api/message/send", json={"session_id": uniq("drain"),
                                                         "content": "hello"})
        except Exception as e:
            out["e"] = e

    # a send in flight in the worker: it posts through the daemon, which is stopped (SIGSTOP),
    # so the worker waits for the daemon's answer
    os.kill(daemon, signal.SIGSTOP)
    t = threading.Thread(target=send)
    try:
        t.start()
        wait_for(lambda: fcgi_connections(s) >= 1, "the send to reach the worker")
        os.kill(master, signal.SIGTERM)
        time.sleep(1)  # the worker has its SIGTERM and drains meanwhile
        assert proc_alive(master), "the master ended with a request in flight"
    finally:
        os.kill(daemon, signal.SIGCONT)
    t.join(60)
    assert "e" not in out, "the send in flight failed: %r" % out.get("e")
    r = out["r"]
    assert r.status == 200, "%d %r" % (r.status, r.body[:300])
    assert isinstance(r.json, dict) and r.json.get("msg_content") == "hello", r.body[:300]
    wait_for(lambda: not proc_alive(master), "the master's exit")
    assert "aichatd stopped" in log_text(s)


@test
def lifecycle_sigterm_drain_is_bounded(_):
    s = start(False, workers=1, extra_env={"AICHATD_DRAIN_TIMEOUT_S": "1"})
    daemon, master = procs(s)
    c = Client(s.port)
    worker = proc_children(master)[0]

    def send():
        try:
            c.post("/api/message/send", json={"session_id": uniq("stuck"), "content": "x"})
        except Exception:
            pass  # cut, as it must be once the bound is passed

    # a request that cannot finish while the daemon is stopped
    os.kill(daemon, signal.SIGSTOP)
    t = threading.Thread(target=send, daemon=True)
    try:
        t.start()
        wait_for(lambda: fcgi_connections(s) >= 1, "the send to reach the worker")
        os.kill(master, signal.SIGTERM)
        wait_for(lambda: not proc_alive(master), "the master's exit after drain_timeout_s")
    finally:
        os.kill(daemon, signal.SIGCONT)
    assert not proc_alive(worker)
    assert re.search(r"aichatd\[%d\]: warning: worker %d: requests still in flight after "
                     r"drain_timeout_s \(1 s\); ended" % (master, worker), log_text(s)), \
        s.log_tail()


# --------------------------------------------------------------------------------------
# /health, logs


@test
def lifecycle_health_degraded_while_the_daemon_is_stopped(_):
    s = start(True, workers=1)
    daemon, _ = procs(s)
    c = Client(s.port)
    j = ok_json(c.get("/health"))
    assert j["status"] == "ok" and "reason" not in j, j
    os.kill(daemon, signal.SIGSTOP)
    try:
        r = c.get("/health")
        assert r.status == 503, "%d %r" % (r.status, r.body[:200])
        j = r.json
        assert j["status"] == "degraded" and j["database"] == "ok" and j["version"], j
        assert "push daemon" in j["reason"], j
        r = c.get("/health?detail=1")
        assert r.status == 503 and r.json["push"]["status"] == "unreachable", r.body[:200]
    finally:
        os.kill(daemon, signal.SIGCONT)
    j = ok_json(c.get("/health"))
    assert j["status"] == "ok", j


@test
def lifecycle_operation_log_on_stderr(_):
    secret = "lifecycle-secret-0123456789"
    s = start(True, workers=1, auth="jwt", secret=secret)
    daemon, master = procs(s)
    wait_log(s, r"aichatd\[%d\]: info: aichatd \S+ started: 1 workers" % master,
             "the pool's start line")
    wait_log(s, r"aichatd-push\[%d\]: info: aichatd-push \S+ started" % daemon,
             "the daemon's start line")
    c = Client(s.port)
    path = "/api/message/list?session_id=" + uniq("nolog")
    r = c.get(path, headers={"Authorization": "Bearer not.a.token"})
    assert r.status == 401, r.status
    m = wait_log(s, r"aichatd\[(\d+)\]: warning: auth failure: (.*) on GET /api/message/list",
                 "the auth failure's line")
    assert int(m.group(1)) in proc_children(master), "the line's PID is no worker: " + m.group(0)
    assert "not.a.token" not in m.group(0), m.group(0)
    # the database's log has it too (read through v1's /logs as an admin)
    tok = make_jwt({"sub": "root", "role": "admin", "exp": int(time.time()) + 600}, secret)
    j = ok_json(c.with_token(tok).get("/api/v1/logs?level=warning"))
    assert "auth failure" in json.dumps(j, ensure_ascii=False), j
