/*
 * The live bus's private parts (only src/push/bus*.c include this): bus.c (the bus) calls
 * bus-link.c (one connection to Redis, kept up) and bus-wire.c (the formats, no I/O).
 *
 * bus-wire.c: the frames on the channel, made and checked, and the entries of a reply's
 * stream joined into its content so far. Whatever comes from Redis is untrusted: every
 * size, type and id is checked there.
 *
 * A frame is one compact JSON object: {"v":1,"n":node,"k":kind,...} with, by kind,
 *   piece  m (message id) c (conversation) u (user message id, may be "") r (run)
 *          o (the reply's byte length with the piece) d (its bytes)
 *   end    m c u r, o (the final length), s (RUN_DONE, RUN_FAILED, RUN_STOPPED), x (error,
 *          absent when none)
 *   stop   r
 *   conv   c, j (a JSON object's text)
 *   ping   (on a bus's own channel: it hears itself)
 * A stream entry is o <end offset> d <bytes> for a piece, o <length> e <status> [x <error>]
 * for the end.
 */
#ifndef AICHATD_BUS_INT_H
#define AICHATD_BUS_INT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "buf.h"
#include "bus.h"

#define BUS_ERROR_MAX 4096 /* bytes of an end's error */

enum bus_kind { BK_PIECE, BK_END, BK_STOP, BK_CONV, BK_PING };

/* A frame read: its strings live in j (bus_frame_free). */
struct bus_frame {
	json_t *j;
	enum bus_kind kind;
	const char *node;
	struct bus_reply_event e; /* piece and end; stop: e.run_id */
	const char *conv_id;      /* conv */
	const char *json;         /* conv: the event's text, json_len bytes */
	size_t json_len;
};

/* s: 1 to BUS_ID_MAX bytes of UTF-8 ("" too with empty_ok) */
int bus_id_ok(const char *s, int empty_ok);
/* The text of frame j (taken) of kind from node, malloc'd (the caller frees it); NULL
 * when it cannot be made (a string that is not UTF-8, no memory). */
char *bus_frame_text(const char *node, const char *kind, json_t *j);
/* Read n bytes s into f: 0, or -1 when malformed (f then needs no free). */
int bus_frame_parse(const char *s, size_t n, struct bus_frame *f);
void bus_frame_free(struct bus_frame *f);

/* A reply's stream being joined, in entry order. */
struct bus_join {
	struct buf content;  /* the pieces joined from offset 0, capped at BUS_REPLY_MAX */
	char last_id[64];    /* the last entry's id ("": none yet) */
	int any;             /* an entry was seen */
	int gap, ended, status, restarted;
	char *error;         /* the end's error (malloc'd) or NULL */
	size_t end_len;
};

void bus_join_init(struct bus_join *j);
void bus_join_free(struct bus_join *j);
/* Join one XRANGE entry [id, [field, value, ...]]: 0; -1 when malformed (skipped; last_id
 * is its id, or "" when it had no usable one); RC_NOMEM past BUS_REPLY_MAX. A piece that starts
 * where the content ends is appended; one already joined (or overlapping) adds only what
 * is new; one past the end is a gap (nothing more is joined until a piece at 0, which
 * begins the reply again: restarted). */
int bus_join_entry(struct bus_join *j, const redisReply *e);

/* ---- bus-link.c: one connection to Redis ---- */

/* Where Redis is: redis://HOST[:PORT] (HOST may be [v6]; PORT 6379 by default) or
 * unix:/PATH. */
struct bus_addr {
	char *host;
	int port;
	char *path;
};
/* Parse url into a: 0, or -1 with err (ERR_LEN); free a with bus_addr_free either way. */
int bus_addr_parse(struct bus_addr *a, const char *url, char *err);
void bus_addr_free(struct bus_addr *a);

enum link_state {
	L_DOWN,       /* its back-off timer runs, then it tries again */
	L_RESOLVING,  /* a host name, on libuv's thread pool (hiredis would block on it) */
	L_CONNECTING, /* connect(2) in progress; a timeout runs */
	L_CONNECTED,  /* up, not yet ready (the owner's own steps: SUBSCRIBE); the timeout too */
	L_READY
};

/*
 * A connection kept up: tried at once, and after each loss or failed try again after a
 * back-off of 100 ms doubling to 2 s (reset once ready); a try that is not ready within
 * 2 s is dropped. Its owner hears through the hooks, on the loop's thread.
 */
struct bus_link {
	uv_loop_t *loop;
	const struct bus_addr *addr; /* kept */
	const char *name;            /* for the log: "commands", "subscription" */
	void *owner;
	void (*connected)(struct bus_link *l); /* up: bus_link_ready() when it is */
	void (*lost)(struct bus_link *l);      /* it was connecting, up or ready, and is not */
	void (*released)(struct bus_link *l);  /* after bus_link_close: a handle of it closed */
	redisAsyncContext *ac;       /* ac->data is the link */
	enum link_state state;
	uint64_t reconnects;         /* times it came up again after being up */
	/* the owner's: confirmed subscriptions; commands in flight, their bytes, and the
	 * uv_now() of the last answer */
	int subs;
	size_t inflight;
	size_t inflight_bytes;
	uint64_t last_reply;
	/* its own */
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	int gai_busy;
	unsigned backoff_ms;
	int ever;
	int logged_down;
	int closing;
};

/* Set l up (owner, name and hooks are set by the caller first) and make its first try. */
void bus_link_start(struct bus_link *l, uv_loop_t *loop, const struct bus_addr *addr);
/* It is ready: L_READY, its back-off reset. */
void bus_link_ready(struct bus_link *l);
/* Drop its connection (never from within a hiredis callback: the link's state is then
 * not settled; a hiredis callback uses redisAsyncDisconnect): its callbacks waiting for
 * replies get NULL within; lost() is called, then it tries again after the back-off. */
void bus_link_drop(struct bus_link *l, const char *why);
/* Close it for good: its connection freed (its waiting callbacks get NULL within). Returns
 * how many released() calls are to come (its timer, and a name lookup in progress). */
int bus_link_close(struct bus_link *l);

#endif
