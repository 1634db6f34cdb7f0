/*
 * The PostgreSQL store's AI runs: dialect im's records, the open runs the daemon recovers,
 * a run's job (its model config read each time: PostgreSQL has no data_version to say it
 * is unchanged) and history, status and reset, the owners and leases of several daemons
 * on one database, a run's end in one transaction, and its result for sync waiters. Each
 * answers as src/lib/sqlite/run.c does.
 */
#include <string.h>
#include <stdio.h>
#include <libpq-fe.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* RUN_RUNNING (store.h) as the statements spell it: a literal, as in the SQLite store. */
#define PG_RUN_RUNNING "0"
_Static_assert(RUN_RUNNING == 0, "PG_RUN_RUNNING is RUN_RUNNING");

static void
fill_run(struct pool *p, const PGresult *res, int r, void *row)
{
	struct run *x = row;

	x->id = col_int(res, r, 0);
	x->record_id = col_text(p, res, r, 1);
	x->conv_id = col_text(p, res, r, 2);
	x->user_msg_id = col_text(p, res, r, 3);
	x->ai_msg_id = col_text(p, res, r, 4);
	x->status = (int)col_int(res, r, 5);
	x->duration_ms = col_null(res, r, 6) ? -1 : col_int(res, r, 6);
	x->error_message = col_text(p, res, r, 7);
	x->created_at = col_int(res, r, 8);
}

static const struct pg_sql sql_run_count = {
	P_RUN_COUNT, 1, "SELECT count(*) FROM runs WHERE conv_seq = $1"};
static const struct pg_sql sql_run_list = {
	P_RUN_LIST, 3, "SELECT r.id, r.record_id, c.id, um.msg_id, am.msg_id, r.status, "
		       "r.duration_ms, r.error_message, r.created_at FROM runs r "
		       "JOIN conversations c ON c.seq = r.conv_seq "
		       "JOIN messages um ON um.id = r.user_msg "
		       "LEFT JOIN messages am ON am.id = r.ai_msg "
		       "WHERE r.conv_seq = $1 ORDER BY r.id LIMIT $2 OFFSET $3"};

int
pg_run_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
	    struct run **rows, int *n, int64_t *total, char *err)
{
	struct pg_store *st = pg_of(sb);
	return conv_page(st, p, &sql_run_count, &sql_run_list, c, pg, sizeof(**rows), fill_run,
			 (void **)rows, n, total, err);
}

/* ---- for the push daemon and sync waiters ---- */

/* Ids from column 0 of res, in its order, into *ids (from p): at most limit. */
static int
read_ids(struct pool *p, const PGresult *res, int limit, int64_t **ids, int *n)
{
	int64_t *v = pool_alloc(p, sizeof(*v) * (size_t)(limit > 0 ? limit : 1));
	int i, rows = PQntuples(res);

	if (!v)
		return RC_NOMEM;
	for (i = 0; i < rows && i < limit; i++)
		v[i] = col_int(res, i, 0);
	*ids = v;
	*n = i;
	return RC_OK;
}

static const struct pg_sql sql_runs_open = {
	P_RUNS_OPEN, 2, "SELECT id FROM runs WHERE status = " PG_RUN_RUNNING " AND id > $1 "
			"ORDER BY id LIMIT $2"};

int
pg_runs_open(struct store *sb, struct pool *p, int64_t after, int limit, int64_t **ids,
	     int *n, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_int(&a, after);
	arg_int(&a, limit > 0 ? limit : 0);
	if (!(res = pg_exec(st, &sql_runs_open, &a, "open runs", &rc, err)))
		return rc;
	rc = read_ids(p, res, limit, ids, n);
	PQclear(res);
	return rc;
}

static const struct pg_sql sql_run_job = {
	P_RUN_JOB, 2, "SELECT r.id, r.record_id, r.ai_msg, am.msg_id, um.msg_id, c.id, "
		      "um.user_id, um.content, r.created_at, mc.config_id, mc.provider, "
		      "mc.model_name, mc.model_version, mc.parameters, mc.system_prompt, "
		      "mc.updated_at, c.seq, um.id, (am.content <> '')::int FROM runs r "
		      "JOIN conversations c ON c.seq = r.conv_seq "
		      "JOIN messages um ON um.id = r.user_msg "
		      "JOIN messages am ON am.id = r.ai_msg "
		      "LEFT JOIN model_configs mc ON mc.config_id = "
		      "coalesce(r.model_config, c.model_config, $2::text) "
		      "WHERE r.id = $1 AND r.status = " PG_RUN_RUNNING};

int
pg_run_job(struct store *sb, struct pool *p, int64_t run_id, const char *default_cfg,
	   struct run_job *out, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_int(&a, run_id);
	arg_text(&a, default_cfg);
	if (!(res = pg_exec(st, &sql_run_job, &a, "load run", &rc, err)))
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return RC_NOTFOUND;
	}
	memset(out, 0, sizeof(*out));
	out->run_id = col_int(res, 0, 0);
	out->record_id = col_text(p, res, 0, 1);
	out->ai_msg = col_int(res, 0, 2);
	out->ai_msg_id = col_text(p, res, 0, 3);
	out->user_msg_id = col_text(p, res, 0, 4);
	out->conv_id = col_text(p, res, 0, 5);
	out->user_id = col_text(p, res, 0, 6);
	out->content = col_text(p, res, 0, 7);
	out->created_at = col_int(res, 0, 8);
	out->cfg.config_id = col_text(p, res, 0, 9);
	out->cfg.provider = col_text(p, res, 0, 10);
	out->cfg.model_name = col_text(p, res, 0, 11);
	out->cfg.model_version = col_text(p, res, 0, 12);
	out->cfg.parameters = col_text(p, res, 0, 13);
	out->cfg.system_prompt = col_text(p, res, 0, 14);
	out->cfg.updated_at = col_int(res, 0, 15);
	out->conv_seq = col_int(res, 0, 16);
	out->user_msg = col_int(res, 0, 17);
	out->restarted = (int)col_int(res, 0, 18);
	PQclear(res);
	if (!out->cfg.provider)
		store_job_default_cfg(p, default_cfg, &out->cfg);
	return RC_OK;
}

/* The job from what the post wrote; the model config read from the database every time
 * (a PUT on any host takes effect for the next run). */
int
pg_post_job(struct store *sb, struct pool *p, const struct store_post *in,
	    const struct store_posted *out, const char *default_cfg, struct run_job *job,
	    char *err)
{
	const char *cfg = store_job_from_post(in, out, default_cfg, job);
	int rc;

	rc = pg_mcfg_get(sb, p, cfg, &job->cfg, err);
	if (rc == RC_NOTFOUND) {
		store_job_default_cfg(p, default_cfg, &job->cfg);
		rc = RC_OK;
	}
	return rc;
}

static const struct pg_sql sql_run_history = {
	P_RUN_HISTORY, 3, "SELECT role, content FROM (SELECT id, role, content FROM messages "
			  "WHERE conv_seq = $1 AND is_deleted = 0 AND unfinished = 0 "
			  "AND id < $2 AND content <> '' ORDER BY id DESC LIMIT $3) h "
			  "ORDER BY id"};

int
pg_run_history(struct store *sb, struct pool *p, struct run_job *out, int window, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc, i, rows;

	out->nhistory = 0;
	if (window <= 0)
		return RC_OK;
	out->history = pool_alloc(p, sizeof(*out->history) * (size_t)window);
	if (!out->history)
		return RC_NOMEM;
	arg_int(&a, out->conv_seq);
	arg_int(&a, out->user_msg);
	arg_int(&a, window);
	if (!(res = pg_exec(st, &sql_run_history, &a, "load history", &rc, err)))
		return rc;
	rows = PQntuples(res);
	for (i = 0; i < rows && i < window; i++) {
		out->history[i].role = col_text(p, res, i, 0);
		out->history[i].content = col_text(p, res, i, 1);
	}
	PQclear(res);
	out->nhistory = i;
	return RC_OK;
}

static const struct pg_sql sql_run_status = {
	P_RUN_STATUS, 1, "SELECT status FROM runs WHERE id = $1"};

int
pg_run_status(struct store *sb, int64_t run_id, int *status, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	int64_t v;
	int rc;

	arg_int(&a, run_id);
	if ((rc = pg_int(st, &sql_run_status, &a, "run status", &v, err)) == RC_OK)
		*status = (int)v;
	return rc;
}

static const struct pg_sql sql_run_of_reply = {
	P_RUN_OF_REPLY, 1, "SELECT id, status FROM runs WHERE ai_msg = $1 ORDER BY id LIMIT 1"};

int
pg_run_of_reply(struct store *sb, int64_t ai_msg, int64_t *run_id, int *status, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_int(&a, ai_msg);
	if (!(res = pg_exec(st, &sql_run_of_reply, &a, "run of reply", &rc, err)))
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return RC_NOTFOUND;
	}
	*run_id = col_int(res, 0, 0);
	*status = (int)col_int(res, 0, 1);
	PQclear(res);
	return RC_OK;
}

static const struct pg_sql sql_run_reset = {
	P_RUN_RESET, 1, "UPDATE messages SET content = '' WHERE id = $1 AND unfinished = 1"};

int
pg_run_reset(struct store *sb, int64_t ai_msg, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};

	arg_int(&a, ai_msg);
	return db_write(st, &sql_run_reset, &a, "reset reply", NULL, err);
}

/* ---- owners and leases ---- */

/*
 * A claim takes the run when it is running and nobody's, already the claimer's, or its
 * lease ran out; a claimer that waits on another's row lock sees the row as the other
 * left it (PostgreSQL checks the conditions again), so two claims never both succeed.
 * When it takes nothing, the run's status, read by a statement of its own (so that it
 * sees what the claim waited for: another's claim, or the run's end), tells a run another
 * daemon holds (RC_CONFLICT) from one that is not running (RC_NOTFOUND).
 */
static const struct pg_sql sql_run_claim = {
	P_RUN_CLAIM, 4, "UPDATE runs SET owner = $2::text, lease_until = $3 WHERE id = $1 "
			"AND status = " PG_RUN_RUNNING " AND (owner IS NULL OR "
			"owner = $2::text OR lease_until < $4)"};

int
pg_run_claim(struct store *sb, int64_t run_id, const char *owner, int64_t lease_ms,
	     char *err)
{
	struct pg_store *st = pg_of(sb);
	int64_t now = time_now_ms(), changed = 0;
	struct pg_args a = {0};
	int rc, status;

	arg_int(&a, run_id);
	arg_text(&a, owner);
	arg_int(&a, now + lease_ms);
	arg_int(&a, now);
	if ((rc = db_write(st, &sql_run_claim, &a, "claim run", &changed, err)) != RC_OK)
		return rc;
	if (changed > 0)
		return RC_OK;
	if ((rc = pg_run_status(sb, run_id, &status, err)) != RC_OK)
		return rc;
	return status == RUN_RUNNING ? RC_CONFLICT : RC_NOTFOUND;
}

static const struct pg_sql sql_run_renew = {
	P_RUN_RENEW, 2, "UPDATE runs SET lease_until = $2 WHERE owner = $1::text "
			"AND status = " PG_RUN_RUNNING};

int
pg_runs_renew(struct store *sb, const char *owner, int64_t lease_ms, int64_t *held,
	      char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	int64_t changed = 0;
	int rc;

	arg_text(&a, owner);
	arg_int(&a, time_now_ms() + lease_ms);
	rc = db_write(st, &sql_run_renew, &a, "renew leases", &changed, err);
	if (rc == RC_OK && held)
		*held = changed;
	return rc;
}

/* The runs whose lease ran out, oldest first, each locked as it is picked (those another
 * daemon has locked are passed over), then given to the caller. A run nobody owns has no
 * lease (lease_until NULL): it is the open runs' (store_runs_open()), not an orphan. */
static const struct pg_sql sql_runs_orphaned = {
	P_RUNS_ORPHANED, 4, "WITH t AS (UPDATE runs SET owner = $1::text, lease_until = $2 "
			    "WHERE id IN (SELECT id FROM runs WHERE status = " PG_RUN_RUNNING
			    " AND lease_until < $3 ORDER BY id LIMIT $4 "
			    "FOR UPDATE SKIP LOCKED) RETURNING id) SELECT id FROM t ORDER BY id"};

int
pg_runs_orphaned(struct store *sb, struct pool *p, const char *owner, int64_t lease_ms,
		 int limit, int64_t **ids, int *n, char *err)
{
	struct pg_store *st = pg_of(sb);
	int64_t now = time_now_ms();
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_text(&a, owner);
	arg_int(&a, now + lease_ms);
	arg_int(&a, now);
	arg_int(&a, limit > 0 ? limit : 0);
	if (!(res = pg_exec(st, &sql_runs_orphaned, &a, "orphaned runs", &rc, err)))
		return rc;
	rc = read_ids(p, res, limit, ids, n);
	PQclear(res);
	return rc;
}

/* ---- the end of a run ---- */

/* $7: the owner the end is written for (NULL: whoever holds the run); the end releases
 * the run (no owner, no lease). */
static const struct pg_sql sql_run_end = {
	P_RUN_END, 7, "UPDATE runs SET status = $2, duration_ms = $3, error_code = $4, "
		      "error_message = $5::text, finished_at = $6, owner = NULL, "
		      "lease_until = NULL WHERE id = $1 AND status = " PG_RUN_RUNNING
		      " AND ($7::text IS NULL OR owner IS NULL OR owner = $7::text)"};
static const struct pg_sql sql_run_msg_end = {
	P_RUN_MSG_END, 5, "UPDATE messages SET content = $2::text, updated_at = $3, "
			  "unfinished = 0, error = $4::text, metadata = $5::text "
			  "WHERE id = $1 AND unfinished = 1 RETURNING conv_seq, is_deleted"};
static const struct pg_sql sql_plan_insert = {
	P_PLAN_INSERT, 4, "INSERT INTO travel_plans (conv_seq, message, plan, created_at) "
			  "VALUES ($1, $2, $3::text, $4)"};

/* The reply message's end and what follows from it, inside run_finish()'s transaction. */
static int
finish_reply(struct pg_store *st, const struct run_end *e, int64_t now, char *err)
{
	struct pg_args a = {0};
	PGresult *res;
	int64_t conv_seq;
	int rc, deleted;

	arg_int(&a, e->ai_msg);
	arg_textn(&a, e->content ? e->content : "", e->content ? e->len : 0);
	arg_int(&a, now);
	arg_text(&a, e->error);
	arg_text(&a, e->metadata);
	if (!(res = pg_exec(st, &sql_run_msg_end, &a, "finish reply", &rc, err)))
		return rc;
	if (PQntuples(res) == 0) {
		/* the reply ended already (or is gone): the run's end stands alone */
		PQclear(res);
		return RC_OK;
	}
	conv_seq = col_int(res, 0, 0);
	deleted = (int)col_int(res, 0, 1);
	PQclear(res);
	/* the reply is now a visible message of its conversation */
	if (!deleted && (rc = post_touch(st, conv_seq, now, 1, err)) != RC_OK)
		return rc;
	if (!e->travel_plan)
		return RC_OK;
	memset(&a, 0, sizeof(a));
	arg_int(&a, conv_seq);
	arg_int(&a, e->ai_msg);
	arg_text(&a, e->travel_plan);
	arg_int(&a, now);
	return pg_do(st, &sql_plan_insert, &a, "save travel plan", NULL, err);
}

int
pg_run_finish(struct store *sb, const struct run_end *e, char *err)
{
	struct pg_store *st = pg_of(sb);
	int64_t now = time_now_ms(), changed = 0;
	struct pg_args a = {0};
	int rc;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	arg_int(&a, e->run_id);
	arg_int(&a, e->status);
	arg_int(&a, e->duration_ms);
	if (e->error) {
		arg_int(&a, e->error_code);
		arg_text(&a, e->error);
	} else {
		arg_null(&a);
		arg_null(&a);
	}
	arg_int(&a, now);
	arg_text(&a, e->owner);
	if ((rc = pg_do(st, &sql_run_end, &a, "finish run", &changed, err)) != RC_OK)
		goto fail;
	if (!changed) {
		/* ended already, or another daemon's now: nothing was written, and a batch
		 * around this goes on */
		if (!st->nested)
			db_rollback(st);
		return RC_NOTFOUND;
	}
	if ((rc = finish_reply(st, e, now, err)) != RC_OK)
		goto fail;
	if ((rc = db_commit(st, err)) != RC_OK)
		goto fail;
	return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

/* the reply's PG_MSG_COLS first, as msg_row() reads them; then the run and the rest (a
 * message has at most one travel plan: the first is the one SQLite's subquery reads) */
static const struct pg_sql sql_run_result = {
	P_RUN_RESULT, 1, "SELECT " PG_MSG_COLS ", r.status, r.error_code, r.error_message, "
			 "tp.id, tp.plan, um.msg_id, um.created_at, c.user_id "
			 "FROM runs r JOIN messages m ON m.id = r.ai_msg "
			 "JOIN messages um ON um.id = r.user_msg "
			 "JOIN conversations c ON c.seq = r.conv_seq "
			 "LEFT JOIN LATERAL (SELECT id, plan FROM travel_plans "
			 "WHERE message = m.id ORDER BY id LIMIT 1) tp ON true WHERE r.id = $1"};

int
pg_run_result(struct store *sb, struct pool *p, int64_t run_id, struct run_result *out,
	      char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_int(&a, run_id);
	if (!(res = pg_exec(st, &sql_run_result, &a, "run result", &rc, err)))
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return RC_NOTFOUND;
	}
	msg_row(p, res, 0, 0, &out->reply);
	out->status = (int)col_int(res, 0, 12);
	out->error_code = (int)col_int(res, 0, 13);
	out->error = col_text(p, res, 0, 14);
	out->travel_plan_id = col_int(res, 0, 15);
	out->travel_plan = col_text(p, res, 0, 16);
	out->user_msg_id = col_text(p, res, 0, 17);
	out->user_msg_at = col_int(res, 0, 18);
	out->owner = col_text(p, res, 0, 19);
	PQclear(res);
	return RC_OK;
}
