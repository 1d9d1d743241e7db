/*
 * test_udpassoc: UDP ASSOCIATE (RFC 1928 §7) against a real loop and real
 * loopback sockets. Echo servers on 127.0.0.1 and ::1 live in the same loop;
 * clients are plain sockets of the test. Every wait for the loop is bounded
 * (unit_run_until), so a lost datagram fails a test instead of hanging it. The
 * resolver is given a nameserver that never answers: names come from
 * /etc/hosts ("localhost"), are rejected outright, or stay pending.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/udp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "loop.h"
#include "net.h"
#include "proto.h"
#include "resolver.h"
#include "udpassoc.h"

#include "unit_util.h"

#define GUARD_MS 5000
#define QUIET_MS 100 /* how long "nothing arrives" is watched for */

/* A UDP echo server inside the loop. */
struct echo {
	int fd;
	struct watcher w;
	union sockaddr_any addr;
	unsigned count;               /* datagrams echoed */
	union sockaddr_any last_from; /* where the last one came from */
};

struct fx {
	struct loop *loop;
	struct resolver *resolver;
	int ns_fd; /* a nameserver that never answers */
	union sockaddr_any ns_addr;
	struct echo echo4, echo6;
	int poll_fd;   /* for pred_readable */
	unsigned ends; /* end() calls */
	const char *end_why;
	uint64_t end_at;
	struct udpassoc *stop_in_end; /* stopped from inside end() */
};

static uint8_t rxbuf[70000];

/* --- helpers ------------------------------------------------------------- */

static void
on_echo(struct loop *loop, unsigned events, void *arg)
{
	struct echo *e = arg;
	static uint8_t b[70000];

	(void)loop;
	(void)events;
	for (;;) {
		union sockaddr_any from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(e->fd, b, sizeof(b), 0, &from.sa, &flen);
		if (n < 0)
			return;
		e->count++;
		e->last_from = from;
		assert_int_equal(sendto(e->fd, b, (size_t)n, 0, &from.sa, flen), n);
	}
}

static int
udp_bound(const char *ip, uint16_t port, union sockaddr_any *out)
{
	union sockaddr_any a;
	int fd;

	assert_int_equal(addr_parse(ip, port, &a), 0);
	/* A range of one port asks for exactly that port. */
	fd = net_udp_socket(&a, port, port);
	if (fd >= 0 && out)
		assert_int_equal(net_local_addr(fd, out), 0);
	return fd;
}

static void
echo_open(struct fx *f, struct echo *e, const char *ip)
{
	memset(e, 0, sizeof(*e));
	e->fd = udp_bound(ip, 0, &e->addr);
	assert_true(e->fd >= 0);
	watcher_init(&e->w, e->fd, on_echo, e);
	assert_int_equal(loop_watch(f->loop, &e->w, LOOP_READ), 0);
}

static void
echo_close(struct fx *f, struct echo *e)
{
	loop_unwatch(f->loop, &e->w);
	close(e->fd);
}

static bool
pred_readable(void *arg)
{
	struct fx *f = arg;
	uint8_t c;

	return recv(f->poll_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
}

static bool
pred_ended(void *arg)
{
	struct fx *f = arg;

	return f->ends > 0;
}

/* Waits (bounded) for one datagram on fd. Returns its length, -1 if none. */
static ssize_t
wait_dgram(struct fx *f, int fd, unsigned ms)
{
	f->poll_fd = fd;
	if (!unit_run_until(f->loop, pred_readable, f, ms))
		return -1;
	return recv(fd, rxbuf, sizeof(rxbuf), MSG_DONTWAIT);
}

/* Asserts that nothing arrives on fd for QUIET_MS. */
static void
expect_quiet(struct fx *f, int fd)
{
	assert_int_equal(wait_dgram(f, fd, QUIET_MS), -1);
}

/* RSV RSV FRAG ATYP DST.ADDR DST.PORT DATA (RFC 1928 §7). */
static size_t
build_dgram(uint8_t *out, size_t cap, uint8_t frag, const struct socks_addr *dst, const void *data,
	size_t len)
{
	size_t n;

	assert_true(cap >= 3);
	out[0] = 0;
	out[1] = 0;
	out[2] = frag;
	n = proto_encode_addr(out + 3, cap - 3, dst);
	assert_true(n > 0);
	assert_true(3 + n + len <= cap);
	memcpy(out + 3 + n, data, len);
	return 3 + n + len;
}

static struct socks_addr
sa_of(const union sockaddr_any *a)
{
	struct socks_addr s;

	proto_addr_from_sockaddr(&s, &a->sa);
	return s;
}

static struct socks_addr
sa_domain(const char *name, uint16_t port)
{
	struct socks_addr s;

	memset(&s, 0, sizeof(s));
	s.atyp = SOCKS_ATYP_DOMAIN;
	s.name_len = (uint8_t)strlen(name);
	memcpy(s.name, name, s.name_len);
	s.port = port;
	return s;
}

static void
send_dgram(int fd, const union sockaddr_any *to, uint8_t frag, const struct socks_addr *dst,
	const void *data, size_t len)
{
	static uint8_t b[70000];
	size_t n = build_dgram(b, sizeof(b), frag, dst, data, len);

	assert_int_equal(sendto(fd, b, n, 0, &to->sa, addr_len(to)), (ssize_t)n);
}

static void
send_raw(int fd, const union sockaddr_any *to, const void *p, size_t len)
{
	assert_int_equal(sendto(fd, p, len, 0, &to->sa, addr_len(to)), (ssize_t)len);
}

/* The exact bytes a reply from src carrying data must have. */
static void
assert_reply(const uint8_t *got, ssize_t got_len, const union sockaddr_any *src, const void *data,
	size_t len)
{
	uint8_t want[PROTO_UDP_HEADER_MAX + 64];
	size_t h;

	assert_true(len <= 64);
	h = proto_encode_udp_header(want, &src->sa);
	memcpy(want + h, data, len);
	assert_int_equal(got_len, (ssize_t)(h + len));
	assert_memory_equal(got, want, h + len);
}

static void
on_end(const char *why, void *arg)
{
	struct fx *f = arg;

	f->ends++;
	f->end_why = why;
	f->end_at = loop_now(f->loop);
	if (f->stop_in_end) {
		udpassoc_stop(f->stop_in_end);
		f->stop_in_end = NULL;
	}
}

/* An association for a client at client_ip whose control connection came in
 * on local_ip. req NULL means 0.0.0.0:0. */
static struct udpassoc *
assoc(struct fx *f, const char *client_ip, const char *local_ip, const struct socks_addr *req,
	const struct udpassoc_options *opt, union sockaddr_any *bnd)
{
	union sockaddr_any cip, lip;
	struct socks_addr zero;
	struct udpassoc *u;

	memset(&zero, 0, sizeof(zero));
	zero.atyp = SOCKS_ATYP_IPV4;
	assert_int_equal(addr_parse(client_ip, 40000, &cip), 0);
	assert_int_equal(addr_parse(local_ip, 1080, &lip), 0);
	u = udpassoc_start(f->loop, f->resolver, opt, &cip, &lip, req ? req : &zero, bnd, on_end,
		f);
	assert_non_null(u);
	return u;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct resolver_options ro;

	assert_non_null(f);
	log_init(getenv("TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_WARN);
	f->loop = loop_new();
	assert_non_null(f->loop);
	f->ns_fd = udp_bound("127.0.0.1", 0, &f->ns_addr);
	assert_true(f->ns_fd >= 0);
	memset(&ro, 0, sizeof(ro));
	ro.nameservers = &f->ns_addr;
	ro.nnameservers = 1;
	ro.prefer_family = AF_INET;
	ro.cache_size = 16;
	ro.cache_max_ttl = 60;
	f->resolver = resolver_new(f->loop, &ro);
	assert_non_null(f->resolver);
	echo_open(f, &f->echo4, "127.0.0.1");
	echo_open(f, &f->echo6, "::1");
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	echo_close(f, &f->echo4);
	echo_close(f, &f->echo6);
	resolver_free(f->resolver);
	close(f->ns_fd);
	loop_free(f->loop);
	free(f);
	return 0;
}

/* --- tests --------------------------------------------------------------- */

static void
test_bnd_is_control_ip_and_relay_port(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd, want;
	struct udpassoc *u4, *u6;
	int fd;

	u4 = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	assert_int_equal(addr_parse("127.0.0.1", 0, &want), 0);
	assert_true(addr_ip_equal(&bnd, &want));
	assert_int_not_equal(addr_port(&bnd), 0);
	/* The port really is ours: binding it again fails. */
	fd = udp_bound("127.0.0.1", addr_port(&bnd), NULL);
	assert_int_equal(fd, -1);
	udpassoc_stop(u4);

	u6 = assoc(f, "::1", "::1", NULL, NULL, &bnd);
	assert_int_equal(addr_parse("::1", 0, &want), 0);
	assert_true(addr_ip_equal(&bnd, &want));
	assert_int_not_equal(addr_port(&bnd), 0);
	udpassoc_stop(u6);

	/* A control connection on a v4-mapped address gets an IPv4 relay. */
	u4 = assoc(f, "::ffff:127.0.0.1", "::ffff:127.0.0.1", NULL, NULL, &bnd);
	assert_int_equal(bnd.sa.sa_family, AF_INET);
	udpassoc_stop(u4);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_bnd_port_from_range(void **state)
{
	struct fx *f = *state;
	struct udpassoc_options opt = { .port_lo = 0, .port_hi = 0 };
	union sockaddr_any bnd, probe;
	struct udpassoc *u;
	uint16_t port;
	int fd;

	/* Find a free port, then ask for exactly that range. */
	fd = udp_bound("127.0.0.1", 0, &probe);
	assert_true(fd >= 0);
	port = addr_port(&probe);
	close(fd);
	opt.port_lo = opt.port_hi = port;
	u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, &opt, &bnd);
	assert_int_equal(addr_port(&bnd), port);
	udpassoc_stop(u);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_wildcard_control_address_refused(void **state)
{
	struct fx *f = *state;
	union sockaddr_any cip, lip, bnd;
	struct socks_addr zero;

	memset(&zero, 0, sizeof(zero));
	zero.atyp = SOCKS_ATYP_IPV4;
	assert_int_equal(addr_parse("127.0.0.1", 1, &cip), 0);
	assert_int_equal(addr_parse("0.0.0.0", 1080, &lip), 0);
	errno = 0;
	assert_null(udpassoc_start(f->loop, f->resolver, NULL, &cip, &lip, &zero, &bnd, on_end, f));
	assert_int_equal(errno, EADDRNOTAVAIL);
}

static void
test_ipv4_destination_reply_has_exact_header(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	const struct udpassoc_stats *st;
	ssize_t n;

	send_dgram(c, &bnd, 0, &dst, "hello", 5);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "hello", 5);
	/* 00 00 00 01 7f 00 00 01 PORT: spelled out once. */
	assert_int_equal(n, 10 + 5);
	assert_memory_equal(rxbuf, "\x00\x00\x00\x01\x7f\x00\x00\x01", 8);
	assert_int_equal(rxbuf[8], addr_port(&f->echo4.addr) >> 8);
	assert_int_equal(rxbuf[9], addr_port(&f->echo4.addr) & 0xff);
	st = udpassoc_get_stats(u);
	assert_int_equal(st->dgrams_up, 1);
	assert_int_equal(st->bytes_up, 5);
	assert_int_equal(st->dgrams_down, 1);
	assert_int_equal(st->bytes_down, 5);
	/* An empty DATA is a datagram too. */
	send_dgram(c, &bnd, 0, &dst, "", 0);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "", 0);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_ipv6_destination_reply_has_exact_header(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo6.addr);
	struct udpassoc *u = assoc(f, "::1", "::1", NULL, NULL, &bnd);
	int c = udp_bound("::1", 0, NULL);
	uint8_t want[22];
	ssize_t n;

	send_dgram(c, &bnd, 0, &dst, "six", 3);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo6.addr, "six", 3);
	memset(want, 0, sizeof(want));
	want[3] = SOCKS_ATYP_IPV6;
	want[19] = 1;
	want[20] = (uint8_t)(addr_port(&f->echo6.addr) >> 8);
	want[21] = (uint8_t)addr_port(&f->echo6.addr);
	assert_int_equal(n, 22 + 3);
	assert_memory_equal(rxbuf, want, 22);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_ipv4_client_reaches_ipv6_destination(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr d6 = sa_of(&f->echo6.addr), d4 = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	send_dgram(c, &bnd, 0, &d6, "to-v6", 5);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo6.addr, "to-v6", 5);
	/* ... and both families through one association. */
	send_dgram(c, &bnd, 0, &d4, "to-v4", 5);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "to-v4", 5);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_ipv6_client_reaches_ipv4_destination(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr d4 = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "::1", "::1", NULL, NULL, &bnd);
	int c = udp_bound("::1", 0, NULL);
	ssize_t n;

	send_dgram(c, &bnd, 0, &d4, "to-v4", 5);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "to-v4", 5);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_other_source_address_is_ignored(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int stranger = udp_bound("127.0.0.2", 0, NULL);
	int c = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	assert_true(stranger >= 0);
	send_dgram(stranger, &bnd, 0, &dst, "nope", 4);
	expect_quiet(f, stranger);
	assert_int_equal(f->echo4.count, 0);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_FOREIGN], 1);
	/* The stranger did not take the port slot: the client still gets in. */
	send_dgram(c, &bnd, 0, &dst, "yes", 3);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "yes", 3);
	udpassoc_stop(u);
	close(stranger);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_first_datagram_pins_client_port(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int a = udp_bound("127.0.0.1", 0, NULL), b = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	send_dgram(a, &bnd, 0, &dst, "a1", 2);
	n = wait_dgram(f, a, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "a1", 2);
	send_dgram(b, &bnd, 0, &dst, "b1", 2);
	expect_quiet(f, b);
	expect_quiet(f, a);
	assert_int_equal(f->echo4.count, 1);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_FOREIGN], 1);
	udpassoc_stop(u);
	close(a);
	close(b);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_request_port_pins_client_port(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd, bl;
	struct socks_addr dst = sa_of(&f->echo4.addr), req;
	int a = udp_bound("127.0.0.1", 0, NULL), b = udp_bound("127.0.0.1", 0, &bl);
	struct udpassoc *u;
	ssize_t n;

	/* DST.ADDR 0.0.0.0 (unknown), DST.PORT = b's port. */
	memset(&req, 0, sizeof(req));
	req.atyp = SOCKS_ATYP_IPV4;
	req.port = addr_port(&bl);
	u = assoc(f, "127.0.0.1", "127.0.0.1", &req, NULL, &bnd);
	send_dgram(a, &bnd, 0, &dst, "a1", 2);
	expect_quiet(f, a);
	send_dgram(b, &bnd, 0, &dst, "b1", 2);
	n = wait_dgram(f, b, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "b1", 2);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_FOREIGN], 1);
	udpassoc_stop(u);

	/* The full address and port, as a client that knows them sends. */
	req = sa_of(&bl);
	u = assoc(f, "127.0.0.1", "127.0.0.1", &req, NULL, &bnd);
	send_dgram(b, &bnd, 0, &dst, "b2", 2);
	n = wait_dgram(f, b, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "b2", 2);
	udpassoc_stop(u);
	close(a);
	close(b);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* Issue 17 item 5: a client behind NAT writes its private address and
 * port; datagrams then come from the NAT's. They are taken from the
 * control connection's peer, the port learnt from the first one. */
static void
test_request_naming_other_address_learns_port_from_first_datagram(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd, priv, stranger_addr;
	struct socks_addr dst = sa_of(&f->echo4.addr), req;
	struct udpassoc *u;
	int c = udp_bound("127.0.0.1", 0, NULL), c2 = udp_bound("127.0.0.1", 0, NULL);
	int stranger = udp_bound("127.0.0.3", 0, &stranger_addr);
	ssize_t n;

	/* The private address and a port no socket here has. */
	assert_int_equal(addr_parse("10.11.12.13", 5555, &priv), 0);
	req = sa_of(&priv);
	u = assoc(f, "127.0.0.1", "127.0.0.1", &req, NULL, &bnd);
	/* Not even the address the request named may use it. */
	send_dgram(stranger, &bnd, 0, &dst, "no", 2);
	expect_quiet(f, stranger);
	send_dgram(c, &bnd, 0, &dst, "x", 1);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "x", 1);
	/* Pinned now: another port of the same host is foreign. */
	send_dgram(c2, &bnd, 0, &dst, "y", 1);
	expect_quiet(f, c2);
	expect_quiet(f, c);
	assert_int_equal(f->echo4.count, 1);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_FOREIGN], 2);
	udpassoc_stop(u);
	close(c);
	close(c2);
	close(stranger);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* Refuses one source port, records what it was asked. */
struct allow_rec {
	uint16_t refuse_port;
	unsigned calls, calls_with_name;
};

static bool
allow_but_port(const union sockaddr_any *dst, const char *name, uint16_t port,
	const struct upstream **parent, void *arg)
{
	struct allow_rec *r = arg;

	*parent = NULL;
	r->calls++;
	if (name)
		r->calls_with_name++;
	return !dst || addr_port(dst) != r->refuse_port;
}

/* Issue 17 item 5: datagrams for the client from a source the rules would
 * refuse as a destination are dropped and counted. */
static void
test_inbound_from_refused_source_is_dropped_and_counted(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd, sa;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct allow_rec rec = { 0 };
	struct udpassoc_options opt = { .allow = allow_but_port, .allow_arg = &rec };
	struct udpassoc *u;
	int c = udp_bound("127.0.0.1", 0, NULL), s = udp_bound("127.0.0.1", 0, &sa);
	ssize_t n;

	rec.refuse_port = addr_port(&sa);
	u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, &opt, &bnd);
	send_dgram(c, &bnd, 0, &dst, "out", 3);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "out", 3);
	/* s writes to the outbound socket the echo saw: refused. */
	send_raw(s, &f->echo4.last_from, "in", 2);
	expect_quiet(f, c);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_DENIED_IN], 1);
	assert_int_equal(udpassoc_get_stats(u)->dgrams_down, 1);
	assert_int_equal(rec.calls_with_name, 0);
	assert_true(rec.calls >= 2);
	assert_string_equal(udpassoc_drop_names[UDPASSOC_DROP_DENIED_IN], "denied_inbound");
	udpassoc_stop(u);
	close(c);
	close(s);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_nonzero_frag_is_dropped_and_counted(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	send_dgram(c, &bnd, 1, &dst, "frag1", 5);
	send_dgram(c, &bnd, 0x81, &dst, "last", 4); /* high bit: end of sequence */
	expect_quiet(f, c);
	assert_int_equal(f->echo4.count, 0);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_FRAG], 2);
	send_dgram(c, &bnd, 0, &dst, "whole", 5);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "whole", 5);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_malformed_is_dropped_and_does_not_pin(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr), port0 = dst;
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int junk = udp_bound("127.0.0.1", 0, NULL), c = udp_bound("127.0.0.1", 0, NULL);
	static const uint8_t rsv[] = { 0, 1, 0, SOCKS_ATYP_IPV4, 127, 0, 0, 1, 0, 7, 'x' };
	static const uint8_t shorthdr[] = { 0, 0, 0, SOCKS_ATYP_IPV4, 127, 0, 0 };
	static const uint8_t atyp[] = { 0, 0, 0, 0x02, 127, 0, 0, 1, 0, 7, 'x' };
	static const uint8_t noname[] = { 0, 0, 0, SOCKS_ATYP_DOMAIN, 0, 0, 7, 'x' };
	ssize_t n;

	send_raw(junk, &bnd, rsv, sizeof(rsv));
	send_raw(junk, &bnd, shorthdr, sizeof(shorthdr));
	send_raw(junk, &bnd, atyp, sizeof(atyp));
	send_raw(junk, &bnd, noname, sizeof(noname));
	send_raw(junk, &bnd, "", 0);
	port0.port = 0;
	send_dgram(junk, &bnd, 0, &port0, "p0", 2);
	expect_quiet(f, junk);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_MALFORMED], 6);
	assert_int_equal(f->echo4.count, 0);
	/* None of that fixed the client's port: another socket gets it. */
	send_dgram(c, &bnd, 0, &dst, "ok", 2);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "ok", 2);
	udpassoc_stop(u);
	close(junk);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_stop_frees_relay_port_at_once(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL), again;
	ssize_t n;

	send_dgram(c, &bnd, 0, &dst, "one", 3);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "one", 3);
	udpassoc_stop(u);
	/* Nothing answers any more, and nothing reaches the destination. */
	send_dgram(c, &bnd, 0, &dst, "two", 3);
	expect_quiet(f, c);
	assert_int_equal(f->echo4.count, 1);
	assert_int_equal(f->ends, 0); /* stop is not an "end by itself" */
	again = udp_bound("127.0.0.1", addr_port(&bnd), NULL);
	assert_true(again >= 0);
	close(again);
	close(c);
}

static void
test_stop_inside_batch_with_pending_events(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);

	/* Readable relay socket, then stop before the loop dispatches it. */
	send_dgram(c, &bnd, 0, &dst, "late", 4);
	udpassoc_stop(u);
	udpassoc_stop(u); /* twice is harmless before the release runs */
	unit_run_for(f->loop, 20, UNIT_RUN_WAIT_MS);
	assert_int_equal(f->echo4.count, 0);
	close(c);
}

static void
test_two_associations_do_not_see_each_other(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd1, bnd2;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u1 = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd1);
	struct udpassoc *u2 = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd2);
	int c1 = udp_bound("127.0.0.1", 0, NULL), c2 = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	assert_int_not_equal(addr_port(&bnd1), addr_port(&bnd2));
	send_dgram(c1, &bnd1, 0, &dst, "one", 3);
	n = wait_dgram(f, c1, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "one", 3);
	send_dgram(c2, &bnd2, 0, &dst, "two", 3);
	n = wait_dgram(f, c2, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "two", 3);
	expect_quiet(f, c1);
	/* c2 through c1's relay: that port is pinned to c1. */
	send_dgram(c2, &bnd1, 0, &dst, "cross", 5);
	expect_quiet(f, c2);
	expect_quiet(f, c1);
	assert_int_equal(udpassoc_get_stats(u1)->dropped[UDPASSOC_DROP_FOREIGN], 1);
	assert_int_equal(udpassoc_get_stats(u1)->dgrams_down, 1);
	assert_int_equal(udpassoc_get_stats(u2)->dgrams_down, 1);
	/* One ends, the other keeps going. */
	udpassoc_stop(u1);
	send_dgram(c2, &bnd2, 0, &dst, "still", 5);
	n = wait_dgram(f, c2, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "still", 5);
	udpassoc_stop(u2);
	close(c1);
	close(c2);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* --- 1000 datagrams: sizes, integrity, order ------------------------------ */

#define BULK_N 1000
#define BULK_MAX 65507 /* largest IPv4 UDP payload */

struct bulk {
	struct fx *f;
	int fd;
	struct watcher w;
	union sockaddr_any relay;
	struct socks_addr dst;
	size_t sizes[BULK_N];
	size_t sent, recvd;
	size_t inflight_bytes;
	uint64_t h_sent, h_recvd;
	bool bad; /* wrong header or length */
	uint32_t rng;
};

static uint32_t
xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
bulk_fill(struct bulk *b, size_t i, uint8_t *p)
{
	uint32_t s = (uint32_t)i * 2654435761u + 1;

	for (size_t k = 0; k < b->sizes[i]; k++)
		p[k] = (uint8_t)xorshift(&s);
}

/* Keeps at most two datagrams and 66000 bytes in flight: enough to catch
 * reordering, little enough for default socket buffers on every hop. */
static void
bulk_send_more(struct bulk *b)
{
	static uint8_t payload[BULK_MAX];

	while (b->sent < BULK_N && b->sent - b->recvd < 2 &&
		(b->sent == b->recvd || b->inflight_bytes + b->sizes[b->sent] <= 66000)) {
		size_t len = b->sizes[b->sent];
		bulk_fill(b, b->sent, payload);
		b->h_sent = unit_fnv(b->h_sent, (const uint8_t *)&len, sizeof(len));
		b->h_sent = unit_fnv(b->h_sent, payload, len);
		send_dgram(b->fd, &b->relay, 0, &b->dst, payload, len);
		b->inflight_bytes += len;
		b->sent++;
	}
}

static void
on_bulk(struct loop *loop, unsigned events, void *arg)
{
	struct bulk *b = arg;
	uint8_t hdr[PROTO_UDP_HEADER_MAX];
	size_t h = proto_encode_udp_header(hdr, &b->f->echo4.addr.sa);

	(void)events;
	for (;;) {
		ssize_t n = recv(b->fd, rxbuf, sizeof(rxbuf), MSG_DONTWAIT);
		size_t len;
		if (n < 0)
			break;
		if (b->recvd >= BULK_N || (size_t)n < h || memcmp(rxbuf, hdr, h) != 0) {
			b->bad = true;
			return;
		}
		len = (size_t)n - h;
		if (len != b->sizes[b->recvd])
			b->bad = true;
		b->h_recvd = unit_fnv(b->h_recvd, (const uint8_t *)&len, sizeof(len));
		b->h_recvd = unit_fnv(b->h_recvd, rxbuf + h, len);
		b->inflight_bytes -= b->sizes[b->recvd];
		b->recvd++;
	}
	if (b->recvd == BULK_N || b->bad)
		return;
	bulk_send_more(b);
}

static bool
bulk_over(void *arg)
{
	const struct bulk *b = arg;

	return b->recvd == BULK_N || b->bad;
}

static void
test_thousand_datagrams_arrive_intact_and_in_order(void **state)
{
	struct fx *f = *state;
	struct bulk *b = calloc(1, sizeof(*b));
	const struct udpassoc_stats *st;
	struct udpassoc *u;
	uint64_t total = 0;

	assert_non_null(b);
	b->f = f;
	b->rng = 12345;
	b->h_sent = b->h_recvd = UNIT_FNV_OFFSET;
	/* Assorted sizes with the edges: 1, the largest IPv4 payload, and
	 * sizes around common MTUs. The client leg is IPv6, whose datagrams
	 * hold a 65507-byte payload plus the header; the destination is IPv4. */
	for (size_t i = 0; i < BULK_N; i++) {
		uint32_t r = xorshift(&b->rng);
		switch (i % 10) {
		case 0:
			b->sizes[i] = 1 + r % 64;
			break;
		case 1:
			b->sizes[i] = BULK_MAX - r % 3;
			break;
		case 2:
			b->sizes[i] = 1400 + r % 200;
			break;
		case 3:
			b->sizes[i] = 8900 + r % 400;
			break;
		default:
			b->sizes[i] = 1 + r % BULK_MAX;
			break;
		}
		total += b->sizes[i];
	}
	b->sizes[0] = 1;
	b->sizes[BULK_N - 1] = BULK_MAX;
	total = 0;
	for (size_t i = 0; i < BULK_N; i++)
		total += b->sizes[i];

	u = assoc(f, "::1", "::1", NULL, NULL, &b->relay);
	b->dst = sa_of(&f->echo4.addr);
	b->fd = udp_bound("::1", 0, NULL);
	assert_true(b->fd >= 0);
	watcher_init(&b->w, b->fd, on_bulk, b);
	assert_int_equal(loop_watch(f->loop, &b->w, LOOP_READ), 0);
	bulk_send_more(b);
	assert_true(unit_run_until(f->loop, bulk_over, b, 30000));
	assert_false(b->bad);
	assert_int_equal(b->recvd, BULK_N);
	assert_true(b->h_sent == b->h_recvd);
	st = udpassoc_get_stats(u);
	assert_int_equal(st->dgrams_up, BULK_N);
	assert_int_equal(st->dgrams_down, BULK_N);
	assert_true(st->bytes_up == total);
	assert_true(st->bytes_down == total);
	loop_unwatch(f->loop, &b->w);
	close(b->fd);
	udpassoc_stop(u);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
	free(b);
}

/* --- the batch paths (recvmmsg, sendmmsg, UDP_SEGMENT) -------------------- */

/*
 * sendmmsg is wrapped at link time (-Wl,--wrap=sendmmsg, see the Makefile)
 * to see what the association hands the kernel and to inject what loopback
 * cannot produce on demand: a send that stops part-way because the socket
 * buffer is full, and a UDP_SEGMENT send the kernel refuses.
 */
int __real_sendmmsg(int fd, struct mmsghdr *m, unsigned vlen, int flags);
int __wrap_sendmmsg(int fd, struct mmsghdr *m, unsigned vlen, int flags);

static struct {
	unsigned partial;    /* > 0: the next call sends this many, the one after fails EAGAIN */
	bool eagain_next;    /* that one */
	bool eio_on_segment; /* the next call whose first message is a UDP_SEGMENT send: EIO */
	unsigned calls;
	unsigned segment_msgs; /* UDP_SEGMENT messages seen */
	unsigned max_segments; /* most datagrams in one of them */
	uint16_t last_segment; /* its segment size */
	unsigned plain_msgs;   /* messages of one datagram */
} wrap;

static uint16_t
msg_segment(const struct msghdr *h)
{
	const struct cmsghdr *cm;
	uint16_t seg = 0;

	if (h->msg_controllen == 0)
		return 0;
	cm = CMSG_FIRSTHDR(h);
	assert_non_null(cm);
	assert_int_equal(cm->cmsg_level, SOL_UDP);
	assert_int_equal(cm->cmsg_type, UDP_SEGMENT);
	memcpy(&seg, CMSG_DATA(cm), sizeof(seg));
	return seg;
}

int
__wrap_sendmmsg(int fd, struct mmsghdr *m, unsigned vlen, int flags)
{
	wrap.calls++;
	for (unsigned i = 0; i < vlen; i++) {
		uint16_t seg = msg_segment(&m[i].msg_hdr);
		if (!seg) {
			wrap.plain_msgs++;
			continue;
		}
		wrap.segment_msgs++;
		wrap.last_segment = seg;
		if (m[i].msg_hdr.msg_iovlen > wrap.max_segments)
			wrap.max_segments = (unsigned)m[i].msg_hdr.msg_iovlen;
	}
	if (wrap.eagain_next) {
		wrap.eagain_next = false;
		errno = EAGAIN;
		return -1;
	}
	if (wrap.partial) {
		unsigned k = wrap.partial < vlen ? wrap.partial : vlen;
		wrap.partial = 0;
		wrap.eagain_next = true;
		return __real_sendmmsg(fd, m, k, flags);
	}
	if (wrap.eio_on_segment && vlen > 0 && msg_segment(&m[0].msg_hdr)) {
		wrap.eio_on_segment = false;
		errno = EIO;
		return -1;
	}
	return __real_sendmmsg(fd, m, vlen, flags);
}

/* DATA of datagram i of a test: a pattern no two datagrams share. */
static void
batch_fill(uint8_t *p, size_t len, unsigned i)
{
	uint32_t s = i * 2654435761u + 7;

	for (size_t k = 0; k < len; k++)
		p[k] = (uint8_t)xorshift(&s);
}

/* Sends n datagrams of sizes[] from c to the relay, before the loop runs:
 * they wait in the relay socket and are read in batches. */
static void
batch_send(int c, const union sockaddr_any *relay, const struct socks_addr *dst,
	const size_t *sizes, unsigned n, unsigned first_id)
{
	static uint8_t payload[65536];

	for (unsigned i = 0; i < n; i++) {
		batch_fill(payload, sizes[i], first_id + i);
		send_dgram(c, relay, 0, dst, payload, sizes[i]);
	}
}

struct batch_rx {
	struct fx *f;
	int fd;
	const union sockaddr_any *src; /* the answers' source, named in their header */
	const size_t *sizes;
	unsigned n, got, first_id;
	bool bad;
};

static bool
batch_rx_done(void *arg)
{
	struct batch_rx *r = arg;
	static uint8_t want[65536];
	uint8_t hdr[PROTO_UDP_HEADER_MAX];
	size_t h = proto_encode_udp_header(hdr, &r->src->sa);

	for (;;) {
		ssize_t k = recv(r->fd, rxbuf, sizeof(rxbuf), MSG_DONTWAIT);
		if (k < 0)
			break;
		if (r->got >= r->n) {
			r->bad = true;
			break;
		}
		size_t len = r->sizes[r->got];
		batch_fill(want, len, r->first_id + r->got);
		/* Exactly this datagram, and in order: header, length, bytes. */
		if ((size_t)k != h + len || memcmp(rxbuf, hdr, h) != 0 ||
			memcmp(rxbuf + h, want, len) != 0) {
			print_message("answer %u: %zd bytes, want %zu\n", r->got, k, h + len);
			r->bad = true;
		}
		r->got++;
	}
	return r->bad || r->got == r->n;
}

/* Waits until rx has all its answers (or a wrong one). */
static void
batch_expect(struct batch_rx *rx)
{
	assert_true(unit_run_until(rx->f->loop, batch_rx_done, rx, 10000));
	assert_false(rx->bad);
	assert_int_equal(rx->got, rx->n);
	expect_quiet(rx->f, rx->fd);
}

/* More datagrams than one batch, waiting at once, in a mix of sizes: runs
 * of one size (UDP_SEGMENT sends), a shorter one ending a run, an empty one,
 * sizes around the segment limit, and the largest IPv4 payload, 65,507
 * bytes, last (an IPv6 client can send it behind its header; the relay
 * socket's buffer holds it after the small ones). Each comes back whole and
 * in order, both ways. */
static void
test_batch_keeps_order_and_boundaries_both_directions(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = { 64, 64, 64, 64, 64, 64, 64, 64, 1200, 1200, 1200, 1200,
		1200, 1200, 1, 0, 1452, 1453, 100, 100, 100, 50, 9000, 2, 64, 64, 64, 64, 64, 64,
		64, 64, 7, 7, 7, 7, 65507 };
	const unsigned n = sizeof(sizes) / sizeof(sizes[0]);
	struct socks_addr dst = sa_of(&f->echo4.addr);
	union sockaddr_any bnd;
	struct udpassoc *u = assoc(f, "::1", "::1", NULL, NULL, &bnd);
	int c = udp_bound("::1", 0, NULL);
	struct batch_rx rx = { .f = f, .fd = c, .src = &f->echo4.addr, .sizes = sizes, .n = n };
	const struct udpassoc_stats *st = udpassoc_get_stats(u);
	uint64_t total = 0;

	assert_true(n > UDPASSOC_BATCH);
	for (unsigned i = 0; i < n; i++)
		total += sizes[i];
	memset(&wrap, 0, sizeof(wrap));
	batch_send(c, &bnd, &dst, sizes, n, 0);
	batch_expect(&rx);
	assert_int_equal(f->echo4.count, n);
	assert_int_equal(st->dgrams_up, n);
	assert_int_equal(st->dgrams_down, n);
	assert_true(st->bytes_up == total && st->bytes_down == total);
	for (int r = 0; r < UDPASSOC_DROP_REASONS; r++)
		assert_int_equal(st->dropped[r], 0);
	/* Runs of equal answers went to the client as UDP_SEGMENT sends. */
	assert_true(wrap.segment_msgs >= 4);
	assert_true(wrap.max_segments >= 8);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

#define FAIR_N 100

/* Two associations with 100 datagrams waiting each: one loop iteration
 * serves both, each with one batch; the rest follows on later iterations,
 * each association's datagrams in their order. */
static void
test_batch_bound_per_wakeup_serves_every_busy_association(void **state)
{
	struct fx *f = *state;
	size_t sizes[FAIR_N];
	struct socks_addr dst = sa_of(&f->echo4.addr);
	union sockaddr_any bnd1, bnd2;
	struct udpassoc *u1 = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd1);
	struct udpassoc *u2 = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd2);
	int c1 = udp_bound("127.0.0.1", 0, NULL), c2 = udp_bound("127.0.0.1", 0, NULL);
	struct batch_rx rx1 = { .f = f,
		.fd = c1,
		.src = &f->echo4.addr,
		.sizes = sizes,
		.n = FAIR_N };
	struct batch_rx rx2 = rx1;

	for (unsigned i = 0; i < FAIR_N; i++)
		sizes[i] = 16 + i % 3;
	rx2.fd = c2;
	rx2.first_id = 1000;
	batch_send(c1, &bnd1, &dst, sizes, FAIR_N, 0);
	batch_send(c2, &bnd2, &dst, sizes, FAIR_N, 1000);
	assert_int_equal(loop_run_once(f->loop, 1000), 0);
	assert_int_equal(udpassoc_get_stats(u1)->dgrams_up, UDPASSOC_BATCH);
	assert_int_equal(udpassoc_get_stats(u2)->dgrams_up, UDPASSOC_BATCH);
	assert_int_equal(loop_run_once(f->loop, 1000), 0);
	assert_int_equal(udpassoc_get_stats(u1)->dgrams_up, 2 * UDPASSOC_BATCH);
	assert_int_equal(udpassoc_get_stats(u2)->dgrams_up, 2 * UDPASSOC_BATCH);
	batch_expect(&rx1);
	batch_expect(&rx2);
	assert_int_equal(udpassoc_get_stats(u1)->dgrams_down, FAIR_N);
	assert_int_equal(udpassoc_get_stats(u2)->dgrams_down, FAIR_N);
	udpassoc_stop(u1);
	udpassoc_stop(u2);
	close(c1);
	close(c2);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* A datagram the kernel refuses in the middle of a batch (65,517 bytes of
 * DATA cannot go over IPv4): sendmmsg sends the messages before it and
 * stops; that one is dropped and counted, the ones after it still go. */
static void
test_partial_sendmmsg_drops_only_the_refused_datagram(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = { 16, 16, 16, 65517, 16, 16, 16 };
	static const size_t back[] = { 16, 16, 16, 16, 16, 16 };
	struct socks_addr dst = sa_of(&f->echo4.addr);
	union sockaddr_any bnd;
	struct udpassoc *u = assoc(f, "::1", "::1", NULL, NULL, &bnd);
	int c = udp_bound("::1", 0, NULL);
	struct batch_rx rx = { .f = f, .fd = c, .src = &f->echo4.addr, .sizes = back, .n = 6 };
	const struct udpassoc_stats *st = udpassoc_get_stats(u);
	static uint8_t payload[65536];

	for (unsigned i = 0; i < 7; i++) {
		/* The answers are numbered without the refused one. */
		batch_fill(payload, sizes[i], i < 3 ? i : i - 1);
		send_dgram(c, &bnd, 0, &dst, payload, sizes[i]);
	}
	batch_expect(&rx);
	assert_int_equal(st->dgrams_up, 6);
	assert_int_equal(st->dropped[UDPASSOC_DROP_ERROR], 1);
	assert_int_equal(st->dropped[UDPASSOC_DROP_BLOCKED], 0);
	assert_int_equal(f->echo4.count, 6);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* sendmmsg sends 2 of 5 messages, and the retry finds the socket buffer
 * full: the 3 left are dropped and counted as would_block (retrying at once
 * would fail the same way, and UDP may drop); the association goes on. */
static void
test_sendmmsg_full_buffer_drops_and_counts_the_rest(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = { 10, 11, 12, 13, 14 };
	struct socks_addr dst = sa_of(&f->echo4.addr);
	union sockaddr_any bnd;
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	struct batch_rx rx = { .f = f, .fd = c, .src = &f->echo4.addr, .sizes = sizes, .n = 2 };
	const struct udpassoc_stats *st = udpassoc_get_stats(u);

	memset(&wrap, 0, sizeof(wrap));
	batch_send(c, &bnd, &dst, sizes, 5, 0);
	wrap.partial = 2;
	batch_expect(&rx);
	assert_false(wrap.eagain_next);
	assert_int_equal(st->dgrams_up, 2);
	assert_int_equal(st->dropped[UDPASSOC_DROP_BLOCKED], 3);
	assert_int_equal(f->echo4.count, 2);
	/* Later datagrams go through as ever. */
	rx.sizes = sizes + 4;
	rx.first_id = 4;
	rx.n = 1;
	rx.got = 0;
	batch_send(c, &bnd, &dst, sizes + 4, 1, 4);
	batch_expect(&rx);
	assert_int_equal(st->dgrams_up, 3);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* A UDP_SEGMENT send the kernel refuses (no GSO or checksum offload on the
 * way out, or an MTU too small for the segments) goes again datagram by
 * datagram, and the association sends plainly from then on. */
static void
test_refused_segment_send_falls_back_to_plain_sends(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = { 20, 20, 20, 20 };
	struct socks_addr dst = sa_of(&f->echo4.addr);
	union sockaddr_any bnd;
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	struct batch_rx rx = { .f = f, .fd = c, .src = &f->echo4.addr, .sizes = sizes, .n = 4 };
	const struct udpassoc_stats *st = udpassoc_get_stats(u);
	unsigned segment_msgs;

	memset(&wrap, 0, sizeof(wrap));
	wrap.eio_on_segment = true;
	batch_send(c, &bnd, &dst, sizes, 4, 0);
	batch_expect(&rx);
	/* The echo answered all four before the relay read them: one run. */
	assert_false(wrap.eio_on_segment);
	assert_int_equal(st->dgrams_down, 4);
	assert_int_equal(st->dropped[UDPASSOC_DROP_ERROR], 0);
	/* The next run of equal answers: plain messages only. */
	segment_msgs = wrap.segment_msgs;
	wrap.plain_msgs = 0;
	rx.got = 0;
	rx.first_id = 10;
	batch_send(c, &bnd, &dst, sizes, 4, 10);
	batch_expect(&rx);
	assert_int_equal(st->dgrams_down, 8);
	assert_int_equal(wrap.segment_msgs, segment_msgs);
	assert_true(wrap.plain_msgs >= 8);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* --- idle timeout -------------------------------------------------------- */

static void
test_idle_timeout_calls_end(void **state)
{
	struct fx *f = *state;
	struct udpassoc_options opt = { .idle_ms = 150 };
	union sockaddr_any bnd;
	struct socks_addr dst = sa_of(&f->echo4.addr);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, &opt, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	uint64_t last = 0;
	ssize_t n;

	/* Traffic every ~50 ms for a while keeps it alive past idle_ms. */
	for (int i = 0; i < 6; i++) {
		loop_update_time(f->loop);
		last = loop_now(f->loop); /* the relay sees this one later */
		send_dgram(c, &bnd, 0, &dst, "tick", 4);
		n = wait_dgram(f, c, GUARD_MS);
		assert_reply(rxbuf, n, &f->echo4.addr, "tick", 4);
		unit_run_for(f->loop, 50, UNIT_RUN_WAIT_MS);
	}
	assert_int_equal(f->ends, 0);
	f->stop_in_end = u;
	assert_true(unit_run_until(f->loop, pred_ended, f, GUARD_MS));
	assert_int_equal(f->ends, 1);
	assert_string_equal(f->end_why, "udp idle timeout");
	/* Not before idle_ms after the last datagram. */
	assert_true(f->end_at >= last + 150);
	assert_null(f->stop_in_end);
	/* Stopped from inside end(): the port is free, nothing is called again. */
	unit_run_for(f->loop, 200, UNIT_RUN_WAIT_MS);
	assert_int_equal(f->ends, 1);
	close(c);
}

static void
test_no_idle_timeout_when_zero(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);

	unit_run_for(f->loop, 150, UNIT_RUN_WAIT_MS);
	assert_int_equal(f->ends, 0);
	udpassoc_stop(u);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

/* --- domain destinations ------------------------------------------------- */

static void
test_domain_destination_localhost(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_domain("localhost", addr_port(&f->echo4.addr));
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	send_dgram(c, &bnd, 0, &dst, "byname", 6);
	n = wait_dgram(f, c, GUARD_MS);
	/* The reply names the source address, not the name (RFC 1928 §7). */
	assert_reply(rxbuf, n, &f->echo4.addr, "byname", 6);
	assert_int_equal(udpassoc_get_stats(u)->dgrams_up, 1);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_domain_unresolvable_is_dropped_and_counted(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	char label[65];
	struct socks_addr dst;
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);

	/* A 64-byte label is no hostname: the resolver refuses it without a
	 * query (RFC 1035 §2.3.4 caps labels at 63). */
	memset(label, 'a', 64);
	label[64] = '\0';
	dst = sa_domain(label, addr_port(&f->echo4.addr));
	send_dgram(c, &bnd, 0, &dst, "lost", 4);
	f->poll_fd = -1;
	for (int i = 0; i < 100 && udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_UNRESOLVED] == 0;
		i++)
		unit_run_for(f->loop, 10, UNIT_RUN_WAIT_MS);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_UNRESOLVED], 1);
	assert_int_equal(udpassoc_get_stats(u)->dgrams_up, 0);
	assert_int_equal(f->echo4.count, 0);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_domain_queue_is_bounded_by_count_and_keeps_order(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr dst = sa_domain("localhost", addr_port(&f->echo4.addr));
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	char msg[8];
	ssize_t n;

	/* All 20 are in the relay socket before the loop runs, so they are read
	 * in one batch, before any lookup can answer: 16 wait, 4 are dropped. */
	for (int i = 0; i < 20; i++) {
		snprintf(msg, sizeof(msg), "m%02d", i);
		send_dgram(c, &bnd, 0, &dst, msg, 3);
	}
	for (int i = 0; i < 16; i++) {
		n = wait_dgram(f, c, GUARD_MS);
		snprintf(msg, sizeof(msg), "m%02d", i);
		assert_reply(rxbuf, n, &f->echo4.addr, msg, 3);
	}
	expect_quiet(f, c);
	assert_int_equal(udpassoc_get_stats(u)->dropped[UDPASSOC_DROP_QUEUE], 4);
	assert_int_equal(udpassoc_get_stats(u)->dgrams_up, 16);
	/* The queue drained: more datagrams are taken again. */
	send_dgram(c, &bnd, 0, &dst, "m99", 3);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "m99", 3);
	udpassoc_stop(u);
	close(c);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
}

static void
test_domain_queue_is_bounded_by_bytes_and_stop_cancels(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	/* Not in /etc/hosts; the only nameserver never answers: it waits. */
	struct socks_addr dst = sa_domain("pending.slow", 9);
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	static uint8_t big[60000];
	const struct udpassoc_stats *st;

	memset(big, 'b', sizeof(big));
	/* 4 x 60000 fit in 256 KiB, the 5th does not. One at a time so the
	 * relay socket's receive buffer is never the limit. */
	for (int i = 0; i < 5; i++) {
		send_dgram(c, &bnd, 0, &dst, big, sizeof(big));
		unit_run_for(f->loop, 20, UNIT_RUN_WAIT_MS);
	}
	st = udpassoc_get_stats(u);
	assert_int_equal(st->dropped[UDPASSOC_DROP_QUEUE], 1);
	assert_int_equal(st->dgrams_up, 0);
	/* Small ones still fit in the count bound until it is reached. */
	send_dgram(c, &bnd, 0, &dst, "s", 1);
	unit_run_for(f->loop, 20, UNIT_RUN_WAIT_MS);
	assert_int_equal(st->dropped[UDPASSOC_DROP_QUEUE], 1);
	/* Stopping with lookups outstanding cancels them (ASan: no leak, no
	 * callback into freed memory afterwards). */
	udpassoc_stop(u);
	unit_run_for(f->loop, 50, UNIT_RUN_WAIT_MS);
	close(c);
}

static void
test_domain_pending_lookup_does_not_hold_other_names(void **state)
{
	struct fx *f = *state;
	union sockaddr_any bnd;
	struct socks_addr slow = sa_domain("pending.slow", 9);
	struct socks_addr fast = sa_domain("localhost", addr_port(&f->echo4.addr));
	struct udpassoc *u = assoc(f, "127.0.0.1", "127.0.0.1", NULL, NULL, &bnd);
	int c = udp_bound("127.0.0.1", 0, NULL);
	ssize_t n;

	/* Order is kept per name; a lookup that hangs delays only its own. */
	send_dgram(c, &bnd, 0, &slow, "held", 4);
	send_dgram(c, &bnd, 0, &fast, "goes", 4);
	n = wait_dgram(f, c, GUARD_MS);
	assert_reply(rxbuf, n, &f->echo4.addr, "goes", 4);
	assert_int_equal(udpassoc_get_stats(u)->dgrams_up, 1);
	udpassoc_stop(u);
	unit_run_for(f->loop, 1, UNIT_RUN_WAIT_MS);
	close(c);
}

#define T(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_bnd_is_control_ip_and_relay_port),
		T(test_bnd_port_from_range),
		T(test_wildcard_control_address_refused),
		T(test_ipv4_destination_reply_has_exact_header),
		T(test_ipv6_destination_reply_has_exact_header),
		T(test_ipv4_client_reaches_ipv6_destination),
		T(test_ipv6_client_reaches_ipv4_destination),
		T(test_other_source_address_is_ignored),
		T(test_first_datagram_pins_client_port),
		T(test_request_port_pins_client_port),
		T(test_request_naming_other_address_learns_port_from_first_datagram),
		T(test_inbound_from_refused_source_is_dropped_and_counted),
		T(test_nonzero_frag_is_dropped_and_counted),
		T(test_malformed_is_dropped_and_does_not_pin),
		T(test_stop_frees_relay_port_at_once),
		T(test_stop_inside_batch_with_pending_events),
		T(test_two_associations_do_not_see_each_other),
		T(test_thousand_datagrams_arrive_intact_and_in_order),
		T(test_batch_keeps_order_and_boundaries_both_directions),
		T(test_batch_bound_per_wakeup_serves_every_busy_association),
		T(test_partial_sendmmsg_drops_only_the_refused_datagram),
		T(test_sendmmsg_full_buffer_drops_and_counts_the_rest),
		T(test_refused_segment_send_falls_back_to_plain_sends),
		T(test_idle_timeout_calls_end),
		T(test_no_idle_timeout_when_zero),
		T(test_domain_destination_localhost),
		T(test_domain_unresolvable_is_dropped_and_counted),
		T(test_domain_queue_is_bounded_by_count_and_keeps_order),
		T(test_domain_queue_is_bounded_by_bytes_and_stop_cancels),
		T(test_domain_pending_lookup_does_not_hold_other_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
