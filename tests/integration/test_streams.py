"""Streams as clients see them: chax's SSE ids and reconnects, large replies, ends announced
only once stored, workflow's required fields and workflow's stream with every provider.

This module starts its own stacks (run.py's SELF_MODULES), lazily, and stops them in
teardown():
  main   builtin provider (25 ms between pieces); the `openai` model config points at a
         closed port, so a conversation using it fails; no workflow
  oa     openai provider against tests/fake/fake_upstream.py (the ~900 KB reply), no
         workflow, SSE heartbeat 1 s (a client over its buffer is dropped at a beat)
  noai   openai provider at api.openai.com with no key: workflow's stream has nothing to use
  jwt    builtin provider, AICHATD_AUTH=jwt
The SSE and WebSocket clients here are plain sockets through nginx, reading as a browser
does; tests/browser/ has the same checks with npm's `eventsource` and with Chromium.
"""

import base64
import json
import os
import socket
import sys
import time
import uuid

from harness import (REPO, Client, Stack, StackCache, StackError, err_env, expect, free_port,
                     make_jwt, ok_env, ok_json, poll, q, test, uniq)

sys.path.insert(0, os.path.join(REPO, "tests", "fake"))
import fake_upstream as fu  # noqa: E402

SECRET = "streams-secret-" + uuid.uuid4().hex
DELAY_MS = 25
ROUNDS = 20
BIG = fu.OPENAI_CASES["big900"]["reply"]

_stacks = StackCache("test_streams")


def fake():
    return _stacks.resource("fake", lambda: fu.FakeUpstream().start(), lambda f: f.stop())


def _env(kind):
    env = {"AICHATD_BUILTIN_DELAY_MS": str(DELAY_MS), "AICHATD_PROVIDER": "builtin",
           "AICHATD_N8N_WEBHOOK_URL": "", "AICHATD_CONNECT_TIMEOUT_S": "3",
           "AICHATD_REPLY_TIMEOUT_S": "60", "AICHATD_OPENAI_API_KEY": "",
           "AICHATD_OPENAI_MODEL": "fake-normal"}
    if kind in ("main", "jwt"):
        env["AICHATD_OPENAI_BASE_URL"] = "http://127.0.0.1:%d/v1" % free_port()
    elif kind == "oa":
        env.update({"AICHATD_PROVIDER": "openai", "AICHATD_OPENAI_API_KEY": "sk-streams",
                    "AICHATD_OPENAI_BASE_URL": fake().openai_base(),
                    "AICHATD_SSE_HEARTBEAT_S": "1"})
    elif kind == "noai":
        env.update({"AICHATD_PROVIDER": "openai",
                    "AICHATD_OPENAI_BASE_URL": "https://api.openai.com/v1"})
    return env


class St:
    def __init__(self, stack, kind):
        self.stack = stack
        self.kind = kind
        self.port = stack.port
        self.c = Client(stack.port)

    def push(self):
        j = ok_json(self.c.get("/health?detail=1"), "GET /health?detail=1")
        return j["push"]


def _start(kind):
    if kind == "jwt":
        s = Stack(auth="jwt", secret=SECRET, extra_env=_env(kind))
    else:
        s = Stack(extra_env=_env(kind))
    try:
        s.start()
        got = St(s, kind)
        poll(lambda: got.push().get("status") == "ok", 10, "the push daemon answering")
    except (StackError, AssertionError) as e:
        raise StackError(str(e))
    return got


def stack(kind):
    return _stacks.get(kind, lambda: _start(kind))


def teardown():
    return _stacks.teardown()


def token(sub):
    now = int(time.time())
    return make_jwt({"sub": sub, "iat": now, "exp": now + 3600}, SECRET)


# --------------------------------------------------------------------------------------
# Clients: SSE and WebSocket over plain sockets, through nginx


class HttpStream:
    """One GET read as it arrives (HTTP/1.0: nginx sends the body as it is, to the end).
    port: nginx's TCP port, or the path of the push daemon's own Unix socket."""

    def __init__(self, port, path, headers=None, rcvbuf=None, timeout=20.0):
        unix = isinstance(port, str)
        self.sock = socket.socket(socket.AF_UNIX if unix else socket.AF_INET,
                                  socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(port if unix else ("127.0.0.1", port))
        if unix:
            port = 80
        lines = ["GET %s HTTP/1.0" % path, "Host: 127.0.0.1:%d" % port,
                 "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        self.buf = b""
        self.closed = False
        self.status = None
        self.headers = {}

    def _more(self, timeout=None):
        if self.closed:
            return False
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            b = self.sock.recv(262144)
        except socket.timeout:
            raise AssertionError("nothing more within the timeout; so far %r" % (
                self.buf[-400:],))
        except ConnectionResetError:
            b = b""
        if not b:
            self.closed = True
            return False
        self.buf += b
        return True

    def head(self):
        while self.status is None:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                lines = self.buf[:i].decode("latin-1").split("\r\n")
                self.status = int(lines[0].split()[1])
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    self.headers[k.strip().lower()] = v.strip()
                self.buf = self.buf[i + 4:]
                break
            if not self._more():
                raise AssertionError("the connection closed before a response head: %r" % (
                    self.buf,))
        return self.status

    def body(self):
        """Everything until the server closes."""
        self.head()
        while self._more():
            pass
        return self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class SSE(HttpStream):
    def next_event(self, timeout=20.0):
        """The next event {id, event, data}, or None when the stream ended."""
        self.head()
        while True:
            i = self.buf.find(b"\n\n")
            if i >= 0:
                block, self.buf = self.buf[:i], self.buf[i + 2:]
                e = {"id": None, "event": "message", "data": None}
                data = []
                for line in block.decode("utf-8").split("\n"):
                    if not line or line.startswith(":"):
                        continue
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    if k == "data":
                        data.append(v)
                    elif k in ("id", "event"):
                        e[k] = v
                if not data:
                    continue  # retry: and the like
                e["data"] = json.loads("\n".join(data))
                return e
            if not self._more(timeout):
                return None

    def all_events(self, timeout=20.0):
        out = []
        while True:
            e = self.next_event(timeout)
            if e is None:
                return out
            out.append(e)


def sse(st, msg_id, last=None, query=None, rcvbuf=None, tok=None):
    path = "/ai/message/stream/" + q(msg_id)
    params = []
    if query is not None:
        params.append("last_event_id=" + q(query))
    if tok:
        params.append("access_token=" + q(tok))
    if params:
        path += "?" + "&".join(params)
    headers = {"Last-Event-ID": last} if last is not None else None
    return SSE(st.port, path, headers=headers, rcvbuf=rcvbuf)


class WS:
    """A WebSocket client: text messages as parsed JSON; pings are answered."""

    def __init__(self, port, conv, timeout=20.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /ws/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (q(conv), port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            b = self.sock.recv(65536)
            assert b, "the WebSocket handshake was cut: %r" % self.buf
            self.buf += b
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], "handshake answered %r" % head[:200]
        m = self.recv()
        assert m and m.get("type") == "connected", "first message %r" % (m,)

    def _need(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(262144)
            if not b:
                raise EOFError("the WebSocket closed")
            self.buf += b

    def _send(self, op, payload):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([0x80 | op])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            hdr += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        """The next text message, parsed; None when the server closed."""
        while True:
            try:
                self._need(2)
                op, n = self.buf[0] & 0x0f, self.buf[1] & 0x7f
                at = 2
                if n == 126:
                    self._need(4)
                    n, at = int.from_bytes(self.buf[2:4], "big"), 4
                elif n == 127:
                    self._need(10)
                    n, at = int.from_bytes(self.buf[2:10], "big"), 10
                self._need(at + n)
            except EOFError:
                return None
            payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
            if op == 0x9:
                self._send(0xA, payload)
            elif op == 0x8:
                return None
            elif op == 0x1:
                return json.loads(payload.decode("utf-8"))

    def until(self, pred, what):
        seen = []
        while True:
            m = self.recv()
            if m is None:
                raise AssertionError("the WebSocket closed before %s; got %r" % (
                    what, [x.get("type") for x in seen][-20:]))
            seen.append(m)
            if pred(m):
                return m, seen

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------
# Helpers


def chax_chat(c, content, conv=None):
    body = {"content": content}
    if conv:
        body["conversationId"] = conv
    return ok_json(c.post("/ai/chat", json=body), "POST /ai/chat")


def chax_content(c, msg_id):
    return ok_json(c.get("/ai/message/content/" + q(msg_id)), "GET /ai/message/content")


def finished_reply(st, content="已完成的回复"):
    """A chax message whose reply has ended: (msgId, its content, conversation)."""
    j = chax_chat(st.c, content)
    with sse(st, j["msgId"]) as s:
        evs = s.all_events()
    assert evs and evs[-1]["event"] == "done", "stream %r" % ([e["event"] for e in evs],)
    return j["msgId"], evs[-1]["data"]["content"], j["conversationId"], evs


def im_send(c, sid, content):
    return ok_json(c.post("/api/message/send", json={"session_id": sid, "content": content,
                                                      "from_user_id": "stream-user"}),
                   "POST /api/message/send")


def check_stored(c, conv, ai_msg_id, content, where):
    """Every dialect's read shows the finished reply at once."""
    msgs = ok_json(c.get("/api/message/list?session_id=%s&page_size=100" % q(conv)),
                   "im list")["messages"]
    assert any(m["message_id"] == ai_msg_id and m["msg_content"] == content for m in msgs), \
        "%s: im's /api/message/list lacks the reply %s: %r" % (where, ai_msg_id, msgs[-2:])
    items = ok_env(c.get("/api/chat/sessions/%s/messages?page_size=100" % q(conv)),
                   "aichat messages")["items"]
    assert any(m.get("content") == content for m in items), \
        "%s: aichat's messages lack the reply: %r" % (where, items[-2:])
    cont = chax_content(c, ai_msg_id)
    assert cont == {"content": content, "error": ""}, \
        "%s: chax's content %r, expected the reply" % (where, cont)
    lst = ok_json(c.get("/ai/message/list/" + q(conv)), "chax list")
    mine = [m for m in lst if m["msgId"] == ai_msg_id]
    assert mine and mine[0]["unfinished"] is False, "%s: chax lists %r" % (where, mine)
    dm = ok_env(c.get("/api/v1/sessions/%s/messages?page_size=100" % q(conv)),
                "v1 messages")["messages"]
    assert any(m["message_id"] == ai_msg_id and m["content"] == content for m in dm), \
        "%s: v1's messages lack the reply: %r" % (where, dm[-2:])
    h = ok_env(c.get("/api/chat/history?sessionId=" + q(conv)), "workflow history")["messages"]
    assert h and h[-1]["aiResponse"] == content, \
        "%s: workflow's history ends %r, expected the reply" % (where, h[-1:] if h else h)
    recs = ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(conv)),
                   "im records")["records"]
    rec = [r for r in recs if r["ai_message_id"] == ai_msg_id]
    assert rec and rec[0]["status"] == 1, "%s: im's record %r, expected status 1" % (
        where, rec)


def text_of(evs):
    return "".join(e["data"]["content"] for e in evs if e["event"] in ("init", "chunk"))


# --------------------------------------------------------------------------------------
# 1. Every event has its own id


@test
def sse_every_event_has_its_own_id(_):
    st = stack("main")
    mid, full, _conv, evs = finished_reply(st, "每个事件都有自己的 id")
    types = [e["event"] for e in evs]
    assert types[0] == "init" and types[-1] == "done" and types.count("chunk") >= 2, types
    ids = [e["id"] for e in evs]
    assert all(ids), "an event without id: %r" % (evs,)
    assert len(set(ids)) == len(ids), "ids repeat: %r" % (ids,)
    assert text_of(evs) == full
    # a finished message: init and done, under two ids
    with sse(st, mid) as s:
        again = s.all_events()
    assert [(e["event"], e["data"]["content"]) for e in again] == [("init", full),
                                                                  ("done", full)], again
    assert again[0]["id"] != again[1]["id"], "init and done share the id %r" % again[0]["id"]
    assert again[1]["id"] == evs[-1]["id"], "done's id %r, then %r" % (evs[-1]["id"],
                                                                      again[1]["id"])


@test
def sse_error_event_has_its_own_id(_):
    st = stack("main")
    sid = ok_env(st.c.post("/api/v1/sessions", json={"user_id": "su",
                                                     "model_config_id": "openai"}),
                 "v1 session")["session_id"]
    j = chax_chat(st.c, "这条会失败", conv=sid)
    with sse(st, j["msgId"]) as s:
        evs = s.all_events()
    assert evs and evs[-1]["event"] == "error", "events %r" % (evs,)
    ids = [e["id"] for e in evs]
    assert all(ids) and len(set(ids)) == len(ids), "ids %r" % (ids,)
    # a reconnect after the error: the stream stays ended
    with sse(st, j["msgId"], last=evs[-1]["id"]) as s:
        assert s.head() == 204, "a reconnect after error answered %r: %r" % (s.status,
                                                                             s.body()[:300])


# --------------------------------------------------------------------------------------
# 2. A stream that has ended stays ended


@test
def sse_reconnect_after_done_is_204(_):
    st = stack("main")
    mid, full, _conv, evs = finished_reply(st, "结束之后不再重连")
    done_id = evs[-1]["id"]
    for how in ("header", "query"):
        s = sse(st, mid, last=done_id) if how == "header" else sse(st, mid, query=done_id)
        with s:
            status = s.head()
            body = s.body()
        assert status == 204, "reconnect with done's id (%s) answered %d: %r" % (
            how, status, body[:300])
        assert body == b"", "a 204 with a body %r" % body[:100]
    # the id of an event before done still gets what was missed: here only done
    with sse(st, mid, last=evs[-2]["id"]) as s:
        rest = s.all_events()
    assert [e["event"] for e in rest] == ["done"] and rest[0]["data"]["content"] == full, rest


# --------------------------------------------------------------------------------------
# 3. Any Last-Event-ID gives a well-formed stream


def _bad_ids(mid, full, other_id):
    b = full.encode("utf-8")
    inside = next(i for i in range(1, len(b)) if (b[i] & 0xc0) == 0x80)
    return {
        "malformed": "not-an-id",
        "empty number": mid + ":",
        "negative": mid + ":-1",
        "trailing junk": mid + ":3x",
        "past the end": "%s:%d" % (mid, len(b) + 1),
        "huge": "%s:%s" % (mid, "9" * 30),
        "another message's": other_id,
        "inside a character": "%s:%d" % (mid, inside),
        "a bare offset inside a character": str(inside),
        "a bare offset": str(len(b) // 2),
        "an end that is not this one": "%s:%d:end" % (mid, len(b) - 1),
        "long": mid + ":" + "x" * 3000,
    }


@test
def sse_any_last_event_id_starts_over_finished(_):
    st = stack("main")
    mid, full, _c, _e = finished_reply(st, "任何 Last-Event-ID 都得到完整的流")
    _o, _f, _c2, other = finished_reply(st, "另一条消息")
    bad = []
    for name, last in _bad_ids(mid, full, other[1]["id"]).items():
        for how in ("header", "query"):
            if how == "query" and len(last) > 150:
                continue
            s = sse(st, mid, last=last) if how == "header" else sse(st, mid, query=last)
            with s:
                status = s.head()
                evs = s.all_events() if status == 200 else []
            got = [(e["event"], e["data"]["content"]) for e in evs]
            if status != 200 or got != [("init", full), ("done", full)]:
                bad.append("%s (%s): %d %r" % (name, how, status, [e["event"] for e in evs]))
    assert not bad, "streams that did not start over: %s" % "; ".join(bad)


@test
def sse_any_last_event_id_starts_over_running(_):
    st = stack("main")
    j = chax_chat(st.c, "回复进行中，带着一个坏的 Last-Event-ID 连接：" + "长" * 60)
    mid = j["msgId"]
    with sse(st, mid) as s0:
        first = s0.next_event()
        second = s0.next_event()
    assert (first["event"], second["event"]) == ("init", "chunk"), (first, second)
    sofar = first["data"]["content"] + second["data"]["content"]
    inside = next(i for i in range(1, len(sofar.encode())) if (sofar.encode()[i] & 0xc0) == 0x80)
    for last in ("garbage", "%s:%d" % (mid, inside), str(inside), "%s:999999" % mid):
        with sse(st, mid, last=last) as s:
            evs = s.all_events()
        types = [e["event"] for e in evs]
        assert types and types[0] == "init" and types[-1] == "done" and \
            set(types[1:-1]) <= {"chunk"}, "Last-Event-ID %r: events %r" % (last, types)
        assert evs[0]["data"]["content"].startswith(sofar), \
            "Last-Event-ID %r: init %r lacks what was written" % (last, evs[0]["data"])
        assert text_of(evs) == evs[-1]["data"]["content"], "init + chunks != done"


# --------------------------------------------------------------------------------------
# 4. Large replies reach every client that reads


@test
def large_reply_reaches_readers_whole(_):
    st = stack("oa")
    conv = uniq("big")
    before = st.push()["dropped"]
    ws = WS(st.port, conv)
    idle = None
    try:
        sent = im_send(st.c, conv, "[case:big900] 一条很长的回复 %s" % uniq())
        first, _ = ws.until(lambda m: m.get("type") in ("ai_chunk", "ai_reply", "error"),
                            "the first ai_chunk")
        assert first["type"] == "ai_chunk", "first reply event %r" % (first,)
        mid = first["message_id"]
        # a reader of the SSE stream, and one that reads nothing (a small receive buffer,
        # on the daemon's own socket: nginx's buffers would hide it)
        idle = HttpStream(os.path.join(st.stack.data_dir, "run", "push-http.sock"),
                          "/sse/" + q(mid), rcvbuf=4096)
        idle.head()
        reader = sse(st, mid)
        reply, seen = ws.until(lambda m: m.get("type") in ("ai_reply", "error") and
                               m.get("message_id") == mid, "ai_reply")
        assert reply["type"] == "ai_reply", "the WebSocket got %r" % (
            {k: v for k, v in reply.items() if k != "content"},)
        chunks = "".join(m["content"] for m in [first] + seen
                         if m.get("type") == "ai_chunk" and m["message_id"] == mid)
        assert reply["content"] == BIG, "ai_reply carries %d bytes of %d" % (
            len(reply["content"].encode()), len(BIG.encode()))
        assert chunks == BIG, "the ai_chunks carry %d bytes of %d" % (
            len(chunks.encode()), len(BIG.encode()))
        with reader:
            evs = reader.all_events(30)
        assert evs and evs[0]["event"] == "init" and evs[-1]["event"] == "done", \
            "the SSE reader got %r" % ([e["event"] for e in evs][-5:],)
        assert text_of(evs) == BIG and evs[-1]["data"]["content"] == BIG, \
            "the SSE reader: init + chunks %d bytes, done %d, of %d" % (
                len(text_of(evs).encode()), len(evs[-1]["data"]["content"].encode()),
                len(BIG.encode()))
    finally:
        ws.close()
    # the client that read nothing was dropped
    p = poll(lambda: (lambda x: x if x["dropped"] > before else None)(st.push()), 5,
             "push.dropped counting the SSE client that reads nothing")
    assert p["dropped"] == before + 1, "dropped went from %d to %d: a reader was dropped" % (
        before, p["dropped"])
    idle.close()
    # and after it finished: init + done, whole
    with sse(st, mid) as s:
        evs = s.all_events(30)
    got = [(e["event"], len(e["data"]["content"])) for e in evs]
    assert got == [("init", len(BIG)), ("done", len(BIG))], \
        "the finished reply streams %r (%d characters)" % (got, len(BIG))
    assert evs[0]["data"]["content"] == BIG and evs[1]["data"]["content"] == BIG


# --------------------------------------------------------------------------------------
# 5. An event announces what is durable


@test
def ws_ai_reply_is_stored_when_announced(_):
    st = stack("main")
    for i in range(ROUNDS):
        conv = uniq("dur-ws")
        ws = WS(st.port, conv)
        try:
            sent = im_send(st.c, conv, "第 %d 轮：收到 ai_reply 就读" % i)
            reply, _ = ws.until(lambda m: m.get("type") in ("ai_reply", "error") and
                                m.get("user_message_id") == sent["message_id"], "ai_reply")
            assert reply["type"] == "ai_reply", reply
            check_stored(st.c, conv, reply["message_id"], reply["content"],
                         "round %d, on ai_reply" % i)
        finally:
            ws.close()


@test
def sse_done_is_stored_when_announced(_):
    st = stack("main")
    for i in range(ROUNDS):
        j = chax_chat(st.c, "第 %d 轮：收到 done 就读" % i)
        with sse(st, j["msgId"]) as s:
            while True:
                e = s.next_event()
                assert e is not None, "round %d: the stream ended with no done" % i
                if e["event"] in ("done", "error"):
                    break
        assert e["event"] == "done", e
        check_stored(st.c, j["conversationId"], j["msgId"], e["data"]["content"],
                     "round %d, on done" % i)


@test
def sse_client_between_end_and_write_gets_its_end(_):
    # a second stream opened the moment the first one's done arrives: one end, and by
    # then the reply is stored (before, the end went out while it waited to be written)
    st = stack("main")
    for i in range(ROUNDS):
        j = chax_chat(st.c, "第 %d 轮" % i)
        with sse(st, j["msgId"]) as s0:
            evs0 = s0.all_events()
        with sse(st, j["msgId"]) as s:
            evs = s.all_events()
        assert [e["event"] for e in evs] == ["init", "done"] and \
            evs[1]["data"]["content"] == evs0[-1]["data"]["content"], evs
        check_stored(st.c, j["conversationId"], j["msgId"], evs[1]["data"]["content"],
                     "round %d, on the second stream's done" % i)


@test
def workflow_stream_end_is_stored_when_the_stream_ends(_):
    st = stack("main")
    for i in range(ROUNDS // 2):
        sid = uniq("dur-e")
        body = _workflow_stream(st, sid, "第 %d 轮 workflow 的流" % i)
        h = ok_env(st.c.get("/api/chat/history?sessionId=" + q(sid)),
                   "workflow history")["messages"]
        assert h and h[-1]["aiResponse"] == body["reply"], \
            "round %d: the stream ended and workflow's history shows %r, the stream gave %r" % (
                i, h[-1:] if h else h, body["reply"])


# --------------------------------------------------------------------------------------
# 6, 7. workflow's body, and workflow's stream with every provider


def _workflow_post(st, path, body, tok=None):
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if tok:
        headers["Authorization"] = "Bearer " + tok
    return st.c.req("POST", path, body=raw, headers=headers)


def _workflow_stream(st, sid, text, user="eu"):
    """workflow's stream, read to its end by a plain HTTP client: the status, type, raw body, and
    the reply its events carry."""
    raw = json.dumps({"sessionId": sid, "userId": user, "chatInput": text},
                     ensure_ascii=False).encode("utf-8")
    sock = socket.create_connection(("127.0.0.1", st.port), timeout=20)
    try:
        sock.sendall(b"POST /api/chat/stream HTTP/1.0\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw)
        data = b""
        while True:
            b = sock.recv(65536)
            if not b:
                break
            data += b
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    reply = []
    for line in body.decode("utf-8").split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            j = json.loads(line[6:])
            if "content" in j:
                reply.append(j["content"])
            else:
                d = (j.get("choices") or [{}])[0].get("delta", {})
                reply.append(d.get("content") or "")
    return {"status": int(lines[0].split()[1]), "ctype": hdrs.get("content-type", ""),
            "body": body, "reply": "".join(reply)}


@test
def workflow_required_fields(_):
    st = stack("main")
    full = {"sessionId": uniq("ereq"), "userId": "eu", "chatInput": "你好"}
    want = {"sessionId": "会话ID不能为空", "userId": "用户ID不能为空",
            "chatInput": "消息内容不能为空"}
    for path in ("/api/chat/send", "/api/chat/stream"):
        for field, msg in want.items():
            for variant in ("missing", "empty", "null"):
                body = dict(full)
                if variant == "missing":
                    del body[field]
                else:
                    body[field] = "" if variant == "empty" else None
                err_env(_workflow_post(st, path, body), 400, msg)


@test
def workflow_missing_user_id_is_the_token_subject_under_jwt(_):
    st = stack("jwt")
    tok = token("e-jwt-user")
    sid = uniq("ejwt")
    d = ok_env(_workflow_post(st, "/api/chat/send", {"sessionId": sid, "chatInput": "没有 userId"},
                       tok), "workflow send without userId under jwt")
    assert d["reply"], d
    h = ok_env(st.c.with_token(tok).get("/api/chat/history?sessionId=" + q(sid)))["messages"]
    assert [x["userId"] for x in h] == ["e-jwt-user"], h
    err_env(_workflow_post(st, "/api/chat/send", {"sessionId": sid, "userId": "someone-else",
                                           "chatInput": "x"}, tok), 403)
    err_env(_workflow_post(st, "/api/chat/stream", {"sessionId": sid, "userId": "e-jwt-user"}, tok),
            400, "消息内容不能为空")


@test
def workflow_stream_builtin(_):
    st = stack("main")
    sid = uniq("eb")
    r = _workflow_stream(st, sid, "内置助手的流式回复")
    assert r["status"] == 200, "workflow stream with builtin: %d %r" % (
        r["status"], r["body"][:300])
    assert r["ctype"].startswith("text/event-stream"), r["ctype"]
    events = [x for x in r["body"].decode("utf-8").split("\n\n") if x]
    assert len(events) >= 4 and events[-1] == "data: [DONE]", events[-3:]
    assert all(x.startswith("data: ") for x in events), events
    h = ok_env(st.c.get("/api/chat/history?sessionId=" + q(sid)))["messages"]
    assert [(x["userMessage"], x["aiResponse"]) for x in h] == [
        ("内置助手的流式回复", r["reply"])], (h, r["reply"])
    assert "内置助手的流式回复" in r["reply"]


@test
def workflow_stream_openai_passes_the_upstream_through(_):
    st = stack("oa")
    sid = uniq("eo")
    text = "OpenAI 的流 %s" % uniq()
    r = _workflow_stream(st, sid, text)
    assert r["status"] == 200, "workflow stream with openai: %d %r" % (r["status"], r["body"][:300])
    assert r["ctype"].startswith("text/event-stream"), r["ctype"]
    wire = b"".join(s[1] for s in fu.OPENAI_CASES["normal"]["steps"] if s[0] == "chunk")
    assert r["body"] == wire, "not the upstream's bytes: %r" % r["body"][:300]
    want = fu.OPENAI_CASES["normal"]["reply"]
    h = ok_env(st.c.get("/api/chat/history?sessionId=" + q(sid)))["messages"]
    assert [(x["userMessage"], x["aiResponse"]) for x in h] == [(text, want)], h


@test
def workflow_stream_503_only_when_the_provider_cannot_be_used(_):
    st = stack("noai")
    sid = uniq("en")
    # a bad body is a 400 envelope all the same
    err_env(_workflow_post(st, "/api/chat/stream", {"sessionId": sid, "userId": "eu"}), 400,
            "消息内容不能为空")
    r = st.c.req("POST", "/api/chat/stream", body=b"{not json", headers={
        "Content-Type": "application/json"})
    err_env(r, 400)
    r = _workflow_post(st, "/api/chat/stream", {"sessionId": sid, "userId": "eu", "chatInput": "hi"})
    expect(r, 503, "workflow stream with openai at api.openai.com and no key")
    assert (r.header("Content-Type") or "").startswith("text/plain"), r.header("Content-Type")
    assert r.body.strip(), "an empty 503"
    h = ok_env(st.c.get("/api/chat/history?sessionId=" + q(sid)))["messages"]
    assert h == [], "a refused stream stored %r" % (h,)
