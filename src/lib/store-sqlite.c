/*
 * The SQLite implementation of store.h: the only file with SQL in it (besides schema/).
 * Statements are prepared on first use and kept for the life of the connection.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include <sqlite3.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "schema.h"
#include "buf.h"
#include "store.h"

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_CONV_GET,
	S_CONV_EXISTS,
	S_CONV_INSERT,
	S_CONV_TOUCH,
	S_CONV_LIST_ALL,
	S_CONV_LIST_USER,
	S_CONV_COUNT_ALL,
	S_CONV_COUNT_USER,
	S_CONV_RENAME,
	S_CONV_DELETE,
	S_MSG_INSERT,
	S_MSG_GET,
	S_MSG_GET_BY_MSGID,
	S_MSG_LIST,
	S_MSG_LIST_ALL,
	S_MSG_COUNT_ALL,
	S_MSG_LATEST,
	S_MSG_EDIT,
	S_MSG_DELETE,
	S_PAIRS,
	S_PAIRS_COUNT,
	S_RUN_LIST,
	S_RUN_COUNT,
	S_MCFG_LIST,
	S_MCFG_GET,
	S_DATA_VERSION,
	S_MCFG_ENSURE,
	S_MCFG_UPDATE,
	S_LOG_ADD,
	S_LOG_PRUNE,
	S_LOG_LIST,
	S_LOG_COUNT,
	S_VERSION,
	S_RUN_INSERT,
	S_RUNS_OPEN,
	S_RUN_JOB,
	S_RUN_HISTORY,
	S_RUN_MSG_END,
	S_RUN_END,
	S_PLAN_INSERT,
	S_RUN_RESULT,
	S_RUN_STATUS,
	S_RUN_OF_REPLY,
	S_RUN_RESET,
	S__COUNT
};

#define CONV_COLS "seq, id, user_id, title, model_config, msg_count, created_at, updated_at"
#define MSG_COLS                                                                              \
	"m.id, m.msg_id, c.id, m.user_id, m.role, m.content, m.error, m.metadata, "           \
	"m.unfinished, m.visible, m.created_at, m.updated_at"
/* the same columns for one conversation's messages, its id bound as ?4: no join */
#define MSG_COLS_OF_CONV                                                                      \
	"m.id, m.msg_id, ?4, m.user_id, m.role, m.content, m.error, m.metadata, "             \
	"m.unfinished, m.visible, m.created_at, m.updated_at"
#define VISIBLE_CONV "c.is_deleted = 0 AND (?2 IS NULL OR c.user_id = ?2)"

static const char *const stmt_sql[S__COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_CONV_GET] = "SELECT " CONV_COLS " FROM conversations c WHERE id = ?1 AND " VISIBLE_CONV,
	[S_CONV_EXISTS] = "SELECT 1 FROM conversations WHERE id = ?1",
	[S_CONV_INSERT] = "INSERT INTO conversations (id, user_id, title, model_config, "
			  "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
	[S_CONV_TOUCH] = "UPDATE conversations SET updated_at = max(updated_at, ?2), "
			 "msg_count = msg_count + ?3 WHERE seq = ?1",
	[S_CONV_LIST_ALL] = "SELECT " CONV_COLS " FROM conversations WHERE is_deleted = 0 "
			    "ORDER BY updated_at DESC, seq DESC LIMIT ?2 OFFSET ?3",
	[S_CONV_LIST_USER] = "SELECT " CONV_COLS " FROM conversations WHERE is_deleted = 0 "
			     "AND user_id = ?1 ORDER BY updated_at DESC, seq DESC LIMIT ?2 OFFSET ?3",
	[S_CONV_COUNT_ALL] = "SELECT count(*) FROM conversations WHERE is_deleted = 0",
	[S_CONV_COUNT_USER] = "SELECT count(*) FROM conversations WHERE is_deleted = 0 "
			      "AND user_id = ?1",
	[S_CONV_RENAME] = "UPDATE conversations AS c SET title = ?3, updated_at = ?4 "
			  "WHERE id = ?1 AND " VISIBLE_CONV,
	[S_CONV_DELETE] = "UPDATE conversations AS c SET is_deleted = 1 WHERE id = ?1 AND "
			  VISIBLE_CONV,
	[S_MSG_INSERT] = "INSERT INTO messages (msg_id, conv_seq, user_id, role, content, "
			 "unfinished, metadata, created_at, updated_at) "
			 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
	[S_MSG_GET] = "SELECT " MSG_COLS " FROM messages m JOIN conversations c "
		      "ON c.seq = m.conv_seq WHERE m.id = ?1 AND m.is_deleted = 0 AND " VISIBLE_CONV,
	[S_MSG_GET_BY_MSGID] = "SELECT " MSG_COLS " FROM messages m JOIN conversations c "
			       "ON c.seq = m.conv_seq WHERE m.msg_id = ?1 AND m.is_deleted = 0 "
			       "AND " VISIBLE_CONV,
	[S_MSG_LIST] = "SELECT " MSG_COLS_OF_CONV " FROM messages m WHERE m.conv_seq = ?1 "
		       "AND m.is_deleted = 0 AND m.unfinished = 0 ORDER BY m.id LIMIT ?2 OFFSET ?3",
	[S_MSG_LIST_ALL] = "SELECT " MSG_COLS_OF_CONV " FROM messages m WHERE m.conv_seq = ?1 "
			   "AND m.is_deleted = 0 ORDER BY m.id LIMIT ?2 OFFSET ?3",
	[S_MSG_COUNT_ALL] = "SELECT count(*) FROM messages WHERE conv_seq = ?1 AND is_deleted = 0",
	[S_MSG_LATEST] = "SELECT * FROM (SELECT " MSG_COLS_OF_CONV " FROM messages m "
			 "WHERE m.conv_seq = ?1 AND m.is_deleted = 0 AND m.unfinished = 0 "
			 "ORDER BY m.id DESC LIMIT ?2) ORDER BY 1",
	[S_MSG_EDIT] = "UPDATE messages SET content = ?2, updated_at = ?3 "
		       "WHERE id = ?1 AND is_deleted = 0",
	[S_MSG_DELETE] = "UPDATE messages SET is_deleted = 1, updated_at = ?2 "
			 "WHERE id = ?1 AND is_deleted = 0 RETURNING conv_seq, unfinished",
	[S_PAIRS] = "SELECT u.id, u.user_id, u.content, u.created_at, "
		    "(SELECT a.content FROM messages a WHERE a.conv_seq = u.conv_seq "
		    "AND a.is_deleted = 0 AND a.unfinished = 0 AND a.id > u.id "
		    "AND a.role = 'assistant' "
		    "AND a.id < coalesce((SELECT min(n.id) FROM messages n WHERE "
		    "n.conv_seq = u.conv_seq AND n.is_deleted = 0 AND n.id > u.id "
		    "AND n.role = 'user'), 9223372036854775807) ORDER BY a.id LIMIT 1) "
		    "FROM messages u WHERE u.conv_seq = ?1 AND u.is_deleted = 0 "
		    "AND u.role = 'user' ORDER BY u.id LIMIT ?2 OFFSET ?3",
	[S_PAIRS_COUNT] = "SELECT count(*) FROM messages WHERE conv_seq = ?1 AND is_deleted = 0 "
			  "AND role = 'user'",
	[S_RUN_LIST] = "SELECT r.id, r.record_id, c.id, um.msg_id, am.msg_id, r.status, "
		       "r.duration_ms, r.error_message, r.created_at FROM runs r "
		       "JOIN conversations c ON c.seq = r.conv_seq "
		       "JOIN messages um ON um.id = r.user_msg "
		       "LEFT JOIN messages am ON am.id = r.ai_msg "
		       "WHERE r.conv_seq = ?1 ORDER BY r.id LIMIT ?2 OFFSET ?3",
	[S_RUN_COUNT] = "SELECT count(*) FROM runs WHERE conv_seq = ?1",
	[S_MCFG_LIST] = "SELECT config_id, provider, model_name, model_version, parameters, "
			"system_prompt, updated_at FROM model_configs ORDER BY config_id",
	[S_MCFG_GET] = "SELECT config_id, provider, model_name, model_version, parameters, "
		       "system_prompt, updated_at FROM model_configs WHERE config_id = ?1",
	[S_DATA_VERSION] = "PRAGMA data_version",
	[S_MCFG_ENSURE] = "INSERT OR IGNORE INTO model_configs (config_id, provider, model_name, "
			  "model_version, parameters, system_prompt, updated_at) "
			  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[S_MCFG_UPDATE] = "UPDATE model_configs SET provider = coalesce(?2, provider), "
			  "model_name = coalesce(?3, model_name), "
			  "model_version = coalesce(?4, model_version), "
			  "parameters = coalesce(?5, parameters), "
			  "system_prompt = coalesce(?6, system_prompt), updated_at = ?7 "
			  "WHERE config_id = ?1",
	[S_LOG_ADD] = "INSERT INTO logs (level, message, created_at) VALUES (?1, ?2, ?3)",
	[S_LOG_PRUNE] = "DELETE FROM logs WHERE id <= ?1",
	[S_LOG_LIST] = "SELECT id, level, message, created_at FROM logs WHERE "
		       "(?1 IS NULL OR level = ?1) AND created_at >= ?2 AND created_at <= ?3 "
		       "ORDER BY created_at DESC, id DESC LIMIT ?4 OFFSET ?5",
	[S_LOG_COUNT] = "SELECT count(*) FROM logs WHERE (?1 IS NULL OR level = ?1) "
			"AND created_at >= ?2 AND created_at <= ?3",
	[S_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_migrations",
	[S_RUN_STATUS] = "SELECT status FROM runs WHERE id = ?1",
	[S_RUN_INSERT] = "INSERT INTO runs (record_id, conv_seq, user_msg, ai_msg, status, "
			 "created_at, model_config) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
	[S_RUN_OF_REPLY] = "SELECT id, status FROM runs WHERE ai_msg = ?1",
	[S_RUNS_OPEN] = "SELECT id FROM runs WHERE status = 0 AND id > ?1 ORDER BY id LIMIT ?2",
	[S_RUN_JOB] = "SELECT r.id, r.record_id, r.ai_msg, am.msg_id, um.msg_id, c.id, "
		      "um.user_id, um.content, r.created_at, mc.config_id, mc.provider, "
		      "mc.model_name, mc.model_version, mc.parameters, mc.system_prompt, "
		      "mc.updated_at, c.seq, um.id, am.content != '' FROM runs r "
		      "JOIN conversations c ON c.seq = r.conv_seq "
		      "JOIN messages um ON um.id = r.user_msg "
		      "JOIN messages am ON am.id = r.ai_msg "
		      "LEFT JOIN model_configs mc ON mc.config_id = "
		      "coalesce(r.model_config, c.model_config, ?2) "
		      "WHERE r.id = ?1 AND r.status = 0",
	[S_RUN_HISTORY] = "SELECT role, content FROM (SELECT id, role, content FROM messages "
			  "WHERE conv_seq = ?1 AND is_deleted = 0 AND unfinished = 0 "
			  "AND id < ?2 AND content != '' ORDER BY id DESC LIMIT ?3) ORDER BY id",
	[S_RUN_RESET] = "UPDATE messages SET content = '' WHERE id = ?1 AND unfinished = 1",
	[S_RUN_MSG_END] = "UPDATE messages SET content = ?2, updated_at = ?3, unfinished = 0, "
			  "error = ?4, metadata = ?5 WHERE id = ?1 AND unfinished = 1 RETURNING conv_seq, "
			  "is_deleted",
	[S_RUN_END] = "UPDATE runs SET status = ?2, duration_ms = ?3, error_code = ?4, "
		      "error_message = ?5, finished_at = ?6 WHERE id = ?1 AND status = 0",
	[S_PLAN_INSERT] = "INSERT INTO travel_plans (conv_seq, message, plan, created_at) "
			  "VALUES (?1, ?2, ?3, ?4)",
	[S_RUN_RESULT] = "SELECT r.status, r.error_code, r.error_message, " MSG_COLS ", "
			 "(SELECT tp.id FROM travel_plans tp WHERE tp.message = m.id), "
			 "(SELECT tp.plan FROM travel_plans tp WHERE tp.message = m.id), "
			 "um.msg_id, um.created_at, c.user_id "
			 "FROM runs r JOIN messages m ON m.id = r.ai_msg "
			 "JOIN messages um ON um.id = r.user_msg "
			 "JOIN conversations c ON c.seq = r.conv_seq WHERE r.id = ?1",
};

#define LOG_KEEP 100000

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[S__COUNT];
	int nested; /* store_begin() is open: the calls inside join its transaction */
	int nested_failed; /* ... and a call inside failed and rolled it back */
	int locked; /* this connection holds write_lock */
	/* conversation touches put off to the commit (store_defer_touches()) */
	int defer_touches;
	int ntouches;
	struct touch {
		int64_t seq, now;
		int delta;
	} touches[256];
	/* the model config the last job read (store_post_job()), in mcfg_pool, while the
	 * database's data_version stays mcfg_version */
	struct pool *mcfg_pool;
	struct mcfg mcfg;
	int64_t mcfg_version;
};

/* Threads of one process take turns for write transactions here rather than in SQLite's
 * busy handler: a waiting thread wakes the moment the lock is free. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static int
db_fail(struct store *st, char *err, const char *what)
{
	snprintf(err, ERR_LEN, "%s: %s", what, sqlite3_errmsg(st->db));
	return RC_ERR;
}

/* The prepared statement, reset and unbound, ready for binding; NULL on failure. */
static sqlite3_stmt *
db_stmt(struct store *st, enum stmt_id id, char *err)
{
	sqlite3_stmt *s = st->stmt[id];

	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		return s;
	}
	if (sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) !=
	    SQLITE_OK) {
		db_fail(st, err, "prepare");
		return NULL;
	}
	st->stmt[id] = s;
	return s;
}

static void
bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* Bind v as text as it is when it is well-formed UTF-8, else a copy with U+FFFD in the
 * place of each ill-formed part (and NUL byte): nothing broken is written. */
static void
bind_clean(sqlite3_stmt *s, int i, const char *v)
{
	size_t len, n;
	char *m;

	if (!v || utf8_valid(v, len = strlen(v))) {
		bind_text(s, i, v);
		return;
	}
	n = utf8_mended_len(v, len);
	if (!(m = malloc(n + 1))) {
		sqlite3_bind_text(s, i, "\xef\xbf\xbd", 3, SQLITE_STATIC);
		return;
	}
	utf8_mend(m, n + 1, v, len);
	sqlite3_bind_text(s, i, m, (int)n, free);
}

/* Ill-formed text read back (a row an older version stored cut inside a character, or
 * one written by another program) is logged on stderr, at most once a second. */
static void
log_mended(sqlite3_stmt *s, int i, size_t len)
{
	static _Atomic int64_t last;
	int64_t now = time_now_ms() / 1000;

	if (last == now)
		return;
	last = now;
	fprintf(stderr, "aichatd: stored text is not valid UTF-8 (column %s, %zu bytes, in: "
		"%.80s); shown with U+FFFD\n", sqlite3_column_name(s, i), len, sqlite3_sql(s));
}

/* A text column into the pool; NULL for NULL. Text that is not well-formed UTF-8 comes
 * back mended (utf8_mend: U+FFFD for each ill-formed part and NUL byte), so that every
 * row renders: a row is never dropped from a page that counts it. */
static char *
col_text(struct pool *p, sqlite3_stmt *s, int i)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	size_t len, n;
	char *m;

	if (!t)
		return NULL;
	len = (size_t)sqlite3_column_bytes(s, i);
	if (!memchr(t, '\0', len) && utf8_valid(t, len))
		return pool_strndup(p, t, len);
	log_mended(s, i, len);
	n = utf8_mended_len(t, len);
	if (!(m = pool_alloc(p, n + 1)))
		return NULL;
	utf8_mend(m, n + 1, t, len);
	return m;
}

/* Run a statement that returns no rows (or whose rows do not matter). */
static int
db_exec_stmt(struct store *st, sqlite3_stmt *s, char *err)
{
	int r = sqlite3_step(s);

	sqlite3_reset(s);
	if (r != SQLITE_DONE && r != SQLITE_ROW)
		return db_fail(st, err, "step");
	return RC_OK;
}

static void
db_unlock(struct store *st)
{
	if (st->locked) {
		st->locked = 0;
		pthread_mutex_unlock(&write_lock);
	}
}

/* Begin a write transaction, unless the caller's store_begin() has one open. */
static int
db_begin(struct store *st, char *err)
{
	sqlite3_stmt *s;
	int rc;

	if (st->nested)
		return RC_OK;
	pthread_mutex_lock(&write_lock);
	st->locked = 1;
	s = db_stmt(st, S_BEGIN, err);
	rc = s ? db_exec_stmt(st, s, err) : RC_ERR;
	if (rc != RC_OK)
		db_unlock(st);
	return rc;
}

static int touches_apply(struct store *st, char *err);

static int
db_commit(struct store *st, char *err)
{
	sqlite3_stmt *s;
	int rc;

	if (st->nested)
		return RC_OK;
	if ((rc = touches_apply(st, err)) != RC_OK)
		return rc;
	s = db_stmt(st, S_COMMIT, err);
	rc = s ? db_exec_stmt(st, s, err) : RC_ERR;
	if (rc == RC_OK)
		db_unlock(st);
	return rc;
}

/* Roll back the open transaction (a nested failure ends the outer one too). */
static void
db_rollback(struct store *st)
{
	char err[ERR_LEN];
	sqlite3_stmt *s;

	if (st->nested)
		st->nested_failed = 1;
	st->nested = 0;
	st->ntouches = 0;
	if (!sqlite3_get_autocommit(st->db) && (s = db_stmt(st, S_ROLLBACK, err)))
		db_exec_stmt(st, s, err);
	db_unlock(st);
}

int
store_begin(struct store *st, char *err)
{
	int rc = db_begin(st, err);

	st->nested_failed = 0;
	if (rc == RC_OK)
		st->nested = 1;
	return rc;
}

void
store_rollback(struct store *st)
{
	if (st->nested)
		db_rollback(st);
	st->nested_failed = 0;
}

int
store_commit(struct store *st, char *err)
{
	int rc;

	if (st->nested_failed) {
		st->nested_failed = 0;
		snprintf(err, ERR_LEN, "the transaction was rolled back by a failure inside it");
		return RC_ERR;
	}
	st->nested = 0;
	rc = db_commit(st, err);
	if (rc != RC_OK)
		db_rollback(st);
	return rc;
}

/* SQLite's own busy handler sleeps 1 to 100 ms at a time; a write transaction here takes
 * tens of microseconds, so wait in short steps instead, up to BUSY_MAX_MS in all. */
#define BUSY_MAX_MS 10000
static int
busy_wait(void *arg, int n)
{
	struct timespec ts;
	long us = n < 6 ? 25L << n : 1000; /* 25, 50 ... 800 us, then 1 ms */

	(void)arg;
	if (n > 6 + BUSY_MAX_MS)
		return 0;
	ts.tv_sec = 0;
	ts.tv_nsec = us * 1000;
	nanosleep(&ts, NULL);
	return 1;
}

/* After each commit: past WAL_RESTART_PAGES of WAL, checkpoint in RESTART mode, which
 * waits (in the busy handler) for the readers of the moment to finish, so that the next
 * writer starts the WAL from its beginning again. The passive checkpoint SQLite does by
 * default never gets that chance under constant load, and the WAL then grows without end
 * (hundreds of MiB in a minute of sends), every lookup in it slower. */
#define WAL_RESTART_PAGES 4096
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
	(void)arg;
	if (pages >= WAL_RESTART_PAGES)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
	return SQLITE_OK;
}

/* Run one write statement in a transaction of its own (unless one is open), so that it
 * queues on the write lock like every other write instead of spinning in SQLite's busy
 * handler. */
static int
db_write(struct store *st, sqlite3_stmt *s, char *err)
{
	int rc, own = !st->nested && sqlite3_get_autocommit(st->db);

	if (own && (rc = db_begin(st, err)) != RC_OK) {
		sqlite3_reset(s);
		return rc;
	}
	rc = db_exec_stmt(st, s, err);
	if (own) {
		if (rc == RC_OK)
			rc = db_commit(st, err);
		if (rc != RC_OK)
			db_rollback(st);
	}
	return rc;
}

/* A single-integer query; RC_NOTFOUND when it returns no row. */
static int
db_int(struct store *st, sqlite3_stmt *s, int64_t *out, char *err)
{
	int r = sqlite3_step(s);

	if (r == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
		return RC_OK;
	}
	sqlite3_reset(s);
	if (r == SQLITE_DONE)
		return RC_NOTFOUND;
	return db_fail(st, err, "step");
}

/* Once per process, before the first connection: no memory statistics, which would take
 * a global mutex on every one of SQLite's allocations (a tenth of a busy writer's time). */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void
sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct store *
store_open(const char *path, char *err)
{
	struct store *st = calloc(1, sizeof(*st));
	char *emsg = NULL;

	pthread_once(&sqlite_once, sqlite_setup);

	if (!st) {
		snprintf(err, ERR_LEN, "out of memory");
		return NULL;
	}
	if (sqlite3_open_v2(path, &st->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "open %s: %s", path,
			 st->db ? sqlite3_errmsg(st->db) : "out of memory");
		store_close(st);
		return NULL;
	}
	sqlite3_busy_handler(st->db, busy_wait, NULL);
	sqlite3_wal_hook(st->db, wal_hook, NULL);
	sqlite3_extended_result_codes(st->db, 1);
	if (sqlite3_exec(st->db,
			 "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; "
			 "PRAGMA foreign_keys = ON; PRAGMA cache_size = -16384; "
			 "PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY; "
			 "PRAGMA journal_size_limit = 67108864;",
			 NULL, NULL, &emsg) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "configure %s: %s", path, emsg ? emsg : "?");
		sqlite3_free(emsg);
		store_close(st);
		return NULL;
	}
	return st;
}

int
store_checkpoint(struct store *st, int *wal_pages, int *copied)
{
	int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, wal_pages,
					   copied);

	return rc == SQLITE_OK || rc == SQLITE_BUSY ? RC_OK : RC_ERR;
}

void
store_cache_kib(struct store *st, int kib)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", kib);
	sqlite3_exec(st->db, sql, NULL, NULL, NULL);
}

void
store_close(struct store *st)
{
	int i;

	if (!st)
		return;
	for (i = 0; i < S__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	pool_destroy(st->mcfg_pool);
	free(st);
}

int
store_version(struct store *st, int64_t *version, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_VERSION, err);

	if (!s)
		return RC_ERR;
	return db_int(st, s, version, err);
}

int
store_migrate(struct store *st, char *err)
{
	size_t i;
	char *emsg = NULL;

	if (sqlite3_exec(st->db,
			 "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
			 "KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
			 NULL, NULL, &emsg) != SQLITE_OK)
		goto fail;
	for (i = 0; i < schema_migrations_count; i++) {
		const struct schema_migration *m = &schema_migrations[i];
		sqlite3_stmt *s;
		int r, have;

		if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, &emsg) != SQLITE_OK)
			goto fail;
		/* checked inside the write transaction: another process may have just applied it */
		if (sqlite3_prepare_v2(st->db,
				       "SELECT 1 FROM schema_migrations WHERE version = ?1", -1, &s,
				       NULL) != SQLITE_OK)
			goto fail_db;
		sqlite3_bind_int(s, 1, m->version);
		r = sqlite3_step(s);
		sqlite3_finalize(s);
		if (r != SQLITE_ROW && r != SQLITE_DONE)
			goto fail_db;
		have = r == SQLITE_ROW;
		if (!have) {
			if (sqlite3_exec(st->db, m->sql, NULL, NULL, &emsg) != SQLITE_OK)
				goto fail;
			if (sqlite3_prepare_v2(st->db,
					       "INSERT INTO schema_migrations (version, name, "
					       "applied_at) VALUES (?1, ?2, ?3)",
					       -1, &s, NULL) != SQLITE_OK)
				goto fail_db;
			sqlite3_bind_int(s, 1, m->version);
			sqlite3_bind_text(s, 2, m->name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 3, time_now_ms());
			r = sqlite3_step(s);
			sqlite3_finalize(s);
			if (r != SQLITE_DONE)
				goto fail_db;
		}
		if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, &emsg) != SQLITE_OK)
			goto fail;
	}
	return RC_OK;
fail_db:
	snprintf(err, ERR_LEN, "migrate: %s", sqlite3_errmsg(st->db));
	db_rollback(st);
	return RC_ERR;
fail:
	snprintf(err, ERR_LEN, "migrate: %s", emsg ? emsg : sqlite3_errmsg(st->db));
	sqlite3_free(emsg);
	db_rollback(st);
	return RC_ERR;
}

/* Read up to limit rows of a statement already bound into a pool array of elements of
 * size sz, each filled by fill(). */
typedef void row_fill(struct pool *p, sqlite3_stmt *s, void *row);

static int
read_rows(struct store *st, struct pool *p, sqlite3_stmt *s, int64_t limit, size_t sz,
	  row_fill *fill, void **rows, int *n, char *err)
{
	char *v = pool_alloc(p, sz * (size_t)(limit > 0 ? limit : 1));
	int r = SQLITE_DONE, i = 0;

	if (!v) {
		sqlite3_reset(s);
		return RC_NOMEM;
	}
	while (i < limit && (r = sqlite3_step(s)) == SQLITE_ROW)
		fill(p, s, v + sz * (size_t)i++);
	sqlite3_reset(s);
	if (r != SQLITE_DONE && r != SQLITE_ROW)
		return db_fail(st, err, "list");
	*rows = v;
	*n = i;
	return RC_OK;
}

/* ---- conversations ---- */

static void
conv_row(struct pool *p, sqlite3_stmt *s, struct conv *c)
{
	c->seq = sqlite3_column_int64(s, 0);
	c->id = col_text(p, s, 1);
	c->user_id = col_text(p, s, 2);
	c->title = col_text(p, s, 3);
	c->model_config = col_text(p, s, 4);
	c->msg_count = sqlite3_column_int64(s, 5);
	c->created_at = sqlite3_column_int64(s, 6);
	c->updated_at = sqlite3_column_int64(s, 7);
}

/* Step a statement expected to yield one row read by fill; RC_NOTFOUND when none. */
#define STEP_ONE(st, s, err, fill)                                                            \
	do {                                                                                  \
		int r_ = sqlite3_step(s);                                                     \
		if (r_ == SQLITE_ROW) {                                                       \
			fill;                                                                 \
			sqlite3_reset(s);                                                     \
			return RC_OK;                                                         \
		}                                                                             \
		sqlite3_reset(s);                                                             \
		if (r_ == SQLITE_DONE)                                                        \
			return RC_NOTFOUND;                                                   \
		return db_fail(st, err, "step");                                              \
	} while (0)

int
store_conv_get(struct store *st, struct pool *p, const char *id, const char *owner,
	       struct conv *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_CONV_GET, err);

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	bind_text(s, 2, owner);
	STEP_ONE(st, s, err, conv_row(p, s, out));
}

int
store_conv_taken(struct store *st, const char *id, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_CONV_EXISTS, err);
	int64_t one;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	return db_int(st, s, &one, err);
}

/* Insert a conversation inside the caller's transaction. */
static int
conv_insert(struct store *st, struct pool *p, const char *id, const char *user_id,
	    const char *title, const char *model_config, int64_t now, struct conv *out,
	    char *err)
{
	char uuid[IDS_UUID_LEN + 1];
	sqlite3_stmt *s = db_stmt(st, S_CONV_INSERT, err);
	int r;

	if (!s)
		return RC_ERR;
	if (!id) {
		if (ids_uuid4(uuid) != RC_OK) {
			snprintf(err, ERR_LEN, "no randomness for an id");
			return RC_ERR;
		}
		id = uuid;
	}
	bind_text(s, 1, id);
	bind_text(s, 2, user_id);
	bind_text(s, 3, title);
	bind_text(s, 4, model_config);
	sqlite3_bind_int64(s, 5, now);
	r = sqlite3_step(s);
	sqlite3_reset(s);
	if (r == SQLITE_CONSTRAINT_UNIQUE || r == SQLITE_CONSTRAINT_PRIMARYKEY) {
		snprintf(err, ERR_LEN, "conversation id taken");
		return RC_CONFLICT;
	}
	if (r != SQLITE_DONE)
		return db_fail(st, err, "insert conversation");
	out->seq = sqlite3_last_insert_rowid(st->db);
	out->id = pool_strdup(p, id);
	out->user_id = pool_strdup(p, user_id);
	out->title = pool_strdup(p, title);
	out->model_config = pool_strdup(p, model_config);
	out->msg_count = 0;
	out->created_at = out->updated_at = now;
	if (!out->id || !out->user_id || !out->title) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	return RC_OK;
}

int
store_conv_create(struct store *st, struct pool *p, const char *id, const char *user_id,
		  const char *title, const char *model_config, struct conv *out, char *err)
{
	return conv_insert(st, p, id, user_id, title, model_config, time_now_ms(), out, err);
}

static void
fill_conv(struct pool *p, sqlite3_stmt *s, void *row)
{
	conv_row(p, s, row);
}

int
store_conv_list(struct store *st, struct pool *p, const char *user, struct page pg,
		struct conv **rows, int *n, int64_t *total, char *err)
{
	sqlite3_stmt *s;
	int r;

	s = db_stmt(st, user ? S_CONV_COUNT_USER : S_CONV_COUNT_ALL, err);
	if (!s)
		return RC_ERR;
	if (user)
		bind_text(s, 1, user);
	if ((r = db_int(st, s, total, err)) != RC_OK)
		return r;
	s = db_stmt(st, user ? S_CONV_LIST_USER : S_CONV_LIST_ALL, err);
	if (!s)
		return RC_ERR;
	if (user)
		bind_text(s, 1, user);
	sqlite3_bind_int64(s, 2, pg.limit);
	sqlite3_bind_int64(s, 3, pg.offset);
	return read_rows(st, p, s, pg.limit, sizeof(**rows), fill_conv, (void **)rows, n, err);
}

/* Run an UPDATE keyed by conversation id and owner; RC_NOTFOUND when it changed nothing. */
static int
conv_update(struct store *st, enum stmt_id id_, const char *id, const char *owner,
	    const char *title, char *err)
{
	sqlite3_stmt *s = db_stmt(st, id_, err);
	int r;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	bind_text(s, 2, owner);
	if (title) {
		bind_text(s, 3, title);
		sqlite3_bind_int64(s, 4, time_now_ms());
	}
	r = db_write(st, s, err);
	if (r != RC_OK)
		return r;
	return sqlite3_changes(st->db) ? RC_OK : RC_NOTFOUND;
}

int
store_conv_rename(struct store *st, const char *id, const char *owner, const char *title,
		  char *err)
{
	return conv_update(st, S_CONV_RENAME, id, owner, title, err);
}

int
store_conv_delete(struct store *st, const char *id, const char *owner, char *err)
{
	return conv_update(st, S_CONV_DELETE, id, owner, NULL, err);
}

/* ---- messages ---- */

static void
msg_row(struct pool *p, sqlite3_stmt *s, struct msg *m)
{
	m->id = sqlite3_column_int64(s, 0);
	m->msg_id = col_text(p, s, 1);
	m->conv_id = col_text(p, s, 2);
	m->user_id = col_text(p, s, 3);
	m->role = col_text(p, s, 4);
	m->content = col_text(p, s, 5);
	m->error = col_text(p, s, 6);
	m->metadata = col_text(p, s, 7);
	m->unfinished = sqlite3_column_int(s, 8);
	m->visible = sqlite3_column_int(s, 9);
	m->created_at = sqlite3_column_int64(s, 10);
	m->updated_at = sqlite3_column_int64(s, 11);
}

/* Step an INSERT whose ?1 is a fresh "<prefix>_YYYYMMDDHHMMSS_xxxxxxxx" id (into id, of
 * IDS_STAMPED_MAX bytes), drawing another on the rare clash with one taken in the same
 * second. The caller has bound the other parameters (a reset keeps them). */
static int
insert_stamped(struct store *st, sqlite3_stmt *s, const char *prefix, int64_t now, char *id,
	       char *err)
{
	int r = SQLITE_ERROR, tries;

	for (tries = 0; tries < 8 && (tries == 0 || r == SQLITE_CONSTRAINT_UNIQUE); tries++) {
		if (ids_stamped(id, prefix, now) != RC_OK) {
			snprintf(err, ERR_LEN, "no randomness for an id");
			return RC_ERR;
		}
		bind_text(s, 1, id);
		r = sqlite3_step(s);
		sqlite3_reset(s);
	}
	return r == SQLITE_DONE ? RC_OK : db_fail(st, err, "insert");
}

/* Insert a message inside the caller's transaction. */
static int
msg_insert(struct store *st, struct pool *p, const struct conv *c, const char *sender,
	   const char *role, const char *content, int unfinished, const char *metadata,
	   int64_t now, struct msg *out, char *err)
{
	char msg_id[IDS_STAMPED_MAX];
	sqlite3_stmt *s = db_stmt(st, S_MSG_INSERT, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 2, c->seq);
	bind_text(s, 3, sender);
	bind_text(s, 4, role);
	bind_text(s, 5, content);
	sqlite3_bind_int(s, 6, unfinished);
	bind_text(s, 7, metadata);
	sqlite3_bind_int64(s, 8, now);
	if ((rc = insert_stamped(st, s, "msg", now, msg_id, err)) != RC_OK)
		return rc;
	out->id = sqlite3_last_insert_rowid(st->db);
	out->msg_id = pool_strdup(p, msg_id);
	out->conv_id = c->id;
	out->user_id = pool_strdup(p, sender);
	out->role = pool_strdup(p, role);
	out->content = pool_strdup(p, content);
	out->error = NULL;
	out->metadata = pool_strdup(p, metadata);
	out->unfinished = unfinished;
	out->visible = 1;
	out->created_at = out->updated_at = now;
	if (!out->msg_id || !out->user_id || !out->role || !out->content) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	return RC_OK;
}

static int
conv_touch_now(struct store *st, int64_t seq, int64_t now, int delta, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_CONV_TOUCH, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, seq);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int(s, 3, delta);
	return db_exec_stmt(st, s, err);
}

/*
 * A conversation's count and time change with each message, and each change rewrites its
 * row and both of its indexes' entries. The writer's transactions hold dozens of posts and
 * reply ends, often for the same few conversations: with touches put off, each
 * conversation is updated once, at the commit, by the sum of its changes.
 */
void
store_defer_touches(struct store *st)
{
	st->defer_touches = 1;
}

/* Apply the touches put off, one per conversation; the list is then empty. */
static int
touches_apply(struct store *st, char *err)
{
	int i, j, rc = RC_OK;

	for (i = 0; i < st->ntouches && rc == RC_OK; i++) {
		struct touch *t = &st->touches[i];
		if (!t->seq)
			continue; /* merged into an earlier one */
		for (j = i + 1; j < st->ntouches; j++) {
			struct touch *u = &st->touches[j];
			if (u->seq == t->seq) {
				t->delta += u->delta;
				if (u->now > t->now)
					t->now = u->now;
				u->seq = 0;
			}
		}
		rc = conv_touch_now(st, t->seq, t->now, t->delta, err);
	}
	st->ntouches = 0;
	return rc;
}

/* The count change put off for conversation seq. */
static int64_t
touches_pending(const struct store *st, int64_t seq)
{
	int64_t d = 0;
	int i;

	for (i = 0; i < st->ntouches; i++)
		if (st->touches[i].seq == seq)
			d += st->touches[i].delta;
	return d;
}

static int
conv_touch(struct store *st, int64_t seq, int64_t now, int delta, char *err)
{
	int rc;

	if (!st->defer_touches || sqlite3_get_autocommit(st->db))
		return conv_touch_now(st, seq, now, delta, err);
	if (st->ntouches == (int)(sizeof(st->touches) / sizeof(st->touches[0])) &&
	    (rc = touches_apply(st, err)) != RC_OK)
		return rc;
	st->touches[st->ntouches++] = (struct touch){seq, now, delta};
	return RC_OK;
}

static int
run_insert(struct store *st, struct pool *p, const struct conv *c, int64_t user_msg,
	   int64_t ai_msg, const char *config, int64_t now, int64_t *run_id, char **record_id,
	   char *err)
{
	char rid[IDS_STAMPED_MAX];
	sqlite3_stmt *s = db_stmt(st, S_RUN_INSERT, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 2, c->seq);
	sqlite3_bind_int64(s, 3, user_msg);
	sqlite3_bind_int64(s, 4, ai_msg);
	sqlite3_bind_int64(s, 5, now);
	bind_text(s, 6, config);
	if ((rc = insert_stamped(st, s, "record", now, rid, err)) != RC_OK)
		return rc;
	*run_id = sqlite3_last_insert_rowid(st->db);
	*record_id = pool_strdup(p, rid);
	return *record_id ? RC_OK : RC_NOMEM;
}

/* One post, inside the transaction the caller holds. */
static int
post_one(struct store *st, struct pool *p, const struct store_post *in,
	 struct store_posted *out, char *err)
{
	int64_t now = time_now_ms();
	int rc = RC_NOTFOUND;

	if (in->conv_id)
		rc = store_conv_get(st, p, in->conv_id, in->owner, &out->conv, err);
	if (rc == RC_NOTFOUND && (in->create || !in->conv_id)) {
		rc = conv_insert(st, p, in->conv_id, in->conv_user, in->title, in->model_config,
				 now, &out->conv, err);
		if (rc == RC_CONFLICT)
			rc = RC_NOTFOUND; /* deleted, or someone else's: the same to this caller */
	}
	if (rc != RC_OK)
		return rc;
	out->conv.msg_count += touches_pending(st, out->conv.seq); /* earlier posts of the batch */
	rc = msg_insert(st, p, &out->conv, in->sender, in->role, in->content, 0, in->metadata,
			now, &out->msg, err);
	if (rc != RC_OK)
		return rc;
	if (in->run) {
		rc = msg_insert(st, p, &out->conv, "ai_bot", "assistant", "", 1, NULL, now,
				&out->reply, err);
		if (rc == RC_OK)
			rc = run_insert(st, p, &out->conv, out->msg.id, out->reply.id,
					in->run_config, now, &out->run_id, &out->record_id, err);
		if (rc != RC_OK)
			return rc;
	}
	/* only the user message counts now; the reply counts once it is finished */
	rc = conv_touch(st, out->conv.seq, now, 1, err);
	if (rc != RC_OK)
		return rc;
	out->conv.updated_at = now;
	out->conv.msg_count += 1;
	return RC_OK;
}

/*
 * Group commit. Sends are the hot write path: each is a small transaction, and under load
 * most of its cost is the commit (the WAL frames written, the other connections' caches
 * emptied). The threads of a process that post at the same moment share one transaction:
 * the first becomes the leader, takes every post queued meanwhile, runs each in a savepoint
 * of its own (so one failing post does not undo the others) and commits them all; the
 * others wait for their results. A follower's pool and buffers are written only while it
 * waits, under the queue's mutex hand-over.
 */
struct post_op {
	struct store_post_op op; /* first: a batch is a list of these */
	int done;
};

static pthread_mutex_t post_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t post_cond = PTHREAD_COND_INITIALIZER;
static struct store_post_op *post_queue, **post_tail = &post_queue;
static int post_leading;

static int
savepoint(struct store *st, const char *sql)
{
	return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK ? RC_OK : RC_ERR;
}

/* Run a batch of posts in one transaction; each op gets its rc. With savepoints, each
 * post is undone alone when it fails. Without, a failure other than RC_NOTFOUND (which
 * post_one() answers before it writes anything) stops the batch: RC_CONFLICT, and nothing
 * is kept. */
static int
post_batch(struct store *st, struct store_post_op *batch, int savepoints)
{
	char err[ERR_LEN];
	struct store_post_op *op;
	int rc, mark;

	rc = db_begin(st, err);
	for (op = batch; op; op = op->next) {
		if (rc != RC_OK) {
			op->rc = rc;
			snprintf(op->err, ERR_LEN, "%s", err);
			continue;
		}
		if (!savepoints) {
			op->rc = post_one(st, op->p, op->in, op->out, op->err);
			if (op->rc != RC_OK && op->rc != RC_NOTFOUND) {
				db_rollback(st);
				return RC_CONFLICT;
			}
			continue;
		}
		if (savepoint(st, "SAVEPOINT post") != RC_OK) {
			op->rc = db_fail(st, op->err, "savepoint");
			continue;
		}
		mark = st->ntouches;
		op->rc = post_one(st, op->p, op->in, op->out, op->err);
		if (op->rc != RC_OK) {
			savepoint(st, "ROLLBACK TO post");
			st->ntouches = mark; /* and the touches it put off */
		}
		savepoint(st, "RELEASE post");
	}
	if (rc == RC_OK && (rc = db_commit(st, err)) != RC_OK) {
		db_rollback(st);
		for (op = batch; op; op = op->next) {
			if (op->rc == RC_OK) {
				op->rc = rc;
				snprintf(op->err, ERR_LEN, "%s", err);
			}
		}
	}
	return RC_OK;
}

/* Savepoints cost each post a twentieth of its time, and posts almost never fail once
 * their conversation is found: a batch runs without them first, and again with them only
 * when one of its posts failed. */
void
store_post_batch(struct store *st, struct store_post_op *batch)
{
	if (!batch->next || post_batch(st, batch, 0) == RC_CONFLICT)
		post_batch(st, batch, !!batch->next);
}

int
store_post_batch_in(struct store *st, struct store_post_op *batch)
{
	return post_batch(st, batch, 0);
}

int
store_post(struct store *st, struct pool *p, const struct store_post *in,
	   struct store_posted *out, char *err)
{
	struct post_op me = {{NULL, in, p, out, err, RC_OK}, 0};
	struct store_post_op *batch, *op;

	if (st->nested) {
		/* inside the caller's transaction: no batching across threads */
		int rc = post_one(st, p, in, out, err);
		if (rc != RC_OK)
			db_rollback(st);
		return rc;
	}
	pthread_mutex_lock(&post_lock);
	*post_tail = &me.op;
	post_tail = &me.op.next;
	while (!me.done && post_leading)
		pthread_cond_wait(&post_cond, &post_lock);
	if (me.done) {
		pthread_mutex_unlock(&post_lock);
		return me.op.rc;
	}
	/* lead: take everything queued, this post included */
	post_leading = 1;
	batch = post_queue;
	post_queue = NULL;
	post_tail = &post_queue;
	pthread_mutex_unlock(&post_lock);

	store_post_batch(st, batch);

	pthread_mutex_lock(&post_lock);
	for (op = batch; op; op = op->next)
		((struct post_op *)(void *)op)->done = 1;
	post_leading = 0;
	pthread_cond_broadcast(&post_cond);
	pthread_mutex_unlock(&post_lock);
	return me.op.rc;
}

static int
msg_get(struct store *st, struct pool *p, enum stmt_id id_, int64_t id, const char *msg_id,
	const char *owner, struct msg *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, id_, err);
	int rc;

	if (!s)
		return RC_ERR;
	if (msg_id)
		bind_text(s, 1, msg_id);
	else
		sqlite3_bind_int64(s, 1, id);
	bind_text(s, 2, owner);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		msg_row(p, s, out);
		sqlite3_reset(s);
		return RC_OK;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? RC_NOTFOUND : db_fail(st, err, "get message");
}

int
store_msg_get(struct store *st, struct pool *p, int64_t id, const char *owner, struct msg *out,
	      char *err)
{
	return msg_get(st, p, S_MSG_GET, id, NULL, owner, out, err);
}

int
store_msg_get_by_msgid(struct store *st, struct pool *p, const char *msg_id, const char *owner,
		       struct msg *out, char *err)
{
	return msg_get(st, p, S_MSG_GET_BY_MSGID, 0, msg_id, owner, out, err);
}

static void
fill_msg(struct pool *p, sqlite3_stmt *s, void *row)
{
	msg_row(p, s, row);
}

static int
msg_rows(struct store *st, struct pool *p, sqlite3_stmt *s, int64_t limit, struct msg **rows,
	 int *n, char *err)
{
	return read_rows(st, p, s, limit, sizeof(**rows), fill_msg, (void **)rows, n, err);
}

int
store_msg_list(struct store *st, struct pool *p, const struct conv *c, struct page pg, int all,
	       struct msg **rows, int *n, int64_t *total, char *err)
{
	sqlite3_stmt *s;
	int rc;

	if (all) {
		s = db_stmt(st, S_MSG_COUNT_ALL, err);
		if (!s)
			return RC_ERR;
		sqlite3_bind_int64(s, 1, c->seq);
		if ((rc = db_int(st, s, total, err)) != RC_OK)
			return rc;
	} else {
		/* the conversation row keeps the visible-message count: no COUNT(*) per page */
		*total = c->msg_count;
	}
	s = db_stmt(st, all ? S_MSG_LIST_ALL : S_MSG_LIST, err);
	if (!s)
		return RC_ERR;
	bind_text(s, 4, c->id);
	sqlite3_bind_int64(s, 1, c->seq);
	sqlite3_bind_int64(s, 2, pg.limit);
	sqlite3_bind_int64(s, 3, pg.offset);
	return msg_rows(st, p, s, pg.limit, rows, n, err);
}

int
store_msg_latest(struct store *st, struct pool *p, const struct conv *c, int limit,
		 struct msg **rows, int *n, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_MSG_LATEST, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, c->seq);
	sqlite3_bind_int(s, 2, limit);
	bind_text(s, 4, c->id);
	return msg_rows(st, p, s, limit, rows, n, err);
}

int
store_msg_edit(struct store *st, int64_t id, const char *content, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_MSG_EDIT, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, id);
	bind_text(s, 2, content);
	sqlite3_bind_int64(s, 3, time_now_ms());
	if ((rc = db_write(st, s, err)) != RC_OK)
		return rc;
	return sqlite3_changes(st->db) ? RC_OK : RC_NOTFOUND;
}

int
store_msg_delete(struct store *st, int64_t id, char *err)
{
	int64_t now = time_now_ms(), seq;
	sqlite3_stmt *s;
	int rc, unfinished;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	s = db_stmt(st, S_MSG_DELETE, err);
	if (!s) {
		rc = RC_ERR;
		goto fail;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, now);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		rc = rc == SQLITE_DONE ? RC_NOTFOUND : db_fail(st, err, "delete message");
		goto fail;
	}
	seq = sqlite3_column_int64(s, 0);
	unfinished = sqlite3_column_int(s, 1);
	sqlite3_reset(s);
	/* an unfinished reply was never counted */
	if (!unfinished && (rc = conv_touch(st, seq, 0, -1, err)) != RC_OK)
		goto fail;
	if ((rc = db_commit(st, err)) != RC_OK)
		goto fail;
	return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

static void
fill_pair(struct pool *p, sqlite3_stmt *s, void *row)
{
	struct pair *x = row;

	x->id = sqlite3_column_int64(s, 0);
	x->user_id = col_text(p, s, 1);
	x->user_message = col_text(p, s, 2);
	x->created_at = sqlite3_column_int64(s, 3);
	x->ai_response = col_text(p, s, 4);
}

/* Count with count_id, then read a page with list_id, both keyed by a conversation. */
static int
conv_page(struct store *st, struct pool *p, enum stmt_id count_id, enum stmt_id list_id,
	  const struct conv *c, struct page pg, size_t sz, row_fill *fill, void **rows, int *n,
	  int64_t *total, char *err)
{
	sqlite3_stmt *s = db_stmt(st, count_id, err);
	int r;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, c->seq);
	if ((r = db_int(st, s, total, err)) != RC_OK)
		return r;
	s = db_stmt(st, list_id, err);
	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, c->seq);
	sqlite3_bind_int64(s, 2, pg.limit);
	sqlite3_bind_int64(s, 3, pg.offset);
	return read_rows(st, p, s, pg.limit, sz, fill, rows, n, err);
}

int
store_pairs(struct store *st, struct pool *p, const struct conv *c, struct page pg,
	    struct pair **rows, int *n, int64_t *total, char *err)
{
	return conv_page(st, p, S_PAIRS_COUNT, S_PAIRS, c, pg, sizeof(**rows), fill_pair,
			 (void **)rows, n, total, err);
}

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

int
store_run_list(struct store *st, struct pool *p, const struct conv *c, struct page pg,
	       struct run **rows, int *n, int64_t *total, char *err)
{
	return conv_page(st, p, S_RUN_COUNT, S_RUN_LIST, c, pg, sizeof(**rows), fill_run,
			 (void **)rows, n, total, err);
}

/* ---- model configs ---- */

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

int
store_mcfg_list(struct store *st, struct pool *p, struct mcfg **rows, int *n, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_MCFG_LIST, err);
	struct mcfg *v = NULL, *nv;
	int r, i = 0, cap = 0;

	if (!s)
		return RC_ERR;
	while ((r = sqlite3_step(s)) == SQLITE_ROW && i < 1000) {
		if (i == cap) {
			cap = cap ? cap * 2 : 8;
			nv = pool_alloc(p, sizeof(*nv) * (size_t)cap);
			if (!nv) {
				sqlite3_reset(s);
				return RC_NOMEM;
			}
			if (i)
				memcpy(nv, v, sizeof(*v) * (size_t)i);
			v = nv;
		}
		mcfg_row(p, s, &v[i++]);
	}
	sqlite3_reset(s);
	if (r != SQLITE_DONE && r != SQLITE_ROW)
		return db_fail(st, err, "list model configs");
	*rows = v;
	*n = i;
	return RC_OK;
}

int
store_mcfg_get(struct store *st, struct pool *p, const char *id, struct mcfg *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_MCFG_GET, err);

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	STEP_ONE(st, s, err, mcfg_row(p, s, out));
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

int
store_mcfg_ensure(struct store *st, const struct mcfg *m, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_MCFG_ENSURE, err);

	if (!s)
		return RC_ERR;
	mcfg_bind(s, m, time_now_ms());
	return db_write(st, s, err);
}

int
store_mcfg_update(struct store *st, const struct mcfg *m, int64_t *updated_at, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_MCFG_UPDATE, err);
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

int
store_log(struct store *st, const char *level, const char *message)
{
	char err[ERR_LEN];
	sqlite3_stmt *s = db_stmt(st, S_LOG_ADD, err);
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
		s = db_stmt(st, S_LOG_PRUNE, err);
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

int
store_log_list(struct store *st, struct pool *p, const char *level, int64_t from_ms,
	       int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total,
	       char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_LOG_COUNT, err);
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
	s = db_stmt(st, S_LOG_LIST, err);
	if (!s)
		return RC_ERR;
	bind_text(s, 1, level);
	sqlite3_bind_int64(s, 2, from_ms);
	sqlite3_bind_int64(s, 3, to_ms);
	sqlite3_bind_int64(s, 4, pg.limit);
	sqlite3_bind_int64(s, 5, pg.offset);
	return read_rows(st, p, s, pg.limit, sizeof(**rows), fill_log, (void **)rows, n, err);
}

/* ---- AI runs ---- */

int
store_runs_open(struct store *st, struct pool *p, int64_t after, int limit, int64_t **ids,
		int *n, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_RUNS_OPEN, err);
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

/* The config of a run whose conversation names one that is gone: the default's names. */
static void
job_default_cfg(struct pool *p, const char *default_cfg, struct mcfg *m)
{
	m->config_id = pool_strdup(p, default_cfg);
	m->provider = pool_strdup(p, default_cfg);
	m->model_name = pool_strdup(p, default_cfg);
	m->model_version = pool_strdup(p, "");
	m->parameters = pool_strdup(p, "{}");
	m->system_prompt = pool_strdup(p, "");
	m->updated_at = 0;
}

int
store_run_job(struct store *st, struct pool *p, int64_t run_id, const char *default_cfg,
	      struct run_job *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_RUN_JOB, err);
	int r;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, run_id);
	bind_text(s, 2, default_cfg);
	r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		sqlite3_reset(s);
		return r == SQLITE_DONE ? RC_NOTFOUND : db_fail(st, err, "load run");
	}
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
		job_default_cfg(p, default_cfg, &out->cfg);
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

/*
 * Model config id, as store_mcfg_get() reads it, but taken from the one read last when
 * the database has not changed since: PRAGMA data_version moves with every commit of
 * another connection (a PUT from a worker, say), and this connection (the writer's, the
 * only caller) never writes model configs. Reading it for every send's job was a
 * twentieth of the writer's time.
 */
static int
mcfg_get_cached(struct store *st, struct pool *p, const char *id, struct mcfg *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_DATA_VERSION, err);
	int64_t version;
	int rc;

	if (!s || db_int(st, s, &version, err) != RC_OK)
		return store_mcfg_get(st, p, id, out, err);
	if (!st->mcfg_pool || version != st->mcfg_version ||
	    strcmp(st->mcfg.config_id, id) != 0) {
		if (st->mcfg_pool)
			pool_reset(st->mcfg_pool);
		else if (!(st->mcfg_pool = pool_create()))
			return store_mcfg_get(st, p, id, out, err);
		rc = store_mcfg_get(st, st->mcfg_pool, id, &st->mcfg, err);
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
store_post_job(struct store *st, struct pool *p, const struct store_post *in,
	       const struct store_posted *out, const char *default_cfg, struct run_job *job,
	       char *err)
{
	/* the config as S_RUN_JOB picks it: the run's, the conversation's, the default */
	const char *cfg = in->run_config      ? in->run_config
			  : out->conv.model_config ? out->conv.model_config
						   : default_cfg;
	int rc;

	memset(job, 0, sizeof(*job));
	job->run_id = out->run_id;
	job->record_id = out->record_id;
	job->ai_msg = out->reply.id;
	job->ai_msg_id = out->reply.msg_id;
	job->user_msg_id = out->msg.msg_id;
	job->conv_id = out->conv.id;
	job->user_id = out->msg.user_id;
	job->content = out->msg.content;
	job->created_at = out->msg.created_at;
	job->conv_seq = out->conv.seq;
	job->user_msg = out->msg.id;
	rc = mcfg_get_cached(st, p, cfg, &job->cfg, err);
	if (rc == RC_NOTFOUND) {
		job_default_cfg(p, default_cfg, &job->cfg);
		rc = RC_OK;
	}
	return rc;
}

int
store_run_history(struct store *st, struct pool *p, struct run_job *out, int window, char *err)
{
	sqlite3_stmt *s;
	int r = SQLITE_DONE, i = 0;

	out->nhistory = 0;
	if (window <= 0)
		return RC_OK;
	out->history = pool_alloc(p, sizeof(*out->history) * (size_t)window);
	s = db_stmt(st, S_RUN_HISTORY, err);
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

int
store_run_status(struct store *st, int64_t run_id, int *status, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_RUN_STATUS, err);
	int64_t v;
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, run_id);
	if ((rc = db_int(st, s, &v, err)) == RC_OK)
		*status = (int)v;
	return rc;
}

int
store_run_of_reply(struct store *st, int64_t ai_msg, int64_t *run_id, int *status, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_RUN_OF_REPLY, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, ai_msg);
	STEP_ONE(st, s, err, {
		*run_id = sqlite3_column_int64(s, 0);
		*status = sqlite3_column_int(s, 1);
	});
}

int
store_run_reset(struct store *st, int64_t ai_msg, char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_RUN_RESET, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, ai_msg);
	return db_write(st, s, err);
}

int
store_run_finish(struct store *st, const struct run_end *e, char *err)
{
	int64_t now = time_now_ms(), conv_seq;
	sqlite3_stmt *s;
	int rc, deleted;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	s = db_stmt(st, S_RUN_END, err);
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
	s = db_stmt(st, S_RUN_MSG_END, err);
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
		if (!deleted && (rc = conv_touch(st, conv_seq, now, 1, err)) != RC_OK)
			goto fail;
		if (e->travel_plan) {
			s = db_stmt(st, S_PLAN_INSERT, err);
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

int
store_run_result(struct store *st, struct pool *p, int64_t run_id, struct run_result *out,
		 char *err)
{
	sqlite3_stmt *s = db_stmt(st, S_RUN_RESULT, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, run_id);
	STEP_ONE(st, s, err, {
		out->status = sqlite3_column_int(s, 0);
		out->error_code = sqlite3_column_int(s, 1);
		out->error = col_text(p, s, 2);
		/* MSG_COLS start at column 3 */
		out->reply.id = sqlite3_column_int64(s, 3);
		out->reply.msg_id = col_text(p, s, 4);
		out->reply.conv_id = col_text(p, s, 5);
		out->reply.user_id = col_text(p, s, 6);
		out->reply.role = col_text(p, s, 7);
		out->reply.content = col_text(p, s, 8);
		out->reply.error = col_text(p, s, 9);
		out->reply.metadata = col_text(p, s, 10);
		out->reply.unfinished = sqlite3_column_int(s, 11);
		out->reply.visible = sqlite3_column_int(s, 12);
		out->reply.created_at = sqlite3_column_int64(s, 13);
		out->reply.updated_at = sqlite3_column_int64(s, 14);
		out->travel_plan_id = sqlite3_column_int64(s, 15);
		out->travel_plan = col_text(p, s, 16);
		out->user_msg_id = col_text(p, s, 17);
		out->user_msg_at = sqlite3_column_int64(s, 18);
		out->owner = col_text(p, s, 19);
	});
}
