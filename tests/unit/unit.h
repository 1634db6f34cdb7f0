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
void t_bus(void);

#endif
