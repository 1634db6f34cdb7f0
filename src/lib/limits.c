/* limits: the shared bounds' checks (see limits.h). */
#include <stddef.h>

#include "util.h"
#include "limits.h"

enum limit_content
limit_content(const char *s)
{
	if (!s || utf8_blank(s))
		return CONTENT_EMPTY;
	if (utf8_count(s) > CONTENT_MAX)
		return CONTENT_LONG;
	return CONTENT_OK;
}

int
limit_session_id(const char *s)
{
	return s && *s && utf8_count(s) <= SESSION_ID_MAX;
}
