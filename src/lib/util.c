#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <stdint.h>
#include <errno.h>
#include <sys/random.h>
#include <pthread.h>

#include "rc.h"
#include "util.h"

int
ids_random(void *buf, size_t n)
{
	unsigned char *p = buf;

	while (n) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return RC_ERR;
		}
		p += got;
		n -= (size_t)got;
	}
	return RC_OK;
}

/*
 * The random part of ids, drawn from a per-thread buffer of getrandom() bytes refilled
 * 512 bytes at a time: a send draws three ids, and a syscall each was a twentieth of its
 * cost. A forked child must not reuse its parent's bytes: the fork handler empties the
 * buffer of the thread that forks (the only thread the child has).
 */
#define ID_POOL 512
static _Thread_local unsigned char id_pool[ID_POOL];
static _Thread_local size_t id_left;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

/* The last stamped id's second and random part (ids_stamped()). */
static _Thread_local int64_t stamp_second = -1;
static _Thread_local uint32_t stamp_last;

static void
id_forked(void)
{
	explicit_bzero(id_pool, sizeof(id_pool));
	id_left = 0;
	stamp_second = -1;
}

static void
id_setup(void)
{
	pthread_atfork(NULL, NULL, id_forked);
}

static int
id_random(unsigned char *out, size_t n)
{
	pthread_once(&id_once, id_setup);
	if (n > ID_POOL)
		return ids_random(out, n);
	if (id_left < n) {
		if (ids_random(id_pool, ID_POOL) != RC_OK)
			return RC_ERR;
		id_left = ID_POOL;
	}
	memcpy(out, id_pool + ID_POOL - id_left, n);
	explicit_bzero(id_pool + ID_POOL - id_left, n); /* each byte is handed out once */
	id_left -= n;
	return RC_OK;
}

static const char hexdig[] = "0123456789abcdef";

int
ids_uuid4(char *out)
{
	unsigned char r[16];
	int i, o = 0;

	if (id_random(r, sizeof(r)) != RC_OK)
		return RC_ERR;
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hexdig[r[i] >> 4];
		out[o++] = hexdig[r[i] & 15];
	}
	out[o] = '\0';
	return RC_OK;
}

/*
 * The 8 hex digits are random, and increase over the ids one thread stamps in one second:
 * the first of a second is drawn from the lower half of the range, each next one a random
 * step of 1 to STAMP_STEP past the one before (past the top, a new first). The UNIQUE
 * indexes over these ids then grow at a few points at a time instead of all over: with the
 * digits drawn afresh each time, a batch of sends touched a page of each index per id, and
 * its commit wrote two to three times the pages. Steps of up to 2^20 keep nearly all of
 * that (consecutive ids stay on one page or the next at thousands of ids a second) while
 * two ids in a row share only their first two or three digits; steps of up to 2^16 did no
 * better and left four digits shared, steps of up to 2^24 cost a third more per commit.
 */
#define STAMP_STEP (1u << 20)
int
ids_stamped(char *out, const char *prefix, int64_t ms)
{
	unsigned char r[4];
	time_t t = (time_t)(ms / 1000);
	uint32_t v;
	struct tm tm;
	char hex[9], ts[32];
	int i;

	if (t == stamp_second && stamp_last <= UINT32_MAX - STAMP_STEP) {
		if (id_random(r, 3) != RC_OK)
			return RC_ERR;
		v = stamp_last + 1 + (((uint32_t)r[0] << 16 | (uint32_t)r[1] << 8 | r[2]) & (STAMP_STEP - 1));
	} else {
		if (id_random(r, 4) != RC_OK)
			return RC_ERR;
		v = ((uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3]) >> 1;
	}
	stamp_second = t;
	stamp_last = v;
	for (i = 0; i < 8; i++)
		hex[i] = hexdig[(v >> (28 - 4 * i)) & 15];
	hex[8] = '\0';
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
	snprintf(out, IDS_STAMPED_MAX, "%.8s_%.14s_%s", prefix, ts, hex);
	return RC_OK;
}

int64_t
time_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
time_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
time_iso(char *out, int64_t ms, int zulu)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, zulu ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%dT%H:%M:%S", &tm);
}

static int
digits(const char **sp, int n, int *out)
{
	const char *s = *sp;
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return RC_ERR;
		v = v * 10 + (s[i] - '0');
	}
	*sp = s + n;
	*out = v;
	return RC_OK;
}

int
time_parse(const char *s, int64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	int64_t days, v = 0;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (!*s)
		return RC_ERR;
	if (strlen(s) <= 12 && !strchr(s, '-')) {
		/* integer epoch seconds, 0 being the epoch itself */
		if (parse_uint0(s, 253402300799LL, &v) != RC_OK)
			return RC_ERR;
		*ms = v * 1000;
		return RC_OK;
	}
	if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
	    digits(&s, 2, &d))
		return RC_ERR;
	if (*s == 'T' || *s == ' ') {
		s++;
		if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi))
			return RC_ERR;
		if (*s == ':') {
			s++;
			if (digits(&s, 2, &sec))
				return RC_ERR;
			if (*s == '.') {
				int n = 0;
				s++;
				while (*s >= '0' && *s <= '9') {
					if (n < 3)
						frac = frac * 10 + (*s - '0');
					n++;
					s++;
				}
				if (n == 0)
					return RC_ERR;
				while (n++ < 3)
					frac *= 10;
			}
		}
		if (*s == 'Z')
			s++;
	}
	if (*s)
		return RC_ERR;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    sec > 60)
		return RC_ERR;
	/* days from civil (Howard Hinnant's algorithm), independent of the local time zone */
	{
		int yy = mo <= 2 ? y - 1 : y;
		int era = yy / 400;
		int yoe = yy - era * 400;
		int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
		int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
		days = (int64_t)era * 146097 + doe - 719468;
	}
	*ms = ((days * 86400) + h * 3600 + mi * 60 + sec) * 1000 + frac;
	return RC_OK;
}

/* The length of the well-formed character at s (left > 0 bytes there), or 0 when the
 * bytes there are not one (no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t
utf8_seq(const unsigned char *s, size_t left)
{
	unsigned c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return left >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (left < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
			return 0; /* overlong, surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (left < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

/* The bytes of the ill-formed sequence at s that one U+FFFD stands for: the lead byte and
 * the continuation bytes that could still have followed it (a "maximal subpart"). */
static size_t
utf8_bad(const unsigned char *s, size_t left)
{
	unsigned c = s[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef)
		need = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		need = 4;
	else
		return 1;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (i = 1; i < need && i < left; i++) {
		if (s[i] < lo || s[i] > hi)
			break;
		lo = 0x80;
		hi = 0xbf;
	}
	return i;
}

int
utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + len;
	uint64_t w;
	size_t n;

	while (s < end) {
		if (*s < 0x80) {
			/* ASCII eight bytes at a time: stored text is read back through here */
			if (end - s >= 8) {
				memcpy(&w, s, 8);
				if (!(w & 0x8080808080808080ULL)) {
					s += 8;
					continue;
				}
			}
			s++;
		} else if ((n = utf8_seq(s, (size_t)(end - s)))) {
			s += n;
		} else {
			return 0;
		}
	}
	return 1;
}

size_t
utf8_fit(const char *str, size_t len, size_t max)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = len < max ? len : max, i = n, back = 0, need;

	while (i > 0 && back < 3 && (s[i - 1] & 0xc0) == 0x80) {
		i--;
		back++;
	}
	if (i == 0)
		return n;
	need = s[i - 1] >= 0xf0 ? 4 : s[i - 1] >= 0xe0 ? 3 : s[i - 1] >= 0xc0 ? 2 : 1;
	return need > back + 1 ? i - 1 : n;
}

size_t
utf8_cut(char *s, size_t max)
{
	size_t n = utf8_fit(s, strnlen(s, max), max);

	s[n] = '\0';
	return n;
}

size_t
utf8_mend(char *out, size_t size, const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + len;
	size_t o = 0, n;

	while (s < end) {
		n = *s ? utf8_seq(s, (size_t)(end - s)) : 0;
		if (n) {
			if (o + n >= size)
				break;
			memcpy(out + o, s, n);
			o += n;
			s += n;
		} else {
			if (o + 3 >= size)
				break;
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			s += *s ? utf8_bad(s, (size_t)(end - s)) : 1;
		}
	}
	if (size)
		out[o] = '\0';
	return o;
}

size_t
utf8_mended_len(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str, *end = s + len;
	size_t o = 0, n;

	while (s < end) {
		n = *s ? utf8_seq(s, (size_t)(end - s)) : 0;
		if (n) {
			o += n;
			s += n;
		} else {
			o += 3;
			s += *s ? utf8_bad(s, (size_t)(end - s)) : 1;
		}
	}
	return o;
}

size_t
utf8_count(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

size_t
utf8_prefix(const char *s, size_t n)
{
	size_t i = 0, seen = 0;

	for (; s[i]; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80) {
			if (seen == n)
				break;
			seen++;
		}
	}
	return i;
}

int
utf8_blank(const char *s)
{
	for (; *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\f' && *s != '\v')
			return 0;
	return 1;
}

int
parse_uint0(const char *s, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (!s || !*s)
		return RC_ERR;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return RC_ERR;
		/* v * 10 + digit > max, without overflow (and right for a max under 9 too) */
		if (v > max / 10 || v * 10 > max - (*s - '0'))
			return RC_ERR;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return RC_OK;
}

int
parse_uint(const char *s, int64_t max, int64_t *out)
{
	int64_t v;

	if (parse_uint0(s, max, &v) != RC_OK || v < 1)
		return RC_ERR;
	*out = v;
	return RC_OK;
}

/* The shortest "%.*g" of v that reads back as v, written as jansson writes reals: with a
 * ".0" when it would read as an integer, and an exponent with no '+' and no leading zeros. */
static size_t
num_shortest(char *out, size_t size, double v)
{
	char *e, *from;
	size_t n;
	int p;

	for (p = 1; p <= 17; p++) {
		snprintf(out, size, "%.*g", p, v);
		if (strtod(out, NULL) == v)
			break;
	}
	if (!strpbrk(out, ".eE") && strlen(out) + 2 < size)
		strcat(out, ".0");
	if ((e = strchr(out, 'e'))) {
		e++;
		if (*e == '+')
			memmove(e, e + 1, strlen(e));
		else if (*e == '-')
			e++;
		for (from = e; *from == '0' && from[1]; from++)
			;
		memmove(e, from, strlen(from) + 1);
	}
	n = strlen(out);
	return n;
}

size_t
num_shorten_json(char *s, size_t len)
{
	size_t i = 0, o = 0;

	while (i < len) {
		char c = s[i];

		if (c == '"') {
			/* a string, copied as it is */
			s[o++] = s[i++];
			while (i < len && s[i] != '"') {
				if (s[i] == '\\' && i + 1 < len)
					s[o++] = s[i++];
				s[o++] = s[i++];
			}
			if (i < len)
				s[o++] = s[i++];
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t start = i, n;
			int real = 0;
			char tok[64], best[40];

			while (i < len && (s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' ||
					   s[i] == 'E' || (s[i] >= '0' && s[i] <= '9'))) {
				real |= s[i] == '.' || s[i] == 'e' || s[i] == 'E';
				i++;
			}
			n = i - start;
			if (real && n < sizeof(tok)) {
				size_t m;
				memcpy(tok, s + start, n);
				tok[n] = '\0';
				m = num_shortest(best, sizeof(best), strtod(tok, NULL));
				if (m < n) {
					memcpy(s + o, best, m);
					o += m;
					continue;
				}
			}
			memmove(s + o, s + start, n);
			o += n;
		} else {
			s[o++] = s[i++];
		}
	}
	return o;
}
