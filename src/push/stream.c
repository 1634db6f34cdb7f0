/*
 * workflow's stream (GET /estream/{run}, see hub.h): the upstream's bytes of a run, as they
 * come, with the upstream's content type; a run that ended before the client came is sent
 * in one piece.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "pool.h"
#include "llm.h"
#include "texts.h"
#include "runs.h"
#include "hconn.h"

int
stream_head(struct hconn *c, const char *ctype)
{
	char head[320];

	c->headers_sent = 1;
	snprintf(head, sizeof(head),
		 "HTTP/1.1 200 OK\r\nContent-Type: %.128s\r\nCache-Control: no-cache\r\n"
		 "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n",
		 ctype);
	return hc_writes(c, head);
}

void
stream_open(struct hconn *c, int64_t run_id, struct pool *p)
{
	struct job_run *r = runs_find(run_id);
	struct run_result res;
	char err[ERR_LEN];

	hc_set_kind(c, K_STREAM);
	if (!r) {
		if (store_run_result(hub_env.store, p, run_id, &res, err) != RC_OK) {
			hc_respond(c, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
			return;
		}
		if (res.status == RUN_RUNNING) {
			runs_start_streamed(run_id);
			r = runs_find(run_id);
		}
		if (!r) {
			/* ended before the client came: what it made, in one piece */
			if (res.status == RUN_FAILED)
				stream_fail(c, res.error);
			else
				hc_respond(c, 200, "OK", "text/plain; charset=utf-8", res.reply.content);
			return;
		}
	}
	/* a run started without it (its post did not say so) keeps its bytes from now on */
	r->raw_wanted = 1;
	if (r->raw.len && (stream_head(c, r->raw_type) || hc_write(c, r->raw.s, r->raw.len)))
		return;
	/* the rest as it comes; the end (even one decided already) once it is written */
	topic_subscribe(c, "r:", pool_printf(p, "%lld", (long long)run_id));
}

void
stream_fail(struct hconn *c, const char *error)
{
	char body[LLM_ERROR_MAX + 64]; /* errors are at most LLM_ERROR_MAX: never cut */

	snprintf(body, sizeof(body), TEXT_WORKFLOW_SEND_FAILED, error ? error : "");
	hc_respond(c, 500, "Internal Server Error", "text/plain; charset=utf-8", body);
}
