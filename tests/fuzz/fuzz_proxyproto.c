/*
 * Fuzz target: a connection's first bytes through the PROXY protocol
 * header parser (v1 text and v2 binary).
 *
 * Invariants checked: consumed is zero unless OK, and for OK lies within
 * the input and the version's bound; an OK header re-parses identically
 * from exactly its own bytes and one byte less is NEED_MORE; every prefix
 * of the input is NEED_MORE or the same verdict as the whole (a bad byte is
 * rejected as soon as it arrives and stays rejected); NEED_MORE never asks
 * beyond the spec's sizes; the addresses match the wire, and a v1 line
 * written back from them parses to the same result (for TCP4 byte for byte).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                              \
	do {                                                                                  \
		if (!(x)) {                                                                   \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                              \
		}                                                                             \
	} while (0)

/* Prefixes this long are all re-parsed; the header's fixed part and any
 * v1 line fit, and longer v2 bodies only add bytes nobody looks at. */
#define PREFIX_CHECK 128

static void
check_v1_round_trip(const uint8_t *data, size_t consumed, const struct proxyproto_result *r)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], line[160];
	struct proxyproto_result r2;
	size_t c2;
	int n;
	bool v6 = r->src.sa.sa_family == AF_INET6;

	CHECK(inet_ntop(r->src.sa.sa_family,
		      v6 ? (const void *)&r->src.sin6.sin6_addr
			 : (const void *)&r->src.sin.sin_addr,
		      src, sizeof(src)) != NULL);
	CHECK(inet_ntop(r->dst.sa.sa_family,
		      v6 ? (const void *)&r->dst.sin6.sin6_addr
			 : (const void *)&r->dst.sin.sin_addr,
		      dst, sizeof(dst)) != NULL);
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n", v6 ? "TCP6" : "TCP4", src, dst,
		ntohs(v6 ? r->src.sin6.sin6_port : r->src.sin.sin_port),
		ntohs(v6 ? r->dst.sin6.sin6_port : r->dst.sin.sin_port));
	CHECK(n > 0 && (size_t)n < sizeof(line));
	/* inet_ntop may print an IPv6 address with an embedded dotted quad
	 * (::ffff:1.2.3.4), which the v1 format does not allow. */
	if (v6 && strchr(line, '.') != NULL)
		return;
	CHECK(proxyproto_parse((const uint8_t *)line, (size_t)n, &r2, &c2) == PROXYPROTO_OK);
	CHECK(c2 == (size_t)n);
	CHECK(memcmp(&r2, r, sizeof(r2)) == 0);
	/* IPv4 text has one canonical form: the input was exactly it. */
	if (!v6)
		CHECK((size_t)n == consumed && memcmp(line, data, consumed) == 0);
}

static void
check_ok(const uint8_t *data, size_t size, size_t consumed, const struct proxyproto_result *r)
{
	struct proxyproto_result r2;
	size_t c2;

	CHECK(consumed >= 1 && consumed <= size);
	CHECK(r->version == 1 || r->version == 2);
	memset(&r2, 0x5A, sizeof(r2));
	CHECK(proxyproto_parse(data, consumed, &r2, &c2) == PROXYPROTO_OK);
	CHECK(c2 == consumed && memcmp(&r2, r, sizeof(r2)) == 0);
	CHECK(proxyproto_parse(data, consumed - 1, &r2, &c2) == PROXYPROTO_NEED_MORE);
	CHECK(c2 == 0);

	if (!r->local) {
		CHECK(r->src.sa.sa_family == AF_INET || r->src.sa.sa_family == AF_INET6);
		CHECK(r->dst.sa.sa_family == r->src.sa.sa_family);
	}
	if (r->version == 1) {
		CHECK(consumed <= PROXYPROTO_V1_MAX);
		CHECK(memcmp(data, "PROXY ", 6) == 0);
		CHECK(data[consumed - 2] == '\r' && data[consumed - 1] == '\n');
		CHECK(memchr(data, '\n', consumed - 1) == NULL);
		if (!r->local)
			check_v1_round_trip(data, consumed, r);
		return;
	}
	CHECK(consumed >= 16 && consumed <= PROXYPROTO_V2_MAX);
	CHECK(consumed == 16 + (size_t)((data[14] << 8) | data[15]));
	CHECK(data[12] >> 4 == 2);
	if (r->local)
		return;
	CHECK(data[12] == 0x21);
	if (data[13] == 0x11) {
		CHECK(r->src.sa.sa_family == AF_INET);
		CHECK(memcmp(&r->src.sin.sin_addr, data + 16, 4) == 0);
		CHECK(memcmp(&r->dst.sin.sin_addr, data + 20, 4) == 0);
		CHECK(memcmp(&r->src.sin.sin_port, data + 24, 2) == 0);
		CHECK(memcmp(&r->dst.sin.sin_port, data + 26, 2) == 0);
	} else {
		CHECK(data[13] == 0x21);
		CHECK(r->src.sa.sa_family == AF_INET6);
		CHECK(memcmp(&r->src.sin6.sin6_addr, data + 16, 16) == 0);
		CHECK(memcmp(&r->dst.sin6.sin6_addr, data + 32, 16) == 0);
		CHECK(memcmp(&r->src.sin6.sin6_port, data + 48, 2) == 0);
		CHECK(memcmp(&r->dst.sin6.sin6_port, data + 50, 2) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_result r, poison, r2;
	enum proxyproto_status st, st2;
	size_t consumed, c2, k, upto;

	memset(&poison, 0xA5, sizeof(poison));
	r = poison;
	st = proxyproto_parse(data, size, &r, &consumed);
	CHECK(st >= PROXYPROTO_OK && st <= PROXYPROTO_ERR_TOO_LONG);
	CHECK(proxyproto_status_str(st) != NULL);
	if (st != PROXYPROTO_OK) {
		CHECK(consumed == 0);
		CHECK(memcmp(&r, &poison, sizeof(r)) == 0);
	}

	if (st == PROXYPROTO_OK)
		check_ok(data, size, consumed, &r);
	if (st == PROXYPROTO_NEED_MORE && size > 0) {
		if (data[0] == 'P')
			CHECK(size < PROXYPROTO_V1_MAX);
		else if (size >= 16)
			CHECK(size < 16 + (size_t)((data[14] << 8) | data[15]));
	}

	/* Monotonic verdicts: a shorter prefix is NEED_MORE or the verdict
	 * of the whole. For OK, the prefixes from the header's own length
	 * on are OK too (trailing bytes do not matter). */
	upto = size < PREFIX_CHECK ? size : PREFIX_CHECK;
	for (k = 0; k <= upto; k++) {
		size_t len = k < upto ? k : size - 1;

		if (size == 0)
			break;
		st2 = proxyproto_parse(data, len, &r2, &c2);
		if (st == PROXYPROTO_OK && len >= consumed)
			CHECK(st2 == PROXYPROTO_OK && c2 == consumed);
		else if (st == PROXYPROTO_OK)
			CHECK(st2 == PROXYPROTO_NEED_MORE);
		else
			CHECK(st2 == PROXYPROTO_NEED_MORE || st2 == st);
	}
	return 0;
}
