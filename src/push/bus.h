/*
 * The live bus between the daemons of several hosts, on Redis (docs/ARCHITECTURE.md, "The
 * live bus (Redis)"): the daemon that makes a reply appends each piece to the reply's
 * stream and announces it on one channel, with its end, stops and conversation events;
 * every other daemon hears them there and serves its own subscribers, and reads a reply's
 * stream back for the content so far.
 *
 * Two connections per bus (commands; SUBSCRIBE), made by hiredis on the daemon's libuv
 * loop, reconnected on loss after 100 ms, doubling to 2 s, never blocking the loop. All is
 * fire-and-forget: what is published while Redis is down (or while too much is in flight)
 * is dropped and counted, never buffered. Everything runs and calls back on the loop's
 * thread. Whatever comes from Redis is checked (types, sizes, ids) before it is used; a
 * malformed frame or entry is counted and skipped.
 */
#ifndef AICHATD_BUS_H
#define AICHATD_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "llm.h"

/* The reply's stream (key BUS_KEY_PREFIX "<msgId>"): XADD ... MAXLEN ~ BUS_STREAM_MAXLEN,
 * so a reply of LLM_REPLY_MAX in pieces of 4 bytes on average still fits whole; its TTL
 * is BUS_LIVE_TTL_S from each piece (a reply whose maker died expires) and BUS_END_TTL_S
 * from its end (long enough for a client to resume). */
#define BUS_KEY_PREFIX "aichatd:reply:"
#define BUS_CHANNEL "aichatd:events"          /* every host's frames */
#define BUS_NODE_CHANNEL "aichatd:node:"      /* + node_id: each bus's own (its pings) */
#define BUS_STREAM_MAXLEN (LLM_REPLY_MAX / 4)
#define BUS_LIVE_TTL_S 3600
#define BUS_END_TTL_S 600
#define BUS_REPLY_MAX (LLM_REPLY_MAX + 64)   /* bytes of a reply read or offset accepted */
#define BUS_ID_MAX 256                        /* bytes of an id or node name in a frame */
#define BUS_CONV_EVENT_MAX (256u * 1024)      /* bytes of a conversation event's JSON */
/* a frame's bytes at most: a piece of BUS_REPLY_MAX, every byte JSON-escaped (\u00XX) */
#define BUS_FRAME_MAX (BUS_REPLY_MAX * 6 + 4096)
#define BUS_INFLIGHT_MAX 65536                /* commands awaiting their reply, at most */
#define BUS_INFLIGHT_BYTES (64u << 20)        /* and their bytes */

struct bus;

/* A piece or an end published by another host; valid during the callback only. */
struct bus_reply_event {
	const char *node;        /* who published it */
	const char *msg_id;      /* the reply message's string id */
	const char *conv_id;
	const char *user_msg_id; /* "" when the reply answers none */
	int64_t run_id;
	size_t offset;           /* piece: the reply's byte length with it; end: the final
	                          * content's length */
	const char *s;           /* piece: its n bytes (not NUL-terminated); end: the error
	                          * (NUL-terminated, n its length), or NULL */
	size_t n;
	int status;              /* end: RUN_DONE, RUN_FAILED or RUN_STOPPED */
};

/* What the bus hears, on the loop's thread; any may be NULL. Frames this bus published
 * itself never come back. on_up: both connections are up and subscribed (the first time,
 * and after each loss); on_down: the bus was up and is not any more (pieces published
 * meanwhile by anyone may be missed: catch up with bus_read once it is up again). */
struct bus_events {
	void *arg;
	void (*on_piece)(void *arg, const struct bus_reply_event *e);
	void (*on_end)(void *arg, const struct bus_reply_event *e);
	/* a stop of run_id asked on another host: its owner stops it */
	void (*on_stop)(void *arg, const char *node, int64_t run_id);
	/* a conversation event for its WebSocket subscribers: json (len bytes, NUL-terminated,
	 * a JSON object) */
	void (*on_conv_event)(void *arg, const char *node, const char *conv_id, const char *json,
			      size_t len);
	void (*on_up)(void *arg);
	void (*on_down)(void *arg);
};

/* For the metrics: counts since the start. published: frames and entries sent (a piece,
 * an end, a stop, an event each count one); dropped: those not sent (the bus down, too
 * much in flight, or a piece that is not UTF-8 for its frame); received: frames from
 * other hosts handed to a callback; malformed: frames and stream entries skipped as
 * malformed; reconnects: connections made again after a loss. */
struct bus_counters {
	uint64_t published;
	uint64_t dropped;
	uint64_t received;
	uint64_t malformed;
	uint64_t reconnects;
};

/* Start the bus of this daemon on loop with cfg->redis_url ("redis://HOST[:PORT]" or
 * "unix:/PATH") and cfg->node_id, and ev (copied). With an empty redis_url the bus is off:
 * it never connects, every publish is a no-op that returns RC_UNAVAIL, bus_up() is 0.
 * Redis need not be up: the bus connects when it can. Returns the bus (freed by
 * bus_close), or NULL with err (ERR_LEN) for a URL it cannot use or a node_id that is
 * not 1 to BUS_ID_MAX bytes of UTF-8. Frames are told apart by node_id: it must be unique
 * per daemon (config.c's default, hostname:data_dir, is). */
struct bus *bus_start(uv_loop_t *loop, const struct config *cfg, const struct bus_events *ev,
		      char *err);
/* 1 when both connections are up and the channels subscribed; 0 else, and for NULL. */
int bus_up(const struct bus *b);
const struct bus_counters *bus_counters(const struct bus *b);
/* Close the connections and free b (NULL: nothing). Reads still waiting are answered
 * RC_UNAVAIL from within. Not from a bus callback; the loop must run once more after it to
 * close the handles (as after any uv_close). */
void bus_close(struct bus *b);

/*
 * Publishing: each is queued on the loop and returns at once, RC_OK; RC_UNAVAIL when it
 * was dropped (bus off, or not up: bus_up() is 0; or too much in flight), RC_ERR for
 * arguments out of bounds. Strings are copied.
 */
/* The piece s, n of reply msg_id, whose content is end_offset bytes long with it: an
 * entry on its stream (o = end_offset, d = the bytes) and a frame on the channel. */
int bus_piece(struct bus *b, const char *msg_id, const char *conv_id, const char *user_msg_id,
	      int64_t run_id, size_t end_offset, const char *s, size_t n);
/* Its end, once committed (a host that hears it reads the final content from the store):
 * status (RUN_*), error (NULL or "": none; at most 4 KiB) and the final content's length,
 * as an end entry on its stream (which then expires in BUS_END_TTL_S) and a frame. */
int bus_end(struct bus *b, const char *msg_id, const char *conv_id, const char *user_msg_id,
	    int64_t run_id, int status, const char *error, size_t len);
/* Ask every host to stop run_id (the one that makes it does). */
int bus_stop(struct bus *b, int64_t run_id);
/* A conversation event (json: len bytes, at most BUS_CONV_EVENT_MAX, of a JSON object in
 * UTF-8, say a new message) for the other hosts' WebSocket subscribers of conv_id. */
int bus_conv_event(struct bus *b, const char *conv_id, const char *json, size_t len);

/*
 * Catch-up: the content so far of reply msg_id from its stream.
 */
struct bus_read_result {
	int rc;              /* RC_OK; RC_NOTFOUND: no such stream (never published, or
	                      * expired); RC_UNAVAIL: the bus is down or went down during
	                      * the read; RC_NOMEM: the stream holds more than BUS_REPLY_MAX;
	                      * RC_ERR: the key holds no stream of ours */
	const char *content; /* the pieces joined in offset order from 0, each byte once */
	size_t len;
	int gap;             /* entries past len are missing (dropped or trimmed): content is
	                      * only a prefix of the reply so far */
	int ended;           /* the end entry is there: */
	int status;          /* its status (RUN_*), */
	const char *error;   /* its error (NULL: none) */
	size_t end_len;      /* and the final content's length */
	int restarted;       /* the reply was begun again from 0 after earlier pieces (a run
	                      * made again by another host): content is the last attempt's */
};
struct bus_read;
/* r and its strings are valid during the call only. */
typedef void (*bus_read_cb)(void *arg, const struct bus_read_result *r);
/* Read reply msg_id's stream (in pages of 512 entries, never more than BUS_REPLY_MAX of
 * content held) and call cb(arg, result) once, later, on the loop. Returns a handle for
 * bus_read_cancel, or NULL when the bus is off or down, too much is in flight, or msg_id
 * is no id (cb is then never called). To resume a reader without a gap or a repeat:
 * take on_piece's pieces first, then read; the live pieces at or below the read's len
 * are in it. */
struct bus_read *bus_read(struct bus *b, const char *msg_id, bus_read_cb cb, void *arg);
/* cb will not be called (its reader went away); the read's memory is freed when its
 * reply comes. Only before cb was called. */
void bus_read_cancel(struct bus_read *rd);

#endif
