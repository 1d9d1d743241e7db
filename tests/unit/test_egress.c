/*
 * test_egress: the outbound settings (issue 19). Every clause parses into
 * its field and prints back to words that parse to the same settings; a
 * clause cut short at any word is an error naming it, never a read past
 * the words it was given, and a clause followed by another takes only its
 * own words; every error message in full; what a user line may not set;
 * the layers (rule over user over global, field by field); and the
 * addresses drawn from a prefix: inside it, from the random bytes or the
 * user's keyed hash, stable per user and key, never the network's first
 * address or an IPv4 broadcast.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "egress.h"

#include "unit_util.h"

#define ERRLEN 256
#define MAXWORDS 32

static const uint8_t key1[SIPHASH_KEY_LEN] = "0123456789abcde";
static const uint8_t key2[SIPHASH_KEY_LEN] = "fedcba987654321";

/* Words of s split on single spaces into heap copies of exactly their
 * length (ASan sees a read past one), NULL-terminated. */
struct words {
	char *argv[MAXWORDS + 1];
	int n;
};

static void
words_split(struct words *w, const char *s)
{
	const char *p = s;

	w->n = 0;
	while (*p) {
		size_t len = strcspn(p, " ");

		assert_true(w->n < MAXWORDS);
		w->argv[w->n] = malloc(len + 1);
		assert_non_null(w->argv[w->n]);
		memcpy(w->argv[w->n], p, len);
		w->argv[w->n][len] = '\0';
		w->n++;
		p += len;
		while (*p == ' ')
			p++;
	}
	w->argv[w->n] = NULL;
}

static void
words_free(struct words *w)
{
	for (int i = 0; i < w->n; i++)
		free(w->argv[i]);
	w->n = 0;
}

/* Parses every clause of text into *e (ctx); returns the last status:
 * -1 with the message in err, or the words the last clause took. */
static int
parse_all(struct egress *e, enum egress_context ctx, const char *text, char *err)
{
	struct words w;
	int i = 0, rc = 0;

	words_split(&w, text);
	err[0] = '\0';
	while (i < w.n) {
		rc = egress_parse_clause(e, ctx, w.argv + i, err, ERRLEN);
		if (rc <= 0)
			break;
		i += rc;
	}
	words_free(&w);
	return rc;
}

static void
dump_to(FILE *f, const void *arg)
{
	egress_dump(arg, f, " ", "");
}

/* text parses (in a rule), prints back as want (after a leading blank),
 * and want parses to the same settings. */
static void
assert_round_trip(const char *text, const char *want)
{
	struct egress a, b;
	char err[ERRLEN], *s;

	egress_init(&a);
	egress_init(&b);
	if (parse_all(&a, EGRESS_IN_RULE, text, err) < 0)
		fail_msg("'%s': %s", text, err);
	s = unit_capture(dump_to, &a);
	if (strcmp(s, want) != 0)
		fail_msg("'%s' dumps as '%s', want '%s'", text, s, want);
	if (parse_all(&b, EGRESS_IN_RULE, s + 1, err) < 0)
		fail_msg("dump '%s': %s", s, err);
	assert_true(egress_equal(&a, &b));
	free(s);
}

static void
assert_error(enum egress_context ctx, const char *text, const char *want)
{
	struct egress e;
	char err[ERRLEN];

	egress_init(&e);
	if (parse_all(&e, ctx, text, err) >= 0)
		fail_msg("'%s' parsed; want error '%s'", text, want);
	assert_string_equal(err, want);
}

static void
test_init_is_empty_and_every_field_unset(void **state)
{
	struct egress e;

	(void)state;
	egress_init(&e);
	assert_true(egress_is_empty(&e));
	assert_int_equal(e.src[EGRESS_V4].mode, EGRESS_SRC_UNSET);
	assert_int_equal(e.src[EGRESS_V6].mode, EGRESS_SRC_UNSET);
	assert_string_equal(e.ifname, "");
	assert_false(e.has_mark);
	assert_int_equal(e.tos, -1);
	assert_int_equal(e.keepalive, -1);
	assert_int_equal(e.user_timeout_ms, -1);
	e.tos = 0;
	assert_false(egress_is_empty(&e));
}

static void
test_each_clause_parses_and_prints_back(void **state)
{
	(void)state;
	assert_round_trip("external 192.0.2.1", " external 192.0.2.1");
	assert_round_trip("external 2001:db8::5", " external 2001:db8::5");
	assert_round_trip("external 2001:db8:1::/64 random", " external 2001:db8:1::/64 random");
	assert_round_trip("external 10.0.0.0/8 hash-user", " external 10.0.0.0/8 hash-user");
	/* Host bits of a prefix are dropped. */
	assert_round_trip("external 2001:db8:1::77/48 random", " external 2001:db8:1::/48 random");
	assert_round_trip("external 192.0.2.77/25 random", " external 192.0.2.0/25 random");
	assert_round_trip("external-interface eth0", " external-interface eth0");
	assert_round_trip("external-interface wg-office.15", " external-interface wg-office.15");
	assert_round_trip("socket-mark 0", " socket-mark 0");
	assert_round_trip("socket-mark 4294967295", " socket-mark 4294967295");
	assert_round_trip("ip-tos 0", " ip-tos 0");
	assert_round_trip("ip-tos 184", " ip-tos 184");
	assert_round_trip("ip-tos 252", " ip-tos 252");
	assert_round_trip("tcp-keepalive off", " tcp-keepalive off");
	assert_round_trip("tcp-keepalive 1 1 1", " tcp-keepalive 1 1 1");
	assert_round_trip("tcp-keepalive 32767 32767 127", " tcp-keepalive 32767 32767 127");
	assert_round_trip("tcp-user-timeout 0", " tcp-user-timeout 0");
	assert_round_trip("tcp-user-timeout 86400000", " tcp-user-timeout 86400000");
	/* All at once, in any order, print in one fixed order. */
	assert_round_trip("tcp-user-timeout 5 ip-tos 8 external 2001:db8::/32 hash-user "
			  "socket-mark 3 external-interface lo tcp-keepalive 9 8 7 "
			  "external 192.0.2.9",
		" external 192.0.2.9 external 2001:db8::/32 hash-user external-interface lo "
		"socket-mark 3 ip-tos 8 tcp-keepalive 9 8 7 tcp-user-timeout 5");
}

/* A valid clause cut after each of its words is an error naming the
 * clause; whole, with another clause behind it, it takes its own words. */
static void
test_clause_cut_at_every_word(void **state)
{
	static const char *const clauses[] = {
		"external 192.0.2.1",
		"external 2001:db8::/64 random",
		"external 192.0.2.0/24 hash-user",
		"external-interface eth1",
		"socket-mark 7",
		"ip-tos 32",
		"tcp-keepalive 60 10 5",
		"tcp-keepalive off",
		"tcp-user-timeout 3000",
	};

	(void)state;
	for (size_t c = 0; c < sizeof(clauses) / sizeof(clauses[0]); c++) {
		struct words w;
		char err[ERRLEN], *saved, line[128];
		struct egress e;
		int n;

		snprintf(line, sizeof(line), "%s socket-mark 1", clauses[c]);
		words_split(&w, line);
		n = w.n - 2;
		for (int k = 1; k < n; k++) {
			saved = w.argv[k];
			w.argv[k] = NULL;
			egress_init(&e);
			err[0] = '\0';
			if (egress_parse_clause(&e, EGRESS_IN_RULE, w.argv, err, ERRLEN) != -1)
				fail_msg("'%s' cut after %d words parsed", clauses[c], k);
			if (strncmp(err, w.argv[0], strlen(w.argv[0])) != 0)
				fail_msg("'%s' cut after %d words: '%s' does not name it",
					clauses[c], k, err);
			w.argv[k] = saved;
		}
		egress_init(&e);
		/* socket-mark's own line is the one clause with a mark before. */
		assert_int_equal(egress_parse_clause(&e, EGRESS_IN_RULE, w.argv, err, ERRLEN), n);
		words_free(&w);
	}
}

static void
test_every_error_message(void **state)
{
	(void)state;
	assert_error(EGRESS_IN_RULE, "external", "external: missing value");
	assert_error(EGRESS_IN_RULE, "external host.example",
		"external: bad address 'host.example' (expected a numeric IPv4 or IPv6 address)");
	assert_error(EGRESS_IN_RULE, "external 192.0.2.1 random",
		"external: random needs a prefix (ADDR/LEN), not '192.0.2.1'");
	assert_error(EGRESS_IN_RULE, "external 2001:db8::/64",
		"external: expected random or hash-user after the prefix '2001:db8::/64'");
	assert_error(EGRESS_IN_RULE, "external 2001:db8::/64 sequential",
		"external: expected random or hash-user after the prefix '2001:db8::/64'");
	assert_error(EGRESS_IN_RULE, "external ::/0 random",
		"external: /0 is every address, not a prefix of this host");
	assert_error(EGRESS_IN_RULE, "external 2001:db8::1/128 random",
		"external: '2001:db8::1/128' holds one address: write the address alone");
	assert_error(EGRESS_IN_RULE, "external 192.0.2.1/32 hash-user",
		"external: '192.0.2.1/32' holds one address: write the address alone");
	assert_error(EGRESS_IN_RULE, "external 192.0.2.0/33 random",
		"external: bad prefix '192.0.2.0/33' (expected ADDR/LEN)");
	assert_error(EGRESS_IN_RULE, "external /24 random",
		"external: bad prefix '/24' (expected ADDR/LEN)");
	assert_error(EGRESS_IN_RULE, "external 192.0.2.0/ random",
		"external: bad prefix '192.0.2.0/' (expected ADDR/LEN)");
	assert_error(EGRESS_IN_RULE, "external ::ffff:192.0.2.0/120 random",
		"external: write the IPv4 prefix of '::ffff:192.0.2.0/120' as IPv4");
	assert_error(EGRESS_IN_RULE, "external 192.0.2.1 external 192.0.2.0/24 random",
		"external: a second IPv4 source");
	assert_error(EGRESS_IN_RULE, "external ::1 external ::2", "external: a second IPv6 source");
	assert_error(EGRESS_IN_RULE, "external-interface", "external-interface: missing value");
	assert_error(EGRESS_IN_RULE, "external-interface abcdefghijklmnop",
		"external-interface: bad interface name 'abcdefghijklmnop' (1 to 15 characters, "
		"no '/', ':' or blanks)");
	assert_error(EGRESS_IN_RULE, "external-interface eth0:1",
		"external-interface: bad interface name 'eth0:1' (1 to 15 characters, no '/', ':' "
		"or blanks)");
	assert_error(EGRESS_IN_RULE, "external-interface ..",
		"external-interface: bad interface name '..' (1 to 15 characters, no '/', ':' or "
		"blanks)");
	assert_error(EGRESS_IN_RULE, "external-interface a external-interface b",
		"duplicate 'external-interface'");
	assert_error(EGRESS_IN_RULE, "socket-mark", "socket-mark: missing value");
	assert_error(EGRESS_IN_RULE, "socket-mark 4294967296",
		"socket-mark: 4294967296 out of range 0..4294967295");
	assert_error(EGRESS_IN_RULE, "socket-mark 0x10", "socket-mark: '0x10' is not a number");
	assert_error(EGRESS_IN_RULE, "socket-mark 1 socket-mark 2", "duplicate 'socket-mark'");
	assert_error(EGRESS_IN_RULE, "ip-tos 256", "ip-tos: 256 out of range 0..255");
	assert_error(EGRESS_IN_RULE, "ip-tos 185",
		"ip-tos: 185 sets the low two bits, which are ECN's (the kernel's): use a "
		"multiple of 4 (DSCP times 4)");
	assert_error(EGRESS_IN_RULE, "ip-tos 4 ip-tos 8", "duplicate 'ip-tos'");
	assert_error(EGRESS_IN_RULE, "tcp-keepalive",
		"tcp-keepalive: expected IDLE INTERVAL COUNT (seconds, seconds, probes) or off");
	assert_error(EGRESS_IN_RULE, "tcp-keepalive 0 1 1",
		"tcp-keepalive: 0 out of range 1..32767");
	assert_error(EGRESS_IN_RULE, "tcp-keepalive 1 32768 1",
		"tcp-keepalive: 32768 out of range 1..32767");
	assert_error(EGRESS_IN_RULE, "tcp-keepalive 1 1 128",
		"tcp-keepalive: 128 out of range 1..127");
	assert_error(EGRESS_IN_RULE, "tcp-keepalive on 1 1", "tcp-keepalive: 'on' is not a number");
	assert_error(EGRESS_IN_RULE, "tcp-keepalive off tcp-keepalive 1 1 1",
		"duplicate 'tcp-keepalive'");
	assert_error(EGRESS_IN_RULE, "tcp-user-timeout 86400001",
		"tcp-user-timeout: 86400001 out of range 0..86400000");
	assert_error(EGRESS_IN_RULE, "tcp-user-timeout 1 tcp-user-timeout 1",
		"duplicate 'tcp-user-timeout'");
}

static void
test_user_lines_take_sources_and_interface_only(void **state)
{
	struct egress e;
	char err[ERRLEN];

	(void)state;
	egress_init(&e);
	assert_true(parse_all(&e, EGRESS_IN_USER,
			    "external 2001:db8::/64 hash-user external-interface wg0", err) > 0);
	assert_int_equal(e.src[EGRESS_V6].mode, EGRESS_SRC_HASH_USER);
	assert_string_equal(e.ifname, "wg0");
	assert_error(EGRESS_IN_USER, "socket-mark 1",
		"socket-mark: not a user option (external, external-interface); write it on a "
		"rule with 'user NAME'");
	assert_error(EGRESS_IN_USER, "ip-tos 4",
		"ip-tos: not a user option (external, external-interface); write it on a rule "
		"with 'user NAME'");
	assert_error(EGRESS_IN_USER, "tcp-keepalive off",
		"tcp-keepalive: not a user option (external, external-interface); write it on a "
		"rule with 'user NAME'");
	assert_error(EGRESS_IN_USER, "tcp-user-timeout 1",
		"tcp-user-timeout: not a user option (external, external-interface); write it "
		"on a rule with 'user NAME'");
	/* Not a clause at all: 0, the caller says what it expected. */
	{
		char *argv[] = { (char *)"via", (char *)"direct", NULL };
		assert_int_equal(egress_parse_clause(&e, EGRESS_IN_RULE, argv, err, ERRLEN), 0);
		assert_false(egress_is_clause("via"));
		assert_true(egress_is_clause("tcp-user-timeout"));
		assert_false(egress_is_clause(NULL));
	}
}

static void
test_layers_merge_field_by_field(void **state)
{
	struct egress rule, user, global, e;
	char err[ERRLEN], *s;

	(void)state;
	egress_init(&rule);
	egress_init(&user);
	egress_init(&global);
	assert_true(parse_all(&rule, EGRESS_IN_RULE, "socket-mark 0 tcp-keepalive off", err) > 0);
	assert_true(parse_all(&user, EGRESS_IN_USER,
			    "external-interface wg1 external 2001:db8::/64 random", err) > 0);
	assert_true(parse_all(&global, EGRESS_IN_GLOBAL,
			    "external-interface eth0 external 192.0.2.1 external 2001:db8::9 "
			    "socket-mark 5 ip-tos 16 tcp-keepalive 120 30 4 tcp-user-timeout 9",
			    err) > 0);
	e = rule;
	egress_merge(&e, &user);
	egress_merge(&e, NULL);
	egress_merge(&e, &global);
	s = unit_capture(dump_to, &e);
	/* Mark 0 and keepalive off from the rule beat the global values. */
	assert_string_equal(s,
		" external 192.0.2.1 external 2001:db8::/64 random "
		"external-interface wg1 socket-mark 0 ip-tos 16 tcp-keepalive off "
		"tcp-user-timeout 9");
	free(s);
	assert_false(egress_tcp_equal(&e, &global));
	e = global;
	egress_merge(&e, &rule);
	assert_true(egress_equal(&e, &global));
	assert_true(egress_tcp_equal(&e, &global));
	e.keepalive_count++;
	assert_false(egress_tcp_equal(&e, &global));
}

/* The IPv6 source of text for the given random bytes and user. */
static union sockaddr_any
draw(const char *text, int family, const uint8_t *key, const char *user, const uint8_t *rnd)
{
	struct egress e;
	union sockaddr_any a;
	char err[ERRLEN];

	egress_init(&e);
	if (parse_all(&e, EGRESS_IN_RULE, text, err) < 0)
		fail_msg("%s: %s", text, err);
	assert_true(egress_source(&e, family, key, user, rnd, &a));
	assert_int_equal(a.sa.sa_family, family);
	assert_int_equal(addr_port(&a), 0);
	return a;
}

static const char *
ip(const union sockaddr_any *a, char *buf)
{
	return addr_ip_format(a, buf, ADDR_STRLEN);
}

static void
test_random_source_takes_host_bits_from_the_random_bytes(void **state)
{
	uint8_t rnd[EGRESS_RANDOM_LEN];
	char buf[ADDR_STRLEN];
	union sockaddr_any a;

	(void)state;
	for (int i = 0; i < EGRESS_RANDOM_LEN; i++)
		rnd[i] = (uint8_t)(0x10 + i);
	a = draw("external 2001:db8:aa::/64 random", AF_INET6, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "2001:db8:aa:0:1819:1a1b:1c1d:1e1f");
	/* A prefix that does not end on a byte keeps its own bits. */
	a = draw("external 2001:db8:aa::/52 random", AF_INET6, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "2001:db8:aa:617:1819:1a1b:1c1d:1e1f");
	a = draw("external 192.0.2.0/24 random", AF_INET, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "192.0.2.19");
	a = draw("external 10.0.0.0/8 random", AF_INET, key1, "who", rnd);
	assert_string_equal(ip(&a, buf), "10.17.18.19");
	/* An address is itself, whatever the bytes. */
	a = draw("external 192.0.2.1", AF_INET, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "192.0.2.1");
	/* Never the first address (zero host), nor IPv4's broadcast. */
	memset(rnd, 0, sizeof(rnd));
	a = draw("external 2001:db8::/64 random", AF_INET6, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "2001:db8::1");
	a = draw("external 192.0.2.0/24 random", AF_INET, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "192.0.2.1");
	memset(rnd, 0xff, sizeof(rnd));
	a = draw("external 192.0.2.0/24 random", AF_INET, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "192.0.2.254");
	a = draw("external 2001:db8::/64 random", AF_INET6, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "2001:db8::ffff:ffff:ffff:ffff");
	/* A /31 has two addresses, both usable (RFC 3021). */
	a = draw("external 192.0.2.0/31 random", AF_INET, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "192.0.2.1");
	memset(rnd, 0, sizeof(rnd));
	a = draw("external 192.0.2.0/31 random", AF_INET, key1, NULL, rnd);
	assert_string_equal(ip(&a, buf), "192.0.2.0");
}

static void
test_hash_user_is_stable_per_user_and_key(void **state)
{
	static const uint8_t zero[EGRESS_RANDOM_LEN];
	uint8_t rnd[EGRESS_RANDOM_LEN];
	const char *text = "external 2001:db8:bb::/48 hash-user";
	union sockaddr_any a, b, c, d, n1, n2;
	char buf[ADDR_STRLEN];

	(void)state;
	memset(rnd, 0x5a, sizeof(rnd));
	a = draw(text, AF_INET6, key1, "alice", zero);
	b = draw(text, AF_INET6, key1, "alice", rnd); /* random bytes play no part */
	c = draw(text, AF_INET6, key1, "bob", zero);
	d = draw(text, AF_INET6, key2, "alice", zero);
	n1 = draw(text, AF_INET6, key1, NULL, zero);
	n2 = draw(text, AF_INET6, key1, "", zero);
	assert_true(addr_ip_equal(&a, &b));
	assert_false(addr_ip_equal(&a, &c));
	assert_false(addr_ip_equal(&a, &d));
	assert_true(addr_ip_equal(&n1, &n2));
	/* Inside the /48, with hashed bits past it. */
	assert_memory_equal(a.sin6.sin6_addr.s6_addr, "\x20\x01\x0d\xb8\x00\xbb", 6);
	assert_memory_not_equal(a.sin6.sin6_addr.s6_addr + 6, zero, 10);
	ip(&a, buf);
	/* 200 users in a /120 (254 usable): all inside, mostly distinct. */
	{
		unsigned seen[256] = { 0 }, distinct = 0;
		for (int u = 0; u < 200; u++) {
			char name[16];
			snprintf(name, sizeof(name), "user%d", u);
			a = draw("external 2001:db8::100/120 hash-user", AF_INET6, key1, name,
				zero);
			assert_memory_equal(a.sin6.sin6_addr.s6_addr,
				"\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\x01", 15);
			assert_int_not_equal(a.sin6.sin6_addr.s6_addr[15], 0);
			distinct += seen[a.sin6.sin6_addr.s6_addr[15]]++ == 0;
		}
		assert_true(distinct > 100);
	}
}

static void
test_source_of_a_family_not_set(void **state)
{
	struct egress e;
	union sockaddr_any a;
	char err[ERRLEN];

	(void)state;
	egress_init(&e);
	assert_false(egress_source(&e, AF_INET, key1, NULL, key1, &a));
	assert_true(parse_all(&e, EGRESS_IN_RULE, "external 2001:db8::/64 random", err) > 0);
	assert_false(egress_source(&e, AF_INET, key1, NULL, key1, &a));
	assert_true(egress_source_drawn(&e, AF_INET6));
	assert_false(egress_source_drawn(&e, AF_INET));
	assert_true(parse_all(&e, EGRESS_IN_RULE, "external 192.0.2.1", err) > 0);
	assert_false(egress_source_drawn(&e, AF_INET));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_is_empty_and_every_field_unset),
		cmocka_unit_test(test_each_clause_parses_and_prints_back),
		cmocka_unit_test(test_clause_cut_at_every_word),
		cmocka_unit_test(test_every_error_message),
		cmocka_unit_test(test_user_lines_take_sources_and_interface_only),
		cmocka_unit_test(test_layers_merge_field_by_field),
		cmocka_unit_test(test_random_source_takes_host_bits_from_the_random_bytes),
		cmocka_unit_test(test_hash_user_is_stable_per_user_and_key),
		cmocka_unit_test(test_source_of_a_family_not_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
