/* The push daemon's log (see log.h). */
#include <stdio.h>
#include <stdarg.h>

#include "log.h"

void
log_line(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "aichatd-push: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
