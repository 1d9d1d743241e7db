/*
 * What an attacker could try against a daemon exposed with passwords
 * (issue 17): each test here failed against the daemon before its fix.
 * Greeting and BIND edge cases; the built-in protection of the proxy host;
 * client strings that must not forge log lines; password checks that
 * neither stall other sessions nor lock out valid users.
 */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* How many lines of the daemon's log contain needle. */
static unsigned
log_count(const struct it_daemon *d, const char *needle)
{
	FILE *f = fopen(d->log, "r");
	char line[4096];
	unsigned n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

/* ---- greeting and BIND ---------------------------------------------------- */

/* NMETHODS 0 offers no method: the daemon answers X'FF' (no acceptable
 * method) and closes, instead of closing without a word. */
static void
test_greeting_without_methods_gets_ff_then_close(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x00 }, none[] = { 0x05, 0xFF };
	enum it_close how;
	int fd = it_connect(AF_INET, fx->d.port);

	assert_true(fd >= 0);
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, none, sizeof(none));
	how = it_wait_close(fd, IT_IO_TIMEOUT_MS);
	if (how != IT_CLOSE_EOF)
		fail_msg("after 05 FF: %s, want EOF", it_close_str(how));
	it_close(fd);
}

/* Connections to a BIND port from an address other than the expected one
 * are refused; their log lines go through the rate limiter (at most 5 a
 * second), so whoever finds the port cannot fill the log. */
static void
test_bind_refusals_are_logged_at_a_bounded_rate(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t req[] = { 0x05, 0x02, 0x00, 0x01, 127, 0, 0, 1, 0, 0 };
	const char *needle = "refused a connection from unexpected";
	struct it_reply r;
	uint64_t t0;
	unsigned lines, seconds;
	int fd = it_greet(fx, AF_INET);

	it_send_bytes(fd, req, sizeof(req));
	it_expect_reply(fd, &r, IT_IO_TIMEOUT_MS);
	assert_int_equal(r.rep, 0x00);
	t0 = it_now_ms();
	for (int i = 0; i < 40; i++) {
		int p = it_connect_addr("127.0.0.1", r.port, "127.0.0.2");
		assert_true(p >= 0);
		(void)it_wait_close(p, IT_IO_TIMEOUT_MS);
		it_close(p);
	}
	/* The daemon has logged whatever it logs for them by now: each was
	 * closed, which happens after its line. */
	seconds = (unsigned)((it_now_ms() - t0) / 1000) + 1;
	lines = log_count(&fx->d, needle);
	if (lines == 0 || lines > 5 * (seconds + 1))
		fail_msg("%u refusal lines for 40 refusals in %u s: want 1 to %u", lines, seconds,
			5 * (seconds + 1));
	it_close(fd);
}

/* Without a max-connections line the limit follows from the descriptor
 * limit (two a session, less a reserve of 256), and -T says what it is;
 * it used to be unlimited, so past the descriptor limit accept and connect
 * failed with EMFILE instead of new clients being refused cleanly. */
static void
test_dump_reports_max_connections_from_the_descriptor_limit(void **state)
{
	char conf[] = "/tmp/it_hardening.XXXXXX", cmd[600], line[256];
	const char *bin = getenv("SOCKS5D");
	unsigned got = 0, want;
	struct rlimit rl;
	FILE *p;
	int fd;

	if (it_is_microsocks() || !bin)
		skip();
	fd = mkstemp(conf);
	assert_true(fd >= 0);
	assert_true(write(fd, "listen 127.0.0.1:1\n", 19) == 19);
	close(fd);
	snprintf(cmd, sizeof(cmd), "%s -T -f %s", bin, conf);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(line, sizeof(line), p))
		if (sscanf(line, "max-connections %u", &got) == 1)
			break;
	pclose(p);
	unlink(conf);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	want = (unsigned)((rl.rlim_max - 256) / 2);
	assert_int_equal(got, want);
}

/* ---- client strings in the log -------------------------------------------- */

/* Every line of the log starts as the daemon's writer starts it (a
 * timestamp "20..-..-..T"): no client string began a line of its own. */
static void
assert_log_lines_are_the_daemons(const struct it_daemon *d)
{
	FILE *f = fopen(d->log, "r");
	char line[8192];
	unsigned n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		n++;
		if (strncmp(line, "20", 2) != 0 || line[4] != '-' || line[10] != 'T')
			fail_msg("log line %u is not one of the daemon's: %.80s", n, line);
	}
	fclose(f);
	assert_true(n > 0);
}

/* RFC 1929 request with a user of ulen bytes and a wrong password. */
static int
send_login(const struct it_fixture *fx, const uint8_t *user, size_t ulen)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	uint8_t msg[3 + 255 + 5];
	int fd = it_connect(AF_INET, fx->d.port);

	assert_true(fd >= 0);
	msg[0] = 0x01;
	msg[1] = (uint8_t)ulen;
	memcpy(msg + 2, user, ulen);
	msg[2 + ulen] = 5;
	memcpy(msg + 3 + ulen, "wrong", 5);
	it_send_bytes(fd, greet, sizeof(greet));
	it_send_bytes(fd, msg, 3 + ulen + 5);
	return fd;
}

/* Issue 17: a user name with '"', a newline and a fake session record
 * forged an "info: session ... user=admin" line; a "\n<0>" made an
 * emergency entry in the journal. User names with every byte value, and
 * the forged record, are logged escaped, one line each. */
static void
test_user_names_cannot_forge_log_lines(void **state)
{
	static const char forged[] = "x\" from 1.2.3.4\ninfo: session id=1 proto=socks5 "
				     "client=1.2.3.4:1 user=admin cmd=connect\n<0>emergency";
	struct it_fixture *fx = it_fx(state);
	const uint8_t method[] = { 0x05, 0x02 }, failed[] = { 0x01, 0x01 };
	int fds[257];

	for (unsigned b = 0; b < 256; b++) {
		const uint8_t user[] = { 'u', (uint8_t)b, 'v' };
		fds[b] = send_login(fx, user, sizeof(user));
	}
	fds[256] = send_login(fx, (const uint8_t *)forged, strlen(forged));
	for (unsigned i = 0; i < 257; i++) {
		it_expect_bytes(fds[i], method, sizeof(method));
		it_expect_bytes(fds[i], failed, sizeof(failed));
		it_close(fds[i]);
	}
	assert_log_lines_are_the_daemons(&fx->d);
	if (!it_daemon_log_contains(&fx->d, "user \"u\\x0av\""))
		fail_msg("the newline in a user name is not logged as \\x0a");
	if (!it_daemon_log_contains(&fx->d, "user \"x\\x22\\x20from"))
		fail_msg("the forged record's quote is not logged as \\x22");
}

/* Domain names with every byte value from 0x01 (NUL ends a name) end in
 * the session line's target= escaped. */
static void
test_domain_names_cannot_forge_log_lines(void **state)
{
	struct it_fixture *fx = it_fx(state);
	struct it_reply r;
	char err[256];

	for (unsigned b = 1; b < 256; b++) {
		uint8_t req[64] = { 0x05, 0x01, 0x00, 0x03, 5, 'a', 'b', (uint8_t)b, 'c', 'd', 0,
			80 };
		int fd = it_greet(fx, AF_INET);

		it_send_bytes(fd, req, 12);
		if (it_read_reply(fd, &r, IT_IO_TIMEOUT_MS, err, sizeof(err)) < 0)
			fail_msg("name with byte %02x: %s", b, err);
		it_close(fd);
	}
	/* The session lines are written at the close: wait for the last. */
	for (int i = 0; i < 100 && !it_daemon_log_contains(&fx->d, "target=ab\\xffcd:80"); i++)
		it_sleep_ms(20);
	assert_log_lines_are_the_daemons(&fx->d);
	if (!it_daemon_log_contains(&fx->d, "target=ab\\x0acd:80"))
		fail_msg("the newline in a domain name is not logged as \\x0a");
}

static int
setup_plain(void **state)
{
	return it_fixture_start(state, "auth none\nlog-level info\n", NULL, NULL);
}

static int
setup_logs(void **state)
{
	return it_fixture_start(state,
		"auth password\nuser alice wonderland\nauth-fail-limit 0\nlog-level info\n",
		"alice", "wonderland");
}

int
it_run_hardening_tests(void)
{
	const struct CMUnitTest plain[] = {
		IT_TEST(test_greeting_without_methods_gets_ff_then_close),
		IT_TEST(test_bind_refusals_are_logged_at_a_bounded_rate),
		IT_TEST(test_dump_reports_max_connections_from_the_descriptor_limit),
	};
	const struct CMUnitTest logs[] = {
		IT_TEST(test_user_names_cannot_forge_log_lines),
		IT_TEST(test_domain_names_cannot_forge_log_lines),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("hardening: greeting, bind", plain, setup_plain,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("hardening: client strings in the log", logs,
		setup_logs, it_fixture_stop);
	return failed;
}
