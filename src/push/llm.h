/*
 * llm: the AI providers, driven by the push daemon's event loop (libuv). Each call streams
 * its reply through chunk() and ends with exactly one done(), unless llm_cancel() came
 * first, after which neither is called again.
 *
 * The providers are a table (llm.c), one row a provider, one file a row, in the manner of
 * curl's Curl_handler:
 *   builtin  offline and deterministic: the reply is made from the message and streamed
 *            in pieces with builtin_delay_ms between them (llm-builtin.c)
 *   openai   any OpenAI-compatible /chat/completions endpoint, stream: true (llm-openai.c)
 *   n8n      a webhook: JSON reply (output, reply or text) or a streamed one (llm-n8n.c)
 * openai and n8n are HTTP calls on the curl transport (llm-curl.h: one libcurl multi
 * handle on the loop), which reads their answers with the parsers of src/lib/upstream.h.
 * The files call downwards only: llm.c (the table) -> the providers -> llm-curl.c ->
 * src/lib; builtin needs neither curl nor the transport.
 *
 * Adding a provider takes these steps:
 *
 *  1. Its name: a value in enum provider and its name in src/lib/provider.c. The workers
 *     then accept it as a model config's provider (api-v1.c) and as the setting
 *     `provider` (config.c), and seed a model config for it (src/fcgi/main.c, prepare_store:
 *     add its row there, with its model name and default parameters).
 *  2. Its file, src/push/llm-<name>.c, with its start (and release) and one
 *     `const struct llm_provider llm_<name> = {...}` with every slot commented, as the
 *     three here are; its source in Makefile.am beside theirs. An HTTP provider fills a
 *     struct llm_http_call's body and headers and calls llm_http_start() with the parser
 *     of its upstream's answers: one of src/lib/upstream.h's, or a new
 *     src/lib/upstream-<name>.c beside them when it speaks a syntax of its own.
 *  3. Its row in the table, providers[] in llm.c, at its enum's index. llm_init() refuses
 *     to start the daemon when a row is missing or out of place.
 *  4. Its settings, if it has any (a URL, a key, a model): struct config and its keys in
 *     src/lib/config.c (each AICHATD_<KEY> in the environment comes with it), their lines
 *     in conf/aichatd.conf, and their rows in the README's table of settings.
 *  5. Its tests: the pure parser's cases in tests/unit/t-upstream.c (lines cut across
 *     reads, CRLF, the end marker, bad JSON, oversized lines, bad UTF-8), and its upstream
 *     in tests/fake/fake_upstream.py (a path and its cases: what the upstream sends, what
 *     the run must store or the error it must show) with a stack for it in
 *     tests/integration/test_ai.py, which runs every dialect against every provider.
 *  6. The docs: its name in docs/API.md's list of a model config's providers, and a line
 *     on how it answers under workflow's stream (docs/API.md, docs/ROUTES.md).
 */
#ifndef AICHATD_LLM_H
#define AICHATD_LLM_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "store.h"
#include "provider.h"

#define LLM_REPLY_MAX (1u << 20) /* a reply longer than this fails the run */
#define LLM_ERROR_MAX 400  /* bytes of a failure's message as clients see it (whole characters) */
#define LLM_DETAIL_MAX 1000 /* bytes of its detail, for the operation log */

struct llm_cb {
	/* a piece of the reply, UTF-8 (a piece may end inside a character) */
	void (*chunk)(void *ctx, const char *s, size_t n);
	/* the upstream's bytes as they arrive, with its content type, before any parsing
	 * (the builtin provider makes them: a text/event-stream of `data: {"content":...}`
	 * events, one a piece, and `data: [DONE]`): for workflow's stream */
	void (*raw)(void *ctx, const char *ctype, const char *s, size_t n);
	/* the end: code 0 on success, else RUN_ERR_AI or RUN_ERR_TIMEOUT with a message;
	 * travel_plan is a JSON object's text when the workflow sent one (else NULL). On a
	 * failure, error is what clients are shown (well-formed UTF-8, at most LLM_ERROR_MAX
	 * bytes: the kind of failure, an HTTP status, the upstream's own message, but never
	 * the upstream's host, port or key) and detail what the operation log keeps for admins
	 * (curl's own message, with the host and port; never the key; at most LLM_DETAIL_MAX
	 * bytes). The strings are valid only during the call. */
	void (*done)(void *ctx, int code, const char *error, const char *travel_plan,
		     const char *detail);
};

struct llm_call;

/* What a provider's calls share in a process (the curl transport's multi handle): set up
 * by llm_init() and torn down by llm_shutdown(), once however many rows name it. */
struct llm_transport {
	int (*init)(uv_loop_t *loop, char *err); /* RC_OK, or RC_ERR with err filled */
	void (*shutdown)(void);
	int (*active)(void); /* its calls in flight, for the status counters */
};

/* A provider: one row of the table, one file. */
struct llm_provider {
	/* which provider: its name is provider_name(id), from src/lib/provider.h, and its row
	 * sits at providers[id] in llm.c */
	enum provider id;
	/* bytes of its calls: a struct whose first member is the struct llm_call (llm-int.h)
	 * that llm_start() allocates zeroed, fills and passes to start */
	size_t call_size;
	/* 1: the run's job carries the conversation's earlier messages (job->history), which
	 * the daemon loads before the call starts (llm_wants_history()) */
	int wants_history;
	/* 1: every run of it keeps and passes on its upstream's bytes (llm_cb.raw) for
	 * workflow's stream, whether or not a stream started it (n8n: the workflow's own
	 * upstream); 0: only the runs workflow's stream started do */
	int streams_raw;
	/* what its calls share, set up once per process; NULL: nothing */
	const struct llm_transport *transport;
	/* begin making the reply of c->job: RC_OK, the reply then comes through c->cb (never
	 * from inside start); else an enum rc with err filled, and release follows at once */
	int (*start)(struct llm_call *c, uv_loop_t *loop, char *err);
	/* free c and all it holds (now, or later when it is still in use, as builtin's tick
	 * does); called once per call, after done(), on llm_cancel(), or after a failed start
	 * (whatever start had set up by then); no callback follows */
	void (*release)(struct llm_call *c);
};

/* The row of the provider called name. A name with no row (a database written by another
 * version) gets the default provider's, as such runs always have: never NULL. */
const struct llm_provider *llm_provider_find(const char *name);

/* Start making the reply for job (which must stay valid until done or cancel) with the
 * provider job->cfg.provider names. Returns NULL with err filled when the call cannot
 * start; done() is then never called. */
struct llm_call *llm_start(uv_loop_t *loop, const struct config *cfg, const struct run_job *job,
			   const struct llm_cb *cb, void *ctx, char *err);
/* Stop a call: no callback follows; its resources are released. */
void llm_cancel(struct llm_call *c);

/* Whether a provider sends the conversation's earlier messages (job->history): its row's
 * wants_history. Safe on any thread (the writer asks it). */
int llm_wants_history(const char *provider);

/* Check that the table has every provider's row at its place: RC_OK, or RC_ERR with err
 * naming the first missing one. */
int llm_check(char *err);
/* llm_check(), then set up every transport the rows name (call once per process, on the
 * loop's thread); llm_shutdown() tears them down. */
int llm_init(uv_loop_t *loop, char *err);
void llm_shutdown(void);
/* Transfers in flight (for status counters). */
int llm_active(void);

/* The builtin provider's reply for a message: deterministic. Caller frees with free(). */
char *llm_builtin_reply(const char *content);

#endif
