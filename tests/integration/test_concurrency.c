/*
 * Many sessions at once on the daemon's single event loop: 200 sessions
 * open together each echo 4 KiB, and a client stuck in the middle of its
 * greeting does not hold up 20 others (the handshake is a state machine,
 * not a blocking read). Sessions advance in phases so that all of them are
 * open at the same time.
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define MANY 200
#define FEW 20
#define ECHO_BYTES 4096

static int
remaining(uint64_t deadline)
{
	uint64_t now = it_now_ms();

	if (now >= deadline)
		return 0;
	return deadline - now < IT_IO_TIMEOUT_MS ? (int)(deadline - now) : IT_IO_TIMEOUT_MS;
}

static void
drop(int *fds, size_t i, char *err, size_t errlen, const char *fmt_what, int sys)
{
	if (err[0] == '\0')
		snprintf(err, errlen, "session %zu: %s%s%s", i, fmt_what, sys ? ": " : "",
			sys ? strerror(sys) : "");
	it_close(fds[i]);
	fds[i] = -1;
}

/* Runs n no-auth sessions to echo4 side by side, each echoing ECHO_BYTES,
 * all within deadline. Returns how many succeeded; the first failure is
 * described in err. */
static size_t
run_sessions(const struct it_fixture *fx, size_t n, uint64_t deadline, char *err, size_t errlen)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	uint8_t *out = malloc(ECHO_BYTES), *in = malloc(ECHO_BYTES);
	int *fds = calloc(n, sizeof(*fds));
	size_t ok = 0;

	err[0] = '\0';
	assert_non_null(out);
	assert_non_null(in);
	assert_non_null(fds);
	for (size_t i = 0; i < n; i++) {
		fds[i] = it_connect(AF_INET, fx->d.port);
		if (fds[i] < 0) {
			if (err[0] == '\0')
				snprintf(err, errlen, "session %zu: connect: %s", i,
					strerror(errno));
			continue;
		}
		if (it_send_all(fds[i], greet, sizeof(greet)) < 0)
			drop(fds, i, err, errlen, "send greeting", errno);
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t m[2];
		if (fds[i] < 0)
			continue;
		if (it_recv_exact(fds[i], m, 2, remaining(deadline)) != 2)
			drop(fds, i, err, errlen, "no method reply", errno);
		else if (m[0] != 0x05 || m[1] != 0x00)
			drop(fds, i, err, errlen, "method reply is not 05 00", 0);
		else if (it_send_all(fds[i], req, sizeof(req)) < 0)
			drop(fds, i, err, errlen, "send request", errno);
	}
	for (size_t i = 0; i < n; i++) {
		struct it_reply r;
		char why[200];
		uint64_t st = i + 1;
		if (fds[i] < 0)
			continue;
		if (it_read_reply(fds[i], &r, remaining(deadline), why, sizeof(why)) < 0) {
			drop(fds, i, err, errlen, why, 0);
			continue;
		}
		if (r.rep != 0x00) {
			drop(fds, i, err, errlen, "CONNECT reply REP is not 00", 0);
			continue;
		}
		it_fill(out, ECHO_BYTES, &st);
		if (it_send_all(fds[i], out, ECHO_BYTES) < 0)
			drop(fds, i, err, errlen, "send data", errno);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t st = i + 1;
		if (fds[i] < 0)
			continue;
		it_fill(out, ECHO_BYTES, &st);
		size_t got = it_recv_exact(fds[i], in, ECHO_BYTES, remaining(deadline));
		if (got != ECHO_BYTES || memcmp(in, out, ECHO_BYTES) != 0) {
			drop(fds, i, err, errlen,
				got != ECHO_BYTES ? "echo cut short" : "echo altered", 0);
			continue;
		}
		ok++;
		it_close(fds[i]);
		fds[i] = -1;
	}
	free(fds);
	free(in);
	free(out);
	return ok;
}

static void
test_200_concurrent_sessions_each_echo_4k(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct rlimit rl;
	char err[256];

	/* 200 client sockets here; the daemon holds 400 (it inherited the
	 * raised limit from main()). */
	it_raise_nofile();
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < MANY + 64)
		fail_msg("RLIMIT_NOFILE %llu is too low for %d sessions",
			(unsigned long long)rl.rlim_cur, MANY);
	size_t ok = run_sessions(fx, MANY, it_now_ms() + 20000, err, sizeof(err));
	if (ok != MANY)
		fail_msg("%zu of %d concurrent sessions succeeded; first failure: %s", ok, MANY,
			err);
}

static void
test_session_stuck_in_greeting_does_not_stall_others(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t ver[] = { 0x05 };
	const uint8_t rest[] = { 0x01, 0x00 };
	const uint8_t chosen[] = { 0x05, 0x00 };
	char err[256];
	int stuck = it_connect(AF_INET, fx->d.port);

	assert_true(stuck >= 0);
	it_send_bytes(stuck, ver, sizeof(ver)); /* first byte of a greeting, then silence */
	it_sleep_ms(50);
	size_t ok = run_sessions(fx, FEW, it_now_ms() + 10000, err, sizeof(err));
	if (ok != FEW)
		fail_msg("while one session sat in its greeting, %zu of %d others "
			 "succeeded; first failure: %s",
			ok, FEW, err);
	if (it_server_has(IT_CAP_PARTIAL_READS)) {
		/* The stuck one was waiting, not lost: it can still finish. */
		enum it_close c = it_wait_close(stuck, 0);
		if (c != IT_CLOSE_TIMEOUT)
			fail_msg("stuck session should still be open, got %s", it_close_str(c));
		it_send_bytes(stuck, rest, sizeof(rest));
		it_expect_bytes(stuck, chosen, sizeof(chosen));
	}
	it_close(stuck);
}

static int
setup(void **state)
{
	return it_fixture_start(state, "auth none\n", NULL, NULL);
}

int
it_run_concurrency_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_200_concurrent_sessions_each_echo_4k),
		IT_TEST(test_session_stuck_in_greeting_does_not_stall_others),
	};

	return cmocka_run_group_tests_name("concurrency (auth none)", tests, setup,
		it_fixture_stop);
}
