/*
 * The storage interface's implementations' side: struct store is what every
 * implementation's connection begins with, and its ops are the implementation's functions,
 * one per function of store.h (store.c calls them). src/lib/sqlite/ (the default) and
 * src/lib/pg/ (PostgreSQL, when AICHATD_DATABASE_URL names one) each fill a table.
 * Nothing outside src/lib/ includes this header.
 */
#ifndef AICHATD_STORE_IMPL_H
#define AICHATD_STORE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct store_ops {
	const char *name; /* "sqlite" or "postgresql": what `aichatd config` and the logs say */
	int64_t (*schema_latest)(struct store *st);
	void (*close)(struct store *st);
	int (*checkpoint)(struct store *st, int *wal_pages, int *copied);
	void (*defer_touches)(struct store *st);
	void (*cache_kib)(struct store *st, int kib);
	int (*begin)(struct store *st, char *err);
	int (*commit)(struct store *st, char *err);
	void (*rollback)(struct store *st);
	int (*migrate)(struct store *st, char *err);
	int (*migrate_report)(struct store *st, int64_t *from, int64_t *to, char *err);
	int (*version)(struct store *st, int64_t *version, char *err);
	int (*conv_get)(struct store *st, struct pool *p, const char *id, const char *owner, struct conv *out, char *err);
	int (*conv_taken)(struct store *st, const char *id, char *err);
	int (*conv_create)(struct store *st, struct pool *p, const char *id, const char *user_id, const char *title, const char *model_config, struct conv *out, char *err);
	int (*conv_list)(struct store *st, struct pool *p, const char *user, struct page pg, struct conv **rows, int *n, int64_t *total, char *err);
	int (*conv_rename)(struct store *st, const char *id, const char *owner, const char *title, char *err);
	int (*conv_delete)(struct store *st, const char *id, const char *owner, char *err);
	int (*post)(struct store *st, struct pool *p, const struct store_post *in, struct store_posted *out, char *err);
	void (*post_batch)(struct store *st, struct store_post_op *ops);
	int (*post_batch_in)(struct store *st, struct store_post_op *ops);
	int (*msg_get)(struct store *st, struct pool *p, int64_t id, const char *owner, struct msg *out, char *err);
	int (*msg_get_by_msgid)(struct store *st, struct pool *p, const char *msg_id, const char *owner, struct msg *out, char *err);
	int (*msg_list)(struct store *st, struct pool *p, const struct conv *c, struct page pg, int all, struct msg **rows, int *n, int64_t *total, char *err);
	int (*msg_latest)(struct store *st, struct pool *p, const struct conv *c, int limit, struct msg **rows, int *n, char *err);
	int (*msg_edit)(struct store *st, int64_t id, const char *content, char *err);
	int (*msg_delete)(struct store *st, int64_t id, char *err);
	int (*pairs)(struct store *st, struct pool *p, const struct conv *c, struct page pg, struct pair **rows, int *n, int64_t *total, char *err);
	int (*run_list)(struct store *st, struct pool *p, const struct conv *c, struct page pg, struct run **rows, int *n, int64_t *total, char *err);
	int (*runs_open)(struct store *st, struct pool *p, int64_t after, int limit, int64_t **ids, int *n, char *err);
	int (*run_job)(struct store *st, struct pool *p, int64_t run_id, const char *default_cfg, struct run_job *out, char *err);
	int (*post_job)(struct store *st, struct pool *p, const struct store_post *in, const struct store_posted *out, const char *default_cfg, struct run_job *job, char *err);
	int (*run_history)(struct store *st, struct pool *p, struct run_job *job, int window, char *err);
	int (*run_status)(struct store *st, int64_t run_id, int *status, char *err);
	int (*run_of_reply)(struct store *st, int64_t ai_msg, int64_t *run_id, int *status, char *err);
	int (*run_claim)(struct store *st, int64_t run_id, const char *owner, int64_t lease_ms, char *err);
	int (*runs_renew)(struct store *st, const char *owner, int64_t lease_ms, int64_t *held, char *err);
	int (*runs_orphaned)(struct store *st, struct pool *p, const char *owner, int64_t lease_ms, int limit, int64_t **ids, int *n, char *err);
	int (*run_reset)(struct store *st, int64_t ai_msg, char *err);
	int (*run_finish)(struct store *st, const struct run_end *e, char *err);
	int (*run_result)(struct store *st, struct pool *p, int64_t run_id, struct run_result *out, char *err);
	int (*mcfg_list)(struct store *st, struct pool *p, struct mcfg **rows, int *n, char *err);
	int (*mcfg_get)(struct store *st, struct pool *p, const char *id, struct mcfg *out, char *err);
	int (*mcfg_ensure)(struct store *st, const struct mcfg *m, char *err);
	int (*mcfg_update)(struct store *st, const struct mcfg *m, int64_t *updated_at, char *err);
	int (*log)(struct store *st, const char *level, const char *message);
	int (*log_list)(struct store *st, struct pool *p, const char *level, int64_t from_ms, int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total, char *err);
	int (*backup)(struct store *st, const char *path, int overwrite, int64_t *bytes, char *err);
	int (*users)(struct store *st, void (*each)(void *arg, const struct store_user *u), void *arg, char *err);
	int (*purge)(struct store *st, int64_t before_ms, int dry_run, struct store_purged *out, char *err);
	int (*chown)(struct store *st, const char *conv_id, const char *from_owner, const char *new_owner, int64_t *moved, char *err);
};

/* The head of every implementation's connection. */
struct store {
	const struct store_ops *ops;
};

/* store-job.c, for both implementations: the config of a run whose config is gone (the
 * default's names, in p); and the job of a run a post just started, filled from what the
 * post wrote (no history, no config): returns the id of the config to read into
 * job->cfg (the run's, the conversation's, else default_cfg). */
struct pool;
void store_job_default_cfg(struct pool *p, const char *default_cfg, struct mcfg *m);
const char *store_job_from_post(const struct store_post *in, const struct store_posted *out,
				const char *default_cfg, struct run_job *job);

/* The implementations' openers (store_open() picks one by the target's form). */
struct store *sq_open(const char *path, char *err);
struct store *pg_open(const char *url, char *err);

#endif
