/*
 * Unit tests for proxyproto, the pure PROXY protocol header parser: every
 * valid v1 and v2 header is parsed whole, one byte at a time and at every
 * two-part split, with the SOCKS greeting that follows left unconsumed;
 * every malformed field is rejected with its own status as soon as the bad
 * byte arrives, and never before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proxyproto.h"

#include "unit_util.h"

/* Largest header a test builds plus room for pipelined bytes after it. */
#define MSG_MAX 1024
/* What a SOCKS client sends next: greeting offering "no auth". */
static const uint8_t socks_greeting[] = { 0x05, 0x01, 0x00 };

static const uint8_t v2_sig[12] = {
	0x0D,
	0x0A,
	0x0D,
	0x0A,
	0x00,
	0x0D,
	0x0A,
	0x51,
	0x55,
	0x49,
	0x54,
	0x0A,
};

static int
parse_any(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg)
{
	return proxyproto_parse(p, len, out, consumed);
}

static const char *
status_name(int st, void *arg)
{
	return proxyproto_status_str((enum proxyproto_status)st);
}

/*
 * The parser for the split checks (unit_util.h): the SOCKS greeting that
 * follows a header is left alone, and a header that is incomplete or bad
 * leaves *out untouched and *consumed 0, so a parser that writes *out on
 * failure, or leaves parts of it unset on success, is caught.
 */
static const struct unit_parser pp = {
	.parse = parse_any,
	.status_str = status_name,
	.ok = PROXYPROTO_OK,
	.need_more = PROXYPROTO_NEED_MORE,
	.out_size = sizeof(struct proxyproto_result),
	.next = socks_greeting,
	.next_len = sizeof(socks_greeting),
	.clean_unless_ok = true,
};

static void
assert_v1_error_from(const char *line, size_t bad, enum proxyproto_status want)
{
	unit_assert_error_from(&pp, (const uint8_t *)line, strlen(line), bad, want);
}

/* Index of the first occurrence of needle in line, for naming bad bytes. */
static size_t
index_of(const char *line, const char *needle)
{
	const char *at = strstr(line, needle);

	assert_non_null(at);
	return (size_t)(at - line);
}

static void
assert_addr4(const union sockaddr_any *a, const char *ip, uint16_t port)
{
	struct in_addr want;

	assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
	assert_int_equal(a->sin.sin_family, AF_INET);
	assert_memory_equal(&a->sin.sin_addr, &want, sizeof(want));
	assert_int_equal(ntohs(a->sin.sin_port), port);
}

static void
assert_addr6(const union sockaddr_any *a, const char *ip, uint16_t port)
{
	struct in6_addr want;

	assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
	assert_int_equal(a->sin6.sin6_family, AF_INET6);
	assert_memory_equal(&a->sin6.sin6_addr, &want, sizeof(want));
	assert_int_equal(ntohs(a->sin6.sin6_port), port);
}

/* --- v2 builders ---------------------------------------------------------- */

/* Signature, ver/cmd, family and the 16-bit length; returns 16. */
static size_t
v2_head(uint8_t *out, uint8_t ver_cmd, uint8_t fam, uint16_t len)
{
	memcpy(out, v2_sig, sizeof(v2_sig));
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)(len & 0xff);
	return 16;
}

/* PROXY TCP4 192.0.2.1:56324 -> 198.51.100.7:1080, then extra bytes of
 * TLV space filled with a pattern. */
static size_t
v2_tcp4(uint8_t *out, uint16_t extra)
{
	static const uint8_t addrs[12] = {
		192,
		0,
		2,
		1,
		198,
		51,
		100,
		7,
		0xDC,
		0x04,
		0x04,
		0x38,
	};
	size_t n = v2_head(out, 0x21, 0x11, (uint16_t)(12 + extra));

	memcpy(out + n, addrs, sizeof(addrs));
	n += sizeof(addrs);
	for (uint16_t i = 0; i < extra; i++)
		out[n++] = (uint8_t)(i * 13 + 1);
	return n;
}

/* PROXY TCP6 [2001:db8::1]:443 -> [2001:db8::2]:1080. */
static size_t
v2_tcp6(uint8_t *out)
{
	size_t n = v2_head(out, 0x21, 0x21, 36);
	struct in6_addr a;

	assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &a), 1);
	memcpy(out + n, &a, 16);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::2", &a), 1);
	memcpy(out + n + 16, &a, 16);
	memcpy(out + n + 32, "\x01\xBB\x04\x38", 4);
	return n + 36;
}

/* --- valid v1 ------------------------------------------------------------- */

static void
test_v1_tcp4_parses_at_every_split(void **state)
{
	const char *line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	struct proxyproto_result r;

	(void)state;
	unit_assert_parses_at_every_split(&pp, (const uint8_t *)line, strlen(line), &r);
	assert_int_equal(r.version, 1);
	assert_false(r.local);
	assert_addr4(&r.src, "192.168.0.1", 56324);
	assert_addr4(&r.dst, "192.168.0.11", 443);
}

static void
test_v1_tcp4_extremes_of_every_field(void **state)
{
	const char *line = "PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n";
	struct proxyproto_result r;

	(void)state;
	unit_assert_parses_at_every_split(&pp, (const uint8_t *)line, strlen(line), &r);
	assert_addr4(&r.src, "255.255.255.255", 65535);
	assert_addr4(&r.dst, "0.0.0.0", 0);
}

static void
test_v1_tcp6_parses_at_every_split(void **state)
{
	const char *line = "PROXY TCP6 2001:DB8::1 ::1 1 65535\r\n";
	struct proxyproto_result r;

	(void)state;
	unit_assert_parses_at_every_split(&pp, (const uint8_t *)line, strlen(line), &r);
	assert_int_equal(r.version, 1);
	assert_false(r.local);
	assert_addr6(&r.src, "2001:db8::1", 1);
	assert_addr6(&r.dst, "::1", 65535);
}

/* §2.1's longest TCP6 line, 104 bytes, full groups, and '::' forms. */
static void
test_v1_tcp6_longest_line_and_compressed_forms(void **state)
{
	const char *line = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			   "FFFF:0000:0000:0000:0000:0000:0000:0001 65535 65535\r\n";
	const char *lines[] = {
		"PROXY TCP6 :: 1:: 80 81\r\n",
		"PROXY TCP6 ::ffff:a00:1 fe80::1:2 80 81\r\n",
		"PROXY TCP6 1:2:3:4:5:6:7:8 1:2:3:4:5:6::8 80 81\r\n",
	};
	struct proxyproto_result r;

	(void)state;
	assert_int_equal(strlen(line), 104);
	unit_assert_parses_at_every_split(&pp, (const uint8_t *)line, strlen(line), &r);
	assert_addr6(&r.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	assert_addr6(&r.dst, "ffff::1", 65535);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		unit_assert_parses_at_every_split(&pp, (const uint8_t *)lines[i], strlen(lines[i]),
			&r);
}

static void
test_v1_unknown_short_and_long_forms_keep_the_real_peer(void **state)
{
	const char *lines[] = {
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN 1.2.3.4 5.6.7.8 80 81\r\n",
		/* Ignored, so not checked: whatever the sender put there. */
		"PROXY UNKNOWN anything at all, even  two spaces\r\n",
	};
	struct proxyproto_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		unit_assert_parses_at_every_split(&pp, (const uint8_t *)lines[i], strlen(lines[i]),
			&r);
		assert_int_equal(r.version, 1);
		assert_true(r.local);
	}
}

/* §2.1's worst case is exactly 107 bytes and must be accepted. */
static void
test_v1_unknown_worst_case_107_bytes_is_accepted(void **state)
{
	const char *line = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct proxyproto_result r;

	(void)state;
	assert_int_equal(strlen(line), PROXYPROTO_V1_MAX);
	unit_assert_parses_at_every_split(&pp, (const uint8_t *)line, strlen(line), &r);
	assert_true(r.local);
}

/* --- valid v2 ------------------------------------------------------------- */

static void
test_v2_tcp4_parses_at_every_split(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proxyproto_result r;
	size_t n = v2_tcp4(msg, 0);

	(void)state;
	assert_int_equal(n, 28);
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	assert_int_equal(r.version, 2);
	assert_false(r.local);
	assert_addr4(&r.src, "192.0.2.1", 56324);
	assert_addr4(&r.dst, "198.51.100.7", 1080);
}

static void
test_v2_tcp6_parses_at_every_split(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proxyproto_result r;
	size_t n = v2_tcp6(msg);

	(void)state;
	assert_int_equal(n, 52);
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	assert_int_equal(r.version, 2);
	assert_false(r.local);
	assert_addr6(&r.src, "2001:db8::1", 443);
	assert_addr6(&r.dst, "2001:db8::2", 1080);
}

/* TLVs (here ALPN "h2", an authority and a NOOP) are skipped but counted:
 * the greeting begins right after the declared length. */
static void
test_v2_tlvs_are_skipped_and_consumed(void **state)
{
	static const uint8_t tlvs[] = {
		0x01,
		0x00,
		0x02,
		'h',
		'2',
		0x02,
		0x00,
		0x0b,
		'e',
		'x',
		'a',
		'm',
		'p',
		'l',
		'e',
		'.',
		'c',
		'o',
		'm',
		0x04,
		0x00,
		0x03,
		0x00,
		0x00,
		0x00,
	};
	uint8_t msg[MSG_MAX];
	struct proxyproto_result r;
	size_t n = v2_tcp4(msg, sizeof(tlvs));

	(void)state;
	memcpy(msg + 28, tlvs, sizeof(tlvs));
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	assert_int_equal(n, 28 + sizeof(tlvs));
	assert_addr4(&r.src, "192.0.2.1", 56324);
	/* And with extra lengths 1 and 255 of arbitrary bytes. */
	n = v2_tcp4(msg, 1);
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	n = v2_tcp4(msg, 255);
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	assert_int_equal(n, 28 + 255);
}

static void
test_v2_local_keeps_the_real_peer_whatever_the_family(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proxyproto_result r;
	size_t n;

	(void)state;
	/* The usual health check: LOCAL, UNSPEC, no addresses. */
	n = v2_head(msg, 0x20, 0x00, 0);
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	assert_int_equal(r.version, 2);
	assert_true(r.local);
	/* LOCAL ignores the family byte, even one PROXY would reject, and
	 * skips whatever length it declares. */
	for (unsigned fam = 0; fam <= 0xff; fam++) {
		n = v2_head(msg, 0x20, (uint8_t)fam, 3);
		memset(msg + n, 0xEE, 3);
		unit_assert_parses_at_every_split(&pp, msg, n + 3, &r);
		assert_true(r.local);
	}
}

static void
test_v2_proxy_unspec_is_accepted_as_local(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proxyproto_result r;
	size_t n;

	(void)state;
	n = v2_head(msg, 0x21, 0x00, 0);
	unit_assert_parses_at_every_split(&pp, msg, n, &r);
	assert_true(r.local);
	n = v2_head(msg, 0x21, 0x00, 12);
	memset(msg + n, 0x11, 12);
	unit_assert_parses_at_every_split(&pp, msg, n + 12, &r);
	assert_true(r.local);
}

/* A long v2 header: a prefix of any size is NEED_MORE, not an error. */
static void
test_v2_truncated_header_is_need_more(void **state)
{
	uint8_t msg[16 + 600];
	struct proxyproto_result r;
	size_t consumed;

	(void)state;
	v2_head(msg, 0x21, 0x11, 600);
	memset(msg + 16, 0x42, 600);
	assert_int_equal(unit_parse_poisoned(&pp, msg, 16 + 599, &r, &consumed),
		PROXYPROTO_NEED_MORE);
	assert_int_equal(unit_parse_poisoned(&pp, msg, 100, &r, &consumed), PROXYPROTO_NEED_MORE);
	assert_int_equal(unit_parse_poisoned(&pp, msg, sizeof(msg), &r, &consumed), PROXYPROTO_OK);
	assert_int_equal(consumed, sizeof(msg));
}

/* --- v2 errors ------------------------------------------------------------ */

static void
test_v2_bad_signature_is_rejected_at_its_first_wrong_byte(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(v2_sig); i++) {
		n = v2_tcp4(msg, 0);
		msg[i] ^= 0x20;
		/* Byte 0 flipped is no longer the v2 signature's first byte,
		 * and not 'P' either: a bad signature all the same. */
		unit_assert_error_from(&pp, msg, n, i, PROXYPROTO_ERR_SIGNATURE);
	}
}

static void
test_v2_every_version_other_than_2_is_rejected(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t n;

	(void)state;
	for (unsigned v = 0; v <= 0xf; v++) {
		if (v == 2)
			continue;
		n = v2_tcp4(msg, 0);
		msg[12] = (uint8_t)(v << 4 | 0x1);
		unit_assert_error_from(&pp, msg, n, 12, PROXYPROTO_ERR_VERSION);
	}
}

static void
test_v2_every_unknown_command_is_rejected(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t n;

	(void)state;
	for (unsigned cmd = 2; cmd <= 0xf; cmd++) {
		n = v2_tcp4(msg, 0);
		msg[12] = (uint8_t)(0x20 | cmd);
		unit_assert_error_from(&pp, msg, n, 12, PROXYPROTO_ERR_COMMAND);
	}
}

/* Walks all 256 family/protocol bytes under PROXY: TCP4, TCP6 and UNSPEC
 * parse; UDP, UNIX and every unassigned value are ERR_FAMILY at byte 13. */
static void
test_v2_proxy_every_family_byte(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proxyproto_result r;
	size_t n;

	(void)state;
	for (unsigned fam = 0; fam <= 0xff; fam++) {
		n = v2_head(msg, 0x21, (uint8_t)fam, 216);
		memset(msg + n, 0x33, 216);
		n += 216;
		if (fam == 0x00 || fam == 0x11 || fam == 0x21) {
			unit_assert_parses_at_every_split(&pp, msg, n, &r);
			assert_int_equal(r.local, fam == 0x00);
		} else {
			unit_assert_error_from(&pp, msg, n, 13, PROXYPROTO_ERR_FAMILY);
		}
	}
}

static void
test_v2_udp_and_unix_families_are_rejected(void **state)
{
	static const uint8_t fams[] = { 0x12, 0x22, 0x31, 0x32 };
	static const uint16_t lens[] = { 12, 36, 216, 216 };
	uint8_t msg[MSG_MAX];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(fams); i++) {
		n = v2_head(msg, 0x21, fams[i], lens[i]);
		memset(msg + n, 0, lens[i]);
		unit_assert_error_from(&pp, msg, n + lens[i], 13, PROXYPROTO_ERR_FAMILY);
	}
}

/* The length must cover the family's addresses; it is judged as soon as
 * its second byte arrives. */
static void
test_v2_length_too_short_for_the_family(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t n;

	(void)state;
	for (uint16_t len = 0; len < 12; len++) {
		n = v2_head(msg, 0x21, 0x11, len);
		memset(msg + n, 0, 40);
		unit_assert_error_from(&pp, msg, n + 40, 15, PROXYPROTO_ERR_LENGTH);
	}
	for (uint16_t len = 0; len < 36; len++) {
		n = v2_head(msg, 0x21, 0x21, len);
		memset(msg + n, 0, 40);
		unit_assert_error_from(&pp, msg, n + 40, 15, PROXYPROTO_ERR_LENGTH);
	}
	/* Not the high byte alone: 0x00 then 0x0b is 11, too short. */
	n = v2_head(msg, 0x21, 0x11, 0x000b);
	unit_assert_error_from(&pp, msg, n + 12, 15, PROXYPROTO_ERR_LENGTH);
}

/* --- v1 errors ------------------------------------------------------------ */

static void
test_v1_bad_signature(void **state)
{
	(void)state;
	/* A plain SOCKS5 client talking to a PROXY listener. */
	unit_assert_error_from(&pp, socks_greeting, sizeof(socks_greeting), 0,
		PROXYPROTO_ERR_SIGNATURE);
	assert_v1_error_from("GET / HTTP/1.1\r\n", 0, PROXYPROTO_ERR_SIGNATURE);
	assert_v1_error_from("PRXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 2, PROXYPROTO_ERR_SIGNATURE);
	assert_v1_error_from("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, PROXYPROTO_ERR_SIGNATURE);
	assert_v1_error_from(" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, PROXYPROTO_ERR_SIGNATURE);
}

static void
test_v1_unknown_protocol_is_family_error(void **state)
{
	(void)state;
	assert_v1_error_from("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 7, PROXYPROTO_ERR_FAMILY);
	assert_v1_error_from("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 9, PROXYPROTO_ERR_FAMILY);
	assert_v1_error_from("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 6, PROXYPROTO_ERR_FAMILY);
	/* A prefix of a name, ended early, is not the name. */
	assert_v1_error_from("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n", 9, PROXYPROTO_ERR_FAMILY);
	assert_v1_error_from("PROXY UNKNOWNX\r\n", 13, PROXYPROTO_ERR_FAMILY);
	assert_v1_error_from("PROXY TCP44 1.2.3.4 5.6.7.8 1 2\r\n", 10, PROXYPROTO_ERR_FAMILY);
}

static void
test_v1_extra_or_missing_spaces_are_syntax_errors(void **state)
{
	const char *l;

	(void)state;
	assert_v1_error_from("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5, PROXYPROTO_ERR_SYNTAX);
	assert_v1_error_from("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 6, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n";
	assert_v1_error_from(l, index_of(l, "  ") + 1, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n";
	assert_v1_error_from(l, index_of(l, "  ") + 1, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n";
	assert_v1_error_from(l, index_of(l, "  ") + 1, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n";
	assert_v1_error_from(l, index_of(l, "  ") + 1, PROXYPROTO_ERR_SYNTAX);
	/* Trailing space, and a sixth field. */
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n";
	assert_v1_error_from(l, index_of(l, " \r"), PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n";
	assert_v1_error_from(l, index_of(l, " 3"), PROXYPROTO_ERR_SYNTAX);
	/* Tabs are not spaces. */
	l = "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n";
	assert_v1_error_from(l, 10, PROXYPROTO_ERR_SYNTAX);
	/* A missing field: CR where a space must be. */
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n";
	assert_v1_error_from(l, index_of(l, "\r"), PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4\r\n";
	assert_v1_error_from(l, 10, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY\r\n";
	assert_v1_error_from(l, 5, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY \r\n";
	assert_v1_error_from(l, 6, PROXYPROTO_ERR_SYNTAX);
}

/* §2.1: only CRLF ends the line; a lone CR or LF is rejected. */
static void
test_v1_missing_or_broken_crlf(void **state)
{
	const char *l;

	(void)state;
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n";
	assert_v1_error_from(l, index_of(l, "\n"), PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX";
	assert_v1_error_from(l, index_of(l, "\rX") + 1, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n";
	assert_v1_error_from(l, index_of(l, "\r") + 1, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY UNKNOWN\n";
	assert_v1_error_from(l, 13, PROXYPROTO_ERR_SYNTAX);
	l = "PROXY UNKNOWN 1.2.3.4\n5.6.7.8\r\n";
	assert_v1_error_from(l, index_of(l, "\n"), PROXYPROTO_ERR_SYNTAX);
	l = "PROXY UNKNOWN \x01\r\n";
	assert_v1_error_from(l, 14, PROXYPROTO_ERR_SYNTAX);
	/* No CRLF at all, but not yet 107 bytes: still waiting. */
	{
		struct proxyproto_result r;
		size_t consumed;
		l = "PROXY TCP4 1.2.3.4 5.6.7.8 1 2";
		assert_int_equal(
			unit_parse_poisoned(&pp, (const uint8_t *)l, strlen(l), &r, &consumed),
			PROXYPROTO_NEED_MORE);
	}
	/* NUL inside a field. */
	{
		static const uint8_t nul[] = "PROXY TCP4 1.2\0.3.4 5.6.7.8 1 2\r\n";
		unit_assert_error_from(&pp, nul, sizeof(nul) - 1, 14, PROXYPROTO_ERR_SYNTAX);
	}
}

static void
test_v1_bad_ports(void **state)
{
	static const struct {
		const char *line;
		const char *bad; /* the first byte that cannot be right */
	} cases[] = {
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "6 2" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "9\r" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "+" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "-" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "80 " },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", "0 2" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 8a 2\r\n", "a" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n", "x" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n", "0 2" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_v1_error_from(cases[i].line, index_of(cases[i].line, cases[i].bad),
			PROXYPROTO_ERR_ADDRESS);
}

static void
test_v1_bad_addresses_and_wrong_families(void **state)
{
	static const struct {
		const char *line;
		const char *bad;
	} cases[] = {
		/* An IPv6 address under TCP4, and the reverse. */
		{ "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ":" },
		{ "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "." },
		{ "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "6." },
		{ "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "1.2" },
		{ "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", ".3" },
		{ "PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", ".1" },
		{ "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", ".5 " },
		{ "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", " 5" },
		{ "PROXY TCP4 1.2.3. 5.6.7.8 1 2\r\n", " 5" },
		{ "PROXY TCP4 1.2.3.4 5.6.7.1000 1 2\r\n", "0 1" },
		{ "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "l" },
		{ "PROXY TCP6 ::: ::1 1 2\r\n", ": ::1" },
		{ "PROXY TCP6 1::2::3 ::1 1 2\r\n", ":3" },
		{ "PROXY TCP6 12345:: ::1 1 2\r\n", "5::" },
		{ "PROXY TCP6 g:: ::1 1 2\r\n", "g" },
		{ "PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", " ::1" },
		{ "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", " ::1" },
		{ "PROXY TCP6 ::1 ::ffff:1.2.3.4 1 2\r\n", ".2" },
		{ "PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n", "%" },
		{ "PROXY TCP6 ::1 [::1] 1 2\r\n", "[" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_v1_error_from(cases[i].line, index_of(cases[i].line, cases[i].bad),
			PROXYPROTO_ERR_ADDRESS);
	/* Longer than any IPv6 text: rejected when it gets too long. */
	{
		const char *l = "PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:1 ::1 1 2\r\n";
		assert_v1_error_from(l, 11 + 39, PROXYPROTO_ERR_ADDRESS);
	}
}

/* A line with no CRLF in its first 107 bytes is TOO_LONG once the 107th
 * byte is in, and a 108-byte line never parses. */
static void
test_v1_longer_than_107_bytes_is_rejected(void **state)
{
	char line[200];

	(void)state;
	memset(line, 'a', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	line[150] = '\0';
	assert_v1_error_from(line, PROXYPROTO_V1_MAX - 1, PROXYPROTO_ERR_TOO_LONG);
	/* 108 bytes with the CRLF: the CR is the 107th byte, the LF cannot fit. */
	memcpy(line + 106, "\r\n", 3);
	assert_int_equal(strlen(line), PROXYPROTO_V1_MAX + 1);
	assert_v1_error_from(line, PROXYPROTO_V1_MAX - 1, PROXYPROTO_ERR_TOO_LONG);
	/* One byte shorter fits exactly. */
	memcpy(line + 105, "\r\n", 3);
	{
		struct proxyproto_result r;
		unit_assert_parses_at_every_split(&pp, (const uint8_t *)line, strlen(line), &r);
		assert_true(r.local);
	}
}

static void
test_status_strings_are_distinct_and_never_null(void **state)
{
	const char *seen[PROXYPROTO_ERR_TOO_LONG + 1];

	(void)state;
	for (int i = 0; i <= PROXYPROTO_ERR_TOO_LONG; i++) {
		seen[i] = proxyproto_status_str((enum proxyproto_status)i);
		assert_non_null(seen[i]);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(seen[i], seen[j]);
	}
	assert_string_equal(proxyproto_status_str((enum proxyproto_status)99), "unknown status");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4_parses_at_every_split),
		cmocka_unit_test(test_v1_tcp4_extremes_of_every_field),
		cmocka_unit_test(test_v1_tcp6_parses_at_every_split),
		cmocka_unit_test(test_v1_tcp6_longest_line_and_compressed_forms),
		cmocka_unit_test(test_v1_unknown_short_and_long_forms_keep_the_real_peer),
		cmocka_unit_test(test_v1_unknown_worst_case_107_bytes_is_accepted),
		cmocka_unit_test(test_v2_tcp4_parses_at_every_split),
		cmocka_unit_test(test_v2_tcp6_parses_at_every_split),
		cmocka_unit_test(test_v2_tlvs_are_skipped_and_consumed),
		cmocka_unit_test(test_v2_local_keeps_the_real_peer_whatever_the_family),
		cmocka_unit_test(test_v2_proxy_unspec_is_accepted_as_local),
		cmocka_unit_test(test_v2_truncated_header_is_need_more),
		cmocka_unit_test(test_v2_bad_signature_is_rejected_at_its_first_wrong_byte),
		cmocka_unit_test(test_v2_every_version_other_than_2_is_rejected),
		cmocka_unit_test(test_v2_every_unknown_command_is_rejected),
		cmocka_unit_test(test_v2_proxy_every_family_byte),
		cmocka_unit_test(test_v2_udp_and_unix_families_are_rejected),
		cmocka_unit_test(test_v2_length_too_short_for_the_family),
		cmocka_unit_test(test_v1_bad_signature),
		cmocka_unit_test(test_v1_unknown_protocol_is_family_error),
		cmocka_unit_test(test_v1_extra_or_missing_spaces_are_syntax_errors),
		cmocka_unit_test(test_v1_missing_or_broken_crlf),
		cmocka_unit_test(test_v1_bad_ports),
		cmocka_unit_test(test_v1_bad_addresses_and_wrong_families),
		cmocka_unit_test(test_v1_longer_than_107_bytes_is_rejected),
		cmocka_unit_test(test_status_strings_are_distinct_and_never_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
