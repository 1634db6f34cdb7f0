/*
 * The SQLite store's private header: struct store, its prepared statements and the helpers
 * the files of src/lib/sqlite/ share. Nothing outside this folder includes it; the rest of
 * the code sees store.h only.
 *
 * A statement is a struct db_sql written beside the function that runs it: its slot in
 * st->stmt[] and its text. db_stmt() prepares it on the connection's first use and keeps it
 * for the connection's life. The slots are listed here, grouped by the file that owns
 * them; each slot is named by exactly one struct db_sql.
 *
 * The files call one another in one direction only (scripts/check-layout checks it):
 * db.c calls none of them; conv.c calls db.c; post.c calls conv.c; msg.c calls post.c
 * (the touches) and conv.c; mcfg.c calls db.c; run.c calls msg.c, post.c, conv.c and
 * mcfg.c; admin.c calls db.c. db.c reaches post.c's group commit only through
 * st->before_commit.
 */
#ifndef AICHATD_SQLITE_DB_H
#define AICHATD_SQLITE_DB_H

#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "store.h"
#include "store-impl.h"

struct pool;

enum stmt_id {
	/* db.c: transactions and migrations */
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_VERSION,
	S_MIGRATION_HAVE,
	S_MIGRATION_ADD,
	/* conv.c */
	S_CONV_GET,
	S_CONV_EXISTS,
	S_CONV_INSERT,
	S_CONV_LIST_ALL,
	S_CONV_LIST_USER,
	S_CONV_COUNT_ALL,
	S_CONV_COUNT_USER,
	S_CONV_RENAME,
	S_CONV_DELETE,
	/* post.c */
	S_MSG_INSERT,
	S_RUN_INSERT,
	S_CONV_TOUCH,
	/* msg.c */
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
	/* mcfg.c: model configs and the log */
	S_MCFG_COUNT,
	S_MCFG_LIST,
	S_MCFG_GET,
	S_MCFG_ENSURE,
	S_MCFG_UPDATE,
	S_LOG_ADD,
	S_LOG_PRUNE,
	S_LOG_LIST,
	S_LOG_COUNT,
	/* run.c */
	S_RUN_LIST,
	S_RUN_COUNT,
	S_RUNS_OPEN,
	S_RUN_JOB,
	S_DATA_VERSION,
	S_RUN_HISTORY,
	S_RUN_STATUS,
	S_RUN_OF_REPLY,
	S_RUN_RESET,
	S_RUN_END,
	S_RUN_MSG_END,
	S_PLAN_INSERT,
	S_RUN_RESULT,
	/* admin.c */
	S_USERS,
	S_PURGE_PLANS,
	S_PURGE_RUNS,
	S_PURGE_MSGS,
	S_PURGE_CONVS,
	S_CHOWN_MSGS_ONE,
	S_CHOWN_ONE,
	S_CHOWN_MSGS_ALL,
	S_CHOWN_ALL,
	S__COUNT
};

/* A statement: its slot, and the SQL prepared into it on first use. */
struct db_sql {
	enum stmt_id id;
	const char *text;
};

/* One connection (store.h: one thread at a time). */
struct sq_store {
	struct store base; /* first: store.c dispatches through base.ops */
	sqlite3 *db;
	sqlite3_stmt *stmt[S__COUNT];
	int nested;        /* store_begin() is open: the calls inside join its transaction */
	int nested_failed; /* ... and a call inside failed and rolled it back */
	int locked;        /* this connection holds db.c's write lock */
	/* run by db_commit() before COMMIT: post.c's touches_apply() once touches are put
	 * off (store_defer_touches()), else NULL */
	int (*before_commit)(struct sq_store *st, char *err);
	/* post.c: conversation touches put off to the commit; a rollback drops them */
	int defer_touches;
	int ntouches;
	struct touch {
		int64_t seq, now;
		int delta;
	} touches[256];
	/* run.c: the model config the last job read (store_post_job()), in mcfg_pool, while
	 * the database's data_version stays mcfg_version */
	struct pool *mcfg_pool;
	struct mcfg mcfg;
	int64_t mcfg_version;
};

/* The SQLite connection of a struct store (st->ops is sq_ops). */
static inline struct sq_store *
sq_of(struct store *sb)
{
	return (struct sq_store *)sb;
}

/* ops.c: the table of the functions below, and db.c's opener that it wraps. */
extern const struct store_ops sq_ops;
struct store *db_connect(const char *path, char *err);

/* The implementation of each function of store.h (store.h says what each does), in the
 * file the comments of enum stmt_id name. */
int64_t sq_schema_latest(struct store *sb);
void sq_close(struct store *sb);
int sq_checkpoint(struct store *sb, int *wal_pages, int *copied);
void sq_defer_touches(struct store *sb);
void sq_cache_kib(struct store *sb, int kib);
int sq_begin(struct store *sb, char *err);
int sq_commit(struct store *sb, char *err);
void sq_rollback(struct store *sb);
int sq_migrate(struct store *sb, char *err);
int sq_migrate_report(struct store *sb, int64_t *from, int64_t *to, char *err);
int sq_version(struct store *sb, int64_t *version, char *err);
int sq_conv_get(struct store *sb, struct pool *p, const char *id, const char *owner, struct conv *out, char *err);
int sq_conv_taken(struct store *sb, const char *id, char *err);
int sq_conv_create(struct store *sb, struct pool *p, const char *id, const char *user_id, const char *title, const char *model_config, struct conv *out, char *err);
int sq_conv_list(struct store *sb, struct pool *p, const char *user, struct page pg, struct conv **rows, int *n, int64_t *total, char *err);
int sq_conv_rename(struct store *sb, const char *id, const char *owner, const char *title, char *err);
int sq_conv_delete(struct store *sb, const char *id, const char *owner, char *err);
int sq_post(struct store *sb, struct pool *p, const struct store_post *in, struct store_posted *out, char *err);
void sq_post_batch(struct store *sb, struct store_post_op *ops);
int sq_post_batch_in(struct store *sb, struct store_post_op *ops);
int sq_msg_get(struct store *sb, struct pool *p, int64_t id, const char *owner, struct msg *out, char *err);
int sq_msg_get_by_msgid(struct store *sb, struct pool *p, const char *msg_id, const char *owner, struct msg *out, char *err);
int sq_msg_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg, int all, struct msg **rows, int *n, int64_t *total, char *err);
int sq_msg_latest(struct store *sb, struct pool *p, const struct conv *c, int limit, struct msg **rows, int *n, char *err);
int sq_msg_edit(struct store *sb, int64_t id, const char *content, char *err);
int sq_msg_delete(struct store *sb, int64_t id, char *err);
int sq_pairs(struct store *sb, struct pool *p, const struct conv *c, struct page pg, struct pair **rows, int *n, int64_t *total, char *err);
int sq_run_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg, struct run **rows, int *n, int64_t *total, char *err);
int sq_runs_open(struct store *sb, struct pool *p, int64_t after, int limit, int64_t **ids, int *n, char *err);
int sq_run_job(struct store *sb, struct pool *p, int64_t run_id, const char *default_cfg, struct run_job *out, char *err);
int sq_post_job(struct store *sb, struct pool *p, const struct store_post *in, const struct store_posted *out, const char *default_cfg, struct run_job *job, char *err);
int sq_run_history(struct store *sb, struct pool *p, struct run_job *job, int window, char *err);
int sq_run_status(struct store *sb, int64_t run_id, int *status, char *err);
int sq_run_claim(struct store *sb, int64_t run_id, const char *owner, int64_t lease_ms, char *err);
int sq_runs_renew(struct store *sb, const char *owner, int64_t lease_ms, int64_t *held, char *err);
int sq_runs_orphaned(struct store *sb, struct pool *p, const char *owner, int64_t lease_ms, int limit, int64_t **ids, int *n, char *err);
int sq_run_of_reply(struct store *sb, int64_t ai_msg, int64_t *run_id, int *status, char *err);
int sq_run_reset(struct store *sb, int64_t ai_msg, char *err);
int sq_run_finish(struct store *sb, const struct run_end *e, char *err);
int sq_run_result(struct store *sb, struct pool *p, int64_t run_id, struct run_result *out, char *err);
int sq_mcfg_list(struct store *sb, struct pool *p, struct mcfg **rows, int *n, char *err);
int sq_mcfg_get(struct store *sb, struct pool *p, const char *id, struct mcfg *out, char *err);
int sq_mcfg_ensure(struct store *sb, const struct mcfg *m, char *err);
int sq_mcfg_update(struct store *sb, const struct mcfg *m, int64_t *updated_at, char *err);
int sq_log(struct store *sb, const char *level, const char *message);
int sq_log_list(struct store *sb, struct pool *p, const char *level, int64_t from_ms, int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total, char *err);
int sq_backup(struct store *sb, const char *path, int overwrite, int64_t *bytes, char *err);
int sq_users(struct store *sb, void (*each)(void *arg, const struct store_user *u), void *arg, char *err);
int sq_purge(struct store *sb, int64_t before_ms, int dry_run, struct store_purged *out, char *err);
int sq_chown(struct store *sb, const char *conv_id, const char *from_owner, const char *new_owner, int64_t *moved, char *err);

/* ---- db.c: statements, errors, binding and reading ---- */

/* Fill err with what failed and SQLite's message; returns RC_ERR. */
int db_fail(struct sq_store *st, char *err, const char *what);
/* Prepare q into its slot (db_stmt()'s first use); NULL and err on failure. */
sqlite3_stmt *db_prepare(struct sq_store *st, const struct db_sql *q, char *err);

/* q's prepared statement, reset and unbound, ready for binding; NULL on failure. Inline:
 * every store call runs it, and after the first it is two SQLite calls. */
static inline sqlite3_stmt *
db_stmt(struct sq_store *st, const struct db_sql *q, char *err)
{
	sqlite3_stmt *s = st->stmt[q->id];

	if (!s)
		return db_prepare(st, q, err);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

/* Bind v as text that outlives the statement's step (SQLITE_STATIC); NULL binds NULL. */
static inline void
bind_text(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* Bind v as text as it is when it is well-formed UTF-8, else a copy with U+FFFD in the
 * place of each ill-formed part (and NUL byte): nothing broken is written. */
void bind_clean(sqlite3_stmt *s, int i, const char *v);
/* A text column into the pool; NULL for NULL. Text that is not well-formed UTF-8 comes
 * back mended (and is logged on stderr, at most once a second). */
char *col_text(struct pool *p, sqlite3_stmt *s, int i);

/* Run a statement that returns no rows (or whose rows do not matter), then reset it. */
int db_exec_stmt(struct sq_store *st, sqlite3_stmt *s, char *err);
/* Run one write statement in a transaction of its own unless one is open, so that it
 * queues on the write lock like every other write. */
int db_write(struct sq_store *st, sqlite3_stmt *s, char *err);
/* A single-integer query into *out; RC_NOTFOUND when it returns no row. */
int db_int(struct sq_store *st, sqlite3_stmt *s, int64_t *out, char *err);
/* Step a statement that yields at most one row. RC_OK: the row is there to read, and the
 * caller resets s once it has read it. RC_NOTFOUND when there is none, RC_ERR on failure
 * (err names what, with SQLite's message): s is reset. */
int db_row(struct sq_store *st, sqlite3_stmt *s, const char *what, char *err);

/* Read up to limit rows of a statement already bound into a pool array of elements of
 * size sz, each filled by fill(): *rows (from p) and *n. */
typedef void row_fill(struct pool *p, sqlite3_stmt *s, void *row);
int read_rows(struct sq_store *st, struct pool *p, sqlite3_stmt *s, int64_t limit, size_t sz,
	      row_fill *fill, void **rows, int *n, char *err);

/* ---- db.c: transactions ---- */

/* Begin a write transaction (taking the process's write lock), unless the caller's
 * store_begin() has one open. */
int db_begin(struct sq_store *st, char *err);
/* Commit what db_begin() opened, st->before_commit first; on failure the caller rolls
 * back. A no-op inside store_begin(). */
int db_commit(struct sq_store *st, char *err);
/* Roll back the open transaction (a nested failure ends the outer one too), drop the
 * touches put off, release the write lock. */
void db_rollback(struct sq_store *st);

/* ---- conv.c ---- */

/* The columns conv_row() reads, in its order, and the visibility of a conversation c to
 * the owner bound as ?2 (NULL: every owner). */
#define CONV_COLS "seq, id, user_id, title, model_config, msg_count, created_at, updated_at"
#define VISIBLE_CONV "c.is_deleted = 0 AND (?2 IS NULL OR c.user_id = ?2)"

void conv_row(struct pool *p, sqlite3_stmt *s, struct conv *c);
/* Insert a conversation inside the caller's transaction: a new UUID when id is NULL;
 * RC_CONFLICT when the id is taken. */
int conv_insert(struct sq_store *st, struct pool *p, const char *id, const char *user_id,
		const char *title, const char *model_config, int64_t now, struct conv *out,
		char *err);
/* Count with count, then read a page with list, both keyed by conversation c's seq as
 * ?1 (list takes the limit as ?2 and the offset as ?3). */
int conv_page(struct sq_store *st, struct pool *p, const struct db_sql *count,
	      const struct db_sql *list, const struct conv *c, struct page pg, size_t sz,
	      row_fill *fill, void **rows, int *n, int64_t *total, char *err);

/* ---- msg.c ---- */

/* The columns msg_row() reads, from the first, in its order (messages m, conversations c). */
#define MSG_COLS                                                                              \
	"m.id, m.msg_id, c.id, m.user_id, m.role, m.content, m.error, m.metadata, "           \
	"m.unfinished, m.visible, m.created_at, m.updated_at"

void msg_row(struct pool *p, sqlite3_stmt *s, struct msg *m);

/* RUN_RUNNING (store.h) as the statements spell it: a literal, not a parameter, so that
 * the partial index runs_open (schema/001_init.sql, WHERE status = 0) serves them. */
#define SQL_RUN_RUNNING "0"
_Static_assert(RUN_RUNNING == 0, "SQL_RUN_RUNNING is RUN_RUNNING");

/* ---- post.c ---- */

/* Change conversation seq's time (to now, if later) and count (by delta): at once, or at
 * the commit when touches are put off and a transaction is open. */
int post_touch(struct sq_store *st, int64_t seq, int64_t now, int delta, char *err);

#endif
