/*
 * llm-curl: the transport of the providers that call an HTTP upstream (openai, n8n): one
 * libcurl multi handle driven by the libuv loop (the wiring of curl's
 * docs/examples/multi-uv.c). A provider's start fills a struct llm_http_call's body and
 * headers and calls llm_http_start() with the syntax of its upstream's answers
 * (src/lib/upstream.h); its row names llm_http as its transport and llm_http_release as
 * its release. The transport then reads the answer, passes the reply's pieces and the raw
 * bytes on through the call's llm_cb, and ends the call, its failures cleared of the key
 * and (for clients) of where the upstream is. It knows no provider: what an answer means is
 * the syntax's.
 */
#ifndef AICHATD_LLM_CURL_H
#define AICHATD_LLM_CURL_H

#include <curl/curl.h>

#include "buf.h"
#include "upstream.h"
#include "llm-int.h"

#define LLM_ERRBODY_MAX 300 /* bytes of an error body's message kept for the message */

/* An HTTP call: an HTTP provider's call_size is sizeof(struct llm_http_call). */
struct llm_http_call {
	struct llm_call call;      /* first: see llm_provider.call_size */
	char *body;                /* the request's body, malloc'd: set by the provider */
	struct curl_slist *headers; /* the request's headers: set by the provider */
	/* the transport's own */
	struct upstream up;        /* the answer's parser: its pieces, failure, travel plan */
	CURL *easy;
	char errbuf[CURL_ERROR_SIZE];
	long http_status;
	char ctype[128];
	struct buf whole;          /* the body, for JSON replies and error messages */
	int stream;                /* the reply is a stream (SSE or JSON lines), not one JSON */
};

/* The transport (llm.h): the multi handle, made and cleaned once per process. */
extern const struct llm_transport llm_http;

/* Start the POST of the call's body and headers to url on the multi handle, its answer
 * read with syntax. RC_OK, or RC_ERR with err filled (the row's release follows). */
int llm_http_start(struct llm_call *c, const char *url, const struct upstream_syntax *syntax,
		   char *err);
/* A release for the rows (llm.h): frees the call and all it holds, body and headers too,
 * whether or not llm_http_start() was reached. */
void llm_http_release(struct llm_call *c);

#endif
