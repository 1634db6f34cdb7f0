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
 * timer sends SSE heartbeats and WebSocket pings, and closes clients that stopped answering.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <http_parser.h>
#include <wslay/wslay.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <openssl/evp.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "auth.h"
#include "req.h"
#include "api.h"
#include "pushd.h"

#define URL_MAX 4096
#define HEADERS_MAX 16384
#define TOPICS 4096

enum hkind { K_HTTP, K_WS, K_SSE, K_STREAM, K_SYNC };
enum hfield { H_NONE, H_UPGRADE, H_KEY, H_VERSION, H_AUTH, H_LASTID };

struct hreq {
	struct buf url;
	enum hfield field;
	size_t header_bytes;
	int done;
	char upgrade[32];
	char key[64];
	char version[8];
	char auth[4200];
	char last_id[32];
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
	/* a sync send (K_SYNC): its run, dialect ('d' or 'e'), and when it is let go unended */
	int64_t sync_run;
	uint64_t sync_deadline;
	char sync_kind;
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

static void hc_close(struct hconn *c);

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

/* Queue bytes for the client; a client over its buffer is dropped. 0 or -1. */
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
	/* the bound is on the backlog: one message larger than the buffer may still go out
	 * to a client that has read everything before it */
	if (c->queued && c->queued + (n - (size_t)done) > pushd_cfg.client_buffer) {
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

	free(c);
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

static int
sse_event(struct hconn *c, const char *type, size_t id, const char *content, size_t len)
{
	json_t *j = json_pack("{s:s,s:s%}", "type", type, "content", content, len);
	char head[96], *data;
	int rc;

	if (!j)
		return hc_close(c), -1;
	data = req_json_text(j, JSON_COMPACT);
	json_decref(j);
	if (!data)
		return hc_close(c), -1;
	snprintf(head, sizeof(head), "id: %zu\nevent: %s\ndata: ", id, type);
	rc = hc_writes(c, head);
	if (rc == 0)
		rc = hc_writes(c, data);
	if (rc == 0)
		rc = hc_writes(c, "\n\n");
	free(data);
	return rc;
}

static const char sse_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
			       "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
			       "Connection: close\r\n\r\nretry: 2000\n\n";

/* The last event of a stream: error (with its message) when error is set, else done
 * (with the whole reply); then the stream ends. */
static void
sse_end(struct hconn *c, const char *content, size_t len, const char *error)
{
	if (error)
		sse_event(c, "error", len, error, strlen(error));
	else
		sse_event(c, "done", len, content, len);
	hc_end(c);
}

/* Where a client resumes: Last-Event-ID (or ?last_event_id=), a byte offset; -1 if none. */
static long long
resume_offset(const char *s, size_t len)
{
	int64_t v;

	if (!s || !*s)
		return -1;
	if (strcmp(s, "0") == 0)
		return 0;
	if (parse_uint(s, (int64_t)len, &v) != RC_OK)
		return -1; /* an offset this reply never had: start over */
	return v;
}

/* Send what the client lacks of content[0..len): all of it as init, or the rest as chunk. */
static int
sse_catch_up(struct hconn *c, long long from, const char *content, size_t len)
{
	if (from < 0)
		return sse_event(c, "init", len, content, len);
	if ((size_t)from < len)
		return sse_event(c, "chunk", len, content + from, len - (size_t)from);
	return 0;
}

static void
sse_open(struct hconn *c, const char *msg_id, const char *last_id, struct pool *p)
{
	struct job_run *r = runs_find_msg(msg_id);
	struct msg m;
	char err[ERR_LEN];
	long long from;
	int rc;

	if (r) {
		c->kind = K_SSE;
		n_sse++;
		from = resume_offset(last_id, r->content.len);
		if (hc_writes(c, sse_head) || sse_catch_up(c, from, r->content.s, r->content.len))
			return;
		if (!r->ended) {
			subscribe(c, "m:", msg_id);
			return;
		}
		/* ended, its end not yet written: the end is known all the same */
		sse_end(c, r->content.s, r->content.len, r->end.status == 2 ? r->end.error : NULL);
		return;
	}
	rc = store_msg_get_by_msgid(pushd_store, p, msg_id, NULL, &m, err);
	if (rc != RC_OK) {
		hc_respond(c, 404, "Not Found", "application/json", "{\"error\":\"Message not found\"}");
		return;
	}
	c->kind = K_SSE;
	n_sse++;
	from = resume_offset(last_id, strlen(m.content));
	if (hc_writes(c, sse_head) || sse_catch_up(c, from, m.content, strlen(m.content)))
		return;
	if (m.unfinished) {
		/* queued, or between daemons: its events follow once the run starts */
		subscribe(c, "m:", msg_id);
		return;
	}
	sse_end(c, m.content, strlen(m.content), m.error && *m.error ? m.error : NULL);
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
		if (res.status == 0) {
			runs_start(run_id);
			r = runs_find(run_id);
		}
		if (!r) {
			/* ended before the client came: what it made, in one piece */
			if (res.status == 2)
				hc_respond(c, 500, "Internal Server Error", "text/plain; charset=utf-8",
					   pool_printf(p, "发送消息失败: %s", res.error ? res.error : ""));
			else
				hc_respond(c, 200, "OK", "text/plain; charset=utf-8", res.reply.content);
			return;
		}
	}
	if (r->ended) {
		if (r->end.status == 2 && !r->raw.len)
			hc_respond(c, 500, "Internal Server Error", "text/plain; charset=utf-8",
				   pool_printf(p, "发送消息失败: %s", r->end.error));
		else if (r->raw.len && stream_head(c, r->raw_type) == 0 &&
			 hc_write(c, r->raw.s, r->raw.len) == 0)
			hc_end(c);
		else if (!r->raw.len)
			hc_respond(c, 200, "OK", "text/plain; charset=utf-8", r->content.s);
		return;
	}
	if (r->raw.len && (stream_head(c, r->raw_type) || hc_write(c, r->raw.s, r->raw.len)))
		return;
	subscribe(c, "r:", pool_printf(p, "%lld", (long long)run_id));
}

/* ---- WebSocket ---- */

static ssize_t
ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *data, size_t len, int flags, void *u)
{
	struct hconn *c = u;
	size_t n = c->wsin.len < len ? c->wsin.len : len;

	(void)flags;
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
 * 1,000 subscribers 124 ms behind the first). wslay still reads every client frame (masks,
 * fragments, control frames, close codes, the size limit) and answers pings and closes.
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
	s = req_json_text(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return NULL;
	f = ws_frame(WSLAY_TEXT_FRAME, s, strlen(s));
	free(s);
	return f;
}

static void
ws_send_frame(struct hconn *c, const struct frame *f)
{
	if (f && !c->closing && c->kind == K_WS)
		hc_write(c, f->data, f->len);
}

/* Send a JSON value (its reference is stolen) as a text message. */
static void
ws_send_json(struct hconn *c, json_t *j)
{
	struct frame *f = ws_json_frame(j);

	ws_send_frame(c, f);
	free(f);
}

static void
ws_error(struct hconn *c, const char *msg)
{
	ws_send_json(c, json_pack("{s:s,s:s}", "type", "error", "message", msg));
}

static void
ws_send_message(struct hconn *c, json_t *j)
{
	json_t *content = json_object_get(j, "content");
	struct pool *p = pool_create();
	struct store_post in;
	struct store_posted out;
	char err[ERR_LEN];
	int rc;

	if (!p)
		return;
	if (content && !json_is_string(content)) {
		ws_error(c, "content 必须是字符串");
		goto out;
	}
	switch (api_content_check(json_string_value(content))) {
	case 1:
		ws_error(c, "消息内容不能为空");
		goto out;
	case 2:
		ws_error(c, "消息内容过长");
		goto out;
	}
	memset(&in, 0, sizeof(in));
	in.conv_id = c->conv_id;
	in.owner = c->user;
	in.create = 1;
	/* as from the path's user (dialect A's /ws/{user_id}), or the token's */
	in.conv_user = in.sender = c->user ? c->user : c->conv_id;
	in.title = c->conv_id;
	in.role = "user";
	in.content = json_string_value(content);
	in.run = 1;
	rc = store_post(pushd_store, p, &in, &out, err);
	if (rc == RC_NOTFOUND) {
		ws_error(c, "会话不存在");
		goto out;
	}
	if (rc != RC_OK) {
		fprintf(stderr, "aichatd-push: ws send: %s\n", err);
		ws_error(c, "服务器内部错误");
		goto out;
	}
	ws_send_json(c, json_pack("{s:s,s:s,s:s,s:s}", "type", "message_sent", "message_id",
				  out.msg.msg_id, "content", out.msg.content, "session_id",
				  out.conv.id));
	runs_start(out.run_id);
out:
	pool_destroy(p);
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
	if (!r || r->ended || strcmp(r->job.conv_id, c->conv_id) != 0) {
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

/* Follow the frames of bytes about to go to wslay, to know when it holds no partial one. */
static void
ws_scan(struct hconn *c, const unsigned char *p, size_t n)
{
	while (n) {
		if (c->scan_left) {
			uint64_t take = c->scan_left < n ? c->scan_left : n;
			c->scan_left -= take;
			p += take;
			n -= (size_t)take;
			continue;
		}
		c->scan_hdr[c->scan_hlen++] = *p++;
		n--;
		if (c->scan_hlen < ws_header_size(c->scan_hdr, c->scan_hlen))
			continue;
		if ((c->scan_hdr[0] & 0x0f) < 8) /* data frames: continuation, text, binary */
			c->scan_frag = !(c->scan_hdr[0] & 0x80);
		c->scan_left = ws_payload_len(c->scan_hdr);
		c->scan_hlen = 0;
	}
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
	ws_scan(c, (const unsigned char *)c->wsin.s, c->wsin.len);
	if (wslay_event_recv(c->ws) != 0 || c->closing || !c->ws) {
		hc_close(c);
		return;
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

static void
ws_open(struct hconn *c, const char *conv_id, const char *token, struct pool *p)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char sha[SHA_DIGEST_LENGTH];
	char accept[64], head[256], sub[AUTH_SUB_MAX + 1], err[ERR_LEN], *kg;
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
	if (!*conv_id || utf8_count(conv_id) > SESSION_ID_MAX) {
		hc_respond(c, 400, "Bad Request", "application/json",
			   "{\"code\":1003,\"message\":\"会话ID不合法\"}");
		return;
	}
	if (pushd_cfg.auth == AUTH_JWT) {
		if (!token || auth_verify(token, pushd_cfg.jwt_secret, time(NULL), sub, &admin,
					  &why) != RC_OK) {
			hc_respond(c, 401, "Unauthorized", "application/json",
				   "{\"code\":401,\"message\":\"请先登录\"}");
			return;
		}
		c->user = strdup(sub);
	}
	rc = store_conv_get(pushd_store, p, conv_id, c->user, &cv, err);
	if (rc == RC_NOTFOUND && store_conv_taken(pushd_store, conv_id, err) == RC_OK)
		rc = RC_DENIED; /* deleted, or someone else's */
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
	    (store_run_status(pushd_store, run_id, &status, err) != RC_OK || status != 0)) {
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
			    status != 0)
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
			return req_unescape(p, query + n + 1, (size_t)(end - query) - n - 1, 1);
		query = amp ? amp + 1 : NULL;
	}
	return NULL;
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
	if (c->parser.method != HTTP_GET) {
		hc_respond(c, 405, "Method Not Allowed", "application/json",
			   "{\"code\":405,\"message\":\"请求方法不允许\"}");
	} else if (strncmp(path, "/ws/", 4) == 0 &&
		   (seg = req_unescape(p, path + 4, strlen(path + 4), 0)) && !strchr(seg, '/')) {
		if (q->auth[0] && strncasecmp(q->auth, "Bearer ", 7) == 0)
			token = q->auth + 7;
		else
			token = query_param(p, query, "access_token");
		ws_open(c, seg, token, p);
		if (!c->closing && c->kind == K_WS && rest_len) {
			buf_init(&c->wsin, pushd_cfg.ws_max_message + 65536);
			if (buf_add(&c->wsin, rest, rest_len) != RC_OK)
				hc_close(c);
			else
				ws_pump(c);
		}
	} else if (strncmp(path, "/sse/", 5) == 0 &&
		   (seg = req_unescape(p, path + 5, strlen(path + 5), 0)) && !strchr(seg, '/')) {
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
		if (!c->wsin.alloc)
			buf_init(&c->wsin, pushd_cfg.ws_max_message + 65536);
		if (buf_add(&c->wsin, b->base, (size_t)n) != RC_OK) {
			hc_close(c);
			return;
		}
		ws_pump(c);
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
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	if (uv_accept(srv, (uv_stream_t *)&c->pipe) != 0) {
		hc_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

/* ---- fan-out ---- */

void
hub_chunk(struct job_run *r, const char *s, size_t n)
{
	struct topic *t;
	struct hconn *c, *next;
	char key[256];
	json_t *j = NULL;

	if (!ntopics)
		return;
	snprintf(key, sizeof(key), "m:%s", r->job.ai_msg_id);
	if ((t = topic_get(key, 0))) {
		for (c = t->subs; c; c = next) {
			next = c->sub_next;
			sse_event(c, "chunk", r->content.len, s, n);
		}
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
	json_t *j;

	if (!ntopics)
		return;
	snprintf(key, sizeof(key), "m:%s", r->job.ai_msg_id);
	if ((t = topic_get(key, 0))) {
		for (c = t->subs; c; c = next) {
			next = c->sub_next;
			sse_end(c, r->content.s, r->content.len,
				status == 2 ? (error ? error : "") : NULL);
		}
	}
	snprintf(key, sizeof(key), "c:%s", r->job.conv_id);
	if ((t = topic_get(key, 0)) && t->subs) {
		if (status == 2)
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
				if (status == 2) {
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
	struct hconn *c, *next;

	(void)t;
	if (ping)
		last_ping = now;
	if (beat_sse)
		last_beat = now;
	for (c = all; c; c = next) {
		next = c->next;
		if (c->kind == K_SSE) {
			if (beat_sse)
				hc_writes(c, ": ping\n\n");
		} else if (c->kind == K_WS && ping) {
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
	chmod(path, 0660);
	/* one timer for both: its period is the shorter of the two */
	beat_ms = (pushd_cfg.sse_heartbeat_s < pushd_cfg.ws_ping_s ? pushd_cfg.sse_heartbeat_s :
								   pushd_cfg.ws_ping_s) * 1000;
	uv_timer_init(pushd_loop, &beat);
	uv_timer_start(&beat, on_beat, (uint64_t)beat_ms, (uint64_t)beat_ms);
	return RC_OK;
}

void
hub_stats(char *out, size_t len)
{
	snprintf(out, len, "ws %ld sse %ld stream %ld dropped %ld", n_ws, n_sse, n_stream,
		 n_dropped);
}

void
hub_close_all(void)
{
	while (all)
		hc_close(all);
	uv_timer_stop(&beat);
}
