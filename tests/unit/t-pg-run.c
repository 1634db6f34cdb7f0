/*
 * The PostgreSQL store's runs, model configs, log and administration (src/lib/pg/run.c,
 * mcfg.c, admin.c) against a real server. One scenario is played on a SQLite store and on
 * a PostgreSQL one: each checks what store.h promises, and the two transcripts (every rc,
 * count, order and field that is not a random id or a clock time) must be the same. Then
 * what only several daemons on one PostgreSQL have: owners and leases (claim, renew, a
 * lease run out, orphans taken with FOR UPDATE SKIP LOCKED by two connections at once, an
 * end written only by the run's holder, two daemons claiming the same runs at once), a
 * restarted reply's reset, and backup refused.
 *
 * The server is unit_pg_url()'s (t-pg.c); the database is made afresh (unit_pg_fresh()).
 */
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <pthread.h>
#include <libpq-fe.h>

#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "pg/db.h"

/* ---- the transcript of a scenario ---- */

struct tr {
	char text[32768];
	size_t len;
};

static void __attribute__((format(printf, 2, 3)))
tr_add(struct tr *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t->text + t->len, sizeof(t->text) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof(t->text) - t->len)
		t->len += (size_t)n;
	if (t->len < sizeof(t->text) - 1)
		t->text[t->len++] = '\n';
	t->text[t->len] = '\0';
}

/* ---- building what the store takes ---- */

static struct mcfg
mcfg_of(const char *id, const char *provider, const char *model)
{
	struct mcfg m;

	memset(&m, 0, sizeof(m));
	m.config_id = (char *)id;
	m.provider = (char *)provider;
	m.model_name = (char *)model;
	m.model_version = (char *)"";
	m.parameters = (char *)"{}";
	m.system_prompt = (char *)"";
	return m;
}

static struct store_post
post_of(const char *conv, const char *user, const char *content, int run)
{
	struct store_post in;

	memset(&in, 0, sizeof(in));
	in.conv_id = conv;
	in.create = 1;
	in.conv_user = in.sender = user;
	in.title = conv;
	in.role = "user";
	in.content = content;
	in.run = run;
	return in;
}

static struct run_end
end_of(const struct store_posted *o, int status, const char *content)
{
	struct run_end e;

	memset(&e, 0, sizeof(e));
	e.run_id = o->run_id;
	e.ai_msg = o->reply.id;
	e.status = status;
	e.content = content;
	e.len = strlen(content);
	e.duration_ms = 7;
	return e;
}

static void
users_line(void *arg, const struct store_user *u)
{
	tr_add(arg, "user %s convs %lld msgs %lld active %d", u->user_id,
	       (long long)u->conversations, (long long)u->messages, u->last_activity > 0);
}

/* ---- the scenario both stores play ---- */

/* Model configs: ensured once (a taken id keeps its row, a row a constraint refuses is
 * passed over as SQLite's INSERT OR IGNORE does), listed in byte order, read, updated. */
static void
sc_mcfg(struct store *st, struct pool *p, struct tr *t)
{
	char err[ERR_LEN];
	struct mcfg m, *ms;
	int64_t at = 0;
	int rc, n, i;

	m = mcfg_of("builtin", "builtin", "builtin");
	CHECK(store_mcfg_ensure(st, &m, err) == RC_OK);
	m = mcfg_of("n8n", "n8n", "n8n-workflow");
	CHECK(store_mcfg_ensure(st, &m, err) == RC_OK);
	m = mcfg_of("Zeta", "openai", "gpt-a");
	CHECK(store_mcfg_ensure(st, &m, err) == RC_OK);
	m = mcfg_of("Zeta", "openai", "gpt-b"); /* taken: the first stays */
	CHECK(store_mcfg_ensure(st, &m, err) == RC_OK);
	m = mcfg_of("\xc3\xa9t\xc3\xa9", "openai", "gpt-c");
	CHECK(store_mcfg_ensure(st, &m, err) == RC_OK);
	m = mcfg_of("bad", "nope", "x");
	rc = store_mcfg_ensure(st, &m, err);
	tr_add(t, "ensure bad provider rc %d", rc);
	CHECK(rc == RC_OK);
	CHECK(store_mcfg_list(st, p, &ms, &n, err) == RC_OK && n == 4);
	for (i = 0; i < n; i++)
		tr_add(t, "mcfg %s %s %s %s %s", ms[i].config_id, ms[i].provider,
		       ms[i].model_name, ms[i].parameters, ms[i].model_version);
	/* byte order: upper case before lower, UTF-8 after ASCII */
	CHECK(n == 4 && strcmp(ms[0].config_id, "Zeta") == 0 &&
	      strcmp(ms[3].config_id, "\xc3\xa9t\xc3\xa9") == 0);
	CHECK(n == 4 && strcmp(ms[0].model_name, "gpt-a") == 0);
	CHECK(store_mcfg_get(st, p, "missing", &m, err) == RC_NOTFOUND);
	memset(&m, 0, sizeof(m));
	m.config_id = (char *)"Zeta";
	m.model_name = (char *)"gpt-d";
	CHECK(store_mcfg_update(st, &m, &at, err) == RC_OK && at > 0);
	CHECK(store_mcfg_get(st, p, "Zeta", &m, err) == RC_OK);
	CHECK(m.updated_at == at && strcmp(m.model_name, "gpt-d") == 0 &&
	      strcmp(m.provider, "openai") == 0 && strcmp(m.parameters, "{}") == 0);
	tr_add(t, "updated %s %s %s", m.config_id, m.provider, m.model_name);
	m.config_id = (char *)"missing";
	CHECK(store_mcfg_update(st, &m, &at, err) == RC_NOTFOUND);
}

/* A job's fields that do not depend on random ids or the clock. */
static void
tr_job(struct tr *t, const char *what, const struct run_job *j)
{
	tr_add(t, "%s run %lld ai %lld user %lld seq %lld restarted %d from %s content %s "
	       "cfg %s %s %s %s %s", what, (long long)j->run_id, (long long)j->ai_msg,
	       (long long)j->user_msg, (long long)j->conv_seq, j->restarted, j->user_id,
	       j->content, j->cfg.config_id ? j->cfg.config_id : "-", j->cfg.provider,
	       j->cfg.model_name, j->cfg.model_version, j->cfg.parameters);
}

/* Runs: jobs (the config as the run, the conversation or the default names it), open
 * runs, history, status, the end in one transaction, the result, the record list. */
static void
sc_runs(struct store *st, struct store *st2, struct pool *p, struct tr *t,
	struct store_posted *o3)
{
	char err[ERR_LEN];
	struct store_post in;
	struct store_posted o1, o2;
	struct run_job j, pj;
	struct run_end e;
	struct run_result r;
	struct run *rs;
	struct conv c;
	struct mcfg m;
	struct page pg = {0, 10};
	int64_t *ids, id, total, at;
	int n, i, status;

	in = post_of("conv-a", "alice", "first question", 1);
	CHECK(store_post(st, p, &in, &o1, err) == RC_OK);
	CHECK(store_run_job(st, p, o1.run_id, "builtin", &j, err) == RC_OK);
	tr_job(t, "job1", &j);
	CHECK(store_post_job(st, p, &in, &o1, "builtin", &pj, err) == RC_OK);
	tr_job(t, "postjob1", &pj);
	CHECK(pj.run_id == j.run_id && pj.ai_msg == j.ai_msg && pj.conv_seq == j.conv_seq &&
	      pj.user_msg == j.user_msg && strcmp(pj.record_id, j.record_id) == 0 &&
	      strcmp(pj.cfg.model_name, j.cfg.model_name) == 0);
	CHECK(strncmp(j.record_id, "record_", 7) == 0 && strcmp(j.cfg.provider, "builtin") == 0);
	/* the run's own config, then one that is gone (the default's names) */
	in = post_of("conv-a", "alice", "second question", 1);
	in.run_config = "Zeta";
	CHECK(store_post(st, p, &in, &o2, err) == RC_OK);
	CHECK(store_run_job(st, p, o2.run_id, "builtin", &j, err) == RC_OK);
	tr_job(t, "job2", &j);
	CHECK(strcmp(j.cfg.model_name, "gpt-d") == 0);
	/* a config another connection changed is read the next time */
	memset(&m, 0, sizeof(m));
	m.config_id = (char *)"Zeta";
	m.model_name = (char *)"gpt-e";
	CHECK(store_mcfg_update(st2, &m, &at, err) == RC_OK);
	CHECK(store_post_job(st, p, &in, &o2, "builtin", &pj, err) == RC_OK);
	tr_job(t, "postjob2", &pj);
	CHECK(strcmp(pj.cfg.model_name, "gpt-e") == 0);
	in = post_of("conv-a", "alice", "third question", 1);
	in.run_config = "gone";
	CHECK(store_post(st, p, &in, o3, err) == RC_OK);
	CHECK(store_run_job(st, p, o3->run_id, "builtin", &j, err) == RC_OK);
	tr_job(t, "job3", &j);
	CHECK(store_post_job(st, p, &in, o3, "builtin", &pj, err) == RC_OK);
	tr_job(t, "postjob3", &pj);
	CHECK(strcmp(j.cfg.config_id, "builtin") == 0 && strcmp(pj.cfg.model_name, "builtin") == 0);

	/* open runs, oldest first, after an id, at most limit */
	CHECK(store_runs_open(st, p, 0, 10, &ids, &n, err) == RC_OK);
	CHECK(n == 3 && ids[0] < ids[1] && ids[1] < ids[2]);
	for (i = 0; i < n; i++)
		tr_add(t, "open %lld", (long long)ids[i]);
	CHECK(store_runs_open(st, p, o1.run_id, 1, &ids, &n, err) == RC_OK);
	CHECK(n == 1 && ids[0] == o2.run_id);
	CHECK(store_runs_open(st, p, 0, 0, &ids, &n, err) == RC_OK && n == 0);

	/* the first run ends, with a travel plan; ends once */
	e = end_of(&o1, RUN_DONE, "first answer");
	e.metadata = "{\"provider\":\"builtin\"}";
	e.travel_plan = "{\"days\":2}";
	CHECK(store_run_finish(st, &e, err) == RC_OK);
	CHECK(store_run_finish(st, &e, err) == RC_NOTFOUND);
	CHECK(store_run_job(st, p, o1.run_id, "builtin", &j, err) == RC_NOTFOUND);
	CHECK(store_run_result(st, p, o1.run_id, &r, err) == RC_OK);
	tr_add(t, "result1 status %d reply %lld %s unfinished %d meta %s plan %d %s owner %s",
	       r.status, (long long)r.reply.id, r.reply.content, r.reply.unfinished,
	       r.reply.metadata, r.travel_plan_id > 0, r.travel_plan, r.owner);
	CHECK(r.status == RUN_DONE && strcmp(r.reply.content, "first answer") == 0 &&
	      r.travel_plan_id > 0 && strcmp(r.travel_plan, "{\"days\":2}") == 0 &&
	      strcmp(r.user_msg_id, o1.msg.msg_id) == 0 && r.user_msg_at == o1.msg.created_at &&
	      r.error == NULL && r.error_code == 0 && strcmp(r.owner, "alice") == 0);
	CHECK(store_conv_get(st, p, "conv-a", NULL, &c, err) == RC_OK);
	tr_add(t, "conv-a count %lld", (long long)c.msg_count);
	CHECK(c.msg_count == 4); /* three questions and the first answer */

	/* history before the second question: finished, non-empty, oldest first */
	CHECK(store_run_job(st, p, o2.run_id, "builtin", &j, err) == RC_OK);
	CHECK(store_run_history(st, p, &j, 10, err) == RC_OK && j.nhistory == 2);
	for (i = 0; i < j.nhistory; i++)
		tr_add(t, "history %s %s", j.history[i].role, j.history[i].content);
	CHECK(store_run_history(st, p, &j, 1, err) == RC_OK && j.nhistory == 1 &&
	      strcmp(j.history[0].content, "first answer") == 0);
	CHECK(store_run_history(st, p, &j, 0, err) == RC_OK && j.nhistory == 0);

	/* the second fails, with ill-formed text in its error (mended, not refused) */
	e = end_of(&o2, RUN_FAILED, "part");
	e.error_code = RUN_ERR_AI;
	e.error = "boom \xff";
	CHECK(store_run_finish(st, &e, err) == RC_OK);
	CHECK(store_run_result(st, p, o2.run_id, &r, err) == RC_OK);
	tr_add(t, "result2 status %d code %d error %s content %s plan %lld", r.status,
	       r.error_code, r.error, r.reply.content, (long long)r.travel_plan_id);
	CHECK(r.status == RUN_FAILED && r.error_code == RUN_ERR_AI &&
	      strcmp(r.error, "boom \xef\xbf\xbd") == 0 && r.travel_plan == NULL);

	/* status, the run of a reply, a reset that finds nothing to forget */
	CHECK(store_run_status(st, o2.run_id, &status, err) == RC_OK && status == RUN_FAILED);
	CHECK(store_run_status(st, 999999, &status, err) == RC_NOTFOUND);
	CHECK(store_run_of_reply(st, o3->reply.id, &id, &status, err) == RC_OK &&
	      id == o3->run_id && status == RUN_RUNNING);
	CHECK(store_run_of_reply(st, 999999, &id, &status, err) == RC_NOTFOUND);
	CHECK(store_run_reset(st, o1.reply.id, err) == RC_OK);
	CHECK(store_run_result(st, p, o1.run_id, &r, err) == RC_OK &&
	      strcmp(r.reply.content, "first answer") == 0);

	/* the records, oldest first: a running one has no duration */
	CHECK(store_run_list(st, p, &c, pg, &rs, &n, &total, err) == RC_OK);
	CHECK(n == 3 && total == 3 && rs[2].duration_ms == -1 && rs[0].duration_ms == 7);
	for (i = 0; i < n; i++)
		tr_add(t, "record %lld status %d duration %lld error %s conv %s",
		       (long long)rs[i].id, rs[i].status, (long long)rs[i].duration_ms,
		       rs[i].error_message ? rs[i].error_message : "-", rs[i].conv_id);
	pg.offset = 2;
	CHECK(store_run_list(st, p, &c, pg, &rs, &n, &total, err) == RC_OK && n == 1 &&
	      total == 3 && rs[0].id == o3->run_id);

	/* claims as store.h says for every store: a running run is claimed, others are not */
	CHECK(store_run_claim(st, o3->run_id, "node-a", 60000, err) == RC_OK);
	CHECK(store_run_claim(st, o1.run_id, "node-a", 60000, err) == RC_NOTFOUND);
	CHECK(store_run_claim(st, 999999, "node-a", 60000, err) == RC_NOTFOUND);
	CHECK(store_runs_orphaned(st, p, "node-b", 60000, 10, &ids, &n, err) == RC_OK && n == 0);
}

/* The operation log: newest first (ties by id), filtered, paged, mended. */
static void
sc_log(struct store *st, struct pool *p, struct tr *t)
{
	char err[ERR_LEN];
	struct logent *ls;
	struct page pg = {0, 10};
	int64_t total;
	int n, i;

	CHECK(store_log(st, "info", "one") == RC_OK);
	CHECK(store_log(st, "warning", "two") == RC_OK);
	CHECK(store_log(st, "error", "three") == RC_OK);
	CHECK(store_log(st, "info", "bad \xc3") == RC_OK);
	CHECK(store_log(st, "loud", "refused by the schema") == RC_ERR);
	CHECK(store_log_list(st, p, NULL, -1, -1, pg, &ls, &n, &total, err) == RC_OK);
	CHECK(n == 4 && total == 4);
	for (i = 0; i < n; i++)
		tr_add(t, "log %lld %s %s", (long long)ls[i].id, ls[i].level, ls[i].message);
	CHECK(n == 4 && strcmp(ls[0].message, "bad \xef\xbf\xbd") == 0 &&
	      strcmp(ls[3].message, "one") == 0);
	CHECK(store_log_list(st, p, "info", -1, -1, pg, &ls, &n, &total, err) == RC_OK);
	CHECK(n == 2 && total == 2);
	pg.offset = 1;
	pg.limit = 1;
	CHECK(store_log_list(st, p, NULL, -1, -1, pg, &ls, &n, &total, err) == RC_OK);
	CHECK(n == 1 && total == 4 && strcmp(ls[0].message, "three") == 0);
	pg.offset = 0;
	CHECK(store_log_list(st, p, NULL, time_now_ms() + 60000, -1, pg, &ls, &n, &total, err) ==
	      RC_OK && n == 0 && total == 0);
	CHECK(store_log_list(st, p, NULL, -1, 1000, pg, &ls, &n, &total, err) == RC_OK &&
	      n == 0 && total == 0);
}

/* Users, purge (a dry run first, never what a running run uses), chown. */
static void
sc_admin(struct store *st, struct pool *p, struct tr *t, const struct store_posted *o3)
{
	char err[ERR_LEN];
	struct store_post in;
	struct store_posted ob, oc;
	struct store_purged got, dry;
	struct run_end e;
	struct msg m;
	struct conv c;
	int64_t moved, before;
	int status;

	in = post_of("conv-b", "bob", "bob asks", 1);
	CHECK(store_post(st, p, &in, &ob, err) == RC_OK);
	e = end_of(&ob, RUN_DONE, "bob's answer");
	e.travel_plan = "{}";
	CHECK(store_run_finish(st, &e, err) == RC_OK);
	in = post_of("conv-c", "bob", "still running", 1);
	CHECK(store_post(st, p, &in, &oc, err) == RC_OK);
	CHECK(store_users(st, users_line, t, err) == RC_OK);

	CHECK(store_conv_delete(st, "conv-b", NULL, err) == RC_OK);
	CHECK(store_conv_delete(st, "conv-c", NULL, err) == RC_OK);
	CHECK(store_msg_delete(st, o3->msg.id, err) == RC_OK); /* its run is running: stays */
	before = time_now_ms() + 1000;
	CHECK(store_purge(st, before, 1, &dry, err) == RC_OK);
	CHECK(store_purge(st, before, 0, &got, err) == RC_OK);
	tr_add(t, "purge convs %lld msgs %lld runs %lld plans %lld", (long long)got.conversations,
	       (long long)got.messages, (long long)got.runs, (long long)got.travel_plans);
	CHECK(got.conversations == 1 && got.messages == 2 && got.runs == 1 &&
	      got.travel_plans == 1);
	CHECK(memcmp(&dry, &got, sizeof(got)) == 0);
	CHECK(store_purge(st, before, 0, &got, err) == RC_OK && got.conversations == 0 &&
	      got.messages == 0 && got.runs == 0 && got.travel_plans == 0);
	CHECK(store_run_status(st, oc.run_id, &status, err) == RC_OK && status == RUN_RUNNING);

	CHECK(store_chown(st, "conv-a", NULL, "carol", &moved, err) == RC_OK && moved == 1);
	CHECK(store_msg_get(st, p, o3->reply.id, NULL, &m, err) == RC_OK &&
	      strcmp(m.user_id, "ai_bot") == 0);
	CHECK(store_conv_get(st, p, "conv-a", "carol", &c, err) == RC_OK);
	CHECK(store_chown(st, "nowhere", NULL, "carol", &moved, err) == RC_NOTFOUND);
	CHECK(store_chown(st, NULL, "carol", "dave", &moved, err) == RC_OK && moved == 1);
	CHECK(store_chown(st, NULL, "carol", "erin", &moved, err) == RC_OK && moved == 0);
	CHECK(store_users(st, users_line, t, err) == RC_OK);
}

/* Play the scenario on target (a fresh database), into t. */
static void
scenario(const char *target, struct tr *t)
{
	char err[ERR_LEN];
	struct pool *p = pool_create();
	struct store *st = store_open(target, err), *st2 = store_open(target, err);
	struct store_posted o3;

	CHECK(p && st && st2);
	if (!p || !st || !st2)
		goto out;
	CHECK(store_migrate(st, err) == RC_OK);
	sc_mcfg(st, p, t);
	sc_runs(st, st2, p, t, &o3);
	sc_log(st, p, t);
	sc_admin(st, p, t, &o3);
out:
	store_close(st2);
	store_close(st);
	pool_destroy(p);
}

/* ---- what only PostgreSQL has: several daemons' owners and leases ---- */

/* The first column of the first row of sql, run on st's own connection (0 for NULL). */
static int64_t
q_int(struct store *st, const char *sql)
{
	PGresult *r = PQexec(pg_of(st)->conn, sql);
	int64_t v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		fprintf(stderr, "  t-pg-run: %s: %s", sql, PQerrorMessage(pg_of(st)->conn));
	PQclear(r);
	return v;
}

/* Whether run id is owner's (owner NULL: nobody's, with no lease), by its row. */
static int
owned_by(struct store *st, int64_t id, const char *owner)
{
	char sql[200];

	if (!owner) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM runs WHERE id = %lld AND "
			 "owner IS NULL AND lease_until IS NULL", (long long)id);
		return q_int(st, sql) == 1;
	}
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM runs WHERE id = %lld AND owner = '%s' "
		 "AND lease_until IS NOT NULL", (long long)id, owner);
	return q_int(st, sql) == 1;
}

static struct store_posted
post_owned(struct store *st, struct pool *p, const char *content, const char *owner,
	   int64_t lease_ms)
{
	char err[ERR_LEN];
	struct store_post in = post_of("conv-l", "lee", content, 1);
	struct store_posted o;

	in.run_owner = owner;
	in.lease_ms = lease_ms;
	memset(&o, 0, sizeof(o));
	CHECK(store_post(st, p, &in, &o, err) == RC_OK);
	return o;
}

/* A claim, a claim refused, renewals, a lease that runs out and is taken over, an end
 * refused to the run's former holder and released by its new one. */
static void
leases_claim(struct store *st, struct pool *p)
{
	char err[ERR_LEN];
	struct store_posted l1 = post_owned(st, p, "l1", NULL, 0);
	struct run_end e;
	int64_t held = -1;
	int status;

	CHECK(owned_by(st, l1.run_id, NULL));
	CHECK(store_run_claim(st, l1.run_id, "host-a", 60000, err) == RC_OK);
	CHECK(owned_by(st, l1.run_id, "host-a"));
	CHECK(store_run_claim(st, l1.run_id, "host-b", 60000, err) == RC_CONFLICT);
	CHECK(store_run_claim(st, l1.run_id, "host-a", 60000, err) == RC_OK);
	CHECK(store_runs_renew(st, "host-a", 60000, &held, err) == RC_OK && held == 1);
	CHECK(store_runs_renew(st, "host-z", 60000, &held, err) == RC_OK && held == 0);
	CHECK(store_runs_renew(st, "host-a", 60000, NULL, err) == RC_OK);
	/* host-a's lease ran out (a lease in the past, rather than a wait) */
	CHECK(store_run_claim(st, l1.run_id, "host-a", -60000, err) == RC_OK);
	CHECK(store_run_claim(st, l1.run_id, "host-b", 60000, err) == RC_OK);
	CHECK(owned_by(st, l1.run_id, "host-b"));
	CHECK(store_runs_renew(st, "host-a", 60000, &held, err) == RC_OK && held == 0);
	e = end_of(&l1, RUN_DONE, "from a");
	e.owner = "host-a";
	CHECK(store_run_finish(st, &e, err) == RC_NOTFOUND);
	CHECK(store_run_status(st, l1.run_id, &status, err) == RC_OK && status == RUN_RUNNING);
	e.owner = "host-b";
	e.content = "from b";
	e.len = strlen(e.content);
	CHECK(store_run_finish(st, &e, err) == RC_OK);
	CHECK(owned_by(st, l1.run_id, NULL));
	CHECK(store_run_claim(st, l1.run_id, "host-b", 60000, err) == RC_NOTFOUND);
	CHECK(store_runs_renew(st, "host-b", 60000, &held, err) == RC_OK && held == 0);
}

/* Orphans: runs whose lease ran out, taken oldest first; two daemons hunting at once
 * each take other runs, the second passing over those the first has locked (it does not
 * wait: a wait would hold this test up to the statement timeout and fail it). */
static void
leases_orphans(struct store *st, struct store *st2, struct pool *p)
{
	char err[ERR_LEN];
	struct store_posted l2 = post_owned(st, p, "l2", "host-a", -60000),
			    l3 = post_owned(st, p, "l3", "host-a", -60000),
			    l4 = post_owned(st, p, "l4", "host-a", 60000);
	struct run_end e;
	struct run_job j;
	int64_t *ids, held = -1;
	char sql[160];
	int n;

	CHECK(owned_by(st, l2.run_id, "host-a") && owned_by(st, l4.run_id, "host-a"));
	CHECK(store_run_claim(st, l4.run_id, "host-b", 60000, err) == RC_CONFLICT);
	CHECK(store_begin(st, err) == RC_OK);
	CHECK(store_runs_orphaned(st, p, "host-b", 60000, 1, &ids, &n, err) == RC_OK);
	CHECK(n == 1 && ids[0] == l2.run_id);
	CHECK(store_runs_orphaned(st2, p, "host-c", 60000, 10, &ids, &n, err) == RC_OK);
	CHECK(n == 1 && ids[0] == l3.run_id);
	CHECK(store_commit(st, err) == RC_OK);
	CHECK(owned_by(st, l2.run_id, "host-b") && owned_by(st, l3.run_id, "host-c") &&
	      owned_by(st, l4.run_id, "host-a"));
	CHECK(store_runs_orphaned(st2, p, "host-c", 60000, 10, &ids, &n, err) == RC_OK && n == 0);
	CHECK(store_runs_renew(st, "host-a", 60000, &held, err) == RC_OK && held == 1);
	CHECK(store_runs_renew(st, "host-b", 60000, &held, err) == RC_OK && held == 1);
	e = end_of(&l3, RUN_STOPPED, "l3 so far");
	e.owner = "host-b";
	CHECK(store_run_finish(st, &e, err) == RC_NOTFOUND);
	e.owner = "host-c";
	CHECK(store_run_finish(st, &e, err) == RC_OK && owned_by(st, l3.run_id, NULL));
	e = end_of(&l2, RUN_DONE, "l2");
	CHECK(store_run_finish(st, &e, err) == RC_OK); /* no owner named: whoever holds it */
	CHECK(owned_by(st, l2.run_id, NULL));

	/* an earlier attempt's partial reply, then forgotten */
	snprintf(sql, sizeof(sql), "WITH u AS (UPDATE messages SET content = 'half' WHERE id = "
		 "%lld RETURNING id) SELECT count(*) FROM u", (long long)l4.reply.id);
	CHECK(q_int(st, sql) == 1);
	CHECK(store_run_job(st, p, l4.run_id, "builtin", &j, err) == RC_OK && j.restarted == 1);
	CHECK(store_run_reset(st, l4.reply.id, err) == RC_OK);
	CHECK(store_run_job(st, p, l4.run_id, "builtin", &j, err) == RC_OK && j.restarted == 0);
}

/* Two daemons claim the same runs at the same moment, each on its own connection and
 * thread (one from the oldest, one from the newest, so that they meet): every run is
 * exactly one's. Then one claim waits on the row of another's claim not yet committed and
 * must see that claim once it is: refused, whichever of the two ran first; one that waits
 * on the run's end, that the run is not running. */
#define RACE_RUNS 24

struct racer {
	struct store *st;
	const char *owner;
	const int64_t *ids;
	int down;
	int rc[RACE_RUNS];
};

static void *
race_claims(void *arg)
{
	struct racer *r = arg;
	char err[ERR_LEN];
	int i, k;

	for (i = 0; i < RACE_RUNS; i++) {
		k = r->down ? RACE_RUNS - 1 - i : i;
		r->rc[k] = store_run_claim(r->st, r->ids[k], r->owner, 60000, err);
	}
	return NULL;
}

static void *
claim_waiting(void *arg)
{
	struct racer *r = arg;
	char err[ERR_LEN];

	r->rc[0] = store_run_claim(r->st, r->ids[0], r->owner, 60000, err);
	return NULL;
}

static void
leases_race(struct store *st, struct store *st2, struct pool *p)
{
	char err[ERR_LEN];
	struct racer a = {st, "host-x", NULL, 0, {0}}, b = {st2, "host-y", NULL, 1, {0}};
	int64_t ids[RACE_RUNS], one[1];
	struct store_posted o;
	struct run_end e;
	pthread_t ta, tb;
	int i, ok = 0, conflict = 0;

	for (i = 0; i < RACE_RUNS; i++) {
		o = post_owned(st, p, "race", NULL, 0);
		ids[i] = o.run_id;
	}
	a.ids = b.ids = ids;
	CHECK(pthread_create(&ta, NULL, race_claims, &a) == 0);
	CHECK(pthread_create(&tb, NULL, race_claims, &b) == 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	for (i = 0; i < RACE_RUNS; i++) {
		ok += (a.rc[i] == RC_OK) + (b.rc[i] == RC_OK);
		conflict += (a.rc[i] == RC_CONFLICT) + (b.rc[i] == RC_CONFLICT);
		CHECK(owned_by(st, ids[i], a.rc[i] == RC_OK ? "host-x" : "host-y"));
	}
	CHECK(ok == RACE_RUNS && conflict == RACE_RUNS);

	o = post_owned(st, p, "waits", NULL, 0);
	one[0] = o.run_id;
	b.ids = one;
	b.rc[0] = -1;
	CHECK(store_begin(st, err) == RC_OK);
	CHECK(store_run_claim(st, o.run_id, "host-x", 60000, err) == RC_OK);
	CHECK(pthread_create(&tb, NULL, claim_waiting, &b) == 0);
	CHECK(store_commit(st, err) == RC_OK);
	pthread_join(tb, NULL);
	CHECK(b.rc[0] == RC_CONFLICT && owned_by(st, o.run_id, "host-x"));

	/* ... and a claim that waits on the run's end: not running, once it is committed */
	o = post_owned(st, p, "ends", NULL, 0);
	one[0] = o.run_id;
	b.rc[0] = -1;
	e = end_of(&o, RUN_DONE, "ended");
	CHECK(store_begin(st, err) == RC_OK);
	CHECK(store_run_finish(st, &e, err) == RC_OK);
	CHECK(pthread_create(&tb, NULL, claim_waiting, &b) == 0);
	CHECK(store_commit(st, err) == RC_OK);
	pthread_join(tb, NULL);
	CHECK(b.rc[0] == RC_NOTFOUND && owned_by(st, o.run_id, NULL));
}

static void
leases(const char *url)
{
	char err[ERR_LEN], path[] = "/tmp/aichatd-unit-pgbackup-XXXXXX";
	struct pool *p = pool_create();
	struct store *st = store_open(url, err), *st2 = store_open(url, err);
	int64_t bytes = -1;
	int fd;

	CHECK(p && st && st2);
	if (!p || !st || !st2)
		goto out;
	leases_claim(st, p);
	leases_orphans(st, st2, p);
	leases_race(st, st2, p);
	/* a backup is pg_dump's: refused, nothing written */
	fd = mkstemp(path);
	close(fd);
	unlink(path);
	CHECK(store_backup(st, path, 0, &bytes, err) == RC_ERR && strstr(err, "pg_dump"));
	CHECK(access(path, F_OK) != 0);
out:
	store_close(st2);
	store_close(st);
	pool_destroy(p);
}

/* The first line where a and b differ, on stderr. */
static void
tr_diff(const struct tr *a, const struct tr *b)
{
	const char *x = a->text, *y = b->text;

	while (*x && *x == *y) {
		x++;
		y++;
	}
	while (x > a->text && x[-1] != '\n') {
		x--;
		y--;
	}
	fprintf(stderr, "  t-pg-run: the stores differ:\n    sqlite: %.*s\n    pg:     %.*s\n",
		(int)strcspn(x, "\n"), x, (int)strcspn(y, "\n"), y);
}

void
t_pg_run(void)
{
	static struct tr ts, tp;
	char dir[] = "/tmp/aichatd-unit-pgrun-XXXXXX", db[64], url[512];

	if (unit_pg_fresh("aichatd_unit_pg_run", url, sizeof(url)) != RC_OK) {
		CHECK(!"a PostgreSQL server for the tests");
		return;
	}
	CHECK(mkdtemp(dir) != NULL);
	snprintf(db, sizeof(db), "%s/store.db", dir);
	scenario(db, &ts);
	scenario(url, &tp);
	CHECK(ts.len > 0 && ts.len == tp.len && strcmp(ts.text, tp.text) == 0);
	if (strcmp(ts.text, tp.text) != 0)
		tr_diff(&ts, &tp);
	leases(url);
	snprintf(db, sizeof(db), "rm -rf '%s'", dir);
	CHECK(system(db) == 0);
}
