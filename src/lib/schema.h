/* The migrations in schema/NNN_name.sql, compiled in by scripts/embed-schema (schema.c is
 * generated at build time). Ordered by version. */
#ifndef AICHATD_SCHEMA_H
#define AICHATD_SCHEMA_H

#include <stddef.h>

struct schema_migration {
	int version;      /* the file name's leading number */
	const char *name; /* the file name */
	const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const size_t schema_migrations_count;

#endif
