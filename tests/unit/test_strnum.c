/*
 * Unit tests for strnum, the one strict decimal parser: digits only, range
 * checked, a status for every refusal. Every boundary of the value (0, min,
 * max, 2^64) and of the text (empty, signs, blanks, "0x", trailing junk,
 * leading zeros), and the length-delimited form at every prefix length.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strnum.h"

#define U64_MAX_TEXT "18446744073709551615"
#define U64_MAX_PLUS_1_TEXT "18446744073709551616"
/* Poison for *out: a refusal must leave it alone. */
#define POISON UINT64_C(0xA5A5A5A5A5A5A5A5)

/* Parses s over the whole u64 range; returns the status, the value in *v. */
static enum strnum_status
parse_full(const char *s, uint64_t *v)
{
	*v = POISON;
	return strnum_parse_u64(s, 0, UINT64_MAX, v);
}

static void
assert_refused(const char *s, uint64_t min, uint64_t max, enum strnum_status want)
{
	uint64_t v = POISON;
	enum strnum_status st = strnum_parse_u64(s, min, max, &v);

	if (st != want)
		fail_msg("'%s' in %llu..%llu: got %s, want %s", s, (unsigned long long)min,
			(unsigned long long)max, strnum_status_str(st), strnum_status_str(want));
	assert_true(v == POISON);
}

static void
test_empty_is_its_own_status(void **state)
{
	uint64_t v;

	assert_int_equal(parse_full("", &v), STRNUM_EMPTY);
	assert_true(v == POISON);
	assert_int_equal(strnum_parse_u64_span("123", 0, 0, 999, &v), STRNUM_EMPTY);
	assert_true(v == POISON);
}

static void
test_zero_and_the_full_range(void **state)
{
	uint64_t v;

	assert_int_equal(parse_full("0", &v), STRNUM_OK);
	assert_true(v == 0);
	assert_int_equal(parse_full("1", &v), STRNUM_OK);
	assert_true(v == 1);
	assert_int_equal(parse_full(U64_MAX_TEXT, &v), STRNUM_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(parse_full("18446744073709551614", &v), STRNUM_OK);
	assert_true(v == UINT64_MAX - 1);
}

static void
test_overflow_past_2_to_the_64_is_out_of_range(void **state)
{
	assert_refused(U64_MAX_PLUS_1_TEXT, 0, UINT64_MAX, STRNUM_RANGE);
	assert_refused("18446744073709551620", 0, UINT64_MAX, STRNUM_RANGE);
	assert_refused("99999999999999999999", 0, UINT64_MAX, STRNUM_RANGE);
	assert_refused("184467440737095516150", 0, UINT64_MAX, STRNUM_RANGE);
	/* 2^64 * 10 + 6 would wrap to a small number in naive code. */
	assert_refused("184467440737095516166", 0, UINT64_MAX, STRNUM_RANGE);
	assert_refused("100000000000000000000000000000000000000000", 0, UINT64_MAX, STRNUM_RANGE);
}

static void
test_min_and_max_are_inclusive(void **state)
{
	uint64_t v;

	assert_int_equal(strnum_parse_u64("1", 1, 65535, &v), STRNUM_OK);
	assert_true(v == 1);
	assert_int_equal(strnum_parse_u64("65535", 1, 65535, &v), STRNUM_OK);
	assert_true(v == 65535);
	assert_refused("0", 1, 65535, STRNUM_RANGE);
	assert_refused("65536", 1, 65535, STRNUM_RANGE);
	assert_refused("4294967296", 0, UINT32_MAX, STRNUM_RANGE);
	assert_int_equal(strnum_parse_u64("7", 7, 7, &v), STRNUM_OK);
	assert_refused("6", 7, 7, STRNUM_RANGE);
	assert_refused("8", 7, 7, STRNUM_RANGE);
}

static void
test_signs_blanks_and_prefixes_are_not_decimal(void **state)
{
	static const char *const bad[] = {
		"+1",
		"-1",
		"-0",
		"+0",
		" 1",
		"1 ",
		"\t1",
		"1\n",
		"0x10",
		"0X10",
		"0b1",
		"1e3",
		"1.0",
		"1,000",
		"1_000",
		"\xd9\xa3",
		"\xef\xbc\x91",
		"a",
		"+",
		"-",
		" ",
		"0x",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_refused(bad[i], 0, UINT64_MAX, STRNUM_NOT_DECIMAL);
}

static void
test_trailing_junk_wins_over_range(void **state)
{
	/* Not a number at all, whatever its size. */
	assert_refused("99999999999999999999x", 0, UINT64_MAX, STRNUM_NOT_DECIMAL);
	assert_refused("65536s", 0, 65535, STRNUM_NOT_DECIMAL);
	assert_refused("10s", 0, 100, STRNUM_NOT_DECIMAL);
	assert_refused("1 2", 0, 100, STRNUM_NOT_DECIMAL);
}

static void
test_leading_zeros_are_accepted(void **state)
{
	uint64_t v;

	assert_int_equal(parse_full("007", &v), STRNUM_OK);
	assert_true(v == 7);
	assert_int_equal(parse_full("00", &v), STRNUM_OK);
	assert_true(v == 0);
	/* Zeros do not count towards the overflow. */
	assert_int_equal(parse_full("00000000000000000000000000" U64_MAX_TEXT, &v), STRNUM_OK);
	assert_true(v == UINT64_MAX);
	assert_refused("000065536", 0, 65535, STRNUM_RANGE);
}

static void
test_span_stops_at_its_length(void **state)
{
	static const char buf[] = "8080 rest";
	static const char nul[] = { '1', '\0', '2' };
	uint64_t v;

	assert_int_equal(strnum_parse_u64_span(buf, 4, 0, 65535, &v), STRNUM_OK);
	assert_true(v == 8080);
	assert_int_equal(strnum_parse_u64_span(buf, 5, 0, 65535, &v), STRNUM_NOT_DECIMAL);
	/* A NUL inside the span is a byte like any other non-digit. */
	v = POISON;
	assert_int_equal(strnum_parse_u64_span(nul, sizeof(nul), 0, 999, &v), STRNUM_NOT_DECIMAL);
	assert_true(v == POISON);
}

/* The span form over every prefix of a text agrees with the string form
 * over the same prefix copied out and terminated. */
static void
test_span_agrees_with_string_at_every_prefix(void **state)
{
	static const char *const texts[] = {
		U64_MAX_TEXT "0x",
		U64_MAX_PLUS_1_TEXT,
		"007 ",
		"65535",
		"+1",
	};

	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		const char *s = texts[t];

		for (size_t k = 0; k <= strlen(s); k++) {
			char *prefix = strndup(s, k);
			uint64_t a = POISON, b = POISON;

			assert_non_null(prefix);
			assert_int_equal(strnum_parse_u64_span(s, k, 1, 65535, &a),
				strnum_parse_u64(prefix, 1, 65535, &b));
			assert_true(a == b);
			free(prefix);
		}
	}
}

static void
test_uint_form(void **state)
{
	unsigned u = 42;
	char text[32];

	assert_int_equal(strnum_parse_uint("4294967295", 0, UINT_MAX, &u), STRNUM_OK);
	assert_true(u == UINT_MAX);
	u = 42;
	assert_int_equal(strnum_parse_uint("4294967296", 0, UINT_MAX, &u), STRNUM_RANGE);
	assert_int_equal(strnum_parse_uint("+5", 0, UINT_MAX, &u), STRNUM_NOT_DECIMAL);
	assert_int_equal(strnum_parse_uint("", 0, UINT_MAX, &u), STRNUM_EMPTY);
	assert_int_equal(u, 42);
	snprintf(text, sizeof(text), "%u", 86400u);
	assert_int_equal(strnum_parse_uint(text, 1, 86400, &u), STRNUM_OK);
	assert_int_equal(u, 86400);
}

static void
test_status_strings_are_distinct(void **state)
{
	const char *s[] = {
		strnum_status_str(STRNUM_OK),
		strnum_status_str(STRNUM_EMPTY),
		strnum_status_str(STRNUM_NOT_DECIMAL),
		strnum_status_str(STRNUM_RANGE),
	};

	for (size_t i = 0; i < 4; i++)
		for (size_t j = i + 1; j < 4; j++)
			assert_string_not_equal(s[i], s[j]);
	assert_string_equal(strnum_status_str((enum strnum_status)99), "unknown status");
}

static void
test_name_table_lookup_with_holes_and_bounds(void **state)
{
	static const char *const names[] = { [0] = "zero", [2] = "two" };

	assert_string_equal(STRNUM_NAME(names, 0, "?"), "zero");
	assert_string_equal(STRNUM_NAME(names, 2, "?"), "two");
	/* A hole, the first index past the end, and far past it. */
	assert_string_equal(STRNUM_NAME(names, 1, "?"), "?");
	assert_string_equal(STRNUM_NAME(names, 3, "?"), "?");
	assert_string_equal(STRNUM_NAME(names, (size_t)-1, "?"), "?");
	assert_string_equal(strnum_name(names, 0, 0, "empty table"), "empty table");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_is_its_own_status),
		cmocka_unit_test(test_zero_and_the_full_range),
		cmocka_unit_test(test_overflow_past_2_to_the_64_is_out_of_range),
		cmocka_unit_test(test_min_and_max_are_inclusive),
		cmocka_unit_test(test_signs_blanks_and_prefixes_are_not_decimal),
		cmocka_unit_test(test_trailing_junk_wins_over_range),
		cmocka_unit_test(test_leading_zeros_are_accepted),
		cmocka_unit_test(test_span_stops_at_its_length),
		cmocka_unit_test(test_span_agrees_with_string_at_every_prefix),
		cmocka_unit_test(test_uint_form),
		cmocka_unit_test(test_status_strings_are_distinct),
		cmocka_unit_test(test_name_table_lookup_with_holes_and_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
