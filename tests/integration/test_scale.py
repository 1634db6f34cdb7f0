"""Beyond one machine (started by run.py as a SELF_MODULE: it runs its own stacks and, on
the SQLite lane, its own PostgreSQL server).

- `aichatd migrate-to URL` copies an SQLite store into an empty PostgreSQL database: every
  row of every table arrives with its ids and times, a stack on PostgreSQL answers as the
  SQLite one did and goes on with new ids, and a database with data is refused.
- Two hosts (each its own nginx, pool and daemon) on one PostgreSQL: what one writes, the
  other lists and reads in every dialect; a model-config PUT on A is what B's next run uses.
- kill -9 of A's daemon mid-reply: B's daemon takes the run once A's lease runs out, and the
  reply's end reaches a client of B; every acknowledged message is present once.
- PostgreSQL stopped: sends answer 503 in the dialect's body; started again: the same
  stack serves again by itself.

The PostgreSQL server is the lane's (AICHATD_TEST_PG_SERVER) when there is one, else a
private one from tests/lib/pg-instance, stopped by PID in teardown(); the outage test always
has a server of its own. Processes are found from /proc, never by name.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import harness
from harness import (REPO, Client, Stack, aichat_msg, aichat_session, im_send, ok_env, ok_json,
                     poll, proc_argv, proc_children, q, test, uniq)

POOL = os.path.join(REPO, os.environ.get("AICHATD_BUILD_DIR", "build"), "src", "aichatd")
PG_INSTANCE = os.path.join(REPO, "tests", "lib", "pg-instance")

_stacks = []   # stacks whose crash reports count
_killed = []   # stacks killed on purpose (their logs tell of it)
_servers = []  # private PostgreSQL directories, stopped in teardown
_dbs = []      # (server, database) made here
_dirs = []


def teardown():
    checks = []
    for s in _killed:
        s.stop(cleanup=False)
    for s in _stacks:
        s.stop(cleanup=False)
        checks.append(("test_scale.no_crash_reports", s.crash_reports()))
    for s in _stacks + _killed:
        s.cleanup()
    for server, name in _dbs:
        try:
            psql(server, "postgres", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass
    for d in _servers:
        subprocess.call([PG_INSTANCE, "stop", d])
        shutil.rmtree(d, ignore_errors=True)
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    del _stacks[:], _killed[:], _servers[:], _dbs[:], _dirs[:]
    return checks


def psql(server, dbname, sql):
    out = subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                          "%s/%s" % (server, dbname), "-c", sql],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert out.returncode == 0, "psql: %s" % out.stderr.decode("utf-8", "replace")
    return out.stdout.decode("utf-8", "replace")


def private_server():
    d = tempfile.mkdtemp(prefix="aichatd-scale-pg-")
    _servers.append(d)
    url = subprocess.check_output([PG_INSTANCE, "start", d, str(harness.free_port())])
    return d, url.decode().strip().rsplit("/", 1)[0]


_shared = []


def server():
    """The PostgreSQL server these tests make their databases on."""
    if harness.pg_server():
        return harness.pg_server()
    if not _shared:
        _shared.append(private_server()[1])
    return _shared[0]


def new_database(srv=None):
    srv = srv or server()
    name = "sc_" + uuid.uuid4().hex[:16]
    psql(srv, "postgres", "CREATE DATABASE %s" % name)
    _dbs.append((srv, name))
    return "%s/%s" % (srv, name), name


def host(url, **env):
    """A stack on the PostgreSQL database url (its own data directory, nginx, pool and
    daemon)."""
    e = {"AICHATD_DATABASE_URL": url}
    e.update(env)
    s = Stack(auth="off", workers=2, extra_env=e).start()
    _stacks.append(s)
    return s


def daemon_of(stack):
    for p in proc_children(stack.proc.pid):
        a = proc_argv(p)
        if a and os.path.basename(a[0]) == "aichatd-push":
            return p
    raise AssertionError("the stack's daemon was not found")


def records(c, sid):
    return ok_json(c.get("/api/ai/records?session_id=%s&page_size=100" % q(sid)),
                   "GET /api/ai/records")["records"]


def ended(c, sid, n=1):
    got = records(c, sid)
    return len(got) >= n and all(r["status"] != 0 for r in got)


# --------------------------------------------------------------------------------------

SQLITE_TABLES = {
    "conversations": "seq, id, user_id, title, model_config, msg_count, created_at, updated_at, "
                     "is_deleted, deleted_at",
    "messages": "id, msg_id, conv_seq, user_id, role, content, unfinished, error, visible, "
                "metadata, created_at, updated_at, is_deleted, deleted_at",
    "runs": "id, record_id, conv_seq, user_msg, ai_msg, status, duration_ms, error_code, "
            "error_message, created_at, finished_at, model_config",
    "model_configs": "config_id, provider, model_name, model_version, parameters, "
                     "system_prompt, updated_at",
    "logs": "id, level, message, created_at",
    "travel_plans": "id, conv_seq, message, plan, created_at",
}


def sqlite_rows(path, table):
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        rows = db.execute("SELECT %s FROM %s ORDER BY 1" % (SQLITE_TABLES[table], table))
        return [tuple("" if v is None else str(v) for v in r) for r in rows]
    finally:
        db.close()


def pg_rows(srv, name, table):
    # one row per line, fields by \x1f; NULL as the empty string, as sqlite_rows() has it
    cols = ", ".join("coalesce(%s::text, '')" % c.strip() for c in SQLITE_TABLES[table].split(","))
    p = subprocess.run(["psql", "-X", "-q", "-tA", "-R", "\x1e", "-v", "ON_ERROR_STOP=1",
                        "%s/%s" % (srv, name), "-c",
                        "SELECT concat_ws(E'\\x1f', %s) FROM %s ORDER BY 1" % (cols, table)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode("utf-8")
    return [tuple(rec.split("\x1f")) for rec in out.rstrip("\n").split("\x1e") if rec]


@test
def migrate_to_copies_every_row_with_its_ids_and_times(_):
    # an SQLite stack with data of every kind: runs ended, a deleted message, a config
    # changed, a line in the log (a failed run's)
    s = Stack(auth="off", workers=2, extra_env={"AICHATD_DATABASE_URL": ""}).start()
    _stacks.append(s)
    c = Client(s.port)
    sid = uniq("mt")
    im_send(c, sid, "你好 \t tab\nnewline \\ backslash")
    im_send(c, sid, "second")
    poll(lambda: ended(c, sid, 2), 15, "the im replies")
    a = aichat_session(c, user_id=uniq("mu"), title="标题 aichat")["session_id"]
    m = aichat_msg(c, a, "to delete", "user")
    aichat_msg(c, a, "kept")
    ok_env(c.delete("/api/chat/messages/%d" % m["message_id"]), "delete a message")
    ok_json(c.put("/api/v1/model-configs/builtin", json={"model_version": "v-migrated"}),
            "PUT a model config")
    before = ok_json(c.get("/api/message/list?session_id=%s" % q(sid)), "im list")
    data_dir = s.data_dir
    s.stop(cleanup=False)
    db = os.path.join(data_dir, "aichatd.db")
    # a travel plan, as workflow's n8n runs store them (the builtin provider makes none)
    import sqlite3
    raw = sqlite3.connect(db)
    raw.execute("INSERT INTO travel_plans (conv_seq, message, plan, created_at) SELECT "
                "conv_seq, id, '{\"day\": 1, \"城市\": \"杭州\"}', created_at FROM messages "
                "WHERE role = 'assistant' ORDER BY id LIMIT 1")
    raw.commit()
    raw.close()
    url, name = new_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATD_")}
    env["AICHATD_DATA_DIR"] = data_dir
    p = subprocess.run([POOL, "migrate-to", url], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, "migrate-to: %d %s" % (p.returncode, out)
    assert "conversations" in out and "messages" in out, out
    srv = url.rsplit("/", 1)[0]
    for table in SQLITE_TABLES:
        want, got = sqlite_rows(db, table), pg_rows(srv, name, table)
        assert want, "the SQLite table %s is empty: nothing was tested" % table
        assert got == want, "%s differs after migrate-to: %d rows vs %d, first %r vs %r" % (
            table, len(got), len(want), got[:1], want[:1])
    # a second copy into a database with data is refused, and changes nothing
    p = subprocess.run([POOL, "migrate-to", url], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 1 and b"already holds data" in p.stderr, (p.returncode, p.stderr)
    assert pg_rows(srv, name, "messages") == sqlite_rows(db, "messages")
    # a stack on the copy answers as the SQLite one did, and new ids follow the copied
    h = host(url)
    hc = Client(h.port)
    after = ok_json(hc.get("/api/message/list?session_id=%s" % q(sid)), "im list on PostgreSQL")
    assert after == before, "im's list differs on the copy: %r vs %r" % (after, before)
    im_send(hc, sid, "third, on PostgreSQL")
    poll(lambda: ended(hc, sid, 3), 15, "the reply on PostgreSQL")
    ids = [m["id"] for m in ok_json(hc.get("/api/message/list?session_id=%s" % q(sid)),
                                    "im list")["messages"]]
    assert len(ids) == len(set(ids)) == len(before["messages"]) + 2, ids


@test
def two_hosts_share_one_store(_):
    url, _name = new_database()
    a, b = host(url), host(url)
    ca, cb = Client(a.port), Client(b.port)
    # im: sent on A, its reply listed on B, continued on B
    sid = uniq("th")
    im_send(ca, sid, "from A")
    poll(lambda: ended(cb, sid), 15, "A's reply, seen from B")
    im_send(cb, sid, "from B")
    poll(lambda: ended(ca, sid, 2), 15, "B's reply, seen from A")
    msgs = ok_json(ca.get("/api/message/list?session_id=%s&page_size=100" % q(sid)),
                   "im list")["messages"]
    asked = [m["msg_content"] for m in msgs if m["msg_type"] == "TEXT"]
    assert asked == ["from A", "from B"], msgs
    assert len(msgs) == 4, "4 messages (2 asked, 2 answered) expected: %r" % msgs
    assert msgs == ok_json(cb.get("/api/message/list?session_id=%s&page_size=100" % q(sid)),
                           "im list on B")["messages"], "A and B list differently"
    # aichat: a session made on A is listed and read on B
    user = uniq("tu")
    s = aichat_session(ca, user_id=user, title="on A")["session_id"]
    aichat_msg(ca, s, "written on A")
    lst = ok_env(cb.post("/api/chat/sessions", json={"user_id": user}), "aichat sessions on B")
    assert [x["session_id"] for x in lst] == [s], lst
    items = ok_env(cb.get("/api/chat/sessions/%s/messages" % s), "aichat messages on B")["items"]
    assert [x["content"] for x in items] == ["written on A"], items
    # chax: a chat on A, its finished message read on B
    cj = ok_json(ca.post("/ai/chat", json={"content": "chax on A"}), "chax chat on A")

    def chax_done():
        got = ok_json(cb.get("/ai/message/content/%s" % q(cj["msgId"])), "chax content on B")
        return not got.get("unfinished") and got.get("content")
    poll(chax_done, 15, "chax's reply, read on B")
    # v1: a model-config change on A is what B's next run reports
    tag = "v-" + uuid.uuid4().hex[:8]
    ok_json(ca.put("/api/v1/model-configs/builtin", json={"model_version": tag}),
            "PUT on A")
    cfgs = ok_json(cb.get("/api/v1/model-configs"), "model configs on B")
    assert tag in repr(cfgs), "B does not see A's model config: %r" % cfgs


@test
def a_dead_hosts_run_is_taken_over_within_the_lease(_):
    url, _name = new_database()
    # A makes slow replies (a piece every 300 ms); both renew their leases every second
    a = host(url, AICHATD_LEASE_S="3", AICHATD_BUILTIN_DELAY_MS="300")
    b = host(url, AICHATD_LEASE_S="3")
    ca, cb = Client(a.port), Client(b.port)
    sid = uniq("lk")
    sent = im_send(ca, sid, "a long question for host A")
    poll(lambda: records(cb, sid), 10, "the run, seen from B")
    time.sleep(0.5)
    assert records(cb, sid)[0]["status"] == 0, "A's reply ended before the kill: too fast"
    os.kill(daemon_of(a), signal.SIGKILL)
    _stacks.remove(a)
    _killed.append(a)
    t0 = time.time()
    poll(lambda: ended(cb, sid), 20, "the reply's end, on B, after A's daemon died")
    took = time.time() - t0
    rec = records(cb, sid)
    assert len(rec) == 1 and rec[0]["status"] == 1, rec
    msgs = ok_json(cb.get("/api/message/list?session_id=%s" % q(sid)), "im list on B")["messages"]
    assert len(msgs) == 2, "the question and one reply expected: %r" % msgs
    assert msgs[0]["message_id"] == sent["message_id"], (msgs, sent)
    assert msgs[1]["msg_type"] == "AI_REPLY" and msgs[1]["msg_content"], msgs
    assert took < 3 + 15, "taken over after %.1f s" % took


@test
def postgresql_down_answers_503_and_recovers(_):
    d, srv = private_server()
    url = "%s/aichatd" % srv
    s = host(url)
    c = Client(s.port)
    sid = uniq("pd")
    im_send(c, sid, "before")
    poll(lambda: ended(c, sid), 15, "the first reply")
    subprocess.check_call([PG_INSTANCE, "stop", d])
    r = c.post("/api/message/send", json={"content": "while down", "session_id": sid})
    assert r.status == 503, "im send with PostgreSQL down: %d %r" % (r.status, r.body[:200])
    assert "code" in json.loads(r.body), "im's body expected: %r" % r.body[:200]
    r = c.post("/api/v1/sessions/%s/messages" % q(uniq("pv")),
               json={"user_id": uniq("pu"), "message": "x"})
    assert r.status == 503, "v1 send with PostgreSQL down: %d %r" % (r.status, r.body[:200])
    subprocess.check_output([PG_INSTANCE, "start", d, srv.rsplit(":", 1)[1]])

    def sends():
        r = c.post("/api/message/send", json={"content": "after", "session_id": sid})
        return r.status == 200
    poll(sends, 20, "a send once PostgreSQL is back")
    poll(lambda: ended(c, sid, 2), 15, "the reply after the outage")
    contents = [m["msg_content"] for m in ok_json(
        c.get("/api/message/list?session_id=%s&page_size=100" % q(sid)), "im list")["messages"]]
    assert "while down" not in contents, "a refused send was stored: %r" % contents
    assert contents.count("before") == 1 and contents.count("after") == 1, contents
