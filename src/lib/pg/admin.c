/*
 * The PostgreSQL store's administration: the users with their counts, the purge of
 * soft-deleted rows, and moving conversations to another owner (store.h's administration
 * part, used by aichatd's admin subcommands), answering as src/lib/sqlite/admin.c does.
 * A backup is the server's own tool's to make (pg_dump), not this program's.
 */
#include <string.h>
#include <stdio.h>
#include <libpq-fe.h>

#include "rc.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* RUN_RUNNING (store.h) as the statements spell it, as in run.c. */
#define PG_RUN_RUNNING "0"
_Static_assert(RUN_RUNNING == 0, "PG_RUN_RUNNING is RUN_RUNNING");

/* ---- backup ---- */

/* A consistent copy of a server's database is pg_dump's (one snapshot, taken while others
 * write), restored with pg_restore; nothing is written to path. */
int
pg_backup(struct store *sb, const char *path, int overwrite, int64_t *bytes, char *err)
{
	(void)sb;
	(void)path;
	(void)overwrite;
	*bytes = 0;
	snprintf(err, ERR_LEN, "the store is a PostgreSQL database: back it up with pg_dump "
		 "(e.g. pg_dump -Fc -f FILE \"$AICHATD_DATABASE_URL\") and restore it with "
		 "pg_restore");
	return RC_ERR;
}

/* ---- users ---- */

static const struct pg_sql sql_users = {
	P_USERS, 0, "SELECT user_id, count(*), sum(msg_count), max(updated_at) "
		    "FROM conversations WHERE is_deleted = 0 GROUP BY user_id ORDER BY user_id"};

int
pg_users(struct store *sb, void (*each)(void *arg, const struct store_user *u), void *arg,
	 char *err)
{
	struct pg_store *st = pg_of(sb);
	struct store_user u;
	PGresult *res;
	int rc, i, rows;

	if (!(res = pg_exec(st, &sql_users, NULL, "users", &rc, err)))
		return rc;
	rows = PQntuples(res);
	for (i = 0; i < rows; i++) {
		u.user_id = PQgetvalue(res, i, 0);
		u.conversations = col_int(res, i, 1);
		u.messages = col_int(res, i, 2);
		u.last_activity = col_int(res, i, 3);
		each(arg, &u);
	}
	PQclear(res);
	return RC_OK;
}

/* ---- purge ---- */

/* What goes, given the time as $1: the conversations deleted before it that no running
 * run uses; the messages of those, and the messages deleted before it, that no running run
 * uses. Each statement below names its rows by these, in an order that leaves no row
 * pointing at a removed one (plans, runs, messages, conversations), and each set is the
 * same at every step (none depends on a row an earlier step removed). */
#define PURGE_CONVS                                                                           \
	"(SELECT c.seq FROM conversations c WHERE c.is_deleted = 1 AND c.deleted_at < $1 "    \
	"AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.conv_seq = c.seq "                      \
	"AND r.status = " PG_RUN_RUNNING "))"
#define PURGE_MSGS                                                                            \
	"(SELECT m.id FROM messages m WHERE (m.conv_seq IN " PURGE_CONVS                      \
	" OR (m.is_deleted = 1 AND m.deleted_at < $1)) AND NOT EXISTS (SELECT 1 FROM runs r " \
	"WHERE (r.user_msg = m.id OR r.ai_msg = m.id) AND r.status = " PG_RUN_RUNNING "))"

static const struct pg_sql sql_purge_plans = {
	P_PURGE_PLANS, 1, "DELETE FROM travel_plans WHERE conv_seq IN " PURGE_CONVS
			  " OR message IN " PURGE_MSGS};
static const struct pg_sql sql_purge_runs = {
	P_PURGE_RUNS, 1, "DELETE FROM runs WHERE conv_seq IN " PURGE_CONVS " OR user_msg IN "
			 PURGE_MSGS " OR ai_msg IN " PURGE_MSGS};
static const struct pg_sql sql_purge_msgs = {
	P_PURGE_MSGS, 1, "DELETE FROM messages WHERE id IN " PURGE_MSGS};
static const struct pg_sql sql_purge_convs = {
	P_PURGE_CONVS, 1, "DELETE FROM conversations WHERE seq IN " PURGE_CONVS};

int
pg_purge(struct store *sb, int64_t before_ms, int dry_run, struct store_purged *out,
	 char *err)
{
	struct pg_store *st = pg_of(sb);
	const struct pg_sql *steps[] = {&sql_purge_plans, &sql_purge_runs, &sql_purge_msgs,
					&sql_purge_convs};
	int64_t *counts[] = {&out->travel_plans, &out->runs, &out->messages,
			     &out->conversations};
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	/* one snapshot for the four steps, as SQLite's write lock gives: in READ COMMITTED each
	 * would see the runs of its own moment, and a run ending between two of them would
	 * have a later step remove what an earlier one kept (refused by a foreign key) */
	if (!st->nested && (rc = pg_simple(st, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
					   "purge", err)) != RC_OK)
		goto fail;
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct pg_args a = {0};

		arg_int(&a, before_ms);
		if ((rc = pg_do(st, steps[i], &a, "purge", counts[i], err)) != RC_OK)
			goto fail;
	}
	if (!dry_run && (rc = db_commit(st, err)) == RC_OK)
		return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

/* ---- chown ---- */

static const struct pg_sql sql_chown_msgs_one = {
	P_CHOWN_MSGS_ONE, 2, "UPDATE messages SET user_id = $2::text WHERE role = 'user' "
			     "AND conv_seq = (SELECT seq FROM conversations WHERE id = $1::text "
			     "AND is_deleted = 0) AND user_id = (SELECT user_id FROM "
			     "conversations WHERE id = $1::text)"};
static const struct pg_sql sql_chown_one = {
	P_CHOWN_ONE, 2, "UPDATE conversations SET user_id = $2::text WHERE id = $1::text "
			"AND is_deleted = 0"};
static const struct pg_sql sql_chown_msgs_all = {
	P_CHOWN_MSGS_ALL, 2, "UPDATE messages SET user_id = $2::text WHERE role = 'user' "
			     "AND user_id = $1::text AND conv_seq IN (SELECT seq FROM "
			     "conversations WHERE user_id = $1::text AND is_deleted = 0)"};
static const struct pg_sql sql_chown_all = {
	P_CHOWN_ALL, 2, "UPDATE conversations SET user_id = $2::text WHERE user_id = $1::text "
			"AND is_deleted = 0"};

int
pg_chown(struct store *sb, const char *conv_id, const char *from_owner,
	 const char *new_owner, int64_t *moved, char *err)
{
	struct pg_store *st = pg_of(sb);
	const struct pg_sql *q[2];
	int64_t changed = 0;
	int rc, i;

	*moved = 0;
	q[0] = conv_id ? &sql_chown_msgs_one : &sql_chown_msgs_all;
	q[1] = conv_id ? &sql_chown_one : &sql_chown_all;
	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	for (i = 0; i < 2; i++) {
		struct pg_args a = {0};

		arg_text(&a, conv_id ? conv_id : from_owner);
		arg_text(&a, new_owner);
		if ((rc = pg_do(st, q[i], &a, "chown", &changed, err)) != RC_OK)
			goto fail;
	}
	/* the conversations moved: the second statement's rows */
	if (conv_id && changed == 0) {
		snprintf(err, ERR_LEN, "no conversation %.100s (or it is deleted)", conv_id);
		rc = RC_NOTFOUND;
		goto fail;
	}
	if ((rc = db_commit(st, err)) == RC_OK) {
		*moved = changed;
		return RC_OK;
	}
fail:
	db_rollback(st);
	return rc;
}
