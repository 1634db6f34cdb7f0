/*
 * What both stores do alike in making a run's job, with no SQL: the job of a run a post
 * just started, from what the post wrote, and the default config of a run whose config is
 * gone (store-impl.h).
 */
#include <string.h>

#include "pool.h"
#include "store.h"
#include "store-impl.h"

void
store_job_default_cfg(struct pool *p, const char *default_cfg, struct mcfg *m)
{
	m->config_id = pool_strdup(p, default_cfg);
	m->provider = pool_strdup(p, default_cfg);
	m->model_name = pool_strdup(p, default_cfg);
	m->model_version = pool_strdup(p, "");
	m->parameters = pool_strdup(p, "{}");
	m->system_prompt = pool_strdup(p, "");
	m->updated_at = 0;
}

const char *
store_job_from_post(const struct store_post *in, const struct store_posted *out,
		    const char *default_cfg, struct run_job *job)
{
	memset(job, 0, sizeof(*job));
	job->run_id = out->run_id;
	job->record_id = out->record_id;
	job->ai_msg = out->reply.id;
	job->ai_msg_id = out->reply.msg_id;
	job->user_msg_id = out->msg.msg_id;
	job->conv_id = out->conv.id;
	job->user_id = out->msg.user_id;
	job->content = out->msg.content;
	job->created_at = out->msg.created_at;
	job->conv_seq = out->conv.seq;
	job->user_msg = out->msg.id;
	/* the config as the run's job query picks it: the run's, the conversation's, the
	 * default */
	return in->run_config ? in->run_config
	       : out->conv.model_config ? out->conv.model_config
					: default_cfg;
}
