/*
 * Unit tests for addr, the pure address helpers split out of net: numeric
 * "ADDR:PORT" parsing with and without a default port, formatting back,
 * comparison, IPv4-mapped unmapping and the loopback/unspecified tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "addr.h"

/* Parses s (port required) and formats it back. */
static const char *
round_trip(const char *s, int default_port, char *buf, size_t cap)
{
	union sockaddr_any a;

	if (addr_parse_with_port(s, default_port, &a) < 0)
		return NULL;
	return addr_format(&a, buf, cap);
}

static void
test_parse_with_port_accepts_both_families(void **state)
{
	char buf[ADDR_STRLEN];
	union sockaddr_any a;

	assert_string_equal(round_trip("1.2.3.4:80", -1, buf, sizeof(buf)), "1.2.3.4:80");
	assert_string_equal(round_trip("[::1]:1080", -1, buf, sizeof(buf)), "[::1]:1080");
	assert_string_equal(round_trip("0.0.0.0:0", -1, buf, sizeof(buf)), "0.0.0.0:0");
	assert_string_equal(round_trip("1.2.3.4:65535", -1, buf, sizeof(buf)), "1.2.3.4:65535");
	/* Leading zeros are digits like any other. */
	assert_string_equal(round_trip("1.2.3.4:0080", -1, buf, sizeof(buf)), "1.2.3.4:80");
	assert_int_equal(addr_parse_with_port("[2001:db8::1]:53", -1, &a), 0);
	assert_int_equal(a.sa.sa_family, AF_INET6);
	assert_int_equal(addr_port(&a), 53);
	assert_int_equal(addr_len(&a), sizeof(struct sockaddr_in6));
}

static void
test_parse_with_port_default_port(void **state)
{
	char buf[ADDR_STRLEN];

	assert_string_equal(round_trip("1.2.3.4", 53, buf, sizeof(buf)), "1.2.3.4:53");
	/* More than one colon: a bare IPv6 address, not ADDR:PORT. */
	assert_string_equal(round_trip("::1", 53, buf, sizeof(buf)), "[::1]:53");
	assert_string_equal(round_trip("[::1]", 53, buf, sizeof(buf)), "[::1]:53");
	assert_string_equal(round_trip("1.2.3.4:54", 53, buf, sizeof(buf)), "1.2.3.4:54");
	assert_null(round_trip("1.2.3.4", -1, buf, sizeof(buf)));
	assert_null(round_trip("[::1]", -1, buf, sizeof(buf)));
}

static void
test_parse_with_port_rejects(void **state)
{
	static const char *const bad[] = {
		"",
		":80",
		"1.2.3.4:",
		"1.2.3.4:65536",
		"1.2.3.4:99999999999999999999",
		"1.2.3.4:+80",
		"1.2.3.4:-1",
		"1.2.3.4: 80",
		"1.2.3.4:80 ",
		"1.2.3.4:0x50",
		"1.2.3.4:8a",
		"[1.2.3.4]:80",
		"[::1",
		"[::1]80",
		"[]:80",
		"host:80",
		"1.2.3.256:80",
		"::1:80:",
	};
	union sockaddr_any a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (addr_parse_with_port(bad[i], -1, &a) == 0)
			fail_msg("accepted '%s'", bad[i]);
	}
}

static void
test_parse_bare_address(void **state)
{
	union sockaddr_any a;
	char buf[ADDR_STRLEN];

	assert_int_equal(addr_parse("10.0.0.1", 443, &a), 0);
	assert_string_equal(addr_format(&a, buf, sizeof(buf)), "10.0.0.1:443");
	assert_string_equal(addr_ip_format(&a, buf, sizeof(buf)), "10.0.0.1");
	assert_int_equal(addr_parse("fe80::1", 0, &a), 0);
	assert_string_equal(addr_ip_format(&a, buf, sizeof(buf)), "fe80::1");
	assert_int_equal(addr_parse("fe80::1%eth0", 0, &a), -1);
	assert_int_equal(addr_parse("[::1]", 0, &a), -1);
	assert_int_equal(addr_parse("1.2.3.4:80", 0, &a), -1);
	assert_int_equal(addr_parse("localhost", 0, &a), -1);
}

static void
test_from_ip_and_ports(void **state)
{
	static const uint8_t v4[4] = { 192, 0, 2, 7 };
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 9 };
	union sockaddr_any a, b;
	char buf[ADDR_STRLEN];

	memset(&a, 0x5A, sizeof(a));
	addr_from_ip(&a, AF_INET, v4, 8080);
	assert_int_equal(addr_parse("192.0.2.7", 8080, &b), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	addr_from_ip(&a, AF_INET6, v6, 1);
	assert_string_equal(addr_format(&a, buf, sizeof(buf)), "[2001:db8::9]:1");
	addr_set_port(&a, 65535);
	assert_int_equal(addr_port(&a), 65535);
	assert_int_equal(ntohs(a.sin6.sin6_port), 65535);
}

static void
test_equal_and_ip_equal(void **state)
{
	union sockaddr_any a, b, c, d;

	assert_int_equal(addr_parse("1.2.3.4", 80, &a), 0);
	assert_int_equal(addr_parse("1.2.3.4", 81, &b), 0);
	assert_int_equal(addr_parse("::ffff:1.2.3.4", 80, &c), 0);
	assert_int_equal(addr_parse("1.2.3.4", 80, &d), 0);
	assert_true(addr_equal(&a, &d));
	assert_false(addr_equal(&a, &b));
	assert_true(addr_ip_equal(&a, &b));
	/* A mapped address is another family until unmapped. */
	assert_false(addr_ip_equal(&a, &c));
	addr_unmap(&c);
	assert_true(addr_equal(&a, &c));
	assert_memory_equal(&a, &c, sizeof(a));
}

static void
test_unmap_leaves_other_addresses(void **state)
{
	union sockaddr_any a, before;

	assert_int_equal(addr_parse("2001:db8::1", 5, &a), 0);
	before = a;
	addr_unmap(&a);
	assert_memory_equal(&a, &before, sizeof(a));
	assert_int_equal(addr_parse("9.9.9.9", 5, &a), 0);
	before = a;
	addr_unmap(&a);
	assert_memory_equal(&a, &before, sizeof(a));
}

static void
test_loopback_and_unspecified(void **state)
{
	static const struct {
		const char *ip;
		bool loopback, unspecified;
	} cases[] = {
		{ "127.0.0.1", true, false },
		{ "127.255.0.9", true, false },
		{ "128.0.0.1", false, false },
		{ "::1", true, false },
		{ "::ffff:127.0.0.1", true, false },
		{ "::2", false, false },
		{ "0.0.0.0", false, true },
		{ "::", false, true },
		{ "::ffff:0.0.0.0", false, true },
		{ "10.0.0.0", false, false },
	};
	union sockaddr_any a;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(addr_parse(cases[i].ip, 0, &a), 0);
		if (addr_is_loopback(&a) != cases[i].loopback ||
			addr_is_unspecified(&a) != cases[i].unspecified)
			fail_msg("wrong answer for %s", cases[i].ip);
	}
	memset(&a, 0, sizeof(a));
	a.sa.sa_family = AF_UNIX;
	assert_false(addr_is_loopback(&a));
	assert_false(addr_is_unspecified(&a));
}

static void
test_format_unknown_family_and_small_buffers(void **state)
{
	union sockaddr_any a;
	char buf[ADDR_STRLEN], small[6];

	memset(&a, 0, sizeof(a));
	a.sa.sa_family = AF_UNIX;
	assert_string_equal(addr_ip_format(&a, buf, sizeof(buf)), "?");
	assert_int_equal(addr_parse("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535, &a), 0);
	addr_format(&a, buf, sizeof(buf));
	assert_true(strlen(buf) < sizeof(buf));
	assert_int_equal(addr_parse("10.20.30.40", 5, &a), 0);
	assert_string_equal(addr_format(&a, small, sizeof(small)), "10.20");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_with_port_accepts_both_families),
		cmocka_unit_test(test_parse_with_port_default_port),
		cmocka_unit_test(test_parse_with_port_rejects),
		cmocka_unit_test(test_parse_bare_address),
		cmocka_unit_test(test_from_ip_and_ports),
		cmocka_unit_test(test_equal_and_ip_equal),
		cmocka_unit_test(test_unmap_leaves_other_addresses),
		cmocka_unit_test(test_loopback_and_unspecified),
		cmocka_unit_test(test_format_unknown_family_and_small_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
