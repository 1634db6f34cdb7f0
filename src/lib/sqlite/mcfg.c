/*
 * The SQLite store's model configs (listed, read, inserted from the settings, updated by
 * v1's PUT) and the operation log (added to, pruned, listed).
 */
#include <sqlite3.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* ---- model configs ---- */

#define MCFG_COLS                                                                             \
	"config_id, provider, model_name, model_version, parameters, system_prompt, updated_at"

static void
mcfg_row(struct pool *p, sqlite3_stmt *s, struct mcfg *m)
{
	m->config_id = col_text(p, s, 0);
	m->provider = col_text(p, s, 1);
	m->model_name = col_text(p, s, 2);
	m->model_version = col_text(p, s, 3);
	m->parameters = col_text(p, s, 4);
	m->system_prompt = col_text(p, s, 5);
	m->updated_at = sqlite3_column_int64(s, 6);
}

static void
fill_mcfg(struct pool *p, sqlite3_stmt *s, void *row)
{
	mcfg_row(p, s, row);
}

static const struct db_sql sql_mcfg_count = {S_MCFG_COUNT, "SELECT count(*) FROM model_configs"};
static const struct db_sql sql_mcfg_list = {
	S_MCFG_LIST, "SELECT " MCFG_COLS " FROM model_configs ORDER BY config_id"};

/* Every config, uncapped (store.h): the count first, so that read_rows() takes them all. */
int
sq_mcfg_list(struct store *sb, struct pool *p, struct mcfg **rows, int *n, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_mcfg_count, err);
	int64_t count;
	int rc;

	if (!s)
		return RC_ERR;
	if ((rc = db_int(st, s, &count, err)) != RC_OK)
		return rc;
	s = db_stmt(st, &sql_mcfg_list, err);
	if (!s)
		return RC_ERR;
	return read_rows(st, p, s, count, sizeof(**rows), fill_mcfg, (void **)rows, n, err);
}

static const struct db_sql sql_mcfg_get = {
	S_MCFG_GET, "SELECT " MCFG_COLS " FROM model_configs WHERE config_id = ?1"};

int
sq_mcfg_get(struct store *sb, struct pool *p, const char *id, struct mcfg *out, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_mcfg_get, err);
	int rc;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	if ((rc = db_row(st, s, "step", err)) != RC_OK)
		return rc;
	mcfg_row(p, s, out);
	sqlite3_reset(s);
	return RC_OK;
}

static void
mcfg_bind(sqlite3_stmt *s, const struct mcfg *m, int64_t now)
{
	bind_text(s, 1, m->config_id);
	bind_text(s, 2, m->provider);
	bind_text(s, 3, m->model_name);
	bind_text(s, 4, m->model_version);
	bind_text(s, 5, m->parameters);
	bind_text(s, 6, m->system_prompt);
	sqlite3_bind_int64(s, 7, now);
}

static const struct db_sql sql_mcfg_ensure = {
	S_MCFG_ENSURE, "INSERT OR IGNORE INTO model_configs (" MCFG_COLS ") "
		       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"};

int
sq_mcfg_ensure(struct store *sb, const struct mcfg *m, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_mcfg_ensure, err);

	if (!s)
		return RC_ERR;
	mcfg_bind(s, m, time_now_ms());
	return db_write(st, s, err);
}

static const struct db_sql sql_mcfg_update = {
	S_MCFG_UPDATE, "UPDATE model_configs SET provider = coalesce(?2, provider), "
		       "model_name = coalesce(?3, model_name), "
		       "model_version = coalesce(?4, model_version), "
		       "parameters = coalesce(?5, parameters), "
		       "system_prompt = coalesce(?6, system_prompt), updated_at = ?7 "
		       "WHERE config_id = ?1"};

int
sq_mcfg_update(struct store *sb, const struct mcfg *m, int64_t *updated_at, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_mcfg_update, err);
	int64_t now = time_now_ms();
	int rc;

	if (!s)
		return RC_ERR;
	mcfg_bind(s, m, now);
	if ((rc = db_write(st, s, err)) != RC_OK)
		return rc;
	if (!sqlite3_changes(st->db))
		return RC_NOTFOUND;
	*updated_at = now;
	return RC_OK;
}

/* ---- the operation log ---- */

#define LOG_KEEP 100000

static const struct db_sql sql_log_add = {
	S_LOG_ADD, "INSERT INTO logs (level, message, created_at) VALUES (?1, ?2, ?3)"};
static const struct db_sql sql_log_prune = {S_LOG_PRUNE, "DELETE FROM logs WHERE id <= ?1"};

int
sq_log(struct store *sb, const char *level, const char *message)
{
	struct sq_store *st = sq_of(sb);
	char err[ERR_LEN];
	sqlite3_stmt *s = db_stmt(st, &sql_log_add, err);
	int64_t id;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, level);
	bind_clean(s, 2, message);
	sqlite3_bind_int64(s, 3, time_now_ms());
	if (db_write(st, s, err) != RC_OK)
		return RC_ERR;
	/* keep the newest LOG_KEEP entries; pruning every 1000th insert keeps it cheap */
	id = sqlite3_last_insert_rowid(st->db);
	if (id % 1000 == 0 && id > LOG_KEEP) {
		s = db_stmt(st, &sql_log_prune, err);
		if (s) {
			sqlite3_bind_int64(s, 1, id - LOG_KEEP);
			db_write(st, s, err);
		}
	}
	return RC_OK;
}

static void
fill_log(struct pool *p, sqlite3_stmt *s, void *row)
{
	struct logent *x = row;

	x->id = sqlite3_column_int64(s, 0);
	x->level = col_text(p, s, 1);
	x->message = col_text(p, s, 2);
	x->created_at = sqlite3_column_int64(s, 3);
}

static const struct db_sql sql_log_count = {
	S_LOG_COUNT, "SELECT count(*) FROM logs WHERE (?1 IS NULL OR level = ?1) "
		     "AND created_at >= ?2 AND created_at <= ?3"};
static const struct db_sql sql_log_list = {
	S_LOG_LIST, "SELECT id, level, message, created_at FROM logs WHERE "
		    "(?1 IS NULL OR level = ?1) AND created_at >= ?2 AND created_at <= ?3 "
		    "ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5"};

int
sq_log_list(struct store *sb, struct pool *p, const char *level, int64_t from_ms,
	       int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total,
	       char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_log_count, err);
	int r;

	if (from_ms < 0)
		from_ms = 0;
	if (to_ms < 0)
		to_ms = INT64_MAX;
	if (!s)
		return RC_ERR;
	bind_text(s, 1, level);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	if ((r = db_int(st, s, total, err)) != RC_OK)
		return r;
	s = db_stmt(st, &sql_log_list, err);
	if (!s)
		return RC_ERR;
	bind_text(s, 1, level);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	sqlite3_bind_int64(s, 4, pg.limit);
	sqlite3_bind_int64(s, 5, pg.offset);
	return read_rows(st, p, s, pg.limit, sizeof(**rows), fill_log, (void **)rows, n, err);
}
