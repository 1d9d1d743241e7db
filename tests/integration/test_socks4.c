/*
 * SOCKS4 and SOCKS4a on the daemon's SOCKS5 port ("socks4 on" is the
 * default with "auth none"): a request is VN=04 CD DSTPORT DSTIP USERID 00
 * (SOCKS4a: DSTIP 0.0.0.x, x != 0, then the name and 00), the reply is
 * eight bytes, VN=00 CD DSTPORT DSTIP, with CD 90 (5A) granted or 91 (5B)
 * rejected or failed. CONNECT relays; BIND answers twice like SOCKS5's.
 * With "auth password" SOCKS4 is off by default (it carries no password):
 * such a request is closed without a reply. curl --socks4/--socks4a too.
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define S4_REPLY_LEN 8

static int
connected(const struct it_fixture *fx)
{
	int fd = it_connect(AF_INET, fx->d.port);

	if (fd < 0)
		fail_msg("connect to the daemon: %s", strerror(errno));
	return fd;
}

/* Reads the 8-byte reply into out and checks VN 00 and CD. */
static void
expect_s4_reply(int fd, uint8_t cd, uint8_t out[S4_REPLY_LEN], int timeout_ms)
{
	size_t k = it_recv_exact(fd, out, S4_REPLY_LEN, timeout_ms);

	if (k != S4_REPLY_LEN)
		fail_msg("SOCKS4 reply: got %zu of 8 bytes (%s)", k,
			errno ? strerror(errno) : "EOF");
	const uint8_t head[] = { 0x00, cd };
	it_assert_mem(out, head, sizeof(head), "SOCKS4 reply VN CD");
}

static void
test_socks4_connect_granted_reply_names_outbound_address(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.peer4.port;
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 127, 0, 0, 1, 'b', 'o', 'b', 0x00 };
	uint8_t rep[S4_REPLY_LEN], seen[7], want[S4_REPLY_LEN] = { 0x00, 0x5a };
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5a, rep, IT_IO_TIMEOUT_MS);
	/* The peer target tells where the daemon came from (01 ADDR PORT):
	 * the reply's DSTPORT DSTIP are that address. */
	assert_int_equal(it_recv_exact(fd, seen, sizeof(seen), IT_IO_TIMEOUT_MS), sizeof(seen));
	assert_int_equal(seen[0], 0x01);
	memcpy(want + 2, seen + 5, 2);
	memcpy(want + 4, seen + 1, 4);
	it_assert_mem(rep, want, sizeof(want),
		"SOCKS4 reply vs the address the target saw (00 5A PORT IP)");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_socks4_connect_relays_echo(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 127, 0, 0, 1, 0x00 };
	uint8_t rep[S4_REPLY_LEN];
	int fd = connected(fx);

	/* Empty USERID. */
	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5a, rep, IT_IO_TIMEOUT_MS);
	it_expect_echo(fd, 262144, 0x44);
	it_close(fd);
}

static void
test_socks4_request_split_byte_by_byte_is_granted(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 127, 0, 0, 1, 'u', 0x00 };
	uint8_t rep[S4_REPLY_LEN];
	int fd = connected(fx);

	it_send_slowly(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5a, rep, IT_IO_TIMEOUT_MS);
	it_expect_echo(fd, 1000, 0x45);
	it_close(fd);
}

static void
test_socks4_connect_to_refused_port_replies_91_then_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.closed_port4;
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 127, 0, 0, 1, 0x00 };
	/* A failure names no address. */
	const uint8_t want[S4_REPLY_LEN] = { 0x00, 0x5b, 0, 0, 0, 0, 0, 0 };
	uint8_t rep[S4_REPLY_LEN];
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5b, rep, IT_IO_TIMEOUT_MS);
	it_assert_mem(rep, want, sizeof(want), "SOCKS4 reply to a refused CONNECT");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_socks4_unknown_command_replies_91_then_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x04, 0x03, p >> 8, p & 0xff, 127, 0, 0, 1, 0x00 };
	const uint8_t want[S4_REPLY_LEN] = { 0x00, 0x5b, 0, 0, 0, 0, 0, 0 };
	uint8_t rep[S4_REPLY_LEN];
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5b, rep, IT_IO_TIMEOUT_MS);
	it_assert_mem(rep, want, sizeof(want), "SOCKS4 reply to command 03");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_socks4a_localhost_is_granted_and_relays(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	/* DSTIP 0.0.0.1: the name after the USERID is the destination. */
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 0, 0, 0, 1, 'u', 0x00, 'l', 'o', 'c',
		'a', 'l', 'h', 'o', 's', 't', 0x00 };
	uint8_t rep[S4_REPLY_LEN];
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5a, rep, IT_IO_TIMEOUT_MS);
	/* localhost is 127.0.0.1 first: the daemon connected from there. */
	const uint8_t ip[4] = { 127, 0, 0, 1 };
	it_assert_mem(rep + 4, ip, 4, "SOCKS4a reply DSTIP");
	it_expect_echo(fd, 65536, 0x4a);
	it_close(fd);
}

static void
test_socks4a_empty_name_replies_91_then_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	/* DSTIP 0.0.0.1 promises a name; an empty one names nothing. */
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 0, 0, 0, 1, 0x00, 0x00 };
	const uint8_t want[S4_REPLY_LEN] = { 0x00, 0x5b, 0, 0, 0, 0, 0, 0 };
	uint8_t rep[S4_REPLY_LEN];
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5b, rep, IT_IO_TIMEOUT_MS);
	it_assert_mem(rep, want, sizeof(want), "SOCKS4a reply to an empty name");
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_socks4_bind_replies_twice_then_relays(void **state)
{
	struct it_fixture *fx = it_fx(state);
	/* DSTIP names the host that will connect; DSTPORT is not checked. */
	const uint8_t req[] = { 0x04, 0x02, 0x00, 0x00, 127, 0, 0, 1, 0x00 };
	uint8_t rep[S4_REPLY_LEN], want[S4_REPLY_LEN] = { 0x00, 0x5a };
	const uint8_t ip[4] = { 127, 0, 0, 1 };
	char err[256];
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5a, rep, IT_IO_TIMEOUT_MS);
	it_assert_mem(rep + 4, ip, 4,
		"first SOCKS4 BIND reply DSTIP (the control connection's "
		"local address)");
	uint16_t port = (uint16_t)(rep[2] << 8 | rep[3]);
	if (port == 0 || port == fx->d.port)
		fail_msg("first SOCKS4 BIND reply port %u: want a fresh listening port", port);

	int peer = it_connect_addr("127.0.0.1", port, NULL);
	if (peer < 0)
		fail_msg("connect to the SOCKS4 BIND port %u: %s", port, strerror(errno));
	uint16_t pp = it_local_port(peer);
	want[2] = (uint8_t)(pp >> 8);
	want[3] = (uint8_t)pp;
	memcpy(want + 4, ip, 4);
	expect_s4_reply(fd, 0x5a, rep, IT_IO_TIMEOUT_MS);
	it_assert_mem(rep, want, sizeof(want), "second SOCKS4 BIND reply (names the peer)");
	if (it_exchange(fd, peer, 262144, 0x4b, 0x4c, 10000, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	it_close(peer);
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_socks4_bind_over_ipv6_control_replies_91(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t req[] = { 0x04, 0x02, 0x00, 0x00, 127, 0, 0, 1, 0x00 };
	const uint8_t want[S4_REPLY_LEN] = { 0x00, 0x5b, 0, 0, 0, 0, 0, 0 };
	uint8_t rep[S4_REPLY_LEN];

	if (!it_have_ipv6())
		skip();
	/* The listener would be on ::1, which a SOCKS4 reply cannot name. */
	int fd = it_connect(AF_INET6, fx->d.port);
	assert_true(fd >= 0);
	it_send_bytes(fd, req, sizeof(req));
	expect_s4_reply(fd, 0x5b, rep, IT_IO_TIMEOUT_MS);
	it_assert_mem(rep, want, sizeof(want), "SOCKS4 BIND reply over IPv6");
	it_expect_close(fd, 2000);
	it_close(fd);
}

/* curl through the daemon with proxy_opt (--socks4 / --socks4a) to url; the
 * HTTP target's body must arrive intact. */
static void
curl_fetch(const struct it_fixture *fx, const char *proxy_opt, const char *host)
{
	char path[256], proxy[32], url[96];
	char *argv[] = { path, "-sS", "--fail", "--max-time", "10", "--noproxy", "",
		(char *)proxy_opt, proxy, url, NULL };
	struct it_hash hs;

	if (!it_find_program("curl", path, sizeof(path))) {
		print_message("[   INFO   ] skipped: curl is not installed\n");
		skip();
	}
	snprintf(proxy, sizeof(proxy), "127.0.0.1:%u", fx->d.port);
	snprintf(url, sizeof(url), "http://%s:%u/blob", host, it_tg.http4.port);
	int st = it_run_program(argv, 15000, &hs);
	if (st != 0)
		fail_msg("curl %s %s %s: exit status %d", proxy_opt, proxy, url, st);
	assert_int_equal(hs.n, IT_HTTP_BYTES);
	if (hs.h != it_stream_hash(IT_HTTP_SEED, IT_HTTP_BYTES))
		fail_msg("curl %s: the body came back altered", proxy_opt);
}

static void
test_socks4_curl_fetches_intact(void **state)
{
	curl_fetch(it_fx(state), "--socks4", "127.0.0.1");
}

static void
test_socks4a_curl_with_hostname_fetches_intact(void **state)
{
	/* --socks4a sends "localhost" for the daemon to resolve. */
	curl_fetch(it_fx(state), "--socks4a", "localhost");
}

/* ---- auth password: SOCKS4 off by default ------------------------------- */

static void
test_socks4_closed_without_reply_when_auth_password(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x04, 0x01, p >> 8, p & 0xff, 127, 0, 0, 1, 'a', 'l', 'i', 'c', 'e',
		0x00 };
	int fd = connected(fx);

	it_send_bytes(fd, req, sizeof(req));
	/* No 90 (nor any byte): SOCKS4 would bypass the password. */
	enum it_close c = it_wait_close(fd, 2000);
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("SOCKS4 request with auth password: want close without a reply, got %s",
			it_close_str(c));
	it_close(fd);
}

static int
setup(void **state)
{
	return it_fixture_start_for(state, IT_CAP_SOCKS4, "auth none\nlog-level debug\n", NULL,
		NULL);
}

static int
setup_password(void **state)
{
	return it_fixture_start_for(state, IT_CAP_SOCKS4,
		"auth password\nuser alice wonderland\nlog-level debug\n", "alice", "wonderland");
}

int
it_run_socks4_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_socks4_connect_granted_reply_names_outbound_address),
		IT_TEST(test_socks4_connect_relays_echo),
		IT_TEST(test_socks4_request_split_byte_by_byte_is_granted),
		IT_TEST(test_socks4_connect_to_refused_port_replies_91_then_closes),
		IT_TEST(test_socks4_unknown_command_replies_91_then_closes),
		IT_TEST(test_socks4a_localhost_is_granted_and_relays),
		IT_TEST(test_socks4a_empty_name_replies_91_then_closes),
		IT_TEST(test_socks4_bind_replies_twice_then_relays),
		IT_TEST(test_socks4_bind_over_ipv6_control_replies_91),
		IT_TEST(test_socks4_curl_fetches_intact),
		IT_TEST(test_socks4a_curl_with_hostname_fetches_intact),
	};
	const struct CMUnitTest password_tests[] = {
		IT_TEST(test_socks4_closed_without_reply_when_auth_password),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("socks4/4a (auth none)", tests, setup,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("socks4 (auth password: off by default)",
		password_tests, setup_password, it_fixture_stop);
	return failed;
}
