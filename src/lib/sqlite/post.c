/*
 * The SQLite store's posts, the one write path of every dialect's send: the conversation
 * found or created, the message, the reply placeholder and its run; the conversation
 * touches, which the daemon's writer puts off to the commit; and the group commit that
 * shares one transaction among the threads that post at the same moment.
 */
#include <stdio.h>
#include <pthread.h>
#include <sqlite3.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* ---- the rows a post inserts ---- */

/* Step an INSERT whose ?1 is a fresh "<prefix>_YYYYMMDDHHMMSS_xxxxxxxx" id (into id, of
 * IDS_STAMPED_MAX bytes), drawing another on the rare clash with one taken in the same
 * second. The caller has bound the other parameters (a reset keeps them). */
static int
insert_stamped(struct sq_store *st, sqlite3_stmt *s, const char *prefix, int64_t now, char *id,
	       char *err)
{
	int r = SQLITE_ERROR, tries;

	for (tries = 0; tries < 8 && (tries == 0 || r == SQLITE_CONSTRAINT_UNIQUE); tries++) {
		if (ids_stamped(id, prefix, now) != RC_OK) {
			snprintf(err, ERR_LEN, "no randomness for an id");
			return RC_ERR;
		}
		bind_text(s, 1, id);
		r = sqlite3_step(s);
		sqlite3_reset(s);
	}
	return r == SQLITE_DONE ? RC_OK : db_fail(st, err, "insert");
}

static const struct db_sql sql_msg_insert = {
	S_MSG_INSERT, "INSERT INTO messages (msg_id, conv_seq, user_id, role, content, "
		      "unfinished, metadata, created_at, updated_at) "
		      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"};

/* Insert a message inside the caller's transaction. */
static int
msg_insert(struct sq_store *st, struct pool *p, const struct conv *c, const char *sender,
	   const char *role, const char *content, int unfinished, const char *metadata,
	   int64_t now, struct msg *out, char *err)
{
	char msg_id[IDS_STAMPED_MAX];
	sqlite3_stmt *s = db_stmt(st, &sql_msg_insert, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 2, c->seq);
	bind_text(s, 3, sender);
	bind_text(s, 4, role);
	bind_text(s, 5, content);
	sqlite3_bind_int(s, 6, unfinished);
	bind_text(s, 7, metadata);
	sqlite3_bind_int64(s, 8, now);
	if ((rc = insert_stamped(st, s, "msg", now, msg_id, err)) != RC_OK)
		return rc;
	out->id = sqlite3_last_insert_rowid(st->db);
	out->msg_id = pool_strdup(p, msg_id);
	out->conv_id = c->id;
	out->user_id = pool_strdup(p, sender);
	out->role = pool_strdup(p, role);
	out->content = pool_strdup(p, content);
	out->error = NULL;
	out->metadata = pool_strdup(p, metadata);
	out->unfinished = unfinished;
	out->visible = 1;
	out->created_at = out->updated_at = now;
	if (!out->msg_id || !out->user_id || !out->role || !out->content) {
		snprintf(err, ERR_LEN, "out of memory");
		return RC_NOMEM;
	}
	return RC_OK;
}

static const struct db_sql sql_run_insert = {
	S_RUN_INSERT, "INSERT INTO runs (record_id, conv_seq, user_msg, ai_msg, status, "
		      "created_at, model_config) VALUES (?1, ?2, ?3, ?4, " SQL_RUN_RUNNING
		      ", ?5, ?6)"};

static int
run_insert(struct sq_store *st, struct pool *p, const struct conv *c, int64_t user_msg,
	   int64_t ai_msg, const char *config, int64_t now, int64_t *run_id, char **record_id,
	   char *err)
{
	char rid[IDS_STAMPED_MAX];
	sqlite3_stmt *s = db_stmt(st, &sql_run_insert, err);
	int rc;

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 2, c->seq);
	sqlite3_bind_int64(s, 3, user_msg);
	sqlite3_bind_int64(s, 4, ai_msg);
	sqlite3_bind_int64(s, 5, now);
	bind_text(s, 6, config);
	if ((rc = insert_stamped(st, s, "record", now, rid, err)) != RC_OK)
		return rc;
	*run_id = sqlite3_last_insert_rowid(st->db);
	*record_id = pool_strdup(p, rid);
	return *record_id ? RC_OK : RC_NOMEM;
}

/* ---- conversation touches ---- */

static const struct db_sql sql_conv_touch = {
	S_CONV_TOUCH, "UPDATE conversations SET updated_at = max(updated_at, ?2), "
		      "msg_count = msg_count + ?3 WHERE seq = ?1"};

static int
touch_now(struct sq_store *st, int64_t seq, int64_t now, int delta, char *err)
{
	sqlite3_stmt *s = db_stmt(st, &sql_conv_touch, err);

	if (!s)
		return RC_ERR;
	sqlite3_bind_int64(s, 1, seq);
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int(s, 3, delta);
	return db_exec_stmt(st, s, err);
}

/* Apply the touches put off, one per conversation; the list is then empty. db_commit()
 * runs it (st->before_commit). */
static int
touches_apply(struct sq_store *st, char *err)
{
	int i, j, rc = RC_OK;

	for (i = 0; i < st->ntouches && rc == RC_OK; i++) {
		struct touch *t = &st->touches[i];
		if (!t->seq)
			continue; /* merged into an earlier one */
		for (j = i + 1; j < st->ntouches; j++) {
			struct touch *u = &st->touches[j];
			if (u->seq == t->seq) {
				t->delta += u->delta;
				if (u->now > t->now)
					t->now = u->now;
				u->seq = 0;
			}
		}
		rc = touch_now(st, t->seq, t->now, t->delta, err);
	}
	st->ntouches = 0;
	return rc;
}

/*
 * A conversation's count and time change with each message, and each change rewrites its
 * row and both of its indexes' entries. The writer's transactions hold dozens of posts and
 * reply ends, often for the same few conversations: with touches put off, each
 * conversation is updated once, at the commit, by the sum of its changes.
 */
void
sq_defer_touches(struct store *sb)
{
	struct sq_store *st = sq_of(sb);
	st->defer_touches = 1;
	st->before_commit = touches_apply;
}

/* The count change put off for conversation seq. */
static int64_t
touches_pending(const struct sq_store *st, int64_t seq)
{
	int64_t d = 0;
	int i;

	for (i = 0; i < st->ntouches; i++)
		if (st->touches[i].seq == seq)
			d += st->touches[i].delta;
	return d;
}

int
post_touch(struct sq_store *st, int64_t seq, int64_t now, int delta, char *err)
{
	int rc;

	if (!st->defer_touches || sqlite3_get_autocommit(st->db))
		return touch_now(st, seq, now, delta, err);
	if (st->ntouches == (int)(sizeof(st->touches) / sizeof(st->touches[0])) &&
	    (rc = touches_apply(st, err)) != RC_OK)
		return rc;
	st->touches[st->ntouches++] = (struct touch){seq, now, delta};
	return RC_OK;
}

/* ---- posts ---- */

/* One post, inside the transaction the caller holds. */
static int
post_one(struct sq_store *st, struct pool *p, const struct store_post *in,
	 struct store_posted *out, char *err)
{
	int64_t now = time_now_ms();
	int rc = RC_NOTFOUND;

	if (in->conv_id)
		rc = sq_conv_get(&st->base, p, in->conv_id, in->owner, &out->conv, err);
	if (rc == RC_NOTFOUND && (in->create || !in->conv_id)) {
		rc = conv_insert(st, p, in->conv_id, in->conv_user, in->title, in->model_config,
				 now, &out->conv, err);
		if (rc == RC_CONFLICT)
			rc = RC_NOTFOUND; /* deleted, or someone else's: the same to this caller */
	}
	if (rc != RC_OK)
		return rc;
	out->conv.msg_count += touches_pending(st, out->conv.seq); /* earlier posts of the batch */
	rc = msg_insert(st, p, &out->conv, in->sender, in->role, in->content, 0, in->metadata,
			now, &out->msg, err);
	if (rc != RC_OK)
		return rc;
	if (in->run) {
		rc = msg_insert(st, p, &out->conv, "ai_bot", "assistant", "", 1, NULL, now,
				&out->reply, err);
		if (rc == RC_OK)
			rc = run_insert(st, p, &out->conv, out->msg.id, out->reply.id,
					in->run_config, now, &out->run_id, &out->record_id, err);
		if (rc != RC_OK)
			return rc;
	}
	/* only the user message counts now; the reply counts once it is finished */
	rc = post_touch(st, out->conv.seq, now, 1, err);
	if (rc != RC_OK)
		return rc;
	out->conv.updated_at = now;
	out->conv.msg_count += 1;
	return RC_OK;
}

/*
 * Group commit. Sends are the hot write path: each is a small transaction, and under load
 * most of its cost is the commit (the WAL frames written, the other connections' caches
 * emptied). The threads of a process that post at the same moment share one transaction:
 * the first becomes the leader, takes every post queued meanwhile, runs each in a savepoint
 * of its own (so one failing post does not undo the others) and commits them all; the
 * others wait for their results. A follower's pool and buffers are written only while it
 * waits, under the queue's mutex hand-over.
 */
struct post_op {
	struct store_post_op op; /* first: a batch is a list of these */
	int done;
};

static pthread_mutex_t post_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t post_cond = PTHREAD_COND_INITIALIZER;
static struct store_post_op *post_queue, **post_tail = &post_queue;
static int post_leading;

static int
savepoint(struct sq_store *st, const char *sql)
{
	return sqlite3_exec(st->db, sql, NULL, NULL, NULL) == SQLITE_OK ? RC_OK : RC_ERR;
}

/* Run a batch of posts in one transaction; each op gets its rc. With savepoints, each
 * post is undone alone when it fails. Without, a failure other than RC_NOTFOUND (which
 * post_one() answers before it writes anything) stops the batch: RC_CONFLICT, and nothing
 * is kept. */
static int
post_batch(struct sq_store *st, struct store_post_op *batch, int savepoints)
{
	char err[ERR_LEN];
	struct store_post_op *op;
	int rc, mark;

	rc = db_begin(st, err);
	for (op = batch; op; op = op->next) {
		if (rc != RC_OK) {
			op->rc = rc;
			snprintf(op->err, ERR_LEN, "%s", err);
			continue;
		}
		if (!savepoints) {
			op->rc = post_one(st, op->p, op->in, op->out, op->err);
			if (op->rc != RC_OK && op->rc != RC_NOTFOUND) {
				db_rollback(st);
				return RC_CONFLICT;
			}
			continue;
		}
		if (savepoint(st, "SAVEPOINT post") != RC_OK) {
			op->rc = db_fail(st, op->err, "savepoint");
			continue;
		}
		mark = st->ntouches;
		op->rc = post_one(st, op->p, op->in, op->out, op->err);
		if (op->rc != RC_OK) {
			savepoint(st, "ROLLBACK TO post");
			st->ntouches = mark; /* and the touches it put off */
		}
		savepoint(st, "RELEASE post");
	}
	if (rc == RC_OK && (rc = db_commit(st, err)) != RC_OK) {
		db_rollback(st);
		for (op = batch; op; op = op->next) {
			if (op->rc == RC_OK) {
				op->rc = rc;
				snprintf(op->err, ERR_LEN, "%s", err);
			}
		}
	}
	return RC_OK;
}

/* Savepoints cost each post a twentieth of its time, and posts almost never fail once
 * their conversation is found: a batch runs without them first, and again with them only
 * when one of its posts failed. */
void
sq_post_batch(struct store *sb, struct store_post_op *batch)
{
	struct sq_store *st = sq_of(sb);
	if (!batch->next || post_batch(st, batch, 0) == RC_CONFLICT)
		post_batch(st, batch, !!batch->next);
}

int
sq_post_batch_in(struct store *sb, struct store_post_op *batch)
{
	struct sq_store *st = sq_of(sb);
	return post_batch(st, batch, 0);
}

int
sq_post(struct store *sb, struct pool *p, const struct store_post *in,
	   struct store_posted *out, char *err)
{
	struct sq_store *st = sq_of(sb);
	struct post_op me = {{NULL, in, p, out, err, RC_OK}, 0};
	struct store_post_op *batch, *op;

	if (st->nested) {
		/* inside the caller's transaction: no batching across threads */
		int rc = post_one(st, p, in, out, err);
		if (rc != RC_OK)
			db_rollback(st);
		return rc;
	}
	pthread_mutex_lock(&post_lock);
	*post_tail = &me.op;
	post_tail = &me.op.next;
	while (!me.done && post_leading)
		pthread_cond_wait(&post_cond, &post_lock);
	if (me.done) {
		pthread_mutex_unlock(&post_lock);
		return me.op.rc;
	}
	/* lead: take everything queued, this post included */
	post_leading = 1;
	batch = post_queue;
	post_queue = NULL;
	post_tail = &post_queue;
	pthread_mutex_unlock(&post_lock);

	sq_post_batch(&st->base, batch);

	pthread_mutex_lock(&post_lock);
	for (op = batch; op; op = op->next)
		((struct post_op *)(void *)op)->done = 1;
	post_leading = 0;
	pthread_cond_broadcast(&post_cond);
	pthread_mutex_unlock(&post_lock);
	return me.op.rc;
}
