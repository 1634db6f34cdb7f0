/*
 * The PostgreSQL store's posts, the one write path of every dialect's send: the
 * conversation found or created, the message, the reply placeholder and its run (with its
 * owner's lease when the post names one); the conversation touches, which the daemon's
 * writer puts off to the commit; and batches of posts in one transaction. PostgreSQL
 * takes concurrent writers, so there is no group commit across threads as in SQLite: each
 * connection commits its own posts.
 */
#include <stdio.h>
#include <libpq-fe.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "db.h"

/* ---- the rows a post inserts ---- */

/* Run an INSERT ... ON CONFLICT (its stamped id) DO NOTHING RETURNING id whose $1 is a
 * fresh "<prefix>_YYYYMMDDHHMMSS_xxxxxxxx" id (into id, of IDS_STAMPED_MAX bytes), drawing
 * another on the rare clash with one taken in the same second: a clash returns no row and
 * leaves the transaction as it was. fill() binds the other parameters, $2 on, each time
 * (pg_exec() consumes them). *row_id: the new row's id. */
static int
insert_stamped(struct pg_store *st, const struct pg_sql *q, const char *prefix, int64_t now,
	       void (*fill)(struct pg_args *a, const void *arg), const void *arg, char *id,
	       int64_t *row_id, char *err)
{
	PGresult *res;
	int rc, tries;

	for (tries = 0; tries < 8; tries++) {
		struct pg_args a = {0};

		if (ids_stamped(id, prefix, now) != RC_OK) {
			snprintf(err, ERR_LEN, "no randomness for an id");
			return RC_ERR;
		}
		arg_text(&a, id);
		fill(&a, arg);
		if (!(res = pg_exec(st, q, &a, "insert", &rc, err)))
			return rc;
		if (PQntuples(res) > 0) {
			*row_id = col_int(res, 0, 0);
			PQclear(res);
			return RC_OK;
		}
		PQclear(res);
	}
	snprintf(err, ERR_LEN, "insert: no free %s id in %d tries", prefix, tries);
	return RC_ERR;
}

static const struct pg_sql sql_msg_insert = {
	P_MSG_INSERT, 8,
	"INSERT INTO messages (msg_id, conv_seq, user_id, role, content, unfinished, metadata, "
	"created_at, updated_at) VALUES ($1::text, $2::bigint, $3::text, $4::text, $5::text, "
	"$6::bigint, $7::text, $8::bigint, $8::bigint) ON CONFLICT (msg_id) DO NOTHING "
	"RETURNING id"};

struct msg_args {
	int64_t conv_seq;
	const char *sender, *role, *content, *metadata;
	int unfinished;
	int64_t now;
};

static void
msg_args(struct pg_args *a, const void *arg)
{
	const struct msg_args *m = arg;

	arg_int(a, m->conv_seq);
	arg_text(a, m->sender);
	arg_text(a, m->role);
	arg_text(a, m->content);
	arg_int(a, m->unfinished);
	arg_text(a, m->metadata);
	arg_int(a, m->now);
}

/* Insert a message inside the caller's transaction. */
static int
msg_insert(struct pg_store *st, struct pool *p, const struct conv *c, const char *sender,
	   const char *role, const char *content, int unfinished, const char *metadata,
	   int64_t now, struct msg *out, char *err)
{
	struct msg_args m = {c->seq, sender, role, content, metadata, unfinished, now};
	char msg_id[IDS_STAMPED_MAX];
	int rc;

	rc = insert_stamped(st, &sql_msg_insert, "msg", now, msg_args, &m, msg_id, &out->id,
			    err);
	if (rc != RC_OK)
		return rc;
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

/* RUN_RUNNING as a literal, so that the partial index runs_open (WHERE status = 0)
 * serves the statements that look for running runs. */
_Static_assert(RUN_RUNNING == 0, "runs are inserted running: status 0");

static const struct pg_sql sql_run_insert = {
	P_RUN_INSERT, 8,
	"INSERT INTO runs (record_id, conv_seq, user_msg, ai_msg, status, created_at, "
	"model_config, owner, lease_until) VALUES ($1::text, $2::bigint, $3::bigint, "
	"$4::bigint, 0, $5::bigint, $6::text, $7::text, $8::bigint) "
	"ON CONFLICT (record_id) DO NOTHING RETURNING id"};

struct run_args {
	int64_t conv_seq, user_msg, ai_msg, now;
	const char *config, *owner;
	int64_t lease_ms;
};

static void
run_args(struct pg_args *a, const void *arg)
{
	const struct run_args *r = arg;

	arg_int(a, r->conv_seq);
	arg_int(a, r->user_msg);
	arg_int(a, r->ai_msg);
	arg_int(a, r->now);
	arg_text(a, r->config);
	arg_text(a, r->owner);
	if (r->owner)
		arg_int(a, r->now + r->lease_ms);
	else
		arg_null(a);
}

/* The run of a post, held by owner until now + lease_ms when owner is set (the daemon the
 * post hands it to), else nobody's. */
static int
run_insert(struct pg_store *st, struct pool *p, const struct conv *c, int64_t user_msg,
	   int64_t ai_msg, const char *config, const char *owner, int64_t lease_ms,
	   int64_t now, int64_t *run_id, char **record_id, char *err)
{
	struct run_args r = {c->seq, user_msg, ai_msg, now, config, owner, lease_ms};
	char rid[IDS_STAMPED_MAX];
	int rc;

	rc = insert_stamped(st, &sql_run_insert, "record", now, run_args, &r, rid, run_id, err);
	if (rc != RC_OK)
		return rc;
	*record_id = pool_strdup(p, rid);
	return *record_id ? RC_OK : RC_NOMEM;
}

/* ---- conversation touches ---- */

static const struct pg_sql sql_conv_touch = {
	P_CONV_TOUCH, 3,
	"UPDATE conversations SET updated_at = GREATEST(updated_at, $2::bigint), "
	"msg_count = msg_count + $3::bigint WHERE seq = $1::bigint"};

static int
touch_now(struct pg_store *st, int64_t seq, int64_t now, int delta, char *err)
{
	struct pg_args a = {0};

	arg_int(&a, seq);
	arg_int(&a, now);
	arg_int(&a, delta);
	return pg_do(st, &sql_conv_touch, &a, "touch conversation", NULL, err);
}

/* Apply the touches put off, one per conversation, in the order of their seq: two
 * writers that touch the same conversations lock their rows in one order, so neither
 * waits for the other in a deadlock. The list is then empty. db_commit() runs it
 * (st->before_commit). */
static int
touches_apply(struct pg_store *st, char *err)
{
	int i, j, rc = RC_OK;

	for (i = 0; i < st->ntouches; i++) {
		struct pg_touch *t = &st->touches[i];
		if (!t->seq)
			continue; /* merged into an earlier one */
		for (j = i + 1; j < st->ntouches; j++) {
			struct pg_touch *u = &st->touches[j];
			if (u->seq == t->seq) {
				t->delta += u->delta;
				if (u->now > t->now)
					t->now = u->now;
				u->seq = 0;
			}
		}
	}
	for (;;) {
		struct pg_touch *low = NULL;

		for (i = 0; i < st->ntouches; i++)
			if (st->touches[i].seq && (!low || st->touches[i].seq < low->seq))
				low = &st->touches[i];
		if (!low || rc != RC_OK)
			break;
		rc = touch_now(st, low->seq, low->now, low->delta, err);
		low->seq = 0;
	}
	st->ntouches = 0;
	return rc;
}

/*
 * A conversation's count and time change with each message. The writer's transactions
 * hold dozens of posts and reply ends, often for the same few conversations: with touches
 * put off, each conversation is updated once, at the commit, by the sum of its changes
 * (and its row is locked for the shortest time).
 */
void
pg_defer_touches(struct store *sb)
{
	struct pg_store *st = pg_of(sb);
	st->defer_touches = 1;
	st->before_commit = touches_apply;
}

/* The count change put off for conversation seq. */
static int64_t
touches_pending(const struct pg_store *st, int64_t seq)
{
	int64_t d = 0;
	int i;

	for (i = 0; i < st->ntouches; i++)
		if (st->touches[i].seq == seq)
			d += st->touches[i].delta;
	return d;
}

int
post_touch(struct pg_store *st, int64_t seq, int64_t now, int delta, char *err)
{
	int rc;

	if (!st->defer_touches || !st->in_txn)
		return touch_now(st, seq, now, delta, err);
	if (st->ntouches == (int)(sizeof(st->touches) / sizeof(st->touches[0])) &&
	    (rc = touches_apply(st, err)) != RC_OK)
		return rc;
	st->touches[st->ntouches++] = (struct pg_touch){seq, now, delta};
	return RC_OK;
}

/* ---- posts ---- */

/* One post, inside the transaction the caller holds. RC_NOTFOUND is answered before
 * anything is written, and leaves the transaction usable. */
static int
post_one(struct pg_store *st, struct pool *p, const struct store_post *in,
	 struct store_posted *out, char *err)
{
	int64_t now = time_now_ms();
	int rc = RC_NOTFOUND;

	if (in->conv_id)
		rc = pg_conv_get(&st->base, p, in->conv_id, in->owner, &out->conv, err);
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
					in->run_config, in->run_owner, in->lease_ms, now,
					&out->run_id, &out->record_id, err);
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

/* A savepoint statement of a batch; err gets PostgreSQL's message. */
static int
savepoint(struct pg_store *st, const char *sql, char *err)
{
	return pg_simple(st, sql, "savepoint", err);
}

/* Run a batch of posts in one transaction; each op gets its rc. With savepoints, each
 * post is undone alone when it fails (PostgreSQL's ROLLBACK TO also clears the failed
 * statement's abort). Without, a failure other than RC_NOTFOUND (which post_one()
 * answers before it writes anything) stops the batch: RC_CONFLICT, and nothing is kept. */
static int
post_batch(struct pg_store *st, struct store_post_op *batch, int savepoints)
{
	char err[ERR_LEN], why[ERR_LEN];
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
		if ((op->rc = savepoint(st, "SAVEPOINT post", op->err)) != RC_OK)
			continue;
		mark = st->ntouches;
		op->rc = post_one(st, op->p, op->in, op->out, op->err);
		if (op->rc != RC_OK) {
			savepoint(st, "ROLLBACK TO post", why);
			st->ntouches = mark; /* and the touches it put off */
		}
		savepoint(st, "RELEASE post", why);
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

/* Savepoints cost each post two more round trips, and posts almost never fail once their
 * conversation is found: a batch runs without them first, and again with them only when
 * one of its posts failed. */
void
pg_post_batch(struct store *sb, struct store_post_op *batch)
{
	struct pg_store *st = pg_of(sb);
	if (!batch->next || post_batch(st, batch, 0) == RC_CONFLICT)
		post_batch(st, batch, !!batch->next);
}

int
pg_post_batch_in(struct store *sb, struct store_post_op *batch)
{
	struct pg_store *st = pg_of(sb);
	return post_batch(st, batch, 0);
}

int
pg_post(struct store *sb, struct pool *p, const struct store_post *in,
	struct store_posted *out, char *err)
{
	struct pg_store *st = pg_of(sb);
	struct store_post_op me = {NULL, in, p, out, err, RC_OK};

	if (st->nested) {
		/* inside the caller's transaction */
		int rc = post_one(st, p, in, out, err);
		if (rc != RC_OK)
			db_rollback(st);
		return rc;
	}
	post_batch(st, &me, 0);
	return me.rc;
}
