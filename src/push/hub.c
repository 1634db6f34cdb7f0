/*
 * hub: the connections nginx hands to the push daemon over $DATA/run/push-http.sock, and
 * the fan-out of each run's events to them.
 *   GET /ws/{conversation}     WebSocket (client frames read by wslay, server frames
 *                              written here), authorised here
 *   GET /sse/{msgId}           dialect C's event stream, authorised by a worker that
 *                              answered X-Accel-Redirect to nginx's internal location
 *   GET /estream/{run}         dialect E's stream: the upstream's bytes passed through
 *   GET /sync/{d|e}/{run}      D's or E's synchronous send: held until the run's end is
 *                              committed, then sent on to the pool's result route
 * Requests are parsed with http-parser. Every connection's unsent output is bounded by
 * client_buffer: a client that does not read is dropped without slowing the others. One
 * timer sends SSE heartbeats and WebSocket pings, and closes clients that stopped answering
 * or left a message unfinished. Connections are capped in all and per client address
 * (over_cap). Under auth = jwt a WebSocket gets only its own user's conversation's events
 * (ws_owns), and its sends are stored by the writer thread (ws_send_message, hub_posted).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <http_parser.h>
#include <wslay/wslay.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <openssl/evp.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "token.h"
#include "url.h"
#include "limits.h"
#include "jsonpool.h"
#include "pushd.h"

#define URL_MAX 4096
#define HEADERS_MAX 16384
#define TOPICS 4096
/* a closing WebSocket waits at most this long for the client's close */
#define LINGER_MS 2000
/* a client's send_message posts at the writer at once; its next messages wait */
#define WS_POSTS_MAX 32
/* what an unfinished WebSocket message costs beyond its bytes (wslay's context and
 * buffers), counted in ws_pending_max */
#define WS_MSG_COST 16384
/* connections over max_connections still read for a refusal; past these, closed unread */
#define REFUSE_SLACK 64
#define SSE_ID_MAX 160 /* a Last-Event-ID: longer than any id this daemon gives */

enum hkind { K_HTTP, K_WS, K_SSE, K_STREAM, K_SYNC };
enum hfield { H_NONE, H_UPGRADE, H_KEY, H_VERSION, H_AUTH, H_LASTID, H_REALIP };
/* Whether a WebSocket's user owns its conversation (auth = jwt): a socket opened on an id
 * nobody has used yet learns it when the conversation exists (ws_owns). */
enum wsown { OWN_ANY, OWN_UNKNOWN, OWN_YES, OWN_NO };

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

struct hconn {
	uv_pipe_t pipe;
	struct hconn *prev, *next; /* every connection */
	struct hconn *sub_next;    /* in its topic */
	struct topic *topic;
	enum hkind kind;
	http_parser parser;
	struct hreq *req;          /* until the request is handled */
	wslay_event_context_ptr ws;
	struct buf wsin;           /* received bytes not yet taken by wslay */
	size_t queued;             /* bytes handed to uv and not yet written */
	char *conv_id;             /* WS: the conversation */
	char *user;                /* WS: the token's user, NULL with auth off */
	int awaiting_pong;
	/* where the client's byte stream stands, frame by frame (ws_scan): the wslay context
	 * (about 9 KiB) exists only while a client message is being read, so an idle
	 * connection costs a few hundred bytes */
	uint64_t scan_left;        /* payload bytes of the current frame still to come */
	unsigned char scan_hdr[14];
	unsigned char scan_hlen;   /* header bytes of the next frame seen so far */
	unsigned char scan_frag;   /* inside a fragmented data message */
	int headers_sent;          /* E's stream: the response head is out */
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

/* Connections per client address (nginx's X-Real-IP). */
struct addr {
	struct addr *next;
	int n;
	char ip[];
};

struct topic {
	struct topic *next;
	struct hconn *subs;
	char key[];
};

static uv_pipe_t listener;
static uv_timer_t beat;
static struct hconn *all;
static struct topic *topics[TOPICS];
static long n_ws, n_sse, n_stream, n_dropped;
static http_parser_settings settings;
/* every connection from nginx, whatever its state; those refused for the caps; bytes held
 * for unfinished WebSocket messages (ws_pending_max), and connections closing (linger) */
static long n_conns, n_refused, n_lingering;
static size_t ws_pending;
static uv_timer_t linger;

static void hc_close(struct hconn *c);

/* ---- connections per client address ---- */

#define ADDRS 1024
static struct addr *addrs[ADDRS];

static unsigned
addr_hash(const char *k)
{
	unsigned h = 2166136261u;

	while (*k)
		h = (h ^ (unsigned char)*k++) * 16777619u;
	return h % ADDRS;
}

static struct addr *
addr_get(const char *ip)
{
	struct addr **p = &addrs[addr_hash(ip)], *a;

	for (a = *p; a; a = a->next)
		if (strcmp(a->ip, ip) == 0)
			return a;
	if (!(a = calloc(1, sizeof(*a) + strlen(ip) + 1)))
		return NULL;
	strcpy(a->ip, ip);
	a->next = *p;
	*p = a;
	return a;
}

static void
addr_put(struct addr *a)
{
	struct addr **p;

	if (--a->n > 0)
		return;
	for (p = &addrs[addr_hash(a->ip)]; *p; p = &(*p)->next) {
		if (*p == a) {
			*p = a->next;
			free(a);
			return;
		}
	}
}

/* ---- topics: subscribers by conversation ("c:"), reply message ("m:") or run ("r:") ---- */

static unsigned
topic_hash(const char *k)
{
	unsigned h = 2166136261u;

	while (*k)
		h = (h ^ (unsigned char)*k++) * 16777619u;
	return h % TOPICS;
}

/* Topics with subscribers; none (the common case in a busy daemon with no browsers
 * attached) lets a reply's events skip the lookups. */
static size_t ntopics;

static struct topic *
topic_get(const char *key, int create)
{
	struct topic **p = &topics[topic_hash(key)], *t;

	for (t = *p; t; t = t->next)
		if (strcmp(t->key, key) == 0)
			return t;
	if (!create || !(t = calloc(1, sizeof(*t) + strlen(key) + 1)))
		return NULL;
	strcpy(t->key, key);
	t->next = *p;
	*p = t;
	ntopics++;
	return t;
}

static void
topic_drop_if_empty(struct topic *t)
{
	struct topic **p = &topics[topic_hash(t->key)];

	if (t->subs)
		return;
	for (; *p; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			free(t);
			ntopics--;
			return;
		}
	}
}

static int
subscribe(struct hconn *c, const char *prefix, const char *id)
{
	char key[256];
	struct topic *t;

	snprintf(key, sizeof(key), "%s%s", prefix, id);
	t = topic_get(key, 1);
	if (!t)
		return -1;
	c->topic = t;
	c->sub_next = t->subs;
	t->subs = c;
	return 0;
}

static void
unsubscribe(struct hconn *c)
{
	struct hconn **p;

	if (!c->topic)
		return;
	for (p = &c->topic->subs; *p; p = &(*p)->sub_next) {
		if (*p == c) {
			*p = c->sub_next;
			break;
		}
	}
	topic_drop_if_empty(c->topic);
	c->topic = NULL;
}

/* ---- output ---- */

struct wr {
	uv_write_t w;
	struct hconn *c;
	size_t n;
	char data[];
};

static void
on_written(uv_write_t *w, int status)
{
	struct wr *r = (struct wr *)w;

	(void)status;
	r->c->queued -= r->n;
	free(r);
}

/* Queue bytes for the client; a client whose backlog is over its buffer is dropped. 0 or
 * -1 (the connection is closed then). */
static int
hc_write(struct hconn *c, const char *s, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
	struct wr *r;
	int done = 0;

	if (c->closing)
		return -1;
	if (!n)
		return 0;
	if (!c->queued) {
		done = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
		if (done == (int)n)
			return 0;
		if (done < 0)
			done = 0;
	}
	/* the bound is on the backlog a message finds: a client that has not read what was
	 * queued before, past client_buffer, is dropped; one that reads takes every message,
	 * however large (the end of a reply carries its whole text, up to LLM_REPLY_MAX), so
	 * a connection holds at most client_buffer and one message */
	if (c->queued > pushd_cfg.client_buffer) {
		n_dropped++;
		hc_close(c);
		return -1;
	}
	r = malloc(sizeof(*r) + n - (size_t)done);
	if (!r) {
		hc_close(c);
		return -1;
	}
	r->c = c;
	r->n = n - (size_t)done;
	memcpy(r->data, s + done, r->n);
	b = uv_buf_init(r->data, (unsigned)r->n);
	if (uv_write(&r->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
		free(r);
		hc_close(c);
		return -1;
	}
	c->queued += r->n;
	return 0;
}

static int
hc_writes(struct hconn *c, const char *s)
{
	return hc_write(c, s, strlen(s));
}

static void
on_closed(uv_handle_t *h)
{
	struct hconn *c = h->data;

	c->handle_closed = 1;
	if (!c->posts_pending)
		free(c); /* else when the writer's answers are back (hub_posted) */
}

static void
ws_release(struct hconn *c)
{
	ws_pending -= c->held;
	c->held = 0;
	c->scan_msg = 0;
	c->msg_started = 0;
}

static void
hc_close(struct hconn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	unsubscribe(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	switch (c->kind) {
	case K_WS:
		n_ws--;
		break;
	case K_SSE:
		n_sse--;
		break;
	case K_STREAM:
		n_stream--;
		break;
	default:
		break;
	}
	n_conns--;
	if (c->linger_until)
		n_lingering--;
	if (c->addr)
		addr_put(c->addr);
	c->addr = NULL;
	ws_release(c);
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	if (c->req) {
		buf_free(&c->req->url);
		free(c->req);
		c->req = NULL;
	}
	buf_free(&c->wsin);
	free(c->conv_id);
	free(c->user);
	uv_close((uv_handle_t *)&c->pipe, on_closed);
}

/* Close once what was queued has been written. */
static void
on_shutdown(uv_shutdown_t *s, int status)
{
	struct hconn *c = s->data;

	(void)status;
	free(s);
	hc_close(c);
}

static void
hc_end(struct hconn *c)
{
	uv_shutdown_t *s;

	if (c->closing)
		return;
	unsubscribe(c);
	s = malloc(sizeof(*s));
	if (!s) {
		hc_close(c);
		return;
	}
	s->data = c;
	if (uv_shutdown(s, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
		free(s);
		hc_close(c);
	}
}

/* A plain HTTP answer (handshake refusals, 404s), then the end of the connection. */
static void
hc_respond(struct hconn *c, int status, const char *reason, const char *ctype, const char *body)
{
	char head[512];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		 "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
		 status, reason, ctype, strlen(body));
	if (hc_writes(c, head) == 0 && hc_writes(c, body) == 0)
		hc_end(c);
}

/* ---- SSE ---- */

/*
 * Event ids (docs/API.md): "<msgId>:<n>" for init and chunk, where n is the byte length of
 * the reply up to and including the event (always at the end of a whole UTF-8 character),
 * and "<msgId>:<n>:end" for done and error, n the length of the final content. So every
 * event has its own id, a finished message's init and done differ, and a Last-Event-ID
 * says which message it is of and whether its stream had ended.
 */
/* one stream's opening (init and done of a reply of LLM_REPLY_MAX, JSON-escaped) */
#define SSE_TEXT_MAX ((size_t)16 << 20)

/* Append one event to b. 0, or -1 (no memory, or content that is not UTF-8). */
static int
sse_put(struct buf *b, const char *type, const char *msg_id, size_t id, int end,
	const char *content, size_t len)
{
	json_t *j = json_pack("{s:s,s:s%}", "type", type, "content", content, len);
	char *data;
	int rc;

	if (!j)
		return -1;
	data = json_pool_text(j, JSON_COMPACT);
	json_decref(j);
	if (!data)
		return -1;
	rc = buf_printf(b, "id: %s:%zu%s\nevent: %s\ndata: ", msg_id, id, end ? ":end" : "",
			type) != RC_OK ||
	     buf_adds(b, data) != RC_OK || buf_adds(b, "\n\n") != RC_OK;
	free(data);
	return rc ? -1 : 0;
}

/* The last event of a stream: error (with its message) when error is set, else done (with
 * the whole reply). */
static int
sse_put_end(struct buf *b, const char *msg_id, const char *content, size_t len,
	    const char *error)
{
	if (error)
		return sse_put(b, "error", msg_id, len, 1, error, strlen(error));
	return sse_put(b, "done", msg_id, len, 1, content, len);
}

static const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
			       "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
			       "Connection: close\r\n\r\nretry: 2000\n\n";

enum resume { RESUME_START, RESUME_AT, RESUME_END };

/* Where a client resumes, from its Last-Event-ID (or ?last_event_id=): at *at (an offset
 * this stream gave), at the end (the id of the stream's done or error), or from the start:
 * no id, a malformed one, another message's, one past the end or inside a character. */
static enum resume
resume_point(const char *last, const char *msg_id, const char *content, size_t len, int ended,
	     size_t *at)
{
	size_t n = strlen(msg_id), k;
	const char *s, *colon;
	char num[24];
	int64_t v;
	int end = 0;

	if (!last || !*msg_id || strncmp(last, msg_id, n) != 0 || last[n] != ':')
		return RESUME_START;
	s = last + n + 1;
	colon = strchr(s, ':');
	if (colon) {
		if (strcmp(colon, ":end") != 0)
			return RESUME_START;
		end = 1;
	}
	k = colon ? (size_t)(colon - s) : strlen(s);
	if (!k || k >= sizeof(num))
		return RESUME_START;
	memcpy(num, s, k);
	num[k] = '\0';
	if (strcmp(num, "0") == 0)
		v = 0;
	else if (parse_uint(num, (int64_t)len, &v) != RC_OK)
		return RESUME_START; /* past the end, or not a number */
	if (end)
		return ended && (size_t)v == len ? RESUME_END : RESUME_START;
	if ((size_t)v < len && ((unsigned char)content[v] & 0xc0) == 0x80)
		return RESUME_START; /* inside a character */
	*at = (size_t)v;
	return RESUME_AT;
}

/* A stream that has ended stays ended: 204 tells EventSource not to reconnect. */
static void
sse_no_content(struct hconn *c)
{
	if (hc_writes(c, "HTTP/1.1 204 No Content\r\nCache-Control: no-store\r\n"
			 "Connection: close\r\n\r\n") == 0)
		hc_end(c);
}

/* Open a stream of the reply msg_id: what the client lacks of content[0..len) (all of it
 * as init, or the rest as chunk), and with ended its end, in one write (a reply near the
 * limit is then one message for the client buffer, whatever its size). */
static void
sse_start(struct hconn *c, const char *msg_id, const char *last_id, const char *content,
	  size_t len, int ended, const char *error)
{
	struct buf b;
	size_t at = 0;
	enum resume point = resume_point(last_id, msg_id, content, len, ended, &at);
	int rc;

	if (point == RESUME_END) {
		sse_no_content(c);
		return;
	}
	c->kind = K_SSE;
	n_sse++;
	buf_init(&b, SSE_TEXT_MAX);
	rc = buf_adds(&b, sse_head) != RC_OK;
	if (!rc && point == RESUME_START)
		rc = sse_put(&b, "init", msg_id, len, 0, content, len);
	else if (!rc && at < len)
		rc = sse_put(&b, "chunk", msg_id, len, 0, content + at, len - at);
	if (!rc && ended)
		rc = sse_put_end(&b, msg_id, content, len, error);
	if (rc) {
		buf_free(&b);
		hc_close(c);
		return;
	}
	rc = hc_write(c, b.s, b.len);
	buf_free(&b);
	if (rc)
		return;
	if (ended)
		hc_end(c);
	else
		subscribe(c, "m:", msg_id); /* its events follow, its end once written */
}

static void
sse_open(struct hconn *c, const char *msg_id, const char *last_id, struct pool *p)
{
	struct job_run *r = runs_find_msg(msg_id);
	struct msg m;
	char err[ERR_LEN];
	size_t len;

	if (last_id && strlen(last_id) >= SSE_ID_MAX - 1)
		last_id = NULL; /* cut by the header's bound: no id of ours */
	if (r) {
		/* what was fanned out; an end decided and not yet written is sent once written */
		len = r->sent < r->content.len ? r->sent : r->content.len;
		sse_start(c, msg_id, last_id, r->content.s, len, 0, NULL);
		return;
	}
	if (store_msg_get_by_msgid(pushd_store, p, msg_id, NULL, &m, err) != RC_OK) {
		hc_respond(c, 404, "Not Found", "application/json", "{\"error\":\"Message not found\"}");
		return;
	}
	/* unfinished here: queued, or between daemons; its events follow once the run starts */
	sse_start(c, msg_id, last_id, m.content, strlen(m.content), !m.unfinished,
		  m.error && *m.error ? m.error : NULL);
}

/* ---- E's stream ---- */

static int
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

static void
stream_open(struct hconn *c, int64_t run_id, struct pool *p)
{
	struct job_run *r = runs_find(run_id);
	struct run_result res;
	char err[ERR_LEN];

	c->kind = K_STREAM;
	n_stream++;
	if (!r) {
		if (store_run_result(pushd_store, p, run_id, &res, err) != RC_OK) {
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
				hc_respond(c, 500, "Internal Server Error", "text/plain; charset=utf-8",
					   pool_printf(p, "发送消息失败: %s", res.error ? res.error : ""));
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
	subscribe(c, "r:", pool_printf(p, "%lld", (long long)run_id));
}

/* ---- WebSocket ---- */

static ssize_t
ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *data, size_t len, int flags, void *u)
{
	struct hconn *c = u;
	size_t n = c->wsin.len < len ? c->wsin.len : len;

	(void)flags;
	/* with WS_POSTS_MAX of its posts at the writer, a client's next messages wait in wsin
	 * (and its socket) until they are answered */
	if (c->posts_pending >= WS_POSTS_MAX)
		n = 0;
	if (!n) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	memcpy(data, c->wsin.s, n);
	buf_consume(&c->wsin, n);
	return (ssize_t)n;
}

static ssize_t
ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *u)
{
	struct hconn *c = u;

	(void)flags;
	if (hc_write(c, (const char *)data, len) != 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

/*
 * Server frames are written here, not by wslay: a server frame is unmasked, so one frame's
 * bytes serve every subscriber of a fan-out (serialised and framed once, not once per
 * subscriber as wslay's queue would: measured, that copy per subscriber put the last of
 * 1,000 subscribers 124 ms behind the first). wslay still reads every client frame that
 * ws_scan let through (unmasking, fragments, control frames, the client's close codes) and
 * answers pings and closes; the close frames for what ws_scan refuses are ws_fail's.
 * Writing between wslay's sends is safe: it hands us whole frames, never a part.
 */
struct frame {
	size_t len;
	char data[];
};

/* A complete frame of opcode carrying payload; the caller frees it with free(). */
static struct frame *
ws_frame(int opcode, const char *payload, size_t len)
{
	struct frame *f = malloc(sizeof(*f) + len + 10);
	unsigned char *h;
	size_t hl;
	int i;

	if (!f)
		return NULL;
	h = (unsigned char *)f->data;
	h[0] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		h[1] = (unsigned char)len;
		hl = 2;
	} else if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		hl = 4;
	} else {
		h[1] = 127;
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(f->data + hl, payload, len);
	f->len = hl + len;
	return f;
}

/* A JSON value (its reference is stolen) as one text frame; NULL on failure. */
static struct frame *
ws_json_frame(json_t *j)
{
	struct frame *f;
	char *s;

	if (!j)
		return NULL;
	s = json_pool_text(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return NULL;
	f = ws_frame(WSLAY_TEXT_FRAME, s, strlen(s));
	free(s);
	return f;
}

/* Whether the connection may see its conversation's events: always with auth off; under
 * jwt only when its user owns the conversation. A socket opened on an id nobody had used
 * claims nothing: once the conversation exists (its events are the sign), whose it is is
 * read from the store, once; a socket of someone else's conversation is let go of. */
static int
ws_owns(struct hconn *c)
{
	struct pool *p;
	struct conv cv;
	char err[ERR_LEN];

	if (c->own == OWN_UNKNOWN && (p = pool_create())) {
		if (store_conv_get(pushd_store, p, c->conv_id, c->user, &cv, err) == RC_OK)
			c->own = OWN_YES;
		else if (store_conv_taken(pushd_store, c->conv_id, err) == RC_OK)
			c->own = OWN_NO;
		pool_destroy(p);
		if (c->own == OWN_NO)
			unsubscribe(c);
	}
	return c->own == OWN_ANY || c->own == OWN_YES;
}

/* A frame for this connection itself (an answer, a close). */
static void
ws_write_frame(struct hconn *c, const struct frame *f)
{
	if (f && !c->closing && c->kind == K_WS && !c->failed)
		hc_write(c, f->data, f->len);
}

/* A frame of the conversation's fan-out: only to a connection of its owner. */
static void
ws_send_frame(struct hconn *c, const struct frame *f)
{
	if (f && !c->closing && c->kind == K_WS && !c->failed && ws_owns(c))
		hc_write(c, f->data, f->len);
}

/* Send a JSON value (its reference is stolen) as a text message. */
static void
ws_send_json(struct hconn *c, json_t *j)
{
	struct frame *f = ws_json_frame(j);

	ws_write_frame(c, f);
	free(f);
}

static void on_linger(uv_timer_t *t);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void ws_pump(struct hconn *c);

/*
 * End a connection per RFC 6455 on a violation the daemon found: a close frame with code
 * and reason, then the connection is kept LINGER_MS (reading and dropping what the client
 * still sends, so the close frame is not lost to a reset), or until the client's own close
 * or end. With follow, the client's frames can still be followed (a size or policy limit);
 * else (a malformed frame) its bytes are dropped unread.
 */
static void
ws_fail(struct hconn *c, int code, const char *reason, int follow)
{
	char payload[125];
	size_t n = strlen(reason);
	struct frame *f;

	if (c->closing || c->failed)
		return;
	if (n > sizeof(payload) - 2)
		n = sizeof(payload) - 2;
	payload[0] = (char)(code >> 8);
	payload[1] = (char)code;
	memcpy(payload + 2, reason, n);
	if (!c->ws || !wslay_event_get_close_sent(c->ws)) {
		f = ws_frame(WSLAY_CONNECTION_CLOSE, payload, n + 2);
		ws_write_frame(c, f);
		free(f);
	}
	if (c->closing)
		return;
	c->failed = follow ? 1 : 2;
	unsubscribe(c);
	ws_release(c);
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	buf_free(&c->wsin);
	c->scan_close = 0;
	c->linger_until = uv_now(pushd_loop) + LINGER_MS;
	if (n_lingering++ == 0)
		uv_timer_start(&linger, on_linger, LINGER_MS / 4, LINGER_MS / 4);
	if (c->paused) {
		c->paused = 0;
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	}
}

static void
on_linger(uv_timer_t *t)
{
	uint64_t now = uv_now(pushd_loop);
	struct hconn *c, *next;

	for (c = all; c && n_lingering; c = next) {
		next = c->next;
		if (c->linger_until && now >= c->linger_until)
			hc_close(c);
	}
	if (!n_lingering)
		uv_timer_stop(t);
}

static void
ws_error(struct hconn *c, const char *msg)
{
	ws_send_json(c, json_pack("{s:s,s:s}", "type", "error", "message", msg));
}

/*
 * A send: validated here, stored by the writer thread like every other post (never on the
 * loop, where a burst of sends stalled every other client). hub_posted() answers it once
 * the post is committed; the run then starts as the writer's other posts' do.
 */
static void
ws_send_message(struct hconn *c, json_t *j)
{
	json_t *content = json_object_get(j, "content");
	struct witem *it;
	struct store_post *in;
	struct pool *p;

	if (content && !json_is_string(content)) {
		ws_error(c, "content 必须是字符串");
		return;
	}
	switch (limit_content(json_string_value(content))) {
	case CONTENT_EMPTY:
		ws_error(c, "消息内容不能为空");
		return;
	case CONTENT_LONG:
		ws_error(c, "消息内容过长");
		return;
	case CONTENT_OK:
		break;
	}
	if (c->own == OWN_NO) {
		ws_error(c, "会话不存在");
		return;
	}
	if (!(it = witem_new(W_POST))) {
		ws_error(c, "服务器内部错误");
		return;
	}
	p = it->post->pool;
	in = &it->post->in;
	in->conv_id = pool_strdup(p, c->conv_id);
	in->owner = c->user ? pool_strdup(p, c->user) : NULL;
	in->create = 1;
	/* as from the path's user (dialect A's /ws/{user_id}), or the token's */
	in->conv_user = in->sender = c->user ? in->owner : in->conv_id;
	in->title = in->conv_id;
	in->role = "user";
	in->content = pool_strdup(p, json_string_value(content));
	in->run = 1;
	it->post->origin = c;
	if (!in->conv_id || !in->content || (c->user && !in->owner) || writer_post(it) != RC_OK) {
		witem_free(it);
		ws_error(c, "服务器内部错误");
		return;
	}
	c->posts_pending++;
}

/* A send of ws_send_message(), back from the writer (on the loop): committed, or failed. */
void
hub_posted(struct witem *it)
{
	struct wpost *w = it->post;
	struct hconn *c = w->origin;

	w->origin = NULL;
	if (!c)
		return;
	c->posts_pending--;
	if (c->handle_closed) {
		if (!c->posts_pending)
			free(c);
		return;
	}
	if (c->closing || c->failed)
		return;
	if (w->op.rc == RC_OK) {
		if (c->own == OWN_UNKNOWN)
			c->own = OWN_YES; /* its post created the conversation, or found it its own */
		ws_send_json(c, json_pack("{s:s,s:s,s:s,s:s}", "type", "message_sent", "message_id",
					  w->out.msg.msg_id, "content", w->out.msg.content,
					  "session_id", w->out.conv.id));
	} else if (w->op.rc == RC_NOTFOUND) {
		if (c->own == OWN_UNKNOWN)
			c->own = OWN_NO;
		if (c->own == OWN_NO)
			unsubscribe(c);
		ws_error(c, "会话不存在");
	} else {
		fprintf(stderr, "aichatd-push: ws send: %s\n", w->err);
		ws_error(c, "服务器内部错误");
	}
	if (c->paused && c->posts_pending < WS_POSTS_MAX && !c->closing) {
		c->paused = 0;
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
		ws_pump(c);
	}
}

static void
ws_stop(struct hconn *c, json_t *j)
{
	const char *id = json_string_value(json_object_get(j, "message_id"));
	struct job_run *r = id ? runs_find_msg(id) : NULL;

	if (!id) {
		ws_error(c, "message_id 不能为空");
		return;
	}
	/* someone else's run is refused as one that does not exist */
	if (!r || r->ended || strcmp(r->job.conv_id, c->conv_id) != 0 || !ws_owns(c)) {
		ws_error(c, "没有进行中的回复");
		return;
	}
	runs_stop(r); /* its ai_reply reaches every subscriber, this one included */
}

static void
ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a, void *u)
{
	struct hconn *c = u;
	const char *type;
	json_t *j;

	(void)ctx;
	c->awaiting_pong = 0; /* anything from the client shows it is there */
	if (a->opcode == WSLAY_BINARY_FRAME) {
		wslay_event_queue_close(c->ws, WSLAY_CODE_UNSUPPORTED_DATA,
					(const uint8_t *)"binary frames are not supported", 31);
		return;
	}
	if (a->opcode != WSLAY_TEXT_FRAME)
		return; /* ping, pong and close are wslay's */
	if (!utf8_valid((const char *)a->msg, a->msg_length)) {
		wslay_event_queue_close(c->ws, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA,
					(const uint8_t *)"invalid UTF-8", 13);
		return;
	}
	j = json_loadb((const char *)a->msg, a->msg_length, 0, NULL);
	type = json_string_value(json_object_get(j, "type"));
	if (!json_is_object(j))
		ws_error(c, "消息不是合法的 JSON 对象");
	else if (!type)
		ws_error(c, "缺少 type 字段");
	else if (strcmp(type, "send_message") == 0)
		ws_send_message(c, j);
	else if (strcmp(type, "stop") == 0)
		ws_stop(c, j);
	else if (strcmp(type, "ping") == 0)
		ws_send_json(c, json_pack("{s:s}", "type", "pong"));
	else
		ws_error(c, "未知的消息类型");
	json_decref(j);
}

static const struct wslay_event_callbacks ws_callbacks = {
	ws_recv_cb, ws_send_cb, NULL, NULL, NULL, NULL, ws_on_msg,
};

/* The size of a frame header whose first n bytes are h (n >= 2 for a full answer). */
static size_t
ws_header_size(const unsigned char *h, size_t n)
{
	size_t len7;

	if (n < 2)
		return 2;
	len7 = h[1] & 0x7f;
	return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
}

static uint64_t
ws_payload_len(const unsigned char *h)
{
	uint64_t len = h[1] & 0x7f;
	int i;

	if (len == 126)
		return (uint64_t)h[2] << 8 | h[3];
	if (len == 127) {
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | h[2 + i];
	}
	return len;
}

/* A frame header's verdict (RFC 6455 section 5): 0, or the close code, with the reason. */
static int
ws_check_header(struct hconn *c, const unsigned char *h, uint64_t len)
{
	int op = h[0] & 0x0f, fin = h[0] & 0x80, len7 = h[1] & 0x7f;
	uint64_t total;
	size_t want;

	c->fail_reason = NULL;
	if (h[0] & 0x70)
		c->fail_reason = "reserved bits set";
	else if ((op > 2 && op < 8) || op > 10)
		c->fail_reason = "unknown opcode";
	else if (!(h[1] & 0x80))
		c->fail_reason = "unmasked frame";
	else if (len7 == 127 && (len >> 63))
		c->fail_reason = "frame length over 2^63";
	else if ((len7 == 126 && len < 126) || (len7 == 127 && len < 65536))
		c->fail_reason = "length not in its shortest form";
	else if (op >= 8 && !fin)
		c->fail_reason = "fragmented control frame";
	else if (op >= 8 && len > 125)
		c->fail_reason = "control frame over 125 bytes";
	else if (op == 8 && len == 1)
		c->fail_reason = "close frame of 1 byte";
	else if (op == 0 && !c->scan_frag)
		c->fail_reason = "continuation outside a message";
	else if ((op == 1 || op == 2) && c->scan_frag)
		c->fail_reason = "new message inside a fragmented one";
	if (c->fail_reason)
		return 1002;
	if (op >= 8)
		return 0;
	total = (op == 0 ? c->scan_msg : 0) + len;
	if (total > pushd_cfg.ws_max_message) {
		c->fail_reason = "message too big";
		return 1009;
	}
	/* what the message may hold once it is all here, its reader's context included */
	want = (size_t)total + WS_MSG_COST;
	if (want > c->held && ws_pending + (want - c->held) > pushd_cfg.ws_pending_max) {
		c->fail_reason = "server busy: too many unfinished messages";
		return 1013;
	}
	if (want > c->held) {
		ws_pending += want - c->held;
		c->held = want;
	}
	if (!c->msg_started)
		c->msg_started = uv_now(pushd_loop) | 1;
	c->scan_msg = total;
	c->scan_frag = !fin;
	c->scan_fin_data = fin != 0;
	return 0;
}

/*
 * Follow the frames of bytes arriving from the client, to know when wslay holds no partial
 * one, and check each frame's header before any of its payload is kept: a violation is
 * found at once (c->fail_code), however large the frame says it is. Returns how many of
 * the n bytes may go on (those before the header that failed); with check off (after a
 * close frame was sent) frames are only followed, to see the client's close.
 */
static size_t scan_after; /* where ws_scan stopped: past the header that failed */

static size_t
ws_scan(struct hconn *c, const unsigned char *p, size_t n, int check)
{
	const unsigned char *start = p, *hdr = p;

	while (n) {
		if (c->scan_left) {
			uint64_t take = c->scan_left < n ? c->scan_left : n;
			c->scan_left -= take;
			p += take;
			n -= (size_t)take;
			if (!c->scan_left && c->scan_fin_data) {
				c->scan_fin_data = 0;
				ws_release(c); /* the message is whole: wslay hands it over now */
			}
			continue;
		}
		if (!c->scan_hlen)
			hdr = p;
		c->scan_hdr[c->scan_hlen++] = *p++;
		n--;
		if (c->scan_hlen < ws_header_size(c->scan_hdr, c->scan_hlen))
			continue;
		c->scan_hlen = 0;
		c->scan_left = ws_payload_len(c->scan_hdr);
		if ((c->scan_hdr[0] & 0x0f) == 8)
			c->scan_close = 1;
		if (!check)
			continue;
		if ((c->fail_code = ws_check_header(c, c->scan_hdr, c->scan_left)) != 0) {
			scan_after = (size_t)(p - start);
			return (size_t)(hdr - start);
		}
		if (!c->scan_left && c->scan_fin_data) {
			c->scan_fin_data = 0;
			ws_release(c);
		}
	}
	return (size_t)(p - start);
}

/* Take the client's pongs with no wslay context: the only frames an idle client sends. */
static void
ws_take_pongs(struct hconn *c)
{
	const unsigned char *h;
	size_t hs, len;

	while (c->wsin.len >= 2) {
		h = (const unsigned char *)c->wsin.s;
		hs = ws_header_size(h, c->wsin.len);
		/* a whole, masked, final pong with a short payload; anything else is wslay's */
		if (h[0] != 0x8a || !(h[1] & 0x80) || (h[1] & 0x7f) > 125 || c->wsin.len < hs)
			return;
		len = (size_t)ws_payload_len(h);
		if (c->wsin.len < hs + len)
			return;
		c->awaiting_pong = 0;
		buf_consume(&c->wsin, hs + len);
	}
}

/* Run wslay over what arrived; close the connection once wslay is done with it. */
static void
ws_pump(struct hconn *c)
{
	if (c->closing)
		return;
	if (!c->ws) {
		ws_take_pongs(c);
		if (!c->wsin.len) {
			buf_free(&c->wsin); /* an idle client holds no input memory */
			return;
		}
		if (wslay_event_context_server_init(&c->ws, &ws_callbacks, c) != 0) {
			hc_close(c);
			return;
		}
		wslay_event_config_set_max_recv_msg_length(c->ws, pushd_cfg.ws_max_message);
	}
	if (wslay_event_recv(c->ws) != 0) {
		/* what ws_scan lets through is well framed: a failure here is wslay's own
		 * finding (or memory) */
		ws_fail(c, WSLAY_CODE_PROTOCOL_ERROR, "protocol error", 0);
		return;
	}
	if (c->closing || !c->ws)
		return;
	if (!c->wsin.len && c->wsin.alloc > 16384)
		buf_free(&c->wsin); /* what wslay took it holds itself: not twice */
	if (c->wsin.len && c->posts_pending >= WS_POSTS_MAX && !c->paused) {
		/* the rest waits for the writer's answers (hub_posted) */
		c->paused = 1;
		uv_read_stop((uv_stream_t *)&c->pipe);
	}
	if (wslay_event_send(c->ws) != 0) {
		hc_close(c);
		return;
	}
	if (c->closing || !c->ws)
		return;
	if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
		hc_end(c);
		return;
	}
	if (!c->wsin.len && !c->scan_left && !c->scan_hlen && !c->scan_frag &&
	    !wslay_event_want_write(c->ws) && wslay_event_get_read_enabled(c->ws) &&
	    wslay_event_get_write_enabled(c->ws)) {
		/* between messages, nothing to send, no close under way: back to idle */
		wslay_event_context_free(c->ws);
		c->ws = NULL;
		buf_free(&c->wsin);
	}
}

/* Bytes from the client: checked frame by frame as they come, then read by wslay. */
static void
ws_ingest(struct hconn *c, const char *data, size_t n)
{
	size_t ok, after;

	if (c->failed) {
		/* after our close frame: dropped, but the client's close ends the wait */
		if (c->failed == 1)
			ws_scan(c, (const unsigned char *)data, n, 0);
		if (c->scan_close)
			hc_end(c);
		return;
	}
	scan_after = n;
	ok = ws_scan(c, (const unsigned char *)data, n, 1);
	after = scan_after;
	if (ok) {
		if (!c->wsin.alloc)
			buf_init(&c->wsin, pushd_cfg.ws_max_message + 65536);
		if (buf_add(&c->wsin, data, ok) != RC_OK) {
			hc_close(c);
			return;
		}
		ws_pump(c);
	}
	if (c->fail_code && !c->closing) {
		ws_fail(c, c->fail_code, c->fail_reason ? c->fail_reason : "protocol error",
			c->fail_code != 1002);
		if (c->failed == 1 && after < n)
			ws_ingest(c, data + after, n - after);
	}
}

static void
ws_open(struct hconn *c, const char *conv_id, const char *token, struct pool *p)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char sha[SHA_DIGEST_LENGTH];
	char accept[64], head[256], sub[TOKEN_SUB_MAX + 1], err[ERR_LEN], *kg;
	struct hreq *q = c->req;
	struct conv cv;
	const char *why;
	int admin, rc;

	if (strcasecmp(q->upgrade, "websocket") != 0 || strcmp(q->version, "13") != 0 ||
	    strlen(q->key) < 16) {
		hc_respond(c, 400, "Bad Request", "application/json",
			   "{\"code\":400,\"message\":\"WebSocket 握手不合法\"}");
		return;
	}
	if (!limit_session_id(conv_id)) {
		hc_respond(c, 400, "Bad Request", "application/json",
			   "{\"code\":1003,\"message\":\"会话ID不合法\"}");
		return;
	}
	if (pushd_cfg.auth == AUTH_JWT) {
		if (!token || token_verify(token, pushd_cfg.jwt_secret, time(NULL), sub, &admin,
					  &why) != RC_OK) {
			hc_respond(c, 401, "Unauthorized", "application/json",
				   "{\"code\":401,\"message\":\"请先登录\"}");
			return;
		}
		c->user = strdup(sub);
		if (!c->user) {
			hc_close(c);
			return;
		}
	}
	rc = store_conv_get(pushd_store, p, conv_id, c->user, &cv, err);
	if (rc == RC_NOTFOUND && store_conv_taken(pushd_store, conv_id, err) == RC_OK)
		rc = RC_DENIED; /* deleted, or someone else's */
	/* an id nobody has used yet: the socket claims nothing (whose the conversation is, is
	 * known once someone's message stores it) */
	c->own = !c->user ? OWN_ANY : rc == RC_OK ? OWN_YES : OWN_UNKNOWN;
	if (rc == RC_DENIED) {
		hc_respond(c, 404, "Not Found", "application/json",
			   "{\"code\":404,\"message\":\"会话不存在\"}");
		return;
	}
	c->conv_id = strdup(conv_id);
	kg = pool_printf(p, "%s%s", q->key, guid);
	if (!c->conv_id || !kg) {
		hc_close(c);
		return;
	}
	SHA1((const unsigned char *)kg, strlen(kg), sha);
	EVP_EncodeBlock((unsigned char *)accept, sha, SHA_DIGEST_LENGTH);
	snprintf(head, sizeof(head),
		 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		 accept);
	c->kind = K_WS;
	n_ws++;
	if (hc_writes(c, head))
		return;
	subscribe(c, "c:", conv_id);
	ws_send_json(c, json_pack("{s:s,s:s,s:o}", "type", "connected", "session_id", conv_id,
				  "user_id", c->user ? json_string(c->user) : json_null()));
}

/* ---- D's and E's synchronous sends ---- */

/*
 * A worker that stored a sync send answers X-Accel-Redirect to nginx's /_aichatd_sync/,
 * which proxies the connection here. It is held, costing the pool nothing, until the run's
 * end is committed (hub_sync_end, from the end's write); then it is answered with an
 * X-Accel-Redirect of its own, to /_aichatd_result/<kind>/<run>, which nginx sends to the
 * pool as a GET with the client's headers: a worker renders the dialect's answer from the
 * store, authorised as any route. Held connections subscribe to "s:<run>".
 */
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
	return ((uint64_t)pushd_cfg.connect_timeout_s + pushd_cfg.reply_timeout_s + 5) * 1000;
}

static void
sync_open(struct hconn *c, char kind, int64_t run_id, const char *query)
{
	char err[ERR_LEN], key[32];
	int status;

	snprintf(key, sizeof(key), "%lld", (long long)run_id);
	c->kind = K_SYNC;
	c->sync_kind = kind;
	c->sync_run = run_id;
	c->sync_deadline = uv_now(pushd_loop) + sync_limit_ms();
	/* the query (raw, from nginx's request line: no CR or LF) rides along to the result
	 * route, so that ?access_token= authorises it too; kept in conv_id, unused otherwise */
	if (query && *query && strlen(query) < URL_MAX && !(c->conv_id = strdup(query))) {
		hc_close(c);
		return;
	}
	if (!runs_find(run_id) &&
	    (store_run_status(pushd_store, run_id, &status, err) != RC_OK || status != RUN_RUNNING)) {
		sync_answer(c); /* ended (and written) before it came, or no such run */
		return;
	}
	if (subscribe(c, "s:", key) != 0)
		hc_close(c);
}

void
hub_sync_end(int64_t run_id)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[64];

	snprintf(key, sizeof(key), "s:%lld", (long long)run_id);
	if (!ntopics || !(t = topic_get(key, 0)))
		return;
	for (c = t->subs; c; c = next) {
		next = c->sub_next;
		sync_answer(c);
	}
}

void
hub_sync_check(void)
{
	uint64_t now = uv_now(pushd_loop);
	struct hconn *c, *next;
	char err[ERR_LEN];
	int status;

	for (c = all; c; c = next) {
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
			if (store_run_status(pushd_store, c->sync_run, &status, err) != RC_OK ||
			    status != RUN_RUNNING)
				sync_answer(c);
			continue;
		}
		if (now >= c->sync_deadline)
			sync_answer(c); /* the result route answers that the time ran out */
	}
}

/* ---- the request ---- */

static int
on_url(http_parser *hp, const char *at, size_t len)
{
	struct hconn *c = hp->data;

	return buf_add(&c->req->url, at, len) == RC_OK ? 0 : -1;
}

static int
on_field(http_parser *hp, const char *at, size_t len)
{
	struct hconn *c = hp->data;
	struct hreq *q = c->req;

	q->header_bytes += len;
	if (q->header_bytes > HEADERS_MAX)
		return -1;
	/* the headers that matter are short: a name split across reads is not one of them */
	if (len == 7 && strncasecmp(at, "upgrade", 7) == 0)
		q->field = H_UPGRADE;
	else if (len == 17 && strncasecmp(at, "sec-websocket-key", 17) == 0)
		q->field = H_KEY;
	else if (len == 21 && strncasecmp(at, "sec-websocket-version", 21) == 0)
		q->field = H_VERSION;
	else if (len == 13 && strncasecmp(at, "authorization", 13) == 0)
		q->field = H_AUTH;
	else if (len == 13 && strncasecmp(at, "last-event-id", 13) == 0)
		q->field = H_LASTID;
	else if (len == 9 && strncasecmp(at, "x-real-ip", 9) == 0)
		q->field = H_REALIP;
	else
		q->field = H_NONE;
	return 0;
}

static void
append(char *dst, size_t size, const char *at, size_t len)
{
	size_t have = strlen(dst);

	if (have + len >= size)
		len = size - 1 - have;
	memcpy(dst + have, at, len);
	dst[have + len] = '\0';
}

static int
on_value(http_parser *hp, const char *at, size_t len)
{
	struct hconn *c = hp->data;
	struct hreq *q = c->req;

	q->header_bytes += len;
	if (q->header_bytes > HEADERS_MAX)
		return -1;
	switch (q->field) {
	case H_UPGRADE: append(q->upgrade, sizeof(q->upgrade), at, len); break;
	case H_KEY: append(q->key, sizeof(q->key), at, len); break;
	case H_VERSION: append(q->version, sizeof(q->version), at, len); break;
	case H_AUTH: append(q->auth, sizeof(q->auth), at, len); break;
	case H_LASTID: append(q->last_id, sizeof(q->last_id), at, len); break;
	case H_REALIP: append(q->real_ip, sizeof(q->real_ip), at, len); break;
	default: break;
	}
	return 0;
}

static int
on_headers_complete(http_parser *hp)
{
	struct hconn *c = hp->data;

	c->req->done = 1;
	return 1; /* no body is expected: stop here */
}

/* The value of a query parameter, decoded into p, or NULL. */
static const char *
query_param(struct pool *p, const char *query, const char *name)
{
	size_t n = strlen(name);

	while (query && *query) {
		const char *amp = strchr(query, '&'), *end = amp ? amp : query + strlen(query);
		if ((size_t)(end - query) > n && strncmp(query, name, n) == 0 && query[n] == '=')
			return url_unescape(p, query + n + 1, (size_t)(end - query) - n - 1, 1);
		query = amp ? amp + 1 : NULL;
	}
	return NULL;
}

/*
 * The caps on connections (max_connections in all, max_connections_per_addr per client
 * address, which nginx sets as X-Real-IP): a connection over one is answered at once, 503
 * in the route's own shape, and ends. 1 when it was refused.
 */
static int
over_cap(struct hconn *c, const char *path)
{
	const char *ip = c->req->real_ip;
	const char *why = NULL;
	struct addr *a = NULL;

	if (n_ws + n_sse + n_stream >= pushd_cfg.max_connections)
		why = "too many connections";
	else if (!(a = addr_get(ip)))
		why = "out of memory";
	else if (a->n >= pushd_cfg.max_connections_per_addr)
		why = "too many connections from this address";
	if (!why) {
		a->n++;
		c->addr = a;
		return 0;
	}
	if (a && !a->n) {
		a->n = 1; /* a new entry: let go of it */
		addr_put(a);
	}
	n_refused++;
	if (strncmp(path, "/sse/", 5) == 0)
		hc_respond(c, 503, "Service Unavailable", "application/json",
			   "{\"error\":\"连接数已满，请稍后再试\"}");
	else if (strncmp(path, "/estream/", 9) == 0)
		hc_respond(c, 503, "Service Unavailable", "text/plain; charset=utf-8",
			   "连接数已满，请稍后再试\n");
	else
		hc_respond(c, 503, "Service Unavailable", "application/json",
			   "{\"code\":503,\"message\":\"连接数已满，请稍后再试\"}");
	return 1;
}

static void
handle(struct hconn *c, const char *rest, size_t rest_len)
{
	struct hreq *q = c->req;
	struct pool *p = pool_create();
	char *path, *query, *seg;
	const char *token = NULL, *last;
	int64_t run_id;

	if (!p) {
		hc_close(c);
		return;
	}
	path = pool_strdup(p, q->url.s);
	query = strchr(path, '?');
	if (query)
		*query++ = '\0';
	if (over_cap(c, path)) {
		/* answered */
	} else if (c->parser.method != HTTP_GET) {
		hc_respond(c, 405, "Method Not Allowed", "application/json",
			   "{\"code\":405,\"message\":\"请求方法不允许\"}");
	} else if (strncmp(path, "/ws/", 4) == 0 &&
		   (seg = url_unescape(p, path + 4, strlen(path + 4), 0)) && !strchr(seg, '/')) {
		if (q->auth[0] && strncasecmp(q->auth, "Bearer ", 7) == 0)
			token = q->auth + 7;
		else
			token = query_param(p, query, "access_token");
		ws_open(c, seg, token, p);
		if (!c->closing && c->kind == K_WS && rest_len)
			ws_ingest(c, rest, rest_len);
	} else if (strncmp(path, "/sse/", 5) == 0 &&
		   (seg = url_unescape(p, path + 5, strlen(path + 5), 0)) && !strchr(seg, '/')) {
		last = q->last_id[0] ? q->last_id : query_param(p, query, "last_event_id");
		sse_open(c, seg, last, p);
	} else if (strncmp(path, "/sync/", 6) == 0 && (path[6] == 'd' || path[6] == 'e') &&
		   path[7] == '/' && parse_uint(path + 8, INT64_MAX, &run_id) == RC_OK) {
		sync_open(c, path[6], run_id, query);
	} else if (strncmp(path, "/estream/", 9) == 0 &&
		   parse_uint(path + 9, INT64_MAX, &run_id) == RC_OK) {
		stream_open(c, run_id, p);
	} else {
		hc_respond(c, 404, "Not Found", "application/json",
			   "{\"code\":404,\"message\":\"资源不存在\"}");
	}
	pool_destroy(p);
	if (c->req) {
		buf_free(&q->url);
		free(q);
		c->req = NULL;
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	static char slab[65536];

	(void)h;
	(void)suggested;
	*b = uv_buf_init(slab, sizeof(slab));
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct hconn *c = s->data;
	size_t used;

	if (n < 0) {
		hc_close(c);
		return;
	}
	if (n == 0 || c->closing)
		return;
	if (c->kind == K_WS) {
		ws_ingest(c, b->base, (size_t)n);
		return;
	}
	if (c->kind != K_HTTP || !c->req)
		return; /* SSE and stream clients have nothing more to say */
	used = http_parser_execute(&c->parser, &settings, b->base, (size_t)n);
	if (c->req->done) {
		handle(c, b->base + used, (size_t)n - used);
	} else if (c->parser.http_errno != HPE_OK || used != (size_t)n) {
		hc_respond(c, 400, "Bad Request", "application/json",
			   "{\"code\":400,\"message\":\"请求不合法\"}");
	}
}

static void
on_connection(uv_stream_t *srv, int status)
{
	struct hconn *c;

	if (status < 0 || !(c = calloc(1, sizeof(*c))))
		return;
	c->req = calloc(1, sizeof(*c->req));
	if (!c->req) {
		free(c);
		return;
	}
	buf_init(&c->req->url, URL_MAX);
	uv_pipe_init(pushd_loop, &c->pipe, 0);
	c->pipe.data = c;
	c->kind = K_HTTP;
	c->next = all;
	if (all)
		all->prev = c;
	all = c;
	n_conns++;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	/* far over the cap (connections not yet counted by kind included): not even read, so
	 * that the descriptors left stay for the writer, the workers and the upstreams */
	if (uv_accept(srv, (uv_stream_t *)&c->pipe) != 0) {
		hc_close(c);
		return;
	}
	if (n_conns > (long)pushd_cfg.max_connections + REFUSE_SLACK) {
		n_refused++;
		hc_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* ---- fan-out ---- */

/* Bytes of s[0..len) up to the last whole UTF-8 character (a piece may end inside one). */
static size_t
whole_chars(const char *s, size_t len)
{
	size_t i = len, back = 0, need;
	unsigned char lead;

	while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return len;
	lead = (unsigned char)s[i - 1];
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	return need > back + 1 ? i - 1 : len;
}

/* Write the same bytes to every subscriber of t (hc_write copies what it cannot send). */
static void
fan_out(struct topic *t, const char *s, size_t n, int end)
{
	struct hconn *c, *next;

	for (c = t->subs; c; c = next) {
		next = c->sub_next;
		if (hc_write(c, s, n) == 0 && end)
			hc_end(c);
	}
}

void
hub_chunk(struct job_run *r, const char *s, size_t n)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[256];
	size_t upto = whole_chars(r->content.s, r->content.len), from = r->sent;
	struct buf b;
	json_t *j = NULL;

	if (upto <= from)
		return; /* the piece ended inside a character: it goes out with the next */
	r->sent = upto;
	if (!ntopics)
		return;
	s = r->content.s + from;
	n = upto - from;
	snprintf(key, sizeof(key), "m:%s", r->job.ai_msg_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		/* one event's bytes for every subscriber: they all have the same id */
		buf_init(&b, SSE_TEXT_MAX);
		if (sse_put(&b, "chunk", r->job.ai_msg_id, upto, 0, s, n) == 0)
			fan_out(t, b.s, b.len, 0);
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

	if (!ntopics)
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
hub_done(struct job_run *r, int status, const char *error)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[256];
	struct buf b;
	json_t *j;

	if (!ntopics)
		return;
	snprintf(key, sizeof(key), "m:%s", r->job.ai_msg_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		buf_init(&b, SSE_TEXT_MAX);
		if (sse_put_end(&b, r->job.ai_msg_id, r->content.s, r->content.len,
				status == RUN_FAILED ? (error ? error : "") : NULL) == 0) {
			fan_out(t, b.s, b.len, 1);
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
					char body[512];
					snprintf(body, sizeof(body), "发送消息失败: %s", error ? error : "");
					hc_respond(c, 500, "Internal Server Error",
						   "text/plain; charset=utf-8", body);
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

static void
on_beat(uv_timer_t *t)
{
	static uint64_t last_ping, last_beat;
	uint64_t now = uv_now(pushd_loop);
	/* the timer ticks at the shorter period; each kind keeps its own (a tick's slack is
	 * forgiven, so a 1 s period is not missed by a timer that fires a millisecond early) */
	int ping = now - last_ping + 50 >= (uint64_t)pushd_cfg.ws_ping_s * 1000;
	int beat_sse = now - last_beat + 50 >= (uint64_t)pushd_cfg.sse_heartbeat_s * 1000;
	uint64_t frag_ms = (uint64_t)pushd_cfg.ws_fragment_timeout_s * 1000;
	struct hconn *c, *next;

	(void)t;
	if (ping)
		last_ping = now;
	if (beat_sse)
		last_beat = now;
	for (c = all; c; c = next) {
		next = c->next;
		if (c->queued > pushd_cfg.client_buffer) {
			/* still over its buffer a beat after its last message (the end of a
			 * stream, say, that nothing follows): it does not read */
			n_dropped++;
			hc_close(c);
			continue;
		}
		if (c->kind == K_SSE) {
			if (beat_sse)
				hc_writes(c, ": ping\n\n");
		} else if (c->kind == K_WS && c->msg_started && !c->failed &&
			   now - c->msg_started + 50 >= frag_ms) {
			/* a message begun and never finished (pongs alone keep a client alive) */
			ws_fail(c, WSLAY_CODE_POLICY_VIOLATION, "message not finished in time", 1);
		} else if (c->kind == K_WS && ping && !c->failed) {
			static const char ping_frame[2] = {(char)0x89, 0};
			if (c->awaiting_pong) {
				/* no answer since the last ping: gone */
				n_dropped++;
				hc_close(c);
				continue;
			}
			c->awaiting_pong = 1;
			hc_write(c, ping_frame, sizeof(ping_frame));
		}
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
	reserve = 64 + 2L * pushd_cfg.workers * pushd_cfg.threads + nofile / 8;
	max = nofile - reserve - REFUSE_SLACK;
	if (max < 16)
		max = 16;
	if (max > 1L << 24)
		max = 1L << 24;
	if (!pushd_cfg.max_connections)
		pushd_cfg.max_connections = (int)max;
	if (!pushd_cfg.max_connections_per_addr)
		pushd_cfg.max_connections_per_addr =
			pushd_cfg.max_connections / 8 < 16 ? 16 : pushd_cfg.max_connections / 8;
	fprintf(stderr,
		"aichatd-push: descriptors %ld: at most %d connections, %d per address\n", nofile,
		pushd_cfg.max_connections, pushd_cfg.max_connections_per_addr);
}

int
hub_listen(const char *path, char *err)
{
	int rc;
	int beat_ms;

	memset(&settings, 0, sizeof(settings));
	settings.on_url = on_url;
	settings.on_header_field = on_field;
	settings.on_header_value = on_value;
	settings.on_headers_complete = on_headers_complete;
	unlink(path);
	uv_pipe_init(pushd_loop, &listener, 0);
	if ((rc = uv_pipe_bind(&listener, path)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&listener, 4096, on_connection)) != 0) {
		snprintf(err, ERR_LEN, "cannot listen on %s: %s", path, uv_strerror(rc));
		return RC_ERR;
	}
	/* nginx's user reaches it through socket_group */
	if (config_share_socket(&pushd_cfg, path, err) != RC_OK)
		return RC_ERR;
	/* one timer for all three: its period is the shortest */
	beat_ms = (pushd_cfg.sse_heartbeat_s < pushd_cfg.ws_ping_s ? pushd_cfg.sse_heartbeat_s :
								   pushd_cfg.ws_ping_s) * 1000;
	if (pushd_cfg.ws_fragment_timeout_s * 1000 < beat_ms)
		beat_ms = pushd_cfg.ws_fragment_timeout_s * 1000;
	uv_timer_init(pushd_loop, &beat);
	uv_timer_init(pushd_loop, &linger);
	hub_caps();
	uv_timer_start(&beat, on_beat, (uint64_t)beat_ms, (uint64_t)beat_ms);
	return RC_OK;
}

void
hub_stats(char *out, size_t len)
{
	snprintf(out, len,
		 "ws %ld sse %ld stream %ld dropped %ld refused %ld max_connections %d "
		 "max_connections_per_addr %d ws_pending %zu",
		 n_ws, n_sse, n_stream, n_dropped, n_refused, pushd_cfg.max_connections,
		 pushd_cfg.max_connections_per_addr, ws_pending);
}

void
hub_close_all(void)
{
	while (all)
		hc_close(all);
	uv_timer_stop(&beat);
	uv_timer_stop(&linger);
}
