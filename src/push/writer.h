/*
 * The writer: the thread that makes the hot writes (see writer.c), and the items the loop
 * and it pass each other.
 */
#ifndef AICHATD_WRITER_H
#define AICHATD_WRITER_H

#include <uv.h>

#include "config.h"
#include "store.h"

struct job_run;

enum witem_kind { W_POST, W_END };
/* A worker's post (made by the writer from its link conn); its strings, and its run's job,
 * in pool. */
struct wpost {
	struct store_post_op op;
	void *conn;
	struct pool *pool;
	struct store_post in;
	struct store_posted out;
	char err[ERR_LEN];
	struct run_job job;
	int job_rc;
	void *origin;   /* a post from the loop (writer_post): the hub's connection to answer */
};
struct witem {
	struct witem *next;
	enum witem_kind kind;
	struct wpost *post;      /* W_POST */
	/* W_END: the run whose end (run->end) is written, and a log line (malloc'd, or NULL) */
	struct job_run *run;
	char *log;
};
/* Start the thread, with its own connection to the database and the post socket the
 * workers send their posts to; cb gets back, on the loop's thread, each end once it is
 * written and each post that started a run (with its job). */
/* The default provider of the posts' runs from now on (a settings reload). */
void writer_set_provider(const char *name);
int writer_start(uv_loop_t *loop, const struct config *cfg, void (*cb)(struct witem *it),
		 char *err);
/* Queue an item (the loop's thread only). */
void writer_put(struct witem *it);
/* Queue a post made on the loop (a WebSocket send, origin set): written with the workers'
 * next batch and handed back like theirs, whatever its outcome. RC_OK, or RC_ERR once the
 * writer has stopped (the caller keeps the item). */
int writer_post(struct witem *it);
/* Write what is queued, hand it back, and end the thread. */
void writer_stop(void);
/* An item; a W_POST gets its pool. */
struct witem *witem_new(enum witem_kind kind);
void witem_free(struct witem *it);

#endif
