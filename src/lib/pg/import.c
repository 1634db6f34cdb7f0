/*
 * Moving an SQLite store to PostgreSQL (aichatd migrate-to URL): every row of every table,
 * ids and times unchanged, in one PostgreSQL transaction, read from one SQLite snapshot.
 * The target is brought to the latest schema first and must hold no data (model configs
 * aside, which the source's replace); the identity sequences then continue past the
 * copied ids. Rows go through COPY FROM STDIN in text format.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <libpq-fe.h>

#include "rc.h"
#include "buf.h"
#include "util.h"
#include "store.h"

/* The tables in the order their references need, with the columns both schemas share
 * (PostgreSQL's runs.owner and lease_until stay NULL: a copied run is nobody's), and
 * whether the first column is an identity whose sequence must move past the copy. */
static const struct table {
	const char *name;
	const char *cols;
	int identity;
} tables[] = {
	{"model_configs", "config_id, provider, model_name, model_version, parameters, "
			  "system_prompt, updated_at", 0},
	{"conversations", "seq, id, user_id, title, model_config, msg_count, created_at, "
			  "updated_at, is_deleted, deleted_at", 1},
	{"messages", "id, msg_id, conv_seq, user_id, role, content, unfinished, error, visible, "
		     "metadata, created_at, updated_at, is_deleted, deleted_at", 1},
	{"runs", "id, record_id, conv_seq, user_msg, ai_msg, status, duration_ms, error_code, "
		 "error_message, created_at, finished_at, model_config", 1},
	{"travel_plans", "id, conv_seq, message, plan, created_at", 1},
	{"logs", "id, level, message, created_at", 1},
};
#define NTABLES (sizeof(tables) / sizeof(tables[0]))

/* One value in COPY's text format: \N for NULL, text mended to well-formed UTF-8 (as both
 * stores write it) with backslash, tab, newline and carriage return escaped. */
static int
copy_value(struct buf *b, sqlite3_stmt *s, int i)
{
	const unsigned char *v;
	char *mended = NULL;
	size_t len, k;
	int rc = RC_OK;

	if (sqlite3_column_type(s, i) == SQLITE_NULL)
		return buf_adds(b, "\\N");
	v = sqlite3_column_text(s, i);
	len = (size_t)sqlite3_column_bytes(s, i);
	if (!v)
		return RC_NOMEM;
	if (utf8_mended_len((const char *)v, len) != len || memchr(v, 0, len)) {
		size_t n = utf8_mended_len((const char *)v, len) + 1;

		if (!(mended = malloc(n)))
			return RC_NOMEM;
		len = utf8_mend(mended, n, (const char *)v, len);
		v = (const unsigned char *)mended;
	}
	for (k = 0; k < len && rc == RC_OK; k++) {
		switch (v[k]) {
		case '\\': rc = buf_adds(b, "\\\\"); break;
		case '\t': rc = buf_adds(b, "\\t"); break;
		case '\n': rc = buf_adds(b, "\\n"); break;
		case '\r': rc = buf_adds(b, "\\r"); break;
		default: rc = buf_add(b, (const char *)v + k, 1);
		}
	}
	free(mended);
	return rc;
}

static int
pg_fail(PGconn *pg, char *err, const char *what)
{
	snprintf(err, ERR_LEN, "%.80s: %.160s", what, PQerrorMessage(pg));
	utf8_cut(err, ERR_LEN - 1);
	return RC_ERR;
}

/* Run sql on pg, expecting no rows or a single value (into *one when not NULL). */
static int
pg_cmd(PGconn *pg, const char *sql, int64_t *one, char *err)
{
	PGresult *res = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(res);
	int rc = RC_OK;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = pg_fail(pg, err, sql);
	else if (one)
		*one = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ?
			       strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	PQclear(res);
	return rc;
}

/* Copy one table's rows from the snapshot into pg: *n rows. */
static int
copy_table(sqlite3 *db, PGconn *pg, const struct table *t, int64_t *n, char *err)
{
	char sql[512];
	sqlite3_stmt *s = NULL;
	PGresult *res;
	struct buf b;
	int r, i, ncols, rc = RC_OK;

	*n = 0;
	snprintf(sql, sizeof(sql), "SELECT %s FROM %s ORDER BY 1", t->cols, t->name);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "read %s: %s", t->name, sqlite3_errmsg(db));
		return RC_ERR;
	}
	snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN", t->name, t->cols);
	res = PQexec(pg, sql);
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		PQclear(res);
		sqlite3_finalize(s);
		return pg_fail(pg, err, sql);
	}
	PQclear(res);
	ncols = sqlite3_column_count(s);
	buf_init(&b, 64u << 20);
	while (rc == RC_OK && (r = sqlite3_step(s)) == SQLITE_ROW) {
		for (i = 0; i < ncols && rc == RC_OK; i++) {
			if (i)
				rc = buf_add(&b, "\t", 1);
			if (rc == RC_OK)
				rc = copy_value(&b, s, i);
		}
		if (rc == RC_OK)
			rc = buf_add(&b, "\n", 1);
		(*n)++;
		/* in slices, so that a big table never sits in memory whole */
		if (rc == RC_OK && (b.len >= (1u << 20))) {
			if (PQputCopyData(pg, b.s, (int)b.len) != 1)
				rc = pg_fail(pg, err, "copy");
			b.len = 0;
		}
	}
	if (rc == RC_OK && r != SQLITE_DONE) {
		snprintf(err, ERR_LEN, "read %s: %s", t->name, sqlite3_errmsg(db));
		rc = RC_ERR;
	} else if (rc == RC_NOMEM) {
		snprintf(err, ERR_LEN, "out of memory copying %s", t->name);
	}
	if (rc == RC_OK && b.len && PQputCopyData(pg, b.s, (int)b.len) != 1)
		rc = pg_fail(pg, err, "copy");
	buf_free(&b);
	sqlite3_finalize(s);
	if (PQputCopyEnd(pg, rc == RC_OK ? NULL : "aborted") != 1 && rc == RC_OK)
		rc = pg_fail(pg, err, "copy end");
	res = PQgetResult(pg);
	if (rc == RC_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(err, ERR_LEN, "copy %s: %s", t->name, PQresultErrorMessage(res));
		utf8_cut(err, ERR_LEN - 1);
		rc = RC_ERR;
	}
	PQclear(res);
	while ((res = PQgetResult(pg)))
		PQclear(res);
	if (rc == RC_OK && t->identity) {
		/* the next id a store draws follows the copied ones */
		const char *key = strcmp(t->name, "conversations") == 0 ? "seq" : "id";

		snprintf(sql, sizeof(sql),
			 "SELECT setval(pg_get_serial_sequence('%s', '%s'), "
			 "coalesce((SELECT max(%s) FROM %s), 0) + 1, false)",
			 t->name, key, key, t->name);
		rc = pg_cmd(pg, sql, NULL, err);
	}
	return rc;
}

int
store_copy_to_pg(const char *sqlite_path, const char *url, struct store_copied *out,
		 char *err)
{
	struct store *st;
	sqlite3 *db = NULL;
	PGconn *pg = NULL;
	int64_t version = 0, latest, have = 0, *counts[NTABLES];
	char scratch[ERR_LEN];
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	counts[0] = &out->model_configs;
	counts[1] = &out->conversations;
	counts[2] = &out->messages;
	counts[3] = &out->runs;
	counts[4] = &out->travel_plans;
	counts[5] = &out->logs;
	/* the source: at this binary's latest schema, read in one snapshot */
	if (!(st = store_open(sqlite_path, err)))
		return RC_ERR;
	rc = store_version(st, &version, err);
	latest = store_schema_latest(st);
	store_close(st);
	if (rc != RC_OK)
		return rc;
	if (version != latest) {
		snprintf(err, ERR_LEN, "%.150s is at schema version %lld, not %lld: run aichatd "
			 "migrate first", sqlite_path, (long long)version, (long long)latest);
		return RC_CONFLICT;
	}
	/* the target: its own migrations, as any start applies them */
	if (!(st = store_open(url, err)))
		return RC_ERR;
	rc = store_migrate(st, err);
	store_close(st);
	if (rc != RC_OK)
		return rc;

	if (sqlite3_open_v2(sqlite_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		snprintf(err, ERR_LEN, "open %.200s: %s", sqlite_path,
			 db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return RC_ERR;
	}
	sqlite3_busy_timeout(db, 10000);
	pg = PQconnectdb(url);
	if (PQstatus(pg) != CONNECTION_OK) {
		rc = pg_fail(pg, err, "connect");
		goto out;
	}
	if (sqlite3_exec(db, "BEGIN; SELECT count(*) FROM conversations;", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		snprintf(err, ERR_LEN, "read %.200s: %s", sqlite_path, sqlite3_errmsg(db));
		rc = RC_ERR;
		goto out;
	}
	if ((rc = pg_cmd(pg, "BEGIN", NULL, err)) != RC_OK)
		goto out;
	rc = pg_cmd(pg, "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM "
			"messages) + (SELECT count(*) FROM runs) + (SELECT count(*) FROM logs) + "
			"(SELECT count(*) FROM travel_plans)", &have, err);
	if (rc == RC_OK && have > 0) {
		snprintf(err, ERR_LEN, "the PostgreSQL database already holds data (%lld rows): "
			 "migrate-to fills only an empty one", (long long)have);
		rc = RC_CONFLICT;
	}
	/* the configs the target's programs may have ensured at a start give way to the
	 * source's */
	if (rc == RC_OK)
		rc = pg_cmd(pg, "DELETE FROM model_configs", NULL, err);
	for (i = 0; rc == RC_OK && i < NTABLES; i++)
		rc = copy_table(db, pg, &tables[i], counts[i], err);
	if (rc == RC_OK)
		rc = pg_cmd(pg, "COMMIT", NULL, err);
	else
		pg_cmd(pg, "ROLLBACK", NULL, scratch); /* err keeps the first error */
out:
	PQfinish(pg);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}
