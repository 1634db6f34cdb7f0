/*
 * WebSocket frame headers (RFC 6455 section 5.2), with no I/O: what the push daemon needs to
 * follow a client's byte stream frame by frame before any payload is kept, and to write its
 * own frames once for every subscriber. Prefix wsframe_. wslay still reads the client
 * messages these checks let through; see src/push/ws.c.
 */
#ifndef AICHATD_WS_FRAME_H
#define AICHATD_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WSFRAME_HEADER_MAX 14 /* 2 + 8 bytes of length + 4 of mask */
#define WSFRAME_SERVER_HEADER_MAX 10 /* a server frame has no mask */

enum wsframe_op {
	WSFRAME_CONT = 0x0, WSFRAME_TEXT = 0x1, WSFRAME_BINARY = 0x2,
	WSFRAME_CLOSE = 0x8, WSFRAME_PING = 0x9, WSFRAME_PONG = 0xa,
};

/* The size of the header whose first n bytes are h: 2 while n < 2 (the size is not known
 * before the second byte), else 2 to 14. */
size_t wsframe_header_size(const unsigned char *h, size_t n);
/* The payload length a whole header h declares (7, 16 or 64 bits, as sent). */
uint64_t wsframe_payload_len(const unsigned char *h);
/* The checks of section 5 on a client's frame header h declaring len payload bytes, with
 * in_fragment set while a fragmented data message is under way: NULL when it may be
 * read, else why not (a protocol error: close code 1002). A static string. */
const char *wsframe_check(const unsigned char *h, uint64_t len, int in_fragment);
/* Write into out (at least WSFRAME_SERVER_HEADER_MAX bytes) the header of a final, unmasked
 * frame of opcode carrying len bytes, in the shortest length form. Returns its size. */
size_t wsframe_server_header(unsigned char *out, int opcode, uint64_t len);

#endif
