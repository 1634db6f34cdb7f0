/*
 * aichatd's administration subcommands (admin.h): each parses its arguments, opens the
 * database of the settings in force through the store and prints what it did.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>

#include "rc.h"
#include "config.h"
#include "pool.h"
#include "util.h"
#include "store.h"
#include "token.h"
#include "admin.h"

#define OWNER_MAX 128 /* a user id: a token's sub is 1-128 characters (docs/API.md) */

static int
fail(const char *what, const char *err)
{
	fprintf(stderr, "aichatd %s: %s\n", what, err);
	return 1;
}

static int
misuse(const char *what, const char *args)
{
	fprintf(stderr, "usage: aichatd %s %s (aichatd %s --help)\n", what, args, what);
	return 2;
}

/* The database of the settings in force, at the schema version this program knows: it
 * must exist (an admin command never makes an empty one), and one at another version is
 * refused (older: aichatd migrate first; newer: the newer program's). */
/* The store as the messages name it: the SQLite file, or "the PostgreSQL database" (the
 * URL may hold a password). */
static const char *
store_name(const struct config *c)
{
	return store_target_is_pg(c->store_target) ? "the PostgreSQL database" : c->db_path;
}

static struct store *
open_db(const struct config *c, const char *what)
{
	char err[ERR_LEN];
	struct store *st;
	int64_t v;

	if (!store_target_is_pg(c->store_target) && access(c->db_path, F_OK) != 0) {
		fprintf(stderr, "aichatd %s: no database at %s (data_dir %s): %s\n", what,
			c->db_path, c->data_dir, strerror(errno));
		return NULL;
	}
	if (!(st = store_open(c->store_target, err))) {
		fail(what, err);
		return NULL;
	}
	if (store_version(st, &v, err) != RC_OK) {
		fail(what, err);
		store_close(st);
		return NULL;
	}
	if (v != store_schema_latest(st)) {
		fprintf(stderr, "aichatd %s: the database is at schema version %lld, this program "
			"at %lld: %s\n", what, (long long)v, (long long)store_schema_latest(st),
			v < store_schema_latest(st) ? "run aichatd migrate first" :
						    "use the newer aichatd that wrote it");
		store_close(st);
		return NULL;
	}
	return st;
}

/* Text for a column of tab-separated output: control characters (tabs, newlines) as
 * spaces, so that a title cannot make a row of its own. */
static void
put_field(const char *s)
{
	for (; s && *s; s++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s);
}

static void
put_time(int64_t ms)
{
	char t[32];

	time_iso(t, ms, 1);
	fputs(t, stdout);
}

/* ---- backup ---- */

static int
cmd_backup(const struct config *c, int argc, char **argv)
{
	const char *path = NULL;
	char err[ERR_LEN];
	struct store *st;
	int64_t bytes = 0;
	int force = 0, i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = 1;
		else if (!path && argv[i][0] != '-')
			path = argv[i];
		else
			return misuse("backup", "[--force] FILE");
	}
	if (!path)
		return misuse("backup", "[--force] FILE");
	if (!(st = open_db(c, "backup")))
		return 1;
	umask(077);
	rc = store_backup(st, path, force, &bytes, err);
	store_close(st);
	if (rc != RC_OK)
		return fail("backup", err);
	printf("backed up %s to %s (%lld bytes)\n", c->db_path, path, (long long)bytes);
	return 0;
}

/* ---- users, conversations ---- */

static void
print_user(void *arg, const struct store_user *u)
{
	(void)arg;
	put_field(u->user_id);
	printf("\t%lld\t%lld\t", (long long)u->conversations, (long long)u->messages);
	put_time(u->last_activity);
	putchar('\n');
}

static int
cmd_users(const struct config *c, int argc, char **argv)
{
	char err[ERR_LEN];
	struct store *st;
	int rc;

	(void)argv;
	if (argc != 1)
		return misuse("users", "");
	if (!(st = open_db(c, "users")))
		return 1;
	puts("user\tconversations\tmessages\tlast_activity");
	rc = store_users(st, print_user, NULL, err);
	store_close(st);
	return rc == RC_OK ? 0 : fail("users", err);
}

#define CONV_PAGE 500

static int
cmd_conversations(const struct config *c, int argc, char **argv)
{
	char err[ERR_LEN];
	struct store *st;
	struct pool *p;
	struct conv *rows;
	struct page pg = {0, CONV_PAGE};
	int64_t total = 0;
	int n, i, rc = RC_OK;

	if (argc != 2 || argv[1][0] == '-')
		return misuse("conversations", "USER");
	if (!(p = pool_create()))
		return fail("conversations", "out of memory");
	if (!(st = open_db(c, "conversations"))) {
		pool_destroy(p);
		return 1;
	}
	puts("id\ttitle\tmessages\tupdated");
	do {
		pool_reset(p);
		rc = store_conv_list(st, p, argv[1], pg, &rows, &n, &total, err);
		for (i = 0; rc == RC_OK && i < n; i++) {
			put_field(rows[i].id);
			putchar('\t');
			put_field(rows[i].title);
			printf("\t%lld\t", (long long)rows[i].msg_count);
			put_time(rows[i].updated_at);
			putchar('\n');
		}
		pg.offset += n;
	} while (rc == RC_OK && n == CONV_PAGE);
	store_close(st);
	pool_destroy(p);
	return rc == RC_OK ? 0 : fail("conversations", err);
}

/* ---- purge ---- */

static int
cmd_purge(const struct config *c, int argc, char **argv)
{
	const char *date = NULL;
	struct store_purged got;
	char err[ERR_LEN], t[32];
	struct store *st;
	int64_t before;
	int dry = 0, i, rc;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dry-run") == 0)
			dry = 1;
		else if (strcmp(argv[i], "--deleted-before") == 0 && i + 1 < argc)
			date = argv[++i];
		else if (strncmp(argv[i], "--deleted-before=", 17) == 0)
			date = argv[i] + 17;
		else
			return misuse("purge", "--deleted-before DATE [--dry-run]");
	}
	if (!date)
		return misuse("purge", "--deleted-before DATE [--dry-run]");
	/* a date or a date and time, UTC (never bare epoch seconds: a typo must not be 1970) */
	if (!strchr(date, '-') || time_parse(date, &before) != RC_OK) {
		fprintf(stderr, "aichatd purge: '%s' is not YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z] "
			"(UTC)\n", date);
		return 2;
	}
	if (!(st = open_db(c, "purge")))
		return 1;
	rc = store_purge(st, before, dry, &got, err);
	store_close(st);
	if (rc != RC_OK)
		return fail("purge", err);
	time_iso(t, before, 1);
	printf("%s deleted before %s: %lld conversations, %lld messages, %lld runs, "
	       "%lld travel plans\n", dry ? "would purge (dry run)" : "purged", t,
	       (long long)got.conversations, (long long)got.messages, (long long)got.runs,
	       (long long)got.travel_plans);
	return 0;
}

/* ---- chown ---- */

static int
owner_ok(const char *u)
{
	size_t n = strlen(u);

	return n > 0 && utf8_valid(u, n) && utf8_count(u) <= OWNER_MAX;
}

static int
cmd_chown(const struct config *c, int argc, char **argv)
{
	const char *conv = NULL, *from = NULL, *to;
	char err[ERR_LEN];
	struct store *st;
	int64_t moved;
	int rc;

	if (argc == 4 && strcmp(argv[1], "--all-of") == 0)
		from = argv[2];
	else if (argc == 3 && argv[1][0] != '-')
		conv = argv[1];
	else
		return misuse("chown", "CONV NEWUSER | --all-of USER NEWUSER");
	to = argv[argc - 1];
	if (!owner_ok(to) || (from && !owner_ok(from))) {
		fprintf(stderr, "aichatd chown: a user id is 1 to %d characters of UTF-8\n",
			OWNER_MAX);
		return 2;
	}
	if (!(st = open_db(c, "chown")))
		return 1;
	rc = store_chown(st, conv, from, to, &moved, err);
	store_close(st);
	if (rc != RC_OK)
		return fail("chown", err);
	printf("moved %lld conversations to %s\n", (long long)moved, to);
	return 0;
}

/* ---- migrate, token, config ---- */

static int
cmd_migrate(const struct config *c, int argc, char **argv)
{
	char err[ERR_LEN], path[4096];
	struct store *st;
	int64_t from, to;
	int rc;

	(void)argv;
	if (argc != 1)
		return misuse("migrate", "");
	umask(077);
	snprintf(path, sizeof(path), "%s/run", c->data_dir);
	if ((mkdir(c->data_dir, 0700) != 0 && errno != EEXIST) ||
	    (mkdir(path, 0700) != 0 && errno != EEXIST)) {
		fprintf(stderr, "aichatd migrate: cannot create %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (config_private_files(c, err) != RC_OK || !(st = store_open(c->store_target, err)))
		return fail("migrate", err);
	rc = store_migrate_report(st, &from, &to, err);
	store_close(st);
	config_private_files(c, err);
	if (rc != RC_OK)
		return fail("migrate", err);
	if (from == to)
		printf("%s is at schema version %lld: nothing to do\n", store_name(c),
		       (long long)to);
	else
		printf("migrated %s from schema version %lld to %lld\n", store_name(c),
		       (long long)from, (long long)to);
	return 0;
}

/* Copy the data directory's SQLite store into an empty PostgreSQL database (the store
 * then to use: database_url = URL). The SQLite file is left as it was. */
static int
cmd_migrate_to(const struct config *c, int argc, char **argv)
{
	struct store_copied n;
	char err[ERR_LEN];

	if (argc != 2 || !store_target_is_pg(argv[1]))
		return misuse("migrate-to", "postgresql://...");
	if (access(c->db_path, F_OK) != 0) {
		fprintf(stderr, "aichatd migrate-to: no database at %s (data_dir %s): %s\n",
			c->db_path, c->data_dir, strerror(errno));
		return 1;
	}
	if (store_copy_to_pg(c->db_path, argv[1], &n, err) != RC_OK)
		return fail("migrate-to", err);
	printf("copied %s to the PostgreSQL database: %lld conversations, %lld messages, "
	       "%lld runs, %lld model configs, %lld log lines, %lld travel plans\n",
	       c->db_path, (long long)n.conversations, (long long)n.messages, (long long)n.runs,
	       (long long)n.model_configs, (long long)n.logs, (long long)n.travel_plans);
	return 0;
}

static int
cmd_token(const struct config *c, int argc, char **argv)
{
	int64_t ttl = 86400;
	char *tok;

	if (argc < 2 || argc > 4)
		return misuse("token", "SUB [ROLE [TTL_S]]");
	if (argc == 4 && parse_uint(argv[3], 100L * 365 * 86400, &ttl) != RC_OK) {
		fprintf(stderr, "aichatd token: TTL_S must be a positive number of seconds\n");
		return 2;
	}
	if (!*c->jwt_secret)
		return fail("token", "no jwt_secret is configured");
	tok = token_mint(c->jwt_secret, argv[1], argc > 2 ? argv[2] : NULL, (long)ttl);
	if (!tok)
		return fail("token", "cannot sign a token");
	puts(tok);
	free(tok);
	return 0;
}

static int
cmd_config(const struct config *c, int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return misuse("config", "");
	config_print(c, stdout);
	return 0;
}

const struct admin_cmd admin_commands[] = {
	{"backup", "[--force] FILE", "copy the database to FILE, safe while the stack runs",
	 "Copies the database of the settings in force to FILE with SQLite's online backup:\n"
	 "one consistent snapshot, safe while the stack runs and writes. The copy is written\n"
	 "as FILE.tmp-PID, synced and renamed to FILE (mode 0600). An existing FILE is\n"
	 "refused unless --force is given. Restore: stop aichatd and aichatd-push, copy the\n"
	 "backup over DATA_DIR/aichatd.db, remove aichatd.db-wal and aichatd.db-shm, start\n"
	 "both again.\n",
	 cmd_backup},
	{"users", "", "list users: conversations, messages, last activity",
	 "Lists the owners of conversations that are not deleted, one a line, tab-separated\n"
	 "after a header: user, conversations, messages (as the API counts them), the time\n"
	 "of the latest update (ISO 8601, UTC).\n",
	 cmd_users},
	{"conversations", "USER", "list a user's conversations",
	 "Lists USER's conversations that are not deleted, newest update first, one a line,\n"
	 "tab-separated after a header: id, title, messages, updated (ISO 8601, UTC).\n",
	 cmd_conversations},
	{"purge", "--deleted-before DATE [--dry-run]", "remove soft-deleted rows for good",
	 "Removes for good the conversations and messages deleted (through the API) before\n"
	 "DATE, and what hangs off them: a removed conversation's messages, AI runs (im's\n"
	 "records) and travel plans; a removed message's runs and travel plans. Rows a run\n"
	 "still running uses stay for a later purge. DATE is YYYY-MM-DD (midnight) or\n"
	 "YYYY-MM-DDTHH:MM[:SS][Z], UTC. Prints the counts; --dry-run changes nothing and\n"
	 "prints what would go.\n",
	 cmd_purge},
	{"chown", "CONV NEWUSER | --all-of USER NEWUSER", "give conversations to another user",
	 "Gives conversation CONV, or every conversation of USER (--all-of), to NEWUSER, with\n"
	 "the messages the old owner sent in them. With auth = off, conversations belong to\n"
	 "the user_id the client named, or default_user; with auth = jwt to the token's sub:\n"
	 "`aichatd chown --all-of default_user alice` keeps auth-off data for alice.\n",
	 cmd_chown},
	{"migrate", "", "apply the database migrations and say what was done",
	 "Applies the schema migrations this program has and the database lacks (making the\n"
	 "data directory and the database when absent), and prints the version before and\n"
	 "after. A database newer than the program is refused with exit status 1 (so is\n"
	 "serve, and aichatd-push).\n",
	 cmd_migrate},
	{"migrate-to", "URL", "copy the SQLite store into an empty PostgreSQL database",
	 "Copies every row of the data directory's SQLite database (conversations, messages,\n"
	 "runs, model configs, the log, travel plans; ids and times unchanged) into the empty\n"
	 "PostgreSQL database URL (postgresql://...), after applying its migrations, in one\n"
	 "transaction. Stop the stack first; then set database_url = URL. The SQLite file is\n"
	 "left as it was. A database that already holds data is refused (exit status 1).\n",
	 cmd_migrate_to},
	{"token", "SUB [ROLE [TTL_S]]", "mint an HS256 token (needs jwt_secret)",
	 "Prints an HS256 JWT for user SUB signed with jwt_secret: with \"role\": ROLE when\n"
	 "given (admin: model-config writes and logs), valid for TTL_S seconds (default\n"
	 "86400).\n",
	 cmd_token},
	{"config", "", "print the settings in force and where each came from",
	 "Prints the settings file looked for, then every setting as `key = value  # source`,\n"
	 "the source being default, file PATH:LINE, environment AICHATD_KEY or computed.\n"
	 "jwt_secret and openai_api_key show as ******** when set; URLs show their password\n"
	 "and query values masked, and n8n_webhook_url its path too.\n",
	 cmd_config},
	{NULL, NULL, NULL, NULL, NULL},
};
