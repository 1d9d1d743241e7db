/*
 * Fuzz target: one datagram through the RFC 1928 §7 UDP header parser.
 * Invariants: header_len lies within the datagram and the RFC maximum,
 * the header alone re-parses identically, one byte less is TRUNCATED, and
 * the parsed address encodes back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_udp_header h, h2;
	uint8_t enc[PROTO_UDP_HEADER_MAX];
	struct sockaddr_storage ss;
	socklen_t sl;
	char text[1100];
	enum proto_status rc;
	size_t n;

	memset(&h, 0xA5, sizeof(h));
	rc = proto_parse_udp_header(data, size, &h);
	CHECK(rc != PROTO_NEED_MORE);
	if (rc != PROTO_OK) {
		CHECK(rc == PROTO_ERR_TRUNCATED || rc == PROTO_ERR_RESERVED ||
			rc == PROTO_ERR_ATYP || rc == PROTO_ERR_EMPTY_NAME ||
			rc == PROTO_ERR_BAD_NAME);
		return 0;
	}

	/* Smallest header: a one-byte domain name (3 + 1 + 1 + 1 + 2). */
	CHECK(h.header_len >= 8 && h.header_len <= size);
	CHECK(h.header_len <= PROTO_UDP_HEADER_MAX);
	CHECK(h.frag == data[2]);
	memset(&h2, 0xA5, sizeof(h2));
	CHECK(proto_parse_udp_header(data, h.header_len, &h2) == PROTO_OK);
	CHECK(memcmp(&h, &h2, sizeof(h)) == 0);
	CHECK(proto_parse_udp_header(data, h.header_len - 1, &h2) == PROTO_ERR_TRUNCATED);

	n = proto_encode_addr(enc, sizeof(enc), &h.dst);
	CHECK(3 + n == h.header_len);
	CHECK(memcmp(enc, data + 3, n) == 0);
	proto_addr_format(&h.dst, text, sizeof(text));
	CHECK(strlen(text) < sizeof(text));

	if (h.dst.atyp == SOCKS_ATYP_DOMAIN) {
		CHECK(strlen(h.dst.name) == h.dst.name_len);
		return 0;
	}
	/* The header we send back for a reply from that address. */
	CHECK(proto_addr_to_sockaddr(&h.dst, &ss, &sl) == 0);
	n = proto_encode_udp_header(enc, (struct sockaddr *)&ss);
	CHECK(n == 10 || n == 22);
	CHECK(enc[0] == 0 && enc[1] == 0 && enc[2] == 0);
	if (n == h.header_len)
		CHECK(memcmp(enc + 3, data + 3, n - 3) == 0);
	return 0;
}
