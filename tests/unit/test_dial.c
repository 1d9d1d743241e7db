/*
 * test_dial: outbound connects over an address list (issue 19, Happy
 * Eyeballs, RFC 8305), driven through a real loop on loopback. A black
 * hole is a listener with listen(fd, 0) whose one queue slot is taken:
 * Linux then drops SYNs, and a connect to it hangs as one to an address
 * that never answers. Checked: the families are interleaved (the first
 * address's first) and, with Happy Eyeballs off, the list is kept as it
 * is; a refused address starts the next at once; a black-holed first
 * address lets the next start after the delay while it goes on, and the
 * one that connects wins, the others closed (no descriptor left); every
 * address gets its attempt before the deadline, even more than the
 * attempts that may run at once and with a deadline shorter than the
 * delays; with Happy Eyeballs off the next address waits for the first
 * one's share of the deadline; the owner's watcher ends up holding the
 * connected fd, usable by a new owner; the route hook's refusals and its
 * socket settings; dial_stop closes everything and calls nobody.
 * Timing is asserted only as "not before the delay" and "long before
 * the deadline", with wide margins (machines are shared).
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "dial.h"
#include "loop.h"
#include "net.h"

#include "unit_util.h"

#define MAX_ADDRS 16
#define MAX_FILLERS 8
#define DEADLINE_MS 10000

struct fixture {
	struct loop *loop;
	struct watcher w; /* the owner's */
	struct dial d;
	uint16_t port;
	union sockaddr_any addrs[MAX_ADDRS];
	size_t naddrs;
	int fds[32]; /* listeners and fillers to close at the end */
	size_t nfds;
	/* the result */
	bool done;
	enum dial_result result;
	int err;
	uint64_t started_ms, done_ms;
	/* the route hook's view */
	union sockaddr_any offered[MAX_ADDRS];
	size_t noffered;
	const char *deny; /* addresses (text) the hook refuses */
	int tos;          /* the hook's ip-tos, -1: none */
	int first_family; /* the dial's option (0, AF_UNSPEC: the list's first) */
};

static bool
have_ipv6(void)
{
	union sockaddr_any a = unit_addr("::1", 0);
	int fd = net_udp_socket(&a, 0, 0);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static void
keep_fd(struct fixture *f, int fd)
{
	assert_true(fd >= 0);
	assert_true(f->nfds < sizeof(f->fds) / sizeof(f->fds[0]));
	f->fds[f->nfds++] = fd;
}

/* A free port that 127.0.0.1 and ::1 both have: the listeners and black
 * holes of a test all use it. */
static uint16_t
pick_port(void)
{
	for (int i = 0; i < 50; i++) {
		union sockaddr_any a = unit_addr("127.0.0.1", 0), b;
		int fd = net_listen_tcp(&a, 1), fd6;
		uint16_t port;

		assert_true(fd >= 0);
		assert_int_equal(net_local_addr(fd, &a), 0);
		port = addr_port(&a);
		close(fd);
		if (!have_ipv6())
			return port;
		b = unit_addr("::1", port);
		if ((fd6 = net_listen_tcp(&b, 1)) >= 0) {
			close(fd6);
			return port;
		}
	}
	fail_msg("no port free on both 127.0.0.1 and ::1");
	return 0;
}

/* Accepts connections to ip at the fixture's port (never accepted, but
 * the handshake completes). */
static void
serve(struct fixture *f, const char *ip)
{
	union sockaddr_any a = unit_addr(ip, f->port);

	keep_fd(f, net_listen_tcp(&a, 16));
}

/* A black hole at ip: listen(fd, 0) with its one slot filled, so SYNs to
 * it are dropped. Filled until a connect of ours hangs. */
static void
blackhole(struct fixture *f, const char *ip)
{
	union sockaddr_any a = unit_addr(ip, f->port);
	int lfd = net_listen_tcp(&a, 0);

	keep_fd(f, lfd);
	for (int i = 0; i < MAX_FILLERS; i++) {
		int fd = net_connect_start(&a, NULL, NULL);
		struct pollfd p = { .fd = fd, .events = POLLOUT };

		keep_fd(f, fd);
		if (poll(&p, 1, 100) == 0)
			return;
	}
	fail_msg("cannot fill the queue of listen(fd, 0) at %s", ip);
}

/* ip joins the list the dial gets (nothing listening there: refused). */
static void
add_addr(struct fixture *f, const char *ip)
{
	assert_true(f->naddrs < MAX_ADDRS);
	f->addrs[f->naddrs++] = unit_addr(ip, 0);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->loop = loop_new();
	assert_non_null(f->loop);
	f->port = pick_port();
	f->tos = -1;
	watcher_init(&f->w, -1, NULL, NULL);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	if (f->d.loop)
		dial_stop(&f->d);
	if (f->w.fd >= 0) {
		loop_unwatch(f->loop, &f->w);
		close(f->w.fd);
	}
	for (size_t i = 0; i < f->nfds; i++)
		close(f->fds[i]);
	loop_free(f->loop);
	free(f);
	return 0;
}

static void
on_done(enum dial_result r, int err, const union sockaddr_any *bnd, void *arg)
{
	struct fixture *f = arg;

	assert_false(f->done);
	f->done = true;
	f->result = r;
	f->err = err;
	f->done_ms = loop_now(f->loop);
	if (r == DIAL_CONNECTED)
		assert_non_null(bnd);
}

static bool
on_route(const union sockaddr_any *to, struct dial_route *route, void *arg)
{
	struct fixture *f = arg;
	char ip[ADDR_STRLEN];

	assert_int_equal(addr_port(to), f->port);
	assert_int_equal(route->from.sa.sa_family, AF_UNSPEC);
	assert_true(egress_is_empty(&route->egress));
	f->offered[f->noffered++] = *to;
	addr_ip_format(to, ip, sizeof(ip));
	if (f->deny && strstr(f->deny, ip))
		return false;
	route->egress.tos = f->tos;
	return true;
}

static bool
is_done(void *arg)
{
	return ((struct fixture *)arg)->done;
}

/* Starts a dial over the fixture's addresses (delay 0: one at a time) and
 * runs the loop until it reports (bounded by deadline_ms + 5 s). */
static void
run_dial(struct fixture *f, unsigned delay_ms, unsigned deadline_ms)
{
	struct dial_options opt = { on_route, f, delay_ms, f->first_family };
	enum dial_result r;

	loop_update_time(f->loop);
	f->started_ms = loop_now(f->loop);
	r = dial_start(&f->d, f->loop, &f->w, f->addrs, f->naddrs, f->port,
		f->started_ms + deadline_ms, &opt, on_done, f);
	if (r != DIAL_PENDING) {
		f->done = true;
		f->result = r;
		f->err = f->d.last_err;
		f->done_ms = f->started_ms;
		return;
	}
	if (!unit_run_until(f->loop, is_done, f, deadline_ms + 5000))
		fail_msg("the dial did not report within its deadline + 5 s");
}

static uint64_t
elapsed(const struct fixture *f)
{
	return f->done_ms - f->started_ms;
}

/* The connected fd is in the owner's watcher, connected to ip. */
static void
assert_connected_to(struct fixture *f, const char *ip)
{
	union sockaddr_any peer, want = unit_addr(ip, f->port);

	assert_true(f->done);
	if (f->result != DIAL_CONNECTED)
		fail_msg("dial result %d (%s), want CONNECTED to %s", f->result, strerror(f->err),
			ip);
	assert_true(f->w.fd >= 0);
	assert_int_equal(net_peer_addr(f->w.fd, &peer), 0);
	addr_unmap(&peer);
	assert_true(addr_equal(&peer, &want));
	assert_true(addr_ip_equal(&f->addrs[f->d.connected], &want));
}

static void
assert_offered(const struct fixture *f, const char *const *ips, size_t n)
{
	char got[ADDR_STRLEN];

	assert_int_equal(f->noffered, n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(addr_ip_format(&f->offered[i], got, sizeof(got)), ips[i]) != 0)
			fail_msg("attempt %zu went to %s, want %s", i, got, ips[i]);
}

static void
test_one_address_connects(void **state)
{
	struct fixture *f = *state;

	serve(f, "127.0.0.1");
	add_addr(f, "127.0.0.1");
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_connected_to(f, "127.0.0.1");
	/* The only attempt used the owner's watcher: still registered. */
	assert_true(f->w.registered);
}

static void
test_families_interleave_first_family_first(void **state)
{
	static const char *const want[] = { "::1", "127.0.0.2", "::1", "127.0.0.3", "127.0.0.4" };
	struct fixture *f = *state;

	if (!have_ipv6())
		skip();
	/* Nothing listens: every attempt is refused at once. */
	add_addr(f, "::1");
	add_addr(f, "::1");
	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.3");
	add_addr(f, "127.0.0.4");
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_int_equal(f->result, DIAL_FAILED);
	assert_int_equal(f->err, ECONNREFUSED);
	assert_offered(f, want, 5);
	/* Refusals start the next at once: far less than one delay each. */
	assert_true(elapsed(f) < 4 * DIAL_DEFAULT_DELAY_MS);
}

/* RFC 8305 §4: the family the owner prefers starts, wherever the
 * resolver put its addresses; a family the list lacks changes nothing. */
static void
test_first_family_starts_even_when_listed_second(void **state)
{
	static const char *const want6[] = { "::1", "127.0.0.2", "::1", "127.0.0.3" };
	static const char *const want4[] = { "127.0.0.2", "127.0.0.3" };
	struct fixture *f = *state;

	if (!have_ipv6())
		skip();
	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.3");
	add_addr(f, "::1");
	add_addr(f, "::1");
	f->first_family = AF_INET6;
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_int_equal(f->result, DIAL_FAILED);
	assert_offered(f, want6, 4);
	/* Only IPv4 addresses: they go in their order. */
	f->naddrs = 2;
	f->noffered = 0;
	f->done = false;
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_int_equal(f->result, DIAL_FAILED);
	assert_offered(f, want4, 2);
}

static void
test_without_happy_eyeballs_the_order_is_kept(void **state)
{
	static const char *const want[] = { "127.0.0.2", "127.0.0.3", "::1", "::1" };
	struct fixture *f = *state;

	if (!have_ipv6())
		skip();
	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.3");
	add_addr(f, "::1");
	add_addr(f, "::1");
	run_dial(f, 0, DEADLINE_MS);
	assert_int_equal(f->result, DIAL_FAILED);
	assert_offered(f, want, 4);
}

static void
test_refused_first_address_falls_back_at_once(void **state)
{
	struct fixture *f = *state;

	serve(f, "127.0.0.1");
	add_addr(f, "127.0.0.2"); /* nothing there: refused */
	add_addr(f, "127.0.0.1");
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_connected_to(f, "127.0.0.1");
	assert_true(elapsed(f) < DIAL_DEFAULT_DELAY_MS);
}

/* The case: the preferred family black-holes, the other answers
 * soon after the delay and long before the deadline; the black-holed
 * attempt is closed, and its fd moved nowhere. */
static void
test_blackholed_ipv6_lets_ipv4_win_after_the_delay(void **state)
{
	struct fixture *f = *state;
	int before;

	if (!have_ipv6())
		skip();
	blackhole(f, "::1");
	serve(f, "127.0.0.1");
	add_addr(f, "::1");
	add_addr(f, "127.0.0.1");
	before = count_fds();
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_connected_to(f, "127.0.0.1");
	print_message("[   INFO   ] IPv4 connected %llu ms after the start (delay %d ms)\n",
		(unsigned long long)elapsed(f), DIAL_DEFAULT_DELAY_MS);
	assert_true(elapsed(f) >= DIAL_DEFAULT_DELAY_MS);
	assert_true(elapsed(f) < DEADLINE_MS / 2);
	assert_offered(f, (const char *const[]){ "::1", "127.0.0.1" }, 2);
	/* Only the winner is left open. */
	assert_int_equal(count_fds(), before + 1);
}

/* The winner came from an attempt of the dial's own: the owner's watcher
 * holds its fd, not registered yet, and works for a new owner. */
static bool
got_event(void *arg)
{
	return *(bool *)arg;
}

static void
on_readable(struct loop *loop, unsigned events, void *arg)
{
	*(bool *)arg = true;
}

static void
test_winner_moves_into_the_owners_watcher(void **state)
{
	struct fixture *f = *state;
	union sockaddr_any peer;
	bool readable = false;
	int lfd, afd = -1;

	if (!have_ipv6())
		skip();
	blackhole(f, "::1");
	serve(f, "127.0.0.1");
	lfd = f->fds[f->nfds - 1];
	add_addr(f, "::1");
	add_addr(f, "127.0.0.1");
	run_dial(f, 50, DEADLINE_MS);
	assert_connected_to(f, "127.0.0.1");
	assert_false(f->w.registered);
	watcher_set_callback(&f->w, on_readable, &readable);
	assert_int_equal(loop_watch(f->loop, &f->w, LOOP_READ), 0);
	for (int i = 0; i < 200 && (afd = net_accept(lfd, &peer)) < 0; i++)
		usleep(5000);
	assert_true(afd >= 0);
	assert_int_equal(write(afd, "x", 1), 1);
	assert_true(unit_run_until(f->loop, got_event, &readable, 5000));
	close(afd);
}

static void
test_happy_eyeballs_off_waits_for_the_first_share(void **state)
{
	struct fixture *f = *state;
	const unsigned deadline = 2000;

	if (!have_ipv6())
		skip();
	blackhole(f, "::1");
	serve(f, "127.0.0.1");
	add_addr(f, "::1");
	add_addr(f, "127.0.0.1");
	run_dial(f, 0, deadline);
	assert_connected_to(f, "127.0.0.1");
	print_message("[   INFO   ] one at a time: IPv4 connected after %llu ms (share %u ms)\n",
		(unsigned long long)elapsed(f), deadline / 2);
	/* The first address had half the deadline to itself. */
	assert_true(elapsed(f) >= deadline / 2);
}

/* More black holes than attempts may run at once, and the good address
 * last: every address is still tried, the oldest attempts make room. */
static void
test_every_address_is_tried_past_the_inflight_limit(void **state)
{
	static const char *const holes[] = { "127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6",
		"127.0.0.7" };
	struct fixture *f = *state;
	int before;

	for (size_t i = 0; i < sizeof(holes) / sizeof(holes[0]); i++) {
		blackhole(f, holes[i]);
		add_addr(f, holes[i]);
	}
	serve(f, "127.0.0.3");
	add_addr(f, "127.0.0.3");
	before = count_fds();
	run_dial(f, 50, DEADLINE_MS);
	assert_connected_to(f, "127.0.0.3");
	assert_int_equal(f->noffered, 6);
	assert_true(elapsed(f) >= 5 * 50);
	assert_true(elapsed(f) < DEADLINE_MS / 2);
	assert_int_equal(count_fds(), before + 1);
}

/* A deadline shorter than the delays: they shrink so that the last
 * address starts in time, and it connects before the deadline. */
static void
test_short_deadline_still_reaches_the_last_address(void **state)
{
	static const char *const holes[] = { "127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6",
		"127.0.0.7", "127.0.0.8", "127.0.0.9" };
	struct fixture *f = *state;
	const unsigned deadline = 1000;

	for (size_t i = 0; i < sizeof(holes) / sizeof(holes[0]); i++) {
		blackhole(f, holes[i]);
		add_addr(f, holes[i]);
	}
	serve(f, "127.0.0.3");
	add_addr(f, "127.0.0.3");
	run_dial(f, 2000, deadline);
	assert_connected_to(f, "127.0.0.3");
	assert_true(elapsed(f) < deadline);
}

/* Nothing answers at all: the dial ends at its deadline with ETIMEDOUT. */
static void
test_all_blackholed_fails_at_the_deadline(void **state)
{
	struct fixture *f = *state;
	int before;

	blackhole(f, "127.0.0.2");
	blackhole(f, "127.0.0.3");
	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.3");
	before = count_fds();
	run_dial(f, DIAL_DEFAULT_DELAY_MS, 800);
	assert_int_equal(f->result, DIAL_FAILED);
	assert_int_equal(f->err, ETIMEDOUT);
	assert_true(elapsed(f) >= 800);
	assert_int_equal(count_fds(), before);
	assert_int_equal(f->w.fd, -1);
}

static void
test_route_hook_refusals_and_settings(void **state)
{
	struct fixture *f = *state;
	int tos = -1;
	socklen_t len = sizeof(tos);

	serve(f, "127.0.0.1");
	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.1");
	f->deny = "127.0.0.2";
	f->tos = 32;
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_connected_to(f, "127.0.0.1");
	assert_int_equal(getsockopt(f->w.fd, IPPROTO_IP, IP_TOS, &tos, &len), 0);
	assert_int_equal(tos, 32);
	assert_int_equal(f->d.route.egress.tos, 32);
}

static void
test_route_hook_refusing_all_is_denied_at_once(void **state)
{
	struct fixture *f = *state;

	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.1");
	f->deny = "127.0.0.2 127.0.0.1";
	run_dial(f, DIAL_DEFAULT_DELAY_MS, DEADLINE_MS);
	assert_int_equal(f->result, DIAL_DENIED);
	assert_int_equal(f->noffered, 2);
}

static void
test_stop_closes_every_attempt_and_calls_nobody(void **state)
{
	struct fixture *f = *state;
	struct dial_options opt = { on_route, f, 20, AF_UNSPEC };
	int before;

	blackhole(f, "127.0.0.2");
	blackhole(f, "127.0.0.3");
	add_addr(f, "127.0.0.2");
	add_addr(f, "127.0.0.3");
	before = count_fds();
	loop_update_time(f->loop);
	assert_int_equal(dial_start(&f->d, f->loop, &f->w, f->addrs, f->naddrs, f->port,
				 loop_now(f->loop) + DEADLINE_MS, &opt, on_done, f),
		DIAL_PENDING);
	unit_run_for(f->loop, 200, 5);
	assert_int_equal(f->noffered, 2);
	assert_int_equal(count_fds(), before + 2);
	dial_stop(&f->d);
	dial_stop(&f->d);
	assert_int_equal(count_fds(), before);
	unit_run_for(f->loop, 100, 5);
	assert_false(f->done);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_one_address_connects),
		T(test_families_interleave_first_family_first),
		T(test_first_family_starts_even_when_listed_second),
		T(test_without_happy_eyeballs_the_order_is_kept),
		T(test_refused_first_address_falls_back_at_once),
		T(test_blackholed_ipv6_lets_ipv4_win_after_the_delay),
		T(test_winner_moves_into_the_owners_watcher),
		T(test_happy_eyeballs_off_waits_for_the_first_share),
		T(test_every_address_is_tried_past_the_inflight_limit),
		T(test_short_deadline_still_reaches_the_last_address),
		T(test_all_blackholed_fails_at_the_deadline),
		T(test_route_hook_refusals_and_settings),
		T(test_route_hook_refusing_all_is_denied_at_once),
		T(test_stop_closes_every_attempt_and_calls_nobody),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
