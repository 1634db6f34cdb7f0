/*
 * push-proto: the two programs' shared side of the protocol push-proto.h describes: the
 * socket paths, and the "post" command's frames: a store_post out, its
 * store_posted back. Both sides use these four functions, so the two ends cannot drift
 * apart.
 *
 * A frame is a header line, "<verb> <n>\n", and n bytes of fields, each one of
 *   S<len>:<bytes>   a string (any bytes; the length says where it ends)
 *   N                a NULL string
 *   I<decimal>;      an integer
 * A hand-written format rather than JSON: this is the daemon's hottest path, the frames
 * never leave the machine, and reading one is a bounded walk with no allocation but the
 * strings' copies (JSON cost the daemon's loop a third of its time here).
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "rc.h"
#include "buf.h"
#include "pool.h"
#include "config.h"
#include "push-proto.h"
#include "store.h"

void
push_socket_path(const struct config *cfg, char *out, size_t len)
{
	snprintf(out, len, "%s/push.sock", cfg->run_dir);
}

void
push_post_socket_path(const struct config *cfg, char *out, size_t len)
{
	snprintf(out, len, "%s/post.sock", cfg->run_dir);
}

int
push_sockaddr(struct sockaddr_un *a, const char *path)
{
	if (strlen(path) >= sizeof(a->sun_path))
		return RC_ERR;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strcpy(a->sun_path, path);
	return RC_OK;
}

/* ---- writing ---- */

/* tag, then v in decimal, then end (when not NUL) */
static void
put_num(struct buf *b, char tag, int64_t v, char end)
{
	char t[24], *p = t + sizeof(t);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	if (end)
		*--p = end;
	do
		*--p = (char)('0' + u % 10);
	while ((u /= 10));
	if (v < 0)
		*--p = '-';
	*--p = tag;
	buf_add(b, p, (size_t)(t + sizeof(t) - p));
}

static void
put_str(struct buf *b, const char *s)
{
	size_t n;

	if (!s) {
		buf_addch(b, 'N');
		return;
	}
	n = strlen(s);
	put_num(b, 'S', (int64_t)n, ':');
	buf_add(b, s, n);
}

static void
put_int(struct buf *b, int64_t v)
{
	put_num(b, 'I', v, ';');
}

/* Write the header of a frame whose fields start at body, now that they are complete:
 * the fields were written after room for the longest header, and are moved up to it. */
#define HDR_ROOM 32

static int
frame_begin(struct buf *b, size_t *body)
{
	if (buf_reserve(b, HDR_ROOM) != RC_OK)
		return RC_NOMEM;
	buf_setlen(b, b->len + HDR_ROOM);
	*body = b->len;
	return RC_OK;
}

static int
frame_end(struct buf *b, const char *verb, size_t body)
{
	char hdr[HDR_ROOM];
	size_t n = b->len - body, start = body - HDR_ROOM;
	int h;

	if (b->failed || n > PUSH_POST_MAX)
		return RC_NOMEM;
	h = snprintf(hdr, sizeof(hdr), "%s %zu\n", verb, n);
	if (h <= 0 || h > HDR_ROOM)
		return RC_NOMEM;
	memmove(b->s + start + (size_t)h, b->s + body, n);
	memcpy(b->s + start, hdr, (size_t)h);
	buf_setlen(b, start + (size_t)h + n);
	return RC_OK;
}

int
push_post_encode(const struct store_post *in, struct buf *b)
{
	size_t body;

	if (frame_begin(b, &body) != RC_OK)
		return RC_NOMEM;
	put_str(b, in->conv_id);
	put_str(b, in->owner);
	put_int(b, in->create);
	put_str(b, in->conv_user);
	put_str(b, in->title);
	put_str(b, in->model_config);
	put_str(b, in->sender);
	put_str(b, in->role);
	put_str(b, in->content);
	put_str(b, in->metadata);
	put_int(b, in->run);
	put_str(b, in->run_config);
	return frame_end(b, "post", body);
}

static void
put_msg(struct buf *b, const struct msg *m)
{
	put_int(b, m->id);
	put_str(b, m->msg_id);
	put_str(b, m->conv_id);
	put_str(b, m->user_id);
	put_str(b, m->role);
	put_str(b, m->content);
	put_str(b, m->error);
	put_str(b, m->metadata);
	put_int(b, m->unfinished);
	put_int(b, m->visible);
	put_int(b, m->created_at);
	put_int(b, m->updated_at);
}

int
push_posted_encode(int result, const char *err, const struct store_post *in,
		   const struct store_posted *out, struct buf *b)
{
	const struct conv *c = &out->conv;
	size_t body;

	if (frame_begin(b, &body) != RC_OK)
		return RC_NOMEM;
	put_int(b, result);
	if (result != RC_OK) {
		put_str(b, err ? err : "");
		return frame_end(b, "posted", body);
	}
	put_int(b, c->seq);
	put_str(b, c->id);
	put_str(b, c->user_id);
	put_str(b, c->title);
	put_str(b, c->model_config);
	put_int(b, c->msg_count);
	put_int(b, c->created_at);
	put_int(b, c->updated_at);
	put_msg(b, &out->msg);
	if (in->run) {
		put_msg(b, &out->reply);
		put_int(b, out->run_id);
		put_str(b, out->record_id);
	}
	return frame_end(b, "posted", body);
}

/* ---- reading ---- */

struct rd {
	const char *p, *end;
	struct pool *pool;
	int bad;
};

static uint64_t
get_digits(struct rd *r, char stop)
{
	uint64_t v = 0;
	int n = 0;

	while (r->p < r->end && *r->p >= '0' && *r->p <= '9' && n < 19) {
		v = v * 10 + (uint64_t)(*r->p++ - '0');
		n++;
	}
	if (!n || r->p >= r->end || *r->p != stop)
		r->bad = 1;
	else
		r->p++;
	return v;
}

static char *
get_str(struct rd *r)
{
	uint64_t n;
	char *s;

	if (r->bad || r->p >= r->end) {
		r->bad = 1;
		return NULL;
	}
	if (*r->p == 'N') {
		r->p++;
		return NULL;
	}
	if (*r->p++ != 'S') {
		r->bad = 1;
		return NULL;
	}
	n = get_digits(r, ':');
	if (r->bad || n > (uint64_t)(r->end - r->p)) {
		r->bad = 1;
		return NULL;
	}
	s = pool_strndup(r->pool, r->p, (size_t)n);
	if (!s)
		r->bad = 1;
	r->p += n;
	return s;
}

static int64_t
get_int(struct rd *r)
{
	int neg = 0;
	uint64_t v;

	if (r->bad || r->p >= r->end || *r->p++ != 'I') {
		r->bad = 1;
		return 0;
	}
	if (r->p < r->end && *r->p == '-') {
		neg = 1;
		r->p++;
	}
	v = get_digits(r, ';');
	if (v > INT64_MAX)
		r->bad = 1;
	return neg ? -(int64_t)v : (int64_t)v;
}

int
push_post_decode(const char *data, size_t len, struct pool *p, struct store_post *in)
{
	struct rd r = {data, data + len, p, 0};
	int64_t v;

	memset(in, 0, sizeof(*in));
	in->conv_id = get_str(&r);
	in->owner = get_str(&r);
	in->create = get_int(&r) != 0;
	in->conv_user = get_str(&r);
	in->title = get_str(&r);
	in->model_config = get_str(&r);
	in->sender = get_str(&r);
	in->role = get_str(&r);
	in->content = get_str(&r);
	in->metadata = get_str(&r);
	v = get_int(&r);
	in->run = v == 2 ? 2 : v != 0; /* 2: a run of workflow's stream (store.h) */
	in->run_config = get_str(&r);
	/* sender, role and content are always set */
	if (r.bad || r.p != r.end || !in->sender || !in->role || !in->content)
		return RC_ERR;
	return RC_OK;
}

static void
get_msg(struct rd *r, struct msg *m)
{
	m->id = get_int(r);
	m->msg_id = get_str(r);
	m->conv_id = get_str(r);
	m->user_id = get_str(r);
	m->role = get_str(r);
	m->content = get_str(r);
	m->error = get_str(r);
	m->metadata = get_str(r);
	m->unfinished = get_int(r) != 0;
	m->visible = get_int(r) != 0;
	m->created_at = get_int(r);
	m->updated_at = get_int(r);
	if (!m->msg_id || !m->conv_id || !m->user_id || !m->role || !m->content)
		r->bad = 1;
}

int
push_posted_decode(const char *data, size_t len, struct pool *p, int run,
		   struct store_posted *out, char *err)
{
	struct rd r = {data, data + len, p, 0};
	struct conv *c = &out->conv;
	int64_t result;

	memset(out, 0, sizeof(*out));
	result = get_int(&r);
	if (!r.bad && result != RC_OK) {
		const char *e = get_str(&r);
		snprintf(err, ERR_LEN, "%s", e ? e : "");
		if (r.bad || r.p != r.end)
			goto bad;
		/* only the store's own results pass (RC_UNAVAIL: its database server is down,
		 * and the worker's own try then answers 503); anything else is the frame's
		 * fault */
		if (result == RC_NOTFOUND || result == RC_NOMEM || result == RC_CONFLICT ||
		    result == RC_DENIED || result == RC_ERR || result == RC_UNAVAIL)
			return (int)result;
		goto bad;
	}
	c->seq = get_int(&r);
	c->id = get_str(&r);
	c->user_id = get_str(&r);
	c->title = get_str(&r);
	c->model_config = get_str(&r);
	c->msg_count = get_int(&r);
	c->created_at = get_int(&r);
	c->updated_at = get_int(&r);
	if (!c->id || !c->user_id || !c->title)
		r.bad = 1;
	get_msg(&r, &out->msg);
	if (run) {
		get_msg(&r, &out->reply);
		out->run_id = get_int(&r);
		out->record_id = get_str(&r);
		if (!out->record_id)
			r.bad = 1;
	}
	if (!r.bad && r.p == r.end)
		return RC_OK;
bad:
	snprintf(err, ERR_LEN, "the push daemon's answer is malformed");
	return RC_ERR;
}

/* The length of the frame's fields from its header line (without the newline): RC_OK and
 * *n, or RC_ERR when the header is not "<verb> <n>" with n within PUSH_POST_MAX. */
int
push_frame_len(const char *line, size_t len, const char *verb, size_t *n)
{
	size_t v = strlen(verb), i;
	uint64_t x = 0;

	if (len <= v + 1 || memcmp(line, verb, v) != 0 || line[v] != ' ' || len - v - 1 > 8)
		return RC_ERR;
	for (i = v + 1; i < len; i++) {
		if (line[i] < '0' || line[i] > '9')
			return RC_ERR;
		x = x * 10 + (uint64_t)(line[i] - '0');
	}
	if (x > PUSH_POST_MAX)
		return RC_ERR;
	*n = (size_t)x;
	return RC_OK;
}
