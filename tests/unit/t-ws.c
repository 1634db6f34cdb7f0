/* WebSocket frame headers (src/lib/ws-frame.c) and the tables' hash (src/lib/hash.c) */
#include <stdint.h>

#include "unit.h"
#include "ws-frame.h"
#include "hash.h"

/* A client header: fin, opcode, masked, with len in the form given by len7 (126 or 127
 * for the long forms, else len itself). */
static size_t
client_header(unsigned char *h, int fin, int op, uint64_t len, int len7)
{
	size_t n = 2;
	int i;

	h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
	h[1] = (unsigned char)(0x80 | len7);
	if (len7 == 126) {
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		n = 4;
	} else if (len7 == 127) {
		for (i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
		n = 10;
	}
	return n + 4; /* the mask follows */
}

static void
t_sizes(void)
{
	unsigned char h[WSFRAME_HEADER_MAX] = {0};

	CHECK(wsframe_header_size(h, 0) == 2);
	CHECK(wsframe_header_size(h, 1) == 2);
	CHECK(client_header(h, 1, WSFRAME_TEXT, 5, 5) == 6);
	CHECK(wsframe_header_size(h, 2) == 6);
	CHECK(wsframe_payload_len(h) == 5);
	CHECK(client_header(h, 1, WSFRAME_TEXT, 300, 126) == 8);
	CHECK(wsframe_header_size(h, 2) == 8);
	CHECK(wsframe_payload_len(h) == 300);
	CHECK(client_header(h, 1, WSFRAME_BINARY, (uint64_t)1 << 40, 127) == 14);
	CHECK(wsframe_header_size(h, 2) == 14);
	CHECK(wsframe_payload_len(h) == (uint64_t)1 << 40);
	h[1] = 125; /* unmasked: no mask bytes */
	CHECK(wsframe_header_size(h, 2) == 2);
}

static void
t_checks(void)
{
	unsigned char h[WSFRAME_HEADER_MAX];

	client_header(h, 1, WSFRAME_TEXT, 5, 5);
	CHECK(wsframe_check(h, 5, 0) == NULL);
	CHECK_STR(wsframe_check(h, 5, 1), "new message inside a fragmented one");
	h[0] |= 0x40;
	CHECK_STR(wsframe_check(h, 5, 0), "reserved bits set");
	client_header(h, 1, 3, 5, 5);
	CHECK_STR(wsframe_check(h, 5, 0), "unknown opcode");
	client_header(h, 1, 0xb, 5, 5);
	CHECK_STR(wsframe_check(h, 5, 0), "unknown opcode");
	client_header(h, 1, WSFRAME_TEXT, 5, 5);
	h[1] &= 0x7f;
	CHECK_STR(wsframe_check(h, 5, 0), "unmasked frame");
	client_header(h, 1, WSFRAME_BINARY, (uint64_t)1 << 63, 127);
	CHECK_STR(wsframe_check(h, (uint64_t)1 << 63, 0), "frame length over 2^63");
	client_header(h, 1, WSFRAME_TEXT, 100, 126);
	CHECK_STR(wsframe_check(h, 100, 0), "length not in its shortest form");
	client_header(h, 1, WSFRAME_TEXT, 65535, 127);
	CHECK_STR(wsframe_check(h, 65535, 0), "length not in its shortest form");
	client_header(h, 1, WSFRAME_TEXT, 65536, 127);
	CHECK(wsframe_check(h, 65536, 0) == NULL);
	client_header(h, 0, WSFRAME_PING, 0, 0);
	CHECK_STR(wsframe_check(h, 0, 0), "fragmented control frame");
	client_header(h, 1, WSFRAME_PING, 126, 126);
	CHECK_STR(wsframe_check(h, 126, 0), "control frame over 125 bytes");
	client_header(h, 1, WSFRAME_PING, 125, 125);
	CHECK(wsframe_check(h, 125, 1) == NULL); /* control frames may come between fragments */
	client_header(h, 1, WSFRAME_CLOSE, 1, 1);
	CHECK_STR(wsframe_check(h, 1, 0), "close frame of 1 byte");
	client_header(h, 1, WSFRAME_CLOSE, 2, 2);
	CHECK(wsframe_check(h, 2, 0) == NULL);
	client_header(h, 1, WSFRAME_CONT, 3, 3);
	CHECK_STR(wsframe_check(h, 3, 0), "continuation outside a message");
	CHECK(wsframe_check(h, 3, 1) == NULL);
}

static void
t_server(void)
{
	unsigned char h[WSFRAME_SERVER_HEADER_MAX];
	static const uint64_t lens[] = {0, 125, 126, 65535, 65536, (uint64_t)1 << 33};
	static const size_t sizes[] = {2, 2, 4, 4, 10, 10};
	size_t i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		CHECK(wsframe_server_header(h, WSFRAME_TEXT, lens[i]) == sizes[i]);
		CHECK(h[0] == 0x81);
		CHECK(!(h[1] & 0x80)); /* a server's frames are not masked */
		CHECK(wsframe_header_size(h, 2) == sizes[i]);
		CHECK(wsframe_payload_len(h) == lens[i]);
	}
	CHECK(wsframe_server_header(h, WSFRAME_CLOSE, 2) == 2 && h[0] == 0x88 && h[1] == 2);
}

static void
t_hash(void)
{
	/* the published FNV-1a 32-bit values */
	CHECK(hash_str("") == 0x811c9dc5u);
	CHECK(hash_str("a") == 0xe40c292cu);
	CHECK(hash_str("foobar") == 0xbf9cf968u);
}

void
t_ws(void)
{
	t_sizes();
	t_checks();
	t_server();
	t_hash();
}
