/*
 * CONNECT through the real daemon with method 00: the success reply's exact
 * bytes (BND is the address the target sees, not 0.0.0.0), and the
 * reply-then-close answers to a refused port, an unknown command, an unknown
 * address type and a wrong protocol version. Bytes are spelled out here so
 * the expected wire format is readable in the test (RFC 1928 §4, §6).
 */
#include "harness.h"

#include <netinet/in.h>
#include <sys/socket.h>

/* A fresh connection that has done the no-auth greeting: 05 01 00 -> 05 00. */
static int
greeted(const struct it_fixture *fx, int family)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	const uint8_t chosen[] = { 0x05, 0x00 };
	int fd = it_connect(family, fx->d.port);

	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	return fd;
}

static void
read_reply(int fd, struct it_reply *r)
{
	char err[256];

	if (it_read_reply(fd, r, IT_IO_TIMEOUT_MS, err, sizeof(err)) < 0)
		fail_msg("%s", err);
}

static void
test_connect_ipv4_replies_success_with_bnd_seen_by_target(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.peer4.port;
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	const uint8_t head[] = { 0x05, 0x00, 0x00, 0x01 };
	const uint8_t loop4[] = { 127, 0, 0, 1 };
	uint8_t seen[7];
	struct it_reply r;
	int fd = greeted(fx, AF_INET);

	it_send_bytes(fd, req, sizeof(req));
	read_reply(fd, &r);
	it_assert_mem(r.raw, head, sizeof(head), "reply VER REP RSV ATYP");
	assert_int_equal(r.len, 10);
	/* The peer target's first bytes: the proxy's outbound address as
	 * ATYP ADDR PORT, to compare with BND byte for byte. */
	assert_int_equal(it_recv_exact(fd, seen, sizeof(seen), IT_IO_TIMEOUT_MS), sizeof(seen));
	assert_int_equal(seen[0], 0x01);
	if (it_server_has(IT_CAP_BND_ADDR)) {
		it_assert_mem(r.addr, loop4, 4, "BND.ADDR");
		it_assert_mem(r.raw + 3, seen, sizeof(seen),
			"reply ATYP BND.ADDR BND.PORT vs the peer address the target saw");
	}
	/* The target then closes its side: the client must see that EOF. */
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_connect_ipv6_via_v6_listener_replies_bnd_seen_by_target(void **state)
{
	struct it_fixture *fx = it_fx(state);

	if (!it_have_ipv6())
		skip();
	const uint16_t p = it_tg.peer6.port;
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		1, p >> 8, p & 0xff };
	const uint8_t head[] = { 0x05, 0x00, 0x00, 0x04 };
	const uint8_t loop6[16] = { [15] = 1 };
	uint8_t seen[19];
	struct it_reply r;
	int fd = greeted(fx, AF_INET6);

	it_send_bytes(fd, req, sizeof(req));
	read_reply(fd, &r);
	assert_int_equal(r.rep, 0x00);
	assert_int_equal(it_recv_exact(fd, seen, sizeof(seen), IT_IO_TIMEOUT_MS), sizeof(seen));
	assert_int_equal(seen[0], 0x04);
	if (it_server_has(IT_CAP_BND_ADDR)) {
		it_assert_mem(r.raw, head, sizeof(head), "reply VER REP RSV ATYP");
		assert_int_equal(r.len, 22);
		it_assert_mem(r.addr, loop6, 16, "BND.ADDR");
		it_assert_mem(r.raw + 3, seen, sizeof(seen),
			"reply ATYP BND.ADDR BND.PORT vs the peer address the target saw");
	}
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_connect_ipv6_target_relays_echo(void **state)
{
	struct it_fixture *fx = it_fx(state);

	if (!it_have_ipv6())
		skip();
	int fd = it_open_tunnel(fx, AF_INET6, &it_tg.echo6);
	it_expect_echo(fd, 65536, 6);
	it_close(fd);
}

static void
test_connect_to_refused_port_replies_rep_05_then_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.closed_port4;
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	const uint8_t head[] = { 0x05, 0x05, 0x00 };
	struct it_reply r;
	int fd = greeted(fx, AF_INET);

	it_send_bytes(fd, req, sizeof(req));
	read_reply(fd, &r);
	it_assert_mem(r.raw, head, sizeof(head), "reply VER REP RSV (connection refused)");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_unknown_command_replies_rep_07_then_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x05, 0x09, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	const uint8_t head[] = { 0x05, 0x07, 0x00 };
	struct it_reply r;
	int fd = greeted(fx, AF_INET);

	it_send_bytes(fd, req, sizeof(req));
	read_reply(fd, &r);
	it_assert_mem(r.raw, head, sizeof(head), "reply VER REP RSV (command not supported)");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_unknown_address_type_replies_rep_08_then_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	/* ATYP 05 followed by what an IPv4 request would carry, in one write. */
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x05, 127, 0, 0, 1, p >> 8, p & 0xff };
	const uint8_t head[] = { 0x05, 0x08, 0x00 };
	struct it_reply r;
	int fd = greeted(fx, AF_INET);

	it_send_bytes(fd, req, sizeof(req));
	read_reply(fd, &r);
	it_assert_mem(r.raw, head, sizeof(head), "reply VER REP RSV (address type not supported)");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_wrong_version_closes_without_sending_anything(void **state)
{
	struct it_fixture *fx = it_fx(state);
	/* 06 is neither SOCKS5 nor SOCKS4 (04): nothing sensible to answer. */
	const uint8_t greet[] = { 0x06, 0x01, 0x00 };
	int fd;

	it_require(IT_CAP_SILENT_VERSION);
	fd = it_connect(AF_INET, fx->d.port);
	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	enum it_close c = it_wait_close(fd, 2000);
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("want close with no bytes within 2 s, got %s", it_close_str(c));
	it_close(fd);
}

static void
test_wrong_version_in_request_closes_without_reply(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x04, 0x01, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	int fd;

	it_require(IT_CAP_SILENT_VERSION);
	fd = greeted(fx, AF_INET);
	it_send_bytes(fd, req, sizeof(req));
	enum it_close c = it_wait_close(fd, 2000);
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("want close with no reply within 2 s, got %s", it_close_str(c));
	it_close(fd);
}

static int
setup(void **state)
{
	return it_fixture_start(state, "auth none\nlog-level debug\n", NULL, NULL);
}

int
it_run_connect_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_connect_ipv4_replies_success_with_bnd_seen_by_target),
		IT_TEST(test_connect_ipv6_via_v6_listener_replies_bnd_seen_by_target),
		IT_TEST(test_connect_ipv6_target_relays_echo),
		IT_TEST(test_connect_to_refused_port_replies_rep_05_then_closes),
		IT_TEST(test_unknown_command_replies_rep_07_then_closes),
		IT_TEST(test_unknown_address_type_replies_rep_08_then_closes),
		IT_TEST(test_wrong_version_closes_without_sending_anything),
		IT_TEST(test_wrong_version_in_request_closes_without_reply),
	};

	return cmocka_run_group_tests_name("connect (auth none)", tests, setup, it_fixture_stop);
}
