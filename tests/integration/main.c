/*
 * Integration test runner: starts the target servers once, then runs each
 * file's cmocka groups, each against its own daemon with its own config.
 * Run from the repository root as `SOCKS5D=build/socks5d build/tests/integration`
 * (or IT_SERVER=microsocks to check the harness; IT_KEEP=1 keeps temp dirs;
 * IT_ONLY="udp dns" runs only those files' groups).
 * Exits non-zero when any test failed.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each file's runner, in the order they run. */
static const struct {
	const char *name;
	int (*run)(void);
} groups[] = {
	{ "connect", it_run_connect_tests },
	{ "auth", it_run_auth_tests },
	{ "handshake", it_run_handshake_tests },
	{ "relay", it_run_relay_tests },
	{ "concurrency", it_run_concurrency_tests },
	{ "timeouts", it_run_timeout_tests },
	{ "bind", it_run_bind_tests },
	{ "udp", it_run_udp_tests },
	{ "dns", it_run_dns_tests },
	{ "socks4", it_run_socks4_tests },
	{ "userswatch", it_run_userswatch_tests },
	{ "lifecycle", it_run_lifecycle_tests },
	{ "systemd", it_run_systemd_tests },
	{ "faults", it_run_fault_tests },
	{ "access", it_run_access_tests },
	{ "scale", it_run_scale_tests },
	{ "hardening", it_run_hardening_tests },
	{ "parent", it_run_parent_tests },
	{ "shaping", it_run_shaping_tests },
	{ "egress", it_run_egress_tests },
};

int
main(void)
{
	/* IT_ONLY="dns udp" runs only the files named (while working on them). */
	const char *only = getenv("IT_ONLY");
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
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++)
		if (!only || strstr(only, groups[i].name))
			failed += groups[i].run();
	it_targets_stop(&it_tg);
	failed += it_harness_failures;
	printf("integration: %d failed\n", failed);
	return failed ? 1 : 0;
}
