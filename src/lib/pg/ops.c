/*
 * The PostgreSQL store's table for store.c: each function of store.h, as the files of
 * this folder implement it, and the opener that sets it on a new connection.
 */
#include <stddef.h>

#include "db.h"

static const struct store_ops pg_ops = {
	.name = "postgresql",
	.schema_latest = pg_schema_latest,
	.close = pg_close,
	.checkpoint = pg_checkpoint,
	.defer_touches = pg_defer_touches,
	.cache_kib = pg_cache_kib,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.migrate = pg_migrate,
	.migrate_report = pg_migrate_report,
	.version = pg_version,
	.conv_get = pg_conv_get,
	.conv_taken = pg_conv_taken,
	.conv_create = pg_conv_create,
	.conv_list = pg_conv_list,
	.conv_rename = pg_conv_rename,
	.conv_delete = pg_conv_delete,
	.post = pg_post,
	.post_batch = pg_post_batch,
	.post_batch_in = pg_post_batch_in,
	.msg_get = pg_msg_get,
	.msg_get_by_msgid = pg_msg_get_by_msgid,
	.msg_list = pg_msg_list,
	.msg_latest = pg_msg_latest,
	.msg_edit = pg_msg_edit,
	.msg_delete = pg_msg_delete,
	.pairs = pg_pairs,
	.run_list = pg_run_list,
	.runs_open = pg_runs_open,
	.run_job = pg_run_job,
	.post_job = pg_post_job,
	.run_history = pg_run_history,
	.run_status = pg_run_status,
	.run_of_reply = pg_run_of_reply,
	.run_claim = pg_run_claim,
	.runs_renew = pg_runs_renew,
	.runs_orphaned = pg_runs_orphaned,
	.run_reset = pg_run_reset,
	.run_finish = pg_run_finish,
	.run_result = pg_run_result,
	.mcfg_list = pg_mcfg_list,
	.mcfg_get = pg_mcfg_get,
	.mcfg_ensure = pg_mcfg_ensure,
	.mcfg_update = pg_mcfg_update,
	.log = pg_log,
	.log_list = pg_log_list,
	.backup = pg_backup,
	.users = pg_users,
	.purge = pg_purge,
	.chown = pg_chown,
};

/* Connect to the server url names (db.c's pg_connect(): its timeouts and keepalives). */
struct store *
pg_open(const char *url, char *err)
{
	struct store *st = pg_connect(url, err);

	if (st)
		st->ops = &pg_ops;
	return st;
}
