/*
 * admin: aichatd's administration subcommands (backup, users, conversations, purge,
 * chown, migrate, token, config), each working on the settings in force and so on their
 * data directory's database, beside a running stack (the store's busy timeout and WAL make
 * room for them). main() dispatches through admin_commands.
 */
#ifndef AICHATD_ADMIN_H
#define AICHATD_ADMIN_H

struct config;

/* A subcommand: its name, its arguments and one line for aichatd --help, the text of
 * `aichatd NAME --help`, and its function, which gets the settings loaded and the
 * arguments after the name, and returns the exit status (0, 1 on failure, 2 on misuse;
 * messages on stderr). */
struct admin_cmd {
	const char *name;
	const char *args;
	const char *summary;
	const char *help;
	int (*run)(const struct config *c, int argc, char **argv);
};

/* The subcommands, ended by one whose name is NULL. */
extern const struct admin_cmd admin_commands[];

#endif
