#!/usr/bin/python3
"""A WebSocket client for test_live.py, driven line by line over stdin/stdout.

It uses the `websockets` library (Debian's python3-websockets, importable by
/usr/bin/python3), so the suite talks to the server through a client nobody on the team
wrote. test_live.py starts one of these per connection (by PID, and kills it by PID).

Each stdin line is a JSON command, each stdout line the JSON answer:
  {"op":"connect","url":...,"headers":{...}}  -> {"ok":true} | {"ok":false,"status":N,...}
  {"op":"send","text":"..."}                   -> {"ok":true} | {"closed":true,...}
  {"op":"recv","timeout":s}                    -> {"msg":"..."} | {"timeout":true}
                                                  | {"closed":true,"code":N,"reason":"..."}
  {"op":"ping","timeout":s}                    -> {"pong":true} | {"timeout":true} | {"closed":...}
  {"op":"close"}                               -> {"closed":true,"code":N,"reason":"..."}
The asyncio loop keeps running between commands, so the library answers the server's pings.
"""

import asyncio
import json
import sys

import websockets
import websockets.exceptions as wse


def closed_answer(ws, e=None):
    code = getattr(ws, "close_code", None) if ws is not None else None
    reason = getattr(ws, "close_reason", None) if ws is not None else None
    if code is None and e is not None:
        code = getattr(getattr(e, "rcvd", None), "code", None)
    return {"closed": True, "code": code, "reason": reason or ""}


async def main():
    loop = asyncio.get_running_loop()
    ws = None

    def say(obj):
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        try:
            cmd = json.loads(line)
        except ValueError:
            say({"error": "bad command"})
            continue
        op = cmd.get("op")
        try:
            if op == "connect":
                try:
                    ws = await websockets.connect(cmd["url"], extra_headers=cmd.get("headers"),
                                                  ping_interval=None, max_size=None, max_queue=None,
                                                  open_timeout=cmd.get("timeout", 10))
                    say({"ok": True})
                except wse.InvalidStatusCode as e:
                    say({"ok": False, "status": e.status_code})
                except Exception as e:  # noqa: BLE001
                    say({"ok": False, "status": None, "error": "%s: %s" % (type(e).__name__, e)})
            elif op == "send":
                await ws.send(cmd["text"])
                say({"ok": True})
            elif op == "recv":
                try:
                    m = await asyncio.wait_for(ws.recv(), cmd.get("timeout", 5))
                    if isinstance(m, bytes):
                        say({"binary": m.decode("latin-1")})
                    else:
                        say({"msg": m})
                except asyncio.TimeoutError:
                    say({"timeout": True})
            elif op == "ping":
                waiter = await ws.ping()
                try:
                    await asyncio.wait_for(waiter, cmd.get("timeout", 5))
                    say({"pong": True})
                except asyncio.TimeoutError:
                    say({"timeout": True})
            elif op == "close":
                await ws.close()
                say(closed_answer(ws))
            elif op == "quit":
                break
            else:
                say({"error": "unknown op %r" % (op,)})
        except wse.ConnectionClosed as e:
            say(closed_answer(ws, e))
        except Exception as e:  # noqa: BLE001
            say({"error": "%s: %s" % (type(e).__name__, e)})
    if ws is not None:
        try:
            await asyncio.wait_for(ws.close(), 2)
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    asyncio.run(main())
