/*
 * store: the storage interface's entry points. store_open() picks the implementation by
 * the form of its target (a libpq URL: PostgreSQL; anything else: an SQLite file) and
 * every other function calls the connection's own (store-impl.h).
 */
#include <stdio.h>
#include <string.h>

#include "rc.h"
#include "store.h"
#include "store-impl.h"

int
store_target_is_pg(const char *target)
{
	return target && (strncmp(target, "postgresql://", 13) == 0 ||
			  strncmp(target, "postgres://", 11) == 0);
}

struct store *
store_open(const char *target, char *err)
{
	if (store_target_is_pg(target))
		return pg_open(target, err);
	return sq_open(target, err);
}

const char *
store_kind(const struct store *st)
{
	return st->ops->name;
}

int64_t
store_schema_latest(struct store *st)
{
	return st->ops->schema_latest(st);
}

void
store_close(struct store *st)
{
	st->ops->close(st);
}

int
store_checkpoint(struct store *st, int *wal_pages, int *copied)
{
	return st->ops->checkpoint(st, wal_pages, copied);
}

void
store_defer_touches(struct store *st)
{
	st->ops->defer_touches(st);
}

void
store_cache_kib(struct store *st, int kib)
{
	st->ops->cache_kib(st, kib);
}

int
store_begin(struct store *st, char *err)
{
	return st->ops->begin(st, err);
}

int
store_commit(struct store *st, char *err)
{
	return st->ops->commit(st, err);
}

void
store_rollback(struct store *st)
{
	st->ops->rollback(st);
}

int
store_migrate(struct store *st, char *err)
{
	return st->ops->migrate(st, err);
}

int
store_migrate_report(struct store *st, int64_t *from, int64_t *to, char *err)
{
	return st->ops->migrate_report(st, from, to, err);
}

int
store_version(struct store *st, int64_t *version, char *err)
{
	return st->ops->version(st, version, err);
}

int
store_conv_get(struct store *st, struct pool *p, const char *id, const char *owner, struct conv *out, char *err)
{
	return st->ops->conv_get(st, p, id, owner, out, err);
}

int
store_conv_taken(struct store *st, const char *id, char *err)
{
	return st->ops->conv_taken(st, id, err);
}

int
store_conv_create(struct store *st, struct pool *p, const char *id, const char *user_id, const char *title, const char *model_config, struct conv *out, char *err)
{
	return st->ops->conv_create(st, p, id, user_id, title, model_config, out, err);
}

int
store_conv_list(struct store *st, struct pool *p, const char *user, struct page pg, struct conv **rows, int *n, int64_t *total, char *err)
{
	return st->ops->conv_list(st, p, user, pg, rows, n, total, err);
}

int
store_conv_rename(struct store *st, const char *id, const char *owner, const char *title, char *err)
{
	return st->ops->conv_rename(st, id, owner, title, err);
}

int
store_conv_delete(struct store *st, const char *id, const char *owner, char *err)
{
	return st->ops->conv_delete(st, id, owner, err);
}

int
store_post(struct store *st, struct pool *p, const struct store_post *in, struct store_posted *out, char *err)
{
	return st->ops->post(st, p, in, out, err);
}

void
store_post_batch(struct store *st, struct store_post_op *ops)
{
	st->ops->post_batch(st, ops);
}

int
store_post_batch_in(struct store *st, struct store_post_op *ops)
{
	return st->ops->post_batch_in(st, ops);
}

int
store_msg_get(struct store *st, struct pool *p, int64_t id, const char *owner, struct msg *out, char *err)
{
	return st->ops->msg_get(st, p, id, owner, out, err);
}

int
store_msg_get_by_msgid(struct store *st, struct pool *p, const char *msg_id, const char *owner, struct msg *out, char *err)
{
	return st->ops->msg_get_by_msgid(st, p, msg_id, owner, out, err);
}

int
store_msg_list(struct store *st, struct pool *p, const struct conv *c, struct page pg, int all, struct msg **rows, int *n, int64_t *total, char *err)
{
	return st->ops->msg_list(st, p, c, pg, all, rows, n, total, err);
}

int
store_msg_latest(struct store *st, struct pool *p, const struct conv *c, int limit, struct msg **rows, int *n, char *err)
{
	return st->ops->msg_latest(st, p, c, limit, rows, n, err);
}

int
store_msg_edit(struct store *st, int64_t id, const char *content, char *err)
{
	return st->ops->msg_edit(st, id, content, err);
}

int
store_msg_delete(struct store *st, int64_t id, char *err)
{
	return st->ops->msg_delete(st, id, err);
}

int
store_pairs(struct store *st, struct pool *p, const struct conv *c, struct page pg, struct pair **rows, int *n, int64_t *total, char *err)
{
	return st->ops->pairs(st, p, c, pg, rows, n, total, err);
}

int
store_run_list(struct store *st, struct pool *p, const struct conv *c, struct page pg, struct run **rows, int *n, int64_t *total, char *err)
{
	return st->ops->run_list(st, p, c, pg, rows, n, total, err);
}

int
store_runs_open(struct store *st, struct pool *p, int64_t after, int limit, int64_t **ids, int *n, char *err)
{
	return st->ops->runs_open(st, p, after, limit, ids, n, err);
}

int
store_run_job(struct store *st, struct pool *p, int64_t run_id, const char *default_cfg, struct run_job *out, char *err)
{
	return st->ops->run_job(st, p, run_id, default_cfg, out, err);
}

int
store_post_job(struct store *st, struct pool *p, const struct store_post *in, const struct store_posted *out, const char *default_cfg, struct run_job *job, char *err)
{
	return st->ops->post_job(st, p, in, out, default_cfg, job, err);
}

int
store_run_history(struct store *st, struct pool *p, struct run_job *job, int window, char *err)
{
	return st->ops->run_history(st, p, job, window, err);
}

int
store_run_status(struct store *st, int64_t run_id, int *status, char *err)
{
	return st->ops->run_status(st, run_id, status, err);
}

int
store_run_of_reply(struct store *st, int64_t ai_msg, int64_t *run_id, int *status, char *err)
{
	return st->ops->run_of_reply(st, ai_msg, run_id, status, err);
}

int
store_run_claim(struct store *st, int64_t run_id, const char *owner, int64_t lease_ms,
		char *err)
{
	return st->ops->run_claim(st, run_id, owner, lease_ms, err);
}

int
store_runs_renew(struct store *st, const char *owner, int64_t lease_ms, int64_t *held,
		 char *err)
{
	return st->ops->runs_renew(st, owner, lease_ms, held, err);
}

int
store_runs_orphaned(struct store *st, struct pool *p, const char *owner, int64_t lease_ms,
		    int limit, int64_t **ids, int *n, char *err)
{
	return st->ops->runs_orphaned(st, p, owner, lease_ms, limit, ids, n, err);
}

int
store_run_reset(struct store *st, int64_t ai_msg, char *err)
{
	return st->ops->run_reset(st, ai_msg, err);
}

int
store_run_finish(struct store *st, const struct run_end *e, char *err)
{
	return st->ops->run_finish(st, e, err);
}

int
store_run_result(struct store *st, struct pool *p, int64_t run_id, struct run_result *out, char *err)
{
	return st->ops->run_result(st, p, run_id, out, err);
}

int
store_mcfg_list(struct store *st, struct pool *p, struct mcfg **rows, int *n, char *err)
{
	return st->ops->mcfg_list(st, p, rows, n, err);
}

int
store_mcfg_get(struct store *st, struct pool *p, const char *id, struct mcfg *out, char *err)
{
	return st->ops->mcfg_get(st, p, id, out, err);
}

int
store_mcfg_ensure(struct store *st, const struct mcfg *m, char *err)
{
	return st->ops->mcfg_ensure(st, m, err);
}

int
store_mcfg_update(struct store *st, const struct mcfg *m, int64_t *updated_at, char *err)
{
	return st->ops->mcfg_update(st, m, updated_at, err);
}

int
store_log(struct store *st, const char *level, const char *message)
{
	return st->ops->log(st, level, message);
}

int
store_log_list(struct store *st, struct pool *p, const char *level, int64_t from_ms, int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total, char *err)
{
	return st->ops->log_list(st, p, level, from_ms, to_ms, pg, rows, n, total, err);
}

int
store_backup(struct store *st, const char *path, int overwrite, int64_t *bytes, char *err)
{
	return st->ops->backup(st, path, overwrite, bytes, err);
}

int
store_users(struct store *st, void (*each)(void *arg, const struct store_user *u), void *arg, char *err)
{
	return st->ops->users(st, each, arg, err);
}

int
store_purge(struct store *st, int64_t before_ms, int dry_run, struct store_purged *out, char *err)
{
	return st->ops->purge(st, before_ms, dry_run, out, err);
}

int
store_chown(struct store *st, const char *conv_id, const char *from_owner, const char *new_owner, int64_t *moved, char *err)
{
	return st->ops->chown(st, conv_id, from_owner, new_owner, moved, err);
}
