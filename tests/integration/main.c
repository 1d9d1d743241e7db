/*
 * Integration test runner: starts the target servers once, then runs each
 * file's cmocka groups, each against its own daemon with its own config.
 * Run from the repository root as `SOCKS5D=build/socks5d build/tests/integration`
 * (or IT_SERVER=microsocks to check the harness; IT_KEEP=1 keeps temp dirs).
 * Exits non-zero when any test failed.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>

int
main(void)
{
	int failed = 0;

	/* A peer closing first must be an error return, not a dead runner. */
	signal(SIGPIPE, SIG_IGN);
	/* Before anything starts, so daemons inherit the raised limit too. */
	it_raise_nofile();
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (it_server_init() < 0)
		return 2;
	if (it_targets_start(&it_tg) < 0)
		return 2;
	failed += it_run_connect_tests();
	failed += it_run_auth_tests();
	failed += it_run_handshake_tests();
	failed += it_run_relay_tests();
	failed += it_run_concurrency_tests();
	failed += it_run_timeout_tests();
	failed += it_run_bind_tests();
	failed += it_run_udp_tests();
	failed += it_run_dns_tests();
	failed += it_run_socks4_tests();
	failed += it_run_userswatch_tests();
	failed += it_run_lifecycle_tests();
	{
		int it_run_systemd_tests(void);
		failed += it_run_systemd_tests();
	}
	{
		int it_run_fault_tests(void);
		failed += it_run_fault_tests();
	}
	{
		int it_run_access_tests(void);
		failed += it_run_access_tests();
	}
	{
		int it_run_scale_tests(void);
		failed += it_run_scale_tests();
	}
	it_targets_stop(&it_tg);
	failed += it_harness_failures;
	printf("integration: %d failed\n", failed);
	return failed ? 1 : 0;
}
