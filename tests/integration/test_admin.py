"""aichatd's admin subcommands against a real stack's database (a SELF_MODULE: it starts
its stacks itself and runs the program beside them, as an admin would).

- backup while sends run: the copy passes PRAGMA integrity_check (sqlite3 CLI) and holds
  every message acknowledged before the backup began; an existing file is refused
  without --force.
- users / conversations print what the API shows.
- purge removes soft-deleted rows for good (and what hangs off them) and nothing else;
  --dry-run changes nothing; the counts are printed.
- chown --all-of default_user alice: auth-off data becomes a jwt user's.
- migrate reports what it did, and it, serve and the other commands refuse a database
  newer than the program.
- config: where each value came from, secrets masked. Every subcommand's --help.
"""

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time

import harness  # noqa: E402
from harness import (REPO, Client, Stack, StackCache, aichat_msg, aichat_session, expect,
                     ok_env, ok_json, test, uniq)

BUILD = os.environ.get("AICHATD_BUILD_DIR") or "build"
BUILD = BUILD if os.path.isabs(BUILD) else os.path.join(REPO, BUILD)
POOL = os.path.join(BUILD, "src", "aichatd")
SECRET = "admin-test-secret-0123456789"
SCHEMA_LATEST = len([f for f in os.listdir(os.path.join(REPO, "schema")) if f.endswith(".sql")])
COMMANDS = ["serve", "env", "nginx-conf", "backup", "users", "conversations", "purge", "chown", "migrate",
            "token", "config"]

_cache = StackCache("test_admin")
_dirs = []


def teardown():
    checks = _cache.teardown()
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)
    del _dirs[:]
    return checks


def tmpdir():
    d = tempfile.mkdtemp(prefix="aichatd-adm-")
    _dirs.append(d)
    return d


def env_for(data_dir, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICHATD_")}
    env["AICHATD_DATA_DIR"] = data_dir
    env.update(harness.store_env(data_dir))
    env.update(kw)
    return env


def admin(data_dir, *args, env=None, timeout=60):
    """Run `aichatd ARGS` on data_dir's database: (status, stdout, stderr)."""
    p = subprocess.run([POOL] + list(args), env=env or env_for(data_dir), cwd=data_dir,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def admin_ok(data_dir, *args, **kw):
    rc, out, err = admin(data_dir, *args, **kw)
    assert rc == 0, "aichatd %s: status %d, stderr %r" % (" ".join(args), rc, err[-400:])
    return out


def table(out):
    lines = out.splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


def sql(path, query):
    """Rows of a query on a database file, with the sqlite3 module (read-only)."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def off_stack():
    return _cache.get("off", lambda: Stack(auth="off").start())


@test
def every_subcommand_has_help(_):
    rc, out, _ = admin(tmpdir(), "--help")
    assert rc == 0
    for name in COMMANDS:
        assert ("\n  %s " % name) in out, "aichatd --help does not list %s: %r" % (name, out)
        d = tmpdir()
        rc, out2, err = admin(d, name, "--help")
        assert rc == 0 and out2.startswith("usage: aichatd [-c CONFIG] %s" % name), \
            (name, rc, out2, err)
        assert len(out2.splitlines()) >= 2, "%s --help says nothing more: %r" % (name, out2)
        assert os.listdir(d) == [], "%s --help made files: %r" % (name, os.listdir(d))


@test
@harness.sqlite_only
def backup_while_sends_run(_):
    s = off_stack()
    c = Client(s.port)
    conv = uniq("bk")
    acked = []
    stop = threading.Event()
    errors = []

    def sender():
        i = 0
        while not stop.is_set():
            try:
                m = ok_json(c.post("/api/message/send",
                                   json={"content": "b%d" % i, "session_id": conv}))
                acked.append(m["message_id"])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                return
            i += 1

    t = threading.Thread(target=sender)
    t.start()
    try:
        while len(acked) < 20 and t.is_alive():
            threading.Event().wait(0.02)
        before = list(acked)
        out_dir = tmpdir()
        copy = os.path.join(out_dir, "copy.db")
        out = admin_ok(s.data_dir, "backup", copy)
    finally:
        stop.set()
        t.join(30)
    assert not errors, "a send failed during the backup: %s" % errors[:3]
    assert "backed up" in out and copy in out, out
    chk = subprocess.run(["sqlite3", copy, "PRAGMA integrity_check;"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=30)
    assert chk.returncode == 0 and chk.stdout.decode().strip() == "ok", (chk.stdout, chk.stderr)
    have = {r[0] for r in sql(copy, "SELECT msg_id FROM messages")}
    missing = [m for m in before if m not in have]
    assert not missing, "acknowledged before the backup, missing in the copy: %r" % missing[:5]
    assert os.stat(copy).st_mode & 0o077 == 0, "the copy is readable by others"
    assert not [f for f in os.listdir(out_dir) if ".tmp-" in f], os.listdir(out_dir)
    # an existing file is kept unless --force
    rc, _, err = admin(s.data_dir, "backup", copy)
    assert rc == 1 and "--force" in err, (rc, err)
    admin_ok(s.data_dir, "backup", "--force", copy)


@test
def users_and_conversations_match_the_api(_):
    s = off_stack()
    c = Client(s.port)
    user = uniq("u")
    sids = []
    for n in (2, 3):
        sid = aichat_session(c, user_id=user, title="t\tab %d" % n)["session_id"]
        for i in range(n):
            aichat_msg(c, sid, "m%d" % i)
        sids.append(sid)
    api = ok_env(c.post("/api/chat/sessions", json={"user_id": user}))
    rows = [r for r in table(admin_ok(s.data_dir, "users")) if r["user"] == user]
    assert len(rows) == 1, rows
    assert int(rows[0]["conversations"]) == len(api) == 2, (rows, api)
    assert int(rows[0]["messages"]) == sum(x["message_count"] for x in api) == 5, (rows, api)
    assert rows[0]["last_activity"] == max(x["updated_at"] for x in api), (rows, api)
    convs = table(admin_ok(s.data_dir, "conversations", user))
    assert [r["id"] for r in convs] == [x["session_id"] for x in api], (convs, api)
    for r, x in zip(convs, api):
        assert r["title"] == x["title"].replace("\t", " "), (r, x)
        assert int(r["messages"]) == x["message_count"] and r["updated"] == x["updated_at"]
    assert table(admin_ok(s.data_dir, "conversations", uniq("nobody"))) == []


@test
def purge_removes_soft_deleted_rows_and_nothing_else(_):
    s = off_stack()
    c = Client(s.port)
    user = uniq("p")
    keep = aichat_session(c, user_id=user)["session_id"]
    kept = [aichat_msg(c, keep, "k%d" % i) for i in range(3)]
    gone = aichat_session(c, user_id=user)["session_id"]
    for i in range(4):
        aichat_msg(c, gone, "g%d" % i)
    # a conversation with an AI run (a user message: a run and its reply)
    run_conv = uniq("pr")
    ok_json(c.post("/api/message/send", json={"content": "hi", "session_id": run_conv}))
    deadline = time.time() + 20
    while time.time() < deadline:
        recs = ok_json(c.get("/api/ai/records?session_id=%s" % run_conv))["records"]
        if recs and recs[0]["status"] != 0:
            break
        time.sleep(0.1)
    ok_env(c.delete("/api/chat/messages/%d" % kept[1]["message_id"]))
    ok_env(c.delete("/api/chat/sessions/%s" % gone))
    ok_env(c.delete("/api/chat/sessions/%s" % run_conv))
    visible_before = ok_env(c.get("/api/chat/sessions/%s/messages" % keep))["items"]
    total_before = harness.store_sql(s.data_dir, "SELECT (SELECT count(*) FROM conversations), "
                           "(SELECT count(*) FROM messages), (SELECT count(*) FROM runs)")[0]
    # a date before the deletions removes nothing
    out = admin_ok(s.data_dir, "purge", "--deleted-before", "2000-01-01")
    assert "0 conversations, 0 messages, 0 runs" in out, out
    out = admin_ok(s.data_dir, "purge", "--deleted-before", "2999-01-01T00:00:00Z", "--dry-run")
    assert "would purge" in out, out
    assert harness.store_sql(s.data_dir, "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM "
                   "messages), (SELECT count(*) FROM runs)")[0] == total_before, "dry run changed"
    out = admin_ok(s.data_dir, "purge", "--deleted-before", "2999-01-01")
    # gone: 4 messages; run_conv: the user message and the reply; keep: 1 message
    assert "2 conversations, 7 messages, 1 runs" in out, out
    left = harness.store_sql(s.data_dir, "SELECT id FROM conversations WHERE id IN ('%s', '%s', '%s')"
               % (keep, gone, run_conv))
    assert left == [(keep,)], left
    assert harness.store_sql(s.data_dir, "SELECT count(*) FROM messages WHERE is_deleted = 1")[0][0] == 0
    assert harness.store_sql(s.data_dir, "SELECT count(*) FROM conversations WHERE is_deleted = 1")[0][0] == 0
    after = ok_env(c.get("/api/chat/sessions/%s/messages" % keep))["items"]
    assert after == visible_before and len(after) == 2, (after, visible_before)
    rc, _, err = admin(s.data_dir, "purge", "--deleted-before", "yesterday")
    assert rc == 2 and "yesterday" in err, (rc, err)


@test
def chown_keeps_auth_off_data_for_a_jwt_user(_):
    data = tmpdir()
    off = Stack(auth="off", data_dir=data).start()
    try:
        c = Client(off.port)
        convs = [uniq("co") for _ in range(2)]
        for conv in convs:
            ok_json(c.post("/api/message/send", json={"content": "mine", "session_id": conv}))
        other = aichat_session(c, user_id="bob")["session_id"]
    finally:
        off.stop(cleanup=False)
    jwt = _cache.add("jwt", Stack(auth="jwt", secret=SECRET, data_dir=data).start())
    env = env_for(data, AICHATD_AUTH="jwt", AICHATD_JWT_SECRET=SECRET)
    token = admin_ok(data, "token", "alice", env=env).strip()
    alice = Client(jwt.port).with_token(token)

    def alice_sees():
        return sorted(x["session_id"] for x in ok_env(alice.post("/api/chat/sessions",
                                                                 json={})))
    assert alice_sees() == [], "alice sees conversations before the chown"
    expect(alice.get("/api/message/list?session_id=%s" % convs[0]), 404)
    out = admin_ok(data, "chown", "--all-of", "default_user", "alice", env=env)
    assert "moved 2 conversations to alice" in out, out
    assert alice_sees() == sorted(convs)
    msgs = ok_json(alice.get("/api/message/list?session_id=%s" % convs[0]))["messages"]
    assert [m["from_user_id"] for m in msgs if m["msg_type"] == "TEXT"] == ["alice"], msgs
    # one conversation by id
    out = admin_ok(data, "chown", other, "alice", env=env)
    assert "moved 1 conversations" in out, out
    assert other in alice_sees()
    rc, _, err = admin(data, "chown", "no-such-conv", "alice", env=env)
    assert rc == 1 and "no-such-conv" in err, (rc, err)


@test
@harness.sqlite_only
def migrate_reports_and_refuses_a_newer_database(_):
    d = tmpdir()
    out = admin_ok(d, "migrate")
    assert "from schema version 0 to %d" % SCHEMA_LATEST in out, out
    out = admin_ok(d, "migrate")
    assert "at schema version %d: nothing to do" % SCHEMA_LATEST in out, out
    newer = tmpdir()
    shutil.copy(os.path.join(d, "aichatd.db"), os.path.join(newer, "aichatd.db"))
    db = sqlite3.connect(os.path.join(newer, "aichatd.db"))
    db.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future.sql', 0)",
               (SCHEMA_LATEST + 1,))
    db.commit()
    db.close()
    for args in (["migrate"], ["serve"], ["users"], ["backup", os.path.join(newer, "b.db")]):
        rc, out, err = admin(newer, *args, timeout=20)
        assert rc == 1, "%s on a newer database: status %r (%r)" % (args, rc, out)
        assert "newer" in err and str(SCHEMA_LATEST + 1) in err, (args, err)
    assert sql(os.path.join(newer, "aichatd.db"),
               "SELECT max(version) FROM schema_migrations")[0][0] == SCHEMA_LATEST + 1
    rc, _, err = admin(tmpdir(), "users")
    assert rc == 1 and "no database" in err, err


@test
def config_says_where_each_value_came_from(_):
    d = tmpdir()
    conf = os.path.join(d, "a.conf")
    with open(conf, "w") as f:
        f.write("# x\nport = 9123\nn8n_webhook_url = https://n8n.example/webhook/SEKRIT1\n"
                "openai_base_url = https://me:SEKRIT2@llm.example/v1?key=SEKRIT3\n")
    env = env_for(d, AICHATD_JWT_SECRET="SEKRIT4-0123456789", AICHATD_OPENAI_API_KEY="SEKRIT5",
                  AICHATD_WORKERS="7")
    out = admin_ok(d, "-c", conf, "config", env=env)
    assert "SEKRIT" not in out, "a secret is shown: %r" % out
    lines = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line
                 and not line.startswith("#"))
    assert lines["port"] == "9123  # file %s:2" % conf, lines["port"]
    assert lines["workers"] == "7  # environment AICHATD_WORKERS", lines["workers"]
    assert lines["threads"] == "16  # default", lines["threads"]
    assert lines["jwt_secret"] == "********  # environment AICHATD_JWT_SECRET"
    assert lines["openai_api_key"].startswith("********  #")
    assert lines["n8n_webhook_url"].startswith("https://n8n.example/********  # file")
    assert lines["openai_base_url"].startswith(
        "https://me:********@llm.example/v1?key=********  # file"), lines["openai_base_url"]
    assert lines["db_path"] == "%s/aichatd.db  # computed from data_dir" % d
    assert out.startswith("# settings file: %s (named)" % conf), out.splitlines()[0]
    # none named: the default file, absent here
    out = admin_ok(d, "config", env=env_for(d))
    assert "/aichatd/aichatd.conf (the default, absent: not read)" in out.splitlines()[0], out
