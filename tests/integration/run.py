#!/usr/bin/env python3
"""Run the integration suite: the dialect, cross-dialect and hostile tests against one
auth-off stack, test_auth against one AICHATD_AUTH=jwt stack, and the modules that start
their own stacks (test_ai: providers against tests/fake/fake_upstream.py; test_crash:
kills and restarts; test_live: streams and WebSockets; test_secure: text, secrets, file
modes and numbers). Prints one line per test
and ends with `N passed, N failed`; exit status 0 when nothing failed.

    python3 tests/integration/run.py                 # everything
    python3 tests/integration/run.py test_aichat test_chax   # only these modules
    python3 tests/integration/run.py -k pagination   # only tests whose name contains this

The stack takes its binaries from AICHATD_BUILD_DIR (default `build`), passed through from
the environment, e.g. AICHATD_BUILD_DIR=build-san python3 tests/integration/run.py

AICHATD_TEST_STORE=pg runs every stack on PostgreSQL instead of SQLite: a database of its
own per stack, on the server AICHATD_TEST_PG_SERVER names, or on a private server this
runner starts (tests/lib/pg-instance) and stops. Tests of what only SQLite has say `skip`.
"""

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import harness  # noqa: E402

OFF_MODULES = ["test_im", "test_aichat", "test_chax", "test_v1", "test_workflow", "test_cross",
               "test_hostile", "test_fields"]
JWT_MODULES = ["test_auth", "test_fields_jwt"]
# modules that start (and stop) their own stacks: their tests get no shared stack, and
# each module's teardown() stops what it started and returns its crash-report checks
SELF_MODULES = ["test_ai", "test_crash", "test_live", "test_ws", "test_ws_jwt", "test_ws_limits",
                "test_secure", "test_config", "test_streams",
                "test_sync", "test_admin", "test_nginx_conf", "test_metrics",
                "test_lifecycle", "test_scale"]


def select(modules, wanted, pattern):
    out = []
    for m in modules:
        if wanted and m not in wanted:
            continue
        importlib.import_module(m)
        for t in harness.tests_of(m):
            if pattern and pattern not in "%s.%s" % (t[0], t[1]):
                continue
            out.append(t)
    return out


def run_group(tests, auth, secret=None):
    if not tests:
        return 0, 0
    try:
        stack = harness.Stack(auth=auth, secret=secret)
        stack.start()
    except harness.StackError as e:
        sys.stdout.write("# stack (auth=%s) did not start: %s\n" % (auth, e))
        return harness.fail_all(tests, "stack (auth=%s) did not start" % auth)
    try:
        ctx = harness.Ctx(stack, secret=secret)
        passed, failed = harness.run_tests(tests, ctx)
        if not stack.alive():
            sys.stdout.write("# the stack (auth=%s) exited during the run:\n%s\n"
                             % (auth, stack.log_tail()))
    finally:
        stack.stop(cleanup=False)
    # after the stop, so that leak reports at exit are seen too
    name = "run.no_crash_reports_auth_%s" % auth
    reports = stack.crash_reports()
    if reports:
        failed += 1
        sys.stdout.write("FAIL - %s: %d line(s), e.g. %s\n" % (
            name, len(reports), " | ".join(reports[:3])[:600]))
    else:
        passed += 1
        sys.stdout.write("ok - %s\n" % name)
    stack.cleanup()
    return passed, failed


def run_self(tests):
    """Modules that manage their own stacks, one after the other."""
    passed = failed = 0
    for m in SELF_MODULES:
        mine = [t for t in tests if t[0] == m]
        if not mine:
            continue
        mod = sys.modules[m]
        try:
            p, f = harness.run_tests(mine, None)
        finally:
            checks = mod.teardown()
        passed, failed = passed + p, failed + f
        for name, reports in checks:
            if reports:
                failed += 1
                sys.stdout.write("FAIL - %s: %d line(s), e.g. %s\n" % (
                    name, len(reports), " | ".join(reports[:3])[:600]))
            else:
                passed += 1
                sys.stdout.write("ok - %s\n" % name)
        sys.stdout.flush()
    return passed, failed


def main(argv):
    wanted, pattern = [], None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "-k" and args:
            pattern = args.pop(0)
        else:
            wanted.append(a[:-3] if a.endswith(".py") else os.path.basename(a))
    unknown = [w for w in wanted if w not in OFF_MODULES + JWT_MODULES + SELF_MODULES]
    if unknown:
        sys.stderr.write("unknown test modules: %s\n" % ", ".join(unknown))
        return 2
    pg_dir = None
    if harness.store_kind() == "pg" and not harness.pg_server():
        # a private PostgreSQL server for this run, stopped by PID at its end
        pg_dir = tempfile.mkdtemp(prefix="aichatd-it-pg-")
        url = subprocess.check_output([os.path.join(harness.REPO, "tests", "lib", "pg-instance"),
                                       "start", pg_dir, str(harness.free_port())]).decode().strip()
        os.environ["AICHATD_TEST_PG_SERVER"] = url.rsplit("/", 1)[0]
        sys.stdout.write("# store: PostgreSQL, a private server at %s\n" % url)
    try:
        return run_all(wanted, pattern)
    finally:
        if harness.store_kind() == "pg":
            harness.pg_drop_all()
        if pg_dir:
            subprocess.call([os.path.join(harness.REPO, "tests", "lib", "pg-instance"), "stop",
                             pg_dir])
            shutil.rmtree(pg_dir, ignore_errors=True)


def run_all(wanted, pattern):
    p1, f1 = run_group(select(OFF_MODULES, wanted, pattern), "off")
    secret = "it-secret-" + uuid.uuid4().hex
    p2, f2 = run_group(select(JWT_MODULES, wanted, pattern), "jwt", secret)
    p3, f3 = run_self(select(SELF_MODULES, wanted, pattern))
    passed, failed = p1 + p2 + p3, f1 + f2 + f3
    sys.stdout.write("%d passed, %d failed\n" % (passed, failed))
    sys.stdout.flush()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
