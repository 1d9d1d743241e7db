/*
 * test_acl: client and request rules — parsing of every selector and every
 * error message in full, CIDR edge cases (prefix 0 and full length, bare
 * addresses, host bits, IPv4-mapped IPv6), port ranges, domain and suffix
 * matching, first match wins, the undecided-until-resolved result, and that
 * the dump parses back to the same rules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "acl.h"
#include "addr.h"

#include "unit_util.h"

#define ERRLEN 1024
#define MAXWORDS 64

/* Words of one rule, split the way the config parser does: on spaces, with
 * double quotes grouping (and removed). */
struct words {
	char buf[1024];
	char *argv[MAXWORDS + 1];
};

static char **
split(struct words *w, const char *s)
{
	size_t o = 0;
	int n = 0;

	assert_true(strlen(s) < sizeof(w->buf));
	while (*s != '\0') {
		bool quoted = false;

		while (*s == ' ')
			s++;
		if (*s == '\0')
			break;
		assert_true(n < MAXWORDS);
		w->argv[n++] = &w->buf[o];
		while (*s != '\0' && (quoted || *s != ' ')) {
			if (*s == '"')
				quoted = !quoted;
			else
				w->buf[o++] = *s;
			s++;
		}
		w->buf[o++] = '\0';
	}
	w->argv[n] = NULL;
	return w->argv;
}

static void
add_client(struct acl *a, const char *rule, int line)
{
	struct words w;
	char err[ERRLEN] = "";

	if (acl_add_client_rule(a, split(&w, rule), line, err, sizeof(err)) != 0)
		fail_msg("client rule <<%s>>: %s", rule, err);
}

static void
add_request(struct acl *a, const char *rule, int line)
{
	struct words w;
	char err[ERRLEN] = "";

	if (acl_add_request_rule(a, split(&w, rule), line, err, sizeof(err)) != 0)
		fail_msg("request rule <<%s>>: %s", rule, err);
}

/* Asserts the whole message, and that the failed rule was not added. */
static void
client_err(const char *rule, const char *want)
{
	struct acl *a = acl_new();
	struct words w;
	char err[ERRLEN] = "";

	assert_non_null(a);
	if (acl_add_client_rule(a, split(&w, rule), 1, err, sizeof(err)) != -1)
		fail_msg("no error for client <<%s>>, wanted: %s", rule, want);
	assert_string_equal(err, want);
	assert_int_equal(acl_client_rule_count(a), 0);
	acl_free(a);
}

static void
request_err(const char *rule, const char *want)
{
	struct acl *a = acl_new();
	struct words w;
	char err[ERRLEN] = "";

	assert_non_null(a);
	if (acl_add_request_rule(a, split(&w, rule), 1, err, sizeof(err)) != -1)
		fail_msg("no error for rule <<%s>>, wanted: %s", rule, want);
	assert_string_equal(err, want);
	assert_int_equal(acl_request_rule_count(a), 0);
	acl_free(a);
}

/* For unit_capture: the dump of an acl as one string. */
static void
write_acl(FILE *f, const void *arg)
{
	acl_dump(arg, f);
}

static void
assert_dump(const struct acl *a, const char *want)
{
	char *got = unit_capture(write_acl, a);

	assert_string_equal(got, want);
	free(got);
}

/* The dump of one request rule, without "rule " and the newline. */
static void
request_dump_is(const char *rule, const char *want)
{
	struct acl *a = acl_new();
	char full[512];

	assert_non_null(a);
	add_request(a, rule, 1);
	snprintf(full, sizeof(full), "rule %s\n", want);
	assert_dump(a, full);
	acl_free(a);
}

static union sockaddr_any
ip(const char *s)
{
	return unit_addr(s, 0);
}

static bool
cidr_matches(const char *cidr, const char *addr)
{
	struct acl_cidr c;
	union sockaddr_any sa = ip(addr);

	if (acl_parse_cidr(cidr, &c) != 0)
		fail_msg("bad test CIDR %s", cidr);
	return acl_cidr_match(&c, &sa);
}

/* One request; NULL strings mean "not known". */
static struct acl_result
check(const struct acl *a, const char *client, const char *user, unsigned cmd, const char *name,
	const char *dst, uint16_t port)
{
	union sockaddr_any c, d;
	struct acl_request r;

	memset(&r, 0, sizeof(r));
	if (client != NULL) {
		c = ip(client);
		r.client = &c;
	}
	if (dst != NULL) {
		d = ip(dst);
		r.dst_addr = &d;
	}
	r.user = user;
	r.cmd = cmd;
	r.dst_name = name;
	r.port = port;
	return acl_check_request(a, &r);
}

static void
assert_result(struct acl_result res, enum acl_verdict verdict, int line, bool to_addr)
{
	assert_int_equal(res.verdict, verdict);
	assert_int_equal(res.line, line);
	assert_int_equal(res.to_addr, to_addr);
}

/* A plain connect to name/dst:port from 192.0.2.1 without a user. */
static struct acl_result
connect_to(const struct acl *a, const char *name, const char *dst, uint16_t port)
{
	return check(a, "192.0.2.1", NULL, ACL_CMD_CONNECT, name, dst, port);
}

/* A UDP ASSOCIATE request itself from 192.0.2.1: no destination yet. */
static struct acl_result
udp_request(const struct acl *a, const char *user)
{
	union sockaddr_any c = ip("192.0.2.1");
	struct acl_request r;

	memset(&r, 0, sizeof(r));
	r.client = &c;
	r.user = user;
	r.cmd = ACL_CMD_UDP;
	r.dst_unknown = true;
	return acl_check_request(a, &r);
}

static int
setup(void **state)
{
	*state = acl_new();
	return *state == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	acl_free(*state);
	return 0;
}

/* --- parsing ------------------------------------------------------------- */

static void
test_verdict_word_required(void **state)
{
	struct acl *a = *state;
	char *none[] = { NULL };
	char err[ERRLEN];

	client_err("permit 10.0.0.0/8", "expected allow or deny");
	request_err("permit all", "expected allow or deny");
	request_err("ALLOW all", "expected allow or deny");
	request_err("to example.com", "expected allow or deny");
	assert_int_equal(acl_add_client_rule(a, none, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "expected allow or deny");
	assert_int_equal(acl_add_request_rule(a, none, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "expected allow or deny");
}

static void
test_client_rule_needs_an_address(void **state)
{
	(void)state;
	client_err("allow", "missing value after 'allow'");
	client_err("deny", "missing value after 'deny'");
}

static void
test_cidr_errors_named(void **state)
{
	(void)state;
	client_err("allow x", "bad CIDR 'x'");
	client_err("allow 10.0.0.0/33", "prefix length 33 out of range for IPv4");
	client_err("allow ::/129", "prefix length 129 out of range for IPv6");
	client_err("allow 10.0.0.0/1000", "prefix length 1000 out of range for IPv4");
	client_err("allow 10.0.0.0/99999999999999999999",
		"prefix length 99999999999999999999 out of range for IPv4");
	client_err("allow 10.0.0.0/", "bad CIDR '10.0.0.0/'");
	client_err("allow 10.0.0.0/-1", "bad CIDR '10.0.0.0/-1'");
	client_err("allow 10.0.0.0/+8", "bad CIDR '10.0.0.0/+8'");
	client_err("allow 10.0.0.0/8/8", "bad CIDR '10.0.0.0/8/8'");
	client_err("allow /8", "bad CIDR '/8'");
	client_err("allow 1.2.3", "bad CIDR '1.2.3'");
	client_err("allow 1.2.3.256", "bad CIDR '1.2.3.256'");
	client_err("allow 010.0.0.1", "bad CIDR '010.0.0.1'");
	client_err("allow fe80::1%eth0", "bad CIDR 'fe80::1%eth0'");
	client_err("allow 10.0.0.0/8,::1", "bad CIDR '10.0.0.0/8,::1'");
	/* The first bad word is named even after good ones. */
	client_err("allow 10.0.0.0/8 ::1 nope", "bad CIDR 'nope'");
}

static void
test_client_rules_first_match_wins(void **state)
{
	struct acl *a = *state;
	union sockaddr_any sa;
	struct acl_result r;

	r = acl_check_client(a, &(union sockaddr_any){ .sin = { .sin_family = AF_INET } });
	assert_result(r, ACL_ALLOW, 0, false);
	add_client(a, "deny 10.1.0.0/16", 3);
	add_client(a, "allow 10.0.0.0/8 2001:db8::/32", 4);
	add_client(a, "deny all", 5);
	assert_int_equal(acl_client_rule_count(a), 3);
	sa = ip("10.1.2.3");
	assert_result(acl_check_client(a, &sa), ACL_DENY, 3, false);
	sa = ip("10.2.3.4");
	assert_result(acl_check_client(a, &sa), ACL_ALLOW, 4, false);
	sa = ip("2001:db8::5");
	assert_result(acl_check_client(a, &sa), ACL_ALLOW, 4, false);
	sa = ip("192.168.1.1");
	assert_result(acl_check_client(a, &sa), ACL_DENY, 5, false);
	/* A dual-stack listener reports IPv4 clients as mapped. */
	sa = ip("::ffff:10.1.2.3");
	assert_result(acl_check_client(a, &sa), ACL_DENY, 3, false);
	sa = ip("::ffff:10.9.9.9");
	assert_result(acl_check_client(a, &sa), ACL_ALLOW, 4, false);
}

static void
test_client_no_match_allows(void **state)
{
	struct acl *a = *state;
	union sockaddr_any sa = ip("192.0.2.7");

	add_client(a, "deny 10.0.0.0/8", 1);
	assert_result(acl_check_client(a, &sa), ACL_ALLOW, 0, false);
}

static void
test_cidr_prefix_zero_and_families(void **state)
{
	(void)state;
	assert_true(cidr_matches("0.0.0.0/0", "1.2.3.4"));
	assert_true(cidr_matches("0.0.0.0/0", "255.255.255.255"));
	assert_true(cidr_matches("0.0.0.0/0", "::ffff:1.2.3.4"));
	assert_false(cidr_matches("0.0.0.0/0", "2001:db8::1"));
	assert_false(cidr_matches("0.0.0.0/0", "::1"));
	assert_true(cidr_matches("::/0", "2001:db8::1"));
	assert_true(cidr_matches("::/0", "::"));
	assert_false(cidr_matches("::/0", "1.2.3.4"));
	assert_false(cidr_matches("::/0", "::ffff:1.2.3.4"));
	assert_true(cidr_matches("all", "1.2.3.4"));
	assert_true(cidr_matches("all", "::ffff:1.2.3.4"));
	assert_true(cidr_matches("all", "2001:db8::1"));
}

static void
test_cidr_full_length_and_bare(void **state)
{
	struct acl_cidr c;

	(void)state;
	assert_true(cidr_matches("192.0.2.1/32", "192.0.2.1"));
	assert_false(cidr_matches("192.0.2.1/32", "192.0.2.0"));
	assert_false(cidr_matches("192.0.2.1/32", "192.0.2.2"));
	assert_true(cidr_matches("192.0.2.1", "192.0.2.1"));
	assert_false(cidr_matches("192.0.2.1", "192.0.2.3"));
	assert_int_equal(acl_parse_cidr("192.0.2.1", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 32);
	assert_false(c.any);
	assert_true(cidr_matches("2001:db8::1/128", "2001:db8::1"));
	assert_false(cidr_matches("2001:db8::1/128", "2001:db8::2"));
	assert_true(cidr_matches("::1", "::1"));
	assert_false(cidr_matches("::1", "::2"));
	assert_int_equal(acl_parse_cidr("::1", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.prefix, 128);
	assert_int_equal(acl_parse_cidr("all", &c), 0);
	assert_true(c.any);
	assert_int_equal(acl_parse_cidr("", &c), -1);
	assert_int_equal(acl_parse_cidr("ALL", &c), -1);
}

static void
test_cidr_host_bits_masked(void **state)
{
	struct acl *a = *state;
	struct acl_cidr c;

	assert_int_equal(acl_parse_cidr("10.1.2.3/8", &c), 0);
	assert_int_equal(c.addr[0], 10);
	assert_int_equal(c.addr[1], 0);
	assert_int_equal(c.addr[3], 0);
	assert_true(cidr_matches("10.1.2.3/8", "10.200.0.1"));
	assert_false(cidr_matches("10.1.2.3/8", "11.1.2.3"));
	/* Prefixes that end inside a byte. */
	assert_true(cidr_matches("10.255.0.0/9", "10.128.0.1"));
	assert_false(cidr_matches("10.255.0.0/9", "10.127.255.255"));
	assert_true(cidr_matches("192.0.2.3/31", "192.0.2.2"));
	assert_false(cidr_matches("192.0.2.3/31", "192.0.2.4"));
	assert_true(cidr_matches("2001:db8::ffff/127", "2001:db8::fffe"));
	assert_false(cidr_matches("2001:db8::ffff/127", "2001:db8::1:0"));
	add_client(a, "allow 10.1.2.3/8 2001:db8:1:2::7/33 192.0.2.3/31", 1);
	assert_dump(a, "client allow 10.0.0.0/8 2001:db8::/33 192.0.2.2/31\n");
}

static void
test_cidr_ipv4_mapped(void **state)
{
	struct acl *a = *state;
	struct acl_cidr c;
	union sockaddr_any un;

	(void)a;
	assert_true(cidr_matches("10.0.0.0/8", "::ffff:10.1.2.3"));
	assert_false(cidr_matches("10.0.0.0/8", "::ffff:11.1.2.3"));
	assert_true(cidr_matches("10.1.2.3", "::ffff:10.1.2.3"));
	/* A mapped network is the IPv4 network: both spellings match. */
	assert_int_equal(acl_parse_cidr("::ffff:10.0.0.0/104", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.prefix, 8);
	assert_true(cidr_matches("::ffff:10.0.0.0/104", "10.9.8.7"));
	assert_true(cidr_matches("::ffff:10.0.0.0/104", "::ffff:10.9.8.7"));
	assert_false(cidr_matches("::ffff:10.0.0.0/104", "11.0.0.1"));
	assert_true(cidr_matches("::ffff:0:0/96", "203.0.113.9"));
	/* Shorter than /96 stays an IPv6 prefix. */
	assert_int_equal(acl_parse_cidr("::ffff:0:0/80", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	add_client(a, "deny ::ffff:10.0.0.0/104 ::ffff:192.0.2.1", 1);
	assert_dump(a, "client deny 10.0.0.0/8 192.0.2.1\n");
	/* Not an IP address: never matches, not even "all". */
	memset(&un, 0, sizeof(un));
	un.sa.sa_family = AF_UNIX;
	assert_int_equal(acl_parse_cidr("all", &c), 0);
	assert_false(acl_cidr_match(&c, &un));
	assert_false(acl_cidr_match(&c, NULL));
}

static void
test_request_selector_errors(void **state)
{
	(void)state;
	request_err("allow frm 10.0.0.0/8", "unknown selector 'frm'");
	request_err("allow 10.0.0.0/8", "unknown selector '10.0.0.0/8'");
	request_err("allow to", "missing value after 'to'");
	request_err("allow from", "missing value after 'from'");
	request_err("allow port", "missing value after 'port'");
	request_err("allow cmd", "missing value after 'cmd'");
	request_err("allow user", "missing value after 'user'");
	request_err("allow to a.com port", "missing value after 'port'");
	request_err("allow port 80 port 81", "duplicate selector 'port'");
	request_err("allow from 10.0.0.0/8 to a.com from ::1", "duplicate selector 'from'");
	request_err("allow to a.com to b.com", "duplicate selector 'to'");
	request_err("allow cmd bind cmd udp", "duplicate selector 'cmd'");
	request_err("allow user a user b", "duplicate selector 'user'");
	request_err("allow all all", "duplicate selector 'all'");
	/* A selector's value is never read as a selector. */
	request_err("deny to port 80", "unknown selector '80'");
}

static void
test_request_value_errors(void **state)
{
	(void)state;
	request_err("allow from nope", "bad CIDR 'nope'");
	request_err("allow from 10.0.0.0/33", "prefix length 33 out of range for IPv4");
	request_err("allow from 10.0.0.0/8,", "empty item in 'from' list");
	request_err("allow to ,a.com", "empty item in 'to' list");
	request_err("allow to a.com,,b.com", "empty item in 'to' list");
	request_err("allow cmd connect,", "empty item in 'cmd' list");
	request_err("allow user alice,", "empty item in 'user' list");
	request_err("allow to 1.2.3", "bad CIDR '1.2.3'");
	request_err("allow to 10.0.0.0/33", "prefix length 33 out of range for IPv4");
	request_err("allow to 2001:db8::/200", "prefix length 200 out of range for IPv6");
	request_err("allow to a.com,10.0.0.0/", "bad CIDR '10.0.0.0/'");
	request_err("allow to *", "bad domain '*'");
	request_err("allow to *.", "bad domain '*.'");
	request_err("allow to *example.com", "bad domain '*example.com'");
	request_err("allow to a.*.com", "bad domain 'a.*.com'");
	request_err("allow to a..com", "bad domain 'a..com'");
	request_err("allow to .a.com", "bad domain '.a.com'");
	request_err("allow to a.com..", "bad domain 'a.com..'");
	request_err("allow to \"a b.com\"", "bad domain 'a b.com'");
	request_err("allow to ex!ample.com", "bad domain 'ex!ample.com'");
	request_err("deny to ALL",
		"ambiguous target 'ALL' (use all, or all. for a host named all)");
	request_err("deny to a.com,All",
		"ambiguous target 'All' (use all, or all. for a host named all)");
	request_err("allow cmd foo", "unknown command 'foo' (expected connect, bind, udp)");
	request_err("allow cmd connect,CONNECT",
		"unknown command 'CONNECT' (expected connect, bind, udp)");
}

/* Names the config grammar could not print back: it has no escape for '"'
 * and a control character would end or garble the line. */
static void
test_user_names_must_print_back(void **state)
{
	struct acl *a = *state;
	char quote[] = "a\"b", nl[] = "a\nb", del[] = "a\x7f", allow[] = "allow", user[] = "user";
	char *argv[] = { allow, user, quote, NULL };
	char err[ERRLEN], longname[300];

	assert_int_equal(acl_add_request_rule(a, argv, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "bad user name 'a\"b'");
	argv[2] = nl;
	assert_int_equal(acl_add_request_rule(a, argv, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "bad user name 'a\nb'");
	argv[2] = del;
	assert_int_equal(acl_add_request_rule(a, argv, 1, err, sizeof(err)), -1);
	/* RFC 1929 user names are at most 255 bytes. */
	memset(longname, 'u', 255);
	longname[255] = '\0';
	argv[2] = longname;
	assert_int_equal(acl_add_request_rule(a, argv, 1, err, sizeof(err)), 0);
	longname[255] = 'u';
	longname[256] = '\0';
	assert_int_equal(acl_add_request_rule(a, argv, 1, err, sizeof(err)), -1);
	assert_int_equal(acl_request_rule_count(a), 1);
	request_dump_is("allow user \"a b\",c#d,é", "allow user \"a b,c#d,é\"");
}

static void
test_domain_length_limits(void **state)
{
	char label[80], name[300], rule[400], want[400];
	size_t i;

	(void)state;
	memset(label, 'a', 63);
	label[63] = '\0';
	snprintf(rule, sizeof(rule), "allow to %s.com", label);
	request_dump_is(rule, rule);
	label[63] = 'a';
	label[64] = '\0';
	snprintf(rule, sizeof(rule), "allow to %s.com", label);
	snprintf(want, sizeof(want), "bad domain '%s.com'", label);
	request_err(rule, want);
	/* 253 characters is the longest name (RFC 1035 §2.3.4 less the
	 * root's dot), with or without the trailing dot. */
	for (i = 0; i < 253; i++)
		name[i] = (i % 2) ? '.' : 'a';
	name[253] = '\0';
	snprintf(rule, sizeof(rule), "allow to %s", name);
	request_dump_is(rule, rule);
	snprintf(want, sizeof(want), "allow to %s", name);
	snprintf(rule, sizeof(rule), "allow to %s.", name);
	request_dump_is(rule, want);
	snprintf(rule, sizeof(rule), "allow to *.%s", name + 2);
	request_dump_is(rule, rule);
	snprintf(rule, sizeof(rule), "allow to b.%s", name);
	snprintf(want, sizeof(want), "bad domain 'b.%s'", name);
	request_err(rule, want);
}

static void
test_port_errors(void **state)
{
	(void)state;
	request_err("allow port 9-3", "bad port range '9-3'");
	request_err("allow port 0", "port 0 out of range (1-65535)");
	request_err("allow port 0-80", "port 0 out of range (1-65535)");
	request_err("allow port 65536", "port 65536 out of range (1-65535)");
	request_err("allow port 80-65536", "port 65536 out of range (1-65535)");
	request_err("allow port 123456789012", "port 123456789012 out of range (1-65535)");
	request_err("allow port http", "bad port 'http'");
	request_err("allow port -80", "bad port '-80'");
	request_err("allow port 80-", "bad port '80-'");
	request_err("allow port +80", "bad port '+80'");
	request_err("allow port 80,443", "bad port '80,443'");
	request_err("allow port 1-2-3", "bad port '1-2-3'");
	request_err("allow port \"\"", "bad port ''");
}

static void
test_port_boundaries(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny port 1", 1);
	add_request(a, "deny port 65535", 2);
	add_request(a, "allow port 1000-2000", 3);
	add_request(a, "deny all", 4);
	assert_result(connect_to(a, NULL, "192.0.2.9", 1), ACL_DENY, 1, false);
	assert_result(connect_to(a, NULL, "192.0.2.9", 65535), ACL_DENY, 2, false);
	assert_result(connect_to(a, NULL, "192.0.2.9", 999), ACL_DENY, 4, false);
	assert_result(connect_to(a, NULL, "192.0.2.9", 1000), ACL_ALLOW, 3, false);
	assert_result(connect_to(a, NULL, "192.0.2.9", 2000), ACL_ALLOW, 3, false);
	assert_result(connect_to(a, NULL, "192.0.2.9", 2001), ACL_DENY, 4, false);
	assert_result(connect_to(a, NULL, "192.0.2.9", 2), ACL_DENY, 4, false);
	request_dump_is("allow port 1-65535", "allow port 1-65535");
	request_dump_is("allow port 80-80", "allow port 80");
	request_dump_is("allow port 00080", "allow port 80");
}

/* --- matching ------------------------------------------------------------ */

static void
test_domain_match_exact_and_suffix(void **state)
{
	(void)state;
	assert_true(acl_domain_match("example.com", "example.com"));
	assert_true(acl_domain_match("example.com", "EXAMPLE.com."));
	assert_true(acl_domain_match("EXAMPLE.COM.", "example.com"));
	assert_false(acl_domain_match("example.com", "a.example.com"));
	assert_false(acl_domain_match("example.com", "badexample.com"));
	assert_false(acl_domain_match("example.com", "example.co"));
	assert_false(acl_domain_match("example.com", "example.com.."));
	assert_false(acl_domain_match("example.com", ""));
	assert_true(acl_domain_match("*.example.com", "a.example.com"));
	assert_true(acl_domain_match("*.example.com", "a.b.example.com"));
	assert_true(acl_domain_match("*.example.com", "A.EXAMPLE.com."));
	assert_true(acl_domain_match("*.example.com.", "a.example.com"));
	assert_false(acl_domain_match("*.example.com", "example.com"));
	assert_false(acl_domain_match("*.example.com", "EXAMPLE.com."));
	assert_false(acl_domain_match("*.example.com", "badexample.com"));
	assert_false(acl_domain_match("*.example.com", ".example.com"));
	assert_false(acl_domain_match("*.example.com", "a.example.com.evil"));
	assert_false(acl_domain_match("*.example.com", NULL));
	assert_false(acl_domain_match(NULL, "example.com"));
	/* Degenerate patterns (refused by the parser) match nothing. */
	assert_false(acl_domain_match("*.", "example.com"));
	assert_false(acl_domain_match("*..", "example.com"));
	assert_false(acl_domain_match("", ""));
	assert_false(acl_domain_match(".", "."));
}

static void
test_to_domain_rules(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny to EXAMPLE.com.", 1);
	add_request(a, "deny to *.Example.COM", 2);
	assert_dump(a, "rule deny to example.com\nrule deny to *.example.com\n");
	assert_result(connect_to(a, "example.com", NULL, 80), ACL_DENY, 1, false);
	assert_result(connect_to(a, "Example.Com.", NULL, 80), ACL_DENY, 1, false);
	assert_result(connect_to(a, "a.example.com", NULL, 80), ACL_DENY, 2, false);
	assert_result(connect_to(a, "a.b.example.com", NULL, 80), ACL_DENY, 2, false);
	assert_result(connect_to(a, "badexample.com", NULL, 80), ACL_ALLOW, 0, false);
	assert_result(connect_to(a, "example.org", "192.0.2.5", 80), ACL_ALLOW, 0, false);
}

static void
test_domain_target_needs_a_name(void **state)
{
	struct acl *a = *state;

	/* A request by address never matches a domain, even once resolved
	 * names would agree: the rule is about what was asked for. */
	add_request(a, "deny to example.com,*.example.com", 1);
	assert_result(connect_to(a, NULL, "93.184.216.34", 80), ACL_ALLOW, 0, false);
	/* Domain-only rules never wait for the address. */
	assert_result(connect_to(a, "example.org", NULL, 80), ACL_ALLOW, 0, false);
	assert_result(connect_to(a, NULL, NULL, 80), ACL_ALLOW, 0, false);
}

static void
test_first_match_wins(void **state)
{
	struct acl *a = *state;

	add_request(a, "allow to ok.example.com", 10);
	add_request(a, "deny to *.example.com", 11);
	add_request(a, "allow to *.example.com", 12);
	add_request(a, "deny all", 13);
	assert_result(connect_to(a, "ok.example.com", NULL, 443), ACL_ALLOW, 10, false);
	assert_result(connect_to(a, "x.example.com", NULL, 443), ACL_DENY, 11, false);
	assert_result(connect_to(a, "example.net", "192.0.2.1", 443), ACL_DENY, 13, false);
}

static void
test_undecided_then_decided(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny to 10.0.0.0/8", 1);
	add_request(a, "allow all", 2);
	/* By name, not yet resolved: rule 1 cannot be decided. */
	assert_result(connect_to(a, "intranet.example", NULL, 80), ACL_UNDECIDED, 1, false);
	assert_result(connect_to(a, "intranet.example", "10.1.1.1", 80), ACL_DENY, 1, true);
	assert_result(connect_to(a, "intranet.example", "8.8.8.8", 80), ACL_ALLOW, 2, false);
	/* By address: decided at once. */
	assert_result(connect_to(a, NULL, "10.0.0.1", 80), ACL_DENY, 1, true);
	assert_result(connect_to(a, NULL, "::ffff:10.0.0.1", 80), ACL_DENY, 1, true);
	assert_result(connect_to(a, NULL, "2001:db8::1", 80), ACL_ALLOW, 2, false);
}

static void
test_name_resolving_into_denied_network_is_denied(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny to 10.0.0.0/8,fd00::/8", 1);
	add_request(a, "allow to *.example.com", 2);
	add_request(a, "deny all", 3);
	assert_result(connect_to(a, "evil.example.com", NULL, 443), ACL_UNDECIDED, 1, false);
	assert_result(connect_to(a, "evil.example.com", "10.0.0.5", 443), ACL_DENY, 1, true);
	assert_result(connect_to(a, "evil.example.com", "fd12::5", 443), ACL_DENY, 1, true);
	assert_result(connect_to(a, "www.example.com", "93.184.216.34", 443), ACL_ALLOW, 2, false);
	assert_result(connect_to(a, "www.example.org", "93.184.216.34", 443), ACL_DENY, 3, false);
}

static void
test_domain_item_decides_before_address(void **state)
{
	struct acl *a = *state;

	add_request(a, "allow to *.example.com,192.0.2.0/24", 1);
	add_request(a, "deny all", 2);
	assert_result(connect_to(a, "a.example.com", NULL, 80), ACL_ALLOW, 1, false);
	/* Issue 17: only a network holding the address counts as naming it
	 * (the built-in protections key on that), even when the name matched
	 * too. */
	assert_result(connect_to(a, "a.example.com", "192.0.2.9", 80), ACL_ALLOW, 1, true);
	assert_result(connect_to(a, "a.example.com", "127.0.0.1", 80), ACL_ALLOW, 1, false);
	assert_result(connect_to(a, "other.test", NULL, 80), ACL_UNDECIDED, 1, false);
	assert_result(connect_to(a, "other.test", "192.0.2.77", 80), ACL_ALLOW, 1, true);
	assert_result(connect_to(a, "other.test", "198.51.100.1", 80), ACL_DENY, 2, false);
}

static void
test_undecided_only_when_other_selectors_match(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny to 10.0.0.0/8 port 25", 1);
	add_request(a, "deny to 10.0.0.0/8 user mallory", 2);
	add_request(a, "deny from 203.0.113.0/24 to 10.0.0.0/8", 3);
	assert_result(connect_to(a, "mail.test", NULL, 80), ACL_ALLOW, 0, false);
	assert_result(connect_to(a, "mail.test", NULL, 25), ACL_UNDECIDED, 1, false);
	assert_result(check(a, "192.0.2.1", "mallory", ACL_CMD_CONNECT, "x.test", NULL, 80),
		ACL_UNDECIDED, 2, false);
	assert_result(check(a, "203.0.113.4", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80),
		ACL_UNDECIDED, 3, false);
}

static void
test_to_all_is_not_explicit(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny to all port 25", 1);
	add_request(a, "allow to 0.0.0.0/0 port 80", 2);
	add_request(a, "allow to all,192.0.2.0/24 port 443", 3);
	add_request(a, "allow", 4);
	assert_result(connect_to(a, "mx.test", NULL, 25), ACL_DENY, 1, false);
	assert_result(connect_to(a, NULL, "192.0.2.1", 80), ACL_ALLOW, 2, true);
	assert_result(connect_to(a, "www.test", NULL, 80), ACL_UNDECIDED, 2, false);
	/* `all` next to a network still waits for the address, so the
	 * network can be named explicitly. */
	assert_result(connect_to(a, "www.test", NULL, 443), ACL_UNDECIDED, 3, false);
	assert_result(connect_to(a, "www.test", "192.0.2.9", 443), ACL_ALLOW, 3, true);
	assert_result(connect_to(a, "www.test", "198.51.100.9", 443), ACL_ALLOW, 3, false);
	assert_result(connect_to(a, "www.test", NULL, 22), ACL_ALLOW, 4, false);
}

static void
test_all_alone_matches_everything(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny all", 7);
	assert_result(check(a, NULL, NULL, ACL_CMD_UDP, NULL, NULL, 0), ACL_DENY, 7, false);
	assert_result(check(a, "::1", "u", ACL_CMD_BIND, "x.test", "::1", 9), ACL_DENY, 7, false);
	request_dump_is("deny", "deny all");
	request_dump_is("deny all", "deny all");
	request_dump_is("deny all port 80", "deny port 80");
	request_dump_is("deny port 80 all", "deny port 80");
	/* A host named "all" keeps its dot so it does not dump as the keyword. */
	request_dump_is("deny to ALL.", "deny to all.");
	request_dump_is("deny to all.,all", "deny to all.,all");
}

static void
test_from_selector(void **state)
{
	struct acl *a = *state;

	add_request(a, "allow from 10.0.0.0/8,2001:db8::/32 to all", 1);
	add_request(a, "deny all", 2);
	assert_result(check(a, "10.3.3.3", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_ALLOW, 1,
		false);
	assert_result(check(a, "::ffff:10.3.3.3", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80),
		ACL_ALLOW, 1, false);
	assert_result(check(a, "2001:db8::3", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_ALLOW,
		1, false);
	assert_result(check(a, "192.0.2.3", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_DENY, 2,
		false);
	/* No client address: a from selector cannot match. */
	assert_result(check(a, NULL, NULL, ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_DENY, 2,
		false);
}

static void
test_user_selector(void **state)
{
	struct acl *a = *state;

	add_request(a, "allow user alice,bob", 1);
	add_request(a, "deny all", 2);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_CONNECT, "x.test", NULL, 80),
		ACL_ALLOW, 1, false);
	assert_result(check(a, "192.0.2.1", "bob", ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_ALLOW,
		1, false);
	assert_result(check(a, "192.0.2.1", "Alice", ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_DENY,
		2, false);
	assert_result(check(a, "192.0.2.1", "alic", ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_DENY,
		2, false);
	assert_result(check(a, "192.0.2.1", "", ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_DENY, 2,
		false);
	/* Without authentication there is no user: never matches. */
	assert_result(check(a, "192.0.2.1", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_DENY, 2,
		false);
}

static void
test_cmd_selector(void **state)
{
	struct acl *a = *state;

	add_request(a, "deny cmd bind,udp", 1);
	add_request(a, "allow cmd connect", 2);
	assert_result(check(a, "192.0.2.1", NULL, ACL_CMD_BIND, NULL, NULL, 0), ACL_DENY, 1, false);
	assert_result(check(a, "192.0.2.1", NULL, ACL_CMD_UDP, NULL, "192.0.2.2", 53), ACL_DENY, 1,
		false);
	assert_result(check(a, "192.0.2.1", NULL, ACL_CMD_CONNECT, "x.test", NULL, 80), ACL_ALLOW,
		2, false);
	request_dump_is("allow cmd udp,connect,udp", "allow cmd connect,udp");
	request_dump_is("allow cmd bind", "allow cmd bind");
}

static void
test_selectors_and_together(void **state)
{
	struct acl *a = *state;

	add_request(a,
		"allow from 192.0.2.0/24 to *.example.com port 443 cmd connect "
		"user alice",
		1);
	add_request(a, "deny all", 2);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_CONNECT, "w.example.com", NULL, 443),
		ACL_ALLOW, 1, false);
	assert_result(
		check(a, "198.51.100.1", "alice", ACL_CMD_CONNECT, "w.example.com", NULL, 443),
		ACL_DENY, 2, false);
	assert_result(check(a, "192.0.2.1", "bob", ACL_CMD_CONNECT, "w.example.com", NULL, 443),
		ACL_DENY, 2, false);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_BIND, "w.example.com", NULL, 443),
		ACL_DENY, 2, false);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_CONNECT, "w.example.org", NULL, 443),
		ACL_DENY, 2, false);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_CONNECT, "w.example.com", NULL, 80),
		ACL_DENY, 2, false);
}

static void
test_no_rules_allow(void **state)
{
	struct acl *a = *state;

	assert_int_equal(acl_request_rule_count(a), 0);
	assert_result(connect_to(a, "x.test", NULL, 80), ACL_ALLOW, 0, false);
	assert_dump(a, "");
}

/* The deciding rule's `via` comes with an allow, in its order, with
 * `resolve local`; a deny, a rule without via and no match carry none. */
static void
test_via_comes_with_the_deciding_allow(void **state)
{
	struct acl *a = *state;
	struct acl_result r;

	add_request(a, "deny to blocked.test", 1);
	add_request(a, "allow to *.onion via socks5://127.0.0.1:9050", 2);
	add_request(a, "allow to 10.0.0.0/8 via http://u:p@p.lan:3128,direct resolve local", 3);
	add_request(a, "allow to plain.test", 4);
	r = connect_to(a, "abc.onion", NULL, 443);
	assert_int_equal(r.verdict, ACL_ALLOW);
	assert_non_null(r.via);
	assert_int_equal(r.via->n, 1);
	assert_string_equal(r.via->hop[0].label, "socks5://127.0.0.1:9050");
	assert_false(r.via->resolve_local);
	r = connect_to(a, NULL, "10.1.2.3", 80);
	assert_non_null(r.via);
	assert_int_equal(r.via->n, 2);
	assert_int_equal(r.via->hop[0].proto, UPSTREAM_HTTP);
	assert_string_equal(r.via->hop[0].pass, "p");
	assert_int_equal(r.via->hop[1].proto, UPSTREAM_DIRECT);
	assert_true(r.via->resolve_local);
	assert_null(connect_to(a, "plain.test", NULL, 80).via);
	r = connect_to(a, "blocked.test", NULL, 80);
	assert_int_equal(r.verdict, ACL_DENY);
	assert_null(r.via);
	/* A name the rules cannot place yet: undecided, no via. */
	r = connect_to(a, "other.test", NULL, 80);
	assert_int_equal(r.verdict, ACL_UNDECIDED);
	assert_null(r.via);
}

/* --- dump ---------------------------------------------------------------- */

static void
test_dump_round_trip(void **state)
{
	static const char *const client_rules[] = {
		"allow 10.0.0.0/8 ::1",
		"deny all",
		"allow 0.0.0.0/0 ::/0 192.0.2.1 2001:db8::/48",
	};
	static const char *const request_rules[] = {
		"deny to *.example.com port 25",
		"allow",
		("deny from 10.0.0.0/8,::1 to example.com,*.example.org,192.0.2.0/24,all "
		 "port 1000-2000 cmd connect,bind,udp user alice,bob"),
		"allow user \"alice smith,#hash\"",
		"allow to ::ffff:192.0.2.0/120 port 65535",
		"deny from all to all",
		"allow to *.onion via socks5://u:pw@[::1]:9050,direct resolve local",
	};
	struct acl *a = *state, *b = acl_new();
	char *first, *second, *line, *next;
	struct words w;
	char err[ERRLEN];
	size_t i;

	for (i = 0; i < sizeof(client_rules) / sizeof(client_rules[0]); i++)
		add_client(a, client_rules[i], (int)i + 1);
	for (i = 0; i < sizeof(request_rules) / sizeof(request_rules[0]); i++)
		add_request(a, request_rules[i], (int)i + 10);
	first = unit_capture(write_acl, a);
	assert_string_equal(first,
		"client allow 10.0.0.0/8 ::1\n"
		"client deny all\n"
		"client allow 0.0.0.0/0 ::/0 192.0.2.1 2001:db8::/48\n"
		"rule deny to *.example.com port 25\n"
		"rule allow all\n"
		"rule deny from 10.0.0.0/8,::1 to example.com,*.example.org,192.0.2.0/24,all "
		"port 1000-2000 cmd connect,bind,udp user alice,bob\n"
		"rule allow user \"alice smith,#hash\"\n"
		"rule allow to 192.0.2.0/24 port 65535\n"
		"rule deny from all to all\n"
		"rule allow to *.onion via socks5://u:***@[::1]:9050,direct resolve local\n");
	/* Feed the dump back in as a config parser would. */
	assert_non_null(b);
	for (line = first; *line != '\0'; line = next) {
		char copy[512];
		char **argv;

		next = strchr(line, '\n');
		assert_non_null(next);
		*next++ = '\0';
		snprintf(copy, sizeof(copy), "%s", line);
		argv = split(&w, copy);
		if (strcmp(argv[0], "client") == 0)
			assert_int_equal(acl_add_client_rule(b, argv + 1, 1, err, sizeof(err)), 0);
		else
			assert_int_equal(acl_add_request_rule(b, argv + 1, 1, err, sizeof(err)), 0);
		/* Restore for the comparison below. */
		next[-1] = '\n';
	}
	second = unit_capture(write_acl, b);
	assert_string_equal(first, second);
	free(first);
	free(second);
	acl_free(b);
}

static void
test_error_buffer_optional_and_truncated(void **state)
{
	struct acl *a = *state;
	struct words w;
	char small[8];

	assert_int_equal(acl_add_request_rule(a, split(&w, "allow frm x"), 1, NULL, 0), -1);
	assert_int_equal(acl_add_request_rule(a, split(&w, "allow frm x"), 1, small, sizeof(small)),
		-1);
	assert_string_equal(small, "unknown");
	assert_int_equal(acl_request_rule_count(a), 0);
	acl_free(NULL);
}

/* Issue 17 item 5: `rule allow cmd udp port 53` refused a UDP ASSOCIATE
 * whose DST is 0.0.0.0:0, the form RFC 1928 prescribes for a client that
 * does not know its address: DST is no destination. */
static void
test_udp_request_is_not_judged_by_destination_rules(void **state)
{
	struct acl *a = *state;

	add_request(a, "allow cmd udp port 53", 1);
	assert_result(udp_request(a, NULL), ACL_UNDECIDED, 1, false);
	/* Each datagram is judged by its destination. */
	assert_result(check(a, "192.0.2.1", NULL, ACL_CMD_UDP, NULL, "8.8.8.8", 53), ACL_ALLOW, 1,
		false);
	assert_result(check(a, "192.0.2.1", NULL, ACL_CMD_UDP, NULL, "8.8.8.8", 0), ACL_ALLOW, 0,
		false);
}

static void
test_udp_request_skips_partial_denials_and_obeys_the_rest(void **state)
{
	struct acl *a = *state;

	/* A deny naming destinations refuses some datagrams, not the request;
	 * rules on client, user and command decide it as ever. */
	add_request(a, "deny cmd udp to 10.0.0.0/8", 1);
	add_request(a, "deny cmd udp port 25", 2);
	add_request(a, "deny cmd udp user mallory", 3);
	add_request(a, "allow cmd udp to 192.0.2.0/24", 4);
	add_request(a, "deny all", 5);
	assert_result(udp_request(a, "mallory"), ACL_DENY, 3, false);
	assert_result(udp_request(a, "alice"), ACL_UNDECIDED, 4, false);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_UDP, NULL, "10.1.2.3", 53), ACL_DENY,
		1, true);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_UDP, NULL, "192.0.2.9", 25), ACL_DENY,
		2, false);
	assert_result(check(a, "192.0.2.1", "alice", ACL_CMD_UDP, NULL, "192.0.2.9", 53), ACL_ALLOW,
		4, true);
	assert_int_equal(acl_request_rule_count(a), 5);
	acl_free(a);
	*state = a = acl_new();
	assert_non_null(a);
	/* Without rules on destinations the request is decided outright. */
	add_request(a, "deny cmd udp from 192.0.2.0/24", 1);
	assert_result(udp_request(a, NULL), ACL_DENY, 1, false);
}

/* --- outbound clauses (issue 19) ----------------------------------------- */

static void
test_outbound_clauses_anywhere_among_selectors(void **state)
{
	struct acl *a = *state;
	struct acl_result r;

	add_request(a, "allow socket-mark 7 user alice external-interface wg0 to 10.0.0.0/8", 1);
	add_request(a, "allow to 192.0.2.0/24 tcp-keepalive off", 2);
	add_request(a, "deny to 198.51.100.0/24", 3);
	add_request(a, "allow all", 4);
	r = check(a, "192.0.2.1", "alice", ACL_CMD_CONNECT, NULL, "10.1.2.3", 80);
	assert_result(r, ACL_ALLOW, 1, true);
	assert_non_null(r.egress);
	assert_string_equal(r.egress->ifname, "wg0");
	assert_true(r.egress->has_mark);
	assert_int_equal(r.egress->mark, 7);
	assert_int_equal(r.egress->tos, -1);
	r = connect_to(a, NULL, "192.0.2.9", 80);
	assert_result(r, ACL_ALLOW, 2, true);
	assert_int_equal(r.egress->keepalive, 0);
	/* A deny, a rule without clauses and no rule at all: none. */
	assert_null(connect_to(a, NULL, "198.51.100.1", 80).egress);
	assert_null(connect_to(a, NULL, "203.0.113.1", 80).egress);
	assert_dump(a,
		"rule allow to 10.0.0.0/8 user alice external-interface wg0 socket-mark 7\n"
		"rule allow to 192.0.2.0/24 tcp-keepalive off\n"
		"rule deny to 198.51.100.0/24\n"
		"rule allow all\n");
	{
		int line = 0;
		assert_non_null(acl_request_rule_egress(a, 1, &line));
		assert_int_equal(line, 2);
		assert_null(acl_request_rule_egress(a, 2, &line));
		assert_null(acl_request_rule_egress(a, 9, &line));
	}
	/* A rule of clauses only matches everything, and prints so. */
	request_dump_is("allow ip-tos 32", "allow all ip-tos 32");
	request_dump_is("allow external 2001:db8::/64 random port 443",
		"allow port 443 external 2001:db8::/64 random");
}

static void
test_outbound_clause_errors(void **state)
{
	(void)state;
	request_err("deny to 10.0.0.0/8 socket-mark 1",
		"only an allow rule can say how traffic leaves");
	request_err("allow to 10.0.0.0/8,192.168.0.0/16 external 2001:db8::/64 random",
		"external: an IPv6 source, but every destination of the rule is IPv4");
	request_err("allow to 2001:db8::/32 external 192.0.2.1",
		"external: an IPv4 source, but every destination of the rule is IPv6");
	request_err("allow socket-mark", "socket-mark: missing value");
	request_err("allow ip-tos 1",
		"ip-tos: 1 sets the low two bits, which are ECN's (the "
		"kernel's): use a multiple of 4 (DSCP times 4)");
	request_err("allow socket-mark 1 to all socket-mark 2", "duplicate 'socket-mark'");
	request_err("allow external-interface", "external-interface: missing value");
	request_err("allow tcp-keepalive 1 2",
		"tcp-keepalive: expected IDLE INTERVAL COUNT "
		"(seconds, seconds, probes) or off");
	/* A source of each family, or a name among the destinations: fine. */
	{
		struct acl *a = acl_new();
		add_request(a, "allow to 10.0.0.0/8 external 2001:db8::1 external 192.0.2.1", 1);
		add_request(a, "allow to 10.0.0.0/8,example.com external 2001:db8::1", 2);
		add_request(a, "allow to all external 2001:db8::1", 3);
		acl_free(a);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_verdict_word_required, setup, teardown),
		cmocka_unit_test(test_client_rule_needs_an_address),
		cmocka_unit_test(test_cidr_errors_named),
		cmocka_unit_test_setup_teardown(test_client_rules_first_match_wins, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_client_no_match_allows, setup, teardown),
		cmocka_unit_test(test_cidr_prefix_zero_and_families),
		cmocka_unit_test(test_cidr_full_length_and_bare),
		cmocka_unit_test_setup_teardown(test_cidr_host_bits_masked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cidr_ipv4_mapped, setup, teardown),
		cmocka_unit_test(test_request_selector_errors),
		cmocka_unit_test(test_request_value_errors),
		cmocka_unit_test_setup_teardown(test_user_names_must_print_back, setup, teardown),
		cmocka_unit_test(test_domain_length_limits),
		cmocka_unit_test(test_port_errors),
		cmocka_unit_test_setup_teardown(test_port_boundaries, setup, teardown),
		cmocka_unit_test(test_domain_match_exact_and_suffix),
		cmocka_unit_test_setup_teardown(test_to_domain_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_domain_target_needs_a_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_match_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_undecided_then_decided, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_resolving_into_denied_network_is_denied,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_domain_item_decides_before_address, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_undecided_only_when_other_selectors_match,
			setup, teardown),
		cmocka_unit_test_setup_teardown(test_to_all_is_not_explicit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_udp_request_is_not_judged_by_destination_rules,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			test_udp_request_skips_partial_denials_and_obeys_the_rest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_alone_matches_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_selector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_user_selector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmd_selector, setup, teardown),
		cmocka_unit_test_setup_teardown(test_selectors_and_together, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_rules_allow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_via_comes_with_the_deciding_allow, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_dump_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_buffer_optional_and_truncated, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_outbound_clauses_anywhere_among_selectors,
			setup, teardown),
		cmocka_unit_test(test_outbound_clause_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
