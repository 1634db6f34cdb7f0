/*
 * The hub's own parts (see hub.h), shared by its files and by no other: a connection from
 * nginx, and what each file offers the ones above it.
 */
#ifndef AICHATD_HCONN_H
#define AICHATD_HCONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <http_parser.h>
#include <wslay/wslay.h>
#include <jansson.h>

#include "buf.h"
#include "config.h"
#include "store.h"

#define URL_MAX 4096
#define SSE_ID_MAX 160 /* a Last-Event-ID: longer than any id this daemon gives */
/* one stream's opening (init and done of a reply of LLM_REPLY_MAX, JSON-escaped) */
#define SSE_TEXT_MAX ((size_t)16 << 20)
/* connections over max_connections still read for a refusal; past these, closed unread */
#define REFUSE_SLACK 64

enum hkind { K_HTTP, K_WS, K_SSE, K_STREAM, K_SYNC };
enum hfield { H_NONE, H_UPGRADE, H_KEY, H_VERSION, H_AUTH, H_LASTID, H_REALIP };
/* Whether a WebSocket's user owns its conversation (auth = jwt): a socket opened on an id
 * nobody has used yet learns it when the conversation exists (ws_owns). */
enum wsown { OWN_ANY, OWN_UNKNOWN, OWN_YES, OWN_NO };

/* The request nginx hands over, as far as the hub reads it (http.c). */
struct hreq {
	struct buf url;
	enum hfield field;
	size_t header_bytes;
	int done;
	char upgrade[32];
	char key[64];
	char version[8];
	char auth[4200];
	char last_id[SSE_ID_MAX];
	char real_ip[64];
};

struct topic;
struct addr;

struct hconn {
	uv_pipe_t pipe;
	struct hconn *prev, *next; /* every connection */
	struct hconn *sub_next;    /* in its topic */
	struct topic *topic;
	enum hkind kind;
	/* what reads the client's bytes (the handover parser, then a WebSocket's frames; NULL
	 * when the client has nothing more to say) and what lets go of the kind's own state
	 * when the connection closes (or NULL) */
	void (*input)(struct hconn *c, const char *data, size_t n);
	void (*drop)(struct hconn *c);
	http_parser parser;
	struct hreq *req;          /* until the request is handled */
	wslay_event_context_ptr ws;
	struct buf wsin;           /* received bytes not yet taken by wslay */
	size_t queued;             /* bytes handed to uv and not yet written */
	uint64_t last_out;         /* uv_now of the last bytes written to it (SSE: quiet since) */
	char *conv_id;             /* WS: the conversation; sync: the query passed on */
	char *user;                /* WS: the token's user, NULL with auth off */
	int awaiting_pong;
	/* where the client's byte stream stands, frame by frame (ws_scan): the wslay context
	 * (about 9 KiB) exists only while a client message is being read, so an idle
	 * connection costs a few hundred bytes */
	uint64_t scan_left;        /* payload bytes of the current frame still to come */
	unsigned char scan_hdr[14];
	unsigned char scan_hlen;   /* header bytes of the next frame seen so far */
	unsigned char scan_frag;   /* inside a fragmented data message */
	int headers_sent;          /* workflow's stream: the response head is out */
	int closing;
	/* the message being received (ws_scan): its declared bytes so far, what of them is
	 * counted in ws_pending, and when it began (uv_now, 0: none under way) */
	uint64_t scan_msg;
	size_t held;
	uint64_t msg_started;
	unsigned char scan_fin_data; /* the current frame ends a data message */
	unsigned char scan_close;    /* a close frame's header was seen */
	int fail_code;             /* a violation ws_scan found: the close code to send */
	const char *fail_reason;
	int failed;                /* close frame sent: 1 frames still followed, 2 not */
	uint64_t linger_until;     /* after a close frame: input is read and dropped until */
	enum wsown own;
	int posts_pending;         /* send_message posts at the writer */
	int paused;                /* reading stopped until posts come back */
	int handle_closed;         /* uv closed the pipe; freed once posts_pending is 0 */
	struct addr *addr;         /* counted in its client address */
	/* a sync send (K_SYNC): its run, dialect ('d' or 'e'), and when it is let go unended */
	int64_t sync_run;
	uint64_t sync_deadline;
	char sync_kind;
};

/* Subscribers of one key: a conversation ("c:"), a reply message ("m:"), a run's stream
 * ("r:") or a run's held sync sends ("s:"). */
struct topic {
	struct topic *next;
	struct hconn *subs;
	char key[];
};

/* ---- conn.c ---- */

/* What the hub was given by hub_listen: kept for every file of it. */
struct hub_env {
	uv_loop_t *loop;
	struct config *cfg;
	struct store *store;
};
extern struct hub_env hub_env;
extern struct hconn *hub_all;  /* every connection, newest first */
extern size_t hub_ntopics;     /* topics with subscribers (none: events skip the lookups) */
/* the counters of hub_stats */
extern long hub_n_ws, hub_n_sse, hub_n_stream, hub_n_dropped, hub_n_refused, hub_n_conns;

/* A new connection of kind K_HTTP, in hub_all and counted, its pipe initialised, input
 * read by input once hc_read_start is called; NULL without memory. */
struct hconn *hc_new(void (*input)(struct hconn *c, const char *data, size_t n));
/* The connection is of kind now (counted as one for the caps and the stats). */
void hc_set_kind(struct hconn *c, enum hkind kind);
void hc_read_start(struct hconn *c);
/* Count the connection in its client address ip, under the caps: NULL, or why it is
 * refused (counted in hub_n_refused). */
const char *hc_admit(struct hconn *c, const char *ip);
/* Queue bytes for the client; a client whose backlog is over its buffer is dropped. 0 or
 * -1 (the connection is closed then). */
int hc_write(struct hconn *c, const char *s, size_t n);
int hc_writes(struct hconn *c, const char *s);
/* Close now (what is queued is lost), or once what is queued is written. */
void hc_close(struct hconn *c);
void hc_end(struct hconn *c);
/* A plain HTTP answer (handshake refusals, 404s), then the end of the connection. */
void hc_respond(struct hconn *c, int status, const char *reason, const char *ctype,
		const char *body);
/* The topic key, with create made when missing; NULL when missing (or no memory). */
struct topic *topic_get(const char *key, int create);
/* c subscribes to prefix + id (a connection is in one topic at most). 0 or -1. */
int topic_subscribe(struct hconn *c, const char *prefix, const char *id);
void topic_unsubscribe(struct hconn *c);
/* Write the same bytes to every subscriber of t (hc_write copies what it cannot send),
 * and with end, end each connection after. */
void topic_fan_out(struct topic *t, const char *s, size_t n, int end);

/* ---- sse.c: chax's event stream ---- */

/* Append one event to b. 0, or -1 (no memory, or content that is not UTF-8). */
int sse_put(struct buf *b, const char *type, const char *msg_id, size_t id, int end,
	    const char *content, size_t len);
/* The last event of a stream: error (with its message) when error is set, else done (with
 * the whole reply). */
int sse_put_end(struct buf *b, const char *msg_id, const char *content, size_t len,
		const char *error);
/* GET /sse/{msg_id}, resumed after last_id (or NULL); p: scratch for the call. */
void sse_open(struct hconn *c, const char *msg_id, const char *last_id, struct pool *p);

/* ---- stream.c: workflow's stream ---- */

/* The response head, with the upstream's content type. 0 or -1. */
int stream_head(struct hconn *c, const char *ctype);
/* The failure's answer: 500 and the dialect's text for it. */
void stream_fail(struct hconn *c, const char *error);
/* GET /estream/{run_id}. */
void stream_open(struct hconn *c, int64_t run_id, struct pool *p);

/* ---- sync.c: v1's and workflow's synchronous sends ---- */

/* GET /sync/{kind}/{run_id}, with the request's raw query (or NULL). */
void sync_open(struct hconn *c, char kind, int64_t run_id, const char *query);

/* ---- ws.c: WebSocket ---- */

/* A server frame, made once for every subscriber of a fan-out. */
struct frame {
	size_t len;
	char data[];
};
/* A JSON value (its reference is stolen) as one text frame; the caller frees it with
 * free(). NULL on failure. */
struct frame *ws_json_frame(json_t *j);
/* A frame of the conversation's fan-out: only to a connection of its owner. */
void ws_send_frame(struct hconn *c, const struct frame *f);
/* GET /ws/{conv_id}: the handshake (token: the client's, or NULL), then its frames. */
void ws_open(struct hconn *c, const char *conv_id, const char *token, struct pool *p);
/* A heartbeat tick for a WebSocket (ping: its ping is due): 0, or -1 when it was closed
 * as gone. */
int ws_beat(struct hconn *c, uint64_t now, int ping);
/* Bytes held by unfinished client messages, of ws_pending_max. */
size_t ws_pending_bytes(void);
void ws_init(void);
void ws_close_all(void);

/* ---- http.c: the handover ---- */

/* The listener's callback: accept a connection and read its request. */
void http_accept(uv_stream_t *srv, int status);

#endif
