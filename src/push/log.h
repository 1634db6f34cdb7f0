/* The push daemon's log: one line on stderr, "aichatd-push: " and the message (systemd's
 * journal, or the stack's log file, keeps it). */
#ifndef AICHATD_PUSH_LOG_H
#define AICHATD_PUSH_LOG_H

void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
