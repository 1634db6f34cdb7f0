/* The migrations in schema/NNN_name.sql (the SQLite store's) and schema/pg/NNN_name.sql
 * (the PostgreSQL store's), compiled in by scripts/embed-schema (schema.c and pg-schema.c
 * are generated at build time). Ordered by version. */
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
/* The PostgreSQL store's migrations, schema/pg/NNN_name.sql, likewise. */
extern const struct schema_migration pg_schema_migrations[];
extern const size_t pg_schema_migrations_count;

#endif
