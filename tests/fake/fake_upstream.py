#!/usr/bin/env python3
"""A fake AI upstream for the integration tests (Python 3 standard library only).

One threaded HTTP/1.1 server on a loopback port serving both
  POST /v1/chat/completions   an OpenAI-compatible endpoint (SSE when asked to stream)
  POST /webhook/<name>        an n8n webhook

What it answers is data, not code: every answer is a case in OPENAI_CASES or N8N_CASES, a
list of wire steps (write one chunk, sleep, cut the connection, hang) built once at import.
The case of a request is, in this order:
  1. a marker "[case:NAME]" in the user's text (the last user message, or chatInput);
  2. OpenAI: the model name "fake-NAME"; n8n: the webhook path /webhook/NAME;
  3. the default: "normal" (OpenAI) or "output" (n8n).
An unknown NAME named by a marker or "fake-" model answers 400, so a typo fails loudly.

Every request is recorded (path, headers, parsed body, case, and for a hang how long the
client took to give up), so tests can check what the server sent upstream.

    python3 tests/fake/fake_upstream.py [--port N]    # run it by hand
"""

import json
import re
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK_RE = re.compile(r"\[case:([A-Za-z0-9_-]+)\]")

# --------------------------------------------------------------------------------------
# Cases. A case is a dict:
#   status   HTTP status
#   ctype    Content-Type
#   body     bytes: the whole answer, sent with Content-Length          (or)
#   steps    [("chunk", bytes) | ("raw", bytes) | ("sleep", s) | ("cut",)]: a chunked
#            answer; "chunk" is one chunk of the chunked encoding, written and flushed
#            alone; "raw" is bytes written as they are (to break the encoding); the answer
#            ends with the terminating chunk unless a "cut" step closes the socket first
#   hang     True: read the request, answer nothing, wait until the client goes away
#   reply    the full reply text the server should store (None when the run must fail)
#   error    a piece of text the run's error message should contain (None: any message)
#   timeout  True when the run should fail as a timeout (2002), not as a failure (2001)


def _sse(obj):
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n"


def _delta(text, role=False):
    d = {"content": text}
    if role:
        d["role"] = "assistant"
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "fake", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}


_FINISH = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
           "model": "fake", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
_DONE = b"data: [DONE]\n\n"


def sse_stream(pieces, delay=0.0, done=True, role_first=True):
    """Steps of a normal OpenAI stream: an empty role chunk, one chunk per piece, the
    finish chunk, [DONE]; `delay` seconds between pieces."""
    steps = []
    if role_first:
        steps.append(("chunk", _sse(_delta("", role=True))))
    for i, p in enumerate(pieces):
        if delay and i:
            steps.append(("sleep", delay))
        steps.append(("chunk", _sse(_delta(p))))
    if done:
        steps.append(("chunk", _sse(_FINISH)))
        steps.append(("chunk", _DONE))
    return steps


def split_writes(data, cuts, pause=0.05):
    """One wire payload written in pieces (each its own chunk and TCP write) at the given
    byte offsets, `pause` seconds apart: a line arrives in halves."""
    steps, last = [], 0
    for c in list(cuts) + [len(data)]:
        if c > last:
            if steps:
                steps.append(("sleep", pause))
            steps.append(("chunk", data[last:c]))
            last = c
    return steps


def _split_case():
    pieces = ["拆开的", "一行 ", "split line ✓"]
    wire = b"".join(_sse(_delta(p)) for p in pieces)
    # the cuts: inside "data:", inside the JSON, inside the 3-byte character 拆, and
    # between the two newlines that end an event
    first = _sse(_delta(pieces[0]))
    k = first.index("拆".encode("utf-8")) + 1
    cuts = [3, 20, k, len(first) - 1, len(first) + 30]
    steps = [("chunk", _sse(_delta("", role=True)))] + split_writes(wire, cuts)
    steps += [("chunk", _sse(_FINISH) + _DONE[:7]), ("sleep", 0.05), ("chunk", _DONE[7:])]
    return {"status": 200, "ctype": "text/event-stream", "steps": steps,
            "reply": "".join(pieces), "error": None}


def _crlf_case():
    # SSE as some servers send it: CRLF line ends, comments, event and id lines
    pieces = ["Windows ", "line ", "ends"]
    steps = [("chunk", b": keep-alive\r\n\r\n")]
    for i, p in enumerate(pieces):
        steps.append(("chunk", b"id: %d\r\nevent: message\r\n" % i +
                      _sse(_delta(p)).replace(b"\n", b"\r\n")))
    steps.append(("chunk", _DONE.replace(b"\n", b"\r\n")))
    return {"status": 200, "ctype": "text/event-stream; charset=utf-8", "steps": steps,
            "reply": "".join(pieces), "error": None}


NORMAL_PIECES = ["你好，", "这是假的", " OpenAI ", "回复。🙂"]
SLOW_PIECES = ["慢", "慢", "地", "来", "了"]

OPENAI_CASES = {
    # normal, several pieces
    "normal": {"status": 200, "ctype": "text/event-stream", "steps": sse_stream(NORMAL_PIECES),
               "reply": "".join(NORMAL_PIECES), "error": None},
    # lines split across TCP writes (inside data:, inside the JSON, inside a character)
    "split": _split_case(),
    # CRLF, comments, id/event lines
    "crlf": _crlf_case(),
    # pieces 200 ms apart
    "slow": {"status": 200, "ctype": "text/event-stream",
             "steps": sse_stream(SLOW_PIECES, delay=0.2), "reply": "".join(SLOW_PIECES),
             "error": None},
    # a server that ignores stream: true and answers one JSON document
    "json": {"status": 200, "ctype": "application/json",
             "body": json.dumps({"id": "chatcmpl-fake", "object": "chat.completion",
                                 "model": "fake",
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant",
                                                          "content": "一次给完的回复"}}]},
                                ensure_ascii=False).encode("utf-8"),
             "reply": "一次给完的回复", "error": None},
    # failures
    "500": {"status": 500, "ctype": "application/json",
            "body": b'{"error":{"message":"fake upstream exploded","type":"server_error"}}',
            "reply": None, "error": "500"},
    "malformed": {"status": 200, "ctype": "text/event-stream",
                  "steps": sse_stream(["好的"], done=False) +
                  [("chunk", b'data: {"choices":[{"delta":{"content":"x"}\n\n')] +
                  sse_stream(["后来的"], role_first=False),
                  "reply": None, "error": None},
    "error": {"status": 200, "ctype": "text/event-stream",
              "steps": sse_stream(["开始"], done=False) +
              [("chunk", _sse({"error": {"message": "fake quota exceeded mid-stream",
                                         "type": "insufficient_quota"}})),
               ("chunk", _DONE)],
              "reply": None, "error": "fake quota exceeded mid-stream"},
    "cut": {"status": 200, "ctype": "text/event-stream",
            "steps": sse_stream(["说到", "一半"], done=False) +
            [("raw", b'40\r\ndata: {"choices":[{"delta":{"con'), ("sleep", 0.05), ("cut",)],
            "reply": None, "error": None},
    "hang": {"hang": True, "reply": None, "error": None, "timeout": True},
    # a slow upstream for the run cap and the sync sends: its answer takes ~0.3 s or ~4 s
    "pace": {"status": 200, "ctype": "text/event-stream",
             "steps": [("sleep", 0.3)] + sse_stream(["慢", "一点"], delay=0.01),
             "reply": "慢一点", "error": None},
    "hold": {"status": 200, "ctype": "text/event-stream",
             "steps": [("sleep", 4.0)] + sse_stream(["等", "了很久"], delay=0.01),
             "reply": "等了很久", "error": None},
}

# Failures in long Chinese text, for the cuts on character boundaries: the message is long
# enough that every byte limit an error passes falls inside a character (each character
# here is 3 bytes; "AI 服务调用失败: " is 23 and the body's prefix 21).
LONG_CN = "上游服务内部错误：模型推理集群暂时不可用，请稍后重试。" * 16
LONG_CN_STEM = LONG_CN[:20]  # what any message telling of it shows
OPENAI_CASES["long500"] = {
    "status": 500, "ctype": "application/json",
    "body": json.dumps({"error": {"message": LONG_CN, "type": "server_error"}},
                       ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
    "reply": None, "error": LONG_CN_STEM}
OPENAI_CASES["long500text"] = {
    "status": 500, "ctype": "text/plain; charset=utf-8", "body": LONG_CN.encode("utf-8"),
    "reply": None, "error": LONG_CN_STEM}
OPENAI_CASES["longerror"] = {
    "status": 200, "ctype": "text/event-stream",
    "steps": sse_stream(["开始"], done=False) +
    [("chunk", _sse({"error": {"message": LONG_CN, "type": "server_error"}})),
     ("chunk", _DONE)],
    "reply": None, "error": LONG_CN_STEM}
# An upstream that tells its own address and the key it was given (as some proxies and
# servers do in their error pages): {authorization} and {host} are filled from the request.
OPENAI_CASES["telltale"] = {
    "status": 401, "ctype": "application/json", "template": True,
    "body": b'{"error":{"message":"Incorrect API key provided: {authorization} '
            b'(server {host}, /v1/chat/completions)","type":"invalid_request_error"}}',
    "reply": None, "error": "401"}


def _big900_case():
    """A reply of about 900 KB, mostly 3- and 4-byte characters, in 300 pieces of about
    3 KB streamed 2 ms apart: under the reply limit (1 MiB), near it."""
    unit = "长回复的一段中文文本，包含标点。🙂 and some ASCII; "  # 30 characters
    pieces = []
    for i in range(300):
        pieces.append(("%03d:" % i) + unit * 44)
    reply = "".join(pieces)
    return {"status": 200, "ctype": "text/event-stream",
            "steps": sse_stream(pieces, delay=0.002), "reply": reply, "error": None}


OPENAI_CASES["big900"] = _big900_case()


def _jl(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"


def _n8n_meta(i=0):
    return {"nodeId": "agent-1", "nodeName": "AI Agent", "itemIndex": 0, "runIndex": 0,
            "timestamp": 1700000000000 + i}


N8N_STREAM_PIECES = ["工作流", "流式", "回复 ✓"]


def n8n_stream(pieces, ctype):
    """n8n's streaming answer (responseMode "streaming"): JSON lines begin, item..., end.
    The second item's line is split across two writes."""
    steps = [("chunk", _jl({"type": "begin", "metadata": _n8n_meta()}))]
    for i, p in enumerate(pieces):
        line = _jl({"type": "item", "content": p, "metadata": _n8n_meta(i + 1)})
        steps.append(("sleep", 0.03))
        steps += split_writes(line, [len(line) // 2]) if i == 1 else [("chunk", line)]
    steps.append(("chunk", _jl({"type": "end", "metadata": _n8n_meta(9)})))
    return {"status": 200, "ctype": ctype, "steps": steps, "reply": "".join(pieces),
            "error": None}


TRAVEL_PLAN = {"destination": "上海", "days": 3,
               "itinerary": [{"day": 1, "plan": "外滩"}, {"day": 2, "plan": "豫园"},
                             {"day": 3, "plan": "迪士尼"}],
               "budget": {"currency": "CNY", "total": 3000}}

N8N_CASES = {
    "output": {"status": 200, "ctype": "application/json; charset=utf-8",
               "body": json.dumps({"output": "工作流的回答"}, ensure_ascii=False).encode(),
               "reply": "工作流的回答", "error": None},
    "travel": {"status": 200, "ctype": "application/json; charset=utf-8",
               "body": json.dumps({"reply": "为你规划了上海三日游", "travelPlan": TRAVEL_PLAN},
                                  ensure_ascii=False).encode(),
               "reply": "为你规划了上海三日游", "error": None, "travelPlan": TRAVEL_PLAN},
    "array": {"status": 200, "ctype": "application/json; charset=utf-8",
              "body": json.dumps([{"output": "数组里的回答"}], ensure_ascii=False).encode(),
              "reply": "数组里的回答", "error": None},
    # exactly as n8n's Webhook node streams (it labels the JSON lines application/json)
    "stream": n8n_stream(N8N_STREAM_PIECES, "application/json; charset=utf-8"),
    # the same JSON lines labelled as NDJSON
    "ndjson": n8n_stream(N8N_STREAM_PIECES, "application/x-ndjson"),
    "500": {"status": 500, "ctype": "application/json; charset=utf-8",
            "body": b'{"code":0,"message":"Error in workflow"}', "reply": None, "error": "500"},
}

N8N_CASES["long500"] = {
    "status": 500, "ctype": "application/json; charset=utf-8",
    "body": json.dumps({"code": 0, "message": LONG_CN}, ensure_ascii=False,
                       separators=(",", ":")).encode("utf-8"),
    "reply": None, "error": LONG_CN_STEM}


def pick_case(kind, path, body):
    """The case name for a request, or None when it names an unknown case."""
    table = OPENAI_CASES if kind == "openai" else N8N_CASES
    text = ""
    if kind == "openai":
        msgs = body.get("messages") if isinstance(body, dict) else None
        for m in reversed(msgs if isinstance(msgs, list) else []):
            if isinstance(m, dict) and m.get("role") == "user":
                text = str(m.get("content", ""))
                break
    elif isinstance(body, dict):
        text = str(body.get("chatInput", ""))
    m = MARK_RE.search(text)
    if m:
        name = m.group(1)
    elif kind == "openai":
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        name = model[5:] if model.startswith("fake-") else "normal"
    else:
        name = path.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        if name not in table:
            name = "output"
    return name if name in table else None


# --------------------------------------------------------------------------------------
# Server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_GET(self):
        self._plain(404, b'{"error":"only POST is served"}')

    def do_POST(self):
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        raw = self.rfile.read(n) if n > 0 else b""
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            body = None
        path = self.path.split("?")[0]
        if path.rstrip("/").endswith("/chat/completions"):
            kind = "openai"
        elif "/webhook/" in path:
            kind = "n8n"
        else:
            kind = None
        name = pick_case(kind, path, body) if kind else None
        rec = {"kind": kind, "path": self.path, "method": "POST",
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "raw": raw, "body": body, "case": name, "t": time.time(), "closed_after": None}
        self.server.fake.record(rec)
        self.close_connection = True
        if kind is None:
            return self._plain(404, b'{"error":"unknown path"}')
        if name is None:
            return self._plain(400, b'{"error":{"message":"fake: unknown case"}}')
        case = (OPENAI_CASES if kind == "openai" else N8N_CASES)[name]
        self.server.fake.enter()
        self._left = False
        try:
            self._play(case, rec)
        finally:
            self._leave()

    def _leave(self):
        # once the last bytes are on their way: the client may end its request as soon as
        # it reads them, before this thread gets to run again
        if not getattr(self, "_left", True):
            self._left = True
            self.server.fake.leave()

    def _plain(self, status, body, ctype="application/json"):
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _play(self, case, rec):
        conn = self.connection
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if case.get("hang"):
            return self._hang(rec)
        if "body" in case:
            body = case["body"]
            if case.get("template"):
                for k in ("authorization", "host"):
                    body = body.replace(b"{%s}" % k.encode(),
                                        rec["headers"].get(k, "").encode("utf-8"))
            return self._plain(case["status"], body, case["ctype"])
        self.send_response(case["status"])
        self.send_header("Content-Type", case["ctype"])
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for k, step in enumerate(case["steps"]):
                op = step[0]
                if k == len(case["steps"]) - 1:
                    self._leave()
                if op == "chunk":
                    self.wfile.write(b"%x\r\n" % len(step[1]) + step[1] + b"\r\n")
                    self.wfile.flush()
                elif op == "raw":
                    self.wfile.write(step[1])
                    self.wfile.flush()
                elif op == "sleep":
                    time.sleep(step[1])
                elif op == "cut":
                    conn.shutdown(socket.SHUT_RDWR)
                    return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            rec["closed_after"] = time.time() - rec["t"]  # the client left mid-answer

    def _hang(self, rec, limit=120.0):
        conn = self.connection
        end = time.time() + limit
        while time.time() < end and not self.server.fake.stopping:
            try:
                r, _, _ = select.select([conn], [], [], 0.1)
                if r and not conn.recv(4096):
                    break
            except OSError:
                break
        rec["closed_after"] = time.time() - rec["t"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class FakeUpstream:
    """Start with start() (or as a context manager); base URLs from openai_base() and
    webhook(name); recorded requests from requests()."""

    def __init__(self, port=0):
        self.port = port
        self.stopping = False
        self._lock = threading.Lock()
        self._reqs = []
        self._srv = None
        self._thread = None

    def start(self):
        self._srv = _Server(("127.0.0.1", self.port), _Handler)
        self._srv.fake = self
        self.port = self._srv.server_address[1]
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={
            "poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.stopping = True
        if self._srv:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def openai_base(self):
        return "http://127.0.0.1:%d/v1" % self.port

    def webhook(self, name="output"):
        return "http://127.0.0.1:%d/webhook/%s" % (self.port, name)

    def record(self, rec):
        with self._lock:
            self._reqs.append(rec)

    def requests(self, kind=None):
        with self._lock:
            return [r for r in self._reqs if kind is None or r["kind"] == kind]

    # requests being answered at once, and the most seen (the run cap's tests)
    inflight = 0
    max_inflight = 0

    def enter(self):
        with self._lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)

    def leave(self):
        with self._lock:
            self.inflight -= 1

    def reset_inflight(self):
        with self._lock:
            self.max_inflight = self.inflight

    def find(self, text, kind=None):
        """Recorded requests whose user text (last user message or chatInput) contains
        text."""
        return [r for r in self.requests(kind) if text in user_text(r)]

    def wait_for(self, text, kind=None, timeout=10.0, n=1):
        end = time.time() + timeout
        while True:
            got = self.find(text, kind)
            if len(got) >= n or time.time() >= end:
                return got
            time.sleep(0.02)


def user_text(rec):
    b = rec.get("body")
    if not isinstance(b, dict):
        return ""
    if rec.get("kind") == "n8n":
        return str(b.get("chatInput", ""))
    msgs = b.get("messages")
    for m in reversed(msgs if isinstance(msgs, list) else []):
        if isinstance(m, dict) and m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def main(argv):
    port = 0
    if len(argv) >= 2 and argv[0] == "--port":
        port = int(argv[1])
    f = FakeUpstream(port).start()
    sys.stdout.write("fake upstream on %s and %s\n" % (f.openai_base(), f.webhook("<case>")))
    sys.stdout.write("openai cases: %s\nn8n cases: %s\n" % (
        " ".join(OPENAI_CASES), " ".join(N8N_CASES)))
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        f.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
