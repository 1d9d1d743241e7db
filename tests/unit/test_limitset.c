/*
 * Unit tests for limitset (issue 18): rates, amounts, periods and offsets
 * as words (every valid value at every split point: each shorter prefix is
 * refused or means something else; every value prints back to itself),
 * `limit` lines (each accepted form, each refusal with its message, each
 * truncation of a valid line), rule rate clauses, what applies to a
 * session (a user's own line over `user *`, the first client network, the
 * allowing rule), and the dump.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limitset.h"
#include "unit_util.h"

#define ERRLEN 384

/* --- values --------------------------------------------------------------- */

static const struct {
	const char *text;
	uint64_t bits;
} good_rates[] = {
	{ "unlimited", 0 },
	{ "1kbit", 1000 },
	{ "1.5kbit", 1500 },
	{ "1.001kbit", 1001 },
	{ "20mbit", 20000000 },
	{ "5.5mbit", 5500000 },
	{ "1.234mbit", 1234000 },
	{ "200Mbit", 200000000 },
	{ "1GBIT", 1000000000 },
	{ "0.5gbit", 500000000 },
	{ "1000gbit", UINT64_C(1000000000000) },
	{ "007mbit", 7000000 },
};

static const char *const bad_rates[] = { "", "0mbit", "0.000mbit", "0.5kbit", "0.9kbit",
	"1.2345mbit", "1000.001gbit", "1001gbit", "mbit", "1.mbit", ".5mbit", "1e3kbit", "-1mbit",
	"+1mbit", " 1mbit", "1 mbit", "1mbit ", "1kbps", "1mb", "1", "1bit", "1.5", "Unlimited",
	"99999999999999999999kbit", "1..5mbit", "1,5mbit" };

static void
test_rates_parse_and_print_back(void **state)
{
	char err[ERRLEN], out[LIMITSET_VALUE_STRLEN];

	for (size_t i = 0; i < sizeof(good_rates) / sizeof(good_rates[0]); i++) {
		uint64_t v = 1, back = 1;
		if (limitset_parse_rate(good_rates[i].text, &v, err, sizeof(err)) < 0)
			fail_msg("'%s': %s", good_rates[i].text, err);
		assert_true(v == good_rates[i].bits);
		limitset_format_rate(v, out, sizeof(out));
		assert_int_equal(limitset_parse_rate(out, &back, err, sizeof(err)), 0);
		assert_true(back == v);
	}
	limitset_format_rate(1500, out, sizeof(out));
	assert_string_equal(out, "1.5kbit");
	limitset_format_rate(20000000, out, sizeof(out));
	assert_string_equal(out, "20mbit");
	limitset_format_rate(1234567, out, sizeof(out));
	assert_string_equal(out, "1234.567kbit");
	limitset_format_rate(0, out, sizeof(out));
	assert_string_equal(out, "unlimited");
}

static void
test_bad_rates_are_refused_with_the_word(void **state)
{
	char err[ERRLEN];

	for (size_t i = 0; i < sizeof(bad_rates) / sizeof(bad_rates[0]); i++) {
		uint64_t v = 77;
		if (limitset_parse_rate(bad_rates[i], &v, err, sizeof(err)) == 0)
			fail_msg("'%s' was accepted as %llu", bad_rates[i], (unsigned long long)v);
		assert_true(v == 77);
		assert_non_null(strstr(err, "bad rate"));
	}
}

/* Every strict prefix of a valid word is refused, or is another value:
 * a word cut short is never silently the same limit. */
static void
test_every_prefix_of_a_rate_is_refused_or_different(void **state)
{
	char err[ERRLEN], prefix[64];

	for (size_t i = 0; i < sizeof(good_rates) / sizeof(good_rates[0]); i++) {
		const char *t = good_rates[i].text;
		for (size_t n = 0; n < strlen(t); n++) {
			uint64_t v = 0;
			snprintf(prefix, sizeof(prefix), "%.*s", (int)n, t);
			if (limitset_parse_rate(prefix, &v, err, sizeof(err)) == 0 &&
				v == good_rates[i].bits)
				fail_msg("'%s', a prefix of '%s', means the same", prefix, t);
		}
	}
}

static void
test_amounts(void **state)
{
	static const struct {
		const char *text;
		uint64_t bytes;
	} good[] = {
		{ "1MB", 1000000 },
		{ "50GB", UINT64_C(50000000000) },
		{ "1.5TB", UINT64_C(1500000000000) },
		{ "0.001MB", 1000 },
		{ "2gb", UINT64_C(2000000000) },
		{ "1000000TB", UINT64_C(1000000000000000000) },
	};
	static const char *const bad[] = { "", "0MB", "1", "1KB", "1B", "1.0001MB", "1000001TB",
		"1 GB", "GB", "unlimited", "-1GB" };
	char err[ERRLEN], out[LIMITSET_VALUE_STRLEN], prefix[64];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t v = 0, back = 0;
		if (limitset_parse_amount(good[i].text, &v, err, sizeof(err)) < 0)
			fail_msg("'%s': %s", good[i].text, err);
		assert_true(v == good[i].bytes);
		limitset_format_amount(v, out, sizeof(out));
		assert_int_equal(limitset_parse_amount(out, &back, err, sizeof(err)), 0);
		assert_true(back == v);
		for (size_t n = 0; n < strlen(good[i].text); n++) {
			snprintf(prefix, sizeof(prefix), "%.*s", (int)n, good[i].text);
			if (limitset_parse_amount(prefix, &v, err, sizeof(err)) == 0 &&
				v == good[i].bytes)
				fail_msg("'%s' means the same as '%s'", prefix, good[i].text);
		}
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v;
		if (limitset_parse_amount(bad[i], &v, err, sizeof(err)) == 0)
			fail_msg("amount '%s' accepted", bad[i]);
		assert_non_null(strstr(err, "bad amount"));
	}
	limitset_format_amount(UINT64_C(50000000000), out, sizeof(out));
	assert_string_equal(out, "50GB");
}

static void
test_periods_and_offsets(void **state)
{
	static const char *const bad_tz[] = { "", "0", "+0", "+00", "+00:0", "+0:00", "00:00",
		"+14:01", "-14:01", "+15:00", "+05:60", "+05-30", "+05:30 ", "+a5:30", "UTC" };
	char err[ERRLEN], out[8];
	enum limitset_period p;
	int m = 0;

	assert_int_equal(limitset_parse_period("day", &p, err, sizeof(err)), 0);
	assert_int_equal(p, LIMITSET_DAY);
	assert_int_equal(limitset_parse_period("week", &p, err, sizeof(err)), 0);
	assert_int_equal(p, LIMITSET_WEEK);
	assert_int_equal(limitset_parse_period("month", &p, err, sizeof(err)), 0);
	assert_int_equal(p, LIMITSET_MONTH);
	assert_int_equal(limitset_parse_period("year", &p, err, sizeof(err)), -1);
	assert_int_equal(limitset_parse_period("mon", &p, err, sizeof(err)), -1);
	assert_int_equal(limitset_parse_tz("+05:30", &m, err, sizeof(err)), 0);
	assert_int_equal(m, 330);
	assert_int_equal(limitset_parse_tz("-14:00", &m, err, sizeof(err)), 0);
	assert_int_equal(m, -840);
	assert_int_equal(limitset_parse_tz("+00:00", &m, err, sizeof(err)), 0);
	assert_int_equal(m, 0);
	assert_string_equal(limitset_format_tz(-330, out, sizeof(out)), "-05:30");
	assert_string_equal(limitset_format_tz(840, out, sizeof(out)), "+14:00");
	for (size_t i = 0; i < sizeof(bad_tz) / sizeof(bad_tz[0]); i++)
		if (limitset_parse_tz(bad_tz[i], &m, err, sizeof(err)) == 0)
			fail_msg("offset '%s' accepted", bad_tz[i]);
}

/* --- lines ---------------------------------------------------------------- */

/* Splits text at single spaces into argv (modified in place). */
static void
words(char *text, char **argv, size_t cap)
{
	size_t n = 0;

	for (char *w = strtok(text, " "); w && n + 1 < cap; w = strtok(NULL, " "))
		argv[n++] = w;
	argv[n] = NULL;
}

/* Adds line (the words after `limit`) to l; returns 0, or -1 with err. */
static int
add(struct limitset *l, const char *line, int lineno, char *err)
{
	char copy[512], *argv[16];

	snprintf(copy, sizeof(copy), "%s", line);
	words(copy, argv, 16);
	return limitset_add_line(l, argv, lineno, err, ERRLEN);
}

static void
write_dump(FILE *f, const void *l)
{
	limitset_dump(l, f);
}

static char *
dump_of(const struct limitset *l)
{
	return unit_capture(write_dump, l);
}

/* Each valid form, and what -T prints for it. */
static const struct {
	const char *line, *dump;
} good_lines[] = {
	{ "session rate 1mbit unlimited", "limit session rate 1mbit unlimited" },
	{ "user alice rate 20mbit 20mbit", "limit user alice rate 20mbit 20mbit" },
	{ "user * rate 5mbit 5mbit", "limit user * rate 5mbit 5mbit" },
	{ "user alice quota 50GB month", "limit user alice quota 50GB month then close" },
	{ "user bob quota 1TB week then close", "limit user bob quota 1TB week then close" },
	{ "user carol quota 1.5GB day then rate 1mbit 2mbit",
		"limit user carol quota 1.5GB day then rate 1mbit 2mbit" },
	{ "user admin quota unlimited", "limit user admin quota unlimited" },
	{ "client 10.0.0.0/8 rate 100mbit 100mbit",
		"limit client 10.0.0.0/8 rate 100mbit 100mbit" },
	{ "client 2001:db8::/32 quota 10GB day",
		"limit client 2001:db8::/32 quota 10GB day then close" },
	{ "client 192.0.2.7 rate unlimited 8kbit",
		"limit client 192.0.2.7/32 rate unlimited 8kbit" },
	{ "client all rate 1gbit 1gbit", "limit client all rate 1gbit 1gbit" },
};

static void
test_limit_lines_parse_and_dump(void **state)
{
	char err[ERRLEN], want[256];

	for (size_t i = 0; i < sizeof(good_lines) / sizeof(good_lines[0]); i++) {
		struct limitset *l = limitset_new();
		char *d;
		assert_non_null(l);
		if (add(l, good_lines[i].line, 3, err) < 0)
			fail_msg("'%s': %s", good_lines[i].line, err);
		d = dump_of(l);
		snprintf(want, sizeof(want), "%s\nquota-timezone +00:00\n", good_lines[i].dump);
		assert_string_equal(d, want);
		free(d);
		limitset_free(l);
	}
}

static void
test_limit_line_errors(void **state)
{
	static const struct {
		const char *line, *msg;
	} bad[] = {
		{ "bogus rate 1mbit 1mbit", "expected session, user or client, got 'bogus'" },
		{ "session", "expected rate after 'session'" },
		{ "session quota 1GB day", "expected rate after 'session'" },
		{ "session rate 1mbit", "rate needs two values: UP DOWN" },
		{ "session rate 1mbit 1mbit 1mbit", "unexpected '1mbit' after the rates" },
		{ "user", "missing NAME after 'user'" },
		{ "client", "missing NETWORK after 'client'" },
		{ "user alice", "expected rate or quota after 'alice'" },
		{ "user alice speed 1mbit 1mbit", "expected rate or quota after 'alice'" },
		{ "user alice rate 1mbit 0mbit", "bad rate '0mbit'" },
		{ "user alice quota", "quota needs AMOUNT PERIOD (or unlimited)" },
		{ "user alice quota 1GB", "quota needs AMOUNT PERIOD (or unlimited)" },
		{ "user alice quota 1GB year", "bad period 'year'" },
		{ "user alice quota 1GiB day", "bad amount '1GiB'" },
		{ "user alice quota 1GB day close",
			"expected 'then close' or 'then rate UP DOWN'" },
		{ "user alice quota 1GB day then", "expected 'then close' or 'then rate UP DOWN'" },
		{ "user alice quota 1GB day then stop", "expected 'then close' or 'then rate UP" },
		{ "user alice quota 1GB day then close now", "expected 'then close' or 'then" },
		{ "user alice quota 1GB day then rate 1mbit",
			"expected 'then close' or 'then rate" },
		{ "user alice quota unlimited day", "bad amount 'unlimited'" },
		{ "client 10.0.0.0/33 rate 1mbit 1mbit", "bad network '10.0.0.0/33'" },
		{ "client example.com rate 1mbit 1mbit", "bad network 'example.com'" },
		{ "user a\"b rate 1mbit 1mbit", "bad user name 'a\"b'" },
	};
	char err[ERRLEN];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct limitset *l = limitset_new();
		assert_non_null(l);
		err[0] = '\0';
		if (add(l, bad[i].line, 1, err) == 0)
			fail_msg("'%s' accepted", bad[i].line);
		if (!strstr(err, bad[i].msg))
			fail_msg("'%s': got '%s', want '%s'", bad[i].line, err, bad[i].msg);
		assert_int_equal(l->n, 0);
		limitset_free(l);
	}
}

/* Every valid line with its last words (or the last word's last bytes)
 * cut off is refused, or is a different valid line: a line cut short is
 * never silently the same limit ("then close" is the default, so that much
 * may go). */
static void
test_every_truncation_of_a_line_is_refused_or_different(void **state)
{
	char err[ERRLEN], cut[256];

	for (size_t i = 0; i < sizeof(good_lines) / sizeof(good_lines[0]); i++) {
		const char *t = good_lines[i].line;
		struct limitset *whole = limitset_new();
		char *dw;

		assert_int_equal(add(whole, t, 1, err), 0);
		dw = dump_of(whole);
		for (size_t n = 1; n < strlen(t); n++) {
			struct limitset *l = limitset_new();
			snprintf(cut, sizeof(cut), "%.*s", (int)n, t);
			if (cut[n - 1] != ' ' && add(l, cut, 1, err) == 0) {
				char *d = dump_of(l);
				size_t tl = strlen(t), dl = strlen(" then close");
				bool same_default = tl > dl &&
					strcmp(t + tl - dl, " then close") == 0 &&
					strlen(cut) == tl - dl;
				if (strcmp(d, dw) == 0 && !same_default)
					fail_msg("'%s' means the same as '%s'", cut, t);
				free(d);
			}
			limitset_free(l);
		}
		free(dw);
		limitset_free(whole);
	}
}

static void
test_duplicates_name_the_first_line(void **state)
{
	struct limitset *l = limitset_new();
	char err[ERRLEN];

	assert_int_equal(add(l, "user alice rate 1mbit 1mbit", 3, err), 0);
	assert_int_equal(add(l, "user alice quota 1GB day", 4, err), 0);
	assert_int_equal(add(l, "user bob rate 1mbit 1mbit", 5, err), 0);
	assert_int_equal(add(l, "client 10.0.0.0/8 rate 1mbit 1mbit", 6, err), 0);
	assert_int_equal(add(l, "client 10.0.0.0/16 rate 1mbit 1mbit", 7, err), 0);
	assert_int_equal(add(l, "session rate 1mbit 1mbit", 8, err), 0);
	assert_int_equal(add(l, "user alice rate 2mbit 2mbit", 9, err), -1);
	assert_string_equal(err, "duplicate 'user alice rate', first at line 3");
	assert_int_equal(add(l, "user alice quota 2GB day", 10, err), -1);
	assert_string_equal(err, "duplicate 'user alice quota', first at line 4");
	assert_int_equal(add(l, "client 10.1.2.3/8 rate 1mbit 1mbit", 11, err), -1);
	assert_string_equal(err, "duplicate 'client 10.0.0.0/8 rate', first at line 6");
	assert_int_equal(add(l, "session rate 2mbit 2mbit", 12, err), -1);
	assert_string_equal(err, "duplicate 'session rate', first at line 8");
	limitset_free(l);
}

/* --- what applies ----------------------------------------------------------- */

static void
test_match_prefers_the_users_own_line_and_the_first_network(void **state)
{
	struct limitset *l = limitset_new();
	union sockaddr_any ten = unit_addr("10.1.2.3", 5), other = unit_addr("192.0.2.1", 5);
	union sockaddr_any v6 = unit_addr("2001:db8::1", 5);
	struct limitset_match m;
	char err[ERRLEN];

	assert_int_equal(add(l, "user * rate 5mbit 5mbit", 1, err), 0);
	assert_int_equal(add(l, "user alice rate 20mbit 20mbit", 2, err), 0);
	assert_int_equal(add(l, "user * quota 1GB day", 3, err), 0);
	assert_int_equal(add(l, "client 10.1.0.0/16 rate 1mbit 1mbit", 4, err), 0);
	assert_int_equal(add(l, "client 10.0.0.0/8 rate 2mbit 2mbit", 5, err), 0);
	assert_int_equal(add(l, "client 10.0.0.0/8 quota 1GB day", 6, err), 0);
	assert_int_equal(add(l, "client all rate 3mbit 3mbit", 7, err), 0);
	assert_int_equal(
		limitset_add_rule_rate(l, 9, "1mbit", "unlimited", "allow all", err, sizeof(err)),
		0);

	limitset_match(l, "alice", &ten, 9, &m);
	assert_null(m.session);
	assert_int_equal(m.user_rate->line, 2);
	assert_int_equal(m.user_quota->line, 3);
	assert_int_equal(m.client_rate->line, 4);
	assert_int_equal(m.client_quota->line, 6);
	assert_int_equal(m.rule->line, 9);
	assert_true(m.rule->rate.up == 1000000 && m.rule->rate.down == 0);

	limitset_match(l, "bob", &other, 8, &m);
	assert_int_equal(m.user_rate->line, 1);
	assert_int_equal(m.client_rate->line, 7);
	assert_null(m.client_quota);
	assert_null(m.rule);

	/* No user: no user scope, `user *` included. */
	limitset_match(l, NULL, &v6, 0, &m);
	assert_null(m.user_rate);
	assert_null(m.user_quota);
	assert_int_equal(m.client_rate->line, 7);
	assert_false(limitset_empty(l));
	assert_true(limitset_have_quota(l));
	assert_int_equal(limitset_first_shared_line(l), 1);
	limitset_free(l);
}

static void
test_only_session_limits_are_not_shared(void **state)
{
	struct limitset *l = limitset_new();
	char err[ERRLEN];

	assert_true(limitset_empty(l));
	assert_int_equal(add(l, "session rate 1mbit 1mbit", 4, err), 0);
	assert_false(limitset_empty(l));
	assert_false(limitset_have_quota(l));
	assert_int_equal(limitset_first_shared_line(l), 0);
	assert_int_equal(
		limitset_add_rule_rate(l, 6, "1mbit", "bad", "allow all", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad rate 'bad'"));
	assert_int_equal(limitset_first_shared_line(l), 0);
	limitset_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rates_parse_and_print_back),
		cmocka_unit_test(test_bad_rates_are_refused_with_the_word),
		cmocka_unit_test(test_every_prefix_of_a_rate_is_refused_or_different),
		cmocka_unit_test(test_amounts),
		cmocka_unit_test(test_periods_and_offsets),
		cmocka_unit_test(test_limit_lines_parse_and_dump),
		cmocka_unit_test(test_limit_line_errors),
		cmocka_unit_test(test_every_truncation_of_a_line_is_refused_or_different),
		cmocka_unit_test(test_duplicates_name_the_first_line),
		cmocka_unit_test(test_match_prefers_the_users_own_line_and_the_first_network),
		cmocka_unit_test(test_only_session_limits_are_not_shared),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
