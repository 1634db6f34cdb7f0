/* The push daemon's own lines (no operation-log entry: those go through oplog.h): one line
 * on stderrs at level warning (log_line) or info (log_info), in oplog's format, "aichatd-push[PID]: warning: ...". */
#ifndef AICHATD_PUSH_LOG_H
#define AICHATD_PUSH_LOG_H

void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same at level info (what the daemon found at start, say). */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
