/*
 * The provider calls on one libcurl multi handle driven by the libuv loop (the wiring of
 * curl's docs/examples/multi-uv.c), and the entry points of llm.h.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>

#include "rc.h"
#include "pool.h"
#include "jsonpool.h"
#include "util.h"
#include "llm-int.h"

static CURLM *multi;
static uv_loop_t *loop;
static uv_timer_t multi_timer;
static int active;

struct sock_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
};

static void check_multi_info(void);

static void
on_poll(uv_poll_t *h, int status, int events)
{
	struct sock_ctx *s = h->data;
	int running, flags = 0;

	/* on a poll error let curl read and write, so that it meets the socket's real error:
	 * a kept-alive connection the server just closed is then retried on a new one, where
	 * CURL_CSELECT_ERR would fail the transfer outright */
	if (status < 0)
		flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(multi, s->fd, flags, &running);
	check_multi_info();
}

static void
on_multi_timeout(uv_timer_t *t)
{
	int running;

	(void)t;
	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info();
}

static int
start_timeout(CURLM *m, long ms, void *u)
{
	(void)m;
	(void)u;
	if (ms < 0)
		uv_timer_stop(&multi_timer);
	else
		uv_timer_start(&multi_timer, on_multi_timeout, ms ? (uint64_t)ms : 1, 0);
	return 0;
}

static void
free_sock(uv_handle_t *h)
{
	free(h->data);
}

static int
handle_socket(CURL *e, curl_socket_t fd, int action, void *u, void *sockp)
{
	struct sock_ctx *s = sockp;
	int events = 0;

	(void)e;
	(void)u;
	switch (action) {
	case CURL_POLL_IN:
	case CURL_POLL_OUT:
	case CURL_POLL_INOUT:
		if (!s) {
			s = calloc(1, sizeof(*s));
			if (!s)
				return -1;
			s->fd = fd;
			uv_poll_init_socket(loop, &s->poll, fd);
			s->poll.data = s;
			curl_multi_assign(multi, fd, s);
		}
		if (action != CURL_POLL_OUT)
			events |= UV_READABLE;
		if (action != CURL_POLL_IN)
			events |= UV_WRITABLE;
		uv_poll_start(&s->poll, events, on_poll);
		break;
	case CURL_POLL_REMOVE:
		if (s) {
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, free_sock);
			curl_multi_assign(multi, fd, NULL);
		}
		break;
	}
	return 0;
}

static void
http_release(struct llm_call *c)
{
	if (c->easy) {
		curl_multi_remove_handle(multi, c->easy);
		curl_easy_cleanup(c->easy);
		c->easy = NULL;
		active--;
	}
	curl_slist_free_all(c->headers);
	c->headers = NULL;
	free(c->body);
	c->body = NULL;
	buf_free(&c->line);
	buf_free(&c->whole);
	free(c->travel_plan);
	c->travel_plan = NULL;
}

static void
release(struct llm_call *c)
{
	http_release(c);
	if (c->reply)
		llm_builtin_release(c);
	else
		free(c);
}

/* Replace every occurrence of needle (any case) in the string s, which has size bytes of
 * room, by with; what no longer fits is cut off, never left with a needle in it. */
static void
redact(char *s, size_t size, const char *needle, const char *with)
{
	char tmp[4096];
	size_t nl = needle ? strlen(needle) : 0, wl = strlen(with), o = 0, rest;
	const char *p = s, *hit;

	if (nl < 3 || size > sizeof(tmp) || !strcasestr(s, needle))
		return;
	while ((hit = strcasestr(p, needle))) {
		size_t pre = (size_t)(hit - p);
		if (o + pre + wl >= size) {
			p = NULL;
			break;
		}
		memcpy(tmp + o, p, pre);
		memcpy(tmp + o + pre, with, wl);
		o += pre + wl;
		p = hit + nl;
	}
	if (p) {
		rest = strlen(p);
		if (o + rest >= size)
			rest = size - 1 - o;
		memcpy(tmp + o, p, rest);
		o += rest;
	}
	tmp[o] = '\0';
	memcpy(s, tmp, o + 1);
	utf8_cut(s, size - 1);
}

/* The parts of the URL the call went to (each curl_free()d by the caller), or all NULL. */
struct url_parts {
	char *scheme, *host, *port, *path, *password;
};

static void
url_parts(struct llm_call *c, struct url_parts *p)
{
	char *url = NULL;
	CURLU *u;

	memset(p, 0, sizeof(*p));
	if (!c->easy)
		return;
	curl_easy_getinfo(c->easy, CURLINFO_EFFECTIVE_URL, &url);
	if (!url || !(u = curl_url()))
		return;
	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
		curl_url_get(u, CURLUPART_SCHEME, &p->scheme, 0);
		curl_url_get(u, CURLUPART_HOST, &p->host, 0);
		curl_url_get(u, CURLUPART_PORT, &p->port, CURLU_DEFAULT_PORT);
		curl_url_get(u, CURLUPART_PATH, &p->path, 0);
		curl_url_get(u, CURLUPART_PASSWORD, &p->password, 0);
	}
	curl_url_cleanup(u);
}

static void
url_parts_free(struct url_parts *p)
{
	curl_free(p->scheme);
	curl_free(p->host);
	curl_free(p->port);
	curl_free(p->path);
	curl_free(p->password);
}

/* Clear s of where the upstream is: its URL, host (and host:port), address, and a last
 * path segment long enough to be a secret (an n8n webhook's id). */
static void
redact_upstream(struct llm_call *c, char *s, size_t size)
{
	char *url = NULL, *ip = NULL, hp[512];
	struct url_parts u;

	if (!c->easy)
		return;
	curl_easy_getinfo(c->easy, CURLINFO_EFFECTIVE_URL, &url);
	curl_easy_getinfo(c->easy, CURLINFO_PRIMARY_IP, &ip);
	redact(s, size, url, "[upstream]");
	url_parts(c, &u);
	if (u.host && u.port) {
		snprintf(hp, sizeof(hp), "%s:%s", u.host, u.port);
		redact(s, size, hp, "[upstream]");
	}
	if (u.host) {
		redact(s, size, u.host, "[upstream]");
		if (u.host[0] == '[' && strlen(u.host) > 2 && strlen(u.host) < sizeof(hp)) {
			snprintf(hp, sizeof(hp), "%.*s", (int)strlen(u.host) - 2, u.host + 1);
			redact(s, size, hp, "[upstream]");
		}
	}
	if (ip)
		redact(s, size, ip, "[upstream]");
	if (u.path) {
		const char *seg = strrchr(u.path, '/');
		seg = seg ? seg + 1 : u.path;
		if (strlen(seg) >= 16)
			redact(s, size, seg, "[upstream]");
	}
	url_parts_free(&u);
}

/* Where the call went, for the log: scheme://host:port/path, without a user, password or
 * query (which may hold credentials). */
static void
upstream_where(struct llm_call *c, char *out, size_t size)
{
	struct url_parts u;

	url_parts(c, &u);
	snprintf(out, size, "%s://%s:%s%s", u.scheme ? u.scheme : "?", u.host ? u.host : "?",
		 u.port ? u.port : "?", u.path ? u.path : "");
	utf8_cut(out, size - 1);
	url_parts_free(&u);
}

/* text as a message: well-formed UTF-8 in out (size bytes), never with the key in it, and
 * for clients (shown) never with where the upstream is. */
static void
clean_text(struct llm_call *c, char *out, size_t size, const char *text, int shown)
{
	char tmp[4096];

	struct url_parts u;

	utf8_mend(tmp, sizeof(tmp), text, strlen(text));
	if (c->cfg && c->cfg->openai_api_key)
		redact(tmp, sizeof(tmp), c->cfg->openai_api_key, "***");
	url_parts(c, &u);
	redact(tmp, sizeof(tmp), u.password, "***"); /* a password in the URL */
	url_parts_free(&u);
	if (shown)
		redact_upstream(c, tmp, sizeof(tmp));
	utf8_cut(tmp, size - 1);
	memcpy(out, tmp, strlen(tmp) + 1);
}

void
llm_finish(struct llm_call *c, int code, const char *error, const char *detail)
{
	char shown[LLM_ERROR_MAX + 1], logged[LLM_DETAIL_MAX + 1];

	if (c->ended)
		return;
	c->ended = 1;
	if (code) {
		clean_text(c, shown, sizeof(shown), error ? error : "AI 服务调用失败", 1);
		clean_text(c, logged, sizeof(logged), detail ? detail : shown, 0);
		c->cb->done(c->ctx, code, shown, NULL, logged);
	} else {
		c->cb->done(c->ctx, 0, NULL, c->travel_plan, NULL);
	}
	release(c);
}

void
llm_failf(struct llm_call *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->fail, sizeof(c->fail), fmt, ap);
	va_end(ap);
	utf8_cut(c->fail, sizeof(c->fail) - 1);
}

int
llm_emit(struct llm_call *c, const char *s, size_t n)
{
	if (!n)
		return 0;
	if (c->reply_len + n > LLM_REPLY_MAX) {
		llm_failf(c, "AI 服务调用失败: reply longer than %u bytes", LLM_REPLY_MAX);
		return -1;
	}
	c->reply_len += n;
	c->cb->chunk(c->ctx, s, n);
	return 0;
}

/* One line to the provider. The JSON values a line makes live no longer than its
 * handling: they come from a scratch pool (see jsonpool.h), freed in one go after it,
 * which takes the allocator off a path that runs for every piece of every reply. */
static void
line_call(struct llm_call *c)
{
	static struct pool *scratch;

	if (!scratch)
		scratch = pool_create();
	json_pool_use(scratch);
	c->on_line(c, c->line.s, c->line.len);
	json_pool_use(NULL);
	if (scratch)
		pool_reset(scratch);
	buf_reset(&c->line);
}

/* Feed received bytes to the provider line by line ("\n", an optional "\r" dropped). */
static int
feed_lines(struct llm_call *c, const char *p, size_t n)
{
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;

		if (buf_add(&c->line, p, take) != RC_OK) {
			llm_failf(c, "AI 服务调用失败: upstream line longer than %u bytes",
				  LLM_LINE_MAX);
			return -1;
		}
		if (!nl)
			break;
		if (c->line.len && c->line.s[c->line.len - 1] == '\r')
			c->line.s[--c->line.len] = '\0';
		line_call(c);
		if (c->fail[0])
			return -1;
		p = nl + 1;
		n -= take + 1;
	}
	return 0;
}

static size_t
on_write(char *p, size_t size, size_t nmemb, void *u)
{
	struct llm_call *c = u;
	size_t n = size * nmemb;
	char *ct = NULL;

	if (c->ended)
		return 0;
	if (!c->http_status) {
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->http_status);
		curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ct);
		/* anything but a single JSON document is read as a stream of lines */
		c->stream = !ct || strncmp(ct, "application/json", 16) != 0;
		if (!ct)
			ct = "application/octet-stream";
		utf8_mend(c->ctype, sizeof(c->ctype), ct, strlen(ct));
	}
	if (c->http_status < 400 && c->cb->raw)
		c->cb->raw(c->ctx, c->ctype, p, n);
	if (c->http_status >= 400 || !c->stream) {
		/* kept whole: an error body for the message, or one JSON reply */
		if (buf_add(&c->whole, p, n) != RC_OK && c->http_status < 400) {
			llm_failf(c, "AI 服务调用失败: reply longer than %u bytes", LLM_REPLY_MAX);
			return 0;
		}
		return n;
	}
	return feed_lines(c, p, n) == 0 ? n : 0;
}

/* The upstream's message in an error body: OpenAI's error.message (or a string error,
 * message, detail), else the body itself; mended into out. */
static void
body_message(struct llm_call *c, char *out, size_t size)
{
	json_t *j = json_loadb(c->whole.s, c->whole.len, 0, NULL), *e;
	const char *m = NULL;

	if (json_is_object(j)) {
		e = json_object_get(j, "error");
		m = json_string_value(json_object_get(e, "message"));
		if (!m)
			m = json_string_value(e);
		if (!m)
			m = json_string_value(json_object_get(j, "message"));
		if (!m)
			m = json_string_value(json_object_get(j, "detail"));
	}
	if (m)
		utf8_mend(out, size, m, strlen(m));
	else
		utf8_mend(out, size, c->whole.s ? c->whole.s : "", c->whole.len);
	json_decref(j);
}

/* A transfer that ended: the failure it met, told twice (see llm_cb.done): for clients,
 * with curl's own words for the kind of failure (they never name the host), and for the
 * operation log, with curl's message (which does). */
static void
transfer_done(struct llm_call *c, CURLcode rc)
{
	char shown[1024], detail[2048], said[LLM_ERRBODY_MAX + 1], body[LLM_DETAIL_MAX];
	char where[300];
	curl_off_t connected = 0;

	if (c->fail[0]) {
		llm_finish(c, LLM_E_FAILED, c->fail, NULL);
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connected);
		if (connected > 0)
			snprintf(shown, sizeof(shown), "AI 回复超时: no complete reply within %d s",
				 c->cfg->reply_timeout_s);
		else
			snprintf(shown, sizeof(shown),
				 "AI 回复超时: no connection to the AI service within %d s",
				 c->cfg->connect_timeout_s);
		snprintf(detail, sizeof(detail), "AI 回复超时: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		llm_finish(c, LLM_E_TIMEOUT, shown, detail);
	} else if (rc != CURLE_OK) {
		snprintf(shown, sizeof(shown), "AI 服务调用失败: %s", curl_easy_strerror(rc));
		snprintf(detail, sizeof(detail), "AI 服务调用失败: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		llm_finish(c, LLM_E_FAILED, shown, detail);
	} else if (c->http_status >= 400) {
		body_message(c, said, sizeof(said));
		snprintf(shown, sizeof(shown), "AI 服务调用失败: upstream HTTP %ld: %s",
			 c->http_status, said);
		upstream_where(c, where, sizeof(where));
		utf8_mend(body, sizeof(body), c->whole.s ? c->whole.s : "", c->whole.len);
		snprintf(detail, sizeof(detail), "AI 服务调用失败: upstream HTTP %ld from %s: %s",
			 c->http_status, where, body);
		llm_finish(c, LLM_E_FAILED, shown, detail);
	} else {
		/* a last line without its newline */
		if (c->stream && c->line.len)
			line_call(c);
		c->on_end(c);
		if (!c->ended)
			llm_finish(c, c->fail[0] ? LLM_E_FAILED : 0, c->fail[0] ? c->fail : NULL, NULL);
	}
}

static void
check_multi_info(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(multi, &left))) {
		struct llm_call *c;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		if (!c->http_status)
			curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->http_status);
		transfer_done(c, m->data.result);
	}
}

int
llm_http_start(struct llm_call *c, const char *url, char *err)
{
	CURL *e = curl_easy_init();

	if (!e) {
		snprintf(err, ERR_LEN, "curl_easy_init failed");
		return RC_ERR;
	}
	c->easy = e;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(c->body));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)c->cfg->connect_timeout_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)c->cfg->reply_timeout_s);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "aichatd/" PACKAGE_VERSION);
	if (curl_multi_add_handle(multi, e) != CURLM_OK) {
		snprintf(err, ERR_LEN, "curl_multi_add_handle failed");
		c->easy = NULL;
		curl_easy_cleanup(e);
		return RC_ERR;
	}
	active++;
	return RC_OK;
}

const char *
llm_sse_data(const char *line)
{
	if (strncmp(line, "data:", 5) != 0)
		return NULL;
	line += 5;
	if (*line == ' ')
		line++;
	return line;
}

int
llm_wants_history(const char *provider)
{
	return strcmp(provider, "openai") == 0;
}

struct llm_call *
llm_start(uv_loop_t *l, const struct config *cfg, const struct run_job *job,
	  const struct llm_cb *cb, void *ctx, char *err)
{
	struct llm_call *c = calloc(1, sizeof(*c));
	int rc;

	if (!c) {
		snprintf(err, ERR_LEN, "out of memory");
		return NULL;
	}
	c->cb = cb;
	c->ctx = ctx;
	c->cfg = cfg;
	c->job = job;
	buf_init(&c->line, LLM_LINE_MAX);
	buf_init(&c->whole, LLM_REPLY_MAX);
	if (strcmp(job->cfg.provider, "openai") == 0)
		rc = llm_openai_start(c, err);
	else if (strcmp(job->cfg.provider, "n8n") == 0)
		rc = llm_n8n_start(c, err);
	else
		rc = llm_builtin_start(c, l, err);
	if (rc != RC_OK) {
		c->ended = 1;
		release(c);
		return NULL;
	}
	return c;
}

void
llm_cancel(struct llm_call *c)
{
	if (!c || c->ended)
		return;
	c->ended = 1;
	release(c);
}

int
llm_init(uv_loop_t *l, char *err)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, ERR_LEN, "curl_global_init failed");
		return RC_ERR;
	}
	loop = l;
	multi = curl_multi_init();
	if (!multi) {
		snprintf(err, ERR_LEN, "curl_multi_init failed");
		return RC_ERR;
	}
	uv_timer_init(loop, &multi_timer);
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, handle_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, start_timeout);
	return RC_OK;
}

void
llm_shutdown(void)
{
	if (!multi)
		return;
	uv_timer_stop(&multi_timer);
	uv_close((uv_handle_t *)&multi_timer, NULL);
	curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
}

int
llm_active(void)
{
	return active;
}
