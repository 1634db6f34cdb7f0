/*
 * nginx-conf: fills the built-in nginx templates from the settings (see nginx-conf.h).
 */
#include <stdio.h>
#include <string.h>
#include <errno.h>

#include "rc.h"
#include "config.h"
#include "nginx-conf.h"

/* nginx reads these paths bare (unix:PATH, http://unix:PATH:): a space, a ';', a quote or a
 * brace would end or break the directive, so a path is refused unless it is made of
 * letters, digits and / . _ - + only */
static int
safe_path(const char *what, const char *p, char *err)
{
	const char *s;

	if (*p != '/') {
		snprintf(err, ERR_LEN, "%s %.150s is not an absolute path (nginx needs one)", what, p);
		return RC_ERR;
	}
	for (s = p; *s; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		    strchr("/._-+", *s))
			continue;
		snprintf(err, ERR_LEN, "%s %.150s holds a character nginx's configuration cannot "
			 "carry bare (only letters, digits and / . _ - +)", what, p);
		return RC_ERR;
	}
	return RC_OK;
}

/* metrics_allow (checked by config_load: addresses, CIDRs or "all") as one line of nginx
 * allow directives; anything but an address's characters is refused here too, since the
 * text goes into nginx's configuration bare. */
static int
allow_lines(const char *list, char *out, size_t n)
{
	size_t used = 0;
	const char *s = list;

	*out = 0;
	while (*s) {
		size_t len, i;
		int w;

		while (*s == ' ')
			s++;
		len = strcspn(s, " ");
		if (!len)
			break;
		for (i = 0; i < len; i++)
			if (!strchr("0123456789abcdefABCDEF.:/", s[i]) &&
			    !(len == 3 && memcmp(s, "all", 3) == 0))
				return RC_ERR;
		w = snprintf(out + used, n - used, "%sallow %.*s;", used ? " " : "", (int)len, s);
		if (w < 0 || (size_t)w >= n - used)
			return RC_ERR;
		used += (size_t)w;
		s += len;
	}
	return used ? RC_OK : RC_ERR;
}

/* The value of placeholder name (len bytes) into out; RC_ERR for an unknown name. */
static int
value(const struct config *c, const char *name, size_t len, char *out, size_t n)
{
	if (len == 11 && memcmp(name, "FCGI_SOCKET", len) == 0)
		snprintf(out, n, "%s", c->fcgi_socket);
	else if (len == 16 && memcmp(name, "PUSH_HTTP_SOCKET", len) == 0)
		snprintf(out, n, "%s", c->push_http_socket);
	else if (len == 10 && memcmp(name, "BODY_LIMIT", len) == 0)
		snprintf(out, n, "%zu", c->body_limit);
	else if (len == 17 && memcmp(name, "FCGI_READ_TIMEOUT", len) == 0)
		/* a worker waits for a whole reply (reply_timeout_s) when the daemon could not
		 * take a send: nginx waits that long and a little more */
		snprintf(out, n, "%ds", c->reply_timeout_s + 30);
	else if (len == 13 && memcmp(name, "METRICS_ALLOW", len) == 0)
		return allow_lines(c->metrics_allow ? c->metrics_allow : "", out, n);
	else
		return RC_ERR;
	return RC_OK;
}

/* One line (len bytes, no newline) with its @KEY@s (upper case and '_') replaced; any other
 * '@' (nginx's named locations) is left as it is. */
static int
put_line(const struct config *c, const char *line, size_t len, FILE *out, char *err)
{
	const char *s = line, *end = line + len;

	while (s < end) {
		const char *k = s + 1;
		char v[4096];

		if (*s != '@') {
			fputc(*s++, out);
			continue;
		}
		while (k < end && ((*k >= 'A' && *k <= 'Z') || *k == '_'))
			k++;
		if (k == s + 1 || k == end || *k != '@') {
			fputc(*s++, out);
			continue;
		}
		if (value(c, s + 1, (size_t)(k - s - 1), v, sizeof(v)) != RC_OK) {
			snprintf(err, ERR_LEN,
				 "nginx template: %.*s is unknown, or its setting cannot go into nginx bare",
				 (int)(k - s + 1 > 60 ? 60 : k - s + 1), s);
			return RC_ERR;
		}
		fputs(v, out);
		s = k + 1;
	}
	fputc('\n', out);
	return RC_OK;
}

/* Template text t, each line prefixed by indent; a line holding only @FASTCGI@ becomes the
 * FastCGI block (one level deep only: the block holds no @FASTCGI@ of its own, and its
 * comment lines are left out). */
static int
put_text(const struct config *c, const char *t, const char *indent, size_t ilen, int depth,
	 FILE *out, char *err)
{
	while (*t) {
		const char *nl = strchr(t, '\n'), *s = t;
		size_t len = nl ? (size_t)(nl - t) : strlen(t);

		while (s < t + len && (*s == '\t' || *s == ' '))
			s++;
		if (depth > 0 && *s == '#') {
			/* the block's comments are said once, in its template */
		} else if (depth == 0 && (size_t)(t + len - s) == 9 &&
			   memcmp(s, "@FASTCGI@", 9) == 0) {
			if (put_text(c, nginx_fastcgi_in, t, (size_t)(s - t), 1, out, err) != RC_OK)
				return RC_ERR;
		} else {
			if (len > 0)
				fwrite(indent, 1, ilen, out);
			if (put_line(c, t, len, out, err) != RC_OK)
				return RC_ERR;
		}
		t += len + (nl ? 1 : 0);
	}
	return RC_OK;
}

int
nginx_conf_write(const struct config *c, FILE *out, char *err)
{
	if (safe_path("the FastCGI socket", c->fcgi_socket, err) != RC_OK ||
	    safe_path("the push daemon's HTTP socket", c->push_http_socket, err) != RC_OK)
		return RC_ERR;
	if (put_text(c, nginx_locations_in, "", 0, 0, out, err) != RC_OK)
		return RC_ERR;
	if (fflush(out) != 0 || ferror(out)) {
		snprintf(err, ERR_LEN, "cannot write the snippet: %s", strerror(errno));
		return RC_ERR;
	}
	return RC_OK;
}
