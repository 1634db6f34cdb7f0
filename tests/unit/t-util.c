/* ids, times, UTF-8 and integer parsing */
#include <stdint.h>
#include <stdlib.h>
#include <ctype.h>

#include "unit.h"
#include "rc.h"
#include "util.h"

static int
is_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return 0;
	return 1;
}

void
t_util(void)
{
	char u[IDS_UUID_LEN + 1], u2[IDS_UUID_LEN + 1], m[IDS_STAMPED_MAX], t[32];
	int64_t v, ms;

	/* UUID v4: lower case, version 4, variant 10xx, dashes in place, unique */
	CHECK(ids_uuid4(u) == RC_OK && ids_uuid4(u2) == RC_OK);
	CHECK(strlen(u) == 36 && u[8] == '-' && u[13] == '-' && u[18] == '-' && u[23] == '-');
	CHECK(u[14] == '4' && strchr("89ab", u[19]) != NULL);
	CHECK(is_hex(u, 8) && is_hex(u + 24, 12));
	CHECK(strcmp(u, u2) != 0);

	/* msg_YYYYMMDDHHMMSS_xxxxxxxx from a known instant: 2025-01-27 12:00:00 UTC */
	CHECK(ids_stamped(m, "msg", 1737979200123LL) == RC_OK);
	CHECK(strncmp(m, "msg_20250127120000_", 19) == 0 && strlen(m) == 27 && is_hex(m + 19, 8));
	CHECK(ids_stamped(m, "record", 1737979200000LL) == RC_OK);
	CHECK(strncmp(m, "record_20250127120000_", 22) == 0 && strlen(m) == 30);
	/* in one second, one thread's digits increase by random steps of 1 to 2^20 (the
	 * indexes over them grow at a few points), starting again in the lower half past the
	 * top; a new second starts again in the lower half */
	{
		char prev[IDS_STAMPED_MAX];
		unsigned long a, b, steps = 0, nsteps = 0, restarts = 0;
		int k, ok = 1;

		CHECK(ids_stamped(prev, "msg", 1737979201000LL) == RC_OK);
		CHECK(strtoul(prev + 19, NULL, 16) < 0x80000000UL);
		for (k = 0; k < 10000; k++) {
			CHECK(ids_stamped(m, "msg", 1737979201000LL + k % 1000) == RC_OK);
			a = strtoul(prev + 19, NULL, 16);
			b = strtoul(m + 19, NULL, 16);
			if (b > a && b - a <= (1UL << 20)) {
				steps += b - a;
				nsteps++;
			} else if (a > 0xffffffffUL - (1UL << 20) && b < 0x80000000UL) {
				restarts++;
			} else {
				ok = 0;
			}
			strcpy(prev, m);
		}
		CHECK(ok);
		/* 10,000 steps of 2^19 on average pass the top once or twice; a run from the lower
		 * half takes at least 2,048 steps */
		CHECK(restarts >= 1 && restarts <= 5);
		CHECK(steps / nsteps > (1UL << 18) && steps / nsteps < 3 * (1UL << 18));
		CHECK(ids_stamped(m, "msg", 1737979202000LL) == RC_OK);
		CHECK(strncmp(m, "msg_20250127120002_", 19) == 0 && is_hex(m + 19, 8) &&
		      strtoul(m + 19, NULL, 16) < 0x80000000UL);
	}

	/* times per dialect */
	time_iso(t, 1737979200999LL, 0);
	CHECK_STR(t, "2025-01-27T12:00:00");
	time_iso(t, 1704067200000LL, 1);
	CHECK_STR(t, "2024-01-01T00:00:00Z");
	CHECK(time_parse("2024-01-01T00:00:00Z", &ms) == RC_OK && ms == 1704067200000LL);
	CHECK(time_parse("2024-01-01 00:00", &ms) == RC_OK && ms == 1704067200000LL);
	CHECK(time_parse("2024-01-01", &ms) == RC_OK && ms == 1704067200000LL);
	CHECK(time_parse("2025-01-27T12:00:00.5", &ms) == RC_OK && ms == 1737979200500LL);
	CHECK(time_parse("1704067200", &ms) == RC_OK && ms == 1704067200000LL);
	CHECK(time_parse("0", &ms) == RC_OK && ms == 0);
	CHECK(time_parse("2024-02-30T00:00:00Z", &ms) == RC_ERR);
	CHECK(time_parse("2024-01-01T25:00:00Z", &ms) == RC_ERR);
	CHECK(time_parse("yesterday", &ms) == RC_ERR);
	CHECK(time_parse("", &ms) == RC_ERR);
	CHECK(time_parse("2024-01-01T00:00:00Zjunk", &ms) == RC_ERR);

	/* UTF-8: code points, not bytes */
	CHECK(utf8_count("") == 0);
	CHECK(utf8_count("abc") == 3);
	CHECK(utf8_count("你好") == 2);
	CHECK(utf8_count("😀a") == 2);
	CHECK(utf8_prefix("你好世界", 2) == 6);
	CHECK(utf8_prefix("ab", 5) == 2);
	CHECK(utf8_valid("你好", 6));
	CHECK(!utf8_valid("\xff", 1));
	CHECK(!utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
	CHECK(!utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
	CHECK(!utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
	CHECK(!utf8_valid("\xe4\xbd", 2));         /* truncated */
	CHECK(utf8_blank("  \t\n") && utf8_blank("") && !utf8_blank(" x "));

	/* strict positive integers */
	CHECK(parse_uint("20", 100, &v) == RC_OK && v == 20);
	CHECK(parse_uint("100", 100, &v) == RC_OK && v == 100);
	CHECK(parse_uint("101", 100, &v) == RC_ERR);
	CHECK(parse_uint("0", 100, &v) == RC_ERR);
	CHECK(parse_uint("-1", 100, &v) == RC_ERR);
	CHECK(parse_uint("1.5", 100, &v) == RC_ERR);
	CHECK(parse_uint(" 1", 100, &v) == RC_ERR);
	CHECK(parse_uint("", 100, &v) == RC_ERR);
	CHECK(parse_uint("99999999999999999999", INT64_MAX, &v) == RC_ERR);
	CHECK(parse_uint("2147483647", 2147483647LL, &v) == RC_OK && v == 2147483647LL);
	CHECK(parse_uint("2147483648", 2147483647LL, &v) == RC_ERR);
}
