/*
 * BIND through the real daemon (RFC 1928 §4, §6): the first reply names
 * where the peer should connect (the control connection's own local
 * address, never the wildcard, and a fresh port, from bind-port-range when
 * set); the peer that connects from DST.ADDR's IP (any IP when DST.ADDR is
 * all zeros) gets the second reply naming it, and data then flows both ways.
 * A connection from another IP is closed and the listener keeps waiting;
 * the listener closes once the peer arrived, when the client goes away and
 * at "timeout bind" (second reply REP 04). IPv4 and IPv6.
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIND_RELAY_BYTES (1u << 20)

static const uint8_t loop4[4] = { 127, 0, 0, 1 };
static const uint8_t loop6[16] = { [15] = 1 };

/* Sends a BIND request for DST.ADDR (4 or 16 bytes) port 0 and checks the
 * first reply: success, the control connection's local address (addr, of
 * the same family) and a real port other than the daemon's. Returns the
 * listening port. */
static uint16_t
bind_request(const struct it_fixture *fx, int fd, const uint8_t *dst, size_t dst_len,
	const uint8_t *local, struct it_reply *r)
{
	uint8_t req[4 + 16 + 2];
	size_t n = 0;
	const uint8_t atyp = dst_len == 4 ? 0x01 : 0x04;
	const uint8_t head[] = { 0x05, 0x00, 0x00, atyp };

	req[n++] = 0x05;
	req[n++] = 0x02; /* BIND */
	req[n++] = 0x00;
	req[n++] = atyp;
	memcpy(req + n, dst, dst_len);
	n += dst_len;
	req[n++] = 0;
	req[n++] = 0;
	it_send_bytes(fd, req, n);
	it_expect_reply(fd, r, IT_IO_TIMEOUT_MS);
	it_assert_mem(r->raw, head, sizeof(head), "first BIND reply VER REP RSV ATYP");
	assert_int_equal(r->len, 4 + dst_len + 2);
	it_assert_mem(r->addr, local, dst_len,
		"first BIND reply BND.ADDR (the control connection's local address)");
	if (r->port == 0 || r->port == fx->d.port)
		fail_msg("first BIND reply BND.PORT %u: want a fresh listening port", r->port);
	return r->port;
}

/* The second reply must be exactly 05 00 00 ATYP <peer address> <peer port>. */
static void
expect_second_reply(int fd, const uint8_t *peer_ip, size_t ip_len, uint16_t peer_port)
{
	uint8_t want[4 + 16 + 2];
	size_t n = 0;
	struct it_reply r;

	want[n++] = 0x05;
	want[n++] = 0x00;
	want[n++] = 0x00;
	want[n++] = ip_len == 4 ? 0x01 : 0x04;
	memcpy(want + n, peer_ip, ip_len);
	n += ip_len;
	want[n++] = (uint8_t)(peer_port >> 8);
	want[n++] = (uint8_t)peer_port;
	it_expect_reply(fd, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.len, n);
	it_assert_mem(r.raw, want, n, "second BIND reply (names the peer)");
}

/* Connecting to ip:port must be refused (nothing listens) within
 * within_ms; a connection that still gets through is closed and retried. */
static void
expect_refused_within(const char *ip, uint16_t port, int within_ms)
{
	uint64_t t0 = it_now_ms();
	int fd;

	for (;;) {
		fd = it_connect_addr(ip, port, NULL);
		if (fd < 0 && errno == ECONNREFUSED)
			return;
		if (fd >= 0)
			it_close(fd);
		if (it_now_ms() - t0 >= (uint64_t)within_ms)
			break;
		it_sleep_ms(20);
	}
	fail_msg("%s port %u still accepts connections %d ms later (want ECONNREFUSED)", ip, port,
		within_ms);
}

static void
exchange(int a, int b, size_t n, uint64_t seed)
{
	char err[256];

	if (it_exchange(a, b, n, seed, seed + 1, 10000, err, sizeof(err)) < 0)
		fail_msg("%s", err);
}

static void
test_bind_ipv4_replies_twice_then_relays_1mb_each_way(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any4[4] = { 0 };
	struct it_reply r;
	int fd = it_greet(fx, AF_INET);
	uint16_t port = bind_request(fx, fd, any4, 4, loop4, &r);

	int peer = it_connect_addr("127.0.0.1", port, NULL);
	if (peer < 0)
		fail_msg("connect to the BIND port %u: %s", port, strerror(errno));
	expect_second_reply(fd, loop4, 4, it_local_port(peer));
	/* One peer per BIND: the listener is gone once it arrived. */
	expect_refused_within("127.0.0.1", port, 1000);
	exchange(fd, peer, BIND_RELAY_BYTES, 0xb1d4);
	/* The peer's close reaches the client. */
	it_close(peer);
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_bind_ipv6_replies_twice_then_relays_1mb_each_way(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any6[16] = { 0 };
	struct it_reply r;

	if (!it_have_ipv6())
		skip();
	int fd = it_greet(fx, AF_INET6);
	uint16_t port = bind_request(fx, fd, any6, 16, loop6, &r);

	int peer = it_connect_addr("::1", port, NULL);
	if (peer < 0)
		fail_msg("connect to the BIND port [::1]:%u: %s", port, strerror(errno));
	expect_second_reply(fd, loop6, 16, it_local_port(peer));
	expect_refused_within("::1", port, 1000);
	exchange(fd, peer, BIND_RELAY_BYTES, 0xb1d6);
	/* And the client's close reaches the peer. */
	it_close(fd);
	it_expect_close(peer, 2000);
	it_close(peer);
}

static void
test_bind_closes_peer_from_other_ip_and_keeps_waiting(void **state)
{
	struct it_fixture *fx = it_fx(state);
	/* All of 127/8 is loopback: 127.0.0.2 is another host to the daemon. */
	const uint8_t want_ip[4] = { 127, 0, 0, 2 };
	struct it_reply r;
	int fd = it_greet(fx, AF_INET);
	uint16_t port = bind_request(fx, fd, want_ip, 4, loop4, &r);

	int wrong = it_connect_addr("127.0.0.1", port, "127.0.0.1");
	if (wrong < 0)
		fail_msg("connect from 127.0.0.1 to the BIND port: %s", strerror(errno));
	it_expect_close(wrong, 2000);
	it_close(wrong);
	/* No second reply for it, and the control connection stays open. */
	enum it_close c = it_wait_close(fd, 300);
	if (c != IT_CLOSE_TIMEOUT)
		fail_msg("after a peer from the wrong IP: want the client left waiting, got %s",
			it_close_str(c));

	int right = it_connect_addr("127.0.0.1", port, "127.0.0.2");
	if (right < 0)
		fail_msg("connect from 127.0.0.2 to the BIND port (still listening?): %s",
			strerror(errno));
	expect_second_reply(fd, want_ip, 4, it_local_port(right));
	exchange(fd, right, 65536, 0xb1d2);
	it_close(right);
	it_close(fd);
}

static void
test_bind_client_bytes_sent_before_peer_reach_peer(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any4[4] = { 0 };
	const uint8_t early[] = "sent before the peer arrived";
	uint8_t got[sizeof(early)];
	struct it_reply r;
	int fd = it_greet(fx, AF_INET);
	uint16_t port = bind_request(fx, fd, any4, 4, loop4, &r);

	/* A client may talk right after the first reply; the daemon holds
	 * the bytes until there is a peer to give them to. */
	it_send_bytes(fd, early, sizeof(early));
	it_sleep_ms(50);
	int peer = it_connect_addr("127.0.0.1", port, NULL);
	if (peer < 0)
		fail_msg("connect to the BIND port %u: %s", port, strerror(errno));
	expect_second_reply(fd, loop4, 4, it_local_port(peer));
	assert_int_equal(it_recv_exact(peer, got, sizeof(got), IT_IO_TIMEOUT_MS), sizeof(got));
	it_assert_mem(got, early, sizeof(early), "bytes the client sent while waiting");
	exchange(fd, peer, 4096, 0xe1);
	it_close(peer);
	it_close(fd);
}

static void
test_bind_client_close_closes_listener_at_once(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any4[4] = { 0 };
	struct it_reply r;
	int fd = it_greet(fx, AF_INET);
	uint16_t port = bind_request(fx, fd, any4, 4, loop4, &r);

	it_close(fd);
	/* The daemon sees the EOF on its next loop turn; no timer involved. */
	it_sleep_ms(50);
	expect_refused_within("127.0.0.1", port, 1000);
}

static void
test_bind_two_requests_get_two_ports(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any4[4] = { 0 };
	struct it_reply r1, r2;
	int a = it_greet(fx, AF_INET), b = it_greet(fx, AF_INET);
	uint16_t pa = bind_request(fx, a, any4, 4, loop4, &r1);
	uint16_t pb = bind_request(fx, b, any4, 4, loop4, &r2);

	if (pa == pb)
		fail_msg("two BINDs at once both got port %u", pa);
	/* Each peer is paired with its own client. */
	int peer_b = it_connect_addr("127.0.0.1", pb, NULL), peer_a;
	assert_true(peer_b >= 0);
	expect_second_reply(b, loop4, 4, it_local_port(peer_b));
	peer_a = it_connect_addr("127.0.0.1", pa, NULL);
	assert_true(peer_a >= 0);
	expect_second_reply(a, loop4, 4, it_local_port(peer_a));
	exchange(a, peer_a, 4096, 0xa);
	exchange(b, peer_b, 4096, 0xb);
	it_close(peer_a);
	it_close(peer_b);
	it_close(a);
	it_close(b);
}

/* ---- timeout bind 1 -------------------------------------------------------- */

static void
test_bind_without_peer_replies_rep_04_at_bind_timeout(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any4[4] = { 0 };
	/* conn_fail sends no address: 0.0.0.0:0. */
	const uint8_t want[] = { 0x05, 0x04, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	struct it_reply r;
	int fd = it_greet(fx, AF_INET);
	uint64_t t0 = it_now_ms();
	uint16_t port = bind_request(fx, fd, any4, 4, loop4, &r);

	it_expect_reply(fd, &r, 4000);
	uint64_t elapsed = it_now_ms() - t0;
	assert_int_equal(r.len, sizeof(want));
	it_assert_mem(r.raw, want, sizeof(want), "second BIND reply at the bind timeout");
	print_message("[   INFO   ] REP 04 after %llu ms (timeout bind 1)\n",
		(unsigned long long)elapsed);
	assert_in_range(elapsed, 800, 3500);
	it_expect_close(fd, 3000);
	it_close(fd);
	expect_refused_within("127.0.0.1", port, 1000);
}

/* ---- bind-port-range -------------------------------------------------------- */

static uint16_t range_lo;

static void
test_bind_ports_come_from_bind_port_range(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t any4[4] = { 0 };
	/* Both ports taken: the third request fails with REP 01. */
	const uint8_t full[] = { 0x05, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	struct it_reply r1, r2, r3;
	int a = it_greet(fx, AF_INET), b = it_greet(fx, AF_INET), c;
	uint16_t pa = bind_request(fx, a, any4, 4, loop4, &r1);
	uint16_t pb = bind_request(fx, b, any4, 4, loop4, &r2);

	print_message("[   INFO   ] range %u-%u: got %u and %u\n", range_lo, range_lo + 1, pa, pb);
	assert_in_range(pa, range_lo, range_lo + 1);
	assert_in_range(pb, range_lo, range_lo + 1);
	assert_int_not_equal(pa, pb);

	c = it_greet(fx, AF_INET);
	const uint8_t req[] = { 0x05, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	it_send_bytes(c, req, sizeof(req));
	it_expect_reply(c, &r3, IT_IO_TIMEOUT_MS);
	assert_int_equal(r3.len, sizeof(full));
	it_assert_mem(r3.raw, full, sizeof(full), "BIND reply with the port range exhausted");
	it_expect_close(c, 2000);
	it_close(c);

	/* A port freed by its client's close is handed out again. */
	it_close(a);
	it_sleep_ms(50);
	expect_refused_within("127.0.0.1", pa, 1000);
	c = it_greet(fx, AF_INET);
	assert_int_equal(bind_request(fx, c, any4, 4, loop4, &r3), pa);
	it_close(c);
	it_close(b);
}

/* Two consecutive TCP ports free on 127.0.0.1, below the ephemeral range
 * and below the harness's ports (it_pick_port: 20000-31999), so that the
 * daemon started after the pick cannot take one of them. */
static uint16_t
pick_range(void)
{
	uint64_t st = it_now_ms() ^ ((uint64_t)getpid() << 20) ^ 0xb1dULL;

	for (int i = 0; i < 200; i++) {
		uint8_t rnd[2];
		bool ok = true;

		it_fill(rnd, sizeof(rnd), &st);
		uint16_t lo = (uint16_t)(12000 + ((rnd[0] << 8 | rnd[1]) % 7999));
		for (uint16_t p = lo; ok && p <= lo + 1; p++) {
			int fd = it_connect_addr("127.0.0.1", p, NULL);
			if (fd >= 0) {
				it_close(fd);
				ok = false;
			}
			struct sockaddr_storage ss;
			socklen_t len;
			int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			(void)it_sockaddr("127.0.0.1", p, &ss, &len);
			if (s < 0 || bind(s, (struct sockaddr *)&ss, len) < 0)
				ok = false;
			if (s >= 0)
				close(s);
		}
		if (ok)
			return lo;
	}
	return 0;
}

static int
setup(void **state)
{
	return it_fixture_start_for(state, IT_CAP_BIND, "auth none\nlog-level debug\n", NULL, NULL);
}

static int
setup_timeout(void **state)
{
	return it_fixture_start_for(state, IT_CAP_BIND,
		"auth none\nlog-level debug\ntimeout bind 1\n", NULL, NULL);
}

static int
setup_range(void **state)
{
	char config[256];

	range_lo = pick_range();
	if (range_lo == 0) {
		fprintf(stderr, "no two free consecutive ports for bind-port-range\n");
		return -1;
	}
	snprintf(config, sizeof(config), "auth none\nlog-level debug\nbind-port-range %u-%u\n",
		range_lo, range_lo + 1);
	return it_fixture_start_for(state, IT_CAP_BIND, config, NULL, NULL);
}

int
it_run_bind_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_bind_ipv4_replies_twice_then_relays_1mb_each_way),
		IT_TEST(test_bind_ipv6_replies_twice_then_relays_1mb_each_way),
		IT_TEST(test_bind_closes_peer_from_other_ip_and_keeps_waiting),
		IT_TEST(test_bind_client_bytes_sent_before_peer_reach_peer),
		IT_TEST(test_bind_client_close_closes_listener_at_once),
		IT_TEST(test_bind_two_requests_get_two_ports),
	};
	const struct CMUnitTest timeout_tests[] = {
		IT_TEST(test_bind_without_peer_replies_rep_04_at_bind_timeout),
	};
	const struct CMUnitTest range_tests[] = {
		IT_TEST(test_bind_ports_come_from_bind_port_range),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("bind (auth none)", tests, setup, it_fixture_stop);
	failed += cmocka_run_group_tests_name("bind (timeout bind 1)", timeout_tests, setup_timeout,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("bind (bind-port-range)", range_tests, setup_range,
		it_fixture_stop);
	return failed;
}
