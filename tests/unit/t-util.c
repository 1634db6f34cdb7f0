/* ids, times, UTF-8 and integer parsing */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
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
	CHECK(utf8_valid("abcdefgh你好abcdefghijklmnop", 30));
	CHECK(!utf8_valid("abcdefgh\xff" "abcdefgh", 17)); /* past the eight-byte ASCII steps */

	/* cuts on character boundaries */
	CHECK(utf8_fit("你好", 6, 5) == 3);
	CHECK(utf8_fit("你好", 6, 4) == 3);
	CHECK(utf8_fit("你好", 6, 3) == 3);
	CHECK(utf8_fit("你好", 6, 2) == 0);
	CHECK(utf8_fit("a😀", 5, 4) == 1);
	CHECK(utf8_fit("abc", 3, 10) == 3);
	CHECK(utf8_fit("ab\xe4\xbd", 4, 10) == 2); /* a text that ends inside a character */
	CHECK(utf8_fit("\x80\x80\x80\x80", 4, 3) == 3); /* ill-formed: cut anywhere */
	{
		char b[16];
		memcpy(b, "ab你\xe5", 7); /* as snprintf leaves 好 cut after one byte */
		CHECK(strlen(b) == 6 && utf8_cut(b, 100) == 5 && strcmp(b, "ab你") == 0);
		snprintf(b, sizeof(b), "你好世界");
		CHECK(utf8_cut(b, 7) == 6 && strcmp(b, "你好") == 0);
		CHECK(utf8_cut(b, 0) == 0 && !*b);
	}
	/* mending: one U+FFFD per maximal ill-formed part, NULs too; cut to fit */
	{
		char b[64];
		CHECK(utf8_mend(b, sizeof(b), "ok", 2) == 2 && strcmp(b, "ok") == 0);
		CHECK(utf8_mend(b, sizeof(b), "a\xe4\xbd", 3) == 4 && strcmp(b, "a\xef\xbf\xbd") == 0);
		CHECK(utf8_mend(b, sizeof(b), "\xe4\xbdx\xff", 4) == 7 &&
		      strcmp(b, "\xef\xbf\xbdx\xef\xbf\xbd") == 0);
		CHECK(utf8_mend(b, sizeof(b), "\xed\xa0\x80", 3) == 9); /* surrogate: 3 parts */
		CHECK(utf8_mend(b, sizeof(b), "a\0b", 3) == 5 && strcmp(b, "a\xef\xbf\xbd" "b") == 0);
		CHECK(utf8_mend(b, 5, "ab你", 5) == 2 && strcmp(b, "ab") == 0);
		CHECK(utf8_mend(b, 6, "ab你", 5) == 5 && strcmp(b, "ab你") == 0);
		CHECK(utf8_mended_len("a\xe4\xbd你\xff", 7) == 10);
		CHECK(utf8_mend(b, sizeof(b), "a\xe4\xbd你\xff", 7) == 10 && utf8_valid(b, 10));
	}

	/* reals as people wrote them */
	{
		char b[256];
		size_t n;
		snprintf(b, sizeof(b), "{\"t\":0.69999999999999996,\"p\":0.10000000000000001,"
			 "\"e\":1.0000000000000001e-05,\"x\":2.5,\"n\":100,\"o\":1.0,"
			 "\"a\":[[0.69999999999999996,-1.0000000000000001e-05],[3.0000000000000004]],"
			 "\"s\":\"0.69999999999999996 \\\" 0.69999999999999996\",\"big\":1e+300}");
		n = num_shorten_json(b, strlen(b));
		b[n] = '\0';
		CHECK(strcmp(b, "{\"t\":0.7,\"p\":0.1,\"e\":1e-5,\"x\":2.5,\"n\":100,\"o\":1.0,"
			     "\"a\":[[0.7,-1e-5],[3.0000000000000004]],"
			     "\"s\":\"0.69999999999999996 \\\" 0.69999999999999996\",\"big\":1e300}") == 0);
		snprintf(b, sizeof(b), "[-0.0,123456789012345678,0.30000000000000004,1e22,2.0]");
		n = num_shorten_json(b, strlen(b));
		b[n] = '\0';
		CHECK(strcmp(b, "[-0.0,123456789012345678,0.30000000000000004,1e22,2.0]") == 0);
	}

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
	v = 42;
	CHECK(parse_uint("0", 100, &v) == RC_ERR && v == 42); /* a refusal leaves *out */

	/* the same with zero allowed */
	CHECK(parse_uint0("0", 100, &v) == RC_OK && v == 0);
	CHECK(parse_uint0("00", 100, &v) == RC_OK && v == 0);
	CHECK(parse_uint0("007", 100, &v) == RC_OK && v == 7);
	CHECK(parse_uint0("0", 0, &v) == RC_OK && v == 0);
	CHECK(parse_uint0("1", 0, &v) == RC_ERR);
	CHECK(parse_uint0("7", 5, &v) == RC_ERR && parse_uint("6", 5, &v) == RC_ERR);
	CHECK(parse_uint0("5", 5, &v) == RC_OK && v == 5);
	CHECK(parse_uint0("100", 100, &v) == RC_OK && v == 100);
	CHECK(parse_uint0("101", 100, &v) == RC_ERR);
	CHECK(parse_uint0("9223372036854775807", INT64_MAX, &v) == RC_OK && v == INT64_MAX);
	CHECK(parse_uint0("9223372036854775808", INT64_MAX, &v) == RC_ERR);
	CHECK(parse_uint0("99999999999999999999", INT64_MAX, &v) == RC_ERR);
	v = 42;
	CHECK(parse_uint0("", 100, &v) == RC_ERR && v == 42);
	CHECK(parse_uint0(NULL, 100, &v) == RC_ERR && v == 42);
	CHECK(parse_uint0("1x", 100, &v) == RC_ERR && v == 42);
	CHECK(parse_uint0("x", 100, &v) == RC_ERR);
	CHECK(parse_uint0("1.0", 100, &v) == RC_ERR);
	CHECK(parse_uint0("0x10", 100, &v) == RC_ERR);
	CHECK(parse_uint0("-0", 100, &v) == RC_ERR);
	CHECK(parse_uint0("+0", 100, &v) == RC_ERR);
	CHECK(parse_uint0("+1", 100, &v) == RC_ERR);
	CHECK(parse_uint0(" 0", 100, &v) == RC_ERR);
	CHECK(parse_uint0("0 ", 100, &v) == RC_ERR);
	CHECK(parse_uint0("\t1", 100, &v) == RC_ERR && v == 42);
}
