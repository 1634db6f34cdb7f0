/*
 * WebSocket (GET /ws/{conversation}, see hub.h): the handshake, authorised here; every
 * client frame checked as it arrives (wsframe_check, and the bounds on a message) before
 * wslay reads it; the client's messages (send_message, stop, ping); and the server's frames,
 * written here. Under auth = jwt a WebSocket gets only its own user's conversation's events
 * (ws_owns), and its sends are stored by the writer thread (ws_send_message, ws_posted).
 * A closing WebSocket lingers (ws_fail); the heartbeat's pings and the time a client may
 * leave a message unfinished are ws_beat's.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <time.h>
#include <wslay/wslay.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <openssl/evp.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "token.h"
#include "limits.h"
#include "jsonpool.h"
#include "ws-frame.h"
#include "log.h"
#include "runs.h"
#include "writer.h"
#include "hub.h"
#include "hconn.h"
#include "stats.h"

/* a closing WebSocket waits at most this long for the client's close */
#define LINGER_MS 2000
/* a client's send_message posts at the writer at once; its next messages wait */
#define WS_POSTS_MAX 32
/* what an unfinished WebSocket message costs beyond its bytes (wslay's context and
 * buffers), counted in ws_pending_max */
#define WS_MSG_COST 16384

static uv_timer_t linger;
static long n_lingering;  /* connections closing (ws_fail) */
static size_t ws_pending; /* bytes held for unfinished messages (ws_pending_max) */

static void
ws_release(struct hconn *c)
{
	ws_pending -= c->held;
	c->held = 0;
	c->scan_msg = 0;
	c->msg_started = 0;
}

/* What a WebSocket holds of its own, let go of when it closes (hc_close). */
static void
ws_drop(struct hconn *c)
{
	if (c->linger_until)
		n_lingering--;
	ws_release(c);
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	buf_free(&c->wsin);
}

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
/* A complete frame of opcode carrying payload; the caller frees it with free(). */
static struct frame *
ws_frame(int opcode, const char *payload, size_t len)
{
	struct frame *f = malloc(sizeof(*f) + len + WSFRAME_SERVER_HEADER_MAX);
	size_t hl;

	if (!f)
		return NULL;
	hl = wsframe_server_header((unsigned char *)f->data, opcode, len);
	memcpy(f->data + hl, payload, len);
	f->len = hl + len;
	return f;
}

struct frame *
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
		if (store_conv_get(hub_env.store, p, c->conv_id, c->user, &cv, err) == RC_OK)
			c->own = OWN_YES;
		else if (store_conv_taken(hub_env.store, c->conv_id, err) == RC_OK)
			c->own = OWN_NO;
		pool_destroy(p);
		if (c->own == OWN_NO)
			topic_unsubscribe(c);
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

void
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
	topic_unsubscribe(c);
	ws_release(c);
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	buf_free(&c->wsin);
	c->scan_close = 0;
	c->linger_until = uv_now(hub_env.loop) + LINGER_MS;
	if (n_lingering++ == 0)
		uv_timer_start(&linger, on_linger, LINGER_MS / 4, LINGER_MS / 4);
	if (c->paused) {
		c->paused = 0;
		hc_read_start(c);
	}
}

static void
on_linger(uv_timer_t *t)
{
	uint64_t now = uv_now(hub_env.loop);
	struct hconn *c, *next;

	for (c = hub_all; c && n_lingering; c = next) {
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
 * loop, where a burst of sends stalled every other client). ws_posted() answers it once
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
	/* as from the path's user (im's /ws/{user_id}), or the token's */
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
ws_posted(struct witem *it)
{
	struct wpost *w = it->post;
	struct hconn *c = w->origin;

	w->origin = NULL;
	if (w->op.rc == RC_OK && w->in.run)
		stats_ws_send();
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
			topic_unsubscribe(c);
		ws_error(c, "会话不存在");
	} else {
		log_line("ws send: %s", w->err);
		ws_error(c, "服务器内部错误");
	}
	if (c->paused && c->posts_pending < WS_POSTS_MAX && !c->closing) {
		c->paused = 0;
		hc_read_start(c);
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

/* A frame header's verdict (RFC 6455 section 5, and the daemon's own bounds on a message):
 * 0, or the close code, with the reason. */
static int
ws_check_header(struct hconn *c, const unsigned char *h, uint64_t len)
{
	int op = h[0] & 0x0f, fin = h[0] & 0x80;
	uint64_t total;
	size_t want;

	c->fail_reason = wsframe_check(h, len, c->scan_frag);
	if (c->fail_reason)
		return 1002;
	if (op >= 8)
		return 0;
	total = (op == 0 ? c->scan_msg : 0) + len;
	if (total > hub_env.cfg->ws_max_message) {
		c->fail_reason = "message too big";
		return 1009;
	}
	/* what the message may hold once it is hub_all here, its reader's context included */
	want = (size_t)total + WS_MSG_COST;
	if (want > c->held && ws_pending + (want - c->held) > hub_env.cfg->ws_pending_max) {
		c->fail_reason = "server busy: too many unfinished messages";
		return 1013;
	}
	if (want > c->held) {
		ws_pending += want - c->held;
		c->held = want;
	}
	if (!c->msg_started)
		c->msg_started = uv_now(hub_env.loop) | 1;
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
		if (c->scan_hlen < wsframe_header_size(c->scan_hdr, c->scan_hlen))
			continue;
		c->scan_hlen = 0;
		c->scan_left = wsframe_payload_len(c->scan_hdr);
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
		hs = wsframe_header_size(h, c->wsin.len);
		/* a whole, masked, final pong with a short payload; anything else is wslay's */
		if (h[0] != 0x8a || !(h[1] & 0x80) || (h[1] & 0x7f) > 125 || c->wsin.len < hs)
			return;
		len = (size_t)wsframe_payload_len(h);
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
		wslay_event_config_set_max_recv_msg_length(c->ws, hub_env.cfg->ws_max_message);
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
		/* the rest waits for the writer's answers (ws_posted) */
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
			buf_init(&c->wsin, hub_env.cfg->ws_max_message + 65536);
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

void
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
	if (hub_env.cfg->auth == AUTH_JWT) {
		if (!token || token_verify(token, hub_env.cfg->jwt_secret, time(NULL), sub, &admin,
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
	rc = store_conv_get(hub_env.store, p, conv_id, c->user, &cv, err);
	if (rc == RC_NOTFOUND && store_conv_taken(hub_env.store, conv_id, err) == RC_OK)
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
	hc_set_kind(c, K_WS);
	c->input = ws_ingest;
	c->drop = ws_drop;
	if (hc_writes(c, head))
		return;
	topic_subscribe(c, "c:", conv_id);
	ws_send_json(c, json_pack("{s:s,s:s,s:o}", "type", "connected", "session_id", conv_id,
				  "user_id", c->user ? json_string(c->user) : json_null()));
}


int
ws_beat(struct hconn *c, uint64_t now, int ping)
{
	static const char ping_frame[2] = {(char)0x89, 0};
	uint64_t frag_ms = (uint64_t)hub_env.cfg->ws_fragment_timeout_s * 1000;

	if (c->msg_started && !c->failed && now - c->msg_started + 50 >= frag_ms) {
		/* a message begun and never finished (pongs alone keep a client alive) */
		ws_fail(c, WSLAY_CODE_POLICY_VIOLATION, "message not finished in time", 1);
	} else if (ping && !c->failed) {
		if (c->awaiting_pong) {
			/* no answer since the last ping: gone */
			hub_n_dropped++;
			hc_close(c);
			return -1;
		}
		c->awaiting_pong = 1;
		hc_write(c, ping_frame, sizeof(ping_frame));
	}
	return 0;
}

size_t
ws_pending_bytes(void)
{
	return ws_pending;
}

void
ws_init(void)
{
	uv_timer_init(hub_env.loop, &linger);
}

void
ws_close_all(void)
{
	uv_timer_stop(&linger);
}
