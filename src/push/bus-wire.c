/*
 * The live bus's frames and stream entries (see bus-int.h): made, checked, joined.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "util.h"
#include "jsonpool.h"
#include "store.h"
#include "bus-int.h"

int
bus_id_ok(const char *s, int empty_ok)
{
	size_t n;

	if (!s)
		return 0;
	n = strlen(s);
	return (empty_ok || n) && n <= BUS_ID_MAX && utf8_valid(s, n);
}

char *
bus_frame_text(const char *node, const char *kind, json_t *j)
{
	char *s;

	if (!j)
		return NULL;
	if (json_object_set_new(j, "v", json_integer(1)) ||
	    json_object_set_new(j, "n", json_string(node)) ||
	    json_object_set_new(j, "k", json_string(kind))) {
		json_decref(j);
		return NULL;
	}
	s = json_pool_text(j, JSON_COMPACT);
	json_decref(j);
	return s;
}

/* j[key] as an id (1 to BUS_ID_MAX bytes, no NUL; "" too with empty_ok), or NULL */
static const char *
j_id(json_t *j, const char *key, int empty_ok)
{
	json_t *v = json_object_get(j, key);
	size_t n;

	if (!json_is_string(v))
		return NULL;
	n = json_string_length(v);
	if ((!n && !empty_ok) || n > BUS_ID_MAX || strlen(json_string_value(v)) != n)
		return NULL;
	return json_string_value(v);
}

/* j[key] as an integer from lo to hi into *out: 0, or -1 */
static int
j_int(json_t *j, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
	json_t *v = json_object_get(j, key);

	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return -1;
	*out = json_integer_value(v);
	return 0;
}

/* a piece's or an end's fields into f->e: 0, or -1 */
static int
frame_reply(json_t *j, struct bus_frame *f)
{
	struct bus_reply_event *e = &f->e;
	int64_t run, off, st;
	json_t *d;

	if (!(e->msg_id = j_id(j, "m", 0)) || !(e->conv_id = j_id(j, "c", 0)) ||
	    !(e->user_msg_id = j_id(j, "u", 1)) || j_int(j, "r", 0, INT64_MAX, &run) ||
	    j_int(j, "o", 0, BUS_REPLY_MAX, &off))
		return -1;
	e->run_id = run;
	e->offset = (size_t)off;
	if (f->kind == BK_PIECE) {
		d = json_object_get(j, "d");
		if (!json_is_string(d) || json_string_length(d) > e->offset)
			return -1;
		e->s = json_string_value(d);
		e->n = json_string_length(d);
		return 0;
	}
	if (j_int(j, "s", RUN_DONE, RUN_STOPPED, &st))
		return -1;
	e->status = (int)st;
	if ((d = json_object_get(j, "x"))) {
		if (!json_is_string(d) || json_string_length(d) > BUS_ERROR_MAX ||
		    strlen(json_string_value(d)) != json_string_length(d))
			return -1;
		e->s = json_string_value(d);
		e->n = json_string_length(d);
	}
	return 0;
}

/* a conversation event: c, and j the text of a JSON object */
static int
frame_conv(json_t *j, struct bus_frame *f)
{
	json_t *v = json_object_get(j, "j"), *ev;
	json_error_t jerr;
	int ok;

	if (!(f->conv_id = j_id(j, "c", 0)) || !json_is_string(v) ||
	    json_string_length(v) > BUS_CONV_EVENT_MAX)
		return -1;
	f->json = json_string_value(v);
	f->json_len = json_string_length(v);
	if (!(ev = json_loadb(f->json, f->json_len, JSON_REJECT_DUPLICATES, &jerr)))
		return -1;
	ok = json_is_object(ev);
	json_decref(ev);
	return ok ? 0 : -1;
}

int
bus_frame_parse(const char *s, size_t n, struct bus_frame *f)
{
	static const char *const kinds[] = {"piece", "end", "stop", "conv", "ping"};
	json_error_t jerr;
	const char *kind;
	int64_t v;
	size_t i;
	int rc = -1;

	memset(f, 0, sizeof(*f));
	if (n > BUS_FRAME_MAX ||
	    !(f->j = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr)))
		return -1;
	if (!json_is_object(f->j) || j_int(f->j, "v", 1, 1, &v) ||
	    !(f->node = j_id(f->j, "n", 0)) || !(kind = j_id(f->j, "k", 0)))
		goto out;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && strcmp(kind, kinds[i]); i++)
		;
	if (i == sizeof(kinds) / sizeof(kinds[0]))
		goto out;
	f->kind = (enum bus_kind)i;
	f->e.node = f->node;
	switch (f->kind) {
	case BK_PIECE:
	case BK_END:
		rc = frame_reply(f->j, f);
		break;
	case BK_STOP:
		rc = j_int(f->j, "r", 1, INT64_MAX, &v);
		f->e.run_id = v;
		break;
	case BK_CONV:
		rc = frame_conv(f->j, f);
		break;
	case BK_PING:
		rc = 0;
		break;
	}
out:
	if (rc)
		bus_frame_free(f);
	return rc;
}

void
bus_frame_free(struct bus_frame *f)
{
	json_decref(f->j);
	f->j = NULL;
}

/* ---- a reply's stream ---- */

void
bus_join_init(struct bus_join *j)
{
	memset(j, 0, sizeof(*j));
	buf_init(&j->content, BUS_REPLY_MAX);
}

void
bus_join_free(struct bus_join *j)
{
	buf_free(&j->content);
	free(j->error);
	j->error = NULL;
}

static int
is_str(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_STRING && r->str;
}

/* v (a field's value) as a number from 0 to max: 0, or -1 */
static int
field_num(const redisReply *v, int64_t max, int64_t *out)
{
	char num[24];

	if (!is_str(v) || !v->len || v->len >= sizeof(num))
		return -1;
	memcpy(num, v->str, v->len);
	num[v->len] = '\0';
	return parse_uint0(num, max, out) == RC_OK ? 0 : -1;
}

static int
join_end(struct bus_join *j, int64_t off, const redisReply *st, const redisReply *x)
{
	int64_t status;

	if (field_num(st, RUN_STOPPED, &status) || status < RUN_DONE ||
	    (x && (!is_str(x) || x->len > BUS_ERROR_MAX || memchr(x->str, 0, x->len))))
		return -1;
	j->ended = 1;
	j->status = (int)status;
	j->end_len = (size_t)off;
	free(j->error);
	j->error = x && x->len ? strndup(x->str, x->len) : NULL;
	return 0;
}

int
bus_join_entry(struct bus_join *j, const redisReply *e)
{
	const redisReply *f, *o = NULL, *d = NULL, *st = NULL, *x = NULL;
	int64_t off;
	size_t i, start, have = j->content.len;

	j->any = 1;
	if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !is_str(e->element[0]) ||
	    e->element[0]->len >= sizeof(j->last_id) || !e->element[0]->len) {
		j->last_id[0] = '\0'; /* no id to go on from */
		return -1;
	}
	memcpy(j->last_id, e->element[0]->str, e->element[0]->len);
	j->last_id[e->element[0]->len] = '\0';
	f = e->element[1];
	if (!f || f->type != REDIS_REPLY_ARRAY || f->elements % 2 || f->elements > 16)
		return -1;
	for (i = 0; i < f->elements; i += 2) {
		const redisReply *k = f->element[i];

		if (!is_str(k) || k->len != 1 || !is_str(f->element[i + 1]))
			return -1;
		if (k->str[0] == 'o')
			o = f->element[i + 1];
		else if (k->str[0] == 'd')
			d = f->element[i + 1];
		else if (k->str[0] == 'e')
			st = f->element[i + 1];
		else if (k->str[0] == 'x')
			x = f->element[i + 1];
	}
	if (field_num(o, BUS_REPLY_MAX, &off))
		return -1;
	if (st)
		return d ? -1 : join_end(j, off, st, x);
	if (!d || d->len > (size_t)off)
		return -1;
	start = (size_t)off - d->len;
	if (start == 0 && have) {
		/* begun again from the start (another host made the run again) */
		j->restarted = 1;
		j->gap = 0;
		j->ended = 0;
		buf_reset(&j->content);
		have = 0;
	}
	if (j->gap || (size_t)off <= have)
		return 0; /* after a gap, or joined already */
	if (start > have) {
		j->gap = 1;
		return 0;
	}
	if (buf_add(&j->content, d->str + (have - start), (size_t)off - have) != RC_OK)
		return RC_NOMEM;
	return 0;
}
