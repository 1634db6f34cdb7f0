/*
 * The PostgreSQL store against a real server: migrations (again, concurrently, a newer
 * database refused), the connection (its settings, an unreachable server, a reset after
 * the server dropped it), conversations, posts and batches (savepoints, deferred touches,
 * a run's owner and lease), messages and pairs, mended text.
 *
 * The server is AICHATD_TEST_PG_URL's, or one this binary starts with tests/lib/pg-instance
 * (from the source tree) on a free port and stops at exit. Each suite works in a database
 * of its own, made afresh (unit_pg_fresh()).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <libpq-fe.h>

#include "unit.h"
#include "rc.h"
#include "pool.h"
#include "util.h"
#include "schema.h"
#include "store.h"
#include "pg/db.h"

/* ---- the server ---- */

static char pg_url[256], pg_dir[64];
static int pg_tried;

static void
pg_stop(void)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "'%s/tests/lib/pg-instance' stop '%s' && rm -rf '%s'",
		 AICHATD_SRCDIR, pg_dir, pg_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "  t-pg: could not stop the server in %s\n", pg_dir);
}

/* A loopback port nothing listens on at this moment. */
static int
free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

const char *
unit_pg_url(void)
{
	const char *env = getenv("AICHATD_TEST_PG_URL");
	char cmd[512];
	FILE *f;
	size_t n;

	if (env && *env)
		return env;
	if (pg_tried)
		return pg_url[0] ? pg_url : NULL;
	pg_tried = 1;
	snprintf(pg_dir, sizeof(pg_dir), "/tmp/aichatd-unit-pg-XXXXXX");
	if (!mkdtemp(pg_dir))
		return NULL;
	snprintf(cmd, sizeof(cmd), "'%s/tests/lib/pg-instance' start '%s' %d", AICHATD_SRCDIR,
		 pg_dir, free_port());
	if (!(f = popen(cmd, "r")))
		return NULL;
	n = fread(pg_url, 1, sizeof(pg_url) - 1, f);
	pg_url[n] = '\0';
	while (n && (pg_url[n - 1] == '\n' || pg_url[n - 1] == ' '))
		pg_url[--n] = '\0';
	atexit(pg_stop);
	if (pclose(f) != 0 || strncmp(pg_url, "postgresql://", 13) != 0) {
		fprintf(stderr, "  t-pg: %s failed\n", cmd);
		pg_url[0] = '\0';
		return NULL;
	}
	return pg_url;
}

/* url with its database name (the path after the host) replaced by name. */
static int
url_with_db(const char *url, const char *name, char *out, size_t size)
{
	const char *host = strstr(url, "://"), *path, *query;
	int n;

	if (!host)
		return RC_ERR;
	path = strchr(host + 3, '/');
	query = strchr(host + 3, '?');
	if (!path || (query && query < path))
		path = query ? query : url + strlen(url);
	query = strchr(path, '?');
	n = snprintf(out, size, "%.*s/%s%s", (int)(path - url), url, name, query ? query : "");
	return n > 0 && (size_t)n < size ? RC_OK : RC_ERR;
}

static void
quiet(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int
unit_pg_fresh(const char *name, char *url, size_t size)
{
	const char *base = unit_pg_url();
	char sql[160];
	PGconn *c;
	PGresult *r;
	int ok = 1;

	if (!base || url_with_db(base, name, url, size) != RC_OK)
		return RC_ERR;
	c = PQconnectdb(base);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "  t-pg: %s: %s", base, PQerrorMessage(c));
		PQfinish(c);
		return RC_ERR;
	}
	PQsetNoticeProcessor(c, quiet, NULL); /* "does not exist, skipping" */
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
	r = PQexec(c, sql);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", name);
	r = PQexec(c, sql);
	ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "  t-pg: %s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? RC_OK : RC_ERR;
}

/* ---- SQL on the store's own connection, to look at what the store wrote ---- */

/* The first column of the first row of sql as text into out ("" for NULL or no row). */
static void
q_text(struct store *st, const char *sql, char *out, size_t size)
{
	PGresult *r = PQexec(pg_of(st)->conn, sql);

	out[0] = '\0';
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
		snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
		fprintf(stderr, "  t-pg: %s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
}

static int64_t
q_int(struct store *st, const char *sql)
{
	char v[64];

	q_text(st, sql, v, sizeof(v));
	return v[0] ? strtoll(v, NULL, 10) : -1;
}

/* A fresh database named name, migrated, opened: NULL (and a failed check) when not. */
static struct store *
fresh_store(const char *name, char *url, size_t size)
{
	char err[ERR_LEN];
	struct store *st;

	CHECK(unit_pg_fresh(name, url, size) == RC_OK);
	if (!(st = store_open(url, err))) {
		fprintf(stderr, "  t-pg: open %s: %s\n", url, err);
		CHECK(st != NULL);
		return NULL;
	}
	CHECK(store_migrate(st, err) == RC_OK);
	return st;
}

/* A post of content by sender into conversation id (created for sender when create). */
static struct store_post
post_of(const char *id, const char *sender, const char *content, int create, int run)
{
	struct store_post in;

	memset(&in, 0, sizeof(in));
	in.conv_id = id;
	in.create = create;
	in.conv_user = in.sender = sender;
	in.title = id ? id : "new";
	in.role = "user";
	in.content = content;
	in.run = run;
	return in;
}

/* "<prefix>_YYYYMMDDHHMMSS_xxxxxxxx" */
static int
stamped(const char *id, const char *prefix)
{
	size_t n = strlen(prefix), i;

	if (!id || strncmp(id, prefix, n) != 0 || id[n] != '_' || strlen(id) != n + 24 ||
	    id[n + 15] != '_')
		return 0;
	for (i = n + 1; i < n + 15; i++)
		if (id[i] < '0' || id[i] > '9')
			return 0;
	for (i = n + 16; i < n + 24; i++)
		if (!strchr("0123456789abcdef", id[i]))
			return 0;
	return 1;
}

/* ---- migrations ---- */

struct migrator {
	const char *url;
	int rc;
	char err[ERR_LEN];
};

static void *
migrate_thread(void *arg)
{
	struct migrator *m = arg;
	struct store *st = store_open(m->url, m->err);

	m->rc = st ? store_migrate(st, m->err) : RC_ERR;
	store_close(st);
	return NULL;
}

static void
t_pg_migrate(void)
{
	char url[320], err[ERR_LEN], sql[128];
	struct migrator ms[4];
	pthread_t th[4];
	struct store *st;
	int64_t from, to, v;
	int i;

	CHECK(unit_pg_fresh("aichatd_unit_migrate", url, sizeof(url)) == RC_OK);
	if (!(st = store_open(url, err))) {
		CHECK(st != NULL);
		return;
	}
	CHECK_STR(store_kind(st), "postgresql");
	CHECK(store_schema_latest(st) ==
	      pg_schema_migrations[pg_schema_migrations_count - 1].version);
	CHECK(store_migrate_report(st, &from, &to, err) == RC_OK);
	CHECK(from == 0 && to == store_schema_latest(st));
	CHECK(store_migrate_report(st, &from, &to, err) == RC_OK); /* nothing left to apply */
	CHECK(from == to && to == store_schema_latest(st));
	CHECK(store_version(st, &v, err) == RC_OK && v == to);
	CHECK(q_int(st, "SELECT count(*) FROM schema_migrations") ==
	      (int64_t)pg_schema_migrations_count);
	/* the leases' columns */
	CHECK(q_int(st, "SELECT count(*) FROM information_schema.columns WHERE table_name = "
			"'runs' AND column_name IN ('owner', 'lease_until')") == 2);

	/* a database a newer program migrated is refused, and left as it is */
	snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations VALUES (%lld, 'future', 0)",
		 (long long)store_schema_latest(st) + 1);
	q_int(st, sql);
	CHECK(store_migrate(st, err) == RC_CONFLICT);
	CHECK(strstr(err, "newer than this program") != NULL);
	CHECK(store_version(st, &v, err) == RC_OK && v == store_schema_latest(st) + 1);
	store_close(st);

	/* processes that start at once: each migration is applied once, nobody fails */
	CHECK(unit_pg_fresh("aichatd_unit_migrate", url, sizeof(url)) == RC_OK);
	for (i = 0; i < 4; i++) {
		ms[i].url = url;
		ms[i].rc = RC_ERR;
		ms[i].err[0] = '\0';
		CHECK(pthread_create(&th[i], NULL, migrate_thread, &ms[i]) == 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		if (ms[i].rc != RC_OK)
			fprintf(stderr, "  t-pg: concurrent migrate: %s\n", ms[i].err);
		CHECK(ms[i].rc == RC_OK);
	}
	if ((st = store_open(url, err))) {
		CHECK(q_int(st, "SELECT count(*) FROM schema_migrations") ==
		      (int64_t)pg_schema_migrations_count);
		store_close(st);
	}
}

/* ---- the connection ---- */

static void
t_pg_connection(void)
{
	char url[320], other[400], err[ERR_LEN], v[64];
	struct pool *p = pool_create();
	struct store *st, *st2;
	struct conv c;
	int wal = 0, copied = 0;

	if (!(st = fresh_store("aichatd_unit_conn", url, sizeof(url))))
		goto out;
	/* nothing waits for ever */
	q_text(st, "SHOW statement_timeout", v, sizeof(v));
	CHECK_STR(v, "30s");
	CHECK_STR(PQparameterStatus(pg_of(st)->conn, "client_encoding"), "UTF8");
	{
		PQconninfoOption *o = PQconninfo(pg_of(st)->conn), *i;
		int timeout = 0, keep = 0;

		for (i = o; i && i->keyword; i++) {
			if (strcmp(i->keyword, "connect_timeout") == 0 && i->val)
				timeout = atoi(i->val);
			if (strcmp(i->keyword, "keepalives") == 0 && i->val)
				keep = atoi(i->val);
		}
		PQconninfoFree(o);
		CHECK(timeout == 5 && keep == 1);
	}
	/* a setting the URL names wins over the default */
	snprintf(other, sizeof(other), "%s?connect_timeout=7", url);
	if ((st2 = store_open(other, err))) {
		PQconninfoOption *o = PQconninfo(pg_of(st2)->conn), *i;

		for (i = o; i && i->keyword; i++)
			if (strcmp(i->keyword, "connect_timeout") == 0)
				CHECK_STR(i->val, "7");
		PQconninfoFree(o);
		store_close(st2);
	}
	CHECK(st2 != NULL);

	/* what PostgreSQL has no use for */
	CHECK(store_checkpoint(st, &wal, &copied) == RC_OK && wal == -1 && copied == -1);
	store_cache_kib(st, 1024);

	/* a server nobody listens on: unreachable, at once */
	snprintf(other, sizeof(other), "postgresql://aichatd@127.0.0.1:%d/aichatd", free_port());
	CHECK(store_open(other, err) == NULL);
	CHECK(strncmp(err, "database unreachable: ", 22) == 0);

	/* the server drops the connection (a restart): the call that finds out fails with
	 * RC_UNAVAIL, the next reconnects and prepares its statements again */
	CHECK(store_conv_create(st, p, "conn-1", "alice", "t", NULL, &c, err) == RC_OK);
	CHECK(store_conv_get(st, p, "conn-1", NULL, &c, err) == RC_OK);
	if ((st2 = store_open(url, err))) {
		snprintf(other, sizeof(other), "SELECT pg_terminate_backend(%d)",
			 PQbackendPID(pg_of(st)->conn));
		q_text(st2, other, v, sizeof(v));
		CHECK_STR(v, "t");
		store_close(st2);
	}
	CHECK(store_conv_get(st, p, "conn-1", NULL, &c, err) == RC_UNAVAIL);
	CHECK(strncmp(err, "database unreachable: ", 22) == 0);
	CHECK(store_conv_get(st, p, "conn-1", NULL, &c, err) == RC_OK);
	CHECK_STR(c.title, "t");
	/* ... and inside a transaction, the failure ends it; the next call outside reconnects */
	CHECK(store_begin(st, err) == RC_OK);
	if ((st2 = store_open(url, err))) {
		snprintf(other, sizeof(other), "SELECT pg_terminate_backend(%d)",
			 PQbackendPID(pg_of(st)->conn));
		q_text(st2, other, v, sizeof(v));
		store_close(st2);
	}
	CHECK(store_conv_rename(st, "conn-1", NULL, "lost", err) == RC_UNAVAIL);
	CHECK(store_commit(st, err) == RC_ERR);
	CHECK(store_conv_get(st, p, "conn-1", NULL, &c, err) == RC_OK);
	CHECK_STR(c.title, "t");
	store_close(st);
out:
	pool_destroy(p);
}

/* ---- conversations ---- */

static void
t_pg_convs(void)
{
	char url[320], err[ERR_LEN], v[256];
	struct pool *p = pool_create();
	struct store *st;
	struct conv c, *cs;
	struct page pg = {0, 10};
	int64_t total;
	int n;

	if (!(st = fresh_store("aichatd_unit_conv", url, sizeof(url))))
		goto out;
	/* a new UUID, or the id asked for; a taken id is a conflict */
	CHECK(store_conv_create(st, p, NULL, "alice", "first", NULL, &c, err) == RC_OK);
	CHECK(c.id && strlen(c.id) == IDS_UUID_LEN && c.id[14] == '4' && c.seq > 0);
	CHECK(c.msg_count == 0 && c.created_at == c.updated_at && c.model_config == NULL);
	CHECK(store_conv_create(st, p, "named", "alice", "second", "cfg", &c, err) == RC_OK);
	CHECK_STR(c.id, "named");
	CHECK_STR(c.model_config, "cfg");
	CHECK(store_conv_create(st, p, "named", "bob", "again", NULL, &c, err) == RC_CONFLICT);
	CHECK(store_conv_create(st, p, "bobs", "bob", "bob's", NULL, &c, err) == RC_OK);
	CHECK(store_conv_taken(st, "named", err) == RC_OK);
	CHECK(store_conv_taken(st, "free", err) == RC_NOTFOUND);

	/* visibility: the owner, or every owner with NULL */
	CHECK(store_conv_get(st, p, "named", "alice", &c, err) == RC_OK);
	CHECK_STR(c.title, "second");
	CHECK_STR(c.user_id, "alice");
	CHECK(store_conv_get(st, p, "named", "bob", &c, err) == RC_NOTFOUND);
	CHECK(store_conv_get(st, p, "named", NULL, &c, err) == RC_OK);
	CHECK(store_conv_get(st, p, "nothing", NULL, &c, err) == RC_NOTFOUND);

	/* newest-updated first; equal times by seq, newest first; the page and the total */
	q_int(st, "UPDATE conversations SET updated_at = 1000");
	CHECK(store_conv_list(st, p, NULL, pg, &cs, &n, &total, err) == RC_OK);
	CHECK(n == 3 && total == 3);
	if (n == 3) {
		CHECK_STR(cs[0].id, "bobs");
		CHECK_STR(cs[1].id, "named");
		CHECK(cs[2].seq < cs[1].seq && cs[1].seq < cs[0].seq);
	}
	CHECK(store_conv_list(st, p, "alice", (struct page){1, 1}, &cs, &n, &total, err) ==
	      RC_OK);
	CHECK(n == 1 && total == 2 && strcmp(cs[0].title, "first") == 0);
	CHECK(store_conv_list(st, p, "carol", pg, &cs, &n, &total, err) == RC_OK);
	CHECK(n == 0 && total == 0);

	/* rename: the owner's only, and it moves the conversation to the top */
	CHECK(store_conv_rename(st, "named", "bob", "x", err) == RC_NOTFOUND);
	CHECK(store_conv_rename(st, "named", "alice", "renamed", err) == RC_OK);
	CHECK(store_conv_get(st, p, "named", NULL, &c, err) == RC_OK);
	CHECK_STR(c.title, "renamed");
	CHECK(c.updated_at > 1000);
	CHECK(store_conv_list(st, p, NULL, pg, &cs, &n, &total, err) == RC_OK);
	CHECK(n == 3 && strcmp(cs[0].id, "named") == 0);

	/* soft delete: gone for everyone, its id still taken, a second delete finds nothing */
	CHECK(store_conv_delete(st, "named", "bob", err) == RC_NOTFOUND);
	CHECK(store_conv_delete(st, "named", "alice", err) == RC_OK);
	CHECK(store_conv_delete(st, "named", "alice", err) == RC_NOTFOUND);
	CHECK(store_conv_get(st, p, "named", NULL, &c, err) == RC_NOTFOUND);
	CHECK(store_conv_rename(st, "named", NULL, "back", err) == RC_NOTFOUND);
	CHECK(store_conv_taken(st, "named", err) == RC_OK);
	CHECK(store_conv_create(st, p, "named", "alice", "again", NULL, &c, err) == RC_CONFLICT);
	CHECK(store_conv_list(st, p, "alice", pg, &cs, &n, &total, err) == RC_OK);
	CHECK(n == 1 && total == 1);
	CHECK(q_int(st, "SELECT count(*) FROM conversations WHERE id = 'named' AND "
			"is_deleted = 1 AND deleted_at > 0") == 1);

	/* text is compared and sorted by its bytes (COLLATE "C"), as SQLite does */
	q_text(st, "SELECT string_agg(t, ',' ORDER BY t) FROM (SELECT title || '' AS t FROM "
		   "conversations UNION ALL VALUES ('B'), ('_'), ('a'), ('É')) x "
		   "WHERE t IN ('B', '_', 'a', 'É', 'bob''s')", v, sizeof(v));
	CHECK_STR(v, "B,_,a,bob's,É");
	/* a title that is not UTF-8 is stored mended, as the SQLite store reads it back */
	CHECK(store_conv_create(st, p, "bad", "alice", "a\xff" "b", NULL, &c, err) == RC_OK);
	CHECK(store_conv_get(st, p, "bad", NULL, &c, err) == RC_OK);
	CHECK_STR(c.title, "a\xef\xbf\xbd" "b");
	store_close(st);
out:
	pool_destroy(p);
}

/* ---- posts and batches ---- */

static void
t_pg_posts(void)
{
	char url[320], err[ERR_LEN], sql[256], v[256];
	struct pool *p = pool_create();
	struct store *st;
	struct store_post in, ins[3];
	struct store_posted out, outs[3];
	struct store_post_op ops[3];
	char errs[3][ERR_LEN];
	struct conv c;
	struct msg *ms;
	struct page pg = {0, 10};
	int64_t total;
	int n, i;

	if (!(st = fresh_store("aichatd_unit_post", url, sizeof(url))))
		goto out;
	/* a post into a new conversation, with a run: the message, the reply placeholder and
	 * the run, nobody's */
	in = post_of(NULL, "alice", "hello", 0, 1);
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	CHECK(out.conv.id && strlen(out.conv.id) == IDS_UUID_LEN);
	CHECK(out.conv.msg_count == 1 && out.conv.updated_at == out.msg.created_at);
	CHECK(stamped(out.msg.msg_id, "msg") && stamped(out.reply.msg_id, "msg"));
	CHECK(stamped(out.record_id, "record") && out.run_id > 0);
	CHECK(out.reply.id > out.msg.id && out.reply.unfinished == 1 && out.msg.unfinished == 0);
	CHECK_STR(out.reply.role, "assistant");
	CHECK_STR(out.reply.user_id, "ai_bot");
	snprintf(sql, sizeof(sql), "SELECT concat_ws(',', status, user_msg = %lld, ai_msg = %lld, "
		 "owner IS NULL, lease_until IS NULL) FROM runs WHERE id = %lld",
		 (long long)out.msg.id, (long long)out.reply.id, (long long)out.run_id);
	q_text(st, sql, v, sizeof(v));
	CHECK_STR(v, "0,t,t,t,t");
	/* only finished messages are listed and counted, unless all are asked for */
	CHECK(store_conv_get(st, p, out.conv.id, "alice", &c, err) == RC_OK);
	CHECK(c.msg_count == 1);
	CHECK(store_msg_list(st, p, &c, pg, 0, &ms, &n, &total, err) == RC_OK);
	CHECK(n == 1 && total == 1 && strcmp(ms[0].content, "hello") == 0);
	CHECK(store_msg_list(st, p, &c, pg, 1, &ms, &n, &total, err) == RC_OK);
	CHECK(n == 2 && total == 2 && ms[1].unfinished == 1);
	CHECK(n == 2 && strcmp(ms[0].conv_id, c.id) == 0 && ms[0].visible == 1);

	/* a run posted for a daemon is that daemon's until its lease runs out */
	in = post_of("leased", "alice", "q", 1, 1);
	in.run_owner = "node-a";
	in.lease_ms = 60000;
	in.run_config = "wf";
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	snprintf(sql, sizeof(sql), "SELECT concat_ws(',', owner, lease_until - created_at, "
		 "model_config) FROM runs WHERE id = %lld", (long long)out.run_id);
	q_text(st, sql, v, sizeof(v));
	CHECK_STR(v, "node-a,60000,wf");

	/* create: a client-named id; someone else's or a deleted one is not found */
	in = post_of("c1", "alice", "one", 1, 0);
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	CHECK_STR(out.conv.id, "c1");
	CHECK_STR(out.conv.user_id, "alice");
	in = post_of("c1", "bob", "mine?", 1, 0);
	in.owner = "bob";
	CHECK(store_post(st, p, &in, &out, err) == RC_NOTFOUND);
	in = post_of("c1", "alice", "two", 0, 0);
	in.owner = "alice";
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	CHECK(out.conv.msg_count == 2);
	in = post_of("nowhere", "alice", "x", 0, 0);
	CHECK(store_post(st, p, &in, &out, err) == RC_NOTFOUND);
	CHECK(store_conv_create(st, p, "gone", "alice", "g", NULL, &c, err) == RC_OK);
	CHECK(store_conv_delete(st, "gone", NULL, err) == RC_OK);
	in = post_of("gone", "alice", "x", 1, 0);
	CHECK(store_post(st, p, &in, &out, err) == RC_NOTFOUND);
	/* content that is not UTF-8 is stored mended (SQLite reads it back so) */
	in = post_of("c1", "alice", "bad \xc3( end", 0, 0);
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	CHECK(store_msg_get(st, p, out.msg.id, NULL, &ms[0], err) == RC_OK);
	CHECK_STR(ms[0].content, "bad \xef\xbf\xbd( end");

	/* a batch: each post in a savepoint, so the one that fails (a role the schema
	 * refuses aborts its statement) and the one not found undo only themselves */
	for (i = 0; i < 3; i++) {
		ins[i] = post_of("c1", "alice", "batched", 0, i == 2);
		ops[i] = (struct store_post_op){i < 2 ? &ops[i + 1] : NULL, &ins[i], p, &outs[i],
						errs[i], RC_OK};
	}
	ins[0].role = "nobody";
	ins[1].conv_id = "nowhere";
	store_post_batch(st, ops);
	CHECK(ops[0].rc == RC_ERR && strstr(errs[0], "insert") != NULL);
	CHECK(ops[1].rc == RC_NOTFOUND);
	CHECK(ops[2].rc == RC_OK && outs[2].run_id > 0);
	CHECK(store_conv_get(st, p, "c1", NULL, &c, err) == RC_OK);
	CHECK(c.msg_count == 4);
	CHECK(q_int(st, "SELECT count(*) FROM messages WHERE content = 'batched'") == 1);

	/* inside the caller's transaction, with touches put off to the commit: each
	 * conversation is updated once, by the sum; the counts a post sees include the
	 * earlier posts' of the batch */
	store_defer_touches(st);
	CHECK(store_begin(st, err) == RC_OK);
	for (i = 0; i < 3; i++) {
		ins[i] = post_of(i == 1 ? "c2" : "c1", "alice", "deferred", 1, 0);
		ops[i] = (struct store_post_op){i < 2 ? &ops[i + 1] : NULL, &ins[i], p, &outs[i],
						errs[i], RC_OK};
	}
	CHECK(store_post_batch_in(st, ops) == RC_OK);
	CHECK(ops[0].rc == RC_OK && ops[1].rc == RC_OK && ops[2].rc == RC_OK);
	CHECK(outs[0].conv.msg_count == 5 && outs[2].conv.msg_count == 6);
	CHECK(q_int(st, "SELECT msg_count FROM conversations WHERE id = 'c1'") == 4);
	CHECK(store_commit(st, err) == RC_OK);
	CHECK(q_int(st, "SELECT msg_count FROM conversations WHERE id = 'c1'") == 6);
	CHECK(q_int(st, "SELECT msg_count FROM conversations WHERE id = 'c2'") == 1);
	/* ... and a post that fails other than not found ends the whole transaction */
	CHECK(store_begin(st, err) == RC_OK);
	ins[0] = post_of("c1", "alice", "kept?", 0, 0);
	ins[1] = post_of("c1", "alice", "broken", 0, 0);
	ins[1].role = "nobody";
	ops[1].next = NULL;
	CHECK(store_post_batch_in(st, ops) == RC_CONFLICT);
	CHECK(ops[0].rc == RC_OK && ops[1].rc == RC_ERR);
	CHECK(store_commit(st, err) == RC_ERR);
	store_rollback(st);
	CHECK(q_int(st, "SELECT count(*) FROM messages WHERE content = 'kept?'") == 0);
	CHECK(q_int(st, "SELECT msg_count FROM conversations WHERE id = 'c1'") == 6);
	/* a single post inside the caller's transaction joins it */
	CHECK(store_begin(st, err) == RC_OK);
	in = post_of("c1", "alice", "joined", 0, 0);
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);
	store_rollback(st);
	CHECK(q_int(st, "SELECT count(*) FROM messages WHERE content = 'joined'") == 0);
	CHECK(q_int(st, "SELECT msg_count FROM conversations WHERE id = 'c1'") == 6);
	store_close(st);
out:
	pool_destroy(p);
}

/* ---- messages and pairs ---- */

static void
t_pg_msgs(void)
{
	static const char *const says[] = {"u1", "a1", "u2", "u3", "a3"};
	char url[320], err[ERR_LEN];
	struct pool *p = pool_create();
	struct store *st;
	struct store_post in;
	struct store_posted out, first;
	struct conv c;
	struct msg m, *ms;
	struct pair *ps;
	struct page pg = {0, 10};
	int64_t total;
	int n, i;

	if (!(st = fresh_store("aichatd_unit_msg", url, sizeof(url))))
		goto out;
	/* u1 a1 u2 u3 a3, then a run's unfinished reply */
	for (i = 0; i < 5; i++) {
		in = post_of("m", says[i][0] == 'u' ? "alice" : "ai_bot", says[i], 1, 0);
		in.conv_user = "alice";
		in.role = says[i][0] == 'u' ? "user" : "assistant";
		CHECK(store_post(st, p, &in, i ? &out : &first, err) == RC_OK);
	}
	in = post_of("m", "alice", "u4", 0, 1);
	CHECK(store_post(st, p, &in, &out, err) == RC_OK);

	/* one message, by id or msg_id, as its conversation's owner sees it */
	CHECK(store_msg_get(st, p, first.msg.id, "alice", &m, err) == RC_OK);
	CHECK_STR(m.content, "u1");
	CHECK_STR(m.conv_id, "m");
	CHECK_STR(m.msg_id, first.msg.msg_id);
	CHECK(m.error == NULL && m.metadata == NULL && m.created_at == first.msg.created_at);
	CHECK(store_msg_get(st, p, first.msg.id, "bob", &m, err) == RC_NOTFOUND);
	CHECK(store_msg_get_by_msgid(st, p, first.msg.msg_id, NULL, &m, err) == RC_OK);
	CHECK(m.id == first.msg.id);
	CHECK(store_msg_get_by_msgid(st, p, "msg_nothing", NULL, &m, err) == RC_NOTFOUND);

	/* the latest finished ones, oldest first */
	CHECK(store_conv_get(st, p, "m", NULL, &c, err) == RC_OK);
	CHECK(c.msg_count == 6);
	CHECK(store_msg_latest(st, p, &c, 3, &ms, &n, err) == RC_OK);
	CHECK(n == 3);
	if (n == 3) {
		CHECK_STR(ms[0].content, "u3");
		CHECK_STR(ms[1].content, "a3");
		CHECK_STR(ms[2].content, "u4");
		CHECK_STR(ms[2].conv_id, "m");
	}
	/* a page */
	CHECK(store_msg_list(st, p, &c, (struct page){1, 2}, 0, &ms, &n, &total, err) == RC_OK);
	CHECK(n == 2 && total == 6 && strcmp(ms[0].content, "a1") == 0 &&
	      strcmp(ms[1].content, "u2") == 0);

	/* pairs: each user message with the reply before the next one; none yet for u2 and
	 * the running u4 */
	CHECK(store_pairs(st, p, &c, pg, &ps, &n, &total, err) == RC_OK);
	CHECK(n == 4 && total == 4);
	if (n == 4) {
		CHECK_STR(ps[0].user_message, "u1");
		CHECK_STR(ps[0].ai_response, "a1");
		CHECK(ps[1].ai_response == NULL);
		CHECK_STR(ps[2].ai_response, "a3");
		CHECK(ps[3].ai_response == NULL && ps[0].id == first.msg.id);
		CHECK_STR(ps[3].user_id, "alice");
	}
	CHECK(store_pairs(st, p, &c, (struct page){3, 5}, &ps, &n, &total, err) == RC_OK);
	CHECK(n == 1 && total == 4);

	/* edit and delete: a deleted message is gone, and no longer counted; an unfinished
	 * reply was never counted */
	CHECK(store_msg_edit(st, first.msg.id, "u1 edited", err) == RC_OK);
	CHECK(store_msg_get(st, p, first.msg.id, NULL, &m, err) == RC_OK);
	CHECK_STR(m.content, "u1 edited");
	CHECK(m.updated_at >= m.created_at);
	CHECK(store_msg_delete(st, first.msg.id, err) == RC_OK);
	CHECK(store_msg_delete(st, first.msg.id, err) == RC_NOTFOUND);
	CHECK(store_msg_edit(st, first.msg.id, "again", err) == RC_NOTFOUND);
	CHECK(store_msg_get(st, p, first.msg.id, NULL, &m, err) == RC_NOTFOUND);
	CHECK(store_msg_delete(st, out.reply.id, err) == RC_OK);
	CHECK(store_conv_get(st, p, "m", NULL, &c, err) == RC_OK);
	CHECK(c.msg_count == 5);
	CHECK(store_msg_list(st, p, &c, pg, 1, &ms, &n, &total, err) == RC_OK);
	CHECK(n == 5 && total == 5 && strcmp(ms[0].content, "a1") == 0);
	CHECK(store_msg_delete(st, 999999, err) == RC_NOTFOUND);
	CHECK(q_int(st, "SELECT count(*) FROM messages WHERE is_deleted = 1 AND "
			"deleted_at = updated_at") == 2);
	store_close(st);
out:
	pool_destroy(p);
}

void
t_pg(void)
{
	if (!unit_pg_url()) {
		fprintf(stderr, "  t-pg: no PostgreSQL server (AICHATD_TEST_PG_URL, or "
				"tests/lib/pg-instance)\n");
		CHECK(!"a PostgreSQL server to test against");
		return;
	}
	t_pg_migrate();
	t_pg_connection();
	t_pg_convs();
	t_pg_posts();
	t_pg_msgs();
}
