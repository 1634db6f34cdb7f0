/*
 * The SQLite store's conversations: reading, creating, listing, renaming and deleting
 * them, and paging a conversation's rows (its exchange pairs, its runs).
 */
#include <stdio.h>
#include <sqlite3.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

void
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

static const struct db_sql sql_conv_get = {
	S_CONV_GET,
	"SELECT " CONV_COLS " FROM conversations c WHERE id = ?1 AND " VISIBLE_CONV};

int
sq_conv_get(struct store *sb, struct pool *p, const char *id, const char *owner,
	       struct conv *out, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_conv_get, err);
	int rc;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	bind_text(s, 2, owner);
	if ((rc = db_row(st, s, "step", err)) != RC_OK)
		return rc;
	conv_row(p, s, out);
	sqlite3_reset(s);
	return RC_OK;
}

static const struct db_sql sql_conv_exists = {
	S_CONV_EXISTS, "SELECT 1 FROM conversations WHERE id = ?1"};

int
sq_conv_taken(struct store *sb, const char *id, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_conv_exists, err);
	int64_t one;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	return db_int(st, s, &one, err);
}

static const struct db_sql sql_conv_insert = {
	S_CONV_INSERT, "INSERT INTO conversations (id, user_id, title, model_config, "
		       "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)"};

int
conv_insert(struct sq_store *st, struct pool *p, const char *id, const char *user_id,
	    const char *title, const char *model_config, int64_t now, struct conv *out,
	    char *err)
{
	char uuid[IDS_UUID_LEN + 1];
	sqlite3_stmt *s = db_stmt(st, &sql_conv_insert, err);
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
sq_conv_create(struct store *sb, struct pool *p, const char *id, const char *user_id,
		  const char *title, const char *model_config, struct conv *out, char *err)
{
	struct sq_store *st = sq_of(sb);
	return conv_insert(st, p, id, user_id, title, model_config, time_now_ms(), out, err);
}

static void
fill_conv(struct pool *p, sqlite3_stmt *s, void *row)
{
	conv_row(p, s, row);
}

static const struct db_sql sql_conv_count_all = {
	S_CONV_COUNT_ALL, "SELECT count(*) FROM conversations WHERE is_deleted = 0"};
static const struct db_sql sql_conv_count_user = {
	S_CONV_COUNT_USER, "SELECT count(*) FROM conversations WHERE is_deleted = 0 "
			   "AND user_id = ?1"};
static const struct db_sql sql_conv_list_all = {
	S_CONV_LIST_ALL, "SELECT " CONV_COLS " FROM conversations WHERE is_deleted = 0 "
			 "ORDER BY updated_at DESC, seq DESC LIMIT ?2 OFFSET ?3"};
static const struct db_sql sql_conv_list_user = {
	S_CONV_LIST_USER, "SELECT " CONV_COLS " FROM conversations WHERE is_deleted = 0 "
			  "AND user_id = ?1 ORDER BY updated_at DESC, seq DESC LIMIT ?2 OFFSET ?3"};

int
sq_conv_list(struct store *sb, struct pool *p, const char *user, struct page pg,
		struct conv **rows, int *n, int64_t *total, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s;
	int r;

	s = db_stmt(st, user ? &sql_conv_count_user : &sql_conv_count_all, err);
	if (!s)
		return RC_ERR;
	if (user)
		bind_text(s, 1, user);
	if ((r = db_int(st, s, total, err)) != RC_OK)
		return r;
	s = db_stmt(st, user ? &sql_conv_list_user : &sql_conv_list_all, err);
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
conv_update(struct sq_store *st, const struct db_sql *q, const char *id, const char *owner,
	    const char *title, char *err)
{
	sqlite3_stmt *s = db_stmt(st, q, err);
	int r;

	if (!s)
		return RC_ERR;
	bind_text(s, 1, id);
	bind_text(s, 2, owner);
	if (title)
		bind_text(s, 3, title);
	sqlite3_bind_int64(s, 4, time_now_ms()); /* the rename's updated_at, the deleted_at */
	r = db_write(st, s, err);
	if (r != RC_OK)
		return r;
	return sqlite3_changes(st->db) ? RC_OK : RC_NOTFOUND;
}

static const struct db_sql sql_conv_rename = {
	S_CONV_RENAME, "UPDATE conversations AS c SET title = ?3, updated_at = ?4 "
		       "WHERE id = ?1 AND " VISIBLE_CONV};

int
sq_conv_rename(struct store *sb, const char *id, const char *owner, const char *title,
		  char *err)
{
	struct sq_store *st = sq_of(sb);
	return conv_update(st, &sql_conv_rename, id, owner, title, err);
}

static const struct db_sql sql_conv_delete = {
	S_CONV_DELETE,
	"UPDATE conversations AS c SET is_deleted = 1, deleted_at = ?4 WHERE id = ?1 AND "
	VISIBLE_CONV};

int
sq_conv_delete(struct store *sb, const char *id, const char *owner, char *err)
{
	struct sq_store *st = sq_of(sb);
	return conv_update(st, &sql_conv_delete, id, owner, NULL, err);
}

int
conv_page(struct sq_store *st, struct pool *p, const struct db_sql *count,
	  const struct db_sql *list, const struct conv *c, struct page pg, size_t sz,
	  row_fill *fill, void **rows, int *n, int64_t *total, char *err)
{
	sqlite3_stmt *s = db_stmt(st, count, err);
	int r;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, c->seq);
	if ((r = db_int(st, s, total, err)) != RC_OK)
		return r;
	s = db_stmt(st, list, err);
	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, c->seq);
	sqlite3_bind_int64(s, 2, pg.limit);
	sqlite3_bind_int64(s, 3, pg.offset);
	return read_rows(st, p, s, pg.limit, sz, fill, rows, n, err);
}
