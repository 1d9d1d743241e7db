/*
 * UDP ASSOCIATE through the real daemon (RFC 1928 §7). The reply names the
 * relay: the control connection's local IP and a UDP port. Datagrams to it
 * carry RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA; the answers come back
 * behind a header naming the source that replied, byte for byte. Only the
 * client's IP may use the relay, from one port (the request's DST.PORT, or
 * else the first datagram's); FRAG != 0 is dropped; the association lives
 * as long as the TCP control connection, or until "timeout udp" of silence.
 * Datagrams are echoed by the UDP echo targets on 127.0.0.1 and ::1.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_HDR4 10 /* RSV RSV FRAG 01 ADDR(4) PORT */
#define UDP_HDR6 22 /* RSV RSV FRAG 04 ADDR(16) PORT */
#define UDP_MAX_DGRAM 65536
#define UDP_QUIET_MS 300 /* how long "nothing arrives" is watched */
#define UDP_MANY 1000
/* The largest DATA an IPv4 client can send behind a 10-byte header:
 * 65535 - 20 (IP) - 8 (UDP) - 10. */
#define UDP_MAX_DATA4 65497

static const uint8_t loop4[4] = { 127, 0, 0, 1 };
static const uint8_t loop6[16] = { [15] = 1 };

/* An association: the control connection and where its relay is. */
struct assoc {
	int ctl;
	const char *relay_ip; /* "127.0.0.1" or "::1" */
	uint16_t relay_port;
};

/* Opens a control connection over family and sends UDP ASSOCIATE with
 * DST.ADDR all zeros (of that family) and DST.PORT port; checks that the
 * reply is success naming the control connection's local IP and a port. */
static void
associate(const struct it_fixture *fx, int family, uint16_t port, struct assoc *a)
{
	const bool v6 = family == AF_INET6;
	const size_t alen = v6 ? 16 : 4;
	const uint8_t head[] = { 0x05, 0x00, 0x00, v6 ? 0x04 : 0x01 };
	uint8_t req[4 + 16 + 2] = { 0x05, 0x03, 0x00, v6 ? 0x04 : 0x01 };
	struct it_reply r;

	req[4 + alen] = (uint8_t)(port >> 8);
	req[4 + alen + 1] = (uint8_t)port;
	a->ctl = it_greet(fx, family);
	it_send_bytes(a->ctl, req, 4 + alen + 2);
	it_expect_reply(a->ctl, &r, IT_IO_TIMEOUT_MS);
	it_assert_mem(r.raw, head, sizeof(head), "UDP ASSOCIATE reply VER REP RSV ATYP");
	assert_int_equal(r.len, 4 + alen + 2);
	it_assert_mem(r.addr, v6 ? loop6 : loop4, alen,
		"UDP ASSOCIATE BND.ADDR (the control connection's local IP)");
	if (r.port == 0)
		fail_msg("UDP ASSOCIATE BND.PORT is 0");
	a->relay_ip = v6 ? "::1" : "127.0.0.1";
	a->relay_port = r.port;
}

/* RSV RSV FRAG, then ATYP ADDR PORT of a loopback UDP target. */
static size_t
header_for(const struct it_target *t, uint8_t frag, uint8_t *out)
{
	out[0] = 0;
	out[1] = 0;
	out[2] = frag;
	return 3 + it_target_addr(t, out + 3);
}

static uint8_t *
dgram_buf(void)
{
	uint8_t *p = malloc(UDP_MAX_DGRAM);

	assert_non_null(p);
	return p;
}

/* Sends header + n bytes of the seed stream from fd to the relay. */
static void
send_dgram(int fd, const struct assoc *a, const uint8_t *hdr, size_t hlen, size_t n, uint64_t seed)
{
	uint8_t *p = dgram_buf();
	uint64_t st = seed;

	memcpy(p, hdr, hlen);
	it_fill(p + hlen, n, &st);
	if (it_udp_send(fd, a->relay_ip, a->relay_port, p, hlen + n) < 0) {
		int err = errno;
		free(p);
		fail_msg("send a %zu-byte datagram to the relay: %s", hlen + n, strerror(err));
	}
	free(p);
}

/* The next datagram on fd must be exactly want_hdr + n bytes of the seed
 * stream. */
static void
expect_dgram(int fd, const uint8_t *want_hdr, size_t hlen, size_t n, uint64_t seed)
{
	uint8_t *got = dgram_buf(), *want = dgram_buf();
	uint64_t st = seed;
	long k = it_udp_recv(fd, got, UDP_MAX_DGRAM, IT_IO_TIMEOUT_MS);

	memcpy(want, want_hdr, hlen);
	it_fill(want + hlen, n, &st);
	if (k < 0) {
		int err = errno;
		free(got);
		free(want);
		fail_msg("want a %zu-byte datagram from the relay, got %s", hlen + n,
			strerror(err));
	}
	if ((size_t)k != hlen + n) {
		free(got);
		free(want);
		fail_msg("datagram from the relay: %ld bytes, want %zu", k, hlen + n);
	}
	if (memcmp(got, want, hlen) != 0) {
		uint8_t h[UDP_HDR6];
		memcpy(h, got, hlen);
		free(got);
		free(want);
		it_assert_mem(h, want_hdr, hlen, "header of the datagram from the relay");
	}
	bool same = memcmp(got + hlen, want + hlen, n) == 0;
	free(got);
	free(want);
	if (!same)
		fail_msg("the %zu DATA bytes came back altered", n);
}

/* Nothing may arrive on fd for UDP_QUIET_MS. */
static void
expect_no_dgram(int fd, const char *what)
{
	uint8_t *p = dgram_buf();
	long k = it_udp_recv(fd, p, UDP_MAX_DGRAM, UDP_QUIET_MS);
	int err = errno;

	free(p);
	if (k >= 0)
		fail_msg("%s: a %ld-byte datagram arrived, want none", what, k);
	if (err != ETIMEDOUT)
		fail_msg("%s: want silence, got %s", what, strerror(err));
}

static int
udp_socket_or_fail(const char *ip)
{
	int fd = it_udp_socket(ip, 0);

	if (fd < 0)
		fail_msg("UDP socket on %s: %s", ip, strerror(errno));
	return fd;
}

static void
test_udp_associate_reply_names_control_ip_and_a_bound_relay_port(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	/* The port is really the daemon's: we cannot bind it ourselves. */
	int fd = it_udp_socket("127.0.0.1", a.relay_port);
	if (fd >= 0) {
		it_close(fd);
		fail_msg("UDP 127.0.0.1:%u is free: the reply names no relay socket", a.relay_port);
	}
	assert_int_equal(errno, EADDRINUSE);
	it_close(a.ctl);
}

static void
test_udp_ipv4_destination_echoes_with_exact_source_header(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	assert_int_equal(hlen, UDP_HDR4);
	/* The reply's header names the echo target: the same bytes as ours. */
	for (size_t n = 1; n <= 4096; n *= 8) {
		send_dgram(u, &a, hdr, hlen, n, 400 + n);
		expect_dgram(u, hdr, hlen, n, 400 + n);
	}
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_ipv6_destination_echoes_with_exact_source_header(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	if (!it_have_ipv6())
		skip();
	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo6, 0, hdr);
	assert_int_equal(hlen, UDP_HDR6);
	/* An IPv4 client reaches an IPv6 destination through the relay. */
	send_dgram(u, &a, hdr, hlen, 1000, 600);
	expect_dgram(u, hdr, hlen, 1000, 600);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_domain_destination_localhost_answer_names_resolved_source(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.udp_echo4.port;
	const uint8_t hdr[] = { 0, 0, 0, 0x03, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
		p >> 8, p & 0xff };
	/* localhost is 127.0.0.1 first (hosts file, resolve-prefer ipv4): the
	 * answer names that address, not the name. */
	const uint8_t want[] = { 0, 0, 0, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	send_dgram(u, &a, hdr, sizeof(hdr), 777, 700);
	expect_dgram(u, want, sizeof(want), 777, 700);
	/* The second one finds the name answered already. */
	send_dgram(u, &a, hdr, sizeof(hdr), 10, 701);
	expect_dgram(u, want, sizeof(want), 10, 701);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_over_ipv6_control_connection_relays_on_ipv6(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr4[UDP_HDR6], hdr6[UDP_HDR6];
	struct assoc a;

	if (!it_have_ipv6())
		skip();
	associate(fx, AF_INET6, 0, &a);
	int u = udp_socket_or_fail("::1");
	size_t h6 = header_for(&it_tg.udp_echo6, 0, hdr6);
	size_t h4 = header_for(&it_tg.udp_echo4, 0, hdr4);
	send_dgram(u, &a, hdr6, h6, 500, 800);
	expect_dgram(u, hdr6, h6, 500, 800);
	send_dgram(u, &a, hdr4, h4, 500, 801);
	expect_dgram(u, hdr4, h4, 500, 801);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_empty_datagram_relays_as_empty_datagram(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 0, 0);
	expect_dgram(u, hdr, hlen, 0, 0);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_request_port_pins_client_port(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;
	int pinned = udp_socket_or_fail("127.0.0.1"), other = udp_socket_or_fail("127.0.0.1");

	/* The request names pinned's port: other's datagram is foreign even
	 * though it is the first to arrive. */
	associate(fx, AF_INET, it_local_port(pinned), &a);
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(other, &a, hdr, hlen, 100, 900);
	expect_no_dgram(other, "datagram from a port other than the request's");
	expect_no_dgram(pinned, "datagram from a port other than the request's");
	send_dgram(pinned, &a, hdr, hlen, 100, 901);
	expect_dgram(pinned, hdr, hlen, 100, 901);
	it_close(pinned);
	it_close(other);
	it_close(a.ctl);
}

static void
test_udp_first_datagram_pins_port_and_other_port_is_ignored(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;
	int first = udp_socket_or_fail("127.0.0.1"), other = udp_socket_or_fail("127.0.0.1");

	associate(fx, AF_INET, 0, &a);
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(first, &a, hdr, hlen, 64, 1000);
	expect_dgram(first, hdr, hlen, 64, 1000);
	send_dgram(other, &a, hdr, hlen, 64, 1001);
	expect_no_dgram(other, "datagram from a second port after pinning");
	expect_no_dgram(first, "datagram from a second port after pinning");
	/* The pinned port still works, and gets its own answer, not other's. */
	send_dgram(first, &a, hdr, hlen, 64, 1002);
	expect_dgram(first, hdr, hlen, 64, 1002);
	it_close(first);
	it_close(other);
	it_close(a.ctl);
}

static void
test_udp_datagram_from_other_ip_is_ignored(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;
	/* 127.0.0.2 is loopback too, but not the control connection's IP. */
	int stranger = udp_socket_or_fail("127.0.0.2"), client = udp_socket_or_fail("127.0.0.1");

	associate(fx, AF_INET, 0, &a);
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(stranger, &a, hdr, hlen, 64, 1100);
	expect_no_dgram(stranger, "datagram from 127.0.0.2");
	/* It did not pin the port either: the client's first datagram does. */
	send_dgram(client, &a, hdr, hlen, 64, 1101);
	expect_dgram(client, hdr, hlen, 64, 1101);
	it_close(stranger);
	it_close(client);
	it_close(a.ctl);
}

static void
test_udp_nonzero_frag_is_dropped(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6], frag[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	(void)header_for(&it_tg.udp_echo4, 0x01, frag);
	send_dgram(u, &a, frag, hlen, 64, 1200);
	expect_no_dgram(u, "datagram with FRAG 01");
	/* The end-of-sequence bit alone (FRAG 80) is a fragment too. */
	frag[2] = 0x80;
	send_dgram(u, &a, frag, hlen, 64, 1201);
	expect_no_dgram(u, "datagram with FRAG 80");
	send_dgram(u, &a, hdr, hlen, 64, 1202);
	expect_dgram(u, hdr, hlen, 64, 1202);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_malformed_datagrams_are_dropped_and_association_goes_on(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint16_t p = it_tg.udp_echo4.port;
	/* Header cut short; unknown ATYP; DST.PORT 0; a name length past the end. */
	const uint8_t short_hdr[] = { 0, 0, 0, 0x01, 127, 0 };
	const uint8_t bad_atyp[] = { 0, 0, 0, 0x05, 127, 0, 0, 1, p >> 8, p & 0xff, 'x' };
	const uint8_t port0[] = { 0, 0, 0, 0x01, 127, 0, 0, 1, 0, 0, 'x' };
	const uint8_t long_name[] = { 0, 0, 0, 0x03, 200, 'a', 'b' };
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	assert_int_equal(it_udp_send(u, a.relay_ip, a.relay_port, short_hdr, sizeof(short_hdr)), 0);
	assert_int_equal(it_udp_send(u, a.relay_ip, a.relay_port, bad_atyp, sizeof(bad_atyp)), 0);
	assert_int_equal(it_udp_send(u, a.relay_ip, a.relay_port, port0, sizeof(port0)), 0);
	assert_int_equal(it_udp_send(u, a.relay_ip, a.relay_port, long_name, sizeof(long_name)), 0);
	expect_no_dgram(u, "malformed datagrams");
	enum it_close c = it_wait_close(a.ctl, 0);
	if (c != IT_CLOSE_TIMEOUT)
		fail_msg("malformed datagrams ended the association: %s", it_close_str(c));
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 64, 1250);
	expect_dgram(u, hdr, hlen, 64, 1250);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_request_naming_client_address_and_port_is_honoured(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct it_reply r;
	int u = udp_socket_or_fail("127.0.0.1");
	uint16_t up = it_local_port(u);
	/* DST.ADDR is the client's own address, DST.PORT its UDP port. */
	const uint8_t req[] = { 0x05, 0x03, 0x00, 0x01, 127, 0, 0, 1, up >> 8, up & 0xff };
	struct assoc a = { .relay_ip = "127.0.0.1" };

	a.ctl = it_greet(fx, AF_INET);
	it_send_bytes(a.ctl, req, sizeof(req));
	it_expect_reply(a.ctl, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	a.relay_port = r.port;
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 64, 1260);
	expect_dgram(u, hdr, hlen, 64, 1260);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_control_close_closes_relay_port(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;
	uint64_t t0;
	int fd = -1;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 64, 1300);
	expect_dgram(u, hdr, hlen, 64, 1300);
	it_close(a.ctl);
	/* The relay port is released: we can bind it (bounded wait). */
	t0 = it_now_ms();
	while (it_now_ms() - t0 < 2000 && (fd = it_udp_socket("127.0.0.1", a.relay_port)) < 0)
		it_sleep_ms(20);
	if (fd < 0)
		fail_msg("relay port %u still bound 2 s after the control connection closed",
			a.relay_port);
	print_message("[   INFO   ] relay port free %llu ms after the close\n",
		(unsigned long long)(it_now_ms() - t0));
	it_close(fd);
	/* And nothing answers there any more. */
	send_dgram(u, &a, hdr, hlen, 64, 1301);
	expect_no_dgram(u, "datagram to the relay after the control connection closed");
	it_close(u);
}

static void
test_udp_bytes_on_control_connection_do_not_end_association(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t noise[] = "the control connection carries no data";
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	/* RFC 1928 gives them no meaning: discarded, and only EOF ends it. */
	it_send_bytes(a.ctl, noise, sizeof(noise));
	enum it_close c = it_wait_close(a.ctl, 200);
	if (c != IT_CLOSE_TIMEOUT)
		fail_msg("bytes on the control connection: want it left open, got %s",
			it_close_str(c));
	send_dgram(u, &a, hdr, hlen, 64, 1350);
	expect_dgram(u, hdr, hlen, 64, 1350);
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_two_associations_do_not_see_each_other(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a, b;

	associate(fx, AF_INET, 0, &a);
	associate(fx, AF_INET, 0, &b);
	if (a.relay_port == b.relay_port)
		fail_msg("two associations share relay port %u", a.relay_port);
	int ua = udp_socket_or_fail("127.0.0.1"), ub = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	/* Interleaved, to the same target: each answer goes to its own client. */
	for (int i = 0; i < 5; i++) {
		send_dgram(ua, &a, hdr, hlen, 200, 1400 + (uint64_t)i);
		send_dgram(ub, &b, hdr, hlen, 300, 1500 + (uint64_t)i);
	}
	for (int i = 0; i < 5; i++) {
		expect_dgram(ua, hdr, hlen, 200, 1400 + (uint64_t)i);
		expect_dgram(ub, hdr, hlen, 300, 1500 + (uint64_t)i);
	}
	expect_no_dgram(ua, "client A after its five answers");
	expect_no_dgram(ub, "client B after its five answers");
	/* A's socket is not B's client: B's relay ignores it. */
	send_dgram(ua, &b, hdr, hlen, 100, 1600);
	expect_no_dgram(ua, "A's datagram to B's relay");
	expect_no_dgram(ub, "A's datagram to B's relay");
	it_close(ua);
	it_close(ub);
	it_close(a.ctl);
	it_close(b.ctl);
}

/* Size of datagram i of the bulk test: the edges (1, 65497) and a spread
 * in between, deterministic. */
static size_t
bulk_size(size_t i, uint64_t *st)
{
	static const size_t edges[] = { 1, 2, 7, 8, 64, 512, 548, 1400, 1472, 1473, 8192, 16384,
		32768, 65000, UDP_MAX_DATA4 - 1, UDP_MAX_DATA4 };
	uint8_t r[4];

	if (i < sizeof(edges) / sizeof(edges[0]))
		return edges[i];
	it_fill(r, sizeof(r), st);
	uint32_t x = (uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 | r[3];
	/* Mostly small, some large, now and then the largest. */
	switch (x % 8) {
	case 0:
		return UDP_MAX_DATA4;
	case 1:
	case 2:
		return 1 + (x >> 8) % UDP_MAX_DATA4;
	default:
		return 1 + (x >> 8) % 2048;
	}
}

static void
test_udp_1000_datagrams_of_assorted_sizes_arrive_intact_in_order(void **state)
{
	struct it_fixture *fx = it_fx(state);
	/* In flight at once: enough to show order is kept, little enough that
	 * no socket buffer on the way (212992 bytes by default) overflows. */
	const size_t max_flight = 32, max_flight_bytes = 100 * 1024;
	uint8_t hdr[UDP_HDR6];
	size_t sizes[UDP_MANY], sent = 0, recvd = 0, flight_bytes = 0;
	uint64_t st = 0x51ce5, total = 0;
	struct it_hash hs_sent, hs_got;
	struct assoc a;
	uint8_t *out = dgram_buf(), *in = dgram_buf(), *want = dgram_buf();

	for (size_t i = 0; i < UDP_MANY; i++) {
		sizes[i] = bulk_size(i, &st);
		total += sizes[i];
	}
	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	it_hash_init(&hs_sent);
	it_hash_init(&hs_got);
	uint64_t t0 = it_now_ms();
	while (recvd < UDP_MANY) {
		while (sent < UDP_MANY && sent - recvd < max_flight &&
			(sent == recvd || flight_bytes + sizes[sent] <= max_flight_bytes)) {
			uint64_t s = 0x100000 + sent;
			memcpy(out, hdr, hlen);
			it_fill(out + hlen, sizes[sent], &s);
			it_hash_update(&hs_sent, out + hlen, sizes[sent]);
			if (it_udp_send(u, a.relay_ip, a.relay_port, out, hlen + sizes[sent]) < 0)
				break;
			flight_bytes += sizes[sent];
			sent++;
		}
		long k = it_udp_recv(u, in, UDP_MAX_DGRAM, 3000);
		if (k < 0)
			break;
		/* The next one must be the oldest in flight, unaltered. */
		uint64_t s = 0x100000 + recvd;
		memcpy(want, hdr, hlen);
		it_fill(want + hlen, sizes[recvd], &s);
		if ((size_t)k != hlen + sizes[recvd] || memcmp(in, want, (size_t)k) != 0)
			break;
		it_hash_update(&hs_got, in + hlen, sizes[recvd]);
		flight_bytes -= sizes[recvd];
		recvd++;
	}
	uint64_t ms = it_now_ms() - t0;
	free(out);
	free(in);
	free(want);
	if (recvd < UDP_MANY)
		fail_msg("datagram %zu of %d (%zu DATA bytes) did not come back intact and in "
			 "order (sent %zu)",
			recvd, UDP_MANY, sizes[recvd], sent);
	assert_int_equal(hs_got.n, total);
	if (hs_got.h != hs_sent.h)
		fail_msg("hash of the DATA received differs from that sent");
	print_message("[   INFO   ] %d datagrams, %llu DATA bytes each way in %llu ms\n", UDP_MANY,
		(unsigned long long)total, (unsigned long long)ms);
	it_close(u);
	it_close(a.ctl);
}

/* Issue 17 item 5: a client behind NAT writes its private address (and
 * port) into the request; its datagrams come from the NAT's address, which
 * is the control connection's peer, and from another port. They used to be
 * dropped as foreign; now the association takes them from the peer's
 * address, learns the port from the first one, and says so once at info. */
static void
test_udp_request_naming_private_address_works_behind_nat(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct it_reply r;
	/* 10.20.30.40:5555, as the client sees itself behind the NAT. */
	const uint8_t req[] = { 0x05, 0x03, 0x00, 0x01, 10, 20, 30, 40, 5555 >> 8, 5555 & 0xff };
	struct assoc a = { .relay_ip = "127.0.0.1" };
	int u = udp_socket_or_fail("127.0.0.1"), other = udp_socket_or_fail("127.0.0.1");

	a.ctl = it_greet(fx, AF_INET);
	it_send_bytes(a.ctl, req, sizeof(req));
	it_expect_reply(a.ctl, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	a.relay_port = r.port;
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 300, 1280);
	expect_dgram(u, hdr, hlen, 300, 1280);
	send_dgram(u, &a, hdr, hlen, 20, 1281);
	expect_dgram(u, hdr, hlen, 20, 1281);
	/* The first datagram pinned u's port: another socket is foreign. */
	send_dgram(other, &a, hdr, hlen, 20, 1282);
	expect_no_dgram(other, "datagram from a second port after the NAT pinning");
	expect_no_dgram(u, "datagram from a second port after the NAT pinning");
	if (!it_daemon_log_contains(&fx->d, "the request named 10.20.30.40:5555, not the client's"))
		fail_msg("no info line saying the request's address was not the client's");
	it_close(u);
	it_close(other);
	it_close(a.ctl);
}

/* PySocks (python3-socks) speaking UDP through the daemon: to an IPv4
 * address and to "localhost" sent as a name (rdns). Exit 77: not installed. */
static const char pysocks_script[] =
	"import socket, sys\n"
	"try:\n"
	"    import socks\n"
	"except ImportError:\n"
	"    sys.exit(77)\n"
	"port, echo = int(sys.argv[1]), int(sys.argv[2])\n"
	"s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)\n"
	"s.set_proxy(socks.SOCKS5, '127.0.0.1', port, rdns=True)\n"
	"s.settimeout(5)\n"
	"s.bind(('127.0.0.1', 0))\n"
	"for dest in (('127.0.0.1', echo), ('localhost', echo)):\n"
	"    for n in (1, 1000, 60000):\n"
	"        data = bytes((i * 7 + n) & 255 for i in range(n))\n"
	"        s.sendto(data, dest)\n"
	"        got, src = s.recvfrom(65535)\n"
	"        if got != data or src != ('127.0.0.1', echo):\n"
	"            print('mismatch', dest, n, len(got), src, file=sys.stderr)\n"
	"            sys.exit(1)\n"
	"s.close()\n";

static void
test_udp_pysocks_client_echoes_through_daemon(void **state)
{
	struct it_fixture *fx = it_fx(state);
	char port[8], echo[8];
	char *argv[] = { "/usr/bin/python3", "-c", (char *)pysocks_script, port, echo, NULL };

	if (access(argv[0], X_OK) != 0) {
		print_message("[   INFO   ] skipped: no /usr/bin/python3\n");
		skip();
	}
	snprintf(port, sizeof(port), "%u", fx->d.port);
	snprintf(echo, sizeof(echo), "%u", it_tg.udp_echo4.port);
	int st = it_run_program(argv, 20000, NULL);
	if (st == 77) {
		print_message("[   INFO   ] skipped: python3-socks is not installed\n");
		skip();
	}
	if (st != 0)
		fail_msg("PySocks UDP through the daemon: exit status %d, want 0", st);
}

/* ---- timeout udp 1 ------------------------------------------------------- */

static void
test_udp_idle_association_is_ended_by_daemon(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 64, 1700);
	expect_dgram(u, hdr, hlen, 64, 1700);
	uint64_t t0 = it_now_ms();
	enum it_close c = it_wait_close(a.ctl, 4000);
	uint64_t elapsed = it_now_ms() - t0;
	if (c != IT_CLOSE_EOF && c != IT_CLOSE_RST)
		fail_msg("idle association: want the control connection closed by the daemon "
			 "(timeout udp 1), got %s after %llu ms",
			it_close_str(c), (unsigned long long)elapsed);
	print_message("[   INFO   ] idle association ended %llu ms after the last datagram\n",
		(unsigned long long)elapsed);
	assert_in_range(elapsed, 700, 3500);
	/* Its relay is gone too. */
	send_dgram(u, &a, hdr, hlen, 64, 1701);
	expect_no_dgram(u, "datagram to an association ended by the idle timeout");
	it_close(u);
	it_close(a.ctl);
}

static void
test_udp_traffic_keeps_association_alive_past_idle_timeout(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	/* 2.4 s of a datagram every 400 ms: never 1 s of silence. */
	for (int i = 0; i < 6; i++) {
		send_dgram(u, &a, hdr, hlen, 32, 1800 + (uint64_t)i);
		expect_dgram(u, hdr, hlen, 32, 1800 + (uint64_t)i);
		enum it_close c = it_wait_close(a.ctl, 400);
		if (c != IT_CLOSE_TIMEOUT)
			fail_msg("busy association: control connection %s after %d datagrams",
				it_close_str(c), i + 1);
	}
	it_close(u);
	it_close(a.ctl);
}

static int
setup(void **state)
{
	return it_fixture_start_for(state, IT_CAP_UDP, "auth none\nlog-level debug\n", NULL, NULL);
}

static uint16_t range_lo;

/* Four consecutive UDP ports free on 127.0.0.1, below the ephemeral range
 * and below the harness's ports (it_pick_port: 20000-31999). */
static uint16_t
pick_range(void)
{
	uint64_t st = it_now_ms() ^ ((uint64_t)getpid() << 24) ^ 0x0d9ULL;

	for (int i = 0; i < 200; i++) {
		uint8_t rnd[2];
		bool ok = true;

		it_fill(rnd, sizeof(rnd), &st);
		uint16_t lo = (uint16_t)(12000 + ((rnd[0] << 8 | rnd[1]) % 7996));
		for (uint16_t p = lo; ok && p < lo + 4; p++) {
			int fd = it_udp_socket("127.0.0.1", p);
			if (fd < 0)
				ok = false;
			else
				it_close(fd);
		}
		if (ok)
			return lo;
	}
	return 0;
}

static void
test_udp_relay_port_comes_from_udp_port_range(void **state)
{
	struct it_fixture *fx = it_fx(state);
	uint8_t hdr[UDP_HDR6];
	struct assoc a;

	associate(fx, AF_INET, 0, &a);
	print_message("[   INFO   ] udp-port-range %u-%u: relay port %u\n", range_lo, range_lo + 3,
		a.relay_port);
	assert_in_range(a.relay_port, range_lo, range_lo + 3);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&it_tg.udp_echo4, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 32, 1900);
	expect_dgram(u, hdr, hlen, 32, 1900);
	it_close(u);
	it_close(a.ctl);
}

static int
setup_idle(void **state)
{
	char config[256];

	range_lo = pick_range();
	if (range_lo == 0) {
		fprintf(stderr, "no four free consecutive UDP ports for udp-port-range\n");
		return -1;
	}
	snprintf(config, sizeof(config),
		"auth none\nlog-level debug\ntimeout udp 1\nudp-port-range %u-%u\n", range_lo,
		range_lo + 3);
	return it_fixture_start_for(state, IT_CAP_UDP, config, NULL, NULL);
}

/* ---- rule allow cmd udp port LO-HI ----------------------------------------- */

static uint16_t rule_lo; /* four free ports: LO client, LO+1 target, LO+2, LO+3 */

/* Issue 17 item 5: with `rule allow cmd udp port ...`, a request with DST
 * 0.0.0.0:0 (RFC 1928's form for a client that does not know its address)
 * was refused: its DST was checked as a destination. */
static void
test_udp_port_rule_admits_request_naming_no_address(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_target allowed = { .family = AF_INET, .port = (uint16_t)(rule_lo + 1) };
	uint8_t hdr[UDP_HDR6], echo_hdr[UDP_HDR6];
	struct assoc a;
	uint8_t *got = dgram_buf();

	int t = it_udp_socket("127.0.0.1", allowed.port);
	if (t < 0) {
		free(got);
		fail_msg("UDP 127.0.0.1:%u: %s", allowed.port, strerror(errno));
	}
	associate(fx, AF_INET, 0, &a);
	int u = udp_socket_or_fail("127.0.0.1");
	size_t hlen = header_for(&allowed, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 100, 1950);
	long k = it_udp_recv(t, got, UDP_MAX_DGRAM, IT_IO_TIMEOUT_MS);
	uint64_t st = 1950;
	uint8_t want[100];
	it_fill(want, sizeof(want), &st);
	bool same = k == 100 && memcmp(got, want, 100) == 0;
	free(got);
	if (!same)
		fail_msg("datagram to the allowed port: got %ld bytes, want the 100 sent", k);
	/* The rules still judge each destination: the echo's port is not in it. */
	size_t elen = header_for(&it_tg.udp_echo4, 0, echo_hdr);
	send_dgram(u, &a, echo_hdr, elen, 64, 1951);
	expect_no_dgram(u, "datagram to a port no rule allows");
	it_close(t);
	it_close(u);
	it_close(a.ctl);
}

/* Issue 17 item 5: what comes back to the association's outbound socket
 * from a source the rules would refuse as a destination is dropped; what
 * comes from an allowed one is relayed. */
static void
test_udp_inbound_from_source_refused_by_rules_is_dropped(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const struct it_target allowed = { .family = AF_INET, .port = (uint16_t)(rule_lo + 1) };
	uint8_t hdr[UDP_HDR6], got[64];
	struct sockaddr_storage out;
	socklen_t outlen = sizeof(out);
	struct assoc a;

	/* The client's own port is in the range, so even a daemon that judged
	 * the request's DST.PORT as a destination lets it associate. */
	int u = it_udp_socket("127.0.0.1", rule_lo);
	int t = it_udp_socket("127.0.0.1", allowed.port);
	int stranger = udp_socket_or_fail("127.0.0.1");
	if (u < 0 || t < 0)
		fail_msg("UDP ports %u and %u: %s", rule_lo, allowed.port, strerror(errno));
	associate(fx, AF_INET, rule_lo, &a);
	size_t hlen = header_for(&allowed, 0, hdr);
	send_dgram(u, &a, hdr, hlen, 10, 1960);
	/* Where the daemon sends from: its outbound socket. */
	long k = -1;
	for (uint64_t t0 = it_now_ms(); k < 0 && it_now_ms() - t0 < IT_IO_TIMEOUT_MS;) {
		outlen = sizeof(out);
		k = recvfrom(t, got, sizeof(got), MSG_DONTWAIT, (struct sockaddr *)&out, &outlen);
		if (k < 0)
			it_sleep_ms(5);
	}
	assert_int_equal(k, 10);
	assert_int_equal(out.ss_family, AF_INET);
	const struct sockaddr_in *o = (const struct sockaddr_in *)&out;
	const uint8_t *ob = (const uint8_t *)&o->sin_addr;
	char oip[16];
	snprintf(oip, sizeof(oip), "%u.%u.%u.%u", ob[0], ob[1], ob[2], ob[3]);
	uint16_t oport = ntohs(o->sin_port);
	/* From a port outside the rule's range: dropped. */
	assert_int_equal(it_udp_send(stranger, oip, oport, "unasked", 7), 0);
	expect_no_dgram(u, "datagram to the outbound socket from a refused source");
	/* From the allowed target: relayed, behind a header naming it. */
	uint8_t from_t[UDP_HDR6 + 5];
	memcpy(from_t, hdr, hlen);
	memcpy(from_t + hlen, "reply", 5);
	assert_int_equal(it_udp_send(t, oip, oport, "reply", 5), 0);
	uint8_t in[UDP_HDR6 + 16];
	k = it_udp_recv(u, in, sizeof(in), IT_IO_TIMEOUT_MS);
	assert_int_equal(k, (long)(hlen + 5));
	it_assert_mem(in, from_t, hlen + 5, "datagram from the allowed target");
	it_close(stranger);
	it_close(t);
	it_close(u);
	it_close(a.ctl);
}

static int
setup_port_rule(void **state)
{
	char config[256];

	rule_lo = pick_range();
	if (rule_lo == 0) {
		fprintf(stderr, "no four free consecutive UDP ports for the rule\n");
		return -1;
	}
	snprintf(config, sizeof(config),
		"auth none\nlog-level debug\nrule allow cmd udp port %u-%u\n"
		"rule allow cmd connect\n",
		rule_lo, rule_lo + 3);
	return it_fixture_start_for(state, IT_CAP_UDP, config, NULL, NULL);
}

/* ---- max-lookups 8, a nameserver that never answers ------------------------ */

#define LOOKUP_CAP 8
#define LOOKUP_ASSOCS 4
#define LOOKUP_DGRAMS 16 /* per association: its whole queue */

static int silent_ns = -1; /* bound, never read: the nameserver that never answers */

static int
count_daemon_fds(const struct it_fixture *fx)
{
	char path[64];
	struct dirent *e;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)fx->d.pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Issue 17 item 5: 4 associations sending 16 datagrams each to names a
 * silent nameserver never answers took the daemon from 10 to 146
 * descriptors (two sockets per lookup). max-lookups caps the lookups in
 * flight, whoever started them; one over the cap fails at once. */
static void
test_udp_lookups_in_flight_are_capped_by_max_lookups(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct assoc a[LOOKUP_ASSOCS];
	int u[LOOKUP_ASSOCS];
	int fds0 = count_daemon_fds(fx), fds1 = 0;

	assert_true(fds0 > 0);
	for (int i = 0; i < LOOKUP_ASSOCS; i++) {
		associate(fx, AF_INET, 0, &a[i]);
		u[i] = udp_socket_or_fail("127.0.0.1");
		for (int j = 0; j < LOOKUP_DGRAMS; j++) {
			uint8_t hdr[5 + 32];
			int nl = snprintf((char *)hdr + 5, sizeof(hdr) - 5, "n%d-%d.example.test",
				i, j);
			hdr[0] = hdr[1] = hdr[2] = 0;
			hdr[3] = 0x03;
			hdr[4] = (uint8_t)nl;
			hdr[5 + nl] = 0;
			hdr[6 + nl] = 53;
			send_dgram(u[i], &a[i], hdr, 7 + (size_t)nl, 32, (uint64_t)(i * 100 + j));
		}
	}
	/* Every datagram has been read and its lookup started or refused. */
	for (uint64_t t0 = it_now_ms(); it_now_ms() - t0 < 500;) {
		int n = count_daemon_fds(fx);
		fds1 = n > fds1 ? n : fds1;
		it_sleep_ms(20);
	}
	print_message("[   INFO   ] daemon fds: %d before, at most %d with %d lookups asked\n",
		fds0, fds1, LOOKUP_ASSOCS * LOOKUP_DGRAMS);
	/* Each association: its control connection and relay socket. */
	if (fds1 > fds0 + LOOKUP_ASSOCS * 2 + 2 * LOOKUP_CAP)
		fail_msg("%d descriptors for %d associations and at most %d lookups (2 each), from "
			 "%d",
			fds1, LOOKUP_ASSOCS, LOOKUP_CAP, fds0);
	if (!it_daemon_log_contains(&fx->d, "(max-lookups)"))
		fail_msg("no warning about lookups refused at max-lookups");
	/* CONNECT to a name shares the cap: refused at once (0x04), not after
	 * the lookup's timeout. */
	int c = it_greet(fx, AF_INET);
	const uint8_t conn[] = { 0x05, 0x01, 0x00, 0x03, 11, 'x', '.', 'e', 'x', 'a', 'm', 'p', 'l',
		'e', '.', 't', 0, 80 };
	struct it_reply r;
	uint64_t t0 = it_now_ms();
	it_send_bytes(c, conn, sizeof(conn));
	it_expect_reply(c, &r, 2000);
	assert_int_equal(r.rep, 0x04);
	assert_in_range(it_now_ms() - t0, 0, 1500);
	it_close(c);
	/* Ending the associations gives the lookups' sockets back. */
	for (int i = 0; i < LOOKUP_ASSOCS; i++) {
		it_close(u[i]);
		it_close(a[i].ctl);
	}
	int n = -1;
	for (uint64_t t1 = it_now_ms(); it_now_ms() - t1 < 2000; it_sleep_ms(20))
		if ((n = count_daemon_fds(fx)) <= fds0)
			break;
	if (n > fds0)
		fail_msg("%d descriptors 2 s after the associations ended, %d before", n, fds0);
}

static int
setup_max_lookups(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	char config[256];

	/* Not it_udp_socket: the tests' teardown closes those. */
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	silent_ns = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (silent_ns < 0 || bind(silent_ns, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		getsockname(silent_ns, (struct sockaddr *)&sin, &len) < 0) {
		perror("silent nameserver");
		return -1;
	}
	snprintf(config, sizeof(config),
		"auth none\nlog-level debug\nnameserver 127.0.0.1:%u\nmax-lookups %d\n",
		ntohs(sin.sin_port), LOOKUP_CAP);
	return it_fixture_start_for(state, IT_CAP_UDP | IT_CAP_RESOLVER, config, NULL, NULL);
}

static int
teardown_max_lookups(void **state)
{
	int r = it_fixture_stop(state);

	if (silent_ns >= 0)
		close(silent_ns);
	silent_ns = -1;
	return r;
}

int
it_run_udp_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_udp_associate_reply_names_control_ip_and_a_bound_relay_port),
		IT_TEST(test_udp_ipv4_destination_echoes_with_exact_source_header),
		IT_TEST(test_udp_ipv6_destination_echoes_with_exact_source_header),
		IT_TEST(test_udp_domain_destination_localhost_answer_names_resolved_source),
		IT_TEST(test_udp_over_ipv6_control_connection_relays_on_ipv6),
		IT_TEST(test_udp_empty_datagram_relays_as_empty_datagram),
		IT_TEST(test_udp_request_port_pins_client_port),
		IT_TEST(test_udp_first_datagram_pins_port_and_other_port_is_ignored),
		IT_TEST(test_udp_datagram_from_other_ip_is_ignored),
		IT_TEST(test_udp_nonzero_frag_is_dropped),
		IT_TEST(test_udp_malformed_datagrams_are_dropped_and_association_goes_on),
		IT_TEST(test_udp_request_naming_client_address_and_port_is_honoured),
		IT_TEST(test_udp_request_naming_private_address_works_behind_nat),
		IT_TEST(test_udp_control_close_closes_relay_port),
		IT_TEST(test_udp_bytes_on_control_connection_do_not_end_association),
		IT_TEST(test_udp_two_associations_do_not_see_each_other),
		IT_TEST(test_udp_1000_datagrams_of_assorted_sizes_arrive_intact_in_order),
		IT_TEST(test_udp_pysocks_client_echoes_through_daemon),
	};
	const struct CMUnitTest idle_tests[] = {
		IT_TEST(test_udp_idle_association_is_ended_by_daemon),
		IT_TEST(test_udp_traffic_keeps_association_alive_past_idle_timeout),
		IT_TEST(test_udp_relay_port_comes_from_udp_port_range),
	};
	const struct CMUnitTest rule_tests[] = {
		IT_TEST(test_udp_port_rule_admits_request_naming_no_address),
		IT_TEST(test_udp_inbound_from_source_refused_by_rules_is_dropped),
	};
	const struct CMUnitTest lookup_tests[] = {
		IT_TEST(test_udp_lookups_in_flight_are_capped_by_max_lookups),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("udp associate (auth none)", tests, setup,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("udp associate (rule allow cmd udp port)", rule_tests,
		setup_port_rule, it_fixture_stop);
	failed += cmocka_run_group_tests_name("udp associate (max-lookups, silent nameserver)",
		lookup_tests, setup_max_lookups, teardown_max_lookups);
	failed += cmocka_run_group_tests_name("udp associate (timeout udp 1, udp-port-range)",
		idle_tests, setup_idle, it_fixture_stop);
	return failed;
}
