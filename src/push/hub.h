/*
 * The hub: the connections nginx hands to the push daemon over $DATA/run/push-http.sock,
 * and the fan-out of each run's events to them.
 *   GET /ws/{conversation}     WebSocket (ws.c), authorised there
 *   GET /sse/{msgId}           chax's event stream (sse.c), authorised by a worker that
 *                              answered X-Accel-Redirect to nginx's internal location
 *   GET /estream/{run}         workflow's stream: the upstream's bytes passed through
 *                              (stream.c)
 *   GET /sync/{d|e}/{run}      v1's or workflow's synchronous send, held until the run's
 *                              end is committed, then sent on to the pool's result route
 *                              (sync.c)
 * The files, each calling only those below it: conn.c (connections, caps, topics, output
 * with backpressure), sse.c, stream.c, sync.c, ws.c, http.c (the handover parser and the
 * routes above), hub.c (listening, fan-out, heartbeats, counters). Their shared parts are in
 * hconn.h; this header is what the rest of the daemon uses.
 */
#ifndef AICHATD_HUB_H
#define AICHATD_HUB_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "store.h"

struct job_run;
struct witem;

/* Listen on cfg->push_http_socket with loop; cfg (whose connection caps left at 0 are set
 * here from the descriptor limit) and st are kept, and outlive the loop. RC_OK, or RC_ERR
 * with err set. */
int hub_listen(uv_loop_t *loop, struct config *cfg, struct store *st, char *err);
/* Fan-out of a run's events to its subscribers. hub_chunk sends what r->content holds
 * past r->sent in whole UTF-8 characters (the piece s, n was just appended to it). */
void hub_chunk(struct job_run *r, const char *s, size_t n);
/* n new bytes of the upstream's reply, already appended to r->raw (when it had room) */
void hub_raw(struct job_run *r, const char *s, size_t n);
/* r's end (r->end), once the writer has committed it: what it announces is durable. */
void hub_done(struct job_run *r);
/* A WebSocket's post (writer_post), back from the writer: answer its client (ws.c). */
void ws_posted(struct witem *it);
/* The synchronous sends held here (sync.c): run id's end is committed, so answer its
 * waiters; and, once a second, answer those whose run ended out of sight or whose time
 * is up. */
void sync_ended(int64_t run_id);
void sync_check(void);
/* "ws N sse N stream N dropped N refused N max_connections N max_connections_per_addr N
 * ws_pending N" */
void hub_stats(char *out, size_t len);
/* For the metrics (stats.h): into g, the connections held by kind, the drops and refusals
 * so far, the bytes of unfinished WebSocket messages, and max_runs. */
struct stats_gauges;
void hub_counts(struct stats_gauges *g);
/* After a settings reload (the loop's thread): the heartbeat timer takes the new periods,
 * and caps set to 0 are computed again. */
void hub_reconfigure(void);
/* Close every connection and the listener. */
void hub_close_all(void);

#endif
