/*
 * The PostgreSQL store answers as the SQLite store does: one scenario of conversations,
 * posts, batches, messages and pairs played on each, its answers written down as a
 * transcript (each call's rc and what it returned, but no ids or times, which differ by
 * nature), and the two transcripts must be the same. What depends on the millisecond a
 * call ran in (which of two conversations touched in one millisecond lists first) is left
 * out; t-pg.c checks the ties with times it sets.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "store.h"

struct transcript {
	char text[16384];
	size_t len;
};

static void
say(struct transcript *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->len >= sizeof(t->text) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t)n < sizeof(t->text) - t->len ? (size_t)n
							 : sizeof(t->text) - 1 - t->len;
}

static void
say_msgs(struct transcript *t, const char *what, int rc, const struct msg *ms, int n,
	 int64_t total)
{
	int i;

	say(t, "%s rc=%d n=%d total=%lld:", what, rc, rc == RC_OK ? n : 0,
	    rc == RC_OK ? (long long)total : 0LL);
	for (i = 0; rc == RC_OK && i < n; i++)
		say(t, " [%s %s %s u%d v%d e%s m%s]", ms[i].role, ms[i].user_id, ms[i].content,
		    ms[i].unfinished, ms[i].visible, ms[i].error ? ms[i].error : "-",
		    ms[i].metadata ? ms[i].metadata : "-");
	say(t, "\n");
}

static struct store_post
post(const char *id, const char *who, const char *content, int create, int run)
{
	struct store_post in;

	memset(&in, 0, sizeof(in));
	in.conv_id = id;
	in.create = create;
	in.conv_user = in.sender = in.owner = who;
	in.title = "t";
	in.role = "user";
	in.content = content;
	in.run = run;
	return in;
}

static void
say_post(struct transcript *t, struct store *st, struct pool *p, const struct store_post *in,
	 struct store_posted *out)
{
	char err[ERR_LEN];
	int rc = store_post(st, p, in, out, err);

	say(t, "post %s/%s rc=%d", in->conv_id ? in->conv_id : "(new)", in->content, rc);
	if (rc == RC_OK)
		say(t, " conv=%s count=%lld run=%d", in->conv_id ? out->conv.id : "(uuid)",
		    (long long)out->conv.msg_count, in->run ? out->run_id > 0 : -1);
	say(t, "\n");
}

/* The scenario, on st, written down into t. */
static void
play(struct store *st, struct transcript *t)
{
	char err[ERR_LEN];
	struct pool *p = pool_create();
	struct store_post in, ins[4];
	struct store_posted out, outs[4], q1;
	struct store_post_op ops[4];
	char errs[4][ERR_LEN];
	struct conv c, *cs;
	struct msg m, *ms;
	struct pair *ps;
	struct page pg = {0, 20};
	int64_t total;
	int n, i, rc;

	say(t, "create rc=%d\n", store_conv_create(st, p, "s1", "alice", "one", NULL, &c, err));
	say(t, "create again rc=%d\n",
	    store_conv_create(st, p, "s1", "bob", "one", NULL, &c, err));
	say(t, "taken rc=%d", store_conv_taken(st, "s1", err));
	say(t, " free rc=%d\n", store_conv_taken(st, "s9", err));
	say(t, "get bob rc=%d\n", store_conv_get(st, p, "s1", "bob", &c, err));
	say(t, "rename bob rc=%d", store_conv_rename(st, "s1", "bob", "x", err));
	say(t, " alice rc=%d\n", store_conv_rename(st, "s1", "alice", "uno", err));

	in = post("s1", "alice", "q1", 0, 1);
	say_post(t, st, p, &in, &q1);
	in = post("s1", "bob", "not mine", 1, 0);
	say_post(t, st, p, &in, &out);
	in = post("s2", "bob", "b1", 1, 0);
	say_post(t, st, p, &in, &out);
	in = post("s2", "bob", "b2 \xf0\x9f\x98", 0, 0); /* cut inside its last character */
	say_post(t, st, p, &in, &out);
	in = post(NULL, "carol", "c1", 0, 1);
	say_post(t, st, p, &in, &out);
	in = post("s3", "alice", "nowhere", 0, 0);
	say_post(t, st, p, &in, &out);
	in = post("s1", "alice", "a-says", 0, 0);
	in.role = "assistant";
	in.sender = "ai_bot";
	in.metadata = "{\"k\":1}";
	say_post(t, st, p, &in, &out);
	in = post("s1", "alice", "q2", 0, 0);
	say_post(t, st, p, &in, &out);

	/* a batch with a post the schema refuses and one not found */
	for (i = 0; i < 4; i++) {
		ins[i] = post(i == 3 ? "s2" : "s1", i == 3 ? "bob" : "alice", "batch", 0, i == 0);
		ops[i] = (struct store_post_op){i < 3 ? &ops[i + 1] : NULL, &ins[i], p, &outs[i],
						errs[i], RC_OK};
	}
	ins[1].role = "robot";
	ins[2].conv_id = "s9";
	store_post_batch(st, ops);
	for (i = 0; i < 4; i++)
		say(t, "batch %d rc=%d count=%lld\n", i, ops[i].rc,
		    ops[i].rc == RC_OK ? (long long)outs[i].conv.msg_count : -1LL);
	/* ... and inside a transaction, with touches put off */
	store_defer_touches(st);
	say(t, "begin rc=%d\n", store_begin(st, err));
	for (i = 0; i < 3; i++) {
		ins[i] = post(i == 1 ? "s2" : "s1", i == 1 ? "bob" : "alice", "in", 0, 0);
		ops[i] = (struct store_post_op){i < 2 ? &ops[i + 1] : NULL, &ins[i], p, &outs[i],
						errs[i], RC_OK};
	}
	ops[2].next = NULL;
	rc = store_post_batch_in(st, ops);
	say(t, "batch_in rc=%d", rc);
	for (i = 0; i < 3; i++)
		say(t, " %d/%lld", ops[i].rc, ops[i].rc == RC_OK ? (long long)outs[i].conv.msg_count
								 : -1LL);
	say(t, " commit rc=%d\n", store_commit(st, err));
	say(t, "begin rc=%d\n", store_begin(st, err));
	ins[1].role = "robot";
	rc = store_post_batch_in(st, ops);
	say(t, "batch_in rc=%d %d %d", rc, ops[0].rc, ops[1].rc);
	say(t, " commit rc=%d\n", store_commit(st, err));
	store_rollback(st);

	/* what each sees */
	rc = store_conv_get(st, p, "s1", "alice", &c, err);
	say(t, "s1 rc=%d count=%lld title=%s\n", rc, (long long)c.msg_count, c.title);
	rc = store_msg_list(st, p, &c, pg, 0, &ms, &n, &total, err);
	say_msgs(t, "list", rc, ms, n, total);
	rc = store_msg_list(st, p, &c, pg, 1, &ms, &n, &total, err);
	say_msgs(t, "list all", rc, ms, n, total);
	rc = store_msg_list(st, p, &c, (struct page){2, 3}, 0, &ms, &n, &total, err);
	say_msgs(t, "page", rc, ms, n, total);
	rc = store_msg_latest(st, p, &c, 4, &ms, &n, err);
	say_msgs(t, "latest", rc, ms, n, n);
	rc = store_pairs(st, p, &c, pg, &ps, &n, &total, err);
	say(t, "pairs rc=%d n=%d total=%lld:", rc, n, (long long)total);
	for (i = 0; rc == RC_OK && i < n; i++)
		say(t, " [%s %s -> %s]", ps[i].user_id, ps[i].user_message,
		    ps[i].ai_response ? ps[i].ai_response : "(none)");
	say(t, "\n");
	rc = store_conv_get(st, p, "s2", NULL, &c, err);
	say(t, "s2 rc=%d count=%lld\n", rc, (long long)c.msg_count);
	rc = store_msg_list(st, p, &c, pg, 1, &ms, &n, &total, err);
	say_msgs(t, "s2 list", rc, ms, n, total);

	/* a message by id, as its owner and as another */
	say(t, "msg alice rc=%d", store_msg_get(st, p, q1.msg.id, "alice", &m, err));
	say(t, " bob rc=%d", store_msg_get(st, p, q1.msg.id, "bob", &m, err));
	say(t, " byid rc=%d\n", store_msg_get_by_msgid(st, p, q1.reply.msg_id, NULL, &m, err));
	say(t, "reply unfinished=%d content=[%s]\n", m.unfinished, m.content);
	/* edit and delete */
	say(t, "edit rc=%d\n", store_msg_edit(st, q1.msg.id, "q1!", err));
	say(t, "delete reply rc=%d", store_msg_delete(st, q1.reply.id, err));
	say(t, " user rc=%d", store_msg_delete(st, q1.msg.id, err));
	say(t, " again rc=%d", store_msg_delete(st, q1.msg.id, err));
	say(t, " edit rc=%d\n", store_msg_edit(st, q1.msg.id, "x", err));
	rc = store_conv_get(st, p, "s1", NULL, &c, err);
	say(t, "s1 count=%lld\n", (long long)c.msg_count);
	rc = store_msg_list(st, p, &c, pg, 1, &ms, &n, &total, err);
	say_msgs(t, "after", rc, ms, n, total);

	/* delete a conversation: gone, its id still taken */
	say(t, "conv delete bob rc=%d", store_conv_delete(st, "s1", "bob", err));
	say(t, " alice rc=%d", store_conv_delete(st, "s1", "alice", err));
	say(t, " again rc=%d\n", store_conv_delete(st, "s1", "alice", err));
	in = post("s1", "alice", "back?", 1, 0);
	say_post(t, st, p, &in, &out);
	say(t, "taken rc=%d\n", store_conv_taken(st, "s1", err));
	rc = store_conv_list(st, p, NULL, pg, &cs, &n, &total, err);
	say(t, "list rc=%d n=%d total=%lld", rc, n, (long long)total);
	rc = store_conv_list(st, p, "bob", (struct page){0, 1}, &cs, &n, &total, err);
	say(t, " bob rc=%d n=%d total=%lld %s\n", rc, n, (long long)total, n ? cs[0].id : "-");
	pool_destroy(p);
}

void
t_pg_same(void)
{
	char path[96] = "/tmp/aichatd-unit-same-XXXXXX", db[112], url[320], err[ERR_LEN];
	static struct transcript sq, pq;
	struct store *st;
	int i, fd = mkstemp(path);

	if (fd >= 0)
		close(fd);
	snprintf(db, sizeof(db), "%s.db", path);
	st = store_open(db, err);
	CHECK(st != NULL);
	if (st) {
		CHECK(store_migrate(st, err) == RC_OK);
		play(st, &sq);
		store_close(st);
	}
	CHECK(unit_pg_fresh("aichatd_unit_same", url, sizeof(url)) == RC_OK);
	st = store_open(url, err);
	CHECK(st != NULL);
	if (st) {
		CHECK(store_migrate(st, err) == RC_OK);
		play(st, &pq);
		store_close(st);
	}
	CHECK(sq.len > 1000 && sq.len < sizeof(sq.text) - 1);
	CHECK_STR(pq.text, sq.text);
	if (strcmp(pq.text, sq.text) != 0)
		fprintf(stderr, "  t-pg-same: SQLite's transcript:\n%s  PostgreSQL's:\n%s", sq.text,
			pq.text);
	unlink(path);
	for (i = 0; i < 3; i++) {
		snprintf(db, sizeof(db), "%s.db%s", path, (const char *[]){"", "-wal", "-shm"}[i]);
		unlink(db);
	}
}
