/*
 * Fault injection (issue 9): what the network does to the daemon that a
 * well-behaved client and target never do. A target that resets in the
 * middle of a transfer, a client that does, a target that stops reading
 * (the daemon must push back on the client, not buffer), a target that
 * never accepts (REP 04 at "timeout connect 1"), a thousand clients that
 * send garbage and vanish, two thousand sessions opened and closed.
 *
 * After each: the daemon's descriptor count (/proc/PID/fd) returns to what
 * it was before (bounded polling), memory (VmRSS) stays where it belongs,
 * and the group teardown runs a normal session. The misbehaving target is
 * a listening socket in this process: accepting, reading and resetting are
 * then under the test's control, one step at a time.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IT_FAULT_SETTLE_MS 5000
#define IT_FAULT_MAX_TRACKED 512

/* Target-side descriptors (and listeners) this file opened: closed by the
 * test teardown when a test fails half-way, so that the next test's
 * baseline does not count sessions held open by our leftovers. */
static int it_fault_fds[IT_FAULT_MAX_TRACKED];
static size_t it_fault_nfds;

static void
it_fault_track(int fd)
{
	if (fd >= 0 && it_fault_nfds < IT_FAULT_MAX_TRACKED)
		it_fault_fds[it_fault_nfds++] = fd;
}

static void
it_fault_close(int fd)
{
	for (size_t i = 0; i < it_fault_nfds; i++) {
		if (it_fault_fds[i] == fd) {
			it_fault_fds[i] = it_fault_fds[--it_fault_nfds];
			break;
		}
	}
	close(fd);
}

static void
it_fault_close_all(void)
{
	while (it_fault_nfds > 0)
		close(it_fault_fds[--it_fault_nfds]);
}

/* ---- the daemon's resources ------------------------------------------- */

static unsigned
it_fault_fd_count(pid_t pid)
{
	char path[64];
	unsigned n = 0;
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (dir == NULL)
		fail_msg("cannot read %s: %s (daemon gone?)", path, strerror(errno));
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* VmRSS of pid in KiB. */
static long
it_fault_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot read %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	if (kb < 0)
		fail_msg("no VmRSS in %s", path);
	return kb;
}

/* Whether the daemon runs under AddressSanitizer or valgrind (make
 * memcheck): their allocators keep freed memory resident, so RSS says
 * nothing about leaks there (both check leaks themselves). */
static bool
it_fault_daemon_has_asan(pid_t pid)
{
	char path[64], line[512];
	bool asan = false;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	while (!asan && fgets(line, sizeof(line), f) != NULL)
		asan = strstr(line, "libasan") != NULL || strstr(line, "vgpreload") != NULL;
	fclose(f);
	return asan;
}

/* The idle descriptor count: the lowest of a few samples, so that a
 * session the previous check is still closing is not counted in. */
static unsigned
it_fault_baseline(pid_t pid)
{
	unsigned low = it_fault_fd_count(pid);

	for (int i = 0; i < 5; i++) {
		it_sleep_ms(20);
		unsigned n = it_fault_fd_count(pid);
		if (n < low)
			low = n;
	}
	return low;
}

/* Waits (bounded) until the daemon holds no more descriptors than baseline;
 * fails the test with the count otherwise. */
#define it_fault_expect_fds(fx, baseline, what) it_fault_expect_fds_at(fx, baseline, what, __LINE__)

static void
it_fault_expect_fds_at(struct it_fixture *fx, unsigned baseline, const char *what, int line)
{
	uint64_t t0 = it_now_ms();
	unsigned n;

	while ((n = it_fault_fd_count(fx->d.pid)) > baseline) {
		if (it_now_ms() - t0 > IT_FAULT_SETTLE_MS) {
			fx->d.keep = true;
			fail_msg("line %d: %s: daemon holds %u descriptors %d ms later, "
				 "baseline %u",
				line, what, n, IT_FAULT_SETTLE_MS, baseline);
		}
		it_sleep_ms(20);
	}
	print_message("[   INFO   ] %s: descriptors back to %u after %llu ms\n", what, n,
		(unsigned long long)(it_now_ms() - t0));
}

/* ---- a target under the test's control ---------------------------------- */

/* Listens on 127.0.0.1 at an ephemeral port with backlog. */
static int
it_fault_listen(int backlog, struct it_target *t)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, len) < 0 || listen(fd, backlog) < 0 ||
		getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
		fail_msg("target listener: %s", strerror(errno));
	it_fault_track(fd);
	t->pid = 0;
	t->family = AF_INET;
	t->port = ntohs(sin.sin_port);
	return fd;
}

/* The daemon's connection to our listener, within timeout_ms. */
static int
it_fault_accept(int lfd, int timeout_ms)
{
	struct pollfd pfd = { .fd = lfd, .events = POLLIN };

	if (poll(&pfd, 1, timeout_ms) != 1)
		fail_msg("the daemon did not connect to the target within %d ms", timeout_ms);
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		fail_msg("accept: %s", strerror(errno));
	it_fault_track(fd);
	return fd;
}

/* close() that sends RST instead of FIN. */
static void
it_fault_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Sends up to n bytes of the seed stream without blocking; what was really
 * sent is added to sent (when not NULL). Returns how many went: fewer than
 * n when the socket's buffer filled up. */
static size_t
it_fault_send_some(int fd, size_t n, uint64_t *st, struct it_hash *sent)
{
	uint8_t buf[65536];
	size_t done = 0;

	while (done < n) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		it_fill(buf, k, st);
		ssize_t w;
		do
			w = send(fd, buf, k, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (w < 0 && errno == EINTR);
		if (w <= 0)
			break;
		if (sent != NULL)
			it_hash_update(sent, buf, (size_t)w);
		done += (size_t)w;
		if ((size_t)w < k)
			break;
	}
	return done;
}

/* Reads whatever arrives until EOF or reset, within timeout_ms. Returns
 * true when the connection ended, false when still open at the deadline. */
static bool
it_fault_drain_to_end(int fd, int timeout_ms)
{
	uint64_t deadline = it_now_ms() + (uint64_t)timeout_ms;
	uint8_t buf[65536];

	for (;;) {
		uint64_t now = it_now_ms();
		if (now >= deadline)
			return false;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0)
			return true;
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return true; /* ECONNRESET */
	}
}

/* ---- tests -------------------------------------------------------------- */

static void
test_target_reset_mid_transfer_ends_client_connection(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct it_target t;
	uint8_t down[65536], got[65536];
	uint64_t st = 90, up_st = 91;

	unsigned base = it_fault_baseline(fx->d.pid);
	int lfd = it_fault_listen(16, &t);
	int c = it_open_tunnel(fx, AF_INET, &t);
	int s = it_fault_accept(lfd, 2000);
	/* Data both ways, and more on the way to the target when it resets. */
	it_fill(down, sizeof(down), &st);
	assert_int_equal(it_send_all(s, down, sizeof(down)), 0);
	assert_int_equal(it_recv_exact(c, got, sizeof(got), IT_IO_TIMEOUT_MS), sizeof(got));
	assert_memory_equal(got, down, sizeof(got));
	size_t up = it_fault_send_some(c, 512u << 10, &up_st, NULL);
	assert_true(up > 16384);
	assert_int_equal(it_recv_exact(s, got, 16384, IT_IO_TIMEOUT_MS), 16384);
	it_fault_reset(s);
	it_fault_close(s);
	/* The client's connection ends: EOF or RST, and nothing after. */
	(void)it_fault_send_some(c, 65536, &up_st, NULL); /* may fail: it is going away */
	enum it_close how = it_wait_close(c, 3000);
	if (how != IT_CLOSE_EOF && how != IT_CLOSE_RST)
		fail_msg("after the target reset, the client connection: %s", it_close_str(how));
	it_close(c);
	it_fault_close(lfd);
	it_fault_expect_fds(fx, base, "target reset");
}

static void
test_client_reset_mid_transfer_ends_target_connection(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct it_target t;
	uint64_t st = 92, up_st = 93;
	uint8_t got[16384];

	unsigned base = it_fault_baseline(fx->d.pid);
	int lfd = it_fault_listen(16, &t);
	int c = it_open_tunnel(fx, AF_INET, &t);
	int s = it_fault_accept(lfd, 2000);
	/* The target fills everything towards the client, who reads a little,
	 * sends a little, and resets with data unread. */
	size_t down = it_fault_send_some(s, 8u << 20, &st, NULL);
	assert_true(down > 65536);
	assert_int_equal(it_recv_exact(c, got, sizeof(got), IT_IO_TIMEOUT_MS), sizeof(got));
	assert_true(it_fault_send_some(c, 65536, &up_st, NULL) > 0);
	it_fault_reset(c);
	it_close(c);
	if (!it_fault_drain_to_end(s, 3000))
		fail_msg("the daemon kept the target connection open 3 s after the client "
			 "reset");
	it_fault_close(s);
	it_fault_close(lfd);
	it_fault_expect_fds(fx, base, "client reset");
}

static void
test_target_that_never_reads_pushes_back_on_client_not_into_memory(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const size_t cap = 64u << 20;
	struct it_target t;
	uint8_t buf[65536];
	uint64_t st = 94;
	size_t pushed = 0;
	bool blocked = false;

	unsigned base = it_fault_baseline(fx->d.pid);
	int lfd = it_fault_listen(16, &t);
	int c = it_open_tunnel(fx, AF_INET, &t);
	int s = it_fault_accept(lfd, 2000);
	/* One round trip first, so that the session's buffers exist and count
	 * in the baseline. */
	it_fill(buf, sizeof(buf), &st);
	it_send_bytes(c, buf, sizeof(buf));
	assert_int_equal(it_recv_exact(s, buf, sizeof(buf), IT_IO_TIMEOUT_MS), sizeof(buf));
	long rss0 = it_fault_rss_kb(fx->d.pid);

	/* From now on the target reads nothing. The client pushes until its
	 * send has been blocked for a second (every buffer on the way full)
	 * or it has pushed cap bytes. */
	struct it_hash sent;
	uint64_t deadline = it_now_ms() + 20000;
	it_hash_init(&sent);
	while (pushed < cap && it_now_ms() < deadline) {
		size_t n = it_fault_send_some(c, 1u << 20, &st, &sent);
		pushed += n;
		if (n < (1u << 20)) {
			struct pollfd pfd = { .fd = c, .events = POLLOUT };
			if (poll(&pfd, 1, 1000) == 0) {
				blocked = true;
				break;
			}
		}
	}
	long rss1 = it_fault_rss_kb(fx->d.pid);
	print_message("[   INFO   ] client pushed %zu KiB before blocking; daemon VmRSS "
		      "%ld -> %ld KiB\n",
		pushed >> 10, rss0, rss1);
	if (!blocked)
		fail_msg("client pushed %zu MiB to a target that reads nothing without its "
			 "send ever blocking: the daemon is buffering",
			pushed >> 20);
	if (rss1 - rss0 >= 2048)
		fail_msg("daemon VmRSS grew by %ld KiB while the target read nothing "
			 "(want < 2048)",
			rss1 - rss0);

	/* Nothing was lost either: once the target reads, every pushed byte
	 * arrives in order. */
	struct it_hash got;
	size_t left = pushed;
	it_hash_init(&got);
	while (left > 0) {
		size_t k = left < sizeof(buf) ? left : sizeof(buf);
		size_t r = it_recv_exact(s, buf, k, IT_IO_TIMEOUT_MS);
		if (r != k)
			fail_msg("target got %zu of %zu pushed bytes", pushed - left + r, pushed);
		it_hash_update(&got, buf, k);
		left -= k;
	}
	if (got.h != sent.h)
		fail_msg("the %zu bytes held back arrived altered", pushed);
	it_close(c);
	if (!it_fault_drain_to_end(s, 3000))
		fail_msg("target connection not closed after the client closed");
	it_fault_close(s);
	it_fault_close(lfd);
	it_fault_expect_fds(fx, base, "backpressure");
}

static void
test_target_that_never_accepts_gets_rep_04_after_connect_timeout(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct it_target t;
	int fillers[8];
	size_t nfill = 0;
	bool full = false;

	it_require(IT_CAP_TIMEOUTS);
	unsigned base = it_fault_baseline(fx->d.pid);
	/* listen(fd, 0) holds one connection nobody accepts; after that Linux
	 * drops SYNs, so a connect hangs like one to a black hole. Fill it
	 * until a connect of ours hangs. */
	int lfd = it_fault_listen(0, &t);
	while (nfill < 8 && !full) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(t.port) };
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		it_fault_track(fd);
		fillers[nfill++] = fd;
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			continue;
		assert_int_equal(errno, EINPROGRESS);
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		full = poll(&pfd, 1, 300) == 0;
	}
	if (!full)
		fail_msg("cannot fill the backlog of listen(fd, 0): %zu connects completed", nfill);

	const uint8_t greet[] = { 0x05, 0x01, 0x00 }, chosen[] = { 0x05, 0x00 };
	uint8_t req[32] = { 0x05, 0x01, 0x00 };
	size_t n = 3 + it_target_addr(&t, req + 3);
	struct it_reply r;
	char err[256];
	int c = it_connect(AF_INET, fx->d.port);
	assert_true(c >= 0);
	it_send_bytes(c, greet, sizeof(greet));
	it_expect_bytes(c, chosen, sizeof(chosen));
	uint64_t t0 = it_now_ms();
	it_send_bytes(c, req, n);
	if (it_read_reply(c, &r, 5000, err, sizeof(err)) < 0)
		fail_msg("no reply within 5 s to a CONNECT that cannot complete: %s", err);
	uint64_t elapsed = it_now_ms() - t0;
	print_message("[   INFO   ] REP %02x after %llu ms (timeout connect 1)\n", r.rep,
		(unsigned long long)elapsed);
	if (r.rep != 0x04)
		fail_msg("REP %02x for a connect that timed out, want 04", r.rep);
	assert_in_range(elapsed, 800, 3000);
	it_expect_close(c, 2000);
	it_close(c);
	for (size_t i = 0; i < nfill; i++)
		it_fault_close(fillers[i]);
	it_fault_close(lfd);
	it_fault_expect_fds(fx, base, "connect timeout");
}

static void
test_1000_clients_sending_garbage_then_vanishing(void **state)
{
	struct it_fixture *fx = it_fx(state);
	enum {
		BATCH = 100,
		TOTAL = 1000
	};
	int fds[BATCH];
	uint64_t st = 96;

	unsigned base = it_fault_baseline(fx->d.pid);
	for (int done = 0; done < TOTAL; done += BATCH) {
		for (int i = 0; i < BATCH; i++) {
			uint8_t junk[300];
			size_t len = 1 + (size_t)(done + i) % sizeof(junk);
			fds[i] = it_connect(AF_INET, fx->d.port);
			if (fds[i] < 0)
				fail_msg("client %d: connect: %s", done + i, strerror(errno));
			it_fill(junk, len, &st);
			/* Garbage of every kind: random, a SOCKS5 greeting gone
			 * wrong after its first byte, a SOCKS4 one, text. */
			switch (i % 4) {
			case 0:
				junk[0] = 0x05;
				break;
			case 1:
				junk[0] = 0x04;
				break;
			case 2:
				memcpy(junk, "GET / HTTP/1.1\r\n", len < 16 ? len : 16);
				break;
			default:
				break;
			}
			(void)it_send_all(fds[i], junk, len); /* it may have closed on us */
		}
		/* Vanish: half of them with a reset, half with a FIN. */
		for (int i = 0; i < BATCH; i++) {
			if (i % 2 == 0)
				it_fault_reset(fds[i]);
			it_close(fds[i]);
		}
		if (!it_daemon_running(&fx->d))
			fail_msg("daemon died after %d garbage clients", done + BATCH);
	}
	it_fault_expect_fds(fx, base, "1000 garbage clients");
}

/* One batch of n sessions through the daemon to our listener lfd, open at
 * the same time: greeting and CONNECT pipelined, 32 bytes each way, then
 * closed, by the client for even ones and by the target for odd ones. */
static void
it_fault_session_batch(struct it_fixture *fx, int lfd, const struct it_target *t, int n, int *cfd,
	int *sfd)
{
	uint8_t req[32] = { 0x05, 0x01, 0x00, 0x05, 0x01, 0x00 };
	size_t reqlen = 6 + it_target_addr(t, req + 6);
	const uint8_t chosen[] = { 0x05, 0x00 };
	uint8_t m[32];

	for (int i = 0; i < n; i++) {
		cfd[i] = it_connect(AF_INET, fx->d.port);
		if (cfd[i] < 0)
			fail_msg("session %d: connect: %s", i, strerror(errno));
		it_send_bytes(cfd[i], req, reqlen);
	}
	for (int i = 0; i < n; i++) {
		struct it_reply r;
		char err[256];
		it_expect_bytes(cfd[i], chosen, sizeof(chosen));
		if (it_read_reply(cfd[i], &r, IT_IO_TIMEOUT_MS, err, sizeof(err)) < 0)
			fail_msg("session %d: %s", i, err);
		if (r.rep != 0x00)
			fail_msg("session %d: REP %02x", i, r.rep);
		sfd[i] = it_fault_accept(lfd, IT_IO_TIMEOUT_MS);
	}
	/* Accept order need not match connect order: each side only checks
	 * that 32 bytes cross. */
	memset(m, 0xa5, sizeof(m));
	for (int i = 0; i < n; i++) {
		it_send_bytes(cfd[i], m, sizeof(m));
		it_send_bytes(sfd[i], m, sizeof(m));
	}
	for (int i = 0; i < n; i++) {
		if (it_recv_exact(sfd[i], m, sizeof(m), IT_IO_TIMEOUT_MS) != sizeof(m) ||
			it_recv_exact(cfd[i], m, sizeof(m), IT_IO_TIMEOUT_MS) != sizeof(m))
			fail_msg("session %d: 32 bytes did not cross", i);
	}
	for (int i = 0; i < n; i++) {
		if (i % 2 == 0) {
			it_close(cfd[i]);
			it_fault_close(sfd[i]);
		} else {
			it_fault_close(sfd[i]);
			it_close(cfd[i]);
		}
	}
}

static void
test_2000_sessions_opened_and_closed_leave_fds_and_memory_at_baseline(void **state)
{
	struct it_fixture *fx = it_fx(state);
	enum {
		BATCH = 100,
		TOTAL = 2000
	};
	int cfd[BATCH], sfd[BATCH];
	struct it_target t;

	it_require(IT_CAP_PARTIAL_READS); /* pipelined greeting + request */
	int lfd = it_fault_listen(BATCH * 2, &t);
	/* A first batch brings the heap and the buffer pool to their size for
	 * BATCH sessions at once: that is the baseline. */
	it_fault_session_batch(fx, lfd, &t, BATCH, cfd, sfd);
	unsigned base = it_fault_baseline(fx->d.pid);
	long rss0 = it_fault_rss_kb(fx->d.pid);
	uint64_t t0 = it_now_ms();
	for (int done = 0; done < TOTAL; done += BATCH)
		it_fault_session_batch(fx, lfd, &t, BATCH, cfd, sfd);
	uint64_t ms = it_now_ms() - t0;
	it_fault_close(lfd);
	it_fault_expect_fds(fx, base, "2000 sessions");
	long rss1 = it_fault_rss_kb(fx->d.pid);
	print_message("[   INFO   ] %d sessions in %llu ms; daemon VmRSS %ld -> %ld KiB\n", TOTAL,
		(unsigned long long)ms, rss0, rss1);
	if (it_fault_daemon_has_asan(fx->d.pid)) {
		print_message("[   INFO   ] AddressSanitizer or valgrind: freed memory stays "
			      "resident, RSS not checked (they check leaks themselves)\n");
		return;
	}
	/* 2000 sessions leaking 512 bytes each would be 1000 KiB. */
	if (rss1 - rss0 >= 1024)
		fail_msg("daemon VmRSS grew by %ld KiB over %d sessions (want < 1024)", rss1 - rss0,
			TOTAL);
}

static int
setup(void **state)
{
	return it_fixture_start(state, "auth none\ntimeout connect 1\n", NULL, NULL);
}

/* Our target-side leftovers first (they would hold sessions open), then
 * the normal session every group's tests end with. */
static int
it_fault_teardown(void **state)
{
	it_fault_close_all();
	return it_check_alive(state);
}

int
it_run_fault_tests(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_target_reset_mid_transfer_ends_client_connection,
			it_fault_teardown),
		cmocka_unit_test_teardown(test_client_reset_mid_transfer_ends_target_connection,
			it_fault_teardown),
		cmocka_unit_test_teardown(
			test_target_that_never_reads_pushes_back_on_client_not_into_memory,
			it_fault_teardown),
		cmocka_unit_test_teardown(
			test_target_that_never_accepts_gets_rep_04_after_connect_timeout,
			it_fault_teardown),
		cmocka_unit_test_teardown(test_1000_clients_sending_garbage_then_vanishing,
			it_fault_teardown),
		cmocka_unit_test_teardown(
			test_2000_sessions_opened_and_closed_leave_fds_and_memory_at_baseline,
			it_fault_teardown),
	};

	return cmocka_run_group_tests_name("faults (auth none, timeout connect 1)", tests, setup,
		it_fixture_stop);
}
