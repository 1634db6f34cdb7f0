/* The live bus (src/push/bus*.c) against a real private Redis (tests/lib/redis-instance on
 * a port of 56501-56509, its directory under /tmp/bus-*), on a libuv loop: two buses with
 * different node ids on one Redis; Redis stopped, hung and started again; malformed
 * frames and entries put there by hand with hiredis' synchronous client. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <signal.h>
#include <stdarg.h>
#include <unistd.h>
#include <uv.h>
#include <hiredis/hiredis.h>

#include "unit.h"
#include "rc.h"
#include "buf.h"
#include "store.h"
#include "bus.h"
#include "bus-int.h"
#include "jsonpool.h"

#define WAIT_MS 15000 /* a bound on each wait, so that a failure ends: no timing is checked */

struct side {
	const char *name;
	int ups, downs;
	struct buf text;   /* the pieces heard, joined */
	int pieces, order_ok;
	size_t last_off;
	char last_msg[64];
	int ends, end_status;
	size_t end_off;
	char end_err[64];
	int stops;
	int64_t stop_run;
	char stop_node[16];
	int convs;
	char conv[64], conv_json[128];
};

struct read_out {
	int done, rc, gap, ended, status, restarted;
	size_t len, end_len;
	char content[128], error[64];
};

static uv_loop_t loop;
static uv_timer_t waker;

static void
on_piece(void *arg, const struct bus_reply_event *e)
{
	struct side *s = arg;

	if (s->pieces == 0 || strcmp(s->last_msg, e->msg_id) != 0) {
		buf_reset(&s->text);
		s->last_off = 0;
	}
	snprintf(s->last_msg, sizeof(s->last_msg), "%s", e->msg_id);
	if (e->offset != s->last_off + e->n)
		s->order_ok = 0;
	s->last_off = e->offset;
	buf_add(&s->text, e->s, e->n);
	s->pieces++;
}

static void
on_end(void *arg, const struct bus_reply_event *e)
{
	struct side *s = arg;

	s->ends++;
	s->end_status = e->status;
	s->end_off = e->offset;
	snprintf(s->end_err, sizeof(s->end_err), "%s", e->s ? e->s : "");
}

static void
on_stop(void *arg, const char *node, int64_t run)
{
	struct side *s = arg;

	s->stops++;
	s->stop_run = run;
	snprintf(s->stop_node, sizeof(s->stop_node), "%s", node);
}

static void
on_conv(void *arg, const char *node, const char *conv, const char *json, size_t len)
{
	struct side *s = arg;

	(void)node;
	s->convs++;
	snprintf(s->conv, sizeof(s->conv), "%s", conv);
	snprintf(s->conv_json, sizeof(s->conv_json), "%.*s", (int)len, json);
}

static void
on_up(void *arg)
{
	((struct side *)arg)->ups++;
}

static void
on_down(void *arg)
{
	((struct side *)arg)->downs++;
}

static void
on_read(void *arg, const struct bus_read_result *r)
{
	struct read_out *o = arg;

	o->done = 1;
	o->rc = r->rc;
	o->len = r->len;
	o->gap = r->gap;
	o->ended = r->ended;
	o->status = r->status;
	o->restarted = r->restarted;
	o->end_len = r->end_len;
	snprintf(o->content, sizeof(o->content), "%.*s", (int)r->len, r->content);
	snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");
}

static void
on_wake(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *flag reaches want (or WAIT_MS pass): 1 when it did. */
static int
wait_for(const int *flag, int want)
{
	uint64_t until;

	uv_update_time(&loop);
	until = uv_now(&loop) + WAIT_MS;
	while (*flag < want && uv_now(&loop) < until)
		uv_run(&loop, UV_RUN_ONCE);
	return *flag >= want;
}

/* tests/lib/redis-instance start DIR PORT (port > 0) or stop DIR: its exit status */
static int
redis_instance(const char *dir, int port)
{
	char cmd[1024];

	if (port)
		snprintf(cmd, sizeof(cmd), "%s/tests/lib/redis-instance start %s %d >/dev/null",
			 AICHATD_SRCDIR, dir, port);
	else
		snprintf(cmd, sizeof(cmd), "%s/tests/lib/redis-instance stop %s >/dev/null 2>&1",
			 AICHATD_SRCDIR, dir);
	return system(cmd);
}

/* a synchronous client's command, its reply freed: its integer (or 0) */
static long long
redis_do(redisContext *c, int argc, const char **argv, const size_t *lens)
{
	redisReply *r = redisCommandArgv(c, argc, argv, lens);
	long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;

	if (r)
		freeReplyObject(r);
	return v;
}

static long long
redis_cmd(redisContext *c, const char *a0, const char *a1, const char *a2)
{
	const char *argv[3] = {a0, a1, a2};
	size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};

	return redis_do(c, a2 ? 3 : a1 ? 2 : 1, argv, lens);
}

/* XADD key * field value ... (NULL-terminated) */
static void
redis_xadd(redisContext *c, const char *key, ...)
{
	const char *argv[16] = {"XADD", key, "*"};
	size_t lens[16];
	int argc = 3, i;
	va_list ap;
	const char *s;

	va_start(ap, key);
	while (argc < 16 && (s = va_arg(ap, const char *)))
		argv[argc++] = s;
	va_end(ap);
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redis_do(c, argc, argv, lens);
}

static void
read_now(struct bus *b, const char *msg, struct read_out *o)
{
	memset(o, 0, sizeof(*o));
	if (bus_read(b, msg, on_read, o))
		wait_for(&o->done, 1);
	else
		o->rc = 99;
}

/* the formats alone, no Redis */
static void
t_bus_wire(void)
{
	struct bus_frame f;
	char *s;
	static const char *bad[] = {
		"not json", "[1]", "{\"v\":2,\"n\":\"X\",\"k\":\"ping\"}", "{\"v\":1,\"k\":\"ping\"}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"what\"}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"piece\",\"m\":\"m\",\"c\":\"c\",\"u\":\"\",\"r\":1,\"o\":2,\"d\":\"abc\"}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"piece\",\"m\":\"\",\"c\":\"c\",\"u\":\"\",\"r\":1,\"o\":3,\"d\":\"abc\"}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"piece\",\"m\":\"m\",\"c\":\"c\",\"u\":\"\",\"r\":1,\"o\":9999999,\"d\":\"a\"}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"end\",\"m\":\"m\",\"c\":\"c\",\"u\":\"\",\"r\":1,\"o\":3,\"s\":7}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"stop\",\"r\":0}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"conv\",\"c\":\"c\",\"j\":\"[1]\"}",
		"{\"v\":1,\"n\":\"X\",\"k\":\"ping\",\"k\":\"ping\"}",
		"{\"v\":1,\"n\":\"a\\u0000b\",\"k\":\"ping\"}",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(bus_frame_parse(bad[i], strlen(bad[i]), &f) == -1);
	s = bus_frame_text("N1", "piece",
			   json_pack("{s:s,s:s,s:s,s:I,s:I,s:s%}", "m", "msg_1", "c", "c1", "u", "",
				     "r", (json_int_t)5, "o", (json_int_t)10, "d", "a\0b", (size_t)3));
	CHECK(s != NULL);
	if (s) {
		CHECK(bus_frame_parse(s, strlen(s), &f) == 0);
		CHECK(f.kind == BK_PIECE);
		CHECK_STR(f.node, "N1");
		CHECK_STR(f.e.msg_id, "msg_1");
		CHECK(f.e.run_id == 5 && f.e.offset == 10 && f.e.n == 3 && memcmp(f.e.s, "a\0b", 3) == 0);
		bus_frame_free(&f);
		free(s);
	}
	/* a piece that is not UTF-8 makes no frame */
	CHECK(bus_frame_text("N1", "piece", json_pack("{s:s%}", "d", "\xff", (size_t)1)) == NULL);
	CHECK(bus_id_ok("", 1) && !bus_id_ok("", 0) && !bus_id_ok("\xc3", 0));
	/* the URL's forms */
	{
		struct bus_addr a;
		char err[ERR_LEN];

		CHECK(bus_addr_parse(&a, "redis://[::1]:6380", err) == 0 && a.port == 6380);
		CHECK_STR(a.host, "::1");
		bus_addr_free(&a);
		CHECK(bus_addr_parse(&a, "redis://cache.internal", err) == 0 && a.port == 6379);
		CHECK_STR(a.host, "cache.internal");
		bus_addr_free(&a);
		CHECK(bus_addr_parse(&a, "unix:/run/redis/redis.sock", err) == 0 && !a.host);
		CHECK_STR(a.path, "/run/redis/redis.sock");
		bus_addr_free(&a);
		CHECK(bus_addr_parse(&a, "redis://:pw@h:1", err) == -1);
		bus_addr_free(&a);
		CHECK(bus_addr_parse(&a, "redis://h:0", err) == -1);
		bus_addr_free(&a);
		CHECK(bus_addr_parse(&a, "redis://[::1", err) == -1);
		bus_addr_free(&a);
	}
}

/* a reply of hiredis' shape, made by hand */
static redisReply
rstr(const char *s)
{
	redisReply r;

	memset(&r, 0, sizeof(r));
	r.type = REDIS_REPLY_STRING;
	r.str = (char *)s;
	r.len = strlen(s);
	return r;
}

static redisReply
rarr(redisReply **el, size_t n)
{
	redisReply r;

	memset(&r, 0, sizeof(r));
	r.type = REDIS_REPLY_ARRAY;
	r.element = el;
	r.elements = n;
	return r;
}

/* stream entries of every shape: only well-formed ones are joined */
static void
t_bus_join(void)
{
	struct bus_join j;
	redisReply id = rstr("1-1"), o = rstr("o"), three = rstr("3"), d = rstr("d"),
		   abc = rstr("abc"), nil, num, *fv[4] = {&o, &three, &d, &abc}, fields,
		   *ent[2] = {&id, &fields}, entry, *bad_ent[2] = {&num, &fields}, bad_entry,
		   *odd[3] = {&o, &three, &d}, odd_fields, *odd_ent[2] = {&id, &odd_fields},
		   odd_entry, *nil_fv[4] = {&o, &three, &d, &nil}, nil_fields,
		   *nil_ent[2] = {&id, &nil_fields}, nil_entry;

	memset(&nil, 0, sizeof(nil));
	nil.type = REDIS_REPLY_NIL;
	memset(&num, 0, sizeof(num));
	num.type = REDIS_REPLY_INTEGER;
	num.integer = 5;
	fields = rarr(fv, 4);
	entry = rarr(ent, 2);
	bad_entry = rarr(bad_ent, 2);
	odd_fields = rarr(odd, 3);
	odd_entry = rarr(odd_ent, 2);
	nil_fields = rarr(nil_fv, 4);
	nil_entry = rarr(nil_ent, 2);
	bus_join_init(&j);
	CHECK(bus_join_entry(&j, NULL) == -1);
	CHECK(bus_join_entry(&j, &nil) == -1 && j.last_id[0] == '\0');
	CHECK(bus_join_entry(&j, &num) == -1);
	CHECK(bus_join_entry(&j, &abc) == -1);
	CHECK(bus_join_entry(&j, &bad_entry) == -1 && j.last_id[0] == '\0');
	CHECK(bus_join_entry(&j, &odd_entry) == -1);
	CHECK_STR(j.last_id, "1-1");
	CHECK(bus_join_entry(&j, &nil_entry) == -1);
	CHECK(bus_join_entry(&j, &fields) == -1);
	CHECK(j.content.len == 0);
	CHECK(bus_join_entry(&j, &entry) == 0 && j.content.len == 3 && !j.gap);
	CHECK_STR(j.content.s, "abc");
	bus_join_free(&j);
}

static void
t_bus_off(void)
{
	struct config c;
	char err[ERR_LEN] = "";
	struct bus *b;

	memset(&c, 0, sizeof(c));
	c.redis_url = "";
	c.node_id = "A";
	b = bus_start(&loop, &c, NULL, err);
	CHECK(b != NULL);
	CHECK(!bus_up(b));
	CHECK(bus_piece(b, "m", "c", "", 1, 1, "x", 1) == RC_UNAVAIL);
	CHECK(bus_stop(b, 1) == RC_UNAVAIL);
	CHECK(bus_read(b, "m", on_read, NULL) == NULL);
	CHECK(bus_counters(b)->published == 0);
	bus_close(b);
	c.redis_url = "redis://";
	CHECK(bus_start(&loop, &c, NULL, err) == NULL && *err);
	c.redis_url = "redis://h:99999";
	CHECK(bus_start(&loop, &c, NULL, err) == NULL);
	c.redis_url = "http://h:1";
	CHECK(bus_start(&loop, &c, NULL, err) == NULL);
}

void
t_bus(void)
{
	char dir[64], url[128] = "", line[128];
	struct config ca, cb;
	struct side A = {.name = "A", .order_ok = 1}, B = {.name = "B", .order_ok = 1};
	struct bus_events ev = {.on_piece = on_piece, .on_end = on_end, .on_stop = on_stop,
				.on_conv_event = on_conv, .on_up = on_up, .on_down = on_down};
	struct bus *ba, *bb;
	struct read_out o;
	char err[ERR_LEN] = "";
	redisContext *rc = NULL;
	int port = 0, p, flag;
	uint64_t malformed;
	FILE *f;
	long pid = 0;

	json_pool_install(); /* as the daemon does: bus frames are made with json_pool_text */
	uv_loop_init(&loop);
	uv_timer_init(&loop, &waker);
	uv_timer_start(&waker, on_wake, 20, 20); /* wait_for's loop turns */
	t_bus_wire();
	t_bus_join();
	t_bus_off();

	/* a private Redis: its absence is a failure, not a skip */
	CHECK(system("command -v redis-server >/dev/null 2>&1") == 0);
	snprintf(dir, sizeof(dir), "/tmp/bus-%ld", (long)getpid());
	for (p = 56501; p <= 56509 && !port; p++) {
		redisContext *probe = redisConnect("127.0.0.1", p);
		int taken = probe && !probe->err;
		char cmd[512];

		redisFree(probe);
		if (taken)
			continue; /* someone's server: not ours */
		snprintf(cmd, sizeof(cmd), "%s/tests/lib/redis-instance start %s %d 2>/dev/null",
			 AICHATD_SRCDIR, dir, p);
		if ((f = popen(cmd, "r"))) {
			if (fgets(line, sizeof(line), f) && strncmp(line, "redis://", 8) == 0) {
				line[strcspn(line, "\n")] = '\0';
				snprintf(url, sizeof(url), "%s", line);
				port = p;
			}
			if (pclose(f) != 0)
				port = 0;
		}
	}
	CHECK(port != 0);
	if (!port)
		goto out;
	rc = redisConnect("127.0.0.1", port);
	CHECK(rc && !rc->err);
	buf_init(&A.text, 0);
	buf_init(&B.text, 0);
	memset(&ca, 0, sizeof(ca));
	ca.redis_url = url;
	ca.node_id = "A";
	cb = ca;
	cb.node_id = "B";
	ev.arg = &A;
	ba = bus_start(&loop, &ca, &ev, err);
	ev.arg = &B;
	bb = bus_start(&loop, &cb, &ev, err);
	CHECK(ba && bb);
	if (!ba || !bb)
		goto out;
	CHECK(wait_for(&A.ups, 1) && wait_for(&B.ups, 1));
	CHECK(bus_up(ba) && bus_up(bb));

	/* pieces from A reach B in order, and not A */
	CHECK(bus_piece(ba, "msg_t1", "conv1", "msg_u1", 7, 3, "Hel", 3) == RC_OK);
	CHECK(bus_piece(ba, "msg_t1", "conv1", "msg_u1", 7, 7, "lo, ", 4) == RC_OK);
	CHECK(bus_piece(ba, "msg_t1", "conv1", "msg_u1", 7, 13, "世界", 6) == RC_OK);
	CHECK(wait_for(&B.pieces, 3));
	CHECK(B.pieces == 3 && B.order_ok && B.last_off == 13);
	CHECK_STR(B.text.s, "Hello, 世界");
	CHECK(A.pieces == 0);
	CHECK(bus_counters(ba)->published == 3 && bus_counters(bb)->received >= 3);

	/* the content so far, then the end */
	read_now(bb, "msg_t1", &o);
	CHECK(o.rc == RC_OK && o.len == 13 && !o.ended && !o.gap && !o.restarted);
	CHECK_STR(o.content, "Hello, 世界");
	CHECK(bus_end(ba, "msg_t1", "conv1", "msg_u1", 7, RUN_FAILED, "AI 服务调用失败", 13) == RC_OK);
	CHECK(wait_for(&B.ends, 1));
	CHECK(B.end_status == RUN_FAILED && B.end_off == 13 && A.ends == 0);
	CHECK_STR(B.end_err, "AI 服务调用失败");
	read_now(bb, "msg_t1", &o);
	CHECK(o.rc == RC_OK && o.ended && o.status == RUN_FAILED && o.end_len == 13 && o.len == 13);
	CHECK_STR(o.content, "Hello, 世界");
	CHECK_STR(o.error, "AI 服务调用失败");
	{
		long long ttl = redis_cmd(rc, "TTL", BUS_KEY_PREFIX "msg_t1", NULL);
		CHECK(ttl > 0 && ttl <= BUS_END_TTL_S);
	}
	read_now(ba, "msg_none", &o);
	CHECK(o.rc == RC_NOTFOUND);

	/* a stop and a conversation event, each heard by the other only */
	CHECK(bus_stop(bb, 42) == RC_OK);
	CHECK(bus_conv_event(ba, "conv1", "{\"type\":\"message\"}", 18) == RC_OK);
	CHECK(wait_for(&A.stops, 1) && wait_for(&B.convs, 1));
	CHECK(A.stop_run == 42 && B.stops == 0 && A.convs == 0);
	CHECK_STR(A.stop_node, "B");
	CHECK_STR(B.conv, "conv1");
	CHECK_STR(B.conv_json, "{\"type\":\"message\"}");

	/* malformed frames, published by hand, are skipped and counted; a good one after them
	 * (the channel keeps order) says they were taken */
	malformed = bus_counters(bb)->malformed;
	redis_cmd(rc, "PUBLISH", BUS_CHANNEL, "not json");
	redis_cmd(rc, "PUBLISH", BUS_CHANNEL,
		  "{\"v\":1,\"n\":\"X\",\"k\":\"piece\",\"m\":\"m\",\"c\":\"c\",\"u\":\"\",\"r\":1,\"o\":1,\"d\":\"abc\"}");
	redis_cmd(rc, "PUBLISH", BUS_CHANNEL, "{\"v\":1,\"n\":\"X\",\"k\":\"stop\",\"r\":\"7\"}");
	redis_cmd(rc, "PUBLISH", BUS_CHANNEL,
		  "{\"v\":1,\"n\":\"X\",\"k\":\"piece\",\"m\":\"msg_x\",\"c\":\"c\",\"u\":\"\",\"r\":1,\"o\":2,\"d\":\"ok\"}");
	CHECK(wait_for(&B.pieces, 4));
	CHECK(bus_counters(bb)->malformed == malformed + 3);
	CHECK_STR(B.text.s, "ok");
	CHECK(wait_for(&A.pieces, 1));

	/* a stream's entries: malformed ones skipped, repeats joined once, a gap, a restart */
	malformed = bus_counters(bb)->malformed;
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "3", "d", "abc", NULL);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "x3", "d", "abc", NULL);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "3", "d", "abc", NULL);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "5", "d", "cde", NULL);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "1", "d", "abc", NULL);
	read_now(bb, "msg_j", &o);
	CHECK(o.rc == RC_OK && o.len == 5 && !o.gap && !o.ended);
	CHECK_STR(o.content, "abcde");
	CHECK(bus_counters(bb)->malformed == malformed + 2);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "9", "d", "xy", NULL);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "11", "d", "zz", NULL);
	read_now(bb, "msg_j", &o);
	CHECK(o.rc == RC_OK && o.len == 5 && o.gap);
	CHECK_STR(o.content, "abcde");
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "2", "d", "AB", NULL);
	redis_xadd(rc, BUS_KEY_PREFIX "msg_j", "o", "2", "e", "3", NULL);
	read_now(bb, "msg_j", &o);
	CHECK(o.rc == RC_OK && o.len == 2 && !o.gap && o.restarted && o.ended &&
	      o.status == RUN_STOPPED && o.end_len == 2);
	CHECK_STR(o.content, "AB");
	redis_cmd(rc, "SET", BUS_KEY_PREFIX "msg_str", "x");
	read_now(bb, "msg_str", &o);
	CHECK(o.rc == RC_ERR);
	/* a long reply is read in pages */
	{
		char off[16];
		int i;

		for (i = 1; i <= 1200; i++) {
			snprintf(off, sizeof(off), "%d", i);
			redis_xadd(rc, BUS_KEY_PREFIX "msg_long", "o", off, "d", "a", NULL);
		}
		read_now(bb, "msg_long", &o);
		CHECK(o.rc == RC_OK && o.len == 1200 && !o.gap);
	}

	/* too much in flight: what passes BUS_INFLIGHT_MAX commands before Redis answers is
	 * dropped and counted (the loop does not run meanwhile, so nothing is answered) */
	{
		uint64_t dropped = bus_counters(ba)->dropped;
		int i, sent = 0, want = B.pieces + BUS_INFLIGHT_MAX / 3;

		for (i = 0; i < BUS_INFLIGHT_MAX / 3 + 100; i++)
			sent += bus_piece(ba, "msg_flood", "conv1", "", 10, (size_t)i + 1, "f", 1) ==
				RC_OK;
		CHECK(sent == BUS_INFLIGHT_MAX / 3);
		CHECK(bus_counters(ba)->dropped == dropped + 100);
		CHECK(wait_for(&B.pieces, want));
		CHECK(B.order_ok && B.last_off == (size_t)sent && bus_up(ba));
	}

	/* Redis stops: both hear it, a read under way is answered RC_UNAVAIL, publishes are
	 * dropped and counted, reads refused */
	redisFree(rc);
	rc = NULL;
	memset(&o, 0, sizeof(o));
	CHECK(bus_read(bb, "msg_t1", on_read, &o) != NULL);
	redis_instance(dir, 0);
	CHECK(wait_for(&o.done, 1) && o.rc == RC_UNAVAIL);
	CHECK(wait_for(&A.downs, 1) && wait_for(&B.downs, 1));
	CHECK(!bus_up(ba) && !bus_up(bb));
	{
		uint64_t dropped = bus_counters(ba)->dropped;

		CHECK(bus_piece(ba, "msg_t2", "conv1", "", 8, 1, "x", 1) == RC_UNAVAIL);
		CHECK(bus_end(ba, "msg_t2", "conv1", "", 8, RUN_DONE, NULL, 1) == RC_UNAVAIL);
		CHECK(bus_stop(ba, 8) == RC_UNAVAIL);
		CHECK(bus_counters(ba)->dropped == dropped + 3);
	}
	CHECK(bus_read(bb, "msg_t1", on_read, &o) == NULL);

	/* and comes back on the same port: the buses come up by themselves, traffic resumes */
	CHECK(redis_instance(dir, port) == 0);
	CHECK(wait_for(&A.ups, 2) && wait_for(&B.ups, 2));
	CHECK(bus_counters(ba)->reconnects >= 2 && bus_counters(bb)->reconnects >= 2);
	flag = B.pieces;
	CHECK(bus_piece(ba, "msg_t3", "conv1", "", 9, 4, "back", 4) == RC_OK);
	CHECK(wait_for(&B.pieces, flag + 1));
	CHECK_STR(B.text.s, "back");

	/* a Redis that hangs (SIGSTOP) is found by the watch, and the buses come back after */
	snprintf(line, sizeof(line), "%s/redis.pid", dir);
	if ((f = fopen(line, "r"))) {
		if (fscanf(f, "%ld", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	CHECK(pid > 0);
	if (pid > 0) {
		int a_downs = A.downs, b_downs = B.downs;

		kill((pid_t)pid, SIGSTOP);
		CHECK(wait_for(&A.downs, a_downs + 1) && wait_for(&B.downs, b_downs + 1));
		CHECK(!bus_up(ba) && !bus_up(bb));
		kill((pid_t)pid, SIGCONT);
		CHECK(wait_for(&A.ups, 3) && wait_for(&B.ups, 3));
		CHECK(bus_up(ba) && bus_up(bb));
	}

	/* a cancelled read is never answered (a later read on the same connection is); a read
	 * still waiting at the close is answered RC_UNAVAIL */
	{
		struct read_out gone, later;

		memset(&gone, 0, sizeof(gone));
		CHECK(bus_read(bb, "msg_t3", on_read, &gone) != NULL);
		bus_read_cancel(bus_read(bb, "msg_t3", on_read, &gone));
		read_now(bb, "msg_t3", &later);
		CHECK(later.rc == RC_OK && gone.done == 1 && gone.rc == RC_OK);
		CHECK_STR(later.content, "back");
		memset(&gone, 0, sizeof(gone));
		CHECK(bus_read(bb, "msg_t3", on_read, &gone) != NULL);
		bus_close(bb);
		CHECK(gone.done == 1 && gone.rc == RC_UNAVAIL);
	}
	bus_close(ba);
out:
	if (rc)
		redisFree(rc);
	uv_close((uv_handle_t *)&waker, NULL);
	uv_run(&loop, UV_RUN_DEFAULT); /* the buses' handles close, and the buses are freed */
	CHECK(uv_loop_close(&loop) == 0);
	buf_free(&A.text);
	buf_free(&B.text);
	if (port)
		redis_instance(dir, 0);
	snprintf(line, sizeof(line), "rm -rf %s", dir);
	if (system(line) != 0)
		fprintf(stderr, "  t-bus: could not remove %s\n", dir);
}
