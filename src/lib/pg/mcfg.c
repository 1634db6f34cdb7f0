/*
 * The PostgreSQL store's model configs (listed, read, inserted from the settings, updated
 * by v1's PUT) and the operation log (added to, pruned, listed), answering as
 * src/lib/sqlite/mcfg.c does.
 */
#include <libpq-fe.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* ---- model configs ---- */

#define MCFG_COLS                                                                             \
	"config_id, provider, model_name, model_version, parameters, system_prompt, updated_at"

static void
mcfg_row(struct pool *p, const PGresult *res, int r, struct mcfg *m)
{
	m->config_id = col_text(p, res, r, 0);
	m->provider = col_text(p, res, r, 1);
	m->model_name = col_text(p, res, r, 2);
	m->model_version = col_text(p, res, r, 3);
	m->parameters = col_text(p, res, r, 4);
	m->system_prompt = col_text(p, res, r, 5);
	m->updated_at = col_int(res, r, 6);
}

static void
fill_mcfg(struct pool *p, const PGresult *res, int r, void *row)
{
	mcfg_row(p, res, r, row);
}

static const struct pg_sql sql_mcfg_list = {
	P_MCFG_LIST, 0, "SELECT " MCFG_COLS " FROM model_configs ORDER BY config_id"};

/* Every config, uncapped (store.h): as many as the result holds. */
int
pg_mcfg_list(struct store *sb, struct pool *p, struct mcfg **rows, int *n, char *err)
{
	struct pg_store *st = pg_of(sb);
	PGresult *res;
	int rc;

	if (!(res = pg_exec(st, &sql_mcfg_list, NULL, "list model configs", &rc, err)))
		return rc;
	rc = read_rows(p, res, PQntuples(res), sizeof(**rows), fill_mcfg, (void **)rows, n);
	PQclear(res);
	return rc;
}

static const struct pg_sql sql_mcfg_get = {
	P_MCFG_GET, 1, "SELECT " MCFG_COLS " FROM model_configs WHERE config_id = $1::text"};

int
pg_mcfg_get(struct store *sb, struct pool *p, const char *id, struct mcfg *out, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_text(&a, id);
	if (!(res = pg_exec(st, &sql_mcfg_get, &a, "get model config", &rc, err)))
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return RC_NOTFOUND;
	}
	mcfg_row(p, res, 0, out);
	PQclear(res);
	return RC_OK;
}

static void
mcfg_args(struct pg_args *a, const struct mcfg *m, int64_t now)
{
	arg_text(a, m->config_id);
	arg_text(a, m->provider);
	arg_text(a, m->model_name);
	arg_text(a, m->model_version);
	arg_text(a, m->parameters);
	arg_text(a, m->system_prompt);
	arg_int(a, now);
}

/* SQLite's INSERT OR IGNORE skips a row that any constraint refuses, not only one whose id
 * is taken: so the row is offered only when it passes the table's NOT NULL and CHECK
 * constraints (schema/pg/001_init.sql), and a taken id is passed over. */
static const struct pg_sql sql_mcfg_ensure = {
	P_MCFG_ENSURE, 7, "INSERT INTO model_configs (" MCFG_COLS ") "
			  "SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, "
			  "$7::bigint WHERE $1::text IS NOT NULL "
			  "AND $2::text IN ('builtin', 'openai', 'n8n') AND $3::text IS NOT NULL "
			  "AND $4::text IS NOT NULL AND $5::text IS NOT NULL "
			  "AND $6::text IS NOT NULL ON CONFLICT (config_id) DO NOTHING"};

int
pg_mcfg_ensure(struct store *sb, const struct mcfg *m, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};

	mcfg_args(&a, m, time_now_ms());
	return db_write(st, &sql_mcfg_ensure, &a, "ensure model config", NULL, err);
}

static const struct pg_sql sql_mcfg_update = {
	P_MCFG_UPDATE, 7, "UPDATE model_configs SET provider = coalesce($2::text, provider), "
			  "model_name = coalesce($3::text, model_name), "
			  "model_version = coalesce($4::text, model_version), "
			  "parameters = coalesce($5::text, parameters), "
			  "system_prompt = coalesce($6::text, system_prompt), updated_at = $7 "
			  "WHERE config_id = $1::text"};

int
pg_mcfg_update(struct store *sb, const struct mcfg *m, int64_t *updated_at, char *err)
{
	struct pg_store *st = pg_of(sb);
	int64_t now = time_now_ms(), changed = 0;
	struct pg_args a = {0};
	int rc;

	mcfg_args(&a, m, now);
	if ((rc = db_write(st, &sql_mcfg_update, &a, "update model config", &changed, err)) !=
	    RC_OK)
		return rc;
	if (!changed)
		return RC_NOTFOUND;
	*updated_at = now;
	return RC_OK;
}

/* ---- the operation log ---- */

#define LOG_KEEP 100000

static const struct pg_sql sql_log_add = {
	P_LOG_ADD, 3, "INSERT INTO logs (level, message, created_at) "
		      "VALUES ($1::text, $2::text, $3) RETURNING id"};
static const struct pg_sql sql_log_prune = {P_LOG_PRUNE, 1, "DELETE FROM logs WHERE id <= $1"};

int
pg_log(struct store *sb, const char *level, const char *message)
{
	struct pg_store *st = pg_of(sb);
	char err[ERR_LEN];
	struct pg_args a = {0};
	int64_t id;

	arg_text(&a, level);
	arg_text(&a, message);
	arg_int(&a, time_now_ms());
	if (pg_int(st, &sql_log_add, &a, "log", &id, err) != RC_OK)
		return RC_ERR;
	/* keep the newest LOG_KEEP entries; pruning every 1000th insert keeps it cheap */
	if (id % 1000 == 0 && id > LOG_KEEP) {
		struct pg_args b = {0};

		arg_int(&b, id - LOG_KEEP);
		db_write(st, &sql_log_prune, &b, "prune log", NULL, err);
	}
	return RC_OK;
}

static void
fill_log(struct pool *p, const PGresult *res, int r, void *row)
{
	struct logent *x = row;

	x->id = col_int(res, r, 0);
	x->level = col_text(p, res, r, 1);
	x->message = col_text(p, res, r, 2);
	x->created_at = col_int(res, r, 3);
}

static const struct pg_sql sql_log_count = {
	P_LOG_COUNT, 3, "SELECT count(*) FROM logs WHERE ($1::text IS NULL OR level = $1::text) "
			"AND created_at >= $2 AND created_at <= $3"};
static const struct pg_sql sql_log_list = {
	P_LOG_LIST, 5, "SELECT id, level, message, created_at FROM logs WHERE "
		       "($1::text IS NULL OR level = $1::text) AND created_at >= $2 "
		       "AND created_at <= $3 ORDER BY created_at DESC, id DESC "
		       "LIMIT $4 OFFSET $5"};

int
pg_log_list(struct store *sb, struct pool *p, const char *level, int64_t from_ms,
	    int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total,
	    char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0}, b = {0};
	PGresult *res;
	int rc;

	if (from_ms < 0)
		from_ms = 0;
	if (to_ms < 0)
		to_ms = INT64_MAX;
	arg_text(&a, level);
	arg_int(&a, from_ms);
	arg_int(&a, to_ms);
	if ((rc = pg_int(st, &sql_log_count, &a, "count log", total, err)) != RC_OK)
		return rc;
	arg_text(&b, level);
	arg_int(&b, from_ms);
	arg_int(&b, to_ms);
	arg_int(&b, pg.limit);
	arg_int(&b, pg.offset);
	if (!(res = pg_exec(st, &sql_log_list, &b, "list log", &rc, err)))
		return rc;
	rc = read_rows(p, res, pg.limit, sizeof(**rows), fill_log, (void **)rows, n);
	PQclear(res);
	return rc;
}
