/* the store's administration: purge (soft-deleted rows and what hangs off them, never what
 * a running run uses, a dry run that changes nothing), chown, users, and the refusal of a
 * database newer than the program */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sqlite3.h>

#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "store.h"

struct seen {
	int n;
	int64_t convs, msgs;
};

static void
count_bob(void *arg, const struct store_user *u)
{
	struct seen *s = arg;

	s->n++;
	if (strcmp(u->user_id, "bob") == 0) {
		s->convs = u->conversations;
		s->msgs = u->messages;
	}
}

static int
post(struct store *st, struct pool *p, const char *conv, const char *role, int run,
     struct store_posted *out, char *err)
{
	struct store_post in;

	memset(&in, 0, sizeof(in));
	in.conv_id = conv;
	in.create = 1;
	in.conv_user = in.sender = "alice";
	in.title = "t";
	in.role = role;
	in.content = "x";
	in.run = run;
	return store_post(st, p, &in, out, err);
}

void
t_admin(void)
{
	char path[96] = "/tmp/aichatd-unit-adm-XXXXXX", db[128], err[ERR_LEN];
	struct pool *p = pool_create();
	struct store_posted run_post, out;
	struct store_purged got;
	struct store *st;
	struct conv c;
	struct seen seen = {0, 0, 0};
	int64_t latest = 0;
	struct run_end e;
	int64_t moved, from, to;
	int fd = mkstemp(path);

	close(fd);
	unlink(path);
	snprintf(db, sizeof(db), "%s.db", path);
	st = store_open(db, err);
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(store_migrate_report(st, &from, &to, err) == RC_OK);
	latest = store_schema_latest(st);
	CHECK(from == 0 && to == latest);
	/* A: a user message with its run still running; B: two messages, one deleted */
	CHECK(post(st, p, "conv-a", "user", 1, &run_post, err) == RC_OK);
	CHECK(post(st, p, "conv-b", "assistant", 0, &out, err) == RC_OK);
	CHECK(post(st, p, "conv-b", "assistant", 0, &out, err) == RC_OK);
	CHECK(store_msg_delete(st, out.msg.id, err) == RC_OK);
	CHECK(store_conv_delete(st, "conv-a", NULL, err) == RC_OK);
	/* before the deletions: nothing */
	CHECK(store_purge(st, 1000, 0, &got, err) == RC_OK);
	CHECK(got.conversations == 0 && got.messages == 0 && got.runs == 0);
	/* the running run keeps conv-a; B's deleted message goes (dry run first) */
	CHECK(store_purge(st, INT64_MAX, 1, &got, err) == RC_OK);
	CHECK(got.conversations == 0 && got.messages == 1 && got.runs == 0);
	CHECK(store_purge(st, INT64_MAX, 1, &got, err) == RC_OK && got.messages == 1);
	CHECK(store_purge(st, INT64_MAX, 0, &got, err) == RC_OK);
	CHECK(got.conversations == 0 && got.messages == 1 && got.runs == 0);
	CHECK(store_conv_get(st, p, "conv-b", NULL, &c, err) == RC_OK && c.msg_count == 1);
	/* once the run ends, conv-a goes with its two messages and its run */
	memset(&e, 0, sizeof(e));
	e.run_id = run_post.run_id;
	e.ai_msg = run_post.reply.id;
	e.status = RUN_DONE;
	e.content = "done";
	e.len = 4;
	CHECK(store_run_finish(st, &e, err) == RC_OK);
	CHECK(store_purge(st, INT64_MAX, 0, &got, err) == RC_OK);
	CHECK(got.conversations == 1 && got.messages == 2 && got.runs == 1);
	CHECK(store_conv_taken(st, "conv-a", err) == RC_NOTFOUND);
	CHECK(store_conv_get(st, p, "conv-b", NULL, &c, err) == RC_OK && c.msg_count == 1);

	/* chown: by id, then all of a user; users counts what is visible */
	CHECK(post(st, p, "conv-c", "user", 0, &out, err) == RC_OK);
	CHECK(store_chown(st, "conv-b", NULL, "bob", &moved, err) == RC_OK && moved == 1);
	CHECK(store_chown(st, "no-such", NULL, "bob", &moved, err) == RC_NOTFOUND);
	CHECK(store_chown(st, NULL, "alice", "bob", &moved, err) == RC_OK && moved == 1);
	CHECK(store_conv_get(st, p, "conv-c", "bob", &c, err) == RC_OK);
	CHECK(store_users(st, count_bob, &seen, err) == RC_OK);
	CHECK(seen.n == 1 && seen.convs == 2 && seen.msgs == 2);
	{
		struct msg *ms;
		struct page pg = {0, 10};
		int64_t total;
		int n;

		/* the user message alice sent is bob's now */
		CHECK(store_msg_list(st, p, &c, pg, 0, &ms, &n, &total, err) == RC_OK && n == 1);
		CHECK(n == 1 && strcmp(ms[0].user_id, "bob") == 0);
	}

	/* backup: a copy that opens, and an existing file kept without overwrite */
	{
		char copy[160];
		int64_t bytes = 0;
		struct store *cp;
		int64_t v = 0;

		snprintf(copy, sizeof(copy), "%s.copy", db);
		CHECK(store_backup(st, copy, 0, &bytes, err) == RC_OK && bytes > 0);
		CHECK(store_backup(st, copy, 0, &bytes, err) == RC_CONFLICT);
		CHECK(store_backup(st, copy, 1, &bytes, err) == RC_OK);
		cp = store_open(copy, err);
		CHECK(cp && store_version(cp, &v, err) == RC_OK && v == store_schema_latest(cp));
		store_close(cp);
		unlink(copy);
	}
	store_close(st);

	/* a database from a newer program is refused and left alone */
	{
		sqlite3 *raw;
		char q[128];

		CHECK(sqlite3_open(db, &raw) == SQLITE_OK);
		snprintf(q, sizeof(q), "INSERT INTO schema_migrations VALUES (%lld, 'x', 0)",
			 (long long)latest + 1);
		CHECK(sqlite3_exec(raw, q, NULL, NULL, NULL) == SQLITE_OK);
		sqlite3_close(raw);
		st = store_open(db, err);
		CHECK(st && store_migrate(st, err) == RC_CONFLICT && strstr(err, "newer"));
		store_close(st);
	}
	pool_destroy(p);
	unlink(db);
	{
		char side[160];

		snprintf(side, sizeof(side), "%s-wal", db);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", db);
		unlink(side);
	}
}
