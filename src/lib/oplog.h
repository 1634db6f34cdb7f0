/*
 * oplog: the operation log (starts, stops, reloads, AI failures, settings changed, auth
 * failures). Every entry is one line on standard error, "aichatd[PID]: LEVEL: message"
 * (under systemd, where $JOURNAL_STREAM is set, led by the "<N>" syslog priority journald
 * reads, as sd-daemon.h's SD_INFO, SD_WARNING, SD_ERR), and a row of the database's log
 * that /api/v1/logs reads.
 */
#ifndef AICHATD_OPLOG_H
#define AICHATD_OPLOG_H

#include <stdarg.h>

struct store;

/* The program's name for the lines (a static string): "aichatd" or "aichatd-push". */
void oplog_init(const char *program);

/* One entry: level "info", "warning" or "error"; the message is cut at 1 KiB. The line
 * always; the row when st is not NULL (a failure to write it is said on stderr). */
void oplog(struct store *st, const char *level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The line alone, for what is no operation-log entry (a start-up failure, say). */
void oplog_stderr(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a va_list (the daemon's log_line and log_info wrap it). */
void oplog_vstderr(const char *level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#endif
