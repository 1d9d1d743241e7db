/*
 * Method selection and username/password authentication against the real
 * daemon (RFC 1928 §3, RFC 1929 §2): with "auth password" the daemon picks
 * 02, accepts alice's password, rejects a wrong one or an unknown user with
 * a non-zero status and closes, and answers a client offering only 00 with
 * 05 FF and a close. With "auth password none" it prefers 02 when offered,
 * and lets a client that offers only 00 in.
 */
#include "harness.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* 01 ULEN "alice" PLEN pass */
static size_t
userpass(uint8_t *out, const char *user, const char *pass)
{
	size_t n = 0, ul = strlen(user), pl = strlen(pass);

	out[n++] = 0x01;
	out[n++] = (uint8_t)ul;
	memcpy(out + n, user, ul);
	n += ul;
	out[n++] = (uint8_t)pl;
	memcpy(out + n, pass, pl);
	return n + pl;
}

/* CONNECT 127.0.0.1:echo4 and expect REP 00. */
static void
connect_echo4(int fd)
{
	const uint16_t p = it_tg.echo4.port;
	const uint8_t req[] = { 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, p >> 8, p & 0xff };
	const uint8_t head[] = { 0x05, 0x00, 0x00 };
	struct it_reply r;
	char err[256];

	it_send_bytes(fd, req, sizeof(req));
	if (it_read_reply(fd, &r, IT_IO_TIMEOUT_MS, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	it_assert_mem(r.raw, head, sizeof(head), "CONNECT reply VER REP RSV");
}

static int
connected(const struct it_fixture *fx)
{
	int fd = it_connect(AF_INET, fx->d.port);

	assert_true(fd >= 0);
	return fd;
}

/* Sends 01 ULEN user PLEN pass and checks that the status is a refusal
 * followed by a clean close (EOF: we sent nothing it did not read). */
static void
expect_refused(int fd, const char *user, const char *pass)
{
	uint8_t msg[600], st[2];
	size_t n = userpass(msg, user, pass);

	it_send_bytes(fd, msg, n);
	assert_int_equal(it_recv_exact(fd, st, 2, IT_IO_TIMEOUT_MS), 2);
	assert_int_equal(st[0], 0x01);
	if (st[1] == 0x00)
		fail_msg("auth status 00 (success) for %s with a wrong password", user);
	enum it_close c = it_wait_close(fd, 2000);
	if (c != IT_CLOSE_EOF)
		fail_msg("after a failed auth want EOF within 2 s, got %s", it_close_str(c));
}

static void
test_password_mode_selects_02_and_correct_password_connects(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	const uint8_t ok[] = { 0x01, 0x00 };
	uint8_t msg[64];
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_bytes(fd, msg, userpass(msg, "alice", "wonderland"));
	it_expect_bytes(fd, ok, sizeof(ok));
	connect_echo4(fd);
	it_expect_echo(fd, 4096, 1);
	it_close(fd);
}

static void
test_password_mode_wrong_password_fails_and_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	expect_refused(fd, "alice", "wonderlanD");
	it_close(fd);
}

static void
test_password_mode_unknown_user_fails_and_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	expect_refused(fd, "mallory", "wonderland");
	it_close(fd);
}

static void
test_password_mode_empty_password_fails_and_closes(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	expect_refused(fd, "alice", "");
	it_close(fd);
}

static void
test_password_mode_client_offering_only_00_gets_ff_and_close(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	const uint8_t none[] = { 0x05, 0xff };
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, none, sizeof(none));
	it_expect_close(fd, 2000);
	it_close(fd);
}

static void
test_password_mode_client_offering_00_and_02_gets_02(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x02, 0x00, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_close(fd);
}

static void
test_password_or_none_prefers_02_when_both_offered(void **state)
{
	struct it_fixture *fx = it_fx(state);
	/* 00 listed first: the choice must follow the server's preference. */
	const uint8_t greet[] = { 0x05, 0x02, 0x00, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	const uint8_t ok[] = { 0x01, 0x00 };
	uint8_t msg[64];
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	it_send_bytes(fd, msg, userpass(msg, "alice", "wonderland"));
	it_expect_bytes(fd, ok, sizeof(ok));
	connect_echo4(fd);
	it_expect_echo(fd, 4096, 2);
	it_close(fd);
}

static void
test_password_or_none_lets_client_offering_only_00_in(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x01, 0x00 };
	const uint8_t chosen[] = { 0x05, 0x00 };
	int fd = connected(fx);

	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	connect_echo4(fd);
	it_expect_echo(fd, 4096, 3);
	it_close(fd);
}

static void
test_password_or_none_wrong_password_still_fails(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const uint8_t greet[] = { 0x05, 0x02, 0x00, 0x02 };
	const uint8_t chosen[] = { 0x05, 0x02 };
	int fd = connected(fx);

	/* Having chosen 02, a wrong password must not fall back to 00. */
	it_send_bytes(fd, greet, sizeof(greet));
	it_expect_bytes(fd, chosen, sizeof(chosen));
	expect_refused(fd, "alice", "looking-glass");
	it_close(fd);
}

/* Runs last in its group, after every password above went over the wire
 * at log-level debug: none of them may be in the log (STYLE.md §8). */
static void
test_passwords_never_appear_in_log(void **state)
{
	struct it_fixture *fx = it_fx(state);
	const char *secrets[] = { "wonderland", "wonderlanD", "looking-glass" };

	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		if (it_daemon_log_contains(&fx->d, secrets[i]))
			fail_msg("the password \"%s\" appears in the daemon's log %s", secrets[i],
				fx->d.log);
}

static int
setup_password(void **state)
{
	return it_fixture_start(state, "auth password\nuser alice wonderland\nlog-level debug\n",
		"alice", "wonderland");
}

static int
setup_password_none(void **state)
{
	return it_fixture_start(state,
		"auth password none\nuser alice wonderland\nlog-level debug\n", "alice",
		"wonderland");
}

int
it_run_auth_tests(void)
{
	const struct CMUnitTest password[] = {
		IT_TEST(test_password_mode_selects_02_and_correct_password_connects),
		IT_TEST(test_password_mode_wrong_password_fails_and_closes),
		IT_TEST(test_password_mode_unknown_user_fails_and_closes),
		IT_TEST(test_password_mode_empty_password_fails_and_closes),
		IT_TEST(test_password_mode_client_offering_only_00_gets_ff_and_close),
		IT_TEST(test_password_mode_client_offering_00_and_02_gets_02),
		cmocka_unit_test(test_passwords_never_appear_in_log),
	};
	const struct CMUnitTest password_none[] = {
		IT_TEST(test_password_or_none_prefers_02_when_both_offered),
		IT_TEST(test_password_or_none_lets_client_offering_only_00_in),
		IT_TEST(test_password_or_none_wrong_password_still_fails),
		cmocka_unit_test(test_passwords_never_appear_in_log),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("auth password", password, setup_password,
		it_fixture_stop);
	failed += cmocka_run_group_tests_name("auth password none", password_none,
		setup_password_none, it_fixture_stop);
	return failed;
}
