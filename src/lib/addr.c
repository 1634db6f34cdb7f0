/* addr: address lists and CIDR matching (addr.h). */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <arpa/inet.h>

#include "rc.h"
#include "addr.h"

struct net {
	int family;
	unsigned char a[16];
	int bits;
};

/* Parse one address, with /bits or not: 0, or -1. */
static int
net_parse(const char *s, size_t n, struct net *out)
{
	char text[64];
	const char *slash;
	int max;

	if (n == 0 || n >= sizeof(text))
		return -1;
	memcpy(text, s, n);
	text[n] = '\0';
	slash = strchr(text, '/');
	if (slash)
		text[slash - text] = '\0';
	if (inet_pton(AF_INET, text, out->a) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, text, out->a) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		return -1;
	}
	out->bits = max;
	if (slash) {
		const char *d = slash + 1;
		char *end;
		long b;

		if (*d < '0' || *d > '9' || strlen(d) > 3)
			return -1;
		b = strtol(d, &end, 10);
		if (*end || b > max)
			return -1;
		out->bits = (int)b;
	}
	return 0;
}

static int
net_has(const struct net *net, const struct net *ip)
{
	int full = net->bits / 8, rest = net->bits % 8;

	if (net->family != ip->family)
		return 0;
	if (memcmp(net->a, ip->a, (size_t)full) != 0)
		return 0;
	return rest == 0 || ((net->a[full] ^ ip->a[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Each entry of list in turn: calls fn(entry, len, arg) until it returns nonzero; returns
 * that, or 0. -1 for a list over ADDR_LIST_MAX entries. */
static int
each(const char *list, int (*fn)(const char *s, size_t n, void *arg), void *arg)
{
	int count = 0, r;

	while (*list) {
		size_t n;

		list += strspn(list, " \t");
		n = strcspn(list, " \t");
		if (!n)
			break;
		if (++count > ADDR_LIST_MAX)
			return -1;
		if ((r = fn(list, n, arg)) != 0)
			return r;
		list += n;
	}
	return 0;
}

static int
bad_entry(const char *s, size_t n, void *arg)
{
	struct net net;

	(void)arg;
	if (n == 3 && memcmp(s, "all", 3) == 0)
		return 0;
	return net_parse(s, n, &net) != 0;
}

int
addr_list_check(const char *list, char *err)
{
	const char *p = list + strspn(list, " \t");
	int r = each(list, bad_entry, NULL);

	if (!*p || r != 0) {
		snprintf(err, ERR_LEN, "metrics_allow must be 1 to %d addresses or CIDRs (or all), "
			 "space-separated: '%.80s'", ADDR_LIST_MAX, list);
		return RC_ERR;
	}
	return RC_OK;
}

static int
has_ip(const char *s, size_t n, void *arg)
{
	const struct net *ip = arg;
	struct net net;

	if (n == 3 && memcmp(s, "all", 3) == 0)
		return 1;
	return net_parse(s, n, &net) == 0 && net_has(&net, ip);
}

int
addr_allowed(const char *list, const char *ip)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct net a;

	if (!ip || strchr(ip, '/') || net_parse(ip, strlen(ip), &a) != 0)
		return 0;
	if (a.family == AF_INET6 && memcmp(a.a, mapped, 12) == 0) {
		memmove(a.a, a.a + 12, 4);
		a.family = AF_INET;
		a.bits = 32;
	}
	return each(list, has_ip, &a) == 1;
}
