/* metrics: address lists (addr.h) and the text format's histograms (prom.h). */
#include <string.h>
#include <stdio.h>

#include "unit.h"
#include "rc.h"
#include "buf.h"
#include "addr.h"
#include "prom.h"

void
t_metrics(void)
{
	char err[ERR_LEN];
	struct prom_hist h;
	static const struct prom_bounds b = {3, {1, 2, 4}, 1};
	struct buf out;

	CHECK(addr_list_check("127.0.0.1 ::1", err) == RC_OK);
	CHECK(addr_list_check("10.0.0.0/8  192.168.1.0/24 2001:db8::/32 all", err) == RC_OK);
	CHECK(addr_list_check("", err) == RC_ERR);
	CHECK(addr_list_check("   ", err) == RC_ERR);
	CHECK(addr_list_check("127.0.0.1;", err) == RC_ERR);
	CHECK(addr_list_check("127.0.0.1; allow all", err) == RC_ERR);
	CHECK(addr_list_check("10.0.0.0/33", err) == RC_ERR);
	CHECK(addr_list_check("::/129", err) == RC_ERR);
	CHECK(addr_list_check("10.0.0.0/", err) == RC_ERR);
	CHECK(addr_list_check("10.0.0.0/-1", err) == RC_ERR);
	CHECK(addr_list_check("localhost", err) == RC_ERR);

	CHECK(addr_allowed("127.0.0.1 ::1", "127.0.0.1") == 1);
	CHECK(addr_allowed("127.0.0.1 ::1", "::1") == 1);
	CHECK(addr_allowed("127.0.0.1 ::1", "127.0.0.2") == 0);
	CHECK(addr_allowed("127.0.0.1 ::1", "::ffff:127.0.0.1") == 1);
	CHECK(addr_allowed("127.0.0.1 ::1", NULL) == 0);
	CHECK(addr_allowed("127.0.0.1 ::1", "") == 0);
	CHECK(addr_allowed("127.0.0.1 ::1", "127.0.0.1/8") == 0);
	CHECK(addr_allowed("10.0.0.0/8", "10.255.1.2") == 1);
	CHECK(addr_allowed("10.0.0.0/8", "11.0.0.1") == 0);
	CHECK(addr_allowed("192.168.1.128/25", "192.168.1.200") == 1);
	CHECK(addr_allowed("192.168.1.128/25", "192.168.1.100") == 0);
	CHECK(addr_allowed("2001:db8::/32", "2001:db8:1::5") == 1);
	CHECK(addr_allowed("2001:db8::/32", "2001:db9::5") == 0);
	CHECK(addr_allowed("0.0.0.0/0", "8.8.8.8") == 1);
	CHECK(addr_allowed("all", "8.8.8.8") == 1);
	CHECK(addr_allowed("192.0.2.7", "127.0.0.1") == 0);

	memset(&h, 0, sizeof(h));
	prom_observe(&h, &b, 1);
	prom_observe(&h, &b, 3);
	prom_observe(&h, &b, 9);
	CHECK(prom_hist_count(&h) == 3);
	buf_init(&out, 4096);
	prom_hist_put(&out, "x", "k=\"v\"", &h, &b);
	CHECK_STR(out.s, "x_bucket{k=\"v\",le=\"1\"} 1\nx_bucket{k=\"v\",le=\"2\"} 1\n"
		  "x_bucket{k=\"v\",le=\"4\"} 2\nx_bucket{k=\"v\",le=\"+Inf\"} 3\n"
		  "x_sum{k=\"v\"} 13\nx_count{k=\"v\"} 3\n");
	buf_free(&out);
	CHECK(prom_rss(0) > 0);
}
