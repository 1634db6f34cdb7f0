/*
 * llm-curl: the HTTP providers' calls on one libcurl multi handle driven by the libuv loop
 * (see llm-curl.h).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "rc.h"
#include "util.h"
#include "llm-curl.h"

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

void
llm_http_release(struct llm_call *call)
{
	struct llm_http_call *c = (struct llm_http_call *)call;

	if (c->easy) {
		curl_multi_remove_handle(multi, c->easy);
		curl_easy_cleanup(c->easy);
		active--;
	}
	curl_slist_free_all(c->headers);
	free(c->body);
	buf_free(&c->whole);
	upstream_free(&c->up);
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
url_parts(struct llm_http_call *c, struct url_parts *p)
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
redact_upstream(struct llm_http_call *c, char *s, size_t size)
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
upstream_where(struct llm_http_call *c, char *out, size_t size)
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
clean_text(struct llm_http_call *c, char *out, size_t size, const char *text, int shown)
{
	const struct config *cfg = c->call.cfg;
	char tmp[4096];
	struct url_parts u;

	utf8_mend(tmp, sizeof(tmp), text, strlen(text));
	if (cfg && cfg->openai_api_key)
		redact(tmp, sizeof(tmp), cfg->openai_api_key, "***");
	url_parts(c, &u);
	redact(tmp, sizeof(tmp), u.password, "***"); /* a password in the URL */
	url_parts_free(&u);
	if (shown)
		redact_upstream(c, tmp, sizeof(tmp));
	utf8_cut(tmp, size - 1);
	memcpy(out, tmp, strlen(tmp) + 1);
}

/* End the call: on a failure, error (NULL: a generic one) is cut, mended and cleared of the
 * upstream's host, port and key for clients; detail (NULL: the same as error) only cut,
 * mended and cleared of the key, for the log. */
static void
http_finish(struct llm_http_call *c, int code, const char *error, const char *detail)
{
	char shown[LLM_ERROR_MAX + 1], logged[LLM_DETAIL_MAX + 1];

	if (c->call.ended)
		return;
	if (code) {
		clean_text(c, shown, sizeof(shown), error ? error : "AI 服务调用失败", 1);
		clean_text(c, logged, sizeof(logged), detail ? detail : shown, 0);
		llm_finish(&c->call, code, shown, NULL, logged);
	} else {
		llm_finish(&c->call, 0, NULL, c->up.travel_plan, NULL);
	}
}

static size_t
on_write(char *p, size_t size, size_t nmemb, void *u)
{
	struct llm_http_call *c = u;
	size_t n = size * nmemb;
	char *ct = NULL;

	if (c->call.ended)
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
	if (c->http_status < 400 && c->call.cb->raw)
		c->call.cb->raw(c->call.ctx, c->ctype, p, n);
	if (c->http_status >= 400 || !c->stream) {
		/* kept whole: an error body for the message, or one JSON reply */
		if (buf_add(&c->whole, p, n) != RC_OK && c->http_status < 400) {
			upstream_failf(&c->up, "AI 服务调用失败: reply longer than %u bytes",
				       LLM_REPLY_MAX);
			return 0;
		}
		return n;
	}
	return upstream_feed(&c->up, p, n) == RC_OK ? n : 0;
}

/* A transfer that ended: the failure it met, told twice (see llm_cb.done): for clients,
 * with curl's own words for the kind of failure (they never name the host), and for the
 * operation log, with curl's message (which does). */
static void
transfer_done(struct llm_http_call *c, CURLcode rc)
{
	char shown[1024], detail[2048], said[LLM_ERRBODY_MAX + 1], body[LLM_DETAIL_MAX];
	char where[300];
	curl_off_t connected = 0;

	if (c->up.fail[0]) {
		http_finish(c, RUN_ERR_AI, c->up.fail, NULL);
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		curl_easy_getinfo(c->easy, CURLINFO_CONNECT_TIME_T, &connected);
		if (connected > 0)
			snprintf(shown, sizeof(shown), "AI 回复超时: no complete reply within %d s",
				 c->call.cfg->reply_timeout_s);
		else
			snprintf(shown, sizeof(shown),
				 "AI 回复超时: no connection to the AI service within %d s",
				 c->call.cfg->connect_timeout_s);
		snprintf(detail, sizeof(detail), "AI 回复超时: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		http_finish(c, RUN_ERR_TIMEOUT, shown, detail);
	} else if (rc != CURLE_OK) {
		snprintf(shown, sizeof(shown), "AI 服务调用失败: %s", curl_easy_strerror(rc));
		snprintf(detail, sizeof(detail), "AI 服务调用失败: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
		http_finish(c, RUN_ERR_AI, shown, detail);
	} else if (c->http_status >= 400) {
		upstream_error_message(c->whole.s, c->whole.len, said, sizeof(said));
		snprintf(shown, sizeof(shown), "AI 服务调用失败: upstream HTTP %ld: %s",
			 c->http_status, said);
		upstream_where(c, where, sizeof(where));
		utf8_mend(body, sizeof(body), c->whole.s ? c->whole.s : "", c->whole.len);
		snprintf(detail, sizeof(detail), "AI 服务调用失败: upstream HTTP %ld from %s: %s",
			 c->http_status, where, body);
		http_finish(c, RUN_ERR_AI, shown, detail);
	} else {
		if (c->stream)
			upstream_end(&c->up);
		else
			upstream_document(&c->up, c->whole.s, c->whole.len);
		http_finish(c, c->up.fail[0] ? RUN_ERR_AI : 0, c->up.fail[0] ? c->up.fail : NULL,
			    NULL);
	}
}

static void
check_multi_info(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(multi, &left))) {
		struct llm_http_call *c;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		if (!c->http_status)
			curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->http_status);
		transfer_done(c, m->data.result);
	}
}

int
llm_http_start(struct llm_call *call, const char *url, const struct upstream_syntax *syntax,
	       char *err)
{
	struct llm_http_call *c = (struct llm_http_call *)call;
	CURL *e;

	upstream_init(&c->up, syntax, LLM_REPLY_MAX, call->cb->chunk, call->ctx);
	buf_init(&c->whole, LLM_REPLY_MAX);
	if (!(e = curl_easy_init())) {
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
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)call->cfg->connect_timeout_s);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)call->cfg->reply_timeout_s);
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

static int
http_init(uv_loop_t *l, char *err)
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

static void
http_shutdown(void)
{
	if (!multi)
		return;
	uv_timer_stop(&multi_timer);
	uv_close((uv_handle_t *)&multi_timer, NULL);
	curl_multi_cleanup(multi);
	multi = NULL;
	curl_global_cleanup();
}

static int
http_active(void)
{
	return active;
}

const struct llm_transport llm_http = {
	http_init,     /* init */
	http_shutdown, /* shutdown */
	http_active,   /* active */
};
