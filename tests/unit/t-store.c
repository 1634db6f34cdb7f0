/* the SQLite store: migrations twice, posting, counts, soft delete, pairs, logs */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"

/* A run's end, done, with content (a string literal). */
static struct run_end
done_of(const struct store_posted *o, const char *content)
{
	struct run_end e;

	memset(&e, 0, sizeof(e));
	e.run_id = o->run_id;
	e.ai_msg = o->reply.id;
	e.status = RUN_DONE;
	e.content = content;
	e.len = strlen(content);
	return e;
}

void
t_store(void)
{
	char path[96] = "/tmp/aichatd-unit-XXXXXX", db[64], err[ERR_LEN];
	struct pool *p = pool_create();
	struct store *st;
	struct store_post in;
	struct store_posted out;
	struct conv c, *cs;
	struct msg m, *ms;
	struct pair *ps;
	struct logent *ls;
	struct page pg = {0, 10};
	int64_t total, v;
	int n, fd = mkstemp(path);

	close(fd);
	unlink(path);
	snprintf(db, sizeof(db), "%s.db", path);
	st = store_open(db, err);
	CHECK(st != NULL);
	if (!st)
		return;
	CHECK(store_migrate(st, err) == RC_OK);
	CHECK(store_migrate(st, err) == RC_OK); /* a second run applies nothing */
	CHECK(store_version(st, &v, err) == RC_OK && v >= 1);

	/* im's send to a client-named id creates the conversation */
	memset(&in, 0, sizeof(in));
	in.conv_id = "user_123";
	in.create = 1;
	in.conv_user = in.sender = "alice";
	in.title = "user_123";
	in.role = "user";
	in.content = "你好";
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	CHECK_STR(out.conv.id, "user_123");
	CHECK(strncmp(out.msg.msg_id, "msg_", 4) == 0 && out.msg.id > 0);
	in.role = "assistant";
	in.sender = "ai_bot";
	in.content = "hi";
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	in.role = "user";
	in.sender = "alice";
	in.content = "second";
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);

	/* ownership: bob sees nothing of alice's, and cannot post into it */
	CHECK(store_conv_get(st, p, "user_123", "bob", &c, err) == RC_NOTFOUND);
	in.owner = "bob";
	CHECK(store_post(st, p, &in, &out, err) == RC_NOTFOUND);
	in.owner = NULL;
	CHECK(store_conv_get(st, p, "user_123", "alice", &c, err) == RC_OK);
	CHECK(c.msg_count == 3);

	/* oldest first, true total, empty page past the end */
	CHECK(store_msg_list(st, p, &c, pg, 0, &ms, &n, &total, err) == RC_OK);
	CHECK(n == 3 && total == 3 && strcmp(ms[0].content, "你好") == 0 && ms[0].id < ms[2].id);
	pg.offset = 10;
	CHECK(store_msg_list(st, p, &c, pg, 0, &ms, &n, &total, err) == RC_OK && n == 0 && total == 3);
	pg.offset = 0;

	/* pairs: each user message with the reply after it */
	CHECK(store_pairs(st, p, &c, pg, &ps, &n, &total, err) == RC_OK);
	CHECK(n == 2 && total == 2);
	CHECK(n == 2 && strcmp(ps[0].ai_response, "hi") == 0 && ps[1].ai_response == NULL);

	/* soft delete of a message: invisible, counted out */
	CHECK(store_msg_get_by_msgid(st, p, out.msg.msg_id, NULL, &m, err) == RC_OK);
	CHECK(store_msg_delete(st, m.id, err) == RC_OK);
	CHECK(store_msg_delete(st, m.id, err) == RC_NOTFOUND);
	CHECK(store_msg_get(st, p, m.id, NULL, &m, err) == RC_NOTFOUND);
	CHECK(store_conv_get(st, p, "user_123", NULL, &c, err) == RC_OK && c.msg_count == 2);

	/* a placeholder reply for chax's chat, in a new UUID conversation */
	memset(&in, 0, sizeof(in));
	in.conv_user = in.sender = "carol";
	in.title = "t";
	in.role = "user";
	in.content = "q";
	in.run = 1;
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	CHECK(strlen(out.conv.id) == 36 && out.reply.unfinished == 1);
	CHECK(strcmp(out.reply.role, "assistant") == 0);

	/* a run's job, and its end */
	{
		struct run_job job;
		struct run_end e;
		struct run_result res;
		int status;

		struct run_job pj;

		CHECK(store_run_job(st, p, out.run_id, "builtin", &job, err) == RC_OK);
		CHECK(store_run_history(st, p, &job, 20, err) == RC_OK);
		/* the job made from the post is the job read back */
		CHECK(store_post_job(st, p, &in, &out, "builtin", &pj, err) == RC_OK);
		CHECK(pj.run_id == job.run_id && pj.ai_msg == job.ai_msg &&
		      pj.conv_seq == job.conv_seq && pj.user_msg == job.user_msg &&
		      pj.created_at == job.created_at && pj.restarted == job.restarted);
		CHECK(strcmp(pj.record_id, job.record_id) == 0 &&
		      strcmp(pj.ai_msg_id, job.ai_msg_id) == 0 &&
		      strcmp(pj.user_msg_id, job.user_msg_id) == 0 &&
		      strcmp(pj.conv_id, job.conv_id) == 0 && strcmp(pj.user_id, job.user_id) == 0 &&
		      strcmp(pj.content, job.content) == 0);
		CHECK(strcmp(pj.cfg.config_id, job.cfg.config_id) == 0 &&
		      strcmp(pj.cfg.provider, job.cfg.provider) == 0 &&
		      strcmp(pj.cfg.model_name, job.cfg.model_name) == 0 &&
		      strcmp(pj.cfg.parameters, job.cfg.parameters) == 0);
		/* the model config a job reads is the database's, as another connection changed it
		 * a moment before (the writer keeps the last one while nothing changed) */
		{
			struct store *st2 = store_open(db, err);
			char id[] = "unit_cfg", prov[] = "openai", a[] = "model-a", b2[] = "model-b",
			     none[] = "", obj[] = "{}";
			struct mcfg mc = {id, prov, a, none, obj, none, 0};
			struct store_post in2 = in;
			struct mcfg *mcs;
			int64_t at;
			int nmc;

			CHECK(st2 && store_mcfg_ensure(st2, &mc, err) == RC_OK);
			/* every config, listed by id */
			CHECK(store_mcfg_list(st, p, &mcs, &nmc, err) == RC_OK && nmc == 1 &&
			      strcmp(mcs[0].config_id, "unit_cfg") == 0 &&
			      strcmp(mcs[0].model_name, "model-a") == 0);
			in2.run_config = "unit_cfg";
			CHECK(store_post_job(st, p, &in2, &out, "builtin", &pj, err) == RC_OK &&
			      strcmp(pj.cfg.model_name, "model-a") == 0);
			CHECK(store_post_job(st, p, &in2, &out, "builtin", &pj, err) == RC_OK &&
			      strcmp(pj.cfg.model_name, "model-a") == 0 &&
			      strcmp(pj.cfg.provider, "openai") == 0);
			memset(&mc, 0, sizeof(mc));
			mc.config_id = id;
			mc.model_name = b2;
			CHECK(store_mcfg_update(st2, &mc, &at, err) == RC_OK);
			CHECK(store_post_job(st, p, &in2, &out, "builtin", &pj, err) == RC_OK &&
			      strcmp(pj.cfg.model_name, "model-b") == 0);
			/* and another config id is read, not the one kept */
			CHECK(store_post_job(st, p, &in, &out, "builtin", &pj, err) == RC_OK &&
			      strcmp(pj.cfg.provider, "builtin") == 0);
			store_close(st2);
		}
		CHECK(job.ai_msg == out.reply.id && strcmp(job.content, "q") == 0);
		CHECK(strcmp(job.cfg.provider, "builtin") == 0);
		/* a reply being written is the daemon's: the database has it empty until its end */
		CHECK(store_msg_get(st, p, out.reply.id, NULL, &m, err) == RC_OK);
		CHECK(m.unfinished == 1 && strcmp(m.content, "") == 0);
		memset(&e, 0, sizeof(e));
		e.run_id = out.run_id;
		e.ai_msg = out.reply.id;
		e.status = RUN_DONE;
		e.content = "你好, world!";
		e.len = strlen(e.content);
		e.duration_ms = 5;
		CHECK(store_run_finish(st, &e, err) == RC_OK);
		CHECK(store_run_finish(st, &e, err) == RC_NOTFOUND); /* ends once */
		CHECK(store_msg_get(st, p, out.reply.id, NULL, &m, err) == RC_OK);
		CHECK(m.unfinished == 0 && strcmp(m.content, "你好, world!") == 0);
		CHECK(store_run_status(st, out.run_id, &status, err) == RC_OK && status == RUN_DONE);
		CHECK(store_run_result(st, p, out.run_id, &res, err) == RC_OK);
		CHECK(res.status == RUN_DONE && strcmp(res.reply.content, "你好, world!") == 0);
		/* the reply as store_msg_get() reads it, and the run around it */
		CHECK(res.reply.id == m.id && strcmp(res.reply.msg_id, m.msg_id) == 0 &&
		      strcmp(res.reply.conv_id, out.conv.id) == 0 &&
		      strcmp(res.reply.user_id, "ai_bot") == 0 &&
		      strcmp(res.reply.role, "assistant") == 0 && res.reply.error == NULL &&
		      res.reply.unfinished == 0 && res.reply.visible == m.visible &&
		      res.reply.created_at == m.created_at && res.reply.updated_at == m.updated_at);
		CHECK(res.error_code == 0 && res.error == NULL && res.travel_plan_id == 0 &&
		      res.travel_plan == NULL && strcmp(res.user_msg_id, out.msg.msg_id) == 0 &&
		      res.user_msg_at == out.msg.created_at && strcmp(res.owner, "carol") == 0);
		CHECK(store_conv_get(st, p, out.conv.id, NULL, &c, err) == RC_OK && c.msg_count == 2);
	}

	/* lists: newest-updated first, per user */
	CHECK(store_conv_list(st, p, NULL, pg, &cs, &n, &total, err) == RC_OK);
	CHECK(n == 2 && total == 2 && strcmp(cs[0].user_id, "carol") == 0);
	CHECK(store_conv_list(st, p, "alice", pg, &cs, &n, &total, err) == RC_OK && total == 1);

	/* soft delete of a conversation: gone for everyone, the id stays taken */
	CHECK(store_conv_delete(st, "user_123", "bob", err) == RC_NOTFOUND);
	CHECK(store_conv_delete(st, "user_123", NULL, err) == RC_OK);
	CHECK(store_conv_get(st, p, "user_123", NULL, &c, err) == RC_NOTFOUND);
	CHECK(store_conv_taken(st, "user_123", err) == RC_OK);
	CHECK(store_conv_taken(st, "never", err) == RC_NOTFOUND);
	memset(&in, 0, sizeof(in));
	in.conv_id = "user_123";
	in.create = 1;
	in.conv_user = in.sender = "alice";
	in.title = "x";
	in.role = "user";
	in.content = "again";
	CHECK(store_post(st, p, &in, &out, err) == RC_NOTFOUND);

	/* the operation log, newest first, filtered by level */
	CHECK(store_log(st, "info", "one") == RC_OK);
	CHECK(store_log(st, "error", "two") == RC_OK);
	CHECK(store_log_list(st, p, "error", -1, -1, pg, &ls, &n, &total, err) == RC_OK);
	CHECK(n == 1 && strcmp(ls[0].message, "two") == 0);
	CHECK(store_log_list(st, p, NULL, -1, -1, pg, &ls, &n, &total, err) == RC_OK);
	CHECK(n == 2 && strcmp(ls[0].message, "two") == 0);

	/* a batch with the conversation touches put off (the daemon's writer): each post counts
	 * the ones before it, one that fails counts nothing, the commit applies the sum */
	{
		struct store_post a, b;
		struct store_posted o[4];
		struct store_post_op ops[4];
		char e[4][ERR_LEN];
		int i;

		store_defer_touches(st);
		memset(&a, 0, sizeof(a));
		a.conv_id = "batch_conv";
		a.create = 1;
		a.conv_user = a.sender = "dave";
		a.title = "b";
		a.role = "user";
		a.content = "x";
		a.run = 1;
		b = a;
		b.owner = "eve"; /* not hers: not found, nothing written */
		for (i = 0; i < 4; i++) {
			ops[i] = (struct store_post_op){i < 3 ? &ops[i + 1] : NULL, i == 2 ? &b : &a,
							p, &o[i], e[i], RC_ERR};
		}
		store_post_batch(st, &ops[0]);
		CHECK(ops[0].rc == RC_OK && ops[1].rc == RC_OK && ops[2].rc == RC_NOTFOUND &&
		      ops[3].rc == RC_OK);
		CHECK(o[0].conv.msg_count == 1 && o[1].conv.msg_count == 2 &&
		      o[3].conv.msg_count == 3);
		CHECK(store_conv_get(st, p, "batch_conv", NULL, &c, err) == RC_OK && c.msg_count == 3);
		/* and a reply's end, in a transaction of the store's own, counts too */
		{
			struct run_end e2 = done_of(&o[0], "done");

			CHECK(store_begin(st, err) == RC_OK);
			CHECK(store_run_finish(st, &e2, err) == RC_OK);
			CHECK(store_commit(st, err) == RC_OK);
		}
		CHECK(store_conv_get(st, p, "batch_conv", NULL, &c, err) == RC_OK && c.msg_count == 4);

		/* the writer's one transaction: a reply's end, then posts, one commit; the post
		 * counts the reply that ended before it */
		{
			struct run_end e3 = done_of(&o[1], "two");
			struct store_post bad;
			int status;

			ops[0] = (struct store_post_op){&ops[1], &a, p, &o[0], e[0], RC_ERR};
			ops[1] = (struct store_post_op){NULL, &b, p, &o[1], e[1], RC_ERR};
			CHECK(store_begin(st, err) == RC_OK);
			CHECK(store_run_finish(st, &e3, err) == RC_OK);
			CHECK(store_post_batch_in(st, &ops[0]) == RC_OK);
			CHECK(ops[0].rc == RC_OK && ops[1].rc == RC_NOTFOUND);
			CHECK(o[0].conv.msg_count == 6); /* 4, the reply, and itself */
			CHECK(store_commit(st, err) == RC_OK);
			CHECK(store_conv_get(st, p, "batch_conv", NULL, &c, err) == RC_OK &&
			      c.msg_count == 6);
			CHECK(store_run_status(st, e3.run_id, &status, err) == RC_OK &&
			      status == RUN_DONE);

			/* a post that fails for another reason undoes all of it, the end too, and the
			 * commit says so */
			e3 = done_of(&o[3], "four");
			bad = a;
			bad.role = "robot"; /* refused by the table's CHECK */
			ops[0] = (struct store_post_op){&ops[1], &a, p, &o[0], e[0], RC_ERR};
			ops[1] = (struct store_post_op){NULL, &bad, p, &o[1], e[1], RC_ERR};
			CHECK(store_begin(st, err) == RC_OK);
			CHECK(store_run_finish(st, &e3, err) == RC_OK);
			CHECK(store_post_batch_in(st, &ops[0]) == RC_CONFLICT);
			CHECK(store_commit(st, err) == RC_ERR);
			store_rollback(st);
			CHECK(store_conv_get(st, p, "batch_conv", NULL, &c, err) == RC_OK &&
			      c.msg_count == 6);
			CHECK(store_run_status(st, e3.run_id, &status, err) == RC_OK &&
			      status == RUN_RUNNING);
			/* and the writer's way out: the posts alone, each in a savepoint */
			store_post_batch(st, &ops[0]);
			CHECK(ops[0].rc == RC_OK && ops[1].rc != RC_OK && ops[1].rc != RC_NOTFOUND);
			CHECK(store_conv_get(st, p, "batch_conv", NULL, &c, err) == RC_OK &&
			      c.msg_count == 7);
		}
	}

	store_close(st);
	pool_destroy(p);
	unlink(db);
	snprintf(path, sizeof(path), "%s-wal", db);
	unlink(path);
	snprintf(path, sizeof(path), "%s-shm", db);
	unlink(path);

}
