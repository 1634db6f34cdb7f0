/*
 * limits: the bounds every dialect and both programs apply to what clients send, with
 * their checks, so that a message refused by one route is refused by all.
 */
#ifndef AICHATD_LIMITS_H
#define AICHATD_LIMITS_H

#define CONTENT_MAX 5000   /* code points of a message's content */
#define SESSION_ID_MAX 48  /* code points of a client-named session id */
#define USER_ID_MAX 128    /* code points of a user id given in a body or path */

enum limit_content { CONTENT_OK, CONTENT_EMPTY, CONTENT_LONG };

/* A message's content: CONTENT_EMPTY when NULL, empty or only white space (Unicode's
 * spaces included), CONTENT_LONG over CONTENT_MAX code points, else CONTENT_OK. */
enum limit_content limit_content(const char *s);
/* 1 when s is a usable client-named session id (1 to SESSION_ID_MAX code points), else 0. */
int limit_session_id(const char *s);

#endif
