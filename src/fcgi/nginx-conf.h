/*
 * nginx-conf: `aichatd nginx-conf`, the nginx snippet for the settings in force. The
 * templates are conf/aichatd-locations.conf.in and conf/aichatd-fastcgi.conf.in, built into
 * the program (scripts/embed-text); the snippet includes no file but nginx's own, so it can
 * live in /etc/nginx/snippets/ and be included in any server {} block.
 */
#ifndef AICHATD_NGINX_CONF_H
#define AICHATD_NGINX_CONF_H

#include <stdio.h>

#include "config.h"

/* the templates, as scripts/embed-text made them (generated src/fcgi/nginx-templates.c) */
extern const char nginx_locations_in[];
extern const char nginx_fastcgi_in[];

/* Write the snippet for c to out. In the templates, @KEY@ is replaced by a setting
 * (FCGI_SOCKET, PUSH_HTTP_SOCKET, BODY_LIMIT, FCGI_READ_TIMEOUT, METRICS_ALLOW: an
 * allow directive for each address of metrics_allow); a line holding only
 * @FASTCGI@ by the FastCGI block, indented as that line. RC_OK, or RC_ERR with err (an
 * unknown placeholder, a setting nginx could not read, a write error). */
int nginx_conf_write(const struct config *c, FILE *out, char *err);

#endif
