/*
 * The SQLite store's connection: open and close, the busy and WAL hooks, checkpoints,
 * transactions and the process's write lock, migrations, and the helpers every file of
 * src/lib/sqlite/ uses to prepare, bind, step and read statements (db.h).
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
#include "store.h"
#include "db.h"

/* ---- statements, errors, binding and reading ---- */

int
db_fail(struct sq_store *st, char *err, const char *what)
{
	snprintf(err, ERR_LEN, "%s: %s", what, sqlite3_errmsg(st->db));
	return RC_ERR;
}

sqlite3_stmt *
db_prepare(struct sq_store *st, const struct db_sql *q, char *err)
{
	sqlite3_stmt *s;

	if (sqlite3_prepare_v3(st->db, q->text, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) !=
	    SQLITE_OK) {
		db_fail(st, err, "prepare");
		return NULL;
	}
	st->stmt[q->id] = s;
	return s;
}

void
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

/* Mended (utf8_mend: U+FFFD for each ill-formed part and NUL byte) so that every row
 * renders: a row is never dropped from a page that counts it. */
char *
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

int
db_exec_stmt(struct sq_store *st, sqlite3_stmt *s, char *err)
{
	int r = sqlite3_step(s);

	sqlite3_reset(s);
	if (r != SQLITE_DONE && r != SQLITE_ROW)
		return db_fail(st, err, "step");
	return RC_OK;
}

int
db_int(struct sq_store *st, sqlite3_stmt *s, int64_t *out, char *err)
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

int
db_row(struct sq_store *st, sqlite3_stmt *s, const char *what, char *err)
{
	int r = sqlite3_step(s);

	if (r == SQLITE_ROW)
		return RC_OK;
	sqlite3_reset(s);
	return r == SQLITE_DONE ? RC_NOTFOUND : db_fail(st, err, what);
}

int
read_rows(struct sq_store *st, struct pool *p, sqlite3_stmt *s, int64_t limit, size_t sz,
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

/* ---- transactions ---- */

/* Threads of one process take turns for write transactions here rather than in SQLite's
 * busy handler: a waiting thread wakes the moment the lock is free. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static void
db_unlock(struct sq_store *st)
{
	if (st->locked) {
		st->locked = 0;
		pthread_mutex_unlock(&write_lock);
	}
}

static const struct db_sql sql_begin = {S_BEGIN, "BEGIN IMMEDIATE"};

int
db_begin(struct sq_store *st, char *err)
{
	sqlite3_stmt *s;
	int rc;

	if (st->nested)
		return RC_OK;
	pthread_mutex_lock(&write_lock);
	st->locked = 1;
	s = db_stmt(st, &sql_begin, err);
	rc = s ? db_exec_stmt(st, s, err) : RC_ERR;
	if (rc != RC_OK)
		db_unlock(st);
	return rc;
}

static const struct db_sql sql_commit = {S_COMMIT, "COMMIT"};

int
db_commit(struct sq_store *st, char *err)
{
	sqlite3_stmt *s;
	int rc;

	if (st->nested)
		return RC_OK;
	if (st->before_commit && (rc = st->before_commit(st, err)) != RC_OK)
		return rc;
	s = db_stmt(st, &sql_commit, err);
	rc = s ? db_exec_stmt(st, s, err) : RC_ERR;
	if (rc == RC_OK)
		db_unlock(st);
	return rc;
}

static const struct db_sql sql_rollback = {S_ROLLBACK, "ROLLBACK"};

void
db_rollback(struct sq_store *st)
{
	char err[ERR_LEN];
	sqlite3_stmt *s;

	if (st->nested)
		st->nested_failed = 1;
	st->nested = 0;
	st->ntouches = 0;
	if (!sqlite3_get_autocommit(st->db) && (s = db_stmt(st, &sql_rollback, err)))
		db_exec_stmt(st, s, err);
	db_unlock(st);
}

int
db_write(struct sq_store *st, sqlite3_stmt *s, char *err)
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

int
sq_begin(struct store *sb, char *err)
{
	struct sq_store *st = sq_of(sb);
	int rc = db_begin(st, err);

	st->nested_failed = 0;
	if (rc == RC_OK)
		st->nested = 1;
	return rc;
}

void
sq_rollback(struct store *sb)
{
	struct sq_store *st = sq_of(sb);
	if (st->nested)
		db_rollback(st);
	st->nested_failed = 0;
}

int
sq_commit(struct store *sb, char *err)
{
	struct sq_store *st = sq_of(sb);
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

/* ---- the connection ---- */

/* SQLite's own busy handler sleeps 1 to 100 ms at a time; a write transaction here takes
 * tens of microseconds, so wait in short steps instead, up to BUSY_MAX_MS in all. */
#define BUSY_MAX_MS 10000
static struct store_busy busy_own, *busy_ctr = &busy_own;

void
store_busy_count_in(struct store_busy *b)
{
	busy_ctr = b ? b : &busy_own;
}

const struct store_busy *
store_busy_counts(void)
{
	return busy_ctr;
}

static int
busy_wait(void *arg, int n)
{
	struct timespec ts;
	long us = n < 6 ? 25L << n : 1000; /* 25, 50 ... 800 us, then 1 ms */

	(void)arg;
	if (n > 6 + BUSY_MAX_MS) {
		busy_ctr->timeouts++;
		return 0;
	}
	if (n == 0)
		busy_ctr->waits++;
	busy_ctr->sleep_ns += (uint64_t)us * 1000;
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

/* Once per process, before the first connection: no memory statistics, which would take
 * a global mutex on every one of SQLite's allocations (a tenth of a busy writer's time). */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void
sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

struct store *
db_connect(const char *path, char *err)
{
	struct sq_store *st = calloc(1, sizeof(*st));
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
		sq_close(&st->base);
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
		sq_close(&st->base);
		return NULL;
	}
	return &st->base;
}

int
sq_checkpoint(struct store *sb, int *wal_pages, int *copied)
{
	struct sq_store *st = sq_of(sb);
	int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, wal_pages,
					   copied);

	return rc == SQLITE_OK || rc == SQLITE_BUSY ? RC_OK : RC_ERR;
}

void
sq_cache_kib(struct store *sb, int kib)
{
	struct sq_store *st = sq_of(sb);
	char sql[64];

	snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", kib);
	sqlite3_exec(st->db, sql, NULL, NULL, NULL);
}

void
sq_close(struct store *sb)
{
	struct sq_store *st = sq_of(sb);
	int i;

	if (!st)
		return;
	for (i = 0; i < S__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	pool_destroy(st->mcfg_pool);
	free(st);
}

/* ---- migrations ---- */

static const struct db_sql sql_version = {
	S_VERSION, "SELECT coalesce(max(version), 0) FROM schema_migrations"};

int
sq_version(struct store *sb, int64_t *version, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_version, err);

	if (!s)
		return RC_ERR;
	return db_int(st, s, version, err);
}

static const struct db_sql sql_migration_have = {
	S_MIGRATION_HAVE, "SELECT 1 FROM schema_migrations WHERE version = ?1"};
static const struct db_sql sql_migration_add = {
	S_MIGRATION_ADD, "INSERT INTO schema_migrations (version, name, applied_at) "
			 "VALUES (?1, ?2, ?3)"};

/* Run sql (several statements) inside the open transaction. */
static int
migrate_exec(struct sq_store *st, const char *sql, char *err)
{
	char *emsg = NULL;

	if (sqlite3_exec(st->db, sql, NULL, NULL, &emsg) == SQLITE_OK)
		return RC_OK;
	snprintf(err, ERR_LEN, "%s", emsg ? emsg : sqlite3_errmsg(st->db));
	sqlite3_free(emsg);
	return RC_ERR;
}

/* Apply migration m unless the database has it, in a write transaction of its own taken
 * like every other (db_begin()): it is checked inside, since another process may have just
 * applied it. */
static int
migrate_one(struct sq_store *st, const struct schema_migration *m, char *err)
{
	sqlite3_stmt *s;
	int64_t have;
	int rc;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	if (!(s = db_stmt(st, &sql_migration_have, err))) {
		rc = RC_ERR;
		goto fail;
	}
	sqlite3_bind_int(s, 1, m->version);
	rc = db_int(st, s, &have, err);
	if (rc == RC_NOTFOUND && (rc = migrate_exec(st, m->sql, err)) == RC_OK) {
		if (!(s = db_stmt(st, &sql_migration_add, err))) {
			rc = RC_ERR;
			goto fail;
		}
		sqlite3_bind_int(s, 1, m->version);
		bind_text(s, 2, m->name);
		sqlite3_bind_int64(s, 3, time_now_ms());
		rc = db_exec_stmt(st, s, err);
	}
	if (rc == RC_OK && (rc = db_commit(st, err)) == RC_OK)
		return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

int
sq_migrate(struct store *sb, char *err)
{
	struct sq_store *st = sq_of(sb);
	int64_t from, to;

	return sq_migrate_report(&st->base, &from, &to, err);
}

int64_t
sq_schema_latest(struct store *sb)
{
	(void)sb;
	return schema_migrations_count ? schema_migrations[schema_migrations_count - 1].version : 0;
}

int
sq_migrate_report(struct store *sb, int64_t *from, int64_t *to, char *err)
{
	struct sq_store *st = sq_of(sb);
	char why[ERR_LEN];
	size_t i;
	int rc;

	*from = *to = 0;
	if ((rc = db_begin(st, why)) == RC_OK) {
		rc = migrate_exec(st, "CREATE TABLE IF NOT EXISTS schema_migrations (version "
				  "INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT "
				  "NULL)", why);
		if (rc == RC_OK)
			rc = db_commit(st, why);
		if (rc != RC_OK)
			db_rollback(st);
	}
	if (rc == RC_OK && (rc = sq_version(&st->base, from, why)) == RC_OK &&
	    *from > sq_schema_latest(&st->base)) {
		/* a newer program wrote it: its tables may mean what this one cannot know */
		snprintf(err, ERR_LEN, "the database is at schema version %lld, newer than this "
			 "program's %lld: run the newer aichatd, or restore a backup made for this "
			 "one", (long long)*from, (long long)sq_schema_latest(&st->base));
		return RC_CONFLICT;
	}
	for (i = 0; rc == RC_OK && i < schema_migrations_count; i++)
		rc = migrate_one(st, &schema_migrations[i], why);
	if (rc == RC_OK)
		rc = sq_version(&st->base, to, why);
	if (rc != RC_OK) {
		/* "migrate: " and why fit in ERR_LEN bytes */
		snprintf(err, ERR_LEN, "migrate: %.*s", ERR_LEN - 10, why);
		return RC_ERR;
	}
	return RC_OK;
}
