/* the post command's frames between the workers and the push daemon (push-post.c) */
#include <stdlib.h>
#include <stdint.h>

#include "unit.h"
#include "rc.h"
#include "buf.h"
#include "pool.h"
#include "push-proto.h"
#include "store.h"

/* The fields of a frame in b: its header checked, *len set. */
static const char *
fields(const struct buf *b, const char *verb, size_t *len)
{
	const char *nl = memchr(b->s, '\n', b->len);

	if (!nl || push_frame_len(b->s, (size_t)(nl - b->s), verb, len) != RC_OK ||
	    *len != b->len - (size_t)(nl + 1 - b->s))
		return NULL;
	return nl + 1;
}

static void
msg_fill(struct msg *m, int64_t id, const char *msg_id, const char *content)
{
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->msg_id = (char *)msg_id;
	m->conv_id = "c:1";
	m->user_id = "用户";
	m->role = "user";
	m->content = (char *)content;
	m->metadata = "{\"k\": [1, 2]}";
	m->unfinished = 1;
	m->visible = 1;
	m->created_at = 1700000000123;
	m->updated_at = -5;
}

void
t_push(void)
{
	struct pool *p = pool_create();
	struct store_post in, back;
	struct store_posted out, got;
	struct buf b;
	char err[ERR_LEN];
	const char *f;
	size_t len, i;
	int bad = 0;

	/* a post survives the trip, NULLs, newlines, colons and all */
	memset(&in, 0, sizeof(in));
	in.conv_id = "conv:42";
	in.owner = NULL;
	in.create = 1;
	in.conv_user = "alice";
	in.title = "a title\nwith S3:xx";
	in.sender = "alice";
	in.role = "user";
	in.content = "你好\n第二行 N I-1; S9:";
	in.metadata = NULL;
	in.run = 1;
	in.run_config = "workflow";
	buf_init(&b, 0);
	CHECK(push_post_encode(&in, &b) == RC_OK);
	CHECK((f = fields(&b, "post", &len)) != NULL);
	CHECK(f && push_post_decode(f, len, p, &back) == RC_OK);
	CHECK_STR(back.conv_id, "conv:42");
	CHECK(back.owner == NULL && back.create == 1 && back.run == 1);
	CHECK_STR(back.title, in.title);
	CHECK_STR(back.content, in.content);
	CHECK_STR(back.run_config, "workflow");
	CHECK(back.metadata == NULL && back.model_config == NULL);

	/* every cut of it is refused, and nothing reads past the end */
	for (i = 0; f && i < len; i++)
		bad += push_post_decode(f, i, p, &back) != RC_ERR;
	CHECK(bad == 0);
	CHECK(f && push_post_decode(f, len - 1, p, &back) == RC_ERR);

	/* the answer, with a run */
	memset(&out, 0, sizeof(out));
	out.conv.seq = 7;
	out.conv.id = "c:1";
	out.conv.user_id = "alice";
	out.conv.title = "t";
	out.conv.model_config = NULL;
	out.conv.msg_count = 3;
	out.conv.created_at = 1;
	out.conv.updated_at = INT64_MAX;
	msg_fill(&out.msg, 11, "msg_20260101000000_aaaaaaaa", in.content);
	msg_fill(&out.reply, 12, "msg_20260101000000_bbbbbbbb", "");
	out.run_id = 99;
	out.record_id = "record_x";
	buf_reset(&b);
	CHECK(push_posted_encode(RC_OK, NULL, &in, &out, &b) == RC_OK);
	CHECK((f = fields(&b, "posted", &len)) != NULL);
	CHECK(f && push_posted_decode(f, len, p, 1, &got, err) == RC_OK);
	CHECK(got.conv.seq == 7 && got.conv.msg_count == 3 && got.conv.updated_at == INT64_MAX);
	CHECK(got.conv.model_config == NULL);
	CHECK_STR(got.msg.content, in.content);
	CHECK_STR(got.msg.user_id, "用户");
	CHECK_STR(got.msg.metadata, "{\"k\": [1, 2]}");
	CHECK(got.msg.updated_at == -5 && got.msg.unfinished == 1 && got.msg.error == NULL);
	CHECK(got.reply.id == 12 && got.run_id == 99);
	CHECK_STR(got.record_id, "record_x");
	/* an answer without the run it should carry is malformed */
	in.run = 0;
	buf_reset(&b);
	CHECK(push_posted_encode(RC_OK, NULL, &in, &out, &b) == RC_OK);
	CHECK((f = fields(&b, "posted", &len)) != NULL);
	CHECK(f && push_posted_decode(f, len, p, 1, &got, err) == RC_ERR);
	CHECK(f && push_posted_decode(f, len, p, 0, &got, err) == RC_OK);

	/* a store failure comes back as itself */
	buf_reset(&b);
	CHECK(push_posted_encode(RC_NOTFOUND, "no such conversation", &in, &out, &b) == RC_OK);
	CHECK((f = fields(&b, "posted", &len)) != NULL);
	CHECK(f && push_posted_decode(f, len, p, 1, &got, err) == RC_NOTFOUND);
	CHECK_STR(err, "no such conversation");

	/* hostile frames: wrong tags, lengths past the end, numbers too long */
	CHECK(push_post_decode("X", 1, p, &back) == RC_ERR);
	CHECK(push_post_decode("S99999999999999999999:", 22, p, &back) == RC_ERR);
	CHECK(push_posted_decode("I0", 2, p, 0, &got, err) == RC_ERR);
	CHECK(push_posted_decode("I-99999999999999999999;", 23, p, 0, &got, err) == RC_ERR);
	/* a result the store never gives (RC_DENIED - 3) is the frame's fault; RC_UNAVAIL
	 * (a database server that is down) passes with its text */
	CHECK(push_posted_decode("I-9;S1:x", 8, p, 0, &got, err) == RC_ERR);
	CHECK(push_posted_decode("I-6;S1:x", 8, p, 0, &got, err) == RC_UNAVAIL);
	CHECK_STR(err, "x");
	CHECK(push_frame_len("post 12", 7, "post", &len) == RC_OK && len == 12);
	CHECK(push_frame_len("post ", 5, "post", &len) == RC_ERR);
	CHECK(push_frame_len("post 1x", 7, "post", &len) == RC_ERR);
	CHECK(push_frame_len("posted 1", 8, "post", &len) == RC_ERR);
	CHECK(push_frame_len("post 999999999", 14, "post", &len) == RC_ERR);

	buf_free(&b);
	pool_destroy(p);
}
