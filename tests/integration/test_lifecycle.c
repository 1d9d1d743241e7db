/*
 * Daemon lifecycle: after serving sessions it stops on SIGTERM promptly and
 * exits with status 0, which is what systemd and scripts take for a clean
 * stop. (Every group's teardown checks the same; this test says it by name.)
 */
#include "harness.h"

#include <netinet/in.h>
#include <sys/socket.h>

static void
test_daemon_exits_0_on_sigterm_after_serving(void **state)
{
	struct it_fixture *fx = it_fx(state);
	int fd;

	it_require(IT_CAP_CLEAN_EXIT);
	fd = it_open_tunnel(fx, AF_INET, &it_tg.echo4);
	it_expect_echo(fd, 4096, 41);
	it_close(fd);
	assert_true(it_daemon_running(&fx->d));
	uint64_t t0 = it_now_ms();
	int r = it_daemon_stop(&fx->d);
	fx->started = false; /* nothing left for the group teardown */
	if (r != 0)
		fail_msg("daemon did not exit 0 within 5 s of SIGTERM (see above)");
	print_message("[   INFO   ] exited 0 %llu ms after SIGTERM\n",
		(unsigned long long)(it_now_ms() - t0));
}

static int
setup(void **state)
{
	return it_fixture_start(state, "auth none\nlog-level debug\n", NULL, NULL);
}

int
it_run_lifecycle_tests(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_daemon_exits_0_on_sigterm_after_serving),
	};

	return cmocka_run_group_tests_name("lifecycle", tests, setup, it_fixture_stop);
}
