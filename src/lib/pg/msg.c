/*
 * The PostgreSQL store's messages: reading one, listing a conversation's, the latest ones,
 * editing and deleting; and dialect workflow's exchange pairs. Messages are written by
 * posts (post.c) and replies' ends (run.c).
 */
#include <libpq-fe.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* The columns msg_row() reads for one conversation's messages, its id bound as parameter
 * P: no join. */
#define MSG_COLS_OF_CONV(P)                                                                   \
	"m.id, m.msg_id, " P "::text, m.user_id, m.role, m.content, m.error, m.metadata, "    \
	"m.unfinished, m.visible, m.created_at, m.updated_at"

void
msg_row(struct pool *p, const PGresult *res, int r, int first, struct msg *m)
{
	m->id = col_int(res, r, first);
	m->msg_id = col_text(p, res, r, first + 1);
	m->conv_id = col_text(p, res, r, first + 2);
	m->user_id = col_text(p, res, r, first + 3);
	m->role = col_text(p, res, r, first + 4);
	m->content = col_text(p, res, r, first + 5);
	m->error = col_text(p, res, r, first + 6);
	m->metadata = col_text(p, res, r, first + 7);
	m->unfinished = (int)col_int(res, r, first + 8);
	m->visible = (int)col_int(res, r, first + 9);
	m->created_at = col_int(res, r, first + 10);
	m->updated_at = col_int(res, r, first + 11);
}

/* One visible message by q, keyed by msg_id as $1 when it is set, else by id; the owner
 * is $2. */
static int
msg_get(struct pg_store *st, struct pool *p, const struct pg_sql *q, int64_t id,
	const char *msg_id, const char *owner, struct msg *out, char *err)
{
	struct pg_args a = {0};
	PGresult *res;
	int rc;

	if (msg_id)
		arg_text(&a, msg_id);
	else
		arg_int(&a, id);
	arg_text(&a, owner);
	if (!(res = pg_exec(st, q, &a, "get message", &rc, err)))
		return rc;
	rc = RC_NOTFOUND;
	if (PQntuples(res) > 0) {
		msg_row(p, res, 0, 0, out);
		rc = out->msg_id ? RC_OK : RC_NOMEM;
	}
	PQclear(res);
	return rc;
}

static const struct pg_sql sql_msg_get = {
	P_MSG_GET, 2,
	"SELECT " PG_MSG_COLS " FROM messages m JOIN conversations c ON c.seq = m.conv_seq "
	"WHERE m.id = $1::bigint AND m.is_deleted = 0 AND " PG_VISIBLE_CONV};

int
pg_msg_get(struct store *sb, struct pool *p, int64_t id, const char *owner, struct msg *out,
	   char *err)
{
	struct pg_store *st = pg_of(sb);
	return msg_get(st, p, &sql_msg_get, id, NULL, owner, out, err);
}

static const struct pg_sql sql_msg_get_by_msgid = {
	P_MSG_GET_BY_MSGID, 2,
	"SELECT " PG_MSG_COLS " FROM messages m JOIN conversations c ON c.seq = m.conv_seq "
	"WHERE m.msg_id = $1::text AND m.is_deleted = 0 AND " PG_VISIBLE_CONV};

int
pg_msg_get_by_msgid(struct store *sb, struct pool *p, const char *msg_id, const char *owner,
		    struct msg *out, char *err)
{
	struct pg_store *st = pg_of(sb);
	return msg_get(st, p, &sql_msg_get_by_msgid, 0, msg_id, owner, out, err);
}

static void
fill_msg(struct pool *p, const PGresult *res, int r, void *row)
{
	msg_row(p, res, r, 0, row);
}

/* Run a listing of messages and read its rows (at most limit). */
static int
msg_rows(struct pg_store *st, struct pool *p, const struct pg_sql *q, struct pg_args *a,
	 int64_t limit, struct msg **rows, int *n, char *err)
{
	PGresult *res;
	int rc;

	if (!(res = pg_exec(st, q, a, "list messages", &rc, err)))
		return rc;
	rc = read_rows(p, res, limit, sizeof(**rows), fill_msg, (void **)rows, n);
	PQclear(res);
	return rc;
}

static const struct pg_sql sql_msg_count_all = {
	P_MSG_COUNT_ALL, 1,
	"SELECT count(*) FROM messages WHERE conv_seq = $1::bigint AND is_deleted = 0"};
static const struct pg_sql sql_msg_list = {
	P_MSG_LIST, 4,
	"SELECT " MSG_COLS_OF_CONV("$4") " FROM messages m WHERE m.conv_seq = $1::bigint "
	"AND m.is_deleted = 0 AND m.unfinished = 0 ORDER BY m.id "
	"LIMIT $2::bigint OFFSET $3::bigint"};
static const struct pg_sql sql_msg_list_all = {
	P_MSG_LIST_ALL, 4,
	"SELECT " MSG_COLS_OF_CONV("$4") " FROM messages m WHERE m.conv_seq = $1::bigint "
	"AND m.is_deleted = 0 ORDER BY m.id LIMIT $2::bigint OFFSET $3::bigint"};

int
pg_msg_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg, int all,
	    struct msg **rows, int *n, int64_t *total, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	int rc;

	if (all) {
		arg_int(&a, c->seq);
		rc = pg_int(st, &sql_msg_count_all, &a, "count messages", total, err);
		if (rc != RC_OK)
			return rc;
	} else {
		/* the conversation row keeps the visible-message count: no count(*) per page */
		*total = c->msg_count;
	}
	arg_int(&a, c->seq);
	arg_int(&a, pg.limit);
	arg_int(&a, pg.offset);
	arg_text(&a, c->id);
	return msg_rows(st, p, all ? &sql_msg_list_all : &sql_msg_list, &a, pg.limit, rows, n,
			err);
}

static const struct pg_sql sql_msg_latest = {
	P_MSG_LATEST, 3,
	"SELECT * FROM (SELECT " MSG_COLS_OF_CONV("$3") " FROM messages m "
	"WHERE m.conv_seq = $1::bigint AND m.is_deleted = 0 AND m.unfinished = 0 "
	"ORDER BY m.id DESC LIMIT $2::bigint) AS latest ORDER BY 1"};

int
pg_msg_latest(struct store *sb, struct pool *p, const struct conv *c, int limit,
	      struct msg **rows, int *n, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};

	arg_int(&a, c->seq);
	arg_int(&a, limit);
	arg_text(&a, c->id);
	return msg_rows(st, p, &sql_msg_latest, &a, limit, rows, n, err);
}

static const struct pg_sql sql_msg_edit = {
	P_MSG_EDIT, 3,
	"UPDATE messages SET content = $2::text, updated_at = $3::bigint "
	"WHERE id = $1::bigint AND is_deleted = 0"};

int
pg_msg_edit(struct store *sb, int64_t id, const char *content, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct pg_args a = {0};
	int64_t changed = 0;
	int rc;

	arg_int(&a, id);
	arg_text(&a, content);
	arg_int(&a, time_now_ms());
	if ((rc = db_write(st, &sql_msg_edit, &a, "edit message", &changed, err)) != RC_OK)
		return rc;
	return changed ? RC_OK : RC_NOTFOUND;
}

static const struct pg_sql sql_msg_delete = {
	P_MSG_DELETE, 2,
	"UPDATE messages SET is_deleted = 1, updated_at = $2::bigint, deleted_at = $2::bigint "
	"WHERE id = $1::bigint AND is_deleted = 0 RETURNING conv_seq, unfinished"};

int
pg_msg_delete(struct store *sb, int64_t id, char *err)
{
	struct pg_store *st = pg_of(sb);
	int64_t now = time_now_ms(), seq;
	struct pg_args a = {0};
	PGresult *res;
	int rc, unfinished;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	arg_int(&a, id);
	arg_int(&a, now);
	if (!(res = pg_exec(st, &sql_msg_delete, &a, "delete message", &rc, err)))
		goto fail;
	if (PQntuples(res) == 0) {
		PQclear(res);
		rc = RC_NOTFOUND;
		goto fail;
	}
	seq = col_int(res, 0, 0);
	unfinished = (int)col_int(res, 0, 1);
	PQclear(res);
	/* an unfinished reply was never counted */
	if (!unfinished && (rc = post_touch(st, seq, 0, -1, err)) != RC_OK)
		goto fail;
	if ((rc = db_commit(st, err)) != RC_OK)
		goto fail;
	return RC_OK;
fail:
	db_rollback(st);
	return rc;
}

/* ---- dialect workflow's exchange pairs ---- */

static void
fill_pair(struct pool *p, const PGresult *res, int r, void *row)
{
	struct pair *x = row;

	x->id = col_int(res, r, 0);
	x->user_id = col_text(p, res, r, 1);
	x->user_message = col_text(p, res, r, 2);
	x->created_at = col_int(res, r, 3);
	x->ai_response = col_text(p, res, r, 4);
}

static const struct pg_sql sql_pairs_count = {
	P_PAIRS_COUNT, 1,
	"SELECT count(*) FROM messages WHERE conv_seq = $1::bigint AND is_deleted = 0 "
	"AND role = 'user'"};
static const struct pg_sql sql_pairs = {
	P_PAIRS, 3,
	"SELECT u.id, u.user_id, u.content, u.created_at, "
	"(SELECT a.content FROM messages a WHERE a.conv_seq = u.conv_seq "
	"AND a.is_deleted = 0 AND a.unfinished = 0 AND a.id > u.id AND a.role = 'assistant' "
	"AND a.id < coalesce((SELECT min(n.id) FROM messages n WHERE n.conv_seq = u.conv_seq "
	"AND n.is_deleted = 0 AND n.id > u.id AND n.role = 'user'), 9223372036854775807) "
	"ORDER BY a.id LIMIT 1) "
	"FROM messages u WHERE u.conv_seq = $1::bigint AND u.is_deleted = 0 "
	"AND u.role = 'user' ORDER BY u.id LIMIT $2::bigint OFFSET $3::bigint"};

int
pg_pairs(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
	 struct pair **rows, int *n, int64_t *total, char *err)
{
	struct pg_store *st = pg_of(sb);
	return conv_page(st, p, &sql_pairs_count, &sql_pairs, c, pg, sizeof(**rows), fill_pair,
			 (void **)rows, n, total, err);
}
