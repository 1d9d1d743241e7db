/*
 * users-file PATH watch (issue 20): a users file that changes on disk is
 * picked up without SIGHUP, whether it is renamed into place (socks5d
 * passwd, editors) or written in place; a broken file is logged as
 * FILE:LINE and the running table is kept. The daemon runs with
 * auth-fail-limit 0, so the polling below cannot lock the test out.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a change may take to be seen: the watch settles in 100 ms; the
 * rest is slack for a loaded machine (a sanitizer build, other jobs). */
#define UW_WAIT_MS 15000

static char uw_dir[64];
static char uw_users[128];

/* 01 ULEN user PLEN pass after a 05 01 02 greeting; true on status 00. */
static bool
auth_ok(const struct it_fixture *fx, const char *user, const char *pass)
{
	const uint8_t greet[] = { 0x05, 0x01, 0x02 };
	uint8_t msg[600], st[2], chosen[2];
	size_t ul = strlen(user), pl = strlen(pass), n = 0;
	int fd = it_connect(AF_INET, fx->d.port);
	bool ok;

	assert_true(fd >= 0);
	msg[n++] = 0x01;
	msg[n++] = (uint8_t)ul;
	memcpy(msg + n, user, ul);
	n += ul;
	msg[n++] = (uint8_t)pl;
	memcpy(msg + n, pass, pl);
	n += pl;
	it_send_bytes(fd, greet, sizeof(greet));
	assert_int_equal(it_recv_exact(fd, chosen, 2, IT_IO_TIMEOUT_MS), 2);
	assert_int_equal(chosen[1], 0x02);
	it_send_bytes(fd, msg, n);
	ok = it_recv_exact(fd, st, 2, IT_IO_TIMEOUT_MS) == 2 && st[1] == 0x00;
	it_close(fd);
	return ok;
}

/* Polls until user's password is accepted (want true) or refused (false),
 * at most UW_WAIT_MS; fails the test otherwise. */
static void
wait_auth(const struct it_fixture *fx, const char *user, const char *pass, bool want)
{
	uint64_t end = it_now_ms() + UW_WAIT_MS;

	while (auth_ok(fx, user, pass) != want) {
		if (it_now_ms() > end) {
			it_daemon_log_tail(&fx->d, 20);
			fail_msg("%s's password still %s after %d ms", user,
				want ? "refused" : "accepted", UW_WAIT_MS);
		}
		it_sleep_ms(50);
	}
}

static void
write_in_place(const char *text)
{
	FILE *f = fopen(uw_users, "w");

	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

/* As socks5d passwd and most editors do: a new file renamed over the old. */
static void
write_by_rename(const char *text)
{
	char tmp[160];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s/.users.new", uw_dir);
	f = fopen(tmp, "w");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(tmp, uw_users), 0);
}

static void
test_users_file_renamed_into_place_is_picked_up(void **state)
{
	struct it_fixture *fx = it_fx(state);

	assert_false(auth_ok(fx, "bob", "builder"));
	write_by_rename("alice:wonderland\nbob:builder\n");
	wait_auth(fx, "bob", "builder", true);
	assert_true(auth_ok(fx, "alice", "wonderland"));
}

static void
test_users_file_written_in_place_is_picked_up(void **state)
{
	struct it_fixture *fx = it_fx(state);

	write_in_place("alice:wonderland\ncarol:cheshire\n");
	wait_auth(fx, "carol", "cheshire", true);
	/* bob is no longer in the file. */
	wait_auth(fx, "bob", "builder", false);
}

static void
test_broken_users_file_is_logged_and_old_table_kept(void **state)
{
	struct it_fixture *fx = it_fx(state);
	char want[200];
	uint64_t end = it_now_ms() + UW_WAIT_MS;

	write_in_place("alice:wonderland\nno colon on this line\ndave:dodo\n");
	snprintf(want, sizeof(want), "%s:2: missing ':'", uw_users);
	while (!it_daemon_log_contains(&fx->d, want)) {
		if (it_now_ms() > end)
			fail_msg("no log line \"%s\" within %d ms", want, UW_WAIT_MS);
		it_sleep_ms(50);
	}
	/* The table before the broken file stays in force. */
	assert_true(auth_ok(fx, "carol", "cheshire"));
	assert_false(auth_ok(fx, "dave", "dodo"));
	/* And a repaired file applies again. */
	write_by_rename("alice:wonderland\ndave:dodo\n");
	wait_auth(fx, "dave", "dodo", true);
	wait_auth(fx, "carol", "cheshire", false);
}

/* workers 2: the supervisor watches and passes a SIGHUP to each worker;
 * every new session, whichever worker the kernel gives it to, sees the
 * new users (twenty in a row, after the first). */
static void
test_users_file_change_reaches_every_worker(void **state)
{
	struct it_fixture *fx = it_fx(state);

	write_by_rename("alice:wonderland\nfrank:fox\n");
	wait_auth(fx, "frank", "fox", true);
	for (int i = 0; i < 20; i++)
		if (!auth_ok(fx, "frank", "fox"))
			fail_msg("session %d after the change: frank refused by a worker", i);
}

static int
start(void **state, const char *extra)
{
	char config[512];
	FILE *f;

	snprintf(uw_dir, sizeof(uw_dir), "/tmp/it_userswatch.XXXXXX");
	if (!mkdtemp(uw_dir))
		return -1;
	snprintf(uw_users, sizeof(uw_users), "%s/users", uw_dir);
	f = fopen(uw_users, "w");
	if (!f)
		return -1;
	fputs("alice:wonderland\n", f);
	if (fclose(f) != 0)
		return -1;
	snprintf(config, sizeof(config),
		"auth password\nusers-file %s watch\nauth-fail-limit 0\nlog-level debug\n%s",
		uw_users, extra);
	return it_fixture_start(state, config, "alice", "wonderland");
}

static int
setup(void **state)
{
	return start(state, "");
}

static int
setup_workers(void **state)
{
	return start(state, "workers 2\n");
}

static int
teardown(void **state)
{
	int r = it_fixture_stop(state);
	char tmp[160];

	snprintf(tmp, sizeof(tmp), "%s/.users.new", uw_dir);
	(void)unlink(tmp);
	(void)unlink(uw_users);
	(void)rmdir(uw_dir);
	return r;
}

int
it_run_userswatch_tests(void)
{
	const struct CMUnitTest tests[] = {
		IT_TEST(test_users_file_renamed_into_place_is_picked_up),
		IT_TEST(test_users_file_written_in_place_is_picked_up),
		IT_TEST(test_broken_users_file_is_logged_and_old_table_kept),
	};

	const struct CMUnitTest worker_tests[] = {
		IT_TEST(test_users_file_change_reaches_every_worker),
	};
	int failed = 0;

	failed += cmocka_run_group_tests_name("users-file watch", tests, setup, teardown);
	failed += cmocka_run_group_tests_name("users-file watch (workers 2)", worker_tests,
		setup_workers, teardown);
	return failed;
}
