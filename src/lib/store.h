/*
 * store: the storage interface. Handlers and daemons call these functions; no SQL lives
 * outside the implementations: src/lib/sqlite/ (the default, a file in the data directory)
 * and src/lib/pg/ (PostgreSQL, when AICHATD_DATABASE_URL names a server), which give the
 * same answers. A struct store is one connection with its prepared statements: use it
 * from one thread at a time.
 *
 * Visibility: a function taking `owner` sees only rows of conversations whose user_id is
 * owner; owner NULL (auth off) sees every conversation. Soft-deleted conversations and
 * messages are never seen: they answer RC_NOTFOUND like ids that never existed.
 *
 * Strings in the row structs that a function fills are allocated from the pool the caller
 * passes and live until that pool is reset. `err` is a buffer of ERR_LEN bytes that
 * receives a message whenever RC_ERR is returned.
 */
#ifndef AICHATD_STORE_H
#define AICHATD_STORE_H

#include <stdint.h>

#include "rc.h"

/* A run's status (runs.status): RUN_RUNNING until it ends, as done, failed or stopped (a
 * stopped run keeps its partial reply). */
enum run_status { RUN_RUNNING = 0, RUN_DONE = 1, RUN_FAILED = 2, RUN_STOPPED = 3 };
/* Why a run failed (runs.error_code, and the im dialect's business code): the provider
 * failed, or it timed out. */
enum run_error { RUN_ERR_AI = 2001, RUN_ERR_TIMEOUT = 2002 };

struct pool;
struct store;

struct conv {
	int64_t seq; /* internal key */
	char *id;
	char *user_id;
	char *title;
	char *model_config; /* NULL: the default config */
	int64_t msg_count;
	int64_t created_at, updated_at;
};

struct msg {
	int64_t id;
	char *msg_id;
	char *conv_id;
	char *user_id; /* sender: a user id, "ai_bot" or "system" */
	char *role;    /* "user", "assistant" or "system" */
	char *content;
	char *error;   /* NULL when none */
	char *metadata; /* JSON text, or NULL */
	int unfinished;
	int visible;
	int64_t created_at, updated_at;
};

struct run {
	int64_t id;
	char *record_id;
	char *conv_id;
	char *user_msg_id; /* string ids */
	char *ai_msg_id;   /* NULL until the reply message exists */
	int status;        /* enum run_status */
	int64_t duration_ms; /* -1: not finished */
	char *error_message;
	int64_t created_at;
};

struct mcfg {
	char *config_id;
	char *provider;
	char *model_name;
	char *model_version;
	char *parameters; /* JSON object text */
	char *system_prompt;
	int64_t updated_at;
};

struct logent {
	int64_t id;
	char *level;
	char *message;
	int64_t created_at;
};

/* One exchange pair of dialect E: a user message and the reply that follows it. */
struct pair {
	int64_t id; /* the user message's id */
	char *user_id;
	char *user_message;
	char *ai_response; /* NULL while there is none */
	int64_t created_at;
};

/* A page request: offset and limit, already validated by the caller. */
struct page {
	int64_t offset;
	int64_t limit;
};

/* Open the store target names: a PostgreSQL server when it is a libpq URL
 * (postgresql://... or postgres://..., store_target_is_pg()), else the SQLite database
 * file at that path (creating it), with WAL, foreign keys and a busy timeout. Returns NULL
 * and fills err on failure. Close with store_close(). */
struct store *store_open(const char *target, char *err);
int store_target_is_pg(const char *target);
/* "sqlite" or "postgresql". */
const char *store_kind(const struct store *st);
void store_close(struct store *st);
/* A passive checkpoint: copy what the WAL holds into the database file as far as the
 * readers of the moment allow, without blocking the writer. *wal_pages and *copied (-1
 * when unknown) say how far it got. */
int store_checkpoint(struct store *st, int *wal_pages, int *copied);
/* Put each conversation's count and time changes off to the commit of the transaction
 * that makes them, and apply them there once per conversation (for a connection whose
 * transactions hold many writes: the daemon's writer). */
void store_defer_touches(struct store *st);
/* Set the connection's page cache to kib KiB. */
void store_cache_kib(struct store *st, int kib);

/* An immediate transaction around several calls (the push daemon batches its writes): the
 * store functions called in between join it instead of opening their own. A failure
 * inside rolls the whole transaction back, and store_commit() then returns RC_ERR. */
int store_begin(struct store *st, char *err);
int store_commit(struct store *st, char *err);
/* Undo what store_begin() opened (a no-op when a failure inside already did). */
void store_rollback(struct store *st);


/* Apply the migrations this binary knows and the database lacks, in one immediate
 * transaction each, so that several processes starting at once apply each exactly once.
 * A database at a version newer than this binary's latest is refused: RC_CONFLICT, with a
 * message saying so, and nothing is changed. */
int store_migrate(struct store *st, char *err);
/* The same, saying the version before (*from, 0 for a new database) and after (*to). */
int store_migrate_report(struct store *st, int64_t *from, int64_t *to, char *err);
/* The latest schema version this binary knows for st's kind of store (each kind has
 * migrations of its own). */
int64_t store_schema_latest(struct store *st);
/* The schema version of the database. */
int store_version(struct store *st, int64_t *version, char *err);

/* Conversations. */
int store_conv_get(struct store *st, struct pool *p, const char *id, const char *owner,
		   struct conv *out, char *err);
/* RC_OK when a conversation with this id exists in any state or for any owner (a
 * client-named id that is taken), RC_NOTFOUND when the id is free. */
int store_conv_taken(struct store *st, const char *id, char *err);
/* Create a conversation with a new UUID (id NULL) or the given id: RC_CONFLICT when the id
 * is taken (even by a deleted conversation). model_config NULL is the default. */
int store_conv_create(struct store *st, struct pool *p, const char *id, const char *user_id,
		      const char *title, const char *model_config, struct conv *out, char *err);
/* Newest-updated first; user NULL lists every user's. *total is the full count. */
int store_conv_list(struct store *st, struct pool *p, const char *user, struct page pg,
		    struct conv **rows, int *n, int64_t *total, char *err);
int store_conv_rename(struct store *st, const char *id, const char *owner, const char *title,
		      char *err);
int store_conv_delete(struct store *st, const char *id, const char *owner, char *err);

/* Post a message: the one write path for every dialect's send. */
struct store_post {
	const char *conv_id;   /* NULL: create a conversation with a new UUID */
	const char *owner;     /* visibility check for an existing conversation */
	int create;            /* create conv_id when it does not exist */
	const char *conv_user; /* owner of a created conversation */
	const char *title;     /* title of a created conversation */
	const char *model_config; /* model config of a created conversation, NULL: default */
	const char *sender;    /* messages.user_id */
	const char *role;
	const char *content;
	const char *metadata;  /* JSON text or NULL */
	int run;               /* start an AI run: the unfinished reply message and its run
	                        * (2: the same, for E's stream, whose daemon passes the
	                        * upstream's bytes on) */
	const char *run_config; /* the run's model config, ahead of the conversation's */
	const char *run_owner; /* the daemon that will make the run (store_run_claim()), or
	                        * NULL: any daemon takes it */
	int64_t lease_ms;      /* with run_owner: how long its lease lasts */
};
struct store_posted {
	struct conv conv;
	struct msg msg;
	struct msg reply;   /* filled when run was set */
	int64_t run_id;     /* filled when run was set */
	char *record_id;
};
/* RC_NOTFOUND when the conversation is not visible (or, with create, exists but is
 * deleted or someone else's). */
int store_post(struct store *st, struct pool *p, const struct store_post *in,
	       struct store_posted *out, char *err);
/* Several posts in one transaction, each in a savepoint of its own (one failing post
 * does not undo the others); each op gets its rc, and its err on failure. */
struct store_post_op {
	struct store_post_op *next;
	const struct store_post *in;
	struct pool *p;
	struct store_posted *out;
	char *err;
	int rc;
};
void store_post_batch(struct store *st, struct store_post_op *ops);
/* The posts of ops inside the transaction the caller opened with store_begin(), with no
 * savepoints: RC_OK, each op with its rc; or RC_CONFLICT when a post failed other than
 * with RC_NOTFOUND, and the whole transaction was rolled back (store_commit() then fails). */
int store_post_batch_in(struct store *st, struct store_post_op *ops);

/* Messages. */
int store_msg_get(struct store *st, struct pool *p, int64_t id, const char *owner,
		  struct msg *out, char *err);
int store_msg_get_by_msgid(struct store *st, struct pool *p, const char *msg_id,
			   const char *owner, struct msg *out, char *err);
/* Oldest first; *total is the count of listed messages. A reply still being written
 * (unfinished) is listed only when all is set (dialect C, which shows `unfinished`); the
 * other dialects see a reply once it is finished, and msg_count counts only those. */
int store_msg_list(struct store *st, struct pool *p, const struct conv *c, struct page pg,
		   int all, struct msg **rows, int *n, int64_t *total, char *err);
/* The latest n messages of a conversation, oldest first. */
int store_msg_latest(struct store *st, struct pool *p, const struct conv *c, int limit,
		     struct msg **rows, int *n, char *err);
int store_msg_edit(struct store *st, int64_t id, const char *content, char *err);
int store_msg_delete(struct store *st, int64_t id, char *err);

/* Dialect E's history: user messages paired with the reply that follows each. */
int store_pairs(struct store *st, struct pool *p, const struct conv *c, struct page pg,
		struct pair **rows, int *n, int64_t *total, char *err);

/* AI runs (dialect A's records), oldest first. */
int store_run_list(struct store *st, struct pool *p, const struct conv *c, struct page pg,
		   struct run **rows, int *n, int64_t *total, char *err);

/* ---- AI runs, for the push daemon and sync waiters ---- */

struct turn {
	char *role;
	char *content;
};

/* Everything needed to make one reply. */
struct run_job {
	int64_t run_id;
	char *record_id;
	int64_t ai_msg;      /* messages.id of the reply */
	char *ai_msg_id;     /* its string id */
	char *user_msg_id;
	char *conv_id;
	char *user_id;       /* the sender of the user message */
	char *content;       /* the user message */
	int64_t created_at;
	struct mcfg cfg;     /* the conversation's model config */
	struct turn *history; /* finished messages before the user message, oldest first */
	int nhistory;
	int restarted;       /* an earlier version saved part of a reply (see store_run_reset) */
	int64_t conv_seq, user_msg; /* internal keys */
};

/* Ids of running runs (RUN_RUNNING) with id > after, oldest first, at most limit. */
int store_runs_open(struct store *st, struct pool *p, int64_t after, int limit, int64_t **ids,
		    int *n, char *err);
/* Load a run's job, without its history: the config is the conversation's, or
 * default_cfg when it has none. RC_NOTFOUND when the run is not running. */
int store_run_job(struct store *st, struct pool *p, int64_t run_id, const char *default_cfg,
		  struct run_job *out, char *err);
/* The job of the run a post just started (out of store_post()), without reading back
 * what the post wrote: only its model config is looked up. */
int store_post_job(struct store *st, struct pool *p, const struct store_post *in,
		   const struct store_posted *out, const char *default_cfg, struct run_job *job,
		   char *err);
/* Load up to window messages before the job's user message into its history (only the
 * providers that send context need it). */
int store_run_history(struct store *st, struct pool *p, struct run_job *job, int window,
		      char *err);
/* The status of a run (enum run_status); RC_NOTFOUND for an unknown id. */
int store_run_status(struct store *st, int64_t run_id, int *status, char *err);
/* The run that writes reply message ai_msg (a messages.id): its id and status. */
int store_run_of_reply(struct store *st, int64_t ai_msg, int64_t *run_id, int *status,
		       char *err);
/*
 * Owners and leases, for several daemons on one database (PostgreSQL): a daemon makes only
 * the runs it holds. It claims a run before it starts it, renews the leases of all it holds
 * while they stream (every third of lease_ms), and its run's end is written only while it
 * holds it. A run whose owner stopped renewing (its host died) is taken by another daemon
 * and made again from the start. An owner is a daemon's node name (config's node_id).
 * SQLite has one daemon per database (the data directory's push.lock): every claim of a
 * running run succeeds, and nothing is ever orphaned.
 */
/* Take run_id for owner until now + lease_ms. RC_OK: it is owner's (it was nobody's,
 * already owner's, or its lease ran out); RC_CONFLICT: another owner holds it;
 * RC_NOTFOUND: it is not running. */
int store_run_claim(struct store *st, int64_t run_id, const char *owner, int64_t lease_ms,
		    char *err);
/* Extend owner's leases of its running runs to now + lease_ms. *held (may be NULL): how
 * many it holds. */
int store_runs_renew(struct store *st, const char *owner, int64_t lease_ms, int64_t *held,
		     char *err);
/* Claim for owner, until now + lease_ms, up to limit running runs whose lease ran out
 * (their owner stopped renewing), skipping those another daemon is claiming at the same
 * moment (FOR UPDATE SKIP LOCKED): their ids, oldest first, in *ids (from p). */
int store_runs_orphaned(struct store *st, struct pool *p, const char *owner, int64_t lease_ms,
			int limit, int64_t **ids, int *n, char *err);
/* Forget what an earlier attempt at a reply saved (a run taken again after a restart). */
int store_run_reset(struct store *st, int64_t ai_msg, char *err);

struct run_end {
	int64_t run_id;
	int64_t ai_msg;
	int status;             /* RUN_DONE, RUN_FAILED or RUN_STOPPED */
	const char *content;    /* the reply, or what was written before a failure */
	size_t len;
	int error_code;         /* enum run_error on failure, else 0 */
	const char *error;      /* NULL on success */
	int64_t duration_ms;
	const char *travel_plan; /* JSON object text, or NULL */
	const char *metadata;    /* the reply's metadata (provider, model), JSON text */
	const char *owner;       /* the daemon that made it: the end is written only while it
	                          * holds the run (NULL: whoever holds it) */
};
/* Finish a run in one transaction: the reply message, the run, the conversation's count
 * and time, the travel plan. RC_NOTFOUND when it was not running (or, with e->owner, is
 * no longer that owner's: another daemon took it over). */
int store_run_finish(struct store *st, const struct run_end *e, char *err);

struct run_result {
	int status;          /* enum run_status */
	struct msg reply;
	int error_code;
	char *error;
	int64_t travel_plan_id; /* 0 when none */
	char *travel_plan;      /* JSON text or NULL */
	char *user_msg_id;      /* the user message that asked: its msg_id and time */
	int64_t user_msg_at;
	char *owner;            /* the conversation's owner */
};
int store_run_result(struct store *st, struct pool *p, int64_t run_id, struct run_result *out,
		     char *err);

/* Model configs. store_mcfg_ensure() inserts a config unless one with that id exists.
 * store_mcfg_list() returns every config, by id, with no cap: configs are few and made by
 * the operator (one per provider, ensured at start-up; others only by hand in the
 * database), and no route creates one. */
int store_mcfg_list(struct store *st, struct pool *p, struct mcfg **rows, int *n, char *err);
int store_mcfg_get(struct store *st, struct pool *p, const char *id, struct mcfg *out,
		   char *err);
int store_mcfg_ensure(struct store *st, const struct mcfg *m, char *err);
/* Fields left NULL keep their value. RC_NOTFOUND for an unknown id. */
int store_mcfg_update(struct store *st, const struct mcfg *m, int64_t *updated_at, char *err);

/* The operation log. level is "info", "warning" or "error". */
int store_log(struct store *st, const char *level, const char *message);
/* Newest first; level, from_ms, to_ms filter when non-NULL / >= 0. */
int store_log_list(struct store *st, struct pool *p, const char *level, int64_t from_ms,
		   int64_t to_ms, struct page pg, struct logent **rows, int *n, int64_t *total,
		   char *err);

/* ---- administration (aichatd's admin subcommands) ---- */

/* Write a consistent copy of the whole database to path, safe while other connections
 * write: the copy is one snapshot, written under a temporary name beside path (its name
 * and ".tmp-PID") and renamed to path once complete and synced. An existing path is
 * replaced only with overwrite (else RC_CONFLICT). *bytes: the copy's size. */
int store_backup(struct store *st, const char *path, int overwrite, int64_t *bytes,
		 char *err);

/* The owners of conversations that are not deleted, by id, each with what the API shows:
 * its conversations, their messages (msg_count) and the latest update. each() is called
 * once per user; the strings live until it returns. */
struct store_user {
	const char *user_id;
	int64_t conversations;
	int64_t messages;
	int64_t last_activity; /* ms; the latest updated_at of the user's conversations */
};
int store_users(struct store *st, void (*each)(void *arg, const struct store_user *u),
		void *arg, char *err);

/* Remove, for good, the conversations and messages soft-deleted before before_ms, and
 * what hangs off them: a removed conversation's messages, runs and travel plans, a removed
 * message's runs (as user message or as reply) and travel plans. A row that a run still
 * running uses stays (until a later purge). With dry_run, nothing is changed and the
 * counts say what would go. One transaction. */
struct store_purged {
	int64_t conversations, messages, runs, travel_plans;
};
int store_purge(struct store *st, int64_t before_ms, int dry_run, struct store_purged *out,
		char *err);

/* Give conversations to new_owner: the one with id conv_id (conv_id non-NULL), or every
 * one of from_owner; deleted ones are not moved. The messages of a moved conversation
 * that its owner sent (role user, sender the old owner) are the new owner's too. *moved:
 * the conversations moved (RC_NOTFOUND for a conv_id that names no conversation). */
int store_chown(struct store *st, const char *conv_id, const char *from_owner,
		const char *new_owner, int64_t *moved, char *err);
/* Copy the SQLite store at sqlite_path (at this binary's latest schema) into the empty
 * PostgreSQL database url names, brought to its latest schema first: every conversation,
 * message, run, model config, log line and travel plan, ids and times unchanged, in one
 * transaction (nothing is left half-copied) read from one snapshot (src/lib/pg/import.c).
 * RC_CONFLICT when the source is not at the latest schema or the target already holds
 * conversations, messages, runs, logs or travel plans. *out: the rows copied per table. */
struct store_copied {
	int64_t conversations, messages, runs, model_configs, logs, travel_plans;
};
int store_copy_to_pg(const char *sqlite_path, const char *url, struct store_copied *out,
		     char *err);

/* SQLite busy waits (metrics): a statement that found the database locked (waits), the
 * time slept in the busy handler for it, and the waits given up (SQLITE_BUSY returned).
 * Counted for the whole process, in its own counters unless store_busy_count_in() names
 * others (memory shared with the processes forked after, or NULL: its own again). */
struct store_busy {
	_Atomic uint64_t waits, sleep_ns, timeouts;
};
void store_busy_count_in(struct store_busy *b);
const struct store_busy *store_busy_counts(void);

#endif
