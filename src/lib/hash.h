/*
 * The bucket hash of the daemon's in-memory tables (runs by reply message, connections by
 * client address, subscribers by topic): 32-bit FNV-1a, small and fast on short keys.
 * Not a defence against keys chosen to collide: every table it serves is capped by the
 * connections or runs it holds, whatever their chains.
 */
#ifndef AICHATD_HASH_H
#define AICHATD_HASH_H

#include <stdint.h>

/* FNV-1a of the NUL-terminated string s. */
uint32_t hash_str(const char *s);

#endif
