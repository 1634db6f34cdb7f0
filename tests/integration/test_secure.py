"""Text that stays text, secrets that never leave, files only for their owner, numbers as
people wrote them.

- An upstream's failure told in long Chinese text (an HTTP 500 body, JSON or plain, and an
  `error` object in the stream) reaches every dialect whole and readable: im's records and
  list, aichat's messages, chax's content, list and stream, v1's and workflow's sends, the
  WebSocket.
- Rows an older version stored cut inside a character (written here with the sqlite3 CLI
  into a stopped stack's database) are read back with U+FFFD by every dialect, never
  dropped from a page that counts them; a long path's auth failure is in the log.
- Model-config parameters that name a credential are refused; one stored by an older
  version is never shown. Errors shown to clients name the failure, not the upstream's
  host, port or key; the operation log keeps the detail for admins.
- The database, its -wal and -shm and the data directory are their owner's alone; the
  sockets nginx reaches are 0660 with AICHATD_SOCKET_GROUP.
- Model-config parameters render as written (0.7, not 0.69999999999999996).

This module starts its own stacks (run.py's SELF_MODULES), lazily, and stops them in
teardown():
  oa      openai provider against tests/fake/fake_upstream.py (its long Chinese and
          telltale cases), a key the API must never show
  closed  openai provider pointed at a port nothing listens on
  jwt     AICHATD_AUTH=jwt, builtin provider
  group   builtin provider, AICHATD_SOCKET_GROUP set to a group of this machine
  old     builtin provider; stopped, given broken rows with sqlite3, started again
"""

import grp
import json
import os
import select
import stat
import subprocess
import sys
import time
import uuid

import harness  # noqa: E402
from harness import (REPO, Client, Stack, StackCache, StackError, im_send, aichat_msg,
                     aichat_session, err_env, free_port, make_jwt, ok_env, ok_json, poll, q,
                     request, test, uniq)

sys.path.insert(0, os.path.join(REPO, "tests", "fake"))
import fake_upstream as fu  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WS_PYTHON = os.environ.get("AICHATD_WS_PYTHON", "/usr/bin/python3")
WS_DRIVER = os.path.join(HERE, "ws_driver.py")
CURL = os.environ.get("AICHATD_CURL", "curl")
SQLITE = os.environ.get("AICHATD_SQLITE3", "sqlite3")
API_KEY = "sk-secure-" + uuid.uuid4().hex  # must never come back from the API
SECRET = "secure-secret-" + uuid.uuid4().hex
FFFD = "\ufffd"
CLOSED_PORT = free_port()  # nothing listens there

_stacks = StackCache("test_secure")
_procs = _stacks.procs  # client processes started here, killed by PID in teardown at the latest
_cache = _stacks.memo


def fake():
    return _stacks.resource("fake", lambda: fu.FakeUpstream().start(), lambda f: f.stop())


def socket_group():
    """A group of this machine the stack may give its sockets: not our primary group
    when we can (root may use any), so that the change shows."""
    mine = os.getgid()
    if os.geteuid() == 0:
        names = [g for g in grp.getgrall() if g.gr_gid != mine]
    else:
        names = [grp.getgrgid(g) for g in os.getgroups() if g != mine]
    if not names:
        names = [grp.getgrgid(mine)]
    for g in names:
        if g.gr_name in ("www-data", "nogroup", "daemon", "users"):
            return g
    return names[0]


def _env(kind):
    env = {"AICHATD_BUILTIN_DELAY_MS": "10", "AICHATD_OPENAI_API_KEY": API_KEY,
           "AICHATD_OPENAI_MODEL": "fake-normal", "AICHATD_CONNECT_TIMEOUT_S": "3",
           "AICHATD_REPLY_TIMEOUT_S": "10", "AICHATD_N8N_WEBHOOK_URL": "",
           "AICHATD_PROVIDER": "builtin",
           "AICHATD_OPENAI_BASE_URL": "http://127.0.0.1:%d/v1" % CLOSED_PORT}
    if kind == "oa":
        env["AICHATD_PROVIDER"] = "openai"
        env["AICHATD_OPENAI_BASE_URL"] = fake().openai_base()
    elif kind == "closed":
        env["AICHATD_PROVIDER"] = "openai"
    elif kind == "group":
        env["AICHATD_SOCKET_GROUP"] = socket_group().gr_name
    return env


class St:
    def __init__(self, stack, auth="off"):
        self.stack = stack
        self.port = stack.port
        self.c = Client(stack.port)
        self.auth = auth


def _start(kind, data_dir=None):
    env = _env(kind)
    if kind == "jwt":
        s = Stack(auth="jwt", secret=SECRET, extra_env=env, data_dir=data_dir)
    else:
        s = Stack(extra_env=env, data_dir=data_dir)
    s.start()
    return St(s, "jwt" if kind == "jwt" else "off")


def stack(kind):
    return _stacks.get(kind, lambda: _start(kind))


def teardown():
    return _stacks.teardown()


def token(sub, **extra):
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + 3600}
    payload.update(extra)
    return make_jwt(payload, SECRET)


# --------------------------------------------------------------------------------------
# Clients: the WebSocket through ws_driver.py (Python's websockets), SSE through curl


class WS:
    def __init__(self, port, conv):
        if not os.path.exists(WS_PYTHON):
            raise AssertionError("%s is missing (python3-websockets is for it)" % WS_PYTHON)
        self.proc = subprocess.Popen([WS_PYTHON, WS_DRIVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        _procs.append(self.proc)
        self.buf = b""
        url = "ws://127.0.0.1:%d/ws/%s" % (port, q(conv))
        a = self._cmd({"op": "connect", "url": url, "headers": {}}, 10)
        if not a.get("ok"):
            self.close()
            raise AssertionError("the WebSocket handshake on /ws/%s failed: %r" % (conv, a))
        m = self.recv(5)
        assert m.get("type") == "connected", "first WebSocket message %r" % (m,)

    def _cmd(self, obj, timeout):
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()
        end = time.time() + timeout + 5
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                raise AssertionError("the WebSocket client did not answer %r" % (obj,))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                b = os.read(fd, 65536)
                if not b:
                    raise AssertionError("the WebSocket client exited")
                self.buf += b
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line.decode("utf-8"))

    def recv(self, timeout):
        a = self._cmd({"op": "recv", "timeout": timeout}, timeout)
        assert "msg" in a, "no WebSocket message within %.1f s: %r" % (timeout, a)
        return json.loads(a["msg"])

    def until(self, mtype, timeout):
        end = time.time() + timeout
        seen = []
        while True:
            left = end - time.time()
            if left <= 0:
                raise AssertionError("no WebSocket %r within %.1f s; got types %r" % (
                    mtype, timeout, seen))
            m = self.recv(left)
            seen.append(m.get("type"))
            if m.get("type") == mtype:
                return m

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def sse_events(port, msg_id, timeout=8):
    """The events of chax's stream of a finished message, read until the server ends it."""
    p = subprocess.run([CURL, "-sS", "-N", "--max-time", str(timeout),
                        "http://127.0.0.1:%d/ai/message/stream/%s" % (port, q(msg_id))],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout + 5)
    evs = []
    for block in p.stdout.split(b"\n\n"):
        ev, data = None, []
        for line in block.decode("utf-8", "replace").split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if ev and data:
            try:
                evs.append((ev, json.loads("\n".join(data))))
            except ValueError:
                evs.append((ev, "\n".join(data)))
    return evs, p.stdout


# --------------------------------------------------------------------------------------
# Dialect helpers


def im_records(c, sid):
    return ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid)),
                   "GET /api/ai/records")


def im_ended_record(c, sid, timeout=15.0):
    def look():
        j = im_records(c, sid)
        assert len(j["records"]) == j["total"], \
            "/api/ai/records counts %d but lists %d: %r" % (j["total"], len(j["records"]), j)
        ended = [r for r in j["records"] if r["status"] != 0]
        return ended[0] if ended else None
    return poll(look, timeout, "the im record of %s ending" % sid)


def chax_chat(c, content):
    return ok_json(c.post("/ai/chat", json={"content": content}), "POST /ai/chat")


def chax_finished(c, conv, msg_id, timeout=15.0):
    def look():
        r = c.get("/ai/message/list/%s" % q(conv))
        assert r.status == 200, "GET /ai/message/list: %r" % (r,)
        for m in r.json:
            if m["msgId"] == msg_id and m["unfinished"] is False:
                return m
        return None
    return poll(look, timeout, "chax message %s finished" % msg_id)


def v1_session(c, user):
    return ok_env(c.post("/api/v1/sessions", json={"user_id": user}),
                  "POST /api/v1/sessions")["session_id"]


def v1_send(c, sid, user, message):
    return c.post("/api/v1/sessions/%s/messages" % q(sid),
                  json={"user_id": user, "message": message})


def workflow_send(c, sid, user, text):
    return c.post("/api/chat/send", json={"sessionId": sid, "userId": user, "chatInput": text})


def logs(c, level=None, size=100):
    path = "/api/v1/logs?page_size=%d" % size
    if level:
        path += "&level=" + level
    j = ok_env(c.get(path), "GET /api/v1/logs")
    assert len(j["logs"]) == min(j["total"], size), \
        "/api/v1/logs counts %d but lists %d" % (j["total"], len(j["logs"]))
    return j["logs"]


def log_texts(c, problems, level=None):
    """The log's messages; a log that drops rows is one more problem, not the end."""
    try:
        return [e["message"] for e in logs(c, level)]
    except AssertionError as e:
        problems.append(str(e))
        return []


def readable(text, what):
    assert isinstance(text, str) and text, "%s is %r" % (what, text)
    assert FFFD not in text, "%s was cut inside a character: %r" % (what, text[-40:])
    return text


class Failure:
    """Each dialect's view of a run that failed: what each one says."""

    def __init__(self):
        self.said = {}  # where -> the error text it showed
        self.problems = []

    def check(self, where, fn):
        try:
            got = fn()
            if got is not None:
                self.said[where] = got
        except AssertionError as e:
            self.problems.append("%s: %s" % (where, e))


def fail_everywhere(st, text):
    """Make one run fail in each dialect with the message text, and collect what every
    dialect shows of it (AssertionError listing what went wrong where)."""
    c = st.c
    f = Failure()
    im_sid = uniq("sa")
    ws = WS(st.port, im_sid)
    try:
        am = im_send(c, im_sid, text + " im")

        def im_rec():
            rec = im_ended_record(c, im_sid)
            assert rec["status"] == 2, "record status %r, expected 2" % (rec["status"],)
            assert rec["user_message_id"] == am["message_id"]
            return readable(rec["error_message"], "the record's error_message")

        def im_list():
            j = ok_json(c.get("/api/message/list?session_id=%s&page_size=100" % q(im_sid)),
                        "GET /api/message/list")
            assert len(j["messages"]) == j["total"] and j["total"] >= 1, \
                "im's list counts %d but lists %d" % (j["total"], len(j["messages"]))

        def ws_error():
            m = ws.until("error", 10)
            return readable(m.get("message"), "the WebSocket error's message")
        f.check("im records", im_rec)
        f.check("im list", im_list)
        f.check("WebSocket", ws_error)
    finally:
        ws.close()

    def aichat_messages():
        sid = aichat_session(c, user_id=uniq("bu"))["session_id"]
        aichat_msg(c, sid, text + " aichat", "user")

        def ended():
            rec = im_records(c, sid)["records"]
            return rec and rec[0]["status"] != 0
        poll(ended, 15, "aichat's run ending")
        # read once it has ended: a list read while the end commits may count the
        # conversation before the reply and list the rows after it
        d = ok_env(c.get("/api/chat/sessions/%s/messages" % q(sid)), "aichat message list")
        assert len(d["items"]) == d["total"] and d["total"] >= 1, \
            "aichat's list counts %d but lists %d" % (d["total"], len(d["items"]))
    f.check("aichat messages", aichat_messages)

    cj = chax_chat(c, text + " chax")

    def chax_list():
        m = chax_finished(c, cj["conversationId"], cj["msgId"])
        return readable(m["error"], "chax list's error")

    def chax_content():
        r = c.get("/ai/message/content/" + q(cj["msgId"]))
        j = ok_json(r, "GET /ai/message/content")
        return readable(j["error"], "chax content's error")

    def chax_stream():
        evs, raw = sse_events(st.port, cj["msgId"])
        errs = [d for e, d in evs if e == "error"]
        assert errs, "chax's stream has no error event: %r" % (raw[-300:],)
        return readable(errs[-1]["content"], "chax stream's error")
    f.check("chax list", chax_list)
    f.check("chax content", chax_content)
    f.check("chax stream", chax_stream)

    def v1_sync():
        user = uniq("du")
        sid = v1_session(c, user)
        j = err_env(v1_send(c, sid, user, text + " v1"), 502, what="v1 send")
        return readable(j["message"], "v1 send's message")

    def workflow_sync():
        j = err_env(workflow_send(c, uniq("se"), uniq("eu"), text + " workflow"), 500,
                    what="workflow send")
        assert j["message"].startswith("发送消息失败: "), \
            "workflow message %r" % (j["message"],)
        return readable(j["message"], "workflow send's message")
    f.check("v1 send", v1_sync)
    f.check("workflow send", workflow_sync)
    return f


# --------------------------------------------------------------------------------------
# Text that stays text: long Chinese failures from the upstream


def _long_failure(case):
    def t(_):
        st = stack("oa")
        f = fail_everywhere(st, "[case:%s] %s" % (case, uniq("long")))
        want = fu.OPENAI_CASES[case]["error"]
        for where, said in f.said.items():
            if want not in said:
                f.problems.append("%s: %r does not tell the upstream's message %r" % (
                    where, said[:80], want))
            if "AI 服务调用失败" not in said:
                f.problems.append("%s: %r does not say AI 服务调用失败" % (where, said[:80]))
            if case.startswith("long500") and "500" not in said:
                f.problems.append("%s: %r has no HTTP status" % (where, said[:80]))
        assert not f.problems, "; ".join(f.problems)
    t.__name__ = t.__qualname__ = "long_chinese_failure_in_every_dialect_%s" % case
    test(t)


for _case in ("long500", "long500text", "longerror"):
    _long_failure(_case)


def _raw_path(s):
    """A request path sent as raw UTF-8 bytes (request() writes the head as latin-1)."""
    return s.encode("utf-8").decode("latin-1")


@test
def long_path_auth_failure_is_in_the_log(_):
    """An unauthenticated request on a long path (raw UTF-8 bytes, as a client may send
    them) is in the operation log, its path cut on a character boundary."""
    st = stack("jwt")
    tag = uniq("lp")
    longs = {"cjk": "你好世界" * 30, "latin": "é" * 99}  # 3-byte and 2-byte characters
    for name, text in longs.items():
        path = _raw_path("/api/chat/sessions/%s%s%s" % (tag, name, text))
        r = request(st.port, "GET", path)
        assert r.status == 401, "unauthenticated GET of a long path: %r" % (r,)
    admin = st.c.with_token(token("auditor", role="admin"))
    got = {}
    for e in logs(admin, "warning"):
        for name in longs:
            if tag + name in e["message"]:
                got[name] = e["message"]
    assert sorted(got) == sorted(longs), "the log has the auth failures of %s, not of %s" % (
        sorted(got), sorted(set(longs) - set(got)))
    for name, m in got.items():
        want = "auth failure: no token on GET /api/chat/sessions/%s%s" % (tag, name)
        assert m.startswith(want + longs[name][:20]), "log line %r" % (m[:120],)
        assert FFFD not in m, "the path was cut inside a character: %r" % (m[-30:],)


# --------------------------------------------------------------------------------------
# Rows an older version stored broken


BROKEN = "X'E4BDA0E5A5BD' || X'E4BD'"  # 你好 and the first two bytes of 你


def old_stack():
    """The `old` stack, with broken rows: made once (sends in every dialect, a stop, the
    rows broken with the sqlite3 CLI, a start on the same data dir)."""
    if "old" in _cache:
        got = _cache["old"]
        if isinstance(got, AssertionError):
            raise got
        return got
    try:
        st = stack("old")
        c = st.c
        ids = {"a": uniq("oa"), "e": uniq("oe"), "eu": uniq("ou"), "tag": uniq("tag")}
        im_send(c, ids["a"], "im 你好")
        ids["b"] = aichat_session(c, user_id="default_user", title="aichat 标题")["session_id"]
        aichat_msg(c, ids["b"], "aichat 你好", "user")
        cj = chax_chat(c, "chax 你好")
        ids["c"], ids["cmsg"] = cj["conversationId"], cj["msgId"]
        ok_env(workflow_send(c, ids["e"], ids["eu"], "workflow 你好"), "workflow send")
        poll(lambda: im_records(c, ids["a"])["records"][0]["status"] == 1, 10, "im's reply")
        chax_finished(c, ids["c"], ids["cmsg"])
        poll(lambda: im_records(c, ids["b"])["records"][0]["status"] == 1, 10, "aichat's reply")
        data_dir = st.stack.data_dir
        st.stack.stop(cleanup=False)
        db = os.path.join(data_dir, "aichatd.db")
        old_secret = "sk-old-" + uuid.uuid4().hex
        ids["old_secret"] = old_secret
        sql = """
UPDATE messages SET content = CAST(%(b)s AS TEXT) || 'tail';
UPDATE messages SET error = CAST(%(b)s AS TEXT) WHERE role = 'assistant';
UPDATE runs SET status = 2, error_code = 2001, error_message = CAST(%(b)s AS TEXT);
UPDATE conversations SET title = CAST(%(b)s AS TEXT);
INSERT INTO logs (level, message, created_at) VALUES
  ('error', CAST('%(tag)s ' AS TEXT) || CAST(%(b)s AS TEXT), %(now)d);
UPDATE model_configs SET parameters =
  '{"temperature":0.5,"api_key":"%(sk)s","extra":{"Token":"%(sk)s","ok":1}}'
  WHERE config_id = 'openai';
""" % {"b": BROKEN, "tag": ids["tag"], "now": int(time.time() * 1000), "sk": old_secret}
        p = subprocess.run([SQLITE, db], input=sql.encode(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        assert p.returncode == 0, "sqlite3: %s" % p.stderr.decode("utf-8", "replace")
        st2 = _start("old", data_dir=data_dir)
        _stacks.stacks["old"] = st2
        _cache["old"] = (st2, ids)
        return _cache["old"]
    except (AssertionError, StackError) as e:
        _cache["old"] = AssertionError("the old stack's broken rows: %s" % (e,))
        raise _cache["old"]


def mended(text, what):
    assert isinstance(text, str) and text.startswith("你好" + FFFD), \
        "%s %r is not the broken row shown with U+FFFD" % (what, text)


@test
@harness.sqlite_only
def broken_rows_render_with_fffd_in_every_dialect(_):
    st, ids = old_stack()
    c = st.c
    problems = []

    def check(where, fn):
        try:
            fn()
        except AssertionError as e:
            problems.append("%s: %s" % (where, e))

    def a():
        j = ok_json(c.get("/api/message/list?session_id=" + q(ids["a"])), "im list")
        assert j["total"] == 2 and len(j["messages"]) == 2, "im list %r" % (j,)
        for m in j["messages"]:
            mended(m["msg_content"], "im msg_content")
        one = ok_json(c.get("/api/message/%s" % q(j["messages"][0]["message_id"])), "im get")
        mended(one["msg_content"], "im get's msg_content")
        r = im_records(c, ids["a"])
        assert r["total"] == 1 and len(r["records"]) == 1, "im records %r" % (r,)
        mended(r["records"][0]["error_message"], "im error_message")

    def b():
        d = ok_env(c.get("/api/chat/sessions/%s/messages" % q(ids["b"])), "aichat messages")
        assert d["total"] == 2 and len(d["items"]) == 2, "aichat messages %r" % (d,)
        for m in d["items"]:
            mended(m["content"], "aichat content")
        s = ok_env(c.get("/api/chat/sessions/" + q(ids["b"])), "aichat session")
        mended(s["title"], "aichat title")
        lst = ok_env(c.get("/aichat/getsessionlist/default_user?page_size=100"), "aichat sessions")
        assert lst["total"] == len(lst["items"]) == 3, "aichat sessions %r" % (lst,)
        for x in lst["items"]:
            mended(x["title"], "aichat sessions' title")

    def cc():
        lst = ok_json(c.get("/ai/message/list/" + q(ids["c"])), "chax list")
        assert len(lst) == 2, "chax list %r" % (lst,)
        assert [m for m in lst if m["msgId"] == ids["cmsg"]], "chax list %r" % (lst,)
        for m in lst:
            if m["role"] == "assistant":
                mended(m["error"], "chax list's error")
        cont = ok_json(c.get("/ai/message/content/" + q(ids["cmsg"])), "chax content")
        mended(cont["content"], "chax content")
        mended(cont["error"], "chax content's error")
        evs, raw = sse_events(st.port, ids["cmsg"])
        errs = [d for e, d in evs if e == "error"]
        assert errs, "chax stream has no error event: %r" % (raw[-200:],)
        mended(errs[-1]["content"], "chax stream's error")
        convs = ok_json(c.get("/ai/record/list"), "chax record list")
        rows = convs if isinstance(convs, list) else convs.get("records", convs)
        assert any(isinstance(x, dict) and x.get("conversationId") == ids["c"] for x in rows), \
            "chax's record list lacks the conversation: %r" % (convs,)

    def d():
        lst = ok_env(c.get("/api/v1/sessions/%s/messages" % q(ids["b"])), "v1 messages")
        assert lst["total"] == 2 and len(lst["messages"]) == 2, "v1 messages %r" % (lst,)
        for m in lst["messages"]:
            mended(m["content"], "v1 content")
        got = [e for e in logs(c, "error") if ids["tag"] in e["message"]]
        assert len(got) == 1, "the broken log row is not listed"
        assert got[0]["message"] == ids["tag"] + " 你好" + FFFD, "log %r" % (got[0],)

    def e():
        h = ok_env(c.get("/api/chat/history?sessionId=" + q(ids["e"])), "workflow history")
        assert h["total"] == 1 and len(h["messages"]) == 1, "workflow history %r" % (h,)
        mended(h["messages"][0]["userMessage"], "workflow userMessage")
        mended(h["messages"][0]["aiResponse"], "workflow aiResponse")
    for where, fn in (("im", a), ("aichat", b), ("chax", cc), ("v1", d), ("workflow", e)):
        check(where, fn)
    with open(st.stack.log_path, "rb") as fh:
        out = fh.read().decode("utf-8", "replace")
    if "not valid UTF-8" not in out:
        problems.append("no line of the stack's output tells of the broken text")
    assert not problems, "; ".join(problems)


# --------------------------------------------------------------------------------------
# Secrets


SECRET_PARAMS = [{"api_key": "K"}, {"apikey": "K"}, {"KEY": "K"}, {"Token": "K"},
                 {"SECRET": "K"}, {"password": "K"}, {"Authorization": "Bearer K"},
                 {"x-api-key": "K"}, {"accessToken": "K"}, {"client_secret": "K"},
                 {"temperature": 0.2, "nested": {"deeper": {"apiKey": "K"}}},
                 {"tools": [{"x": 1}, {"headers": {"authorization": "K"}}]}]


@test
def credentials_in_parameters_are_refused(_):
    st = stack("oa")
    c = st.c
    key = "sk-param-" + uuid.uuid4().hex
    problems = []
    for params in SECRET_PARAMS:
        body = json.loads(json.dumps(params).replace('"K"', json.dumps(key))
                          .replace("Bearer K", "Bearer " + key))
        for form in (body, json.dumps(body)):  # an object, and the same as a JSON string
            r = c.put("/api/v1/model-configs/openai", json={"parameters": form})
            if r.status != 400:
                problems.append("%s: HTTP %d, expected 400" % (json.dumps(params), r.status))
            elif key in r.body.decode("utf-8", "replace"):
                problems.append("the 400 for %s shows the key" % json.dumps(params))
    lst = c.get("/api/v1/model-configs")
    if key in lst.body.decode("utf-8", "replace"):
        problems.append("GET /api/v1/model-configs shows the key")
    if any(key in m for m in log_texts(c, problems)):
        problems.append("/api/v1/logs shows the key")
    ok = ok_env(c.put("/api/v1/model-configs/openai",
                      json={"parameters": {"temperature": 0.7, "max_tokens": 64, "top_k": 5,
                                           "keywords": ["a"]}}), "PUT ordinary parameters")
    assert ok["config_id"] == "openai"
    assert not problems, "; ".join(problems)


@test
@harness.sqlite_only
def credentials_stored_by_an_older_version_are_never_shown(_):
    st, ids = old_stack()
    body = st.c.get("/api/v1/model-configs")
    cfgs = ok_env(body, "GET /api/v1/model-configs")["models"]
    assert ids["old_secret"] not in body.body.decode("utf-8", "replace"), \
        "GET /api/v1/model-configs shows a stored key"
    oa = [m for m in cfgs if m["config_id"] == "openai"][0]
    assert oa["parameters"] == {"temperature": 0.5, "extra": {"ok": 1}}, \
        "openai's parameters %r" % (oa["parameters"],)


def no_trace(said, needles, what):
    out = []
    for where, text in said.items():
        for n in needles:
            if n in text:
                out.append("%s shows %s: %r" % (where, what(n), text[:160]))
    return out


@test
def refused_connection_names_no_host_or_port(_):
    st = stack("closed")
    f = fail_everywhere(st, "refused %s" % uniq("rc"))
    f.problems += no_trace(f.said, ["127.0.0.1", str(CLOSED_PORT), API_KEY],
                           lambda n: "the key" if n == API_KEY else n)
    for where, text in f.said.items():
        if "AI 服务调用失败" not in text or "connect" not in text.lower():
            f.problems.append("%s: %r does not say the connection failed" % (where, text))
    # the operation log keeps where it failed, for admins
    errors = log_texts(st.c, f.problems, "error")
    detail = [m for m in errors if "failed" in m and "127.0.0.1" in m]
    if not detail or str(CLOSED_PORT) not in detail[0]:
        f.problems.append("no log line tells the admin the upstream's host and port: %r" % (
            errors[:2],))
    if any(API_KEY in m for m in log_texts(st.c, f.problems)):
        f.problems.append("/api/v1/logs shows the key")
    assert not f.problems, "; ".join(f.problems)


@test
def telltale_upstream_error_names_no_host_or_key(_):
    st = stack("oa")
    f = fail_everywhere(st, "[case:telltale] %s" % uniq("tt"))
    host = "127.0.0.1:%d" % fake().port
    f.problems += no_trace(f.said, [API_KEY, host],
                           lambda n: "the key" if n == API_KEY else "the host " + n)
    for where, text in f.said.items():
        if "401" not in text or "Incorrect API key provided" not in text:
            f.problems.append("%s: %r does not tell the upstream's 401 and message" % (
                where, text))
    lines = [m for m in log_texts(st.c, f.problems, "error") if "Incorrect API key" in m]
    if not lines:
        f.problems.append("no log line tells of the 401")
    elif host not in lines[0]:
        f.problems.append("the log line %r does not keep the host for admins" % lines[0][:200])
    if any(API_KEY in m for m in log_texts(st.c, f.problems)):
        f.problems.append("/api/v1/logs shows the key")
    assert not f.problems, "; ".join(f.problems)


# --------------------------------------------------------------------------------------
# Files only for their owner


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def written_stack(kind):
    """A stack after some writes, with its WAL and shared-memory files in place."""
    st = stack(kind)
    sid = uniq("fm")
    im_send(st.c, sid, "写一点东西")
    poll(lambda: im_records(st.c, sid)["records"][0]["status"] == 1, 10, "the reply")
    db = os.path.join(st.stack.data_dir, "aichatd.db")
    if harness.store_kind() == "sqlite":
        poll(lambda: os.path.exists(db + "-wal") and os.path.exists(db + "-shm"), 5,
             "the database's -wal and -shm files")
    return st, db


def check_private(st, db, dir_mode):
    problems = []
    data = st.stack.data_dir
    files = ((db, 0o600), (db + "-wal", 0o600), (db + "-shm", 0o600))
    if harness.store_kind() != "sqlite":
        files = ()  # the database lives on its server
    for path, want in ((data, dir_mode), (os.path.join(data, "run"), dir_mode)) + files:
        got = mode_of(path)
        if got != want:
            problems.append("%s is %04o, expected %04o" % (os.path.relpath(path, data) if
                                                           path != data else "the data dir",
                                                           got, want))
    return problems


@test
@harness.sqlite_only
def database_and_data_dir_are_the_owners_alone(_):
    st, db = written_stack("oa")
    problems = check_private(st, db, 0o700)
    sock = os.path.join(st.stack.data_dir, "run", "fcgi.sock")
    if mode_of(sock) != 0o660:
        problems.append("fcgi.sock is %04o, expected 0660" % mode_of(sock))
    assert not problems, "; ".join(problems)


@test
def sockets_nginx_reaches_have_the_socket_group(_):
    g = socket_group()
    st, db = written_stack("group")
    problems = check_private(st, db, 0o710)
    data = st.stack.data_dir
    for path in (data, os.path.join(data, "run"), os.path.join(data, "run", "fcgi.sock"),
                 os.path.join(data, "run", "push-http.sock")):
        s = os.stat(path)
        if s.st_gid != g.gr_gid:
            problems.append("%s has group %d, expected %d (%s)" % (
                os.path.basename(path), s.st_gid, g.gr_gid, g.gr_name))
    for name in ("fcgi.sock", "push-http.sock"):
        m = mode_of(os.path.join(data, "run", name))
        if m != 0o660:
            problems.append("%s is %04o, expected 0660" % (name, m))
    for name in ("push.sock", "post.sock"):
        s = os.stat(os.path.join(data, "run", name))
        if stat.S_IMODE(s.st_mode) & 0o077 and s.st_gid == g.gr_gid:
            problems.append("%s is open to the socket group" % name)
    # and the stack works through those sockets (nginx reaches both)
    ok_json(st.c.get("/health"), "GET /health")
    WS(st.port, uniq("g")).close()
    assert not problems, "; ".join(problems)


@test
def unknown_socket_group_stops_the_program(_):
    data = os.path.join("/tmp", "aichatd-it-nogroup-" + uuid.uuid4().hex[:8])
    env = dict(os.environ)
    env.update({"AICHATD_DATA_DIR": data, "AICHATD_SOCKET_GROUP": "no-such-group-" +
                uuid.uuid4().hex[:6]})
    build = os.environ.get("AICHATD_BUILD_DIR", "build")
    build = build if os.path.isabs(build) else os.path.join(REPO, build)
    try:
        for prog, args in (("aichatd", ["migrate"]), ("aichatd-push", [])):
            p = subprocess.run([os.path.join(build, "src", prog)] + args, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=20)
            err = p.stderr.decode("utf-8", "replace")
            assert p.returncode != 0 and "no group named" in err, \
                "%s with an unknown socket_group: exit %d, %r" % (prog, p.returncode, err[-200:])
    finally:
        subprocess.run(["rm", "-rf", data])


# --------------------------------------------------------------------------------------
# Numbers as people wrote them


PARAMS_TEXT = ('{"temperature":0.7,"top_p":0.1,"eps":1e-5,"x":2.5,"max_tokens":100,'
               '"one":1.0,"nested":[[0.7,1e-5],[2.5,[0.1,-0.3]]]}')


@test
def parameters_render_as_written(_):
    st = stack("oa")
    c = st.c
    problems = []
    for form in ("object", "string"):
        inner = PARAMS_TEXT if form == "object" else json.dumps(PARAMS_TEXT)
        r = c.req("PUT", "/api/v1/model-configs/openai",
                  body=('{"parameters":%s}' % inner).encode())
        ok_env(r, "PUT parameters as a JSON %s" % form)
        lst = c.get("/api/v1/model-configs")
        ok_env(lst, "GET /api/v1/model-configs")
        text = lst.body.decode("utf-8")
        if '"parameters":' + PARAMS_TEXT not in text:
            at = text.find('"config_id":"openai"')
            problems.append("(%s) the list shows %r" % (form, text[at:at + 260]))
    # and the upstream is sent them as written
    tok = uniq("num")
    im_send(c, uniq("ns"), "数字 %s" % tok)
    got = fake().wait_for(tok, "openai", 10)
    if not got:
        problems.append("the upstream saw no request")
    else:
        raw = got[0]["raw"].decode("utf-8")
        for piece in ('"temperature":0.7', '"top_p":0.1', '"eps":1e-5', '"one":1.0',
                      '"nested":[[0.7,1e-5],[2.5,[0.1,-0.3]]]'):
            if piece not in raw:
                problems.append("the upstream's request lacks %s: %r" % (piece, raw[:200]))
    ok_env(c.put("/api/v1/model-configs/openai", json={"parameters": {"temperature": 0.7}}),
           "PUT the parameters back")
    # v1's messages show the metadata a client sent the same way
    user = uniq("nu")
    sid = v1_session(c, user)
    meta = '{"score":0.7,"weights":[0.1,1e-5,2.5,1.0],"n":100}'
    r = c.req("POST", "/api/v1/sessions/%s/messages" % q(sid),
              body=('{"user_id":%s,"message":"带元数据","metadata":%s}' % (
                  json.dumps(user), meta)).encode())
    ok_env(r, "v1 send with metadata")
    lst = c.get("/api/v1/sessions/%s/messages" % q(sid))
    ok_env(lst, "v1 messages")
    if '"metadata":' + meta not in lst.body.decode("utf-8"):
        problems.append("v1's messages show the metadata as %r" % (
            lst.body.decode("utf-8")[:300],))
    assert not problems, "; ".join(problems)
