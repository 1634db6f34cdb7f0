"""Live delivery: chax's SSE stream (resume, heartbeat, auth), stop, the WebSocket /ws/{id},
workflow's streamed reply, slow and vanished clients, and a FastCGI pool that streams do not pin.

Real clients nobody on the team wrote: `curl -N` for SSE and workflow's stream, and Python's
`websockets` (Debian's python3-websockets, run by /usr/bin/python3 in ws_driver.py, one
process per connection) for WebSocket. Protocol violations (invalid UTF-8, oversized and
binary messages, unmasked frames, a client that never answers pings) are written by hand
over a socket, since the point there is the server's reaction.

This module starts its own stacks (run.py's SELF_MODULES), lazily, and stops them in
teardown():
  main  auth off, builtin provider (150 ms between pieces), WebSocket pings every 1 s,
        ws_max_message 1024, the workflow dialect's n8n webhook = the fake's
  oa    auth off, openai provider against tests/fake/fake_upstream.py, SSE heartbeat 1 s,
        client_buffer 4096, 4 workers x 1 thread, no workflow (workflow's stream uses openai)
  jwt   AICHATD_AUTH=jwt, builtin provider (150 ms between pieces)
The fake's answers for these tests are cases added here (live_*), chosen by a marker
"[case:NAME]" in the message.
"""

import base64
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid

from harness import (REPO, poll, Client, Stack, StackCache, StackError, im_send, aichat_msg,
                     aichat_session, check_msgid, err_chax, expect, keys_exact, make_jwt, ok_env,
                     ok_json, q, test, uniq)

sys.path.insert(0, os.path.join(REPO, "tests", "fake"))
import fake_upstream as fu  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WS_PYTHON = os.environ.get("AICHATD_WS_PYTHON", "/usr/bin/python3")
WS_DRIVER = os.path.join(HERE, "ws_driver.py")
CURL = os.environ.get("AICHATD_CURL", "curl")
DELAY_MS = 150
WS_MAX = 1024
SECRET = "live-secret-" + uuid.uuid4().hex
API_KEY = "sk-live-" + uuid.uuid4().hex

# The fake's cases for this module are tests/data/openai-live_*.case and
# tests/data/n8n-live_estream.case.
WORKFLOW_WIRE = b"".join(s[1] for s in fu.N8N_CASES["live_estream"]["steps"] if s[0] == "chunk")

# --------------------------------------------------------------------------------------
# Stacks and processes

# the stacks, and every client process started here (_procs: killed by PID in teardown at the
# latest), and the fixtures made once (_cache)
_stacks = StackCache("test_live")
_procs = _stacks.procs
_cache = _stacks.memo


def fake():
    return _stacks.resource("fake", lambda: fu.FakeUpstream().start(), lambda f: f.stop())


def _env(kind):
    f = fake()
    env = {"AICHATD_BUILTIN_DELAY_MS": str(DELAY_MS), "AICHATD_OPENAI_API_KEY": API_KEY,
           "AICHATD_OPENAI_BASE_URL": f.openai_base(), "AICHATD_OPENAI_MODEL": "fake-normal",
           "AICHATD_CONNECT_TIMEOUT_S": "3", "AICHATD_REPLY_TIMEOUT_S": "60",
           "AICHATD_N8N_WEBHOOK_URL": "", "AICHATD_PROVIDER": "builtin"}
    if kind == "main":
        env.update({"AICHATD_WS_PING_S": "1", "AICHATD_WS_MAX_MESSAGE": str(WS_MAX),
                    "AICHATD_N8N_WEBHOOK_URL": f.webhook("output")})
    elif kind == "oa":
        env.update({"AICHATD_PROVIDER": "openai", "AICHATD_SSE_HEARTBEAT_S": "1",
                    "AICHATD_CLIENT_BUFFER": "4096", "AICHATD_THREADS": "1"})
    return env


class St:
    def __init__(self, stack, auth="off"):
        self.stack = stack
        self.port = stack.port
        self.c = Client(stack.port)
        self.auth = auth

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def push(self):
        j = ok_json(self.c.get("/health?detail=1"), "GET /health?detail=1")
        assert isinstance(j.get("push"), dict), "/health?detail=1 has no push object: %r" % j
        return j["push"]


def _start(kind):
    env = _env(kind)
    if kind == "jwt":
        s = Stack(auth="jwt", secret=SECRET, extra_env=env)
    else:
        s = Stack(extra_env=env, workers=4 if kind == "oa" else None)
    s.start()
    got = St(s, "jwt" if kind == "jwt" else "off")
    # /health answers before the push daemon listens: wait for it too
    try:
        poll(lambda: got.push().get("status") == "ok", 10, "the push daemon answering",
             every=0.05)
    except AssertionError as e:
        raise StackError(str(e))
    return got


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
# curl: SSE and workflow's stream


class Curl:
    """`curl -sS -N -i` in the background; what it prints is read as it comes."""

    def __init__(self, url, headers=None, data=None):
        args = [CURL, "-sS", "-N", "-i", "--max-time", "60"]
        for k, v in (headers or {}).items():
            args += ["-H", "%s: %s" % (k, v)]
        if data is not None:
            args += ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                     data]
        args.append(url)
        self.started = time.time()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        _procs.append(self.proc)
        self.lock = threading.Lock()
        self.data = b""
        self.reads = []  # (time, total bytes so far)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                b = os.read(fd, 65536)
            except OSError:
                break
            if not b:
                break
            with self.lock:
                self.data += b
                self.reads.append((time.time(), len(self.data)))

    def snapshot(self):
        with self.lock:
            return self.data

    def _split(self):
        data = self.snapshot()
        pos = 0
        while True:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                return None, None, data
            head = data[pos:end].decode("latin-1")
            if head.startswith("HTTP/") and " 100 " in head.split("\r\n")[0]:
                pos = end + 4
                continue
            return head, end + 4, data

    def status(self):
        head, _, _ = self._split()
        if head is None:
            return None
        return int(head.split("\r\n")[0].split()[1])

    def header(self, name):
        head, _, _ = self._split()
        for line in (head or "").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def body(self):
        _, start, data = self._split()
        return b"" if start is None else data[start:]

    def first_body_time(self):
        _, start, _ = self._split()
        if start is None:
            return None
        with self.lock:
            for t, n in self.reads:
                if n > start:
                    return t
        return None

    def blocks(self):
        """Complete SSE blocks: (fields list, comments list)."""
        out = []
        parts = self.body().split(b"\n\n")
        for raw in parts[:-1]:
            fields, comments = [], []
            for line in raw.decode("utf-8", "replace").split("\n"):
                if line.startswith(":"):
                    comments.append(line)
                elif line:
                    k, _, v = line.partition(":")
                    fields.append((k, v[1:] if v.startswith(" ") else v))
            out.append((fields, comments))
        return out

    def events(self):
        """Complete events: dicts {id, event, data (parsed JSON or the text)}."""
        evs = []
        for fields, _ in self.blocks():
            if not any(k == "data" for k, _ in fields):
                continue
            e = {"id": None, "event": "message", "data": None}
            data = []
            for k, v in fields:
                if k == "id":
                    e["id"] = v
                elif k == "event":
                    e["event"] = v
                elif k == "data":
                    data.append(v)
            text = "\n".join(data)
            try:
                e["data"] = json.loads(text)
            except ValueError:
                e["data"] = text
            evs.append(e)
        return evs

    def comments(self):
        return [c for _, cs in self.blocks() for c in cs]

    def types(self):
        return [e["event"] for e in self.events()]

    def wait(self, pred, timeout, what):
        end = time.time() + timeout
        while True:
            if pred(self):
                return
            if time.time() >= end or (self.proc.poll() is not None and not self.thread.is_alive()
                                      and not pred(self)):
                raise AssertionError("%s: not seen within %.1f s (curl %s); got %r" % (
                    what, timeout, "exited %s" % self.proc.poll()
                    if self.proc.poll() is not None else "running",
                    self.snapshot()[-700:].decode("utf-8", "replace")))
            time.sleep(0.02)

    def wait_exit(self, timeout, what="the stream"):
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not end within %.1f s; got %r" % (
                what, timeout, self.snapshot()[-700:].decode("utf-8", "replace")))
        self.thread.join(5)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.thread.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False


def sse(st, msg_id, headers=None, query="", tok=None):
    path = "/ai/message/stream/%s%s" % (q(msg_id), query)
    if tok:
        path += ("&" if "?" in path else "?") + "access_token=" + q(tok)
    return Curl(st.url(path), headers=headers)


def has_type(t):
    return lambda cu: t in cu.types()


def n_chunks(n):
    return lambda cu: cu.types().count("chunk") >= n


def text_of(events):
    """init + chunks, as a client builds the reply."""
    return "".join(e["data"]["content"] for e in events if e["event"] in ("init", "chunk"))


# --------------------------------------------------------------------------------------
# WebSocket: the websockets library in a subprocess, and raw frames


class WS:
    """One WebSocket connection through ws_driver.py (websockets, /usr/bin/python3)."""

    def __init__(self, url, headers=None):
        if not os.path.exists(WS_PYTHON):
            raise AssertionError("%s is missing (python3-websockets is for it)" % WS_PYTHON)
        self.proc = subprocess.Popen([WS_PYTHON, WS_DRIVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _procs.append(self.proc)
        self.buf = b""
        self.log = []  # every message received, parsed
        self.answer = self._cmd({"op": "connect", "url": url, "headers": headers or {}}, 15)

    def _cmd(self, obj, timeout):
        self.proc.stdin.write((json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8"))
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
                    err = self.proc.stderr.read().decode("utf-8", "replace")[-600:]
                    raise AssertionError("the WebSocket client exited: %s" % err)
                self.buf += b
        line, _, self.buf = self.buf.partition(b"\n")
        ans = json.loads(line.decode("utf-8"))
        if "error" in ans and len(ans) == 1:
            raise AssertionError("the WebSocket client failed on %r: %s" % (obj, ans["error"]))
        return ans

    def send(self, obj):
        text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        return self._cmd({"op": "send", "text": text}, 5)

    def recv(self, timeout=5.0):
        """The next message, parsed; AssertionError on a timeout or a close."""
        a = self._cmd({"op": "recv", "timeout": timeout}, timeout)
        if "msg" not in a:
            raise AssertionError("no WebSocket message within %.1f s: %r (before: %r)" % (
                timeout, a, self.log[-5:]))
        try:
            m = json.loads(a["msg"])
        except ValueError:
            raise AssertionError("a WebSocket message is not JSON: %r" % a["msg"][:300])
        self.log.append(m)
        return m

    def recv_raw(self, timeout=5.0):
        return self._cmd({"op": "recv", "timeout": timeout}, timeout)

    def until(self, mtype, timeout=10.0):
        """Messages received up to and including the first of type mtype."""
        end = time.time() + timeout
        got = []
        while True:
            left = end - time.time()
            if left <= 0:
                raise AssertionError("no %r within %.1f s; got %r" % (
                    mtype, timeout, [short(m) for m in got]))
            m = self.recv(left)
            got.append(m)
            if m.get("type") == mtype:
                return got

    def ping(self, timeout=5.0):
        return self._cmd({"op": "ping", "timeout": timeout}, timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                self._cmd({"op": "close"}, 5)
            except (AssertionError, OSError):
                pass
        self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def short(m):
    if isinstance(m, dict) and isinstance(m.get("content"), str) and len(m["content"]) > 40:
        m = dict(m, content=m["content"][:40] + "...")
    return m


def ws_url(st, conv, tok=None):
    u = "ws://127.0.0.1:%d/ws/%s" % (st.port, q(conv))
    if tok:
        u += "?access_token=" + q(tok)
    return u


def ws_open(st, conv, tok=None, headers=None):
    """A connected WebSocket that has had its `connected` message."""
    w = WS(ws_url(st, conv, tok), headers)
    if not w.answer.get("ok"):
        w.kill()
        raise AssertionError("the WebSocket handshake on /ws/%s failed: %r" % (conv, w.answer))
    try:
        m = w.recv(5)
        assert m.get("type") == "connected", "first message %r, expected connected" % (m,)
    except BaseException:
        w.kill()
        raise
    return w


class RawWS:
    """A WebSocket client written by hand, for what a library will not send."""

    def __init__(self, port, path, headers=None, rcvbuf=None, timeout=5.0):
        """port: nginx's TCP port, or the path of a Unix socket (the push daemon's own)."""
        unix = isinstance(port, str)
        self.sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET,
                                  socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(port if unix else ("127.0.0.1", port))
        if unix:
            port = 80
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
                 "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(4096)
            if not b:
                break
            self.buf += b
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        first = head.split(b"\r\n")[0].split()
        self.status = int(first[1]) if len(first) > 1 else None

    def send_frame(self, opcode, payload, fin=True, mask=True):
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            k = os.urandom(4)
            payload = bytes(c ^ k[i % 4] for i, c in enumerate(payload))
            head += k
        self.sock.sendall(head + payload)

    def _need(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(65536)
            if not b:
                raise EOFError
            self.buf += b

    def read_frame(self):
        """(opcode, payload); EOFError at the end, socket.timeout when nothing comes."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, pos = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        if b1 & 0x80:
            pos += 4  # a server must not mask; tolerated here
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return b0 & 0x0F, payload

    def read_json(self):
        while True:
            op, p = self.read_frame()
            if op == 1:
                return json.loads(p.decode("utf-8"))
            if op == 8:
                raise AssertionError("closed (%r) while a message was expected" % (p,))

    def wait_close(self, timeout=5.0):
        """Read until a close frame or the end: {"code", "reason", "eof", "texts", "t"}."""
        end = time.time() + timeout
        out = {"code": None, "reason": None, "eof": False, "texts": [], "close_frame": False}
        while time.time() < end:
            self.sock.settimeout(max(0.05, end - time.time()))
            try:
                op, p = self.read_frame()
            except EOFError:
                out["eof"] = True
                break
            except ConnectionResetError:
                out["eof"] = True
                break
            except socket.timeout:
                break
            if op == 8:
                out["close_frame"] = True
                if len(p) >= 2:
                    out["code"] = struct.unpack("!H", p[:2])[0]
                    out["reason"] = p[2:].decode("utf-8", "replace")
                break
            if op == 1:
                out["texts"].append(p.decode("utf-8", "replace"))
        out["t"] = time.time()
        return out

    def close(self, rst=False):
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass


def raw_ws(st, conv):
    r = RawWS(st.port, "/ws/" + q(conv))
    assert r.status == 101, "handshake answered %r" % (r.status,)
    m = r.read_json()
    assert m.get("type") == "connected", "first message %r" % (m,)
    return r


# --------------------------------------------------------------------------------------
# REST helpers


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
    raise AssertionError("%s not in /ai/message/list/%s" % (msg_id, conv))


def chax_content(c, msg_id):
    return ok_json(c.get("/ai/message/content/" + q(msg_id)), "GET /ai/message/content")


def chax_finished(c, conv, msg_id, timeout=15.0):
    return poll(lambda: (lambda m: m if m["unfinished"] is False else None)(
        chax_msg(c, conv, msg_id)), timeout, "chax message %s finished" % msg_id)


def im_record(c, sid, ai_msg_id, timeout=10.0, ended=True):
    def look():
        j = ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid)),
                    "GET /api/ai/records")
        for r in j["records"]:
            if r["ai_message_id"] == ai_msg_id and (not ended or r["status"] != 0):
                return r
        return None
    return poll(look, timeout, "the im record of %s" % ai_msg_id)


def long_text(tag):
    """im message whose builtin reply is ~11 pieces (about 1.7 s at 150 ms)."""
    return "%s %s" % (tag, "流式测试" * 12)


def stop(c, msg_id):
    return c.post("/ai/message/stop/" + q(msg_id), json={})


def check_stop_answer(r, msg_id):
    j = ok_json(r, "POST /ai/message/stop")
    keys_exact(j, ("msgId", "stopped", "unfinished", "content"), "stop answer")
    assert j["msgId"] == msg_id, "stop answer msgId %r" % (j["msgId"],)
    return j


def counters_back_to_zero(st, keys=("ws", "sse", "stream"), timeout=8.0):
    def zero():
        p = st.push()
        return p if all(p.get(k) == 0 for k in keys) else None
    try:
        return poll(zero, timeout, "push counters %s back to 0" % (keys,), every=0.1)
    except AssertionError:
        raise AssertionError("push counters did not go back to 0 within %.0f s: %r" % (
            timeout, st.push()))


# --------------------------------------------------------------------------------------
# chax's SSE stream


@test
def sse_init_chunks_done(_):
    st = stack("main")
    j = chax_chat(st.c, long_text(uniq("sse")))
    mid = j["msgId"]
    with sse(st, mid) as cu:
        rc = cu.wait_exit(15)
        assert rc == 0, "curl exited %r" % rc
        assert cu.status() == 200, "stream status %r" % cu.status()
        ct = (cu.header("Content-Type") or "").lower()
        assert ct.startswith("text/event-stream"), "Content-Type %r" % ct
        assert "no-cache" in (cu.header("Cache-Control") or "").lower(), \
            "Cache-Control %r" % cu.header("Cache-Control")
        evs = cu.events()
    types = [e["event"] for e in evs]
    assert types and types[0] == "init" and types[-1] == "done", "event types %r" % types
    assert types.count("done") == 1 and set(types[1:-1]) == {"chunk"}, "event types %r" % types
    assert types.count("chunk") >= 2, "only %d chunk events: %r" % (types.count("chunk"), types)
    sofar = b""
    for e in evs:
        assert e["id"] not in (None, ""), "event without id: %r" % (e,)
        assert isinstance(e["data"], dict) and e["data"].get("type") == e["event"], \
            "event %r: data.type does not name the event" % (e,)
        keys_exact(e["data"], ("type", "content"), "%s data" % e["event"])
        if e["event"] != "done":
            sofar += e["data"]["content"].encode("utf-8")
        want = "%s:%d%s" % (mid, len(sofar), ":end" if e["event"] == "done" else "")
        assert e["id"] == want, \
            "%s event id %r, expected %r (the reply's byte length so far)" % (
                e["event"], e["id"], want)
    built = text_of(evs)
    done = evs[-1]["data"]["content"]
    assert built == done, "init + chunks %r != done %r" % (built, done)
    cont = chax_content(st.c, mid)
    assert cont["content"] == done and cont["error"] == "", \
        "/ai/message/content %r, the stream's done %r" % (cont, done)
    _cache["finished"] = (mid, done, j["conversationId"])



@test
def sse_finished_message_init_then_done(_):
    st = stack("main")
    if "finished" not in _cache:
        j = chax_chat(st.c, "finished %s" % uniq())
        chax_finished(st.c, j["conversationId"], j["msgId"])
        _cache["finished"] = (j["msgId"], chax_content(st.c, j["msgId"])["content"],
                              j["conversationId"])
    mid, full, _conv = _cache["finished"]
    with sse(st, mid) as cu:
        rc = cu.wait_exit(5, "the stream of a finished message")
        assert rc == 0, "curl exited %r" % rc
        evs = cu.events()
    got = [(e["event"], e["data"]["content"]) for e in evs]
    assert got == [("init", full), ("done", full)], "events %r, expected init + done of %r" % (
        got, full)


def _resume(query_param):
    st = stack("main")
    j = chax_chat(st.c, long_text(uniq("resume")))
    mid = j["msgId"]
    with sse(st, mid) as cu1:
        cu1.wait(n_chunks(1), 10, "a first chunk")
        cu1.kill()
        ev1 = cu1.events()
    assert "done" not in [e["event"] for e in ev1], \
        "the reply ended before the first connection was cut: %r" % ev1
    last = ev1[-1]["id"]
    got1 = text_of(ev1)
    assert "%s:%d" % (mid, len(got1.encode("utf-8"))) == last, \
        "last id %r vs %d bytes received" % (last, len(got1.encode("utf-8")))
    if query_param:
        cu2 = sse(st, mid, query="?last_event_id=%s" % last)
    else:
        cu2 = sse(st, mid, headers={"Last-Event-ID": last})
    with cu2:
        rc = cu2.wait_exit(15, "the resumed stream")
        assert rc == 0 and cu2.status() == 200, "resume: curl %r, status %r" % (rc, cu2.status())
        ev2 = cu2.events()
    types2 = [e["event"] for e in ev2]
    assert "init" not in types2, "the resumed stream sent init again: %r" % types2
    assert types2 and types2[-1] == "done" and set(types2[:-1]) <= {"chunk"}, \
        "resumed event types %r" % types2
    full = ev2[-1]["data"]["content"]
    got2 = text_of(ev2)
    assert got1 + got2 == full, \
        "first connection %r + resumed %r != the full reply %r (lost or repeated text)" % (
            got1, got2, full)
    assert int(ev2[0]["id"].split(":")[1]) > int(last.split(":")[1]), \
        "the resumed stream's first id %r <= %r" % (ev2[0]["id"], last)
    assert chax_content(st.c, mid)["content"] == full


@test
def sse_resume_with_last_event_id_header(_):
    _resume(False)


@test
def sse_resume_with_last_event_id_query(_):
    _resume(True)


@test
def sse_unknown_message_404(_):
    st = stack("main")
    err_chax(st.c.get("/ai/message/stream/msg_20200101000000_deadbeef"), 404)
    with sse(st, "msg_20200101000000_deadbeef") as cu:
        cu.wait_exit(5)
        assert cu.status() == 404, "curl saw %r" % cu.status()


@test
def sse_heartbeat_while_reply_is_silent(_):
    st = stack("oa")  # AICHATD_SSE_HEARTBEAT_S=1; the fake is silent 2.6 s after the role
    j = chax_chat(st.c, "[case:live_silent] %s" % uniq())
    with sse(st, j["msgId"]) as cu:
        cu.wait(lambda x: x.comments(), 2.5, "a `: ping` comment during 2.6 s of silence")
        assert cu.comments()[0].strip() == ": ping", "comment %r" % cu.comments()[0]
        assert "chunk" not in cu.types(), "a chunk came before the silence ended: %r" % (
            cu.events(),)
        cu.wait_exit(10)
        evs = cu.events()
    assert evs and evs[-1]["event"] == "done" and \
        evs[-1]["data"]["content"] == fu.OPENAI_CASES["live_silent"]["reply"], \
        "after the heartbeat: %r" % evs[-2:]


@test
def sse_heartbeat_period_is_sse_heartbeat_s(_):
    # main: SSE heartbeat at its default (15 s), WebSocket pings every 1 s. A stream of
    # ~1.7 s should get no `: ping` (API.md: "every sse_heartbeat_s").
    st = stack("main")
    j = chax_chat(st.c, long_text(uniq("hb")))
    with sse(st, j["msgId"]) as cu:
        cu.wait_exit(15)
        pings = cu.comments()
        dur = time.time() - cu.started
    assert not pings, ("%d `: ping` comments in a %.1f s stream with sse_heartbeat_s 15 "
                       "(ws_ping_s 1): the heartbeat follows ws_ping_s" % (len(pings), dur))


@test
def sse_client_disconnect_does_not_stop_the_run(_):
    st = stack("main")
    text = long_text(uniq("disc"))
    ref = chax_chat(st.c, text)  # the builtin reply depends only on the text
    j = chax_chat(st.c, text)
    with sse(st, j["msgId"]) as cu:
        cu.wait(n_chunks(1), 10, "a first chunk")
        cu.kill()
    m = chax_finished(st.c, j["conversationId"], j["msgId"])
    chax_finished(st.c, ref["conversationId"], ref["msgId"])
    full = chax_content(st.c, ref["msgId"])["content"]
    got = chax_content(st.c, j["msgId"])
    assert got["content"] == full and m["error"] == "", \
        "after the client left, the reply is %r (error %r), expected the full %r" % (
            got["content"], m["error"], full)
    rec = im_record(st.c, j["conversationId"], j["msgId"])
    assert rec["status"] == 1, "im record status %r, expected 1 (done)" % rec["status"]


@test
def sse_jwt_token_and_owner(_):
    st = stack("jwt")
    u1, u2 = uniq("u1"), uniq("u2")
    t1, t2 = token(u1), token(u2)
    c1 = st.c.with_token(t1)
    j = chax_chat(c1, "jwt %s" % uniq())
    mid = j["msgId"]
    r = st.c.get("/ai/message/stream/" + q(mid))
    expect(r, 401, "the stream with no token")
    with sse(st, mid) as cu:
        cu.wait_exit(5)
        assert cu.status() == 401, "curl with no token saw %r" % cu.status()
    with sse(st, mid, tok=t1) as cu:
        assert cu.wait_exit(15) == 0 and cu.status() == 200, "?access_token=: %r" % (
            cu.snapshot()[:300],)
        assert cu.types()[-1:] == ["done"], "?access_token= stream: %r" % cu.types()
    with sse(st, mid, headers={"Authorization": "Bearer " + t1}) as cu:
        assert cu.wait_exit(10) == 0 and cu.status() == 200, "Authorization header: %r" % (
            cu.snapshot()[:300],)
    with sse(st, mid, tok=t2) as cu:
        cu.wait_exit(5)
        assert cu.status() == 404, "someone else's message: %r" % cu.snapshot()[:300]
    err_chax(st.c.with_token(t2).get("/ai/message/stream/" + q(mid)), 404)
    err_chax(st.c.with_token(t2).post("/ai/message/stop/" + q(mid), json={}), 404)


# --------------------------------------------------------------------------------------
# Stop


@test
def stop_mid_reply(_):
    st = stack("main")
    text = long_text(uniq("stop"))
    ref = chax_chat(st.c, text)
    j = chax_chat(st.c, text)
    mid, conv = j["msgId"], j["conversationId"]
    with sse(st, mid) as cu:
        cu.wait(n_chunks(1), 10, "a first chunk")
        ans = check_stop_answer(stop(st.c, mid), mid)
        assert ans["stopped"] is True, "stop mid-reply answered %r" % (ans,)
        cu.wait_exit(5, "the SSE stream after stop")
        evs = cu.events()
    m = chax_finished(st.c, conv, mid, 3)
    part = chax_content(st.c, mid)["content"]
    chax_finished(st.c, ref["conversationId"], ref["msgId"])
    full = chax_content(st.c, ref["msgId"])["content"]
    assert part and full.startswith(part) and len(part) < len(full), \
        "stopped content %r is not a proper prefix of the full reply %r" % (part, full)
    assert evs[-1]["event"] == "done" and evs[-1]["data"]["content"] == part, \
        "the SSE client's last event %r, expected done with %r" % (evs[-1], part)
    assert text_of(evs) == part, "init + chunks %r != the stopped content %r" % (
        text_of(evs), part)
    assert m["unfinished"] is False and m["error"] == "", "message after stop %r" % (m,)
    rec = im_record(st.c, conv, mid)
    assert rec["status"] == 3, "im record status %r, expected 3 (stopped)" % rec["status"]
    again = check_stop_answer(stop(st.c, mid), mid)
    assert again["stopped"] is False and again["unfinished"] is False and \
        again["content"] == part, "stopping again answered %r" % (again,)
    time.sleep(2 * DELAY_MS / 1000.0)
    assert chax_content(st.c, mid)["content"] == part, "the content grew after the stop"
    # last, so that the checks above run whatever the answer said
    assert ans["unfinished"] is False and ans["content"] == part, \
        ("the stop answer said unfinished %r, content %r; the message ended unfinished false "
         "with %r" % (ans["unfinished"], ans["content"], part))


@test
def stop_unknown_message_404(_):
    st = stack("main")
    err_chax(stop(st.c, "msg_20200101000000_deadbeef"), 404)


@test
def stop_closes_the_upstream_transfer(_):
    st = stack("oa")
    tok = uniq("up")
    j = chax_chat(st.c, "[case:live_long] %s" % tok)
    mid = j["msgId"]
    poll(lambda: chax_content(st.c, mid)["content"], 5, "the first piece of the slow reply")
    got = fake().wait_for(tok, "openai", 5)
    assert got, "the fake saw no request carrying %s" % tok
    rec = got[0]
    assert rec["closed_after"] is None, "the transfer ended before the stop"
    t_stop = time.time()
    ans = check_stop_answer(stop(st.c, mid), mid)
    assert ans["stopped"] is True, "stop answered %r" % (ans,)
    full = fu.OPENAI_CASES["live_long"]["reply"]
    assert ans["content"] and full.startswith(ans["content"]) and ans["content"] != full, \
        "stopped content %r is not a proper prefix of %r" % (ans["content"], full)
    poll(lambda: rec["closed_after"] is not None, 3,
         "the fake seeing its connection closed after the stop")
    total = sum(s[1] for s in fu.OPENAI_CASES["live_long"]["steps"] if s[0] == "sleep")
    assert rec["t"] + rec["closed_after"] - t_stop < 2.0 and rec["closed_after"] < total, \
        "the upstream connection closed %.1f s after the stop (answer lasts %.1f s)" % (
            rec["t"] + rec["closed_after"] - t_stop, total)
    poll(lambda: st.push()["upstream"] == 0, 3, "push.upstream back to 0")
    assert im_record(st.c, j["conversationId"], mid)["status"] == 3


# --------------------------------------------------------------------------------------
# WebSocket


@test
def ws_connected_message(_):
    st = stack("main")
    conv = uniq("wsc")
    w = WS(ws_url(st, conv))
    try:
        assert w.answer.get("ok"), "handshake: %r" % (w.answer,)
        m = w.recv(5)
        assert m == {"type": "connected", "session_id": conv, "user_id": None}, \
            "connected message %r" % (m,)
    finally:
        w.close()


def check_reply_events(got, msg_id=None, user_msg_id=None, conv=None):
    """ai_chunk... ai_reply for one reply; returns (chunks text, ai_reply)."""
    chunks = [m for m in got if m.get("type") == "ai_chunk"]
    reply = got[-1]
    assert reply.get("type") == "ai_reply", "last message %r" % (short(reply),)
    keys_exact(reply, ("type", "message_id", "content", "user_message_id", "session_id",
                       "stopped"), "ai_reply")
    assert chunks, "no ai_chunk before ai_reply: %r" % ([short(m) for m in got],)
    for m in chunks:
        keys_exact(m, ("type", "message_id", "user_message_id", "session_id", "content"),
                   "ai_chunk")
        assert (m["message_id"], m["user_message_id"], m["session_id"]) == (
            reply["message_id"], reply["user_message_id"], reply["session_id"]), \
            "ai_chunk %r does not match ai_reply %r" % (short(m), short(reply))
    check_msgid(reply["message_id"], what="ai_reply message_id")
    if msg_id:
        assert reply["message_id"] == msg_id, "ai_reply message_id %r, expected %r" % (
            reply["message_id"], msg_id)
    if user_msg_id:
        assert reply["user_message_id"] == user_msg_id, \
            "ai_reply user_message_id %r, expected %r" % (reply["user_message_id"], user_msg_id)
    if conv:
        assert reply["session_id"] == conv, "ai_reply session_id %r" % (reply["session_id"],)
    text = "".join(m["content"] for m in chunks)
    return text, reply


@test
def ws_send_message_chunks_reply(_):
    st = stack("main")
    conv = uniq("wss")
    content = "你好 websocket %s" % uniq()
    with ws_open(st, conv) as w:
        w.send({"type": "send_message", "content": content})
        sent = w.recv(5)
        assert sent.get("type") == "message_sent", "first answer %r" % (sent,)
        keys_exact(sent, ("type", "message_id", "content", "session_id"), "message_sent")
        assert sent["content"] == content and sent["session_id"] == conv, "%r" % (sent,)
        check_msgid(sent["message_id"], what="message_sent message_id")
        got = w.until("ai_reply", 15)
    text, reply = check_reply_events(got, user_msg_id=sent["message_id"], conv=conv)
    assert len([m for m in got if m["type"] == "ai_chunk"]) >= 3, \
        "the builtin reply came in %d ai_chunk(s), expected >= 3" % len(got[:-1])
    assert reply["content"] == text, "ai_reply %r != the chunks %r" % (reply["content"], text)
    assert reply["stopped"] is False
    cont = chax_content(st.c, reply["message_id"])
    assert cont["content"] == text, "stored %r, pushed %r" % (cont["content"], text)
    stored = ok_json(st.c.get("/api/message/" + q(sent["message_id"])), "GET /api/message")
    assert stored["msg_content"] == content and stored["session_id"] == conv, "%r" % (stored,)
    assert stored["from_user_id"] == conv, \
        "the WebSocket's message is from %r, expected the path's id %r" % (
            stored["from_user_id"], conv)


@test
def ws_reply_started_by_im_send(_):
    st = stack("main")
    conv = uniq("wsa")
    with ws_open(st, conv) as w:
        m = im_send(st.c, conv, "im 发的 %s" % uniq())
        got = w.until("ai_reply", 15)
    text, reply = check_reply_events(got, user_msg_id=m["message_id"], conv=conv)
    assert reply["content"] == text == chax_content(st.c, reply["message_id"])["content"]


@test
def ws_reply_started_by_aichat_message(_):
    st = stack("main")
    sid = aichat_session(st.c, title="ws b")["session_id"]
    with ws_open(st, sid) as w:
        aichat_msg(st.c, sid, "aichat 的用户消息 %s" % uniq(), "user")
        got = w.until("ai_reply", 15)
    text, reply = check_reply_events(got, conv=sid)
    assert reply["content"] == text

    def aichat_reply():
        d = ok_env(st.c.get("/api/chat/sessions/%s/messages" % q(sid)), "aichat message list")
        a = [x for x in d["items"] if x["role"] == "assistant"]
        return a or None
    a = poll(aichat_reply, 5, "aichat's assistant message")
    assert a[0]["content"] == text, "aichat stores %r, pushed %r" % (a[0]["content"], text)


@test
def ws_reply_started_by_chax_chat(_):
    st = stack("main")
    sid = aichat_session(st.c, title="ws c")["session_id"]
    with ws_open(st, sid) as w:
        j = chax_chat(st.c, "chax 的消息 %s" % uniq(), conv=sid)
        got = w.until("ai_reply", 15)
    text, reply = check_reply_events(got, msg_id=j["msgId"], user_msg_id=j["userMsgId"],
                                     conv=sid)
    assert reply["content"] == text == chax_content(st.c, j["msgId"])["content"]


@test
def ws_stop_message(_):
    st = stack("main")
    conv = uniq("wsstop")
    with ws_open(st, conv) as w:
        w.send({"type": "send_message", "content": long_text(uniq("ws"))})
        sent = w.recv(5)
        assert sent.get("type") == "message_sent", "%r" % (sent,)
        first = w.until("ai_chunk", 10)[-1]
        w.send({"type": "stop", "message_id": first["message_id"]})
        got = w.until("ai_reply", 5)
    reply = got[-1]
    assert reply.get("stopped") is True, "ai_reply after stop %r" % (short(reply),)
    text = "".join(m["content"] for m in [first] + got if m.get("type") == "ai_chunk")
    assert reply["content"] == text, "stopped ai_reply %r != the chunks %r" % (
        reply["content"], text)
    assert chax_content(st.c, reply["message_id"]) == {"content": text, "error": ""}
    assert chax_msg(st.c, conv, reply["message_id"])["unfinished"] is False
    assert im_record(st.c, conv, reply["message_id"])["status"] == 3


@test
def ws_bad_input_gets_error_and_stays_open(_):
    st = stack("main")
    conv = uniq("wsbad")
    bad = ["not json", "[1,2]", '"text"', '{"content":"x"}', '{"type":5}', '{"type":"nope"}',
           '{"type":"send_message","content":""}', '{"type":"send_message","content":"  "}',
           '{"type":"send_message"}', '{"type":"send_message","content":5}', '{"type":"stop"}',
           '{"type":"stop","message_id":"msg_20200101000000_deadbeef"}']
    with ws_open(st, conv) as w:
        for b in bad:
            w.send(b)
            m = w.recv(5)
            assert m.get("type") == "error" and isinstance(m.get("message"), str) and \
                m["message"], "%r answered %r, expected {type: error, message}" % (b, m)
        w.send({"type": "ping"})
        m = w.recv(5)
        assert m == {"type": "pong"}, "ping after bad input answered %r" % (m,)
    lst = ok_json(st.c.get("/api/message/list?session_id=" + q(conv)), "im list")
    assert lst["messages"] == [], "bad input stored messages: %r" % lst["messages"]


@test
def ws_ping_frame_gets_pong(_):
    st = stack("main")
    with ws_open(st, uniq("wsp")) as w:
        a = w.ping(5)
        assert a.get("pong") is True, "a ping frame answered %r" % (a,)
        a = w.ping(5)
        assert a.get("pong") is True, "a second ping frame answered %r" % (a,)


def _violation(opcode, payload, want, mask=True):
    st = stack("main")
    r = raw_ws(st, uniq("wsv"))
    try:
        r.send_frame(opcode, payload, mask=mask)
        got = r.wait_close(5)
    finally:
        r.close()
    return got


@test
def ws_invalid_utf8_closes_1007(_):
    got = _violation(0x1, b'{"type":"ping","x":"\xff\xfe"}', 1007)
    assert got["code"] == 1007, "invalid UTF-8 in a text frame: %r, expected close 1007" % (got,)


@test
def ws_oversized_message_closes_1009(_):
    st = stack("main")
    # just under the limit is served
    r = raw_ws(st, uniq("wsbig"))
    try:
        small = json.dumps({"type": "ping", "pad": "x" * (WS_MAX - 40)}).encode()
        assert len(small) <= WS_MAX
        r.send_frame(0x1, small)
        m = r.read_json()
        assert m == {"type": "pong"}, "a %d-byte message answered %r" % (len(small), m)
    finally:
        r.close()
    big = json.dumps({"type": "ping", "pad": "x" * 2000}).encode()
    got = _violation(0x1, big, 1009)
    assert got["code"] == 1009, "a %d-byte message (limit %d): %r, expected close 1009" % (
        len(big), WS_MAX, got)


@test
def ws_binary_frame_closes_1003(_):
    got = _violation(0x2, b'{"type":"ping"}', 1003)
    assert got["code"] == 1003, "a binary frame: %r, expected close 1003" % (got,)


@test
def ws_unmasked_frame_closes(_):
    got = _violation(0x1, b'{"type":"ping"}', 1002, mask=False)
    assert not got["texts"], "an unmasked frame was served: %r" % (got,)
    assert got["close_frame"] or got["eof"], "an unmasked frame left the connection open: %r" % (
        got,)
    if got["close_frame"]:
        assert got["code"] == 1002, "close code %r for an unmasked frame, expected 1002" % (
            got["code"],)


@test
def ws_silent_client_is_dropped(_):
    st = stack("main")  # AICHATD_WS_PING_S=1
    before = st.push()["dropped"]
    r = RawWS(st.port, "/ws/" + q(uniq("wssilent")))
    try:
        assert r.status == 101, "handshake %r" % r.status
        t0 = time.time()
        pings = 0
        end = t0 + 6
        closed = False
        while time.time() < end:
            r.sock.settimeout(max(0.05, end - time.time()))
            try:
                op, _ = r.read_frame()  # read, never answer
            except (EOFError, ConnectionResetError):
                closed = True
                break
            except socket.timeout:
                break
            if op == 0x9:
                pings += 1
            if op == 0x8:
                closed = True
                break
        took = time.time() - t0
    finally:
        r.close()
    assert pings >= 1, "no ping frame came in %.1f s with ws_ping_s 1" % took
    assert closed, "a client that never answers pings is still open after %.1f s" % took
    p = poll(lambda: (lambda x: x if x["dropped"] > before else None)(st.push()), 3,
             "push.dropped counting the silent client")
    assert p["dropped"] >= before + 1


@test
def ws_jwt_token_and_owner(_):
    st = stack("jwt")
    u1, u2 = uniq("wu1"), uniq("wu2")
    t1, t2 = token(u1), token(u2)
    j = chax_chat(st.c.with_token(t1), "ws jwt %s" % uniq())
    conv = j["conversationId"]
    chax_finished(st.c.with_token(t1), conv, j["msgId"])  # its events are not the ones below
    w = WS(ws_url(st, conv))
    try:
        assert w.answer.get("ok") is False and w.answer.get("status") == 401, \
            "no token: handshake %r, expected 401" % (w.answer,)
    finally:
        w.kill()
    w = WS(ws_url(st, conv, t2))
    try:
        assert w.answer.get("ok") is False and w.answer.get("status") == 404, \
            "someone else's conversation: handshake %r, expected 404" % (w.answer,)
    finally:
        w.kill()
    w = WS(ws_url(st, conv, "not.a.token"))
    try:
        assert w.answer.get("status") == 401, "a bad token: %r" % (w.answer,)
    finally:
        w.kill()
    with ws_open(st, conv, t1) as w:
        m = w.log[0]
        assert m == {"type": "connected", "session_id": conv, "user_id": u1}, \
            "connected with a token: %r" % (m,)
        w.send({"type": "send_message", "content": "令牌用户 %s" % uniq()})
        sent = w.recv(5)
        assert sent.get("type") == "message_sent", "%r" % (sent,)
        got = w.until("ai_reply", 15)
        check_reply_events(got, user_msg_id=sent["message_id"], conv=conv)
    stored = ok_json(st.c.with_token(t1).get("/api/message/" + q(sent["message_id"])), "im get")
    assert stored["from_user_id"] == u1, "sender %r, expected the token's %r" % (
        stored["from_user_id"], u1)
    with ws_open(st, conv, headers={"Authorization": "Bearer " + t1}) as w:
        assert w.log[0].get("user_id") == u1


# --------------------------------------------------------------------------------------
# workflow's stream


@test
def workflow_stream_without_workflow_uses_the_provider(_):
    st = stack("oa")  # no AICHATD_N8N_WEBHOOK_URL: the openai provider answers
    r = st.c.post("/api/chat/stream", json={"sessionId": uniq("e"), "userId": "eu",
                                            "chatInput": "hi"})
    expect(r, 200, "workflow stream without a workflow")
    ct = (r.header("Content-Type") or "").lower()
    assert ct.startswith("text/event-stream"), "Content-Type %r, expected the upstream's" % ct
    assert b"data: [DONE]" in r.body, "not the upstream's stream: %r" % r.body[:300]


@test
def workflow_stream_passes_the_workflow_through(_):
    st = stack("main")
    sid, user = uniq("es"), uniq("eu")
    text = "[case:live_estream] 流一下 %s" % uniq()
    body = json.dumps({"sessionId": sid, "userId": user, "chatInput": text}, ensure_ascii=False)
    with Curl(st.url("/api/chat/stream"), data=body) as cu:
        rc = cu.wait_exit(15, "workflow's stream")
        end = cu.reads[-1][0] if cu.reads else time.time()
        first = cu.first_body_time()
        assert rc == 0 and cu.status() == 200, "workflow stream: curl %r, %r" % (
            rc, cu.snapshot()[:400])
        ct = cu.header("Content-Type") or ""
        want = fu.N8N_CASES["live_estream"]["ctype"]
        assert ct.replace(" ", "").lower() == want.replace(" ", "").lower(), \
            "Content-Type %r, the workflow's is %r" % (ct, want)
        got = cu.body()
    assert got == WORKFLOW_WIRE, "the client got %r, the workflow sent %r" % (
        got[:300], WORKFLOW_WIRE[:300])
    assert first is not None and end - first >= 0.9, \
        "the first bytes came %.2f s before the end (the workflow takes 1.5 s): not streamed" % (
            end - first if first else -1)
    h = ok_env(st.c.get("/api/chat/history?sessionId=" + q(sid)), "workflow history")
    pairs = [(x["userMessage"], x["aiResponse"]) for x in h["messages"]]
    assert pairs == [(text, fu.N8N_CASES["live_estream"]["reply"])], "workflow history %r" % (
        pairs,)


# --------------------------------------------------------------------------------------
# Slow and vanished clients


@test
def abrupt_disconnects_leave_the_daemon_healthy(_):
    st = stack("main")
    conv = aichat_session(st.c, title="abrupt")["session_id"]
    text = long_text(uniq("ab"))
    ref = chax_chat(st.c, text)
    r = raw_ws(st, conv)
    j = chax_chat(st.c, text, conv=conv)
    cu = sse(st, j["msgId"])
    s = socket.create_connection(("127.0.0.1", st.port), timeout=5)
    try:
        s.sendall(("GET /ai/message/stream/%s HTTP/1.1\r\nHost: x\r\n\r\n" % j["msgId"]).encode())
        cu.wait(n_chunks(1), 10, "a first chunk")
        p = st.push()
        assert p["ws"] >= 1 and p["sse"] >= 2, "counters while open: %r" % (p,)
        cu.kill()
        r.close(rst=True)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    finally:
        cu.kill()
        r.close()
        s.close()
    chax_finished(st.c, conv, j["msgId"])
    chax_finished(st.c, ref["conversationId"], ref["msgId"])
    assert chax_content(st.c, j["msgId"])["content"] == chax_content(st.c, ref["msgId"])["content"]
    counters_back_to_zero(st)
    j2 = ok_json(st.c.get("/health?detail=1"), "health")
    assert j2["status"] == "ok" and j2["push"]["status"] == "ok", "health %r" % (j2,)
    with ws_open(st, conv) as w:
        assert w.ping(3).get("pong")


@test
def ws_slow_reader_is_dropped_others_served(_):
    # Through nginx a client that stops reading cannot be made to overflow the daemon:
    # nginx's send buffer to it grows to 4 MB (tcp_wmem), more than a reply may be
    # (1 MiB). So the client that reads nothing talks to the push daemon's own socket, as
    # nginx would; the client that reads goes through nginx as usual.
    st = stack("oa")  # AICHATD_CLIENT_BUFFER=4096
    conv = aichat_session(st.c, title="slow")["session_id"]
    full = fu.OPENAI_CASES["live_big"]["reply"]
    before = st.push()["dropped"]
    sock_path = os.path.join(st.stack.data_dir, "run", "push-http.sock")
    slow = RawWS(sock_path, "/ws/" + q(conv), rcvbuf=4096)
    assert slow.status == 101, "handshake on the daemon's socket: %r" % slow.status
    reader_closed = None
    try:
        with ws_open(st, conv) as w:
            t0 = time.time()
            j = chax_chat(st.c, "[case:live_big] %s" % uniq(), conv=conv)
            try:
                got = w.until("ai_reply", 40)
            except AssertionError as e:
                got = None
                reader_closed = str(e)[:120]
            took = time.time() - t0
            chunks = [m for m in w.log if m.get("type") == "ai_chunk"]
        p = poll(lambda: (lambda x: x if x["dropped"] > before else None)(st.push()), 3,
                 "push.dropped counting the client that reads nothing")
        assert p["dropped"] == before + 1, "push.dropped went from %d to %d" % (
            before, p["dropped"])
        slow.sock.settimeout(5)
        try:
            while slow.sock.recv(65536):
                pass
            ended = True
        except socket.timeout:
            ended = False
        assert ended, "the dropped client's connection is still open"
    finally:
        slow.close(rst=True)
    assert got is not None, \
        ("the client that reads was dropped too, after %d ai_chunk(s) (%d bytes) of a %d-byte "
         "reply (%s)" % (len(chunks), sum(len(m["content"]) for m in chunks), len(full),
                         reader_closed))
    text, reply = check_reply_events(got, msg_id=j["msgId"], conv=conv)
    assert reply["content"] == text == full, \
        "the reading client got %d of %d bytes (ai_reply %d)" % (
            len(text), len(full), len(reply["content"]))
    assert took < 15, "the reading client took %.1f s for the reply" % took
    chax_finished(st.c, conv, j["msgId"], 20)
    assert chax_content(st.c, j["msgId"])["content"] == full
    counters_back_to_zero(st)


# --------------------------------------------------------------------------------------
# The pool stays free


def _sse_sock(port, msg_id):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(("GET /ai/message/stream/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Accept: text/event-stream\r\n\r\n" % msg_id).encode())
    return s


@test
def pool_free_with_200_open_streams(_):
    st = stack("oa")  # 4 workers x 1 thread; the live_long reply lasts 10 s
    n_runs, per = 20, 10
    conv = None
    runs = []
    socks = []
    try:
        for i in range(n_runs):
            j = chax_chat(st.c, "[case:live_long] pool %d %s" % (i, uniq()), conv=conv)
            conv = conv or j["conversationId"]
            runs.append(j["msgId"])
        for mid in runs:
            for _ in range(per):
                socks.append(_sse_sock(st.port, mid))
        # every stream has its head and init
        bufs = {s.fileno(): b"" for s in socks}
        pending = set(bufs)
        byfd = {s.fileno(): s for s in socks}
        end = time.time() + 10
        while pending and time.time() < end:
            r, _, _ = select.select([byfd[f] for f in pending], [], [], 0.2)
            for s in r:
                b = s.recv(65536)
                bufs[s.fileno()] += b
                if b"event: init" in bufs[s.fileno()] or not b:
                    pending.discard(s.fileno())
        bad = [bufs[f][:120] for f in bufs if b" 200 " not in bufs[f][:20] or
               b"event: init" not in bufs[f]]
        assert not bad and not pending, "%d of %d streams did not open (%d pending): %r" % (
            len(bad), len(socks), len(pending), bad[:2])
        for path in ("/health", "/api/message/list?session_id=" + q(conv),
                     "/ai/message/list/" + q(conv)):
            t0 = time.time()
            r = st.c.get(path)
            took = time.time() - t0
            expect(r, 200, "GET %s with %d streams open" % (path, len(socks)))
            assert took < 2.0, "GET %s took %.2f s with %d streams open" % (path, took,
                                                                            len(socks))
        p = st.push()
        assert p["sse"] == len(socks), "push.sse %r with %d streams open" % (p["sse"], len(socks))
        assert p["runs"] >= 1, "push.runs %r while the slow replies run" % (p["runs"],)
        for mid in runs:
            stop(st.c, mid)
        counters_back_to_zero(st, timeout=10)
        p = poll(lambda: (lambda x: x if x["runs"] == 0 and x["upstream"] == 0 else None)(
            st.push()), 5, "push.runs and push.upstream back to 0")
    finally:
        for s in socks:
            s.close()
