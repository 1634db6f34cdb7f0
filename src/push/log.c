/* The push daemon's log (see log.h). */
#include <stdio.h>
#include <stdarg.h>

#include "oplog.h"
#include "log.h"

void
log_line(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	oplog_stderr("warning", "%s", msg);
}

void
log_info(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	oplog_stderr("info", "%s", msg);
}
