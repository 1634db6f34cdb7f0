/*
 * The SQLite store's messages: reading one, listing a conversation's, the latest ones,
 * editing and deleting; and dialect workflow's exchange pairs. Messages are written by
 * posts (post.c) and replies' ends (run.c).
 */
#include <sqlite3.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* the columns msg_row() reads for one conversation's messages, its id bound as ?4: no join */
#define MSG_COLS_OF_CONV                                                                      \
	"m.id, m.msg_id, ?4, m.user_id, m.role, m.content, m.error, m.metadata, "             \
	"m.unfinished, m.visible, m.created_at, m.updated_at"

void
msg_row(struct pool *p, sqlite3_stmt *s, struct msg *m)
{
	m->id = sqlite3_column_int64(s, 0);
	m->msg_id = col_text(p, s, 1);
	m->conv_id = col_text(p, s, 2);
	m->user_id = col_text(p, s, 3);
	m->role = col_text(p, s, 4);
	m->content = col_text(p, s, 5);
	m->error = col_text(p, s, 6);
	m->metadata = col_text(p, s, 7);
	m->unfinished = sqlite3_column_int(s, 8);
	m->visible = sqlite3_column_int(s, 9);
	m->created_at = sqlite3_column_int64(s, 10);
	m->updated_at = sqlite3_column_int64(s, 11);
}

/* One visible message by q, keyed by msg_id as ?1 when it is set, else by id. */
static int
msg_get(struct sq_store *st, struct pool *p, const struct db_sql *q, int64_t id,
	const char *msg_id, const char *owner, struct msg *out, char *err)
{
	sqlite3_stmt *s = db_stmt(st, q, err);
	int rc;

	if (!s)
		return RC_ERR;
	if (msg_id)
		bind_text(s, 1, msg_id);
	else
		sqlite3_bind_int64(s, 1, id);
	bind_text(s, 2, owner);
	if ((rc = db_row(st, s, "get message", err)) != RC_OK)
		return rc;
	msg_row(p, s, out);
	sqlite3_reset(s);
	return RC_OK;
}

static const struct db_sql sql_msg_get = {
	S_MSG_GET, "SELECT " MSG_COLS " FROM messages m JOIN conversations c "
		   "ON c.seq = m.conv_seq WHERE m.id = ?1 AND m.is_deleted = 0 AND " VISIBLE_CONV};

int
sq_msg_get(struct store *sb, struct pool *p, int64_t id, const char *owner, struct msg *out,
	      char *err)
{
	struct sq_store *st = sq_of(sb);
	return msg_get(st, p, &sql_msg_get, id, NULL, owner, out, err);
}

static const struct db_sql sql_msg_get_by_msgid = {
	S_MSG_GET_BY_MSGID, "SELECT " MSG_COLS " FROM messages m JOIN conversations c "
			    "ON c.seq = m.conv_seq WHERE m.msg_id = ?1 AND m.is_deleted = 0 "
			    "AND " VISIBLE_CONV};

int
sq_msg_get_by_msgid(struct store *sb, struct pool *p, const char *msg_id, const char *owner,
		       struct msg *out, char *err)
{
	struct sq_store *st = sq_of(sb);
	return msg_get(st, p, &sql_msg_get_by_msgid, 0, msg_id, owner, out, err);
}

static void
fill_msg(struct pool *p, sqlite3_stmt *s, void *row)
{
	msg_row(p, s, row);
}

static int
msg_rows(struct sq_store *st, struct pool *p, sqlite3_stmt *s, int64_t limit, struct msg **rows,
	 int *n, char *err)
{
	return read_rows(st, p, s, limit, sizeof(**rows), fill_msg, (void **)rows, n, err);
}

static const struct db_sql sql_msg_count_all = {
	S_MSG_COUNT_ALL, "SELECT count(*) FROM messages WHERE conv_seq = ?1 AND is_deleted = 0"};
static const struct db_sql sql_msg_list = {
	S_MSG_LIST, "SELECT " MSG_COLS_OF_CONV " FROM messages m WHERE m.conv_seq = ?1 "
		    "AND m.is_deleted = 0 AND m.unfinished = 0 ORDER BY m.id LIMIT ?2 OFFSET ?3"};
static const struct db_sql sql_msg_list_all = {
	S_MSG_LIST_ALL, "SELECT " MSG_COLS_OF_CONV " FROM messages m WHERE m.conv_seq = ?1 "
			"AND m.is_deleted = 0 ORDER BY m.id LIMIT ?2 OFFSET ?3"};

int
sq_msg_list(struct store *sb, struct pool *p, const struct conv *c, struct page pg, int all,
	       struct msg **rows, int *n, int64_t *total, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s;
	int rc;

	if (all) {
		s = db_stmt(st, &sql_msg_count_all, err);
		if (!s)
			return RC_ERR;
		sqlite3_bind_int64(s, 1, c->seq);
		if ((rc = db_int(st, s, total, err)) != RC_OK)
			return rc;
	} else {
		/* the conversation row keeps the visible-message count: no COUNT(*) per page */
		*total = c->msg_count;
	}
	s = db_stmt(st, all ? &sql_msg_list_all : &sql_msg_list, err);
	if (!s)
		return RC_ERR;
	bind_text(s, 4, c->id);
	sqlite3_bind_int64(s, 1, c->seq);
	sqlite3_bind_int64(s, 2, pg.limit);
	sqlite3_bind_int64(s, 3, pg.offset);
	return msg_rows(st, p, s, pg.limit, rows, n, err);
}

static const struct db_sql sql_msg_latest = {
	S_MSG_LATEST, "SELECT * FROM (SELECT " MSG_COLS_OF_CONV " FROM messages m "
		      "WHERE m.conv_seq = ?1 AND m.is_deleted = 0 AND m.unfinished = 0 "
		      "ORDER BY m.id DESC LIMIT ?2) ORDER BY 1"};

int
sq_msg_latest(struct store *sb, struct pool *p, const struct conv *c, int limit,
		 struct msg **rows, int *n, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_msg_latest, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, c->seq);
	sqlite3_bind_int(s, 2, limit);
	bind_text(s, 4, c->id);
	return msg_rows(st, p, s, limit, rows, n, err);
}

static const struct db_sql sql_msg_edit = {
	S_MSG_EDIT, "UPDATE messages SET content = ?2, updated_at = ?3 "
		    "WHERE id = ?1 AND is_deleted = 0"};

int
sq_msg_edit(struct store *sb, int64_t id, const char *content, char *err)
{
	struct sq_store *st = sq_of(sb);
	sqlite3_stmt *s = db_stmt(st, &sql_msg_edit, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, id);
	bind_text(s, 2, content);
	sqlite3_bind_int64(s, 3, time_now_ms());
	if ((rc = db_write(st, s, err)) != RC_OK)
		return rc;
	return sqlite3_changes(st->db) ? RC_OK : RC_NOTFOUND;
}

static const struct db_sql sql_msg_delete = {
	S_MSG_DELETE, "UPDATE messages SET is_deleted = 1, updated_at = ?2, deleted_at = ?2 "
		      "WHERE id = ?1 AND is_deleted = 0 RETURNING conv_seq, unfinished"};

int
sq_msg_delete(struct store *sb, int64_t id, char *err)
{
	struct sq_store *st = sq_of(sb);
	int64_t now = time_now_ms(), seq;
	sqlite3_stmt *s;
	int rc, unfinished;

	if ((rc = db_begin(st, err)) != RC_OK)
		return rc;
	s = db_stmt(st, &sql_msg_delete, err);
	if (!s) {
		rc = RC_ERR;
		goto fail;
	}
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, now);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		rc = rc == SQLITE_DONE ? RC_NOTFOUND : db_fail(st, err, "delete message");
		goto fail;
	}
	seq = sqlite3_column_int64(s, 0);
	unfinished = sqlite3_column_int(s, 1);
	sqlite3_reset(s);
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
fill_pair(struct pool *p, sqlite3_stmt *s, void *row)
{
	struct pair *x = row;

	x->id = sqlite3_column_int64(s, 0);
	x->user_id = col_text(p, s, 1);
	x->user_message = col_text(p, s, 2);
	x->created_at = sqlite3_column_int64(s, 3);
	x->ai_response = col_text(p, s, 4);
}

static const struct db_sql sql_pairs_count = {
	S_PAIRS_COUNT, "SELECT count(*) FROM messages WHERE conv_seq = ?1 AND is_deleted = 0 "
		       "AND role = 'user'"};
static const struct db_sql sql_pairs = {
	S_PAIRS, "SELECT u.id, u.user_id, u.content, u.created_at, "
		 "(SELECT a.content FROM messages a WHERE a.conv_seq = u.conv_seq "
		 "AND a.is_deleted = 0 AND a.unfinished = 0 AND a.id > u.id "
		 "AND a.role = 'assistant' "
		 "AND a.id < coalesce((SELECT min(n.id) FROM messages n WHERE "
		 "n.conv_seq = u.conv_seq AND n.is_deleted = 0 AND n.id > u.id "
		 "AND n.role = 'user'), 9223372036854775807) ORDER BY a.id LIMIT 1) "
		 "FROM messages u WHERE u.conv_seq = ?1 AND u.is_deleted = 0 "
		 "AND u.role = 'user' ORDER BY u.id LIMIT ?2 OFFSET ?3"};

int
sq_pairs(struct store *sb, struct pool *p, const struct conv *c, struct page pg,
	    struct pair **rows, int *n, int64_t *total, char *err)
{
	struct sq_store *st = sq_of(sb);
	return conv_page(st, p, &sql_pairs_count, &sql_pairs, c, pg, sizeof(**rows), fill_pair,
			 (void **)rows, n, total, err);
}
