/*
 * addr: lists of client addresses, as nginx's allow takes them: space-separated IPv4 or
 * IPv6 addresses, each with an optional /prefix (a CIDR), or "all". Used for
 * metrics_allow: nginx is given the list as allow lines, and the pool checks REMOTE_ADDR
 * against it too.
 */
#ifndef AICHATD_ADDR_H
#define AICHATD_ADDR_H

#include <stddef.h>

#define ADDR_LIST_MAX 64 /* entries in a list */

/* RC_OK when every entry of list parses (and there is at least one), else RC_ERR with err
 * naming the first bad one. */
int addr_list_check(const char *list, char *err);
/* 1 when ip (an IPv4 or IPv6 address in text; an IPv4-mapped IPv6 one counts as its IPv4)
 * is in list, else 0 (also when ip or list does not parse). */
int addr_allowed(const char *list, const char *ip);

#endif
