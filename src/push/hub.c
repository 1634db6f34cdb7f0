/*
 * The hub's top (see hub.h): the listener, the fan-out of each run's events to the topics
 * that follow it, the heartbeat timer (SSE comments, WebSocket pings, and the clients that
 * stopped reading or answering), the connection caps and the counters. Its events come
 * from the runs through the daemon's main (runs_events).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/resource.h>
#include <jansson.h>

#include "rc.h"
#include "util.h"
#include "log.h"
#include "runs.h"
#include "hub.h"
#include "stats.h"
#include "hconn.h"

static uv_pipe_t listener;
static uv_timer_t beat;

/* ---- fan-out ---- */

void
hub_chunk(struct job_run *r, const char *s, size_t n)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[256];
	size_t upto = utf8_fit(r->content.s, r->content.len, r->content.len), from = r->sent;
	struct buf b;
	json_t *j = NULL;

	if (upto <= from)
		return; /* the piece ended inside a character: it goes out with the next */
	r->sent = upto;
	if (!hub_ntopics)
		return;
	s = r->content.s + from;
	n = upto - from;
	snprintf(key, sizeof(key), "m:%s", r->job.ai_msg_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		/* one event's bytes for every subscriber: they hub_all have the same id */
		buf_init(&b, SSE_TEXT_MAX);
		if (sse_put(&b, "chunk", r->job.ai_msg_id, upto, 0, s, n) == 0)
			topic_fan_out(t, b.s, b.len, 0);
		buf_free(&b);
	}
	snprintf(key, sizeof(key), "c:%s", r->job.conv_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		struct frame *f;

		j = json_pack("{s:s,s:s,s:s,s:s,s:s%}", "type", "ai_chunk", "message_id",
			      r->job.ai_msg_id, "user_message_id", r->job.user_msg_id,
			      "session_id", r->job.conv_id, "content", s, n);
		f = ws_json_frame(j);
		for (c = t->subs; c; c = next) {
			next = c->sub_next;
			ws_send_frame(c, f);
		}
		free(f);
	}
}

void
hub_raw(struct job_run *r, const char *s, size_t n)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[64];

	if (!hub_ntopics)
		return;
	snprintf(key, sizeof(key), "r:%lld", (long long)r->id);
	if (!(t = topic_get(key, 0)))
		return;
	for (c = t->subs; c; c = next) {
		next = c->sub_next;
		/* a subscriber's first bytes are the head and everything so far */
		if (!c->headers_sent) {
			if (stream_head(c, r->raw_type) == 0)
				hc_write(c, r->raw.s, r->raw.len);
		} else {
			hc_write(c, s, n);
		}
	}
}

void
hub_done(struct job_run *r)
{
	int status = r->end.status;
	const char *error = r->end.error;
	struct topic *t;
	struct hconn *c, *next;
	char key[256];
	struct buf b;
	json_t *j;

	if (!hub_ntopics)
		return;
	snprintf(key, sizeof(key), "m:%s", r->job.ai_msg_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		buf_init(&b, SSE_TEXT_MAX);
		if (sse_put_end(&b, r->job.ai_msg_id, r->content.s, r->content.len,
				status == RUN_FAILED ? (error ? error : "") : NULL) == 0) {
			topic_fan_out(t, b.s, b.len, 1);
		} else {
			for (c = t->subs; c; c = next) {
				next = c->sub_next;
				hc_close(c);
			}
		}
		buf_free(&b);
	}
	snprintf(key, sizeof(key), "c:%s", r->job.conv_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		if (status == RUN_FAILED)
			j = json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "error", "message",
				      error ? error : "AI 服务调用失败", "message_id", r->job.ai_msg_id,
				      "user_message_id", r->job.user_msg_id, "session_id",
				      r->job.conv_id);
		else
			j = json_pack("{s:s,s:s,s:s%,s:s,s:s,s:b}", "type", "ai_reply", "message_id",
				      r->job.ai_msg_id, "content", r->content.s, r->content.len,
				      "user_message_id", r->job.user_msg_id, "session_id",
				      r->job.conv_id, "stopped", status == RUN_STOPPED);
		{
			struct frame *f = ws_json_frame(j);
			for (c = t->subs; c; c = next) {
				next = c->sub_next;
				ws_send_frame(c, f);
			}
			free(f);
		}
	}
	snprintf(key, sizeof(key), "r:%lld", (long long)r->id);
	if ((t = topic_get(key, 0))) {
		for (c = t->subs; c; c = next) {
			next = c->sub_next;
			if (!c->headers_sent) {
				if (status == RUN_FAILED) {
					stream_fail(c, error);
					continue;
				}
				if (stream_head(c, "text/plain; charset=utf-8") ||
				    hc_write(c, r->content.s, r->content.len))
					continue;
			}
			hc_end(c);
		}
	}
}

/* ---- heartbeats ---- */

static uint64_t last_ping; /* the WebSocket pings' clock, from hub_listen() */

static void
on_beat(uv_timer_t *t)
{
	uint64_t now = uv_now(hub_env.loop);
	uint64_t quiet = (uint64_t)hub_env.cfg->sse_heartbeat_s * 1000;
	/* the timer ticks at the shorter period; WebSocket pings keep one clock for all, an
	 * SSE stream is pinged when it has been quiet for its period (a tick's slack is
	 * forgiven, so a 1 s period is not missed by a timer that fires a millisecond early) */
	int ping;
	struct hconn *c, *next;

	(void)t;
	ping = now - last_ping + 50 >= (uint64_t)hub_env.cfg->ws_ping_s * 1000;
	if (ping)
		last_ping = now;
	for (c = hub_all; c; c = next) {
		next = c->next;
		if (c->queued > hub_env.cfg->client_buffer) {
			/* still over its buffer a beat after its last message (the end of a
			 * stream, say, that nothing follows): it does not read */
			hub_n_dropped++;
			hc_close(c);
			continue;
		}
		if (c->kind == K_SSE && now - c->last_out + 50 >= quiet)
			hc_writes(c, ": ping\n\n");
		else if (c->kind == K_WS)
			ws_beat(c, now, ping);
	}
}

/* ---- start, stop, counters ---- */

/*
 * The connection caps not set: what the descriptors allow (RLIMIT_NOFILE, which main
 * raised to its hard limit). Kept free: 64, two per worker thread (its links to the post
 * and control sockets), and an eighth of the limit (upstream transfers, the database,
 * sync waiters, nginx's connections being refused). Per address: an eighth of the total.
 */
static void
hub_caps(void)
{
	struct rlimit rl;
	long nofile = 1024, reserve, max;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		nofile = (long)rl.rlim_cur;
	else if (rl.rlim_cur == RLIM_INFINITY)
		nofile = 1L << 20;
	reserve = 64 + 2L * hub_env.cfg->workers * hub_env.cfg->threads + nofile / 8;
	max = nofile - reserve - REFUSE_SLACK;
	if (max < 16)
		max = 16;
	if (max > 1L << 24)
		max = 1L << 24;
	if (!hub_env.cfg->max_connections)
		hub_env.cfg->max_connections = (int)max;
	if (!hub_env.cfg->max_connections_per_addr)
		hub_env.cfg->max_connections_per_addr =
			hub_env.cfg->max_connections / 8 < 16 ? 16 : hub_env.cfg->max_connections / 8;
	log_info("descriptors %ld: at most %d connections, %d per address", nofile,
		hub_env.cfg->max_connections, hub_env.cfg->max_connections_per_addr);
}

/* one timer for all three: its period is the shortest */
static int
beat_period(void)
{
	int ms = (hub_env.cfg->sse_heartbeat_s < hub_env.cfg->ws_ping_s ? hub_env.cfg->sse_heartbeat_s
									 : hub_env.cfg->ws_ping_s) * 1000;

	if (hub_env.cfg->ws_fragment_timeout_s * 1000 < ms)
		ms = hub_env.cfg->ws_fragment_timeout_s * 1000;
	return ms;
}

int
hub_listen(uv_loop_t *loop, struct config *cfg, struct store *st, char *err)
{
	const char *path = cfg->push_http_socket;
	int rc;
	int beat_ms;

	hub_env.loop = loop;
	hub_env.cfg = cfg;
	hub_env.store = st;
	unlink(path);
	uv_pipe_init(hub_env.loop, &listener, 0);
	if ((rc = uv_pipe_bind(&listener, path)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&listener, 4096, http_accept)) != 0) {
		snprintf(err, ERR_LEN, "cannot listen on %s: %s", path, uv_strerror(rc));
		return RC_ERR;
	}
	/* nginx's user reaches it through socket_group */
	if (config_share_socket(hub_env.cfg, path, err) != RC_OK)
		return RC_ERR;
	uv_timer_init(hub_env.loop, &beat);
	ws_init();
	hub_caps();
	beat_ms = beat_period();
	last_ping = uv_now(hub_env.loop); /* the first pings a period after the start */
	uv_timer_start(&beat, on_beat, (uint64_t)beat_ms, (uint64_t)beat_ms);
	return RC_OK;
}

void
hub_reconfigure(void)
{
	int beat_ms = beat_period();

	hub_caps();
	uv_timer_stop(&beat);
	uv_timer_start(&beat, on_beat, (uint64_t)beat_ms, (uint64_t)beat_ms);
}

void
hub_stats(char *out, size_t len)
{
	snprintf(out, len,
		 "ws %ld sse %ld stream %ld dropped %ld refused %ld max_connections %d "
		 "max_connections_per_addr %d ws_pending %zu",
		 hub_n_ws, hub_n_sse, hub_n_stream, hub_n_dropped, hub_n_refused, hub_env.cfg->max_connections,
		 hub_env.cfg->max_connections_per_addr, ws_pending_bytes());
}

void
hub_counts(struct stats_gauges *g)
{
	g->ws = hub_n_ws;
	g->sse = hub_n_sse;
	g->stream = hub_n_stream;
	g->other = hub_n_conns - hub_n_ws - hub_n_sse - hub_n_stream;
	g->dropped = hub_n_dropped;
	g->refused = hub_n_refused;
	g->ws_pending = ws_pending_bytes();
	g->max_runs = hub_env.cfg->max_runs;
}

void
hub_close_all(void)
{
	while (hub_all)
		hc_close(hub_all);
	uv_timer_stop(&beat);
	ws_close_all();
	if (!uv_is_closing((uv_handle_t *)&listener))
		uv_close((uv_handle_t *)&listener, NULL);
}
