/*
 * The PostgreSQL store's private header: struct pg_store, its prepared statements and the
 * helpers the files of src/lib/pg/ share. It answers exactly as the SQLite store does
 * (src/lib/sqlite/): the same ids, times, counts, order and visibility, the same rc for
 * the same case. Nothing outside this folder includes it.
 *
 * A statement is a struct pg_sql written beside the function that runs it: its slot, its
 * parameter count and its text ($1, $2 ... with explicit casts where PostgreSQL cannot
 * infer a type, e.g. "$2::text IS NULL"). pg_exec() prepares it on the connection's first
 * use (PQprepare, named "s<slot>") and keeps it for the connection's life; a connection
 * that is reset (the server went away and came back) prepares again.
 *
 * Parameters and results travel as text: integers are formatted by arg_int() and read by
 * col_int(). Text bound with arg_text() is mended first when it is not well-formed UTF-8
 * or holds a NUL byte (U+FFFD in place of each bad part, as the SQLite store's
 * bind_clean()), since PostgreSQL refuses both.
 *
 * The files call one another in one direction only, as in src/lib/sqlite/: db.c calls
 * none of them; conv.c calls db.c; post.c calls conv.c; msg.c calls post.c and conv.c;
 * mcfg.c calls db.c; run.c calls msg.c, post.c, conv.c and mcfg.c; admin.c calls db.c;
 * ops.c names them all.
 */
#ifndef AICHATD_PG_DB_H
#define AICHATD_PG_DB_H

#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "store.h"
#include "store-impl.h"

struct pool;

enum pg_stmt {
	/* conv.c */
	P_CONV_GET,
	P_CONV_EXISTS,
	P_CONV_INSERT,
	P_CONV_LIST_ALL,
	P_CONV_LIST_USER,
	P_CONV_COUNT_ALL,
	P_CONV_COUNT_USER,
	P_CONV_RENAME,
	P_CONV_DELETE,
	/* post.c */
	P_MSG_INSERT,
	P_RUN_INSERT,
	P_CONV_TOUCH,
	/* msg.c */
	P_MSG_GET,
	P_MSG_GET_BY_MSGID,
	P_MSG_LIST,
	P_MSG_LIST_ALL,
	P_MSG_COUNT,
	P_MSG_COUNT_ALL,
	P_MSG_LATEST,
	P_MSG_EDIT,
	P_MSG_DELETE,
	P_MSG_DELETE_TOUCH,
	P_PAIRS,
	P_PAIRS_COUNT,
	/* mcfg.c: model configs and the log */
	P_MCFG_LIST,
	P_MCFG_GET,
	P_MCFG_ENSURE,
	P_MCFG_UPDATE,
	P_LOG_ADD,
	P_LOG_PRUNE,
	P_LOG_LIST,
	P_LOG_COUNT,
	/* run.c */
	P_RUN_LIST,
	P_RUN_COUNT,
	P_RUNS_OPEN,
	P_RUN_JOB,
	P_RUN_HISTORY,
	P_RUN_STATUS,
	P_RUN_OF_REPLY,
	P_RUN_RESET,
	P_RUN_END,
	P_RUN_MSG_END,
	P_PLAN_INSERT,
	P_RUN_RESULT,
	P_RUN_CLAIM,
	P_RUN_RENEW,
	P_RUNS_ORPHANED,
	/* admin.c */
	P_USERS,
	P_PURGE_PLANS,
	P_PURGE_RUNS,
	P_PURGE_MSGS,
	P_PURGE_CONVS,
	P_CHOWN_MSGS_ONE,
	P_CHOWN_ONE,
	P_CHOWN_MSGS_ALL,
	P_CHOWN_ALL,
	/* spare slots: a file may add its own above; keep P__COUNT last */
	P__COUNT
};

/* A statement: its slot, how many parameters it takes, and its SQL. */
struct pg_sql {
	enum pg_stmt id;
	int nparams;
	const char *text;
};

/* One connection (store.h: one thread at a time). */
struct pg_store {
	struct store base; /* first: store.c dispatches through base.ops */
	PGconn *conn;
	char *url;
	unsigned char prepared[P__COUNT]; /* 1: prepared on this connection */
	int nested;        /* store_begin() is open: the calls inside join its transaction */
	int nested_failed; /* ... and a call inside failed and rolled it back */
	int in_txn;        /* a transaction is open (db_begin() ran, no commit or rollback yet) */
	/* run by db_commit() before COMMIT: post.c's touches_apply() once touches are put
	 * off (store_defer_touches()), else NULL */
	int (*before_commit)(struct pg_store *st, char *err);
	/* post.c: conversation touches put off to the commit; a rollback drops them */
	int defer_touches;
	int ntouches;
	struct pg_touch {
		int64_t seq, now;
		int delta;
	} touches[256];
};

static inline struct pg_store *
pg_of(struct store *sb)
{
	return (struct pg_store *)sb;
}

/* ---- db.c: parameters ---- */

#define PG_MAX_ARGS 16

/* The parameters of one statement, in order: built with arg_*(), consumed (and freed) by
 * pg_exec(). Declare with `struct pg_args a = {0};`. */
struct pg_args {
	int n;
	const char *v[PG_MAX_ARGS];
	char num[PG_MAX_ARGS][24]; /* formatted integers */
	char *owned[PG_MAX_ARGS];  /* mended copies, freed by pg_exec() */
	int oom;                   /* a copy could not be made: pg_exec() fails with RC_NOMEM */
};
/* Text (NULL binds NULL), mended when it is not well-formed UTF-8 or holds NUL bytes. */
void arg_text(struct pg_args *a, const char *v);
/* Text of len bytes (not NUL-terminated), mended likewise. */
void arg_textn(struct pg_args *a, const char *v, size_t len);
void arg_int(struct pg_args *a, int64_t v);
void arg_null(struct pg_args *a);

/* ---- db.c: running statements ---- */

/* Run q with a's parameters (a may be NULL for none). Returns the result, whose status is
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, for the caller to PQclear(); or NULL with *rc and
 * err filled: RC_CONFLICT for a unique violation (SQLSTATE 23505), RC_UNAVAIL when the
 * server cannot be reached (the connection is reset on the next call, outside a
 * transaction), RC_NOMEM, else RC_ERR. err names what failed ("what") and the server's
 * message. A failure inside a transaction leaves it aborted: the caller rolls back (as
 * with SQLite, a failure inside store_begin() ends the whole transaction). */
PGresult *pg_exec(struct pg_store *st, const struct pg_sql *q, struct pg_args *a,
		  const char *what, int *rc, char *err);
/* Run a statement that returns no rows, or whose rows do not matter: RC_OK or as above.
 * *changed (may be NULL): the rows it changed (PQcmdTuples). */
int pg_do(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
	  int64_t *changed, char *err);
/* A single-integer query into *out; RC_NOTFOUND when it returns no row. */
int pg_int(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
	   int64_t *out, char *err);
/* Run SQL text with no parameters and no prepared statement (transactions, savepoints,
 * migrations): RC_OK or as pg_exec(). */
int pg_simple(struct pg_store *st, const char *sql, const char *what, char *err);

/* ---- db.c: reading results ---- */

/* Column i of row r as text in the pool (NULL for SQL NULL, or when the pool is out of
 * memory). */
char *col_text(struct pool *p, const PGresult *res, int r, int i);
/* Column i of row r as an integer (0 for NULL); col_null() says whether it is NULL. A
 * boolean column reads 1 for 't'. */
int64_t col_int(const PGresult *res, int r, int i);
int col_null(const PGresult *res, int r, int i);

/* Read every row of res (at most limit) into a pool array of elements of size sz, each
 * filled by fill(): *rows (from p) and *n. RC_OK or RC_NOMEM. Does not clear res. */
typedef void row_fill(struct pool *p, const PGresult *res, int r, void *row);
int read_rows(struct pool *p, const PGresult *res, int64_t limit, size_t sz, row_fill *fill,
	      void **rows, int *n);

/* ---- db.c: transactions ---- */

/* Begin a transaction, unless the caller's store_begin() has one open. */
int db_begin(struct pg_store *st, char *err);
/* Commit what db_begin() opened, st->before_commit first; on failure the caller rolls
 * back. A no-op inside store_begin(). */
int db_commit(struct pg_store *st, char *err);
/* Roll back the open transaction (a nested failure ends the outer one too) and drop the
 * touches put off. */
void db_rollback(struct pg_store *st);
/* Run one write statement in a transaction of its own unless one is open (PostgreSQL's
 * autocommit does this; kept so that a write inside store_begin() joins it). */
int db_write(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
	     int64_t *changed, char *err);

/* ---- conv.c ---- */

/* The columns conv_row() reads, in its order, and the visibility of a conversation c to
 * the owner bound as $2 (NULL: every owner). */
#define PG_CONV_COLS                                                                          \
	"c.seq, c.id, c.user_id, c.title, c.model_config, c.msg_count, c.created_at, "        \
	"c.updated_at"
#define PG_VISIBLE_CONV "c.is_deleted = 0 AND ($2::text IS NULL OR c.user_id = $2::text)"

/* Read conversation columns from column `first` of row r (PG_CONV_COLS order). */
void conv_row(struct pool *p, const PGresult *res, int r, int first, struct conv *c);
/* Insert a conversation inside the caller's transaction: a new UUID when id is NULL;
 * RC_CONFLICT when the id is taken. */
int conv_insert(struct pg_store *st, struct pool *p, const char *id, const char *user_id,
		const char *title, const char *model_config, int64_t now, struct conv *out,
		char *err);
/* Count with count, then read a page with list, both keyed by conversation c's seq as
 * $1 (list takes the limit as $2 and the offset as $3). */
int conv_page(struct pg_store *st, struct pool *p, const struct pg_sql *count,
	      const struct pg_sql *list, const struct conv *c, struct page pg, size_t sz,
	      row_fill *fill, void **rows, int *n, int64_t *total, char *err);

/* ---- msg.c ---- */

/* The columns msg_row() reads, in its order (messages m, conversations c). */
#define PG_MSG_COLS                                                                           \
	"m.id, m.msg_id, c.id, m.user_id, m.role, m.content, m.error, m.metadata, "           \
	"m.unfinished, m.visible, m.created_at, m.updated_at"

void msg_row(struct pool *p, const PGresult *res, int r, int first, struct msg *m);

/* ---- post.c ---- */

/* Change conversation seq's time (to now, if later) and count (by delta): at once, or at
 * the commit when touches are put off and a transaction is open. */
int post_touch(struct pg_store *st, int64_t seq, int64_t now, int delta, char *err);

/* ---- the implementation of each function of store.h, by file ---- */

/* db.c */
struct store *pg_connect(const char *url, char *err);
int64_t pg_schema_latest(struct store *sb);
void pg_close(struct store *sb);
int pg_checkpoint(struct store *sb, int *wal_pages, int *copied);
void pg_cache_kib(struct store *sb, int kib);
int pg_begin(struct store *sb, char *err);
int pg_commit(struct store *sb, char *err);
void pg_rollback(struct store *sb);
int pg_migrate(struct store *sb, char *err);
int pg_migrate_report(struct store *sb, int64_t *from, int64_t *to, char *err);
int pg_version(struct store *sb, int64_t *version, char *err);
/* conv.c */
int pg_conv_get(struct store *sb, struct pool *p, const char *id, const char *owner,
		struct conv *out, char *err);
int pg_conv_taken(struct store *sb, const char *id, char *err);
int pg_conv_create(struct store *sb, struct pool *p, const char *id, const char *user_id,
		   const char *title, const char *model_config, struct conv *out, char *err);
int pg_conv_list(struct store *sb, struct pool *p, const char *user, struct page pg,
		 struct conv **rows, int *n, int64_t *total, char *err);
int pg_conv_rename(struct store *sb, const char *id, const char *owner, const char *title,
		   char *err);
int pg_conv_delete(struct store *sb, const char *id, const char *owner, char *err);
/* post.c */
void pg_defer_touches(struct store *sb);
int pg_post(struct store *sb, struct pool *p, const struct store_post *in,
	    struct store_posted *out, char *err);
void pg_post_batch(struct store *sb, struct store_post_op *ops);
int pg_post_batch_in(struct store *sb, struct store_post_op *ops);
/* msg.c */
int pg_msg_get(struct store *sb, struct pool *p, int64_t id, const char *owner,
	       struct msg *out, char *err);
int pg_msg_get_by_msgid(struct store *sb, struct pool *p, const char *msg_id,
			const char *owner, struct msg *out, char *err);
int pg_msg_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
		int all, struct msg **rows, int *n, int64_t *total, char *err);
int pg_msg_latest(struct store *sb, struct pool *p, const struct conv *c, int limit,
		  struct msg **rows, int *n, char *err);
int pg_msg_edit(struct store *sb, int64_t id, const char *content, char *err);
int pg_msg_delete(struct store *sb, int64_t id, char *err);
int pg_pairs(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
	     struct pair **rows, int *n, int64_t *total, char *err);
/* run.c */
int pg_run_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
		struct run **rows, int *n, int64_t *total, char *err);
int pg_runs_open(struct store *sb, struct pool *p, int64_t after, int limit, int64_t **ids,
		 int *n, char *err);
int pg_run_job(struct store *sb, struct pool *p, int64_t run_id, const char *default_cfg,
	       struct run_job *out, char *err);
int pg_post_job(struct store *sb, struct pool *p, const struct store_post *in,
		const struct store_posted *out, const char *default_cfg, struct run_job *job,
		char *err);
int pg_run_history(struct store *sb, struct pool *p, struct run_job *job, int window,
		   char *err);
int pg_run_status(struct store *sb, int64_t run_id, int *status, char *err);
int pg_run_of_reply(struct store *sb, int64_t ai_msg, int64_t *run_id, int *status,
		    char *err);
int pg_run_reset(struct store *sb, int64_t ai_msg, char *err);
int pg_run_claim(struct store *sb, int64_t run_id, const char *owner, int64_t lease_ms,
		 char *err);
int pg_runs_renew(struct store *sb, const char *owner, int64_t lease_ms, int64_t *held,
		  char *err);
int pg_runs_orphaned(struct store *sb, struct pool *p, const char *owner, int64_t lease_ms,
		     int limit, int64_t **ids, int *n, char *err);
int pg_run_finish(struct store *sb, const struct run_end *e, char *err);
int pg_run_result(struct store *sb, struct pool *p, int64_t run_id, struct run_result *out,
		  char *err);
/* mcfg.c */
int pg_mcfg_list(struct store *sb, struct pool *p, struct mcfg **rows, int *n, char *err);
int pg_mcfg_get(struct store *sb, struct pool *p, const char *id, struct mcfg *out,
		char *err);
int pg_mcfg_ensure(struct store *sb, const struct mcfg *m, char *err);
int pg_mcfg_update(struct store *sb, const struct mcfg *m, int64_t *updated_at, char *err);
int pg_log(struct store *sb, const char *level, const char *message);
int pg_log_list(struct store *sb, struct pool *p, const char *level, int64_t from_ms,
		int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total,
		char *err);
/* admin.c */
int pg_backup(struct store *sb, const char *path, int overwrite, int64_t *bytes, char *err);
int pg_users(struct store *sb, void (*each)(void *arg, const struct store_user *u),
	     void *arg, char *err);
int pg_purge(struct store *sb, int64_t before_ms, int dry_run, struct store_purged *out,
	     char *err);
int pg_chown(struct store *sb, const char *conv_id, const char *from_owner,
	     const char *new_owner, int64_t *moved, char *err);

#endif
