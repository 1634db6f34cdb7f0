/*
 * The control socket ($DATA/run/push.sock, mode 0600): the workers' wake-ups, waits, stops,
 * content reads and stats, one line each (the commands are in push-proto.h).
 */
#ifndef AICHATD_CONTROL_H
#define AICHATD_CONTROL_H

#include <stdint.h>
#include <uv.h>

#include "store.h"

/* Listen on path (an old socket there is replaced). RC_OK, or RC_ERR with err set. */
int control_listen(uv_loop_t *loop, struct store *st, const char *path, char *err);
/* Run id ended with status (its end is committed): answer its waiters. */
void control_ended(int64_t id, int status);
/* Answer the waiters whose run ended outside this daemon's sight (once a second). */
void control_check_waiters(void);
/* Close the listener and every connection. */
void control_close_all(void);

#endif
