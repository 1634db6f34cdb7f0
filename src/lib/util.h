/*
 * Small helpers: ids, times, UTF-8 text, integer parsing, JSON numbers.
 * Prefixes: ids_, time_, utf8_, parse_, num_.
 * Not all pure: the ids_ functions draw on the kernel's randomness (getrandom(), through a
 * per-thread buffer), and time_now_ms() and time_mono_ns() read the clocks. The rest
 * depend on their arguments only, do no I/O and keep no state, so any thread may call them.
 */
#ifndef AICHATD_UTIL_H
#define AICHATD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define IDS_UUID_LEN 36
#define IDS_STAMPED_MAX 48 /* "record_" + 14 digits + "_" + 8 hex, with room */

/* A lower-case UUID v4 into out (at least IDS_UUID_LEN + 1 bytes). RC_OK or RC_ERR. */
int ids_uuid4(char *out);
/* "<prefix>_YYYYMMDDHHMMSS_xxxxxxxx" for the UTC time ms, 8 random lower-case hex digits,
 * into out (at least IDS_STAMPED_MAX bytes). RC_OK, or RC_ERR when no randomness. */
int ids_stamped(char *out, const char *prefix, int64_t ms);
/* Fill buf with n random bytes from the kernel. RC_OK or RC_ERR. */
int ids_random(void *buf, size_t n);

/* Milliseconds since the epoch, UTC, from the real-time clock. */
int64_t time_now_ms(void);
/* Nanoseconds on CLOCK_MONOTONIC, for timeouts and intervals. */
int64_t time_mono_ns(void);
/* "2025-01-27T12:00:00" (zulu = 0) or "2025-01-27T12:00:00Z" (zulu = 1) into out[32]. */
void time_iso(char *out, int64_t ms, int zulu);
/* Parse "YYYY-MM-DD[T ]HH:MM[:SS][.fff][Z]", "YYYY-MM-DD" or integer epoch seconds into
 * milliseconds, UTC. RC_OK or RC_ERR. */
int time_parse(const char *s, int64_t *ms);

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int utf8_valid(const char *s, size_t len);
/* Code points in a well-formed UTF-8 string. */
size_t utf8_count(const char *s);
/* Bytes of the first n code points of a well-formed UTF-8 string. */
size_t utf8_prefix(const char *s, size_t n);
/* 1 when s is empty or only ASCII white space. */
int utf8_blank(const char *s);
/* The length of the longest prefix of s[0..len) of at most max bytes that does not end
 * inside a character: where text is cut to a size, cut it here. */
size_t utf8_fit(const char *s, size_t len, size_t max);
/* Cut the string s in place to at most max bytes on a character boundary (this also mends
 * a string that snprintf() cut inside its last character). Returns its new length. */
size_t utf8_cut(char *s, size_t max);
/* Copy s[0..len) into out (size bytes, at least 4), NUL-terminated, as well-formed UTF-8:
 * each ill-formed sequence (its maximal part, as Unicode recommends) and each NUL byte
 * becomes U+FFFD, and the copy stops before the first character that does not fit.
 * Returns the bytes written, without the NUL. */
size_t utf8_mend(char *out, size_t size, const char *s, size_t len);
/* The bytes utf8_mend() writes for all of s[0..len), without the NUL. */
size_t utf8_mended_len(const char *s, size_t len);

/* Parse a strict decimal integer from 0 to max (max >= 0): digits only, no sign, no
 * spaces, not empty; leading zeros are read as usual ("007" is 7, "00" is 0). RC_OK with
 * *out, or RC_ERR with *out untouched. */
int parse_uint0(const char *s, int64_t max, int64_t *out);
/* The same from 1 to max, for ids, pages and sizes, where 0 is no value ("0" is RC_ERR). */
int parse_uint(const char *s, int64_t max, int64_t *out);

/* Rewrite, in place, every real number of the JSON text s[0..len) (one that jansson wrote,
 * with 17 significant digits: 0.7 as 0.69999999999999996) in the shortest form that reads
 * back as the same double (0.7), as jansson would write it otherwise (1e-5, 2.0).
 * Integers and strings are left alone. Returns the new length (never longer). */
size_t num_shorten_json(char *s, size_t len);

#endif
