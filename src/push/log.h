/* The push daemon's own lines (no operation-log entry: those go through oplog.h): one line
 * on stderr at level warning, in oplog's format, "aichatd-push[PID]: warning: ...". */
#ifndef AICHATD_PUSH_LOG_H
#define AICHATD_PUSH_LOG_H

void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
