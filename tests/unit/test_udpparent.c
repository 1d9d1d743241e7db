/*
 * Unit tests for udpparent: a UDP ASSOCIATE opened with a SOCKS5 parent,
 * against a parent the test plays on loopback. Datagrams given before the
 * parent answered wait (bounded) and leave in order once it did, a name
 * staying a name; an unspecified BND means the parent's own address; what
 * the parent's relay sends comes up with its source; a refused connect, a
 * silent parent and a refusing reply end the association, blaming the
 * parent only for its own failures; a closed control connection ends it.
 */
#include <arpa/inet.h>
#include <errno.h>
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
#include "parent.h"
#include "resolver.h"
#include "udpparent.h"
#include "unit_util.h"
#include "upstream.h"

#define GUARD_MS 3000

struct fx {
	struct loop *loop;
	struct resolver *resolver;
	struct parents parents;
	struct upstream up;
	int lfd;   /* the fake parent's listener */
	int relay; /* the fake parent's UDP relay socket (127.0.0.1) */
	uint16_t relay_port;
	struct udpparent *p;
	/* What came up through the recv callback. */
	unsigned got;
	struct socks_addr last_src;
	uint8_t last[256];
	size_t last_len, last_hdr;
};

static void
on_recv(const struct socks_addr *src, const uint8_t *p, size_t len, size_t hdr, void *arg)
{
	struct fx *f = arg;

	f->got++;
	f->last_src = *src;
	f->last_len = len < sizeof(f->last) ? len : sizeof(f->last);
	memcpy(f->last, p, f->last_len);
	f->last_hdr = hdr;
}

static uint16_t
local_port(int fd)
{
	union sockaddr_any a;

	assert_int_equal(net_local_addr(fd, &a), 0);
	return addr_port(&a);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct resolver_options ro = { .prefer_family = AF_INET,
		.hosts_path = "/dev/null",
		.resolv_conf_path = "/dev/null" };
	union sockaddr_any lo = unit_addr("127.0.0.1", 0);
	char url[64], err[128];

	log_init(LOG_LVL_ERROR);
	f->loop = loop_new();
	f->resolver = resolver_new(f->loop, &ro);
	parents_init(&f->parents);
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(f->lfd, &lo.sa, addr_len(&lo)), 0);
	assert_int_equal(listen(f->lfd, 8), 0);
	f->relay = net_udp_socket(&lo, 0, 0);
	assert_true(f->relay >= 0);
	f->relay_port = local_port(f->relay);
	snprintf(url, sizeof(url), "socks5://127.0.0.1:%u", local_port(f->lfd));
	assert_int_equal(upstream_parse(url, &f->up, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	udpparent_stop(f->p);
	(void)loop_run_once(f->loop, 0);
	resolver_free(f->resolver);
	loop_free(f->loop);
	parents_free(&f->parents);
	close(f->lfd);
	close(f->relay);
	free(f);
	return 0;
}

static void
start(struct fx *f, unsigned timeout_ms)
{
	struct udpparent_options o = {
		.loop = f->loop,
		.resolver = f->resolver,
		.parents = &f->parents,
		.down_after = 3,
		.down_for_s = 30,
		.timeout_ms = timeout_ms,
		.recv = on_recv,
		.arg = f,
	};

	f->p = udpparent_start(&o, &f->up);
	assert_non_null(f->p);
}

struct fd_wait {
	int fd;
	uint8_t *buf;
	size_t want, have;
};

static bool
pred_read(void *arg)
{
	struct fd_wait *w = arg;
	ssize_t n = recv(w->fd, w->buf + w->have, w->want - w->have, MSG_DONTWAIT);

	if (n > 0)
		w->have += (size_t)n;
	return w->have == w->want;
}

static void
expect(struct fx *f, int fd, const void *want, size_t n)
{
	uint8_t got[128];
	struct fd_wait w = { fd, got, n, 0 };

	(void)unit_run_until(f->loop, pred_read, &w, GUARD_MS);
	assert_int_equal(w.have, n);
	assert_memory_equal(got, want, n);
}

static int
accept_parent(struct fx *f)
{
	int fd = -1;

	for (int i = 0; i < 300 && (fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0; i++)
		assert_int_equal(loop_run_once(f->loop, 10), 0);
	assert_true(fd >= 0);
	return fd;
}

/* Plays the parent up to its reply: greeting, then UDP ASSOCIATE naming
 * the association's own UDP socket on 127.0.0.1. Returns the control fd. */
static int
parent_handshake(struct fx *f, const uint8_t *reply, size_t reply_len)
{
	static const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	uint8_t req[10];
	struct fd_wait w = { 0, req, sizeof(req), 0 };
	int fd = accept_parent(f);

	expect(f, fd, greet, sizeof(greet));
	assert_int_equal(write(fd, "\x05\x00", 2), 2);
	w.fd = fd;
	(void)unit_run_until(f->loop, pred_read, &w, GUARD_MS);
	assert_int_equal(w.have, sizeof(req));
	assert_memory_equal(req, ((uint8_t[]){ 0x05, 0x03, 0x00, 0x01, 127, 0, 0, 1 }), 8);
	assert_int_not_equal(req[8] << 8 | req[9], 0); /* a real port */
	assert_int_equal(write(fd, reply, reply_len), (ssize_t)reply_len);
	return fd;
}

static struct socks_addr
name_dst(const char *name, uint16_t port)
{
	struct socks_addr a = { .atyp = SOCKS_ATYP_DOMAIN, .port = port };

	a.name_len = (uint8_t)strlen(name);
	memcpy(a.name, name, a.name_len);
	return a;
}

static bool
pred_dgram(void *arg)
{
	struct fd_wait *w = arg;
	ssize_t n = recv(w->fd, w->buf, w->want, MSG_DONTWAIT);

	if (n >= 0)
		w->have = (size_t)n;
	return n >= 0;
}

/* The next datagram the fake relay gets must be exactly want. */
static void
relay_expect(struct fx *f, const void *want, size_t n)
{
	uint8_t got[512];
	struct fd_wait w = { f->relay, got, sizeof(got), (size_t)-1 };

	(void)unit_run_until(f->loop, pred_dgram, &w, GUARD_MS);
	assert_int_equal(w.have, n);
	assert_memory_equal(got, want, n);
}

static bool
pred_failed(void *arg)
{
	return udpparent_failed(arg);
}

static void
test_queued_until_ready_then_in_order_and_answers_come_up(void **state)
{
	struct fx *f = *state;
	struct socks_addr name = name_dst("example.net", 53), ip = name_dst("x", 0);
	uint8_t reply[10] = { 0x05, 0x00, 0x00, 0x01, 0, 0, 0, 0 }; /* BND 0.0.0.0 */
	uint8_t want_name[3 + 2 + 11 + 2 + 3] = { 0, 0, 0, 0x03, 11 };
	const uint8_t want_ip[] = { 0, 0, 0, 0x01, 192, 0, 2, 1, 0x01, 0xbb, 'b' };
	const uint8_t answer[] = { 0, 0, 0, 0x01, 192, 0, 2, 1, 0x01, 0xbb, 'o', 'k' };
	union sockaddr_any from;
	socklen_t flen = sizeof(from);
	uint8_t tmp[64];
	ssize_t n;
	int ctl;

	ip.atyp = SOCKS_ATYP_IPV4;
	memcpy(ip.ip.ipv4, (uint8_t[]){ 192, 0, 2, 1 }, 4);
	ip.port = 443;
	reply[8] = (uint8_t)(f->relay_port >> 8);
	reply[9] = (uint8_t)f->relay_port;
	memcpy(want_name + 5, "example.net", 11);
	memcpy(want_name + 16,
		"\x00\x35"
		"aaa",
		5);
	start(f, 5000);
	assert_true(udpparent_send(f->p, &name, (const uint8_t *)"aaa", 3));
	assert_true(udpparent_send(f->p, &ip, (const uint8_t *)"b", 1));
	ctl = parent_handshake(f, reply, sizeof(reply));
	relay_expect(f, want_name, sizeof(want_name));
	relay_expect(f, want_ip, sizeof(want_ip));
	/* Once up, a datagram goes at once. */
	assert_true(udpparent_send(f->p, &ip, (const uint8_t *)"b", 1));
	for (int i = 0;
		i < 300 && (n = recvfrom(f->relay, tmp, sizeof(tmp), 0, &from.sa, &flen)) < 0; i++)
		assert_int_equal(loop_run_once(f->loop, 10), 0);
	assert_int_equal(n, (ssize_t)sizeof(want_ip));
	/* An answer from the relay comes up with its source. */
	assert_int_equal(sendto(f->relay, answer, sizeof(answer), 0, &from.sa, flen),
		(ssize_t)sizeof(answer));
	for (int i = 0; i < 300 && f->got == 0; i++)
		assert_int_equal(loop_run_once(f->loop, 10), 0);
	assert_int_equal(f->got, 1);
	assert_int_equal(f->last_len, sizeof(answer));
	assert_int_equal(f->last_hdr, 10);
	assert_memory_equal(f->last, answer, sizeof(answer));
	assert_int_equal(f->last_src.port, 443);
	assert_int_equal(f->parents.head->sessions, 1);
	assert_int_equal(f->parents.head->failures, 0);
	/* The parent ends the association: failed, not the parent's fault. */
	close(ctl);
	assert_true(unit_run_until(f->loop, pred_failed, f->p, GUARD_MS));
	assert_false(udpparent_send(f->p, &ip, (const uint8_t *)"b", 1));
	assert_int_equal(f->parents.head->failures, 0);
}

static void
test_queue_is_bounded(void **state)
{
	struct fx *f = *state;
	struct socks_addr name = name_dst("example.net", 53);
	int i;

	start(f, 5000);
	for (i = 0; i < 16; i++)
		assert_true(udpparent_send(f->p, &name, (const uint8_t *)"x", 1));
	assert_false(udpparent_send(f->p, &name, (const uint8_t *)"x", 1));
}

static void
test_refused_connect_blames_the_parent(void **state)
{
	struct fx *f = *state;
	char url[64], err[128];

	close(f->lfd); /* nothing listens there now */
	f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(url, sizeof(url), "socks5://127.0.0.1:%u", f->up.port);
	assert_int_equal(upstream_parse(url, &f->up, err, sizeof(err)), 0);
	start(f, 5000);
	assert_true(unit_run_until(f->loop, pred_failed, f->p, GUARD_MS));
	assert_int_equal(f->parents.head->failures, 1);
	assert_int_equal(f->parents.head->sessions, 0);
}

static void
test_silent_parent_times_out_and_is_blamed(void **state)
{
	struct fx *f = *state;

	start(f, 200);
	assert_true(unit_run_until(f->loop, pred_failed, f->p, GUARD_MS));
	assert_int_equal(f->parents.head->failures, 1);
}

/* The parent refuses UDP ASSOCIATE (07): it answered, so it is not down. */
static void
test_refusing_reply_ends_without_blame(void **state)
{
	static const uint8_t no[] = { 0x05, 0x07, 0x00, 0x01, 0, 0, 0, 0, 0, 0 };
	struct fx *f = *state;
	int ctl;

	start(f, 5000);
	ctl = parent_handshake(f, no, sizeof(no));
	assert_true(unit_run_until(f->loop, pred_failed, f->p, GUARD_MS));
	assert_int_equal(f->parents.head->failures, 0);
	assert_int_equal(f->parents.head->sessions, 1);
	close(ctl);
}

#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_queued_until_ready_then_in_order_and_answers_come_up),
		T(test_queue_is_bounded),
		T(test_refused_connect_blames_the_parent),
		T(test_silent_parent_times_out_and_is_blamed),
		T(test_refusing_reply_ends_without_blame),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
