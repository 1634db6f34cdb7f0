/* WebSocket frame headers (see ws-frame.h). */
#include "ws-frame.h"

size_t
wsframe_header_size(const unsigned char *h, size_t n)
{
	size_t len7;

	if (n < 2)
		return 2;
	len7 = h[1] & 0x7f;
	return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((h[1] & 0x80) ? 4 : 0);
}

uint64_t
wsframe_payload_len(const unsigned char *h)
{
	uint64_t len = h[1] & 0x7f;
	int i;

	if (len == 126)
		return (uint64_t)h[2] << 8 | h[3];
	if (len == 127) {
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | h[2 + i];
	}
	return len;
}

const char *
wsframe_check(const unsigned char *h, uint64_t len, int in_fragment)
{
	int op = h[0] & 0x0f, fin = h[0] & 0x80, len7 = h[1] & 0x7f;

	if (h[0] & 0x70)
		return "reserved bits set"; /* no extension is negotiated */
	if ((op > WSFRAME_BINARY && op < WSFRAME_CLOSE) || op > WSFRAME_PONG)
		return "unknown opcode";
	if (!(h[1] & 0x80))
		return "unmasked frame";
	if (len7 == 127 && (len >> 63))
		return "frame length over 2^63";
	if ((len7 == 126 && len < 126) || (len7 == 127 && len < 65536))
		return "length not in its shortest form";
	if (op >= WSFRAME_CLOSE && !fin)
		return "fragmented control frame";
	if (op >= WSFRAME_CLOSE && len > 125)
		return "control frame over 125 bytes";
	if (op == WSFRAME_CLOSE && len == 1)
		return "close frame of 1 byte";
	if (op == WSFRAME_CONT && !in_fragment)
		return "continuation outside a message";
	if ((op == WSFRAME_TEXT || op == WSFRAME_BINARY) && in_fragment)
		return "new message inside a fragmented one";
	return NULL;
}

size_t
wsframe_server_header(unsigned char *out, int opcode, uint64_t len)
{
	int i;

	out[0] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		out[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		out[1] = 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		return 4;
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}
