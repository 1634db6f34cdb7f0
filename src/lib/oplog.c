/* The operation log: one line on stderr and a row in the database (see oplog.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <unistd.h>

#include "rc.h"
#include "store.h"
#include "oplog.h"

#define OPLOG_MAX 1024

static const char *prog = "aichatd";

void
oplog_init(const char *program)
{
	prog = program;
}

/* syslog's priorities, as sd-daemon.h spells them: <3> error, <4> warning, <6> info */
static int
priority(const char *level)
{
	if (strcmp(level, "error") == 0)
		return 3;
	if (strcmp(level, "warning") == 0)
		return 4;
	return 6;
}

static void
line(const char *level, const char *msg)
{
	char out[OPLOG_MAX + 128], pri[8] = "";
	int n;

	/* journald reads the prefix; a terminal or a file gets the plain line */
	if (getenv("JOURNAL_STREAM"))
		snprintf(pri, sizeof(pri), "<%d>", priority(level));
	n = snprintf(out, sizeof(out), "%s%s[%ld]: %s: %s\n", pri, prog, (long)getpid(), level,
		     msg);
	if (n >= (int)sizeof(out)) {
		n = (int)sizeof(out) - 1;
		out[n - 1] = '\n';
	}
	/* one write: lines of several threads and processes do not interleave */
	if (write(STDERR_FILENO, out, (size_t)n) < 0)
		return;
}

static void
vformat(char *msg, const char *fmt, va_list ap)
{
	vsnprintf(msg, OPLOG_MAX, fmt, ap);
	/* one line each, whatever the message holds */
	for (char *s = msg; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

void
oplog(struct store *st, const char *level, const char *fmt, ...)
{
	char msg[OPLOG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vformat(msg, fmt, ap);
	va_end(ap);
	line(level, msg);
	if (st && store_log(st, level, msg) != RC_OK)
		line("warning", "cannot write the entry above to the database's log");
}

void
oplog_vstderr(const char *level, const char *fmt, va_list ap)
{
	char msg[OPLOG_MAX];

	vformat(msg, fmt, ap);
	line(level, msg);
}

void
oplog_stderr(const char *level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	oplog_vstderr(level, fmt, ap);
	va_end(ap);
}
