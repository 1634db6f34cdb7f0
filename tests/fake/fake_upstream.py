#!/usr/bin/env python3
"""A fake AI upstream for the integration tests (Python 3 standard library only).

One threaded HTTP/1.1 server on a loopback port serving both
  POST /v1/chat/completions   an OpenAI-compatible endpoint (SSE when asked to stream)
  POST /webhook/<name>        an n8n webhook

What it answers is data, not code: every answer is a case, one file in tests/data/
(openai-NAME.case or n8n-NAME.case, described in tests/data/README.md) saying what the
upstream sends and what the client must see, loaded at import into OPENAI_CASES and
N8N_CASES as a list of wire steps (write one chunk, sleep, cut the connection, hang).
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
import os
import re
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARK_RE = re.compile(r"\[case:([A-Za-z0-9_-]+)\]")

# --------------------------------------------------------------------------------------
# Cases. Each is a file tests/data/<kind>-<name>.case (the format: tests/data/README.md),
# loaded at import into OPENAI_CASES and N8N_CASES as a dict:
#   status   HTTP status
#   ctype    Content-Type
#   body     bytes: the whole answer, sent with Content-Length          (or)
#   steps    [("chunk", bytes) | ("raw", bytes) | ("sleep", s) | ("cut",)]: a chunked
#            answer; "chunk" is one chunk of the chunked encoding, written and flushed
#            alone; "raw" is bytes written as they are (to break the encoding); the answer
#            ends with the terminating chunk unless a "cut" step closes the socket first
#   hang     True: read the request, answer nothing, wait until the client goes away
#   template True: {authorization} and {host} in the body are filled from the request
#   reply    the full reply text the server should store (None when the run must fail)
#   error    a piece of text the run's error message should contain (None: any message)
#   timeout  True when the run should fail as a timeout (2002), not as a failure (2001)
#   travelPlan  the travel plan the client must see (n8n only; absent otherwise)

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
REPEAT_RE = re.compile(r"%repeat\[(\d+) x (.*?)\]%")


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


def _jl(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"


def _n8n_meta(i=0):
    return {"nodeId": "agent-1", "nodeName": "AI Agent", "itemIndex": 0, "runIndex": 0,
            "timestamp": 1700000000000 + i}


class CaseError(Exception):
    pass


def _text(arg):
    """A directive's argument: the rest of the line, or a JSON string when it is quoted."""
    arg = REPEAT_RE.sub(lambda m: m.group(2) * int(m.group(1)), arg)
    return json.loads(arg) if arg.startswith('"') else arg


def _split(data, cuts, pause):
    """One payload written as several chunks, cut at the given byte offsets."""
    steps, last = [], 0
    for c in list(cuts) + [len(data)]:
        if c > last:
            if steps:
                steps.append(("sleep", pause))
            steps.append(("chunk", data[last:c]))
            last = c
    return steps


def _group(opts, inner):
    """The steps of a join ... end group: its chunks joined into one payload."""
    data = b"".join(s[1] for s in inner if s[0] == "chunk")
    crlf, cuts, pause, words = False, [], 0.05, list(opts)
    while words:
        w = words.pop(0)
        if w == "crlf":
            crlf = True
        elif w == "pause":
            pause = float(words.pop(0))
        elif w == "at":
            while words and (words[0].isdigit() or words[0] == "half"):
                v = words.pop(0)
                cuts.append(len(data) // 2 if v == "half" else int(v))
        else:
            raise CaseError("join: unknown option %r" % w)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    return _split(data, cuts, pause) if cuts else [("chunk", data)]


def parse_case(text, where="case"):
    """A case dict from the text of a .case file."""
    case = {"status": 200, "reply": None, "error": None}
    section, stack, pieces, items, join_opts = None, [[]], [], 0, []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.strip() in ("[upstream]", "[client]"):
            section = line.strip()
            continue
        word, _, arg = line.partition(" ")
        steps = stack[-1]
        try:
            if section == "[client]":
                if word == "reply":
                    case["reply"] = "".join(pieces) if arg == "@pieces" else _text(arg)
                elif word == "error":
                    case["error"] = _text(arg)
                elif word == "timeout":
                    case["timeout"] = arg == "yes"
                elif word == "travelPlan":
                    case["travelPlan"] = json.loads(arg)
                else:
                    raise CaseError("unknown client line")
            elif section != "[upstream]":
                raise CaseError("a line outside [upstream] and [client]")
            elif word == "status":
                case["status"] = int(arg)
            elif word == "content-type":
                case["ctype"] = arg
            elif word == "template":
                case["template"] = arg == "yes"
            elif word == "body":
                case["body"] = _text(arg).encode("utf-8")
            elif word == "hang":
                case["hang"] = True
            elif word == "sse-role":
                steps.append(("chunk", _sse(_delta("", role=True))))
            elif word == "sse":
                pieces.append(_text(arg))
                steps.append(("chunk", _sse(_delta(pieces[-1]))))
            elif word == "sse-gen":
                count, delay, tmpl = arg.split(" ", 2)
                tmpl = _text(tmpl)
                for i in range(int(count)):
                    if float(delay) and i:
                        steps.append(("sleep", float(delay)))
                    pieces.append(tmpl.format(i=i, letter=chr(ord("a") + i % 26)))
                    steps.append(("chunk", _sse(_delta(pieces[-1]))))
            elif word == "sse-json":
                steps.append(("chunk", _sse(json.loads(_text(arg)))))
            elif word == "sse-finish":
                steps.append(("chunk", _sse(_FINISH)))
            elif word == "sse-done":
                steps.append(("chunk", _DONE))
            elif word == "n8n-begin":
                steps.append(("chunk", _jl({"type": "begin", "metadata": _n8n_meta()})))
            elif word == "n8n-item":
                items += 1
                pieces.append(_text(arg))
                steps.append(("chunk", _jl({"type": "item", "content": pieces[-1],
                                            "metadata": _n8n_meta(items)})))
            elif word == "n8n-end":
                steps.append(("chunk", _jl({"type": "end", "metadata": _n8n_meta(9)})))
            elif word == "chunk":
                steps.append(("chunk", _text(arg).encode("utf-8")))
            elif word == "raw":
                steps.append(("raw", _text(arg).encode("utf-8")))
            elif word == "sleep":
                steps.append(("sleep", float(arg)))
            elif word == "cut":
                steps.append(("cut",))
            elif word == "join":
                if len(stack) > 1:
                    raise CaseError("a join inside a join")
                stack.append([])
                join_opts = arg.split()
            elif word == "end":
                if len(stack) == 1:
                    raise CaseError("an end without its join")
                inner = stack.pop()
                stack[-1].extend(_group(join_opts, inner))
            else:
                raise CaseError("unknown upstream line")
        except (ValueError, IndexError, KeyError, CaseError) as e:
            raise CaseError("%s:%d: %s: %s" % (where, n, e, line)) from None
    if len(stack) != 1:
        raise CaseError("%s: a join without its end" % where)
    if stack[0]:
        case["steps"] = stack[0]
    if case.get("hang"):
        del case["status"]
    return case


def load_cases(data_dir=DATA_DIR):
    """({name: case} for OpenAI, {name: case} for n8n) from data_dir's .case files."""
    tables = {"openai": {}, "n8n": {}}
    for fname in sorted(os.listdir(data_dir)):
        if not fname.endswith(".case"):
            continue
        kind, _, name = fname[:-len(".case")].partition("-")
        if kind not in tables or not name:
            raise CaseError("%s: not named openai-NAME.case or n8n-NAME.case" % fname)
        path = os.path.join(data_dir, fname)
        with open(path, encoding="utf-8") as f:
            tables[kind][name] = parse_case(f.read(), fname)
    return tables["openai"], tables["n8n"]


OPENAI_CASES, N8N_CASES = load_cases()


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
