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
struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[S__COUNT];
	int nested;        /* store_begin() is open: the calls inside join its transaction */
	int nested_failed; /* ... and a call inside failed and rolled it back */
	int locked;        /* this connection holds db.c's write lock */
	/* run by db_commit() before COMMIT: post.c's touches_apply() once touches are put
	 * off (store_defer_touches()), else NULL */
	int (*before_commit)(struct store *st, char *err);
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

/* ---- db.c: statements, errors, binding and reading ---- */

/* Fill err with what failed and SQLite's message; returns RC_ERR. */
int db_fail(struct store *st, char *err, const char *what);
/* Prepare q into its slot (db_stmt()'s first use); NULL and err on failure. */
sqlite3_stmt *db_prepare(struct store *st, const struct db_sql *q, char *err);

/* q's prepared statement, reset and unbound, ready for binding; NULL on failure. Inline:
 * every store call runs it, and after the first it is two SQLite calls. */
static inline sqlite3_stmt *
db_stmt(struct store *st, const struct db_sql *q, char *err)
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
int db_exec_stmt(struct store *st, sqlite3_stmt *s, char *err);
/* Run one write statement in a transaction of its own unless one is open, so that it
 * queues on the write lock like every other write. */
int db_write(struct store *st, sqlite3_stmt *s, char *err);
/* A single-integer query into *out; RC_NOTFOUND when it returns no row. */
int db_int(struct store *st, sqlite3_stmt *s, int64_t *out, char *err);
/* Step a statement that yields at most one row. RC_OK: the row is there to read, and the
 * caller resets s once it has read it. RC_NOTFOUND when there is none, RC_ERR on failure
 * (err names what, with SQLite's message): s is reset. */
int db_row(struct store *st, sqlite3_stmt *s, const char *what, char *err);

/* Read up to limit rows of a statement already bound into a pool array of elements of
 * size sz, each filled by fill(): *rows (from p) and *n. */
typedef void row_fill(struct pool *p, sqlite3_stmt *s, void *row);
int read_rows(struct store *st, struct pool *p, sqlite3_stmt *s, int64_t limit, size_t sz,
	      row_fill *fill, void **rows, int *n, char *err);

/* ---- db.c: transactions ---- */

/* Begin a write transaction (taking the process's write lock), unless the caller's
 * store_begin() has one open. */
int db_begin(struct store *st, char *err);
/* Commit what db_begin() opened, st->before_commit first; on failure the caller rolls
 * back. A no-op inside store_begin(). */
int db_commit(struct store *st, char *err);
/* Roll back the open transaction (a nested failure ends the outer one too), drop the
 * touches put off, release the write lock. */
void db_rollback(struct store *st);

/* ---- conv.c ---- */

/* The columns conv_row() reads, in its order, and the visibility of a conversation c to
 * the owner bound as ?2 (NULL: every owner). */
#define CONV_COLS "seq, id, user_id, title, model_config, msg_count, created_at, updated_at"
#define VISIBLE_CONV "c.is_deleted = 0 AND (?2 IS NULL OR c.user_id = ?2)"

void conv_row(struct pool *p, sqlite3_stmt *s, struct conv *c);
/* Insert a conversation inside the caller's transaction: a new UUID when id is NULL;
 * RC_CONFLICT when the id is taken. */
int conv_insert(struct store *st, struct pool *p, const char *id, const char *user_id,
		const char *title, const char *model_config, int64_t now, struct conv *out,
		char *err);
/* Count with count, then read a page with list, both keyed by conversation c's seq as
 * ?1 (list takes the limit as ?2 and the offset as ?3). */
int conv_page(struct store *st, struct pool *p, const struct db_sql *count,
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
int post_touch(struct store *st, int64_t seq, int64_t now, int delta, char *err);

#endif
