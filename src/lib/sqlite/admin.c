/*
 * The SQLite store's administration: the online backup, the users with their counts,
 * the purge of soft-deleted rows, and moving conversations to another owner (store.h's
 * administration part, used by aichatd's admin subcommands).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sqlite3.h>

#include "rc.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* ---- backup ---- */

#define BACKUP_STEP_PAGES 1024

/* Copy st's database into the open connection dst, page by page, inside one read
 * transaction on st: the copy is that transaction's snapshot, however the writers go on
 * (in WAL mode they are not held up by a reader). */
static int
backup_copy(struct sq_store *st, sqlite3 *dst, char *err)
{
	sqlite3_backup *b;
	char *emsg = NULL;
	int r, tries = 0;

	if (sqlite3_exec(st->db, "BEGIN; SELECT count(*) FROM sqlite_schema;", NULL, NULL,
			 &emsg) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "backup: begin: %s", emsg ? emsg : "?");
		sqlite3_free(emsg);
		return RC_ERR;
	}
	b = sqlite3_backup_init(dst, "main", st->db, "main");
	if (!b) {
		snprintf(err, ERR_LEN, "backup: %s", sqlite3_errmsg(dst));
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return RC_ERR;
	}
	do {
		r = sqlite3_backup_step(b, BACKUP_STEP_PAGES);
		if (r == SQLITE_BUSY || r == SQLITE_LOCKED) {
			struct timespec ts = {0, 10 * 1000000L};
			if (++tries > 1000)
				break; /* 10 s of a lock that never lets go */
			nanosleep(&ts, NULL);
		}
	} while (r == SQLITE_OK || r == SQLITE_BUSY || r == SQLITE_LOCKED);
	sqlite3_backup_finish(b);
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	if (r != SQLITE_DONE) {
		snprintf(err, ERR_LEN, "backup: %s", sqlite3_errstr(r));
		return RC_ERR;
	}
	return RC_OK;
}

int
sq_backup(struct store *sb, const char *path, int overwrite, int64_t *bytes, char *err)
{
	struct sq_store *st = sq_of(sb);
	char tmp[4200];
	struct stat sbuf;
	sqlite3 *dst = NULL;
	int rc, fd;

	if (!overwrite && lstat(path, &sbuf) == 0) {
		snprintf(err, ERR_LEN, "%.200s exists (--force replaces it)", path);
		return RC_CONFLICT;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
	/* made here first, so that it is new and only its owner's */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, ERR_LEN, "cannot create %.150s: %.60s", tmp, strerror(errno));
		return RC_ERR;
	}
	close(fd);
	if (sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "open %.150s: %.60s", tmp,
			 dst ? sqlite3_errmsg(dst) : "out of memory");
		rc = RC_ERR;
		goto out;
	}
	if ((rc = backup_copy(st, dst, err)) != RC_OK)
		goto out;
	/* the copy is a file of its own: no WAL beside it */
	if (sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "backup: %s", sqlite3_errmsg(dst));
		rc = RC_ERR;
		goto out;
	}
	sqlite3_close(dst);
	dst = NULL;
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0 || fstat(fd, &sbuf) != 0) {
		snprintf(err, ERR_LEN, "cannot sync %.150s: %.60s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		rc = RC_ERR;
		goto out;
	}
	close(fd);
	*bytes = (int64_t)sbuf.st_size;
	if (rename(tmp, path) != 0) {
		snprintf(err, ERR_LEN, "cannot rename to %.150s: %.60s", path, strerror(errno));
		rc = RC_ERR;
		goto out;
	}
	return RC_OK;
out:
	sqlite3_close(dst);
	unlink(tmp);
	return rc;
}

/* ---- users ---- */

static const struct db_sql sql_users = {
	S_USERS, "SELECT user_id, count(*), sum(msg_count), max(updated_at) FROM conversations "
		 "WHERE is_deleted = 0 GROUP BY user_id ORDER BY user_id"};

int
sq_users(struct store *sb, void (*each)(void *arg, const struct store_user *u), void *arg,
	    char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_users, err);
	struct store_user u;
	int r;

	if (!s)
		return RC_ERR;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		u.user_id = (const char *)sqlite3_column_text(s, 0);
		u.conversations = sqlite3_column_int64(s, 1);
		u.messages = sqlite3_column_int64(s, 2);
		u.last_activity = sqlite3_column_int64(s, 3);
		each(arg, &u);
	}
	sqlite3_reset(s);
	return r == SQLITE_DONE ? RC_OK : db_fail(st, err, "users");
}

/* ---- purge ---- */

/* What goes, given the time as ?1: the conversations deleted before it that no running
 * run uses; the messages of those, and the messages deleted before it, that no running run
 * uses. Each statement below names its rows by these, in an order that leaves no row
 * pointing at a removed one (plans, runs, messages, conversations), and each set is the
 * same at every step (none depends on a row an earlier step removed). */
#define PURGE_CONVS                                                                           \
	"(SELECT c.seq FROM conversations c WHERE c.is_deleted = 1 AND c.deleted_at < ?1 "    \
	"AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.conv_seq = c.seq "                      \
	"AND r.status = " SQL_RUN_RUNNING "))"
#define PURGE_MSGS                                                                            \
	"(SELECT m.id FROM messages m WHERE (m.conv_seq IN " PURGE_CONVS                      \
	" OR (m.is_deleted = 1 AND m.deleted_at < ?1)) AND NOT EXISTS (SELECT 1 FROM runs r " \
	"WHERE (r.user_msg = m.id OR r.ai_msg = m.id) AND r.status = " SQL_RUN_RUNNING "))"

static const struct db_sql sql_purge_plans = {
	S_PURGE_PLANS, "DELETE FROM travel_plans WHERE conv_seq IN " PURGE_CONVS
		       " OR message IN " PURGE_MSGS};
static const struct db_sql sql_purge_runs = {
	S_PURGE_RUNS, "DELETE FROM runs WHERE conv_seq IN " PURGE_CONVS " OR user_msg IN "
		      PURGE_MSGS " OR ai_msg IN " PURGE_MSGS};
static const struct db_sql sql_purge_msgs = {
	S_PURGE_MSGS, "DELETE FROM messages WHERE id IN " PURGE_MSGS};
static const struct db_sql sql_purge_convs = {
	S_PURGE_CONVS, "DELETE FROM conversations WHERE seq IN " PURGE_CONVS};

int
sq_purge(struct store *sb, int64_t before_ms, int dry_run, struct store_purged *out,
	    char *err)
{
	struct sq_store *st = sq_of(sb);
	const struct db_sql *steps[] = {&sql_purge_plans, &sql_purge_runs, &sql_purge_msgs,
					&sql_purge_convs};
	int64_t *counts[] = {&out->travel_plans, &out->runs, &out->messages,
			     &out->conversations};
	sqlite3_stmt *s;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		if (!(s = db_stmt(st, steps[i], err))) {
			rc = RC_ERR;
			goto fail;
		}
		sqlite3_bind_int64(s, 1, before_ms);
		if ((rc = db_exec_stmt(st, s, err)) != RC_OK)
			goto fail;
		*counts[i] = sqlite3_changes(st->db);
	}
	if (!dry_run && (rc = db_commit(st, err)) == RC_OK)
		return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

/* ---- chown ---- */

static const struct db_sql sql_chown_msgs_one = {
	S_CHOWN_MSGS_ONE, "UPDATE messages SET user_id = ?2 WHERE role = 'user' AND conv_seq = "
			  "(SELECT seq FROM conversations WHERE id = ?1 AND is_deleted = 0) "
			  "AND user_id = (SELECT user_id FROM conversations WHERE id = ?1)"};
static const struct db_sql sql_chown_one = {
	S_CHOWN_ONE, "UPDATE conversations SET user_id = ?2 WHERE id = ?1 AND is_deleted = 0"};
static const struct db_sql sql_chown_msgs_all = {
	S_CHOWN_MSGS_ALL, "UPDATE messages SET user_id = ?2 WHERE role = 'user' AND user_id = ?1 "
			  "AND conv_seq IN (SELECT seq FROM conversations WHERE user_id = ?1 "
			  "AND is_deleted = 0)"};
static const struct db_sql sql_chown_all = {
	S_CHOWN_ALL, "UPDATE conversations SET user_id = ?2 WHERE user_id = ?1 "
		     "AND is_deleted = 0"};

int
sq_chown(struct store *sb, const char *conv_id, const char *from_owner,
	    const char *new_owner, int64_t *moved, char *err)
{
	struct sq_store *st = sq_of(sb);
	const struct db_sql *q[2];
	sqlite3_stmt *s;
	int rc, i;

	*moved = 0;
	q[0] = conv_id ? &sql_chown_msgs_one : &sql_chown_msgs_all;
	q[1] = conv_id ? &sql_chown_one : &sql_chown_all;
	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	for (i = 0; i < 2; i++) {
		if (!(s = db_stmt(st, q[i], err))) {
			rc = RC_ERR;
			goto fail;
		}
		bind_text(s, 1, conv_id ? conv_id : from_owner);
		bind_text(s, 2, new_owner);
		if ((rc = db_exec_stmt(st, s, err)) != RC_OK)
			goto fail;
	}
	*moved = sqlite3_changes(st->db);
	if (conv_id && *moved == 0) {
		snprintf(err, ERR_LEN, "no conversation %.100s (or it is deleted)", conv_id);
		rc = RC_NOTFOUND;
		goto fail;
	}
	if ((rc = db_commit(st, err)) == RC_OK)
		return RC_OK;
fail:
	db_rollback(st);
	return rc;
}
