#include <stdlib.h>

#include "unit.h"

int unit_failed, unit_checks;
const char *unit_current;

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{"util", t_util},     {"buf", t_buf},   {"router", t_router},
	{"json", t_json},     {"token", t_token}, {"store", t_store},
	{"push", t_push},     {"upstream", t_upstream}, {"provider", t_provider},
	{"ws", t_ws},         {"config", t_config},
	{"admin", t_admin},   {"metrics", t_metrics},
	{"lifecycle", t_lifecycle}, {"pg", t_pg},
	{"pg-same", t_pg_same}, {"pg-run", t_pg_run}, {"bus", t_bus},
};

int
main(void)
{
	size_t i;
	int passed = 0, failed = 0;

	for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		int before = unit_failed, checks = unit_checks;

		unit_current = tests[i].name;
		tests[i].fn();
		if (unit_failed == before) {
			printf("ok - unit %s (%d checks)\n", tests[i].name, unit_checks - checks);
			passed++;
		} else {
			printf("FAIL - unit %s (%d of %d checks failed)\n", tests[i].name,
			       unit_failed - before, unit_checks - checks);
			failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
