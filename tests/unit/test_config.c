/*
 * test_config: the config parser. Every keyword's valid forms and default,
 * every error message in full with its line number, the grammar (quotes,
 * comments, line endings), users-file loading and path resolution, the dump,
 * and that the man page and the example config name every keyword.
 * Runs from the repository root (make runs it there).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "auth.h"
#include "config.h"
#include "proto.h"

#include "unit_util.h"

#define ERRLEN 1024

/* Parses text as "t.conf" and fails the test on error. */
static struct config *
parse_ok(const char *text)
{
	struct config *c = NULL;
	char err[ERRLEN] = "";

	if (config_parse_string(text, "t.conf", &c, err, sizeof(err)) != 0)
		fail_msg("unexpected error for <<%s>>: %s", text, err);
	assert_non_null(c);
	return c;
}

/* Parses text as "t.conf" and asserts the whole error message. */
static void
parse_err(const char *text, const char *want)
{
	struct config *c = (struct config *)1;
	char err[ERRLEN] = "";

	if (config_parse_string(text, "t.conf", &c, err, sizeof(err)) != -1)
		fail_msg("no error for <<%s>>, wanted: %s", text, want);
	assert_null(c);
	assert_string_equal(err, want);
}

static void
assert_addr(const union sockaddr_any *a, const char *want)
{
	char buf[ADDR_STRLEN];

	assert_string_equal(addr_format(a, buf, sizeof(buf)), want);
}

static void
assert_defaults(const struct config *c)
{
	assert_int_equal(c->refs, 1);
	assert_int_equal(c->nlisten, 1);
	assert_addr(&c->listen[0].addr, CONFIG_DEFAULT_LISTEN);
	assert_int_equal(c->listen[0].line, 0);
	assert_int_equal(c->nmethods, 1);
	assert_int_equal(c->methods[0], SOCKS_METHOD_NONE);
	assert_non_null(c->users);
	assert_int_equal(auth_table_count(c->users), 0);
	assert_int_equal(c->nplaintext_users, 0);
	assert_int_equal(c->log_level, LOG_LVL_INFO);
	assert_false(c->log_syslog);
	assert_int_equal(c->shutdown_timeout, 10);
	assert_int_equal(c->timeout_handshake, 10);
	assert_int_equal(c->timeout_connect, 10);
	assert_int_equal(c->timeout_idle, 3600);
	assert_int_equal(c->timeout_udp, 300);
	assert_int_equal(c->timeout_bind, 120);
	assert_int_equal(c->nnameservers, 0);
	assert_int_equal(c->resolve_prefer, AF_UNSPEC);
	assert_int_equal(c->dns_cache_size, 10000);
	assert_int_equal(c->dns_cache_max_ttl, 3600);
	assert_int_equal(c->udp_port_lo, 0);
	assert_int_equal(c->udp_port_hi, 0);
	assert_int_equal(c->bind_port_lo, 0);
	assert_int_equal(c->bind_port_hi, 0);
	assert_int_equal(c->egress.src[EGRESS_V4].mode, EGRESS_SRC_UNSET);
	assert_int_equal(c->egress.src[EGRESS_V6].mode, EGRESS_SRC_UNSET);
	assert_string_equal(c->egress.ifname, "");
	assert_false(c->egress.has_mark);
	assert_int_equal(c->egress.tos, -1);
	assert_int_equal(c->egress.keepalive, 1);
	assert_int_equal(c->egress.keepalive_idle, 120);
	assert_int_equal(c->egress.keepalive_interval, 30);
	assert_int_equal(c->egress.keepalive_count, 4);
	assert_int_equal(c->egress.user_timeout_ms, -1);
	assert_int_equal(c->happy_eyeballs_ms, 250);
	assert_int_equal(c->listen[0].backlog, 4096);
}

/* --- defaults ----------------------------------------------------------- */

static void
test_empty_text_gives_defaults(void **state)
{
	struct config *c = parse_ok("");

	(void)state;
	assert_defaults(c);
	assert_string_equal(c->name, "t.conf");
	config_unref(c);
}

static void
test_comments_only_give_defaults(void **state)
{
	struct config *c = parse_ok("# nothing\n\n   \t\n# more\n");

	(void)state;
	assert_defaults(c);
	config_unref(c);
}

static void
test_new_default_matches_empty_file(void **state)
{
	struct config *c = config_new_default();

	(void)state;
	assert_non_null(c);
	assert_defaults(c);
	config_unref(c);
}

static void
test_ref_unref_keeps_config_alive(void **state)
{
	struct config *c = parse_ok("user alice pw\n");

	(void)state;
	assert_ptr_equal(config_ref(c), c);
	assert_int_equal(c->refs, 2);
	config_unref(c);
	assert_int_equal(c->refs, 1);
	/* still usable until the last reference goes */
	assert_true(auth_check(c->users, "alice", "pw"));
	config_unref(c);
	config_unref(NULL);
}

/* --- listen ------------------------------------------------------------- */

static void
test_listen_ipv4_and_ipv6(void **state)
{
	struct config *c = parse_ok("listen 0.0.0.0:1080\n"
				    "# comment\n"
				    "listen [::1]:1081\n"
				    "listen 127.0.0.1:1080\n"
				    "client allow 10.0.0.0/8\n");

	(void)state;
	assert_int_equal(c->nlisten, 3);
	assert_addr(&c->listen[0].addr, "0.0.0.0:1080");
	assert_int_equal(c->listen[0].line, 1);
	assert_addr(&c->listen[1].addr, "[::1]:1081");
	assert_int_equal(c->listen[1].line, 3);
	assert_addr(&c->listen[2].addr, "127.0.0.1:1080");
	assert_int_equal(c->listen[2].line, 4);
	config_unref(c);
}

static void
test_listen_same_port_other_address_is_allowed(void **state)
{
	struct config *c = parse_ok("listen 127.0.0.1:1080\nlisten 127.0.0.2:1080\n"
				    "listen 127.0.0.1:1081\n");

	(void)state;
	assert_int_equal(c->nlisten, 3);
	config_unref(c);
}

static void
test_listen_max_addresses(void **state)
{
	char text[CONFIG_MAX_LISTEN * 32 + 64];
	size_t n = 0;
	struct config *c;

	(void)state;
	for (int i = 0; i < CONFIG_MAX_LISTEN; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "listen 127.0.0.1:%d\n",
			2000 + i);
	c = parse_ok(text);
	assert_int_equal(c->nlisten, CONFIG_MAX_LISTEN);
	config_unref(c);
	snprintf(text + n, sizeof(text) - n, "listen 127.0.0.1:3000\n");
	parse_err(text, "t.conf:33: listen: too many addresses (at most 32)");
}

static void
test_listen_errors(void **state)
{
	(void)state;
	parse_err("listen 1.2.3.4\n",
		"t.conf:1: listen: bad address '1.2.3.4' (expected ADDR:PORT or [IPV6]:PORT)");
	parse_err("\nlisten ::1:1080\n",
		"t.conf:2: listen: bad address '::1:1080' (expected ADDR:PORT or [IPV6]:PORT)");
	parse_err("listen localhost:1080\n",
		"t.conf:1: listen: bad address 'localhost:1080' (expected ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("listen 1.2.3.4:65536\n",
		"t.conf:1: listen: bad address '1.2.3.4:65536' (expected ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("listen 1.2.3.4:x\n",
		"t.conf:1: listen: bad address '1.2.3.4:x' (expected ADDR:PORT or [IPV6]:PORT)");
	parse_err("listen [1.2.3.4]:80\n",
		"t.conf:1: listen: bad address '[1.2.3.4]:80' (expected ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("listen 1.2.3.4:0\n", "t.conf:1: listen: port 0 is not allowed");
	parse_err("listen 127.0.0.1:1080\n\nlisten 127.0.0.1:1080\n",
		"t.conf:3: listen: duplicate address 127.0.0.1:1080, first at line 1");
	parse_err("listen [::1]:80\nlisten [0:0::1]:80\n",
		"t.conf:2: listen: duplicate address [::1]:80, first at line 1");
	parse_err("listen\n", "t.conf:1: listen: expected 1 to 4 arguments, got 0");
	parse_err("listen 1.2.3.4:1 1.2.3.4:2\n",
		"t.conf:1: listen: unknown option '1.2.3.4:2' (proxy-protocol, backlog N)");
}

/* --- auth and users ----------------------------------------------------- */

static void
test_auth_methods_in_order(void **state)
{
	struct config *c;

	(void)state;
	/* Users without an auth line mean passwords, never an open proxy. */
	c = parse_ok("user alice pw\n");
	assert_int_equal(c->nmethods, 1);
	assert_int_equal(c->methods[0], SOCKS_METHOD_PASSWORD);
	config_unref(c);
	c = parse_ok("auth none\n");
	assert_int_equal(c->nmethods, 1);
	assert_int_equal(c->methods[0], SOCKS_METHOD_NONE);
	config_unref(c);

	c = parse_ok("auth password\nuser alice pw\n");
	assert_int_equal(c->nmethods, 1);
	assert_int_equal(c->methods[0], SOCKS_METHOD_PASSWORD);
	config_unref(c);

	c = parse_ok("user alice pw\nauth password none\n");
	assert_int_equal(c->nmethods, 2);
	assert_int_equal(c->methods[0], SOCKS_METHOD_PASSWORD);
	assert_int_equal(c->methods[1], SOCKS_METHOD_NONE);
	config_unref(c);

	c = parse_ok("auth none password\nuser alice pw\n");
	assert_int_equal(c->nmethods, 2);
	assert_int_equal(c->methods[0], SOCKS_METHOD_NONE);
	assert_int_equal(c->methods[1], SOCKS_METHOD_PASSWORD);
	config_unref(c);
}

static void
test_auth_errors(void **state)
{
	(void)state;
	parse_err("auth gssapi\n", "t.conf:1: auth: unknown method 'gssapi' (none, password)");
	parse_err("auth None\n", "t.conf:1: auth: unknown method 'None' (none, password)");
	parse_err("auth none none\n", "t.conf:1: auth: duplicate method 'none'");
	parse_err("user a b\nauth password password\n",
		"t.conf:2: auth: duplicate method 'password'");
	parse_err("auth\n", "t.conf:1: auth: expected 1 to 2 arguments, got 0");
	parse_err("auth none password none\n", "t.conf:1: auth: expected 1 to 2 arguments, got 3");
	parse_err("auth none\n# x\nauth none\n", "t.conf:3: duplicate 'auth', first at line 1");
}

static void
test_socks4_defaults_follow_auth_and_cannot_bypass_passwords(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("auth none\n");
	assert_true(c->socks4);
	config_unref(c);
	c = parse_ok("auth password\nuser a b\n");
	assert_false(c->socks4);
	config_unref(c);
	c = parse_ok("auth password none\nuser a b\nsocks4 off\n");
	assert_false(c->socks4);
	config_unref(c);
	c = parse_ok("auth password none\nuser a b\nsocks4 on\n");
	assert_true(c->socks4);
	config_unref(c);
	parse_err("user a b\nauth password\n\nsocks4 on\n",
		"t.conf:4: socks4: SOCKS4 carries no password; it needs 'auth' to include none");
	parse_err("socks4 yes\n", "t.conf:1: socks4: expected on or off, got 'yes'");
}

static void
test_proxy_protocol_metrics_announce(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("listen 127.0.0.1:1080 proxy-protocol\nlisten 127.0.0.1:1081\n"
		     "proxy-protocol-from 10.0.0.0/8 ::1\nmetrics 127.0.0.1:9100\n"
		     "announce 192.0.2.1\nannounce 2001:db8::1\n");
	assert_true(c->listen[0].proxy_protocol);
	assert_false(c->listen[1].proxy_protocol);
	assert_int_equal(c->nproxy_from, 2);
	assert_true(c->has_metrics);
	assert_int_equal(addr_port(&c->metrics), 9100);
	assert_true(c->has_announce4);
	assert_true(c->has_announce6);
	config_unref(c);
	parse_err("listen 127.0.0.1:1080 proxy-protocol\n",
		"t.conf:1: listen: proxy-protocol needs a proxy-protocol-from line naming the "
		"balancers");
	parse_err("listen 127.0.0.1:1080 proxy\n",
		"t.conf:1: listen: unknown option 'proxy' (proxy-protocol, backlog N)");
	parse_err("proxy-protocol-from 10.0.0.0/33\n",
		"t.conf:1: proxy-protocol-from: bad network '10.0.0.0/33' (expected "
		"ADDR/PREFIX, ADDR or all)");
	parse_err("metrics localhost:9100\n",
		"t.conf:1: metrics: bad address 'localhost:9100' (expected ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("announce 192.0.2.1\nannounce 192.0.2.2\n",
		"t.conf:2: announce: a second IPv4 address");
}

static void
test_open_proxy_is_refused_with_a_fix(void **state)
{
	struct config *c;

	(void)state;
	parse_err("listen 127.0.0.1:1080\nlisten 0.0.0.0:1080\n",
		"t.conf:2: listen: 0.0.0.0:1080 is reachable from other hosts, clients need no "
		"password and no 'client' rule limits who may connect: that is an open proxy. "
		"Add 'client allow NETWORK' lines (the rest is denied), or 'auth password' "
		"with users");
	parse_err("listen [::]:1080\nauth password none\nuser a b\n",
		"t.conf:1: listen: [::]:1080 is reachable from other hosts, clients need no "
		"password and no 'client' rule limits who may connect: that is an open proxy. "
		"Add 'client allow NETWORK' lines (the rest is denied), or 'auth password' "
		"with users");
	/* Each fix is accepted. */
	c = parse_ok("listen 0.0.0.0:1080\nclient allow 192.0.2.0/24\n");
	config_unref(c);
	c = parse_ok("listen 0.0.0.0:1080\nauth password\nuser a b\n");
	config_unref(c);
	c = parse_ok("listen 0.0.0.0:1080\nuser a b\n"); /* users imply passwords */
	config_unref(c);
}

static void
test_rules_limits_run_as(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("client allow 10.0.0.0/8 ::1\nclient deny all\n"
		     "rule deny to 127.0.0.0/8\nrule allow user alice cmd connect port 1-1024\n"
		     "user alice x\nmax-connections 10\nmax-connections-per-ip 2\n"
		     "max-sessions-per-user 1\nmax-lookups 0\nauth-fail-limit 3\nrun-as nobody\n");
	assert_int_equal(acl_client_rule_count(c->acl), 2);
	assert_int_equal(acl_request_rule_count(c->acl), 2);
	assert_int_equal(c->max_connections, 10);
	assert_int_equal(c->max_connections_per_ip, 2);
	assert_int_equal(c->max_sessions_per_user, 1);
	assert_int_equal(c->max_lookups, 0);
	assert_int_equal(c->auth_fail_limit, 3);
	assert_int_equal(c->auth_fail_window, 60);
	assert_int_equal(c->auth_lockout, 300);
	assert_string_equal(c->run_as_user, "nobody");
	assert_string_equal(c->run_as_group, "");
	config_unref(c);
	parse_err("client maybe 10.0.0.0/8\n", "t.conf:1: client: expected allow or deny");
	parse_err("\nrule allow frm 10.0.0.0/8\n", "t.conf:2: rule: unknown selector 'frm'");
	parse_err("auth-fail-limit 3 0\n", "t.conf:1: auth-fail-limit: 0 out of range 1..86400");
	parse_err("run-as :wheel\n", "t.conf:1: run-as: expected USER or USER:GROUP, got ':wheel'");
	parse_err("max-connections -1\n", "t.conf:1: max-connections: '-1' is not a number");
}

/* Parents on rule lines (issue 19): what cannot work is refused with the
 * line, and each parent keeps its own words. */
static void
test_via_errors(void **state)
{
	parse_err("\nrule deny via socks5://h:1\n",
		"t.conf:2: rule: a deny rule sends nothing anywhere: via and resolve belong on "
		"allow "
		"rules");
	parse_err("rule allow cmd udp via http://h:1\n",
		"t.conf:1: rule: cmd udp: no parent in the via list can carry it (http carries "
		"connect; socks4 connect and bind; socks5 and direct all)");
	parse_err("rule allow cmd connect,bind via http://h:1,http://h:3\n",
		"t.conf:1: rule: cmd bind: no parent in the via list can carry it (http "
		"carries connect; socks4 connect and bind; socks5 and direct all)");
	parse_err("rule allow resolve local\n", "t.conf:1: rule: resolve without via");
	parse_err("rule allow via\n", "t.conf:1: rule: missing value after 'via'");
	parse_err("rule allow via socks5://h:1 via direct\n",
		"t.conf:1: rule: duplicate clause 'via'");
	parse_err("rule allow via socks5://h:1 resolve here\n",
		"t.conf:1: rule: expected resolve local or resolve parent");
	parse_err("rule allow via socks5://h:1,socks5://h:1\n",
		"t.conf:1: rule: socks5://h:1 is listed twice in via");
	parse_err("rule allow via socks5://h\n",
		"t.conf:1: rule: a parent needs a port: HOST:PORT");
	parse_err("rule allow via ftp://h:21\n",
		"t.conf:1: rule: unknown parent 'ftp://h:21' (expected direct, socks5://, "
		"socks4:// or http://)");
	parse_err("rule allow via direct,socks5://a:1,socks5://b:1,socks5://c:1,socks5://d:1,"
		  "socks5://e:1,socks5://f:1,socks5://g:1,socks5://h:1\n",
		"t.conf:1: rule: at most 8 parents in a via list");
	parse_err("parent-down-for 0\n", "t.conf:1: parent-down-for: 0 out of range 1..86400");
}

static void
test_max_lookups(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("auth none\n");
	assert_int_equal(c->max_lookups, 1024);
	config_unref(c);
	c = parse_ok("max-lookups 1000000\n");
	assert_int_equal(c->max_lookups, 1000000);
	config_unref(c);
	parse_err("\nmax-lookups 1000001\n",
		"t.conf:2: max-lookups: 1000001 out of range 0..1000000");
	parse_err("max-lookups many\n", "t.conf:1: max-lookups: 'many' is not a number");
	parse_err("max-lookups\n", "t.conf:1: max-lookups: expected 1 argument, got 0");
	parse_err("max-lookups 8\nmax-lookups 9\n",
		"t.conf:2: duplicate 'max-lookups', first at line 1");
}

/* The source of family that a user gets: the user's line over the
 * global setting (as conn_egress merges them), "" for none. */
static const char *
user_source(const struct config *c, const char *user, int family, char *buf, size_t cap)
{
	struct egress e;
	union sockaddr_any a;

	egress_init(&e);
	egress_merge(&e, config_user_egress(c, user));
	egress_merge(&e, &c->egress);
	if (!egress_source(&e, family, (const uint8_t *)"0123456789abcdef", user,
		    (const uint8_t *)"0123456789abcdef", &a))
		return "";
	return addr_ip_format(&a, buf, cap);
}

static void
test_user_external_overrides_global_external(void **state)
{
	struct config *c;
	char buf[ADDR_STRLEN];

	(void)state;
	c = parse_ok("external 192.0.2.1\nuser alice pw external 192.0.2.10 external 2001:db8::10\n"
		     "user bob pw\nuser carol pw external-interface eth1\n");
	assert_string_equal(user_source(c, "alice", AF_INET, buf, sizeof(buf)), "192.0.2.10");
	assert_string_equal(user_source(c, "alice", AF_INET6, buf, sizeof(buf)), "2001:db8::10");
	assert_string_equal(user_source(c, "bob", AF_INET, buf, sizeof(buf)), "192.0.2.1");
	assert_string_equal(user_source(c, NULL, AF_INET, buf, sizeof(buf)), "192.0.2.1");
	assert_string_equal(user_source(c, "bob", AF_INET6, buf, sizeof(buf)), "");
	assert_null(config_user_egress(c, "bob"));
	assert_string_equal(config_user_egress(c, "carol")->ifname, "eth1");
	assert_true(auth_check(c->users, "alice", "pw"));
	config_unref(c);
	parse_err("user a pw external\n", "t.conf:1: user: external: missing value");
	parse_err("user a pw source 1.2.3.4\n",
		"t.conf:1: user: unknown option 'source' (external, external-interface)");
	parse_err("user a pw external host\n",
		"t.conf:1: user: external: bad address 'host' (expected a numeric IPv4 or IPv6 "
		"address)");
	parse_err("user a pw external 1.2.3.4 external 1.2.3.5\n",
		"t.conf:1: user: external: a second IPv4 source");
	parse_err("user a pw socket-mark 1\n",
		"t.conf:1: user: socket-mark: not a user option (external, "
		"external-interface); write it on a rule with 'user NAME'");
	parse_err("user a pw external-interface\n",
		"t.conf:1: user: external-interface: missing value");
}

static void
test_workers_range(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("workers 4\n");
	assert_int_equal(c->workers, 4);
	config_unref(c);
	parse_err("workers 0\n", "t.conf:1: workers: 0 out of range 1..64");
	parse_err("workers 65\n", "t.conf:1: workers: 65 out of range 1..64");
}

static void
test_auth_password_without_users_is_reported_at_auth_line(void **state)
{
	(void)state;
	parse_err("log-level info\nauth password\n\n# end\n",
		"t.conf:2: auth: method 'password' needs at least one user (user or "
		"users-file)");
	parse_err("auth none password\n",
		"t.conf:1: auth: method 'password' needs at least one user (user or "
		"users-file)");
}

static void
test_users_may_follow_auth(void **state)
{
	struct config *c = parse_ok("auth password\nlisten 127.0.0.1:1\nuser bob pw\n");

	(void)state;
	assert_int_equal(auth_table_count(c->users), 1);
	config_unref(c);
}

static void
test_user_plaintext_and_hashed_counted(void **state)
{
	/* crypt("pw", "$6$saltsalt$") */
	struct config *c = parse_ok(
		"user alice pw\n"
		"user bob "
		"$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgoz"
		"kYH9B80bAip/08R2BPH2xk/\n"
		"user \"carol smith\" \"pass word # not a comment\"\n");

	(void)state;
	assert_int_equal(auth_table_count(c->users), 3);
	assert_int_equal(c->nplaintext_users, 2);
	assert_true(auth_table_has(c->users, "carol smith"));
	assert_true(auth_check(c->users, "alice", "pw"));
	assert_true(auth_check(c->users, "bob", "pw"));
	assert_true(auth_check(c->users, "carol smith", "pass word # not a comment"));
	assert_false(auth_check(c->users, "alice", "PW"));
	config_unref(c);
}

static void
test_user_errors(void **state)
{
	char text[600];

	(void)state;
	parse_err("user alice pw\nuser alice other\n", "t.conf:2: user: duplicate user 'alice'");
	parse_err("user \"\" pw\n", "t.conf:1: user: empty user name");
	parse_err("user alice \"\"\n", "t.conf:1: user: empty secret for user 'alice'");
	parse_err("user alice\n", "t.conf:1: user: expected 2 to 32 arguments, got 1");
	parse_err("user alice pw extra\n",
		"t.conf:1: user: unknown option 'extra' (external, external-interface)");
	snprintf(text, sizeof(text), "user %0256d pw\n", 0);
	parse_err(text, "t.conf:1: user: user name longer than 255 bytes");
	snprintf(text, sizeof(text), "user bob %0256d\n", 0);
	parse_err(text, "t.conf:1: user: secret for user 'bob' longer than 255 bytes");
}

static void
test_user_name_and_secret_of_255_bytes(void **state)
{
	char name[256], secret[256], text[600];
	struct config *c;

	(void)state;
	memset(name, 'n', 255);
	name[255] = '\0';
	memset(secret, 's', 255);
	secret[255] = '\0';
	snprintf(text, sizeof(text), "user %s %s\n", name, secret);
	c = parse_ok(text);
	assert_true(auth_check(c->users, name, secret));
	config_unref(c);
}

/* --- users-file --------------------------------------------------------- */

struct tmpdir {
	char path[64];
};

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static char *
join(const char *dir, const char *name)
{
	static char buf[4][512];
	static int next;
	char *b = buf[next++ % 4];

	snprintf(b, sizeof(buf[0]), "%s/%s", dir, name);
	return b;
}

static int
setup_tmpdir(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	snprintf(t->path, sizeof(t->path), "/tmp/test_config.XXXXXX");
	if (!mkdtemp(t->path)) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int
teardown_tmpdir(void **state)
{
	struct tmpdir *t = *state;
	const char *names[] = { "socks5d.conf", "users", "other.conf", "bad-users", "sub/users",
		"sub", "nul.conf" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		(void)remove(join(t->path, names[i]));
	(void)rmdir(t->path);
	free(t);
	return 0;
}

static void
test_users_file_relative_to_config_dir(void **state)
{
	struct tmpdir *t = *state;
	char err[ERRLEN] = "";
	struct config *c = NULL;

	assert_int_equal(mkdir(join(t->path, "sub"), 0700), 0);
	write_file(join(t->path, "sub/users"), "# users\n\nalice:pw\n  bob:b:c  \r\n");
	write_file(join(t->path, "socks5d.conf"),
		"auth password\nuser carol pw\nusers-file sub/users\n");
	/* The working directory is the repository root, not the config's. */
	if (config_load_file(join(t->path, "socks5d.conf"), &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(auth_table_count(c->users), 3);
	assert_int_equal(c->nplaintext_users, 3);
	assert_true(auth_check(c->users, "alice", "pw"));
	assert_true(auth_check(c->users, "bob", "b:c"));
	assert_true(auth_check(c->users, "carol", "pw"));
	assert_string_equal(c->name, join(t->path, "socks5d.conf"));
	/* The path the daemon watches and dumps: resolved against the config's directory. */
	assert_string_equal(c->users_file, join(t->path, "sub/users"));
	assert_false(c->users_file_watch);
	config_unref(c);
}

/* users-file PATH watch (issue 20): the daemon reloads when the file changes. */
static void
test_users_file_watch(void **state)
{
	struct tmpdir *t = *state;
	char text[600];
	struct config *c;

	write_file(join(t->path, "users"), "dave:x\n");
	snprintf(text, sizeof(text), "users-file \"%s\" watch\nauth password\n",
		join(t->path, "users"));
	c = parse_ok(text);
	assert_true(c->users_file_watch);
	assert_string_equal(c->users_file, join(t->path, "users"));
	assert_true(auth_table_has(c->users, "dave"));
	config_unref(c);
	snprintf(text, sizeof(text), "auth password\nusers-file \"%s\" wach\n",
		join(t->path, "users"));
	parse_err(text, "t.conf:2: users-file: unknown option 'wach' (watch)");
}

static void
test_users_file_absolute_path(void **state)
{
	struct tmpdir *t = *state;
	char text[600];
	struct config *c;

	write_file(join(t->path, "users"), "dave:x\n");
	snprintf(text, sizeof(text), "users-file \"%s\"\nauth password\n", join(t->path, "users"));
	c = parse_ok(text);
	assert_true(auth_table_has(c->users, "dave"));
	config_unref(c);
}

static void
test_users_file_errors_propagate(void **state)
{
	struct tmpdir *t = *state;
	char err[ERRLEN] = "", want[ERRLEN];
	struct config *c = NULL;

	write_file(join(t->path, "bad-users"), "ok:pw\n# fine\nnocolon\n");
	write_file(join(t->path, "socks5d.conf"), "\nusers-file bad-users\n");
	assert_int_equal(config_load_file(join(t->path, "socks5d.conf"), &c, err, sizeof(err)), -1);
	assert_null(c);
	snprintf(want, sizeof(want), "%s:3: missing ':' between name and secret",
		join(t->path, "bad-users"));
	assert_string_equal(err, want);

	/* a user in both places */
	write_file(join(t->path, "users"), "alice:pw\n");
	write_file(join(t->path, "socks5d.conf"), "user alice pw\nusers-file users\n");
	assert_int_equal(config_load_file(join(t->path, "socks5d.conf"), &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:1: duplicate user 'alice'", join(t->path, "users"));
	assert_string_equal(err, want);

	/* and the other way round: the file first, then the directive */
	write_file(join(t->path, "socks5d.conf"), "users-file users\nuser alice pw\n");
	assert_int_equal(config_load_file(join(t->path, "socks5d.conf"), &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: user: duplicate user 'alice'",
		join(t->path, "socks5d.conf"));
	assert_string_equal(err, want);

	/* missing file: the resolved path and strerror */
	write_file(join(t->path, "socks5d.conf"), "users-file missing\n");
	assert_int_equal(config_load_file(join(t->path, "socks5d.conf"), &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: %s", join(t->path, "missing"), strerror(ENOENT));
	assert_string_equal(err, want);
}

static void
test_users_file_errors_in_string(void **state)
{
	(void)state;
	parse_err("users-file /nonexistent/socks5d-users\n",
		"/nonexistent/socks5d-users: No such file or directory");
	parse_err("users-file /\n", "/: not a regular file");
	parse_err("users-file \"\"\n", "t.conf:1: users-file: empty path");
	parse_err("users-file\n", "t.conf:1: users-file: expected 1 to 2 arguments, got 0");
	parse_err("users-file a b c\n", "t.conf:1: users-file: expected 1 to 2 arguments, got 3");
}

static void
test_users_file_twice_is_duplicate(void **state)
{
	struct tmpdir *t = *state;
	char text[600], want[ERRLEN];
	struct config *c = NULL;
	char err[ERRLEN];

	write_file(join(t->path, "users"), "erin:x\n");
	snprintf(text, sizeof(text), "users-file %s\n\nusers-file %s\n", join(t->path, "users"),
		join(t->path, "users"));
	assert_int_equal(config_parse_string(text, "t.conf", &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "t.conf:3: duplicate 'users-file', first at line 1");
	assert_string_equal(err, want);
}

/* --- scalar keywords ---------------------------------------------------- */

static void
test_log_level_values(void **state)
{
	static const struct {
		const char *word;
		enum log_level level;
	} v[] = {
		{ "error", LOG_LVL_ERROR },
		{ "warn", LOG_LVL_WARN },
		{ "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG },
	};
	char text[64];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct config *c;
		snprintf(text, sizeof(text), "log-level %s\n", v[i].word);
		c = parse_ok(text);
		assert_int_equal(c->log_level, v[i].level);
		config_unref(c);
	}
	parse_err("log-level loud\n",
		"t.conf:1: log-level: unknown level 'loud' (error, warn, info, debug)");
	parse_err("log-level DEBUG\n",
		"t.conf:1: log-level: unknown level 'DEBUG' (error, warn, info, debug)");
	parse_err("log-level\n", "t.conf:1: log-level: expected 1 argument, got 0");
}

static void
test_log_destination(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("log syslog\n");
	assert_true(c->log_syslog);
	config_unref(c);
	c = parse_ok("log stderr\n");
	assert_false(c->log_syslog);
	config_unref(c);
	parse_err("log journal\n", "t.conf:1: log: unknown destination 'journal' (stderr, syslog)");
	parse_err("log\n", "t.conf:1: log: expected 1 argument, got 0");
}

static void
test_shutdown_timeout(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("shutdown-timeout 0\n");
	assert_int_equal(c->shutdown_timeout, 0);
	config_unref(c);
	c = parse_ok("shutdown-timeout 86400\n");
	assert_int_equal(c->shutdown_timeout, 86400);
	config_unref(c);
	parse_err("shutdown-timeout 86401\n",
		"t.conf:1: shutdown-timeout: 86401 out of range 0..86400");
	parse_err("shutdown-timeout soon\n", "t.conf:1: shutdown-timeout: 'soon' is not a number");
	parse_err("shutdown-timeout\n", "t.conf:1: shutdown-timeout: expected 1 argument, got 0");
}

static void
test_timeout_each_kind(void **state)
{
	struct config *c = parse_ok("timeout handshake 1\n"
				    "timeout connect 86400\n"
				    "timeout idle 0\n"
				    "timeout udp 0\n"
				    "timeout bind 007\n"
				    "timeout dns 30\n");

	(void)state;
	assert_int_equal(c->timeout_dns, 30);
	assert_int_equal(c->timeout_handshake, 1);
	assert_int_equal(c->timeout_connect, 86400);
	assert_int_equal(c->timeout_idle, 0);
	assert_int_equal(c->timeout_udp, 0);
	assert_int_equal(c->timeout_bind, 7);
	config_unref(c);

	/* the ones not given keep their defaults */
	c = parse_ok("timeout idle 60\n");
	assert_int_equal(c->timeout_idle, 60);
	assert_int_equal(c->timeout_handshake, 10);
	assert_int_equal(c->timeout_connect, 10);
	assert_int_equal(c->timeout_udp, 300);
	assert_int_equal(c->timeout_bind, 120);
	/* 0: not set, the resolver takes resolv.conf's value, else 5 s */
	assert_int_equal(c->timeout_dns, 0);
	config_unref(c);
}

/* Issue 20: an administrator who adds users under 'auth none' gets no
 * password check; -t and the start warn when config_users_unused. */
static void
test_users_unused_only_without_password_method(void **state)
{
	static const struct {
		const char *text;
		bool unused;
	} cases[] = {
		{ "auth none\nuser alice pw\n", true },
		{ "auth none password\nuser alice pw\n", false },
		{ "auth password\nuser alice pw\n", false },
		{ "user alice pw\n", false }, /* no auth line: password */
		{ "auth none\n", false },
		{ "log-level info\n", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c = parse_ok(cases[i].text);
		if (config_users_unused(c) != cases[i].unused)
			fail_msg("config_users_unused(\"%s\") is %d", cases[i].text,
				!cases[i].unused);
		config_unref(c);
	}
}

/* dns-attempts N (issue 20): rounds over the nameservers, 1..5 as
 * resolv.conf caps attempts:; unset (0) leaves it to resolv.conf. */
static void
test_dns_attempts(void **state)
{
	struct config *c = parse_ok("dns-attempts 5\n");

	(void)state;
	assert_int_equal(c->dns_attempts, 5);
	config_unref(c);
	c = parse_ok("log-level info\n");
	assert_int_equal(c->dns_attempts, 0);
	config_unref(c);
	parse_err("dns-attempts 0\n", "t.conf:1: dns-attempts: 0 out of range 1..5");
	parse_err("log-level info\ndns-attempts 6\n",
		"t.conf:2: dns-attempts: 6 out of range 1..5");
	parse_err("dns-attempts two\n", "t.conf:1: dns-attempts: 'two' is not a number");
	parse_err("dns-attempts 1\ndns-attempts 2\n",
		"t.conf:2: duplicate 'dns-attempts', first at line 1");
}

/*
 * Every number in the file goes through strnum: digits only. A sign, a
 * blank kept by quotes or a 0x prefix is refused wherever a number is
 * read (values, port ranges, listen ports, rule ports, CIDR prefixes);
 * leading zeros are digits like any other.
 */
static void
test_numbers_are_digits_only_everywhere(void **state)
{
	struct config *c;

	parse_err("workers +1\n", "t.conf:1: workers: '+1' is not a number");
	parse_err("workers \" 1\"\n", "t.conf:1: workers: ' 1' is not a number");
	parse_err("workers \"1 \"\n", "t.conf:1: workers: '1 ' is not a number");
	parse_err("workers 0x1\n", "t.conf:1: workers: '0x1' is not a number");
	parse_err("auth-fail-limit 3 +60\n", "t.conf:1: auth-fail-limit: '+60' is not a number");
	parse_err("udp-port-range +1000-2000\n",
		"t.conf:1: udp-port-range: '+1000' is not a number");
	parse_err("bind-port-range \"1000- 2000\"\n",
		"t.conf:1: bind-port-range: ' 2000' is not a number");
	parse_err("listen 127.0.0.1:+1080\n",
		"t.conf:1: listen: bad address '127.0.0.1:+1080' (expected ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("listen \"127.0.0.1: 1080\"\n",
		"t.conf:1: listen: bad address '127.0.0.1: 1080' (expected ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("nameserver [::1]:+53\n",
		"t.conf:1: nameserver: bad address '[::1]:+53' (expected ADDR, ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("rule allow port +80\n", "t.conf:1: rule: bad port '+80'");
	parse_err("rule allow port 1-+80\n", "t.conf:1: rule: bad port '1-+80'");
	parse_err("client allow 10.0.0.0/+8\n", "t.conf:1: client: bad CIDR '10.0.0.0/+8'");
	parse_err("client allow 10.0.0.0/0x8\n", "t.conf:1: client: bad CIDR '10.0.0.0/0x8'");

	c = parse_ok("workers 007\nlisten 127.0.0.1:01080\nudp-port-range 0100-0200\n"
		     "client allow 10.0.0.0/008\nrule allow port 000080\n");
	assert_int_equal(c->workers, 7);
	assert_int_equal(addr_port(&c->listen[0].addr), 1080);
	assert_int_equal(c->udp_port_lo, 100);
	assert_int_equal(c->udp_port_hi, 200);
	config_unref(c);
}

static void
test_timeout_errors(void **state)
{
	(void)state;
	parse_err("timeout handshake 0\n", "t.conf:1: timeout handshake: 0 out of range 1..86400");
	parse_err("timeout connect 0\n", "t.conf:1: timeout connect: 0 out of range 1..86400");
	parse_err("timeout bind 0\n", "t.conf:1: timeout bind: 0 out of range 1..86400");
	parse_err("timeout idle 86401\n", "t.conf:1: timeout idle: 86401 out of range 0..86400");
	parse_err("timeout udp 99999999999999999999999\n",
		"t.conf:1: timeout udp: 99999999999999999999999 out of range 0..86400");
	parse_err("timeout idle 10s\n", "t.conf:1: timeout idle: '10s' is not a number");
	parse_err("timeout idle -1\n", "t.conf:1: timeout idle: '-1' is not a number");
	parse_err("timeout idle +1\n", "t.conf:1: timeout idle: '+1' is not a number");
	parse_err("timeout idle \"\"\n", "t.conf:1: timeout idle: '' is not a number");
	parse_err("timeout dnss 5\n",
		"t.conf:1: timeout: unknown kind 'dnss' (handshake, connect, idle, udp, bind, "
		"dns)");
	parse_err("timeout dns 0\n", "t.conf:1: timeout dns: 0 out of range 1..30");
	parse_err("timeout dns 31\n", "t.conf:1: timeout dns: 31 out of range 1..30");
	parse_err("timeout dns 1\ntimeout dns 2\n",
		"t.conf:2: duplicate 'timeout dns', first at line 1");
	parse_err("timeout idle\n", "t.conf:1: timeout: expected 2 arguments, got 1");
	parse_err("timeout idle 1 2\n", "t.conf:1: timeout: expected 2 arguments, got 3");
	parse_err("timeout idle 5\ntimeout udp 5\ntimeout idle 6\n",
		"t.conf:3: duplicate 'timeout idle', first at line 1");
}

static void
test_nameserver_forms(void **state)
{
	struct config *c = parse_ok("nameserver 1.1.1.1\n"
				    "nameserver 9.9.9.9:5353\n"
				    "nameserver [2001:db8::1]:53\n"
				    "nameserver ::1\n"
				    "nameserver [::2]\n");

	(void)state;
	assert_int_equal(c->nnameservers, 5);
	assert_addr(&c->nameservers[0], "1.1.1.1:53");
	assert_addr(&c->nameservers[1], "9.9.9.9:5353");
	assert_addr(&c->nameservers[2], "[2001:db8::1]:53");
	assert_addr(&c->nameservers[3], "[::1]:53");
	assert_addr(&c->nameservers[4], "[::2]:53");
	config_unref(c);
}

static void
test_nameserver_errors(void **state)
{
	char text[512];
	size_t n = 0;

	(void)state;
	parse_err("nameserver dns.example\n",
		"t.conf:1: nameserver: bad address 'dns.example' (expected ADDR, ADDR:PORT or "
		"[IPV6]:PORT)");
	parse_err("nameserver 1.1.1.1:0\n", "t.conf:1: nameserver: port 0 is not allowed");
	parse_err("nameserver 1.1.1.1\nnameserver 1.1.1.1:53\n",
		"t.conf:2: nameserver: duplicate address 1.1.1.1:53, first at line 1");
	parse_err("nameserver\n", "t.conf:1: nameserver: expected 1 argument, got 0");
	for (int i = 0; i < CONFIG_MAX_NAMESERVERS + 1; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "nameserver 10.0.0.%d\n", i + 1);
	parse_err(text, "t.conf:9: nameserver: too many nameservers (at most 8)");
}

static void
test_resolve_prefer(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("resolve-prefer ipv6\n");
	assert_int_equal(c->resolve_prefer, AF_INET6);
	config_unref(c);
	c = parse_ok("resolve-prefer ipv4\n");
	assert_int_equal(c->resolve_prefer, AF_INET);
	config_unref(c);
	parse_err("resolve-prefer any\n",
		"t.conf:1: resolve-prefer: unknown family 'any' (ipv4, ipv6)");
	parse_err("resolve-prefer\n", "t.conf:1: resolve-prefer: expected 1 argument, got 0");
}

static void
test_dns_cache(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("dns-cache-size 0\ndns-cache-max-ttl 0\n");
	assert_int_equal(c->dns_cache_size, 0);
	assert_int_equal(c->dns_cache_max_ttl, 0);
	config_unref(c);
	c = parse_ok("dns-cache-size 1000000\ndns-cache-max-ttl 86400\n");
	assert_int_equal(c->dns_cache_size, 1000000);
	assert_int_equal(c->dns_cache_max_ttl, 86400);
	config_unref(c);
	parse_err("dns-cache-size 1000001\n",
		"t.conf:1: dns-cache-size: 1000001 out of range 0..1000000");
	parse_err("dns-cache-size lots\n", "t.conf:1: dns-cache-size: 'lots' is not a number");
	parse_err("dns-cache-size 1e3\n", "t.conf:1: dns-cache-size: '1e3' is not a number");
	parse_err("dns-cache-max-ttl 86401\n",
		"t.conf:1: dns-cache-max-ttl: 86401 out of range 0..86400");
	parse_err("dns-cache-max-ttl 0x10\n",
		"t.conf:1: dns-cache-max-ttl: '0x10' is not a number");
	parse_err("dns-cache-size\n", "t.conf:1: dns-cache-size: expected 1 argument, got 0");
}

static void
test_port_ranges(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("udp-port-range 40000-40100\nbind-port-range 5-5\n");
	assert_int_equal(c->udp_port_lo, 40000);
	assert_int_equal(c->udp_port_hi, 40100);
	assert_int_equal(c->bind_port_lo, 5);
	assert_int_equal(c->bind_port_hi, 5);
	config_unref(c);
	c = parse_ok("bind-port-range 1-65535\n");
	assert_int_equal(c->bind_port_lo, 1);
	assert_int_equal(c->bind_port_hi, 65535);
	config_unref(c);
}

static void
test_port_range_errors(void **state)
{
	(void)state;
	parse_err("udp-port-range 0-10\n", "t.conf:1: udp-port-range: 0 out of range 1..65535");
	parse_err("udp-port-range 1-65536\n",
		"t.conf:1: udp-port-range: 65536 out of range 1..65535");
	parse_err("bind-port-range 200-100\n",
		"t.conf:1: bind-port-range: low port 200 is above high port 100");
	parse_err("bind-port-range 1000\n",
		"t.conf:1: bind-port-range: expected LOW-HIGH, got '1000'");
	parse_err("bind-port-range 1000-\n",
		"t.conf:1: bind-port-range: expected LOW-HIGH, got '1000-'");
	parse_err("bind-port-range -1000\n",
		"t.conf:1: bind-port-range: expected LOW-HIGH, got '-1000'");
	parse_err("udp-port-range a-b\n", "t.conf:1: udp-port-range: 'a' is not a number");
	parse_err("udp-port-range 1-2-3\n", "t.conf:1: udp-port-range: '2-3' is not a number");
	parse_err("udp-port-range 1 - 2\n", "t.conf:1: udp-port-range: expected 1 argument, got 3");
}

static void
test_external(void **state)
{
	struct config *c;
	char buf[ADDR_STRLEN];

	(void)state;
	c = parse_ok("external 192.0.2.1\nexternal 2001:db8::5\n");
	assert_int_equal(c->egress.src[EGRESS_V4].mode, EGRESS_SRC_ADDR);
	assert_int_equal(c->egress.src[EGRESS_V6].mode, EGRESS_SRC_ADDR);
	assert_int_equal(c->egress.src[EGRESS_V4].addr.sa.sa_family, AF_INET);
	assert_int_equal(c->egress.src[EGRESS_V6].addr.sa.sa_family, AF_INET6);
	assert_string_equal(user_source(c, NULL, AF_INET, buf, sizeof(buf)), "192.0.2.1");
	assert_int_equal(addr_port(&c->egress.src[EGRESS_V4].addr), 0);
	assert_string_equal(user_source(c, NULL, AF_INET6, buf, sizeof(buf)), "2001:db8::5");
	config_unref(c);

	c = parse_ok("external 2001:db8::5\n");
	assert_int_equal(c->egress.src[EGRESS_V4].mode, EGRESS_SRC_UNSET);
	assert_int_equal(c->egress.src[EGRESS_V6].mode, EGRESS_SRC_ADDR);
	config_unref(c);

	parse_err("external 192.0.2.1\nexternal 192.0.2.2\n",
		"t.conf:2: duplicate 'external' IPv4 address, first at line 1");
	parse_err("external ::1\n\nexternal 1.2.3.4\nexternal ::2\n",
		"t.conf:4: duplicate 'external' IPv6 address, first at line 1");
	parse_err("external proxy.example\n",
		"t.conf:1: external: bad address 'proxy.example' (expected a numeric IPv4 or "
		"IPv6 address)");
	parse_err("external 1.2.3.4:80\n",
		"t.conf:1: external: bad address '1.2.3.4:80' (expected a numeric IPv4 or IPv6 "
		"address)");
	parse_err("external [::1]\n",
		"t.conf:1: external: bad address '[::1]' (expected a numeric IPv4 or IPv6 "
		"address)");
	parse_err("external\n", "t.conf:1: external: expected 1 to 2 arguments, got 0");
}

/* --- how traffic leaves (issue 19) ----------------------------------------- */

static void write_config(FILE *f, const void *arg);

static void
test_outbound_directives(void **state)
{
	struct config *c;

	(void)state;
	c = parse_ok("external 2001:db8:1::/64 random\nexternal 192.0.2.0/24 hash-user\n"
		     "external-interface eth1\nsocket-mark 7\nip-tos 184\n"
		     "tcp-keepalive 60 10 5\ntcp-user-timeout 30000\nhappy-eyeballs 100\n"
		     "listen 127.0.0.1:1080 backlog 128 proxy-protocol\n"
		     "listen 127.0.0.1:1081\nproxy-protocol-from 127.0.0.1\n"
		     "auth password\nuser alice pw\n");
	assert_int_equal(c->egress.src[EGRESS_V6].mode, EGRESS_SRC_RANDOM);
	assert_int_equal(c->egress.src[EGRESS_V6].prefix, 64);
	assert_int_equal(c->egress.src[EGRESS_V4].mode, EGRESS_SRC_HASH_USER);
	assert_string_equal(c->egress.ifname, "eth1");
	assert_true(c->egress.has_mark);
	assert_int_equal(c->egress.mark, 7);
	assert_int_equal(c->egress.tos, 184);
	assert_int_equal(c->egress.keepalive, 1);
	assert_int_equal(c->egress.keepalive_idle, 60);
	assert_int_equal(c->egress.keepalive_interval, 10);
	assert_int_equal(c->egress.keepalive_count, 5);
	assert_int_equal(c->egress.user_timeout_ms, 30000);
	assert_int_equal(c->happy_eyeballs_ms, 100);
	assert_int_equal(c->egress_interface_line, 3);
	assert_int_equal(c->egress_mark_line, 4);
	assert_int_equal(c->listen[0].backlog, 128);
	assert_true(c->listen[0].proxy_protocol);
	assert_int_equal(c->listen[1].backlog, 4096);
	config_unref(c);
	c = parse_ok("tcp-keepalive off\nhappy-eyeballs off\n");
	assert_int_equal(c->egress.keepalive, 0);
	assert_int_equal(c->happy_eyeballs_ms, 0);
	config_unref(c);
}

static void
test_outbound_directive_errors(void **state)
{
	(void)state;
	parse_err("log-level info\nexternal-interface a/b\n",
		"t.conf:2: external-interface: bad interface name 'a/b' (1 to 15 characters, no "
		"'/', ':' or blanks)");
	parse_err("external-interface eth0\nexternal-interface eth1\n",
		"t.conf:2: duplicate 'external-interface', first at line 1");
	parse_err("socket-mark -1\n", "t.conf:1: socket-mark: '-1' is not a number");
	parse_err("socket-mark 1 2\n", "t.conf:1: socket-mark: expected 1 argument, got 2");
	parse_err("ip-tos 0x10\n", "t.conf:1: ip-tos: '0x10' is not a number");
	parse_err("ip-tos 3\n",
		"t.conf:1: ip-tos: 3 sets the low two bits, which are ECN's (the kernel's): use a "
		"multiple of 4 (DSCP times 4)");
	parse_err("tcp-keepalive 1 2\n",
		"t.conf:1: tcp-keepalive: expected IDLE INTERVAL COUNT (seconds, seconds, probes) "
		"or off");
	parse_err("tcp-keepalive off 1\n", "t.conf:1: tcp-keepalive: unexpected '1'");
	parse_err("tcp-keepalive 1 2 3 4\n",
		"t.conf:1: tcp-keepalive: expected 1 to 3 arguments, "
		"got 4");
	parse_err("tcp-keepalive 0 10 5\n", "t.conf:1: tcp-keepalive: 0 out of range 1..32767");
	parse_err("tcp-user-timeout 86400001\n",
		"t.conf:1: tcp-user-timeout: 86400001 out of range 0..86400000");
	parse_err("happy-eyeballs 5\n", "t.conf:1: happy-eyeballs: 5 out of range 10..10000");
	parse_err("happy-eyeballs on\n", "t.conf:1: happy-eyeballs: 'on' is not a number");
	parse_err("external 2001:db8::/64 random\nexternal 2001:db8::1\n",
		"t.conf:2: duplicate 'external' IPv6 address, first at line 1");
	parse_err("external 2001:db8::/64 random extra\n",
		"t.conf:1: external: expected 1 to 2 arguments, got 3");
	parse_err("external 2001:db8::/64\n",
		"t.conf:1: external: expected random or hash-user after the prefix "
		"'2001:db8::/64'");
	parse_err("external 192.0.2.1 random\n",
		"t.conf:1: external: random needs a prefix (ADDR/LEN), not '192.0.2.1'");
	parse_err("listen 127.0.0.1:1080 backlog\n", "t.conf:1: listen: backlog: missing value");
	parse_err("listen 127.0.0.1:1080 backlog 0\n",
		"t.conf:1: listen: backlog: 0 out of range 1..65535");
	parse_err("listen 127.0.0.1:1080 backlog 1 backlog\n",
		"t.conf:1: listen: duplicate option 'backlog' (proxy-protocol, backlog N)");
	parse_err("listen 127.0.0.1:1080 proxy-protocol proxy-protocol\n",
		"t.conf:1: listen: duplicate option 'proxy-protocol' (proxy-protocol, backlog N)");
	parse_err("rule deny to 10.0.0.0/8 external-interface wg0\n",
		"t.conf:1: rule: only an allow rule can say how traffic leaves");
	parse_err("rule allow to 10.0.0.0/8 external 2001:db8::1\n",
		"t.conf:1: rule: external: an IPv6 source, but every destination of the rule is "
		"IPv4");
}

/* Combinations that can never work, named at the line to change. */
static void
test_outbound_impossible_combinations(void **state)
{
	(void)state;
	/* hash-user hashes the user name: sessions must have one. */
	parse_err("log-level info\nexternal 2001:db8::/64 hash-user\n",
		"t.conf:2: external: hash-user gives each user an address, but no session has a "
		"user: 'auth' does not include password");
	parse_err("auth none\nuser alice pw external 10.0.0.0/8 hash-user\n",
		"t.conf:2: external: hash-user gives each user an address, but no session has a "
		"user: 'auth' does not include password");
	parse_err("\n\nrule allow external 2001:db8::/64 hash-user\n",
		"t.conf:3: external: hash-user gives each user an address, but no session has a "
		"user: 'auth' does not include password");
	config_unref(parse_ok("user alice pw\nexternal 2001:db8::/64 hash-user\n"));
	config_unref(parse_ok("auth password none\nuser alice pw\n"
			      "rule allow external 2001:db8::/64 hash-user\n"));
	/* SO_MARK needs CAP_NET_ADMIN, which run-as gives up. */
	parse_err("run-as nobody\nsocket-mark 3\n",
		"t.conf:2: socket-mark: SO_MARK needs CAP_NET_ADMIN, which run-as gives up; run as "
		"a service user that keeps it (systemd: User= with "
		"AmbientCapabilities=CAP_NET_ADMIN) instead of run-as");
	parse_err("rule allow to 10.0.0.0/8\nrule allow socket-mark 0\nrun-as nobody\n",
		"t.conf:2: socket-mark: SO_MARK needs CAP_NET_ADMIN, which run-as gives up; run as "
		"a service user that keeps it (systemd: User= with "
		"AmbientCapabilities=CAP_NET_ADMIN) instead of run-as");
	config_unref(parse_ok("run-as nobody\nexternal-interface eth0\nip-tos 8\n"));
}

static void
test_outbound_dump_parses_back(void **state)
{
	struct config *c = parse_ok("external 2001:db8:1::/64 random\nexternal 192.0.2.1\n"
				    "external-interface eth1\nsocket-mark 0\nip-tos 32\n"
				    "tcp-keepalive 1 2 3\ntcp-user-timeout 0\nhappy-eyeballs 10\n"
				    "listen 127.0.0.1:1080 backlog 1\nauth password\n"
				    "user alice pw external-interface wg0 external 10.0.0.0/8 "
				    "hash-user\n"
				    "rule allow user alice socket-mark 9 tcp-keepalive off\n");
	char *s1 = unit_capture(write_config, c), *s2;
	struct config *c2;

	(void)state;
	assert_non_null(strstr(s1, "\nlisten 127.0.0.1:1080 backlog 1\n"));
	assert_non_null(strstr(s1,
		"\nexternal 192.0.2.1\nexternal 2001:db8:1::/64 random\n"
		"external-interface eth1\nsocket-mark 0\nip-tos 32\n"
		"tcp-keepalive 1 2 3\ntcp-user-timeout 0\nhappy-eyeballs 10\n"));
	assert_non_null(strstr(s1,
		"\n# user alice: external 10.0.0.0/8 hash-user "
		"external-interface wg0\n"));
	assert_non_null(strstr(s1, "\nrule allow user alice socket-mark 9 tcp-keepalive off\n"));
	/* The user's line is a comment in the dump (no secret): put it back. */
	{
		char *text = malloc(strlen(s1) + 64);
		assert_non_null(text);
		snprintf(text, strlen(s1) + 64, "%suser alice pw\n", s1);
		c2 = parse_ok(text);
		free(text);
	}
	s2 = unit_capture(write_config, c2);
	assert_true(egress_equal(&c->egress, &c2->egress));
	assert_int_equal(c2->happy_eyeballs_ms, 10);
	free(s1);
	free(s2);
	config_unref(c);
	config_unref(c2);
}

/* Every single-valued directive given twice names itself and its first line. */
static void
test_single_valued_directives_twice(void **state)
{
	static const struct {
		const char *line;
		const char *kw;
	} v[] = {
		{ "auth none", "auth" },
		{ "log syslog", "log" },
		{ "log-level debug", "log-level" },
		{ "shutdown-timeout 5", "shutdown-timeout" },
		{ "resolve-prefer ipv6", "resolve-prefer" },
		{ "dns-cache-size 5", "dns-cache-size" },
		{ "dns-cache-max-ttl 5", "dns-cache-max-ttl" },
		{ "udp-port-range 1-2", "udp-port-range" },
		{ "bind-port-range 1-2", "bind-port-range" },
	};
	char text[256], want[256];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(text, sizeof(text), "# first\n%s\n\n%s\n", v[i].line, v[i].line);
		snprintf(want, sizeof(want), "t.conf:4: duplicate '%s', first at line 2", v[i].kw);
		parse_err(text, want);
	}
}

/* --- grammar ------------------------------------------------------------ */

static void
test_unknown_directive(void **state)
{
	(void)state;
	parse_err("\n\nport 1080\n", "t.conf:3: unknown directive 'port'");
	parse_err("Listen 127.0.0.1:1080\n", "t.conf:1: unknown directive 'Listen'");
	parse_err("listen=127.0.0.1:1080\n", "t.conf:1: unknown directive 'listen=127.0.0.1:1080'");
	parse_err("\"\"\n", "t.conf:1: unknown directive ''");
}

static void
test_comments_and_blanks(void **state)
{
	struct config *c = parse_ok("# leading comment\n"
				    "   # indented comment\n"
				    "\n"
				    "\t\n"
				    "log-level debug # trailing comment\n"
				    "dns-cache-size 7#glued comment\n"
				    "  \tresolve-prefer\t ipv6  \n");

	(void)state;
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_int_equal(c->dns_cache_size, 7);
	assert_int_equal(c->resolve_prefer, AF_INET6);
	config_unref(c);
}

static void
test_crlf_and_missing_final_newline(void **state)
{
	struct config *c = parse_ok("log-level warn\r\ntimeout idle 5\r\nresolve-prefer ipv6");

	(void)state;
	assert_int_equal(c->log_level, LOG_LVL_WARN);
	assert_int_equal(c->timeout_idle, 5);
	assert_int_equal(c->resolve_prefer, AF_INET6);
	config_unref(c);
}

static void
test_quotes(void **state)
{
	struct config *c = parse_ok("\"log-level\" \"debug\"\n"
				    "user \"a b\" \"#x y\"\n"
				    "user pre\"fix suf\"fix \"\"\"\"secret\n"
				    "user tab\"\t\"name pw\n");

	(void)state;
	assert_int_equal(c->log_level, LOG_LVL_DEBUG);
	assert_true(auth_check(c->users, "a b", "#x y"));
	/* quotes group, they do not split: pre"fix suf"fix is one word */
	assert_true(auth_check(c->users, "prefix suffix", "secret"));
	assert_true(auth_check(c->users, "tab\tname", "pw"));
	config_unref(c);
}

static void
test_quote_errors(void **state)
{
	(void)state;
	parse_err("user alice \"pw\n", "t.conf:1: unterminated quote");
	parse_err("log-level info\n\"log-level debug\nuser a b\n", "t.conf:2: unterminated quote");
	/* a quote inside a comment is just comment text */
	config_unref(parse_ok("log-level info # say \"hello\n"));
	/* a quote does not run over the end of its line */
	parse_err("user a \"b\nc\"\n", "t.conf:1: unterminated quote");
}

static void
test_argument_count_counts_beyond_storage(void **state)
{
	(void)state;
	/* More words than the parser keeps (32): still counted exactly. */
	parse_err("listen a b c d e f g h i j k l m n o p q r s t u v w x y z "
		  "a b c d e f g h i j k l m n\n",
		"t.conf:1: listen: expected 1 to 4 arguments, got 40");
}

static void
test_error_stops_at_first_line(void **state)
{
	(void)state;
	parse_err("bogus\nlisten nope\n", "t.conf:1: unknown directive 'bogus'");
}

static void
test_error_message_is_truncated_safely(void **state)
{
	struct config *c = (struct config *)1;
	char err[12];

	(void)state;
	assert_int_equal(config_parse_string("bogus-directive\n", "t.conf", &c, err, sizeof(err)),
		-1);
	assert_string_equal(err, "t.conf:1: u");
}

/* --- files -------------------------------------------------------------- */

static void
test_load_file_errors(void **state)
{
	struct tmpdir *t = *state;
	char err[ERRLEN], want[ERRLEN];
	struct config *c = (struct config *)1;
	FILE *f;

	assert_int_equal(config_load_file("/nonexistent/socks5d.conf", &c, err, sizeof(err)), -1);
	assert_null(c);
	assert_string_equal(err, "/nonexistent/socks5d.conf: No such file or directory");

	assert_int_equal(config_load_file(t->path, &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: %s", t->path, strerror(EISDIR));
	assert_string_equal(err, want);

	f = fopen(join(t->path, "nul.conf"), "w");
	assert_non_null(f);
	fwrite("log-level info\nauth\0none\n", 1, 25, f);
	fclose(f);
	assert_int_equal(config_load_file(join(t->path, "nul.conf"), &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", join(t->path, "nul.conf"));
	assert_string_equal(err, want);

	write_file(join(t->path, "other.conf"), "listen [::1]:9\nlog-level loud\n");
	assert_int_equal(config_load_file(join(t->path, "other.conf"), &c, err, sizeof(err)), -1);
	snprintf(want, sizeof(want),
		"%s:2: log-level: unknown level 'loud' (error, warn, info, debug)",
		join(t->path, "other.conf"));
	assert_string_equal(err, want);
}

static void
test_load_file_ok(void **state)
{
	struct tmpdir *t = *state;
	char err[ERRLEN];
	struct config *c = NULL;

	write_file(join(t->path, "other.conf"), "listen [::1]:9\n");
	if (config_load_file(join(t->path, "other.conf"), &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c->nlisten, 1);
	assert_addr(&c->listen[0].addr, "[::1]:9");
	config_unref(c);
}

/* --- dump --------------------------------------------------------------- */

/* For unit_capture: the dump of a config as one string. */
static void
write_config(FILE *f, const void *arg)
{
	config_dump(arg, f);
}

/* auth-workers by default: one less than the CPUs, at least one. */
static unsigned
default_auth_workers(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	return cpus > 2 ? (unsigned)cpus - 1 : 1;
}

static void
test_dump_default(void **state)
{
	struct config *c = config_new_default();
	char *s = unit_capture(write_config, c), want[2048];
	struct rlimit rl;

	/* max-connections: two descriptors a session out of the hard limit,
	 * less a reserve of 256 (issue 17). */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(rl.rlim_max != RLIM_INFINITY && rl.rlim_max > 512);
	snprintf(want, sizeof(want),
		"# socks5d effective configuration\n"
		"listen 127.0.0.1:1080\n"
		"auth none\n"
		"# 0 users (0 with a plain-text secret); secrets are not shown\n"
		"log stderr\n"
		"log-level info\n"
		"timeout handshake 10\n"
		"timeout connect 10\n"
		"timeout idle 3600\n"
		"timeout udp 300\n"
		"timeout bind 120\n"
		"# timeout dns not set: resolv.conf's timeout option, else 5\n"
		"shutdown-timeout 10\n"
		"socks4 on\n"
		"workers 1\n"
		"relay-buffer 262144\n"
		"relay-splice on\n"
		"# nameserver not set: /etc/resolv.conf is used\n"
		"# resolve-prefer not set: IPv6 first for Happy Eyeballs, else IPv4\n"
		"dns-cache-size 10000\n"
		"dns-cache-max-ttl 3600\n"
		"# dns-attempts not set: resolv.conf's attempts option, else 2\n"
		"# udp-port-range not set: any port\n"
		"# bind-port-range not set: any port\n"
		"# external not set: chosen by the kernel\n"
		"# external-interface not set: the routing table chooses\n"
		"# socket-mark not set\n"
		"# ip-tos not set: the kernel's\n"
		"# tcp-user-timeout not set: the kernel's\n"
		"tcp-keepalive 120 30 4\n"
		"happy-eyeballs 250\n"
		"max-connections %u\n"
		"max-connections-per-ip 0\n"
		"max-sessions-per-user 0\n"
		"max-lookups 1024\n"
		"auth-fail-limit 10 60 300\n"
		"auth-workers %u\n"
		"ipv6-prefix 64\n"
		"parent-down-after 3\n"
		"parent-down-for 30\n"
		"quota-timezone +00:00\n"
		"state-dir /var/lib/socks5d\n"
		"log-interim 0\n"
		"# control not set: no control socket\n"
		"metrics-users 100\n",
		(unsigned)((rl.rlim_max - 256) / 2), default_auth_workers());
	assert_string_equal(s, want);
	free(s);
	config_unref(c);
}

static void
test_dump_everything_set_hides_secrets(void **state)
{
	const char *text =
		"external 2001:db8::1\n"
		"external 192.0.2.9\n"
		"happy-eyeballs off\n"
		"tcp-user-timeout 0\n"
		"tcp-keepalive off\n"
		"ip-tos 184\n"
		"external-interface eth1\n"
		"bind-port-range 6000-6010\n"
		"udp-port-range 5000-5010\n"
		"dns-cache-max-ttl 60\n"
		"dns-cache-size 10\n"
		"dns-attempts 1\n"
		"timeout dns 3\n"
		"resolve-prefer ipv6\n"
		"nameserver [::1]:5353\n"
		"nameserver 10.0.0.1\n"
		"timeout bind 5\n"
		"timeout idle 0\n"
		"log-level debug\n"
		"shutdown-timeout 2\n"
		"log syslog\n"
		"user alice topsecret\n"
		"user bob "
		"$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgV"
		"gozkYH9B80bAip/08R2BPH2xk/\n"
		"auth password none\n"
		"listen [::]:1080\n"
		"listen 0.0.0.0:1080\n"
		"client allow 10.0.0.0/8\n"
		"rule deny to *.example.com port 25\n"
		"rule allow to *.onion via socks5://tor:s%40cret@127.0.0.1:9050,direct\n"
		"rule allow cmd connect ip-tos 32 via http://proxy.lan:3128 resolve local rate "
		"10mbit 2mbit\n"
		"max-connections 100\n"
		"max-connections-per-ip 5\n"
		"max-sessions-per-user 3\n"
		"max-lookups 64\n"
		"auth-fail-limit 4 30 600\n"
		"auth-fail-exempt 192.0.2.0/24 2001:db8::/48\n"
		"auth-workers 3\n"
		"ipv6-prefix 56\n"
		"parent-down-after 0\n"
		"parent-down-for 5\n"
		"run-as nobody:nogroup\n";
	struct config *c = parse_ok(text);
	char *s = unit_capture(write_config, c);

	(void)state;
	assert_string_equal(s,
		"# socks5d effective configuration\n"
		"listen [::]:1080\n"
		"listen 0.0.0.0:1080\n"
		"auth password none\n"
		"# 2 users (1 with a plain-text secret); secrets are not shown\n"
		"log syslog\n"
		"log-level debug\n"
		"timeout handshake 10\n"
		"timeout connect 10\n"
		"timeout idle 0\n"
		"timeout udp 300\n"
		"timeout bind 5\n"
		"timeout dns 3\n"
		"shutdown-timeout 2\n"
		"socks4 on\n"
		"workers 1\n"
		"relay-buffer 262144\n"
		"relay-splice on\n"
		"nameserver [::1]:5353\n"
		"nameserver 10.0.0.1:53\n"
		"resolve-prefer ipv6\n"
		"dns-cache-size 10\n"
		"dns-cache-max-ttl 60\n"
		"dns-attempts 1\n"
		"udp-port-range 5000-5010\n"
		"bind-port-range 6000-6010\n"
		"# socket-mark not set\n"
		"external 192.0.2.9\n"
		"external 2001:db8::1\n"
		"external-interface eth1\n"
		"ip-tos 184\n"
		"tcp-keepalive off\n"
		"tcp-user-timeout 0\n"
		"happy-eyeballs off\n"
		"client allow 10.0.0.0/8\n"
		"rule deny to *.example.com port 25\n"
		"rule allow to *.onion via socks5://tor:***@127.0.0.1:9050,direct\n"
		"rule allow cmd connect via http://proxy.lan:3128 resolve local ip-tos 32 rate "
		"10mbit 2mbit\n"
		"max-connections 100\n"
		"max-connections-per-ip 5\n"
		"max-sessions-per-user 3\n"
		"max-lookups 64\n"
		"auth-fail-limit 4 30 600\n"
		"auth-fail-exempt 192.0.2.0/24 2001:db8::/48\n"
		"auth-workers 3\n"
		"ipv6-prefix 56\n"
		"parent-down-after 0\n"
		"parent-down-for 5\n"
		"run-as nobody:nogroup\n"
		"quota-timezone +00:00\n"
		"state-dir /var/lib/socks5d\n"
		"log-interim 0\n"
		"# control not set: no control socket\n"
		"metrics-users 100\n");
	assert_null(strstr(s, "topsecret"));
	assert_null(strstr(s, "s%40cret"));
	assert_null(strstr(s, "$6$"));
	free(s);
	config_unref(c);
}

/* --- limits and quotas (issue 18) ---------------------------------------- */

static void
test_limits_and_their_defaults(void **state)
{
	struct config *c = parse_ok("");
	char *s;

	assert_true(limitset_empty(c->limits));
	assert_string_equal(c->state_dir, "/var/lib/socks5d");
	assert_string_equal(c->control, "");
	assert_int_equal(c->log_interim, 0);
	assert_int_equal(c->metrics_users, 100);
	assert_int_equal(c->limits->tz_min, 0);
	s = unit_capture(write_config, c);
	assert_non_null(strstr(s,
		"\nquota-timezone +00:00\nstate-dir /var/lib/socks5d\n"
		"log-interim 0\n# control not set: no control socket\n"
		"metrics-users 100\n"));
	free(s);
	config_unref(c);

	c = parse_ok("auth password\nuser alice pw\n"
		     "limit user alice rate 20mbit 20mbit\n"
		     "limit user alice quota 50GB month\n"
		     "limit user * rate 5mbit 5mbit\n"
		     "rule allow from 10.0.0.0/8 rate 10mbit unlimited\n"
		     "rule allow all\n"
		     "quota-timezone +02:00\nstate-dir /tmp/st\nlog-interim 60\n"
		     "control /run/socks5d/ctl\nmetrics-users 3\n");
	assert_int_equal(c->limits->n, 3);
	assert_int_equal(c->limits->nrules, 1);
	assert_int_equal(c->limits->rules[0].line, 6);
	assert_string_equal(c->limits->rules[0].key, "allow from 10.0.0.0/8");
	assert_int_equal(c->limits->tz_min, 120);
	assert_string_equal(c->state_dir, "/tmp/st");
	assert_string_equal(c->control, "/run/socks5d/ctl");
	assert_int_equal(c->log_interim, 60);
	assert_int_equal(c->metrics_users, 3);
	s = unit_capture(write_config, c);
	assert_non_null(strstr(s,
		"rule allow from 10.0.0.0/8 rate 10mbit unlimited\n"
		"rule allow all\n"));
	assert_non_null(strstr(s,
		"limit user alice rate 20mbit 20mbit\n"
		"limit user alice quota 50GB month then close\n"
		"limit user * rate 5mbit 5mbit\nquota-timezone +02:00\n"));
	free(s);
	config_unref(c);
}

static void
test_limit_errors_name_file_and_line(void **state)
{
	parse_err("\nlimit user alice rate 1mbit\n",
		"t.conf:2: limit: rate needs two values: UP DOWN");
	parse_err("limit\n", "t.conf:1: limit: expected 2 to 9 arguments, got 0");
	parse_err("limit session rate 1mbit 1mbit\nlimit session rate 2mbit 2mbit\n",
		"t.conf:2: limit: duplicate 'session rate', first at line 1");
	parse_err("rule deny to 10.0.0.0/8 rate 1mbit 1mbit\n",
		"t.conf:1: rule: a rate is for allow rules only");
	parse_err("rule allow all rate 1mbit fast\n",
		"t.conf:1: rule: bad rate 'fast' (expected a number with kbit, mbit or gbit "
		"from 1kbit to 1000gbit, or unlimited)");
	parse_err("quota-timezone 2\n",
		"t.conf:1: quota-timezone: bad offset '2' (expected +HH:MM or -HH:MM, from "
		"-14:00 to +14:00)");
	parse_err("quota-timezone +01:00\nquota-timezone +02:00\n",
		"t.conf:2: duplicate 'quota-timezone', first at line 1");
	parse_err("log-interim 86401\n", "t.conf:1: log-interim: 86401 out of range 0..86400");
	parse_err("metrics-users -1\n", "t.conf:1: metrics-users: '-1' is not a number");
	parse_err("state-dir \"\"\n", "t.conf:1: state-dir: empty path");
	parse_err("control /run/socks5d/a-very-long-name-that-does-not-fit-in-a-unix-socket-"
		  "address-at-all-no-really-it-does-not\n",
		"t.conf:1: control: path too long (at most 99 bytes)");
	/* Workers count on their own: shared limits would be N times over. */
	parse_err("workers 2\nlimit session rate 1mbit 1mbit\nlimit user * quota 1GB day\n",
		"t.conf:3: limit: user, client and rule limits and quotas need workers 1 "
		"(workers 2 at line 1: each worker process would count on its own)");
	parse_err("rule allow all rate 1mbit 1mbit\nworkers 4\n",
		"t.conf:1: limit: user, client and rule limits and quotas need workers 1 "
		"(workers 4 at line 2: each worker process would count on its own)");
	config_unref(parse_ok("workers 2\nlimit session rate 1mbit 1mbit\n"));
}

/* A relative state-dir or control is relative to the file's directory. */
static void
test_limit_paths_are_relative_to_the_file(void **state)
{
	struct config *c = NULL;
	char err[ERRLEN];

	assert_int_equal(config_parse_string("state-dir st\ncontrol run/ctl\n",
				 "/etc/socks5d/socks5d.conf", &c, err, sizeof(err)),
		0);
	assert_string_equal(c->state_dir, "/etc/socks5d/st");
	assert_string_equal(c->control, "/etc/socks5d/run/ctl");
	config_unref(c);
}

static void
test_dump_parses_back_to_same_dump(void **state)
{
	struct config *c = parse_ok(
		"listen [::1]:2\nlisten 127.0.0.1:3\nlog-level error\n"
		"timeout udp 0\nnameserver ::1\nexternal 10.1.1.1\n"
		"timeout dns 2\ndns-attempts 3\n"
		"log syslog\nshutdown-timeout 1\n"
		"udp-port-range 9-10\n"
		"limit client 10.0.0.0/8 quota 1.5TB week then rate 1kbit 1.5mbit\n"
		"limit user \"a b\" rate 1mbit unlimited\n"
		"limit session rate 8kbit 8kbit\n"
		"rule allow to example.com rate 1gbit 2gbit\n"
		"rule allow all\nquota-timezone -09:30\nlog-interim 5\n"
		"control /tmp/c\nmetrics-users 0\nstate-dir /tmp/s\n");
	char *s1 = unit_capture(write_config, c), *s2;
	struct config *c2 = parse_ok(s1);

	(void)state;
	s2 = unit_capture(write_config, c2);
	assert_string_equal(s1, s2);
	free(s1);
	free(s2);
	config_unref(c);
	config_unref(c2);
}

/* --- keywords and docs -------------------------------------------------- */

static void
test_keywords_are_the_documented_set(void **state)
{
	static const char *const want[] = { "listen", "auth", "user", "users-file", "log",
		"log-level", "timeout", "shutdown-timeout", "nameserver", "resolve-prefer",
		"dns-cache-size", "dns-cache-max-ttl", "dns-attempts", "udp-port-range",
		"bind-port-range", "socks4", "workers", "external", "proxy-protocol-from",
		"metrics", "announce", "client", "rule", "relay-buffer", "relay-splice",
		"max-connections", "max-connections-per-ip", "max-sessions-per-user",
		"auth-fail-limit", "run-as", "auth-fail-exempt", "auth-workers", "ipv6-prefix",
		"parent-down-after", "parent-down-for", "max-lookups", "limit", "quota-timezone",
		"state-dir", "log-interim", "control", "metrics-users", "external-interface",
		"socket-mark", "ip-tos", "tcp-keepalive", "tcp-user-timeout", "happy-eyeballs",
		NULL };
	const char *const *kw = config_keywords();
	size_t n = 0;

	(void)state;
	for (; kw[n]; n++)
		;
	assert_int_equal(n, sizeof(want) / sizeof(want[0]) - 1);
	for (size_t i = 0; want[i]; i++) {
		bool found = false;
		for (size_t j = 0; kw[j]; j++)
			found = found || strcmp(kw[j], want[i]) == 0;
		if (!found)
			fail_msg("keyword '%s' missing from config_keywords()", want[i]);
	}
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *s = NULL;
	size_t n = 0, cap = 0, r;

	if (!f)
		fail_msg("cannot open %s (run from the repository root): %s", path,
			strerror(errno));
	do {
		if (cap - n < 4096) {
			cap += 65536;
			s = realloc(s, cap);
			assert_non_null(s);
		}
		r = fread(s + n, 1, cap - n - 1, f);
		n += r;
	} while (r > 0);
	s[n] = '\0';
	fclose(f);
	return s;
}

/* True when some line of text starts with prefix followed by the keyword
 * and then a blank or the end of the line. */
static bool
has_line(const char *text, const char *prefix, const char *kw)
{
	size_t pl = strlen(prefix), kl = strlen(kw);

	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *e;
		if (strncmp(l, prefix, pl) != 0 || strncmp(l + pl, kw, kl) != 0)
			continue;
		e = l + pl + kl;
		if (*e == ' ' || *e == '\t' || *e == '\n' || *e == '\0')
			return true;
	}
	return false;
}

static void
test_every_keyword_in_man_page(void **state)
{
	char *man = slurp("man/socks5d.conf.5");

	(void)state;
	for (const char *const *kw = config_keywords(); *kw; kw++)
		if (!has_line(man, ".It Ic ", *kw))
			fail_msg("man/socks5d.conf.5 has no '.It Ic %s' line", *kw);
	free(man);
}

static void
test_every_keyword_in_example(void **state)
{
	char *ex = slurp("socks5d.conf.example");

	(void)state;
	for (const char *const *kw = config_keywords(); *kw; kw++)
		if (!has_line(ex, "", *kw) && !has_line(ex, "# ", *kw) && !has_line(ex, "#", *kw))
			fail_msg("socks5d.conf.example has no line starting with '%s' or "
				 "'# %s'",
				*kw, *kw);
	free(ex);
}

static void
test_example_parses(void **state)
{
	char err[ERRLEN] = "";
	struct config *c = NULL;

	(void)state;
	if (config_load_file("socks5d.conf.example", &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	config_unref(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_text_gives_defaults),
		cmocka_unit_test(test_comments_only_give_defaults),
		cmocka_unit_test(test_new_default_matches_empty_file),
		cmocka_unit_test(test_ref_unref_keeps_config_alive),
		cmocka_unit_test(test_listen_ipv4_and_ipv6),
		cmocka_unit_test(test_listen_same_port_other_address_is_allowed),
		cmocka_unit_test(test_listen_max_addresses),
		cmocka_unit_test(test_listen_errors),
		cmocka_unit_test(test_auth_methods_in_order),
		cmocka_unit_test(test_auth_errors),
		cmocka_unit_test(test_auth_password_without_users_is_reported_at_auth_line),
		cmocka_unit_test(test_socks4_defaults_follow_auth_and_cannot_bypass_passwords),
		cmocka_unit_test(test_workers_range),
		cmocka_unit_test(test_user_external_overrides_global_external),
		cmocka_unit_test(test_open_proxy_is_refused_with_a_fix),
		cmocka_unit_test(test_rules_limits_run_as),
		cmocka_unit_test(test_via_errors),
		cmocka_unit_test(test_max_lookups),
		cmocka_unit_test(test_proxy_protocol_metrics_announce),
		cmocka_unit_test(test_users_may_follow_auth),
		cmocka_unit_test(test_user_plaintext_and_hashed_counted),
		cmocka_unit_test(test_user_errors),
		cmocka_unit_test(test_user_name_and_secret_of_255_bytes),
		cmocka_unit_test_setup_teardown(test_users_file_relative_to_config_dir,
			setup_tmpdir, teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_users_file_watch, setup_tmpdir,
			teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_users_file_absolute_path, setup_tmpdir,
			teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_users_file_errors_propagate, setup_tmpdir,
			teardown_tmpdir),
		cmocka_unit_test(test_users_file_errors_in_string),
		cmocka_unit_test_setup_teardown(test_users_file_twice_is_duplicate, setup_tmpdir,
			teardown_tmpdir),
		cmocka_unit_test(test_log_level_values),
		cmocka_unit_test(test_log_destination),
		cmocka_unit_test(test_shutdown_timeout),
		cmocka_unit_test(test_timeout_each_kind),
		cmocka_unit_test(test_numbers_are_digits_only_everywhere),
		cmocka_unit_test(test_timeout_errors),
		cmocka_unit_test(test_dns_attempts),
		cmocka_unit_test(test_users_unused_only_without_password_method),
		cmocka_unit_test(test_nameserver_forms),
		cmocka_unit_test(test_nameserver_errors),
		cmocka_unit_test(test_resolve_prefer),
		cmocka_unit_test(test_dns_cache),
		cmocka_unit_test(test_port_ranges),
		cmocka_unit_test(test_port_range_errors),
		cmocka_unit_test(test_external),
		cmocka_unit_test(test_outbound_directives),
		cmocka_unit_test(test_outbound_directive_errors),
		cmocka_unit_test(test_outbound_impossible_combinations),
		cmocka_unit_test(test_outbound_dump_parses_back),
		cmocka_unit_test(test_single_valued_directives_twice),
		cmocka_unit_test(test_unknown_directive),
		cmocka_unit_test(test_comments_and_blanks),
		cmocka_unit_test(test_crlf_and_missing_final_newline),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_quote_errors),
		cmocka_unit_test(test_argument_count_counts_beyond_storage),
		cmocka_unit_test(test_error_stops_at_first_line),
		cmocka_unit_test(test_error_message_is_truncated_safely),
		cmocka_unit_test_setup_teardown(test_load_file_errors, setup_tmpdir,
			teardown_tmpdir),
		cmocka_unit_test_setup_teardown(test_load_file_ok, setup_tmpdir, teardown_tmpdir),
		cmocka_unit_test(test_dump_default),
		cmocka_unit_test(test_dump_everything_set_hides_secrets),
		cmocka_unit_test(test_dump_parses_back_to_same_dump),
		cmocka_unit_test(test_limits_and_their_defaults),
		cmocka_unit_test(test_limit_errors_name_file_and_line),
		cmocka_unit_test(test_limit_paths_are_relative_to_the_file),
		cmocka_unit_test(test_keywords_are_the_documented_set),
		cmocka_unit_test(test_every_keyword_in_man_page),
		cmocka_unit_test(test_every_keyword_in_example),
		cmocka_unit_test(test_example_parses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
