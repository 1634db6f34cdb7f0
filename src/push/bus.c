/*
 * The live bus on Redis (see bus.h and docs/ARCHITECTURE.md, "The live bus (Redis)"):
 * two connections kept up by bus-link.c, one for commands and one for SUBSCRIBE; the
 * publishing, the frames heard, the reads of a reply's stream. A tick every
 * second watches both: a command connection that answers nothing for BUS_STALL_MS while
 * commands wait is dropped, and so is a subscription that does not hear the ping the bus
 * publishes to its own channel within that time (a Redis that hangs, or a connection that
 * died silently, is found as surely as one that closed).
 *
 * The frames' and the stream entries' formats are bus-wire.c's (bus-int.h).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdint.h>
#include <jansson.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "rc.h"
#include "buf.h"
#include "util.h"
#include "jsonpool.h"
#include "store.h"
#include "log.h"
#include "bus-int.h"

#define BUS_STALL_MS 5000
#define TICK_MS 1000
#define READ_PAGE 512

struct bus {
	uv_loop_t *loop;
	struct bus_events ev;
	int off;
	char *node;
	char *node_channel;
	struct bus_addr addr;
	struct bus_link cmd, sub;
	uv_timer_t tick;
	int up;
	int ping_waiting;       /* a ping was published to our channel and not yet heard */
	uint64_t ping_since;
	int refusal_logged;     /* a command refused was logged on this connection */
	int closing;
	int handles;            /* handles still open after bus_close: the last frees the bus */
	struct bus_counters n;
};

struct bus_read {
	struct bus *bus;
	bus_read_cb cb;
	void *arg;
	int cancelled;
	char *key;
	size_t bytes;           /* the page's command bytes, counted in flight */
	struct bus_join join;
};

/* ---- up and down ---- */

static void
bus_check_up(struct bus *b)
{
	int up = !b->closing && b->cmd.state == L_READY && b->sub.state == L_READY;

	if (up == b->up)
		return;
	b->up = up;
	if (up) {
		if (b->addr.path)
			log_info("redis bus up (%s)", b->addr.path);
		else
			log_info("redis bus up (%s port %d)", b->addr.host, b->addr.port);
		if (b->ev.on_up)
			b->ev.on_up(b->ev.arg);
	} else if (b->ev.on_down) {
		b->ev.on_down(b->ev.arg);
	}
}

/* either connection lost */
static void
on_lost(struct bus_link *l)
{
	struct bus *b = l->owner;

	l->subs = 0;
	b->ping_waiting = 0; /* a ping in flight is lost with either */
	bus_check_up(b);
}

/* ---- commands ---- */

static void
inflight_done(struct bus_link *l, size_t bytes)
{
	l->inflight = l->inflight ? l->inflight - 1 : 0;
	l->inflight_bytes = l->inflight_bytes >= bytes ? l->inflight_bytes - bytes : 0;
}

static void
on_cmd_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_link *l = ac->data;
	struct bus *b = l->owner;
	redisReply *r = reply;

	inflight_done(l, (size_t)(uintptr_t)priv);
	if (!r)
		return; /* the connection is going */
	l->last_reply = uv_now(l->loop);
	if (r->type == REDIS_REPLY_ERROR && !b->refusal_logged) {
		/* once a connection: a server that wants AUTH refuses every command */
		log_line("redis bus: command refused: %.200s", r->str ? r->str : "");
		b->refusal_logged = 1;
	}
}

/* Room for ncmds more commands of bytes in all on the command connection, while the bus is
 * up (with the subscription down too, a publish is dropped: on_down said it would be). */
static int
cmd_room(struct bus *b, int ncmds, size_t bytes)
{
	struct bus_link *l = &b->cmd;

	return b->up && l->state == L_READY && l->ac &&
	       l->inflight + (size_t)ncmds <= BUS_INFLIGHT_MAX &&
	       l->inflight_bytes + bytes <= BUS_INFLIGHT_BYTES;
}

static size_t
argv_bytes(int argc, const size_t *lens)
{
	size_t n = 16;
	int i;

	for (i = 0; i < argc; i++)
		n += lens[i] + 16;
	return n;
}

/* Send one command (after cmd_room): 0, or -1 when hiredis refused it. */
static int
cmd_send(struct bus *b, redisCallbackFn *fn, void *priv, size_t bytes, int argc, const char **argv,
	 const size_t *lens)
{
	struct bus_link *l = &b->cmd;

	if (!l->ac || redisAsyncCommandArgv(l->ac, fn, fn == on_cmd_reply ? (void *)(uintptr_t)bytes
									   : priv,
					    argc, argv, lens) != REDIS_OK)
		return -1;
	if (!l->inflight++)
		l->last_reply = uv_now(l->loop); /* the wait for an answer starts now */
	l->inflight_bytes += bytes;
	return 0;
}

static int
cmd_plain(struct bus *b, int argc, const char **argv, const size_t *lens)
{
	return cmd_send(b, on_cmd_reply, NULL, argv_bytes(argc, lens), argc, argv, lens);
}

/* ---- frames ---- */

static int
publish(struct bus *b, const char *channel, const char *frame)
{
	const char *argv[3] = {"PUBLISH", channel, frame};
	size_t lens[3] = {7, strlen(channel), strlen(frame)};

	return cmd_plain(b, 3, argv, lens);
}

/* The stream's key of reply msg_id, into key (BUS_ID_MAX + 32 bytes). */
static void
stream_key(char *key, size_t n, const char *msg_id)
{
	snprintf(key, n, "%s%s", BUS_KEY_PREFIX, msg_id);
}

/* XADD key MAXLEN ~ N * fields..., EXPIRE key ttl and PUBLISH frame, as one (all three are
 * sent, or none): RC_OK or RC_UNAVAIL */
static int
stream_publish(struct bus *b, const char *key, int nf, const char **fields, const size_t *flens,
	       int ttl, const char *frame)
{
	const char *argv[16];
	size_t lens[16], bytes;
	char maxlen[24], ttls[24];
	int argc = 0, i;
	const char *eargv[3];
	size_t elens[3];

	snprintf(maxlen, sizeof(maxlen), "%u", (unsigned)BUS_STREAM_MAXLEN);
	snprintf(ttls, sizeof(ttls), "%d", ttl);
	argv[argc] = "XADD", lens[argc++] = 4;
	argv[argc] = key, lens[argc++] = strlen(key);
	argv[argc] = "MAXLEN", lens[argc++] = 6;
	argv[argc] = "~", lens[argc++] = 1;
	argv[argc] = maxlen, lens[argc++] = strlen(maxlen);
	argv[argc] = "*", lens[argc++] = 1;
	for (i = 0; i < nf && argc < 16; i++)
		argv[argc] = fields[i], lens[argc++] = flens[i];
	eargv[0] = "EXPIRE", elens[0] = 6;
	eargv[1] = key, elens[1] = strlen(key);
	eargv[2] = ttls, elens[2] = strlen(ttls);
	bytes = argv_bytes(argc, lens) + argv_bytes(3, elens) + strlen(frame) + 64;
	if (!cmd_room(b, 3, bytes)) {
		b->n.dropped++;
		return RC_UNAVAIL;
	}
	if (cmd_plain(b, argc, argv, lens) || cmd_plain(b, 3, eargv, elens) ||
	    publish(b, BUS_CHANNEL, frame)) {
		b->n.dropped++;
		return RC_UNAVAIL;
	}
	b->n.published++;
	return RC_OK;
}

int
bus_piece(struct bus *b, const char *msg_id, const char *conv_id, const char *user_msg_id,
	  int64_t run_id, size_t end_offset, const char *s, size_t n)
{
	char key[BUS_ID_MAX + 32], off[24], *frame;
	const char *fields[4];
	size_t flens[4];
	int rc;

	if (!b || b->off)
		return RC_UNAVAIL;
	if (!bus_id_ok(msg_id, 0) || !bus_id_ok(conv_id, 0) ||
	    !bus_id_ok(user_msg_id ? user_msg_id : "", 1) || n > end_offset ||
	    end_offset > BUS_REPLY_MAX || run_id < 0)
		return RC_ERR;
	if (!cmd_room(b, 3, n * 7 + 1024)) {
		b->n.dropped++;
		return RC_UNAVAIL;
	}
	frame = bus_frame_text(b->node, "piece",
			       json_pack("{s:s,s:s,s:s,s:I,s:I,s:s%}", "m", msg_id, "c", conv_id, "u",
					 user_msg_id ? user_msg_id : "", "r", (json_int_t)run_id,
					 "o", (json_int_t)end_offset, "d", s, n));
	if (!frame) {
		b->n.dropped++; /* not UTF-8 (or no memory) */
		return RC_UNAVAIL;
	}
	snprintf(off, sizeof(off), "%zu", end_offset);
	stream_key(key, sizeof(key), msg_id);
	fields[0] = "o", flens[0] = 1;
	fields[1] = off, flens[1] = strlen(off);
	fields[2] = "d", flens[2] = 1;
	fields[3] = s, flens[3] = n;
	rc = stream_publish(b, key, 4, fields, flens, BUS_LIVE_TTL_S, frame);
	free(frame);
	return rc;
}

int
bus_end(struct bus *b, const char *msg_id, const char *conv_id, const char *user_msg_id,
	int64_t run_id, int status, const char *error, size_t len)
{
	char key[BUS_ID_MAX + 32], off[24], st[8], *frame;
	const char *fields[8];
	size_t flens[8];
	json_t *j;
	int rc, nf = 0;

	if (!b || b->off)
		return RC_UNAVAIL;
	if (error && !*error)
		error = NULL;
	if (!bus_id_ok(msg_id, 0) || !bus_id_ok(conv_id, 0) ||
	    !bus_id_ok(user_msg_id ? user_msg_id : "", 1) || len > BUS_REPLY_MAX ||
	    run_id < 0 ||
	    (status != RUN_DONE && status != RUN_FAILED && status != RUN_STOPPED) ||
	    (error && (strlen(error) > BUS_ERROR_MAX || !utf8_valid(error, strlen(error)))))
		return RC_ERR;
	j = json_pack("{s:s,s:s,s:s,s:I,s:I,s:i}", "m", msg_id, "c", conv_id, "u",
		      user_msg_id ? user_msg_id : "", "r", (json_int_t)run_id, "o", (json_int_t)len,
		      "s", status);
	if (j && error && json_object_set_new(j, "x", json_string(error))) {
		json_decref(j);
		j = NULL;
	}
	if (!(frame = bus_frame_text(b->node, "end", j))) {
		b->n.dropped++;
		return RC_UNAVAIL;
	}
	snprintf(off, sizeof(off), "%zu", len);
	snprintf(st, sizeof(st), "%d", status);
	stream_key(key, sizeof(key), msg_id);
	fields[nf] = "o", flens[nf++] = 1;
	fields[nf] = off, flens[nf++] = strlen(off);
	fields[nf] = "e", flens[nf++] = 1;
	fields[nf] = st, flens[nf++] = strlen(st);
	if (error) {
		fields[nf] = "x", flens[nf++] = 1;
		fields[nf] = error, flens[nf++] = strlen(error);
	}
	rc = stream_publish(b, key, nf, fields, flens, BUS_END_TTL_S, frame);
	free(frame);
	return rc;
}

/* A frame alone on the channel: RC_OK or RC_UNAVAIL */
static int
frame_publish(struct bus *b, char *frame)
{
	if (!frame || !cmd_room(b, 1, strlen(frame) + 64) || publish(b, BUS_CHANNEL, frame)) {
		free(frame);
		b->n.dropped++;
		return RC_UNAVAIL;
	}
	free(frame);
	b->n.published++;
	return RC_OK;
}

int
bus_stop(struct bus *b, int64_t run_id)
{
	if (!b || b->off)
		return RC_UNAVAIL;
	if (run_id <= 0)
		return RC_ERR;
	return frame_publish(b, bus_frame_text(b->node, "stop",
					       json_pack("{s:I}", "r", (json_int_t)run_id)));
}

int
bus_conv_event(struct bus *b, const char *conv_id, const char *json, size_t len)
{
	if (!b || b->off)
		return RC_UNAVAIL;
	if (!bus_id_ok(conv_id, 0) || !json || len > BUS_CONV_EVENT_MAX)
		return RC_ERR;
	return frame_publish(b, bus_frame_text(b->node, "conv",
					       json_pack("{s:s,s:s%}", "c", conv_id, "j", json, len)));
}

/* ---- receiving ---- */

/* one message from the subscription: -1 when malformed */
static int
frame_in(struct bus *b, int own_channel, const char *s, size_t n)
{
	struct bus_frame f;

	if (bus_frame_parse(s, n, &f))
		return -1;
	if (strcmp(f.node, b->node) == 0) {
		/* ours: only our ping, on our own channel, means anything */
		if (own_channel && f.kind == BK_PING)
			b->ping_waiting = 0;
		bus_frame_free(&f);
		return 0;
	}
	if (own_channel || f.kind == BK_PING) {
		bus_frame_free(&f);
		return -1; /* nobody else publishes there, or pings */
	}
	b->n.received++;
	switch (f.kind) {
	case BK_PIECE:
		if (b->ev.on_piece)
			b->ev.on_piece(b->ev.arg, &f.e);
		break;
	case BK_END:
		if (b->ev.on_end)
			b->ev.on_end(b->ev.arg, &f.e);
		break;
	case BK_STOP:
		if (b->ev.on_stop)
			b->ev.on_stop(b->ev.arg, f.node, f.e.run_id);
		break;
	case BK_CONV:
		if (b->ev.on_conv_event)
			b->ev.on_conv_event(b->ev.arg, f.node, f.conv_id, f.json, f.json_len);
		break;
	case BK_PING:
		break;
	}
	bus_frame_free(&f);
	return 0;
}

static int
is_str(const redisReply *r)
{
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str;
}

static void
on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_link *l = ac->data;
	struct bus *b = l->owner;
	redisReply *r = reply, *kind;
	int own;

	(void)priv;
	if (!r || b->closing)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || !is_str(kind = r->element[0]) ||
	    !is_str(r->element[1])) {
		b->n.malformed++;
		return;
	}
	if (strcmp(kind->str, "subscribe") == 0) {
		if (++l->subs == 2 && l->state == L_CONNECTED) {
			bus_link_ready(l);
			b->ping_waiting = 0;
			bus_check_up(b);
		}
		return;
	}
	if (strcmp(kind->str, "message") != 0)
		return;
	own = r->element[1]->len == strlen(b->node_channel) &&
	      memcmp(r->element[1]->str, b->node_channel, r->element[1]->len) == 0;
	if (!is_str(r->element[2]) || frame_in(b, own, r->element[2]->str, r->element[2]->len))
		b->n.malformed++;
}

/* ---- catch-up ---- */

static void
read_free(struct bus_read *rd)
{
	bus_join_free(&rd->join);
	free(rd->key);
	free(rd);
}

static void
read_finish(struct bus_read *rd, int rc)
{
	struct bus_read_result r;
	struct bus_join *j = &rd->join;

	if (!rd->cancelled) {
		memset(&r, 0, sizeof(r));
		r.rc = rc == RC_OK && !j->any ? RC_NOTFOUND : rc;
		r.content = "";
		if (r.rc == RC_OK) {
			r.content = j->content.s;
			r.len = j->content.len;
			r.gap = j->gap;
			r.ended = j->ended;
			r.status = j->status;
			r.error = j->error;
			r.end_len = j->end_len;
			r.restarted = j->restarted;
		}
		rd->cb(rd->arg, &r);
	}
	read_free(rd);
}

static int read_page(struct bus_read *rd);

static void
on_read_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_link *l = ac->data;
	struct bus_read *rd = priv;
	redisReply *r = reply;
	size_t i;
	int rc, stop = 0;

	inflight_done(l, rd->bytes);
	if (!r) {
		read_finish(rd, RC_UNAVAIL);
		return;
	}
	l->last_reply = uv_now(l->loop);
	if (rd->cancelled) {
		read_free(rd);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements > READ_PAGE) {
		/* a key that is no stream of ours, say (WRONGTYPE) */
		((struct bus *)l->owner)->n.malformed++;
		read_finish(rd, RC_ERR);
		return;
	}
	for (i = 0; i < r->elements && !stop; i++) {
		if ((rc = bus_join_entry(&rd->join, r->element[i])) == RC_NOMEM) {
			read_finish(rd, RC_NOMEM);
			return;
		} else if (rc) {
			((struct bus *)l->owner)->n.malformed++;
			stop = !rd->join.last_id[0]; /* no id to go on from: the read ends there */
		}
	}
	if (!stop && r->elements == READ_PAGE) {
		if (read_page(rd))
			read_finish(rd, RC_UNAVAIL);
		return;
	}
	read_finish(rd, RC_OK);
}

/* The next page after rd->last_id (from the start when empty): 0, or -1 */
static int
read_page(struct bus_read *rd)
{
	const char *last = rd->join.last_id;
	char start[sizeof(rd->join.last_id) + 1], count[16];
	const char *argv[6] = {"XRANGE", rd->key, start, "+", "COUNT", count};
	size_t lens[6];
	int i;

	snprintf(start, sizeof(start), "%s%s", *last ? "(" : "", *last ? last : "-");
	snprintf(count, sizeof(count), "%d", READ_PAGE);
	for (i = 0; i < 6; i++)
		lens[i] = strlen(argv[i]);
	rd->bytes = argv_bytes(6, lens) + BUS_REPLY_MAX / 4;
	if (!cmd_room(rd->bus, 1, rd->bytes))
		return -1;
	return cmd_send(rd->bus, on_read_reply, rd, rd->bytes, 6, argv, lens);
}

struct bus_read *
bus_read(struct bus *b, const char *msg_id, bus_read_cb cb, void *arg)
{
	struct bus_read *rd;

	if (!b || b->off || !b->up || !bus_id_ok(msg_id, 0) || !(rd = calloc(1, sizeof(*rd))))
		return NULL;
	rd->bus = b;
	rd->cb = cb;
	rd->arg = arg;
	bus_join_init(&rd->join);
	if (asprintf(&rd->key, "%s%s", BUS_KEY_PREFIX, msg_id) < 0) {
		rd->key = NULL;
		read_free(rd);
		return NULL;
	}
	if (read_page(rd)) {
		read_free(rd);
		return NULL;
	}
	return rd;
}

void
bus_read_cancel(struct bus_read *rd)
{
	if (rd)
		rd->cancelled = 1;
}

/* ---- connections ---- */

/* the first answer on the command connection: Redis is there (a connect alone may be
 * taken by the kernel for a server that hangs) */
static void
on_cmd_pong(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_link *l = ac->data;
	redisReply *r = reply;

	(void)priv;
	if (!r || l->state != L_CONNECTED)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		/* a server that wants AUTH, say: the link's timeout drops it, and it tries again */
		log_line("redis bus: PING refused: %.200s", r->str ? r->str : "");
		return;
	}
	bus_link_ready(l);
	bus_check_up(l->owner);
}

static void
on_cmd_connected(struct bus_link *l)
{
	struct bus *b = l->owner;

	b->n.reconnects = b->cmd.reconnects + b->sub.reconnects;
	b->refusal_logged = 0;
	/* refused (no memory): the link's timeout drops it */
	(void)redisAsyncCommand(l->ac, on_cmd_pong, NULL, "PING");
}

/* ready once both channels are confirmed (on_sub_reply) */
static void
on_sub_connected(struct bus_link *l)
{
	struct bus *b = l->owner;
	const char *argv[3] = {"SUBSCRIBE", BUS_CHANNEL, b->node_channel};
	size_t lens[3] = {9, strlen(BUS_CHANNEL), strlen(b->node_channel)};

	b->n.reconnects = b->cmd.reconnects + b->sub.reconnects;
	l->subs = 0;
	/* refused (no memory): the link's timeout drops it, not a free inside hiredis' call */
	(void)redisAsyncCommandArgv(l->ac, on_sub_reply, NULL, 3, argv, lens);
}

/* the watch, once a second (see the file's comment) */
static void
on_tick(uv_timer_t *t)
{
	struct bus *b = t->data;
	uint64_t now = uv_now(b->loop);
	char *ping;

	if (b->cmd.state == L_READY && b->cmd.inflight && now - b->cmd.last_reply > BUS_STALL_MS) {
		bus_link_drop(&b->cmd, "no answer");
		return;
	}
	if (b->cmd.state != L_READY || b->sub.state != L_READY)
		return;
	if (b->ping_waiting) {
		if (now - b->ping_since > BUS_STALL_MS)
			bus_link_drop(&b->sub, "its ping did not come back");
		return;
	}
	ping = bus_frame_text(b->node, "ping", json_object());
	if (ping && cmd_room(b, 1, strlen(ping) + 64) && publish(b, b->node_channel, ping) == 0) {
		b->ping_waiting = 1;
		b->ping_since = now;
	}
	free(ping);
}

/* ---- start and close ---- */

static void
bus_free(struct bus *b)
{
	free(b->node);
	free(b->node_channel);
	bus_addr_free(&b->addr);
	free(b);
}

/* one of the bus's handles is closed: the last frees it */
static void
on_released(struct bus_link *l)
{
	struct bus *b = l->owner;

	if (--b->handles == 0)
		bus_free(b);
}

static void
on_tick_closed(uv_handle_t *h)
{
	struct bus *b = h->data;

	if (--b->handles == 0)
		bus_free(b);
}

struct bus *
bus_start(uv_loop_t *loop, const struct config *cfg, const struct bus_events *ev, char *err)
{
	struct bus *b = calloc(1, sizeof(*b));

	if (!b) {
		snprintf(err, ERR_LEN, "out of memory");
		return NULL;
	}
	b->loop = loop;
	if (ev)
		b->ev = *ev;
	if (!cfg->redis_url || !*cfg->redis_url) {
		b->off = 1;
		return b;
	}
	if (!cfg->node_id || !bus_id_ok(cfg->node_id, 0)) {
		snprintf(err, ERR_LEN, "node_id: 1 to %d bytes of UTF-8 needed for the bus",
			 BUS_ID_MAX);
		bus_free(b);
		return NULL;
	}
	if (bus_addr_parse(&b->addr, cfg->redis_url, err)) {
		bus_free(b);
		return NULL;
	}
	if (!(b->node = strdup(cfg->node_id)) ||
	    asprintf(&b->node_channel, "%s%s", BUS_NODE_CHANNEL, cfg->node_id) < 0) {
		snprintf(err, ERR_LEN, "out of memory");
		b->node_channel = NULL;
		bus_free(b);
		return NULL;
	}
	b->cmd.name = "commands";
	b->cmd.connected = on_cmd_connected;
	b->sub.name = "subscription";
	b->sub.connected = on_sub_connected;
	b->cmd.owner = b->sub.owner = b;
	b->cmd.lost = b->sub.lost = on_lost;
	b->cmd.released = b->sub.released = on_released;
	uv_timer_init(loop, &b->tick);
	b->tick.data = b;
	uv_timer_start(&b->tick, on_tick, TICK_MS, TICK_MS);
	bus_link_start(&b->cmd, loop, &b->addr);
	bus_link_start(&b->sub, loop, &b->addr);
	return b;
}

int
bus_up(const struct bus *b)
{
	return b && !b->off && b->up;
}

const struct bus_counters *
bus_counters(const struct bus *b)
{
	static const struct bus_counters none;

	return b ? &b->n : &none;
}

void
bus_close(struct bus *b)
{
	if (!b)
		return;
	if (b->off) {
		bus_free(b);
		return;
	}
	b->closing = 1;
	b->up = 0;
	/* waiting reads are answered RC_UNAVAIL within */
	b->handles = 1 + bus_link_close(&b->cmd) + bus_link_close(&b->sub);
	uv_close((uv_handle_t *)&b->tick, on_tick_closed);
}
