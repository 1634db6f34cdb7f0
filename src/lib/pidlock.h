/*
 * pidlock: one program of each kind on a data directory. A lock file
 * $DATA_DIR/<name>.lock (beside the database, whatever run_dir is), held with flock() for the life of the process, with the
 * holder's PID written in it, so that a second one refuses to start and names the first.
 */
#ifndef AICHATD_PIDLOCK_H
#define AICHATD_PIDLOCK_H

/* Take the lock (making data_dir 0700 if it is missing): the lock's
 * descriptor (close-on-exec; kept open until exit, which releases it), or -1 with a message
 * in err (ERR_LEN bytes) naming the PID that holds it. Call it before touching anything
 * else in the data directory. */
int pidlock_take(const char *data_dir, const char *name, char *err);

#endif
