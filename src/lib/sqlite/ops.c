/*
 * The SQLite store's table for store.c: each function of store.h, as the files of this
 * folder implement it, and the opener that sets it on a new connection.
 */
#include <stddef.h>

#include "db.h"

const struct store_ops sq_ops = {
	.name = "sqlite",
	.schema_latest = sq_schema_latest,
	.close = sq_close,
	.checkpoint = sq_checkpoint,
	.defer_touches = sq_defer_touches,
	.cache_kib = sq_cache_kib,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.migrate = sq_migrate,
	.migrate_report = sq_migrate_report,
	.version = sq_version,
	.conv_get = sq_conv_get,
	.conv_taken = sq_conv_taken,
	.conv_create = sq_conv_create,
	.conv_list = sq_conv_list,
	.conv_rename = sq_conv_rename,
	.conv_delete = sq_conv_delete,
	.post = sq_post,
	.post_batch = sq_post_batch,
	.post_batch_in = sq_post_batch_in,
	.msg_get = sq_msg_get,
	.msg_get_by_msgid = sq_msg_get_by_msgid,
	.msg_list = sq_msg_list,
	.msg_latest = sq_msg_latest,
	.msg_edit = sq_msg_edit,
	.msg_delete = sq_msg_delete,
	.pairs = sq_pairs,
	.run_list = sq_run_list,
	.runs_open = sq_runs_open,
	.run_job = sq_run_job,
	.post_job = sq_post_job,
	.run_history = sq_run_history,
	.run_status = sq_run_status,
	.run_of_reply = sq_run_of_reply,
	.run_claim = sq_run_claim,
	.runs_renew = sq_runs_renew,
	.runs_orphaned = sq_runs_orphaned,
	.run_reset = sq_run_reset,
	.run_finish = sq_run_finish,
	.run_result = sq_run_result,
	.mcfg_list = sq_mcfg_list,
	.mcfg_get = sq_mcfg_get,
	.mcfg_ensure = sq_mcfg_ensure,
	.mcfg_update = sq_mcfg_update,
	.log = sq_log,
	.log_list = sq_log_list,
	.backup = sq_backup,
	.users = sq_users,
	.purge = sq_purge,
	.chown = sq_chown,
};

struct store *
sq_open(const char *path, char *err)
{
	struct store *st = db_connect(path, err);

	if (st)
		st->ops = &sq_ops;
	return st;
}
