/*
 * The PostgreSQL store's connection: open (with its timeouts and keepalives), reset after
 * the server went away, close; the parameters, statements and results every file of
 * src/lib/pg/ uses (db.h); transactions; migrations under an advisory lock; and what
 * PostgreSQL has no use for (checkpoints, the page cache).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <poll.h>
#include <libpq-fe.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "schema.h"
#include "store.h"
#include "db.h"

/* ---- parameters ---- */

/* The next parameter's index, or -1 when the statement has PG_MAX_ARGS already
 * (oom -1: pg_exec() then fails). */
static int
arg_slot(struct pg_args *a)
{
	if (a->n >= PG_MAX_ARGS) {
		a->oom = -1;
		return -1;
	}
	a->owned[a->n] = NULL;
	return a->n++;
}

void
arg_null(struct pg_args *a)
{
	int i = arg_slot(a);

	if (i >= 0)
		a->v[i] = NULL;
}

void
arg_int(struct pg_args *a, int64_t v)
{
	int i = arg_slot(a);

	if (i < 0)
		return;
	snprintf(a->num[i], sizeof(a->num[i]), "%lld", (long long)v);
	a->v[i] = a->num[i];
}

/* A NUL-terminated copy of v[0..len), mended (utf8_mend) unless it is well-formed UTF-8
 * without NUL bytes. */
static char *
text_copy(const char *v, size_t len)
{
	size_t n;
	char *m;

	if (!memchr(v, '\0', len) && utf8_valid(v, len)) {
		if ((m = malloc(len + 1))) {
			memcpy(m, v, len);
			m[len] = '\0';
		}
		return m;
	}
	n = utf8_mended_len(v, len);
	if ((m = malloc(n + 1)))
		utf8_mend(m, n + 1, v, len);
	return m;
}

void
arg_textn(struct pg_args *a, const char *v, size_t len)
{
	int i = arg_slot(a);

	if (i < 0)
		return;
	a->v[i] = NULL;
	if (!v)
		return;
	if (!(a->owned[i] = text_copy(v, len)))
		a->oom = 1;
	a->v[i] = a->owned[i];
}

void
arg_text(struct pg_args *a, const char *v)
{
	size_t len;
	int i;

	if (!v || (utf8_valid(v, len = strlen(v)))) {
		/* as it is: the common case, no copy */
		if ((i = arg_slot(a)) >= 0)
			a->v[i] = v;
		return;
	}
	arg_textn(a, v, len);
}

static void
args_free(struct pg_args *a)
{
	int i;

	if (!a)
		return;
	for (i = 0; i < a->n; i++) {
		free(a->owned[i]);
		a->owned[i] = NULL;
	}
	a->n = 0;
}

/* ---- the connection and its failures ---- */

/* The server's message without its trailing newline, after what failed. */
static void
fail_msg(char *err, const char *what, const char *msg)
{
	size_t n = msg ? strlen(msg) : 0;

	while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	snprintf(err, ERR_LEN, "%s: %.*s", what, (int)n, msg ? msg : "");
	utf8_cut(err, ERR_LEN - 1);
}

static int
unreachable(struct pg_store *st, char *err)
{
	char why[ERR_LEN];

	fail_msg(why, "database unreachable", PQerrorMessage(st->conn));
	snprintf(err, ERR_LEN, "%s", why);
	return RC_UNAVAIL;
}

/* Every session starts with these: a statement that runs longer is cancelled (nothing
 * waits forever on a lock or a stuck server). */
#define SESSION_SETUP "SET statement_timeout = 30000"

static int
session_setup(struct pg_store *st, char *err)
{
	PGresult *res = PQexec(st->conn, SESSION_SETUP);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		fail_msg(err, "configure the session", PQresultErrorMessage(res));
	PQclear(res);
	return ok ? RC_OK : RC_ERR;
}

/* Whether an idle connection is still there: a server that went away (a restart, an
 * administrator's pg_terminate_backend) has sent its goodbye and closed the socket, which
 * is then readable; reading it marks the connection broken. One poll(), no round trip, so
 * that the first statement after the server came back does not fail on a dead session
 * (and no statement is ever sent twice). */
static void
conn_check_idle(struct pg_store *st)
{
	struct pollfd pfd = {PQsocket(st->conn), POLLIN, 0};
	int i;

	/* the goodbye (an error message) is read first, the end of the stream after it */
	for (i = 0; i < 4 && pfd.fd >= 0 && poll(&pfd, 1, 0) > 0; i++)
		if (!PQconsumeInput(st->conn) || PQstatus(st->conn) != CONNECTION_OK)
			break; /* a notice is kept for later; EOF breaks the connection */
}

/* Ready to run a statement: RC_OK, or RC_UNAVAIL when the connection is broken. Outside a
 * transaction, a broken connection is reset once (its prepared statements are gone with
 * the old session); inside one, what it did is lost and the caller rolls back. */
static int
conn_ready(struct pg_store *st, char *err)
{
	if (!st->in_txn && !st->nested && PQstatus(st->conn) == CONNECTION_OK)
		conn_check_idle(st);
	if (PQstatus(st->conn) == CONNECTION_OK)
		return RC_OK;
	if (st->in_txn || st->nested)
		return unreachable(st, err);
	PQreset(st->conn);
	memset(st->prepared, 0, sizeof(st->prepared));
	if (PQstatus(st->conn) != CONNECTION_OK)
		return unreachable(st, err);
	return session_setup(st, err);
}

/* The rc for a failed result res (NULL: none came back) and its message in err. */
static int
result_rc(struct pg_store *st, const PGresult *res, const char *what, char *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(st->conn) != CONNECTION_OK)
		return unreachable(st, err);
	fail_msg(err, what, res ? PQresultErrorMessage(res) : PQerrorMessage(st->conn));
	if (!res && !state)
		return RC_NOMEM; /* libpq could not allocate a result */
	if (state && strcmp(state, "23505") == 0)
		return RC_CONFLICT;
	return RC_ERR;
}

static int
prepare(struct pg_store *st, const struct pg_sql *q, const char *what, char *err)
{
	char name[16];
	PGresult *res;
	int rc = RC_OK;

	snprintf(name, sizeof(name), "s%d", (int)q->id);
	res = PQprepare(st->conn, name, q->text, q->nparams, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = result_rc(st, res, what, err);
	else
		st->prepared[q->id] = 1;
	PQclear(res);
	return rc;
}

PGresult *
pg_exec(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
	int *rc, char *err)
{
	char name[16];
	PGresult *res;
	ExecStatusType s;
	int n = a ? a->n : 0;

	*rc = RC_OK;
	if (a && a->oom) {
		if (a->oom > 0) {
			snprintf(err, ERR_LEN, "%s: out of memory", what);
			*rc = RC_NOMEM;
		} else {
			snprintf(err, ERR_LEN, "%s: more than %d parameters", what, PG_MAX_ARGS);
			*rc = RC_ERR;
		}
	} else if (n != q->nparams) {
		snprintf(err, ERR_LEN, "%s: statement s%d takes %d parameters, not %d", what,
			 (int)q->id, q->nparams, n);
		*rc = RC_ERR;
	} else if ((*rc = conn_ready(st, err)) == RC_OK && !st->prepared[q->id]) {
		*rc = prepare(st, q, what, err);
	}
	if (*rc != RC_OK) {
		args_free(a);
		return NULL;
	}
	snprintf(name, sizeof(name), "s%d", (int)q->id);
	res = PQexecPrepared(st->conn, name, n, a ? a->v : NULL, NULL, NULL, 0);
	args_free(a);
	s = PQresultStatus(res);
	if (res && (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK))
		return res;
	*rc = result_rc(st, res, what, err);
	PQclear(res);
	return NULL;
}

int
pg_do(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
      int64_t *changed, char *err)
{
	PGresult *res;
	int rc;

	if (!(res = pg_exec(st, q, a, what, &rc, err)))
		return rc;
	if (changed)
		*changed = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return RC_OK;
}

int
pg_int(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
       int64_t *out, char *err)
{
	PGresult *res;
	int rc;

	if (!(res = pg_exec(st, q, a, what, &rc, err)))
		return rc;
	rc = RC_NOTFOUND;
	if (PQntuples(res) > 0) {
		*out = col_int(res, 0, 0);
		rc = RC_OK;
	}
	PQclear(res);
	return rc;
}

int
pg_simple(struct pg_store *st, const char *sql, const char *what, char *err)
{
	PGresult *res;
	ExecStatusType s;
	int rc;

	if ((rc = conn_ready(st, err)) != RC_OK)
		return rc;
	res = PQexec(st->conn, sql);
	s = PQresultStatus(res);
	rc = RC_OK;
	if (!res || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK))
		rc = result_rc(st, res, what, err);
	PQclear(res);
	return rc;
}

/* ---- reading results ---- */

/* Text from the server is well-formed UTF-8 (the session's client_encoding is UTF8, and
 * nothing ill-formed is ever stored): copied as it is. */
char *
col_text(struct pool *p, const PGresult *res, int r, int i)
{
	if (PQgetisnull(res, r, i))
		return NULL;
	return pool_strndup(p, PQgetvalue(res, r, i), (size_t)PQgetlength(res, r, i));
}

int64_t
col_int(const PGresult *res, int r, int i)
{
	const char *v;

	if (PQgetisnull(res, r, i))
		return 0;
	v = PQgetvalue(res, r, i);
	if (v[0] == 't')
		return 1;
	if (v[0] == 'f')
		return 0;
	return strtoll(v, NULL, 10);
}

int
col_null(const PGresult *res, int r, int i)
{
	return PQgetisnull(res, r, i);
}

int
read_rows(struct pool *p, const PGresult *res, int64_t limit, size_t sz, row_fill *fill,
	  void **rows, int *n)
{
	int64_t have = PQntuples(res);
	char *v;
	int i;

	if (have > limit)
		have = limit;
	if (have < 0)
		have = 0;
	if (!(v = pool_alloc(p, sz * (size_t)(have > 0 ? have : 1))))
		return RC_NOMEM;
	memset(v, 0, sz * (size_t)(have > 0 ? have : 1));
	for (i = 0; i < have; i++)
		fill(p, res, i, v + sz * (size_t)i);
	*rows = v;
	*n = i;
	return RC_OK;
}

/* ---- transactions ---- */

int
db_begin(struct pg_store *st, char *err)
{
	int rc;

	if (st->nested)
		return RC_OK;
	if ((rc = pg_simple(st, "BEGIN", "begin", err)) == RC_OK)
		st->in_txn = 1;
	return rc;
}

int
db_commit(struct pg_store *st, char *err)
{
	int rc;

	if (st->nested)
		return RC_OK;
	if (st->before_commit && (rc = st->before_commit(st, err)) != RC_OK)
		return rc;
	/* COMMIT of a transaction a failed statement aborted answers "ROLLBACK", not an
	 * error: refuse it here */
	if (PQtransactionStatus(st->conn) == PQTRANS_INERROR) {
		snprintf(err, ERR_LEN, "commit: the transaction was aborted by a failure inside it");
		return RC_ERR;
	}
	if ((rc = pg_simple(st, "COMMIT", "commit", err)) == RC_OK)
		st->in_txn = 0;
	return rc;
}

void
db_rollback(struct pg_store *st)
{
	char err[ERR_LEN];
	PGresult *res;

	if (st->nested)
		st->nested_failed = 1;
	st->nested = 0;
	st->ntouches = 0;
	if (st->in_txn && PQstatus(st->conn) == CONNECTION_OK &&
	    PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
		res = PQexec(st->conn, "ROLLBACK");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail_msg(err, "rollback", PQresultErrorMessage(res));
		PQclear(res);
	}
	st->in_txn = 0;
}

int
db_write(struct pg_store *st, const struct pg_sql *q, struct pg_args *a, const char *what,
	 int64_t *changed, char *err)
{
	int rc, own = !st->nested && !st->in_txn;

	if (own && (rc = db_begin(st, err)) != RC_OK) {
		args_free(a);
		return rc;
	}
	rc = pg_do(st, q, a, what, changed, err);
	if (own) {
		if (rc == RC_OK)
			rc = db_commit(st, err);
		if (rc != RC_OK)
			db_rollback(st);
	}
	return rc;
}

int
pg_begin(struct store *sb, char *err)
{
	struct pg_store *st = pg_of(sb);
	int rc = db_begin(st, err);

	st->nested_failed = 0;
	if (rc == RC_OK)
		st->nested = 1;
	return rc;
}

void
pg_rollback(struct store *sb)
{
	struct pg_store *st = pg_of(sb);
	if (st->nested)
		db_rollback(st);
	st->nested_failed = 0;
}

int
pg_commit(struct store *sb, char *err)
{
	struct pg_store *st = pg_of(sb);
	int rc;

	if (st->nested_failed) {
		st->nested_failed = 0;
		snprintf(err, ERR_LEN, "the transaction was rolled back by a failure inside it");
		return RC_ERR;
	}
	st->nested = 0;
	rc = db_commit(st, err);
	if (rc != RC_OK) {
		/* a statement inside failed (which aborted the transaction), or the commit did:
		 * nothing of it was kept */
		db_rollback(st);
		return RC_ERR;
	}
	return RC_OK;
}

/* ---- the connection ---- */

/* Notices ("relation already exists, skipping" ...) are the server talking to a person:
 * nobody reads them here. */
static void
no_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/*
 * The defaults come before the URL in the keyword list: with expand_dbname, a setting the
 * URL names (?connect_timeout=...) overrides the one before it. So a connection attempt
 * gives up after 5 s, and TCP keepalives notice a server whose host vanished (idle 30 s,
 * then 3 probes 10 s apart) instead of a read waiting for ever.
 */
struct store *
pg_connect(const char *url, char *err)
{
	static const char *const keys[] = {
		"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "application_name", "dbname", "client_encoding", NULL};
	const char *vals[] = {"5", "1", "30", "10", "3", "aichatd", url, "UTF8", NULL};
	struct pg_store *st = calloc(1, sizeof(*st));

	if (!st || !(st->url = strdup(url))) {
		free(st);
		snprintf(err, ERR_LEN, "out of memory");
		return NULL;
	}
	vals[6] = st->url;
	st->conn = PQconnectdbParams(keys, vals, 1);
	if (!st->conn) {
		snprintf(err, ERR_LEN, "out of memory");
		pg_close(&st->base);
		return NULL;
	}
	if (PQstatus(st->conn) != CONNECTION_OK) {
		unreachable(st, err);
		pg_close(&st->base);
		return NULL;
	}
	PQsetNoticeProcessor(st->conn, no_notice, NULL);
	if (session_setup(st, err) != RC_OK) {
		pg_close(&st->base);
		return NULL;
	}
	return &st->base;
}

void
pg_close(struct store *sb)
{
	struct pg_store *st = pg_of(sb);

	if (!st)
		return;
	PQfinish(st->conn);
	free(st->url);
	free(st);
}

/* PostgreSQL checkpoints by itself: nothing to copy, nothing known. */
int
pg_checkpoint(struct store *sb, int *wal_pages, int *copied)
{
	(void)sb;
	*wal_pages = *copied = -1;
	return RC_OK;
}

/* The server's shared buffers are its own: a connection has no page cache to size. */
void
pg_cache_kib(struct store *sb, int kib)
{
	(void)sb;
	(void)kib;
}

/* ---- migrations ---- */

/*
 * Any number of processes may start at once against one database: each migration runs in
 * a transaction of its own that first takes this advisory lock (held until its commit or
 * rollback), then checks whether another process applied it meanwhile. The key is
 * arbitrary but fixed ("aichatd" in ASCII).
 */
#define MIGRATE_LOCK "SELECT pg_advisory_xact_lock(107101110116104097)"

static const struct pg_sql sql_version = {
	P_VERSION, 0, "SELECT coalesce(max(version), 0) FROM schema_migrations"};

int
pg_version(struct store *sb, int64_t *version, char *err)
{
	struct pg_store *st = pg_of(sb);
	return pg_int(st, &sql_version, NULL, "schema version", version, err);
}

static const struct pg_sql sql_migration_have = {
	P_MIGRATION_HAVE, 1, "SELECT 1 FROM schema_migrations WHERE version = $1::bigint"};
static const struct pg_sql sql_migration_add = {
	P_MIGRATION_ADD, 3, "INSERT INTO schema_migrations (version, name, applied_at) "
			    "VALUES ($1::bigint, $2::text, $3::bigint)"};

/* Apply migration m unless the database has it, in a transaction of its own under the
 * lock. */
static int
migrate_one(struct pg_store *st, const struct schema_migration *m, char *err)
{
	struct pg_args a = {0};
	int64_t have;
	int rc;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	if ((rc = pg_simple(st, MIGRATE_LOCK, "lock", err)) != RC_OK)
		goto fail;
	arg_int(&a, m->version);
	rc = pg_int(st, &sql_migration_have, &a, "migration applied", &have, err);
	if (rc == RC_NOTFOUND && (rc = pg_simple(st, m->sql, m->name, err)) == RC_OK) {
		arg_int(&a, m->version);
		arg_text(&a, m->name);
		arg_int(&a, time_now_ms());
		rc = pg_do(st, &sql_migration_add, &a, "record migration", NULL, err);
	}
	if (rc == RC_OK && (rc = db_commit(st, err)) == RC_OK)
		return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

int
pg_migrate(struct store *sb, char *err)
{
	int64_t from, to;

	return pg_migrate_report(sb, &from, &to, err);
}

int64_t
pg_schema_latest(struct store *sb)
{
	(void)sb;
	return pg_schema_migrations_count
		       ? pg_schema_migrations[pg_schema_migrations_count - 1].version
		       : 0;
}

int
pg_migrate_report(struct store *sb, int64_t *from, int64_t *to, char *err)
{
	struct pg_store *st = pg_of(sb);
	char why[ERR_LEN];
	size_t i;
	int rc;

	*from = *to = 0;
	if ((rc = db_begin(st, why)) == RC_OK) {
		rc = pg_simple(st, MIGRATE_LOCK, "lock", why);
		if (rc == RC_OK)
			rc = pg_simple(st, "CREATE TABLE IF NOT EXISTS schema_migrations (version "
				       "bigint PRIMARY KEY, name text COLLATE \"C\" NOT NULL, "
				       "applied_at bigint NOT NULL)", "schema_migrations", why);
		if (rc == RC_OK)
			rc = db_commit(st, why);
		if (rc != RC_OK)
			db_rollback(st);
	}
	if (rc == RC_OK && (rc = pg_version(sb, from, why)) == RC_OK &&
	    *from > pg_schema_latest(sb)) {
		/* a newer program wrote it: its tables may mean what this one cannot know */
		snprintf(err, ERR_LEN, "the database is at schema version %lld, newer than this "
			 "program's %lld: run the newer aichatd, or restore a backup made for this "
			 "one", (long long)*from, (long long)pg_schema_latest(sb));
		return RC_CONFLICT;
	}
	for (i = 0; rc == RC_OK && i < pg_schema_migrations_count; i++)
		rc = migrate_one(st, &pg_schema_migrations[i], why);
	if (rc == RC_OK)
		rc = pg_version(sb, to, why);
	if (rc != RC_OK) {
		/* "migrate: " and why fit in ERR_LEN bytes */
		snprintf(err, ERR_LEN, "migrate: %.*s", ERR_LEN - 10, why);
		return rc == RC_UNAVAIL ? RC_UNAVAIL : RC_ERR;
	}
	return RC_OK;
}
