"""The command line, the settings file, and one identity for the pool and the daemon
(started by run.py as a SELF_MODULE: it starts the programs itself and stops them by PID).

- `aichatd --help` / `aichatd-push --help` print usage on stdout and exit 0, creating no
  file; `--version` prints the version.
- A settings file that is named (-c or AICHATD_CONFIG) but missing or unreadable stops
  both programs and scripts/stack with a message naming it (before: the defaults ran, and
  so auth = off).
- A push daemon whose auth settings differ from the live pool's refuses to start, and so
  cannot let a WebSocket client in with no token (before: it took over the sockets and let
  anyone in); a pool beside a live daemon that differs refuses too.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from harness import REPO, VERSION, Stack, StackError, make_jwt, raw_exchange, test

BUILD = os.environ.get("AICHATD_BUILD_DIR") or "build"
BUILD = BUILD if os.path.isabs(BUILD) else os.path.join(REPO, BUILD)
POOL = os.path.join(BUILD, "src", "aichatd")
PUSHD = os.path.join(BUILD, "src", "aichatd-push")
SECRET = "config-test-secret-0123456789"

_stacks = []
_procs = []
_dirs = []


def teardown():
    checks = []
    for p in _procs:
        stop_proc(p)
    for s in _stacks:
        s.stop(cleanup=False)
        checks.append(("test_config.no_crash_reports", s.crash_reports()))
        s.cleanup()
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    del _stacks[:], _procs[:], _dirs[:]
    return checks


def stop_proc(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tmpdir():
    d = tempfile.mkdtemp(prefix="aichatd-cfg-")
    _dirs.append(d)
    return d


def clean_env(**kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATD_")}
    env["AICHATD_BUILD_DIR"] = BUILD
    env.update(kw)
    return env


def run(argv, env, cwd, timeout=10):
    """Run to the end (or kill it after timeout): (status or None, stdout, stderr)."""
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        stop_proc(p)
        out, err = p.communicate()
        return None, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def all_files(d):
    out = []
    for root, dirs, files in os.walk(d):
        out += [os.path.join(root, x) for x in dirs + files]
    return sorted(out)


# --------------------------------------------------------------------------------------
# the command line


@test
def help_and_version_touch_nothing(_):
    for prog, name in ((POOL, "aichatd"), (PUSHD, "aichatd-push")):
        cwd = tmpdir()
        data = os.path.join(cwd, "data")
        os.mkdir(data)
        env = clean_env(AICHATD_DATA_DIR=data)
        for arg in ("--help", "-h"):
            rc, out, err = run([prog, arg], env, cwd, timeout=5)
            assert rc == 0, "%s %s: status %r, stderr %r" % (name, arg, rc, err[-300:])
            assert out.startswith("usage: " + name), "%s %s: stdout %r" % (name, arg, out)
        rc, out, err = run([prog, "--version"], env, cwd, timeout=5)
        assert rc == 0 and out.strip() == "%s %s" % (name, VERSION), \
            "%s --version: %r %r %r" % (name, rc, out, err)
        # with a settings file named that does not exist: still only the usage
        rc, out, _ = run([prog, "-c", os.path.join(cwd, "nope.conf"), "--help"], env, cwd, 5)
        assert rc == 0 and out.startswith("usage: "), (name, rc, out)
        assert all_files(cwd) == [data], "%s --help/--version made files: %r" % (
            name, all_files(cwd))
    # the old subcommand is kept for scripts
    rc, out, _ = run([POOL, "version"], clean_env(), tmpdir(), 5)
    assert rc == 0 and out.strip() == VERSION, (rc, out)


# --------------------------------------------------------------------------------------
# the settings file


def refuses(argv, env, cwd, name_in_message, what):
    rc, out, err = run(argv, env, cwd, timeout=10)
    assert rc not in (None, 0), "%s: status %r (still running after 10 s: ran on the " \
        "defaults)" % (what, rc)
    assert name_in_message in err, "%s: message %r does not name %s" % (
        what, err[-300:], name_in_message)


@test
def named_settings_file_must_exist(_):
    cwd = tmpdir()
    data = os.path.join(cwd, "data")
    os.makedirs(os.path.join(data, "run"))
    missing = os.path.join(cwd, "aichatd.cnof")
    a_dir = os.path.join(cwd, "a-directory")
    os.mkdir(a_dir)
    for bad in (missing, a_dir):
        env = clean_env(AICHATD_DATA_DIR=data)
        refuses([POOL, "-c", bad, "serve"], env, cwd, bad, "aichatd -c %s serve" % bad)
        refuses([PUSHD, "-c", bad], env, cwd, bad, "aichatd-push -c %s" % bad)
        env = clean_env(AICHATD_DATA_DIR=data, AICHATD_CONFIG=bad)
        refuses([POOL, "serve"], env, cwd, bad, "AICHATD_CONFIG=%s aichatd serve" % bad)
        refuses([PUSHD], env, cwd, bad, "AICHATD_CONFIG=%s aichatd-push" % bad)
        refuses([POOL, "env"], env, cwd, bad, "AICHATD_CONFIG=%s aichatd env" % bad)
        env = clean_env(AICHATD_DATA_DIR=data, AICHATD_CONFIG=bad, AICHATD_PORT="1")
        refuses([os.path.join(REPO, "scripts", "stack")], env, cwd, bad,
                "AICHATD_CONFIG=%s scripts/stack" % bad)
    assert not os.path.exists(os.path.join(data, "aichatd.db")), "a database was made"
    # a file that is there is read
    good = os.path.join(cwd, "good.conf")
    with open(good, "w") as f:
        f.write("auth = jwt\njwt_secret = %s\n" % SECRET)
    rc, out, err = run([POOL, "-c", good, "env"], clean_env(AICHATD_DATA_DIR=data), cwd, 5)
    assert rc == 0 and "AICHATD_AUTH='jwt'" in out, (rc, out, err)


# --------------------------------------------------------------------------------------
# one identity


WS_REQ = (b"GET /ws/%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def ws_status(port, conv, token=None):
    path = conv.encode() + (b"?access_token=" + token.encode() if token else b"")
    data = raw_exchange(port, WS_REQ % path, timeout=2)
    assert data, "no answer to the upgrade"
    return int(data.split(b"\r\n", 1)[0].split()[1])


def wait_for(path, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@test
def mismatched_daemon_cannot_let_clients_in(_):
    st = Stack(auth="jwt", secret=SECRET)
    _stacks.append(st)
    try:
        st.start()
    except StackError as e:
        raise AssertionError("stack did not start: %s" % e)
    tok = make_jwt({"sub": "alice", "exp": int(time.time()) + 600}, SECRET)
    assert ws_status(st.port, "cfg1") == 401, "no token let in by the right daemon"
    assert ws_status(st.port, "cfg1", tok) == 101, "a token refused"
    # a daemon started beside the jwt pool with auth off (as from a shell without the
    # settings) must refuse to run
    env = clean_env(AICHATD_DATA_DIR=st.data_dir, AICHATD_AUTH="off")
    p = subprocess.Popen([PUSHD], env=env, cwd=st.data_dir, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _procs.append(p)
    try:
        rc = p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        rc = None
    status = ws_status(st.port, "cfg2")
    stop_proc(p)
    err = p.stderr.read().decode("utf-8", "replace")
    assert status != 101, "a WebSocket with no token was let in beside a jwt pool"
    assert rc not in (None, 0), "the mismatched daemon kept running (status %r)" % rc
    assert "auth" in err and "jwt" in err, "message %r" % err[-300:]
    # the same with another secret
    env = clean_env(AICHATD_DATA_DIR=st.data_dir, AICHATD_AUTH="jwt",
                    AICHATD_JWT_SECRET=SECRET + "-other")
    rc, _, err = run([PUSHD], env, st.data_dir, timeout=5)
    assert rc not in (None, 0) and "jwt_secret" in err, (rc, err[-300:])
    # and the stack still works as it was
    assert ws_status(st.port, "cfg3") == 401 and ws_status(st.port, "cfg3", tok) == 101
    assert st.alive(), "the stack stopped:\n" + st.log_tail()


@test
def pool_refuses_beside_mismatched_daemon(_):
    data = tmpdir()
    os.makedirs(os.path.join(data, "run"))
    env = clean_env(AICHATD_DATA_DIR=data, AICHATD_AUTH="off", AICHATD_WORKERS="1")
    d = subprocess.Popen([PUSHD], env=env, cwd=data, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _procs.append(d)
    assert wait_for(os.path.join(data, "run", "push.sock"), d), "daemon did not start"
    env = clean_env(AICHATD_DATA_DIR=data, AICHATD_AUTH="jwt", AICHATD_JWT_SECRET=SECRET,
                    AICHATD_WORKERS="1")
    rc, _, err = run([POOL, "serve"], env, data, timeout=5)
    assert rc not in (None, 0), "a jwt pool ran beside a daemon with auth off"
    assert "auth = off" in err, "message %r" % err[-300:]
    # the same settings start together; once the daemon is gone, its file is no bar
    env["AICHATD_AUTH"] = "off"
    p = subprocess.Popen([POOL, "serve"], env=env, cwd=data, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _procs.append(p)
    assert wait_for(os.path.join(data, "run", "fcgi.sock"), p), "matching pool refused"
    stop_proc(p)
    stop_proc(d)
    assert d.returncode == 0 and p.returncode == 0, (d.returncode, p.returncode)
    env["AICHATD_AUTH"] = "jwt"
    p = subprocess.Popen([POOL, "serve"], env=env, cwd=data, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _procs.append(p)
    assert wait_for(os.path.join(data, "run", "fcgi.sock"), p), \
        "pool refused after the daemon stopped: %r" % p.stderr.read()[-300:]
    stop_proc(p)
