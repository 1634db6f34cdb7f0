/* A tiny unit-test harness: CHECK records a failure and goes on; each test file exposes
 * one function that the runner in unit.c calls. */
#ifndef AICHATD_UNIT_H
#define AICHATD_UNIT_H

#include <stdio.h>
#include <string.h>

extern int unit_failed, unit_checks;
extern const char *unit_current;

#define CHECK(cond)                                                                           \
	do {                                                                                  \
		unit_checks++;                                                                \
		if (!(cond)) {                                                                \
			unit_failed++;                                                        \
			fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__,  \
				unit_current, #cond);                                         \
		}                                                                             \
	} while (0)
#define CHECK_STR(a, b)                                                                       \
	do {                                                                                  \
		const char *a_ = (a), *b_ = (b);                                              \
		unit_checks++;                                                                \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                      \
			unit_failed++;                                                        \
			fprintf(stderr, "  %s:%d: %s: \"%s\" != \"%s\"\n", __FILE__, __LINE__,   \
				unit_current, a_ ? a_ : "(null)", b_ ? b_ : "(null)");        \
		}                                                                             \
	} while (0)

void t_util(void);
void t_metrics(void);
void t_buf(void);
void t_router(void);
void t_json(void);
void t_token(void);
void t_store(void);
void t_push(void);
void t_upstream(void);
void t_provider(void);
void t_lifecycle(void);
void t_ws(void);
void t_config(void);
void t_admin(void);
void t_pg(void);
void t_pg_same(void);
void t_pg_run(void);
void t_bus(void);

/* The PostgreSQL server the suites test against (tests/unit/t-pg.c): AICHATD_TEST_PG_URL,
 * or one started on first use with tests/lib/pg-instance and stopped at exit; NULL when
 * there is none. unit_pg_fresh() makes database name on it afresh (dropped first if it
 * exists) and writes its URL into url. */
const char *unit_pg_url(void);
int unit_pg_fresh(const char *name, char *url, size_t size);

#endif
