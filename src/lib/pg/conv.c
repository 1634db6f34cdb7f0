/*
 * The PostgreSQL store's conversations: reading, creating, listing, renaming and deleting
 * them, and paging a conversation's rows (its exchange pairs, its runs).
 */
#include <stdio.h>
#include <libpq-fe.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

void
conv_row(struct pool *p, const PGresult *res, int r, int first, struct conv *c)
{
	c->seq = col_int(res, r, first);
	c->id = col_text(p, res, r, first + 1);
	c->user_id = col_text(p, res, r, first + 2);
	c->title = col_text(p, res, r, first + 3);
	c->model_config = col_text(p, res, r, first + 4);
	c->msg_count = col_int(res, r, first + 5);
	c->created_at = col_int(res, r, first + 6);
	c->updated_at = col_int(res, r, first + 7);
}

static const struct pg_sql sql_conv_get = {
	P_CONV_GET, 2,
	"SELECT " PG_CONV_COLS " FROM conversations c WHERE c.id = $1::text AND "
	PG_VISIBLE_CONV};

int
pg_conv_get(struct store *sb, struct pool *p, const char *id, const char *owner,
	    struct conv *out, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_text(&a, id);
	arg_text(&a, owner);
	if (!(res = pg_exec(st, &sql_conv_get, &a, "get conversation", &rc, err)))
		return rc;
	rc = RC_NOTFOUND;
	if (PQntuples(res) > 0) {
		conv_row(p, res, 0, 0, out);
		rc = out->id ? RC_OK : RC_NOMEM;
	}
	PQclear(res);
	return rc;
}

static const struct pg_sql sql_conv_exists = {
	P_CONV_EXISTS, 1, "SELECT 1 FROM conversations WHERE id = $1::text"};

int
pg_conv_taken(struct store *sb, const char *id, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	int64_t one;

	arg_text(&a, id);
	return pg_int(st, &sql_conv_exists, &a, "conversation taken", &one, err);
}

/* A clash on the id answers no row instead of an error, which would abort the caller's
 * transaction (a post in a batch goes on after it). */
static const struct pg_sql sql_conv_insert = {
	P_CONV_INSERT, 5,
	"INSERT INTO conversations (id, user_id, title, model_config, created_at, updated_at) "
	"VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint, $5::bigint) "
	"ON CONFLICT (id) DO NOTHING RETURNING seq"};

int
conv_insert(struct pg_store *st, struct pool *p, const char *id, const char *user_id,
	    const char *title, const char *model_config, int64_t now, struct conv *out,
	    char *err)
{
	char uuid[IDS_UUID_LEN + 1];
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	if (!id) {
		if (ids_uuid4(uuid) != RC_OK) {
			snprintf(err, ERR_LEN, "no randomness for an id");
			return RC_ERR;
		}
		id = uuid;
	}
	arg_text(&a, id);
	arg_text(&a, user_id);
	arg_text(&a, title);
	arg_text(&a, model_config);
	arg_int(&a, now);
	if (!(res = pg_exec(st, &sql_conv_insert, &a, "insert conversation", &rc, err)))
		return rc;
	if (PQntuples(res) == 0) {
		PQclear(res);
		snprintf(err, ERR_LEN, "conversation id taken");
		return RC_CONFLICT;
	}
	out->seq = col_int(res, 0, 0);
	PQclear(res);
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
pg_conv_create(struct store *sb, struct pool *p, const char *id, const char *user_id,
	       const char *title, const char *model_config, struct conv *out, char *err)
{
	struct pg_store *st = pg_of(sb);
	return conv_insert(st, p, id, user_id, title, model_config, time_now_ms(), out, err);
}

static void
fill_conv(struct pool *p, const PGresult *res, int r, void *row)
{
	conv_row(p, res, r, 0, row);
}

/* Every user's, or one user's ($1): each served by its partial index (001_init.sql). */
static const struct pg_sql sql_conv_count_all = {
	P_CONV_COUNT_ALL, 0, "SELECT count(*) FROM conversations WHERE is_deleted = 0"};
static const struct pg_sql sql_conv_count_user = {
	P_CONV_COUNT_USER, 1, "SELECT count(*) FROM conversations WHERE is_deleted = 0 "
			      "AND user_id = $1::text"};
static const struct pg_sql sql_conv_list_all = {
	P_CONV_LIST_ALL, 2,
	"SELECT " PG_CONV_COLS " FROM conversations c WHERE c.is_deleted = 0 "
	"ORDER BY c.updated_at DESC, c.seq DESC LIMIT $1::bigint OFFSET $2::bigint"};
static const struct pg_sql sql_conv_list_user = {
	P_CONV_LIST_USER, 3,
	"SELECT " PG_CONV_COLS " FROM conversations c WHERE c.is_deleted = 0 "
	"AND c.user_id = $1::text ORDER BY c.updated_at DESC, c.seq DESC "
	"LIMIT $2::bigint OFFSET $3::bigint"};

int
pg_conv_list(struct store *sb, struct pool *p, const char *user, struct page pg,
	     struct conv **rows, int *n, int64_t *total, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	if (user)
		arg_text(&a, user);
	rc = pg_int(st, user ? &sql_conv_count_user : &sql_conv_count_all, &a,
		    "count conversations", total, err);
	if (rc != RC_OK)
		return rc;
	if (user)
		arg_text(&a, user);
	arg_int(&a, pg.limit);
	arg_int(&a, pg.offset);
	res = pg_exec(st, user ? &sql_conv_list_user : &sql_conv_list_all, &a,
		      "list conversations", &rc, err);
	if (!res)
		return rc;
	rc = read_rows(p, res, pg.limit, sizeof(**rows), fill_conv, (void **)rows, n);
	PQclear(res);
	return rc;
}

/* Run an UPDATE keyed by conversation id ($1) and owner ($2), with the time as $3 (the
 * rename's updated_at, the deleted_at) and the title as $4; RC_NOTFOUND when it changed
 * nothing. */
static int
conv_update(struct pg_store *st, const struct pg_sql *q, const char *id, const char *owner,
	    const char *title, const char *what, char *err)
{
	struct pg_args a = {0};
	int64_t changed = 0;
	int rc;

	arg_text(&a, id);
	arg_text(&a, owner);
	arg_int(&a, time_now_ms());
	if (title)
		arg_text(&a, title);
	if ((rc = db_write(st, q, &a, what, &changed, err)) != RC_OK)
		return rc;
	return changed ? RC_OK : RC_NOTFOUND;
}

static const struct pg_sql sql_conv_rename = {
	P_CONV_RENAME, 4,
	"UPDATE conversations AS c SET title = $4::text, updated_at = $3::bigint "
	"WHERE c.id = $1::text AND " PG_VISIBLE_CONV};

int
pg_conv_rename(struct store *sb, const char *id, const char *owner, const char *title,
	       char *err)
{
	struct pg_store *st = pg_of(sb);
	return conv_update(st, &sql_conv_rename, id, owner, title, "rename conversation", err);
}

static const struct pg_sql sql_conv_delete = {
	P_CONV_DELETE, 3,
	"UPDATE conversations AS c SET is_deleted = 1, deleted_at = $3::bigint "
	"WHERE c.id = $1::text AND " PG_VISIBLE_CONV};

int
pg_conv_delete(struct store *sb, const char *id, const char *owner, char *err)
{
	struct pg_store *st = pg_of(sb);
	return conv_update(st, &sql_conv_delete, id, owner, NULL, "delete conversation", err);
}

int
conv_page(struct pg_store *st, struct pool *p, const struct pg_sql *count,
	  const struct pg_sql *list, const struct conv *c, struct page pg, size_t sz,
	  row_fill *fill, void **rows, int *n, int64_t *total, char *err)
{
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	arg_int(&a, c->seq);
	if ((rc = pg_int(st, count, &a, "count", total, err)) != RC_OK)
		return rc;
	arg_int(&a, c->seq);
	arg_int(&a, pg.limit);
	arg_int(&a, pg.offset);
	if (!(res = pg_exec(st, list, &a, "list", &rc, err)))
		return rc;
	rc = read_rows(p, res, pg.limit, sz, fill, rows, n);
	PQclear(res);
	return rc;
}
