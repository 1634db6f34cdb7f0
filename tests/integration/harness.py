"""Black-box integration harness for aichatd (Python 3 standard library only).

- Stack: starts `scripts/stack` on a free loopback port with a fresh data dir, waits for
  GET /health 200, stops it with SIGTERM to its PID (never by name).
- Client: a small HTTP helper that sends raw bytes with any method and returns a Resp
  (status, headers, body bytes, parsed JSON or None).
- StackCache: the stacks a module starts itself, by kind, and their teardown.
- A tiny test registry (@test) and runner printing `ok - name` / `FAIL - name: reason`
  and a final `N passed, N failed`.
- Shared assertion helpers for the five dialects' formats.
"""

import base64
import calendar
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import uuid

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BODY_LIMIT = int(os.environ.get("AICHATD_BODY_LIMIT") or 1048576)

def _version():
    """The one version: configure.ac's AC_INIT (the program, /health and the package show it)."""
    with open(os.path.join(REPO, "configure.ac"), encoding="utf-8") as f:
        m = re.search(r"^AC_INIT\(\[aichatd\], \[([^]]+)\]", f.read(), re.M)
    return m.group(1)


VERSION = _version()

# --------------------------------------------------------------------------------------
# Stack


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------
# The store under test. AICHATD_TEST_STORE=pg runs every stack on a PostgreSQL database of
# its own (created on the server AICHATD_TEST_PG_SERVER names, a URL without a database,
# e.g. postgresql://aichatd@127.0.0.1:55432, or on a private server that run.py starts with
# tests/lib/pg-instance), dropped when the stack's data directory is removed. Unset or
# "sqlite": SQLite in the data directory, the default.

def store_kind():
    return "pg" if os.environ.get("AICHATD_TEST_STORE") == "pg" else "sqlite"


def pg_server():
    return os.environ.get("AICHATD_TEST_PG_SERVER", "").rstrip("/")


def psql(dbname, sql):
    """Run sql on the test server's database dbname with psql; its output (tuples only)."""
    out = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                          "%s/%s" % (pg_server(), dbname), "-c", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if out.returncode != 0:
        raise StackError("psql: %s" % out.stderr.decode("utf-8", "replace").strip())
    return out.stdout.decode("utf-8", "replace")


_pg_databases = {}  # data directory (real path) -> its database on the test server


def pg_database_for(data_dir):
    """The PostgreSQL database of a data directory: made on first use and kept for it (a
    stack started again on the same directory finds the same data). Nothing is written into
    the directory itself."""
    key = os.path.realpath(data_dir)
    if key not in _pg_databases:
        name = "it_" + uuid.uuid4().hex[:16]
        psql("postgres", "CREATE DATABASE %s" % name)
        _pg_databases[key] = name
    return _pg_databases[key]


def pg_drop_for(data_dir):
    name = _pg_databases.pop(os.path.realpath(data_dir), None)
    if not name:
        return
    try:
        psql("postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    except (StackError, OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("harness: cannot drop test database %s: %s\n" % (name, e))


def pg_drop_all():
    """Drop every database the harness made that is still there (run.py, at its end)."""
    for d in list(_pg_databases):
        pg_drop_for(d)


def store_env(data_dir):
    """The settings that put a stack on data_dir onto the store under test."""
    if store_kind() != "pg":
        return {}
    return {"AICHATD_DATABASE_URL": "%s/%s" % (pg_server(), pg_database_for(data_dir))}


def store_sql(data_dir, query):
    """Rows of a read-only query on the store of the stack on data_dir, as tuples (integers
    as int), whichever the store under test is."""
    if store_kind() == "pg":
        name = pg_database_for(data_dir)
        rows = []
        for line in psql(name, query).splitlines():
            rows.append(tuple(int(v) if re.fullmatch(r"-?\d+", v) else v
                              for v in line.split("|")))
        return rows
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "aichatd.db"), uri=True,
                         timeout=10)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def sqlite_only(fn):
    """A test of what only the SQLite store has (its file, its modes, its backups): run on
    SQLite, reported as skipped on another store."""
    fn.sqlite_only = True
    return fn


class StackError(Exception):
    pass


class Stack:
    """Context manager: one aichatd stack (nginx + FastCGI pool) in the foreground."""

    def __init__(self, auth="off", secret=None, workers=None, extra_env=None, data_dir=None):
        self.auth = auth
        self.secret = secret
        self.workers = workers
        self.extra_env = extra_env or {}
        self.proc = None
        self.port = None
        # a given data dir is used as it is (e.g. to start again on a crashed stack's data)
        self.given_data_dir = data_dir
        self.data_dir = None
        self.log_path = None
        self._log = None

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def start(self):
        script = os.path.join(REPO, "scripts", "stack")
        if not os.path.exists(script):
            raise StackError("scripts/stack does not exist")
        self.port = free_port()
        self.data_dir = self.given_data_dir or tempfile.mkdtemp(prefix="aichatd-it-")
        self.log_path = os.path.join(self.data_dir, "stack-output.log")
        if self.given_data_dir and os.path.exists(self.log_path):
            os.replace(self.log_path, self.log_path + ".%d" % int(time.time() * 1000))
        # on a reused data dir, nginx's error log already holds the earlier stack's lines
        errlog = os.path.join(self.data_dir, "nginx", "error.log")
        self.errlog_offset = os.path.getsize(errlog) if os.path.exists(errlog) else 0
        env = dict(os.environ)
        env["AICHATD_PORT"] = str(self.port)
        env["AICHATD_DATA_DIR"] = self.data_dir
        env["AICHATD_WORKERS"] = str(self.workers or os.environ.get("AICHATD_WORKERS", "4"))
        env["AICHATD_AUTH"] = self.auth
        env.update(store_env(self.data_dir))
        if self.secret is not None:
            env["AICHATD_JWT_SECRET"] = self.secret
        # AICHATD_BUILD_DIR and AICHATD_BODY_LIMIT pass through from the runner's environment.
        env.update(self.extra_env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([script], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        last = ""
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise StackError("stack exited with %s before ready:\n%s"
                                 % (self.proc.returncode, self.log_tail()))
            try:
                r = request(self.port, "GET", "/health", timeout=2)
                if r.status == 200:
                    return self
                last = "health answered %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                last = "%s: %s" % (type(e).__name__, e)
            time.sleep(0.1)
        self.stop()
        raise StackError("stack not ready within 20 s (%s):\n%s" % (last, self.log_tail()))

    CRASH_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:", "Segmentation fault", "core dumped", "exited (status",
                     "a process exited", "upstream prematurely closed", "connect() to unix:")

    def crash_reports(self):
        """Lines of the stack's output and nginx's error log that tell of a crashed or
        restarted process (the pool restarts a dead worker silently for the client)."""
        found = []
        errlog = os.path.join(self.data_dir or "", "nginx", "error.log")
        for path in (self.log_path, errlog):
            try:
                with open(path, "rb") as f:
                    if path == errlog:
                        f.seek(getattr(self, "errlog_offset", 0))
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            for line in text.splitlines():
                if any(m in line for m in self.CRASH_MARKERS):
                    found.append(line.strip())
        return found

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, cleanup=True):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                sys.stderr.write("harness: stack did not stop on SIGTERM within 15 s; "
                                 "sending SIGKILL to pid %d\n" % self.proc.pid)
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        if cleanup:
            self.cleanup()

    def cleanup(self):
        if self.data_dir and not os.environ.get("AICHATD_IT_KEEP"):
            pg_drop_for(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class StackCache:
    """The stacks a test module starts lazily, by kind, kept until its teardown(), and what
    goes with them: client processes (killed by PID in teardown at the latest), servers
    started once such as the fake upstream (resource()), fixtures made once (memo).

    get(kind, start) returns the fixture start() made the first time (an object whose
    .stack is the Stack); a start that raised StackError is an AssertionError then and on
    every later get. teardown() stops the stacks in the order they started and returns the
    crash-report checks run.py expects, ("<prefix>.no_crash_reports_<kind>", lines)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.stacks = {}  # kind -> fixture, or the StackError its start gave
        self.order = []
        self.procs = []
        self.memo = {}
        self._resources = []  # (name, object, stop)

    def __contains__(self, kind):
        return kind in self.stacks

    def get(self, kind, start):
        got = self.stacks.get(kind)
        if got is None:
            try:
                got = start()
            except StackError as e:
                got = e
            self.stacks[kind] = got
            self.order.append(kind)
        if isinstance(got, StackError):
            raise AssertionError("the %s stack did not start: %s" % (kind, got))
        return got

    def add(self, kind, fixture):
        """Keep a fixture (or a bare Stack) started elsewhere, for teardown."""
        self.stacks[kind] = fixture
        self.order.append(kind)
        return fixture

    def resource(self, name, start, stop):
        """The object start() made the first time; stop(object) runs after the stacks stop."""
        for n, obj, _ in self._resources:
            if n == name:
                return obj
        obj = start()
        self._resources.append((name, obj, stop))
        return obj

    def kill_procs(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        del self.procs[:]

    def teardown(self, prefix=None):
        self.kill_procs()
        checks = []
        for kind in self.order:
            st = self.stacks.get(kind)
            if st is None or isinstance(st, StackError):
                continue
            s = getattr(st, "stack", st)
            s.stop(cleanup=False)
            checks.append(("%s.no_crash_reports_%s" % (prefix or self.prefix, kind),
                           s.crash_reports()))
            s.cleanup()
        self.stacks.clear()
        del self.order[:]
        self.memo.clear()
        while self._resources:
            _, obj, stop = self._resources.pop(0)
            stop(obj)
        return checks


# --------------------------------------------------------------------------------------
# HTTP


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body
        try:
            self.json = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def __repr__(self):
        b = self.body[:300].decode("utf-8", "replace")
        return "HTTP %d %r" % (self.status, b)


_NOTSET = object()


def request(port, method, path, body=None, headers=None, json_body=_NOTSET, chunked=False,
            timeout=15):
    """Send one request on a fresh connection. `body` is bytes (sent raw); `json_body`
    is serialised (UTF-8, not ASCII-escaped). Returns a Resp."""
    hdrs = {}
    if json_body is not _NOTSET:
        body = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    elif body is not None:
        hdrs["Content-Type"] = "application/json"
    if headers:
        for k, v in headers.items():
            # allow removing a default header with None
            for existing in list(hdrs):
                if existing.lower() == k.lower():
                    del hdrs[existing]
            if v is not None:
                hdrs[k] = v
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1:%d" % port,
             "Connection: close"]
    if body is not None:
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append("Content-Length: %d" % len(body))
    for k, v in hdrs.items():
        lines.append("%s: %s" % (k, v))
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(head)
            if body is not None:
                if chunked:
                    step = 65536
                    for i in range(0, len(body), step):
                        part = body[i:i + step]
                        sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                    sock.sendall(b"0\r\n\r\n")
                else:
                    sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) before reading the whole body
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        data = resp.read()
        return Resp(resp.status, resp.getheaders(), data)
    finally:
        sock.close()


def raw_exchange(port, data, timeout=2):
    """Send raw bytes, return whatever comes back until close (or timeout)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        sock.sendall(data)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    finally:
        sock.close()
    return out


class Client:
    def __init__(self, port, headers=None):
        self.port = port
        self.default_headers = dict(headers or {})

    def with_headers(self, headers):
        h = dict(self.default_headers)
        h.update(headers)
        return Client(self.port, h)

    def with_token(self, token):
        return self.with_headers({"Authorization": "Bearer " + token})

    def req(self, method, path, body=None, json=_NOTSET, headers=None, chunked=False):
        h = dict(self.default_headers)
        if headers:
            h.update(headers)
        return request(self.port, method, path, body=body, headers=h, json_body=json,
                       chunked=chunked)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def post(self, path, json=_NOTSET, **kw):
        return self.req("POST", path, json=json, **kw)

    def put(self, path, json=_NOTSET, **kw):
        return self.req("PUT", path, json=json, **kw)

    def patch(self, path, json=_NOTSET, **kw):
        return self.req("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.req("DELETE", path, **kw)

    def options(self, path, **kw):
        return self.req("OPTIONS", path, **kw)


def q(s):
    """Percent-encode one path segment or query value."""
    return urllib.parse.quote(str(s), safe="")


def qs(**params):
    return "?" + "&".join("%s=%s" % (k, q(v)) for k, v in params.items())


# --------------------------------------------------------------------------------------
# JWT (HS256)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(payload, secret, header=None, alg="HS256"):
    header = header or {"alg": alg, "typ": "JWT"}
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(payload, separators=(",", ":")).encode())
    signing = (h + "." + p).encode("ascii")
    if header.get("alg") == "none":
        return h + "." + p + "."
    sig = hmac.new(secret.encode(), signing, hashlib.sha256).digest()
    return h + "." + p + "." + b64url(sig)


# --------------------------------------------------------------------------------------
# Registry and runner

_REGISTRY = []


def test(fn):
    _REGISTRY.append((fn.__module__, fn.__name__, fn))
    return fn


def tests_of(module_name):
    return [t for t in _REGISTRY if t[0] == module_name]


class Ctx:
    """What a test gets: the stack, a client, a cache for shared fixtures."""

    def __init__(self, stack, secret=None):
        self.stack = stack
        self.port = stack.port
        self.c = Client(stack.port)
        self.secret = secret
        self.cache = {}


def _reason(exc):
    if isinstance(exc, AssertionError) and str(exc):
        msg = str(exc)
    else:
        tb = traceback.extract_tb(exc.__traceback__)
        where = ""
        for fr in reversed(tb):
            if os.path.basename(fr.filename).startswith("test_"):
                where = " at %s:%d" % (os.path.basename(fr.filename), fr.lineno)
                break
        msg = "%s%s: %s" % (type(exc).__name__, where, exc)
    msg = " ".join(msg.split())
    return msg[:600]


def run_tests(tests, ctx, out=None):
    out = out or sys.stdout
    passed = failed = 0
    for mod, name, fn in tests:
        full = "%s.%s" % (mod, name)
        if getattr(fn, "sqlite_only", False) and store_kind() != "sqlite":
            out.write("skip - %s: SQLite's own (the store under test is %s)\n"
                      % (full, store_kind()))
            out.flush()
            continue
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            out.write("FAIL - %s: %s\n" % (full, _reason(e)))
        else:
            passed += 1
            out.write("ok - %s\n" % full)
        out.flush()
    return passed, failed


def fail_all(tests, reason, out=None):
    out = out or sys.stdout
    for mod, name, _ in tests:
        out.write("FAIL - %s.%s: %s\n" % (mod, name, " ".join(reason.split())[:600]))
    out.flush()
    return 0, len(tests)


# --------------------------------------------------------------------------------------
# Assertions and formats

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
MSGID_RE = re.compile(r"^msg_(\d{14})_[0-9a-f]{8}$")
RECID_RE = re.compile(r"^record_(\d{14})_[0-9a-f]{8}$")
IM_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
Z_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RECENT = 10  # seconds


def uniq(prefix="it"):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:10])


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def snippet(r):
    return repr(r)


def expect(r, status, what=""):
    assert r.status == status, "%sexpected HTTP %d, got %s" % (
        (what + ": ") if what else "", status, snippet(r))
    return r


def expect_json_ct(r):
    ct = (r.header("Content-Type") or "").lower()
    assert ct.startswith("application/json"), \
        "Content-Type %r is not application/json (%s)" % (ct, snippet(r))


def parse_im_time(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))


def parse_z_time(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def check_im_time(s, recent=True, what="time"):
    assert isinstance(s, str) and IM_TIME_RE.match(s), \
        "%s %r is not YYYY-MM-DDTHH:MM:SS (UTC, no offset)" % (what, s)
    if recent:
        d = abs(parse_im_time(s) - time.time())
        assert d <= RECENT, "%s %r is %ds away from the current UTC time" % (what, s, d)


def check_z_time(s, recent=True, what="time"):
    assert isinstance(s, str) and Z_TIME_RE.match(s), \
        "%s %r is not YYYY-MM-DDTHH:MM:SSZ" % (what, s)
    if recent:
        d = abs(parse_z_time(s) - time.time())
        assert d <= RECENT, "%s %r is %ds away from the current UTC time" % (what, s, d)


def check_ms(v, recent=True, what="timestamp"):
    assert is_int(v), "%s %r is not an integer" % (what, v)
    if recent:
        d = abs(v / 1000.0 - time.time())
        assert d <= RECENT, "%s %r (ms) is %ds away from now" % (what, v, d)


def check_msgid(s, recent=True, what="message id"):
    m = MSGID_RE.match(s) if isinstance(s, str) else None
    assert m, "%s %r is not msg_YYYYMMDDHHMMSS_xxxxxxxx" % (what, s)
    if recent:
        t = calendar.timegm(time.strptime(m.group(1), "%Y%m%d%H%M%S"))
        d = abs(t - time.time())
        assert d <= RECENT, "%s %r: timestamp is %ds away from the current UTC time" % (
            what, s, d)


def check_recid(s, recent=True):
    m = RECID_RE.match(s) if isinstance(s, str) else None
    assert m, "record id %r is not record_YYYYMMDDHHMMSS_xxxxxxxx" % (s,)
    if recent:
        t = calendar.timegm(time.strptime(m.group(1), "%Y%m%d%H%M%S"))
        assert abs(t - time.time()) <= 60, "record id %r: timestamp not current" % (s,)


def check_uuid4(s, what="id"):
    assert isinstance(s, str) and UUID4_RE.match(s), "%s %r is not a lower-case UUID v4" % (
        what, s)


def keys_exact(obj, keys, what="object"):
    assert isinstance(obj, dict), "%s is not an object: %r" % (what, obj)
    got = set(obj)
    want = set(keys)
    assert got == want, "%s keys: missing %s, unexpected %s" % (
        what, sorted(want - got), sorted(got - want))


def err_im(r, status, code=None, message=None):
    """Dialect im error: {"code": <business or HTTP code>, "message": "..."}."""
    expect(r, status)
    j = r.json
    assert isinstance(j, dict), "im error body is not a JSON object: %s" % snippet(r)
    keys_exact(j, ("code", "message"), "im error body")
    codes = code if isinstance(code, (set, tuple, list)) else {status if code is None else code}
    assert j["code"] in codes and is_int(j["code"]), "im error code %r, expected %s (%s)" % (
        j["code"], sorted(codes), snippet(r))
    assert isinstance(j["message"], str) and j["message"], "im error message empty: %s" % (
        snippet(r))
    if message is not None:
        assert j["message"] == message, "im error message %r, expected %r" % (j["message"], message)
    expect_json_ct(r)
    return j


def err_env(r, status, message=None, what="envelope"):
    """Dialects aichat, v1, workflow error: {"code": <HTTP code>, "message": "...",
    "data": null}."""
    expect(r, status)
    j = r.json
    assert isinstance(j, dict), "%s error body is not a JSON object: %s" % (what, snippet(r))
    keys_exact(j, ("code", "message", "data"), what + " error body")
    assert j["code"] == status and is_int(j["code"]), "%s code %r != HTTP %d" % (
        what, j["code"], status)
    assert j["data"] is None, "%s error data is not null: %r" % (what, j["data"])
    assert isinstance(j["message"], str) and j["message"], "%s error message empty" % what
    if message is not None:
        assert j["message"] == message, "%s message %r, expected %r" % (
            what, j["message"], message)
    expect_json_ct(r)
    return j


def err_chax(r, status, error=None):
    """Dialect chax error: {"error": "..."}."""
    expect(r, status)
    j = r.json
    assert isinstance(j, dict), "chax error body is not a JSON object: %s" % snippet(r)
    keys_exact(j, ("error",), "chax error body")
    assert isinstance(j["error"], str) and j["error"], "chax error empty: %s" % snippet(r)
    if error is not None:
        assert j["error"] == error, "chax error %r, expected %r" % (j["error"], error)
    expect_json_ct(r)
    return j


def ok_env(r, what="response"):
    """aichat, v1, workflow success: {"code":200,"message":"success","data":...}; returns data."""
    expect(r, 200, what)
    j = r.json
    assert isinstance(j, dict), "%s body is not a JSON object: %s" % (what, snippet(r))
    keys_exact(j, ("code", "message", "data"), what + " envelope")
    assert j["code"] == 200, "%s code %r" % (what, j["code"])
    assert j["message"] == "success", "%s message %r, expected 'success'" % (what, j["message"])
    expect_json_ct(r)
    return j["data"]


def ok_json(r, what="response"):
    expect(r, 200, what)
    assert r.json is not None, "%s body is not JSON: %s" % (what, snippet(r))
    expect_json_ct(r)
    return r.json


# --------------------------------------------------------------------------------------
# Shared fixtures (through dialect aichat: role assistant/system gives no AI reply)

IM_MSG_KEYS = ("id", "message_id", "session_id", "from_user_id", "msg_type", "msg_content",
              "created_at")
IM_REC_KEYS = ("id", "record_id", "session_id", "user_message_id", "ai_message_id", "status",
              "duration_ms", "error_message", "created_at")
AICHAT_SESSION_KEYS = ("session_id", "user_id", "title", "message_count", "created_at",
                       "updated_at", "is_deleted")
AICHAT_MSG_KEYS = ("message_id", "session_id", "role", "content", "created_at", "updated_at",
              "is_deleted")
CHAX_CONV_KEYS = ("conversationId", "title", "createTimestamp", "updateTimestamp")
CHAX_MSG_KEYS = ("msgId", "role", "visiableInClient", "unfinished", "error")
V1_MSG_KEYS = ("message_id", "type", "content", "created_time", "metadata")
V1_CFG_KEYS = ("config_id", "provider", "model_name", "model_version", "parameters",
              "system_prompt", "updated_time")
V1_LOG_KEYS = ("log_id", "level", "message", "created_time")
WORKFLOW_ITEM_KEYS = ("id", "sessionId", "userId", "userMessage", "aiResponse", "timestamp",
               "createdAt")


def aichat_session(c, user_id=None, title=None):
    body = {}
    if user_id is None and "Authorization" not in c.default_headers:
        user_id = "default_user"  # required with no token (the token's subject otherwise)
    if user_id is not None:
        body["user_id"] = user_id
    if title is not None:
        body["title"] = title
    return ok_env(c.post("/api/chat/session", json=body), "POST /api/chat/session")


def aichat_msg(c, sid, content, role="assistant"):
    return ok_env(c.post("/api/chat/message",
                         json={"session_id": sid, "content": content, "role": role}),
                  "POST /api/chat/message")


def im_send(c, sid, content):
    return ok_json(c.post("/api/message/send", json={"content": content, "session_id": sid}),
                   "POST /api/message/send")


BIG_N = 105


def big_conv(ctx):
    """A conversation with BIG_N messages m001..m105 (assistant, every 7th system), made
    once per stack through dialect aichat."""
    if "big" not in ctx.cache:
        s = aichat_session(ctx.c, user_id=uniq("big"), title="big")
        sid = s["session_id"]
        for i in range(1, BIG_N + 1):
            aichat_msg(ctx.c, sid, "m%03d" % i, "system" if i % 7 == 0 else "assistant")
        ctx.cache["big"] = sid
    return ctx.cache["big"]


def contents(n_from, n_to):
    return ["m%03d" % i for i in range(n_from, n_to + 1)]


BAD_PAGES = ["0", "-1", "abc", "1.5", "1e2", "0x10", "99999999999999999999", "2147483648"]
BAD_SIZES = ["0", "-1", "abc", "1.5", "101", "99999999999999999999"]


def poll(fn, timeout=10.0, what="condition", every=0.05):
    """Call fn until it returns something true (and return that), or fail after timeout s."""
    end = time.time() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.time() >= end:
            raise AssertionError("%s not reached within %.1f s (last: %r)" % (what, timeout, got))
        time.sleep(every)


def proc_children(pid):
    """The child PIDs of pid, from /proc (never by name)."""
    out = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def proc_argv(pid):
    """pid's command line, from /proc."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def proc_alive(pid):
    """pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
