"""`aichatd nginx-conf` and run_dir (started by run.py as a SELF_MODULE: it starts the
programs itself and stops them by PID).

- The snippet is made from the settings in force (the sockets, the body limit, the read
  timeout), includes no file (before: it included aichatd-fastcgi.conf from the data
  directory, so it could not live in /etc/nginx/snippets/), and its prefixes end in a
  slash (before: /api, /ai and /aichat also took the host's /apidocs/ and /airport.html).
- A socket path nginx could not read bare (relative, or with a space) is refused.
- One version: configure.ac's AC_INIT is debian/changelog's, and what both programs' --version
  and /health say (before: the tests and the package each had a copy of their own).
- nginx's own 414 and 400 for a path of the host's site are nginx's pages, not aichatd's
  JSON (the snippet's server-level error_page lines answer only aichatd's paths so).
- With run_dir elsewhere than the data directory, the stack runs with its sockets there:
  a send is answered by the push daemon's reply (the daemon and the pool found each other).
"""

import os
import re
import shutil
import subprocess
import tempfile

from harness import REPO, VERSION, Client, Stack, im_send, poll, raw_exchange, test, uniq

BUILD = os.environ.get("AICHATD_BUILD_DIR") or "build"
BUILD = BUILD if os.path.isabs(BUILD) else os.path.join(REPO, BUILD)
POOL = os.path.join(BUILD, "src", "aichatd")

_stacks = []
_dirs = []


def teardown():
    checks = []
    for s in _stacks:
        s.stop(cleanup=False)
        checks.append(("test_nginx_conf.no_crash_reports", s.crash_reports()))
        s.cleanup()
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    del _stacks[:], _dirs[:]
    return checks


def nginx_conf(**env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AICHATD_")}
    e.update(env)
    return subprocess.run([POOL, "nginx-conf"], env=e, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=10)


@test
def snippet_from_settings_includes_nothing(_):
    r = nginx_conf(AICHATD_DATA_DIR="/srv/chat", AICHATD_RUN_DIR="/run/chat",
                   AICHATD_BODY_LIMIT="2000000", AICHATD_REPLY_TIMEOUT_S="100")
    assert r.returncode == 0, r.stderr
    text = r.stdout
    lines = [ln.strip() for ln in text.splitlines() if not ln.strip().startswith("#")]
    assert not [ln for ln in lines if ln.startswith("include")], "the snippet includes a file"
    assert "@" not in re.sub(r"@aichatd_\w+", "", text), "a placeholder is left"
    passes = {ln for ln in lines if ln.startswith("fastcgi_pass ")}
    assert passes == {"fastcgi_pass unix:/run/chat/fcgi.sock;"}, passes
    proxies = {ln for ln in lines if ln.startswith("proxy_pass ")}
    assert proxies and all(p.startswith("proxy_pass http://unix:/run/chat/push-http.sock:")
                           for p in proxies), proxies
    assert {ln for ln in lines if ln.startswith("client_max_body_size")} == \
        {"client_max_body_size 2000000;"}
    # a worker waits up to reply_timeout_s for a reply: nginx a little longer
    assert "fastcgi_read_timeout 130s;" in lines
    locs = [ln for ln in lines if ln.startswith("location ")]
    prefixes = [ln.split()[1] for ln in locs if not ln.split()[1] in ("=", "~", "~*", "^~")
                and not ln.split()[1].startswith("@")]
    assert {"/api/", "/ai/", "/aichat/", "/ws/", "/api/message/", "/api/ai/"} <= set(prefixes), prefixes
    assert all(p.endswith("/") for p in prefixes), "a prefix without its slash: %r" % prefixes
    assert "location = /health {" in lines


@test
def socket_paths_nginx_cannot_read_are_refused(_):
    for env in ({"AICHATD_DATA_DIR": "./var"}, {"AICHATD_DATA_DIR": "/srv/a b"},
                {"AICHATD_DATA_DIR": "/srv/x", "AICHATD_RUN_DIR": "/run/x;y"}):
        r = nginx_conf(**env)
        assert r.returncode == 1 and "socket" in r.stderr and not r.stdout, (env, r)


@test
def one_version(_):
    with open(os.path.join(REPO, "debian", "changelog"), encoding="utf-8") as f:
        top = f.readline()
    m = re.match(r"aichatd \(([^)]+)\) ", top)
    assert m and m.group(1) == VERSION, "debian/changelog %r, configure.ac %s" % (top, VERSION)
    for prog in ("aichatd", "aichatd-push"):
        r = subprocess.run([os.path.join(BUILD, "src", prog), "--version"], capture_output=True,
                           text=True, timeout=10)
        assert r.stdout == "%s %s\n" % (prog, VERSION), (prog, r.stdout)


@test
def stack_with_run_dir_elsewhere(_):
    run_dir = tempfile.mkdtemp(prefix="aichatd-run-")
    _dirs.append(run_dir)
    st = Stack(extra_env={"AICHATD_RUN_DIR": run_dir, "AICHATD_SOCKET_GROUP": str(os.getgid())})
    _stacks.append(st)
    st.start()
    for sock in ("fcgi.sock", "push-http.sock", "post.sock", "push.sock"):
        assert os.path.exists(os.path.join(run_dir, sock)), sock
    assert not os.path.exists(os.path.join(st.data_dir, "run", "fcgi.sock"))
    # with a socket_group, run_dir lets the group through; the data directory, with no
    # socket in it, does not
    assert os.stat(run_dir).st_mode & 0o777 == 0o710, oct(os.stat(run_dir).st_mode)
    assert os.stat(st.data_dir).st_mode & 0o077 == 0, oct(os.stat(st.data_dir).st_mode)
    c = Client(st.port)
    sid = uniq("rundir")
    im_send(c, sid, "hello")

    def replied():
        r = c.get("/api/message/list?session_id=" + sid)
        return r.status == 200 and '"AI_REPLY"' in r.body.decode("utf-8")
    poll(replied, what="the daemon's reply")
    assert '"version":"%s"' % VERSION in c.get("/health").body.decode("utf-8")
    long_path = "/airport.html?" + "a" * 20000
    for req, status in ((b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                         % long_path.encode(), 414),
                        (b"GET /airport.html HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n"
                         b"Connection: close\r\n\r\n" % (b"b" * 20000), 400)):
        data = raw_exchange(st.port, req)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split()[1] == str(status).encode(), head[:80]
        assert b"text/html" in head.lower() and b"<html>" in body, (status, head, body[:80])
