/* The push daemon's log (see log.h). */
#include <stdio.h>
#include <stdarg.h>

#include "oplog.h"
#include "log.h"

void
log_line(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	oplog_vstderr("warning", fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	oplog_vstderr("info", fmt, ap);
	va_end(ap);
}
