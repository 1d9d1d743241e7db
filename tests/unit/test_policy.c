/*
 * test_policy: the request decisions a client cannot get around (issue
 * 17): the built-in protection of the proxy host for CONNECT, BIND peers
 * and UDP datagrams alike; only a rule whose network holds the address
 * lifts it, never a domain rule; loopback clients are trusted; and every
 * refusal says which rule or which protection refused it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "proto.h"
#include "stats.h"
#include "unit_util.h"

struct fx {
	struct config *cfg;
	struct policy policy;
	struct stats stats;
	union sockaddr_any client, local;
};

static struct fx *
fx_new(const char *rules)
{
	struct fx *f = calloc(1, sizeof(*f));
	char text[1024], err[256];
	union sockaddr_any host = unit_addr("198.51.100.20", 0);

	assert_non_null(f);
	snprintf(text, sizeof(text),
		"listen 127.0.0.1:1080\nlisten 0.0.0.0:1081\nclient allow all\n"
		"metrics 127.0.0.1:9100\n%s",
		rules);
	if (config_parse_string(text, "t.conf", &f->cfg, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	f->policy.stats = &f->stats;
	policy_set_host_addrs(&f->policy, &host, 1);
	f->client = unit_addr("192.0.2.7", 5555);
	f->local = unit_addr("127.0.0.1", 1080);
	return f;
}

static void
fx_free(struct fx *f)
{
	config_unref(f->cfg);
	free(f);
}

static struct policy_verdict
check(struct fx *f, uint8_t cmd, const char *name, const char *ip, uint16_t port)
{
	struct policy_subject s = { 1, f->cfg, &f->client, &f->local, NULL };
	union sockaddr_any dst = unit_addr(ip, port);

	return policy_check_request(&f->policy, &s, cmd, name, &dst, port);
}

static void
expect(struct policy_verdict v, enum acl_verdict verdict, int line, enum policy_protection why)
{
	assert_int_equal(v.verdict, verdict);
	assert_int_equal(v.line, line);
	assert_int_equal(v.protection, why);
}

static const uint8_t cmds[] = { SOCKS_CMD_CONNECT, SOCKS_CMD_BIND, SOCKS_CMD_UDP_ASSOCIATE };

static void
test_protection_covers_every_command(void **state)
{
	struct fx *f = fx_new("");

	for (size_t i = 0; i < sizeof(cmds); i++) {
		uint8_t c = cmds[i];
		expect(check(f, c, NULL, "127.0.0.1", 80), ACL_DENY, 0, POLICY_PROTECT_LOOPBACK);
		expect(check(f, c, NULL, "127.9.9.9", 80), ACL_DENY, 0, POLICY_PROTECT_LOOPBACK);
		expect(check(f, c, NULL, "::1", 80), ACL_DENY, 0, POLICY_PROTECT_LOOPBACK);
		expect(check(f, c, NULL, "::ffff:127.0.0.1", 80), ACL_DENY, 0,
			POLICY_PROTECT_LOOPBACK);
		expect(check(f, c, NULL, "0.0.0.0", 80), ACL_DENY, 0, POLICY_PROTECT_LOOPBACK);
		expect(check(f, c, NULL, "::", 80), ACL_DENY, 0, POLICY_PROTECT_LOOPBACK);
		expect(check(f, c, NULL, "224.0.0.1", 80), ACL_DENY, 0, POLICY_PROTECT_MULTICAST);
		expect(check(f, c, NULL, "239.255.255.250", 1900), ACL_DENY, 0,
			POLICY_PROTECT_MULTICAST);
		expect(check(f, c, NULL, "ff02::1", 80), ACL_DENY, 0, POLICY_PROTECT_MULTICAST);
		expect(check(f, c, NULL, "255.255.255.255", 67), ACL_DENY, 0,
			POLICY_PROTECT_BROADCAST);
		/* The host's own address at the daemon's ports (listeners,
		 * metrics), not at others. */
		expect(check(f, c, NULL, "198.51.100.20", 1081), ACL_DENY, 0,
			POLICY_PROTECT_OWN_PORT);
		expect(check(f, c, NULL, "198.51.100.20", 1080), ACL_DENY, 0,
			POLICY_PROTECT_OWN_PORT);
		expect(check(f, c, NULL, "198.51.100.20", 9100), ACL_DENY, 0,
			POLICY_PROTECT_OWN_PORT);
		expect(check(f, c, NULL, "198.51.100.20", 443), ACL_ALLOW, 0, POLICY_PROTECT_NONE);
		expect(check(f, c, NULL, "203.0.113.1", 1081), ACL_ALLOW, 0, POLICY_PROTECT_NONE);
		expect(check(f, c, NULL, "224.0.0.0", 0), ACL_DENY, 0, POLICY_PROTECT_MULTICAST);
		expect(check(f, c, NULL, "223.255.255.255", 80), ACL_ALLOW, 0, POLICY_PROTECT_NONE);
	}
	fx_free(f);
}

static void
test_only_a_network_rule_lifts_the_protection(void **state)
{
	/* Rules from line 5 on (the fixture's four lines come first). */
	struct fx *f = fx_new("rule allow to *.example.test\n"
			      "rule allow to 127.0.0.0/8 port 8080\n"
			      "rule allow to 224.0.0.0/4,255.255.255.255\n"
			      "rule allow to localhost,127.0.0.1 port 9000\n");

	/* The name matches, the address is loopback: still refused. */
	expect(check(f, SOCKS_CMD_CONNECT, "evil.example.test", "127.0.0.1", 80), ACL_DENY, 0,
		POLICY_PROTECT_LOOPBACK);
	expect(check(f, SOCKS_CMD_CONNECT, "evil.example.test", "198.51.100.20", 1080), ACL_DENY, 0,
		POLICY_PROTECT_OWN_PORT);
	expect(check(f, SOCKS_CMD_CONNECT, "ok.example.test", "203.0.113.9", 80), ACL_ALLOW, 5,
		POLICY_PROTECT_NONE);
	/* A network holding the address lifts it, for that rule's scope. */
	expect(check(f, SOCKS_CMD_CONNECT, NULL, "127.0.0.1", 8080), ACL_ALLOW, 6,
		POLICY_PROTECT_NONE);
	expect(check(f, SOCKS_CMD_UDP_ASSOCIATE, NULL, "224.0.0.251", 5353), ACL_ALLOW, 7,
		POLICY_PROTECT_NONE);
	expect(check(f, SOCKS_CMD_UDP_ASSOCIATE, NULL, "255.255.255.255", 67), ACL_ALLOW, 7,
		POLICY_PROTECT_NONE);
	/* A name and a network in one rule: the network decides. */
	expect(check(f, SOCKS_CMD_CONNECT, "localhost", "127.0.0.1", 9000), ACL_ALLOW, 8,
		POLICY_PROTECT_NONE);
	expect(check(f, SOCKS_CMD_CONNECT, "localhost", "127.0.0.2", 9000), ACL_DENY, 0,
		POLICY_PROTECT_LOOPBACK);
	fx_free(f);
}

static void
test_loopback_clients_are_trusted(void **state)
{
	struct fx *f = fx_new("");

	f->client = unit_addr("127.0.0.1", 40000);
	for (size_t i = 0; i < sizeof(cmds); i++) {
		expect(check(f, cmds[i], NULL, "127.0.0.1", 80), ACL_ALLOW, 0, POLICY_PROTECT_NONE);
		expect(check(f, cmds[i], NULL, "224.0.0.1", 80), ACL_ALLOW, 0, POLICY_PROTECT_NONE);
	}
	fx_free(f);
}

static void
test_no_rule_allows_is_not_a_protection(void **state)
{
	struct fx *f = fx_new("rule allow to 203.0.113.0/24\n");

	expect(check(f, SOCKS_CMD_CONNECT, NULL, "198.51.100.1", 80), ACL_DENY, 0,
		POLICY_PROTECT_NONE);
	expect(check(f, SOCKS_CMD_CONNECT, NULL, "127.0.0.1", 80), ACL_DENY, 0,
		POLICY_PROTECT_NONE);
	assert_string_equal(policy_protection_str(POLICY_PROTECT_LOOPBACK),
		"loopback of the proxy host");
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protection_covers_every_command),
		cmocka_unit_test(test_only_a_network_rule_lifts_the_protection),
		cmocka_unit_test(test_loopback_clients_are_trusted),
		cmocka_unit_test(test_no_rule_allows_is_not_a_protection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
