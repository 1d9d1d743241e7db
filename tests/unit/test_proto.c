/*
 * Unit tests for proto, the pure SOCKS5 codec: every valid message is parsed
 * whole, one byte at a time and at every two-part split; every malformed
 * field is rejected with its own status as soon as the bad byte arrives;
 * encoders are checked byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"

#include "unit_util.h"

/* Largest message plus room for pipelined bytes after it. */
#define MSG_MAX (PROTO_USERPASS_MAX + 64)

union parsed {
	struct proto_greeting g;
	struct proto_userpass up;
	struct proto_request req;
	struct proto_socks4_request s4;
};

static int
parse_greeting_any(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg)
{
	return proto_parse_greeting(p, len, out, consumed);
}

static int
parse_userpass_any(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg)
{
	return proto_parse_userpass(p, len, out, consumed);
}

static int
parse_request_any(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg)
{
	return proto_parse_request(p, len, out, consumed);
}

static int
parse_socks4_any(const uint8_t *p, size_t len, void *out, size_t *consumed, void *arg)
{
	return proto_parse_socks4_request(p, len, out, consumed);
}

static const char *
status_name(int st, void *arg)
{
	return proto_status_str((enum proto_status)st);
}

/* Behind a valid message in the pipelined check: the next one starting. */
static const uint8_t pipelined[16] = {
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
	0x05,
};

/* Every parser through one result type, so the split checks
 * (unit_util.h) compare whole results. */
#define PROTO_PARSER(fn)                                                                           \
	{                                                                                          \
		.parse = (fn), .status_str = status_name, .ok = PROTO_OK,                          \
		.need_more = PROTO_NEED_MORE, .out_size = sizeof(union parsed), .next = pipelined, \
		.next_len = sizeof(pipelined),                                                     \
	}

static const struct unit_parser greeting_parser = PROTO_PARSER(parse_greeting_any);
static const struct unit_parser userpass_parser = PROTO_PARSER(parse_userpass_any);
static const struct unit_parser request_parser = PROTO_PARSER(parse_request_any);
static const struct unit_parser socks4_parser = PROTO_PARSER(parse_socks4_any);

/* --- message builders ----------------------------------------------------- */

static size_t
build_greeting(uint8_t *out, uint8_t nmethods)
{
	size_t i;

	out[0] = SOCKS_VERSION;
	out[1] = nmethods;
	/* Spread the values so a copy from the wrong offset shows up. */
	for (i = 0; i < nmethods; i++)
		out[2 + i] = (uint8_t)(i * 7 + 3);
	return 2 + (size_t)nmethods;
}

static size_t
build_userpass(uint8_t *out, uint8_t ulen, uint8_t plen)
{
	size_t i;

	out[0] = SOCKS_AUTH_VERSION;
	out[1] = ulen;
	for (i = 0; i < ulen; i++)
		out[2 + i] = (uint8_t)('a' + i % 26);
	out[2 + ulen] = plen;
	for (i = 0; i < plen; i++)
		out[3 + ulen + i] = (uint8_t)('0' + i % 10);
	return 3 + (size_t)ulen + plen;
}

/* ATYP ADDR PORT; for domains, name_len bytes of 'a'..'z' cycling. */
static size_t
build_addr(uint8_t *out, uint8_t atyp, uint8_t name_len, uint16_t port)
{
	size_t n, i;

	out[0] = atyp;
	switch (atyp) {
	case SOCKS_ATYP_IPV4:
		memcpy(out + 1, "\xC0\x00\x02\x01", 4); /* 192.0.2.1 */
		n = 5;
		break;
	case SOCKS_ATYP_IPV6:
		memcpy(out + 1,
			"\x20\x01\x0d\xb8\x00\x00\x00\x00"
			"\x00\x00\x00\x00\x00\x00\x00\x01",
			16); /* 2001:db8::1 */
		n = 17;
		break;
	default:
		out[1] = name_len;
		for (i = 0; i < name_len; i++)
			out[2 + i] = (uint8_t)('a' + i % 26);
		n = 2 + (size_t)name_len;
		break;
	}
	out[n] = (uint8_t)(port >> 8);
	out[n + 1] = (uint8_t)(port & 0xff);
	return n + 2;
}

static size_t
build_request(uint8_t *out, uint8_t cmd, uint8_t atyp, uint8_t name_len, uint16_t port)
{
	out[0] = SOCKS_VERSION;
	out[1] = cmd;
	out[2] = 0;
	return 3 + build_addr(out + 3, atyp, name_len, port);
}

/* --- greeting ------------------------------------------------------------- */

static void
test_greeting_every_method_count_parses_at_every_split(void **state)
{
	uint8_t msg[MSG_MAX];
	union parsed r;
	unsigned n;

	(void)state;
	for (n = 1; n <= 255; n++) {
		size_t len = build_greeting(msg, (uint8_t)n);

		unit_assert_parses_at_every_split(&greeting_parser, msg, len, &r);
		assert_int_equal(r.g.nmethods, n);
		assert_memory_equal(r.g.methods, msg + 2, n);
	}
	assert_int_equal(build_greeting(msg, 255), PROTO_GREETING_MAX);
}

static void
test_greeting_accepts_every_method_value(void **state)
{
	uint8_t msg[3] = { SOCKS_VERSION, 1, 0 };
	struct proto_greeting g;
	size_t consumed;
	unsigned m;

	(void)state;
	for (m = 0; m <= 255; m++) {
		msg[2] = (uint8_t)m;
		assert_int_equal(proto_parse_greeting(msg, 3, &g, &consumed), PROTO_OK);
		assert_int_equal(consumed, 3);
		assert_int_equal(g.methods[0], m);
	}
}

static void
test_greeting_rejects_every_wrong_version_on_first_byte(void **state)
{
	uint8_t msg[3] = { 0, 1, SOCKS_METHOD_NONE };
	unsigned v;

	(void)state;
	for (v = 0; v <= 255; v++) {
		if (v == SOCKS_VERSION)
			continue;
		msg[0] = (uint8_t)v;
		unit_assert_error_from(&greeting_parser, msg, sizeof(msg), 0, PROTO_ERR_VERSION);
	}
}

static void
test_greeting_rejects_zero_methods(void **state)
{
	const uint8_t msg[] = { SOCKS_VERSION, 0, SOCKS_METHOD_NONE };

	(void)state;
	unit_assert_error_from(&greeting_parser, msg, sizeof(msg), 1, PROTO_ERR_NO_METHODS);
}

/* --- RFC 1929 username/password ------------------------------------------- */

static void
test_userpass_lengths_1_and_255_and_empty_password_parse_at_every_split(void **state)
{
	static const uint8_t ulens[] = { 1, 2, 255 };
	static const uint8_t plens[] = { 0, 1, 255 };
	uint8_t msg[MSG_MAX];
	union parsed r;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(ulens); i++) {
		for (j = 0; j < sizeof(plens); j++) {
			size_t len = build_userpass(msg, ulens[i], plens[j]);

			unit_assert_parses_at_every_split(&userpass_parser, msg, len, &r);
			assert_int_equal(r.up.ulen, ulens[i]);
			assert_memory_equal(r.up.user, msg + 2, ulens[i]);
			assert_int_equal(r.up.user[ulens[i]], '\0');
			assert_int_equal(r.up.plen, plens[j]);
			assert_memory_equal(r.up.pass, msg + 3 + ulens[i], plens[j]);
			assert_int_equal(r.up.pass[plens[j]], '\0');
		}
	}
	assert_int_equal(build_userpass(msg, 255, 255), PROTO_USERPASS_MAX);
}

static void
test_userpass_rejects_every_wrong_subnegotiation_version(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t len = build_userpass(msg, 3, 3);
	unsigned v;

	(void)state;
	for (v = 0; v <= 255; v++) {
		if (v == SOCKS_AUTH_VERSION)
			continue;
		/* 0x05 included: a client that skipped sub-negotiation. */
		msg[0] = (uint8_t)v;
		unit_assert_error_from(&userpass_parser, msg, len, 0, PROTO_ERR_AUTH_VERSION);
	}
}

static void
test_userpass_rejects_empty_username(void **state)
{
	const uint8_t msg[] = { SOCKS_AUTH_VERSION, 0, 1, 'p' };

	(void)state;
	unit_assert_error_from(&userpass_parser, msg, sizeof(msg), 1, PROTO_ERR_EMPTY_USERNAME);
}

static void
test_userpass_keeps_bytes_after_the_password_for_the_request(void **state)
{
	const uint8_t msg[] = { SOCKS_AUTH_VERSION, 1, 'u', 0, SOCKS_VERSION, SOCKS_CMD_CONNECT };
	struct proto_userpass up;
	size_t consumed;

	(void)state;
	assert_int_equal(proto_parse_userpass(msg, sizeof(msg), &up, &consumed), PROTO_OK);
	assert_int_equal(consumed, 4);
	assert_string_equal(up.user, "u");
	assert_string_equal(up.pass, "");
}

/* --- request -------------------------------------------------------------- */

static void
test_request_every_command_and_address_type_parses_at_every_split(void **state)
{
	static const uint8_t cmds[] = { SOCKS_CMD_CONNECT, SOCKS_CMD_BIND,
		SOCKS_CMD_UDP_ASSOCIATE };
	static const struct {
		uint8_t atyp;
		uint8_t name_len;
	} addrs[] = {
		{ SOCKS_ATYP_IPV4, 0 },
		{ SOCKS_ATYP_IPV6, 0 },
		{ SOCKS_ATYP_DOMAIN, 1 },
		{ SOCKS_ATYP_DOMAIN, 2 },
		{ SOCKS_ATYP_DOMAIN, 254 },
		{ SOCKS_ATYP_DOMAIN, 255 },
	};
	uint8_t msg[MSG_MAX];
	union parsed r;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(cmds); i++) {
		for (j = 0; j < sizeof(addrs) / sizeof(addrs[0]); j++) {
			size_t len = build_request(msg, cmds[i], addrs[j].atyp, addrs[j].name_len,
				0xABCD);
			struct socks_addr *d = &r.req.dst;

			unit_assert_parses_at_every_split(&request_parser, msg, len, &r);
			assert_int_equal(r.req.cmd, cmds[i]);
			assert_int_equal(d->atyp, addrs[j].atyp);
			assert_int_equal(d->port, 0xABCD);
			if (d->atyp == SOCKS_ATYP_IPV4) {
				assert_int_equal(len, 10);
				assert_memory_equal(d->ip.ipv4, "\xC0\x00\x02\x01", 4);
			} else if (d->atyp == SOCKS_ATYP_IPV6) {
				assert_int_equal(len, 22);
				assert_memory_equal(d->ip.ipv6, msg + 4, 16);
			} else {
				assert_int_equal(len, 7 + (size_t)addrs[j].name_len);
				assert_int_equal(d->name_len, addrs[j].name_len);
				assert_memory_equal(d->name, msg + 5, d->name_len);
				assert_int_equal(d->name[d->name_len], '\0');
				assert_int_equal(strlen(d->name), d->name_len);
			}
		}
	}
	assert_int_equal(build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_DOMAIN, 255, 1),
		PROTO_REQUEST_MAX);
}

static void
test_request_port_is_read_in_network_order(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proto_request req;
	size_t consumed;
	static const uint16_t ports[] = { 0, 1, 80, 0x0100, 0xFF00, 65535 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		size_t len = build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_IPV4, 0, ports[i]);

		assert_int_equal(msg[len - 2], ports[i] >> 8);
		assert_int_equal(proto_parse_request(msg, len, &req, &consumed), PROTO_OK);
		assert_int_equal(req.dst.port, ports[i]);
	}
}

static void
test_request_rejects_every_wrong_version_on_first_byte(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t len = build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_IPV4, 0, 80);
	unsigned v;

	(void)state;
	for (v = 0; v <= 255; v++) {
		if (v == SOCKS_VERSION)
			continue;
		msg[0] = (uint8_t)v;
		unit_assert_error_from(&request_parser, msg, len, 0, PROTO_ERR_VERSION);
	}
}

static void
test_request_rejects_every_unknown_command(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t len = build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_IPV4, 0, 80);
	unsigned c;

	(void)state;
	for (c = 0; c <= 255; c++) {
		if (c == SOCKS_CMD_CONNECT || c == SOCKS_CMD_BIND || c == SOCKS_CMD_UDP_ASSOCIATE)
			continue;
		msg[1] = (uint8_t)c;
		unit_assert_error_from(&request_parser, msg, len, 1, PROTO_ERR_COMMAND);
	}
}

static void
test_request_rejects_every_nonzero_reserved_byte(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t len = build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_IPV4, 0, 80);
	unsigned r;

	(void)state;
	for (r = 1; r <= 255; r++) {
		msg[2] = (uint8_t)r;
		unit_assert_error_from(&request_parser, msg, len, 2, PROTO_ERR_RESERVED);
	}
}

static void
test_request_rejects_every_unknown_address_type(void **state)
{
	uint8_t msg[MSG_MAX];
	size_t len = build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_IPV4, 0, 80);
	unsigned a;

	(void)state;
	for (a = 0; a <= 255; a++) {
		if (a == SOCKS_ATYP_IPV4 || a == SOCKS_ATYP_DOMAIN || a == SOCKS_ATYP_IPV6)
			continue;
		msg[3] = (uint8_t)a;
		unit_assert_error_from(&request_parser, msg, len, 3, PROTO_ERR_ATYP);
	}
}

static void
test_request_rejects_empty_domain_name(void **state)
{
	const uint8_t msg[] = { SOCKS_VERSION, SOCKS_CMD_CONNECT, 0, SOCKS_ATYP_DOMAIN, 0, 0, 80 };

	(void)state;
	unit_assert_error_from(&request_parser, msg, sizeof(msg), 4, PROTO_ERR_EMPTY_NAME);
}

static void
test_request_rejects_nul_anywhere_in_domain_as_soon_as_it_arrives(void **state)
{
	static const uint8_t lens[] = { 1, 2, 255 };
	uint8_t msg[MSG_MAX];
	size_t i, pos;

	(void)state;
	for (i = 0; i < sizeof(lens); i++) {
		size_t len = build_request(msg, SOCKS_CMD_CONNECT, SOCKS_ATYP_DOMAIN, lens[i], 443);

		for (pos = 0; pos < lens[i]; pos++) {
			uint8_t saved = msg[5 + pos];

			msg[5 + pos] = 0;
			unit_assert_error_from(&request_parser, msg, len, 5 + pos,
				PROTO_ERR_BAD_NAME);
			msg[5 + pos] = saved;
		}
	}
}

static void
test_request_accepts_every_nonzero_byte_in_domain(void **state)
{
	uint8_t msg[MSG_MAX];
	struct proto_request req;
	size_t consumed, len;
	unsigned c;

	(void)state;
	/* Only NUL is refused here; what a resolver accepts is its business. */
	msg[0] = SOCKS_VERSION;
	msg[1] = SOCKS_CMD_CONNECT;
	msg[2] = 0;
	msg[3] = SOCKS_ATYP_DOMAIN;
	msg[4] = 255;
	for (c = 1; c <= 255; c++)
		msg[4 + c] = (uint8_t)c;
	len = 5 + 255 + 2;
	msg[len - 2] = 0;
	msg[len - 1] = 80;
	assert_int_equal(proto_parse_request(msg, len, &req, &consumed), PROTO_OK);
	assert_int_equal(consumed, len);
	assert_memory_equal(req.dst.name, msg + 5, 255);
}

static void
test_request_reports_the_first_bad_field_in_wire_order(void **state)
{
	/* CMD and RSV both wrong: CMD comes first, so COMMAND (REP 0x07). */
	const uint8_t cmd_and_rsv[] = { SOCKS_VERSION, 9, 1, 9 };
	/* RSV and ATYP both wrong: RESERVED. */
	const uint8_t rsv_and_atyp[] = { SOCKS_VERSION, SOCKS_CMD_CONNECT, 1, 9 };
	struct proto_request req;
	size_t consumed;

	(void)state;
	assert_int_equal(proto_parse_request(cmd_and_rsv, sizeof(cmd_and_rsv), &req, &consumed),
		PROTO_ERR_COMMAND);
	assert_int_equal(proto_parse_request(rsv_and_atyp, sizeof(rsv_and_atyp), &req, &consumed),
		PROTO_ERR_RESERVED);
}

/* --- pipelining ----------------------------------------------------------- */

static void
test_pipelined_greeting_userpass_request_and_payload_parse_in_sequence(void **state)
{
	static const uint8_t prefs[] = { SOCKS_METHOD_PASSWORD };
	static const uint8_t stream[] = {
		/* greeting: NONE, PASSWORD */
		SOCKS_VERSION,
		2,
		SOCKS_METHOD_NONE,
		SOCKS_METHOD_PASSWORD,
		/* RFC 1929: alice / secret */
		SOCKS_AUTH_VERSION,
		5,
		'a',
		'l',
		'i',
		'c',
		'e',
		6,
		's',
		'e',
		'c',
		'r',
		'e',
		't',
		/* CONNECT example.com:443 */
		SOCKS_VERSION,
		SOCKS_CMD_CONNECT,
		0,
		SOCKS_ATYP_DOMAIN,
		11,
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
		0x01,
		0xBB,
		/* the client's first payload, which belongs to the relay */
		'G',
		'E',
		'T',
		' ',
		'/',
	};
	struct proto_greeting g;
	struct proto_userpass up;
	struct proto_request req;
	size_t off = 0, consumed;

	(void)state;
	assert_int_equal(proto_parse_greeting(stream + off, sizeof(stream) - off, &g, &consumed),
		PROTO_OK);
	assert_int_equal(consumed, 4);
	assert_int_equal(proto_choose_method(&g, prefs, sizeof(prefs)), SOCKS_METHOD_PASSWORD);
	off += consumed;

	assert_int_equal(proto_parse_userpass(stream + off, sizeof(stream) - off, &up, &consumed),
		PROTO_OK);
	assert_int_equal(consumed, 14);
	assert_string_equal(up.user, "alice");
	assert_string_equal(up.pass, "secret");
	off += consumed;

	assert_int_equal(proto_parse_request(stream + off, sizeof(stream) - off, &req, &consumed),
		PROTO_OK);
	assert_int_equal(consumed, 18);
	assert_int_equal(req.cmd, SOCKS_CMD_CONNECT);
	assert_string_equal(req.dst.name, "example.com");
	assert_int_equal(req.dst.port, 443);
	off += consumed;

	assert_int_equal(sizeof(stream) - off, 5);
	assert_memory_equal(stream + off, "GET /", 5);
}

/* --- UDP request header (RFC 1928 §7) ------------------------------------- */

static void
test_udp_header_each_address_type_gives_header_len_and_leaves_data(void **state)
{
	static const struct {
		uint8_t atyp;
		uint8_t name_len;
		size_t header_len;
	} cases[] = {
		{ SOCKS_ATYP_IPV4, 0, 10 },
		{ SOCKS_ATYP_IPV6, 0, 22 },
		{ SOCKS_ATYP_DOMAIN, 1, 7 + 1 },
		{ SOCKS_ATYP_DOMAIN, 255, 7 + 255 },
	};
	uint8_t dgram[PROTO_UDP_HEADER_MAX + 8];
	struct proto_udp_header h;
	size_t i, data_len;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t hl;

		dgram[0] = 0;
		dgram[1] = 0;
		dgram[2] = 0;
		hl = 3 + build_addr(dgram + 3, cases[i].atyp, cases[i].name_len, 53);
		assert_int_equal(hl, cases[i].header_len);
		assert_true(hl <= PROTO_UDP_HEADER_MAX);
		/* Zero bytes of payload is a legal (empty) datagram. */
		for (data_len = 0; data_len <= 8; data_len += 8) {
			memset(dgram + hl, 'D', data_len);
			memset(&h, 0xA5, sizeof(h));
			assert_int_equal(proto_parse_udp_header(dgram, hl + data_len, &h),
				PROTO_OK);
			assert_int_equal(h.header_len, hl);
			assert_int_equal(h.frag, 0);
			assert_int_equal(h.dst.atyp, cases[i].atyp);
			assert_int_equal(h.dst.port, 53);
			if (cases[i].atyp == SOCKS_ATYP_DOMAIN) {
				assert_int_equal(h.dst.name_len, cases[i].name_len);
				assert_int_equal(strlen(h.dst.name), cases[i].name_len);
			}
		}
	}
}

static void
test_udp_header_reports_fragment_number_for_the_caller_to_drop(void **state)
{
	uint8_t dgram[16] = { 0, 0, 0 };
	struct proto_udp_header h;
	size_t hl = 3 + build_addr(dgram + 3, SOCKS_ATYP_IPV4, 0, 53);
	unsigned f;

	(void)state;
	for (f = 0; f <= 255; f++) {
		dgram[2] = (uint8_t)f;
		assert_int_equal(proto_parse_udp_header(dgram, hl, &h), PROTO_OK);
		assert_int_equal(h.frag, f);
	}
}

static void
test_udp_header_every_short_datagram_is_truncated(void **state)
{
	static const struct {
		uint8_t atyp;
		uint8_t name_len;
	} cases[] = {
		{ SOCKS_ATYP_IPV4, 0 },
		{ SOCKS_ATYP_IPV6, 0 },
		{ SOCKS_ATYP_DOMAIN, 1 },
		{ SOCKS_ATYP_DOMAIN, 255 },
	};
	uint8_t dgram[PROTO_UDP_HEADER_MAX];
	struct proto_udp_header h;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t hl;

		memset(dgram, 0, 3);
		hl = 3 + build_addr(dgram + 3, cases[i].atyp, cases[i].name_len, 53);
		for (len = 0; len < hl; len++)
			assert_int_equal(proto_parse_udp_header(dgram, len, &h),
				PROTO_ERR_TRUNCATED);
	}
}

static void
test_udp_header_rejects_nonzero_reserved_bytes(void **state)
{
	uint8_t dgram[16] = { 0, 0, 0 };
	struct proto_udp_header h;
	size_t hl = 3 + build_addr(dgram + 3, SOCKS_ATYP_IPV4, 0, 53);
	unsigned r;

	(void)state;
	for (r = 1; r <= 255; r++) {
		dgram[0] = (uint8_t)r;
		dgram[1] = 0;
		assert_int_equal(proto_parse_udp_header(dgram, hl, &h), PROTO_ERR_RESERVED);
		/* The bad byte is in view even when the rest is missing. */
		assert_int_equal(proto_parse_udp_header(dgram, 1, &h), PROTO_ERR_RESERVED);
		dgram[0] = 0;
		dgram[1] = (uint8_t)r;
		assert_int_equal(proto_parse_udp_header(dgram, hl, &h), PROTO_ERR_RESERVED);
		assert_int_equal(proto_parse_udp_header(dgram, 2, &h), PROTO_ERR_RESERVED);
	}
}

static void
test_udp_header_rejects_bad_address_fields(void **state)
{
	uint8_t dgram[32] = { 0, 0, 0 };
	struct proto_udp_header h;
	size_t hl;
	unsigned a;

	(void)state;
	for (a = 0; a <= 255; a++) {
		if (a == SOCKS_ATYP_IPV4 || a == SOCKS_ATYP_DOMAIN || a == SOCKS_ATYP_IPV6)
			continue;
		dgram[3] = (uint8_t)a;
		assert_int_equal(proto_parse_udp_header(dgram, sizeof(dgram), &h), PROTO_ERR_ATYP);
	}

	hl = 3 + build_addr(dgram + 3, SOCKS_ATYP_DOMAIN, 0, 53);
	assert_int_equal(proto_parse_udp_header(dgram, hl, &h), PROTO_ERR_EMPTY_NAME);

	hl = 3 + build_addr(dgram + 3, SOCKS_ATYP_DOMAIN, 4, 53);
	dgram[7] = 0;
	assert_int_equal(proto_parse_udp_header(dgram, hl, &h), PROTO_ERR_BAD_NAME);
}

/* --- encoders ------------------------------------------------------------- */

static void
test_encode_method_and_auth_status_bytes(void **state)
{
	uint8_t out[2];

	(void)state;
	assert_int_equal(proto_encode_method(out, SOCKS_METHOD_PASSWORD), 2);
	assert_memory_equal(out, "\x05\x02", 2);
	assert_int_equal(proto_encode_method(out, SOCKS_METHOD_NO_ACCEPTABLE), 2);
	assert_memory_equal(out, "\x05\xFF", 2);
	/* RFC 1929 replies carry the sub-negotiation version, not 0x05. */
	assert_int_equal(proto_encode_auth_status(out, SOCKS_AUTH_STATUS_OK), 2);
	assert_memory_equal(out, "\x01\x00", 2);
	assert_int_equal(proto_encode_auth_status(out, SOCKS_AUTH_STATUS_FAILURE), 2);
	assert_memory_equal(out, "\x01\x01", 2);
}

static void
make_sin(struct sockaddr_in *sin, const char *ip, uint16_t port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

static void
make_sin6(struct sockaddr_in6 *sin6, const char *ip, uint16_t port)
{
	memset(sin6, 0, sizeof(*sin6));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
}

static void
test_encode_reply_ipv4(void **state)
{
	struct sockaddr_in sin;
	uint8_t out[PROTO_REPLY_MAX];

	(void)state;
	make_sin(&sin, "1.2.3.4", 0x1F90);
	assert_int_equal(proto_encode_reply(out, SOCKS_REP_SUCCEEDED, (struct sockaddr *)&sin), 10);
	assert_memory_equal(out, "\x05\x00\x00\x01\x01\x02\x03\x04\x1F\x90", 10);
}

static void
test_encode_reply_ipv6(void **state)
{
	struct sockaddr_in6 sin6;
	uint8_t out[PROTO_REPLY_MAX];

	(void)state;
	make_sin6(&sin6, "2001:db8::1", 443);
	assert_int_equal(proto_encode_reply(out, SOCKS_REP_SUCCEEDED, (struct sockaddr *)&sin6),
		22);
	assert_int_equal(22, PROTO_REPLY_MAX);
	assert_memory_equal(out,
		"\x05\x00\x00\x04"
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"
		"\x01\xBB",
		22);
}

static void
test_encode_reply_sends_ipv4_mapped_ipv6_as_ipv4(void **state)
{
	struct sockaddr_in6 sin6;
	uint8_t out[PROTO_REPLY_MAX];

	(void)state;
	make_sin6(&sin6, "::ffff:10.0.0.7", 1080);
	assert_int_equal(proto_encode_reply(out, SOCKS_REP_SUCCEEDED, (struct sockaddr *)&sin6),
		10);
	assert_memory_equal(out, "\x05\x00\x00\x01\x0A\x00\x00\x07\x04\x38", 10);
}

static void
test_encode_reply_without_address_is_ipv4_zero(void **state)
{
	struct sockaddr_storage ss;
	uint8_t out[PROTO_REPLY_MAX];

	(void)state;
	memset(out, 0xEE, sizeof(out));
	assert_int_equal(proto_encode_reply(out, SOCKS_REP_CONNECTION_REFUSED, NULL), 10);
	assert_memory_equal(out, "\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00", 10);

	memset(&ss, 0xEE, sizeof(ss));
	ss.ss_family = AF_UNSPEC;
	memset(out, 0xEE, sizeof(out));
	assert_int_equal(proto_encode_reply(out, SOCKS_REP_GENERAL_FAILURE, (struct sockaddr *)&ss),
		10);
	assert_memory_equal(out, "\x05\x01\x00\x01\x00\x00\x00\x00\x00\x00", 10);
}

static void
test_encode_reply_carries_every_rep_code(void **state)
{
	uint8_t out[PROTO_REPLY_MAX];
	unsigned rep;

	(void)state;
	for (rep = 0; rep <= 255; rep++) {
		assert_int_equal(proto_encode_reply(out, (uint8_t)rep, NULL), 10);
		assert_int_equal(out[0], SOCKS_VERSION);
		assert_int_equal(out[1], rep);
		assert_int_equal(out[2], 0);
	}
}

static void
test_encode_udp_header_for_each_source_family(void **state)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	uint8_t out[PROTO_UDP_HEADER_MAX];
	struct proto_udp_header h;

	(void)state;
	make_sin(&sin, "192.0.2.9", 53);
	assert_int_equal(proto_encode_udp_header(out, (struct sockaddr *)&sin), 10);
	assert_memory_equal(out, "\x00\x00\x00\x01\xC0\x00\x02\x09\x00\x35", 10);

	make_sin6(&sin6, "2001:db8::2", 5353);
	assert_int_equal(proto_encode_udp_header(out, (struct sockaddr *)&sin6), 22);
	assert_memory_equal(out,
		"\x00\x00\x00\x04"
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
		"\x14\xE9",
		22);
	/* What we send, our own parser reads back. */
	assert_int_equal(proto_parse_udp_header(out, 22, &h), PROTO_OK);
	assert_int_equal(h.header_len, 22);
	assert_int_equal(h.dst.port, 5353);

	make_sin6(&sin6, "::ffff:192.0.2.9", 53);
	assert_int_equal(proto_encode_udp_header(out, (struct sockaddr *)&sin6), 10);
	assert_memory_equal(out, "\x00\x00\x00\x01\xC0\x00\x02\x09\x00\x35", 10);

	assert_int_equal(proto_encode_udp_header(out, NULL), 10);
	assert_memory_equal(out, "\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);
}

static void
test_encode_addr_round_trips_through_the_request_parser(void **state)
{
	uint8_t msg[MSG_MAX];
	uint8_t enc[PROTO_REQUEST_MAX];
	struct proto_request a, b;
	static const struct {
		uint8_t atyp;
		uint8_t name_len;
	} cases[] = {
		{ SOCKS_ATYP_IPV4, 0 },
		{ SOCKS_ATYP_IPV6, 0 },
		{ SOCKS_ATYP_DOMAIN, 1 },
		{ SOCKS_ATYP_DOMAIN, 255 },
	};
	size_t i, consumed;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = build_request(msg, SOCKS_CMD_BIND, cases[i].atyp, cases[i].name_len,
			0x1234);
		size_t n;

		assert_int_equal(proto_parse_request(msg, len, &a, &consumed), PROTO_OK);
		enc[0] = SOCKS_VERSION;
		enc[1] = SOCKS_CMD_BIND;
		enc[2] = 0;
		n = proto_encode_addr(enc + 3, sizeof(enc) - 3, &a.dst);
		assert_int_equal(3 + n, len);
		assert_memory_equal(enc, msg, len);
		assert_int_equal(proto_parse_request(enc, len, &b, &consumed), PROTO_OK);
		assert_int_equal(b.dst.atyp, a.dst.atyp);
		assert_int_equal(b.dst.port, a.dst.port);
		/* One byte short of room: nothing is written. */
		assert_int_equal(proto_encode_addr(enc + 3, n - 1, &a.dst), 0);
	}
}

static void
test_encode_addr_refuses_what_the_parser_would_reject(void **state)
{
	struct socks_addr a;
	uint8_t out[PROTO_REQUEST_MAX];

	(void)state;
	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	a.name_len = 0;
	assert_int_equal(proto_encode_addr(out, sizeof(out), &a), 0);
	a.atyp = 2;
	assert_int_equal(proto_encode_addr(out, sizeof(out), &a), 0);
}

/* --- status and errno mapping --------------------------------------------- */

static void
test_rep_for_status_maps_each_error_to_one_reply(void **state)
{
	(void)state;
	assert_int_equal(proto_rep_for_status(PROTO_ERR_COMMAND), SOCKS_REP_COMMAND_NOT_SUPPORTED);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_ATYP), SOCKS_REP_ATYP_NOT_SUPPORTED);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_VERSION), 0xFF);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_RESERVED), SOCKS_REP_GENERAL_FAILURE);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_EMPTY_NAME), SOCKS_REP_GENERAL_FAILURE);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_BAD_NAME), SOCKS_REP_GENERAL_FAILURE);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_TRUNCATED), SOCKS_REP_GENERAL_FAILURE);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_NO_METHODS), SOCKS_REP_GENERAL_FAILURE);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_AUTH_VERSION), SOCKS_REP_GENERAL_FAILURE);
	assert_int_equal(proto_rep_for_status(PROTO_ERR_EMPTY_USERNAME), SOCKS_REP_GENERAL_FAILURE);
}

static void
test_rep_from_errno_maps_connect_failures(void **state)
{
	static const int others[] = { 0, EACCES, EPERM, EADDRNOTAVAIL, ECONNRESET, EINVAL, ENOMEM,
		EAFNOSUPPORT };
	size_t i;

	(void)state;
	assert_int_equal(proto_rep_from_errno(ECONNREFUSED), SOCKS_REP_CONNECTION_REFUSED);
	assert_int_equal(proto_rep_from_errno(ENETUNREACH), SOCKS_REP_NETWORK_UNREACHABLE);
	assert_int_equal(proto_rep_from_errno(ENETDOWN), SOCKS_REP_NETWORK_UNREACHABLE);
	assert_int_equal(proto_rep_from_errno(EHOSTUNREACH), SOCKS_REP_HOST_UNREACHABLE);
	assert_int_equal(proto_rep_from_errno(EHOSTDOWN), SOCKS_REP_HOST_UNREACHABLE);
	assert_int_equal(proto_rep_from_errno(ETIMEDOUT), SOCKS_REP_HOST_UNREACHABLE);
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		assert_int_equal(proto_rep_from_errno(others[i]), SOCKS_REP_GENERAL_FAILURE);
}

static void
test_status_rep_and_cmd_names_are_distinct_and_never_null(void **state)
{
	enum proto_status a, b;
	unsigned i;

	(void)state;
	for (a = PROTO_OK; a <= PROTO_ERR_TRUNCATED; a++) {
		assert_non_null(proto_status_str(a));
		for (b = PROTO_OK; b < a; b++)
			assert_string_not_equal(proto_status_str(a), proto_status_str(b));
	}
	for (i = 0; i <= 255; i++)
		assert_non_null(proto_rep_str((uint8_t)i));
	assert_string_equal(proto_rep_str(SOCKS_REP_CONNECTION_REFUSED), "connection refused");
	assert_string_equal(proto_cmd_str(SOCKS_CMD_CONNECT), "connect");
	assert_string_equal(proto_cmd_str(SOCKS_CMD_BIND), "bind");
	assert_string_equal(proto_cmd_str(SOCKS_CMD_UDP_ASSOCIATE), "udp-associate");
	assert_string_equal(proto_cmd_str(0), "unknown");
}

/* --- method choice -------------------------------------------------------- */

static void
test_choose_method_follows_server_preference_not_client_order(void **state)
{
	const uint8_t msg[] = { SOCKS_VERSION, 2, SOCKS_METHOD_NONE, SOCKS_METHOD_PASSWORD };
	const uint8_t pass_first[] = { SOCKS_METHOD_PASSWORD, SOCKS_METHOD_NONE };
	const uint8_t none_first[] = { SOCKS_METHOD_NONE, SOCKS_METHOD_PASSWORD };
	const uint8_t pass_only[] = { SOCKS_METHOD_PASSWORD };
	struct proto_greeting g;
	size_t consumed;

	(void)state;
	assert_int_equal(proto_parse_greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
	assert_int_equal(proto_choose_method(&g, pass_first, sizeof(pass_first)),
		SOCKS_METHOD_PASSWORD);
	assert_int_equal(proto_choose_method(&g, none_first, sizeof(none_first)),
		SOCKS_METHOD_NONE);
	assert_int_equal(proto_choose_method(&g, pass_only, sizeof(pass_only)),
		SOCKS_METHOD_PASSWORD);
}

static void
test_choose_method_without_overlap_is_no_acceptable(void **state)
{
	const uint8_t msg[] = { SOCKS_VERSION, 2, SOCKS_METHOD_GSSAPI, 0x80 };
	const uint8_t prefs[] = { SOCKS_METHOD_PASSWORD, SOCKS_METHOD_NONE };
	struct proto_greeting g;
	size_t consumed;

	(void)state;
	assert_int_equal(proto_parse_greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
	assert_int_equal(proto_choose_method(&g, prefs, sizeof(prefs)), SOCKS_METHOD_NO_ACCEPTABLE);
	assert_int_equal(proto_choose_method(&g, prefs, 0), SOCKS_METHOD_NO_ACCEPTABLE);
}

static void
test_choose_method_finds_the_last_of_255_offered(void **state)
{
	uint8_t msg[PROTO_GREETING_MAX];
	const uint8_t prefs[] = { SOCKS_METHOD_PASSWORD };
	struct proto_greeting g;
	size_t consumed;

	(void)state;
	msg[0] = SOCKS_VERSION;
	msg[1] = 255;
	memset(msg + 2, 0x80, 254);
	msg[2 + 254] = SOCKS_METHOD_PASSWORD;
	assert_int_equal(proto_parse_greeting(msg, sizeof(msg), &g, &consumed), PROTO_OK);
	assert_int_equal(proto_choose_method(&g, prefs, 1), SOCKS_METHOD_PASSWORD);
	g.nmethods = 254;
	assert_int_equal(proto_choose_method(&g, prefs, 1), SOCKS_METHOD_NO_ACCEPTABLE);
}

/* --- addresses ------------------------------------------------------------ */

static void
test_addr_format_ipv4_ipv6_and_domain(void **state)
{
	struct socks_addr a;
	char out[600];

	(void)state;
	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_IPV4;
	memcpy(a.ip.ipv4, "\x01\x02\x03\x04", 4);
	a.port = 80;
	proto_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "1.2.3.4:80");

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_IPV6;
	a.ip.ipv6[15] = 1;
	a.port = 80;
	proto_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "[::1]:80");

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	strcpy(a.name, "name");
	a.name_len = 4;
	a.port = 443;
	proto_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "name:443");
}

static void
test_addr_format_escapes_bytes_that_would_break_a_log_line(void **state)
{
	struct socks_addr a;
	char out[64];

	(void)state;
	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	memcpy(a.name, "a b\nc\\\xff", 7);
	a.name_len = 7;
	a.port = 1;
	proto_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "a\\x20b\\x0ac\\x5c\\xff:1");
}

static void
test_addr_format_always_terminates_a_short_buffer(void **state)
{
	struct socks_addr a;
	char out[8];

	(void)state;
	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	memset(a.name, 'x', 255);
	a.name_len = 255;
	a.port = 65535;
	memset(out, 'Z', sizeof(out));
	proto_addr_format(&a, out, sizeof(out));
	assert_string_equal(out, "xxxxxxx");

	/* cap 0 writes nothing at all. */
	out[0] = 'Z';
	proto_addr_format(&a, out, 0);
	assert_int_equal(out[0], 'Z');
}

static void
test_addr_sockaddr_round_trip_and_domain_refused(void **state)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_storage ss;
	struct socks_addr a;
	socklen_t len;

	(void)state;
	make_sin(&sin, "198.51.100.7", 8080);
	proto_addr_from_sockaddr(&a, (struct sockaddr *)&sin);
	assert_int_equal(a.atyp, SOCKS_ATYP_IPV4);
	assert_int_equal(a.port, 8080);
	assert_int_equal(proto_addr_to_sockaddr(&a, &ss, &len), 0);
	assert_int_equal(len, sizeof(sin));
	assert_memory_equal(&ss, &sin, sizeof(sin));

	make_sin6(&sin6, "2001:db8::7", 8443);
	proto_addr_from_sockaddr(&a, (struct sockaddr *)&sin6);
	assert_int_equal(a.atyp, SOCKS_ATYP_IPV6);
	assert_int_equal(a.port, 8443);
	assert_int_equal(proto_addr_to_sockaddr(&a, &ss, &len), 0);
	assert_int_equal(len, sizeof(sin6));
	assert_memory_equal(&ss, &sin6, sizeof(sin6));

	/* A mapped address stays IPv6 so it can go back to its own socket. */
	make_sin6(&sin6, "::ffff:192.0.2.1", 53);
	proto_addr_from_sockaddr(&a, (struct sockaddr *)&sin6);
	assert_int_equal(a.atyp, SOCKS_ATYP_IPV6);

	proto_addr_from_sockaddr(&a, NULL);
	assert_int_equal(a.atyp, SOCKS_ATYP_IPV4);
	assert_true(proto_addr_is_unspecified(&a));
	assert_int_equal(a.port, 0);

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	a.name_len = 1;
	a.name[0] = 'x';
	assert_int_equal(proto_addr_to_sockaddr(&a, &ss, &len), -1);
}

static void
test_addr_is_unspecified_only_for_all_zero_ip(void **state)
{
	struct socks_addr a;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_IPV4;
	a.port = 1234;
	assert_true(proto_addr_is_unspecified(&a));
	a.ip.ipv4[3] = 1;
	assert_false(proto_addr_is_unspecified(&a));

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_IPV6;
	assert_true(proto_addr_is_unspecified(&a));
	a.ip.ipv6[15] = 1;
	assert_false(proto_addr_is_unspecified(&a));

	memset(&a, 0, sizeof(a));
	a.atyp = SOCKS_ATYP_DOMAIN;
	a.name_len = 1;
	a.name[0] = '0';
	assert_false(proto_addr_is_unspecified(&a));
}

/* --- SOCKS4 / SOCKS4a (issue 9: same port, first byte 0x04) -------------- */

static size_t
build_socks4(uint8_t *out, uint8_t cmd, const uint8_t ip[4], size_t ulen, size_t dlen)
{
	size_t n = 0;

	out[n++] = SOCKS4_VERSION;
	out[n++] = cmd;
	out[n++] = 0x1F;
	out[n++] = 0x90; /* port 8080 */
	memcpy(out + n, ip, 4);
	n += 4;
	for (size_t i = 0; i < ulen; i++)
		out[n++] = (uint8_t)('a' + i % 26);
	out[n++] = 0;
	for (size_t i = 0; i < dlen; i++)
		out[n++] = (uint8_t)('m' + i % 10);
	if (dlen)
		out[n++] = 0;
	return n;
}

static void
test_socks4_connect_and_bind_parse_at_every_split(void **state)
{
	static const uint8_t ip[4] = { 10, 1, 2, 3 };
	static const size_t ulens[] = { 0, 1, 255 };
	uint8_t msg[MSG_MAX];
	union parsed whole;

	(void)state;
	for (uint8_t cmd = SOCKS_CMD_CONNECT; cmd <= SOCKS_CMD_BIND; cmd++) {
		for (size_t u = 0; u < sizeof(ulens) / sizeof(ulens[0]); u++) {
			size_t n = build_socks4(msg, cmd, ip, ulens[u], 0);
			unit_assert_parses_at_every_split(&socks4_parser, msg, n, &whole);
			assert_int_equal(whole.s4.cmd, cmd);
			assert_int_equal(whole.s4.dst.atyp, SOCKS_ATYP_IPV4);
			assert_int_equal(whole.s4.dst.port, 8080);
			assert_memory_equal(whole.s4.dst.ip.ipv4, ip, 4);
			assert_int_equal(strlen(whole.s4.userid), ulens[u]);
		}
	}
}

static void
test_socks4a_domain_parses_at_every_split(void **state)
{
	static const uint8_t ip[4] = { 0, 0, 0, 1 };
	static const size_t dlens[] = { 1, 255 };
	uint8_t msg[MSG_MAX];
	union parsed whole;

	(void)state;
	for (size_t d = 0; d < sizeof(dlens) / sizeof(dlens[0]); d++) {
		size_t n = build_socks4(msg, SOCKS_CMD_CONNECT, ip, 3, dlens[d]);
		unit_assert_parses_at_every_split(&socks4_parser, msg, n, &whole);
		assert_int_equal(whole.s4.dst.atyp, SOCKS_ATYP_DOMAIN);
		assert_int_equal(whole.s4.dst.name_len, dlens[d]);
		assert_int_equal(strlen(whole.s4.dst.name), dlens[d]);
		assert_string_equal(whole.s4.userid, "abc");
	}
}

static void
test_socks4_dstip_0_0_0_0_is_an_address_not_4a(void **state)
{
	static const uint8_t ip[4] = { 0, 0, 0, 0 };
	uint8_t msg[MSG_MAX];
	union parsed got;
	size_t n = build_socks4(msg, SOCKS_CMD_CONNECT, ip, 2, 0), used;

	(void)state;
	assert_int_equal(unit_parse_poisoned(&socks4_parser, msg, n, &got, &used), PROTO_OK);
	assert_int_equal(used, n);
	assert_int_equal(got.s4.dst.atyp, SOCKS_ATYP_IPV4);
}

static void
test_socks4_errors_are_reported_at_the_offending_byte(void **state)
{
	static const uint8_t ip[4] = { 127, 0, 0, 1 }, ip4a[4] = { 0, 0, 0, 9 };
	uint8_t msg[MSG_MAX];
	size_t n;

	(void)state;
	n = build_socks4(msg, SOCKS_CMD_CONNECT, ip, 1, 0);
	msg[0] = 0x05;
	unit_assert_error_from(&socks4_parser, msg, n, 0, PROTO_ERR_VERSION);
	for (unsigned cmd = 0; cmd < 256; cmd++) {
		if (cmd == SOCKS_CMD_CONNECT || cmd == SOCKS_CMD_BIND)
			continue;
		n = build_socks4(msg, (uint8_t)cmd, ip, 1, 0);
		unit_assert_error_from(&socks4_parser, msg, n, 1, PROTO_ERR_COMMAND);
	}
	/* A USERID of 256 bytes: the 256th byte without a NUL is too long. */
	n = build_socks4(msg, SOCKS_CMD_CONNECT, ip, 256, 0);
	unit_assert_error_from(&socks4_parser, msg, n, 8 + 255, PROTO_ERR_TOO_LONG);
	n = build_socks4(msg, SOCKS_CMD_CONNECT, ip4a, 0, 256);
	unit_assert_error_from(&socks4_parser, msg, n, 9 + 255, PROTO_ERR_TOO_LONG);
	/* 4a with an empty name: the NUL right after USERID's NUL. */
	n = build_socks4(msg, SOCKS_CMD_CONNECT, ip4a, 2, 0);
	msg[n++] = 0;
	unit_assert_error_from(&socks4_parser, msg, n, n - 1, PROTO_ERR_EMPTY_NAME);
}

static void
test_socks4_reply_encodes_ipv4_and_zeros_for_ipv6(void **state)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	uint8_t out[PROTO_SOCKS4_REPLY_LEN];
	static const uint8_t want4[] = { 0x00, 90, 0x04, 0x38, 192, 0, 2, 7 };
	static const uint8_t want_zero[] = { 0x00, 91, 0, 0, 0, 0, 0, 0 };

	(void)state;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(1080);
	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	assert_int_equal(
		proto_encode_socks4_reply(out, SOCKS4_REP_GRANTED, (struct sockaddr *)&sin), 8);
	assert_memory_equal(out, want4, 8);
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	assert_int_equal(
		proto_encode_socks4_reply(out, SOCKS4_REP_REJECTED, (struct sockaddr *)&sin6), 8);
	assert_memory_equal(out, want_zero, 8);
	assert_int_equal(proto_encode_socks4_reply(out, SOCKS4_REP_REJECTED, NULL), 8);
	assert_memory_equal(out, want_zero, 8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting_every_method_count_parses_at_every_split),
		cmocka_unit_test(test_greeting_accepts_every_method_value),
		cmocka_unit_test(test_greeting_rejects_every_wrong_version_on_first_byte),
		cmocka_unit_test(test_greeting_rejects_zero_methods),
		cmocka_unit_test(
			test_userpass_lengths_1_and_255_and_empty_password_parse_at_every_split),
		cmocka_unit_test(test_userpass_rejects_every_wrong_subnegotiation_version),
		cmocka_unit_test(test_userpass_rejects_empty_username),
		cmocka_unit_test(test_userpass_keeps_bytes_after_the_password_for_the_request),
		cmocka_unit_test(test_request_every_command_and_address_type_parses_at_every_split),
		cmocka_unit_test(test_request_port_is_read_in_network_order),
		cmocka_unit_test(test_request_rejects_every_wrong_version_on_first_byte),
		cmocka_unit_test(test_request_rejects_every_unknown_command),
		cmocka_unit_test(test_request_rejects_every_nonzero_reserved_byte),
		cmocka_unit_test(test_request_rejects_every_unknown_address_type),
		cmocka_unit_test(test_request_rejects_empty_domain_name),
		cmocka_unit_test(test_request_rejects_nul_anywhere_in_domain_as_soon_as_it_arrives),
		cmocka_unit_test(test_request_accepts_every_nonzero_byte_in_domain),
		cmocka_unit_test(test_request_reports_the_first_bad_field_in_wire_order),
		cmocka_unit_test(
			test_pipelined_greeting_userpass_request_and_payload_parse_in_sequence),
		cmocka_unit_test(
			test_udp_header_each_address_type_gives_header_len_and_leaves_data),
		cmocka_unit_test(test_udp_header_reports_fragment_number_for_the_caller_to_drop),
		cmocka_unit_test(test_udp_header_every_short_datagram_is_truncated),
		cmocka_unit_test(test_udp_header_rejects_nonzero_reserved_bytes),
		cmocka_unit_test(test_udp_header_rejects_bad_address_fields),
		cmocka_unit_test(test_encode_method_and_auth_status_bytes),
		cmocka_unit_test(test_encode_reply_ipv4),
		cmocka_unit_test(test_encode_reply_ipv6),
		cmocka_unit_test(test_encode_reply_sends_ipv4_mapped_ipv6_as_ipv4),
		cmocka_unit_test(test_encode_reply_without_address_is_ipv4_zero),
		cmocka_unit_test(test_encode_reply_carries_every_rep_code),
		cmocka_unit_test(test_encode_udp_header_for_each_source_family),
		cmocka_unit_test(test_encode_addr_round_trips_through_the_request_parser),
		cmocka_unit_test(test_encode_addr_refuses_what_the_parser_would_reject),
		cmocka_unit_test(test_rep_for_status_maps_each_error_to_one_reply),
		cmocka_unit_test(test_rep_from_errno_maps_connect_failures),
		cmocka_unit_test(test_status_rep_and_cmd_names_are_distinct_and_never_null),
		cmocka_unit_test(test_choose_method_follows_server_preference_not_client_order),
		cmocka_unit_test(test_choose_method_without_overlap_is_no_acceptable),
		cmocka_unit_test(test_choose_method_finds_the_last_of_255_offered),
		cmocka_unit_test(test_addr_format_ipv4_ipv6_and_domain),
		cmocka_unit_test(test_addr_format_escapes_bytes_that_would_break_a_log_line),
		cmocka_unit_test(test_addr_format_always_terminates_a_short_buffer),
		cmocka_unit_test(test_addr_sockaddr_round_trip_and_domain_refused),
		cmocka_unit_test(test_addr_is_unspecified_only_for_all_zero_ip),
		cmocka_unit_test(test_socks4_connect_and_bind_parse_at_every_split),
		cmocka_unit_test(test_socks4a_domain_parses_at_every_split),
		cmocka_unit_test(test_socks4_dstip_0_0_0_0_is_an_address_not_4a),
		cmocka_unit_test(test_socks4_errors_are_reported_at_the_offending_byte),
		cmocka_unit_test(test_socks4_reply_encodes_ipv4_and_zeros_for_ipv6),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
