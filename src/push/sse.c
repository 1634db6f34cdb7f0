/*
 * chax's event stream (GET /sse/{msgId}, see hub.h): what the client lacks of a reply, then
 * its events as they come (hub.c's fan-out), resumed after a Last-Event-ID.
 *
 * Event ids (docs/API.md): "<msgId>:<n>" for init and chunk, where n is the byte length of
 * the reply up to and including the event (always at the end of a whole UTF-8 character),
 * and "<msgId>:<n>:end" for done and error, n the length of the final content. So every
 * event has its own id, a finished message's init and done differ, and a Last-Event-ID
 * says which message it is of and whether its stream had ended.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <jansson.h>

#include "rc.h"
#include "pool.h"
#include "util.h"
#include "jsonpool.h"
#include "runs.h"
#include "hconn.h"

int
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

int
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
	if (parse_uint0(num, (int64_t)len, &v) != RC_OK)
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
	hc_set_kind(c, K_SSE);
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
		topic_subscribe(c, "m:", msg_id); /* its events follow, its end once written */
}

void
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
	if (store_msg_get_by_msgid(hub_env.store, p, msg_id, NULL, &m, err) != RC_OK) {
		hc_respond(c, 404, "Not Found", "application/json", "{\"error\":\"Message not found\"}");
		return;
	}
	/* unfinished here: queued, or between daemons; its events follow once the run starts */
	sse_start(c, msg_id, last_id, m.content, strlen(m.content), !m.unfinished,
		  m.error && *m.error ? m.error : NULL);
}

