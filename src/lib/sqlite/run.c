/*
 * The SQLite store's AI runs: dialect im's records, the open runs the daemon recovers, a
 * run's job (with the writer's cache of the model config it names) and history, status
 * and reset, its end in one transaction, and its result for sync waiters.
 */
#include <string.h>
#include <sqlite3.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

static void
fill_run(struct pool *p, sqlite3_stmt *s, void *row)
{
	struct run *x = row;

	x->id = sqlite3_column_int64(s, 0);
	x->record_id = col_text(p, s, 1);
	x->conv_id = col_text(p, s, 2);
	x->user_msg_id = col_text(p, s, 3);
	x->ai_msg_id = col_text(p, s, 4);
	x->status = sqlite3_column_int(s, 5);
	x->duration_ms = sqlite3_column_type(s, 6) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 6);
	x->error_message = col_text(p, s, 7);
	x->created_at = sqlite3_column_int64(s, 8);
}

static const struct db_sql sql_run_count = {
	S_RUN_COUNT, "SELECT count(*) FROM runs WHERE conv_seq = ?1"};
static const struct db_sql sql_run_list = {
	S_RUN_LIST, "SELECT r.id, r.record_id, c.id, um.msg_id, am.msg_id, r.status, "
		    "r.duration_ms, r.error_message, r.created_at FROM runs r "
		    "JOIN conversations c ON c.seq = r.conv_seq "
		    "JOIN messages um ON um.id = r.user_msg "
		    "LEFT JOIN messages am ON am.id = r.ai_msg "
		    "WHERE r.conv_seq = ?1 ORDER BY r.id LIMIT ?2 OFFSET ?3"};

int
sq_run_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
	       struct run **rows, int *n, int64_t *total, char *err)
{
	struct sq_store *st = sq_of(sb);
	return conv_page(st, p, &sql_run_count, &sql_run_list, c, pg, sizeof(**rows), fill_run,
			 (void **)rows, n, total, err);
}

/* ---- for the push daemon and sync waiters ---- */

static const struct db_sql sql_runs_open = {
	S_RUNS_OPEN, "SELECT id FROM runs WHERE status = " SQL_RUN_RUNNING " AND id > ?1 "
		     "ORDER BY id LIMIT ?2"};

int
sq_runs_open(struct store *sb, struct pool *p, int64_t after, int limit, int64_t **ids,
		int *n, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_runs_open, err);
	int64_t *v = pool_alloc(p, sizeof(*v) * (size_t)(limit > 0 ? limit : 1));
	int r, i = 0;

	if (!s || !v)
		return s ? RC_NOMEM : RC_ERR;
	sqlite3_bind_int64(s, 1, after);
	sqlite3_bind_int(s, 2, limit);
	while (i < limit && (r = sqlite3_step(s)) == SQLITE_ROW)
		v[i++] = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (i < limit && r != SQLITE_DONE)
		return db_fail(st, err, "open runs");
	*ids = v;
	*n = i;
	return RC_OK;
}

static const struct db_sql sql_run_job = {
	S_RUN_JOB, "SELECT r.id, r.record_id, r.ai_msg, am.msg_id, um.msg_id, c.id, "
		   "um.user_id, um.content, r.created_at, mc.config_id, mc.provider, "
		   "mc.model_name, mc.model_version, mc.parameters, mc.system_prompt, "
		   "mc.updated_at, c.seq, um.id, am.content != '' FROM runs r "
		   "JOIN conversations c ON c.seq = r.conv_seq "
		   "JOIN messages um ON um.id = r.user_msg "
		   "JOIN messages am ON am.id = r.ai_msg "
		   "LEFT JOIN model_configs mc ON mc.config_id = "
		   "coalesce(r.model_config, c.model_config, ?2) "
		   "WHERE r.id = ?1 AND r.status = " SQL_RUN_RUNNING};

int
sq_run_job(struct store *sb, struct pool *p, int64_t run_id, const char *default_cfg,
	      struct run_job *out, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_run_job, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, run_id);
	bind_text(s, 2, default_cfg);
	if ((rc = db_row(st, s, "load run", err)) != RC_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	out->run_id = sqlite3_column_int64(s, 0);
	out->record_id = col_text(p, s, 1);
	out->ai_msg = sqlite3_column_int64(s, 2);
	out->ai_msg_id = col_text(p, s, 3);
	out->user_msg_id = col_text(p, s, 4);
	out->conv_id = col_text(p, s, 5);
	out->user_id = col_text(p, s, 6);
	out->content = col_text(p, s, 7);
	out->created_at = sqlite3_column_int64(s, 8);
	out->cfg.config_id = col_text(p, s, 9);
	out->cfg.provider = col_text(p, s, 10);
	out->cfg.model_name = col_text(p, s, 11);
	out->cfg.model_version = col_text(p, s, 12);
	out->cfg.parameters = col_text(p, s, 13);
	out->cfg.system_prompt = col_text(p, s, 14);
	out->cfg.updated_at = sqlite3_column_int64(s, 15);
	out->conv_seq = sqlite3_column_int64(s, 16);
	out->user_msg = sqlite3_column_int64(s, 17);
	out->restarted = sqlite3_column_int(s, 18);
	sqlite3_reset(s);
	if (!out->cfg.provider)
		store_job_default_cfg(p, default_cfg, &out->cfg);
	return RC_OK;
}

/* Copy a model config's strings into p. */
static int
mcfg_copy(struct pool *p, const struct mcfg *in, struct mcfg *out)
{
	out->config_id = pool_strdup(p, in->config_id);
	out->provider = pool_strdup(p, in->provider);
	out->model_name = pool_strdup(p, in->model_name);
	out->model_version = pool_strdup(p, in->model_version);
	out->parameters = pool_strdup(p, in->parameters);
	out->system_prompt = pool_strdup(p, in->system_prompt);
	out->updated_at = in->updated_at;
	return out->config_id && out->provider && out->model_name && out->model_version &&
			       out->parameters && out->system_prompt
		       ? RC_OK
		       : RC_NOMEM;
}

static const struct db_sql sql_data_version = {S_DATA_VERSION, "PRAGMA data_version"};

/*
 * Model config id, as store_mcfg_get() reads it, but taken from the one read last when
 * the database has not changed since: PRAGMA data_version moves with every commit of
 * another connection (a PUT from a worker, say), and this connection (the writer's, the
 * only caller) never writes model configs. Reading it for every send's job was a
 * twentieth of the writer's time.
 */
static int
mcfg_get_cached(struct sq_store *st, struct pool *p, const char *id, struct mcfg *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, &sql_data_version, err);
	int64_t version;
	int rc;

	if (!s || db_int(st, s, &version, err) != RC_OK)
		return sq_mcfg_get(&st->base, p, id, out, err);
	if (!st->mcfg_pool || version != st->mcfg_version ||
	    strcmp(st->mcfg.config_id, id) != 0) {
		if (st->mcfg_pool)
			pool_reset(st->mcfg_pool);
		else if (!(st->mcfg_pool = pool_create()))
			return sq_mcfg_get(&st->base, p, id, out, err);
		rc = sq_mcfg_get(&st->base, st->mcfg_pool, id, &st->mcfg, err);
		if (rc != RC_OK) {
			pool_destroy(st->mcfg_pool);
			st->mcfg_pool = NULL;
			return rc;
		}
		st->mcfg_version = version;
	}
	return mcfg_copy(p, &st->mcfg, out);
}

int
sq_post_job(struct store *sb, struct pool *p, const struct store_post *in,
	       const struct store_posted *out, const char *default_cfg, struct run_job *job,
	       char *err)
{
	struct sq_store *st = sq_of(sb);
	const char *cfg = store_job_from_post(in, out, default_cfg, job);
	int rc;

	rc = mcfg_get_cached(st, p, cfg, &job->cfg, err);
	if (rc == RC_NOTFOUND) {
		store_job_default_cfg(p, default_cfg, &job->cfg);
		rc = RC_OK;
	}
	return rc;
}

static const struct db_sql sql_run_history = {
	S_RUN_HISTORY, "SELECT role, content FROM (SELECT id, role, content FROM messages "
		       "WHERE conv_seq = ?1 AND is_deleted = 0 AND unfinished = 0 "
		       "AND id < ?2 AND content != '' ORDER BY id DESC LIMIT ?3) ORDER BY id"};

int
sq_run_history(struct store *sb, struct pool *p, struct run_job *out, int window, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s;
	int r = SQLITE_DONE, i = 0;

	out->nhistory = 0;
	if (window <= 0)
		return RC_OK;
	out->history = pool_alloc(p, sizeof(*out->history) * (size_t)window);
	s = db_stmt(st, &sql_run_history, err);
	if (!out->history || !s)
		return s ? RC_NOMEM : RC_ERR;
	sqlite3_bind_int64(s, 1, out->conv_seq);
	sqlite3_bind_int64(s, 2, out->user_msg);
	sqlite3_bind_int(s, 3, window);
	while (i < window && (r = sqlite3_step(s)) == SQLITE_ROW) {
		out->history[i].role = col_text(p, s, 0);
		out->history[i].content = col_text(p, s, 1);
		i++;
	}
	sqlite3_reset(s);
	if (i < window && r != SQLITE_DONE)
		return db_fail(st, err, "load history");
	out->nhistory = i;
	return RC_OK;
}

static const struct db_sql sql_run_status = {
	S_RUN_STATUS, "SELECT status FROM runs WHERE id = ?1"};

int
sq_run_status(struct store *sb, int64_t run_id, int *status, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_run_status, err);
	int64_t v;
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, run_id);
	if ((rc = db_int(st, s, &v, err)) == RC_OK)
		*status = (int)v;
	return rc;
}

/* One daemon per SQLite database (its data directory's push.lock): a running run is
 * always its to claim, its leases need no renewal, and no run is ever orphaned. */
int
sq_run_claim(struct store *sb, int64_t run_id, const char *owner, int64_t lease_ms,
	     char *err)
{
	int status = RUN_RUNNING, rc;

	(void)owner;
	(void)lease_ms;
	if ((rc = sq_run_status(sb, run_id, &status, err)) != RC_OK)
		return rc;
	return status == RUN_RUNNING ? RC_OK : RC_NOTFOUND;
}

int
sq_runs_renew(struct store *sb, const char *owner, int64_t lease_ms, int64_t *held,
	      char *err)
{
	(void)sb;
	(void)owner;
	(void)lease_ms;
	(void)err;
	if (held)
		*held = -1; /* not counted: nothing to renew */
	return RC_OK;
}

int
sq_runs_orphaned(struct store *sb, struct pool *p, const char *owner, int64_t lease_ms,
		 int limit, int64_t **ids, int *n, char *err)
{
	(void)sb;
	(void)p;
	(void)owner;
	(void)lease_ms;
	(void)limit;
	(void)err;
	*ids = NULL;
	*n = 0;
	return RC_OK;
}

static const struct db_sql sql_run_of_reply = {
	S_RUN_OF_REPLY, "SELECT id, status FROM runs WHERE ai_msg = ?1"};

int
sq_run_of_reply(struct store *sb, int64_t ai_msg, int64_t *run_id, int *status, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_run_of_reply, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, ai_msg);
	if ((rc = db_row(st, s, "step", err)) != RC_OK)
		return rc;
	*run_id = sqlite3_column_int64(s, 0);
	*status = sqlite3_column_int(s, 1);
	sqlite3_reset(s);
	return RC_OK;
}

static const struct db_sql sql_run_reset = {
	S_RUN_RESET, "UPDATE messages SET content = '' WHERE id = ?1 AND unfinished = 1"};

int
sq_run_reset(struct store *sb, int64_t ai_msg, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_run_reset, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, ai_msg);
	return db_write(st, s, err);
}

static const struct db_sql sql_run_end = {
	S_RUN_END, "UPDATE runs SET status = ?2, duration_ms = ?3, error_code = ?4, "
		   "error_message = ?5, finished_at = ?6 "
		   "WHERE id = ?1 AND status = " SQL_RUN_RUNNING};
static const struct db_sql sql_run_msg_end = {
	S_RUN_MSG_END, "UPDATE messages SET content = ?2, updated_at = ?3, unfinished = 0, "
		       "error = ?4, metadata = ?5 WHERE id = ?1 AND unfinished = 1 RETURNING "
		       "conv_seq, is_deleted"};
static const struct db_sql sql_plan_insert = {
	S_PLAN_INSERT, "INSERT INTO travel_plans (conv_seq, message, plan, created_at) "
		       "VALUES (?1, ?2, ?3, ?4)"};

int
sq_run_finish(struct store *sb, const struct run_end *e, char *err)
{
	struct sq_store *st = sq_of(sb);
	int64_t now = time_now_ms(), conv_seq;
	sqlite3_stmt *s;
	int rc, deleted;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	s = db_stmt(st, &sql_run_end, err);
	if (!s) {
		rc = RC_ERR;
		goto fail;
	}
	sqlite3_bind_int64(s, 1, e->run_id);
	sqlite3_bind_int(s, 2, e->status);
	sqlite3_bind_int64(s, 3, e->duration_ms);
	if (e->error) {
		sqlite3_bind_int(s, 4, e->error_code);
		bind_clean(s, 5, e->error);
	}
	sqlite3_bind_int64(s, 6, now);
	if ((rc = db_exec_stmt(st, s, err)) != RC_OK)
		goto fail;
	if (!sqlite3_changes(st->db)) {
		/* ended already: nothing was written, and a batch around this goes on */
		if (!st->nested)
			db_rollback(st);
		return RC_NOTFOUND;
	}
	s = db_stmt(st, &sql_run_msg_end, err);
	if (!s) {
		rc = RC_ERR;
		goto fail;
	}
	sqlite3_bind_int64(s, 1, e->ai_msg);
	sqlite3_bind_text(s, 2, e->content ? e->content : "", (int)e->len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	bind_clean(s, 4, e->error);
	bind_text(s, 5, e->metadata);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		conv_seq = sqlite3_column_int64(s, 0);
		deleted = sqlite3_column_int(s, 1);
		sqlite3_reset(s);
		/* the reply is now a visible message of its conversation */
		if (!deleted && (rc = post_touch(st, conv_seq, now, 1, err)) != RC_OK)
			goto fail;
		if (e->travel_plan) {
			s = db_stmt(st, &sql_plan_insert, err);
			if (!s) {
				rc = RC_ERR;
				goto fail;
			}
			sqlite3_bind_int64(s, 1, conv_seq);
			sqlite3_bind_int64(s, 2, e->ai_msg);
			bind_text(s, 3, e->travel_plan);
			sqlite3_bind_int64(s, 4, now);
			if ((rc = db_exec_stmt(st, s, err)) != RC_OK)
				goto fail;
		}
	} else {
		sqlite3_reset(s);
		if (rc != SQLITE_DONE) {
			rc = db_fail(st, err, "finish reply");
			goto fail;
		}
	}
	if ((rc = db_commit(st, err)) != RC_OK)
		goto fail;
	return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

/* the reply's MSG_COLS first, as msg_row() reads them; then the run and the rest */
static const struct db_sql sql_run_result = {
	S_RUN_RESULT, "SELECT " MSG_COLS ", r.status, r.error_code, r.error_message, "
		      "(SELECT tp.id FROM travel_plans tp WHERE tp.message = m.id), "
		      "(SELECT tp.plan FROM travel_plans tp WHERE tp.message = m.id), "
		      "um.msg_id, um.created_at, c.user_id "
		      "FROM runs r JOIN messages m ON m.id = r.ai_msg "
		      "JOIN messages um ON um.id = r.user_msg "
		      "JOIN conversations c ON c.seq = r.conv_seq WHERE r.id = ?1"};

int
sq_run_result(struct store *sb, struct pool *p, int64_t run_id, struct run_result *out,
		 char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_run_result, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, run_id);
	if ((rc = db_row(st, s, "step", err)) != RC_OK)
		return rc;
	msg_row(p, s, &out->reply);
	out->status = sqlite3_column_int(s, 12);
	out->error_code = sqlite3_column_int(s, 13);
	out->error = col_text(p, s, 14);
	out->travel_plan_id = sqlite3_column_int64(s, 15);
	out->travel_plan = col_text(p, s, 16);
	out->user_msg_id = col_text(p, s, 17);
	out->user_msg_at = sqlite3_column_int64(s, 18);
	out->owner = col_text(p, s, 19);
	sqlite3_reset(s);
	return RC_OK;
}
