/*
 * v1's and workflow's synchronous sends (GET /sync/{d|e}/{run}, see hub.h).
 *
 * A worker that stored a sync send answers X-Accel-Redirect to nginx's /_aichatd_sync/,
 * which proxies the connection here. It is held, costing the pool nothing, until the run's
 * end is committed (sync_ended, from the end's write); then it is answered with an
 * X-Accel-Redirect of its own, to /_aichatd_result/<kind>/<run>, which nginx sends to the
 * pool as a GET with the client's headers: a worker renders the dialect's answer from the
 * store, authorised as any route. Held connections subscribe to "s:<run>".
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "runs.h"
#include "hub.h"
#include "hconn.h"

static void
sync_answer(struct hconn *c)
{
	char head[URL_MAX + 256];
	const char *q = c->conv_id; /* the query to pass on (see sync_open), or NULL */

	snprintf(head, sizeof(head),
		 "HTTP/1.1 200 OK\r\nX-Accel-Redirect: /_aichatd_result/%c/%lld%s%s\r\n"
		 "Content-Length: 0\r\nConnection: close\r\n\r\n",
		 c->sync_kind, (long long)c->sync_run, q ? "?" : "", q ? q : "");
	if (hc_writes(c, head) == 0)
		hc_end(c);
}

static uint64_t
sync_limit_ms(void)
{
	/* as a worker once waited: every run ends within connect + reply timeouts of its
	 * begin; a little slack on top */
	return ((uint64_t)hub_env.cfg->connect_timeout_s + hub_env.cfg->reply_timeout_s + 5) * 1000;
}

void
sync_open(struct hconn *c, char kind, int64_t run_id, const char *query)
{
	char err[ERR_LEN], key[32];
	int status;

	snprintf(key, sizeof(key), "%lld", (long long)run_id);
	hc_set_kind(c, K_SYNC);
	c->sync_kind = kind;
	c->sync_run = run_id;
	c->sync_deadline = uv_now(hub_env.loop) + sync_limit_ms();
	/* the query (raw, from nginx's request line: no CR or LF) rides along to the result
	 * route, so that ?access_token= authorises it too; kept in conv_id, unused otherwise */
	if (query && *query && strlen(query) < URL_MAX && !(c->conv_id = strdup(query))) {
		hc_close(c);
		return;
	}
	if (!runs_find(run_id) &&
	    (store_run_status(hub_env.store, run_id, &status, err) != RC_OK || status != RUN_RUNNING)) {
		sync_answer(c); /* ended (and written) before it came, or no such run */
		return;
	}
	if (topic_subscribe(c, "s:", key) != 0)
		hc_close(c);
}

void
sync_ended(int64_t run_id)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[64];

	snprintf(key, sizeof(key), "s:%lld", (long long)run_id);
	if (!hub_ntopics || !(t = topic_get(key, 0)))
		return;
	for (c = t->subs; c; c = next) {
		next = c->sub_next;
		sync_answer(c);
	}
}

void
sync_check(void)
{
	uint64_t now = uv_now(hub_env.loop);
	struct hconn *c, *next;
	char err[ERR_LEN];
	int status;

	for (c = hub_all; c; c = next) {
		next = c->next;
		if (c->kind != K_SYNC || c->closing || !c->topic)
			continue;
		if (runs_queued(c->sync_run)) {
			/* waiting for a slot: its time counts from its begin */
			c->sync_deadline = now + sync_limit_ms();
			continue;
		}
		if (!runs_find(c->sync_run)) {
			/* ended out of this daemon's sight (it never should) */
			if (store_run_status(hub_env.store, c->sync_run, &status, err) != RC_OK ||
			    status != RUN_RUNNING)
				sync_answer(c);
			continue;
		}
		if (now >= c->sync_deadline)
			sync_answer(c); /* the result route answers that the time ran out */
	}
}

